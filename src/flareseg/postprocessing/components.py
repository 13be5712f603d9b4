"""Connected-component clean-up: the largest component per organ, small lesions dropped."""

from __future__ import annotations

from typing import NamedTuple

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
    components of every class at once; only the voxels of the components dropped are written.

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
    owner, sizes = found.owner, found.sizes
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
    dropped = ~keep[found.ids]  # the runs of the components dropped
    if dropped.any():
        _zero_runs(found.region, found.starts[dropped], found.lengths[dropped])
    return labels


def count_components(labels: np.ndarray) -> dict[int, int]:
    """Class id -> number of 26-connected components, for every class present in ``labels``."""
    found = _components(labels)
    return {} if found is None else _per_class(found.owner)


class _Components(NamedTuple):
    """The 26-connected components (multi-label) of a region, as runs of equal component ids in
    the region's raster order: a few hundred thousand on a 512x512 scan, against millions of voxels."""

    region: np.ndarray  #: the foreground's bounding box, a view of the label map
    starts: np.ndarray  #: each run's first flat index in the region
    lengths: np.ndarray  #: each run's voxel count
    ids: np.ndarray  #: each run's component
    sizes: np.ndarray  #: each component's voxel count (index 0: background)
    owner: np.ndarray  #: each component's class (index 0: background)


def _components(labels: np.ndarray) -> _Components | None:
    """The components over the foreground's bounding box (None when there is no foreground):
    each run's length counts towards its component, and its first voxel gives the class."""
    box = bounding_box(labels)
    if box is None:
        return None
    region = labels[box.slices]
    components, count = cc3d.connected_components(region, connectivity=26, return_N=True)
    components = np.ascontiguousarray(components)
    starts, ids = _runs(components.ravel())
    lengths = np.diff(starts, append=components.size)
    sizes = np.bincount(ids, weights=lengths, minlength=count + 1).astype(np.int64)  # exact below 2**53
    owner = np.zeros(count + 1, dtype=labels.dtype)
    owner[ids] = region[np.unravel_index(starts, region.shape)]
    return _Components(region, starts, lengths, ids, sizes, owner)


def _zero_runs(region: np.ndarray, starts: np.ndarray, lengths: np.ndarray, chunk: int = 1 << 18) -> None:
    """Set to 0 every voxel of the runs that start at flat indices ``starts`` of ``region``, ``lengths``
    long, ``chunk`` voxels at a time (a large component dropped needs no index array of its size)."""
    before = np.cumsum(lengths) - lengths  # voxels of the runs listed before each
    total = int(lengths.sum())
    for first in range(0, total, chunk):
        position = np.arange(first, min(first + chunk, total))  # among the voxels of all the runs
        run = np.searchsorted(before, position, "right") - 1
        region[np.unravel_index(starts[run] + (position - before[run]), region.shape)] = 0


def _runs(values: np.ndarray, chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """The start index and value of each run of equal values in a 1D array, a chunk at a time
    (each comparison's temporary stays in cache)."""
    starts = [np.zeros(1, np.intp)]
    for begin in range(1, values.size, chunk):
        end = min(begin + chunk, values.size)
        starts.append(np.flatnonzero(values[begin:end] != values[begin - 1:end - 1]) + begin)
    starts = np.concatenate(starts)
    return starts, values[starts]


def _per_class(owner: np.ndarray) -> dict[int, int]:
    classes, numbers = np.unique(owner[1:], return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, numbers) if c}
