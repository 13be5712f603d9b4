"""Exact reorientation to the canonical grid and back: axis permutations and flips only.

The canonical orientation has an identity direction matrix in ITK terms ("LPS"): array
axes ``[z, y, x]`` run towards superior, posterior and left. DICOM axial CT already lies
so; a RAS NIfTI needs two flips. No voxel is interpolated, so the round trip is exact.

An oblique grid (``Geometry.is_oblique``) keeps its residual rotation: its axes come closest to
the canonical ones, and its direction matrix stays truthful, but it is not the identity.
:func:`check_axis_aligned` refuses such a grid where a caller promises an exactly canonical one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flareseg.errors import GeometryError
from flareseg.io.volume import Geometry, Volume


@dataclass(frozen=True)
class Reorientation:
    """How an array ``[z, y, x]`` is taken to the canonical orientation, and back.

    Attributes:
        axes: For each canonical array axis, the source array axis it comes from.
        flips: For each canonical array axis, whether it is reversed.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    @property
    def is_identity(self) -> bool:
        return self.axes == (0, 1, 2) and not any(self.flips)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Source array to canonical array (a view; no copy)."""
        out = np.transpose(array, self.axes)
        return np.flip(out, axis=self._flip_axes()) if any(self.flips) else out

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Canonical array (e.g. a prediction) back to the source array order (a view)."""
        out = np.flip(array, axis=self._flip_axes()) if any(self.flips) else array
        return np.transpose(out, np.argsort(self.axes))

    def _flip_axes(self) -> tuple[int, ...]:
        return tuple(axis for axis, flip in enumerate(self.flips) if flip)


def canonical_reorientation(geometry: Geometry) -> Reorientation:
    """The permutation and flips that bring ``geometry`` closest to the canonical orientation.

    Raises:
        GeometryError: Two index axes point closest to the same body axis (a degenerate,
            45-degree oblique direction matrix).
    """
    direction = geometry.direction_matrix
    axes = [-1, -1, -1]
    flips = [False, False, False]
    for index_axis in range(3):  # ITK index axis j (x, y, z) is array axis 2 - j
        physical = int(np.argmax(np.abs(direction[:, index_axis])))
        canonical_array_axis = 2 - physical
        if axes[canonical_array_axis] != -1:
            raise GeometryError(f"cannot reorient: ambiguous direction matrix {direction.tolist()}")
        axes[canonical_array_axis] = 2 - index_axis
        flips[canonical_array_axis] = bool(direction[physical, index_axis] < 0)
    return Reorientation(tuple(axes), tuple(flips))  # type: ignore[arg-type]


def reoriented_geometry(geometry: Geometry, reorientation: Reorientation) -> Geometry:
    """The grid of ``reorientation.apply(array)``: same voxels in space, other axis order."""
    index_to_lps = geometry.index_to_lps_matrix()
    source_shape_xyz = geometry.shape_zyx[::-1]
    corner_xyz = np.zeros(3)
    spacing, columns, shape_zyx = [0.0] * 3, [None] * 3, [0] * 3
    for array_axis, (source_axis, flip) in enumerate(zip(reorientation.axes, reorientation.flips)):
        source_index_axis, index_axis = 2 - source_axis, 2 - array_axis
        spacing[index_axis] = geometry.spacing_xyz_mm[source_index_axis]
        column = geometry.direction_matrix[:, source_index_axis]
        columns[index_axis] = -column if flip else column
        shape_zyx[array_axis] = geometry.shape_zyx[source_axis]
        if flip:
            corner_xyz[source_index_axis] = source_shape_xyz[source_index_axis] - 1
    origin = index_to_lps[:3, :3] @ corner_xyz + index_to_lps[:3, 3]
    direction = np.stack(columns, axis=1)
    return Geometry(
        shape_zyx=tuple(shape_zyx),  # type: ignore[arg-type]
        spacing_xyz_mm=tuple(spacing),  # type: ignore[arg-type]
        origin_lps_mm=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction_lps=tuple(tuple(float(v) for v in row) for row in direction),
    )


def check_axis_aligned(geometry: Geometry, source: str = "image") -> None:
    """Raise if flips and permutations cannot give ``geometry`` the identity direction: an oblique grid.

    Raises:
        GeometryError: Naming ``source`` and the angle of its rotation.
    """
    if geometry.is_oblique():
        raise GeometryError(f"{source}: oblique grid ({geometry.oblique_angle_deg():.2g}° from the body axes) cannot "
                            "be made canonical without resampling")


def to_canonical(volume: Volume) -> tuple[Volume, Reorientation]:
    """Reorient a volume to the canonical orientation (the nearest one, for an oblique grid).

    Returns:
        The canonical volume (its array is a view of the input's) and the reorientation,
        whose :meth:`Reorientation.invert` takes canonical arrays back to the input grid.
    """
    reorientation = canonical_reorientation(volume.geometry)
    geometry = reoriented_geometry(volume.geometry, reorientation)
    return Volume(reorientation.apply(volume.array), geometry), reorientation


def align_to(volume: Volume, target: Geometry, tolerance: float = 1e-3) -> Volume:
    """Bring a volume onto ``target``'s grid by permuting and flipping axes only.

    This puts a label map stored in another orientation (e.g. LAS) exactly onto its CT
    (e.g. LPS or RAS) without interpolation.

    Raises:
        GeometryError: The two grids differ by more than an axis order and flips
            (other spacing, origin, extent or rotation).
    """
    source_to_canonical = canonical_reorientation(volume.geometry)
    target_to_canonical = canonical_reorientation(target)
    canonical_source = reoriented_geometry(volume.geometry, source_to_canonical)
    canonical_target = reoriented_geometry(target, target_to_canonical)
    if not canonical_source.matches(canonical_target, tolerance):
        raise GeometryError(
            f"grids differ: {volume.geometry.describe()} at origin {_fmt(volume.geometry.origin_lps_mm)} "
            f"vs {target.describe()} at origin {_fmt(target.origin_lps_mm)}"
        )
    array = target_to_canonical.invert(source_to_canonical.apply(volume.array))
    return Volume(array, target)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
