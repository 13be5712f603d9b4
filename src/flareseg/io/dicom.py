"""Choose the files of one CT volume in a DICOM folder: one series, one acquisition, each slice once.

* Several CT series in one folder are refused (which one is meant cannot be guessed); other
  modalities (a SEG, an RTSTRUCT), localizers and single-slice series beside one CT series are
  ignored.
* The same file twice (the same SOPInstanceUID at the same position, or the same bytes) is read
  once, with a :class:`DicomInputWarning`.
* Two acquisitions stored as one series (e.g. two contrast phases over the same slices) are told
  apart by AcquisitionNumber (0020,0012), or else by the longest pauses in AcquisitionTime, then
  ContentTime; :func:`dicom_acquisitions` lists them and ``acquisition`` chooses one.
* What remains must be one uniform stack of slices (:func:`check_slice_positions`).

Headers are read with pydicom (no pixel data); SimpleITK then reads the chosen files.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flareseg.errors import FlaresegWarning, InputError

_TAGS = ["SOPInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "ImageType", "Rows",
         "Columns", "PixelSpacing", "NumberOfFrames", "ImagePositionPatient", "ImageOrientationPatient", "AcquisitionNumber", "AcquisitionTime",
         "ContentTime", "InstanceNumber"]
#: Slices closer than this along the slice normal (mm) are at the same position.
SAME_POSITION_MM = 0.01
#: Largest deviation of ImageOrientationPatient from two orthogonal unit vectors.
ORIENTATION_TOLERANCE = 1e-3
#: Largest difference of a slice distance from the median, as a share of it (plus 0.01 mm).
SPACING_TOLERANCE = 0.01


class DicomInputWarning(FlaresegWarning):
    """A DICOM folder was read after leaving something out (e.g. the same file twice)."""


@dataclass(frozen=True)
class DicomAcquisition:
    """One acquisition of a DICOM series (e.g. one contrast phase).

    Attributes:
        number: 1-based, in acquisition order; what ``acquisition=``/``--acquisition`` takes.
        slices: Number of slices (files).
        label: How it was told apart, e.g. ``"AcquisitionNumber 3"`` or ``"AcquisitionTime 11:24:19"``;
            empty when the series holds one acquisition.
    """

    number: int
    slices: int
    label: str = ""

    def describe(self) -> str:
        return f"{self.number}: {self.slices} slices" + (f", {self.label}" if self.label else "")


@dataclass(frozen=True)
class _Slice:
    """What the reader needs of one DICOM file's header."""

    path: Path
    sop_uid: str
    series_uid: str
    modality: str
    image: bool
    localizer: bool
    frames: int
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_grid: tuple | None  # Rows, Columns, PixelSpacing
    acquisition_number: int | None
    times: tuple[float | None, float | None]  # AcquisitionTime, ContentTime in seconds of the day
    instance_number: int | None
    series_label: str


def series_files(folder: Path, acquisition: int | None = None) -> list[Path]:
    """The files of the folder's CT volume, ordered along the slice normal.

    Args:
        folder: A folder of DICOM files.
        acquisition: Which acquisition (1-based, see :func:`dicom_acquisitions`) of a series that
            holds several; None when it holds one.

    Raises:
        InputError: No CT series, several, different slices at one position that no acquisition
            tag tells apart, several acquisitions and none chosen, or a non-uniform stack.
    """
    groups = _acquisition_groups(folder)
    if acquisition is None and len(groups) > 1:
        listing = "; ".join(a.describe() for a in _describe(groups))
        raise InputError(f"{folder}: holds {len(groups)} acquisitions over the same slice range ({listing}); "
                         "choose one with --acquisition N")
    if acquisition is not None and not 1 <= acquisition <= len(groups):
        listing = "; ".join(a.describe() for a in _describe(groups))
        raise InputError(f"{folder}: no acquisition {acquisition}; the series holds {len(groups)} ({listing})")
    slices = _ordered(groups[(acquisition or 1) - 1][1])
    check_slice_positions(folder, [(s.position, s.orientation) for s in slices])
    return [s.path for s in slices]


def dicom_acquisitions(folder: str | Path) -> list[DicomAcquisition]:
    """The acquisitions of a DICOM folder's CT series, in acquisition order (one for most series).

    Raises:
        InputError: As :func:`series_files`, except for several acquisitions.
    """
    return _describe(_acquisition_groups(Path(folder)))


