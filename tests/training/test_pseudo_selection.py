"""Pseudo-label selection: the FLARE22 winner's round-to-round instability, by hand."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from flareseg.cli.main import main
from flareseg.io import Geometry, write_labelmap
from flareseg.training.pseudo_rounds import PROVENANCE, round_folder
from flareseg.training.pseudo_selection import case_instability, class_instability, round_entropies, select_cases


def _rounds(*maps):
    return [np.array(m, dtype=np.uint8) for m in maps]


# Three rounds of three planted cases, 8 voxels each.
STABLE = _rounds([0, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0, 0, 0])
DRIFTING = _rounds([0, 1, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 2, 0, 0])
FLIPPING = _rounds([1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0])


def test_case_instability_is_the_winners_mean_of_changed_over_later_foreground():
    # round 1->2: 1 voxel changed, 3 foreground in round 2 -> 1/3; 2->3: 1 changed, 4 foreground -> 1/4
    assert case_instability(DRIFTING) == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert case_instability(STABLE) == 0.0
    assert case_instability(FLIPPING) == pytest.approx((8 / 4 + 8 / 4) / 2)
    assert case_instability(_rounds([1, 0], [0, 0])) == np.inf
    assert case_instability(_rounds([0, 0], [0, 0])) == np.inf  # found nothing: not "stable"
    with pytest.raises(ValueError):
        case_instability(STABLE[:1])


def test_ranking_keeps_the_most_stable_share_and_reports_the_rest():
    scores = {"flipping": case_instability(FLIPPING), "stable": case_instability(STABLE),
              "drifting": case_instability(DRIFTING)}
    selection = select_cases(scores, keep=2 / 3)
    assert selection.kept == ["stable", "drifting"] and selection.dropped == ["flipping"]
    assert select_cases(scores, keep=1.0).dropped == []
    # the winner's share: 1924 of 2000
    many = {f"case{i:04d}": i / 2000 for i in range(2000)}
    assert len(select_cases(many).kept) == 1924


def test_class_instability_drops_one_organ_and_keeps_the_case():
    # class 1: round 1->2 changes 1 voxel of it (3 in round 2) -> 1/3; 2->3: none -> 0; mean 1/6
    # class 2: absent in rounds 1, 2 -> 0; appears in round 3 (1 voxel, 1 changed) -> 1; mean 1/2
    scores = class_instability(DRIFTING, [1, 2])
    assert scores == {1: pytest.approx(1 / 6), 2: pytest.approx(1 / 2)}
    selection = select_cases({"drifting": case_instability(DRIFTING)}, keep=1.0,
                             class_scores={"drifting": scores}, class_threshold=0.25)
    assert selection.kept == ["drifting"] and selection.dropped_classes == {"drifting": [2]}


def test_max_entropy_drops_an_uncertain_class_beside_the_unstable_ones():
    scores = {"a": 0.0, "b": 0.1, "c": 0.2}
    class_scores = {"a": {1: 0.0, 2: 0.5}, "b": {1: 0.0}, "c": {1: 0.0}}
    entropies = {"a": {1: 0.9, 2: 0.05}, "b": {1: 0.2, 3: 0.7}}  # "c": recorded none (an older round)
    selection = select_cases(scores, 1.0, class_scores, 0.25, entropies, max_entropy=0.5)
    assert selection.instability_dropped == {"a": [2]}
    assert selection.entropy_dropped == {"a": [1], "b": [3]}
    assert selection.dropped_classes == {"a": [1, 2], "b": [3]}
    # without a maximum, entropy drops nothing; a dropped case has no classes dropped
    assert select_cases(scores, 1.0, class_scores, 0.25, entropies).dropped_classes == {"a": [2]}
    assert select_cases(scores, 2 / 3, entropies=entropies, max_entropy=0.5).entropy_dropped == {"a": [1], "b": [3]}
    assert select_cases(scores, 1 / 3, entropies=entropies, max_entropy=0.5).entropy_dropped == {"a": [1]}


def _plant_rounds(dataset):
    """Two rounds of three 2x2x4 cases with equal pseudo-labels; round 2 records no entropy for
    "old" (as rounds before it did), low ones for "calm", a high one on class 2 for "unsure"."""
    geometry = Geometry((2, 2, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    label = np.array([[[0, 1, 1, 2], [0, 2, 2, 1]]] * 2, np.uint8)
    entropy = {"calm": {"1": 0.01, "2": 0.02}, "unsure": {"1": 0.01, "2": 1.2}}
    for number in (1, 2):
        folder = round_folder(dataset, number)
        folder.mkdir(parents=True)
        cases = {}
        for case in ("calm", "old", "unsure"):
            write_labelmap(label, geometry, folder / f"{case}.nii.gz")
            cases[case] = {"kind": "unlabelled", "annotated": [], "seconds": 0.1}
            if number == 2 and case in entropy:
                cases[case]["entropy"] = entropy[case]
        (folder / PROVENANCE).write_text(json.dumps({"round": number, "teacher_key": str(number), "cases": cases}))


def test_select_with_max_entropy_drops_and_reports_a_planted_uncertain_class(tmp_path, capsys):
    dataset = tmp_path / "Dataset"
    _plant_rounds(dataset)
    assert round_entropies(dataset, 2) == {"calm": {1: 0.01, 2: 0.02}, "unsure": {1: 0.01, 2: 1.2}}
    assert round_entropies(dataset, 1) == {}
    assert main(["pseudolabel", "--dataset", str(dataset), "--select", "--keep", "1", "--max-entropy", "0.5"]) == 0
    assert "unsure: classes 2 dropped (uncertain 2)" in capsys.readouterr().out
    selection = json.loads((dataset / "pseudoLabelsTr" / "selection.json").read_text())
    assert selection["max_entropy"] == 0.5 and selection["kept"] == ["calm", "old", "unsure"]
    assert selection["dropped_classes"] == selection["entropy_dropped"] == {"unsure": [2]}
    assert selection["instability_dropped"] == {}
    assert selection["entropy"] == {"calm": {"1": 0.01, "2": 0.02}, "unsure": {"1": 0.01, "2": 1.2}}
    rows = {row["case"]: row for row in csv.DictReader((dataset / "pseudoLabelsTr" / "selection.csv").open())}
    assert rows["unsure"]["dropped_classes"] == rows["unsure"]["entropy_dropped"] == "2"
    assert rows["unsure"]["instability_dropped"] == "" and rows["old"]["dropped_classes"] == ""
    with pytest.raises(SystemExit):
        main(["pseudolabel", "--dataset", str(dataset), "--select", "--max-entropy", "-1"])
    assert "--max-entropy: must be at least 0" in capsys.readouterr().err
