"""Quality control of a folder of predicted masks: one :class:`CaseQC` per case, ``qc.csv`` and a summary.

A case whose mask is missing or unreadable is a :class:`CaseQC` with an ``error`` and no measures;
one whose CT is missing, unreadable or on another grid is measured from its mask alone (no mean
HU) and keeps the CT's error beside its measures.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flareseg.errors import FlaresegError, InputError
from flareseg.io import Volume, read_ct, read_volume
from flareseg.io.atomic import atomic_write_text
from flareseg.labels import ORGAN_IDS
from flareseg.qc.flags import FLAG_WEIGHTS, Flag, case_flags, ranked
from flareseg.qc.inputs import QCInput
from flareseg.qc.measures import OrganMeasures, ScanExtent, measure_organs, scan_extent
from flareseg.qc.ranges import volume_range

#: Columns of ``qc.csv``, in order (see ``docs/qc.md``).
CSV_COLUMNS = (
    "case", "organ", "class_id", "present", "voxels", "volume_ml", "components", "components_before_postprocessing",
    "hu_mean",
    "centroid_l_mm", "centroid_p_mm", "centroid_s_mm", "s_min_mm", "s_max_mm", "touches_border", "border_faces",
    "scan_s_min_mm", "scan_s_max_mm", "range_low_ml", "range_high_ml",
    "flag_missing", "flag_volume", "flag_order", "flags", "n_flags", "mask", "ct", "error",
)
#: Kinds of flag, in the order the summary counts them.
FLAG_KINDS = ("missing", "volume_small", "volume_large", "order")


@dataclass
class CaseQC:
    """Quality control of one case.

    Attributes:
        case: Case name.
        mask, ct: The files read (``""`` when unknown).
        measures: :class:`OrganMeasures` by organ name; empty when the mask could not be read.
        extent: The scan's S extent; None when the mask could not be read.
        flags: The findings (:mod:`flareseg.qc.flags`).
        error: What could not be read (mask or CT), one line; ``""`` when all was read.
        views: Axial and coronal slices for the figure (:func:`flareseg.qc.figure.case_views`), flagged cases only.
        components_before_postprocessing: As :class:`QCInput` has it (None: not recorded).
    """

    case: str
    mask: str = ""
    ct: str = ""
    measures: dict[str, OrganMeasures] = field(default_factory=dict)
    extent: ScanExtent | None = None
    flags: list[Flag] = field(default_factory=list)
    error: str = ""
    views: list = field(default_factory=list)
    components_before_postprocessing: dict[str, int] | None = None


def read_label_map(path: Path) -> Volume:
    """A mask as an unsigned integer label map.

    Raises:
        InputError: Unreadable, or values that are not non-negative whole numbers below 65536.
    """
    volume = read_volume(path)
    array = volume.array
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if low < 0 or high > 65535 or not (np.issubdtype(array.dtype, np.integer) or np.array_equal(array, np.rint(array))):
        raise InputError(f"{path}: not a label map (values {low}..{high}, {array.dtype})")
    return Volume(array.astype(np.uint8 if high <= 255 else np.uint16, copy=False), volume.geometry)


def read_ct_on(item: QCInput, mask: Volume) -> tuple[Volume | None, str]:
    """The case's CT on the mask's grid (axes permuted and flipped only), or None and why not."""
    from flareseg.preprocessing.orientation import align_to

    if item.ct is None:
        return None, "CT: unknown (not in summary.json; give --images)"
    try:
        return align_to(read_ct(item.ct, item.acquisition, force=True), mask.geometry), ""
    except FlaresegError as error:
        return None, f"CT: {error}"


def qc_case(item: QCInput) -> CaseQC:
    """Measure and flag one case (see the module docstring for what an unreadable file gives)."""
    from flareseg.qc.figure import case_views

    result = CaseQC(item.case, str(item.mask or ""), str(item.ct or ""),
                    components_before_postprocessing=item.components_before_postprocessing)
    if item.mask is None or not item.mask.exists():
        result.error = f"mask missing ({item.note})" if item.note else "mask missing"
        return result
    try:
        mask = read_label_map(item.mask)
    except FlaresegError as error:
        result.error = f"mask: {error}"
        return result
    ct, result.error = read_ct_on(item, mask)
    result.measures = measure_organs(mask, None if ct is None else ct.array, ORGAN_IDS)
    result.extent = scan_extent(mask.geometry)
    result.flags = case_flags(result.measures, result.extent)
    if result.flags:
        focus = [result.measures[organ].class_id for flag in ranked(result.flags) for organ in flag.organs
                 if result.measures[organ].present]
        result.views = case_views(ct, mask, focus[0] if focus else None)
    return result


def _rounded(value: float | None, digits: int):
    return "" if value is None else round(value, digits)


def organ_row(result: CaseQC, measure: OrganMeasures) -> dict:
    """The ``qc.csv`` row of one organ of one case (:data:`CSV_COLUMNS`)."""
    flags = [flag for flag in result.flags if measure.name in flag.organs]
    centroid = measure.centroid_lps_mm or (None, None, None)
    low_s, high_s = measure.s_range_mm or (None, None)
    plausible = volume_range(measure.name)
    extent, raw = result.extent, result.components_before_postprocessing
    return {
        "case": result.case, "organ": measure.name, "class_id": measure.class_id, "present": measure.present,
        "voxels": measure.voxels, "volume_ml": round(measure.volume_ml, 3), "components": measure.components,
        "components_before_postprocessing": "" if raw is None else raw.get(measure.name, 0),
        "hu_mean": _rounded(measure.hu_mean, 1),
        **{f"centroid_{axis}_mm": _rounded(value, 1) for axis, value in zip("lps", centroid)},
        "s_min_mm": _rounded(low_s, 1), "s_max_mm": _rounded(high_s, 1),
        "touches_border": measure.touches_border, "border_faces": measure.border_faces,
        "scan_s_min_mm": _rounded(extent.s_min_mm if extent else None, 1),
        "scan_s_max_mm": _rounded(extent.s_max_mm if extent else None, 1),
        "range_low_ml": plausible.low_ml if plausible else "", "range_high_ml": plausible.high_ml if plausible else "",
        "flag_missing": any(flag.kind == "missing" for flag in flags),
        "flag_volume": ";".join(flag.kind.removeprefix("volume_") for flag in flags if flag.kind.startswith("volume")),
        "flag_order": ";".join(flag.code for flag in flags if flag.kind == "order"),
        "flags": ";".join(flag.kind if flag.kind != "order" else f"order:{flag.code}" for flag in flags),
        "n_flags": len(flags), "mask": result.mask, "ct": result.ct, "error": result.error,
    }


def qc_rows(results: list[CaseQC]) -> list[dict]:
    """A row per case and organ; a case without measures (unreadable mask) is one row with its error."""
    rows = []
    for result in results:
        if not result.measures:
            rows.append({**dict.fromkeys(CSV_COLUMNS, ""), "case": result.case, "mask": result.mask,
                         "ct": result.ct, "error": result.error})
        rows.extend(organ_row(result, measure) for measure in result.measures.values())
    return rows


def write_qc_csv(results: list[CaseQC], path: str | os.PathLike) -> Path:
    """Write :func:`qc_rows` as CSV (:data:`CSV_COLUMNS`), atomically; returns ``path``."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(qc_rows(results))
    return atomic_write_text(path, text.getvalue())


