"""Augmentation on a real labelled scan: image and label stay aligned, intensity transforms
leave the label alone, and spatial transforms pad with air."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from flareseg.io import read_ct, read_volume
from flareseg.preprocessing.crop import bounding_box, crop
from flareseg.preprocessing.intensity import clip_and_scale
from flareseg.preprocessing.resample import resize
from flareseg.preprocessing.intensity import air_value
from flareseg.training.augment import augment_pair, build_augmentation

SIZE = (32, 32, 32)
SPATIAL = ("affine", "elastic")
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def scan(data_dir):
    """The example CT (HU) and its FLARE labels, cropped to the labelled organs and resized to 32^3."""
    folder = data_dir / "ts_example"
    hu = read_ct(folder / "example_ct.nii.gz").array
    label = np.asarray(read_volume(folder / "flare_labels_fullct_from_v1normal.nii.gz").array, np.uint8)
    box = bounding_box(label > 0)
    return resize(crop(hu, box), SIZE, order=1), resize(crop(label, box), SIZE, order=0)


def misaligned_voxels(image_out: np.ndarray, label_out: np.ndarray, label: np.ndarray) -> int:
    """Voxels where the transformed label is not the input label at the point the image was sampled from.

    ``image_out`` is the transformed ``[z, y, x, 1]`` stack of channels: the voxel index grids
    (``np.indices``) and ones. Linear interpolation reproduces a linear function exactly, so
    where the ones channel is still 1 (all interpolation corners inside the volume) the index
    channels hold the very source point of each output voxel. Nearest resampling of the label
    must then give ``label[round(source point)]`` at every voxel; voxels with a coordinate
    within 1e-3 of a rounding tie are not counted.
    """
    source, inside = image_out[:3], np.abs(image_out[3] - 1) < 1e-4
    inside &= (np.abs(source - np.floor(source) - 0.5) > 1e-3).all(0)
    index = tuple(np.rint(source[:, inside]).astype(int).clip(0, np.array(label.shape)[:, None] - 1))
    return int(np.count_nonzero(label[index] != label_out[inside]))


def _sampled(hu, label, kind, seed):
    """The transformed coordinate/ones channels ``[4, z, y, x]`` and label of :func:`misaligned_voxels`."""
    channels = np.concatenate([clip_and_scale(hu, (-100, 300))[None], np.indices(SIZE, np.float32),
                               np.ones((1,) + SIZE, np.float32)])
    compose = build_augmentation({kind: 1.0}, seed, pad_value=0.0)
    out = compose({"image": channels, "label": label[None].astype(np.float32)})
    return np.asarray(out["image"])[1:], np.rint(np.asarray(out["label"])[0]).astype(np.int64)


@pytest.mark.parametrize("kind", SPATIAL)
def test_spatial_transforms_keep_image_and_label_aligned(scan, kind):
    """Each spatial transform, forced on, moves the label exactly as it moves the image.

    The image carries, beside the CT, its own voxel coordinates (z, y, x) and a channel of
    ones; after the transform these say where every output voxel was sampled from (see
    :func:`misaligned_voxels`), and the label must be the input label at that point, voxel
    for voxel over the whole organ map. This is stricter than an overlap score: a label
    shifted by one voxel is caught here, and one transformed with another random draw in
    the next test.
    """
    hu, label = scan
    for seed in SEEDS:
        image_out, label_out = _sampled(hu, label, kind, seed)
        assert (np.abs(image_out[3] - 1) < 1e-4).sum() > 0.5 * label.size  # mostly sampled inside
        assert misaligned_voxels(image_out, label_out, label) == 0, (kind, seed)
        assert misaligned_voxels(image_out, np.roll(label_out, 1, axis=0), label) > 50


def test_the_alignment_check_catches_a_label_from_another_draw(scan):
    hu, label = scan
    image_out, _ = _sampled(hu, label, "affine", 0)
    _, other_label = _sampled(hu, label, "affine", 1)
    assert misaligned_voxels(image_out, other_label, label) > 500


def test_augment_pair_keeps_the_label_a_label_map(scan):
    hu, label = scan
    compose = build_augmentation({kind: 1.0 for kind in ("affine", "elastic", "intensity", "contrast", "noise")},
                                 7, pad_value=0.0)
    image, label_out = augment_pair(compose, clip_and_scale(hu, (-100, 300)), label)
    assert image.shape == label_out.shape == SIZE
    assert image.dtype == np.float32 and label_out.dtype == np.int64
    assert set(np.unique(label_out)) <= set(np.unique(label))


def test_intensity_transforms_leave_the_label_untouched(scan):
    hu, label = scan
    image = clip_and_scale(hu, (-100, 300))
    for seed in SEEDS:
        compose = build_augmentation({"intensity": 1.0, "contrast": 1.0, "noise": 1.0}, seed, pad_value=0.0)
        image_out, label_out = augment_pair(compose, image, label)
        assert np.array_equal(label_out, label)
        assert not np.allclose(image_out, image)


def test_air_is_the_preprocessed_value_of_minus_1000_hu():
    # [-100, 300]: -1000 HU is clipped to the lower bound, which scales to 0.
    assert air_value((-100.0, 300.0)) == 0.0
    assert air_value((-1000.0, 1000.0)) == 0.0
    # [-1100, 300]: (-1000 - -1100) / (300 - -1100) = 100 / 1400.
    assert air_value((-1100.0, 300.0)) == pytest.approx(100 / 1400)


@pytest.mark.parametrize("kind", SPATIAL)
def test_spatial_transforms_pad_with_air(kind):
    """An all-air image stays all air, although the same draw padding with zeros shows that
    the transform samples outside the volume."""
    air = 100 / 1400  # -1000 HU in the window [-1100, 300]
    pad_value = air_value((-1100.0, 300.0))
    image = {"image": np.full((1,) + SIZE, air, np.float32), "label": np.ones((1,) + SIZE, np.float32)}
    for seed in SEEDS:
        padded_with_air = np.asarray(build_augmentation({kind: 1.0}, seed, pad_value)(dict(image))["image"])
        padded_with_zeros = np.asarray(build_augmentation({kind: 1.0}, seed, 0.0)(dict(image))["image"])
        assert np.allclose(padded_with_air, air, rtol=0, atol=1e-6)
        assert padded_with_zeros.min() < air - 0.01


def test_affine_padding_of_a_real_scan_is_air(scan):
    """Where the affine transform samples only outside the scan (two voxels or more from any
    voxel whose nearest source is inside), the windowed image equals air."""
    hu, _ = scan
    air = 100 / 1400  # -1000 HU in the window [-1100, 300]
    compose = build_augmentation({"affine": 1.0}, 0, air_value((-1100.0, 300.0)))
    out = compose({"image": clip_and_scale(hu, (-1100, 300))[None], "label": np.ones((1,) + SIZE, np.float32)})
    outside = ~ndimage.binary_dilation(np.asarray(out["label"])[0] > 0.5, iterations=2)
    assert outside.sum() > 1000
    assert np.allclose(np.asarray(out["image"])[0][outside], air, rtol=0, atol=1e-6)
