"""Connected-component clean-up: the largest component per organ, small lesions dropped."""

from __future__ import annotations

import cc3d
import numpy as np

from flareseg.labels import LESION
from flareseg.preprocessing.crop import bounding_box


def keep_largest_components(labels: np.ndarray, class_ids, lesion_min_voxels: int = 10) -> np.ndarray:
    """Keep the largest 26-connected component of each organ; lesions keep every component
    of at least ``lesion_min_voxels`` voxels. Works in place on ``labels`` and returns it.

    Args:
        labels: Label map ``[z, y, x]``, uint8.
        class_ids: Classes to clean (others are left as they are).
        lesion_min_voxels: Smallest lesion component kept.
    """
    for class_id in class_ids:
        box = bounding_box(labels == class_id)
        if box is None:
            continue
        region = labels[box.slices]
        mask = region == class_id
        components, count = cc3d.connected_components(mask, connectivity=26, return_N=True)
        if count <= 1 and class_id != LESION:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        if class_id == LESION:
            keep = sizes >= lesion_min_voxels
        else:
            keep = np.zeros_like(sizes, dtype=bool)
            keep[int(np.argmax(sizes))] = True
        region[mask & ~keep[components]] = 0
    return labels
