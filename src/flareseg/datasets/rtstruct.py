"""Reading DICOM RT structure set (RTSTRUCT) contours onto a CT grid.

Contours (closed planar polygons, patient LPS mm) are filled slice by slice with the even-odd
rule: a voxel is inside when its centre is, and a contour inside another one is a hole. Also
holds :class:`Mask`, one structure on the CT grid, which :mod:`flareseg.datasets.dicom_seg`
returns as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pydicom

from flareseg.errors import InputError
from flareseg.io import Geometry

#: Largest distance, in slices, between a contour's plane and the CT slice it is drawn on.
SLICE_TOLERANCE = 0.1
_CLOSED_CONTOURS = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR")


@dataclass(frozen=True)
class Mask:
    """One structure on the CT grid.

    Attributes:
        voxels: int64 flat indices (C order) into the CT's ``[z, y, x]`` array, ascending.
        drawn: False when the file holds no contour or frame of it at all (then it does not
            count as annotated).
        notes: What was skipped, e.g. contours beyond the CT's slices.
    """

    voxels: np.ndarray
    drawn: bool
    notes: tuple[str, ...] = ()


def rtstruct_masks(dataset: pydicom.Dataset, geometry: Geometry, numbers: Sequence[int],
                   source: str = "structures") -> dict[int, Mask]:
    """Fill the closed planar contours of the given ROIs on the CT grid.

    Args:
        dataset: An RT structure set.
        geometry: The CT's grid.
        numbers: ROI numbers to fill.
        source: Name of the file, for errors.

    Returns:
        ROI number -> its mask. Contours beyond the CT's first or last slice are skipped and
        noted, as are open contours and points.
    """
    to_index = np.linalg.inv(geometry.index_to_lps_matrix())
    items = {int(item.ReferencedROINumber): item for item in dataset.get("ROIContourSequence", [])}
    return {number: _roi_mask(items[number].get("ContourSequence", []) if number in items else [],
                              geometry, to_index, source) for number in numbers}


def _roi_mask(contours, geometry: Geometry, to_index: np.ndarray, source: str) -> Mask:
    depth, rows, columns = geometry.shape_zyx
    slices: dict[int, np.ndarray] = {}
    outside = not_closed = 0
    for contour in contours:
        if contour.get("ContourGeometricType", "") not in _CLOSED_CONTOURS:
            not_closed += 1
            continue
        points_lps = _contour_points(contour)
        index_xyz = np.c_[points_lps, np.ones(len(points_lps))] @ to_index.T
        k = _slice_index(index_xyz[:, 2], points_lps, source)
        if not 0 <= k < depth:
            outside += 1
            continue
        fill = polygon_mask(index_xyz[:, :2], (rows, columns))
        slices[k] = slices[k] ^ fill if k in slices else fill
    parts = [np.flatnonzero(mask) + k * rows * columns for k, mask in sorted(slices.items())]
    notes = [f"{outside} contour(s) beyond the CT's slices"] if outside else []
    notes += [f"{not_closed} open contour(s) or point(s) skipped"] if not_closed else []
    voxels = np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
    return Mask(voxels, drawn=len(contours) > not_closed, notes=tuple(notes))


def _contour_points(contour: pydicom.Dataset) -> np.ndarray:
    """``ContourData`` as float64 ``(n, 3)`` LPS mm.

    Parsed from the raw bytes when pydicom has not decoded them yet: its decoding makes one
    Python object per number, which takes seconds for a large structure set.
    """
    element = contour.get_item("ContourData")
    if isinstance(element.value, bytes):
        values = np.array(element.value.strip(b" \0").split(b"\\"), dtype=np.float64)
    else:
        values = np.asarray(contour.ContourData, dtype=np.float64)
    return values.reshape(-1, 3)


def _slice_index(k: np.ndarray, points_lps: np.ndarray, source: str) -> int:
    """The CT slice a contour lies on, from its points' continuous slice indices ``k``."""
    nearest = int(np.rint(k.mean()))
    if np.abs(k - nearest).max() > SLICE_TOLERANCE:
        raise InputError(f"{source}: a contour near LPS {np.round(points_lps.mean(0), 1).tolist()} mm does not lie "
                         f"on a CT slice (off by up to {np.abs(k - nearest).max():.2f} slices); "
                         "was it drawn on this CT?")
    return nearest


def polygon_mask(points_xy: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside a closed polygon, by the even-odd rule.

    A scanline fill: on each pixel row, a pixel is inside when an odd number of the polygon's
    edges cross the row to its left. Self-intersecting polygons follow the same rule.

    Args:
        points_xy: ``(n, 2)`` vertices in continuous pixel indices ``(x = column, y = row)``;
            the last vertex joins the first.
        shape_yx: ``(rows, columns)`` of the slice.

    Returns:
        bool ``[rows, columns]``; parts of the polygon beyond the slice are cut off.
    """
    rows, columns = shape_yx
    mask = np.zeros(shape_yx, dtype=bool)
    x0, y0 = points_xy[:, 0], points_xy[:, 1]
    first, last = max(int(np.ceil(y0.min())), 0), min(int(np.floor(y0.max())), rows - 1)
    if len(points_xy) < 3 or last < first:
        return mask
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    row_y = np.arange(first, last + 1, dtype=np.float64)[:, None]
    row, edge = np.nonzero((y0 >= row_y) != (y1 >= row_y))  # edge crosses the row (half-open in y)
    crossing_x = x0[edge] + (row_y[row, 0] - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    start = np.clip(np.floor(crossing_x).astype(np.int64) + 1, 0, columns)  # first pixel right of it
    toggles = np.bincount(row * (columns + 1) + start, minlength=(last - first + 1) * (columns + 1))
    parity = np.cumsum(toggles.reshape(-1, columns + 1)[:, :columns], axis=1) % 2
    mask[first : last + 1] = parity.astype(bool)
    return mask
