"""Truncated or damaged image files: NIfTI on read, and every written format in full."""

from __future__ import annotations

import gzip

import pytest

from flareseg.errors import InputError
from flareseg.io import read_volume, write_volume
from flareseg.io.integrity import check_nifti_complete, stored_voxel_bytes


@pytest.fixture
def small_ct(data_dir):
    return read_volume(data_dir / "ts_example" / "example_ct_sm.nii.gz")


def test_a_gzip_stream_without_its_trailer_is_damaged(data_dir, tmp_path):
    data = (data_dir / "ts_example" / "example_ct_sm.nii.gz").read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(data[:-8])  # every voxel, but no CRC and size
    with pytest.raises(InputError, match="damaged gzip stream"):
        check_nifti_complete(path)
    assert stored_voxel_bytes(path)[1] is False


def test_a_gzip_stream_whose_checksum_fails_is_damaged(data_dir, tmp_path):
    data = bytearray((data_dir / "ts_example" / "example_ct_sm.nii.gz").read_bytes())
    data[-8] ^= 0xFF  # the CRC; the recorded size still matches, so the quick check passes
    path = tmp_path / "crc.nii.gz"
    path.write_bytes(bytes(data))
    check_nifti_complete(path)
    assert stored_voxel_bytes(path)[1] is False


def test_multi_member_gzip_and_trailing_zeros_are_intact(data_dir, tmp_path, small_ct):
    raw = gzip.decompress((data_dir / "ts_example" / "example_ct_sm.nii.gz").read_bytes())
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(gzip.compress(raw[:100_000]) + gzip.compress(raw[100_000:]) + bytes(16))
    check_nifti_complete(path)
    assert stored_voxel_bytes(path) == (small_ct.array.nbytes, True)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_stored_voxel_bytes_of_written_and_truncated_files(small_ct, tmp_path, suffix):
    path = write_volume(small_ct, tmp_path / f"ct{suffix}")
    assert stored_voxel_bytes(path) == (small_ct.array.nbytes, True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    stored, intact = stored_voxel_bytes(path)
    assert stored < small_ct.array.nbytes and intact is (suffix == ".nii")
    path.write_bytes(data[:50])  # not even the header
    assert stored_voxel_bytes(path) == (0, False)
