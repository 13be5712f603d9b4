"""Resize an array to a fixed voxel size with SimpleITK (linear for CT, nearest for labels).

Voxel centres follow the "align corners = False" convention: the output grid covers the
same physical extent as the input, so ``resize(resize(a, s), a.shape)`` overlays ``a``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

_INTERPOLATORS = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear}


def resize(array: np.ndarray, shape_zyx: tuple[int, int, int], order: int,
           dtype: np.dtype | type | None = None) -> np.ndarray:
    """``array`` ``[z, y, x]`` resampled onto a ``shape_zyx`` grid over the same extent.

    Args:
        array: 3D array.
        shape_zyx: Output shape.
        order: 0 nearest neighbour (label maps), 1 linear (intensities).
        dtype: Output dtype; default float32 for ``order=1``, the input dtype for ``order=0``.
    """
    if order not in _INTERPOLATORS:
        raise ValueError(f"order must be 0 or 1, got {order}")
    shape_zyx = tuple(int(s) for s in shape_zyx)
    out_dtype = np.dtype(dtype) if dtype is not None else (array.dtype if order == 0 else np.dtype(np.float32))
    if tuple(array.shape) == shape_zyx:
        return array.astype(out_dtype, copy=False)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    scale_xyz = [a / b for a, b in zip(array.shape[::-1], shape_zyx[::-1])]
    origin_xyz = [(s - 1.0) / 2.0 for s in scale_xyz]
    pixel_type = image.GetPixelID() if order == 0 else sitk.sitkFloat32
    resampled = sitk.Resample(image, list(shape_zyx[::-1]), sitk.Transform(), _INTERPOLATORS[order],
                              origin_xyz, scale_xyz, [1, 0, 0, 0, 1, 0, 0, 0, 1], 0, pixel_type)
    return sitk.GetArrayFromImage(resampled).astype(out_dtype, copy=False)


def shape_for_spacing(shape_zyx, spacing_zyx_mm, target_spacing_zyx_mm) -> tuple[int, int, int]:
    """Grid size that covers the same extent at ``target_spacing_zyx_mm`` (at least one voxel per axis).

    ``resize(array, shape_for_spacing(...), order)`` resamples to a target spacing; the output
    spacing is then ``extent / shape``, within half a voxel of the target.
    """
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape_zyx, spacing_zyx_mm, target_spacing_zyx_mm))  # type: ignore[return-value]
