"""Train every stage of a recipe on a dataset folder and write a self-contained model directory."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from flareseg import __version__
from flareseg.datasets.check import require_clean_dataset
from flareseg.datasets.layout import Case, list_cases, matches_pattern
from flareseg.errors import InputError
from flareseg.inference.model import (
    FORMAT_VERSION,
    MODEL_JSON,
    RECIPE_YAML,
    WEIGHTS_SHA256,
    weight_hashes,
    weights_path,
)
from flareseg.io.atomic import atomic_write_text
from flareseg.labels import label_name
from flareseg.preprocessing.intensity import foreground_statistics, sample_foreground
from flareseg.preprocessing.stage_grid import annotated_channels
from flareseg.recipes import Recipe, recipe_from_dict, recipe_to_dict
from flareseg.training.distributed import on_main
from flareseg.training.loop import RunOptions, save_torch, train_stage
from flareseg.training.losses import build_recipe_loss
from flareseg.training.samples import cache_samples, load_samples, read_case


@dataclass(frozen=True)
class Split:
    train: list[Case]
    val: list[Case]


def split_cases(cases: list[Case], val_fraction: float, seed: int) -> Split:
    """Labelled cases split by case into training and validation (validation never empty of
    training: with fewer than two labelled cases everything trains)."""
    labelled = [case for case in cases if case.label is not None]
    n_val = int(round(len(labelled) * val_fraction))
    if val_fraction > 0 and len(labelled) >= 2:
        n_val = min(max(n_val, 1), len(labelled) - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(len(labelled))
    val_ids = {labelled[i].case_id for i in order[:n_val]}
    return Split([c for c in labelled if c.case_id not in val_ids], [c for c in labelled if c.case_id in val_ids])


def check_resumed_recipe(out_dir: Path, recipe: Recipe, resume: bool) -> None:
    """On resume, refuse a recipe other than the interrupted run's, before any work (statistics the
    recipe computes from the data are compared by :func:`prepare_output`, once they are known)."""
    recipe_file = out_dir / RECIPE_YAML
    if not (resume and recipe_file.is_file()):
        return
    stored = recipe_from_dict(yaml.safe_load(recipe_file.read_text()), source=str(recipe_file))
    if dataclasses.replace(stored, preprocess=recipe.preprocess) != recipe:
        raise InputError(f"{out_dir}: --resume needs the same recipe and settings as the interrupted run")


def prepare_output(out_dir: Path, recipe: Recipe, resume: bool) -> None:
    """Create ``out_dir`` and store the resolved recipe; on resume, insist it is the same recipe."""
    recipe_file = out_dir / RECIPE_YAML
    if recipe_file.is_file():
        if not resume:
            raise InputError(f"{out_dir} already holds a model or a training run; use --resume or another --out")
        stored = recipe_from_dict(yaml.safe_load(recipe_file.read_text()), source=str(recipe_file))
        if stored != recipe:
            raise InputError(f"{out_dir}: --resume needs the same recipe and settings as the interrupted run")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(recipe_file, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


def with_statistics(recipe: Recipe, cases: list[Case], out_dir: Path, resume: bool, progress: bool = True) -> Recipe:
    """The recipe with the dataset statistics its z-score normalisation needs (unchanged for a
    window, or when it holds them): taken from the interrupted run's stored recipe on resume,
    else computed from the training cases' labelled voxels (:func:`foreground_statistics`)."""
    preprocess = recipe.preprocess
    if preprocess.normalization != "zscore" or preprocess.statistics is not None:
        return recipe
    stored = Path(out_dir) / RECIPE_YAML
    if resume and stored.is_file():
        statistics = (yaml.safe_load(stored.read_text()).get("preprocess") or {}).get("statistics")
    else:
        from tqdm import tqdm

        rng = np.random.default_rng(recipe.train.seed)
        samples = []
        for case in tqdm(cases, desc="intensity statistics", unit="case", leave=False, disable=not progress):
            hu, label, _ = read_case(case)
            samples.append(sample_foreground(hu, label, rng))
        try:
            statistics = foreground_statistics(samples, preprocess.percentiles)
        except ValueError as error:
            raise InputError(f"z-score normalisation: {error}") from None
    return dataclasses.replace(recipe, preprocess=dataclasses.replace(preprocess, statistics=statistics))


