"""Which masks qc reads and which CT each gets: summary.json, --images, missing masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flareseg.errors import FlaresegWarning, InputError
from flareseg.io import Geometry, write_labelmap
from flareseg.qc.inputs import qc_inputs

GRID = Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def _mask(path):
    write_labelmap(np.zeros(GRID.shape_zyx, np.uint8), GRID, path)


def _summary(out, cases):
    (out / "summary.json").write_text(json.dumps({"cases": cases}))


def test_ct_from_summary_and_images_take_precedence(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a", "b", "c"):
        _mask(out / f"{name}.nii.gz")
    (out / ".a.1234.partial.nii.gz").write_bytes(b"")  # an interrupted write is not a mask
    (out / "qc.csv").write_text("")
    _summary(out, [{"case": "a", "input": "/scans/a_0000.nii.gz", "output": str(out / "a.nii.gz"), "status": "done"},
                   {"case": "b", "input": "/scans/b.nii.gz", "output": "elsewhere/b.nii.gz", "status": "skipped",
                    "acquisition": 2}])
    images = tmp_path / "images"
    images.mkdir()
    (images / "b_0000.nii.gz").write_bytes(b"x")
    items = {item.case: item for item in qc_inputs(out, [images])}
    assert sorted(items) == ["a", "b", "c"]
    assert (items["a"].mask, str(items["a"].ct), items["a"].note) == (out / "a.nii.gz", "/scans/a_0000.nii.gz", "")
    assert (items["b"].ct, items["b"].acquisition) == (images / "b_0000.nii.gz", None)  # --images wins
    assert items["c"].ct is None  # neither recorded nor given


def test_failed_prediction_is_a_case_without_mask(tmp_path):
    _summary(tmp_path, [{"case": "bad", "input": "/scans/bad.nii.gz", "output": str(tmp_path / "bad.nii.gz"),
                         "status": "failed", "error": "not a CT"}])
    [item] = qc_inputs(tmp_path)
    assert (item.case, item.mask.exists(), item.note) == ("bad", False, "predict failed: not a CT")


def test_unreadable_summary_warns_and_empty_folder_is_an_error(tmp_path):
    (tmp_path / "summary.json").write_text("{not json")
    _mask(tmp_path / "a.nii.gz")
    with pytest.warns(FlaresegWarning, match="summary"):
        [item] = qc_inputs(tmp_path)
    assert item.ct is None
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no masks"):
        qc_inputs(empty)
    with pytest.raises(InputError, match="no such folder"):
        qc_inputs(tmp_path / "missing")
