"""Connected-component clean-up: the largest component per organ, small lesions dropped."""

from __future__ import annotations

import cc3d
import numpy as np

from flareseg.labels import LESION
from flareseg.preprocessing.crop import bounding_box


def keep_largest_components(labels: np.ndarray, class_ids, lesion_min_voxels: int = 10) -> np.ndarray:
    """Keep the largest 26-connected component of each organ; lesions keep every component
    of at least ``lesion_min_voxels`` voxels. Works in place on ``labels`` and returns it.

    One multi-label connected-component pass over the foreground's bounding box labels the
    components of every class at once.

    Args:
        labels: Label map ``[z, y, x]``, uint8.
        class_ids: Classes to clean (others are left as they are).
        lesion_min_voxels: Smallest lesion component kept.
    """
    box = bounding_box(labels)
    if box is None:
        return labels
    region = labels[box.slices]
    components, count = cc3d.connected_components(region, connectivity=26, return_N=True)
    flat = components.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    owner = np.zeros(count + 1, dtype=labels.dtype)
    owner[flat] = region.ravel()
    keep = np.ones(count + 1, dtype=bool)
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
    if not keep.all():
        region[~keep[components]] = 0
    return labels
