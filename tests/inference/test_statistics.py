"""Per-organ statistics agree with SimpleITK's label statistics on a real scan and its mask."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.cli.main import main
from flareseg.inference.statistics import organ_statistics
from flareseg.io import read_ct, read_volume
from flareseg.labels import label_name


def test_statistics_match_simpleitk(data_dir):
    ct_path = data_dir / "ts_example" / "example_ct.nii.gz"
    label_path = data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz"
    stats = organ_statistics(read_ct(ct_path), read_volume(label_path))
    image, labels = sitk.ReadImage(str(ct_path), sitk.sitkFloat64), sitk.ReadImage(str(label_path))
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(labels)
    intensity = sitk.LabelStatisticsImageFilter()
    intensity.Execute(image, labels)
    assert {entry["class_id"] for entry in stats.values()} == set(shape.GetLabels())
    for class_id in shape.GetLabels():
        entry = stats[label_name(class_id)]
        assert entry["voxels"] == shape.GetNumberOfPixels(class_id)
        assert entry["volume_ml"] == pytest.approx(shape.GetPhysicalSize(class_id) / 1000, abs=1e-3)
        assert entry["hu_mean"] == pytest.approx(intensity.GetMean(class_id), abs=0.01)
        n = shape.GetNumberOfPixels(class_id)  # SimpleITK's sigma is the sample deviation
        assert entry["hu_std"] == pytest.approx(intensity.GetSigma(class_id) * np.sqrt((n - 1) / n), abs=0.01)
        x, y, z, sx, sy, sz = shape.GetBoundingBox(class_id)
        corners = np.array([labels.TransformIndexToPhysicalPoint((i, j, k))
                            for i in (x, x + sx - 1) for j in (y, y + sy - 1) for k in (z, z + sz - 1)])
        assert np.allclose(entry["bbox_lps_mm"], [corners.min(0), corners.max(0)], atol=0.01)
        single = sitk.BinaryThreshold(labels, class_id, class_id, 1, 0)
        components = sitk.ConnectedComponent(single, True)  # 26-connected
        assert entry["components"] == int(sitk.GetArrayViewFromImage(components).max())
        assert entry["hu_p5"] <= entry["hu_p50"] <= entry["hu_p95"]


def test_predict_writes_statistics_for_a_scan_and_a_folder(tmp_path, data_dir, capsys):
    ct = data_dir / "ts_example" / "example_ct.nii.gz"
    assert main(["predict", "-i", str(ct), "-o", str(tmp_path / "mask.nii.gz"), "--statistics"]) == 0
    stats = json.loads((tmp_path / "mask.json").read_text())
    assert stats == json.loads(json.dumps(organ_statistics(read_ct(ct), read_volume(tmp_path / "mask.nii.gz"))))
    assert "liver" in stats and stats["liver"]["volume_ml"] > 500
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(ct, folder / "case_0000.nii.gz")
    assert main(["predict", "-i", str(folder), "-o", str(tmp_path / "out"), "--statistics", "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "statistics.csv")))
    assert {row["organ"] for row in rows} == set(stats) and {row["case"] for row in rows} == {"case"}
    liver = next(row for row in rows if row["organ"] == "liver")
    assert float(liver["volume_ml"]) == stats["liver"]["volume_ml"]
