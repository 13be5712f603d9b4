"""Each FLARE rule has a test that fails when the rule is broken; real masks agree with the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flareseg import labels
from flareseg.evaluation.evaluate import score_case
from flareseg.evaluation.rules import ScoringRules, rules_for, score_class
from flareseg.io import Geometry, Volume, read_volume

from .reference import flare_reference

RULES = ScoringRules()
SPACING = (2.0, 1.0, 1.0)


def block(shape=(10, 12, 12), z=(2, 8), yx=(3, 9)):
    out = np.zeros(shape, np.uint8)
    out[z[0] : z[1], yx[0] : yx[1], yx[0] : yx[1]] = 1
    return out


def test_both_empty_is_one_and_one_empty_is_zero():
    empty, full = np.zeros((6, 6, 6), np.uint8), block((6, 6, 6), (1, 4), (1, 4))
    assert score_class(empty, empty, 1, SPACING, RULES) == (1.0, 1.0)
    assert score_class(empty, full, 1, SPACING, RULES) == (0.0, 0.0)
    assert score_class(full, empty, 1, SPACING, RULES) == (0.0, 0.0)


@pytest.mark.parametrize("inside, expected_zero", [(110, True), (112, False)])
def test_nsd_is_zero_below_dsc_threshold(inside, expected_zero):
    gt = block((12, 12, 12), (1, 11), (1, 11))  # 1000 voxels
    pred = np.zeros_like(gt)
    pred.reshape(-1)[np.flatnonzero(gt)[:inside]] = 1  # DSC = 2*inside / (1000 + inside)
    dsc, nsd = score_class(gt, pred, 1, SPACING, RULES)
    assert dsc == pytest.approx(2 * inside / (1000 + inside))
    assert (dsc < 0.2) == expected_zero
    assert (nsd == 0.0) == expected_zero


def test_flare23_threshold_is_lower():
    gt = block((12, 12, 12), (1, 11), (1, 11))
    pred = np.zeros_like(gt)
    pred.reshape(-1)[np.flatnonzero(gt)[:110]] = 1
    assert score_class(gt, pred, 1, SPACING, rules_for("flare23"))[1] > 0


def test_aorta_is_scored_on_the_gt_z_range_without_its_top_slice():
    aorta = labels.BY_NAME["aorta"].id
    gt = block(z=(2, 7)) * aorta  # slices 2..6
    pred = block(z=(0, 10)) * aorta  # runs past both ends
    pred[6] = 0  # a miss on the top ground-truth slice, which the official rule leaves out
    dsc, nsd = score_class(gt, pred, aorta, SPACING, RULES)
    assert dsc == 1.0 and nsd == 1.0  # slices 2..5 agree exactly
    liver = labels.BY_NAME["liver"].id
    dsc_liver, _ = score_class(gt // aorta, pred // aorta, liver, SPACING, RULES)
    assert dsc_liver < 0.8  # the same shapes as liver are scored on the whole volume


def test_partial_labels_are_not_evaluated():
    geometry = Geometry((10, 12, 12), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    gt = Volume(block() * 5, geometry)
    pred = Volume(block() * 1, geometry)  # predicts liver where only the aorta was annotated
    scores = {s.class_id: s for s in score_case(gt, pred, "c", RULES, annotated=(5,))}
    assert scores[5].dsc == 0.0
    assert math.isnan(scores[1].dsc) and math.isnan(scores[1].nsd)
    assert all(math.isnan(s.dsc) for i, s in scores.items() if i != 5)


def _flare_reference_case(gt: Volume, pred: Volume, spacing_xyz, threshold=0.2):
    gt_xyz, pred_xyz = gt.array.T, pred.array.T
    return {
        i: flare_reference(gt_xyz, pred_xyz, spacing_xyz, i, labels.BY_ID[i].nsd_tolerance_mm, threshold)
        for i in RULES.class_ids
    }


def _assert_agree(gt: Volume, pred: Volume, rules=RULES, threshold=0.2):
    ours = score_case(gt, pred, "case", rules, threads=2)
    reference = _flare_reference_case(gt, pred, gt.geometry.spacing_xyz_mm, threshold)
    for score in ours:
        expected_dsc, expected_nsd = reference[score.class_id]
        assert score.dsc == pytest.approx(expected_dsc, abs=1e-6), score
        assert score.nsd == pytest.approx(expected_nsd, abs=1e-6), score
    return ours


def test_real_masks_agree_with_reference(data_dir):
    ts = data_dir / "ts_example"
    gt = read_volume(ts / "flare_labels_fullct_from_v1normal.nii.gz")
    pred = read_volume(ts / "flare_labels_fullct_from_v2fast.nii.gz")
    ours = {s.class_id: s for s in _assert_agree(gt, pred)}
    assert 0.5 < ours[4].dsc < 0.95 and ours[1].dsc > 0.95  # pancreas differs most, liver least
    _assert_agree(pred, gt, rules_for("flare23"), threshold=0.1)


@pytest.mark.parametrize("spacing_xyz", [(0.8, 0.8, 2.5), (1.5, 0.7, 3.0)])
def test_real_masks_on_anisotropic_grids_agree_with_reference(data_dir, spacing_xyz):
    ts = data_dir / "ts_example"
    gt = read_volume(ts / "flare_labels_fullct_from_v1normal.nii.gz")
    pred = read_volume(ts / "flare_labels_fullct_from_v2fast.nii.gz")
    geometry = Geometry(gt.geometry.shape_zyx, spacing_xyz, gt.geometry.origin_lps_mm, gt.geometry.direction_lps)
    _assert_agree(Volume(gt.array, geometry), Volume(pred.array, geometry))


def test_real_512_label_against_its_shifted_copy(data_dir):
    label = read_volume(data_dir / "ts_example" / "flare_labels_dicom_from_v2fast.nii.gz")  # 0.98 x 0.98 x 2 mm
    shifted = Volume(np.roll(label.array, (1, 2, -1), axis=(0, 1, 2)), label.geometry)
    ours = {s.class_id: s for s in _assert_agree(label, shifted)}
    assert 0.2 < ours[1].nsd < 1.0
