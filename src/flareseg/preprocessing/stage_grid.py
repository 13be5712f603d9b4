"""What a stage sees of a scan, shared by training and prediction: its grid (the scan or a crop
resized to the stage's input size, or resampled to its spacing), its crops (the crop policy:
which label subsets get a box, and the margin around it) and its channels (the class each
network output channel stands for)."""

from __future__ import annotations

import numpy as np

from flareseg.preprocessing.crop import Box, bounding_box
from flareseg.preprocessing.resample import shape_for_spacing

#: Samplers whose input is resized to the stage's input size, whatever the scan's spacing.
RESIZED = ("whole_resize", "crop_resize")
#: The value a ``foreground`` stage's result holds where it finds one of its labels (not a class id).
FOREGROUND = 255


def channel_ids(stage) -> np.ndarray:
    """uint8 ``[stage.channels]``: the value each output channel of a stage stands for in a label
    map, background 0 first: ``stage.labels``, or :data:`FOREGROUND` for a ``foreground`` stage."""
    return np.array((0, FOREGROUND) if stage.foreground else (0, *stage.labels), dtype=np.uint8)


def annotated_channels(stage, annotated) -> np.ndarray:
    """bool ``[stage.channels]``: the channels a case annotating the class ids ``annotated`` has
    labels for (background always); a ``foreground`` stage's only when it annotates all its labels."""
    if stage.foreground:
        return np.array([True, all(i in annotated for i in stage.labels)])
    return np.array([True] + [i in annotated for i in stage.labels])


def stage_spacing(stage, scan_spacing_zyx_mm) -> tuple[float, float, float] | None:
    """The voxel size ``(z, y, x)`` in mm a stage resamples its input to, or None for a stage that
    resizes it. ``spacing_mm`` entries that are None keep the scan's; ``"isotropic"`` (z) takes
    the scan's in-plane (y) spacing, or the stage's y spacing when it sets one."""
    if stage.sampler in RESIZED:
        return None
    target = stage.spacing_mm or (None, None, None)
    spacing = [float(s) if t is None else t for s, t in zip(scan_spacing_zyx_mm, target)]
    if spacing[0] == "isotropic":
        spacing[0] = spacing[1]
    return tuple(float(s) for s in spacing)  # type: ignore[return-value]


def stage_shape(shape_zyx, scan_spacing_zyx_mm, stage) -> tuple[int, int, int]:
    """The grid a stage's input (the scan, or a crop of it) is brought to, before padding."""
    spacing = stage_spacing(stage, scan_spacing_zyx_mm)
    if spacing is None:
        return tuple(stage.size_zyx)  # type: ignore[return-value]
    return shape_for_spacing(shape_zyx, scan_spacing_zyx_mm, spacing)


def crop_subsets(stage, labels=None) -> list[tuple[int, ...]]:
    """The label subsets that get a crop: all of the stage's labels at once (``group``) or each
    on its own (``each``); ``labels``, when given, keeps only those (e.g. the ones found)."""
    kept = [label for label in stage.labels if labels is None or label in labels]
    if stage.crop == "group":
        return [tuple(kept)] if kept else []
    return [(label,) for label in kept]


def subset_box(labels: np.ndarray, subset, full_shape=None) -> Box | None:
    """The bounding box of ``subset``'s classes in a label map, on the full grid ``full_shape``
    (scaled from the label map's own grid when they differ); None when none is there."""
    box = bounding_box(np.isin(labels, subset))
    if box is None or full_shape is None or tuple(full_shape) == labels.shape:
        return box
    return box.scaled([n / c for n, c in zip(full_shape, labels.shape)], full_shape)


def margin_box(box: Box, margin_mm, spacing_zyx_mm, shape_zyx) -> Box:
    """``box`` grown by ``margin_mm`` (one value, or one per axis ``z, y, x``; negative counts as
    0) on a grid of voxel size ``spacing_zyx_mm``, kept inside ``shape_zyx``."""
    margins = np.broadcast_to(np.asarray(margin_mm, float), (3,))
    return box.expanded([max(m, 0.0) / s for m, s in zip(margins, spacing_zyx_mm)], shape_zyx)
