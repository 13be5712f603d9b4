"""The official FLARE scoring loops, per script revision, written against DeepMind's ``surface-distance``.

An independent reference for the tests: nibabel-style arrays in (x, y, z) order, the
package's own Dice and surface distances, and each script's rules transcribed here from
the scripts themselves (JunMa11/FLARE), not taken from flareseg.
"""

from __future__ import annotations

import numpy as np
import surface_distance as sd

_ORGANS = {1: 5, 2: 3, 3: 3, 4: 5, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 3, 11: 5, 12: 7, 13: 3}

#: rules -> (class id: tolerance mm, NSD = 0 below this DSC or None, GT present and
#: prediction empty is 0/0 (True) or computed (False), z-range classes, the dtype the
#: script casts the ground truth and the prediction to (None: not cast))
OFFICIAL = {
    "flare21": ({1: 1, 2: 1, 3: 1, 4: 1}, None, False, (), (np.uint8, None)),
    "flare22": (_ORGANS, 0.2, True, (5, 6, 10), (np.uint8, np.uint8)),
    "flare22-2022": (_ORGANS, None, False, (5, 6, 10), (np.uint8, np.uint8)),
    "flare23": ({**_ORGANS, 14: 2}, 0.2, True, (5, 6, 10), (np.int8, np.int8)),
    "flare23-2023": ({**_ORGANS, 14: 2}, 0.1, True, (5, 6, 10), (np.int8, np.int8)),
    "flare24-organs": (_ORGANS, 0.2, True, (5, 6, 10), (np.uint8, np.uint8)),
}


def official_class(gt_xyz, pred_xyz, spacing_xyz, class_id, rules: str) -> tuple[float, float]:
    """DSC and NSD of one class as the official script of ``rules`` computes them.

    The arrays are what nibabel's ``get_fdata`` gives (float64); flareseg's FLARE21 merge of
    a predicted left kidney is not part of the script and not modelled here.
    """
    tolerances, threshold, empty_is_zero, z_range, (gt_cast, pred_cast) = OFFICIAL[rules]
    gt_xyz, pred_xyz = np.asarray(gt_xyz, np.float64), np.asarray(pred_xyz, np.float64)
    gt_xyz = gt_xyz.astype(gt_cast) if gt_cast else gt_xyz
    pred_xyz = pred_xyz.astype(pred_cast) if pred_cast else pred_xyz
    gt, pred = gt_xyz == class_id, pred_xyz == class_id
    if not gt.any():
        return (1.0, 1.0) if not pred.any() else (0.0, 0.0)
    if not pred.any() and empty_is_zero:
        return 0.0, 0.0
    if class_id in z_range:
        z = np.where(gt)[2]
        gt, pred = gt[:, :, z.min() : z.max()], pred[:, :, z.min() : z.max()]
    dsc = sd.compute_dice_coefficient(gt, pred)
    if threshold is not None and dsc < threshold:
        return dsc, 0.0
    if not pred.any():  # no predicted surface: every reference surfel is infinitely far (the
        return dsc, 0.0  # package's own code for this case needs NumPy < 2)
    distances = sd.compute_surface_distances(gt, pred, spacing_xyz)
    return dsc, sd.compute_surface_dice_at_tolerance(distances, tolerances[class_id])


def official_case(gt_xyz, pred_xyz, spacing_xyz, rules: str) -> dict[int, tuple[float, float]]:
    """Every class the script of ``rules`` scores, class id -> (DSC, NSD)."""
    return {i: official_class(gt_xyz, pred_xyz, spacing_xyz, i, rules) for i in OFFICIAL[rules][0]}
