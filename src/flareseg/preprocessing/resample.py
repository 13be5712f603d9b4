"""Resize an array to a fixed voxel size (linear for CT, nearest for labels).

Voxel centres follow the "align corners = False" convention: the output grid covers the
same physical extent as the input, so ``resize(resize(a, s), a.shape)`` overlays ``a``.

Both interpolations are separable, so an array is resized one axis at a time, each a gather
along that axis. The result equals SimpleITK's ``Resample`` onto the same grid: nearest
neighbour exactly, but for a centre exactly half-way between two voxels, which takes either
(here as in SimpleITK, floating-point rounding decides); linear to float32
rounding, the edge voxel repeated past the last voxel centre. Label maps resize in a seventh of
SimpleITK's time, CT crops in about half.
"""

from __future__ import annotations

import numpy as np

#: Axis order of a resize: rows, then columns, then slices (the fastest gathers on a C-ordered
#: ``[z, y, x]`` array of CT slices, measured on 512 x 512 scans); axes that grow come last, so
#: that the temporaries stay small.
_AXIS_ORDER = (1, 2, 0)


def resize(array: np.ndarray, shape_zyx: tuple[int, int, int], order: int,
           dtype: np.dtype | type | None = None) -> np.ndarray:
    """``array`` ``[z, y, x]`` resampled onto a ``shape_zyx`` grid over the same extent.

    Args:
        array: 3D array.
        shape_zyx: Output shape.
        order: 0 nearest neighbour (label maps), 1 linear (intensities).
        dtype: Output dtype; default float32 for ``order=1``, the input dtype for ``order=0``.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order}")
    shape_zyx = tuple(int(s) for s in shape_zyx)
    if array.ndim != 3 or len(shape_zyx) != 3 or min(array.shape) < 1 or min(shape_zyx) < 1:
        raise ValueError(f"resize needs a 3D array and shape, each axis at least 1; got {array.shape} -> {shape_zyx}")
    out_dtype = np.dtype(dtype) if dtype is not None else (array.dtype if order == 0 else np.dtype(np.float32))
    out = array
    for axis in sorted(_AXIS_ORDER, key=lambda a: shape_zyx[a] > array.shape[a]):  # stable: shrinking axes first
        if out.shape[axis] != shape_zyx[axis]:
            out = _nearest(out, axis, shape_zyx[axis]) if order == 0 else _linear(out, axis, shape_zyx[axis])
    return np.ascontiguousarray(out, dtype=out_dtype)


def voxel_centres(n: int, m: int) -> np.ndarray:
    """The centres of ``m`` voxels over the extent of ``n``, in the index space of the ``n``: the
    first at ``(n / m - 1) / 2``, then every ``n / m``."""
    step = n / m
    return (step - 1) / 2 + np.arange(m) * step


def nearest_indices(n: int, m: int) -> np.ndarray:
    """For each of ``m`` voxels over the extent of ``n``, the index of the nearest of the ``n``
    (half-way: either, as floating-point rounding decides); non-decreasing."""
    return np.clip(np.floor(voxel_centres(n, m) + 0.5), 0, n - 1).astype(np.intp)


def _nearest(array: np.ndarray, axis: int, m: int) -> np.ndarray:
    return _gather(array, axis, nearest_indices(array.shape[axis], m))


def _gather(array: np.ndarray, axis: int, index: np.ndarray) -> np.ndarray:
    """``np.take(array, index, axis)``; a view that is not contiguous (a crop of a scan) by
    indexing, which ``np.take`` would first copy whole."""
    return np.take(array, index, axis=axis) if array.flags.c_contiguous else array[(slice(None),) * axis + (index,)]


def _linear(array: np.ndarray, axis: int, m: int) -> np.ndarray:
    n = array.shape[axis]
    centres = np.clip(voxel_centres(n, m), 0, n - 1)
    low = np.floor(centres).astype(np.intp)
    weight = (centres - low).astype(np.float32).reshape([-1 if i == axis else 1 for i in range(array.ndim)])
    out = np.multiply(_gather(array, axis, low), 1 - weight, dtype=np.float32)  # float32 in the same pass
    out += np.multiply(_gather(array, axis, np.minimum(low + 1, n - 1)), weight, dtype=np.float32)
    return out


def shape_for_spacing(shape_zyx, spacing_zyx_mm, target_spacing_zyx_mm) -> tuple[int, int, int]:
    """Grid size that covers the same extent at ``target_spacing_zyx_mm`` (at least one voxel per axis).

    ``resize(array, shape_for_spacing(...), order)`` resamples to a target spacing; the output
    spacing is then ``extent / shape``, within half a voxel of the target.
    """
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape_zyx, spacing_zyx_mm, target_spacing_zyx_mm))  # type: ignore[return-value]
