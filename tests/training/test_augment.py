"""Augmentation on a real labelled scan: image and label stay aligned, intensity transforms
leave the label alone, and spatial transforms pad with air; each intensity kind on tiny
arrays with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from flareseg.io import read_ct, read_volume
from flareseg.preprocessing.crop import bounding_box, crop
from flareseg.preprocessing.intensity import air_value, clip_and_scale
from flareseg.preprocessing.resample import resize
from flareseg.recipes.schema import _AUGMENT_KINDS
from flareseg.training.augment import KINDS, PATCH_KINDS, augment_pair, build_augmentation

SIZE = (32, 32, 32)
SPATIAL = ("affine", "elastic")
INTENSITY = ("hu_shift", "intensity", "contrast", "noise", "blur", "low_resolution")
SEEDS = (0, 1, 2)
WINDOW = (-100.0, 300.0)  # HU; air (-1000 HU) is clipped to -100 HU and scales to 0


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
    compose = build_augmentation({kind: 1.0}, seed, WINDOW)
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
    compose = build_augmentation({kind: 1.0 for kind in KINDS}, 7, WINDOW)
    image, label_out = augment_pair(compose, clip_and_scale(hu, WINDOW), label)
    assert image.shape == label_out.shape == SIZE
    assert np.isfinite(image).all()
    assert image.dtype == np.float32 and label_out.dtype == np.int64
    assert set(np.unique(label_out)) <= set(np.unique(label))


@pytest.mark.parametrize("kinds", [(kind,) for kind in INTENSITY] + [INTENSITY])
def test_intensity_transforms_leave_the_label_untouched(scan, kinds):
    """Each intensity kind, and all of them at once, forced on, change the real scan's image
    (finite, same shape) and not its label."""
    hu, label = scan
    image = clip_and_scale(hu, WINDOW)
    for seed in SEEDS:
        compose = build_augmentation({kind: 1.0 for kind in kinds}, seed, WINDOW)
        image_out, label_out = augment_pair(compose, image, label)
        assert np.array_equal(label_out, label)
        assert image_out.shape == SIZE and np.isfinite(image_out).all()
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
    image = {"image": np.full((1,) + SIZE, air, np.float32), "label": np.ones((1,) + SIZE, np.float32)}
    for seed in SEEDS:
        # The window [-1000, 400] has air at 0: the same draw padding with zeros.
        padded_with_air = np.asarray(build_augmentation({kind: 1.0}, seed, (-1100, 300))(dict(image))["image"])
        padded_with_zeros = np.asarray(build_augmentation({kind: 1.0}, seed, (-1000, 400))(dict(image))["image"])
        assert np.allclose(padded_with_air, air, rtol=0, atol=1e-6)
        assert padded_with_zeros.min() < air - 0.01


def test_affine_padding_of_a_real_scan_is_air(scan):
    """Where the affine transform samples only outside the scan (two voxels or more from any
    voxel whose nearest source is inside), the windowed image equals air."""
    hu, _ = scan
    air = 100 / 1400  # -1000 HU in the window [-1100, 300]
    compose = build_augmentation({"affine": 1.0}, 0, (-1100.0, 300.0))
    out = compose({"image": clip_and_scale(hu, (-1100, 300))[None], "label": np.ones((1,) + SIZE, np.float32)})
    outside = ~ndimage.binary_dilation(np.asarray(out["label"])[0] > 0.5, iterations=2)
    assert outside.sum() > 1000
    assert np.allclose(np.asarray(out["image"])[0][outside], air, rtol=0, atol=1e-6)


def _apply(kinds: dict[str, float], image: np.ndarray, seed: int, window=WINDOW) -> np.ndarray:
    """``image`` ``[D, H, W]`` (scaled units of ``window``) through the augmentation of ``kinds``."""
    return augment_pair(build_augmentation(kinds, seed, window), image, np.zeros(image.shape, np.uint8))[0]


def test_hu_shift_adds_one_offset_of_at_most_25_hu():
    """40 HU and 140 HU in [-100, 300] are 0.35 and 0.6; both move by the same shift, which
    read back in HU ((out - 0.35) * 400) lies in [-25, 25] and covers most of it over 40 draws."""
    image = np.full((6, 6, 6), 0.35, np.float32)
    image[:, :, 3:] = 0.6
    compose, shifts = build_augmentation({"hu_shift": 1.0}, 0, WINDOW), []
    for _ in range(40):
        out = augment_pair(compose, image, np.zeros(image.shape, np.uint8))[0]
        assert np.allclose(out[:, :, 3:] - out[:, :, :3], 0.25, atol=1e-6)
        assert np.ptp(out[:, :, :3]) < 1e-6
        shifts.append((out[0, 0, 0] - 0.35) * 400)
    assert max(np.abs(shifts)) <= 25 + 1e-3
    assert min(shifts) < -20 and max(shifts) > 20


def test_hu_shift_is_the_same_in_hu_for_any_window():
    """The same draw shifts 40 HU by the same HU in [-100, 300] (0.35) and in [-1000, 1000]
    (1040 / 2000 = 0.52): HU = low + value * (high - low)."""
    for seed in SEEDS:
        narrow = _apply({"hu_shift": 1.0}, np.full((4, 4, 4), 0.35, np.float32), seed)[0, 0, 0]
        wide = _apply({"hu_shift": 1.0}, np.full((4, 4, 4), 0.52, np.float32), seed, (-1000, 1000))[0, 0, 0]
        assert (narrow - 0.35) * 400 == pytest.approx((wide - 0.52) * 2000, abs=1e-2)


def test_hu_shift_does_not_clip_to_the_window():
    """Fat at the window's lower bound (0) goes below 0 when the shift is negative, as after noise."""
    outs = [_apply({"hu_shift": 1.0}, np.zeros((4, 4, 4), np.float32), seed)[0, 0, 0] for seed in range(10)]
    assert min(outs) < -0.01 and max(outs) > 0.01


