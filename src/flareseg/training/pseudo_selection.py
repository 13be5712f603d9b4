"""Which pseudo-labels to trust: how much a case's pseudo-label changes from one round to the next.

The FLARE22 winner (Huang et al., "Revisiting nnU-Net for Iterative Pseudo Labeling and Efficient
Sliding Window Inference"; ``select.ipynb`` of Ziyan-Huang/FLARE22) scores each case by the voxels
whose label differs between consecutive rounds, divided by the foreground voxels of the later
round, averaged over the round pairs, and drops the highest scores (it kept 1924 of 2000 cases):
:func:`case_instability`, :func:`select_cases`.

flareseg's own extension, by the same rule per class (:func:`class_instability`): the voxels
where either round has the class and the two differ, divided by the class's voxels in the later
round; a class above a threshold is dropped from that case (ignored in training) while the rest
of the case is kept.

flareseg's second extension, by the teacher's uncertainty: a kept case's class whose mean softmax
entropy (nats, as the last round compared recorded it in ``provenance.json``; see
:mod:`flareseg.training.pseudo_rounds`) exceeds a maximum is dropped the same way
(:func:`round_entropies`). A case of a round that recorded no entropy is never dropped for it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from flareseg.errors import InputError
from flareseg.io import read_volume
from flareseg.io.atomic import atomic_write_text
from flareseg.labels import LABELS
from flareseg.training.pseudo_rounds import pseudo_root, read_provenance, round_file, round_folder, rounds_present

SELECTION = "selection.json"


def case_instability(rounds: Sequence[np.ndarray]) -> float:
    """The FLARE22 winner's score of one case: the mean over consecutive rounds ``r-1, r`` of
    ``sum(P[r-1] != P[r]) / sum(P[r] > 0)``; ``inf`` when a later round has no foreground (the
    winner's 0/0: a teacher that finds nothing is ranked least stable, never most).

    Args:
        rounds: The case's pseudo-label maps of rounds 1, 2, ... (same shape), at least two.
    """
    if len(rounds) < 2:
        raise ValueError("instability needs the pseudo-labels of at least two rounds")
    scores = []
    for earlier, later in zip(rounds, rounds[1:]):
        foreground = np.count_nonzero(later)
        changed = np.count_nonzero(earlier != later)
        scores.append(changed / foreground if foreground else np.inf)  # nothing found: nothing to trust
    return float(np.mean(scores))


def class_instability(rounds: Sequence[np.ndarray], class_ids: Sequence[int]) -> dict[int, float]:
    """Per class, the mean over consecutive rounds of the voxels where either round has the class and
    the rounds differ, divided by the class's voxels in the later round (flareseg's extension).
    A class absent from both rounds of a pair scores 0 for that pair; absent only from the later, inf."""
    if len(rounds) < 2:
        raise ValueError("instability needs the pseudo-labels of at least two rounds")
    scores: dict[int, float] = {}
    for class_id in class_ids:
        pairs = []
        for earlier, later in zip(rounds, rounds[1:]):
            in_later = later == class_id
            changed = np.count_nonzero(((earlier == class_id) | in_later) & (earlier != later))
            size = np.count_nonzero(in_later)
            pairs.append(changed / size if size else (0.0 if not changed else np.inf))
        scores[int(class_id)] = float(np.mean(pairs))
    return scores


@dataclass
class Selection:
    """Cases kept and dropped, most stable first, and the classes dropped per kept case.

    Attributes:
        dropped_classes: Kept case -> classes dropped from it for either reason (ascending).
        instability_dropped: Kept case -> classes whose instability exceeded the threshold.
        entropy_dropped: Kept case -> classes whose mean entropy exceeded the maximum (flareseg's extension).
    """

    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    dropped_classes: dict[str, list[int]] = field(default_factory=dict)
    instability_dropped: dict[str, list[int]] = field(default_factory=dict)
    entropy_dropped: dict[str, list[int]] = field(default_factory=dict)


def select_cases(scores: Mapping[str, float], keep: float = 0.962, class_scores: Mapping[str, Mapping[int, float]]
                 | None = None, class_threshold: float | None = None,
                 entropies: Mapping[str, Mapping[int, float]] | None = None,
                 max_entropy: float | None = None) -> Selection:
    """Rank cases by instability and keep the most stable share.

    Args:
        scores: Case -> :func:`case_instability`.
        keep: Share of cases kept (rounded to the nearest count, at least one); the default is the
            FLARE22 winner's 1924 of 2000.
        class_scores: Case -> :func:`class_instability`, for dropping single classes.
        class_threshold: Drop a kept case's class whose instability exceeds this (None: never).
        entropies: Case -> class -> the teacher's mean softmax entropy in nats (:func:`round_entropies`);
            a case or class missing from it is never dropped for its entropy.
        max_entropy: Drop a kept case's class whose mean entropy exceeds this, in nats (None: never).
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    ranked = sorted(scores, key=lambda case: (scores[case], case))
    count = max(1, int(round(keep * len(ranked)))) if ranked else 0
    selection = Selection(kept=ranked[:count], dropped=ranked[count:])
    if class_scores is not None and class_threshold is not None:
        selection.instability_dropped = _classes_over(selection.kept, class_scores, class_threshold)
    if entropies is not None and max_entropy is not None:
        selection.entropy_dropped = _classes_over(selection.kept, entropies, max_entropy)
    for case in selection.kept:
        classes = set(selection.instability_dropped.get(case, ())) | set(selection.entropy_dropped.get(case, ()))
        if classes:
            selection.dropped_classes[case] = sorted(classes)
    return selection


def _classes_over(cases: Sequence[str], values: Mapping[str, Mapping[int, float]],
                  limit: float) -> dict[str, list[int]]:
    """Case -> its classes whose value exceeds ``limit`` (ascending), for the cases that have one."""
    over = {case: sorted(int(c) for c, v in values.get(case, {}).items() if v > limit) for case in cases}
    return {case: classes for case, classes in over.items() if classes}


def round_keys(dataset: Path, rounds: Sequence[int], root: Path | None = None) -> dict[str, str]:
    """Round -> the key of the teacher that wrote it (``provenance.json``): a selection records
    them, so that a round rewritten since is not filtered by it."""
    return {str(number): read_provenance(round_folder(dataset, number, root)).get("teacher_key") for number in rounds}


def round_entropies(dataset: Path, number: int, root: Path | None = None) -> dict[str, dict[int, float]]:
    """Case -> class -> the teacher's mean softmax entropy in nats, as round ``number`` recorded
    it in ``provenance.json`` (flareseg's extension); cases it recorded none for (a round written
    before flareseg recorded entropy) are left out."""
    cases = read_provenance(round_folder(dataset, number, root)).get("cases", {})
    return {case: {int(c): float(v) for c, v in entry["entropy"].items()}
            for case, entry in cases.items() if isinstance(entry.get("entropy"), dict)}


def score_rounds(dataset: Path, rounds: Sequence[int] | None = None, root: Path | None = None
                 ) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """Instability of every case that has a pseudo-label in each of the given rounds (default: all
    rounds present, at least two), overall and per class; ``root``: the rounds' folder (default
    ``DATASET/pseudoLabelsTr``).

    Raises:
        InputError: Fewer than two rounds.
    """
    rounds = list(rounds or rounds_present(dataset, root))
    if len(rounds) < 2:
        raise InputError(f"{dataset}: selection compares rounds; {len(rounds)} round(s) of pseudo-labels found, "
                         "at least two needed (run `flareseg pseudolabel` again with the new model)")
    folders = [round_folder(dataset, number, root) for number in rounds]
    finished = [set(read_provenance(folder)["cases"]) for folder in folders]
    common = sorted(set.intersection(*finished))
    scores, class_scores = {}, {}
    for case in common:
        paths = [round_file(folder, case) for folder in folders]
        maps = [read_volume(path).array for path in paths]  # a missing or broken file: an InputError naming it
        scores[case] = case_instability(maps)
        class_scores[case] = class_instability(maps, [label.id for label in LABELS])
    return scores, class_scores


def write_selection(dataset: Path, selection: Selection, scores: Mapping[str, float],
                    class_scores: Mapping[str, Mapping[int, float]], settings: Mapping,
                    root: Path | None = None, entropies: Mapping[str, Mapping[int, float]] | None = None) -> Path:
    """``pseudoLabelsTr/selection.json`` and ``selection.csv``; ``root`` as in :func:`score_rounds`.

    ``selection.csv`` has a row per case: score, rank, kept, the classes dropped (for either
    reason), those dropped for instability (``instability_dropped``) and those dropped for their
    entropy (``entropy_dropped``), space-separated. ``selection.json`` holds ``settings`` (e.g. the
    rounds compared), the kept and dropped cases, ``dropped_classes`` (what training ignores),
    ``instability_dropped``, ``entropy_dropped``, each case's instability and class instabilities,
    and ``entropy``: case -> class -> mean entropy in nats, for the cases ``entropies`` has.
    """
    root = pseudo_root(dataset, root)
    ranked = selection.kept + selection.dropped
    entropies = entropies or {}
    rows = [{"case": case, "rank": rank, "instability": scores[case], "kept": case in selection.kept,
             "dropped_classes": " ".join(map(str, selection.dropped_classes.get(case, []))),
             "instability_dropped": " ".join(map(str, selection.instability_dropped.get(case, []))),
             "entropy_dropped": " ".join(map(str, selection.entropy_dropped.get(case, [])))}
            for rank, case in enumerate(ranked, start=1)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["case"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(root / "selection.csv", text.getvalue())
    document = {**settings, "kept": selection.kept, "dropped": selection.dropped,
                "dropped_classes": selection.dropped_classes, "instability_dropped": selection.instability_dropped,
                "entropy_dropped": selection.entropy_dropped,
                "instability": {case: scores[case] for case in ranked},
                "class_instability": {case: {str(c): s for c, s in class_scores[case].items() if s}
                                      for case in ranked},
                "entropy": {case: {str(c): v for c, v in sorted(entropies[case].items())}
                            for case in ranked if case in entropies}}
    return atomic_write_text(root / SELECTION, json.dumps(document, indent=1, allow_nan=True) + "\n")


def select_rounds(dataset: Path, rounds: Sequence[int], keep: float = 0.962, class_threshold: float | None = None,
                  max_entropy: float | None = None, root: Path | None = None
                  ) -> tuple[Selection, dict[str, float], Path]:
    """Score the ``rounds`` (:func:`score_rounds`), select (:func:`select_cases`, with the last
    round's entropies) and write ``selection.json``/``.csv`` recording the settings and the teacher
    of each round; returns the selection, the cases' scores and the JSON file's path.

    Raises:
        InputError: Fewer than two rounds.
    """
    scores, class_scores = score_rounds(dataset, rounds, root)
    rounds = list(rounds)
    entropies = round_entropies(dataset, rounds[-1], root)
    selection = select_cases(scores, keep, class_scores, class_threshold, entropies, max_entropy)
    settings = {"rounds": rounds, "teacher_keys": round_keys(dataset, rounds, root), "keep": keep,
                "class_threshold": class_threshold, "max_entropy": max_entropy}
    return selection, scores, write_selection(dataset, selection, scores, class_scores, settings, root, entropies)
