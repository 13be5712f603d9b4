"""Training augmentation from MONAI dictionary transforms, on ``{"image", "label"}`` arrays
``[C, D, H, W]`` or, for 2D stages, ``[C, H, W]`` (image normalised by the recipe,
:func:`flareseg.preprocessing.intensity.intensity_map`; label channel indices, resampled nearest).

Spatial transforms sample outside the volume where they rotate, shrink, shift or deform it.
There the label becomes background (0) and the image becomes air: -1000 HU put through the
recipe's own intensity preprocessing (:attr:`flareseg.preprocessing.intensity.IntensityMap.air`),
never a constant chosen here.

Intensity transforms (every kind but ``affine`` and ``elastic``) change the image only, never
the label, and do not clip: the image may leave [0, 1], as it does after additive noise.
"""

from __future__ import annotations

import math

import numpy as np

from flareseg.preprocessing.intensity import IntensityMap, window_map

KINDS = ("affine", "elastic", "hu_shift", "intensity", "contrast", "noise", "blur", "low_resolution")
#: Applied when patches are sampled (:mod:`flareseg.training.patches`), not by MONAI.
PATCH_KINDS = ("field_of_view",)

HU_SHIFT_HU = 25.0  # hu_shift: offset drawn uniformly from [-25, 25] HU
BLUR_SIGMA_VOXELS = (0.5, 1.0)  # blur: sigma per axis, voxels (nnU-Net's range)
LOW_RESOLUTION_ZOOM = (0.5, 1.0)  # low_resolution: kept fraction of voxels per axis (nnU-Net's range)
# MONAI's Gaussian kernels reach 4 sigma and pad with zeros; padding the image with its edge
# values by that much first keeps a patch's borders from being darkened towards 0.
_BLUR_BORDER = math.ceil(4 * BLUR_SIGMA_VOXELS[1])


def build_augmentation(probabilities: dict[str, float], seed: int, intensity: IntensityMap | tuple[float, float],
                       spatial_dims: int = 3):
    """A seeded MONAI ``Compose`` of the augmentations whose probability is > 0.

    The kinds, in the order they are applied, each with its own probability per sample;
    ``affine`` and ``elastic`` move image and label together, the rest change the image only:

    - ``affine``: rotation +-15 deg (about each axis; in-plane in 2D), scaling +-15 %, shifts +-4 voxels.
    - ``elastic``: deformation (``Rand3DElasticd``: field smoothed with sigma 5-7 voxels,
      magnitude 20-60); 3D only.
    - ``hu_shift``: one offset for the whole image, uniform in +-25 HU (contrast phase,
      scanner calibration), i.e. +-25 HU in the normalised units (+-25 / (high - low) with a
      window). It comes first, while the image is still a linear map of HU. Not clipped,
      as the other intensity kinds: voxels that preprocessing clipped to a window
      bound move too, although their true HU (anywhere beyond the bound) is unknown, so
      clipping again would be no more faithful for them.
    - ``intensity``: brightness, scale by a factor in 1 +-0.1 and shift by +-0.1 (scaled
      units; +-40 HU with the window [-100, 300]), each with the probability.
    - ``contrast``: gamma in [0.7, 1.5] on the image's own min-max range (min and max stay).
    - ``noise``: additive Gaussian, std 0.03 (scaled units; 12 HU with a 400 HU window).
    - ``blur``: Gaussian smoothing (softer reconstruction kernel), sigma in [0.5, 1] voxels
      drawn per axis; the image is padded with its edge values first, so a constant image
      stays constant up to its borders.
    - ``low_resolution``: thick slices / coarse pixels: downsampled by a zoom factor in
      [0.5, 1] (same for all axes, nearest) and upsampled back (linear); shape kept.

    Args:
        probabilities: Kind -> probability in [0, 1]; kinds left out are off.
            ``field_of_view`` is accepted and left to patch sampling.
        seed: Seed of the transforms' random state.
        intensity: The recipe's intensity map (or a ``(low, high)`` HU window): gives ``hu_shift``
            its scale, and air (-1000 HU, :attr:`~flareseg.preprocessing.intensity.IntensityMap.air`),
            the image value where spatial transforms sample outside the volume. The label
            pads with background (0).
        spatial_dims: 3 for volumes, 2 for slices.

    Raises:
        ValueError: An unknown kind, or ``elastic`` in 2D.
    """
    from monai import transforms as mt

    unknown = set(probabilities) - set(KINDS) - set(PATCH_KINDS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}")
    p = {key: float(probabilities.get(key, 0.0)) for key in KINDS}
    if spatial_dims == 2 and p["elastic"] > 0:
        raise ValueError("elastic augmentation is 3D only")
    if not isinstance(intensity, IntensityMap):
        intensity = window_map(intensity)
    compose = mt.Compose(_spatial_steps(p, intensity.air, spatial_dims) + _intensity_steps(p, intensity, spatial_dims))
    compose.set_random_state(seed=seed % (2 ** 32))
    return compose


