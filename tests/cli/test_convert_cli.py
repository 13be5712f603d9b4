"""``flareseg convert`` and ``flareseg info`` on what a user may bring: an oblique scan (never called
canonical), a label map (``--force``), a DICOM series of two acquisitions (``--acquisition``), a
folder holding the same file twice (one warning line)."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from flareseg.cli.main import main
from flareseg.io import read_volume

OBLIQUE_DEG = 12.0


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def oblique_ct(data_dir, tmp_path):
    """The real RAS scan example_ct_sm, its grid turned 12 degrees about the body's long axis."""
    image = sitk.ReadImage(str(data_dir / "ts_example" / "example_ct_sm.nii.gz"))
    angle = np.radians(OBLIQUE_DEG)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection((rotation @ np.array(image.GetDirection()).reshape(3, 3)).ravel().tolist())
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def test_canonical_refuses_an_oblique_scan(capsys, oblique_ct, tmp_path):
    out_path = tmp_path / "out.nii.gz"
    code, out, err = _run(capsys, "convert", "-i", oblique_ct, "-o", out_path, "--canonical")
    assert code == 1 and out == ""
    assert err == (f"flareseg: error: {oblique_ct}: oblique grid (12° from the body axes) cannot be made canonical "
                   "without resampling; convert without --canonical to keep its exact grid\n")
    assert not out_path.exists()


def test_an_oblique_scan_converts_with_its_rotation_and_says_so(capsys, oblique_ct, tmp_path):
    out_path = tmp_path / "out.nrrd"
    code, out, _ = _run(capsys, "convert", "-i", oblique_ct, "-o", out_path)
    assert code == 0 and "RAS (oblique 12°)" in out
    np.testing.assert_allclose(read_volume(out_path).geometry.direction_matrix,
                               read_volume(oblique_ct).geometry.direction_matrix, atol=1e-6)
    code, out, _ = _run(capsys, "info", oblique_ct)
    assert code == 0 and out.splitlines()[0].endswith("3x3x3 mm, RAS (oblique 12°)")


def test_canonical_reorients_an_axis_aligned_scan(capsys, data_dir, tmp_path):
    out_path = tmp_path / "out.nii.gz"
    code, out, _ = _run(capsys, "convert", "-i", data_dir / "ts_example" / "example_ct_sm.nii.gz", "-o", out_path,
                        "--canonical")
    assert code == 0 and out.rstrip().endswith("3x3x3 mm, LPS)")
    np.testing.assert_array_equal(read_volume(out_path).geometry.direction_matrix, np.eye(3))


def test_a_label_map_converts_only_with_force(capsys, data_dir, tmp_path):
    label_map = data_dir / "ts_example" / "example_seg.nii.gz"  # TotalSegmentator ids 0..117
    code, _, err = _run(capsys, "convert", "-i", label_map, "-o", tmp_path / "a.nii.gz")
    assert code == 1 and err.count("\n") == 1
    assert "(a label map?) (use --force if this really is a CT)" in err
    code, _, _ = _run(capsys, "convert", "-i", label_map, "-o", tmp_path / "a.nii.gz", "--force")
    assert code == 0
    code, out, _ = _run(capsys, "info", label_map)
    assert code == 0 and "not like a CT: only" in out


@pytest.fixture
def two_phases(data_dir, tmp_path):
    """10 real TCIA slices, and a copy of each 100 HU brighter with AcquisitionNumber 2; and the
    second phase's HU ``[z, y, x]`` as pydicom gives them."""
    files = sorted((data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct").iterdir())[30:40]
    folder = tmp_path / "phases"
    folder.mkdir()
    second = []
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.save_as(folder / f"a{i:02d}.dcm")
        phase = copy.deepcopy(ds)
        phase.SOPInstanceUID = phase.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        phase.AcquisitionNumber = 2
        phase.PixelData = (ds.pixel_array + 100).astype(np.uint16).tobytes()
        phase.save_as(folder / f"b{i:02d}.dcm")
        second.append((float(ds.ImagePositionPatient[2]), ds.pixel_array + 100 + float(ds.RescaleIntercept)))
    return folder, np.stack([hu for _, hu in sorted(second, key=lambda item: item[0])])


def test_acquisition_chooses_a_phase(capsys, two_phases, tmp_path):
    folder, second_hu = two_phases
    code, _, err = _run(capsys, "convert", "-i", folder, "-o", tmp_path / "ct.nii.gz")
    assert code == 1
    assert err == (f"flareseg: error: {folder}: holds 2 acquisitions over the same slice range (1: 10 slices, "
                   "AcquisitionNumber 1; 2: 10 slices, AcquisitionNumber 2); choose one with --acquisition N\n")
    code, _, _ = _run(capsys, "convert", "-i", folder, "-o", tmp_path / "ct.nii.gz", "--acquisition", 2)
    assert code == 0
    np.testing.assert_array_equal(read_volume(tmp_path / "ct.nii.gz").array, second_hu)
    code, out, _ = _run(capsys, "convert", "-i", folder, "-o", tmp_path / "ct.nii.gz", "--acquisition", 3)
    assert code == 1


def test_info_lists_the_acquisitions(capsys, two_phases):
    folder, _ = two_phases
    code, out, _ = _run(capsys, "info", folder)
    assert code == 0
    assert out.splitlines() == [
        f"{folder}: DICOM series of 2 acquisitions over the same slice range; show one with --acquisition N",
        "  1: 10 slices, AcquisitionNumber 1",
        "  2: 10 slices, AcquisitionNumber 2",
    ]
    code, out, _ = _run(capsys, "info", folder, "--acquisition", 2)
    assert code == 0 and out.startswith(f"{folder}: 512x512x10 voxels, 1.07x1.07x3 mm, LPS\n")


def test_a_repeated_dicom_file_is_one_warning_line(data_dir, tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", folder)
    shutil.copy(sorted(folder.iterdir())[3], folder / "again.dcm")
    out_path = tmp_path / "ct.nii.gz"
    result = subprocess.run([sys.executable, "-m", "flareseg", "convert", "-i", str(folder), "-o", str(out_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"flareseg: warning: {folder}: 1 duplicate DICOM file(s) read once (again.dcm = ")
    assert result.stderr.count("\n") == 1
    np.testing.assert_array_equal(read_volume(out_path).array,
                                  read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz").array)
