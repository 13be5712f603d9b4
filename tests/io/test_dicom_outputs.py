"""DICOM-SEG and RTSTRUCT outputs on real CT series, read back by independent paths.

The SEG is read with pydicom, frame by frame, each frame placed by its position; the RTSTRUCT
with pydicom, its contours filled with matplotlib at voxel centres, and with flareseg's own
reader. Slices are ordered here from their headers, not by the writers' code. Both round trips
are exact: contour vertices lie halfway between voxel centres, so no centre is nearer than 0.35
voxels to a contour and rasterising at centres recovers every voxel (Dice 1.0, no tolerance).
"""

from __future__ import annotations

import dataclasses
import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as PolygonPath
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

import flareseg
from flareseg.datasets import dicom_import as di
from flareseg.datasets import structure_mapping as sm
from flareseg.datasets.rtstruct import rtstruct_masks
from flareseg.errors import InputError
from flareseg.inference.predict import predict
from flareseg.io import Volume, read_ct, read_volume
from flareseg.io.dicom_codes import CLASS_CODES
from flareseg.io.dicom_seg_out import write_dicom_seg
from flareseg.io.rtstruct_out import write_rtstruct
from flareseg.labels import BY_ID, BY_NAME
from flareseg.preprocessing.orientation import align_to

_ORGAN = codes.SCT.AnatomicalStructure
#: Expected (category, type, laterality) per FLARE name, from pydicom's dictionary (CIDs 7150, 7151, 244).
EXPECTED_CODES = {
    "liver": (_ORGAN, codes.SCT.Liver, None),
    "right_kidney": (_ORGAN, codes.SCT.Kidney, codes.SCT.Right),
    "spleen": (_ORGAN, codes.SCT.Spleen, None),
    "pancreas": (_ORGAN, codes.SCT.Pancreas, None),
    "aorta": (_ORGAN, codes.SCT.Aorta, None),
    "inferior_vena_cava": (_ORGAN, codes.SCT.InferiorVenaCava, None),
    "right_adrenal_gland": (_ORGAN, codes.SCT.AdrenalGland, codes.SCT.Right),
    "left_adrenal_gland": (_ORGAN, codes.SCT.AdrenalGland, codes.SCT.Left),
    "gallbladder": (_ORGAN, codes.SCT.Gallbladder, None),
    "esophagus": (_ORGAN, codes.SCT.Esophagus, None),
    "stomach": (_ORGAN, codes.SCT.Stomach, None),
    "duodenum": (_ORGAN, codes.SCT.Duodenum, None),
    "left_kidney": (_ORGAN, codes.SCT.Kidney, codes.SCT.Left),
    "lesion": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, None),
}
LESION_SLICES = range(40, 45)


# ----------------------------------------------------------------------------- independent readers


