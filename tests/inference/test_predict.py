"""Prediction: geometry of the written mask, ONNX vs PyTorch, folder mode, API and CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flareseg.cli.main import main
from flareseg.errors import InputError
from flareseg.inference.cases import collect_cases, output_name
from flareseg.inference.model import load_model, onnx_path
from flareseg.inference.predict import PredictOptions, predict, predict_cases
from flareseg.io import read_volume


def test_onnx_and_torch_backends_give_the_same_mask(tiny_model, data_dir):
    ct = data_dir / "ts_example" / "example_ct.nii.gz"
    assert all(onnx_path(tiny_model, s).is_file() for s in ("coarse", "abdominal_large", "small"))
    onnx = load_model(tiny_model)  # auto picks onnxruntime when the ONNX files exist
    torch_model = load_model(tiny_model, backend="torch")
    assert onnx.backend == "onnx" and torch_model.backend == "torch"
    a = predict(ct, model=onnx).array
    b = predict(ct, model=torch_model).array
    assert np.mean(a == b) > 0.999


@pytest.mark.parametrize("name, source", [
    ("ras_3mm.nii.gz", "ts_example/example_ct.nii.gz"),
    ("lps_crop.nrrd", "ts_example/extra_aorta_report_crop/ct_cropped.nii.gz"),
])
def test_mask_overlays_the_input_exactly(tiny_model, data_dir, tmp_path, name, source):
    ct = read_volume(data_dir / source)
    out = tmp_path / name
    predict(data_dir / source, out, options=PredictOptions(model_dir=tiny_model))
    mask = read_volume(out)
    assert mask.array.shape == ct.array.shape
    assert mask.geometry.matches(ct.geometry)
    assert mask.array.dtype == np.uint8 and mask.array.max() <= 13


def test_folder_mode_keeps_going_past_a_bad_scan(tiny_model, data_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", inputs / "case1_0000.nii.gz")
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", inputs / "case2")
    (inputs / "broken_0000.nii.gz").write_bytes(b"not an image")
    report = predict_cases(collect_cases([inputs]), tmp_path / "out", PredictOptions(model_dir=tiny_model), progress=False)
    assert [(r.case, r.status) for r in report.results] == [("broken", "failed"), ("case1", "done"), ("case2", "done")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case1.nii.gz", "case2.nii.gz"]

    code = main(["predict", "-i", str(inputs), "-o", str(tmp_path / "cli_out"), "-m", str(tiny_model)])
    printed = capsys.readouterr()
    assert code == 1 and "2 mask(s) written" in printed.out and "1 failed" in printed.out
    assert "failed: broken_0000" in printed.err  # failures go to stderr, also with --quiet


def test_cli_predicts_one_dicom_series(tiny_model, data_dir, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    code = main(["predict", "-i", str(data_dir / "ts_example" / "example_ct_dicom"), "-o", str(out),
                 "-m", str(tiny_model), "--threads", "1"])
    assert code == 0 and out.is_file()
    assert read_volume(out).geometry.matches(read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz").geometry)


def test_bad_input_and_model_give_one_line_errors_and_no_file(tiny_model, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", "-i", str(tmp_path / "missing.nii.gz"), "-o", str(out), "-m", str(tiny_model)]) == 1
    assert main(["predict", "-i", str(tiny_model / "recipe.yaml"), "-o", str(out), "-m", str(tmp_path)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("flareseg: error:") for line in errors)
    assert "not a flareseg model directory" in errors[1]
    assert not out.exists()


def test_an_unwritable_output_type_fails_before_any_work(tmp_path, data_dir):
    calls = []

    class Spy:  # a model whose use would be recorded
        def __getattr__(self, name):
            calls.append(name)
            raise AssertionError("the model was used")

    with pytest.raises(InputError, match="cannot write this file type"):
        predict(data_dir / "ts_example" / "example_ct.nii.gz", tmp_path / "mask.png", model=Spy())
    assert calls == [] and not list(tmp_path.iterdir())


def test_output_names_follow_nnunet_conventions():
    assert output_name(Path("case_0000.nii.gz")) == "case.nii.gz"
    assert output_name(Path("case.nrrd")) == "case.nii.gz"
    assert output_name(Path("dicom_folder")) == "dicom_folder.nii.gz"


def test_empty_input_folder_is_an_error(tmp_path, tiny_model):
    with pytest.raises(InputError, match="no CT files"):
        collect_cases([tmp_path])


def test_second_chance_is_on_by_default_and_can_be_turned_off(tmp_path):
    """On the bundled sample the default model's coarse stage (5 mm) misses the gallbladder (9);
    the second chance finds it under the liver, as the sample's reference labels have it."""
    from flareseg.data import sample_ct_path, sample_labels_path

    reference = read_volume(sample_labels_path()).array == 9
    assert main(["predict", "-i", str(sample_ct_path()), "-o", str(tmp_path / "on.nii.gz")]) == 0
    assert main(["predict", "-i", str(sample_ct_path()), "-o", str(tmp_path / "off.nii.gz"), "--no-second-chance"]) == 0
    on, off = read_volume(tmp_path / "on.nii.gz").array == 9, read_volume(tmp_path / "off.nii.gz").array == 9
    assert not off.any()
    assert 2 * np.count_nonzero(on & reference) / (np.count_nonzero(on) + np.count_nonzero(reference)) > 0.5


def test_fine_boundaries_redraw_only_organ_borders(tmp_path):
    """--fine-boundaries changes voxels near a label change only (within one stage voxel: up to
    three of the sample's in a second-chance search box), and keeps every organ."""
    from scipy import ndimage

    from flareseg.data import sample_ct_path

    paths = {flag: tmp_path / f"{bool(flag)}.nii.gz" for flag in ("", "--fine-boundaries")}
    for flag, path in paths.items():
        assert main(["predict", "-i", str(sample_ct_path()), "-o", str(path), *([flag] if flag else [])]) == 0
    plain, fine = (read_volume(paths[flag]).array for flag in ("", "--fine-boundaries"))
    changed = plain != fine
    border = ndimage.maximum_filter(plain, size=7) != ndimage.minimum_filter(plain, size=7)
    assert changed.any() and not (changed & ~border).any()
    assert set(np.unique(plain)) == set(np.unique(fine))


@pytest.mark.parametrize("loaded", [False, True])
def test_a_read_the_caller_started_is_used_and_the_scan_not_read_again(tiny_model, data_dir, tmp_path, loaded):
    from concurrent.futures import Future

    from flareseg.inference.cases import Case
    from flareseg.inference.options import OutputOptions
    from flareseg.inference.predict import predict_case
    from flareseg.io import read_ct

    started = Future()
    started.set_result(read_ct(data_dir / "ts_example" / "example_ct.nii.gz"))
    other = Case("other", data_dir / "ts_example" / "example_ct_dicom.nii.gz", None)  # another grid
    options = PredictOptions(model_dir=tiny_model)
    model = load_model(tiny_model) if loaded else None
    predict_case(other, tmp_path / "mask.nii.gz", model, options, OutputOptions(), reading=started)
    assert read_volume(tmp_path / "mask.nii.gz").geometry.matches(started.result().geometry)