def case_score(result: CaseQC) -> int:
    """How bad a case looks: the sum of its flags' weights (:data:`~flareseg.qc.flags.FLAG_WEIGHTS`)."""
    return sum(FLAG_WEIGHTS[flag.kind] for flag in result.flags)


def worst_cases(results: list[CaseQC], count: int) -> list[CaseQC]:
    """Up to ``count`` flagged cases, highest :func:`case_score` first (ties by name)."""
    flagged = [result for result in results if result.flags]
    return sorted(flagged, key=lambda result: (-case_score(result), result.case))[:count]


def summary_lines(results: list[CaseQC], worst: int = 3) -> list[str]:
    """A short report: cases, flags by kind, errors (one line each), the worst cases."""
    flags = [flag for result in results for flag in result.flags]
    counts = ", ".join(f"{sum(flag.kind == kind for flag in flags)} {kind}" for kind in FLAG_KINDS)
    flagged = sum(bool(result.flags) for result in results)
    errors = [result for result in results if result.error]
    lines = [f"{len(results)} case(s), {flagged} flagged, {len(errors)} with an error",
             f"flags: {counts}"]
    lines += [f"error: {result.case}: {result.error}" for result in errors]
    for result in worst_cases(results, worst):
        shown = "; ".join(flag.message for flag in ranked(result.flags)[:4])
        more = f"; and {len(result.flags) - 4} more" if len(result.flags) > 4 else ""
        lines.append(f"worst: {result.case} ({len(result.flags)} flag(s), score {case_score(result)}): {shown}{more}")
    return lines
