"""Pseudo-label selection: the FLARE22 winner's round-to-round instability, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.training.pseudo_selection import case_instability, class_instability, select_cases


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
