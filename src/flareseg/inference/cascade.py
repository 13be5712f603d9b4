"""The coarse-to-fine cascade on a canonical HU array: coarse whole-volume stage, then organ
groups cropped from its result, refined and pasted back; then connected-component clean-up.

Each stage either resizes its input (the scan, or a crop) to its input size or, with
``spacing_mm``, resamples it to that spacing and runs the whole of it at once (padded with
air to the network's size multiple), so that its result does not depend on the field of view.

An organ the coarse stage misses can get a second chance (``second_chance``): fine stages also
look for it near its anatomical neighbours (:mod:`flareseg.inference.neighbourhood`).

A fine stage's result comes back to the crop box at full resolution as labels, nearest
neighbour; optionally (``fine_boundaries``), where its labels change, the class scores are
interpolated at the full-resolution voxels (:func:`labels_on_grid`), so that boundaries are not
blocks of the stage's voxel size. Whole class-score volumes are never resampled, so memory
stays bounded by a few copies of the input.

flareseg's extension, for pseudo-labels: on request (``entropy``), the cascade also reports how
unsure the network was of each voxel it labels: the entropy of the softmax of the stage that
labelled it (:func:`softmax_entropy`), on that stage's grid, carried to the scan's voxels as its
labels are.
"""

from __future__ import annotations

import functools

import cc3d
import numpy as np

from flareseg.inference.inferers import infer, stage_image
from flareseg.inference.model import LoadedModel
from flareseg.inference.neighbourhood import search_box, union
from flareseg.postprocessing.components import count_components, keep_largest_components
from flareseg.preprocessing.crop import Box, bounding_box, crop, paste
from flareseg.preprocessing.intensity import intensity_map
from flareseg.preprocessing.resample import nearest_indices, resize, voxel_centres
from flareseg.preprocessing.stage_grid import FOREGROUND, channel_ids, crop_subsets, margin_box, subset_box
from flareseg.recipes import StageConfig


def _run(model: LoadedModel, stage: StageConfig, hu: np.ndarray, spacing_zyx_mm, labels: bool) -> np.ndarray:
    intensity = intensity_map(model.recipe.preprocess)
    image = stage_image(hu, spacing_zyx_mm, stage, intensity)
    multiple = model.recipe.stage_network(stage).size_multiple
    return infer(model.runners[stage.name], image, stage.sampler, multiple, intensity.air, labels)


def run_stage(model: LoadedModel, stage: StageConfig, hu: np.ndarray, spacing_zyx_mm) -> np.ndarray:
    """One stage's labels (FLARE ids, uint8; :data:`~flareseg.preprocessing.stage_grid.FOREGROUND`
    for a ``foreground`` stage) on its own grid: the input size, or ``hu`` at the stage's spacing
    (:mod:`flareseg.inference.inferers`)."""
    return channel_ids(stage)[_run(model, stage, hu, spacing_zyx_mm, labels=True)]


def stage_logits(model: LoadedModel, stage: StageConfig, hu: np.ndarray, spacing_zyx_mm) -> np.ndarray:
    """One stage's class scores ``[1, C, D, H, W]`` float32 on its own grid (padding cut off)."""
    return _run(model, stage, hu, spacing_zyx_mm, labels=False)


def labels_on_grid(logits: np.ndarray, stage: StageConfig, shape_zyx) -> np.ndarray:
    """A stage's labels (FLARE ids, uint8) brought to a finer grid ``shape_zyx`` over the same
    extent (voxel centres as :func:`flareseg.preprocessing.resample.resize` places them): the
    argmax of its class scores interpolated linearly at every voxel of that grid.

    Only voxels whose eight surrounding stage voxels disagree are interpolated; elsewhere the
    argmax of the interpolated scores is the label those eight share (a convex combination of
    score vectors with one argmax keeps it), so the result is exact at about the cost of
    nearest-neighbour resampling, and boundaries are not blocks of the stage's voxel size.

    Args:
        logits: ``[1, C, D, H, W]`` scores on the stage's grid.
        stage: The stage (channel ``i + 1`` is ``stage.labels[i]``).
        shape_zyx: The finer grid's shape (e.g. the crop box on the scan).
    """
    lookup = channel_ids(stage)
    channels = np.argmax(logits[0], axis=0).astype(np.uint8)
    if tuple(shape_zyx) == channels.shape:
        return lookup[channels]
    # each fine voxel centre in the stage grid's index space, and the stage voxels around it
    centres = [voxel_centres(n, m) for n, m in zip(channels.shape, shape_zyx)]
    lower = [np.clip(np.floor(c), 0, n - 1).astype(np.intp) for c, n in zip(centres, channels.shape)]
    out = resize(channels, shape_zyx, order=0)
    index = np.nonzero(mixed_cells(channels)[np.ix_(*lower)])
    if index[0].size:
        out[index] = np.argmax(trilinear(logits[0], [c[i] for c, i in zip(centres, index)]), axis=0)
    return lookup[out]


