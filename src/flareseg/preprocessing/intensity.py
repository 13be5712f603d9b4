"""CT intensity normalisation: clip HU to a window and scale it to [0, 1]."""

from __future__ import annotations

import numpy as np


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
