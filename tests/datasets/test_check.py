"""``dataset check`` on a small dataset assembled from real scans, with planted problems."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flareseg import labels
from flareseg.datasets import list_cases, load_spec
from flareseg.cli.main import main
from flareseg.datasets.check import check_dataset, format_report
from flareseg.errors import InputError
from flareseg.io import read_volume, write_labelmap


def _dataset_json(root, num_training, **extra):
    spec = {
        "channel_names": {"0": "CT"},
        "labels": labels.nnunet_labels(),
        "numTraining": num_training,
        "file_ending": ".nii.gz",
        **extra,
    }
    (root / "dataset.json").write_text(json.dumps(spec))


def _add(root, case_id, image, label=None, folder="imagesTr"):
    (root / folder).mkdir(exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    shutil.copy(image, root / folder / f"{case_id}_0000.nii.gz")
    if label is not None:
        shutil.copy(label, root / "labelsTr" / f"{case_id}.nii.gz")


@pytest.fixture
def clean_dataset(tmp_path, data_dir):
    """Full labels, a partially labelled case (aorta only), a LAS label, and an unlabelled case."""
    ts = data_dir / "ts_example"
    root = tmp_path / "Dataset001_Real"
    root.mkdir()
    _add(root, "full", ts / "example_ct.nii.gz", ts / "flare_labels_fullct_from_v2fast.nii.gz")
    _add(root, "las_label", ts / "example_ct_dicom.nii.gz", ts / "flare_labels_dicom_from_v2fast.nii.gz")
    crop = read_volume(ts / "extra_aorta_report_crop" / "aorta.nii.gz")
    _add(root, "aorta_only", ts / "extra_aorta_report_crop" / "ct_cropped.nii.gz")
    write_labelmap((crop.array > 0) * labels.BY_NAME["aorta"].id, crop.geometry, root / "labelsTr" / "aorta_only.nii.gz")
    _add(root, "no_label", data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "ct.nii.gz",
         folder="imagesUnlabelledTr")
    _dataset_json(root, 3, annotated_classes={"aorta_only": [5]}, unlabelled=["no_label"])
    return root


def test_clean_dataset_has_no_errors_and_counts_classes(clean_dataset):
    report = check_dataset(clean_dataset, progress=False)
    assert report.errors == []
    assert report.kinds == {"full": "full", "las_label": "full", "aorta_only": "partial", "no_label": "unlabelled"}
    # The LAS label is usable (aligned exactly) but reported.
    assert [p.case_id for p in report.problems] == ["las_label"]
    full = read_volume(clean_dataset / "labelsTr" / "full.nii.gz").array
    assert report.class_voxels[1] >= int((full == 1).sum())
    assert report.class_cases[5] == 3  # aorta in full, las_label and aorta_only
    assert 10 not in report.class_cases  # the oesophagus is outside every field of view
    text = format_report(report)
    assert "4 usable cases (2 fully labelled, 1 partially labelled, 1 unlabelled)" in text
    assert "0 error(s)" in text


def test_cases_expose_partial_and_unlabelled(clean_dataset):
    cases = {c.case_id: c for c in list_cases(load_spec(clean_dataset))}
    assert cases["aorta_only"].partial and cases["aorta_only"].annotated == (5,)
    assert not cases["full"].partial and cases["full"].annotated == tuple(range(1, 15))
    assert cases["no_label"].label is None


def test_planted_problems_are_reported(clean_dataset, data_dir):
    ts = data_dir / "ts_example"
    root = clean_dataset
    # Mismatched grid: the 30-slice label on the 112-slice CT.
    _add(root, "wrong_grid", ts / "example_ct.nii.gz", ts / "flare_labels_sm_from_v2normal.nii.gz")
    # Unknown label value: 20 is not in dataset.json.
    ct_labels = read_volume(ts / "flare_labels_fullct_from_v2fast.nii.gz")
    bad = ct_labels.array.copy()
    bad[0, 0, :5] = 20
    _add(root, "unknown_value", ts / "example_ct.nii.gz")
    write_labelmap(bad, ct_labels.geometry, root / "labelsTr" / "unknown_value.nii.gz")
    # Missing label: an image without label that is not declared unlabelled.
    _add(root, "forgot_label", ts / "example_ct_sm.nii.gz")
    # A partially labelled case whose label holds a class it does not declare.
    _add(root, "partial_liar", ts / "example_ct.nii.gz", ts / "flare_labels_fullct_from_v2fast.nii.gz")
    spec = json.loads((root / "dataset.json").read_text())
    spec["annotated_classes"]["partial_liar"] = [1]
    (root / "dataset.json").write_text(json.dumps(spec))

    report = check_dataset(root, progress=False)
    errors = {p.case_id: p.message for p in report.errors}
    assert set(errors) == {"wrong_grid", "unknown_value", "forgot_label", "partial_liar"}
    assert "does not match its image" in errors["wrong_grid"]
    assert "[20]" in errors["unknown_value"]
    assert "missing label" in errors["forgot_label"]
    assert "not in annotated_classes" in errors["partial_liar"]
    assert any("numTraining" in p.message for p in report.problems)


def test_label_without_image_and_corrupt_label(clean_dataset):
    (clean_dataset / "labelsTr" / "orphan.nii.gz").write_bytes(b"")
    (clean_dataset / "labelsTr" / "full.nii.gz").write_bytes(b"garbage")
    report = check_dataset(clean_dataset, progress=False)
    errors = {p.case_id: p.message for p in report.errors}
    assert "has no image" in errors["orphan"]
    assert errors["full"].startswith("label:")


def test_malformed_dataset_json_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no dataset.json"):
        check_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        check_dataset(tmp_path)
    _dataset_json(tmp_path, 1, annotated_classes={"a": [99]})
    with pytest.raises(InputError, match="unknown class ids"):
        check_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": ["liver"],
                                                       "file_ending": ".nii.gz"}))
    with pytest.raises(InputError, match="must be JSON objects"):
        check_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("[]")
    with pytest.raises(InputError, match="missing key"):
        check_dataset(tmp_path)


def test_a_merged_label_checks_clean_and_is_listed(tmp_path, data_dir):
    root = tmp_path / "ds"
    root.mkdir()
    source = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    _add(root, "cb001", source / "ct.nii.gz", source / "label.nii.gz")
    names = {"background": 0, "Stomach_duo_planCT": 1, "Bowel_sm_planCT": 2, "LUNG_L": 3, "LUNG_R": 4, "ROI": 5}
    mapping = {"Stomach_duo_planCT": ["stomach", "duodenum"], "Bowel_sm_planCT": None, "LUNG_L": None,
               "LUNG_R": None, "ROI": None}
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": names, "numTraining": 1, "file_ending": ".nii.gz",
        "label_mapping": mapping, "annotated_classes": {"cb001": [1]}}))
    report = check_dataset(root, progress=False)
    assert report.errors == []
    text = format_report(report)
    assert "Stomach_duo_planCT=1 -> one of 11 stomach, 12 duodenum" in text
    assert main(["dataset", "check", str(root), "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    written = json.loads((tmp_path / "r.json").read_text())
    assert {"name": "Stomach_duo_planCT", "value": 1, "class_id": None, "members": [11, 12]} in written["label_mapping"]
    assert written["class_voxels"] == {} and written["merged_cases"] == {"Stomach_duo_planCT": 1}
    assert report.class_voxels == {} and report.merged_voxels == {"Stomach_duo_planCT": 83300}  # as labels.json counts
