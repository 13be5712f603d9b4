"""The image type of flareseg: a voxel array that travels with its geometry.

Axis order: ``array`` is indexed ``[z, y, x]`` (slice, row, column), as NumPy and
SimpleITK give it and as networks take it (D, H, W). Geometry is kept as ITK stores it:
per index axis ``(x, y, z)`` and in LPS physical coordinates. The field names say which.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

#: Largest difference (mm, or unitless for direction cosines) at which two grids count as equal.
GEOMETRY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid lies in patient space.

    Attributes:
        shape_zyx: Number of voxels per array axis ``(z, y, x)``.
        spacing_xyz_mm: Voxel size along the index axes ``(x, y, z)``, in mm.
        origin_lps_mm: Physical LPS position of the centre of voxel ``[0, 0, 0]``, in mm.
        direction_lps: 3x3 direction cosines; column ``j`` is the LPS direction of index axis ``j`` (x, y, z).
    """

    shape_zyx: tuple[int, int, int]
    spacing_xyz_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction_lps: tuple[tuple[float, float, float], ...] = field(
        default=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    )

    @property
    def spacing_zyx_mm(self) -> tuple[float, float, float]:
        """Voxel size along the array axes ``(z, y, x)``, in mm."""
        return tuple(reversed(self.spacing_xyz_mm))  # type: ignore[return-value]

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a float64 (3, 3) array."""
        return np.asarray(self.direction_lps, dtype=np.float64)

    def index_to_lps_matrix(self) -> np.ndarray:
        """4x4 matrix mapping an ``(x, y, z, 1)`` voxel index to LPS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction_matrix * np.asarray(self.spacing_xyz_mm)
        matrix[:3, 3] = self.origin_lps_mm
        return matrix

    def affine_ras(self) -> np.ndarray:
        """The NIfTI/nibabel affine: ``(x, y, z, 1)`` voxel index to RAS mm."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.index_to_lps_matrix()

    def orientation_code(self) -> str:
        """ITK/DICOM orientation letters of the index axes (x, y, z), e.g. ``"LPS"`` or ``"RAS"``.

        Each letter is the direction towards which that index increases.
        """
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        direction = self.direction_matrix
        code = ""
        for axis in range(3):
            physical = int(np.argmax(np.abs(direction[:, axis])))
            code += letters[physical][0 if direction[physical, axis] > 0 else 1]
        return code

    def oblique_angle_deg(self) -> float:
        """Rotation, in degrees, from the nearest grid whose axes run along the body axes (0 for an
        axis-aligned grid). Axis flips and permutations cannot remove it; only resampling can."""
        direction = self.direction_matrix
        handedness = np.sign(np.linalg.det(direction)) or 1.0
        best = max(np.trace(permutation.T @ direction) for permutation in _SIGNED_PERMUTATIONS
                   if round(np.linalg.det(permutation)) == handedness)
        return float(np.degrees(np.arccos(np.clip((best - 1.0) / 2.0, -1.0, 1.0))))

    def is_oblique(self, tolerance: float = GEOMETRY_TOLERANCE) -> bool:
        """True when some direction cosine is more than ``tolerance`` from the nearest axis-aligned grid's."""
        direction = self.direction_matrix
        nearest = np.zeros((3, 3))
        for axis in range(3):
            physical = int(np.argmax(np.abs(direction[:, axis])))
            nearest[physical, axis] = np.sign(direction[physical, axis])
        return bool(np.abs(direction - nearest).max() > tolerance)

    def matches(self, other: Geometry, tolerance: float = GEOMETRY_TOLERANCE) -> bool:
        """True when both grids have the same shape and agree within ``tolerance``."""
        return self.shape_zyx == other.shape_zyx and bool(
            np.allclose(self.spacing_xyz_mm, other.spacing_xyz_mm, atol=tolerance, rtol=0)
            and np.allclose(self.origin_lps_mm, other.origin_lps_mm, atol=tolerance, rtol=0)
            and np.allclose(self.direction_matrix, other.direction_matrix, atol=tolerance, rtol=0)
        )

    def describe(self) -> str:
        """One line: shape, spacing and orientation, e.g. ``"512x512x79 voxels, 1.07x1.07x3 mm, LPS"``;
        an oblique grid's orientation is its nearest letters and its angle, ``"LPS (oblique 12°)"``."""
        shape_xyz = "x".join(str(n) for n in reversed(self.shape_zyx))
        spacing = "x".join(f"{s:.3g}" for s in self.spacing_xyz_mm)
        orientation = self.orientation_code()
        if self.is_oblique():
            orientation += f" (oblique {self.oblique_angle_deg():.2g}°)"
        return f"{shape_xyz} voxels, {spacing} mm, {orientation}"


_SIGNED_PERMUTATIONS = [
    np.eye(3)[:, list(order)] * signs for order in itertools.permutations(range(3))
    for signs in itertools.product((1.0, -1.0), repeat=3)
]


@dataclass(frozen=True)
class Volume:
    """A 3D image: voxel array ``[z, y, x]`` plus its geometry.

    Attributes:
        array: Voxel values, shape ``geometry.shape_zyx``; HU for CT, class ids for label maps.
        geometry: Where the grid lies in patient space.
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != tuple(self.geometry.shape_zyx):
            raise ValueError(f"array shape {self.array.shape} != geometry shape {self.geometry.shape_zyx}")
