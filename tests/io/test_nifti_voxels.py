"""NIfTI voxels inflated by ISA-L: the same arrays as SimpleITK reads, on real scans and on headers
of every kind; files that need more than the stored bytes are left to ITK."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io import read_volume
from flareseg.io.nifti_voxels import nifti_gz_voxels

REAL = ["tcia_hcc_tace_seg_hcc006/ct.nii.gz", "tcia_pancreatic_ct_cbct_seg_cb001/label.nii.gz",
        "ts_example/example_ct.nii.gz", "ts_example/example_seg_v1_normal_fullct.nii.gz",
        "ts_example/extra_aorta_report_crop/ct_cropped.nii.gz"]  # int16, uint8, int32, float64 voxels


def _fast(path: Path) -> np.ndarray | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return nifti_gz_voxels(path, reader.GetPixelID(), reader.GetSize())


def _assert_read_as_itk_reads(path: Path) -> None:
    image = sitk.ReadImage(str(path))
    volume = read_volume(path)
    expected = sitk.GetArrayFromImage(image)
    assert volume.array.dtype == expected.dtype and volume.array.flags.writeable
    np.testing.assert_array_equal(volume.array, expected)
    assert volume.geometry.spacing_xyz_mm == image.GetSpacing() and volume.geometry.origin_lps_mm == image.GetOrigin()


@pytest.mark.parametrize("name", REAL)
def test_real_scans_and_masks_are_inflated_here_and_read_as_simpleitk_reads_them(data_dir, name):
    path = data_dir / name
    assert _fast(path) is not None
    _assert_read_as_itk_reads(path)


def _save(tmp_path: Path, name: str, image) -> Path:
    path = tmp_path / name
    nib.save(image, path)
    return path


@pytest.fixture
def voxels(rng):
    return rng.integers(-1000, 2000, (7, 9, 11)).astype(np.int16)


AFFINE = np.array([[0.8, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1]])


def test_big_endian_float_and_extended_headers_are_inflated_here(tmp_path, voxels):
    big = nib.Nifti1Image(voxels, AFFINE)
    big.header.set_data_dtype(">i2")
    extended = nib.Nifti1Image(voxels, AFFINE)
    extended.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"pushes the voxels further"))
    for name, image in (("big.nii.gz", big), ("float.nii.gz", nib.Nifti1Image(voxels.astype(np.float32), AFFINE)),
                        ("extended.nii.gz", extended)):
        path = _save(tmp_path, name, image)
        assert _fast(path) is not None, name
        _assert_read_as_itk_reads(path)


def test_scaled_and_four_dimensional_files_are_left_to_itk(tmp_path, voxels):
    scaled = nib.Nifti1Image(voxels, AFFINE)
    scaled.header.set_slope_inter(2.0, -1024.0)
    for name, image in (("scaled.nii.gz", scaled), ("4d.nii.gz", nib.Nifti1Image(voxels[..., None], AFFINE))):
        path = _save(tmp_path, name, image)
        assert _fast(path) is None, name
        _assert_read_as_itk_reads(path)
    assert read_volume(tmp_path / "scaled.nii.gz").array.max() == 2 * voxels.max() - 1024


def test_a_damaged_or_short_stream_is_an_error(tmp_path, voxels):
    path = _save(tmp_path, "ct.nii.gz", nib.Nifti1Image(voxels, AFFINE))
    data = path.read_bytes()
    size_xyz = voxels.shape  # nibabel's array is [x, y, z]
    assert nifti_gz_voxels(path, sitk.sitkInt16, size_xyz) is not None
    flipped, scrambled = bytearray(data), bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # a flipped byte in the compressed voxels
    scrambled[12:40] = b"\xff" * 28  # an invalid deflate block
    for damaged in (bytes(flipped), bytes(scrambled), data[: len(data) // 2]):
        path.write_bytes(damaged)
        with pytest.raises(InputError, match="damaged gzip stream"):
            nifti_gz_voxels(path, sitk.sitkInt16, size_xyz)


def test_analyze_headers_are_left_to_itk(tmp_path, voxels):
    path = _save(tmp_path, "ct.nii.gz", nib.Nifti1Image(voxels, AFFINE))
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[344:348] = b"\0\0\0\0"  # no NIfTI magic: an Analyze 7.5 header
    path.write_bytes(gzip.compress(bytes(data)))
    assert nifti_gz_voxels(path, sitk.sitkInt16, voxels.shape) is None