def phase_cases(recipe: Recipe, stage, split: Split, unlabelled: list[Case]) -> list[list[Case]]:
    """The cases each phase of a stage trains on: its label patterns' (every training case when it
    names none), among the training cases, and the unlabelled ones for a pseudo-label phase naming
    ``unlabelled``; a phase without pseudo-labels keeps the cases that annotate a stage class.

    Raises:
        InputError: A phase is left without cases.
    """
    chosen = []
    for number, phase in enumerate(recipe.phases(stage), start=1):
        pool = split.train + (unlabelled if phase.pseudo_labels else [])
        pool = [case for case in pool if (not phase.cases and case.label is not None)
                or any(matches_pattern(case, pattern) for pattern in phase.cases)]
        if not phase.pseudo_labels:
            pool = [case for case in pool if annotated_channels(stage, case.annotated)[1:].any()]
        if not pool:
            raise InputError(f"stage {stage.name!r}, phase {number}: no training case of the label patterns "
                             f"{list(phase.cases) or 'any'} annotates any of its classes {list(stage.labels)}")
        chosen.append(pool)
    return chosen


def pseudo_samples(cases: list[Case], recipe: Recipe, source, cache: Path, progress: bool = True):
    """Cache the stage samples of ``cases`` pseudo-labelled by ``source`` (a
    :class:`flareseg.training.pseudo_labels.PseudoSource`: each case read once for all stages,
    cached by source and by what the case itself annotates); returns ``stage -> samples``, each
    stage's loaded once, marked with what their case annotates itself
    (:func:`flareseg.training.pseudo_labels.mark_own_annotation`)."""
    from flareseg.training.pseudo_labels import mark_own_annotation, with_classes

    filled = [with_classes(case, source.classes) for case in cases]
    originals = {case.case_id: case for case in cases}
    folders = cache_samples(filled, recipe, cache / f"pseudo-{source.key}", progress=progress,
                            reader=lambda case: source.read(originals[case.case_id]),
                            signature=lambda case: source.signature(originals[case.case_id]))
    loaded: dict[str, list] = {}

    def samples(stage):
        if stage.name not in loaded:
            loaded[stage.name] = mark_own_annotation(load_samples(filled, folders[stage.name]), stage, originals)
        return loaded[stage.name]

    return samples


def pseudo_source(teacher: str | Path | None, pseudo_labels: str | Path | None, device: str):
    """The :class:`flareseg.training.pseudo_labels.PseudoSource` of a teacher model or of a stored
    round; None without either."""
    from flareseg.training.pseudo_labels import stored_source, teacher_source

    if teacher is not None and pseudo_labels is not None:
        raise InputError("pseudo-labels come from a teacher model (--teacher) or a stored round (--pseudo-labels), "
                         "not both")
    if pseudo_labels is not None:
        return stored_source(pseudo_labels)
    if teacher is not None:
        from flareseg.inference.model import load_model

        return teacher_source(load_model(teacher, device=device))
    return None


