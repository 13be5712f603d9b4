"""Pseudo-labels from a trained model fill only what a real case does not annotate."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.data import default_model_dir
from flareseg.datasets.layout import label_pattern, list_cases, load_spec
from flareseg.errors import InputError
from flareseg.inference.cascade import segment_canonical
from flareseg.inference.model import load_model
from flareseg.recipes import load_recipe
from flareseg.training.pseudo_labels import pseudo_labelled, with_classes
from flareseg.training.samples import read_case
from flareseg.training.train import train_model


@pytest.fixture(scope="module")
def teacher():
    return load_model(default_model_dir())


def test_label_patterns_of_the_real_cases(real_dataset):
    patterns = {case.case_id: label_pattern(case) for case in list_cases(load_spec(real_dataset))}
    assert patterns == {"ts_full": "all_organs", "ts_dicom": "all_organs", "ts_aorta": "some_organs",
                        "tcia_cb001": "unlabelled"}


def test_a_partial_case_keeps_its_own_labels_and_takes_the_rest_from_the_teacher(real_dataset, teacher):
    case = next(c for c in list_cases(load_spec(real_dataset)) if c.case_id == "ts_aorta")
    assert case.annotated == (5,)
    hu, own, spacing = read_case(case)
    hu_p, label, spacing_p = pseudo_labelled(case, teacher)
    assert np.array_equal(hu, hu_p) and spacing == spacing_p
    predicted = segment_canonical(hu, spacing, teacher)
    assert np.array_equal(label[own > 0], own[own > 0])  # the case's own aorta, untouched
    assert not np.any((label == 5) & (own == 0))  # no aorta but the case's own: it annotates the aorta
    filled = (own == 0) & (label > 0)
    assert filled.any() and np.array_equal(label[filled], predicted[filled])
    others = (own == 0) & (predicted > 0) & (predicted != 5)
    assert np.array_equal(label[others], predicted[others])
    assert with_classes(case, teacher.recipe.class_ids).annotated == tuple(range(1, 14))


def test_an_unlabelled_case_takes_the_teachers_prediction_whole(real_dataset, teacher):
    case = next(c for c in list_cases(load_spec(real_dataset)) if c.label is None)
    hu, label, spacing = pseudo_labelled(case, teacher)
    assert np.array_equal(label, segment_canonical(hu, spacing, teacher))


def test_a_phase_on_pseudo_labels_needs_a_teacher(real_dataset, tmp_path):
    with pytest.raises(InputError, match="--teacher"):
        train_model(real_dataset, load_recipe("dual_decoder_2d"), tmp_path / "model")
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("annotated, expected", [
    ((), "unlabelled"), (tuple(range(1, 14)), "all_organs"), (tuple(range(1, 15)), "all_organs"),
    ((1, 2, 3, 13, 14), "organs_lesion"), ((14,), "lesion_only"), ((1, 2, 3, 4, 13), "some_organs"),
])
def test_label_patterns_by_hand(annotated, expected, tmp_path):
    from flareseg.datasets.layout import LABEL_PATTERNS, Case, matches_pattern

    case = Case("c", tmp_path / "c_0000.nii.gz", tmp_path / "c.nii.gz" if annotated else None, annotated)
    assert label_pattern(case) == expected
    groups = {pattern for pattern in LABEL_PATTERNS if matches_pattern(case, pattern)}
    # a case annotating every class is also a lesion case; any other is in one group
    assert groups == ({"all_organs", "organs_lesion"} if annotated == tuple(range(1, 15)) else {expected})


def test_a_changed_annotation_rebuilds_the_pseudo_labelled_samples(real_dataset, teacher, tmp_path):
    import dataclasses

    from flareseg.training.pseudo_labels import teacher_source

    case = next(c for c in list_cases(load_spec(real_dataset)) if c.case_id == "ts_aorta")
    more = dataclasses.replace(case, annotated=(1, 5))
    filled, filled_more = with_classes(case, teacher.recipe.class_ids), with_classes(more, teacher.recipe.class_ids)
    assert filled.annotated == filled_more.annotated  # the filled cases alone cannot tell them apart
    source = teacher_source(teacher)
    assert source.signature(case) != source.signature(more)
