"""A DICOM folder is read as one CT volume or refused in one line: repeated files are read once,
acquisitions stored as one series are told apart, several series are refused, and a series that is
not one uniform stack of slices is never read as a grid of the wrong spacing.

Test folders are real series (TotalSegmentator's JPEG 2000 series; 20 slices of the TCIA series,
uncompressed) with one defect made by hand with pydicom."""

from __future__ import annotations

import copy
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from flareseg.errors import InputError
from flareseg.io import DicomAcquisition, DicomInputWarning, dicom_acquisitions, read_ct, read_volume
from flareseg.io.dicom import check_slice_positions

SHIFT_HU = 100  # added to the second acquisition's voxels, so that a test sees which one it read


@pytest.fixture
def series(tmp_path, data_dir):
    folder = tmp_path / "series"
    shutil.copytree(data_dir / "ts_example" / "example_ct_dicom", folder)
    return folder


@pytest.fixture
def tcia(data_dir):
    """20 contiguous slices (3 mm apart) of the TCIA series, as pydicom datasets in file order."""
    files = sorted((data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct").iterdir())
    datasets = sorted((pydicom.dcmread(f) for f in files), key=lambda ds: float(ds.ImagePositionPatient[2]))
    return datasets[30:50]


def _hu(datasets) -> np.ndarray:
    """The slices' HU ``[z, y, x]``, from pydicom, in increasing z (the reader's order for axial LPS)."""
    ordered = sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in ordered])


def _copy(ds, **changes):
    """A copy of a slice as another instance (new SOPInstanceUID), with ``changes`` to its tags."""
    new = copy.deepcopy(ds)
    new.SOPInstanceUID = new.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(new, keyword, value)
    return new


def _shifted(ds, hu: int = SHIFT_HU, **changes):
    """A copy whose voxels are ``hu`` brighter (another contrast phase of the same slice)."""
    new = _copy(ds, **changes)
    new.PixelData = (ds.pixel_array.astype(np.uint16) + hu).astype(np.uint16).tobytes()
    return new


def _write(folder, datasets):
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        ds.save_as(folder / f"im{i:04d}.dcm", enforce_file_format=True)
    return folder


def _later(ds, keyword: str, seconds: float) -> str:
    """A DICOM TM ``seconds`` after the slice's own."""
    text = str(ds.get(keyword))
    total = int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:]) + seconds
    return f"{int(total // 3600):02d}{int(total // 60 % 60):02d}{total % 60:09.6f}"


# ---- the real series, and slices missing or repeated ----------------------------------------------


def test_the_real_series_reads(series):
    assert read_ct(series).array.shape[0] == 20


def test_the_same_file_twice_is_read_once_with_a_warning(series):
    reference = read_ct(series)
    first = sorted(series.iterdir())[5]
    shutil.copy(first, series / "copy_of_one_slice.dcm")
    with pytest.warns(DicomInputWarning, match=r"1 duplicate DICOM file\(s\) read once \(copy_of_one_slice.dcm = "):
        volume = read_ct(series)
    np.testing.assert_array_equal(volume.array, reference.array)
    assert volume.geometry == reference.geometry


def test_three_repeated_files_are_named_in_one_line(series):
    for i, path in enumerate(sorted(series.iterdir())[:3]):
        shutil.copy(path, series / f"again_{i}.dcm")
    with pytest.warns(DicomInputWarning) as record:
        assert read_ct(series).array.shape[0] == 20
    [warning] = record
    assert "3 duplicate DICOM file(s)" in str(warning.message) and "\n" not in str(warning.message)


def test_two_different_slices_at_one_position_are_refused(tmp_path, tcia):
    folder = _write(tmp_path / "s", [*tcia, _shifted(tcia[7])])
    with pytest.raises(InputError, match="1 DICOM slice.*same position as another, not told apart") as error:
        read_ct(folder)
    assert "\n" not in str(error.value)


def test_a_missing_slice_is_refused(series):
    files = sorted(series.iterdir())
    positions = [float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2]) for path in files]
    middle = files[int(np.argsort(positions)[10])]  # the 11th slice along the axis
    middle.unlink()
    with pytest.raises(InputError, match="missing DICOM slices: a gap of 4 mm after slice 10 of 19"):
        read_ct(series)


def test_slice_rules_by_hand(tmp_path):
    axial = "1\\0\\0\\0\\1\\0"
    check_slice_positions(tmp_path, [(f"0\\0\\{z}", axial) for z in (0, 2, 4, 6)])  # uniform: fine
    check_slice_positions(tmp_path, [((0, 0, z), (1, 0, 0, 0, 1, 0)) for z in (0, 2, 4, 6)])  # as numbers
    check_slice_positions(tmp_path, [(None, None), (None, None)])  # nothing to check
    with pytest.raises(InputError, match="different orientations"):
        check_slice_positions(tmp_path, [("0\\0\\0", axial), ("0\\0\\2", "0\\1\\0\\0\\0\\1")])
    with pytest.raises(InputError, match="gap of 6 mm after slice 2 of 4"):
        check_slice_positions(tmp_path, [(f"0\\0\\{z}", axial) for z in (0, 2, 8, 10)])
    with pytest.raises(InputError, match="2 DICOM slice"):
        check_slice_positions(tmp_path, [(f"0\\0\\{z}", axial) for z in (0, 0, 2, 2, 4)])


# ---- two acquisitions in one series ----------------------------------------------------------------


