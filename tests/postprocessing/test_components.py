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
