"""Training augmentation from MONAI dictionary transforms, on ``{"image", "label"}`` arrays
``[1, D, H, W]`` (image scaled to [0, 1]; label channel indices, resampled nearest)."""

from __future__ import annotations

import numpy as np


def build_augmentation(probabilities: dict[str, float], seed: int):
    """A seeded MONAI ``Compose`` of the augmentations whose probability is > 0.

    Keys of ``probabilities``: ``affine`` (rotation +-15 deg, scaling +-15 %, shifts: random
    crop and zoom), ``elastic``, ``intensity`` (brightness scale and shift), ``contrast``
    (gamma), ``noise`` (Gaussian).
    """
    from monai import transforms as mt

    unknown = set(probabilities) - {"affine", "elastic", "intensity", "contrast", "noise"}
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}")
    p = {key: float(probabilities.get(key, 0.0)) for key in ("affine", "elastic", "intensity", "contrast", "noise")}
    keys, modes = ["image", "label"], ["bilinear", "nearest"]
    steps = []
    if p["affine"] > 0:
        steps.append(mt.RandAffined(keys, prob=p["affine"], rotate_range=(0.26, 0.26, 0.26),
                                    scale_range=(0.15, 0.15, 0.15), translate_range=(4, 4, 4),
                                    mode=modes, padding_mode="zeros"))
    if p["elastic"] > 0:
        steps.append(mt.Rand3DElasticd(keys, sigma_range=(5, 7), magnitude_range=(20, 60), prob=p["elastic"],
                                       mode=modes, padding_mode="zeros"))
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
    """Apply ``compose`` to one ``[D, H, W]`` image/label pair; returns numpy arrays, label int64."""
    out = compose({"image": image[None].astype(np.float32), "label": label[None].astype(np.float32)})
    image_out = np.asarray(out["image"])[0]
    label_out = np.rint(np.asarray(out["label"])[0]).astype(np.int64)
    return image_out.astype(np.float32), label_out