def _acquisition_groups(folder: Path) -> list[tuple[str, list[_Slice]]]:
    slices = _drop_duplicate_files(folder, _ct_series(folder, _scan(folder)))
    check_slice_grids(folder, slices)
    return _split_acquisitions(folder, slices)


def check_slice_grids(folder: Path, slices: list[_Slice]) -> None:
    """Refuse slices whose in-plane grids differ (size or pixel spacing), or whose orientation is
    not two orthogonal unit vectors: no single voxel grid holds them.

    Raises:
        InputError: Naming the problem.
    """
    grids = Counter(s.pixel_grid for s in slices)
    if len(grids) > 1:
        listing = "; ".join(f"{_grid(grid)}: {count} slice(s)" for grid, count in grids.most_common(3))
        raise InputError(f"{folder}: DICOM slices of different in-plane grids in one series ({listing}); "
                         "give one series per folder")
    for s in slices:
        if s.orientation is None:
            continue
        row, column = np.array(s.orientation[:3]), np.array(s.orientation[3:])
        error = max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(column) - 1), abs(row @ column))
        if error > ORIENTATION_TOLERANCE:
            raise InputError(f"{folder}: {s.path.name}: ImageOrientationPatient {list(s.orientation)} is not two "
                             "orthogonal unit vectors; the slice's orientation is undefined")


def _grid(grid: tuple) -> str:
    rows, columns, spacing = grid
    size = f"{columns}x{rows}" if rows and columns else "size ?"
    return f"{size} at {' x '.join(f'{v:g}' for v in spacing)} mm" if spacing else f"{size}, no PixelSpacing"


def _describe(groups: list[tuple[str, list[_Slice]]]) -> list[DicomAcquisition]:
    return [DicomAcquisition(i + 1, len(members), label if len(groups) > 1 else "")
            for i, (label, members) in enumerate(groups)]


def _scan(folder: Path) -> list[_Slice]:
    """The DICOM files of a folder (not its sub-folders); other files are skipped."""
    import pydicom

    slices = []
    with warnings.catch_warnings():  # pydicom's remarks on odd but readable headers
        warnings.simplefilter("ignore")
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_TAGS)
                if "SeriesInstanceUID" in header:
                    slices.append(_slice(path, header))
            except Exception:  # noqa: BLE001 - any file that does not parse is simply not part of a series
                continue
    return slices


def _slice(path: Path, header) -> _Slice:
    image_type = [str(v).upper() for v in (header.get("ImageType") or [])]
    return _Slice(
        path=path,
        sop_uid=str(header.get("SOPInstanceUID", "")),
        series_uid=str(header.SeriesInstanceUID),
        modality=str(header.get("Modality", "") or "").strip(),
        image="Rows" in header,
        localizer="LOCALIZER" in image_type,
        frames=_int(header.get("NumberOfFrames")) or 1,
        position=_floats(header.get("ImagePositionPatient"), 3),
        orientation=_floats(header.get("ImageOrientationPatient"), 6),
        pixel_grid=(_int(header.get("Rows")), _int(header.get("Columns")), _floats(header.get("PixelSpacing"), 2)),
        acquisition_number=_int(header.get("AcquisitionNumber")),
        times=(_seconds(header.get("AcquisitionTime")), _seconds(header.get("ContentTime"))),
        instance_number=_int(header.get("InstanceNumber")),
        series_label=_series_label(header),
    )


def _ct_series(folder: Path, slices: list[_Slice]) -> list[_Slice]:
    """The slices of the folder's one CT series."""
    series: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        if s.image:
            series[s.series_uid].append(s)
    if not series:
        raise InputError(f"{folder}: no DICOM series found in this folder")
    ct = [members for members in series.values() if members[0].modality in ("CT", "")]
    if not ct:
        largest = max(series.values(), key=len)
        raise InputError(f"{folder}: DICOM series of modality {largest[0].modality}, not CT")
    volumes = [m for m in ct if not all(s.localizer for s in m) and (len(m) > 1 or m[0].frames > 1)]
    ct = volumes or ct
    if len(ct) > 1:
        listing = "; ".join(f"{m[0].series_label}: {len(m)} slices" for m in sorted(ct, key=len, reverse=True))
        raise InputError(f"{folder}: holds {len(ct)} CT series ({listing}); give one series per folder")
    return ct[0]


