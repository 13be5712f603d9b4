"""Pure parts of the training loop: learning-rate schedules and validation DSC."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from flareseg.recipes import TrainConfig
from flareseg.training.loop import learning_rate, validation_dice
from flareseg.training.samples import Sample


def test_step_schedule_halves_every_lr_step_epochs():
    train = TrainConfig(learning_rate=1e-3, schedule="step", lr_step_epochs=20, lr_gamma=0.5)
    assert [learning_rate(train, e, 100) for e in (0, 19, 20, 40, 59)] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 2.5e-4])


def test_poly_schedule_falls_to_zero_at_the_last_epoch():
    train = dataclasses.replace(TrainConfig(learning_rate=1e-2), schedule="poly")
    rates = [learning_rate(train, e, 10) for e in range(10)]
    assert rates[0] == pytest.approx(1e-2) and all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(train, 10, 10) == 0


class _Oracle(torch.nn.Module):
    """Answers with the label it is given through the image (image = label / 10)."""

    def forward(self, x):
        label = torch.round(x[:, 0] * 10).long()
        return torch.nn.functional.one_hot(label, 3).movedim(-1, 1).float()


def test_validation_dice_counts_annotated_classes_only():
    label = np.zeros((4, 4, 4), np.uint8)
    label[:2] = 1
    label[2:, :2] = 2
    image = (label / 10).astype(np.float16)
    full = Sample("a", image, label, np.array([True, True, True]), np.zeros((0, 3), bool))
    partial = Sample("b", image, np.where(label == 2, 0, label).astype(np.uint8), np.array([True, True, False]),
                     np.zeros((0, 3), bool))
    dice = validation_dice(_Oracle(), [full, partial], 3, "cpu")
    assert dice[1] == pytest.approx(1.0) and dice[2] == pytest.approx(1.0)
    only_partial = validation_dice(_Oracle(), [partial], 3, "cpu")
    assert only_partial[1] == pytest.approx(1.0) and np.isnan(only_partial[2])