def pseudo_pools(recipe: Recipe, chosen: dict[str, list[list[Case]]], source) -> dict[str, Case]:
    """The cases the pseudo-label phases train on, without those ``source``'s selection dropped
    (``chosen`` is updated in place); by case id.

    Raises:
        InputError: A phase trains on pseudo-labels and there is no source, or the source lacks
            some case's pseudo-label.
    """
    cases: dict[str, Case] = {}
    for stage in recipe.stages:
        for index, phase in enumerate(recipe.phases(stage)):
            if phase.pseudo_labels:
                pool = [case for case in chosen[stage.name][index] if source is None or case.case_id not in source.dropped]
                chosen[stage.name][index] = pool
                cases.update((case.case_id, case) for case in pool)
    if cases and source is None:
        raise InputError(f"recipe {recipe.name!r} trains on pseudo-labels: name a trained model to make them "
                         "(--teacher MODEL_DIR) or a stored round (--pseudo-labels DATASET/pseudoLabelsTr/roundN)")
    missing = sorted(case_id for case_id, case in cases.items() if source.missing(case)) if cases else []
    if missing:
        raise InputError(f"{len(missing)} case(s) have no pseudo-label in the round, or one made before their "
                         f"annotation changed: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         "(bring the round up to date with `flareseg pseudolabel`)")
    return cases


def save_weights(state: dict, path: Path) -> None:
    """Store a state dict as float16 (half the size; predictions are unchanged in practice), atomically."""
    save_torch({k: v.detach().cpu().half() if v.is_floating_point() else v.cpu() for k, v in state.items()}, path)


@dataclass(frozen=True)
class TrainingPlan:
    """What a run trains, decided before anything is written: the dataset, its split, the recipe
    (a student's when pseudo-labels are given), the cases of each stage's phases, the cases on
    pseudo-labels (by id) and where those come from."""

    spec: object
    split: Split
    recipe: Recipe
    chosen: dict[str, list[list[Case]]]
    pseudo_cases: dict[str, Case]
    source: object


def plan_training(dataset_dir, recipe: Recipe, out_dir: Path, options: RunOptions, teacher=None,
                  pseudo_labels=None) -> TrainingPlan:
    """Check the dataset and the recipe against it and decide what trains (see :class:`TrainingPlan`).

    Raises:
        InputError: ``flareseg dataset check`` finds an error, the recipe cannot train on the
            dataset, or ``out_dir`` holds another run.
    """
    spec = require_clean_dataset(dataset_dir, progress=options.progress and options.world.main).spec
    cases = list_cases(spec)
    split = split_cases(cases, recipe.train.val_fraction, recipe.train.seed)
    if not split.train:
        raise InputError(f"{dataset_dir}: no labelled case to train on")
    for stage in recipe.stages:  # fail before writing anything
        if not any(annotated_channels(stage, case.annotated)[1:].any() for case in split.train):
            raise InputError(f"stage {stage.name!r}: no training case annotates any of its classes {list(stage.labels)}")
    build_recipe_loss(recipe.train.loss)  # a loss argument it does not take, or out of its range
    source = pseudo_source(teacher, pseudo_labels, options.device)
    if source is not None:
        from flareseg.training.pseudo_phases import student_recipe

        recipe = student_recipe(recipe)
    unlabelled = [case for case in cases if case.label is None]
    chosen = {stage.name: phase_cases(recipe, stage, split, unlabelled) for stage in recipe.stages}
    pseudo_cases = pseudo_pools(recipe, chosen, source)
    # on several processes, rank 0 alone (the others may find the recipe it has just written)
    if options.world.main and (out_dir / RECIPE_YAML).is_file() and not options.resume:
        raise InputError(f"{out_dir} already holds a model or a training run; use --resume or another --out")
    check_resumed_recipe(out_dir, recipe, options.resume)
    return TrainingPlan(spec, split, recipe, chosen, pseudo_cases, source)


def stage_samples(stage, plan: TrainingPlan, folder: Path, pseudo):
    """A stage's training and validation samples and those of each of its phases.

    Raises:
        InputError: A phase's cases give no sample (e.g. every crop too thin for the stage).
    """
    split = plan.split
    samples = load_samples(split.train + split.val, folder)
    val_ids = {case.case_id for case in split.val}
    train_samples = [s for s in samples if s.case_id not in val_ids]
    val_samples = [s for s in samples if s.case_id in val_ids]
    phase_samples = []
    for number, (phase, pool) in enumerate(zip(plan.recipe.phases(stage), plan.chosen[stage.name]), start=1):
        ids = {case.case_id for case in pool}
        kept = [s for s in (pseudo(stage) if phase.pseudo_labels else train_samples) if s.case_id in ids]
        if not kept:
            raise InputError(f"stage {stage.name!r}, phase {number}: its cases give no training sample")
        phase_samples.append(kept)
    return train_samples, val_samples, phase_samples


def train_model(dataset_dir: str | Path, recipe: Recipe, out_dir: str | Path, options: RunOptions = RunOptions(),
                cache_dir: str | Path | None = None, teacher: str | Path | None = None,
                pseudo_labels: str | Path | None = None) -> Path:
    """Train all stages of ``recipe`` on the dataset and write the model directory.

    Stages whose weights already exist are skipped on resume; the one that was interrupted
    continues from its last checkpoint. ``model.json`` is written last, so a directory
    without it is not (yet) a model. ``teacher`` (a model directory) or ``pseudo_labels`` (a
    round ``flareseg pseudolabel`` stored) gives the pseudo-labels of the phases that ask for
    them (:mod:`flareseg.training.pseudo_labels`); a recipe that names no such phase trains as
    its :func:`flareseg.training.pseudo_phases.student_recipe`. On several processes
    (``options.world``) rank 0 alone reads the cases into the cache and writes files.

    Raises:
        InputError: ``flareseg dataset check`` finds an error in the dataset (nothing is written),
            or the recipe cannot train on it.
    """
    out_dir = Path(out_dir)
    plan = plan_training(dataset_dir, recipe, out_dir, options, teacher, pseudo_labels)
    cache = Path(cache_dir) if cache_dir else out_dir / "training" / "cache"
    world, split = options.world, plan.split

    def read_cases(recipe: Recipe):
        progress = options.progress and world.main
        folders = cache_samples(split.train + split.val, recipe, cache, progress=progress)
        cases = list(plan.pseudo_cases.values())
        return folders, pseudo_samples(cases, recipe, plan.source, cache, progress) if cases else None

    def prepare() -> Recipe:
        resolved = with_statistics(plan.recipe, split.train, out_dir, options.resume, options.progress)
        read_cases(resolved)
        prepare_output(out_dir, resolved, options.resume)  # after every case was read: a bad one leaves no run behind
        return resolved

    recipe = on_main(world, prepare)  # the other processes then find the cache full
    plan = dataclasses.replace(plan, recipe=recipe)
    folders, pseudo = read_cases(recipe)
    for index, stage in enumerate(recipe.stages):
        if options.resume and weights_path(out_dir, stage.name).is_file():
            continue
        start = time.perf_counter()
        train_samples, val_samples, phase_samples = stage_samples(stage, plan, folders[stage.name], pseudo)
        best = train_stage(stage, index, recipe, train_samples, val_samples,
                           out_dir / "training" / stage.name, options, phase_samples)
        if world.main:
            save_weights(best, weights_path(out_dir, stage.name))
            stage_summary = {"samples": len(train_samples), "val_samples": len(val_samples),
                             "phase_samples": [len(samples) for samples in phase_samples],  # pseudo-labelled too
                             "seconds": round(time.perf_counter() - start, 1)}
            atomic_write_text(out_dir / "training" / stage.name / "summary.json", json.dumps(stage_summary))
    if world.main:
        summary = {stage.name: json.loads((out_dir / "training" / stage.name / "summary.json").read_text())
                   for stage in recipe.stages}
        origin = plan.source.origin if plan.pseudo_cases else None
        write_model_json(out_dir, recipe, split, plan.spec.root, options, summary, origin)
    return out_dir


def write_model_json(out_dir: Path, recipe: Recipe, split: Split, dataset: Path, options: RunOptions,
                     summary: dict, pseudo_labels: dict | None = None) -> None:
    """Describe the model, with the sha256 of each stage's weights (checked when they are loaded)."""
    meta = {
        "format_version": FORMAT_VERSION,
        "recipe": recipe.name,
        "classes": {str(i): label_name(i) for i in recipe.class_ids},
        "stages": [stage.name for stage in recipe.stages],
        WEIGHTS_SHA256: weight_hashes(out_dir, [stage.name for stage in recipe.stages]),
        "training": {
            "dataset": dataset.name,
            "train_cases": [c.case_id for c in split.train],
            "val_cases": [c.case_id for c in split.val],
            **({"pseudo_labels": pseudo_labels} if pseudo_labels else {}),
            "validated_on": "validation cases" if split.val else "training cases (too few labelled cases)",
            "device": options.device, "world_size": options.world.size, "stages": summary,
            "flareseg": __version__, "torch": torch.__version__, "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    atomic_write_text(out_dir / MODEL_JSON, json.dumps(meta, indent=1))
