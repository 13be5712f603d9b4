"""Dice and normalised surface Dice of two binary masks, by the DeepMind surface-distance method.

Surface elements ("surfels") are the 2x2x2 neighbourhoods that are neither empty nor
full; each is weighted by the area of the marching-cubes surface through it (the
neighbour-code table that DeepMind's ``surface-distance`` and MONAI share), and its
distance to the other surface comes from a Euclidean distance transform on the voxel
spacing. Work is confined to the bounding box of the two masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

#: Bit weights of the 8 voxels of a 2x2x2 neighbourhood (DeepMind's encoding).
NEIGHBOURHOOD_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]], dtype=np.uint8)


#: Area-weighted normals of the marching-cubes surface pieces in each of the 256 neighbour
#: codes, times 8 (all entries are multiples of 1/8): the table of DeepMind's
#: ``surface-distance`` and MONAI, stored as data so that scoring needs neither package.
NORMALS_FILE = Path(__file__).with_name("neighbour_normals.npy")


@lru_cache(maxsize=1)
def _normals_table() -> np.ndarray:
    """(256, 4, 3) area-weighted normals of the surface pieces of each neighbour code."""
    return np.load(NORMALS_FILE).astype(np.float64) / 8.0


@lru_cache(maxsize=32)
def surfel_area_table(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Surface area (mm^2) of each of the 256 neighbour codes at the given voxel spacing."""
    s0, s1, s2 = spacing_mm
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.linalg.norm(_normals_table() * scale, axis=-1).sum(axis=-1)


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances between two surfaces and the areas of their surfels.

    Attributes:
        gt_to_pred_mm: Distance of each reference surfel to the predicted surface.
        pred_to_gt_mm: Distance of each predicted surfel to the reference surface.
        gt_areas_mm2: Area of each reference surfel (same order as ``gt_to_pred_mm``).
        pred_areas_mm2: Area of each predicted surfel.
    """

    gt_to_pred_mm: np.ndarray
    pred_to_gt_mm: np.ndarray
    gt_areas_mm2: np.ndarray
    pred_areas_mm2: np.ndarray

    def surface_dice(self, tolerance_mm: float) -> float:
        """Normalised surface Dice: share of surface area within ``tolerance_mm`` of the other surface."""
        total = self.gt_areas_mm2.sum() + self.pred_areas_mm2.sum()
        if total == 0:
            return float("nan")
        within = self.gt_areas_mm2[self.gt_to_pred_mm <= tolerance_mm].sum() + self.pred_areas_mm2[
            self.pred_to_gt_mm <= tolerance_mm
        ].sum()
        return float(within / total)


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient of two boolean masks; NaN when both are empty."""
    total = int(np.count_nonzero(gt)) + int(np.count_nonzero(pred))
    if total == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(gt & pred)) / total


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest slices holding every non-zero voxel, or None for an empty mask."""
    boxes = ndimage.find_objects(mask.astype(np.uint8, copy=False))
    return boxes[0] if boxes else None


def surface_distances(gt: np.ndarray, pred: np.ndarray, spacing_mm: tuple[float, float, float]) -> SurfaceDistances:
    """Surfel distances and areas of two boolean 3D masks.

    Args:
        gt: Reference mask, bool, any axis order.
        pred: Predicted mask, bool, same shape and axis order.
        spacing_mm: Voxel size along the masks' axes, in mm.

    Returns:
        Distances (mm) and areas (mm^2); an empty mask gives no surfels and infinite
        distances from the other one, as in DeepMind's ``compute_surface_distances``.
    """
    box = bounding_box(gt | pred)
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    # One voxel of padding after the box, as DeepMind's _crop_to_bounding_box.
    shape = tuple(s.stop - s.start + 1 for s in box)
    areas = surfel_area_table(tuple(float(s) for s in spacing_mm))
    borders, codes = [], []
    for mask in (gt, pred):
        crop = np.zeros(shape, np.uint8)
        crop[:-1, :-1, :-1] = mask[box]
        code = ndimage.correlate(crop, NEIGHBOURHOOD_KERNEL, mode="constant", cval=0)
        borders.append((code != 0) & (code != 255))
        codes.append(code)
    distance_maps = [_distance_to(border, spacing_mm) for border in borders]
    gt_border, pred_border = borders
    return SurfaceDistances(
        gt_to_pred_mm=distance_maps[1][gt_border],
        pred_to_gt_mm=distance_maps[0][pred_border],
        gt_areas_mm2=areas[codes[0][gt_border]],
        pred_areas_mm2=areas[codes[1][pred_border]],
    )


def _distance_to(border: np.ndarray, spacing_mm) -> np.ndarray:
    if not border.any():
        return np.full(border.shape, np.inf)
    return ndimage.distance_transform_edt(~border, sampling=spacing_mm)
