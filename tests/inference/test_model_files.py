"""A damaged model directory (a copy of the bundled model, broken one way at a time) is refused in
one line that names the file: a missing stage file, weights that do not fit the recipe's network,
weights that differ from the sha256 ``model.json`` records."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from flareseg.data import default_model_dir
from flareseg.errors import InputError
from flareseg.inference.model import WEIGHTS_SHA256, load_model, weight_hashes


@pytest.fixture
def model_copy(tmp_path):
    """The bundled model's files (not ``training/``), which record no weight hashes."""
    copy = tmp_path / "model"
    copy.mkdir()
    for path in default_model_dir().iterdir():
        if path.is_file():
            shutil.copy(path, copy / path.name)
    return copy


def _record_hashes(model_dir):
    """Record the weights' sha256 in ``model.json``, as ``flareseg train`` now does."""
    meta = json.loads((model_dir / "model.json").read_text())
    meta[WEIGHTS_SHA256] = weight_hashes(model_dir, meta["stages"])
    (model_dir / "model.json").write_text(json.dumps(meta))


def _refusal(model_dir, backend="torch") -> str:
    with pytest.raises(InputError) as error:
        load_model(model_dir, backend=backend)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name, backend, message", [
    ("small.pt", "torch", "small.pt: missing weights for stage 'small'"),
    ("small.onnx", "onnx", "small.onnx is missing"),
    ("vessels.pt", "onnx", "vessels.pt is missing"),
    ("recipe.yaml", "auto", "needs model.json and recipe.yaml"),
])
def test_a_missing_file_is_named(model_copy, name, backend, message):
    (model_copy / name).unlink()
    assert message in _refusal(model_copy, backend)


def test_an_old_directory_without_hashes_loads(model_copy):
    assert WEIGHTS_SHA256 not in json.loads((model_copy / "model.json").read_text())
    assert set(load_model(model_copy, backend="torch").runners) == {
        "coarse", "abdominal_large", "gastrointestinal", "vessels", "small"}


def test_weights_of_another_stage_name_the_first_misfit(model_copy):
    shutil.copy(model_copy / "small.pt", model_copy / "coarse.pt")  # 4 organs + background, not 13 + 1
    message = _refusal(model_copy)
    assert message == (f"{model_copy / 'coarse.pt'}: weights do not fit the recipe's resunet3d for stage 'coarse' "
                       "('head.weight' is 5x8x1x1x1, the network needs 14x8x1x1x1)")


@pytest.mark.parametrize("change, misfit", [
    (lambda state: state.pop("stem.norm1.bias"), "no tensor 'stem.norm1.bias'"),
    (lambda state: state.update(extra=torch.zeros(2)), "unexpected tensor 'extra'"),
])
def test_a_missing_or_extra_tensor_is_named(model_copy, change, misfit):
    state = torch.load(model_copy / "vessels.pt", weights_only=True)
    change(state)
    torch.save(state, model_copy / "vessels.pt")
    message = _refusal(model_copy)
    assert message.startswith(f"{model_copy / 'vessels.pt'}: weights do not fit") and message.endswith(f"({misfit})")


def test_a_file_that_is_no_state_dict_is_unreadable(model_copy):
    torch.save([torch.zeros(1)], model_copy / "small.pt")
    assert _refusal(model_copy).endswith("small.pt: unreadable weights for stage 'small' (not a state dict of tensors)")
    data = (model_copy / "coarse.pt").read_bytes()
    (model_copy / "coarse.pt").write_bytes(data[: len(data) // 2])
    assert f"{model_copy / 'coarse.pt'}: unreadable weights for stage 'coarse' (" in _refusal(model_copy)


def test_recorded_hashes_are_checked(model_copy):
    _record_hashes(model_copy)
    load_model(model_copy, backend="torch")
    state = torch.load(model_copy / "abdominal_large.pt", weights_only=True)
    state["head.bias"] += 1  # same shapes: only the hash tells
    torch.save(state, model_copy / "abdominal_large.pt")
    assert _refusal(model_copy) == (f"{model_copy / 'abdominal_large.pt'}: weights differ from those model.json "
                                    "records (sha256): damaged or replaced")


def test_malformed_hashes_name_model_json(model_copy):
    meta = json.loads((model_copy / "model.json").read_text())
    meta[WEIGHTS_SHA256] = ["not", "a", "mapping"]
    (model_copy / "model.json").write_text(json.dumps(meta))
    assert _refusal(model_copy).startswith(f"{model_copy / 'model.json'}: {WEIGHTS_SHA256} must map")


def test_predict_reports_a_misfit_in_one_line(model_copy, data_dir, tmp_path, capsys):
    from flareseg.cli.main import main

    shutil.copy(model_copy / "small.pt", model_copy / "coarse.pt")
    code = main(["predict", "-i", str(data_dir / "ts_example" / "example_ct.nii.gz"), "-o", str(tmp_path / "m.nii.gz"),
                 "-m", str(model_copy), "--backend", "torch"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "coarse.pt: weights do not fit" in err and "head.weight" in err
    assert not (tmp_path / "m.nii.gz").exists()
