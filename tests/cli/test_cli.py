"""The ``flareseg`` command as a user runs it: help, version, one-line errors, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg import __version__
from flareseg.io import read_volume

FLARESEG = [sys.executable, "-m", "flareseg.cli.main"]


def run(*args, cwd=None):
    return subprocess.run([*FLARESEG, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"flareseg {__version__}"


@pytest.mark.parametrize("command", [
    [], ["info"], ["convert"], ["dataset"], ["dataset", "check"], ["dataset", "import"], ["evaluate"], ["benchmark"], ["train"], ["predict"],
    ["export-onnx"], ["demo"],
])
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: flareseg")


def _commands(parser) -> set[str]:
    return set(next(a for a in parser._actions if a.dest == "command").choices)


def test_each_command_comes_from_the_module_the_table_names_and_alone_imports_only_that():
    from flareseg.cli.main import COMMANDS, build_parser

    assert _commands(build_parser()) == set(COMMANDS)  # every command declared is in the table
    for command, module in COMMANDS.items():
        assert _commands(build_parser(command)) == {c for c, m in COMMANDS.items() if m == module}
    code = ("import sys; from flareseg.cli.main import build_parser; build_parser('predict'); "
            "print(sorted(m for m in sys.modules if m.startswith(('flareseg.cli.', 'flareseg.datasets', 'flareseg.training'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "flareseg.cli.predict_cmd" in loaded
    assert not any(name in loaded for name in ("dataset_cmd", "train_cmd", "flareseg.datasets", "flareseg.training"))


def test_the_predict_parser_loads_no_numerics_so_the_scan_can_start_reading_before_the_runtime_loads():
    code = ("import sys; from flareseg.cli.main import build_parser; "
            "build_parser('predict').parse_args(['predict', '-i', 'ct.nii.gz', '-o', 'mask.nii.gz']); "
            "print(sorted(m for m in ('numpy', 'SimpleITK', 'onnxruntime', 'torch', 'yaml', 'cc3d', "
            "'flareseg.inference.predict', 'flareseg.inference.model') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_info_lists_label_map():
    result = run("info")
    assert result.returncode == 0
    assert "duodenum" in result.stdout and "7" in result.stdout.splitlines()[12]


def test_convert_dicom_folder_to_nifti(data_dir, tmp_path):
    out = tmp_path / "ct.nii.gz"
    result = run("convert", "-i", data_dir / "ts_example" / "example_ct_dicom", "-o", out)
    assert result.returncode == 0, result.stderr
    converted = read_volume(out)
    reference = read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    np.testing.assert_array_equal(converted.array, reference.array)
    assert converted.geometry.matches(reference.geometry)


def _bad_inputs(tmp_path, data_dir):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "truncated.nii.gz").write_bytes((data_dir / "ts_example" / "example_ct.nii.gz").read_bytes()[:200_000])
    (tmp_path / "text.nii.gz").write_text("not an image")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), str(tmp_path / "flat.nii.gz"))
    frames = [sitk.GetImageFromArray(np.full((3, 4, 5), v, np.int16)) for v in (-1000, 500)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(tmp_path / "time.nii.gz"))
    (tmp_path / "not_dicom").mkdir()
    (tmp_path / "not_dicom" / "a.txt").write_text("x")
    return ["missing.nii.gz", "empty.nii.gz", "truncated.nii.gz", "text.nii.gz", "flat.nii.gz", "time.nii.gz", "not_dicom"]


def test_bad_inputs_give_one_line_error_and_no_output(data_dir, tmp_path):
    for name in _bad_inputs(tmp_path, data_dir):
        out = tmp_path / "out" / f"{name}.nii.gz"
        result = run("convert", "-i", tmp_path / name, "-o", out)
        assert result.returncode == 1, name
        assert result.stderr.startswith("flareseg: error: "), (name, result.stderr)
        assert result.stderr.count("\n") == 1, (name, result.stderr)  # one line, no traceback
        assert "Traceback" not in result.stderr
        assert not out.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_usage_error_exits_2():
    result = run("convert", "-i")
    assert result.returncode == 2


def test_dataset_check_reports_and_exits_1_on_errors(data_dir, tmp_path):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    ts = data_dir / "ts_example"
    shutil.copy(ts / "example_ct.nii.gz", root / "imagesTr" / "a_0000.nii.gz")
    shutil.copy(ts / "flare_labels_fullct_from_v2fast.nii.gz", root / "labelsTr" / "a.nii.gz")
    shutil.copy(ts / "example_ct_sm.nii.gz", root / "imagesTr" / "b_0000.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 3},
        "numTraining": 2, "file_ending": ".nii.gz",
    }))
    report = tmp_path / "report.json"
    result = run("dataset", "check", root, "--json", report, "--quiet")
    assert result.returncode == 1
    assert "ERROR a: unknown label value(s)" in result.stdout
    assert "ERROR b: missing label" in result.stdout
    assert {p["case_id"] for p in json.loads(report.read_text())["problems"]} == {"a", "b"}


def test_demo_segments_the_sample_and_scores_it(tmp_path):
    result = run("demo", "--out", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    from flareseg.data import sample_ct_path

    mask = read_volume(tmp_path / "demo" / "sample_mask.nii.gz")
    ct = read_volume(sample_ct_path())
    assert mask.geometry.matches(ct.geometry) and mask.array.dtype == np.uint8
    assert set(np.unique(mask.array)) <= set(range(14)) and (mask.array == 1).sum() > 1000  # a liver
    assert "onnx backend" in result.stdout and "organ mean" in result.stdout


def test_train_rejects_a_missing_dataset_and_an_unknown_recipe(tmp_path):
    missing = run("train", "--dataset", tmp_path / "nope", "--out", tmp_path / "model", "--device", "cpu")
    unknown = run("train", "--dataset", tmp_path, "--out", tmp_path / "model", "--recipe", "no_such_recipe")
    assert missing.returncode == 1 and "no such dataset folder" in missing.stderr
    assert unknown.returncode == 1 and "coarse_to_fine" in unknown.stderr.partition("built-in recipes: ")[2]
    assert not (tmp_path / "model").exists()
