"""Surface distances and Dice on hand-made masks with known answers, checked against DeepMind's package."""

from __future__ import annotations

import math

import numpy as np
import pytest
import surface_distance as sd

from flareseg.evaluation.surface import dice, surface_distances, surfel_area_table


def cube(shape=(12, 12, 12), start=(3, 3, 3), size=(5, 5, 5)):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def test_identical_masks_score_one():
    mask = cube()
    assert dice(mask, mask) == 1.0
    assert surface_distances(mask, mask, (1.0, 1.0, 1.0)).surface_dice(0.0) == 1.0


@pytest.mark.parametrize("spacing", [(2.0, 1.0, 1.0), (2.0, 0.7, 0.9)])
def test_one_voxel_shift_below_and_above_the_spacing(spacing):
    gt, pred = cube(), np.roll(cube(), 1, axis=0)  # shift by one voxel = spacing[0] mm
    distances = surface_distances(gt, pred, spacing)
    assert distances.surface_dice(spacing[0]) == pytest.approx(1.0)
    assert distances.surface_dice(spacing[0] - 0.01) < 1.0
    assert dice(gt, pred) == pytest.approx(2 * 4 * 25 / (2 * 125))
    reference = sd.compute_surface_distances(gt, pred, spacing)
    for tolerance in (0.5, spacing[0] - 0.01, spacing[0]):
        assert distances.surface_dice(tolerance) == pytest.approx(
            sd.compute_surface_dice_at_tolerance(reference, tolerance), abs=1e-12
        )


@pytest.mark.parametrize("spacing", [(1.5, 0.8, 0.8), (1.0, 1.0, 1.0), (0.7, 2.5, 5.0)])
def test_surface_area_table_matches_deepmind(spacing):
    reference = sd.lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_allclose(surfel_area_table(spacing), reference, rtol=0, atol=1e-12)


def test_stored_normals_equal_monai_s_table():
    from monai.metrics.utils import _get_neighbour_code_to_normals_table

    from flareseg.evaluation.surface import _normals_table

    np.testing.assert_array_equal(_normals_table(), np.asarray(_get_neighbour_code_to_normals_table(), np.float64))


def test_empty_masks():
    empty, full = np.zeros((5, 5, 5), bool), cube((5, 5, 5), (1, 1, 1), (3, 3, 3))
    assert math.isnan(dice(empty, empty))
    assert dice(empty, full) == 0.0
    both = surface_distances(empty, empty, (1.0, 1.0, 1.0))
    assert math.isnan(both.surface_dice(1.0))
    one = surface_distances(full, empty, (1.0, 1.0, 1.0))
    assert np.isinf(one.gt_to_pred_mm).all() and one.surface_dice(100.0) == 0.0


def test_random_blobs_agree_with_reference(rng):
    from scipy import ndimage

    for _ in range(5):
        gt = ndimage.binary_opening(rng.random((30, 25, 20)) > 0.3, iterations=1)
        pred = ndimage.binary_opening(rng.random((30, 25, 20)) > 0.3, iterations=1)
        spacing = tuple(rng.uniform(0.5, 3.0, 3))
        assert gt.any() and pred.any()
        ours = surface_distances(gt, pred, spacing)
        reference = sd.compute_surface_distances(gt, pred, spacing)
        for tolerance in (0.5, 1.0, 2.0, 5.0):
            assert ours.surface_dice(tolerance) == pytest.approx(
                sd.compute_surface_dice_at_tolerance(reference, tolerance), abs=1e-12
            )