def trilinear(volumes: np.ndarray, points) -> np.ndarray:
    """Linear interpolation of ``volumes`` ``[C, D, H, W]`` at points given as three index arrays
    ``(z, y, x)`` of length N (beyond the first or last voxel centre: the edge value); ``[C, N]``."""
    lower, upper, weights = [], [], []
    for coord, n in zip(points, volumes.shape[1:]):
        low = np.clip(np.floor(coord), 0, n - 1).astype(np.intp)
        lower.append(low)
        upper.append(np.minimum(low + 1, n - 1))
        weights.append(np.clip(coord - low, 0.0, 1.0).astype(np.float32))
    out = np.zeros((volumes.shape[0], len(points[0])), np.float32)
    for corner in range(8):
        pick = [(corner >> (2 - axis)) & 1 for axis in range(3)]
        index = tuple(up if bit else low for bit, low, up in zip(pick, lower, upper))
        weight = np.prod([w if bit else 1 - w for bit, w in zip(pick, weights)], axis=0)
        out += volumes[(slice(None), *index)] * weight
    return out


def mixed_cells(labels: np.ndarray) -> np.ndarray:
    """bool ``[D, H, W]``: True where the 2x2x2 block of ``labels`` starting at a voxel (the
    last voxel repeated past the end) holds more than one value."""
    padded = np.pad(labels, [(0, 1)] * labels.ndim, mode="edge")
    shape = labels.shape
    low = high = labels
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                corner = padded[dz:dz + shape[0], dy:dy + shape[1], dx:dx + shape[2]]
                low, high = np.minimum(low, corner), np.maximum(high, corner)
    return low != high


def entropy_nats(probabilities: np.ndarray, axis: int = 0) -> np.ndarray:
    """Shannon entropy ``-sum p log p`` in nats over the channel ``axis`` of a probability array
    (``0 log 0 = 0``): 0 for a one-hot vector, ``log K`` for the uniform one over K channels.

    Args:
        probabilities: float, e.g. ``[C, D, H, W]``, non-negative and summing to 1 along ``axis``.
        axis: The channel axis.

    Returns:
        float32, ``probabilities``' shape without ``axis``.
    """
    p = np.asarray(probabilities, np.float32)
    log_p = np.log(p, where=p > 0, out=np.zeros_like(p))  # 0 where p is 0: 0 log 0 = 0
    return np.maximum(-(p * log_p).sum(axis=axis), 0).astype(np.float32)


def softmax_entropy(logits: np.ndarray) -> np.ndarray:
    """The entropy in nats (:func:`entropy_nats`) of the softmax over the channels of a stage's
    class scores ``[1, C, D, H, W]``: float32 ``[D, H, W]`` in ``[0, log C]`` on the stage's grid
    (flareseg's extension: how unsure the network is of each voxel)."""
    shifted = logits[0].astype(np.float32) - logits[0].max(axis=0, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=0)
    # -sum p log p with p = exp / total and log p = shifted - log total
    entropy = np.log(total) - (exp * shifted).sum(axis=0) / total
    return np.clip(entropy, 0, np.log(logits.shape[1])).astype(np.float32)


def logits_to_labels(logits: np.ndarray, stage: StageConfig) -> np.ndarray:
    """Argmax over channels of ``[1, C, D, H, W]`` logits, as FLARE ids (uint8 ``[D, H, W]``)."""
    lookup = channel_ids(stage)
    return lookup[np.argmax(logits[0], axis=0)]


