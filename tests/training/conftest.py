"""A tiny recipe and a real-scan dataset for training tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from flareseg.recipes import load_recipe, recipe_to_dict

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_recipe_dict(stage_epochs: dict[str, int] | None = None, **train) -> dict:
    """The coarse-to-fine recipe shrunk to run in seconds: 32^3 / 16^3, width 4, no augmentation.

    ``stage_epochs`` sets the ``epochs`` of stages by name; ``train`` overrides train settings.
    """
    data = recipe_to_dict(load_recipe("coarse_to_fine"))
    data["network"]["kwargs"].update(base_channels=4, max_channels=8, levels=3)
    data["stages"] = [
        {"name": "coarse", "labels": list(range(1, 14)), "size_zyx": [32, 32, 32], "crop": "whole"},
        {"name": "abdominal_large", "labels": [1, 3, 2, 13], "size_zyx": [32, 32, 32], "crop": "group", "margin_mm": 15},
        {"name": "small", "labels": [7, 8, 9, 10], "size_zyx": [16, 16, 16], "crop": "each", "margin_mm": 15},
    ]
    data["train"].update(epochs=2, iterations_per_epoch=4, batch_size=2, learning_rate=0.01, val_fraction=0.0,
                         augment={"affine": 0.0, "elastic": 0.0, "intensity": 0.0, "contrast": 0.0, "noise": 0.0})
    data["train"].update(train)
    for stage in data["stages"]:
        if stage["name"] in (stage_epochs or {}):
            stage["epochs"] = stage_epochs[stage["name"]]
    return data


@pytest.fixture
def tiny_recipe_file(tmp_path):
    def write(stage_epochs=None, **train):
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(tiny_recipe_dict(stage_epochs, **train)))
        return path
    return write


@pytest.fixture
def real_dataset(tmp_path, data_dir):
    """The default model's training set (scripts/make_default_dataset.py) built from the real scans."""
    spec = importlib.util.spec_from_file_location("make_default_dataset", REPO_ROOT / "scripts" / "make_default_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(data_dir, tmp_path / "Dataset001_Default")
