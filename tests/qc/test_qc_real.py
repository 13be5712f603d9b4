"""``flareseg qc`` on real masks: predict two shared scans, plant two failures, and find exactly those.

The scans: the TotalSegmentator example (abdomen and pelvis, stored RAS) and the TCIA pancreatic CT
cb001 (upper abdomen and lower thorax, stored LPS). Planted, in a copy of the output folder: the
example's liver deleted, and cb001's liver moved 200 mm towards the patient's left (into background
voxels only, as a model that put it on the wrong side would). The unplanted masks carry their own,
honest flags (the bundled demonstration model misses the oesophagus and under-segments small organs);
the test asserts on what the plants change.
"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.cli.main import main
from flareseg.io import read_volume, write_labelmap

LIVER, SPLEEN = 1, 3
SHIFT_MM = 200.0


@pytest.fixture(scope="module")
def folders(tmp_path_factory, data_dir):
    """(predicted folder, planted copy); masks ``example_ct`` and ``ct`` (cb001)."""
    root = tmp_path_factory.mktemp("qc_real")
    predicted, planted = root / "predicted", root / "planted"
    scans = [data_dir / "ts_example" / "example_ct.nii.gz",
             data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "ct.nii.gz"]
    assert main(["predict", "-i", *map(str, scans), "-o", str(predicted), "--quiet"]) == 0
    shutil.copytree(predicted, planted)
    deleted = read_volume(planted / "example_ct.nii.gz")
    write_labelmap(np.where(deleted.array == LIVER, 0, deleted.array).astype(np.uint8), deleted.geometry,
                   planted / "example_ct.nii.gz")
    _move_liver_left(planted / "ct.nii.gz")
    return predicted, planted


def _move_liver_left(path) -> None:
    """Shift the liver SHIFT_MM towards the patient's left along the image column axis, read from the
    file's own direction with SimpleITK; the liver only takes background voxels."""
    image = sitk.ReadImage(str(path))
    towards_left = image.GetDirection()[0]  # L component of the column (x) axis, LPS
    assert abs(towards_left) == pytest.approx(1.0)
    step = int(round(SHIFT_MM / image.GetSpacing()[0])) * int(np.sign(towards_left))
    labels = sitk.GetArrayFromImage(image)
    liver = labels == LIVER
    moved = np.zeros_like(liver)
    if step > 0:
        moved[:, :, step:] = liver[:, :, :-step]
    else:
        moved[:, :, :step] = liver[:, :, -step:]
    labels[liver] = 0
    labels[moved & (labels == 0)] = LIVER
    volume = read_volume(path)
    write_labelmap(labels, volume.geometry, path)


def _centroid_l(path, label: int) -> float:
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(sitk.ReadImage(str(path)))
    return shape.GetCentroid(label)[0]  # ITK physical points are LPS


def _flags(folder) -> set[tuple[str, str, str]]:
    """``(case, organ, flag)`` of every flag in ``qc.csv``."""
    assert main(["qc", str(folder)]) == 0
    with open(folder / "qc.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["case"] for row in rows} == {"example_ct", "ct"} and not any(row["error"] for row in rows)
    return {(row["case"], row["organ"], flag) for row in rows for flag in row["flags"].split(";") if flag}


def test_qc_flags_exactly_the_planted_failures(folders):
    predicted, planted = folders
    assert _centroid_l(planted / "ct.nii.gz", LIVER) > _centroid_l(planted / "ct.nii.gz", SPLEEN)  # truly planted
    before, after = _flags(predicted), _flags(planted)
    assert not any(flag.startswith("order") for _, _, flag in before)
    assert ("example_ct", "liver", "missing") not in before
    assert after - before == {
        ("example_ct", "liver", "missing"),
        ("ct", "liver", "order:liver_spleen_left_right"),
        ("ct", "spleen", "order:liver_spleen_left_right"),
    }
    assert before - after == set()


def test_components_before_postprocessing_are_those_of_the_uncleaned_prediction(folders, data_dir, tmp_path):
    """qc.csv's count is the one recorded by predict; counted here with cc3d on the same prediction
    made without the clean-up, and kept when a rerun skips the finished masks."""
    import json

    import cc3d

    predicted, _ = folders
    scans = [data_dir / "ts_example" / "example_ct.nii.gz",
             data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "ct.nii.gz"]
    raw = tmp_path / "raw"
    assert main(["predict", "-i", *map(str, scans), "-o", str(raw), "--no-postprocess", "--quiet"]) == 0
    assert main(["predict", "-i", *map(str, scans), "-o", str(predicted), "--quiet"]) == 0  # a rerun: both skipped
    summary = json.loads((predicted / "summary.json").read_text())
    assert summary["skipped"] == 2 and all(case["components_before_postprocessing"] for case in summary["cases"])
    assert main(["qc", str(predicted)]) == 0
    with open(predicted / "qc.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["present"] == "True"]
    fragmented = 0
    for row in rows:
        labels = read_volume(raw / f"{row['case']}.nii.gz").array
        _, expected = cc3d.connected_components(labels == int(row["class_id"]), connectivity=26, return_N=True)
        assert int(row["components_before_postprocessing"]) == expected, row["organ"]
        assert row["components"] == "1"
        fragmented += expected > 1
    assert fragmented  # the cleaning had something to remove on these real scans
