"""Reading DICOM RT structure set (RTSTRUCT) contours onto a CT grid.

Contours (closed planar polygons, patient LPS mm) are filled slice by slice with the even-odd
rule (:func:`flareseg.io.polygons.polygon_mask`): a voxel is inside when its centre is, and a
contour inside another one is a hole. Also holds :class:`Mask`, one structure on the CT grid,
which :mod:`flareseg.datasets.dicom_seg` returns as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pydicom

from flareseg.errors import InputError
from flareseg.io import Geometry
from flareseg.io.dicom_grid import SLICE_TOLERANCE, lps_to_index
from flareseg.io.polygons import polygon_mask

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
    items = {int(item.ReferencedROINumber): item for item in dataset.get("ROIContourSequence", [])}
    return {number: _roi_mask(items[number].get("ContourSequence", []) if number in items else [],
                              geometry, source) for number in numbers}


def _roi_mask(contours, geometry: Geometry, source: str) -> Mask:
    depth, rows, columns = geometry.shape_zyx
    slices: dict[int, np.ndarray] = {}
    outside = not_closed = 0
    for contour in contours:
        if contour.get("ContourGeometricType", "") not in _CLOSED_CONTOURS:
            not_closed += 1
            continue
        points_lps = _contour_points(contour)
        index_xyz = lps_to_index(points_lps, geometry)
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
