"""Random training patches of a volume at a fixed spacing, and field-of-view cuts.

A whole-volume stage with ``spacing_mm`` is trained on random ``size_zyx`` patches of the
resampled scan rather than on the scan squeezed to one size, so that what it learns about
an organ's place does not depend on where the scan begins and ends. The field-of-view
augmentation goes further: it turns the slices outside a random axial slab into air, as in
a scan that covers the upper abdomen only, a few slices, or ends above the pelvis. Crop
stages get the same through :func:`axial_slab`: a crop box cut short along the axis, as the
box of a scan that ends inside the organ group.
"""

from __future__ import annotations

import math

import numpy as np

from flareseg.preprocessing.crop import Box

#: The shortest share of a crop box that :func:`axial_slab` keeps.
MIN_SLAB_SHARE = 0.25
#: The shortest slab the field-of-view augmentation keeps, in slices of the patch.
MIN_SLAB_SLICES = 4


def random_patch(image: np.ndarray, label: np.ndarray, size_zyx, rng: np.random.Generator,
                 pad_value: float, holding=None) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size_zyx`` patch of an image/label pair ``[z, y, x]``.

    Where the volume is smaller than the patch along an axis, it lies at a random offset
    inside the patch and the rest is ``pad_value`` (air) in the image and 0 in the label.
    ``holding``, a voxel index ``(z, y, x)``, makes the patch contain that voxel (at a random
    place in it), as nnU-Net centres a share of its patches on foreground.

    Returns:
        The image patch (float32) and the label patch (the label's dtype).
    """
    out_image = np.full(size_zyx, pad_value, np.float32)
    out_label = np.zeros(size_zyx, label.dtype)
    source, target = [], []
    for axis, (n, size) in enumerate(zip(image.shape, size_zyx)):
        if n >= size:
            start = int(rng.integers(n - size + 1))
            if holding is not None:
                start = int(np.clip(holding[axis] - rng.integers(size), 0, n - size))
            source.append(slice(start, start + size))
            target.append(slice(0, size))
        else:
            offset = int(rng.integers(size - n + 1))
            source.append(slice(0, n))
            target.append(slice(offset, offset + n))
    out_image[tuple(target)] = image[tuple(source)]
    out_label[tuple(target)] = label[tuple(source)]
    return out_image, out_label


def cut_field_of_view(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                      pad_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Air (``pad_value``) and background outside a random axial slab of a patch ``[z, y, x]``.

    The slab is at least :data:`MIN_SLAB_SLICES` slices long and may touch either end, so
    the cut mimics a scan that starts or ends anywhere. Returns new arrays.
    """
    depth = image.shape[0]
    length = int(rng.integers(min(MIN_SLAB_SLICES, depth), depth + 1))
    start = int(rng.integers(depth - length + 1))
    image, label = image.copy(), label.copy()
    for part in (slice(0, start), slice(start + length, depth)):
        image[part] = pad_value
        label[part] = 0
    return image, label


def foreground_voxel(label: np.ndarray, rng: np.random.Generator, ignored: int | None = None
                     ) -> tuple[int, ...] | None:
    """A random labelled voxel's index (never one of value ``ignored``), or None when there is none."""
    labelled = label if ignored is None else (label != 0) & (label != ignored)
    count = np.count_nonzero(labelled)
    if count == 0:
        return None
    return np.unravel_index(np.flatnonzero(labelled)[int(rng.integers(count))], label.shape)


def axial_slab(box: Box, rng: np.random.Generator) -> Box:
    """A random slab of ``box`` along its first (axial) axis: at least :data:`MIN_SLAB_SHARE` of
    its slices (and one), anywhere in it, touching either end or neither; other axes unchanged."""
    depth = box.shape[0]
    length = int(rng.integers(max(1, math.ceil(MIN_SLAB_SHARE * depth)), depth + 1))
    start = box.start[0] + int(rng.integers(depth - length + 1))
    return Box((start, *box.start[1:]), (start + length, *box.stop[1:]))
