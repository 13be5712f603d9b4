"""Largest-component clean-up per organ; lesions keep every large enough component."""

from __future__ import annotations

import numpy as np

from flareseg.labels import LESION
from flareseg.postprocessing.components import count_components, keep_largest_components


def test_each_organ_keeps_only_its_largest_component():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:4, 0:4, 0:4] = 1  # 64 voxels
    labels[8:10, 8:10, 8:10] = 1  # 8 voxels, a stray island
    labels[6, 0, 0] = 2  # single component of another organ
    out = keep_largest_components(labels.copy(), [1, 2])
    assert np.count_nonzero(out == 1) == 64 and out[9, 9, 9] == 0
    assert out[6, 0, 0] == 2


def test_diagonal_neighbours_are_connected():
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[0, 0, 0] = labels[1, 1, 1] = labels[2, 2, 2] = 3
    assert np.count_nonzero(keep_largest_components(labels.copy(), [3]) == 3) == 3


def test_lesions_keep_all_components_above_the_minimum_size():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[0:3, 0:3, 0:3] = LESION  # 27 voxels
    labels[10:13, 10:13, 10:12] = LESION  # 18 voxels
    labels[18, 18, 18] = LESION  # 1 voxel
    out = keep_largest_components(labels.copy(), [LESION], lesion_min_voxels=10)
    assert np.count_nonzero(out == LESION) == 45


def test_classes_not_listed_are_left_alone():
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0, 0, 0] = labels[5, 5, 5] = 4
    assert np.count_nonzero(keep_largest_components(labels.copy(), [1]) == 4) == 2


def test_components_are_counted_per_class_before_the_clean_up():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:4, 0:4, 0:4] = 1
    labels[8:10, 8:10, 8:10] = 1  # a second liver island
    labels[5, 5, 5] = labels[6, 6, 6] = 2  # corner neighbours: one component
    labels[0, 9, 0] = labels[0, 9, 3] = labels[9, 0, 9] = 4  # three separate voxels, not cleaned below
    counts = {}
    keep_largest_components(labels.copy(), [1, 2], counts=counts)
    assert counts == {1: 2, 2: 1, 4: 3}
    assert count_components(labels) == counts
    assert count_components(np.zeros((3, 3, 3), np.uint8)) == {}


def _reference_clean_up(labels: np.ndarray, class_ids, lesion_min_voxels: int) -> tuple[np.ndarray, dict[int, int]]:
    """The clean-up and component counts from scipy's per-class labelling (26-connected)."""
    from scipy import ndimage

    out, counts = labels.copy(), {}
    for class_id in np.unique(labels[labels > 0]):
        parts, count = ndimage.label(labels == class_id, structure=np.ones((3, 3, 3)))
        counts[int(class_id)] = count
        if class_id not in class_ids:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        keep = sizes >= lesion_min_voxels if class_id == LESION else np.arange(count) == np.argmax(sizes)
        out[(parts > 0) & ~np.concatenate([[False], keep])[parts]] = 0
    return out, counts


def test_clean_up_matches_scipy_per_class_labelling_on_random_label_maps():
    rng = np.random.default_rng(7)
    for trial in range(40):
        shape = tuple(int(n) for n in rng.integers(1, 30, 3))
        labels = (rng.random(shape) < rng.random()) * rng.integers(1, LESION + 1, shape)
        labels = labels.astype(np.uint8)
        if trial % 2:  # a strided view, cleaned in place like a whole array
            labels = np.zeros((shape[0] + 2, shape[1], 2 * shape[2]), np.uint8)[1:-1, :, ::2]
            labels[...] = (rng.random(shape) < 0.4) * rng.integers(1, 4, shape)
        class_ids = [1, 2, 5, LESION] if trial % 3 else list(range(1, LESION + 1))
        expected, expected_counts = _reference_clean_up(labels, class_ids, lesion_min_voxels=3)
        counts = {}
        out = keep_largest_components(labels, class_ids, lesion_min_voxels=3, counts=counts)
        assert out is labels
        np.testing.assert_array_equal(out, expected)
        assert counts == expected_counts


def test_large_dropped_components_are_cleared_a_chunk_at_a_time():
    from flareseg.postprocessing.components import _zero_runs

    region = np.ones((4, 5, 6), np.uint8)[:, ::-1]  # a view; flat indices in its own raster order
    starts, lengths = np.array([0, 7, 30, 100]), np.array([3, 20, 1, 20])
    expected = region.copy()
    for start, length in zip(starts, lengths):
        expected.reshape(-1)[start:start + length] = 0
    _zero_runs(region, starts, lengths, chunk=4)  # runs split across chunks
    np.testing.assert_array_equal(region, expected)
