"""``dataset import``: RTSTRUCT and DICOM-SEG to a training case, on hand-made and real structure sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.datasets import load_spec
from flareseg.datasets import dicom_import as di
from flareseg.datasets import structure_mapping as sm
from flareseg.errors import InputError
from flareseg.io import read_ct, read_volume

from .test_rtstruct import GRID, _lps, _rtstruct, _square

# ----------------------------------------------------------------------------- the case, on a hand-made grid


def test_build_case_maps_names_paints_smaller_on_top_and_declares_annotated_values():
    big = [("CLOSED_PLANAR", _lps(_square(0.5, 0.5, 7.5, 6.5), 1))]  # 42 voxels
    small = [("CLOSED_PLANAR", _lps(_square(2.5, 2.5, 5.5, 4.5), 1))]  # 6 voxels, inside big
    ds = _rtstruct({"Liver": big, "GTV tumor": small, "Couch": big, "Kidney-L": [], "Bowel": small})
    rules = [sm.parse_map_rule("gtv_tumor=lesion"), sm.parse_map_rule("couch=IGNORE")]
    case = di.build_case(ds, di.RTSTRUCT, GRID, di.new_dataset_json(), "c1", rules)
    assert np.bincount(case.labels.ravel(), minlength=15)[[0, 1, 14]].tolist() == [3 * 8 * 10 - 42, 36, 6]
    assert [(o.name, o.label.value if o.label else o.reason) for o in case.outcomes] == [
        ("Liver", 1), ("GTV tumor", 14), ("Couch", "ignored by --map"), ("Kidney-L", 13),
        ("Bowel", "no flareseg class")]
    assert case.outcomes[0].notes == ("6 voxel(s) given to smaller overlapping structures",)
    assert case.annotated == (1, 14)  # Kidney-L has no contour: not counted as annotated
    assert case.dataset_json["labels"] == {"background": 0, "liver": 1, "left_kidney": 13, "lesion": 14}
    assert case.dataset_json["annotated_classes"] == {"c1": [1, 14]}


def test_build_case_refuses_structures_that_match_nothing_or_map_to_one_class_twice():
    square = [("CLOSED_PLANAR", _lps(_square(0.5, 0.5, 2.5, 2.5), 0))]
    with pytest.raises(InputError, match="no structure maps to a flareseg class"):
        di.build_case(_rtstruct({"Bowel": square}), di.RTSTRUCT, GRID, di.new_dataset_json(), "c1")
    with pytest.raises(InputError, match="'Liver' and 'Hepar' both map to liver"):
        di.build_case(_rtstruct({"Liver": square, "Hepar": square}), di.RTSTRUCT, GRID, di.new_dataset_json(), "c1",
                      [sm.parse_map_rule("Hepar=liver")])


def test_paint_labels_lets_the_smaller_mask_win_and_counts_lost_voxels():
    labels, lost = di.paint_labels([(1, np.arange(6)), (2, np.array([4, 5, 6])), (3, np.array([5]))], (1, 2, 4))
    np.testing.assert_array_equal(labels, [[[1, 1, 1, 1], [2, 3, 2, 0]]])
    assert labels.dtype == np.uint8 and lost == [2, 1, 0]


# ----------------------------------------------------------------------------- real structure sets


@pytest.fixture(scope="module")
def cb001(data_dir):
    folder = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    return folder, read_ct(folder / "dicom_ct")


def test_import_rtstruct_with_a_merged_stomach_duodenum_label(cb001, tmp_path):
    folder, ct = cb001
    root = tmp_path / "Dataset"
    request = di.ImportRequest(ct=folder / "dicom_ct", structures=folder / "rtstruct.dcm", dataset=root,
                               case_id="cb001", rules=(sm.parse_map_rule("Stomach_duo_planCT=stomach+duodenum"),
                                                       sm.parse_map_rule("ROI=ignore")))
    report = di.import_case(request)
    spec = json.loads((root / "dataset.json").read_text())
    assert spec["labels"] == {"background": 0, "Stomach_duo_planCT": 15}
    assert spec["label_mapping"] == {"Stomach_duo_planCT": ["stomach", "duodenum"]}
    assert spec["annotated_classes"] == {"cb001": [15]} and spec["numTraining"] == 1
    assert spec["channel_names"] == {"0": "CT"} and spec["file_ending"] == ".nii.gz"
    image, label = read_volume(root / "imagesTr" / "cb001_0000.nii.gz"), read_volume(root / "labelsTr" / "cb001.nii.gz")
    assert image.geometry.matches(ct.geometry) and label.geometry.matches(ct.geometry)
    np.testing.assert_array_equal(image.array, ct.array)
    assert label.array.dtype == np.uint8 and set(np.unique(label.array)) == {0, 15}
    theirs = read_volume(folder / "label.nii.gz").array == 1  # Stomach_duo_planCT in labels.json
    ours = label.array == 15
    assert 2 * np.count_nonzero(ours & theirs) / (ours.sum() + theirs.sum()) > 0.95
    assert {o.name: o.reason for o in report.outcomes if o.label is None} == {
        "Bowel_sm_planCT": "no flareseg class", "LUNG_L": "no flareseg class", "LUNG_R": "no flareseg class",
        "ROI": "ignored by --map"}
    text = di.format_report(report)
    assert "left out 3 structure(s) that match no flareseg class: Bowel_sm_planCT, LUNG_L, LUNG_R" in text
    assert load_spec(root).annotated_for("cb001") == (11, 12)  # the dataset reader takes the merged label
    assert sorted(p.name for p in root.rglob("*")) == ["cb001.nii.gz", "cb001_0000.nii.gz", "dataset.json",
                                                       "imagesTr", "labelsTr"]  # no temporary file left


def test_rtstruct_on_another_ct_is_refused(data_dir, tmp_path):
    request = di.ImportRequest(ct=data_dir / "dcmqi_ct3slice",
                               structures=data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "rtstruct.dcm",
                               dataset=tmp_path / "ds", case_id="x", rules=(sm.parse_map_rule("ROI=pancreas"),))
    with pytest.raises(InputError, match="drawn on another CT"):
        di.import_case(request)
    assert not (tmp_path / "ds").exists()


@pytest.fixture
def liver_seg(data_dir, tmp_path):
    folder = data_dir / "dcmqi_ct3slice"
    return di.ImportRequest(ct=folder, structures=folder / "liver_seg_dicomseg.dcm", dataset=tmp_path / "ds",
                            case_id="liver3")


def test_import_seg_matches_the_reference_label_map(liver_seg, data_dir):
    report = di.import_case(liver_seg)
    written = sitk.ReadImage(str(report.label))
    reference = sitk.ReadImage(str(data_dir / "dcmqi_ct3slice" / "liver_seg.nrrd"))
    assert written.GetSize() == reference.GetSize() == (512, 512, 3)
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference) == 1)
    assert [(o.name, o.label.describe(), o.voxels) for o in report.outcomes] == [("Liver", "1 liver", 107098)]
    spec = json.loads((liver_seg.dataset / "dataset.json").read_text())
    assert spec["labels"] == {"background": 0, "liver": 1} and spec["annotated_classes"] == {"liver3": [1]}


def test_existing_case_is_kept_unless_overwrite(liver_seg):
    di.import_case(liver_seg)
    before = {p: p.read_bytes() for p in liver_seg.dataset.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        di.import_case(liver_seg)
    assert {p: p.read_bytes() for p in liver_seg.dataset.rglob("*") if p.is_file()} == before
    other = di.ImportRequest(**{**vars(liver_seg), "case_id": "again", "overwrite": False})
    di.import_case(other)
    di.import_case(di.ImportRequest(**{**vars(liver_seg), "overwrite": True}))
    spec = json.loads((liver_seg.dataset / "dataset.json").read_text())
    assert spec["numTraining"] == 2 and spec["annotated_classes"] == {"liver3": [1], "again": [1]}


def test_clash_with_dataset_json_writes_nothing(liver_seg):
    liver_seg.dataset.mkdir()
    spec = {**di.new_dataset_json(), "labels": {"background": 0, "liver": 1}, "label_mapping": {"liver": None}}
    (liver_seg.dataset / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="'liver' means something else"):
        di.import_case(liver_seg)
    assert [p.name for p in liver_seg.dataset.rglob("*")] == ["dataset.json"]


@pytest.mark.parametrize("name, message", [
    ("liver_seg.nrrd", "not a DICOM file"),
    ("01.dcm", "not an RT structure set or DICOM-SEG .it is CT Image Storage"),
    ("missing.dcm", "no such file"),
])
def test_wrong_structure_files_are_refused(liver_seg, name, message):
    request = di.ImportRequest(**{**vars(liver_seg), "structures": liver_seg.ct / name})
    with pytest.raises(InputError, match=message):
        di.import_case(request)
    assert not liver_seg.dataset.exists()
