"""``flareseg qc`` end to end on tiny files: qc.csv rows, error rows, the summary and qc.png."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from flareseg.cli.main import main
from flareseg.io import Geometry, Volume, write_labelmap, write_volume
from flareseg.labels import ORGAN_IDS
from flareseg.qc.report import CSV_COLUMNS

SHAPE = (40, 20, 30)


@pytest.fixture
def run_dir(tmp_path, box_mask, rng):
    """OUT with: ``good`` (mask + CT, liver on the wrong side), ``noct`` (mask, CT unknown), ``float``
    (not a label map), ``broken`` (not an image), ``bad`` (prediction failed, no mask)."""
    out, scans = tmp_path / "out", tmp_path / "scans"
    out.mkdir(), scans.mkdir()
    mask = box_mask(SHAPE, {"liver": (14, 30, 2, 12, 18, 29), "spleen": (16, 24, 8, 14, 0, 5)})
    write_labelmap(mask.array, mask.geometry, out / "good.nii.gz")
    ct = np.rint(rng.normal(40, 20, SHAPE)).astype(np.int16)
    ct[0, 0, 0], ct[-1, -1, -1] = -1000, 1500  # a CT-like range, so read_ct reads it as CT
    write_volume(Volume(ct, mask.geometry), scans / "good.nii.gz")
    write_labelmap(mask.array, mask.geometry, out / "noct.nii.gz")
    write_volume(Volume(mask.array.astype(np.float32) + 0.5, mask.geometry), out / "float.nii.gz")
    (out / "broken.nii.gz").write_bytes(b"not an image")
    cases = [{"case": "good", "input": str(scans / "good.nii.gz"), "output": str(out / "good.nii.gz"),
              "status": "done"},
             {"case": "bad", "input": str(scans / "bad.nii.gz"), "output": str(out / "bad.nii.gz"),
              "status": "failed", "error": "not a CT"}]
    (out / "summary.json").write_text(json.dumps({"cases": cases}))
    return out, ct, mask


def _rows(out):
    with open(out / "qc.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_qc_writes_rows_errors_summary_and_figure(run_dir, capsys):
    out, ct, mask = run_dir
    assert main(["qc", str(out)]) == 0  # flags and errors are findings, not failures
    columns, rows = _rows(out)
    assert tuple(columns) == CSV_COLUMNS
    by_case = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    assert sorted(by_case) == ["bad", "broken", "float", "good", "noct"]
    good = {row["organ"]: row for row in by_case["good"]}
    assert len(good) == len(ORGAN_IDS)
    liver = good["liver"]
    inside = mask.array == 1
    assert int(liver["voxels"]) == inside.sum() == 17 * 11 * 12
    assert float(liver["volume_ml"]) == pytest.approx(inside.sum() * 0.125)  # 5 mm voxels: 0.125 mL
    assert float(liver["hu_mean"]) == pytest.approx(ct[inside].mean(), abs=0.05)
    assert liver["flag_order"] == "liver_spleen_left_right" and liver["flags"] == "order:liver_spleen_left_right"
    assert (liver["border_faces"], good["spleen"]["border_faces"]) == ("L", "R")
    assert good["spleen"]["flags"] == "order:liver_spleen_left_right"
    assert good["pancreas"]["present"] == "False" and good["pancreas"]["flags"] == ""
    assert all(row["error"] == "" for row in by_case["good"])
    noct = {row["organ"]: row for row in by_case["noct"]}
    assert noct["liver"]["hu_mean"] == "" and noct["liver"]["volume_ml"] == liver["volume_ml"]
    assert noct["liver"]["error"].startswith("CT: unknown")
    for case, error in (("bad", "mask missing (predict failed: not a CT)"), ("broken", "mask: "),
                        ("float", "mask: ")):
        [row] = by_case[case]
        assert row["organ"] == "" and row["error"].startswith(error)
    assert "not a label map" in by_case["float"][0]["error"]
    printed = capsys.readouterr().out
    assert "5 case(s), 2 flagged, 4 with an error" in printed
    # per measured case (good, noct): the spleen, whole in view, witnesses the stomach; the liver, whole
    # in view with 45 mm above it, the gallbladder and the oesophagus; liver and spleen both touch a side
    # of the scan, so their small volumes (280.5 and 47.25 mL) are not flagged
    assert "flags: 6 missing, 0 volume_small, 0 volume_large, 2 order" in printed
    assert "error: bad: mask missing (predict failed: not a CT)" in printed
    assert (out / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*partial*"))


def test_ct_on_another_grid_is_an_error_beside_the_measures(run_dir, box_mask):
    out, ct, mask = run_dir
    other = Geometry(SHAPE, (5.0, 5.0, 5.0), (100.0, 0.0, 0.0))
    write_volume(Volume(ct, other), out.parent / "scans" / "good.nii.gz")
    assert main(["qc", str(out), "--images", str(out.parent / "scans")]) == 0
    _, rows = _rows(out)
    good = [row for row in rows if row["case"] == "good"]
    assert good[0]["error"].startswith("CT: grids differ") and good[0]["hu_mean"] == ""


def test_missing_output_folder_is_one_line_exit_1(tmp_path, capsys):
    assert main(["qc", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_qc_has_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["qc", "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: flareseg qc")
