"""Tracing masks into polygons and filling them back: the round trip is exact."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from flareseg.io.polygons import mask_polygons, polygon_mask


def _fill(polygons, shape_yx):
    """Even-odd fill of several polygons together: each one toggles the pixels it covers."""
    mask = np.zeros(shape_yx, bool)
    for polygon in polygons:
        mask ^= polygon_mask(polygon, shape_yx)
    return mask


def test_one_pixel_is_a_diamond_through_the_midpoints_of_its_sides():
    mask = np.zeros((4, 5), bool)
    mask[2, 3] = True  # row 2, column 3
    (polygon,) = mask_polygons(mask)
    assert sorted(map(tuple, polygon.tolist())) == [(2.5, 2.0), (3.0, 1.5), (3.0, 2.5), (3.5, 2.0)]


def test_a_rectangle_keeps_only_its_eight_corners():
    mask = np.zeros((6, 7), bool)
    mask[1:4, 1:5] = True  # rows 1..3, columns 1..4: straight sides, chamfered corners
    (polygon,) = mask_polygons(mask)
    expected = {(1.0, 0.5), (4.0, 0.5), (4.5, 1.0), (4.5, 3.0), (4.0, 3.5), (1.0, 3.5), (0.5, 3.0), (0.5, 1.0)}
    assert len(polygon) == 8 and set(map(tuple, polygon.tolist())) == expected


def test_holes_islands_and_diagonal_neighbours_fill_back_exactly():
    mask = np.zeros((12, 12), bool)
    mask[1:10, 1:10] = True
    mask[3:8, 3:8] = False  # a hole
    mask[5, 5] = True  # an island in the hole
    mask[10, 10] = mask[11, 11] = True  # diagonal neighbours at the border: two polygons
    polygons = mask_polygons(mask)
    assert len(polygons) == 5
    np.testing.assert_array_equal(_fill(polygons, mask.shape), mask)
    assert mask_polygons(np.zeros((3, 3), bool)) == []


def test_random_masks_fill_back_exactly(rng):
    for density in (0.3, 0.5, 0.7):
        for _ in range(30):
            noise = ndimage.uniform_filter(rng.random((30, 40)), size=int(rng.integers(1, 4)))
            mask = noise > np.quantile(noise, 1 - density)  # blobs, holes, thin parts, borders touched
            np.testing.assert_array_equal(_fill(mask_polygons(mask), mask.shape), mask)
