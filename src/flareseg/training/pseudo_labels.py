"""Pseudo-labels from a trained flareseg model (the teacher): what a case does not annotate is
filled with the teacher's prediction, so that a partially labelled or unlabelled case trains
every class the teacher knows. Recipe phases with ``pseudo_labels: true`` train on them
(``flareseg train --teacher MODEL_DIR``).

A case's own annotation always wins: the teacher only fills voxels the label map leaves
background, and only with classes the case does not annotate. An unlabelled case takes the
teacher's prediction whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from flareseg.datasets.layout import Case
from flareseg.inference.model import LoadedModel, weights_path
from flareseg.io import read_ct
from flareseg.preprocessing.orientation import to_canonical
from flareseg.preprocessing.stage_grid import annotated_channels
from flareseg.recipes import StageConfig
from flareseg.training.samples import Sample, read_case


def teacher_key(model: LoadedModel) -> str:
    """A short hash of the teacher's recipe and weights: pseudo-labels of another teacher are
    cached apart."""
    digest = hashlib.sha1()
    for stage in model.recipe.stages:
        digest.update(weights_path(model.directory, stage.name).read_bytes())
    digest.update((Path(model.directory) / "recipe.yaml").read_bytes())
    return digest.hexdigest()[:12]


def with_teacher_classes(case: Case, model: LoadedModel) -> Case:
    """The case as its pseudo-labelled version annotates it: its own classes and the teacher's."""
    annotated = tuple(sorted(set(case.annotated) | set(model.recipe.class_ids)))
    return dataclasses.replace(case, annotated=annotated, partial=False)


def pseudo_labelled(case: Case, model: LoadedModel):
    """Read a case (labelled, partially labelled or unlabelled) and fill what it does not
    annotate with the teacher ``model``'s prediction.

    Returns:
        As :func:`flareseg.training.samples.read_case`: the canonical HU array, the label map
        (FLARE ids, uint8; merged-label codes kept) and the spacing.
    """
    from flareseg.inference.cascade import segment_canonical

    if case.label is None:
        canonical = to_canonical(read_ct(case.image))[0]
        hu, spacing = canonical.array, canonical.geometry.spacing_zyx_mm
        label = np.zeros(hu.shape, np.uint8)
    else:
        hu, label, spacing = read_case(case)
    predicted = segment_canonical(hu, spacing, model)
    missing = [i for i in model.recipe.class_ids if i not in case.annotated]
    fill = (label == 0) & np.isin(predicted, missing)
    label[fill] = predicted[fill]
    return hu, label, spacing


def mark_own_annotation(samples: list[Sample], stage: StageConfig, originals: dict[str, Case]) -> list[Sample]:
    """Pseudo-labelled samples of ``stage`` with their ``own_annotated``: the stage channels (and
    background) that their case, ``originals[case_id]``, annotates itself; the rest of their
    ``annotated`` holds the teacher's classes, which a recipe's ``train.loss.pseudo`` trains apart."""
    return [dataclasses.replace(sample, own_annotated=annotated_channels(stage, originals[sample.case_id].annotated)
                                & sample.annotated) for sample in samples]


def pseudo_signature(originals: dict[str, Case]):
    """A :func:`flareseg.training.samples.cache_samples` signature of a pseudo-labelled case: the
    case's own (its files, what it annotates), so a change of its annotation rebuilds its samples."""
    from flareseg.training.samples import case_signature

    return lambda case: "pseudo " + case_signature(originals[case.case_id])


def pseudo_reader(originals: dict[str, Case], model: LoadedModel):
    """A :func:`flareseg.training.samples.cache_samples` reader that pseudo-labels each case
    (given as its :func:`with_teacher_classes` version) with ``model``."""
    def read(case: Case):
        return pseudo_labelled(originals[case.case_id], model)
    return read