def _spatial_steps(p: dict[str, float], pad_value: float, dims: int) -> list:
    from monai import transforms as mt

    keys, modes = ["image", "label"], ["bilinear", "nearest"]
    spatial = []
    if p["affine"] > 0:
        spatial.append(mt.RandAffined(keys, prob=p["affine"], rotate_range=(0.26,) * (3 if dims == 3 else 1),
                                      scale_range=(0.15,) * dims, translate_range=(4,) * dims,
                                      mode=modes, padding_mode="zeros"))
    if p["elastic"] > 0:
        spatial.append(mt.Rand3DElasticd(keys, sigma_range=(5, 7), magnitude_range=(20, 60), prob=p["elastic"],
                                         mode=modes, padding_mode="zeros"))
    if not spatial:
        return []
    # The transforms pad with zeros and interpolate linearly, so resampling (image - air)
    # and adding air back pads with air, also where a voxel is partly outside.
    return [mt.ShiftIntensityd("image", offset=-pad_value), *spatial, mt.ShiftIntensityd("image", offset=pad_value)]


def _intensity_steps(p: dict[str, float], intensity: IntensityMap, dims: int) -> list:
    from monai import transforms as mt

    steps = []
    if p["hu_shift"] > 0:
        steps.append(mt.RandShiftIntensityd("image", offsets=HU_SHIFT_HU * intensity.per_hu, prob=p["hu_shift"]))
    if p["intensity"] > 0:
        steps.append(mt.RandScaleIntensityd("image", factors=0.1, prob=p["intensity"]))
        steps.append(mt.RandShiftIntensityd("image", offsets=0.1, prob=p["intensity"]))
    if p["contrast"] > 0:
        steps.append(mt.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=p["contrast"]))
    if p["noise"] > 0:
        steps.append(mt.RandGaussianNoised("image", std=0.03, prob=p["noise"]))
    if p["blur"] > 0:
        steps += [mt.BorderPadd("image", spatial_border=_BLUR_BORDER, mode="replicate"),
                  mt.RandGaussianSmoothd("image", sigma_x=BLUR_SIGMA_VOXELS, sigma_y=BLUR_SIGMA_VOXELS,
                                         sigma_z=BLUR_SIGMA_VOXELS, prob=p["blur"]),
                  mt.SpatialCropd("image", roi_slices=[slice(_BLUR_BORDER, -_BLUR_BORDER)] * dims)]
    if p["low_resolution"] > 0:
        steps.append(mt.RandSimulateLowResolutiond("image", prob=p["low_resolution"], zoom_range=LOW_RESOLUTION_ZOOM,
                                                   downsample_mode="nearest",
                                                   upsample_mode="trilinear" if dims == 3 else "bilinear"))
    return steps


def augment_pair(compose, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``compose`` to one ``[D, H, W]`` image/label pair.

    Returns:
        The image (float32 ``[D, H, W]``) and the label (int64 ``[D, H, W]``).
    """
    out = compose({"image": image[None].astype(np.float32), "label": label[None].astype(np.float32)})
    image_out = np.asarray(out["image"])[0]
    label_out = np.rint(np.asarray(out["label"])[0]).astype(np.int64)
    return image_out.astype(np.float32), label_out
