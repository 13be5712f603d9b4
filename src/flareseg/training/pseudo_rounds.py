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

Each finished case records (flareseg's extension) how unsure the teacher was of what it labelled:
``"entropy": {"CLASS": nats}``, per class, the mean over the voxels the pseudo-label takes from the
teacher with that class of the entropy of the teacher's softmax (:func:`class_entropy`). Rounds
written before it have no ``entropy``.

With a ``scheduler``, or ``workers`` > 1 and more than one case to do, cases are predicted on
Dask as ``flareseg predict``'s cohorts are (:func:`flareseg.inference.cohort.run_cohort`: each
worker process loads the teacher once and writes its cases' files, a case whose worker dies is
started again elsewhere); this process alone writes ``provenance.json``, as each case finishes.
"""

from __future__ import annotations

import functools
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


def round_file(folder: Path, case_id: str) -> Path:
    """The pseudo-label file of a case in a round folder (``CASE.nii.gz`` when there is none yet)."""
    found = sorted(p for p in Path(folder).glob(f"{case_id}.*") if p.name != PROVENANCE)
    return found[0] if found else Path(folder) / f"{case_id}.nii.gz"


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


def class_entropy(labels: np.ndarray, entropy: np.ndarray, where: np.ndarray | None = None) -> dict[int, float]:
    """Per class, the mean entropy over its voxels (flareseg's extension).

    Args:
        labels: Label map ``[z, y, x]``, uint8 class ids.
        entropy: float32 ``[z, y, x]``, entropy in nats per voxel (on ``labels``' grid).
        where: bool ``[z, y, x]``: only these voxels count (default: every voxel).

    Returns:
        Class id -> mean entropy in nats, for each foreground class with a voxel that counts.
    """
    labels, entropy = (labels, entropy) if where is None else (labels[where], entropy[where])
    counts = np.bincount(labels.ravel(), minlength=256)
    sums = np.bincount(labels.ravel(), weights=entropy.ravel().astype(np.float64), minlength=256)
    return {int(c): float(sums[c] / counts[c]) for c in np.flatnonzero(counts) if c}


@dataclass
class RoundReport:
    """What a pseudo-labelling round did: cases written, kept from an interrupted run, failed."""

    folder: Path
    number: int
    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class CaseOutcome:
    """One case of a round: its provenance entry when written, else why it failed."""

    case_id: str
    entry: dict | None = None
    error: str = ""


def pseudo_cases(dataset: Path, teacher_classes: tuple[int, ...]) -> list[Case]:
    """The cases a teacher labels: unlabelled ones, and those that leave a class it knows unannotated."""
    return [case for case in list_cases(load_spec(dataset))
            if case.label is None or set(teacher_classes) - set(case.annotated)]


@dataclass(frozen=True)
class RoundOptions:
    """How a round runs.

    Attributes:
        progress: A progress bar.
        device: Where the teacher runs.
        threads: CPU threads for the network (default: the library's choice); on Dask, per worker
            (default: the CPU cores // ``workers`` on a local cluster).
        workers: Worker processes of a local Dask cluster that predict the cases (1: in this
            process). Each loads the teacher once and writes its cases' files; only this process
            writes ``provenance.json``, as each case finishes, so an interrupted round (Ctrl-C
            ends the cluster) keeps what finished.
        scheduler: Address of a running Dask scheduler to predict on instead (``workers`` ignored).
    """

    progress: bool = True
    device: str = "cpu"
    threads: int | None = None
    workers: int = 1
    scheduler: str | None = None


def pseudolabel_round(dataset: str | Path, teacher_dir: str | Path, number: int | None = None,
                      overwrite: bool = False, root: Path | None = None,
                      options: RoundOptions = RoundOptions()) -> RoundReport:
    """Pseudo-label every unlabelled and partially labelled case of a dataset with a teacher.

    Args:
        number: Round number; None continues the last round if the same teacher wrote it, else starts
            the next one.
        overwrite: Redo a round another teacher wrote (else that is an error).
        root: Folder of the rounds (default ``DATASET/pseudoLabelsTr``).
        options: Progress, device, threads and worker processes (:class:`RoundOptions`).

    Raises:
        InputError: The dataset has nothing to pseudo-label, or the round belongs to another teacher.
    """
    from tqdm import tqdm

    progress, device, threads, workers = options.progress, options.device, options.threads, options.workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    dataset = Path(dataset)
    teacher = _teacher_recipe(teacher_dir)
    cases = pseudo_cases(dataset, teacher.recipe.class_ids)
    if not cases:
        raise InputError(f"{dataset}: every case annotates every class of the teacher; nothing to pseudo-label")
    from flareseg.training.pseudo_labels import teacher_key

    key = teacher_key(teacher)
    number = number or _default_round(dataset, key, root)
    folder = round_folder(dataset, number, root)
    provenance = _start_round(folder, number, teacher_dir, key, overwrite, teacher.recipe.class_ids)
    report = RoundReport(folder, number)
    todo = _cases_to_do(cases, folder, load_spec(dataset).file_ending, provenance, report)
    bar = {"desc": f"pseudo-labels, round {number}", "unit": "case", "total": len(cases), "initial": len(report.kept)}
    if todo and (options.scheduler or (workers > 1 and len(todo) > 1)):
        from flareseg.inference.cohort import ClusterOptions, Job, run_cohort

        def done(job, outcome: CaseOutcome | None, error: str) -> None:
            _record(provenance, report, CaseOutcome(job.name, error=error) if error else outcome)

        jobs = [Job(case.case_id, case.image, _label_job, (case, path)) for case, path in todo]
        load = functools.partial(_load_teacher, str(Path(teacher_dir).resolve()), device, threads)
        run_cohort(jobs, load, ClusterOptions(workers, options.scheduler), done, bar if progress else None)
        return report
    from flareseg.inference.model import load_model

    model = load_model(teacher_dir, device=device, threads=threads) if todo else None
    with tqdm(**bar, disable=not progress) as shown:
        for case, path in todo:
            _record(provenance, report, label_case(case, model, path))
            shown.update()
    return report


def label_case(case: Case, model, path: Path) -> CaseOutcome:
    """Pseudo-label one case with a loaded teacher and write it to ``path``; an error that concerns
    this case only (a bad file, a failed prediction) is its outcome, not an exception."""
    start = time.perf_counter()
    try:
        entropy = _write_case(case, model, path)
    except (FlaresegError, OSError, RuntimeError, ValueError) as error:
        return CaseOutcome(case.case_id, error=str(error))
    return CaseOutcome(case.case_id, {
        "kind": "unlabelled" if case.label is None else "partial", "annotated": list(case.annotated),
        "seconds": round(time.perf_counter() - start, 2),
        "entropy": {str(c): round(value, 6) for c, value in sorted(entropy.items())}})


def _teacher_recipe(teacher_dir):
    """The teacher without its networks: its directory and recipe (classes, stages), enough for its
    key and the cases it labels; whoever predicts loads the networks."""
    from flareseg.inference.model import LoadedModel, read_recipe

    return LoadedModel(Path(teacher_dir), read_recipe(Path(teacher_dir)), {}, "none")


def _load_teacher(teacher_dir: str, device: str, threads: int | None, share: int | None):
    """The teacher on a Dask worker: ``threads``, else the worker's ``share`` of the cores."""
    from flareseg.inference.model import load_model

    return load_model(teacher_dir, device=device, threads=threads or share)


def _label_job(model, case: Case, path: Path) -> CaseOutcome:
    return label_case(case, model, path)


def _cases_to_do(cases: list[Case], folder: Path, ending: str, provenance: dict,
                 report: RoundReport) -> list[tuple[Case, Path]]:
    """``(case, file)`` of the cases still to pseudo-label; those an interrupted run finished (its
    provenance names them with the same annotation and the file is complete) go to ``report.kept``."""
    todo = []
    for case in cases:
        path = folder / f"{case.case_id}{ending}"
        done_before = provenance["cases"].get(case.case_id)
        if done_before and done_before.get("annotated") == list(case.annotated) and _complete(path):
            report.kept.append(case.case_id)
        else:
            todo.append((case, path))
    return todo


def _record(provenance: dict, report: RoundReport, outcome: CaseOutcome) -> None:
    """Record a finished case: in ``provenance.json`` (rewritten whole, atomically) when written,
    else in ``report.failed``."""
    from flareseg.io.atomic import atomic_write_text

    if outcome.entry is None:
        report.failed[outcome.case_id] = outcome.error
        return
    provenance["cases"][outcome.case_id] = outcome.entry
    atomic_write_text(report.folder / PROVENANCE, json.dumps(provenance, indent=1) + "\n")
    report.done.append(outcome.case_id)


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


def _write_case(case: Case, model, path: Path) -> dict[int, float]:
    """Predict a case with the teacher and write its completed label map on the image's grid;
    returns the teacher's mean entropy per class over the voxels it labels there (:func:`class_entropy`)."""
    from flareseg.inference.predict import segment_with_entropy
    from flareseg.io import read_ct, read_volume, write_labelmap
    from flareseg.preprocessing.orientation import align_to

    ct = read_ct(case.image)
    predicted, entropy = segment_with_entropy(ct, model)
    label = None
    if case.label is not None:
        try:
            label = case.mapping.translate(align_to(read_volume(case.label), ct.geometry).array)
        except InputError as error:
            raise InputError(f"{case.label}: {error}") from None
    filled = fill_case(label, predicted.array, case.annotated, case.mapping.merged, model.recipe.class_ids)
    write_labelmap(filled, ct.geometry, path)
    return class_entropy(filled, entropy, None if label is None else filled != label)
