"""DSC and NSD of one class, and the label maps a rule set scores, as the official scripts do."""

from __future__ import annotations

import math

import numpy as np

from flareseg import labels
from flareseg.evaluation.rules import ScoringRules
from flareseg.evaluation.surface import dice, surface_distances


def scored_label_maps(gt: np.ndarray, pred: np.ndarray, rules: ScoringRules) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ground truth and prediction as the rules score them.

    Merges classes (FLARE21's kidneys) and, for the binary lesion task, turns both into a
    lesion mask of value 14.

    Args:
        gt: Reference label map, integer ``[z, y, x]``.
        pred: Predicted label map, same shape.
        rules: The rule set.

    Returns:
        ``(gt, pred, valid)``; ``valid`` is False when the prediction breaks the task's
        format (a binary-lesion prediction holding a value other than 0 and 1), which
        scores every class 0/0.
    """
    if rules.merged_ids:
        lookup = np.arange(max(int(gt.max()), int(pred.max()), *rules.merged_ids) + 1)
        for source, target in rules.merged_ids.items():
            lookup[source] = target
        gt, pred = _apply(lookup, gt), _apply(lookup, pred)
    if not rules.binary_lesion:
        return gt, pred, True
    if rules.lesion_class is not None:
        pred = (pred == rules.lesion_class).astype(np.uint8)
    valid = pred.size == 0 or (int(pred.min()) >= 0 and int(pred.max()) <= 1)
    lesion = np.uint8(labels.LESION)
    return (gt != 0).astype(np.uint8) * lesion, (pred == 1).astype(np.uint8) * lesion, valid


def _apply(lookup: np.ndarray, array: np.ndarray) -> np.ndarray:
    if array.size and int(array.min()) < 0:  # negative values are never merged
        return np.where(array >= 0, lookup[np.clip(array, 0, None)], array)
    return lookup[array]


def score_class(
    gt: np.ndarray, pred: np.ndarray, class_id: int, spacing_zyx_mm, rules: ScoringRules
) -> tuple[float, float]:
    """DSC and NSD of one class under a rule set.

    Args:
        gt: Reference label map ``[z, y, x]``, integer class ids, as ``scored_label_maps`` gives.
        pred: Predicted label map, same shape.
        class_id: The class to score.
        spacing_zyx_mm: Voxel size along ``(z, y, x)`` in mm (the ground truth's).
        rules: Tolerances, NSD threshold, empty-mask and z-range rules.

    Returns:
        ``(dsc, nsd)``; both NaN (not scored) for a z-range class on a single ground-truth
        slice when it must be computed: the slab ``[z_min, z_max)`` is then empty, and the
        official scripts stop with an error on it.
    """
    gt_mask, pred_mask = gt == class_id, pred == class_id
    gt_any, pred_any = bool(gt_mask.any()), bool(pred_mask.any())
    if not gt_any:
        return (1.0, 1.0) if not pred_any else (0.0, 0.0)
    if not pred_any and rules.empty_prediction == "zero":
        return 0.0, 0.0
    if class_id in rules.z_range_ids:
        z = np.flatnonzero(gt_mask.any(axis=(1, 2)))
        if z[0] == z[-1]:  # one labelled slice leaves an empty slab: the scripts stop with an error
            return math.nan, math.nan
        gt_mask, pred_mask = gt_mask[z[0] : z[-1]], pred_mask[z[0] : z[-1]]
    dsc = dice(gt_mask, pred_mask)
    if rules.nsd_dsc_threshold is not None and dsc < rules.nsd_dsc_threshold:
        return dsc, 0.0
    # Score in the NIfTI axis order (x, y, z), as the official scripts do on nibabel arrays.
    distances = surface_distances(gt_mask.T, pred_mask.T, tuple(reversed(spacing_zyx_mm)))
    return dsc, distances.surface_dice(rules.tolerances_mm[class_id])
