"""An oblique grid cannot be made canonical by flips and permutations: it keeps its rotation, and
check_axis_aligned says so where a caller promises the identity direction."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.errors import GeometryError
from flareseg.io import Geometry, Volume
from flareseg.preprocessing.orientation import check_axis_aligned, to_canonical


def _ras_turned_about_z(degrees) -> Geometry:
    angle = np.radians(degrees)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Geometry((4, 5, 6), (0.8, 0.9, 2.5), (10.0, -20.0, 30.0), tuple(map(tuple, turn @ np.diag([-1, -1, 1]))))


def test_check_axis_aligned_refuses_an_oblique_grid_only():
    check_axis_aligned(_ras_turned_about_z(0.0))
    with pytest.raises(GeometryError, match=r"^scan.nii.gz: oblique grid \(12° from the body axes\) cannot be made "
                                            "canonical without resampling$"):
        check_axis_aligned(_ras_turned_about_z(12.0), "scan.nii.gz")


def test_to_canonical_keeps_an_oblique_grid_s_rotation(rng):
    geometry = _ras_turned_about_z(12.0)
    array = rng.integers(-1000, 1000, size=geometry.shape_zyx).astype(np.int16)
    canonical, reorientation = to_canonical(Volume(array, geometry))
    assert canonical.geometry.orientation_code() == "LPS"
    assert canonical.geometry.oblique_angle_deg() == pytest.approx(12.0)
    assert canonical.geometry.describe().endswith("LPS (oblique 12°)")
    np.testing.assert_array_equal(reorientation.invert(canonical.array), array)
