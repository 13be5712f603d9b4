"""Geometry.describe names an oblique grid's rotation instead of calling it by its nearest letters alone."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.io import Geometry


def _rotation(axis, degrees) -> np.ndarray:
    """Rodrigues: the rotation by ``degrees`` about ``axis``."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _geometry(direction) -> Geometry:
    return Geometry((4, 5, 6), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0), tuple(map(tuple, np.asarray(direction))))


@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, -1, 1), (-1, 1, 1)])  # LPS, RAS, and left-handed LAS
@pytest.mark.parametrize("axis, degrees", [((0, 0, 1), 12.0), ((1, 1, 1), 20.0), ((1, 0, 0), 0.5)])
def test_oblique_angle_is_the_rotation_from_the_nearest_axis_aligned_grid(flips, axis, degrees):
    geometry = _geometry(_rotation(axis, degrees) @ np.diag(flips))
    assert geometry.oblique_angle_deg() == pytest.approx(degrees, abs=1e-6)
    assert geometry.is_oblique()
    assert geometry.describe().endswith(f" (oblique {degrees:.2g}°)")


@pytest.mark.parametrize("code, flips", [("LPS", (1, 1, 1)), ("RAS", (-1, -1, 1)), ("LAS", (1, -1, 1))])
def test_an_axis_aligned_grid_is_described_by_its_letters_alone(code, flips):
    geometry = _geometry(np.diag(flips))
    assert geometry.oblique_angle_deg() == 0.0 and not geometry.is_oblique()
    assert geometry.describe() == f"6x5x4 voxels, 0.8x0.8x2.5 mm, {code}"


def test_rounding_noise_is_not_obliquity():
    geometry = _geometry(_rotation((0, 0, 1), 0.001))  # 1.7e-5 in the cosines, as float32 headers round
    assert not geometry.is_oblique()
    assert geometry.describe().endswith("mm, LPS")
