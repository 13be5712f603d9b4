"""Each flag rule on small hand-built masks (5 mm voxels; S = 5 * z mm, the scan spans S 0..195)."""

from __future__ import annotations

from flareseg.labels import ORGAN_IDS
from flareseg.qc.flags import case_flags, missing_flags, order_flags, volume_flags
from flareseg.qc.measures import measure_organs, scan_extent

SHAPE = (40, 20, 30)
RAS = ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))


def _measure(mask):
    return measure_organs(mask, None, ORGAN_IDS), scan_extent(mask.geometry)


def _missing(mask) -> set[str]:
    measures, extent = _measure(mask)
    return {flag.code for flag in missing_flags(measures, extent)}


def test_liver_missing_when_the_scan_reaches_10_mm_above_the_right_kidney(box_mask):
    # kidney top at z = 37 (S 185 mm), scan top S 195 mm: 10 mm above, covered; the kidney is in view
    # whole, so it also witnesses the left kidney, the aorta and the IVC
    assert _missing(box_mask(SHAPE, {"right_kidney": (30, 37, 5, 8, 5, 8)})) == {
        "liver", "left_kidney", "aorta", "inferior_vena_cava"}
    # kidney top at z = 38 (S 190): the scan reaches only 5 mm above it, so the liver may lie beyond
    assert _missing(box_mask(SHAPE, {"right_kidney": (31, 38, 5, 8, 5, 8)})) == set()
    # the liver present: not missing (the organs the kidney and liver witness are)
    found = _missing(box_mask(SHAPE, {"right_kidney": (10, 15, 5, 8, 5, 8), "liver": (14, 25, 2, 10, 2, 12)}))
    assert found == {"left_kidney", "aorta", "inferior_vena_cava", "gallbladder", "esophagus"}


def test_kidney_missing_only_when_the_other_kidney_is_seen_whole(box_mask):
    inside = {"left_kidney": (10, 15, 5, 8, 20, 23)}
    assert _missing(box_mask(SHAPE, inside)) == {"right_kidney", "spleen", "pancreas", "aorta"}
    # cut by the bottom of the scan (z = 1 is S 5 mm, less than 10 mm above the lowest slice)
    cut = {"left_kidney": (1, 6, 5, 8, 20, 23)}
    assert _missing(box_mask(SHAPE, cut)) == {"spleen"}  # the spleen needs only the kidney's top in view


def test_organs_without_witnesses_are_never_flagged_missing(box_mask):
    # every witness-based rule satisfied except the adrenal glands, which have none
    found = _missing(box_mask(SHAPE, {"liver": (10, 30, 2, 10, 2, 12), "right_kidney": (10, 15, 5, 8, 5, 8)}))
    assert "right_adrenal_gland" not in found and "left_adrenal_gland" not in found
    assert found == {"left_kidney", "inferior_vena_cava", "aorta", "gallbladder", "esophagus"}


def test_volume_small_large_and_cut_by_the_field_of_view(box_mask):
    grid = dict(spacing_xyz=(10.0, 10.0, 10.0))  # 1 mL per voxel; spleen range 107.2..314.5 mL
    cases = {
        (10, 14, 5, 9, 5, 8): [],  # 5 * 5 * 4 = 100 voxels = 100 mL ... small
        (10, 14, 5, 9, 0, 3): [],  # the same, touching the right face: cut, not flagged
        (10, 19, 2, 9, 5, 8): [],  # 10 * 8 * 4 = 320 mL: large
        (0, 9, 2, 9, 5, 8): [],  # 320 mL touching the bottom: still large
        (10, 12, 2, 7, 5, 10): [],  # 3 * 6 * 6 = 108 mL: plausible
    }
    found = []
    for box in cases:
        measures, _ = _measure(box_mask(SHAPE, {"spleen": box}, **grid))
        found.append([(flag.kind, flag.code) for flag in volume_flags(measures)])
    assert found == [[("volume_small", "spleen")], [], [("volume_large", "spleen")], [("volume_large", "spleen")], []]
    tiny_aorta, _ = _measure(box_mask(SHAPE, {"aorta": (10, 10, 5, 5, 5, 5)}, **grid))  # no range: not checked
    assert volume_flags(tiny_aorta) == []


def _order(mask) -> set[str]:
    measures, _ = _measure(mask)
    return {flag.code for flag in order_flags(measures)}


def test_left_right_order_in_patient_coordinates(box_mask):
    # LPS: x grows towards the patient's left, so small x is the patient's right
    plausible = {"right_kidney": (10, 15, 5, 8, 3, 6), "left_kidney": (10, 15, 5, 8, 20, 23),
                 "liver": (14, 30, 2, 12, 0, 12), "spleen": (16, 24, 8, 14, 22, 27),
                 "inferior_vena_cava": (5, 30, 2, 3, 11, 12), "aorta": (5, 30, 2, 3, 15, 16)}
    assert _order(box_mask(SHAPE, plausible)) == set()
    # the very same voxels on a RAS grid: x grows towards the patient's right, every pair is mirrored
    assert _order(box_mask(SHAPE, plausible, direction=RAS)) == {
        "kidneys_left_right", "liver_spleen_left_right", "ivc_aorta_left_right"}
    swapped = dict(plausible, right_kidney=(10, 15, 5, 8, 20, 23), left_kidney=(10, 15, 5, 8, 3, 6))
    assert _order(box_mask(SHAPE, swapped)) == {"kidneys_left_right"}


def test_up_down_order(box_mask):
    base = {"liver": (20, 30, 2, 12, 0, 12), "right_kidney": (15, 22, 5, 8, 3, 6),
            "stomach": (18, 26, 2, 8, 18, 24), "esophagus": (27, 39, 4, 5, 16, 17)}
    assert _order(box_mask(SHAPE, base)) == set()
    # right kidney centre (z 31.5) above the liver's top (z 30)
    high_kidney = dict(base, right_kidney=(29, 34, 5, 8, 3, 6))
    assert _order(box_mask(SHAPE, high_kidney)) == {"right_kidney_below_liver_top"}
    low_oesophagus = dict(base, esophagus=(5, 15, 4, 5, 16, 17))
    assert _order(box_mask(SHAPE, low_oesophagus)) == {"esophagus_above_stomach"}


def test_order_flags_name_both_organs_and_case_flags_collects_all(box_mask):
    mask = box_mask(SHAPE, {"right_kidney": (10, 15, 5, 8, 20, 23), "left_kidney": (10, 15, 5, 8, 3, 6)})
    measures, extent = _measure(mask)
    flags = case_flags(measures, extent)
    order = [flag for flag in flags if flag.kind == "order"]
    assert [(flag.code, flag.organs) for flag in order] == [("kidneys_left_right", ("right_kidney", "left_kidney"))]
    assert {flag.kind for flag in flags} == {"missing", "volume_small", "order"}
