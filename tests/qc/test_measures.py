"""Measures on tiny masks, checked against hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.io import Geometry, Volume
from flareseg.qc.measures import border_faces, face_letters, measure_organs, scan_extent, voxel_volume_ml

LPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
RAS = ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))  # x towards the patient's right


def _volume(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=LPS) -> Volume:
    return Volume(array, Geometry(array.shape, spacing, origin, direction))


def test_volume_in_ml_uses_the_voxel_spacing():
    array = np.zeros((3, 4, 5), np.uint8)
    array[0, 0, :3] = 1  # 3 voxels
    array[1:3, 1:3, 1:3] = 2  # 8 voxels
    mask = _volume(array, spacing=(0.5, 2.0, 4.0))  # 0.5 * 2 * 4 = 4 mm^3 per voxel
    assert voxel_volume_ml(mask.geometry) == pytest.approx(0.004)
    measures = measure_organs(mask, None, [1, 2, 3])
    assert measures["liver"].voxels == 3 and measures["liver"].volume_ml == pytest.approx(0.012)
    assert measures["right_kidney"].volume_ml == pytest.approx(0.032)
    spleen = measures["spleen"]  # asked for, absent
    assert (spleen.present, spleen.voxels, spleen.volume_ml, spleen.components, spleen.centroid_lps_mm) == \
        (False, 0, 0.0, 0, None)


def test_components_are_26_connected():
    array = np.zeros((6, 6, 6), np.uint8)
    array[1, 1, 1] = array[2, 2, 2] = 1  # corner neighbours: one component under 26-connectivity
    array[4, 4, 4] = 1  # a second component
    array[1, 4, 1] = array[2, 4, 1] = 3  # face neighbours: one
    measures = measure_organs(_volume(array), None, [1, 3])
    assert measures["liver"].components == 2
    assert measures["spleen"].components == 1


def test_centroid_and_mean_hu_by_hand():
    array = np.zeros((4, 5, 6), np.uint8)
    array[0, 1, 1] = array[0, 2, 1] = array[2, 2, 2] = 1
    hu = np.zeros(array.shape)
    hu[0, 1, 1], hu[0, 2, 1], hu[2, 2, 2] = 10.0, 20.0, 60.0
    mask = _volume(array, spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0))
    liver = measure_organs(mask, hu, [1])["liver"]
    # x = (1 + 1 + 2) / 3, y = (1 + 2 + 2) / 3, z = (0 + 0 + 2) / 3; L = 10 + x, P = 20 + 2y, S = 30 + 3z
    assert liver.centroid_lps_mm == pytest.approx((10 + 4 / 3, 20 + 10 / 3, 32.0))
    assert liver.hu_mean == pytest.approx(30.0)
    assert liver.s_range_mm == pytest.approx((30.0, 36.0))


def test_centroid_follows_the_direction():
    array = np.zeros((2, 2, 4), np.uint8)
    array[0, 0, 3] = 1
    mask = _volume(array, spacing=(2.0, 1.0, 1.0), origin=(100.0, 50.0, 0.0), direction=RAS)
    # x runs towards the patient's right (-L): L = 100 - 2 * 3; y towards anterior: P = 50 - 0
    assert measure_organs(mask, None, [1])["liver"].centroid_lps_mm == pytest.approx((94.0, 50.0, 0.0))


def test_border_faces_named_by_patient_direction():
    array = np.zeros((4, 5, 6), np.uint8)
    array[3, 2, 0] = 1  # top slice, first column
    array[1, 0, 3] = 2  # first row
    array[1, 2, 2:4] = 3  # inside
    lps = measure_organs(_volume(array), None, [1, 2, 3])
    assert (lps["liver"].border_faces, lps["right_kidney"].border_faces, lps["spleen"].border_faces) == ("SR", "A", "")
    assert lps["liver"].touches_border and not lps["spleen"].touches_border
    ras = measure_organs(_volume(array, direction=RAS), None, [1, 2])
    # in RAS, x increases towards the patient's right, so column 0 faces left; row 0 faces posterior
    assert (ras["liver"].border_faces, ras["right_kidney"].border_faces) == ("SL", "P")


def test_face_letters_and_box_faces():
    geometry = Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), LPS)
    assert face_letters(geometry) == {(0, 0): "I", (0, 1): "S", (1, 0): "A", (1, 1): "P", (2, 0): "R", (2, 1): "L"}
    assert border_faces((0, 0, 0), (3, 4, 5), (4, 5, 6), geometry) == "SIRLAP"


def test_scan_extent_is_the_span_of_voxel_centres():
    geometry = Geometry((10, 2, 2), (1.0, 1.0, 2.5), (0.0, 0.0, -100.0), LPS)
    extent = scan_extent(geometry)
    assert (extent.s_min_mm, extent.s_max_mm) == pytest.approx((-100.0, -100.0 + 9 * 2.5))
