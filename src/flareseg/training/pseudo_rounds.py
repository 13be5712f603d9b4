"""Pseudo-labels stored beside a dataset, one folder per round: what ``flareseg pseudolabel`` writes.

``DATASET/pseudoLabelsTr/roundN/CASE.nii.gz`` holds, on the case's image grid, the case's label
map completed by a teacher model: an unlabelled case takes the teacher's prediction whole; a
partially labelled case keeps its own annotation, the teacher fills the classes it does not
annotate where its label is background, and inside a merged label (one contour of stomach and
duodenum) the teacher's choice among the members splits the union, never overwrites it (voxels
where the teacher predicts no member keep the merged code). Values are FLARE ids and the merged
codes of :mod:`flareseg.datasets.label_mapping`. ``provenance.json`` records the teacher (path, a
hash of its recipe and weights, the classes it predicts), the round, the date and each finished case, so an interrupted
round resumes where it stopped. The folder is flareseg's; nnU-Net ignores it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from flareseg.datasets.layout import Case, list_cases, load_spec
from flareseg.errors import FlaresegError, InputError

PSEUDO_FOLDER = "pseudoLabelsTr"
PROVENANCE = "provenance.json"


def pseudo_root(dataset: Path, root: Path | None = None) -> Path:
    """The folder holding the rounds: ``root`` when given, else ``DATASET/pseudoLabelsTr``."""
    return Path(root) if root is not None else Path(dataset) / PSEUDO_FOLDER


def round_folder(dataset: Path, number: int, root: Path | None = None) -> Path:
    """``DATASET/pseudoLabelsTr/roundN`` (``ROOT/roundN`` with ``root``)."""
    return pseudo_root(dataset, root) / f"round{number}"


def rounds_present(dataset: Path, root: Path | None = None) -> list[int]:
    """Round numbers with a provenance file, ascending."""
    root = pseudo_root(dataset, root)
    if not root.is_dir():
        return []
    found = [int(p.name[5:]) for p in root.iterdir() if p.name.startswith("round") and p.name[5:].isdigit()
             and (p / PROVENANCE).is_file()]
    return sorted(found)


def read_provenance(folder: Path) -> dict:
    """A round's provenance; an unreadable file is an error naming it."""
    path = folder / PROVENANCE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable pseudo-label provenance ({error})") from None


def fill_case(label: np.ndarray | None, predicted: np.ndarray, annotated: tuple[int, ...],
              merged: dict[int, tuple[int, ...]], teacher_classes: tuple[int, ...]) -> np.ndarray:
    """A case's label map completed by a teacher's prediction (both on one grid, FLARE ids).

    Args:
        label: The case's own label map (FLARE ids and merged codes), or None when unlabelled.
        predicted: The teacher's label map.
        annotated: Classes the case annotates (a merged label's members included).
        merged: Merged code -> its member classes.
        teacher_classes: Classes the teacher predicts.
    """
    if label is None:
        return predicted.astype(np.uint8, copy=True)
    filled = label.astype(np.uint8, copy=True)
    missing = [i for i in teacher_classes if i not in annotated]
    fill = (label == 0) & np.isin(predicted, missing)
    filled[fill] = predicted[fill]
    for code, members in merged.items():
        split = (label == code) & np.isin(predicted, members)
        filled[split] = predicted[split]
    return filled


@dataclass
class RoundReport:
    """What a pseudo-labelling round did: cases written, kept from an interrupted run, failed."""

    folder: Path
    number: int
    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def pseudo_cases(dataset: Path, teacher_classes: tuple[int, ...]) -> list[Case]:
    """The cases a teacher labels: unlabelled ones, and those that leave a class it knows unannotated."""
    return [case for case in list_cases(load_spec(dataset))
            if case.label is None or set(teacher_classes) - set(case.annotated)]