def test_blur_keeps_a_constant_image_constant_up_to_its_borders():
    image = np.full((12, 13, 14), 0.4, np.float32)
    for seed in SEEDS:
        assert np.allclose(_apply({"blur": 1.0}, image, seed), 0.4, rtol=0, atol=1e-4)


def test_blur_spreads_a_bright_voxel_with_sigma_between_half_and_one_voxel():
    """A unit voxel keeps its sum (1) and its peak drops to the Gaussian's mass within the
    voxel along each axis, erf(0.5 / (sigma sqrt 2)): 0.6827 at sigma 0.5, 0.3829 at sigma 1."""
    image = np.zeros((17, 17, 17), np.float32)
    image[8, 8, 8] = 1.0
    low, high = math.erf(0.5 / (1.0 * math.sqrt(2))) ** 3, math.erf(0.5 / (0.5 * math.sqrt(2))) ** 3
    for seed in SEEDS:
        out = _apply({"blur": 1.0}, image, seed)
        assert out.sum() == pytest.approx(1.0, abs=1e-3)
        assert np.unravel_index(out.argmax(), out.shape) == (8, 8, 8)
        assert low - 1e-4 <= out.max() <= high + 1e-4
        assert out.min() >= 0


def test_low_resolution_blurs_a_checkerboard_and_keeps_a_constant():
    """Downsampling to fewer voxels and interpolating back cannot reproduce a one-voxel
    checkerboard; interpolating nearest samples stays within [0, 1]; a constant stays put."""
    checkerboard = (np.indices((16, 16, 16)).sum(0) % 2).astype(np.float32)
    for seed in SEEDS:
        out = _apply({"low_resolution": 1.0}, checkerboard, seed)
        assert out.shape == checkerboard.shape
        assert np.abs(out - checkerboard).mean() > 0.1
        assert out.min() >= 0 and out.max() <= 1
        assert np.allclose(_apply({"low_resolution": 1.0}, np.full((16, 16, 16), 0.4, np.float32), seed), 0.4)


def test_contrast_is_a_gamma_between_0_7_and_1_5_on_the_min_max_range():
    """On [0, 0.5, 1] min and max stay and 0.5 becomes 0.5^gamma, in [0.5^1.5, 0.5^0.7]."""
    image = np.zeros((3, 4, 4), np.float32)
    image[1], image[2] = 0.5, 1.0
    for seed in SEEDS:
        out = _apply({"contrast": 1.0}, image, seed)
        assert np.allclose(out[0], 0, atol=1e-6) and np.allclose(out[2], 1, atol=1e-6)
        assert 0.5 ** 1.5 - 1e-6 <= out[1, 0, 0] <= 0.5 ** 0.7 + 1e-6


def test_probability_zero_leaves_image_and_label_untouched(scan):
    hu, label = scan
    image = clip_and_scale(hu, WINDOW)
    image_out, label_out = augment_pair(build_augmentation({kind: 0.0 for kind in KINDS}, 0, WINDOW), image, label)
    assert np.array_equal(image_out, image) and np.array_equal(label_out, label)


@pytest.mark.parametrize("kind", ("hu_shift", "blur", "low_resolution"))
def test_a_kind_applies_to_about_its_share_of_samples(kind, rng):
    """At probability 0.5 one compose changes some of 40 samples and leaves others exactly as they were."""
    image = rng.random((12, 12, 12)).astype(np.float32)
    compose = build_augmentation({kind: 0.5}, 0, WINDOW)
    changed = sum(not np.array_equal(augment_pair(compose, image, image > 0.5)[0], image) for _ in range(40))
    assert 8 <= changed <= 32


def test_the_same_seed_gives_the_same_augmentation(rng):
    image, label = rng.random((16, 16, 16)).astype(np.float32), rng.integers(0, 3, (16, 16, 16))
    everything = {kind: 1.0 for kind in KINDS}
    first, again, other = (augment_pair(build_augmentation(everything, seed, WINDOW), image, label)
                           for seed in (5, 5, 6))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.allclose(first[0], other[0])


def test_unknown_kinds_are_rejected_and_every_kind_is_a_recipe_key():
    with pytest.raises(ValueError, match="blurr"):
        build_augmentation({"blur": 0.2, "blurr": 0.2}, 0, WINDOW)
    assert set(_AUGMENT_KINDS) == set(KINDS) | set(PATCH_KINDS)
