"""The official FLARE scoring loop, written against DeepMind's ``surface-distance`` package.

An independent reference for the tests: nibabel arrays in (x, y, z) order, the
package's own surface distances, the rules as in ``FLARE23_DSC_NSD_Eval.py``.
"""

from __future__ import annotations

import numpy as np
import surface_distance as sd


def flare_reference(gt_xyz, pred_xyz, spacing_xyz, class_id, tolerance_mm, threshold=0.2):
    gt, pred = gt_xyz == class_id, pred_xyz == class_id
    if not gt.any() and not pred.any():
        return 1.0, 1.0
    if gt.any() != pred.any():
        return 0.0, 0.0
    if class_id in (5, 6, 10):
        z = np.where(gt)[2]
        gt, pred = gt[:, :, z.min() : z.max()], pred[:, :, z.min() : z.max()]
    dsc = sd.compute_dice_coefficient(gt, pred)
    if dsc < threshold:
        return dsc, 0.0
    distances = sd.compute_surface_distances(gt, pred, spacing_xyz)
    return dsc, sd.compute_surface_dice_at_tolerance(distances, tolerance_mm)
