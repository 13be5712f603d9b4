"""A tiny trained model shared by the inference tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_recipe_dict():
    """The training tests' tiny recipe as plain data: ``tiny_recipe_dict(stage_epochs=None, **train)``."""
    return _load(TESTS / "training" / "conftest.py", "training_conftest").tiny_recipe_dict


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, data_dir):
    """A 3-stage model trained for a few iterations on the real scans, exported to ONNX.
    Shared: tests that change it use ``tiny_model_copy``."""
    from flareseg.inference.export import export_onnx
    from flareseg.recipes import load_recipe
    from flareseg.training.loop import RunOptions
    from flareseg.training.train import train_model

    root = tmp_path_factory.mktemp("tiny")
    build = _load(TESTS.parent / "scripts" / "make_default_dataset.py", "make_default_dataset").build
    dataset = build(data_dir, root / "dataset")
    recipe_dict = _load(TESTS / "training" / "conftest.py", "training_conftest").tiny_recipe_dict(epochs=1)
    (root / "tiny.yaml").write_text(yaml.safe_dump(recipe_dict))
    model_dir = train_model(dataset, load_recipe(root / "tiny.yaml"), root / "model", RunOptions(progress=False))
    export_onnx(model_dir)
    return model_dir


@pytest.fixture
def tiny_model_copy(tiny_model, tmp_path) -> Path:
    """The files of ``tiny_model`` that prediction needs (not ``training/``), in a folder of this test."""
    copy = tmp_path / "model"
    copy.mkdir()
    for path in tiny_model.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    return copy
