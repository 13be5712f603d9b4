"""Which masks a quality-control run reads, and the CT of each.

The masks are the label-map images in the output folder of ``flareseg predict`` (``OUT/CASE.nii.gz``)
and the scans listed in its ``OUT/summary.json`` (a listed scan whose mask is missing, e.g. one that
failed, gets a row with an error). The CT of a case is, in this order: the scan of the same case
name among ``--images`` (a folder of CTs or a ``.txt`` list, named as ``flareseg predict`` names its
outputs: ``CASE_0000.nii.gz`` -> ``CASE``), else the ``input`` that ``summary.json`` records (a
relative path is taken from the current folder, as ``flareseg predict`` was given it). The
components of each organ before post-processing also come from ``summary.json``, where recorded.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from flareseg.errors import FlaresegWarning, InputError
from flareseg.io import has_image_suffix, strip_image_suffix

#: The run summary ``flareseg predict`` writes into its output folder.
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class QCInput:
    """One case to check.

    Attributes:
        case: Case name (the mask's file name without its ending).
        mask: The mask file; None when no mask is known (``note`` says why).
        ct: The CT file or DICOM folder; None when none is known.
        acquisition: Acquisition of a DICOM series that holds several (as ``flareseg predict`` recorded).
        note: Why the mask or CT is unknown (e.g. ``predict failed: ...``), else ``""``.
        components_before_postprocessing: Organ name -> its connected components in the prediction
            before the post-processing, as ``flareseg predict`` recorded them; None when not recorded.
    """

    case: str
    mask: Path | None
    ct: Path | None
    acquisition: int | None = None
    note: str = ""
    components_before_postprocessing: dict[str, int] | None = None


def mask_files(out_dir: Path) -> dict[str, Path]:
    """Label-map images in ``out_dir`` (not hidden temporaries), by case name, sorted."""
    found = {}
    for path in sorted(out_dir.iterdir()):
        if not path.name.startswith(".") and path.is_file() and has_image_suffix(path):
            found[strip_image_suffix(path.name)] = path  # type: ignore[index]
    return found


def recorded_cases(out_dir: Path) -> list[dict]:
    """The ``cases`` entries of ``out_dir/summary.json``; none (with a warning) when it is unreadable."""
    path = out_dir / SUMMARY_NAME
    if not path.is_file():
        return []
    try:
        cases = json.loads(path.read_text(encoding="utf-8")).get("cases", [])
        return [case for case in cases if isinstance(case, dict) and case.get("case")]
    except (OSError, ValueError, AttributeError) as error:
        warnings.warn(f"{path}: not readable as a flareseg predict summary ({error}); CTs only from --images",
                      FlaresegWarning, stacklevel=2)
        return []


def image_cases(images: Sequence[Path]) -> dict[str, tuple[Path, int | None]]:
    """The scans ``images`` names (folders, lists, files), by case name: ``(path, acquisition)``."""
    from flareseg.inference.cases import collect_cases

    if not images:
        return {}
    return {case.name: (case.input, case.acquisition) for case in collect_cases(list(images))}


def qc_inputs(out_dir: Path, images: Sequence[Path] = ()) -> list[QCInput]:
    """Every case of ``out_dir`` with its mask and CT (see the module docstring), sorted by name.

    Raises:
        InputError: ``out_dir`` is not a folder, an ``images`` path is missing, or there is no
            mask and no recorded case at all.
    """
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: no such folder (give the output folder of flareseg predict)")
    masks, given = mask_files(out_dir), image_cases(images)
    recorded = {entry["case"]: entry for entry in recorded_cases(out_dir)}
    items = []
    for case in sorted(set(masks) | set(recorded)):
        entry = recorded.get(case, {})
        mask = masks.get(case)
        if mask is None and entry.get("output"):
            mask = out_dir / Path(entry["output"]).name
        status = entry.get("status")
        note = f"predict {status}: {entry.get('error') or 'no mask'}" if status in ("failed", "pending") else ""
        if case in given:
            ct, acquisition = given[case]
        elif entry.get("input"):
            ct, acquisition = Path(entry["input"]), entry.get("acquisition")
        else:
            ct, acquisition = None, None
        raw = entry.get("components_before_postprocessing")
        items.append(QCInput(case, mask, ct, acquisition, note, raw if isinstance(raw, dict) else None))
    if not items:
        raise InputError(f"{out_dir}: no masks (.nii.gz, .nii, .nrrd, .mha) and no {SUMMARY_NAME}")
    return items

