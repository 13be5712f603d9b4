"""Score folders of predicted label maps against ground truth with the FLARE metrics."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from flareseg.datasets.layout import load_spec
from flareseg.errors import FlaresegError, InputError
from flareseg.evaluation.rules import ScoringRules
from flareseg.evaluation.scoring import cast_labels, score_class, scored_label_maps
from flareseg.io import Volume, has_image_suffix, read_volume, strip_image_suffix
from flareseg.labels import LESION as MAX_FLARE_ID
from flareseg.preprocessing.orientation import align_to


@dataclass(frozen=True)
class ClassScore:
    """DSC and NSD of one class in one case; NaN when the class was not evaluated."""

    case_id: str
    class_id: int
    dsc: float
    nsd: float


def score_case(
    gt: Volume, pred: Volume, case_id: str, rules: ScoringRules, annotated=None, threads: int = 1
) -> list[ClassScore]:
    """Score every class of one case.

    Args:
        gt: Reference label map.
        pred: Predicted label map; aligned onto ``gt``'s grid if stored in another orientation.
        case_id: Name reported with the scores.
        rules: Classes, tolerances and FLARE rules (see ``flareseg.evaluation.rules``).
        annotated: Class ids annotated in this case, or None for all; other classes score NaN.
        threads: Classes scored in parallel (distance transforms release the GIL).

    Raises:
        InputError: The prediction does not lie on the ground truth's grid.
    """
    if not pred.geometry.matches(gt.geometry):
        try:
            pred = align_to(pred, gt.geometry)
        except FlaresegError as error:
            raise InputError(f"{case_id}: prediction does not overlay the ground truth ({error})") from None
    gt_array, pred_array, valid = scored_label_maps(gt.array, pred.array, rules)
    top = max(rules.class_ids)  # boxes of the scored classes only, whatever else the maps hold
    gt_boxes, pred_boxes = ndimage.find_objects(gt_array, top), ndimage.find_objects(pred_array, top)
    spacing = gt.geometry.spacing_zyx_mm

    def score(class_id: int) -> ClassScore:
        if annotated is not None and class_id not in annotated:
            return ClassScore(case_id, class_id, math.nan, math.nan)
        if not valid:
            return ClassScore(case_id, class_id, 0.0, 0.0)
        # Absent from both masks: any one-voxel crop holds neither, and the rules score it so.
        box = _union_box(_box(gt_boxes, class_id), _box(pred_boxes, class_id)) or (slice(0, 1),) * 3
        dsc, nsd = score_class(gt_array[box], pred_array[box], class_id, spacing, rules)
        return ClassScore(case_id, class_id, dsc, nsd)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(score, rules.class_ids))


def _box(boxes: list, class_id: int):
    return boxes[class_id - 1] if class_id - 1 < len(boxes) else None


def _union_box(a, b) -> tuple[slice, ...] | None:
    if a is None or b is None:
        return a or b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def case_files(folder: Path) -> dict[str, Path]:
    """Case id (file name without its image ending) to path, for every image file in a folder."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    return {
        strip_image_suffix(path.name): path
        for path in sorted(folder.iterdir())
        if path.is_file() and has_image_suffix(path) and not path.name.startswith(".")
    }


def evaluate_folders(
    pred_dir: Path,
    gt_dir: Path,
    rules: ScoringRules,
    dataset_dir: Path | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> list[ClassScore]:
    """Score every ground-truth case of ``gt_dir`` against the same-named file in ``pred_dir``.

    Args:
        pred_dir: Folder of predicted label maps.
        gt_dir: Folder of reference label maps; every case in it is scored.
        rules: FLARE rules to apply.
        dataset_dir: Optional dataset folder whose ``dataset.json`` names the ground truth's
            label values (translated to FLARE ids by name) and declares per-case annotated
            classes; classes not annotated in a case score NaN.
        threads: Parallel classes per case (default: all cores).

    Raises:
        InputError: A folder is missing or empty, or a prediction is missing.
    """
    gt_files, pred_files = case_files(gt_dir), case_files(pred_dir)
    if not gt_files:
        raise InputError(f"{gt_dir}: no label maps found")
    missing = sorted(set(gt_files) - set(pred_files))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(f"{pred_dir}: no prediction for {len(missing)} case(s): {shown}")
    spec = load_spec(dataset_dir) if dataset_dir else None
    threads = threads or os.cpu_count() or 1
    scores: list[ClassScore] = []
    for case_id in tqdm(gt_files, desc="evaluating", unit="case", disable=not progress):
        annotated = spec.annotated_for(case_id) if spec else None
        gt, pred = read_volume(gt_files[case_id]), read_volume(pred_files[case_id])
        if spec:  # the dataset's own numbering, translated to FLARE ids by label name
            try:
                gt = Volume(spec.to_flare(gt.array), gt.geometry)
            except InputError as error:
                raise InputError(f"{gt_files[case_id]}: {error}") from None
            annotated = unmerged_classes(gt.array, annotated, spec.mapping.merged)
            if spec.mapping.merged:  # merged codes are no class of any rule set (nor lesion)
                gt = Volume(np.where(np.isin(gt.array, list(spec.mapping.merged)), 0, gt.array).astype(np.uint8),
                            gt.geometry)
        else:
            check_flare_values(cast_labels(gt.array, rules.cast_gt), gt_files[case_id])
        scores.extend(score_case(gt, pred, case_id, rules, annotated, threads))
    return scores


def check_flare_values(gt: np.ndarray, path: Path) -> None:
    """Refuse a ground truth that is not FLARE ids (0..14) as the rule set's script reads it (after
    its cast): a CT, or another numbering, would be scored as if it were one. Predictions are
    scored whatever they hold, as the official scripts score them.

    Raises:
        InputError: Values outside 0..14.
    """
    low, high = gt.min(initial=0), gt.max(initial=0)
    if low < 0 or high > MAX_FLARE_ID:
        raise InputError(f"{path}: not a FLARE label map: values {low:g}..{high:g} (FLARE ids are 0..{MAX_FLARE_ID}); "
                         "give --dataset if the ground truth numbers its classes its own way")


def unmerged_classes(gt, annotated, merged: dict[int, tuple[int, ...]]) -> tuple[int, ...]:
    """The annotated classes that can be scored one by one: a merged label present in ``gt``
    (stomach and duodenum as one contour) leaves its members unscored (NaN).

    Args:
        gt: Ground truth as FLARE ids and merged codes, any shape.
        annotated: FLARE ids annotated in the case.
        merged: Merged code -> its member FLARE ids (``LabelMapping.merged``).
    """
    present = [code for code in merged if np.any(gt == code)] if merged else []
    members = {i for code in present for i in merged[code]}
    return tuple(i for i in annotated if i not in members)
