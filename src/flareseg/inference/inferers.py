"""Stage inferers: a stage's network run over its whole input, as its sampler prescribes.

``whole_resize`` and ``crop_resize`` inputs already have the network's input size;
``spacing_patches`` inputs (any size) are padded with air for the network and run at once;
``slices_2d`` inputs are run slice by slice, a batch of slices at a time (:data:`SLICE_BATCH_VOXELS`), each slice padded
for the network, and stacked back to 3D. Training's validation and prediction both use them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from flareseg.preprocessing.crop import network_shape, pad_for_network
from flareseg.preprocessing.intensity import IntensityMap
from flareseg.preprocessing.resample import resize
from flareseg.preprocessing.stage_grid import RESIZED, stage_shape

#: A network: ``[B, 1, *spatial]`` float32 -> logits ``[B, C, *spatial]``.
Runner = Callable[[np.ndarray], np.ndarray]
#: Voxels per network call of a ``slices_2d`` stage (two 512 x 512 slices; more of smaller ones):
#: activation memory stays bounded, and small slices do not pay a call each.
SLICE_BATCH_VOXELS = 2 * 512 * 512


def stage_image(hu: np.ndarray, spacing_zyx_mm, stage, intensity: IntensityMap) -> np.ndarray:
    """A stage's input ``[D, H, W]`` float32 from a HU array (the scan or a crop of it): resized to
    the stage's input size or resampled to its spacing (:func:`~flareseg.preprocessing.stage_grid.stage_shape`),
    then normalised."""
    return intensity.apply(resize(hu, stage_shape(hu.shape, spacing_zyx_mm, stage), order=1))


def infer(runner: Runner, image: np.ndarray, sampler: str, multiple: int, pad_value: float,
          labels: bool = False) -> np.ndarray:
    """Run a stage's network over its input ``image`` ``[D, H, W]``.

    Args:
        runner: The stage's network.
        sampler: The stage's sampler (see the module docstring).
        multiple: The network's size multiple (``2^levels``).
        pad_value: Air as the network sees it.
        labels: Return the argmax channel per voxel (uint8 ``[D, H, W]``) instead of the class
            scores; slice by slice, the scores of the whole volume are then never held at once.

    Returns:
        Class scores ``[1, C, D, H, W]`` float32 on ``image``'s grid, or channels (``labels``).
    """
    if sampler == "slices_2d":
        return _slices(runner, image, multiple, pad_value, labels)
    if sampler in RESIZED:
        logits = runner(np.ascontiguousarray(image[None, None], np.float32))
    else:
        padded, box = pad_for_network(image, multiple, pad_value)
        logits = np.ascontiguousarray(runner(padded[None, None])[(slice(None), slice(None), *box.slices)])
    return np.argmax(logits[0], axis=0).astype(np.uint8) if labels else logits


def _slices(runner: Runner, image: np.ndarray, multiple: int, pad_value: float, labels: bool) -> np.ndarray:
    out = None
    height, width = image.shape[1:]
    padded_shape = network_shape((height, width), multiple)
    pad = [(0, 0), (0, 0), (0, padded_shape[0] - height), (0, padded_shape[1] - width)]
    step = max(1, SLICE_BATCH_VOXELS // (padded_shape[0] * padded_shape[1]))
    for start in range(0, image.shape[0], step):
        batch = np.pad(image[start:start + step, None].astype(np.float32), pad, constant_values=pad_value)
        logits = runner(batch)[:, :, :height, :width]  # [b, C, H, W]
        if out is None:
            shape = image.shape if labels else (1, logits.shape[1], *image.shape)
            out = np.zeros(shape, np.uint8 if labels else np.float32)
        part = slice(start, start + len(batch))
        if labels:
            out[part] = np.argmax(logits, axis=1)
        else:
            out[0, :, part] = logits.transpose(1, 0, 2, 3)
    return out