@pytest.mark.parametrize("told_apart_by", ["AcquisitionNumber", "AcquisitionTime", "ContentTime"])
def test_two_acquisitions_at_the_same_positions_are_listed_and_read_one_at_a_time(tmp_path, tcia, told_apart_by):
    second = []
    for ds in tcia:  # the TCIA slices all have AcquisitionNumber 1, and times that vary by slice
        changes = {"AcquisitionNumber": 2} if told_apart_by == "AcquisitionNumber" else {}
        if told_apart_by != "AcquisitionNumber":
            changes[told_apart_by] = _later(ds, told_apart_by, 40.0)  # a second phase, 40 s later
        second.append(_shifted(ds, **changes))
    if told_apart_by == "ContentTime":
        for ds in [*tcia, *second]:
            del ds.AcquisitionTime
    folder = _write(tmp_path / "s", [*second[::-1], *tcia])  # file order is not acquisition order

    with pytest.raises(InputError, match=rf"holds 2 acquisitions over the same slice range \(1: 20 slices, "
                                         rf"{told_apart_by} .*; 2: 20 slices, {told_apart_by} .*\); "
                                         r"choose one with --acquisition N$"):
        read_ct(folder)
    acquisitions = dicom_acquisitions(folder)
    assert [(a.number, a.slices) for a in acquisitions] == [(1, 20), (2, 20)]
    assert all(a.label.startswith(told_apart_by) for a in acquisitions)
    np.testing.assert_array_equal(read_ct(folder, acquisition=1).array, _hu(tcia))
    np.testing.assert_array_equal(read_ct(folder, acquisition=2).array, _hu(tcia) + SHIFT_HU)
    assert read_ct(folder, acquisition=2).geometry == read_ct(folder, acquisition=1).geometry
    with pytest.raises(InputError, match=r"no acquisition 3; the series holds 2 \(1: 20 slices"):
        read_volume(folder, acquisition=3)


def test_acquisition_numbers_are_shown_as_written(tmp_path, tcia):
    folder = _write(tmp_path / "s", [*[_copy(ds, AcquisitionNumber=7) for ds in tcia],
                                     *[_shifted(ds, AcquisitionNumber=3) for ds in tcia]])
    assert dicom_acquisitions(folder) == [DicomAcquisition(1, 20, "AcquisitionNumber 3"),
                                          DicomAcquisition(2, 20, "AcquisitionNumber 7")]
    np.testing.assert_array_equal(read_ct(folder, acquisition=1).array, _hu(tcia) + SHIFT_HU)


def test_interleaved_acquisitions_are_not_read_as_one_finer_grid(tmp_path, tcia):
    """A second phase 1.5 mm off the first: no two slices share a position, but read as one series
    it would be a 1.5 mm grid that alternates between phases."""
    second = []
    for ds in tcia:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        second.append(_shifted(ds, AcquisitionNumber=2, ImagePositionPatient=[x, y, z + 1.5]))
    folder = _write(tmp_path / "s", [*tcia, *second])
    with pytest.raises(InputError, match=r"holds 2 acquisitions .*\(1: 20 slices, AcquisitionNumber 1; "
                                         r"2: 20 slices, AcquisitionNumber 2\)"):
        read_ct(folder)
    np.testing.assert_array_equal(read_ct(folder, acquisition=2).array, _hu(tcia) + SHIFT_HU)


def test_adjacent_blocks_with_their_own_acquisition_numbers_are_one_volume(tmp_path, tcia):
    """E.g. one acquisition number per rotation of an axial scan: blocks along the body, no overlap."""
    datasets = [_copy(ds, AcquisitionNumber=1 + i // 5) for i, ds in enumerate(tcia)]
    folder = _write(tmp_path / "s", datasets)
    assert dicom_acquisitions(folder) == [DicomAcquisition(1, 20)]
    np.testing.assert_array_equal(read_ct(folder).array, _hu(tcia))
    np.testing.assert_array_equal(read_ct(folder, acquisition=1).array, _hu(tcia))


def test_acquisition_of_an_image_file_or_a_single_acquisition_series(data_dir, series):
    with pytest.raises(InputError, match="acquisition 1 chosen, but this is an image file"):
        read_volume(data_dir / "ts_example" / "example_ct.nii.gz", acquisition=1)
    with pytest.raises(InputError, match=r"no acquisition 2; the series holds 1 \(1: 20 slices\)"):
        read_ct(series, acquisition=2)


# ---- several series in one folder ------------------------------------------------------------------


def test_two_ct_series_in_one_folder_are_refused(tmp_path, tcia):
    other = generate_uid()
    datasets = [*tcia, *[_copy(ds, SeriesInstanceUID=other, SeriesNumber=305, SeriesDescription="thin")
                         for ds in tcia[:12]]]
    folder = _write(tmp_path / "s", datasets)
    message = (r"holds 2 CT series \(series 201 'PANCREAS DI, iDose \(3\)': 20 slices; series 305 'thin': "
               r"12 slices\); give one series per folder$")
    with pytest.raises(InputError, match=message):
        read_ct(folder)
    with pytest.raises(InputError, match=message):
        dicom_acquisitions(folder)


def test_a_localizer_or_a_segmentation_beside_the_ct_is_ignored(tmp_path, tcia, data_dir):
    localizer = _copy(tcia[0], SeriesInstanceUID=generate_uid(), SeriesNumber=1,
                      ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    folder = _write(tmp_path / "s", [*tcia, localizer])
    shutil.copy(data_dir / "dcmqi_ct3slice" / "liver_seg_dicomseg.dcm", folder)  # a DICOM SEG: another series
    (folder / "README.txt").write_text("not DICOM")
    np.testing.assert_array_equal(read_ct(folder).array, _hu(tcia))


def test_a_series_of_another_modality_is_refused(tmp_path, tcia):
    folder = _write(tmp_path / "s", [_copy(ds, Modality="MR") for ds in tcia])
    with pytest.raises(InputError, match="DICOM series of modality MR, not CT"):
        read_ct(folder)


def test_reading_a_clean_folder_warns_nothing(series):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ct(series)