def pseudolabel_round(dataset: str | Path, teacher_dir: str | Path, number: int | None = None,
                      overwrite: bool = False, progress: bool = True, device: str = "cpu",
                      threads: int | None = None, root: Path | None = None) -> RoundReport:
    """Pseudo-label every unlabelled and partially labelled case of a dataset with a teacher.

    Args:
        number: Round number; None continues the last round if the same teacher wrote it, else starts
            the next one.
        overwrite: Redo a round another teacher wrote (else that is an error).
        root: Folder of the rounds (default ``DATASET/pseudoLabelsTr``).

    Raises:
        InputError: The dataset has nothing to pseudo-label, or the round belongs to another teacher.
    """
    from tqdm import tqdm

    from flareseg.inference.model import load_model
    from flareseg.io.atomic import atomic_write_text
    from flareseg.training.pseudo_labels import teacher_key

    dataset = Path(dataset)
    model = load_model(teacher_dir, device=device, threads=threads)
    cases = pseudo_cases(dataset, model.recipe.class_ids)
    if not cases:
        raise InputError(f"{dataset}: every case annotates every class of the teacher; nothing to pseudo-label")
    key = teacher_key(model)
    number = number or _default_round(dataset, key, root)
    folder = round_folder(dataset, number, root)
    provenance = _start_round(folder, number, teacher_dir, key, overwrite, model.recipe.class_ids)
    report = RoundReport(folder, number)
    ending = load_spec(dataset).file_ending
    for case in tqdm(cases, desc=f"pseudo-labels, round {number}", unit="case", disable=not progress):
        path = folder / f"{case.case_id}{ending}"
        done_before = provenance["cases"].get(case.case_id)
        if done_before and done_before.get("annotated") == list(case.annotated) and _complete(path):
            report.kept.append(case.case_id)
            continue
        start = time.perf_counter()
        try:
            _write_case(case, model, path)
        except (FlaresegError, OSError, RuntimeError, ValueError) as error:
            report.failed[case.case_id] = str(error)
            continue
        provenance["cases"][case.case_id] = {
            "kind": "unlabelled" if case.label is None else "partial",
            "annotated": list(case.annotated), "seconds": round(time.perf_counter() - start, 2)}
        atomic_write_text(folder / PROVENANCE, json.dumps(provenance, indent=1) + "\n")
        report.done.append(case.case_id)
    return report


def _default_round(dataset: Path, key: str, root: Path | None) -> int:
    present = rounds_present(dataset, root)
    if present and read_provenance(round_folder(dataset, present[-1], root)).get("teacher_key") == key:
        return present[-1]
    return (present[-1] if present else 0) + 1


def _start_round(folder: Path, number: int, teacher_dir, key: str, overwrite: bool, classes) -> dict:
    from flareseg import __version__
    from flareseg.io.atomic import atomic_write_text

    if (folder / PROVENANCE).is_file():
        provenance = read_provenance(folder)
        if provenance.get("teacher_key") == key:
            return provenance
        if not overwrite:
            raise InputError(f"{folder}: round {number} was written by another teacher "
                             f"({provenance.get('teacher')}); choose another --round or --overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    provenance = {"round": number, "teacher": str(Path(teacher_dir).resolve()), "teacher_key": key,
                  "classes": [int(i) for i in classes], "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "flareseg": __version__, "cases": {}}
    atomic_write_text(folder / PROVENANCE, json.dumps(provenance, indent=1) + "\n")
    return provenance


def _complete(path: Path) -> bool:
    from flareseg.inference.outputs import mask_is_complete

    return mask_is_complete(path, "nifti")


def _write_case(case: Case, model, path: Path) -> None:
    """Predict a case with the teacher and write its completed label map on the image's grid."""
    from flareseg.inference.predict import segment
    from flareseg.io import read_ct, read_volume, write_labelmap
    from flareseg.preprocessing.orientation import align_to

    ct = read_ct(case.image)
    predicted = segment(ct, model).array
    label = None
    if case.label is not None:
        try:
            label = case.mapping.translate(align_to(read_volume(case.label), ct.geometry).array)
        except InputError as error:
            raise InputError(f"{case.label}: {error}") from None
    filled = fill_case(label, predicted, case.annotated, case.mapping.merged, model.recipe.class_ids)
    write_labelmap(filled, ct.geometry, path)
