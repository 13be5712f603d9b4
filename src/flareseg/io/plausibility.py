"""Refuse voxel grids that are undefined, and images that cannot be a CT in Hounsfield units.

Two kinds of rule:

* The grid must be defined (:func:`check_grid`, :func:`check_nifti_header`; every reader, always):
  spacing finite and > 0 (for NIfTI as the header writes it: ITK silently reads a pixdim of 0 as
  1 mm), origin finite, direction cosines finite and orthonormal, a NIfTI qform/sform in use finite.
* The image must look like CT (:func:`check_ct`; ``force`` skips these): values within ±1e5,
  spanning at least 100, not a label map, not HU+1024 stored without its rescale intercept, and
  voxel spacing from 0.05 to 20 mm. NaN or infinite voxel values are refused even with ``force``.

The intensity rules look at a strided sample of about a million voxels (a few ms per scan).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from flareseg.errors import InputError
from flareseg.io.nifti_header import parse_nifti_header
from flareseg.io.volume import Geometry, Volume

#: Voxels the intensity rules sample (a strided subsample of larger images).
SAMPLE_VOXELS = 1 << 20
#: Beyond ±this no value is HU; real CTs reach -32768 (padding) and ~30000 (extended-scale metal).
HU_LIMIT = 1e5
#: At most this many distinct values, all integers >= 0: a label map. Real CTs: >= 1032 in the sample.
MAX_LABEL_VALUES = 256
#: HU+1024 storage: under this fraction of voxels below -100 (no air, fat or lung)...
UNSIGNED_MAX_BELOW_FAT = 0.005
#: ...but at least this fraction at 900..1300, where soft tissue lies when 1024 is added.
UNSIGNED_MIN_SHIFTED_TISSUE = 0.10
#: Plausible CT voxel spacing, mm (finer: metres for mm? coarser: not a volume to segment).
SPACING_RANGE_MM = (0.05, 20.0)
#: Largest deviation of direction cosines from an orthonormal matrix.
ORTHONORMAL_TOLERANCE = 1e-3

FORCE_HINT = "(use --force if this really is a CT)"


def check_ct(volume: Volume, path: str | Path, force: bool = False) -> None:
    """Raise unless ``volume`` can be a CT in HU (rules above); ``force`` keeps only the NaN rule.

    Raises:
        InputError: One line naming what looked wrong; forceable problems end with :data:`FORCE_HINT`.
    """
    low, high = float(np.min(volume.array)), float(np.max(volume.array))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"{path}: voxel values include NaN or infinity")
    if force:
        return
    reason = not_ct_reason(volume.array, low, high)
    if reason:
        raise InputError(f"{path}: not a CT scan: {reason} {FORCE_HINT}")
    reason = spacing_doubt(volume.geometry)
    if reason:
        raise InputError(f"{path}: {reason} (use --force if the spacing is right)")


def not_ct_reason(array: np.ndarray, low: float | None = None, high: float | None = None) -> str | None:
    """Why the voxel values cannot be HU, in a few words; None when they can.

    Args:
        array: Voxel values ``[z, y, x]``.
        low, high: ``array``'s minimum and maximum, when already known.
    """
    low = float(np.min(array)) if low is None else low
    high = float(np.max(array)) if high is None else high
    if low < -HU_LIMIT or high > HU_LIMIT:
        return f"values reach {low:g}..{high:g}, far outside any Hounsfield range (a scaled or raw image?)"
    if high - low < 100:
        return f"values span only {low:g}..{high:g} (a mask or an empty image?)"
    sample = _sample(array)
    if low >= 0:
        distinct = _distinct_integers(sample, low, high)
        if distinct is not None and distinct <= MAX_LABEL_VALUES:
            return f"only {distinct} distinct integer values, {low:g}..{high:g} (a label map?)"
    return _unsigned_reason(sample, low, high)


def spacing_doubt(geometry: Geometry) -> str | None:
    """Why the voxel spacing is implausible for CT; None when it is not."""
    spacing = geometry.spacing_xyz_mm
    smallest, largest = SPACING_RANGE_MM
    if max(spacing) >= largest:
        return (f"voxel spacing {_fmt_spacing(spacing)} mm: {max(spacing):g} mm is too coarse for a CT "
                f"(>= {largest:g} mm)")
    if min(spacing) < smallest:
        return (f"voxel spacing {_fmt_spacing(spacing)} mm: {min(spacing):g} mm is too fine for a CT "
                f"(< {smallest:g} mm; metres instead of mm?)")
    return None


def check_grid(geometry: Geometry, path: str | Path) -> None:
    """Raise if the grid is undefined: spacing not finite and > 0, origin or direction not finite,
    or direction cosines that are not orthonormal (never skipped: every position would be wrong).

    Raises:
        InputError: Naming the broken field.
    """
    spacing = np.asarray(geometry.spacing_xyz_mm, dtype=np.float64)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(f"{path}: voxel spacing {_fmt_spacing(spacing)} mm is zero, negative or not a number; "
                         "the voxel grid is undefined")
    if not np.all(np.isfinite(geometry.origin_lps_mm)):
        raise InputError(f"{path}: origin {tuple(geometry.origin_lps_mm)} is not finite; the voxel grid is undefined")
    direction = geometry.direction_matrix
    if not np.all(np.isfinite(direction)):
        raise InputError(f"{path}: direction cosines are not finite; the voxel grid is undefined")
    error = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if error > ORTHONORMAL_TOLERANCE:
        lengths = ", ".join(f"{v:.3g}" for v in np.linalg.norm(direction, axis=0))
        raise InputError(f"{path}: direction cosines are not orthonormal (axis lengths {lengths}, deviation "
                         f"{error:.2g}); the voxel grid is undefined")


def check_nifti_header(path: Path) -> None:
    """Raise if a NIfTI header's spacing (pixdim 1..3) is zero, negative or not a number, or the
    qform or sform it uses holds NaN or infinity.

    ITK reads such a spacing as 1 mm without a word, so the header itself is checked.

    Raises:
        InputError: Naming the field as written.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        fields = _nifti_fields(stream.read(540))
    if fields is None:
        return
    pixdim, qform, sform = fields
    if not all(math.isfinite(v) and v > 0 for v in pixdim):
        raise InputError(f"{path}: voxel spacing {_fmt_spacing(pixdim)} mm in the NIfTI header (pixdim) is zero, "
                         "negative or not a number; the voxel grid is undefined")
    for name, values in (("qform", qform), ("sform", sform)):
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{path}: the NIfTI header's {name} holds NaN or infinity; the voxel grid is undefined")


