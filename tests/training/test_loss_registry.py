"""Losses by name and nnU-Net's deep-supervision weighting."""

from __future__ import annotations

import pytest
import torch

from flareseg.errors import InputError
from flareseg.training.losses import (LOSSES, build_loss, deep_supervision_weights, dice_ce_loss, dice_loss,
                                      downsample_target)


@pytest.mark.parametrize("n, expected", [
    (1, [1.0]),
    (2, [1.0, 0.0]),
    (3, [1 / 1.5, 0.5 / 1.5, 0.0]),
    (5, [1 / 1.875, 0.5 / 1.875, 0.25 / 1.875, 0.125 / 1.875, 0.0]),
])
def test_deep_supervision_weights_are_nnunets(n, expected):
    assert deep_supervision_weights(n) == pytest.approx(expected, abs=1e-12)


def _case(spatial, channels=3, batch=2, seed=0):
    """Logits at full, half and quarter size, a target and annotations."""
    g = torch.Generator().manual_seed(seed)
    outputs = [torch.randn((batch, channels) + tuple(s // 2 ** i for s in spatial), generator=g) for i in range(3)]
    target = torch.randint(0, channels, (batch,) + tuple(spatial), generator=g)
    annotated = torch.ones(batch, channels, dtype=torch.bool)
    annotated[1, 2] = False
    target[1][target[1] == 2] = 0  # unannotated classes appear as 0
    return outputs, target, annotated


def _half(t):  # nearest-exact, factor 2: the second voxel of each pair along every spatial axis
    return t[(slice(None),) + (slice(1, None, 2),) * (t.dim() - 1)]


def _quarter(t):  # factor 4: the third voxel of each four
    return t[(slice(None),) + (slice(2, None, 4),) * (t.dim() - 1)]


@pytest.mark.parametrize("spatial", [(8, 12), (8, 8, 12)], ids=["2d", "3d"])
def test_deep_supervised_loss_is_the_hand_weighted_sum(spatial):
    outputs, target, annotated = _case(spatial)
    kwargs = {"dice_weight": 1.0, "ce_weight": 1.0}
    loss = build_loss("dice_ce", kwargs, deep_supervision=True)(outputs, target, annotated)
    expected = (2 / 3) * dice_ce_loss(outputs[0], target, annotated) \
        + (1 / 3) * dice_ce_loss(outputs[1], _half(target), annotated)  # the quarter output weighs 0
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_four_outputs_use_the_quarter_target_too():
    spatial = (8, 8, 8)
    outputs, target, annotated = _case(spatial)
    outputs.append(torch.randn((2, 3, 1, 1, 1)))
    loss = build_loss("dice_ce", deep_supervision=True)(outputs, target, annotated)
    expected = (dice_ce_loss(outputs[0], target, annotated) + 0.5 * dice_ce_loss(outputs[1], _half(target), annotated)
                + 0.25 * dice_ce_loss(outputs[2], _quarter(target), annotated)) / 1.75
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_downsampled_target_is_explicit_slicing():
    target = torch.randint(0, 20, (2, 8, 12, 16))
    assert torch.equal(downsample_target(target, (4, 6, 8)), _half(target))
    assert torch.equal(downsample_target(target, (2, 3, 4)), _quarter(target))
    assert downsample_target(target, (8, 12, 16)) is target


def test_a_merged_label_code_survives_the_downsampling():
    channels, spatial = 3, (8, 8, 8)
    outputs, target, annotated = _case(spatial, channels=channels, seed=3)
    target[:, :4] = channels + 0  # "stomach or duodenum" over half the patch
    sets = torch.zeros(2, 1, channels, dtype=torch.bool)
    sets[:, 0, 1:] = True
    half = _half(target)
    assert (half == channels).any() and set(half.unique().tolist()) <= set(target.unique().tolist())
    loss = build_loss("dice_ce", deep_supervision=True)(outputs, target, annotated, sets)
    expected = (2 / 3) * dice_ce_loss(outputs[0], target, annotated, sets=sets) \
        + (1 / 3) * dice_ce_loss(outputs[1], half, annotated, sets=sets)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert torch.equal(downsample_target(target, outputs[1].shape[2:]), half)


def test_without_deep_supervision_a_list_uses_its_first_output():
    outputs, target, annotated = _case((8, 8, 8))
    expected = dice_ce_loss(outputs[0], target, annotated, ce_weight=2.0)
    for deep in (False, True):
        built = build_loss("dice_ce", {"ce_weight": 2.0}, deep_supervision=deep)
        assert built(outputs[0], target, annotated).item() == pytest.approx(expected.item(), abs=1e-6)
    assert build_loss("dice_ce", {"ce_weight": 2.0})(outputs, target, annotated).item() == \
        pytest.approx(expected.item(), abs=1e-6)
    assert build_loss("dice_ce", deep_supervision=True)(outputs[:1], target, annotated).item() == \
        pytest.approx(dice_ce_loss(outputs[0], target, annotated).item(), abs=1e-6)


def test_dice_is_dice_ce_without_ce_and_finite():
    outputs, target, annotated = _case((6, 6, 6))
    logits = outputs[0]
    assert torch.allclose(dice_loss(logits, target, annotated), dice_ce_loss(logits, target, annotated, ce_weight=0))
    assert build_loss("dice")(logits, target, annotated).item() == \
        pytest.approx(dice_ce_loss(logits, target, annotated, ce_weight=0).item(), abs=1e-6)
    # An unannotated class in the label gives CE = inf; weighted 0 it must not turn the loss into NaN.
    target[1, 0] = 2
    logits = logits.clone().requires_grad_(True)
    assert torch.isinf(dice_ce_loss(logits, target, annotated))
    loss = dice_loss(logits, target, annotated)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_registry_and_bad_names_or_kwargs():
    assert set(LOSSES) == {"dice_ce", "dice", "gce", "sce", "beta_ce"}
    with pytest.raises(InputError, match="dice_ce") as info:
        build_loss("focal")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="ce_weight"):
        build_loss("dice", {"ce_weight": 1.0})
    with pytest.raises(InputError, match="weight"):
        build_loss("dice_ce", {"weight": 1.0})
    with pytest.raises(InputError, match="sets"):
        build_loss("dice_ce", {"sets": None})
