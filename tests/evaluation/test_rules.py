"""Each FLARE rule set, as its official script at its revision scores it.

Expected values are written from the rules of the scripts (JunMa11/FLARE) and computed by
hand or with DeepMind's ``surface-distance``; real masks are compared with the
independent transcription in ``reference.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import surface_distance as sd

from flareseg.errors import InputError
from flareseg.evaluation.evaluate import score_case
from flareseg.evaluation.rules import RULE_NAMES, rules_for
from flareseg.io import Geometry, Volume, read_volume

from .reference import OFFICIAL, official_case

SPACING_ZYX = (2.0, 1.0, 1.0)
GEOMETRY = Geometry((12, 12, 12), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))  # spacing given x, y, z
LIVER, RIGHT_KIDNEY, SPLEEN, AORTA, LEFT_KIDNEY, LESION = 1, 2, 3, 5, 13, 14
ORGAN_RULES = ("flare21", "flare22", "flare22-2022", "flare23", "flare23-2023", "flare24-organs")


def block(shape=(12, 12, 12), z=(1, 11), yx=(1, 11), value=1):
    out = np.zeros(shape, np.uint8)
    out[z[0] : z[1], yx[0] : yx[1], yx[0] : yx[1]] = value
    return out


def scores(gt: np.ndarray, pred: np.ndarray, rules: str, lesion_class=None) -> dict[int, tuple[float, float]]:
    volume = lambda a: Volume(a, Geometry(a.shape, tuple(reversed(SPACING_ZYX)), (0.0, 0.0, 0.0)))  # noqa: E731
    result = score_case(volume(gt), volume(pred), "case", rules_for(rules, lesion_class))
    return {s.class_id: (s.dsc, s.nsd) for s in result}


def deepmind_nsd(gt, pred, tolerance_mm) -> float:
    distances = sd.compute_surface_distances(gt.T.astype(bool), pred.T.astype(bool), tuple(reversed(SPACING_ZYX)))
    return sd.compute_surface_dice_at_tolerance(distances, tolerance_mm)


def partial(gt: np.ndarray, inside: int) -> np.ndarray:
    """A prediction holding the first ``inside`` voxels of ``gt``: DSC = 2 inside / (|gt| + inside)."""
    pred = np.zeros_like(gt)
    pred.reshape(-1)[np.flatnonzero(gt)[:inside]] = gt.max()
    return pred


@pytest.mark.parametrize("rules", ORGAN_RULES)
def test_empty_masks(rules):
    empty, liver = np.zeros((12, 12, 12), np.uint8), block()
    both_empty = scores(empty, empty, rules)
    assert all(value == (1.0, 1.0) for value in both_empty.values())
    assert scores(empty, liver, rules)[LIVER] == (0.0, 0.0)  # predicted where the ground truth has none
    # Ground truth without prediction: 0/0 by rule, or computed (Dice 0, no predicted surface: NSD 0).
    assert scores(liver, empty, rules)[LIVER] == (0.0, 0.0)


def test_a_one_slice_z_range_slab_is_computed_in_2022_and_zero_today():
    gt = block(z=(4, 5), value=AORTA)  # the aorta on one slice: the slab [4, 4) is empty
    empty = np.zeros_like(gt)
    assert scores(gt, empty, "flare22")[AORTA] == (0.0, 0.0)  # explicit rule since aad2cc2
    dsc, nsd = scores(gt, empty, "flare22-2022")[AORTA]  # computed on an empty slab: not scored
    assert math.isnan(dsc) and math.isnan(nsd)
    dsc, nsd = scores(gt, gt, "flare22")[AORTA]  # likewise whenever both have it
    assert math.isnan(dsc) and math.isnan(nsd)


@pytest.mark.parametrize("inside, zero_below", [(81, ("flare22", "flare23", "flare24-organs")),  # DSC 0.150
                                               (52, ("flare22", "flare23", "flare23-2023", "flare24-organs"))])  # 0.099
def test_nsd_is_zero_below_each_revision_s_dsc_threshold(inside, zero_below):
    gt = block()  # 1000 voxels
    pred = partial(gt, inside)
    for rules in ORGAN_RULES:
        dsc, nsd = scores(gt, pred, rules)[LIVER]
        assert dsc == pytest.approx(2 * inside / (1000 + inside)), rules
        tolerance = 1.0 if rules == "flare21" else 5.0
        expected = 0.0 if rules in zero_below else deepmind_nsd(gt, pred, tolerance)
        assert expected < 1.0 and (rules in zero_below or expected > 0.1)
        assert nsd == pytest.approx(expected, abs=1e-12), rules


def test_flare21_merges_the_left_kidney_into_its_kidney_class():
    right, left = block(yx=(1, 5), value=RIGHT_KIDNEY), block(yx=(7, 11), value=LEFT_KIDNEY)
    gt = right + block(yx=(7, 11), value=RIGHT_KIDNEY)  # FLARE21 labels both kidneys 2
    pred = right + left  # flareseg labels them 2 and 13
    assert scores(gt, pred, "flare21")[RIGHT_KIDNEY] == (1.0, 1.0)
    assert set(scores(gt, pred, "flare21")) == {1, 2, 3, 4}
    # Without the merge the right kidney alone scores 2 * 160 / (320 + 160).
    assert scores(gt, pred, "flare22")[RIGHT_KIDNEY][0] == pytest.approx(2 / 3)
    # The ground truth is read as the script reads it: a 13 in it is no kidney of class 2.
    assert scores(pred, pred, "flare21")[RIGHT_KIDNEY][0] == pytest.approx(2 / 3)


def test_values_are_read_as_each_script_casts_them():
    gt = block(value=LIVER)
    # nibabel gives floats; FLARE22/23/24 cast them (np.uint8: 1.6 -> 1, 257 -> 1), FLARE21 does not.
    assert scores(gt, gt * np.float32(1.6), "flare22")[LIVER] == (1.0, 1.0)
    assert scores(gt, gt * np.float32(1.6), "flare21")[LIVER] == (0.0, 0.0)  # 1.6 is no class
    assert scores(gt, gt.astype(np.int16) * 257, "flare24-organs")[LIVER] == (1.0, 1.0)
    assert scores(gt, gt.astype(np.int16) * 257, "flare23")[LIVER] == (1.0, 1.0)  # int8 wraps too
    assert scores(gt.astype(np.int16) * 257, gt, "flare21")[LIVER] == (1.0, 1.0)  # its ground truth: uint8
    huge = gt * np.float64(2 ** 31 + 1)  # the scripts' np.uint8 of such a float: whatever NumPy gives here
    with np.errstate(invalid="ignore"):
        expected = float(np.array([2 ** 31 + 1], np.float64).astype(np.uint8)[0] == 1)
    assert scores(gt, huge, "flare22")[LIVER][0] == expected


def test_flare21_scores_at_one_millimetre():
    gt = block()
    pred = np.roll(gt, 1, axis=0)  # one voxel = 2 mm along z
    flare21, flare22 = scores(gt, pred, "flare21")[LIVER], scores(gt, pred, "flare22")[LIVER]
    assert flare21[0] == flare22[0] == pytest.approx(2 * 900 / 2000)
    assert flare22[1] == 1.0  # every surfel within 5 mm
    assert flare21[1] == pytest.approx(deepmind_nsd(gt, pred, 1.0)) and flare21[1] < 1.0


def test_aorta_is_scored_on_the_gt_z_range_without_its_top_slice():
    gt = block(z=(2, 7), value=AORTA)  # slices 2..6
    pred = block(z=(0, 10), value=AORTA)  # runs past both ends
    pred[6] = 0  # a miss on the top ground-truth slice, which the scripts leave out
    for rules in ("flare22", "flare22-2022", "flare23", "flare23-2023", "flare24-organs"):
        assert scores(gt, pred, rules)[AORTA] == (1.0, 1.0), rules
    assert scores(gt // AORTA, pred // AORTA, "flare22")[LIVER][0] < 0.8  # as liver: the whole volume


def test_the_lesion_is_scored_by_flare23_only():
    gt, pred = block(value=LIVER), block(value=LIVER)
    gt[4:6, 4:6, 4:6], pred[4:6, 4:7, 4:6] = LESION, LESION  # 8 and 12 voxels, 8 shared
    assert LESION not in scores(gt, pred, "flare22") and LESION not in scores(gt, pred, "flare24-organs")
    for rules in ("flare23", "flare23-2023"):
        dsc, nsd = scores(gt, pred, rules)[LESION]
        assert dsc == pytest.approx(16 / 20)
        assert nsd == pytest.approx(deepmind_nsd(gt == LESION, pred == LESION, 2.0))


def test_flare24_lesion_task_scores_one_binary_mask():
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[4:6, 4:6, 4:6] = 1
    pred = gt.copy()
    pred[4:6, 6, 4:6] = 1  # 8 + 4 voxels
    assert scores(gt, pred, "flare24-lesion") == {LESION: (pytest.approx(16 / 20), pytest.approx(1.0))}
    assert scores(gt * 3, pred, "flare24-lesion")[LESION][0] == pytest.approx(16 / 20)  # any non-zero GT value
    flareseg_map = np.where(pred == 1, LESION, block(value=LIVER))  # organs and a lesion 14
    assert scores(gt, flareseg_map, "flare24-lesion")[LESION] == (0.0, 0.0)  # values > 1: the script gives 0
    assert scores(gt, flareseg_map, "flare24-lesion", lesion_class=LESION)[LESION][0] == pytest.approx(16 / 20)
    empty = np.zeros_like(gt)
    assert scores(empty, empty, "flare24-lesion")[LESION] == (1.0, 1.0)
    assert scores(gt, empty, "flare24-lesion")[LESION] == (0.0, 0.0)


def test_rule_names_and_lesion_class_are_checked():
    assert set(RULE_NAMES) == {*OFFICIAL, "flare24-lesion"}
    with pytest.raises(InputError, match="flare24-lesion only"):
        rules_for("flare22", lesion_class=14)
    with pytest.raises(InputError, match="unknown rules"):
        rules_for("flare25")


def test_each_rule_set_names_its_script_and_revision():
    # Script paths and commits of JunMa11/FLARE, as listed in the rules' documentation.
    expected = {"flare21": ("FLARE21/Evaluation/DSC_NSD_eval.py", "be3eb6f"),
                "flare22": ("FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py", "aad2cc2"),
                "flare22-2022": ("FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py", "be3eb6f"),
                "flare23": ("FLARE23/FLARE23_DSC_NSD_Eval.py", "aad2cc2"),
                "flare23-2023": ("FLARE23/FLARE23_DSC_NSD_Eval.py", "dd7d8c2"),
                "flare24-lesion": ("FLARE24/T1_FLARE24_DSC_NSD_Eval.py", "aad2cc2"),
                "flare24-organs": ("FLARE24/T2andT3_FLARE24_DSC_NSD_Eval.py", "aad2cc2")}
    for name, (script, revision) in expected.items():
        rules = rules_for(name)
        assert (rules.script, rules.revision) == (script, revision)
        assert f"{script} @ {revision}" in rules.reference


def test_partial_labels_are_not_evaluated():
    gt = Volume(block() * AORTA, GEOMETRY)
    pred = Volume(block() * LIVER, GEOMETRY)  # predicts liver where only the aorta was annotated
    result = {s.class_id: s for s in score_case(gt, pred, "c", rules_for("flare22"), annotated=(AORTA,))}
    assert result[AORTA].dsc == 0.0
    assert all(math.isnan(s.dsc) and math.isnan(s.nsd) for i, s in result.items() if i != AORTA)


def _assert_agree(gt: Volume, pred: Volume, rules: str):
    ours = score_case(gt, pred, "case", rules_for(rules), threads=2)
    reference = official_case(gt.array.T, pred.array.T, gt.geometry.spacing_xyz_mm, rules)
    assert {s.class_id for s in ours} == set(reference)
    for score in ours:
        expected_dsc, expected_nsd = reference[score.class_id]
        assert score.dsc == pytest.approx(expected_dsc, abs=1e-6), (rules, score)
        assert score.nsd == pytest.approx(expected_nsd, abs=1e-6), (rules, score)
    return {s.class_id: s for s in ours}


@pytest.fixture(scope="module")
def real_pair(data_dir):
    ts = data_dir / "ts_example"
    gt = read_volume(ts / "flare_labels_fullct_from_v1normal.nii.gz")
    pred = read_volume(ts / "flare_labels_fullct_from_v2fast.nii.gz")
    planted = pred.array.copy()
    pancreas = np.flatnonzero(gt.array == 4)
    planted[planted == 4] = 0
    planted.reshape(-1)[pancreas[: len(pancreas) // 10]] = 4  # DSC 2 / 11, between 0.1 and 0.2
    planted[planted == 9] = 0  # gallbladder missed
    planted[gt.array == 14] = 0
    return gt, pred, Volume(planted, pred.geometry)


def _flare21_numbering(volume: Volume) -> Volume:
    return Volume(np.where(volume.array == LEFT_KIDNEY, RIGHT_KIDNEY, volume.array), volume.geometry)


@pytest.mark.parametrize("rules", ORGAN_RULES)
def test_real_masks_agree_with_the_official_loop(real_pair, rules):
    gt, pred, planted = real_pair
    if rules == "flare21":  # FLARE21's own files label both kidneys 2
        gt, pred, planted = (_flare21_numbering(v) for v in real_pair)
    ours = _assert_agree(gt, pred, rules)
    assert ours[1].dsc > 0.95  # liver agrees best
    planted_scores = _assert_agree(gt, planted, rules)
    assert 0.1 < planted_scores[4].dsc < 0.2
    assert rules == "flare21" or planted_scores[9].dsc == 0.0


@pytest.mark.parametrize("spacing_xyz", [(0.8, 0.8, 2.5), (1.5, 0.7, 3.0)])
def test_real_masks_on_anisotropic_grids_agree_with_the_official_loop(real_pair, spacing_xyz):
    gt, pred, _ = real_pair
    geometry = Geometry(gt.geometry.shape_zyx, spacing_xyz, gt.geometry.origin_lps_mm, gt.geometry.direction_lps)
    _assert_agree(Volume(gt.array, geometry), Volume(pred.array, geometry), "flare22")


def test_real_512_label_against_its_shifted_copy(data_dir):
    label = read_volume(data_dir / "ts_example" / "flare_labels_dicom_from_v2fast.nii.gz")  # 0.98 x 0.98 x 2 mm
    shifted = Volume(np.roll(label.array, (1, 2, -1), axis=(0, 1, 2)), label.geometry)
    ours = _assert_agree(label, shifted, "flare23")
    assert 0.2 < ours[1].nsd < 1.0
