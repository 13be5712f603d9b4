"""Runs over several scans: inputs named at once or listed, summary.json, re-runs and name clashes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flareseg.cli.main import main
from flareseg.io import read_volume
from flareseg.labels import BY_NAME


@pytest.fixture
def scans(tmp_path, data_dir):
    """A small real CT file, a real DICOM series folder, and a list file naming both."""
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", folder / "small_0000.nii.gz")
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", folder / "series")
    (folder / "list.txt").write_text("# two scans\nsmall_0000.nii.gz\n\nseries\n")
    return folder


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_several_inputs_and_a_list_file_write_one_mask_each_and_a_summary(scans, tiny_model, tmp_path, data_dir):
    out = tmp_path / "out"
    assert main(["predict", "-i", str(scans / "small_0000.nii.gz"), str(scans / "series"), "-o", str(out),
                 "-m", str(tiny_model), "--quiet"]) == 0
    summary = _summary(out)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    assert [(case["case"], case["status"]) for case in summary["cases"]] == [("small", "done"), ("series", "done")]
    assert read_volume(out / "series.nii.gz").geometry.matches(
        read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz").geometry)

    listed = tmp_path / "listed"
    assert main(["predict", "-i", str(scans / "list.txt"), "-o", str(listed), "-m", str(tiny_model), "--quiet"]) == 0
    assert sorted(p.name for p in listed.iterdir()) == ["manifest.csv", "series.nii.gz", "small.nii.gz", "summary.json"]


def test_the_summary_records_each_input_as_an_absolute_path(scans, tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(scans)
    out = tmp_path / "out"
    assert main(["predict", "-i", "small_0000.nii.gz", "series", "-o", str(out), "-m", str(tiny_model), "--quiet"]) == 0
    assert [case["input"] for case in _summary(out)["cases"]] == [str(scans / "small_0000.nii.gz"), str(scans / "series")]


def test_a_rerun_keeps_finished_masks_and_redoes_broken_ones_unless_overwrite(scans, tiny_model, tmp_path):
    out = tmp_path / "out"
    command = ["predict", "-i", str(scans / "list.txt"), "-o", str(out), "-m", str(tiny_model), "--quiet"]
    assert main(command) == 0
    kept = (out / "small.nii.gz").stat().st_mtime_ns
    (out / "series.nii.gz").write_bytes((out / "series.nii.gz").read_bytes()[:500])  # an interrupted old write
    assert main(command) == 0
    assert [case["status"] for case in _summary(out)["cases"]] == ["skipped", "done"]
    assert (out / "small.nii.gz").stat().st_mtime_ns == kept
    assert read_volume(out / "series.nii.gz").array.shape == (20, 512, 512)
    assert main(command + ["--overwrite"]) == 0
    assert [case["status"] for case in _summary(out)["cases"]] == ["done", "done"]
    assert (out / "small.nii.gz").stat().st_mtime_ns != kept


def test_two_scans_that_would_write_one_mask_both_fail_and_the_rest_goes_on(scans, tiny_model, tmp_path, capsys):
    shutil.copy(scans / "small_0000.nii.gz", scans / "small.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", "-i", str(scans), "-o", str(out), "-m", str(tiny_model), "--quiet"]) == 1
    statuses = {case["input"].split("/")[-1]: case["status"] for case in _summary(out)["cases"]}
    assert statuses == {"series": "done", "small.nii.gz": "failed", "small_0000.nii.gz": "failed"}
    assert not (out / "small.nii.gz").exists()
    assert "would both write small.nii.gz" in capsys.readouterr().err


def test_a_dicom_folder_holding_another_file_is_one_series(scans, tiny_model, tmp_path, data_dir):
    series = scans / "series"
    shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", series / "stray.nii.gz")
    mask = tmp_path / "mask.nii.gz"
    assert main(["predict", "-i", str(series), "-o", str(mask), "-m", str(tiny_model), "--quiet"]) == 0
    assert read_volume(mask).array.shape == (20, 512, 512)


def test_a_mask_never_replaces_an_input(scans, tiny_model, tmp_path, capsys):
    before = (scans / "small_0000.nii.gz").read_bytes()
    # the output folder is where a listed scan lies, and that scan's mask would be its own name
    shutil.copy(scans / "small_0000.nii.gz", tmp_path / "small.nii.gz")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'small.nii.gz'}\n")
    assert main(["predict", "-i", str(tmp_path / "list.txt"), "-o", str(tmp_path), "-m", str(tiny_model),
                 "--quiet"]) == 1
    assert "would overwrite an input scan" in capsys.readouterr().err
    assert (tmp_path / "small.nii.gz").read_bytes() == before
    assert main(["predict", "-i", str(scans / "series"), "-o", str(scans / "series" / "mask.nii.gz"),
                 "-m", str(tiny_model)]) == 1
    assert "inside the input folder" in capsys.readouterr().err


def test_dicom_outputs_hold_the_same_mask_as_the_nifti_output(tmp_path, data_dir):
    """--output-type dicom_seg and rtstruct on a real DICOM series, read back onto the CT grid by the
    readers `flareseg dataset import` uses: the SEG equals the NIfTI mask voxel for voxel; the RT
    structure set too, since its contours run between voxel centres."""
    import highdicom as hd
    import pydicom

    from flareseg.datasets.dicom_seg import seg_masks
    from flareseg.datasets.rtstruct import rtstruct_masks

    series = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct"
    for kind, name in (("nifti", "mask.nii.gz"), ("dicom_seg", "seg.dcm"), ("rtstruct", "rt.dcm")):
        assert main(["predict", "-i", str(series), "-o", str(tmp_path / name), "--output-type", kind, "--quiet"]) == 0
    nifti = read_volume(tmp_path / "mask.nii.gz")
    classes = [int(c) for c in np.unique(nifti.array) if c]
    assert len(classes) >= 8
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    numbers = {int(item.SegmentNumber): item.SegmentLabel for item in seg.SegmentSequence}
    rt = pydicom.dcmread(tmp_path / "rt.dcm")
    rois = {int(item.ROINumber): item.ROIName for item in rt.StructureSetROISequence}
    for masks, names in ((seg_masks(seg, nifti.geometry, list(numbers)), numbers),
                         (rtstruct_masks(rt, nifti.geometry, list(rois)), rois)):
        assert sorted(BY_NAME[name].id for name in names.values()) == classes
        for number, mask in masks.items():
            expected = np.flatnonzero(nifti.array == BY_NAME[names[number]].id)
            np.testing.assert_array_equal(mask.voxels, expected)
    ct = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    assert seg.StudyInstanceUID == rt.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.FrameOfReferenceUID == ct.FrameOfReferenceUID


def test_a_two_phase_series_is_two_cases_of_a_run_and_one_chosen_for_one_mask(tmp_path, data_dir, tiny_model,
                                                                               capsys):
    """A real series stored twice under AcquisitionNumber 1 and 2 (a two-phase study in one series)."""
    import copy

    import pydicom
    from pydicom.uid import generate_uid

    folder = tmp_path / "study" / "two_phase"
    folder.mkdir(parents=True)
    files = sorted((data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct").iterdir())[:12]
    for i, path in enumerate(files):
        first = pydicom.dcmread(path)
        second = copy.deepcopy(first)
        second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        second.AcquisitionNumber = 2
        first.save_as(folder / f"a{i:03d}.dcm", enforce_file_format=True)
        second.save_as(folder / f"b{i:03d}.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(folder.parent), "-o", str(out), "-m", str(tiny_model), "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["two_phase_acq1.nii.gz", "two_phase_acq2.nii.gz"]

    assert main(["predict", "-i", str(folder), "-o", str(tmp_path / "one.nii.gz"), "-m", str(tiny_model)]) == 1
    assert "choose one with --acquisition N" in capsys.readouterr().err
    assert main(["predict", "-i", str(folder), "-o", str(tmp_path / "one.nii.gz"), "-m", str(tiny_model),
                 "--acquisition", "2", "--quiet"]) == 0
    assert read_volume(tmp_path / "one.nii.gz").array.shape == (12, 512, 512)


def test_the_same_dicom_file_twice_is_read_once_with_a_one_line_warning(scans, tiny_model, tmp_path, capsys):
    series = scans / "series"
    first = sorted(series.iterdir())[0]
    shutil.copy(first, series / "copy_of_first.dcm")
    assert main(["predict", "-i", str(series), "-o", str(tmp_path / "m.nii.gz"), "-m", str(tiny_model),
                 "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flareseg: warning:") and "copy_of_first.dcm" in err[0]


def _two_phase(data_dir, folder, slices=12, strip=()):
    """The first slices of the real TCIA series stored twice, AcquisitionNumber 1 and 2, without ``strip``."""
    import copy

    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    files = sorted((data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct").iterdir())[30:30 + slices]
    for i, path in enumerate(files):
        first = pydicom.dcmread(path)
        for keyword in strip:
            delattr(first, keyword)
        second = copy.deepcopy(first)
        second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        second.AcquisitionNumber = 2
        first.save_as(folder / f"a{i:03d}.dcm", enforce_file_format=True)
        second.save_as(folder / f"b{i:03d}.dcm", enforce_file_format=True)
    return folder


def test_dicom_outputs_of_a_chosen_acquisition_of_an_anonymised_series(tmp_path, data_dir):
    """Type-2 attributes deleted by an anonymiser are written empty; the SEG references the slices of
    the acquisition the mask was predicted on."""
    import pydicom

    folder = _two_phase(data_dir, tmp_path / "study" / "ct", strip=("PatientID", "AccessionNumber", "SliceThickness"))
    assert main(["predict", "-i", str(folder), "-o", str(tmp_path / "seg.dcm"), "--output-type", "dicom_seg",
                 "--acquisition", "2", "--quiet"]) == 0
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    second = {pydicom.dcmread(p).SOPInstanceUID for p in folder.glob("b*.dcm")}
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == second and seg.PatientID == ""
    out = tmp_path / "out"
    assert main(["predict", "-i", str(folder.parent), "-o", str(out), "--output-type", "rtstruct", "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.dcm")) == ["ct_acq1.dcm", "ct_acq2.dcm"]


def test_an_interrupted_run_leaves_a_summary_of_what_it_did(scans, tiny_model, tmp_path, monkeypatch):
    import flareseg.inference.predict as predict_module

    real = predict_module.predict_case
    calls = []

    def interrupted(case, *args, **kwargs):
        calls.append(case.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_case", interrupted)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(scans / "list.txt"), "-o", str(out), "-m", str(tiny_model), "--quiet"]) == 130
    assert [(case["case"], case["status"]) for case in _summary(out)["cases"]] == [("small", "done"),
                                                                                   ("series", "pending")]


def test_a_rerun_redoes_masks_of_another_output_type_grid_or_without_the_asked_extras(scans, tiny_model, tmp_path,
                                                                                      data_dir):
    out = tmp_path / "out"
    command = ["predict", "-i", str(scans / "small_0000.nii.gz"), str(scans / "series"), "-o", str(out),
               "-m", str(tiny_model), "--quiet"]
    assert main(command) == 0
    shutil.copy(data_dir / "ts_example" / "example_ct.nii.gz", scans / "small_0000.nii.gz")  # another grid now
    assert main(command) == 0
    assert [case["status"] for case in _summary(out)["cases"]] == ["done", "skipped"]
    assert main(command + ["--preview"]) == 0
    assert [case["status"] for case in _summary(out)["cases"]] == ["done", "done"]
    assert (out / "small.png").is_file() and (out / "series.png").is_file()


def test_what_counts_as_a_folder_of_scans(tmp_path, data_dir, tiny_model, capsys):
    """An RT structure set beside scans does not make their folder a DICOM series; the same scan named
    twice is segmented once; a repeated DICOM file is reported once, on one line."""
    folder = tmp_path / "patient"
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", folder / "series")
    shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", folder / "small.nii.gz")
    shutil.copy(data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "rtstruct.dcm", folder)
    shutil.copy(sorted((folder / "series").iterdir())[0], folder / "series" / "again.dcm")
    out = tmp_path / "out"
    assert main(["predict", "-i", str(folder), str(folder / "small.nii.gz"), "-o", str(out), "-m", str(tiny_model),
                 "--quiet"]) == 0
    assert [case["case"] for case in _summary(out)["cases"]] == ["series", "small"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 1 and warnings[0].startswith("flareseg: warning:") and "again.dcm" in warnings[0]


def test_two_names_for_one_file_are_two_cases(tmp_path, data_dir):
    from flareseg.inference.cases import collect_cases

    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "p1_0000.nii.gz").symlink_to(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    (folder / "p2_0000.nii.gz").symlink_to(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    assert [case.name for case in collect_cases([folder, folder / "p1_0000.nii.gz"])] == ["p1", "p2"]


def test_a_table_of_cases_names_their_outputs_and_acquisitions(scans, tiny_model, tmp_path, data_dir):
    from flareseg.errors import InputError
    from flareseg.inference.cases import collect_cases

    series = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct"
    table = scans / "cases.csv"
    table.write_text(f"case,input,acquisition\npatient7,small_0000.nii.gz,\n,series,\nphase,{series},1\n")
    cases = collect_cases([table])
    assert [(case.name, case.input, case.acquisition) for case in cases] == [
        ("patient7", scans / "small_0000.nii.gz", None), ("series", scans / "series", None), ("phase", series, 1)]
    (scans / "bad.csv").write_text("path\nsmall_0000.nii.gz\n")
    with pytest.raises(InputError, match="needs an 'input' column"):
        collect_cases([scans / "bad.csv"])
    (scans / "bad.csv").write_text("input,acquisition\nsmall_0000.nii.gz,first\n")
    with pytest.raises(InputError, match="line 2: needs an input and, if any, an acquisition number"):
        collect_cases([scans / "bad.csv"])
    (scans / "one.csv").write_text("input,case\nsmall_0000.nii.gz,patient7\n")
    out = tmp_path / "out"
    assert main(["predict", "-i", str(scans / "one.csv"), "-o", str(out), "-m", str(tiny_model), "--quiet"]) == 0
    assert (out / "patient7.nii.gz").is_file() and _summary(out)["cases"][0]["case"] == "patient7"