def crop_boxes(coarse: np.ndarray, stage: StageConfig, full_shape, spacing_zyx_mm, refined: dict[int, Box] | None = None,
               second_chance: bool = False) -> list[tuple[tuple[int, ...], Box]]:
    """Boxes on the full grid to refine, from the coarse result: one for the whole group, or
    one per label (``crop: each``), each with its label subset and ``stage.margin_mm`` around it.

    With ``second_chance``, a label the coarse result misses is looked for near its anatomical
    neighbours (:func:`flareseg.inference.neighbourhood.search_box`): after the boxes of the
    labels found, a group stage gets one more box, the union of its missing labels' search boxes,
    kept for those labels only (growing the found labels' box would cost them resolution); when
    the scan cuts the group's box (:func:`cut_by_scan`), that box is grown to cover the search
    boxes instead, to give back the context the scan lacks. ``crop: each`` gives each missing
    label its own search box. A neighbour's box comes from
    ``refined`` when it holds the neighbour, else from the coarse result. When the coarse
    result holds every label, nothing changes.

    A ``foreground`` first stage's result (:data:`~flareseg.preprocessing.stage_grid.FOREGROUND`)
    gives every crop the same box: its foreground's, with the margin; there is no second chance.

    Args:
        coarse: The coarse stage's labels ``[z, y, x]`` (uint8 FLARE ids, or
            :data:`~flareseg.preprocessing.stage_grid.FOREGROUND`) on its own grid.
        stage: A ``group`` or ``each`` stage.
        full_shape: The scan's shape ``[z, y, x]``.
        spacing_zyx_mm: The scan's voxel size ``[z, y, x]`` in mm.
        refined: The boxes on the full grid of the classes refined so far (:func:`label_boxes`
            of that result), by class id, or None.
        second_chance: Search for the labels the coarse result misses.
    """
    present = np.bincount(coarse.ravel(), minlength=256) > 0
    if present[FOREGROUND]:  # a foreground stage's result: one region that holds every label
        region = subset_box(coarse, (FOREGROUND,), full_shape)
        return [(subset, margin_box(region, stage.margin_mm, spacing_zyx_mm, full_shape))
                for subset in crop_subsets(stage)]
    missing = [label for label in stage.labels if not present[label]] if second_chance else []
    found = organ_boxes(coarse, refined, full_shape) if missing else {}
    searched = search_boxes(missing, found, full_shape, spacing_zyx_mm)
    boxes = []  # a group box keeps all the stage's labels: the group network may find a missing one in it
    for subset in crop_subsets(stage, None if stage.crop == "group" else set(np.flatnonzero(present).tolist())):
        box = subset_box(coarse, subset, full_shape)
        if box is not None:
            boxes.append((subset, margin_box(box, stage.margin_mm, spacing_zyx_mm, full_shape)))
    if stage.crop != "group":
        return boxes + [((label,), box) for label, box in searched]
    if not searched:
        return boxes
    extra = functools.reduce(union, [box for _, box in searched])
    if boxes and not cut_by_scan(boxes[0][1], full_shape):  # the found labels keep their resolution
        return boxes + [(tuple(label for label, _ in searched), extra)]
    return [(stage.labels, union(boxes[0][1], extra) if boxes else extra)]


def cut_by_scan(box: Box, full_shape) -> bool:
    """True when ``box`` reaches the first or last slice of the scan (axis 0): the scan may end
    inside the organ group, and the group stage lacks the context it was trained with."""
    return box.start[0] == 0 or box.stop[0] == full_shape[0]


def search_boxes(labels, found: dict[int, Box], full_shape, spacing_zyx_mm) -> list[tuple[int, Box]]:
    """``(label, box)`` for each of ``labels`` that has a neighbour in ``found`` (boxes on the full grid)."""
    boxes = [(label, search_box(label, found, spacing_zyx_mm, full_shape)) for label in labels]
    return [(label, box) for label, box in boxes if box is not None]


def organ_boxes(coarse: np.ndarray, refined: dict[int, Box] | None, full_shape) -> dict[int, Box]:
    """The bounding box on the full grid of each class: from ``refined`` (boxes of the result
    refined so far), or, for a class it lacks, from ``coarse`` (scaled from its own grid)."""
    factor = [n / c for n, c in zip(full_shape, coarse.shape)]
    boxes = {label: box.scaled(factor, full_shape) for label, box in label_boxes(coarse).items()}
    boxes.update(refined or {})
    return boxes