def _nifti_fields(header: bytes) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None:
    """pixdim[1..n] (n spatial dimensions, at most 3), and the qform (quaternion and offset) and sform
    (three rows) values a NIfTI-1/2 header uses (empty when its code is 0); None if not NIfTI."""
    fields = parse_nifti_header(header)
    if fields is None:
        return None
    spatial = tuple(float(v) for v in fields.pixdim[1 : 1 + min(max(int(fields.dims[0]), 0), 3)])
    return spatial, fields.quatern if fields.codes[0] > 0 else (), fields.srow if fields.codes[1] > 0 else ()


def _sample(array: np.ndarray) -> np.ndarray:
    """About :data:`SAMPLE_VOXELS` voxels at a fixed stride, one that is not a multiple of a row's length."""
    flat = array.reshape(-1)
    step = max(1, flat.size // SAMPLE_VOXELS)
    while step > 1 and math.gcd(step, array.shape[-1]) != 1:
        step += 1
    return flat[::step]


def _distinct_integers(sample: np.ndarray, low: float, high: float) -> int | None:
    """Number of distinct values in ``sample`` (all >= 0); None if some are not integers."""
    if np.issubdtype(sample.dtype, np.integer) and high - low < 1 << 24:
        return int(np.count_nonzero(np.bincount((sample - np.asarray(low, sample.dtype)).astype(np.intp))))
    if not np.all(np.mod(sample, 1) == 0):
        return None
    return int(np.unique(sample).size)


def _unsigned_reason(sample: np.ndarray, low: float, high: float) -> str | None:
    """Why the values look like HU+1024 stored without its rescale intercept; None when they do not.

    The minimum is left out (a padding value, or air clipped at one value). In HU, the rest holds
    air, lung or fat below -100; stored as HU+1024, it holds none, and soft tissue lies at 900..1300.
    """
    body = sample[sample > low]
    if body.size == 0:
        return None
    below_fat = float(np.mean(body < -100))
    shifted_tissue = float(np.mean((body >= 900) & (body <= 1300)))
    if below_fat < UNSIGNED_MAX_BELOW_FAT and shifted_tissue >= UNSIGNED_MIN_SHIFTED_TISSUE:
        return (f"no air, lung or fat (values {low:g}..{high:g}, {below_fat:.1%} below -100) but "
                f"{shifted_tissue:.0%} at 900..1300, where soft tissue lies in HU+1024 stored without its "
                "rescale intercept")
    return None


def _fmt_spacing(spacing) -> str:
    return "x".join(f"{float(v):g}" for v in spacing)
