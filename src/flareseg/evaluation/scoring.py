"""DSC and NSD of one class, and the label maps a rule set scores, as the official scripts do."""

from __future__ import annotations

import math

import numpy as np

from flareseg import labels
from flareseg.evaluation.rules import ScoringRules
from flareseg.evaluation.surface import dice, surface_distances


def scored_label_maps(gt: np.ndarray, pred: np.ndarray, rules: ScoringRules) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ground truth and prediction as the rules score them.

    Reads the values as the script does (its cast), merges prediction classes (FLARE21's
    kidneys) and, for the binary lesion task, turns both into a lesion mask of value 14.

    Args:
        gt: Reference label map ``[z, y, x]``, any numeric dtype.
        pred: Predicted label map, same shape.
        rules: The rule set.

    Returns:
        ``(gt, pred, valid)``, integer arrays; ``valid`` is False when the prediction breaks
        the task's format (a binary-lesion prediction holding a value other than 0 and 1),
        which scores every class 0/0.
    """
    gt, pred = cast_labels(gt, rules.cast_gt), cast_labels(pred, rules.cast_pred)
    for source, target in rules.prediction_merged_ids.items():
        pred = np.where(pred == source, target, pred).astype(pred.dtype, copy=False)
    if not rules.binary_lesion:
        return gt, pred, True
    if rules.lesion_class is not None:
        pred = (pred == rules.lesion_class).astype(np.uint8)
    valid = pred.size == 0 or (int(pred.min()) >= 0 and int(pred.max()) <= 1)
    lesion = np.uint8(labels.LESION)
    return (gt != 0).astype(np.uint8) * lesion, (pred == 1).astype(np.uint8) * lesion, valid


def cast_labels(array: np.ndarray, cast: str) -> np.ndarray:
    """Label values as a script reads them: ``"uint8"``/``"int8"`` truncate toward zero and
    wrap around (as NumPy casts nibabel's floats), ``"none"`` keeps integral values and turns
    non-integral ones (and ones beyond int32) into -1, a value no class has."""
    if cast == "none":
        if np.issubdtype(array.dtype, np.integer):
            return array
        integral = (np.floor(array) == array) & (np.abs(array) < 2 ** 31)
        return np.where(integral, array, -1).astype(np.int32)
    dtype = {"uint8": np.uint8, "int8": np.int8}[cast]
    if array.dtype == dtype:
        return array
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(dtype)  # wraps around, as the float cast does for such values
    with np.errstate(invalid="ignore"):
        return array.astype(np.float64).astype(dtype)  # the scripts' own cast of nibabel's floats


def score_class(
    gt: np.ndarray, pred: np.ndarray, class_id: int, spacing_zyx_mm, rules: ScoringRules
) -> tuple[float, float]:
    """DSC and NSD of one class under a rule set.

    Args:
        gt: Reference label map ``[z, y, x]``, integer class ids, as ``scored_label_maps`` gives them.
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
