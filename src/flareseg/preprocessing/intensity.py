"""CT intensity normalisation: clip HU to a window and scale it to [0, 1]; air as the network sees it."""

from __future__ import annotations

import numpy as np

#: Air in HU: what lies outside the body, and what padding stands for.
AIR_HU = -1000.0


def clip_and_scale(array: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``hu_window = (low, high)`` and mapped linearly to [0, 1], float32.

    Args:
        array: CT in HU, any shape and numeric dtype.
        hu_window: ``(low, high)`` in HU, ``low < high``.
    """
    low, high = float(hu_window[0]), float(hu_window[1])
    if not high > low:
        raise ValueError(f"HU window must have low < high, got {hu_window}")
    out = np.clip(array.astype(np.float32, copy=False), low, high)
    out -= low
    out *= 1.0 / (high - low)
    return out


def air_value(hu_window: tuple[float, float]) -> float:
    """Air (:data:`AIR_HU`) after :func:`clip_and_scale` with ``hu_window``: the value to pad with.

    With the window [-100, 300] HU, -1000 HU is clipped to the window's lower bound and scales
    to 0; a window that reaches below -1000 HU (e.g. [-1100, 300]) gives 100 / 1400. Computed by
    the same function as the image, so it follows any change of the preprocessing.
    """
    return float(clip_and_scale(np.array([AIR_HU], np.float32), hu_window)[0])
