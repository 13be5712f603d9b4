"""Per-organ measures of one mask: volume, connected components, mean HU, position and border contact.

Everything is measured on the mask's own grid, in physical units: volumes in mL from the voxel
spacing, positions in patient coordinates (LPS, mm: +L patient left, +P posterior, +S superior)
from the grid's origin, spacing and direction, so a mask stored RAS or LPS gives the same numbers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cc3d
import numpy as np

from flareseg.io import Geometry, Volume
from flareseg.labels import label_name

#: Voxels per slab when summing HU per class (bounds the float64 copy to ~32 MB).
_SLAB_VOXELS = 1 << 22
_OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
#: Order in which touched faces are listed.
_FACE_ORDER = "SIRLAP"


@dataclass(frozen=True)
class OrganMeasures:
    """Measures of one class of one mask.

    Attributes:
        class_id: Voxel value of the class.
        name: Class name (:func:`flareseg.labels.label_name`).
        voxels: Number of voxels of the class (0: absent).
        volume_ml: ``voxels`` times the voxel volume, mL.
        components: 26-connected components of the class as written (0 when absent).
        hu_mean: Mean CT value inside the class, HU; None when absent or without a CT.
        centroid_lps_mm: ``(L, P, S)`` mean of the class's voxel centres, mm; None when absent.
        s_range_mm: ``(lowest S, highest S)`` of the corners of the class's bounding box of voxel
            centres, mm; None when absent (for an oblique grid this bounds the true extent).
        border_faces: Letters of the scan faces the class touches, named by the patient direction
            they face (``"S"``: the top slice, ``"R"``: the patient's right side, ...); ``""`` none.
    """

    class_id: int
    name: str
    voxels: int
    volume_ml: float
    components: int
    hu_mean: float | None
    centroid_lps_mm: tuple[float, float, float] | None
    s_range_mm: tuple[float, float] | None
    border_faces: str

    @property
    def present(self) -> bool:
        return self.voxels > 0

    @property
    def touches_border(self) -> bool:
        """True when the field of view cuts the class (it reaches a face of the scan)."""
        return bool(self.border_faces)


@dataclass(frozen=True)
class ScanExtent:
    """Superior-inferior extent of a scan: lowest and highest S of its voxel centres, mm."""

    s_min_mm: float
    s_max_mm: float


def voxel_volume_ml(geometry: Geometry) -> float:
    """Volume of one voxel in mL (spacing product in mm^3 / 1000)."""
    return float(np.prod(geometry.spacing_xyz_mm)) / 1000.0


def index_to_lps(points_zyx: np.ndarray, geometry: Geometry) -> np.ndarray:
    """LPS mm of voxel indices.

    Args:
        points_zyx: Float array ``(N, 3)`` of array indices ``[z, y, x]`` (fractions allowed).

    Returns:
        Float array ``(N, 3)`` of ``(L, P, S)`` in mm.
    """
    points = np.asarray(points_zyx, dtype=np.float64)[:, ::-1]
    homogeneous = np.column_stack([points, np.ones(len(points))])
    return (homogeneous @ geometry.index_to_lps_matrix().T)[:, :3]


def box_corners_zyx(low_zyx, high_zyx) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of an index box given its lowest and highest ``[z, y, x]``."""
    return np.array(list(itertools.product(*zip(low_zyx, high_zyx))), dtype=np.float64)


def scan_extent(geometry: Geometry) -> ScanExtent:
    """The S range covered by a grid's voxel centres."""
    high = [n - 1 for n in geometry.shape_zyx]
    s = index_to_lps(box_corners_zyx((0, 0, 0), high), geometry)[:, 2]
    return ScanExtent(float(s.min()), float(s.max()))


def face_letters(geometry: Geometry) -> dict[tuple[int, int], str]:
    """Patient direction each face of the grid faces: ``{(array axis, 0 low | 1 high): letter}``.

    Array axis 0 is z, 1 is y, 2 is x. The high face of an index axis faces the direction the
    index increases towards (its :meth:`~flareseg.io.Geometry.orientation_code` letter).
    """
    code = geometry.orientation_code()  # letters of the index axes x, y, z
    faces = {}
    for axis in range(3):
        letter = code[2 - axis]
        faces[(axis, 1)], faces[(axis, 0)] = letter, _OPPOSITE[letter]
    return faces


def border_faces(low_zyx, high_zyx, shape_zyx, geometry: Geometry) -> str:
    """Letters of the faces a box of voxels ``[low, high]`` (inclusive) touches, e.g. ``"SR"``."""
    letters = face_letters(geometry)
    touched = {letters[(axis, 0)] for axis in range(3) if low_zyx[axis] == 0}
    touched |= {letters[(axis, 1)] for axis in range(3) if high_zyx[axis] == shape_zyx[axis] - 1}
    return "".join(sorted(touched, key=_FACE_ORDER.index))


def hu_sums(labels: np.ndarray, hu: np.ndarray, n_classes: int) -> np.ndarray:
    """Sum of HU per class value ``0..n_classes-1`` over the labelled voxels (class 0 is left at 0),
    float64 ``(n_classes,)``; slab by slab, so the copies stay small."""
    step = max(1, _SLAB_VOXELS // max(1, labels[0].size))
    total = np.zeros(n_classes)
    for start in range(0, labels.shape[0], step):
        part = labels[start:start + step].ravel()
        inside = np.flatnonzero(part)
        values = hu[start:start + step].ravel()[inside]
        total += np.bincount(part[inside], weights=values, minlength=n_classes)[:n_classes]
    return total


def count_components(labels: np.ndarray, class_id: int, low_zyx, high_zyx) -> int:
    """26-connected components of ``labels == class_id`` inside its bounding box."""
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(low_zyx, high_zyx))
    _, count = cc3d.connected_components(labels[box] == class_id, connectivity=26, return_N=True)
    return int(count)


def measure_organs(mask: Volume, hu: np.ndarray | None, class_ids) -> dict[str, OrganMeasures]:
    """Measures of every class of a mask.

    Args:
        mask: Label map, array ``[z, y, x]`` of non-negative integer class ids (unsigned dtype).
        hu: CT values on the mask's grid (same shape and axis order), HU; None leaves ``hu_mean`` empty.
        class_ids: Classes to report even when absent (absent: zero voxels, no position).

    Returns:
        :class:`OrganMeasures` by class name, in class-id order: ``class_ids`` and any other
        non-zero value present.
    """
    labels = mask.array
    stats = cc3d.statistics(labels, no_slice_conversion=True)
    counts = np.asarray(stats["voxel_counts"])
    ids = sorted(set(class_ids) | {i for i in range(1, len(counts)) if counts[i]})
    sums = hu_sums(labels, hu, len(counts)) if hu is not None else None
    voxel_ml = voxel_volume_ml(mask.geometry)
    out = {}
    for class_id in ids:
        voxels = int(counts[class_id]) if class_id < len(counts) else 0
        name = label_name(class_id)
        if voxels == 0:
            out[name] = OrganMeasures(class_id, name, 0, 0.0, 0, None, None, None, "")
            continue
        box = np.asarray(stats["bounding_boxes"][class_id])
        low, high = box[0::2], box[1::2]
        s_corners = index_to_lps(box_corners_zyx(low, high), mask.geometry)[:, 2]
        centroid = index_to_lps(np.asarray(stats["centroids"][class_id])[None], mask.geometry)[0]
        out[name] = OrganMeasures(
            class_id, name, voxels, voxels * voxel_ml, count_components(labels, class_id, low, high),
            float(sums[class_id] / voxels) if sums is not None else None,
            tuple(float(v) for v in centroid),  # type: ignore[arg-type]
            (float(s_corners.min()), float(s_corners.max())),
            border_faces(low, high, labels.shape, mask.geometry),
        )
    return out
