"""Intensity scaling, fixed-size resampling and crop/paste (with their inverses)."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.preprocessing.crop import Box, bounding_box, crop, pad_to_multiple, paste
from flareseg.preprocessing.intensity import clip_and_scale
from flareseg.preprocessing.resample import resize, shape_for_spacing


def test_clip_and_scale_maps_the_window_to_unit_range():
    hu = np.array([-1000, -100, 100, 300, 2000], dtype=np.int16)
    assert np.allclose(clip_and_scale(hu, (-100, 300)), [0, 0, 0.5, 1, 1])
    assert clip_and_scale(hu, (-100, 300)).dtype == np.float32
    with pytest.raises(ValueError):
        clip_and_scale(hu, (300, -100))


def test_linear_resize_averages_over_the_same_extent():
    a = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    half = resize(a, (4, 4, 4), order=1)
    assert half[0, 0, 0] == pytest.approx(a[:2, :2, :2].mean())  # centre of a 2x2x2 block
    assert resize(np.full((10, 12, 14), 7, np.int16), (23, 5, 7), order=1).min() == pytest.approx(7)


def test_nearest_resize_keeps_label_values_and_round_trips_on_integer_factors(rng):
    labels = rng.integers(0, 14, (6, 8, 10)).astype(np.uint8)
    up = resize(labels, (12, 16, 30), order=0)
    assert up.dtype == np.uint8 and set(np.unique(up)) <= set(np.unique(labels))
    assert np.array_equal(resize(up, labels.shape, order=0), labels)


def _simpleitk_resize(array, shape_zyx, order):
    """The same grid by SimpleITK's ``Resample``: voxel spacing ``n / m`` of the input's, the
    first output voxel centre at ``(n / m - 1) / 2`` in the input's index space."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    scale = [n / m for n, m in zip(array.shape[::-1], shape_zyx[::-1])]
    pixel = image.GetPixelID() if order == 0 else sitk.sitkFloat32
    interpolator = sitk.sitkNearestNeighbor if order == 0 else sitk.sitkLinear
    out = sitk.Resample(image, list(shape_zyx[::-1]), sitk.Transform(), interpolator,
                        [(s - 1) / 2 for s in scale], scale, [1, 0, 0, 0, 1, 0, 0, 0, 1], 0, pixel)
    return sitk.GetArrayFromImage(out)


@pytest.mark.parametrize("shape, target", [
    ((64, 64, 64), (80, 300, 300)),  # a fine stage's labels to its crop box
    ((64, 80, 80), (5, 7, 200)),  # down on two axes, up on one
    ((20, 30, 25), (32, 32, 32)),  # a small organ's crop to its network
    ((64, 64, 64), (80, 80, 80)),  # n / m = 0.8: some centres fall exactly half-way (ties)
    ((1, 9, 4), (3, 1, 4)),  # one voxel along an axis, either way
])
def test_resize_matches_simpleitk_resample(rng, shape, target):
    labels = rng.integers(0, 14, shape).astype(np.uint8)
    # a centre exactly half-way between two input voxels takes either: SimpleITK's rounding error decides
    centres = [(np.arange(m) + 0.5) * n / m - 0.5 for n, m in zip(shape, target)]
    ties = np.ix_(*[np.abs(c - np.floor(c) - 0.5) > 1e-6 for c in centres])
    kept = np.zeros(target, bool)
    kept[ties] = True
    assert np.array_equal(resize(labels, target, order=0)[kept], _simpleitk_resize(labels, target, 0)[kept])
    hu = rng.integers(-1000, 1500, shape).astype(np.int16)
    strided = np.zeros((shape[0] + 2, shape[1] + 3, shape[2] + 1), np.int16)
    strided[1:-1, 2:-1, :-1] = hu  # a crop of a scan: a view that is not contiguous
    for image in (hu, hu.astype(np.float32), strided[1:-1, 2:-1, :-1]):
        out = resize(image, target, order=1)
        assert out.dtype == np.float32 and out.shape == target
        assert np.allclose(out, _simpleitk_resize(hu, target, 1), rtol=0, atol=1e-3)


def test_resize_of_a_real_ct_keeps_the_organ_where_it_was(data_dir):
    from flareseg.io import read_volume

    label = read_volume(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz").array
    small = resize(label, (64, 64, 64), order=0)
    back = resize(small, label.shape, order=0)
    liver = label == 1
    overlap = 2 * np.count_nonzero(liver & (back == 1)) / (np.count_nonzero(liver) + np.count_nonzero(back == 1))
    assert overlap > 0.9


def test_bounding_box_crop_paste_are_inverse(rng):
    mask = np.zeros((20, 30, 40), bool)
    mask[3:7, 10:12, 5:39] = True
    box = bounding_box(mask)
    assert box == Box((3, 10, 5), (7, 12, 39)) and box.shape == (4, 2, 34)
    assert bounding_box(np.zeros((3, 3, 3))) is None
    volume = rng.integers(0, 9, mask.shape)
    target = np.zeros_like(volume)
    paste(target, box, crop(volume, box))
    assert np.array_equal(target[box.slices], volume[box.slices]) and target.sum() == volume[box.slices].sum()


def test_box_scaling_and_margin_stay_inside_the_array():
    box = Box((1, 2, 3), (4, 5, 6))
    assert box.scaled((2, 2, 2), (100, 100, 100)) == Box((2, 4, 6), (8, 10, 12))
    assert box.scaled((1.5, 1.5, 1.5), (5, 100, 100)) == Box((1, 3, 4), (5, 8, 9))
    assert box.expanded((2, 0.5, 10), (6, 100, 8)) == Box((0, 1, 0), (6, 6, 8))


def test_paste_where_only_touches_selected_voxels():
    target = np.full((4, 4, 4), 9, np.uint8)
    patch = np.zeros((2, 2, 2), np.uint8)
    patch[0, 0, 0] = 3
    paste(target, Box((1, 1, 1), (3, 3, 3)), patch, where=patch > 0)
    assert target[1, 1, 1] == 3 and (target == 9).sum() == 63


def test_shape_for_spacing_keeps_the_extent():
    assert shape_for_spacing((79, 512, 512), (3.0, 1.074, 1.074), (3.0, 3.0, 3.0)) == (79, 183, 183)
    assert shape_for_spacing((10, 10, 10), (1.0, 1.0, 1.0), (100.0, 0.5, 2.0)) == (1, 20, 5)


def test_pad_to_multiple_pads_the_end_of_each_axis_and_crops_back(rng):
    array = rng.random((5, 8, 13)).astype(np.float32)
    padded, box = pad_to_multiple(array, 4, -1.0)
    assert padded.shape == (8, 8, 16)
    assert (padded[5:] == -1).all() and (padded[:, :, 13:] == -1).all()
    np.testing.assert_array_equal(crop(padded, box), array)
    same, _ = pad_to_multiple(padded, 4, -1.0)
    assert same is padded  # already a multiple: no copy
    at_least, box = pad_to_multiple(array, 4, -1.0, minimum=10)  # the next multiple of 4 from 10 is 12
    assert at_least.shape == (12, 12, 16) and box.shape == (5, 8, 13)


def test_a_shifted_box_is_the_same_region_in_the_larger_array():
    from flareseg.preprocessing.crop import Box

    assert Box((1, 2, 3), (4, 5, 6)).shifted((10, 0, 7)) == Box((11, 2, 10), (14, 5, 13))
