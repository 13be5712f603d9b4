"""ONNX export: parity check, the export record, and refusing ONNX files the weights have left behind."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from flareseg.cli.main import main
from flareseg.errors import InputError
from flareseg.inference.export import export_onnx, network_sample
from flareseg.inference.model import (
    MODEL_JSON,
    ONNX_JSON,
    WEIGHTS_SHA256,
    StaleOnnxWarning,
    file_sha256,
    load_model,
    onnx_mismatches,
    weights_path,
)
from flareseg.io import read_ct
from flareseg.labels import nnunet_labels
from flareseg.preprocessing.orientation import to_canonical
from flareseg.recipes import load_recipe
from flareseg.training.loop import RunOptions
from flareseg.training.train import save_weights, train_model



def _retrain(model_dir, stage):
    """Overwrite ``<stage>.pt`` with other weights and record them in ``model.json``, as retraining the
    stage in place does."""
    path = weights_path(model_dir, stage)
    state = torch.load(path, weights_only=True)
    save_weights({k: -v.float() if v.is_floating_point() else v for k, v in state.items()}, path)
    meta = json.loads((model_dir / MODEL_JSON).read_text())
    meta[WEIGHTS_SHA256][stage] = file_sha256(path)
    (model_dir / MODEL_JSON).write_text(json.dumps(meta))


def _predict_cli(model_dir, ct, out, *extra):
    return main(["predict", "-i", str(ct), "-o", str(out), "-m", str(model_dir), *extra])


def test_export_records_every_stage(tiny_model):
    assert (tiny_model / ONNX_JSON).is_file()
    assert onnx_mismatches(tiny_model, ["coarse", "abdominal_large", "small"]) is None


def test_a_retrained_stage_refuses_its_old_onnx_until_exported_again(tiny_model_copy, data_dir, tmp_path, capsys):
    model_dir, ct = tiny_model_copy, data_dir / "ts_example" / "example_ct_sm.nii.gz"
    x = np.random.default_rng(0).random((1, 1, 16, 16, 16), dtype=np.float32)
    old_onnx = load_model(model_dir, backend="onnx").runners["small"](x)
    _retrain(model_dir, "small")
    fix = f"run `flareseg export-onnx {model_dir}`"

    with pytest.raises(InputError, match=re.escape(f"small.onnx was exported from other weights than small.pt; {fix}")):
        load_model(model_dir, backend="onnx")
    assert _predict_cli(model_dir, ct, tmp_path / "onnx.nii.gz", "--backend", "onnx") == 1
    error = capsys.readouterr().err
    assert error.startswith("flareseg: error: ") and error.count("\n") == 1 and fix in error
    assert not (tmp_path / "onnx.nii.gz").exists()

    assert _predict_cli(model_dir, ct, tmp_path / "torch.nii.gz", "--backend", "torch") == 0
    assert capsys.readouterr().err == ""
    assert _predict_cli(model_dir, ct, tmp_path / "auto.nii.gz") == 0  # auto: PyTorch, with a warning
    warning = capsys.readouterr().err
    assert warning.startswith("flareseg: warning: ") and warning.count("\n") == 1
    assert "running PyTorch instead" in warning and "flareseg export-onnx" in warning

    assert main(["export-onnx", str(model_dir)]) == 0
    onnx, torch_model = load_model(model_dir, backend="onnx"), load_model(model_dir, backend="torch")
    new = torch_model.runners["small"](x)
    assert np.abs(old_onnx - new).max() > 0.1  # the stale file ran another network
    assert np.abs(onnx.runners["small"](x) - new).max() < 1e-3
    assert load_model(model_dir).backend == "onnx"


def test_onnx_without_a_record_is_refused_and_auto_falls_back(tiny_model_copy):
    (tiny_model_copy / ONNX_JSON).unlink()  # as exported by an older flareseg
    unrecorded = "the ONNX files have no record of the weights they were exported from (no onnx.json)"
    with pytest.raises(InputError, match=re.escape(unrecorded)):
        load_model(tiny_model_copy, backend="onnx")
    with pytest.warns(StaleOnnxWarning, match="export-onnx"):
        assert load_model(tiny_model_copy).backend == "torch"


def test_a_failed_parity_check_leaves_the_files_and_record_alone(tiny_model_copy):
    before = {p.name: p.read_bytes() for p in tiny_model_copy.iterdir()}
    with pytest.raises(RuntimeError, match="stage coarse: onnxruntime differs from PyTorch"):
        export_onnx(tiny_model_copy, rtol=0.0)  # any float difference fails
    assert {p.name: p.read_bytes() for p in tiny_model_copy.iterdir()} == before


def test_a_fixed_spacing_coarse_stage_exports_for_any_scan_size(tmp_path, data_dir, tiny_recipe_dict):
    """Trained on random patches cut to random fields of view, run on whole scans of any size:
    its ONNX graph takes any multiple of the size step and agrees with PyTorch on each."""
    recipe = tiny_recipe_dict(epochs=1)
    recipe["stages"] = recipe["stages"][:1]
    recipe["stages"][0].update(size_zyx=[16, 24, 24], spacing_mm=[8, 8, 8])
    recipe["train"]["augment"]["field_of_view"] = 1.0
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    ts = data_dir / "ts_example"
    dataset = tmp_path / "dataset"
    (dataset / "imagesTr").mkdir(parents=True)
    (dataset / "labelsTr").mkdir()
    shutil.copy(ts / "example_ct.nii.gz", dataset / "imagesTr" / "ts_0000.nii.gz")
    shutil.copy(ts / "flare_labels_fullct_from_v2fast.nii.gz", dataset / "labelsTr" / "ts.nii.gz")
    (dataset / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": nnunet_labels(),
                                                      "numTraining": 1, "file_ending": ".nii.gz"}))
    model_dir = train_model(dataset, load_recipe(tmp_path / "r.yaml"), tmp_path / "model", RunOptions(progress=False))
    export_onnx(model_dir)
    onnx, torch_model = load_model(model_dir, backend="onnx"), load_model(model_dir, backend="torch")
    ct = to_canonical(read_ct(ts / "example_ct.nii.gz"))[0]
    shapes = set()
    for cut in (slice(None), slice(0, 60), slice(60, 71)):  # the whole scan, its lower half, an 11-slice slab
        x = network_sample(ct.array[cut], ct.geometry.spacing_zyx_mm, onnx.recipe, onnx.recipe.stages[0])
        expected, got = torch_model.runners["coarse"](x), onnx.runners["coarse"](x)
        assert got.shape == expected.shape == (1, 14, *x.shape[2:])
        assert np.abs(got - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
        shapes.add(x.shape)
    assert len(shapes) == 3


def test_export_replaces_an_unreadable_record(tiny_model_copy):
    (tiny_model_copy / ONNX_JSON).write_text("{not json")
    with pytest.raises(InputError, match="export-onnx"):
        load_model(tiny_model_copy, backend="onnx")
    export_onnx(tiny_model_copy)  # what the message says to do works
    assert load_model(tiny_model_copy, backend="onnx").backend == "onnx"
