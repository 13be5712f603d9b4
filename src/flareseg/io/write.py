"""Write volumes and label maps atomically, with the exact geometry of their source."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io.atomic import atomic_path, output_folder
from flareseg.io.integrity import stored_voxel_bytes
from flareseg.io.read import read_geometry
from flareseg.io.volume import Geometry, Volume

#: Single-file formats flareseg writes (lower case).
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a volume; the file appears complete or not at all.

    The image is written to a hidden temporary file beside ``path``, checked (it holds every
    voxel byte, its compressed data is intact, its header reads back as ``volume``'s grid: ITK's
    NIfTI writer only prints a full disk on stderr), flushed to disk and renamed into place, so
    an interrupted or failed write never leaves a half-written output nor touches an existing one.

    Returns:
        The written path.

    Raises:
        InputError: ``path`` has no supported ending, or it or its folder cannot be written
            (a full disk included).
    """
    path = Path(path)
    suffix = write_suffix(path)
    image = sitk.GetImageFromArray(volume.array)
    geometry = volume.geometry
    image.SetSpacing(geometry.spacing_xyz_mm)
    image.SetOrigin(geometry.origin_lps_mm)
    image.SetDirection(tuple(v for row in geometry.direction_lps for v in row))
    output_folder(path.parent)
    with atomic_path(path, suffix) as temporary:
        try:
            sitk.WriteImage(image, str(temporary), useCompression=suffix != ".nii")
        except RuntimeError as error:
            reason = (temporary.is_file() and _written_problem(temporary, image)) or _last_line(error)
            raise InputError(f"{path}: cannot write ({reason})") from None
        problem = _written_problem(temporary, image, geometry)
        if problem:
            raise InputError(f"{path}: cannot write ({problem})")
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


def _written_problem(written: Path, image: sitk.Image, geometry: Geometry | None = None) -> str | None:
    """Why ``written`` is not ``image`` as written, or None: voxel bytes missing (a full disk); and
    with ``geometry``, damaged compressed data, extra bytes, or a header read back as another grid."""
    if not written.is_file():
        return "no file was written"
    expected = image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
    stored, intact = stored_voxel_bytes(written)
    if stored < expected:
        return f"disk full? wrote only {stored} of {expected} bytes"
    if geometry is None:
        return None
    if not intact:
        return "its compressed data is damaged"
    if stored != expected:
        return f"it holds {stored} bytes of voxels, not {expected}"
    try:
        header = read_geometry(written)
    except InputError:
        return "its header cannot be read back"
    if not header.matches(geometry):
        return f"its header reads back as {header.describe()}, not {geometry.describe()}"
    return None


def _last_line(error: Exception) -> str:
    """The last line of an ITK error (its cause), shortened."""
    text = str(error).strip()
    return text.splitlines()[-1][:160] if text else "write failed"
