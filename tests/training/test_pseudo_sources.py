"""Where a student's pseudo-labels come from: a stored round with its selection, the phases a
student and its teacher train, and ignored voxels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flareseg.datasets.layout import LABEL_PATTERNS, Case
from flareseg.errors import InputError
from flareseg.io import read_volume, write_labelmap
from flareseg.preprocessing.orientation import to_canonical
from flareseg.recipes import StageConfig, load_recipe
from flareseg.training.loop import make_batch
from flareseg.training.losses import IGNORE
from flareseg.training.pseudo_labels import read_stored, round_selection, stored_source
from flareseg.training.pseudo_phases import student_recipe, teacher_recipe
from flareseg.training.samples import IGNORED, Sample, channel_lookup


@pytest.fixture
def stored_round(tmp_path, data_dir):
    """A round of two cases on the real 30-slice CT: ``full`` (unlabelled, its TotalSegmentator
    labels as the pseudo-label) and ``liver`` (annotating the liver itself)."""
    ts = data_dir / "ts_example"
    folder = tmp_path / "pseudoLabelsTr" / "round2"
    folder.mkdir(parents=True)
    labels = read_volume(ts / "flare_labels_sm_from_v2normal.nii.gz")
    write_labelmap(labels.array, labels.geometry, folder / "full.nii.gz")
    write_labelmap(labels.array, labels.geometry, folder / "liver.nii.gz")
    provenance = {"round": 2, "teacher": "t", "teacher_key": "abc", "classes": list(range(1, 14)),
                  "cases": {"full": {"kind": "unlabelled", "annotated": []},
                            "liver": {"kind": "partial", "annotated": [1]}}}
    (folder / "provenance.json").write_text(json.dumps(provenance))
    image = ts / "example_ct_sm.nii.gz"
    cases = {"full": Case("full", image, None, ()),
             "liver": Case("liver", image, ts / "flare_labels_sm_from_v2normal.nii.gz", (1,), partial=True)}
    return folder, cases, to_canonical(labels)[0].array


def _select(folder, rounds, dropped=(), dropped_classes=None, teacher="abc"):
    selection = {"rounds": rounds, "teacher_keys": {str(r): teacher for r in rounds}, "kept": [],
                 "dropped": list(dropped), "dropped_classes": dropped_classes or {}}
    (folder.parent / "selection.json").write_text(json.dumps(selection))


def test_a_dropped_class_is_ignored_where_the_round_labels_it_but_never_the_cases_own(stored_round):
    folder, cases, labels = stored_round
    _select(folder, [1, 2], dropped=["other"], dropped_classes={"full": [1, 3], "liver": [1, 3]})
    source = stored_source(folder)
    assert source.classes == tuple(range(1, 14)) and source.dropped == {"other"}
    assert source.origin["selection"] == {"dropped": 1, "dropped_classes": 2}
    _, full, _ = source.read(cases["full"])
    assert np.array_equal(full == IGNORED, np.isin(labels, (1, 3))) and (full == IGNORED).any()
    assert np.array_equal(full[full != IGNORED], labels[full != IGNORED])
    _, liver, _ = source.read(cases["liver"])  # the case annotates the liver itself: only the spleen goes
    assert np.array_equal(liver == IGNORED, labels == 3) and (liver == 1).any()


def test_a_selection_applies_only_to_the_last_round_it_compared_as_its_teacher_wrote_it(stored_round):
    from flareseg.errors import FlaresegWarning

    folder, cases, labels = stored_round
    _select(folder, [1, 2, 3], dropped_classes={"full": [1]})
    with pytest.warns(FlaresegWarning, match=r"compared rounds \[1, 2, 3\], not up to round 2"):
        assert round_selection(folder, 2, "abc") == {}
    with pytest.warns(FlaresegWarning):
        _, full, _ = stored_source(folder).read(cases["full"])
    assert np.array_equal(full, labels)
    _select(folder, [1, 2], dropped_classes={"full": [1]}, teacher="old")  # round 2 rewritten by "abc" since
    with pytest.warns(FlaresegWarning, match="rewritten by another teacher"):
        assert round_selection(folder, 2, "abc") == {}
    _select(folder, [1, 2], dropped_classes={"full": [1]})
    assert round_selection(folder, 2, "abc")["dropped_classes"] == {"full": [1]}


def test_a_stored_round_names_what_it_lacks(stored_round, tmp_path):
    folder, cases, _ = stored_round
    source = stored_source(folder)
    unlabelled = Case("absent", cases["full"].image, None, ())
    every_class = Case("all", cases["full"].image, cases["liver"].label, tuple(range(1, 14)))
    assert source.missing(unlabelled) and not source.missing(every_class) and not source.missing(cases["full"])
    assert not source.missing(cases["liver"])
    more = Case("liver", cases["liver"].image, cases["liver"].label, (1, 3), partial=True)
    assert source.missing(more)  # annotated otherwise since its pseudo-label was made
    provenance = json.loads((folder / "provenance.json").read_text())
    del provenance["classes"]
    (folder / "provenance.json").write_text(json.dumps(provenance))
    with pytest.raises(InputError, match="names no teacher classes"):
        stored_source(folder)
    with pytest.raises(InputError, match="no such folder"):
        stored_source(tmp_path / "nothing")


def test_a_stored_label_with_a_value_of_no_class_is_refused(stored_round):
    folder, cases, labels = stored_round
    volume = read_volume(folder / "full.nii.gz")
    array = volume.array.copy()
    array[0, 0, 0] = 77
    write_labelmap(array, volume.geometry, folder / "full.nii.gz")
    with pytest.raises(InputError, match=r"values \[77\]"):
        read_stored(cases["full"], folder / "full.nii.gz")


def test_ignored_voxels_reach_the_loss_as_its_ignore_index():
    stage = StageConfig("s", (1, 3), (4, 4, 4))
    lookup = channel_lookup(stage, (1, 3))
    assert lookup[IGNORED] == IGNORED and lookup[3] == 2 and lookup[2] == 0
    label = np.array([[[0, 1], [2, IGNORED]]], np.uint8)
    sample = Sample("c", np.zeros(label.shape, np.float16), label, np.ones(3, bool), np.zeros((0, 3), bool))
    _, target, _, _ = make_batch([sample], [0], None, "cpu")
    assert target.tolist() == [[[[0, 1], [2, IGNORE]]]]


def test_a_recipe_without_pseudo_label_phases_becomes_a_student_on_every_case():
    recipe = load_recipe("attention_dmfnet")
    student = student_recipe(recipe)
    region, organs = student.stages
    assert region.phases == ()  # a foreground stage keeps its real labels
    (phase,) = organs.phases
    assert phase.pseudo_labels and phase.cases == LABEL_PATTERNS
    assert phase.epochs == recipe.phases(recipe.stages[1])[0].epochs == 40
    assert student.phases(organs)[0].learning_rate == recipe.train.learning_rate
    teacher = teacher_recipe(student)
    assert teacher.phases(teacher.stages[1])[0].cases == tuple(p for p in LABEL_PATTERNS if p != "unlabelled")


def test_a_recipe_with_pseudo_label_phases_keeps_them_and_its_teacher_trains_on_own_labels():
    recipe = load_recipe("dual_decoder_2d")
    assert student_recipe(recipe) == recipe
    teacher = teacher_recipe(recipe)
    first, *rest = teacher.stages[0].phases
    assert not first.pseudo_labels and first.cases == ("organs_lesion", "lesion_only")
    assert rest == list(recipe.stages[0].phases[1:]) and teacher.train.loss.pseudo is None
