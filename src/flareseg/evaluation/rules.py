"""The FLARE scoring rules, stated once, applied per case and class.

As the official FLARE22/23 evaluation scripts (``FLARE23_DSC_NSD_Eval.py``) do:

1. ground truth and prediction both empty: DSC = NSD = 1;
2. exactly one of them empty: DSC = NSD = 0;
3. aorta, IVC and oesophagus are scored only on the axial slices ``z_min <= z < z_max``,
   where ``z_min``/``z_max`` are the lowest/highest slice index holding that class in
   the ground truth. The official code slices ``[z_min:z_max]``, so the topmost labelled
   slice is left out; flareseg does the same so that scores agree. (A class on a single
   slice thus leaves an empty slab and scores NaN there, as in the official script.)
   "Axial" is the third NIfTI voxel axis (array axis 0 in flareseg's ``[z, y, x]``);
4. NSD is set to 0 when DSC is below a threshold (0.2 in FLARE22, 0.1 in FLARE23);
5. distances use the ground truth's voxel spacing, on the voxel grid as stored.

A class that was not annotated in a case (partial labels) is not evaluated: NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flareseg import labels
from flareseg.evaluation.surface import dice, surface_distances


@dataclass(frozen=True)
class ScoringRules:
    """Which classes are scored and how.

    Attributes:
        tolerances_mm: Class id to NSD tolerance in mm; the scored classes.
        nsd_dsc_threshold: NSD is 0 when DSC is below this.
        z_range_ids: Classes scored only on the ground truth's axial range.
    """

    tolerances_mm: dict[int, float] = field(
        default_factory=lambda: {label.id: label.nsd_tolerance_mm for label in labels.LABELS}
    )
    nsd_dsc_threshold: float = 0.2
    z_range_ids: tuple[int, ...] = labels.Z_RANGE_LIMITED_IDS

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.tolerances_mm))


def rules_for(challenge: str) -> ScoringRules:
    """Rules by name: ``flare22`` (default), ``flare23``/``flare24`` (NSD threshold 0.1), ``flare21``."""
    if challenge == "flare22":
        return ScoringRules()
    if challenge in ("flare23", "flare24"):
        return ScoringRules(nsd_dsc_threshold=0.1)
    if challenge == "flare21":
        return ScoringRules(tolerances_mm=dict(labels.FLARE21_TOLERANCES_MM), z_range_ids=())
    raise ValueError(f"unknown rules {challenge!r}; choose flare21, flare22, flare23 or flare24")


RULE_NAMES = ("flare22", "flare23", "flare24", "flare21")


def score_class(
    gt: np.ndarray, pred: np.ndarray, class_id: int, spacing_zyx_mm, rules: ScoringRules
) -> tuple[float, float]:
    """DSC and NSD of one class under the FLARE rules.

    Args:
        gt: Reference label map ``[z, y, x]``, integer class ids.
        pred: Predicted label map, same shape.
        class_id: The class to score.
        spacing_zyx_mm: Voxel size along ``(z, y, x)`` in mm (the ground truth's).
        rules: Tolerances, NSD threshold and z-range classes.
    """
    gt_mask, pred_mask = gt == class_id, pred == class_id
    gt_any, pred_any = bool(gt_mask.any()), bool(pred_mask.any())
    if not gt_any and not pred_any:
        return 1.0, 1.0
    if gt_any != pred_any:
        return 0.0, 0.0
    if class_id in rules.z_range_ids:
        z = np.flatnonzero(gt_mask.any(axis=(1, 2)))
        gt_mask, pred_mask = gt_mask[z[0] : z[-1]], pred_mask[z[0] : z[-1]]
    dsc = dice(gt_mask, pred_mask)
    if not dsc >= rules.nsd_dsc_threshold:  # also NaN (empty z-range), as the official script
        return dsc, (0.0 if dsc == dsc else float("nan"))
    # Score in the NIfTI axis order (x, y, z), as the official script does on nibabel arrays.
    distances = surface_distances(gt_mask.T, pred_mask.T, tuple(reversed(spacing_zyx_mm)))
    return dsc, distances.surface_dice(rules.tolerances_mm[class_id])
