"""``flareseg dataset import``: a CT with its DICOM RT structure set or DICOM-SEG as a training case.

The CT becomes ``imagesTr/CASE_0000.nii.gz`` and the structures ``labelsTr/CASE.nii.gz`` (uint8,
on the CT's grid) of a dataset in the nnU-Net v2 layout (:mod:`flareseg.datasets.layout`), and
``dataset.json`` is created or updated:

* structure (RTSTRUCT ROI) and segment (DICOM-SEG) names become flareseg classes by
  :func:`flareseg.labels.class_for_name`, or by explicit
  :class:`~flareseg.datasets.structure_mapping.MapRule` s (``"Kidney L=left_kidney"``,
  ``"Couch=ignore"``); names that match nothing are left out;
* a structure mapped to several classes (``"Stomach_duo=stomach+duodenum"``) is a *merged* label:
  a value of its own above the FLARE ids, declared as
  ``"label_mapping": {"Stomach_duo": ["stomach", "duodenum"]}``;
* plain classes are written under their flareseg names with their FLARE ids;
* ``annotated_classes[CASE]`` lists the values the case annotates, so that classes the structure
  set lacks count as unlabelled in this case, not as background.

RTSTRUCT contours are filled by :mod:`flareseg.datasets.rtstruct`, DICOM-SEG frames placed by
:mod:`flareseg.datasets.dicom_seg`, and names mapped by :mod:`flareseg.datasets.structure_mapping`.
Where kept structures overlap, the smaller one keeps the voxels (a lesion inside the liver stays
a lesion).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import RTStructureSetStorage

from flareseg.datasets.dicom_seg import seg_masks
from flareseg.datasets.layout import CHANNEL_SUFFIX
from flareseg.datasets.rtstruct import Mask, rtstruct_masks
from flareseg.datasets.structure_mapping import (IGNORE, MAX_VALUE, DatasetLabel, MapRule, StructureInfo,
                                                 plan_labels, resolve_targets)
from flareseg.errors import InputError
from flareseg.io import Geometry, Volume, read_ct, write_labelmap, write_volume
from flareseg.io.write import write_suffix
from flareseg.labels import BACKGROUND

RTSTRUCT = "RTSTRUCT"
SEG = "SEG"
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class Outcome:
    """What became of one structure of the file.

    Attributes:
        name: The structure name.
        label: The dataset label it was written as; None when it was left out.
        voxels: Its voxels in the written label map (after overlaps).
        reason: Why it was left out (``"ignored by --map"``, ``"no flareseg class"``); "" if kept.
        notes: What was skipped while reading it, voxels lost to overlaps.
    """

    name: str
    label: DatasetLabel | None
    voxels: int = 0
    reason: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseImport:
    """One case in memory, ready to be written.

    Attributes:
        labels: uint8 label map ``[z, y, x]`` on the CT's grid, in the dataset's numbering.
        dataset_json: The updated contents of ``dataset.json``.
        outcomes: One per structure of the file, in file order.
        annotated: Dataset values the case annotates, ascending.
    """

    labels: np.ndarray
    dataset_json: dict
    outcomes: tuple[Outcome, ...]
    annotated: tuple[int, ...]


@dataclass(frozen=True)
class ImportRequest:
    """What ``flareseg dataset import`` was asked to do.

    Attributes:
        ct: CT file or DICOM series folder.
        structures: RTSTRUCT or DICOM-SEG file drawn on that CT.
        dataset: Dataset folder (created when missing).
        case_id: Name of the new case.
        rules: Explicit name mappings; they take precedence over class names and aliases.
        overwrite: Replace a case of the same id.
    """

    ct: Path
    structures: Path
    dataset: Path
    case_id: str
    rules: tuple[MapRule, ...] = ()
    overwrite: bool = False


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_case` wrote."""

    case_id: str
    image: Path
    label: Path
    outcomes: tuple[Outcome, ...]
    annotated: tuple[int, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesReference:
    """The UIDs of a CT read from a DICOM series."""

    series_uid: str
    frame_of_reference_uid: str


# ----------------------------------------------------------------------------- reading DICOM


def read_dicom_file(path: str | os.PathLike) -> tuple[pydicom.Dataset, str]:
    """Read an RTSTRUCT or DICOM-SEG file.

    Returns:
        The dataset and its kind, :data:`RTSTRUCT` or :data:`SEG`.

    Raises:
        InputError: The file is missing, not DICOM, or neither an RT structure set nor a SEG.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError):
        raise InputError(f"{path}: not a DICOM file") from None
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class == RTStructureSetStorage:
        return dataset, RTSTRUCT
    if sop_class in hd.seg.SOP_CLASS_UIDS:
        return dataset, SEG
    what = getattr(dataset.get("SOPClassUID"), "name", "") or sop_class or "no SOP class"
    raise InputError(f"{path}: not an RT structure set or DICOM-SEG (it is {what}, modality "
                     f"{dataset.get('Modality', '?')})")


def list_structures(dataset: pydicom.Dataset, kind: str) -> list[StructureInfo]:
    """The ROIs (RTSTRUCT) or segments (SEG) of a file, in file order."""
    if kind == RTSTRUCT:
        return [StructureInfo(int(roi.ROINumber), (str(roi.get("ROIName", f"ROI {roi.ROINumber}")),))
                for roi in dataset.get("StructureSetROISequence", [])]
    structures = []
    for segment in dataset.SegmentSequence:
        names = [str(segment.get("SegmentLabel", f"segment {segment.SegmentNumber}"))]
        for code in segment.get("SegmentedPropertyTypeCodeSequence", []):
            names.append(str(code.get("CodeMeaning", "")))
        structures.append(StructureInfo(int(segment.SegmentNumber), tuple(n for n in names if n)))
    return structures


def ct_series_reference(path: str | os.PathLike) -> SeriesReference | None:
    """Series and frame of reference UIDs of a CT in a DICOM folder; None for an image file.

    Like :func:`flareseg.io.read_ct`, takes the series with the most slices in the folder.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    series: dict[str, list[str]] = {}
    tags = ["SeriesInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient"]
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=tags)
        except (InvalidDicomError, OSError, ValueError):
            continue
        if "SeriesInstanceUID" in header and "ImagePositionPatient" in header:
            series.setdefault(str(header.SeriesInstanceUID), []).append(str(header.get("FrameOfReferenceUID", "")))
    if not series:
        return None
    uid, frames = max(series.items(), key=lambda item: len(item[1]))
    return SeriesReference(uid, frames[0])


