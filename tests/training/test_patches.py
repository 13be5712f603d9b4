"""Random patches of a volume at a fixed spacing, and field-of-view cuts, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.preprocessing.crop import Box
from flareseg.training.patches import MIN_SLAB_SLICES, axial_slab, cut_field_of_view, foreground_voxel, random_patch

AIR = -0.25


def _volume(shape):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)  # every voxel distinct
    return image, (image.astype(np.int64) % 7).astype(np.uint8)


def test_a_patch_of_a_larger_volume_is_one_of_its_blocks(rng):
    image, label = _volume((20, 30, 40))
    for _ in range(10):
        patch, patch_label = random_patch(image, label, (8, 16, 16), rng, AIR)
        z, y, x = (int(v) for v in np.argwhere(image == patch[0, 0, 0])[0])
        np.testing.assert_array_equal(patch, image[z : z + 8, y : y + 16, x : x + 16])
        np.testing.assert_array_equal(patch_label, label[z : z + 8, y : y + 16, x : x + 16])


def test_a_smaller_volume_lies_whole_in_the_patch_with_air_around(rng):
    image, label = _volume((5, 30, 12))
    offsets = set()
    for _ in range(20):
        patch, patch_label = random_patch(image, label, (8, 16, 16), rng, AIR)
        inside = patch != AIR
        box = np.argwhere(inside)
        (z0, y0, x0), (z1, y1, x1) = box.min(0), box.max(0) + 1
        assert (z1 - z0, y1 - y0, x1 - x0) == (5, 16, 12)  # all of z and x, a 16-voxel part of y
        y = int(patch[z0, 0, x0]) // 12 % 30  # image value = (z * 30 + y) * 12 + x
        np.testing.assert_array_equal(patch[z0:z1, :, x0:x1], image[:, y : y + 16])
        assert (patch_label[~inside] == 0).all()
        offsets.add((int(z0), int(x0)))
    assert len(offsets) > 1  # placed at random offsets, not always at the start


def test_field_of_view_cut_keeps_one_slab_and_turns_the_rest_to_air(rng):
    image, label = _volume((24, 6, 6))
    lengths, starts = set(), set()
    for _ in range(50):
        cut, cut_label = cut_field_of_view(image, label, rng, AIR)
        kept = np.flatnonzero((cut != AIR).all(axis=(1, 2)))
        assert len(kept) >= MIN_SLAB_SLICES and np.all(np.diff(kept) == 1)  # one contiguous slab
        np.testing.assert_array_equal(cut[kept], image[kept])
        np.testing.assert_array_equal(cut_label[kept], label[kept])
        outside = np.setdiff1d(np.arange(24), kept)
        assert (cut[outside] == AIR).all() and (cut_label[outside] == 0).all()
        lengths.add(len(kept))
        starts.add(int(kept[0]))
    assert len(lengths) > 5 and 0 in starts  # slabs of many lengths, some touching an end
    assert (image == np.arange(24 * 36).reshape(24, 6, 6)).all()  # the input is left as it was


@pytest.mark.parametrize("depth", [1, 3])
def test_field_of_view_cut_of_a_thin_patch_keeps_at_least_one_slice(rng, depth):
    image, label = _volume((depth, 4, 4))
    cut, _ = cut_field_of_view(image, label, rng, AIR)
    assert (cut != AIR).all(axis=(1, 2)).sum() >= 1


def test_a_patch_holding_a_voxel_contains_it_at_random_places(rng):
    image, label = _volume((40, 50, 60))
    places = set()
    for _ in range(20):
        voxel = tuple(int(v) for v in rng.integers((40, 50, 60)))
        patch, _ = random_patch(image, label, (8, 16, 16), rng, AIR, holding=voxel)
        found = np.argwhere(patch == image[voxel])
        assert len(found) == 1
        places.add(tuple(found[0]))
    assert len(places) > 10


def test_foreground_voxel_is_labelled_and_none_when_empty(rng):
    label = np.zeros((6, 7, 8), np.uint8)
    assert foreground_voxel(label, rng) is None
    label[2, 3, 4] = label[5, 6, 7] = 9
    picks = {tuple(int(v) for v in foreground_voxel(label, rng)) for _ in range(30)}
    assert picks == {(2, 3, 4), (5, 6, 7)}


def test_axial_slab_keeps_a_quarter_or_more_of_the_box_and_its_other_axes(rng):
    box = Box((10, 3, 4), (30, 13, 24))  # 20 slices
    lengths, starts = set(), set()
    for _ in range(3000):
        slab = axial_slab(box, rng)
        assert slab.start[1:] == box.start[1:] and slab.stop[1:] == box.stop[1:]
        assert box.start[0] <= slab.start[0] < slab.stop[0] <= box.stop[0]
        lengths.add(slab.shape[0])
        starts.add(slab.start[0])
    assert lengths == set(range(5, 21))  # ceil(0.25 * 20) = 5 slices up to all 20
    assert min(starts) == 10 and max(starts) == 25  # touching either end, or neither
    assert axial_slab(Box((7, 0, 0), (8, 2, 2)), rng) == Box((7, 0, 0), (8, 2, 2))  # one slice stays one slice
