"""Training phases (freezing, network overrides, exact resume inside a phase) and the samplers'
training side (nnU-Net's foreground oversampling, 2D slice patches), on real scans."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from flareseg.models.registry import build_network
from flareseg.recipes import load_recipe, recipe_from_dict, recipe_to_dict
from flareseg.training import loop
from flareseg.training.loop import CHECKPOINT, RunOptions, forced_foreground, patch_sampler
from flareseg.training.train import train_model

from .conftest import tiny_recipe_dict


def _one_stage(phases, **train) -> dict:
    data = tiny_recipe_dict(**train)
    data["stages"] = [dict(data["stages"][0], phases=phases)]
    return data


@pytest.mark.parametrize("batch, share, forced", [
    (12, 1 / 3, [8, 9, 10, 11]),  # nnU-Net: not row < round(12 * (1 - 0.33))
    (2, 0.33, [1]),
    (2, 0.0, []),
    (4, 1.0, [0, 1, 2, 3]),
])
def test_the_last_third_of_a_batch_is_forced_onto_foreground(batch, share, forced):
    assert [row for row in range(batch) if forced_foreground(row, batch, share)] == forced


def test_slice_patches_are_2d_and_forced_ones_hold_a_labelled_voxel(rng):
    recipe = load_recipe("nnunet_2d", {"batch_size": 3, "foreground_share": 1 / 3})
    recipe = recipe_from_dict({**recipe_to_dict(recipe), "preprocess": {"hu_window": [-100, 300]}})
    patch = patch_sampler(recipe.stages[0], recipe, rng)
    image = rng.random((30, 300, 300), dtype=np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[17, 140:150, 60:70] = 4
    held = 0
    for _ in range(20):
        for row in range(3):
            patch_image, patch_label = patch(image, label, row)
            assert patch_image.shape == patch_label.shape == (256, 256)
            if row == 2:
                assert (patch_label == 4).any()
            held += (patch_label == 4).any()
    assert held < 60  # the unforced rows lie anywhere (one slice in 30 holds the label)


def test_a_frozen_phase_leaves_every_other_parameter_bit_identical(real_dataset, tmp_path):
    data = _one_stage([{"epochs": 1, "trainable": ["head.*"], "learning_rate": 0.05}], iterations_per_epoch=3)
    recipe = recipe_from_dict(data)
    model = train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False, threads=1))
    torch.manual_seed(recipe.train.seed + 0)  # the stage's initial weights, as training builds them
    initial = build_network(recipe.network.name, recipe.network.kwargs, 14).state_dict()
    trained = torch.load(model / "training" / "coarse" / CHECKPOINT, weights_only=False)["net"]
    changed = {name for name, value in initial.items() if not torch.equal(value, trained[name])}
    assert changed == {"head.weight", "head.bias"}
    with pytest.raises(Exception, match="match no parameter"):
        loop.trainable_parameters(build_network("resunet3d", {"levels": 3}, 3), ["decoder.*"])


def test_phases_switch_skips_on_and_resume_inside_a_phase_is_exact(real_dataset, tmp_path, monkeypatch):
    phases = [{"epochs": 2, "network": {"skip": False}}, {"epochs": 2, "network": {"skip": True}}]
    recipe = recipe_from_dict(_one_stage(phases, iterations_per_epoch=3))
    options = RunOptions(progress=False, threads=1)
    cache = tmp_path / "cache"
    reference = train_model(real_dataset, recipe, tmp_path / "uninterrupted", options, cache)
    log = json.loads((reference / "training" / "coarse" / "log.json").read_text())
    assert [(row["phase"], row["epoch"]) for row in log] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert log[2]["lr"] == recipe.train.learning_rate  # a fresh schedule in phase 2
    assert yaml.safe_load((reference / "recipe.yaml").read_text())["stages"][0]["phases"][1]["network"] == {"skip": True}

    saved = loop._save_checkpoint
    calls = []

    def killed_after_three(state, folder):  # killed right after phase 2's first epoch is saved
        saved(state, folder)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        train_model(real_dataset, recipe, tmp_path / "killed", options, cache)
    state = torch.load(tmp_path / "killed" / "training" / "coarse" / CHECKPOINT, weights_only=False)
    assert (state["phase"], state["epoch"]) == (1, 1)
    monkeypatch.setattr(loop, "_save_checkpoint", saved)
    resumed = train_model(real_dataset, recipe, tmp_path / "killed", RunOptions(progress=False, threads=1, resume=True),
                          cache)
    a = torch.load(resumed / "coarse.pt", weights_only=True)
    b = torch.load(reference / "coarse.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_batch_norm_keeps_its_running_statistics(real_dataset, tmp_path):
    data = _one_stage([{"epochs": 1, "trainable": ["head.*"]}], iterations_per_epoch=2)
    data["network"]["kwargs"]["norm"] = "batch"
    recipe = recipe_from_dict(data)
    model = train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False, threads=1))
    torch.manual_seed(recipe.train.seed + 0)
    initial = build_network(recipe.network.name, recipe.network.kwargs, 14).state_dict()
    trained = torch.load(model / "training" / "coarse" / CHECKPOINT, weights_only=False)["net"]
    changed = {name for name, value in initial.items() if not torch.equal(value, trained[name])}
    assert changed == {"head.weight", "head.bias"}  # running means and variances included