def _drop_duplicate_files(folder: Path, slices: list[_Slice]) -> list[_Slice]:
    """The slices without repeats of a file: the same SOPInstanceUID at the same position, or the
    same bytes. The first by file name is kept; the others are named in a :class:`DicomInputWarning`."""
    kept: dict[tuple, _Slice] = {}
    dropped = []
    shared = Counter(s.position for s in slices if not s.sop_uid)  # only these need their bytes compared
    for s in slices:  # sorted by file name
        if s.sop_uid:
            key = (s.sop_uid, s.position)
        elif shared[s.position] == 1:
            key = ("position", s.position)
        else:
            key = ("sha1", hashlib.sha1(s.path.read_bytes()).hexdigest())
        if key in kept:
            dropped.append(f"{s.path.name} = {kept[key].path.name}")
        else:
            kept[key] = s
    if dropped:
        more = f" and {len(dropped) - 3} more" if len(dropped) > 3 else ""
        warnings.warn(f"{folder}: {len(dropped)} duplicate DICOM file(s) read once ({', '.join(dropped[:3])}{more})",
                      DicomInputWarning, stacklevel=2)
    return list(kept.values())


def _split_acquisitions(folder: Path, slices: list[_Slice]) -> list[tuple[str, list[_Slice]]]:
    """The series as acquisitions ``(label, slices)``: one, unless positions repeat or interleave."""
    if any(s.position is None or s.orientation is None for s in slices):
        return [("", slices)]
    ids = _position_ids(slices)
    repeats = max(Counter(ids).values())
    numbered = _split_by_number(slices, ids, repeats)
    if numbered:
        return numbered
    if repeats == 1:
        return [("", slices)]
    for which, name in enumerate(("AcquisitionTime", "ContentTime")):
        timed = _split_by_pauses(slices, ids, repeats, which, name)
        if timed:
            return timed
    extra = len(ids) - len(set(ids))
    raise InputError(f"{folder}: {extra} DICOM slice(s) at the same position as another, not told apart by "
                     "AcquisitionNumber or acquisition time; keep one slice per position")


def _split_by_number(slices, ids, repeats) -> list[tuple[str, list[_Slice]]] | None:
    """Groups by AcquisitionNumber, if each covers a position once and they overlap along the normal."""
    if any(s.acquisition_number is None for s in slices):
        return None
    groups: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(slices):
        groups[s.acquisition_number].append(i)
    if len(groups) < 2 or not all(_unique(ids, members) for members in groups.values()):
        return None
    if repeats > 1 and len(groups) != repeats:
        return None  # numbers that change within a phase (e.g. per rotation): told apart by time instead
    if repeats == 1 and not _interleaved(ids, slices):
        return None  # adjacent blocks along the body (e.g. one acquisition per rotation): one volume
    return [(f"AcquisitionNumber {number}", [slices[i] for i in groups[number]]) for number in sorted(groups)]


def _split_by_pauses(slices, ids, repeats, which, name) -> list[tuple[str, list[_Slice]]] | None:
    """Groups cut at the ``repeats - 1`` longest pauses in a time tag, if each covers a position once."""
    times = [s.times[which] for s in slices]
    if any(t is None for t in times):
        return None
    order = np.argsort(times, kind="stable")
    pauses = np.diff(np.asarray(times)[order])
    cuts = np.sort(np.argsort(pauses, kind="stable")[::-1][: repeats - 1])
    if np.any(pauses[cuts] <= 0):
        return None
    members = np.split(order, cuts + 1)
    if not all(_unique(ids, group) for group in members):
        return None
    return [(f"{name} {_clock(times[group[0]])}", [slices[i] for i in group]) for group in members]


def _position_ids(slices: list[_Slice]) -> list[int]:
    """An integer per slice, equal for slices at the same position along the slice normal."""
    distances = np.array([_distance(s) for s in slices])
    order = np.argsort(distances, kind="stable")
    new = np.concatenate([[0], np.diff(distances[order]) > SAME_POSITION_MM])
    ids = np.empty(len(slices), dtype=int)
    ids[order] = np.cumsum(new)
    return ids.tolist()


