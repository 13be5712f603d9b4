"""A DICOM series that is not one uniform stack of slices is refused in one line, not read as a
grid of the wrong spacing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from flareseg.errors import InputError
from flareseg.io import read_ct
from flareseg.io.read import check_slice_positions


@pytest.fixture
def series(tmp_path, data_dir):
    folder = tmp_path / "series"
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", folder)
    return folder


def test_the_real_series_reads(series):
    assert read_ct(series).array.shape[0] == 20


def test_a_slice_twice_is_refused(series):
    first = sorted(series.iterdir())[5]
    shutil.copy(first, series / "copy_of_one_slice.dcm")
    with pytest.raises(InputError, match="1 DICOM slice.*same position"):
        read_ct(series)


def test_a_missing_slice_is_refused(series):
    files = sorted(series.iterdir())
    positions = []
    import pydicom

    for path in files:
        positions.append(float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2]))
    middle = files[int(np.argsort(positions)[10])]  # the 11th slice along the axis
    middle.unlink()
    with pytest.raises(InputError, match="missing DICOM slices: a gap of 4 mm after slice 10 of 19"):
        read_ct(series)


def test_slice_rules_by_hand(tmp_path):
    axial = "1\\0\\0\\0\\1\\0"
    check_slice_positions(tmp_path, [(f"0\\0\\{z}", axial) for z in (0, 2, 4, 6)])  # uniform: fine
    check_slice_positions(tmp_path, [(None, None), (None, None)])  # nothing to check
    with pytest.raises(InputError, match="different orientations"):
        check_slice_positions(tmp_path, [("0\\0\\0", axial), ("0\\0\\2", "0\\1\\0\\0\\0\\1")])
    with pytest.raises(InputError, match="gap of 6 mm after slice 2 of 4"):
        check_slice_positions(tmp_path, [(f"0\\0\\{z}", axial) for z in (0, 2, 8, 10)])
    with pytest.raises(InputError, match="2 DICOM slice"):
        check_slice_positions(tmp_path, [(f"0\\0\\{z}", axial) for z in (0, 0, 2, 2, 4)])
