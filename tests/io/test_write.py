"""Writing: exact geometry round trips in every format, and atomic outputs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io import read_ct, read_volume, write_labelmap, write_volume

nib = pytest.importorskip("nibabel")

REAL_SCANS = [
    "ts_example/example_ct.nii.gz",  # RAS
    "ts_example/example_ct_dicom.nii.gz",  # LPS
    "ts_example/extra_aorta_report_crop/ct_cropped.nii.gz",  # LPS, 1.5 mm
    "ts_example/flare_labels_dicom_from_v2fast.nii.gz",  # LAS label map
    "pyradiomics_lung/lung1_image.nrrd",
    "dcmqi_ct3slice/liver_seg.nrrd",
]


@pytest.mark.parametrize("source", REAL_SCANS)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_voxels_and_geometry(data_dir, tmp_path, source, suffix):
    volume = read_volume(data_dir / source)
    out = write_volume(volume, tmp_path / f"copy{suffix}")
    again = read_volume(out)
    np.testing.assert_array_equal(again.array, volume.array)
    assert again.array.dtype == volume.array.dtype
    np.testing.assert_allclose(again.geometry.index_to_lps_matrix(), volume.geometry.index_to_lps_matrix(), atol=1e-4)


@pytest.mark.parametrize("source", [s for s in REAL_SCANS if ".nii" in s])
def test_nifti_mask_affine_equals_input_affine(data_dir, tmp_path, source, rng):
    """A prediction-shaped uint8 array written with the input geometry overlays the input."""
    path = data_dir / source
    ct = read_volume(path)
    prediction = rng.integers(0, 15, size=ct.array.shape, dtype=np.uint8)
    out = write_labelmap(prediction, ct.geometry, tmp_path / "mask.nii.gz")
    written, original = nib.load(out), nib.load(path)
    assert written.shape == original.shape
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(original.affine)
    # Voxel [i, j, k] of the mask is voxel [i, j, k] of the prediction (nibabel order is x, y, z).
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), prediction.transpose(2, 1, 0))


def test_dicom_input_mask_overlays_reference_conversion(data_dir, tmp_path):
    ct = read_ct(data_dir / "ts_example" / "example_ct_dicom")
    out = write_labelmap(np.zeros(ct.array.shape, np.uint8), ct.geometry, tmp_path / "mask.nii.gz")
    reference = nib.load(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    np.testing.assert_allclose(nib.load(out).affine, reference.affine, atol=1e-4)


def test_failed_write_leaves_no_file_and_keeps_previous_output(data_dir, tmp_path, monkeypatch):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    target = tmp_path / "mask.nii.gz"
    target.write_bytes(b"previous result")

    def write_then_fail(image, path, useCompression=False):
        with open(path, "wb") as partial:
            partial.write(b"half an image")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", write_then_fail)
    with pytest.raises(InputError, match="cannot write"):
        write_labelmap(np.zeros(ct.array.shape, np.uint8), ct.geometry, target)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]


def test_interrupted_write_leaves_no_file(data_dir, tmp_path, monkeypatch):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")

    def interrupted(image, path, useCompression=False):
        with open(path, "wb") as partial:
            partial.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(sitk, "WriteImage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_labelmap(np.zeros(ct.array.shape, np.uint8), ct.geometry, tmp_path / "mask.nii.gz")
    assert not list(tmp_path.iterdir())


def test_labelmap_values_must_fit_uint8(data_dir, tmp_path):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    with pytest.raises(ValueError, match="uint8"):
        write_labelmap(np.full(ct.array.shape, 300), ct.geometry, tmp_path / "mask.nii.gz")
    assert not list(tmp_path.iterdir())


def test_unsupported_output_type_is_an_input_error(data_dir, tmp_path):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    with pytest.raises(InputError, match="cannot write"):
        write_volume(ct, tmp_path / "mask.png")
