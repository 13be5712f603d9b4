"""``OUT/manifest.csv``: one row per case of a run over several scans, rewritten as each case ends.

Columns: ``case``, ``input`` (absolute path), ``output``, ``status`` (``done``, ``failed``,
``skipped``: its mask was already complete, ``pending``: not finished yet), ``seconds`` (wall time of
the case, 0 unless done), ``peak_memory_mb`` (peak resident memory of the process that ran the case,
while it ran it; empty when unknown) and ``error`` (one line; empty unless failed).

Every rewrite goes through :func:`flareseg.io.atomic.atomic_write_text`, so a run killed at any
moment leaves the previous complete manifest or the next one, never a half-written file. A case is
listed ``done`` only after its mask is in place.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Iterable, Mapping

from flareseg.errors import FlaresegWarning
from flareseg.inference.predict import CaseResult
from flareseg.io.atomic import atomic_write_text

#: File name of the manifest in a run's output folder.
MANIFEST_NAME = "manifest.csv"
#: Its columns, in order.
COLUMNS = ("case", "input", "output", "status", "seconds", "peak_memory_mb", "error")
#: What ``status`` can be.
STATUSES = ("done", "failed", "skipped", "pending")


def one_line(text: str) -> str:
    """``text`` with its line breaks (and runs of blanks around them) turned into single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def format_manifest(results: Iterable[CaseResult]) -> str:
    """The CSV text (header and one row per case) of ``results``, in their order."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in results:
        peak = "" if result.peak_memory_mb is None else f"{result.peak_memory_mb:.1f}"
        writer.writerow([result.case, result.input, result.output, result.status, f"{result.seconds:.3f}", peak,
                         one_line(result.error)])
    return text.getvalue()


def write_manifest(path: str | Path, results: Iterable[CaseResult]) -> Path:
    """Replace the manifest at ``path`` atomically with one row per result; returns ``path``.

    Raises:
        InputError: It cannot be written (full disk, no permission).
    """
    return atomic_write_text(path, format_manifest(results))


def read_manifest(path: str | Path) -> list[CaseResult]:
    """The rows of an existing manifest, as results (``acquisition`` and ``statistics`` unset).

    A missing manifest has no rows. One that cannot be read or parsed (edited by hand, another
    tool's file) has none either, with a :class:`~flareseg.errors.FlaresegWarning`: its failures
    are then tried again.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [_result(row) for row in rows]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, ValueError) as error:
        warnings.warn(f"{path}: cannot read the previous run's manifest ({one_line(error)}); "
                      "its failed cases are tried again", FlaresegWarning, stacklevel=2)
        return []


def _result(row: Mapping[str, str]) -> CaseResult:
    if row["status"] not in STATUSES:
        raise ValueError(f"unknown status {row['status']!r} of case {row['case']!r}")
    peak = row["peak_memory_mb"]
    return CaseResult(row["case"], row["input"], row["output"], row["status"], float(row["seconds"] or 0),
                      row["error"] or "", peak_memory_mb=float(peak) if peak else None)


class ManifestWriter:
    """Rewrites a run's manifest: the rows of an earlier run's manifest for cases this run does not
    have kept first (several runs into one folder keep every case), then this run's; as cases end,
    at most once per ``interval_s`` seconds (a cohort of thousands does not rewrite it thousands of
    times), and whenever :meth:`write` is called with ``force``."""

    def __init__(self, path: Path, results: list[CaseResult], interval_s: float = 1.0) -> None:
        self.path, self.results, self.interval_s = Path(path), results, interval_s
        self.earlier = read_manifest(self.path)
        self.last = 0.0

    def write(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not force and now - self.last < self.interval_s:
            return
        mine = {(result.case, result.input) for result in self.results}
        write_manifest(self.path, [row for row in self.earlier if (row.case, row.input) not in mine] + self.results)
        self.last = now


def previous_failures(path: str | Path) -> dict[tuple[str, str], str]:
    """``(case, input) -> error`` of the cases an existing manifest lists as failed."""
    return {(result.case, result.input): result.error for result in read_manifest(path) if result.status == "failed"}
