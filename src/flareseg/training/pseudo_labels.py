"""Pseudo-labels for training: what a case does not annotate is filled by a trained flareseg model
(the teacher), so that a partially labelled or unlabelled case trains every class the teacher
knows. Recipe phases with ``pseudo_labels: true`` train on them. They come from a
:class:`PseudoSource`: the teacher itself, predicting while the samples are cached
(``flareseg train --teacher MODEL_DIR``, :func:`teacher_source`), or a round that
``flareseg pseudolabel`` stored, with its selection (``flareseg train --pseudo-labels ROUND``,
:func:`stored_source`).

A case's own annotation always wins: the teacher only fills voxels the label map leaves
background, and only with classes the case does not annotate. An unlabelled case takes the
teacher's prediction whole. A class the selection dropped from a case is ignored where the round
labels it (:data:`flareseg.training.samples.IGNORED`), and a case it dropped trains on nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from flareseg.datasets.layout import Case
from flareseg.errors import GeometryError, InputError
from flareseg.inference.model import LoadedModel, weights_path
from flareseg.io import read_ct, read_volume
from flareseg.preprocessing.orientation import align_to, to_canonical
from flareseg.preprocessing.stage_grid import annotated_channels
from flareseg.recipes import StageConfig
from flareseg.training.samples import IGNORED, Sample, case_signature, read_case


@dataclass(frozen=True)
class PseudoSource:
    """Where a student's pseudo-labels come from.

    Attributes:
        key: Names its cache folder (samples of another source are cached apart).
        classes: FLARE ids its pseudo-labels hold.
        read: A case (as the dataset annotates it) -> :func:`flareseg.training.samples.read_case`'s
            triple, with what the case does not annotate filled in.
        signature: A case -> what its filled samples depend on (a change rebuilds them).
        holds: Case id -> what the case annotated when its pseudo-label was made (a case
            annotated otherwise since has none); None: every case, as it is.
        dropped: Case ids its selection dropped: they train on nothing of it.
        origin: Where they come from, as ``model.json`` records it.
    """

    key: str
    classes: tuple[int, ...]
    read: Callable[[Case], tuple]
    signature: Callable[[Case], str]
    holds: dict[str, tuple[int, ...]] | None = None
    dropped: frozenset[str] = frozenset()
    origin: dict = dataclasses.field(default_factory=dict)

    def missing(self, case: Case) -> bool:
        """Whether the case needs a pseudo-label (it leaves one of :attr:`classes` unannotated)
        that this source does not have, of the case as it is annotated now."""
        needed = case.label is None or bool(set(self.classes) - set(case.annotated))
        return needed and self.holds is not None and self.holds.get(case.case_id) != tuple(case.annotated)


def teacher_key(model: LoadedModel) -> str:
    """A short hash of the teacher's recipe and weights: pseudo-labels of another teacher are
    cached apart.

    Raises:
        InputError: A weights or recipe file cannot be read.
    """
    digest = hashlib.sha1()
    try:
        for stage in model.recipe.stages:
            digest.update(weights_path(model.directory, stage.name).read_bytes())
        digest.update((Path(model.directory) / "recipe.yaml").read_bytes())
    except OSError as error:
        raise InputError(f"{model.directory}: unreadable teacher weights ({error})") from None
    return digest.hexdigest()[:12]


def with_classes(case: Case, classes: tuple[int, ...]) -> Case:
    """The case as its pseudo-labelled version annotates it: its own classes and ``classes``."""
    annotated = tuple(sorted(set(case.annotated) | set(classes)))
    return dataclasses.replace(case, annotated=annotated, partial=False)


def pseudo_labelled(case: Case, model: LoadedModel):
    """Read a case (labelled, partially labelled or unlabelled) and fill what it does not
    annotate with the teacher ``model``'s prediction, as a stored round does
    (:func:`flareseg.training.pseudo_rounds.fill_case`: inside a merged label the teacher's
    choice among its members splits it).

    Returns:
        As :func:`flareseg.training.samples.read_case`: the canonical HU array, the label map
        (FLARE ids, uint8; merged-label codes kept) and the spacing.
    """
    from flareseg.inference.cascade import segment_canonical
    from flareseg.training.pseudo_rounds import fill_case

    if case.label is None:
        canonical = to_canonical(read_ct(case.image))[0]
        hu, label, spacing = canonical.array, None, canonical.geometry.spacing_zyx_mm
    else:
        hu, label, spacing = read_case(case)
    predicted = segment_canonical(hu, spacing, model)
    return hu, fill_case(label, predicted, case.annotated, case.mapping.merged, model.recipe.class_ids), spacing


def teacher_source(model: LoadedModel) -> PseudoSource:
    """Pseudo-labels predicted by ``model`` while the samples are cached."""
    key = teacher_key(model)
    return PseudoSource(key, tuple(model.recipe.class_ids), lambda case: pseudo_labelled(case, model),
                        lambda case: "pseudo2 " + case_signature(case),
                        origin={"teacher": str(Path(model.directory).resolve()), "teacher_key": key})


def stored_source(folder: str | Path) -> PseudoSource:
    """Pseudo-labels of a round ``flareseg pseudolabel`` stored (``.../pseudoLabelsTr/roundN``), and
    the selection beside it (``selection.json``) when it compared this round as its last: the
    cases it dropped train on nothing, the classes it dropped from a case are ignored where the
    round labels them (never a class the case annotates itself).

    Raises:
        InputError: No round there, or its provenance does not name the teacher's classes.
    """
    from flareseg.training.pseudo_rounds import read_provenance, round_file

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of pseudo-labels (a round of `flareseg pseudolabel`)")
    provenance = read_provenance(folder)
    classes = provenance.get("classes")
    if not isinstance(classes, list) or not classes:
        raise InputError(f"{folder / 'provenance.json'}: names no teacher classes (written by an older flareseg: "
                         "run `flareseg pseudolabel` again with --overwrite)")
    selection = round_selection(folder, provenance.get("round"), provenance.get("teacher_key"))
    dropped_classes = {case: tuple(int(c) for c in classes_)
                       for case, classes_ in selection.get("dropped_classes", {}).items()}
    files = {case: round_file(folder, case) for case in provenance.get("cases", {})}
    key = hashlib.sha1(json.dumps([str(folder.resolve()), provenance.get("teacher_key"),
                                   sorted(dropped_classes.items())]).encode()).hexdigest()[:12]

    def read(case: Case):
        if case.case_id not in files:  # annotates every class of the round itself
            return read_case(case)
        drop = tuple(c for c in dropped_classes.get(case.case_id, ()) if c not in case.annotated)
        return read_stored(case, files[case.case_id], drop)

    def signature(case: Case) -> str:
        path = files.get(case.case_id)
        stat = path.stat() if path is not None and path.is_file() else None
        return "stored " + json.dumps([str(path), stat and [stat.st_size, stat.st_mtime_ns],
                                       dropped_classes.get(case.case_id, ()), case_signature(case)])

    origin = {"round": str(folder.resolve()), "teacher": provenance.get("teacher"),
              "teacher_key": provenance.get("teacher_key"),
              "selection": {"dropped": len(selection.get("dropped", ())), "dropped_classes": len(dropped_classes)}
              if selection else None}
    made_for = {case: tuple(entry.get("annotated", ())) for case, entry in provenance.get("cases", {}).items()}
    return PseudoSource("stored-" + key, tuple(int(c) for c in classes), read, signature, made_for,
                        frozenset(selection.get("dropped", ())), origin)


def round_selection(folder: Path, number, teacher_key: str | None = None) -> dict:
    """The ``selection.json`` beside a round when the last round it compared is this one, as the
    teacher ``teacher_key`` wrote it; else {} (with a warning when a selection is there but
    compared other rounds, or this round before another teacher rewrote it)."""
    import warnings

    from flareseg.errors import FlaresegWarning

    path = folder.parent / "selection.json"
    if not path.is_file():
        return {}
    try:
        selection = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable selection ({error})") from None
    rounds = selection.get("rounds") or []
    keys = selection.get("teacher_keys") or {}
    if not rounds or rounds[-1] != number:
        warnings.warn(f"{path} compared rounds {rounds}, not up to round {number}: not applied (run `flareseg "
                      "pseudolabel --select` again to select this round)", FlaresegWarning, stacklevel=2)
        return {}
    if str(number) in keys and keys[str(number)] != teacher_key:
        warnings.warn(f"{path}: round {number} was rewritten by another teacher since it was selected: not applied "
                      "(run `flareseg pseudolabel --select` again)", FlaresegWarning, stacklevel=2)
        return {}
    return selection


def read_stored(case: Case, path: Path, drop: tuple[int, ...] = ()):
    """A case's image and its stored pseudo-label map (on the image's grid), in canonical
    orientation, the voxels of the classes ``drop`` marked :data:`IGNORED`.

    Returns:
        As :func:`flareseg.training.samples.read_case`.

    Raises:
        InputError: The file is missing, not on the image's grid, or holds a value that is
            neither a FLARE id nor a merged label of the case.
    """
    from flareseg.labels import LABELS

    ct = read_ct(case.image)
    try:
        label = align_to(read_volume(path), ct.geometry)
    except GeometryError as error:
        raise InputError(f"{path}: {error}") from None
    ct_canonical, label_canonical = to_canonical(ct)[0], to_canonical(label)[0]
    values = label_canonical.array
    known = {0, *(entry.id for entry in LABELS), *case.mapping.merged}
    unknown = sorted(set(np.unique(values).tolist()) - known)
    if unknown:
        raise InputError(f"{path}: values {unknown[:5]} are neither flareseg classes nor merged labels of the case")
    values = values.astype(np.uint8)
    if drop:
        values[np.isin(values, drop)] = IGNORED
    return ct_canonical.array, values, ct_canonical.geometry.spacing_zyx_mm


def mark_own_annotation(samples: list[Sample], stage: StageConfig, originals: dict[str, Case]) -> list[Sample]:
    """Pseudo-labelled samples of ``stage`` with their ``own_annotated``: the stage channels (and
    background) that their case, ``originals[case_id]``, annotates itself; the rest of their
    ``annotated`` holds the teacher's classes, which a recipe's ``train.loss.pseudo`` trains apart."""
    return [dataclasses.replace(sample, own_annotated=annotated_channels(stage, originals[sample.case_id].annotated)
                                & sample.annotated) for sample in samples]