def label_boxes(labels: np.ndarray) -> dict[int, Box]:
    """The bounding box of each class id in a label map ``[z, y, x]`` (one pass), by class id."""
    if labels.size <= int(labels.max(initial=0)):  # cc3d needs more voxels than the top label value
        return {int(label): bounding_box(labels == label) for label in np.unique(labels) if label}
    stats = cc3d.statistics(np.ascontiguousarray(labels))
    return {label: Box(*zip(*((s.start, s.stop) for s in slices)))
            for label, (slices, count) in enumerate(zip(stats["bounding_boxes"], stats["voxel_counts"]))
            if label and count}


def resized_label_boxes(labels: np.ndarray, shape_zyx) -> dict[int, Box]:
    """``label_boxes(resize(labels, shape_zyx, order=0))``, from ``labels`` alone: along each axis
    the resized map shows a run of the same input voxel per index, so a class's box on it runs
    from the first copy of its first shown input voxel to the last copy of its last."""
    index = [nearest_indices(n, m) for n, m in zip(labels.shape, shape_zyx)]
    shown = [np.unique(i) for i in index]  # the input voxels the resized map shows, per axis
    boxes = {}
    for label, box in label_boxes(labels[np.ix_(*shown)]).items():
        start = [int(np.searchsorted(i, s[a], "left")) for i, s, a in zip(index, shown, box.start)]
        stop = [int(np.searchsorted(i, s[b - 1], "right")) for i, s, b in zip(index, shown, box.stop)]
        boxes[label] = Box(tuple(start), tuple(stop))
    return boxes


def shrunk_boxes(boxes: dict[int, Box], labels: np.ndarray, where: np.ndarray) -> dict[int, Box]:
    """The bounding box of each class's voxels where ``where`` holds (``where & (labels == class)``),
    from ``boxes``, each class's box in ``labels``: faces move inwards one slab at a time while
    the slab holds none of them (a face with one is where the tight box's is, on every axis);
    classes with no such voxel are left out. Costs the slabs looked at, not the whole array."""
    out = {}
    for label, box in boxes.items():
        start, stop = list(box.start), list(box.stop)
        for axis in range(3):
            while start[axis] < stop[axis] and not _slab_holds(labels, where, label, start, stop, axis, start[axis]):
                start[axis] += 1
            while start[axis] < stop[axis] and not _slab_holds(labels, where, label, start, stop, axis, stop[axis] - 1):
                stop[axis] -= 1
            if start[axis] == stop[axis]:
                break
        else:
            out[label] = Box(tuple(start), tuple(stop))
    return out


def _slab_holds(labels: np.ndarray, where: np.ndarray, label: int, start, stop, axis: int, index: int) -> bool:
    """Whether the slab ``index`` along ``axis`` of the box ``[start, stop)`` holds a voxel of ``label`` where ``where``."""
    slab = tuple(slice(index, index + 1) if a == axis else slice(start[a], stop[a]) for a in range(3))
    return bool(np.any((labels[slab] == label) & where[slab]))


