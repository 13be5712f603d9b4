"""Reading real CT: DICOM series, NIfTI, NRRD; and the errors for bad inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io import read_ct, read_geometry, read_volume


def test_dicom_series_equals_reference_nifti(data_dir):
    series = read_ct(data_dir / "ts_example" / "example_ct_dicom")
    reference = read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    assert series.array.shape == (20, 512, 512)
    np.testing.assert_array_equal(series.array, reference.array)
    assert series.geometry.matches(reference.geometry, tolerance=1e-4)


def test_dicom_slices_are_ordered_by_position_not_file_name(data_dir, tmp_path):
    source = sorted((data_dir / "ts_example" / "example_ct_dicom").iterdir())
    # Name the files so that alphabetical order is the reverse of slice order.
    for i, path in enumerate(source):
        shutil.copy(path, tmp_path / f"slice_{len(source) - i:03d}.dcm")
    shuffled = read_ct(tmp_path)
    reference = read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    np.testing.assert_array_equal(shuffled.array, reference.array)
    assert shuffled.geometry.matches(reference.geometry)


def test_dicom_folder_with_a_seg_beside_the_ct_reads_the_ct(data_dir):
    # dcmqi_ct3slice holds 3 CT slices and a one-file DICOM SEG object (another series, not CT).
    volume = read_ct(data_dir / "dcmqi_ct3slice")
    assert volume.array.shape == (3, 512, 512)
    nrrd_label = read_volume(data_dir / "dcmqi_ct3slice" / "liver_seg.nrrd")
    assert volume.geometry.matches(nrrd_label.geometry, tolerance=1e-3)


def test_tcia_dicom_matches_its_nifti(data_dir):
    folder = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    series = read_ct(folder / "dicom_ct")
    reference = read_volume(folder / "ct.nii.gz")
    np.testing.assert_array_equal(series.array, reference.array)
    assert series.geometry.matches(reference.geometry)


def test_nrrd_reads_with_geometry(data_dir):
    volume = read_ct(data_dir / "pyradiomics_lung" / "lung1_image.nrrd")
    assert volume.array.shape == (48, 512, 512)
    assert volume.geometry.spacing_xyz_mm == pytest.approx((0.5703125, 0.5703125, 5.0))
    assert volume.geometry.orientation_code() == "LPS"


def test_read_geometry_matches_full_read(data_dir):
    path = data_dir / "ts_example" / "example_ct.nii.gz"
    assert read_geometry(path) == read_volume(path).geometry
    assert read_geometry(path).orientation_code() == "RAS"


def test_geometry_affine_equals_nibabel(data_dir):
    nib = pytest.importorskip("nibabel")
    for name in ["example_ct.nii.gz", "example_ct_dicom.nii.gz", "flare_labels_dicom_from_v2fast.nii.gz"]:
        path = data_dir / "ts_example" / name
        np.testing.assert_allclose(read_geometry(path).affine_ras(), nib.load(path).affine, atol=1e-4)


@pytest.fixture
def bad_inputs(tmp_path, data_dir):
    """Paths of the bad inputs a user may pass, keyed by what is wrong with them."""
    paths = {"missing": tmp_path / "missing.nii.gz"}
    paths["empty"] = tmp_path / "empty.nii.gz"
    paths["empty"].write_bytes(b"")
    paths["truncated"] = tmp_path / "truncated.nii.gz"
    paths["truncated"].write_bytes((data_dir / "ts_example" / "example_ct.nii.gz").read_bytes()[:300_000])
    paths["text"] = tmp_path / "notes.nii.gz"
    paths["text"].write_text("this is not an image\n")
    paths["2d"] = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((32, 32), -500, np.int16)), str(paths["2d"]))
    paths["4d"] = tmp_path / "series.nii.gz"
    frames = [sitk.GetImageFromArray(np.full((4, 5, 6), v, np.int16)) for v in (-1000, 0, 800)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(paths["4d"]))
    paths["no_dicom"] = tmp_path / "no_dicom"
    paths["no_dicom"].mkdir()
    (paths["no_dicom"] / "readme.txt").write_text("no DICOM here")
    paths["label_map"] = tmp_path / "mask.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6) % 14), str(paths["label_map"]))
    return paths


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("truncated", "truncated"),
        ("text", "not a gzip"),
        ("2d", "2D"),
        ("4d", "4D"),
        ("no_dicom", "no DICOM series"),
        ("label_map", "not a CT"),
    ],
)
def test_bad_input_raises_one_line_input_error(bad_inputs, kind, message):
    with pytest.raises(InputError) as error:
        read_ct(bad_inputs[kind])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_truncated_uncompressed_nifti_is_detected(tmp_path, data_dir):
    import gzip

    raw = gzip.decompress((data_dir / "ts_example" / "example_ct_sm.nii.gz").read_bytes())
    path = tmp_path / "cut.nii"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_volume(path)


def test_multi_member_gzip_is_not_mistaken_for_truncation(tmp_path, data_dir):
    import gzip

    source = data_dir / "ts_example" / "example_ct_sm.nii.gz"
    raw = gzip.decompress(source.read_bytes())
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(gzip.compress(raw[:100_000]) + gzip.compress(raw[100_000:]))
    np.testing.assert_array_equal(read_volume(path).array, read_volume(source).array)