def _ct_slices(folder):
    """The CT's slice headers, sorted along the slice normal (as the mask's z axis runs)."""
    slices = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(folder.iterdir())]
    normal = np.cross(*np.reshape(np.asarray(slices[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(slices, key=lambda s: float(normal @ np.asarray(s.ImagePositionPatient, float)))


def _read_seg(path, slices):
    """FLARE ids ``[z, y, x]`` from a SEG: each frame put on the CT slice at its position."""
    seg = pydicom.dcmread(path)
    class_of = {int(s.SegmentNumber): BY_NAME[s.SegmentLabel].id for s in seg.SegmentSequence}
    positions = np.array([s.ImagePositionPatient for s in slices], float)
    labels = np.zeros((len(slices), int(seg.Rows), int(seg.Columns)), np.uint8)
    for frame, item in zip(seg.pixel_array.reshape(-1, seg.Rows, seg.Columns), seg.PerFrameFunctionalGroupsSequence):
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        (k,) = np.flatnonzero(np.abs(positions - position).max(axis=1) < 1e-3)
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert source == slices[k].SOPInstanceUID
        assert not (labels[k][frame > 0]).any(), "segments overlap"
        labels[k][frame > 0] = class_of[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
    return seg, labels


def _fill_rtstruct(dataset, slices):
    """FLARE ids ``[z, y, x]`` from an RTSTRUCT: contours filled with matplotlib, even-odd per slice."""
    by_uid = {s.SOPInstanceUID: k for k, s in enumerate(slices)}
    class_of = {int(r.ROINumber): BY_NAME[r.ROIName].id for r in dataset.StructureSetROISequence}
    rows, columns = int(slices[0].Rows), int(slices[0].Columns)
    labels = np.zeros((len(slices), rows, columns), np.uint8)
    for item in dataset.ROIContourSequence:
        inside = np.zeros(labels.shape, bool)
        for contour in item.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            k = by_uid[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            inside[k] ^= _polygon_pixels(np.reshape(np.asarray(contour.ContourData, float), (-1, 3)), slices[k])
        assert not (labels[inside]).any(), "structures overlap"
        labels[inside] = class_of[int(item.ReferencedROINumber)]
    return labels


def _polygon_pixels(points_lps, header):
    """Pixels of ``header``'s slice whose centres lie inside a contour drawn on it."""
    orientation = np.reshape(np.asarray(header.ImageOrientationPatient, float), (2, 3))
    offset = points_lps - np.asarray(header.ImagePositionPatient, float)
    assert np.abs(offset @ np.cross(*orientation)).max() < 1e-3, "contour off its referenced slice"
    row_mm, column_mm = (float(v) for v in header.PixelSpacing)
    xy = np.c_[offset @ orientation[0] / column_mm, offset @ orientation[1] / row_mm]
    shape_xy = (int(header.Columns), int(header.Rows))
    low, high = np.maximum(np.floor(xy.min(0)), 0).astype(int), np.minimum(np.ceil(xy.max(0)), shape_xy).astype(int)
    ys, xs = np.mgrid[low[1] : high[1], low[0] : high[0]]
    inside = PolygonPath(xy).contains_points(np.c_[xs.ravel(), ys.ravel()]).reshape(xs.shape)
    pixels = np.zeros((int(header.Rows), int(header.Columns)), bool)
    pixels[ys[inside], xs[inside]] = True
    return pixels


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cb001(data_dir, tmp_path_factory):
    """The 79-slice CB001 series, the bundled model's mask of it plus a lesion ring with an island
    in its hole, and the SEG and RTSTRUCT written from them."""
    folder = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct"
    ct = read_ct(folder)
    labels = predict(folder).array.copy()
    rows, columns = np.ogrid[:512, :512]
    radius = np.hypot(rows - 300, columns - 200)
    for k in LESION_SLICES:
        labels[k][(radius >= 5) & (radius < 12) | (radius < 2.5)] = BY_NAME["lesion"].id
    mask = Volume(labels, ct.geometry)
    out = tmp_path_factory.mktemp("cb001")
    seg = write_dicom_seg(mask, folder, out / "seg.dcm")
    rtstruct = write_rtstruct(mask, folder, out / "rtstruct.dcm")
    return folder, mask, _ct_slices(folder), seg, rtstruct


@pytest.fixture(scope="module")
def ts_series(data_dir, tmp_path_factory):
    """The 20-slice ts_example series with the UIDs its anonymisation blanked filled in, and its
    TotalSegmentator label map (FLARE ids) on its grid."""
    source = data_dir / "ts_example" / "example_ct_dicom"
    folder = tmp_path_factory.mktemp("ts") / "dicom"
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    for path in sorted(source.iterdir()):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.save_as(folder / path.name)
    ct = read_ct(folder)
    labels = align_to(read_volume(data_dir / "ts_example" / "flare_labels_dicom_from_v2fast.nii.gz"), ct.geometry)
    return source, folder, Volume(labels.array.astype(np.uint8), ct.geometry)


# ----------------------------------------------------------------------------- DICOM-SEG


def test_seg_holds_the_mask_voxel_for_voxel_on_the_source_slices(cb001):
    _, mask, slices, seg_path, _ = cb001
    seg, labels = _read_seg(seg_path, slices)
    np.testing.assert_array_equal(labels, mask.array)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == slices[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == slices[0].FrameOfReferenceUID
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == slices[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == {s.SOPInstanceUID for s in slices}


def test_seg_segments_are_named_and_coded_per_flare_class(cb001):
    _, mask, _, seg_path, _ = cb001
    seg = hd.seg.segread(seg_path)  # highdicom parses it as a valid Segmentation
    present = [int(v) for v in np.unique(mask.array) if v]
    names = [s.SegmentLabel for s in seg.SegmentSequence]
    assert names == [name for name in EXPECTED_CODES if BY_NAME[name].id in present]
    assert {"right_kidney", "left_kidney", "right_adrenal_gland", "left_adrenal_gland", "lesion"} <= set(names)
    for segment in seg.SegmentSequence:
        category, kind, laterality = EXPECTED_CODES[segment.SegmentLabel]
        assert _code(segment.SegmentedPropertyCategoryCodeSequence[0]) == _code(category)
        type_item = segment.SegmentedPropertyTypeCodeSequence[0]
        assert _code(type_item) == _code(kind)
        modifiers = [_code(m) for m in type_item.get("SegmentedPropertyTypeModifierCodeSequence", [])]
        assert modifiers == ([_code(laterality)] if laterality else [])
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (segment.SegmentAlgorithmType, algorithm.AlgorithmName) == ("AUTOMATIC", "flareseg")
        assert algorithm.AlgorithmVersion == flareseg.__version__
    targets = sm.resolve_targets(di.list_structures(seg, di.SEG))  # flareseg imports it back by name
    assert targets == [(name,) for name in names]


def test_every_flare_class_is_coded_from_the_segmentation_context_groups():
    assert set(CLASS_CODES) == set(BY_ID)
    for class_id, coding in CLASS_CODES.items():
        assert (coding.category, coding.type, coding.modifier) == EXPECTED_CODES[BY_ID[class_id].name]
        assert coding.category in codes.cid7150 and coding.type in codes.cid7151  # categories, types
        assert coding.modifier is None or coding.modifier in codes.cid244  # laterality
        assert len(coding.rgb) == 3 and all(0 <= c <= 255 for c in coding.rgb)


def _code(item):
    """``(value, scheme)`` of a pydicom Code or of a code sequence item."""
    if isinstance(item, Code):
        return item.value, item.scheme_designator
    return item.CodeValue, item.CodingSchemeDesignator


# ----------------------------------------------------------------------------- RTSTRUCT


def test_rtstruct_contours_fill_back_to_the_mask(cb001):
    _, mask, slices, _, rtstruct_path = cb001
    dataset = pydicom.dcmread(rtstruct_path)
    np.testing.assert_array_equal(_fill_rtstruct(dataset, slices), mask.array)  # matplotlib, voxel centres
    numbers = [int(r.ROINumber) for r in dataset.StructureSetROISequence]
    for number, read in rtstruct_masks(dataset, mask.geometry, numbers).items():  # flareseg's training reader
        np.testing.assert_array_equal(read.voxels, np.flatnonzero(mask.array == number))
    lesion = next(i for i in dataset.ROIContourSequence if i.ReferencedROINumber == BY_NAME["lesion"].id)
    per_slice = [c.ContourImageSequence[0].ReferencedSOPInstanceUID for c in lesion.ContourSequence]
    assert [per_slice.count(slices[k].SOPInstanceUID) for k in LESION_SLICES] == [3] * len(LESION_SLICES)


def test_rtstruct_references_the_source_series_and_names_the_classes(cb001):
    _, mask, slices, _, rtstruct_path = cb001
    dataset = pydicom.dcmread(rtstruct_path)
    assert dataset.Modality == "RTSTRUCT" and dataset.SOPClassUID == pydicom.uid.RTStructureSetStorage
    assert dataset.StudyInstanceUID == slices[0].StudyInstanceUID
    (frame,) = dataset.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == slices[0].FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == slices[0].SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == [s.SOPInstanceUID for s in slices]
    present = [int(v) for v in np.unique(mask.array) if v]
    rois = dataset.StructureSetROISequence
    expected = [(BY_NAME[name].id, name) for name in EXPECTED_CODES if BY_NAME[name].id in present]
    assert [(int(r.ROINumber), r.ROIName) for r in rois] == expected
    assert all(r.ReferencedFrameOfReferenceUID == slices[0].FrameOfReferenceUID for r in rois)
    assert all(len(i.ROIDisplayColor) == 3 for i in dataset.ROIContourSequence)
    targets = sm.resolve_targets(di.list_structures(dataset, di.RTSTRUCT))
    assert targets == [(r.ROIName,) for r in rois]


# ----------------------------------------------------------------------------- a second series


def test_both_outputs_on_the_ts_example_series(ts_series, tmp_path):
    source, folder, mask = ts_series
    with pytest.raises(InputError, match=r"without StudyInstanceUID, SeriesInstanceUID.*SOPInstanceUID"):
        write_dicom_seg(mask, source, tmp_path / "seg.dcm")  # the shared copy's UIDs are blank
    slices = _ct_slices(folder)
    _, labels = _read_seg(write_dicom_seg(mask, folder, tmp_path / "seg.dcm"), slices)
    np.testing.assert_array_equal(labels, mask.array)
    rtstruct = pydicom.dcmread(write_rtstruct(mask, folder, tmp_path / "rtstruct.dcm"))
    np.testing.assert_array_equal(_fill_rtstruct(rtstruct, slices), mask.array)
    assert sorted(tmp_path.iterdir()) == [tmp_path / "rtstruct.dcm", tmp_path / "seg.dcm"]


def test_both_outputs_on_an_oblique_series(ts_series, tmp_path):
    """The ts_example slices tilted by 20 degrees about the patient's left-right axis."""
    _, folder, mask = ts_series
    oblique = tmp_path / "oblique"
    oblique.mkdir()
    angle = np.radians(20.0)
    row, column = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(angle), np.sin(angle)])
    for k, header in enumerate(_ct_slices(folder)):
        dataset = pydicom.dcmread(header.filename)
        dataset.ImageOrientationPatient = [*row, *column]
        dataset.ImagePositionPatient = list(np.array([-250.0, -240.0, -800.0]) + 2.0 * k * np.cross(row, column))
        dataset.save_as(oblique / f"{k:02d}.dcm")
    tilted = Volume(mask.array, read_ct(oblique).geometry)
    slices = _ct_slices(oblique)
    _, labels = _read_seg(write_dicom_seg(tilted, oblique, tmp_path / "seg.dcm"), slices)
    np.testing.assert_array_equal(labels, mask.array)
    rtstruct = pydicom.dcmread(write_rtstruct(tilted, oblique, tmp_path / "rtstruct.dcm"))
    np.testing.assert_array_equal(_fill_rtstruct(rtstruct, slices), mask.array)


def test_other_files_beside_the_series_are_passed_over_but_a_second_acquisition_is_refused(ts_series, data_dir,
                                                                                           tmp_path):
    _, folder, mask = ts_series
    series = tmp_path / "series"
    shutil.copytree(folder, series)
    first = sorted(series.iterdir())[0]
    shutil.copy(first, series / "the_same_slice_again")
    shutil.copy(data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "rtstruct.dcm", series)
    (series / "notes.txt").write_text("not DICOM")
    labels = np.zeros_like(mask.array)
    labels[10, 250, 250] = BY_NAME["spleen"].id
    small = Volume(labels, mask.geometry)
    seg = pydicom.dcmread(write_dicom_seg(small, series, tmp_path / "seg.dcm"))
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert sorted(i.ReferencedSOPInstanceUID for i in referenced) == sorted(s.SOPInstanceUID for s in _ct_slices(folder))
    other = pydicom.dcmread(first)
    other.SOPInstanceUID = generate_uid()  # another image at the same position
    other.save_as(series / "second_acquisition")
    with pytest.raises(InputError, match=r"DICOM slice\(s\) at the same position as another"):
        write_rtstruct(small, series, tmp_path / "rtstruct.dcm")


# ----------------------------------------------------------------------------- refusals


@pytest.fixture
def one_voxel(cb001):
    folder, mask, *_ = cb001
    labels = np.zeros_like(mask.array)
    labels[30, 200, 200] = BY_NAME["liver"].id
    return folder, Volume(labels, mask.geometry)


@pytest.mark.parametrize("write", [write_dicom_seg, write_rtstruct])
def test_folders_that_are_not_the_masks_ct_series_are_refused(write, one_voxel, ts_series, data_dir, tmp_path):
    folder, mask = one_voxel
    rt_only, text_only = tmp_path / "rt", tmp_path / "text"
    rt_only.mkdir()
    text_only.mkdir()
    shutil.copy(data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "rtstruct.dcm", rt_only)
    (text_only / "notes.txt").write_text("not DICOM")
    geometry = mask.geometry
    shifted = dataclasses.replace(geometry, origin_lps_mm=(geometry.origin_lps_mm[0] + 5.0, *geometry.origin_lps_mm[1:]))
    shorter = dataclasses.replace(geometry, shape_zyx=(78, 512, 512))
    cases = [
        (mask, rt_only, "no DICOM series found in this folder"),  # an RT structure set holds no image
        (mask, text_only, "no DICOM series found in this folder"),
        (mask, tmp_path / "missing", "not a folder"),
        (mask, ts_series[1], "does not match the mask's grid"),
        (Volume(mask.array, shifted), folder, r"does not match the mask's grid \(a slice is shifted"),
        (Volume(mask.array[:-1], shorter), folder, "does not match the mask's grid"),
        (Volume(np.zeros_like(mask.array), geometry), folder, "no FLARE class"),
        (Volume(np.full_like(mask.array, 20), geometry), folder, "not FLARE class ids"),
    ]
    for volume, series, message in cases:
        with pytest.raises(InputError, match=message) as error:
            write(volume, series, tmp_path / "out.dcm")
        assert "\n" not in str(error.value)
    assert not (tmp_path / "out.dcm").exists()


@pytest.mark.parametrize("write", [write_dicom_seg, write_rtstruct])
def test_a_failed_write_leaves_nothing_behind(write, one_voxel, tmp_path, monkeypatch):
    folder, mask = one_voxel
    (tmp_path / "taken.dcm").mkdir()  # the rename onto a folder fails after the file is written
    with pytest.raises(InputError, match="taken.dcm: cannot write"):
        write(mask, folder, tmp_path / "taken.dcm")
    (tmp_path / "old.dcm").write_bytes(b"previous")

    def half_written(self, filename, **_):
        filename.write_bytes(b"DICM partial")
        raise ValueError("value cannot be encoded\nsecond line")

    monkeypatch.setattr(pydicom.Dataset, "save_as", half_written)
    with pytest.raises(InputError, match=r"old.dcm: cannot write \(value cannot be encoded\)$"):
        write(mask, folder, tmp_path / "old.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.dcm", "taken.dcm"]
    assert (tmp_path / "old.dcm").read_bytes() == b"previous" and not any((tmp_path / "taken.dcm").iterdir())
