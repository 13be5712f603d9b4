"""Write volumes and label maps atomically, with the exact geometry of their source."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io.volume import Geometry, Volume

#: Single-file formats flareseg writes (lower case).
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a volume; the file appears complete or not at all.

    The image is written to a hidden temporary file beside ``path`` and renamed into
    place, so an interrupted or failed write never leaves a half-written output.

    Returns:
        The written path.

    Raises:
        InputError: ``path`` has no supported ending, or it or its folder cannot be written.
    """
    path = Path(path)
    suffix = write_suffix(path)
    image = sitk.GetImageFromArray(volume.array)
    geometry = volume.geometry
    image.SetSpacing(geometry.spacing_xyz_mm)
    image.SetOrigin(geometry.origin_lps_mm)
    image.SetDirection(tuple(v for row in geometry.direction_lps for v in row))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{path.parent}: cannot create output folder ({error.strerror})") from None
    temporary = path.with_name(f".{path.name[: -len(suffix)]}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        sitk.WriteImage(image, str(temporary), useCompression=suffix != ".nii")
        os.replace(temporary, path)
    except RuntimeError as error:
        temporary.unlink(missing_ok=True)
        reason = str(error).strip().splitlines()[-1][:160] if str(error).strip() else "write failed"
        raise InputError(f"{path}: cannot write ({reason})") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_labelmap(labels: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write a label map as uint8 on the given grid (normally the input CT's geometry).

    Args:
        labels: Integer class ids, shape ``geometry.shape_zyx`` (``[z, y, x]``), values 0..255.
        geometry: The grid the mask overlays, e.g. ``read_ct(path).geometry``.
        path: Output file; ``.nii.gz`` for a NIfTI whose affine equals the input's.
    """
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label values {labels.min()}..{labels.max()} do not fit uint8")
    return write_volume(Volume(np.ascontiguousarray(labels, dtype=np.uint8), geometry), path)


def write_suffix(path: Path) -> str:
    """The file ending ``path`` is written as; raises InputError for a type that cannot be written."""
    name = path.name.lower()
    for suffix in WRITE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise InputError(f"{path}: cannot write this file type (use one of {', '.join(WRITE_SUFFIXES)})")
