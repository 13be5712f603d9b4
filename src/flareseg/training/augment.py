"""Training augmentation from MONAI dictionary transforms, on ``{"image", "label"}`` arrays
``[C, D, H, W]`` (image preprocessed by the recipe, e.g. HU windowed and scaled to [0, 1];
label channel indices, resampled nearest).

Spatial transforms sample outside the volume where they rotate, shrink, shift or deform it.
There the label becomes background (0) and the image becomes air: -1000 HU put through the
recipe's own intensity preprocessing (:func:`flareseg.preprocessing.intensity.air_value`),
never a constant chosen here.
"""

from __future__ import annotations

import numpy as np

KINDS = ("affine", "elastic", "intensity", "contrast", "noise")
#: Applied when patches are sampled (:mod:`flareseg.training.patches`), not by MONAI.
PATCH_KINDS = ("field_of_view",)


def build_augmentation(probabilities: dict[str, float], seed: int, pad_value: float):
    """A seeded MONAI ``Compose`` of the augmentations whose probability is > 0.

    Args:
        probabilities: Keys ``affine`` (rotation +-15 deg, scaling +-15 %, shifts +-4 voxels),
            ``elastic``, ``intensity`` (brightness scale and shift), ``contrast`` (gamma),
            ``noise`` (Gaussian); values in [0, 1]. ``field_of_view`` is accepted and left
            to patch sampling.
        seed: Seed of the transforms' random state.
        pad_value: Image value where spatial transforms sample outside the volume; air, from
            ``flareseg.preprocessing.intensity.air_value``. The label pads with background (0).
    """
    from monai import transforms as mt

    unknown = set(probabilities) - set(KINDS) - set(PATCH_KINDS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}")
    p = {key: float(probabilities.get(key, 0.0)) for key in KINDS}
    keys, modes = ["image", "label"], ["bilinear", "nearest"]
    spatial = []
    if p["affine"] > 0:
        spatial.append(mt.RandAffined(keys, prob=p["affine"], rotate_range=(0.26, 0.26, 0.26),
                                      scale_range=(0.15, 0.15, 0.15), translate_range=(4, 4, 4),
                                      mode=modes, padding_mode="zeros"))
    if p["elastic"] > 0:
        spatial.append(mt.Rand3DElasticd(keys, sigma_range=(5, 7), magnitude_range=(20, 60), prob=p["elastic"],
                                         mode=modes, padding_mode="zeros"))
    steps = []
    if spatial:
        # The transforms pad with zeros and interpolate linearly, so resampling (image - air)
        # and adding air back pads with air, also where a voxel is partly outside.
        steps += [mt.ShiftIntensityd("image", offset=-pad_value), *spatial,
                  mt.ShiftIntensityd("image", offset=pad_value)]
    if p["intensity"] > 0:
        steps.append(mt.RandScaleIntensityd("image", factors=0.1, prob=p["intensity"]))
        steps.append(mt.RandShiftIntensityd("image", offsets=0.1, prob=p["intensity"]))
    if p["contrast"] > 0:
        steps.append(mt.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=p["contrast"]))
    if p["noise"] > 0:
        steps.append(mt.RandGaussianNoised("image", std=0.03, prob=p["noise"]))
    compose = mt.Compose(steps)
    compose.set_random_state(seed=seed % (2 ** 32))
    return compose


def augment_pair(compose, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``compose`` to one ``[D, H, W]`` image/label pair.

    Returns:
        The image (float32 ``[D, H, W]``) and the label (int64 ``[D, H, W]``).
    """
    out = compose({"image": image[None].astype(np.float32), "label": label[None].astype(np.float32)})
    image_out = np.asarray(out["image"])[0]
    label_out = np.rint(np.asarray(out["label"])[0]).astype(np.int64)
    return image_out.astype(np.float32), label_out
