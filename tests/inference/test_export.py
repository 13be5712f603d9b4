"""ONNX export: parity check, the export record, and refusing ONNX files the weights have left behind."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from flareseg.cli.main import main
from flareseg.errors import InputError
from flareseg.inference.export import export_onnx
from flareseg.inference.model import ONNX_JSON, StaleOnnxWarning, load_model, onnx_mismatches, weights_path
from flareseg.training.train import save_weights


def _retrain(model_dir, stage):
    """Overwrite ``<stage>.pt`` with other weights, as retraining the stage in place does."""
    path = weights_path(model_dir, stage)
    state = torch.load(path, weights_only=True)
    save_weights({k: -v.float() if v.is_floating_point() else v for k, v in state.items()}, path)


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
