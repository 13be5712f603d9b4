"""``flareseg train --rounds N``: teacher -> pseudo-labels -> student, N times, the FLARE22
winner's loop (Huang et al., three rounds on 2000 unlabelled scans).

In ``OUT``: ``teacher/`` (the recipe on the cases' own labels,
:func:`flareseg.training.pseudo_phases.teacher_recipe`; skipped when a teacher is given),
``pseudoLabelsTr/roundR/`` (round R's pseudo-labels, by the model before it), from round 2 on
``pseudoLabelsTr/selection.json`` (rounds 1..R compared, the least stable cases dropped:
:mod:`flareseg.training.pseudo_selection`), ``studentR/`` (the recipe trained on the labelled
cases and round R's selected pseudo-labels; the teacher of round R + 1) and ``rounds.json``. The
last student is the model. Every step resumes: a finished model or round is kept, an
interrupted one continues.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from flareseg.errors import InputError
from flareseg.inference.model import MODEL_JSON, RECIPE_YAML
from flareseg.io.atomic import atomic_write_text
from flareseg.recipes import Recipe
from flareseg.training.loop import RunOptions
from flareseg.training.pseudo_rounds import PSEUDO_FOLDER, RoundOptions, pseudolabel_round, round_folder
from flareseg.training.pseudo_selection import select_rounds
from flareseg.training.train import train_model


@dataclass(frozen=True)
class RoundsConfig:
    """The loop's settings: ``rounds`` (>= 1), the first ``teacher`` (a model directory; None:
    trained first), and the selection's ``keep`` share, ``class_threshold`` and ``max_entropy``
    (:func:`flareseg.training.pseudo_selection.select_cases`)."""

    rounds: int
    teacher: Path | None = None
    keep: float = 0.962
    class_threshold: float | None = None
    max_entropy: float | None = None


def train_rounds(dataset: str | Path, recipe: Recipe, out_dir: str | Path, config: RoundsConfig,
                 options: RunOptions = RunOptions(), cache_dir: str | Path | None = None) -> Path:
    """Run the loop (see the module's description); returns the last student's directory.

    Raises:
        InputError: A case could not be pseudo-labelled, or a step's own errors.
    """
    from flareseg.training.pseudo_phases import teacher_recipe

    dataset, out_dir = Path(dataset), Path(out_dir)
    if config.rounds < 1:
        raise InputError(f"--rounds must be >= 1, got {config.rounds}")
    cache = Path(cache_dir) if cache_dir else out_dir / "cache"
    root = out_dir / PSEUDO_FOLDER
    teacher = config.teacher
    if teacher is None:
        teacher = out_dir / "teacher"
        _train_once(dataset, teacher_recipe(recipe), teacher, options, cache)
    log, earlier = [], _read_log(out_dir)
    for number in range(1, config.rounds + 1):
        student = out_dir / f"student{number}"
        if (student / MODEL_JSON).is_file() and number in earlier:  # finished, with its selection, before
            log.append(earlier[number])
            teacher = student
            continue
        report = pseudolabel_round(dataset, teacher, number, root=root, options=RoundOptions(
            options.progress, options.device, options.threads))
        if report.failed:
            case, error = next(iter(report.failed.items()))
            raise InputError(f"round {number}: {len(report.failed)} case(s) could not be pseudo-labelled "
                             f"({case}: {error})")
        entry = {"round": number, "teacher": str(teacher), "pseudo_labels": str(report.folder),
                 "cases": len(report.done) + len(report.kept)}
        if number >= 2:
            entry["selection"] = _select(dataset, list(range(1, number + 1)), config, root)
        _train_once(dataset, recipe, student, options, cache, round_folder(dataset, number, root))
        log.append({**entry, "student": str(student)})
        atomic_write_text(out_dir / "rounds.json", json.dumps(log, indent=1) + "\n")
        teacher = student
    return teacher


def _read_log(out_dir: Path) -> dict[int, dict]:
    """Round -> its entry of an earlier run's ``rounds.json`` (none when there is none)."""
    path = out_dir / "rounds.json"
    try:
        return {int(entry["round"]): entry for entry in json.loads(path.read_text())}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _select(dataset: Path, rounds: list[int], config: RoundsConfig, root: Path) -> dict:
    selection, _, _ = select_rounds(dataset, rounds, config.keep, config.class_threshold, config.max_entropy, root)
    return {"kept": len(selection.kept), "dropped": selection.dropped, "dropped_classes": selection.dropped_classes}


def _train_once(dataset: Path, recipe: Recipe, out: Path, options: RunOptions, cache: Path,
                pseudo_labels: Path | None = None) -> None:
    """Train ``out`` unless it is a finished model; an interrupted run resumes."""
    if (out / MODEL_JSON).is_file():
        return
    resume = (out / RECIPE_YAML).is_file()
    train_model(dataset, recipe, out, dataclasses.replace(options, resume=resume), cache, pseudo_labels=pseudo_labels)