def _interleaved(ids: list[int], slices: list[_Slice]) -> bool:
    """True when acquisition numbers alternate along the normal more often than adjacent blocks would."""
    numbers = [slices[i].acquisition_number for i in np.argsort(ids, kind="stable")]
    changes = sum(a != b for a, b in zip(numbers, numbers[1:]))
    return changes > len(set(numbers)) - 1


def _unique(ids: list[int], members) -> bool:
    chosen = [ids[i] for i in members]
    return len(chosen) == len(set(chosen))


def _ordered(slices: list[_Slice]) -> list[_Slice]:
    """Slices along the normal; by InstanceNumber, then file name, when positions are missing."""
    if all(s.position is not None and s.orientation is not None for s in slices):
        return sorted(slices, key=_distance)
    return sorted(slices, key=lambda s: (s.instance_number is None, s.instance_number or 0, s.path.name))


def _distance(s: _Slice) -> float:
    normal = np.cross(s.orientation[:3], s.orientation[3:])
    return float(np.dot(s.position, normal))


def check_slice_positions(folder: Path, tags: list[tuple]) -> None:
    """Refuse a DICOM series that is not one uniform stack of slices: slices of different
    orientations, two slices at one position, or a gap of more than 1.5 times the median slice
    distance (missing slices). Read as a grid anyway, such a series would give a mask of the wrong
    spacing or order.

    Args:
        tags: ``(ImagePositionPatient, ImageOrientationPatient)`` of each slice, as numbers or as in
            the files (``"x\\y\\z"``); series lacking them are not checked.

    Raises:
        InputError: Naming the problem and where it is.
    """
    if len(tags) < 2:
        return
    positions = [_floats(position, 3) for position, _ in tags]
    orientations = [_floats(orientation, 6) for _, orientation in tags]
    if any(p is None for p in positions) or any(o is None for o in orientations):
        return
    positions, orientations = np.array(positions), np.array(orientations)
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise InputError(f"{folder}: DICOM slices of different orientations in one series; "
                         "give one series per folder")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    steps = np.diff(np.sort(positions @ normal))
    median = float(np.median(steps))
    duplicates = int(np.count_nonzero(steps < 1e-3 * max(median, 1e-3)))
    if duplicates:
        raise InputError(f"{folder}: {duplicates} DICOM slice(s) at the same position as another; "
                         "keep one slice per position")
    gaps = np.flatnonzero(steps > 1.5 * median)
    if gaps.size:
        at = int(gaps[0])
        raise InputError(f"{folder}: missing DICOM slices: a gap of {steps[at]:.3g} mm after slice {at + 1} of "
                         f"{len(steps) + 1} (the others are {median:.3g} mm apart)")
    uneven = np.flatnonzero(np.abs(steps - median) > SPACING_TOLERANCE * median + 0.01)
    if uneven.size:
        raise InputError(f"{folder}: DICOM slice distances vary from {steps.min():.3g} to {steps.max():.3g} mm "
                         f"(first change after slice {int(uneven[0]) + 1} of {len(steps) + 1}); a voxel grid needs "
                         "one slice distance: resample the series or give each part as its own series")


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` numbers from a DICOM value (a list, or ``"a\\b\\c"``); None if missing or malformed."""
    if value is None:
        return None
    items = value.split("\\") if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else [value]
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n and all(np.isfinite(numbers)) else None


def _int(value) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


def _seconds(value) -> float | None:
    """A DICOM TM (``HHMMSS.ffffff``, or the old ``HH:MM:SS``) as seconds of the day; None if malformed."""
    text = str(value or "").strip().replace(":", "")
    try:
        whole, _, fraction = text.partition(".")
        hours, minutes, seconds = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
        return hours * 3600 + minutes * 60 + seconds + (float("0." + fraction) if fraction else 0.0)
    except ValueError:
        return None


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _series_label(header) -> str:
    number = _int(header.get("SeriesNumber"))
    name = f"series {number}" if number is not None else f"series ...{str(header.SeriesInstanceUID)[-8:]}"
    description = str(header.get("SeriesDescription", "") or "").strip()
    return f"{name} '{description}'" if description else name
