"""Read CT scans and label maps: NIfTI, NRRD, MHA files and DICOM series folders."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io.dicom import series_files
from flareseg.io.integrity import check_nifti_complete
from flareseg.io.nifti_voxels import nifti_gz_voxels
from flareseg.io.plausibility import check_ct, check_grid, check_nifti_header
from flareseg.io.volume import Geometry, Volume

#: File endings read as single-file images (lower case).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def has_image_suffix(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of :data:`IMAGE_SUFFIXES`."""
    return strip_image_suffix(Path(path).name) is not None


def strip_image_suffix(name: str) -> str | None:
    """File name without its image ending (``case.nii.gz`` -> ``case``), or None if it has none."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def read_volume(path: str | os.PathLike, acquisition: int | None = None) -> Volume:
    """Read a 3D image file or a DICOM series folder.

    Args:
        path: A NIfTI/NRRD/MHA file, or a folder holding one CT series (see
            :mod:`flareseg.io.dicom`: repeated files are read once, with a
            :class:`~flareseg.io.dicom.DicomInputWarning`); slices are ordered by their position
            in space, not by file name.
        acquisition: For a DICOM series that stores several acquisitions over the same slices
            (:func:`~flareseg.io.dicom.dicom_acquisitions`), which one, from 1; None for others.

    Returns:
        The volume with its voxel array ``[z, y, x]`` in the file's own data type.

    Raises:
        InputError: The path is missing, empty, unreadable, or not a single-channel 3D image; its
            voxel grid is undefined (spacing zero, negative or not a number; see
            :func:`~flareseg.io.plausibility.check_grid`); or a DICOM folder holds several CT
            series, or several acquisitions and none is chosen.
    """
    path = Path(path)
    if path.is_dir():
        image = _read_dicom_series(path, acquisition)
    else:
        _check_file(path)
        if acquisition is not None:
            raise InputError(f"{path}: acquisition {acquisition} chosen, but this is an image file, not a DICOM folder")
        if path.name.lower().endswith((".nii", ".nii.gz")):
            check_nifti_complete(path)
            check_nifti_header(path)
        if path.name.lower().endswith(".nii.gz"):
            reader, geometry = _read_information(path)
            array = nifti_gz_voxels(path, reader.GetPixelID(), reader.GetSize())
            if array is not None:  # else ITK reads the voxels (see flareseg.io.nifti_voxels)
                return Volume(array, geometry)
        image = _execute(lambda: sitk.ReadImage(str(path)), path)
    return _to_volume(image, path)


def read_geometry(path: str | os.PathLike) -> Geometry:
    """Read only the header of an image file (no voxel data is decompressed)."""
    path = Path(path)
    _check_file(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_header(path)
    return _read_information(path)[1]


def _read_information(path: Path) -> tuple[sitk.ImageFileReader, Geometry]:
    """ITK's reader of a file's header, after ``ReadImageInformation``, and its checked grid."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    _execute(reader.ReadImageInformation, path)
    _check_dimensions(reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents(), path)
    geometry = _geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    check_grid(geometry, path)
    return reader, geometry


def read_ct(path: str | os.PathLike, acquisition: int | None = None, force: bool = False) -> Volume:
    """Read a CT scan and check that it can be one: values in Hounsfield units, a plausible spacing.

    Args:
        path, acquisition: As :func:`read_volume`.
        force: Skip the checks that a CT could fail (see :func:`~flareseg.io.plausibility.check_ct`):
            intensities and the spacing range. An undefined grid and NaN voxels stay errors.

    Raises:
        InputError: As :func:`read_volume`; a DICOM series of another modality; or an image that
            cannot be a CT: values far outside HU, spanning less than 100, a label map, HU+1024
            stored without its rescale, or voxel spacing outside 0.05..20 mm (these end with
            "(use --force ...)").
    """
    volume = read_volume(path, acquisition)
    check_ct(volume, path, force)
    return volume


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if not has_image_suffix(path):
        raise InputError(f"{path}: unsupported file type (expected one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder)")


def _execute(action, path: Path):
    """Run a SimpleITK call, turning its multi-line exceptions into one-line InputErrors."""
    try:
        return action()
    except RuntimeError as error:
        raise InputError(f"{path}: unreadable or corrupt image ({_first_reason(str(error))})") from None


def _first_reason(message: str) -> str:
    """The most telling line of an ITK exception message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for marker in ("Description:", "ERROR:"):
        for line in lines:
            if marker in line:
                return line.split(marker, 1)[1].strip()[:160]
    return (lines[-1] if lines else "unknown error")[:160]


@contextmanager
def _itk_warnings_hidden():
    """Silence ITK's multi-line console warnings (e.g. "No Series were found") for a call."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _read_dicom_series(folder: Path, acquisition: int | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series_files(folder, acquisition)])
    with _itk_warnings_hidden():  # a non-uniform series is refused by series_files, in one line
        return _execute(reader.Execute, folder)


def _check_dimensions(dimension: int, size, components: int, path: Path) -> None:
    if components != 1:
        raise InputError(f"{path}: image has {components} channels per voxel; expected a single-channel CT")
    if dimension == 2 or (dimension == 3 and min(size) == 1):
        raise InputError(f"{path}: image is 2D ({'x'.join(map(str, size))}); flareseg needs a 3D volume")
    if dimension != 3:
        raise InputError(f"{path}: image is {dimension}D ({'x'.join(map(str, size))}); flareseg needs a 3D volume")


def _geometry(size, spacing, origin, direction) -> Geometry:
    rows = tuple(tuple(float(v) for v in direction[3 * i : 3 * i + 3]) for i in range(3))
    return Geometry(
        shape_zyx=(int(size[2]), int(size[1]), int(size[0])),
        spacing_xyz_mm=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        origin_lps_mm=tuple(float(o) for o in origin),  # type: ignore[arg-type]
        direction_lps=rows,
    )


def _to_volume(image: sitk.Image, path: Path) -> Volume:
    _check_dimensions(image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel(), path)
    geometry = _geometry(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    check_grid(geometry, path)
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: voxel type {array.dtype} is not numeric")
    return Volume(array, geometry)
