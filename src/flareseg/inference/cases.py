"""What ``flareseg predict`` segments: scans named directly, in folders, or in list files.

An input is a CT file, a DICOM series folder (a folder that holds DICOM files itself), a folder
of such scans (its image files and sub-folders, nnU-Net's ``CASE_0000.nii.gz`` naming), or a
``.txt`` list with one path per line (relative paths are taken from the list's folder), or a
``.csv`` table of cases (:func:`read_case_table`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from flareseg.datasets.layout import CHANNEL_SUFFIX
from flareseg.errors import InputError
from flareseg.io import DicomInputWarning, dicom_acquisitions, has_image_suffix, strip_image_suffix

#: File ending of a list of inputs.
LIST_SUFFIX = ".txt"
#: A table of cases (``CASES.csv``): an ``input`` column, and ``case`` and ``acquisition`` optionally.
TABLE_SUFFIX = ".csv"
#: Files looked at before a folder counts as holding no DICOM.
_DICOM_PROBES = 64
#: DICOM modalities of objects that are not slices of a scan.
_NOT_SLICES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "KO", "PR", "REG"}


@dataclass(frozen=True)
class Case:
    """One scan to segment.

    Attributes:
        name: Name of its outputs without ending (``CASE`` for ``CASE_0000.nii.gz``).
        input: CT file or DICOM series folder.
        acquisition: Which acquisition of a DICOM series that stores several (None: the only one).
    """

    name: str
    input: Path
    acquisition: int | None = None


def case_name(path: Path) -> str:
    """``CASE_0000.nii.gz``, ``CASE.nrrd`` or a DICOM folder ``CASE`` -> ``CASE``."""
    stem = strip_image_suffix(path.name) or path.name
    return stem[: -len(CHANNEL_SUFFIX)] if stem.endswith(CHANNEL_SUFFIX) else stem


def output_name(path: Path, suffix: str = ".nii.gz") -> str:
    """The file name of the mask of ``path`` (``CASE_0000.nii.gz`` -> ``CASE.nii.gz``)."""
    return case_name(path) + suffix


def is_image_slice(path: Path) -> bool:
    """A DICOM file (with or without the 128-byte preamble) holding an image slice (of a CT, or of
    another modality, which reading then refuses), not a SEG, an RT object or a report."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=["Modality", "Rows", "SOPClassUID"])
    except Exception:  # noqa: BLE001 - a file that does not parse is not a slice
        return False
    return "Rows" in header and str(header.get("Modality", "") or "") not in _NOT_SLICES


def holds_dicom(folder: Path) -> bool:
    """True when ``folder`` itself holds image slices: it is one series, not a folder of scans (a SEG or
    an RT structure set beside scans does not make it one)."""
    probed = 0
    for entry in os.scandir(folder):
        if probed >= _DICOM_PROBES:
            break
        if entry.name.startswith(".") or not entry.is_file() or has_image_suffix(entry.name):
            continue
        probed += 1
        if is_image_slice(Path(entry.path)):
            return True
    return False


def is_single_scan(path: Path) -> bool:
    """A CT file or a DICOM series folder, as opposed to a folder of scans or a list file."""
    listing = path.name.lower().endswith((LIST_SUFFIX, TABLE_SUFFIX))
    return (path.is_file() and not listing) or (path.is_dir() and holds_dicom(path))


def folder_inputs(folder: Path) -> list[Path]:
    """The scans of a folder: image files and sub-folders (DICOM series), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".")
                  and ((p.is_file() and has_image_suffix(p)) or p.is_dir()))


def collect_cases(inputs: Sequence[Path]) -> list[Case]:
    """Every scan the inputs name, in order; a missing input or an empty folder is an error.

    Raises:
        InputError: An input does not exist, or a folder or list holds no scan.
    """
    cases: list[Case] = []
    seen: set[tuple[str, Path, int | None]] = set()
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file() and path.name.lower().endswith(TABLE_SUFFIX):
            found = read_case_table(path)
        else:
            scans = [path] if is_single_scan(path) else read_list(path) if path.is_file() else folder_inputs(path)
            found = [case for scan in scans for case in scan_cases(scan)]
        if not found:
            raise InputError(f"{path}: no CT files (.nii.gz, .nii, .nrrd, .mha) or DICOM folders")
        for case in found:
            key = (case.name, case.input.resolve(), case.acquisition)
            if key not in seen:  # the same scan named twice is segmented once
                seen.add(key)
                cases.append(case)
    return cases


def read_case_table(path: Path) -> list[Case]:
    """The cases of a ``CASES.csv`` table: a header row, then one scan per row: ``input`` (a path;
    a relative one is taken from the table's folder), and optionally ``case`` (the name of its
    outputs, default from the input's name) and ``acquisition`` (N of a DICOM series holding
    several; empty: every acquisition, ``CASE_acqN`` each).

    Raises:
        InputError: The table cannot be read, has no ``input`` column, or a row no input or an
            acquisition that is not a number.
    """
    import csv
    import dataclasses

    try:
        reader = csv.DictReader(path.read_text().splitlines())
        rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read the table of cases ({error})") from None
    if "input" not in (reader.fieldnames or []):
        raise InputError(f"{path}: a table of cases needs an 'input' column, got {reader.fieldnames}")
    cases = []
    for line, row in enumerate(rows, start=2):
        entry, name = (row.get("input") or "").strip(), (row.get("case") or "").strip()
        acquisition = (row.get("acquisition") or "").strip()
        if not entry or (acquisition and not acquisition.isdigit()):
            raise InputError(f"{path}, line {line}: needs an input and, if any, an acquisition number; got {row}")
        scan = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if acquisition:
            cases.append(Case(name or case_name(scan), scan, int(acquisition)))
            continue
        found = scan_cases(scan)
        cases += [dataclasses.replace(case, name=name + case.name[len(case_name(scan)):]) if name else case
                  for case in found]
    return cases


def scan_cases(path: Path) -> list[Case]:
    """One case per scan; a DICOM series holding several acquisitions at the same positions (a
    multi-phase study stored as one series) gives one case per acquisition, ``CASE_acqN``."""
    if not path.is_dir():
        return [Case(case_name(path), path)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DicomInputWarning)  # reported when the case is read
            acquisitions = dicom_acquisitions(path)
    except InputError:  # reported when the case is read
        return [Case(case_name(path), path)]
    if len(acquisitions) < 2:
        return [Case(case_name(path), path)]
    return [Case(f"{case_name(path)}_acq{item.number}", path, item.number) for item in acquisitions]


def read_list(path: Path) -> list[Path]:
    """Paths of a list file, one per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the list of inputs ({error})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [entry if entry.is_absolute() else path.parent / entry for entry in map(Path, entries)]


def name_collisions(cases: Iterable[Case]) -> dict[str, list[Case]]:
    """Output names that more than one case would write (``a_0000.nii.gz`` and ``a.nrrd``)."""
    by_name: dict[str, list[Case]] = {}
    for case in cases:
        by_name.setdefault(case.name, []).append(case)
    return {name: group for name, group in by_name.items() if len(group) > 1}
