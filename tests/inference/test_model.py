"""The ONNX export record of a model directory: which ONNX file may stand in for which weights."""

from __future__ import annotations

import json

import pytest

from flareseg.errors import InputError
from flareseg.inference.export import record_export
from flareseg.inference.model import ONNX_JSON, file_sha256, onnx_mismatch, onnx_mismatches, read_onnx_record


@pytest.fixture
def model_dir(tmp_path):
    """Two stages whose (stand-in) ``.pt`` and ``.onnx`` files are recorded as exported."""
    for stage in ("coarse", "small"):
        (tmp_path / f"{stage}.pt").write_bytes(f"{stage} weights".encode())
        (tmp_path / f"{stage}.onnx").write_bytes(f"{stage} network".encode())
        record_export(tmp_path, stage)
    return tmp_path


def test_sha256_of_known_bytes(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_record_holds_both_hashes_per_stage(model_dir):
    stored = json.loads((model_dir / ONNX_JSON).read_text())
    assert stored["stages"]["small"] == {"weights_sha256": file_sha256(model_dir / "small.pt"),
                                         "onnx_sha256": file_sha256(model_dir / "small.onnx")}
    assert read_onnx_record(model_dir) == stored["stages"]
    assert onnx_mismatches(model_dir, ["coarse", "small"]) is None


def test_changed_weights_changed_onnx_missing_or_unrecorded_files_are_named(model_dir):
    record = read_onnx_record(model_dir)
    (model_dir / "small.pt").write_bytes(b"retrained weights")
    assert onnx_mismatch(model_dir, "small", record) == "small.onnx was exported from other weights than small.pt"
    (model_dir / "coarse.onnx").write_bytes(b"another network")
    assert onnx_mismatch(model_dir, "coarse", record) == "coarse.onnx changed after it was exported"
    assert onnx_mismatch(model_dir, "coarse", {}) == "coarse.onnx has no record of the weights it was exported from"
    (model_dir / "small.onnx").unlink()
    assert onnx_mismatch(model_dir, "small", record) == "small.onnx is missing"
    assert onnx_mismatches(model_dir, ["coarse", "small"]) == (
        "coarse.onnx changed after it was exported, small.onnx is missing")


def test_a_directory_without_record_is_named_once(model_dir):
    (model_dir / ONNX_JSON).unlink()
    assert read_onnx_record(model_dir) == {}
    assert onnx_mismatches(model_dir, ["coarse", "small"]) == (
        "the ONNX files have no record of the weights they were exported from (no onnx.json)")


def test_a_broken_record_is_an_input_error(tmp_path):
    (tmp_path / ONNX_JSON).write_text("{not json")
    with pytest.raises(InputError, match="export-onnx"):
        read_onnx_record(tmp_path)
    (tmp_path / ONNX_JSON).write_text('{"stages": []}')
    with pytest.raises(InputError, match="unreadable ONNX export record"):
        read_onnx_record(tmp_path)


@pytest.mark.parametrize("name, damage, message", [
    ("model.json", lambda b: b[:20], "unreadable model description"),
    ("model.json", lambda b: b"[1, 2]", "model format None"),
    ("recipe.yaml", lambda b: b"name: [unclosed", "unreadable recipe"),
    ("recipe.yaml", lambda b: b"- a list", "YAML mapping"),
    ("coarse.pt", lambda b: b[: len(b) // 2], "coarse.pt: weights differ from those model.json records (sha256)"),
    ("coarse.onnx", lambda b: b[: len(b) // 2], "unreadable ONNX network"),
])
def test_a_broken_model_file_is_a_one_line_error_naming_it(tiny_model_copy, tmp_path, data_dir, name, damage, message,
                                                            capsys):
    from flareseg.cli.main import main
    from flareseg.inference.export import record_export

    path = tiny_model_copy / name
    path.write_bytes(damage(path.read_bytes()))
    if name == "coarse.onnx":
        record_export(tiny_model_copy, "coarse")  # recorded as is: only the file itself is broken
    backend = "onnx" if name.endswith(".onnx") else "torch"
    code = main(["predict", "-i", str(data_dir / "ts_example" / "example_ct.nii.gz"), "-o", str(tmp_path / "m.nii.gz"),
                 "-m", str(tiny_model_copy), "--backend", backend])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "m.nii.gz").exists()
