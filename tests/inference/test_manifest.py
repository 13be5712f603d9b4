"""OUT/manifest.csv on hand-built rows: format, atomic rewrite, reading back, statuses."""

from __future__ import annotations

import csv

import pytest

from flareseg.errors import FlaresegWarning, InputError
from flareseg.inference.manifest import (
    COLUMNS,
    format_manifest,
    one_line,
    previous_failures,
    read_manifest,
    write_manifest,
)
from flareseg.inference.predict import CaseResult


def _rows() -> list[CaseResult]:
    return [
        CaseResult("a", "/in/a_0000.nii.gz", "/out/a.nii.gz", "done", 12.3456, peak_memory_mb=812.04),
        CaseResult("b", "/in/b, with comma.nii.gz", "/out/b.nii.gz", "failed",
                   error='/in/b.nii.gz: unreadable or corrupt image ("gzip"\nstream ended)'),
        CaseResult("c", "/in/c", "/out/c.nii.gz", "skipped"),
        CaseResult("d", "/in/d.nrrd", "/out/d.nii.gz", "pending"),
    ]


def test_the_manifest_has_a_header_and_one_line_per_case_in_order(tmp_path):
    path = write_manifest(tmp_path / "manifest.csv", _rows())
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) == "case,input,output,status,seconds,peak_memory_mb,error"
    assert len(lines) == 5  # the error's line break became a space
    assert lines[1] == "a,/in/a_0000.nii.gz,/out/a.nii.gz,done,12.346,812.0,"
    assert lines[3] == "c,/in/c,/out/c.nii.gz,skipped,0.000,,"
    rows = list(csv.DictReader(path.open()))
    assert [row["status"] for row in rows] == ["done", "failed", "skipped", "pending"]
    assert rows[1]["input"] == "/in/b, with comma.nii.gz"
    assert rows[1]["error"] == '/in/b.nii.gz: unreadable or corrupt image ("gzip" stream ended)'


def test_reading_a_manifest_back_gives_the_rows_written(tmp_path):
    path = write_manifest(tmp_path / "manifest.csv", _rows())
    back = read_manifest(path)
    assert [(r.case, r.input, r.output, r.status) for r in back] == [(r.case, r.input, r.output, r.status)
                                                                     for r in _rows()]
    assert back[0].seconds == 12.346 and back[0].peak_memory_mb == 812.0
    assert back[2].peak_memory_mb is None and back[2].error == ""
    assert back[1].error == one_line(_rows()[1].error)
    assert previous_failures(path) == {("b", "/in/b, with comma.nii.gz"): back[1].error}


def test_no_manifest_means_no_earlier_failures(tmp_path):
    assert read_manifest(tmp_path / "manifest.csv") == []
    assert previous_failures(tmp_path / "manifest.csv") == {}


@pytest.mark.parametrize("text", [
    "case,input\na,/in/a\n",  # another tool's CSV
    "case,input,output,status,seconds,peak_memory_mb,error\na,/in/a,/out/a,lost,0,,\n",  # an unknown status
    "case,input,output,status,seconds,peak_memory_mb,error\na,/in/a,/out/a,failed,soon,,x\n",
])
def test_an_unreadable_manifest_warns_once_and_counts_as_none(tmp_path, text):
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    with pytest.warns(FlaresegWarning, match="manifest.csv: cannot read the previous run's manifest"):
        assert previous_failures(path) == {}


def test_a_rewrite_replaces_the_whole_file_or_nothing(tmp_path, monkeypatch):
    import flareseg.io.atomic as atomic

    path = tmp_path / "manifest.csv"
    rows = _rows()
    write_manifest(path, rows)
    before = path.read_bytes()
    rows[3].status, rows[3].seconds = "done", 3.0
    write_manifest(path, rows)
    assert read_manifest(path)[3].status == "done"
    after = path.read_bytes()

    def full_disk(_path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "fsync_file", full_disk)
    rows[0].status = "failed"
    with pytest.raises(InputError, match="manifest.csv: cannot write"):
        write_manifest(path, rows)
    assert path.read_bytes() == after != before
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]  # no temporary left behind


def test_one_line_joins_lines():
    assert one_line("a\n  b\r\n\nc ") == "a b c"
    assert one_line(ValueError("x\ny")) == "x y"


def test_a_later_run_keeps_the_rows_of_cases_it_does_not_have_and_rewrites_at_most_once_a_second(tmp_path):
    from flareseg.inference.manifest import ManifestWriter, read_manifest

    path = tmp_path / "manifest.csv"
    write_manifest(path, [CaseResult("a", "/s/a.nii.gz", "o/a.nii.gz", "failed", 1.0, "bad"),
                          CaseResult("b", "/s/b.nii.gz", "o/b.nii.gz", "done", 2.0)])
    results = [CaseResult("b", "/s/b.nii.gz", "o/b.nii.gz", "skipped"), CaseResult("c", "/s/c.nii.gz", "o/c.nii.gz",
                                                                                  "pending")]
    writer = ManifestWriter(path, results, interval_s=3600)
    writer.write(force=True)
    assert [(row.case, row.status) for row in read_manifest(path)] == [("a", "failed"), ("b", "skipped"),
                                                                       ("c", "pending")]
    results[1].status = "done"
    writer.write()  # within the interval: not yet
    assert read_manifest(path)[2].status == "pending"
    writer.write(force=True)
    assert read_manifest(path)[2].status == "done"


def test_the_peak_memory_of_the_callers_process_is_left_alone():
    import resource

    import numpy as np

    from flareseg.inference.predict import PeakMemory

    block = np.ones(64 * 2**20, np.uint8)  # 64 MB touched
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = PeakMemory().peak_mb()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= before  # not reset
    assert peak is not None and peak * 1024 >= before * 0.99  # the process's peak so far (ru_maxrss is KiB)
