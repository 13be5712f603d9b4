"""Placing DICOM-SEG segments on a CT grid.

Frames are read with highdicom and placed by their positions: flips, axis permutations, crops
and pads only, never resampled.
"""

from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np

from flareseg.datasets.rtstruct import Mask
from flareseg.errors import InputError
from flareseg.io import Geometry
from flareseg.io.dicom_grid import highdicom_affine

#: Largest misfit, in voxels (and of direction cosines), between SEG frames and the CT grid; NIfTI
#: headers store geometry as float32, which is off by about 1e-5 voxels far from the origin.
GRID_TOLERANCE = 1e-3


def seg_masks(segmentation: hd.seg.Segmentation, geometry: Geometry, numbers: Sequence[int],
              source: str = "segmentation") -> dict[int, Mask]:
    """Place the given segments on the CT grid by their frames' positions.

    The SEG's frames must lie on CT slices with the CT's in-plane grid (any order, flip or
    extent); fractional segments count where they are >= 0.5.

    Returns:
        Segment number -> its mask.

    Raises:
        InputError: The frames do not form a volume, or it cannot be matched to the CT grid
            without resampling.
    """
    target = hd.VolumeGeometry(highdicom_affine(geometry), geometry.shape_zyx, "PATIENT")
    try:
        volume = segmentation.get_volume(segment_numbers=list(numbers))
        placed = volume.match_geometry(target, tol=GRID_TOLERANCE)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"{source}: segmentation frames do not lie on the CT grid ({error})") from None
    masks = {}
    for channel, number in enumerate(numbers):
        inside = _segment_voxels(placed.array[..., channel])
        drawn = int(np.count_nonzero(_segment_voxels(volume.array[..., channel])))
        lost = drawn - int(np.count_nonzero(inside))
        notes = (f"{lost} voxel(s) beyond the CT",) if lost > 0 else ()
        masks[number] = Mask(np.flatnonzero(inside).astype(np.int64), drawn > 0, notes)
    return masks


def _segment_voxels(values: np.ndarray) -> np.ndarray:
    """Where a segment is: value > 0 (binary) or >= 0.5 (fractional, rescaled to 0..1)."""
    return values >= 0.5 if np.issubdtype(values.dtype, np.floating) else values > 0
