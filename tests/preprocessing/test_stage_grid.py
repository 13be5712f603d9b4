"""A stage's grid and crops (shared by training and prediction), and the z-score normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.io import read_volume
from flareseg.preprocessing.crop import Box
from flareseg.preprocessing.intensity import foreground_statistics, intensity_map, sample_foreground, window_map
from flareseg.preprocessing.resample import resize
from flareseg.preprocessing.stage_grid import crop_subsets, margin_box, stage_shape, stage_spacing, subset_box
from flareseg.recipes import PreprocessConfig, StageConfig


def _stage(**fields) -> StageConfig:
    base = {"name": "s", "labels": (1, 2, 3), "size_zyx": (32, 32, 32), "sampler": "spacing_patches"}
    return StageConfig(**{**base, **fields})


def test_isotropic_z_takes_the_in_plane_spacing_and_null_keeps_the_scans():
    stage = _stage(spacing_mm=("isotropic", None, None), sampler="slices_2d", size_zyx=(64, 64))
    assert stage_spacing(stage, (3.0, 0.8, 0.8)) == (0.8, 0.8, 0.8)
    # 40 slices of 3 mm are 120 mm: 150 slices of 0.8 mm; in-plane unchanged
    assert stage_shape((40, 512, 512), (3.0, 0.8, 0.8), stage) == (150, 512, 512)
    fixed = _stage(spacing_mm=("isotropic", 1.6, None))
    assert stage_spacing(fixed, (5.0, 0.8, 0.7)) == (1.6, 1.6, 0.7)
    assert stage_spacing(_stage(sampler="whole_resize", crop="whole"), (3.0, 1.0, 1.0)) is None
    assert stage_shape((40, 512, 512), (3.0, 1.0, 1.0), _stage(sampler="whole_resize")) == (32, 32, 32)


def test_z_isotropic_round_trip_gives_back_a_real_label_map_exactly(data_dir):
    # a 2.5 mm label map taken to 0.78 mm slices and back, as the 2D U-Net's prediction does
    label = read_volume(data_dir / "ts_example" / "flare_labels_dicom_from_v2fast.nii.gz")
    spacing = label.geometry.spacing_zyx_mm
    array = label.array
    stage = _stage(spacing_mm=("isotropic", None, None), sampler="slices_2d", size_zyx=(64, 64))
    shape = stage_shape(array.shape, spacing, stage)
    assert shape[1:] == array.shape[1:] and shape[0] > array.shape[0]
    there = resize(array, shape, order=0)
    assert np.array_equal(resize(there, array.shape, order=0), array)
    assert set(np.unique(there)) == set(np.unique(array))


def test_crop_subsets_and_margins_follow_the_policy():
    group, each = _stage(crop="group"), _stage(crop="each")
    assert crop_subsets(group) == [(1, 2, 3)] and crop_subsets(each) == [(1,), (2,), (3,)]
    assert crop_subsets(each, {1, 3}) == [(1,), (3,)] and crop_subsets(group, set()) == []
    # 10 mm at 2.5 x 1 x 0.5 mm: 4, 10 and 20 voxels per side, clipped to the array
    grown = margin_box(Box((10, 10, 10), (20, 20, 20)), 10.0, (2.5, 1.0, 0.5), (100, 25, 100))
    assert grown == Box((6, 0, 0), (24, 25, 40))
    assert margin_box(Box((10, 10, 10), (20, 20, 20)), [-5, 0, 1], (1, 1, 1), (50, 50, 50)) == \
        Box((10, 10, 9), (20, 20, 21))


def test_subset_box_scales_from_a_coarse_grid():
    coarse = np.zeros((4, 4, 4), np.uint8)
    coarse[1, 2, 3] = 2
    assert subset_box(coarse, (2,)) == Box((1, 2, 3), (2, 3, 4))
    assert subset_box(coarse, (2,), (8, 8, 8)) == Box((2, 4, 6), (4, 6, 8))
    assert subset_box(coarse, (1,), (8, 8, 8)) is None


def test_zscore_statistics_follow_nnunet_on_hand_values(rng):
    values = np.arange(1001, dtype=np.float32)  # 0..1000: percentiles 5 and 995, mean 500
    stats = foreground_statistics([values[:500], values[500:]], (0.5, 99.5))
    assert stats["low"] == pytest.approx(5.0) and stats["high"] == pytest.approx(995.0)
    assert stats["mean"] == pytest.approx(500.0)
    assert stats["std"] == pytest.approx(np.sqrt((1001 ** 2 - 1) / 12))  # of the values as they are
    mapping = intensity_map(PreprocessConfig(normalization="zscore", statistics=stats))
    hu = np.array([-1000.0, 5.0, 500.0, 2000.0])
    expected = (np.clip(hu, 5, 995) - 500) / stats["std"]
    assert np.allclose(mapping.apply(hu), expected, atol=1e-6)
    assert mapping.air == pytest.approx(expected[0], abs=1e-6)
    with pytest.raises(ValueError, match="statistics"):
        intensity_map(PreprocessConfig(normalization="zscore"))


def test_window_map_is_the_old_clip_and_scale():
    mapping = window_map((-100, 300))
    hu = np.array([-1000.0, -100.0, 100.0, 300.0, 900.0])
    assert np.array_equal(mapping.apply(hu), np.array([0, 0, 0.5, 1, 1], np.float32))
    assert mapping.air == 0.0 and mapping.per_hu == pytest.approx(1 / 400)


def test_foreground_samples_come_from_labelled_voxels(rng):
    hu = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    label = np.zeros(hu.shape, np.uint8)
    label[2:4] = 3
    sample = sample_foreground(hu, label, rng, count=50)
    assert sample.size == 50 and len(set(sample.tolist())) == 50
    assert sample.min() >= 200 and sample.max() < 400
    assert sample_foreground(hu, label, rng, count=10_000).size == 200
