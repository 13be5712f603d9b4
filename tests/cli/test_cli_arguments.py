"""Command-line values are checked on parsing (usage errors, exit 2), an output never replaces an
input, ``python -m flareseg`` works, and ``predict --quiet`` prints nothing."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys

import pytest

from flareseg import __version__
from flareseg.cli.arguments import device, fraction, positive_float, positive_int
from flareseg.cli.main import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "flareseg", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_python_dash_m_flareseg_is_the_command():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"flareseg {__version__}"


@pytest.mark.parametrize("check, good, bad", [
    (positive_int, {"1": 1, "16": 16}, ["0", "-3", "1.5", "two"]),
    (positive_float, {"0.01": 0.01, "3": 3.0}, ["0", "-1", "inf", "nan", "x"]),
    (fraction, {"0": 0.0, "0.2": 0.2}, ["1", "-0.1", "1.5", "nan"]),
])
def test_argument_types_accept_and_refuse(check, good, bad):
    assert {text: check(text) for text in good} == good
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)


def test_devices_are_checked():
    assert device("cpu") == "cpu" and device("auto") == "auto"
    for text in ("banana", "gpu", "cuda:x", "CPU"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected cpu"):
            device(text)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="no CUDA device"):
            device("cuda")


@pytest.mark.parametrize("args", [
    ["predict", "-i", "x.nii.gz", "-o", "y.nii.gz", "--threads", "-3"],
    ["predict", "-i", "x.nii.gz", "-o", "y.nii.gz", "--device", "banana"],
    ["train", "--dataset", "d", "--out", "m", "--lr", "-1"],
    ["train", "--dataset", "d", "--out", "m", "--epochs", "0"],
    ["train", "--dataset", "d", "--out", "m", "--val-fraction", "1"],
    ["train", "--dataset", "d", "--out", "m", "--schedule", "cosine"],
])
def test_bad_values_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, data_dir, capsys):
    ct = tmp_path / "ct.nii.gz"
    shutil.copy(data_dir / "ts_example" / "example_ct.nii.gz", ct)
    before = _sha(ct)
    assert main(["predict", "-i", str(ct), "-o", str(tmp_path / "." / "ct.nii.gz")]) == 1
    assert "the output is the input" in capsys.readouterr().err
    dicom = tmp_path / "dicom"
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", dicom)
    files = sorted(dicom.iterdir())
    assert main(["predict", "-i", str(dicom), "-o", str(dicom / "mask.nii.gz")]) == 1
    assert "inside the input folder" in capsys.readouterr().err
    assert sorted(dicom.iterdir()) == files and _sha(ct) == before
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(ct, folder / "case_0000.nii.gz")
    assert main(["predict", "-i", str(folder), "-o", str(folder)]) == 1
    assert [p.name for p in folder.iterdir()] == ["case_0000.nii.gz"]


def test_predict_quiet_prints_nothing(tmp_path, data_dir):
    result = run("predict", "-i", data_dir / "ts_example" / "example_ct.nii.gz", "-o", tmp_path / "m.nii.gz", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and (tmp_path / "m.nii.gz").is_file()
