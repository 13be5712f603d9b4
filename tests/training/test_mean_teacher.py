"""Mean teacher: the EMA update, the consistency loss and its ramp-up by hand, and tiny seeded
3D training runs on synthetic arrays (the teacher is the replayed EMA, resume is exact)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from flareseg.models.registry import build_network
from flareseg.recipes import load_recipe, recipe_from_dict, recipe_to_dict
from flareseg.training import loop
from flareseg.training.loop import CHECKPOINT, RunOptions, train_stage
from flareseg.training.mean_teacher import (consistency_loss, ema_update, make_teacher, noisy_view,
                                            sigmoid_rampup)
from flareseg.training.samples import Sample


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.norm = torch.nn.BatchNorm1d(1)

    def forward(self, x):
        return self.norm(self.linear(x))


def _set(module: _Tiny, weight, bias, mean, var, batches):
    with torch.no_grad():
        module.linear.weight.fill_(weight)
        module.linear.bias.fill_(bias)
        module.norm.running_mean.fill_(mean)
        module.norm.running_var.fill_(var)
        module.norm.num_batches_tracked.fill_(batches)


def test_ema_update_mixes_parameters_and_float_buffers_and_copies_integer_buffers():
    student, teacher = _Tiny(), _Tiny()
    _set(teacher, 1.0, 2.0, 0.0, 1.0, 0)
    _set(student, 3.0, -2.0, 4.0, 5.0, 7)
    ema_update(teacher, student, 0.75)
    state = teacher.state_dict()
    assert state["linear.weight"].item() == 0.75 * 1 + 0.25 * 3 == 1.5
    assert state["linear.bias"].item() == 0.75 * 2 + 0.25 * -2 == 1.0
    assert state["norm.weight"].item() == 1.0 and state["norm.bias"].item() == 0.0  # both 1 and 0 in both
    assert state["norm.running_mean"].item() == 1.0 and state["norm.running_var"].item() == 2.0
    assert state["norm.num_batches_tracked"].item() == 7
    assert student.linear.weight.item() == 3.0  # the student is left alone
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(value, student.state_dict()[key]) for key, value in teacher.state_dict().items())


def test_a_teacher_is_a_frozen_copy_whose_forward_leaves_its_running_statistics():
    student = _Tiny()
    _set(student, 2.0, 1.0, 3.0, 4.0, 5)
    teacher = make_teacher(student)
    assert teacher is not student and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in teacher.state_dict().items())
    teacher.train()
    out = teacher(torch.tensor([[0.0], [1.0]]))  # normalised with the batch's statistics: x = 1, 3
    assert torch.allclose(out[:, 0], torch.tensor([-1.0, 1.0]), atol=1e-4)
    assert teacher.norm.running_mean.item() == 3.0 and teacher.norm.running_var.item() == 4.0
    weights = copy.deepcopy(student.state_dict())
    weights["linear.weight"].fill_(-1.0)
    assert make_teacher(student, weights).linear.weight.item() == -1.0


def test_consistency_is_the_mean_squared_softmax_difference_over_channels_and_voxels():
    student = torch.zeros(1, 2, 2, requires_grad=True)  # [B, C, voxels]: softmax 0.5, 0.5 at both voxels
    teacher = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]], requires_grad=True)  # 0.75/0.25, then 0.5/0.5
    loss = consistency_loss(student, teacher)
    assert loss.item() == pytest.approx((0.25 ** 2 + 0.25 ** 2 + 0 + 0) / 4)  # 0.03125
    loss.backward()
    assert student.grad is not None and teacher.grad is None  # the teacher's side is a target
    assert consistency_loss(teacher.detach(), teacher.detach()).item() == 0.0


def test_consistency_takes_the_full_resolution_output_and_sums_the_heads():
    full, other = torch.zeros(1, 2, 2), torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]])
    deep = consistency_loss([full, torch.randn(1, 2, 1)], [other, torch.randn(1, 2, 1)])
    assert deep.item() == pytest.approx(0.03125)
    heads = consistency_loss({"organ": full, "lesion": full}, {"organ": other, "lesion": full})
    assert heads.item() == pytest.approx(0.03125)


@pytest.mark.parametrize("done, length, expected", [
    (0, 4, math.exp(-5)), (2, 4, math.exp(-5 * 0.25)), (1.0, 4, math.exp(-5 * 0.75 ** 2)),
    (4, 4, 1.0), (9, 4, 1.0), (0, 0, 1.0),
])
def test_sigmoid_rampup_follows_the_papers_curve(done, length, expected):
    assert sigmoid_rampup(done, length) == pytest.approx(expected, rel=1e-12)


def test_the_teachers_view_adds_seeded_gaussian_noise_in_place():
    x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
    view = noisy_view(x, 0.5, torch.Generator().manual_seed(3))
    noise = 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(view, x + noise) and view.shape == x.shape
    assert noisy_view(x, 0.0, torch.Generator()) is x


# A tiny 3D stage on synthetic arrays: 16^3, width 4, two phases.

def _recipe(phases=(1, 1), norm="instance", **teacher):
    data = recipe_to_dict(load_recipe("coarse_to_fine"))
    data["network"]["kwargs"].update(base_channels=4, max_channels=8, levels=3, norm=norm)
    data["stages"] = [{"name": "coarse", "labels": [1, 2], "size_zyx": [16, 16, 16], "crop": "whole",
                       "phases": [{"epochs": e, "network": {"skip": i > 0}} for i, e in enumerate(phases)]}]
    data["train"].update(iterations_per_epoch=3, batch_size=2, learning_rate=0.01, val_fraction=0.0,
                         augment={"affine": 0.5, "intensity": 0.5})
    if teacher:
        data["train"]["mean_teacher"] = teacher
    return recipe_from_dict(data)


@pytest.fixture
def samples():
    rng = np.random.default_rng(0)
    made = []
    for i in range(3):
        label = np.zeros((16, 16, 16), np.uint8)
        label[4:10, 3:9, 5:12] = 1
        label[10:14, 8:14, 2:7] = 2
        image = (label * 0.3 + rng.normal(0, 0.05, label.shape)).astype(np.float16)
        made.append(Sample(f"case{i}", image, label, np.ones(3, bool), np.zeros((0, 3), bool)))
    return made


_OPTIONS = RunOptions(progress=False, threads=1)


def test_the_teacher_is_the_ema_of_the_students_steps_across_phases(samples, tmp_path, monkeypatch):
    recipe = _recipe(norm="batch", ema=0.8, ship="teacher", rampup_epochs=1)
    steps = []

    def recording(teacher, student, ema):
        steps.append(copy.deepcopy(student.state_dict()))
        loop_ema_update(teacher, student, ema)

    loop_ema_update = loop.ema_update
    monkeypatch.setattr(loop, "ema_update", recording)
    best = train_stage(recipe.stages[0], 0, recipe, samples, [], tmp_path, _OPTIONS)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert len(steps) == 2 * 3  # two phases of one epoch of three steps: the teacher carried over
    torch.manual_seed(recipe.train.seed + 0)  # the stage's initial weights, as training builds them
    initial = build_network("resunet3d", recipe.network.kwargs, 3).state_dict()
    replay = {k: v.double() if v.is_floating_point() else v for k, v in initial.items()}
    for step in steps:
        replay = {k: 0.8 * v + 0.2 * step[k].double() if v.is_floating_point() else step[k] for k, v in replay.items()}
    assert state["teacher"].keys() == replay.keys() and any("running_var" in k for k in replay)
    for key, value in state["teacher"].items():
        if value.is_floating_point():
            assert torch.allclose(value.double(), replay[key], atol=1e-6, rtol=1e-5), key
        else:  # num_batches_tracked: the student's
            assert torch.equal(value, replay[key]) and value.item() == 6, key
    assert not all(torch.allclose(state["teacher"][k], state["net"][k]) for k in state["net"])
    assert all(torch.equal(best[k], state["teacher"][k]) for k in best)  # ship: teacher
    assert [row["consistency"] > 0 for row in state["history"]] == [True, True]


def test_a_teacher_of_weight_0_leaves_the_students_training_bit_identical(samples, tmp_path):
    recipe = _recipe()
    plain = train_stage(recipe.stages[0], 0, recipe, samples, [], tmp_path / "plain", _OPTIONS)
    recipe = _recipe(weight=0.0, noise=0.1)
    student = train_stage(recipe.stages[0], 0, recipe, samples, [], tmp_path / "teacher", _OPTIONS)
    assert all(torch.equal(plain[k], student[k]) for k in plain)  # ship: student


def test_resume_after_epoch_1_with_a_teacher_is_exact(samples, tmp_path, monkeypatch):
    recipe = _recipe(phases=(2, 1), ema=0.9, ship="teacher", rampup_epochs=2)
    reference = train_stage(recipe.stages[0], 0, recipe, samples, [], tmp_path / "uninterrupted", _OPTIONS)
    saved = loop._save_checkpoint

    def killed_after_the_first(state, folder):
        saved(state, folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        train_stage(recipe.stages[0], 0, recipe, samples, [], tmp_path / "killed", _OPTIONS)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)["epoch"] == 1
    monkeypatch.setattr(loop, "_save_checkpoint", saved)
    resumed = train_stage(recipe.stages[0], 0, recipe, samples, [], tmp_path / "killed",
                          RunOptions(progress=False, threads=1, resume=True))
    a = torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "uninterrupted" / CHECKPOINT, weights_only=False)
    for key in ("net", "teacher"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in b[key]), key
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    drop = ("seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in a["history"]] == [
        {k: v for k, v in row.items() if k not in drop} for row in b["history"]]
