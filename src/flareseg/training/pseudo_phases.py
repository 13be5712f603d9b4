"""Which phases of a recipe train on pseudo-labels: the student's recipe and its teacher's.

A recipe names its pseudo-label phases (``pseudo_labels: true``). One that names none becomes a
student by :func:`student_recipe`: each of its phases that names no label patterns trains on
every case, labelled, partially labelled and unlabelled, with pseudo-labels (a ``foreground``
stage keeps its real labels). :func:`teacher_recipe` is the reverse: the recipe trained on the
cases' own labels only, for the first teacher of ``flareseg train --rounds``.
"""

from __future__ import annotations

import dataclasses

from flareseg.datasets.layout import LABEL_PATTERNS
from flareseg.recipes import Recipe


def trains_on_pseudo_labels(recipe: Recipe) -> bool:
    """Whether a phase of the recipe names ``pseudo_labels: true``."""
    return any(phase.pseudo_labels for stage in recipe.stages for phase in stage.phases)


def student_recipe(recipe: Recipe) -> Recipe:
    """The recipe unchanged when it names pseudo-label phases; else each phase without label
    patterns of each stage but a ``foreground`` one trains on every case with pseudo-labels."""
    if trains_on_pseudo_labels(recipe):
        return recipe
    stages = []
    for stage in recipe.stages:
        if not stage.foreground:
            phases = stage.phases or (dataclasses.replace(recipe.phases(stage)[0], learning_rate=None, optimizer=None),)
            stage = dataclasses.replace(stage, epochs=None, phases=tuple(
                phase if phase.cases else dataclasses.replace(phase, cases=LABEL_PATTERNS, pseudo_labels=True)
                for phase in phases))
        stages.append(stage)
    return dataclasses.replace(recipe, stages=tuple(stages))


def teacher_recipe(recipe: Recipe) -> Recipe:
    """The recipe on the cases' own labels: its pseudo-label phases train on their labelled cases
    (a phase of unlabelled cases alone is left out), and ``train.loss.pseudo`` is dropped."""
    stages = []
    for stage in recipe.stages:
        phases = []
        for phase in stage.phases:
            if phase.pseudo_labels:
                cases = tuple(pattern for pattern in phase.cases if pattern != "unlabelled")
                if phase.cases and not cases:
                    continue
                phase = dataclasses.replace(phase, cases=cases, pseudo_labels=False)
            phases.append(phase)
        if stage.phases and not phases:  # every phase was of unlabelled cases
            phases = [dataclasses.replace(stage.phases[-1], cases=(), pseudo_labels=False)]
        stages.append(dataclasses.replace(stage, phases=tuple(phases)))
    loss = dataclasses.replace(recipe.train.loss, pseudo=None)
    return dataclasses.replace(recipe, stages=tuple(stages), train=dataclasses.replace(recipe.train, loss=loss))