def segment_canonical(hu: np.ndarray, spacing_zyx_mm, model: LoadedModel, postprocess: bool = True,
                      second_chance: bool = True, fine_boundaries: bool = False,
                      entropy: np.ndarray | None = None, components: dict[int, int] | None = None) -> np.ndarray:
    """Segment a canonical HU array ``[z, y, x]``; returns FLARE ids, uint8, the same shape.

    Fine stages' labels come back to the scan's grid by nearest neighbour, or, with
    ``fine_boundaries``, with their boundaries drawn from interpolated scores (:func:`labels_on_grid`).

    ``postprocess`` keeps the largest connected component of each class, unless the recipe says
    ``postprocess: none``. Crops are pasted first come, first served: a crop never takes voxels an earlier one claimed.
    With ``second_chance``, fine stages also look for the organs the coarse stage missed, near
    their neighbours (see :func:`crop_boxes`); such an organ is kept only where its fine stage
    predicts it. When the coarse stage finds every organ, it changes nothing and runs no network.

    ``entropy`` (flareseg's extension; None, the default, costs nothing): a float32 array of
    ``hu``'s shape that receives, at each voxel the result labels, the entropy in nats of the
    softmax of the stage that labelled it (:func:`softmax_entropy`). It is computed on that stage's
    own grid, where its class scores exist (a fine stage's resized crop; the coarse stage's grid
    for the classes no fine stage refines), and carried to the scan's voxels by nearest neighbour,
    as the labels are (also with ``fine_boundaries``). Other voxels are left as they were. The labels
    do not change.

    ``components`` (None, the default, costs nothing), when given, receives class id -> the number of
    26-connected components of the class in the result before the post-processing (the mask as
    written when there is none), for each class present.
    """
    recipe = model.recipe
    first, fine_stages = recipe.stages[0], recipe.stages[1:]
    postprocess = postprocess and recipe.postprocess == "largest_component"
    refined = {label for stage in fine_stages for label in stage.labels}
    leftover = [label for label in first.labels if label not in refined]
    coarse, coarse_entropy = _coarse_stage(model, first, hu, spacing_zyx_mm, entropy is not None and bool(leftover))
    as_predicted = coarse.copy() if fine_stages and leftover else coarse
    if fine_stages:  # stray voxels would stretch the crop boxes; the result is cleaned on its own grid below
        keep_largest_components(coarse, channel_ids(first)[1:])
    out = np.zeros(hu.shape, np.uint8)
    if leftover:  # classes no fine stage refines come straight from the coarse stage, as it predicted them
        full = resize(as_predicted, hu.shape, order=0)
        selected = np.isin(full, leftover)
        out[selected] = full[selected]
        if entropy is not None:
            entropy[selected] = resize(coarse_entropy, hu.shape, order=0)[selected]
    boxes_so_far = label_boxes(out) if leftover else {}  # of ``out``, kept up to date paste by paste
    for stage in fine_stages:
        found: set[int] = set()  # labels this stage has pasted; a second-chance box looks for the others
        for subset, box in crop_boxes(coarse, stage, hu.shape, spacing_zyx_mm, boxes_so_far, second_chance):
            subset = tuple(label for label in subset if label not in found)
            if not subset:
                continue
            logits = stage_logits(model, stage, crop(hu, box), spacing_zyx_mm)
            if fine_boundaries:
                patch = labels_on_grid(logits, stage, box.shape)
                patch[~np.isin(patch, subset)] = 0
            else:  # the subset is chosen on the stage's grid, before the patch is brought to the scan's
                low = logits_to_labels(logits, stage)
                low[~np.isin(low, subset)] = 0
                patch = resize(low, box.shape, order=0)
            pasted = patch != 0
            pasted &= crop(out, box) == 0
            paste(out, box, patch, where=pasted)
            if entropy is not None:
                paste(entropy, box, resize(softmax_entropy(logits), box.shape, order=0), where=pasted)
            if fine_boundaries:
                new_boxes = label_boxes(np.where(pasted, patch, 0))
            else:  # the patch's boxes follow from the stage's grid; shrunk where voxels were claimed earlier
                new_boxes = resized_label_boxes(low, box.shape)
                if np.count_nonzero(pasted) != np.count_nonzero(patch):
                    new_boxes = shrunk_boxes(new_boxes, patch, pasted)
            found.update(_record_boxes(boxes_so_far, new_boxes, box))
    if postprocess:
        keep_largest_components(out, recipe.class_ids, counts=components)
    elif components is not None:
        components.update(count_components(out))
    return out


def _coarse_stage(model: LoadedModel, stage: StageConfig, hu: np.ndarray, spacing_zyx_mm,
                  with_entropy: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The first stage's labels on its grid (:func:`run_stage`), and with ``with_entropy`` the
    :func:`softmax_entropy` of the same class scores (else None)."""
    if not with_entropy:
        return run_stage(model, stage, hu, spacing_zyx_mm), None
    logits = stage_logits(model, stage, hu, spacing_zyx_mm)
    return logits_to_labels(logits, stage), softmax_entropy(logits)


def _record_boxes(boxes_so_far: dict[int, Box], new_boxes: dict[int, Box], box: Box) -> set[int]:
    """Grow ``boxes_so_far`` (full grid, by class) by ``new_boxes`` (by class, on ``box``) in place;
    returns the classes pasted."""
    for label, part in new_boxes.items():
        part = part.shifted(box.start)
        boxes_so_far[label] = union(boxes_so_far[label], part) if label in boxes_so_far else part
    return set(new_boxes)
