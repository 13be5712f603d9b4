"""CT intensity normalisation: HU clipped and mapped linearly (a window scaled to [0, 1], or a
z-score from dataset statistics); air as the network sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Air in HU: what lies outside the body, and what padding stands for.
AIR_HU = -1000.0
#: Foreground voxels sampled per case for the dataset statistics (as nnU-Net's fingerprint).
SAMPLES_PER_CASE = 10_000


@dataclass(frozen=True)
class IntensityMap:
    """``(clip(HU, low, high) - offset) * scale``, float32."""

    low: float
    high: float
    offset: float
    scale: float

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The normalised array (float32, a new array)."""
        out = np.clip(array.astype(np.float32, copy=False), self.low, self.high)
        out -= self.offset
        out *= self.scale
        return out

    @property
    def air(self) -> float:
        """Air (:data:`AIR_HU`) normalised: the value to pad with. Computed by the same function
        as the image, so it follows any change of the preprocessing."""
        return float(self.apply(np.array([AIR_HU], np.float32))[0])

    @property
    def per_hu(self) -> float:
        """One HU in normalised units (inside the clipping range)."""
        return self.scale


def window_map(hu_window: tuple[float, float]) -> IntensityMap:
    """HU clipped to ``hu_window = (low, high)`` and mapped linearly to [0, 1]."""
    low, high = float(hu_window[0]), float(hu_window[1])
    if not high > low:
        raise ValueError(f"HU window must have low < high, got {hu_window}")
    return IntensityMap(low, high, low, 1.0 / (high - low))


def zscore_map(statistics: dict[str, float]) -> IntensityMap:
    """HU clipped to ``[low, high]``, minus ``mean``, over ``std`` (nnU-Net's CT normalisation)."""
    return IntensityMap(float(statistics["low"]), float(statistics["high"]), float(statistics["mean"]),
                        1.0 / float(statistics["std"]))


def intensity_map(preprocess) -> IntensityMap:
    """The map a recipe's ``preprocess`` (:class:`flareseg.recipes.PreprocessConfig`) stands for.

    Raises:
        ValueError: A z-score normalisation without dataset statistics (training computes them).
    """
    if preprocess.normalization == "zscore":
        if preprocess.statistics is None:
            raise ValueError("z-score normalisation needs the dataset statistics (computed by training)")
        return zscore_map(preprocess.statistics)
    return window_map(preprocess.hu_window)


def foreground_statistics(samples: list[np.ndarray], percentiles: tuple[float, float]) -> dict[str, float]:
    """``{"low", "high", "mean", "std"}`` of foreground HU: the ``percentiles``, mean and standard
    deviation of all samples together (nnU-Net's "CT" normalisation: the mean and deviation are
    of the values as they are, not clipped).

    Args:
        samples: HU values of labelled voxels, one array per case (see :func:`sample_foreground`).
    """
    values = np.concatenate([np.asarray(s, np.float64).ravel() for s in samples]) if samples else np.zeros(0)
    if values.size == 0:
        raise ValueError("no labelled voxel to compute intensity statistics from")
    low, high = np.percentile(values, percentiles)
    return {"low": float(low), "high": float(high), "mean": float(values.mean()), "std": float(max(values.std(), 1e-8))}


def sample_foreground(hu: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                      count: int = SAMPLES_PER_CASE) -> np.ndarray:
    """Up to ``count`` HU values of voxels where ``label > 0``, drawn without replacement."""
    values = hu[label > 0]
    if values.size > count:
        values = values[rng.choice(values.size, count, replace=False)]
    return values.astype(np.float32)


def clip_and_scale(array: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``hu_window = (low, high)`` and mapped linearly to [0, 1], float32."""
    return window_map(hu_window).apply(array)


def air_value(hu_window: tuple[float, float]) -> float:
    """Air (:data:`AIR_HU`) after :func:`clip_and_scale` with ``hu_window``: the value to pad with.

    With the window [-100, 300] HU, -1000 HU is clipped to the window's lower bound and scales
    to 0; a window that reaches below -1000 HU (e.g. [-1100, 300]) gives 100 / 1400.
    """
    return window_map(hu_window).air