def check_reference(dataset: pydicom.Dataset, kind: str, reference: SeriesReference | None,
                    source: str) -> list[str]:
    """Check that the file was drawn on the CT, by its frame of reference and series UIDs.

    Returns:
        Notes: UIDs that could not be checked, or another series in the same frame of reference.

    Raises:
        InputError: The file's frame of reference is not the CT's.
    """
    if reference is None:
        return ["the CT is not a DICOM series: UIDs not checked, only the geometry"]
    frames, series = _referenced_uids(dataset, kind)
    if frames and reference.frame_of_reference_uid not in frames:
        raise InputError(f"{source}: drawn on another CT (frame of reference {sorted(frames)[0]}, "
                         f"the CT's is {reference.frame_of_reference_uid})")
    if series and reference.series_uid not in series:
        return [f"the file references series {sorted(series)[0]}, the CT is series {reference.series_uid} "
                "(same frame of reference)"]
    return [] if frames or series else ["the file names no frame of reference: only the geometry was checked"]


def _referenced_uids(dataset: pydicom.Dataset, kind: str) -> tuple[set[str], set[str]]:
    """Frame of reference UIDs and series UIDs a file says it was drawn on."""
    if kind == SEG:
        frames = {str(dataset.FrameOfReferenceUID)} if "FrameOfReferenceUID" in dataset else set()
        return frames, {str(item.SeriesInstanceUID) for item in dataset.get("ReferencedSeriesSequence", [])}
    frames, series = set(), set()
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        frames.add(str(frame.FrameOfReferenceUID))
        for study in frame.get("RTReferencedStudySequence", []):
            series.update(str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", []))
    frames.update(str(roi.ReferencedFrameOfReferenceUID) for roi in dataset.get("StructureSetROISequence", [])
                  if "ReferencedFrameOfReferenceUID" in roi)
    return frames, series


def read_masks(dataset: pydicom.Dataset, kind: str, geometry: Geometry, numbers: Sequence[int],
               source: str = "structures") -> dict[int, Mask]:
    """Place the given ROIs or segments on the CT grid.

    Raises:
        InputError: A contour lies between CT slices, or SEG frames do not lie on the CT grid.
    """
    if kind == RTSTRUCT:
        return rtstruct_masks(dataset, geometry, numbers, source)
    return seg_masks(hd.seg.Segmentation.from_dataset(dataset, copy=False), geometry, numbers, source)


# ----------------------------------------------------------------------------- the case


def paint_labels(masks: Sequence[tuple[int, np.ndarray]],
                 shape_zyx: tuple[int, int, int]) -> tuple[np.ndarray, list[int]]:
    """A label map from values and masks; where masks overlap, the smaller mask wins.

    Args:
        masks: ``(value, flat voxel indices into the [z, y, x] array)`` pairs.
        shape_zyx: Shape of the label map.

    Returns:
        uint8 ``[z, y, x]`` label map, and per mask the voxels it lost to smaller ones.
    """
    labels = np.zeros(int(np.prod(shape_zyx)), dtype=np.uint8)
    for value, voxels in sorted(masks, key=lambda mask: -len(mask[1])):
        labels[voxels] = value
    lost = [int(np.count_nonzero(labels[voxels] != value)) for value, voxels in masks]
    return labels.reshape(shape_zyx), lost


def build_case(dataset: pydicom.Dataset, kind: str, ct_geometry: Geometry, dataset_json: dict,
               case_id: str, rules: Sequence[MapRule] = (), source: str = "structures") -> CaseImport:
    """Turn an RTSTRUCT or SEG into a label map and the updated ``dataset.json``, in memory.

    Args:
        dataset: The file, as :func:`read_dicom_file` returns it.
        kind: :data:`RTSTRUCT` or :data:`SEG`.
        ct_geometry: The CT's grid.
        dataset_json: Current ``dataset.json`` contents (:func:`read_dataset_json`).
        case_id: The case's id.
        rules: Explicit name mappings.
        source: Name of the file, for errors.

    Raises:
        InputError: No structure maps to a flareseg class, a mapping clashes with
            ``dataset_json``, or the structures do not lie on the CT grid.
    """
    structures = list_structures(dataset, kind)
    targets = resolve_targets(structures, rules)
    if not any(targets):
        names = ", ".join(repr(s.name) for s in structures) or "none"
        raise InputError(f"{source}: no structure maps to a flareseg class (structures: {names}); "
                         "add --map NAME=CLASS")
    plan = plan_labels(structures, targets, dataset_json)
    kept = [(s, plan[classes]) for s, classes in zip(structures, targets) if classes]
    masks = read_masks(dataset, kind, ct_geometry, [s.number for s, _ in kept], source)
    painted = [(label.value, masks[s.number].voxels) for s, label in kept]
    labels, lost = paint_labels(painted, ct_geometry.shape_zyx)
    counts = np.bincount(labels.ravel(), minlength=MAX_VALUE + 1)
    if not counts[1:].any():
        names = ", ".join(repr(s.name) for s, _ in kept)
        raise InputError(f"{source}: no voxel of {names} lies on this CT; was it drawn on this CT?")
    written = {s.number: (label, lost_voxels) for (s, label), lost_voxels in zip(kept, lost)}
    outcomes = tuple(_outcome(s, classes, written.get(s.number), masks.get(s.number), counts)
                     for s, classes in zip(structures, targets))
    annotated = tuple(sorted({plan[classes].value for s, classes in zip(structures, targets)
                              if classes and masks[s.number].drawn}))
    payload = updated_dataset_json(dataset_json, list(plan.values()), case_id, annotated)
    return CaseImport(labels, payload, outcomes, annotated)


def _outcome(structure: StructureInfo, classes: tuple[str, ...] | None,
             written: tuple[DatasetLabel, int] | None, mask: Mask | None, counts: np.ndarray) -> Outcome:
    """What became of a structure; ``written`` is its label and the voxels it lost to overlaps."""
    if not classes or written is None or mask is None:
        return Outcome(structure.name, None, reason="ignored by --map" if classes == () else "no flareseg class")
    label, lost = written
    notes = list(mask.notes) + ([f"{lost} voxel(s) given to smaller overlapping structures"] if lost else [])
    if not mask.drawn:
        notes.append("no contours or frames in the file: not counted as annotated")
    return Outcome(structure.name, label, int(counts[label.value]), notes=tuple(notes))


def updated_dataset_json(dataset_json: dict, labels: Sequence[DatasetLabel], case_id: str,
                         annotated: Sequence[int]) -> dict:
    """``dataset.json`` with the case's labels, ``label_mapping`` lists and ``annotated_classes``.

    ``numTraining`` is left to the caller, who knows the files. Keys keep their order;
    ``labels`` are sorted by value. ``case_id`` is removed from ``unlabelled``.
    """
    out = dict(dataset_json)
    names = dict(dataset_json["labels"])
    mapping = dict(dataset_json.get("label_mapping") or {})
    for label in labels:
        names[label.name] = label.value
        if len(label.classes) > 1:
            mapping[label.name] = list(label.classes)
    out["labels"] = dict(sorted(names.items(), key=lambda item: item[1]))
    if mapping:
        out["label_mapping"] = mapping
    out["annotated_classes"] = {**(dataset_json.get("annotated_classes") or {}), case_id: list(annotated)}
    if "unlabelled" in out:
        out["unlabelled"] = [case for case in out["unlabelled"] if case != case_id]
    return out


# ----------------------------------------------------------------------------- files


def new_dataset_json() -> dict:
    """``dataset.json`` of an empty CT dataset."""
    return {"channel_names": {"0": "CT"}, "labels": {"background": BACKGROUND}, "numTraining": 0,
            "file_ending": ".nii.gz"}


def read_dataset_json(root: str | os.PathLike) -> dict:
    """The ``dataset.json`` of a dataset folder, or a new one when the folder has none.

    Raises:
        InputError: It is not valid JSON, lacks ``labels`` with ``background: 0``, declares
            other than one channel, or a ``file_ending`` flareseg cannot write.
    """
    root = Path(root)
    path = root / "dataset.json"
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if not path.exists():
        return new_dataset_json()
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise InputError(f"{path}: not readable JSON ({error})") from None
    labels = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(labels, dict) or labels.get("background") != BACKGROUND or not all(
            isinstance(v, int) for v in labels.values()):
        raise InputError(f"{path}: 'labels' must map names to integer values, with background = 0")
    if len(raw.get("channel_names", {"0": "CT"})) != 1:
        raise InputError(f"{path}: flareseg takes one CT channel, the dataset declares {len(raw['channel_names'])}")
    raw.setdefault("channel_names", {"0": "CT"})
    write_suffix(Path("case" + raw.setdefault("file_ending", ".nii.gz")))
    return raw


def check_case_id(case_id: str) -> str:
    """``case_id`` if it is a usable file name stem; raises InputError otherwise."""
    if not _CASE_ID.match(case_id):
        raise InputError(f"case id {case_id!r}: use letters, digits, '.', '_' and '-' "
                         "(starting with a letter or digit)")
    return case_id


def case_paths(root: Path, case_id: str, file_ending: str) -> tuple[Path, Path]:
    """``imagesTr/<case>_0000<ending>`` and ``labelsTr/<case><ending>`` of a dataset folder."""
    return root / "imagesTr" / f"{case_id}{CHANNEL_SUFFIX}{file_ending}", root / "labelsTr" / f"{case_id}{file_ending}"


def import_case(request: ImportRequest) -> ImportReport:
    """Read a CT and its RTSTRUCT or SEG, and add them to a dataset folder as one case.

    Nothing is written when anything fails; the image, the label map and ``dataset.json`` are
    written under temporary names and renamed into place at the end.

    Raises:
        InputError: A bad case id, the case exists (without ``overwrite``), an unreadable or
            wrong-kind file, a structure set drawn on another CT, or a ``dataset.json`` clash.
    """
    case_id, root = check_case_id(request.case_id), Path(request.dataset)
    dataset_json = read_dataset_json(root)
    image, label = case_paths(root, case_id, dataset_json["file_ending"])
    existing = [p for p in (image, label) if p.exists()]
    if not request.overwrite and (existing or case_id in (dataset_json.get("annotated_classes") or {})):
        where = existing[0] if existing else root / "dataset.json"
        raise InputError(f"case {case_id!r} already exists ({where}); use --overwrite to replace it")
    dicom, kind = read_dicom_file(request.structures)
    ct = read_ct(request.ct)
    source = str(request.structures)
    try:
        notes = check_reference(dicom, kind, ct_series_reference(request.ct), source)
        case = build_case(dicom, kind, ct.geometry, dataset_json, case_id, request.rules, source)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as error:  # a malformed file
        raise InputError(f"{source}: malformed {kind} ({type(error).__name__}: {error})") from None
    payload = {**case.dataset_json, "numTraining": _count_cases(root, dataset_json, case_id)}
    _write_case(ct, case.labels, payload, image, label, root / "dataset.json")
    return ImportReport(case_id, image, label, case.outcomes, case.annotated, tuple(notes))


def _count_cases(root: Path, dataset_json: dict, case_id: str) -> int:
    """Cases in ``imagesTr`` once ``case_id`` is added."""
    suffix = CHANNEL_SUFFIX + dataset_json["file_ending"]
    folder = root / "imagesTr"
    images = {p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")} if (
        folder.is_dir()) else set()
    return len(images | {case_id})


def _write_case(ct: Volume, labels: np.ndarray, payload: dict, image: Path, label: Path, spec: Path) -> None:
    """Write all three files under temporary names, then rename them into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        staged.append((write_volume(ct, _temporary(image)), image))
        staged.append((write_labelmap(labels, ct.geometry, _temporary(label)), label))
        temporary = _temporary(spec)
        staged.append((temporary, spec))
        temporary.write_text(json.dumps(payload, indent=2) + "\n")
        for written, final in staged:
            os.replace(written, final)
    except OSError as error:
        raise InputError(f"{spec.parent}: cannot write the case ({error.strerror or error})") from None
    finally:
        for written, _ in staged:
            written.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    """A hidden name beside ``path`` with the same ending."""
    return path.with_name(f".import-{uuid.uuid4().hex[:8]}-{path.name}")


def format_report(report: ImportReport) -> str:
    """A few lines: where the case went, what each structure became, what was left out."""
    lines = [f"imported case {report.case_id}: {report.image}, {report.label}"]
    width = max((len(o.name) for o in report.outcomes), default=0)
    for outcome in report.outcomes:
        if outcome.label is None:
            text = f"left out ({outcome.reason})"
        else:
            text = f"-> {outcome.label.describe()}, {outcome.voxels:,} voxels"
        notes = f"; {'; '.join(outcome.notes)}" if outcome.notes else ""
        lines.append(f"  {outcome.name:<{width}}  {text}{notes}")
    unmatched = [o.name for o in report.outcomes if o.reason == "no flareseg class"]
    if unmatched:
        lines.append(f"left out {len(unmatched)} structure(s) that match no flareseg class: {', '.join(unmatched)} "
                     f"(keep one with --map \"NAME=CLASS\", silence with --map \"NAME={IGNORE}\")")
    lines.append(f"annotated values: {', '.join(map(str, report.annotated)) or 'none'} "
                 "(other classes of the dataset count as unlabelled in this case)")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
