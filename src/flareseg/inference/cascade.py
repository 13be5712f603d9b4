"""The coarse-to-fine cascade on a canonical HU array: coarse whole-volume stage, then organ
groups cropped from its result, refined and pasted back; then connected-component clean-up.

Each stage either resizes its input (the scan, or a crop) to its input size or, with
``spacing_mm``, resamples it to that spacing and runs the whole of it at once (padded with
air to the network's size multiple), so that its result does not depend on the field of view.

Only label maps (uint8) are resampled to full resolution, never class scores, so memory
stays bounded by a few copies of the input.
"""

from __future__ import annotations

import numpy as np

from flareseg.inference.model import LoadedModel
from flareseg.postprocessing.components import keep_largest_components
from flareseg.preprocessing.crop import Box, bounding_box, crop, pad_for_network, paste
from flareseg.preprocessing.intensity import air_value, clip_and_scale
from flareseg.preprocessing.resample import resize, shape_for_spacing
from flareseg.recipes import StageConfig


def network_input(hu: np.ndarray, size_zyx, hu_window) -> np.ndarray:
    """HU array resized to ``size_zyx`` (linear), clipped and scaled: ``[1, 1, D, H, W]`` float32."""
    return clip_and_scale(resize(hu, size_zyx, order=1), hu_window)[None, None]


def stage_input(hu: np.ndarray, spacing_zyx_mm, stage: StageConfig, hu_window,
                multiple: int) -> tuple[np.ndarray, Box]:
    """A stage's input ``[1, 1, D, H, W]`` float32 from a HU array (the scan or a crop of it),
    and the box of that array in it.

    Resized to ``stage.size_zyx``, or, with ``stage.spacing_mm``, resampled to that spacing
    and padded with air for the network (:func:`flareseg.preprocessing.crop.pad_for_network`).
    """
    if stage.spacing_mm is None:
        return network_input(hu, stage.size_zyx, hu_window), Box((0, 0, 0), tuple(stage.size_zyx))
    shape = shape_for_spacing(hu.shape, spacing_zyx_mm, stage.spacing_mm)
    image, box = pad_for_network(clip_and_scale(resize(hu, shape, order=1), hu_window), multiple, air_value(hu_window))
    return image[None, None], box


def run_stage(model: LoadedModel, stage: StageConfig, hu: np.ndarray, spacing_zyx_mm) -> np.ndarray:
    """One stage's labels (FLARE ids, uint8) on its own grid: the input size, or ``hu`` at the
    stage's spacing."""
    x, box = stage_input(hu, spacing_zyx_mm, stage, model.recipe.preprocess.hu_window, model.recipe.size_multiple)
    return np.ascontiguousarray(crop(logits_to_labels(model.runners[stage.name](x), stage), box))


def logits_to_labels(logits: np.ndarray, stage: StageConfig) -> np.ndarray:
    """Argmax over channels of ``[1, C, D, H, W]`` logits, as FLARE ids (uint8 ``[D, H, W]``)."""
    lookup = np.array((0, *stage.labels), dtype=np.uint8)
    return lookup[np.argmax(logits[0], axis=0)]


def crop_boxes(coarse: np.ndarray, stage: StageConfig, full_shape, spacing_zyx_mm) -> list[tuple[tuple[int, ...], Box]]:
    """Boxes on the full grid to refine, from the coarse result: one for the whole group, or
    one per label (``crop: each``), each with its label subset and ``stage.margin_mm`` around it."""
    factor = [n / c for n, c in zip(full_shape, coarse.shape)]
    margin = [stage.margin_mm / s for s in spacing_zyx_mm]
    subsets = [stage.labels] if stage.crop == "group" else [(label,) for label in stage.labels]
    boxes = []
    for subset in subsets:
        box = bounding_box(np.isin(coarse, subset))
        if box is not None:
            boxes.append((subset, box.scaled(factor, full_shape).expanded(margin, full_shape)))
    return boxes


def segment_canonical(hu: np.ndarray, spacing_zyx_mm, model: LoadedModel, postprocess: bool = True) -> np.ndarray:
    """Segment a canonical HU array ``[z, y, x]``; returns FLARE ids, uint8, the same shape."""
    recipe = model.recipe
    first, fine_stages = recipe.stages[0], recipe.stages[1:]
    coarse = run_stage(model, first, hu, spacing_zyx_mm)
    keep_largest_components(coarse, first.labels)  # stray voxels would stretch the crop boxes
    out = np.zeros(hu.shape, np.uint8)
    refined = {label for stage in fine_stages for label in stage.labels}
    leftover = [label for label in first.labels if label not in refined]
    if leftover:  # classes no fine stage refines come straight from the coarse stage
        full = resize(coarse, hu.shape, order=0)
        selected = np.isin(full, leftover)
        out[selected] = full[selected]
    for stage in fine_stages:
        for subset, box in crop_boxes(coarse, stage, hu.shape, spacing_zyx_mm):
            patch = resize(run_stage(model, stage, crop(hu, box), spacing_zyx_mm), box.shape, order=0)
            keep = np.isin(patch, subset)
            paste(out, box, patch, where=keep & (crop(out, box) == 0))
    if postprocess:
        keep_largest_components(out, recipe.class_ids)
    return out
