"""Connected-component clean-up: the largest component per organ, small lesions dropped."""

from __future__ import annotations

import cc3d
import numpy as np

from flareseg.labels import LESION
from flareseg.preprocessing.crop import bounding_box

_CHUNK = 1 << 20  # voxels per pass of a chunked operation: its temporaries stay in cache


def keep_largest_components(labels: np.ndarray, class_ids, lesion_min_voxels: int = 10,
                            counts: dict[int, int] | None = None) -> np.ndarray:
    """Keep the largest 26-connected component of each organ; lesions keep every component
    of at least ``lesion_min_voxels`` voxels. Works in place on ``labels`` and returns it.

    One multi-label connected-component pass over the foreground's bounding box labels the
    components of every class at once.

    Args:
        labels: Label map ``[z, y, x]``, uint8.
        class_ids: Classes to clean (others are left as they are).
        lesion_min_voxels: Smallest lesion component kept.
        counts: When given, receives class id -> its number of components before the clean-up,
            for every class present (cleaned or not).
    """
    found = _components(labels)
    if found is None:
        return labels
    region, components, sizes, owner = found
    if counts is not None:
        counts.update(_per_class(owner))
    keep = np.ones(sizes.size, dtype=bool)
    for class_id in class_ids:
        members = np.flatnonzero(owner == class_id)
        members = members[members > 0]
        if members.size == 0:
            continue
        if class_id == LESION:
            keep[members] = sizes[members] >= lesion_min_voxels
        else:
            keep[members] = False
            keep[members[np.argmax(sizes[members])]] = True
    if not keep.all():  # each voxel its component's class, or 0: slab by slab, each gather in cache
        kept_class = np.where(keep, owner, 0).astype(labels.dtype)
        slab = max(1, _CHUNK // (region.shape[1] * region.shape[2]))
        for start in range(0, region.shape[0], slab):
            region[start:start + slab] = np.take(kept_class, components[start:start + slab])
    return labels


def count_components(labels: np.ndarray) -> dict[int, int]:
    """Class id -> number of 26-connected components, for every class present in ``labels``."""
    found = _components(labels)
    return {} if found is None else _per_class(found[3])


def _components(labels: np.ndarray):
    """``(region, components, sizes, owner)`` over the foreground's bounding box: the region (a
    view of ``labels``), its 26-connected components (multi-label), each component's voxel count
    and its class (index 0: background); None when there is no foreground."""
    box = bounding_box(labels)
    if box is None:
        return None
    region = labels[box.slices]
    components, count = cc3d.connected_components(region, connectivity=26, return_N=True)
    flat = components.ravel()
    sizes = _bincount(flat, count + 1)
    owner = np.zeros(count + 1, dtype=labels.dtype)
    owner[flat] = region.ravel()
    return region, components, sizes, owner


def _bincount(values: np.ndarray, length: int, chunk: int = _CHUNK) -> np.ndarray:
    """``np.bincount(values, minlength=length)`` a chunk at a time: bincount converts its input to
    int64, and a chunk's copy stays in cache (half the time on a 512x512x109 mask)."""
    counts = np.zeros(length, np.int64)
    for start in range(0, values.size, chunk):
        counts += np.bincount(values[start:start + chunk], minlength=length)
    return counts


def _per_class(owner: np.ndarray) -> dict[int, int]:
    classes, numbers = np.unique(owner[1:], return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, numbers) if c}
