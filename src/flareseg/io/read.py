"""Read CT scans and label maps: NIfTI, NRRD, MHA files and DICOM series folders."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io.integrity import check_nifti_complete
from flareseg.io.volume import Geometry, Volume

#: File endings read as single-file images (lower case).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

_DICOM_MODALITY_TAG = "0008|0060"
_POSITION_TAG = "0020|0032"
_ORIENTATION_TAG = "0020|0037"


def has_image_suffix(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of :data:`IMAGE_SUFFIXES`."""
    return strip_image_suffix(Path(path).name) is not None


def strip_image_suffix(name: str) -> str | None:
    """File name without its image ending (``case.nii.gz`` -> ``case``), or None if it has none."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D image file or a DICOM series folder.

    Args:
        path: A NIfTI/NRRD/MHA file, or a folder holding a DICOM series. When a folder holds
            several series, the one with the most slices is read; slices are ordered by their
            position in space, not by file name.

    Returns:
        The volume with its voxel array ``[z, y, x]`` in the file's own data type.

    Raises:
        InputError: The path is missing, empty, unreadable, or not a single-channel 3D image.
    """
    path = Path(path)
    if path.is_dir():
        image = _read_dicom_series(path)
    else:
        _check_file(path)
        if path.name.lower().endswith((".nii", ".nii.gz")):
            check_nifti_complete(path)
        image = _execute(lambda: sitk.ReadImage(str(path)), path)
    return _to_volume(image, path)


def read_geometry(path: str | os.PathLike) -> Geometry:
    """Read only the header of an image file (no voxel data is decompressed)."""
    path = Path(path)
    _check_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    _execute(reader.ReadImageInformation, path)
    _check_dimensions(reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents(), path)
    return _geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def read_ct(path: str | os.PathLike) -> Volume:
    """Read a CT scan and check that its values look like Hounsfield units.

    Raises:
        InputError: As :func:`read_volume`, or when the image cannot be a CT: a DICOM series of
            another modality, or values spanning less than 100 HU (a label map, an empty image).
    """
    volume = read_volume(path)
    low, high = float(volume.array.min()), float(volume.array.max())
    if high - low < 100:
        raise InputError(
            f"{path}: not a CT scan (intensities span only {low:g}..{high:g}; is this a label map?)"
        )
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


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    with _itk_warnings_hidden():
        series_ids = reader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(f"{folder}: no DICOM series found in this folder")
    # GDCM's file list is sorted along the slice normal (IPPSorter), not by file name.
    files = max((reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids), key=len)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    with _itk_warnings_hidden():  # a non-uniform series is reported below, in one line
        image = _execute(reader.Execute, folder)
    modality = reader.GetMetaData(0, _DICOM_MODALITY_TAG).strip() if reader.HasMetaDataKey(0, _DICOM_MODALITY_TAG) else ""
    if modality and modality != "CT":
        raise InputError(f"{folder}: DICOM series of modality {modality}, not CT")
    check_slice_positions(folder, [_slice_tags(reader, i) for i in range(len(files))])
    return image


def _slice_tags(reader: sitk.ImageSeriesReader, index: int) -> tuple[str | None, str | None]:
    def tag(key: str) -> str | None:
        return reader.GetMetaData(index, key).strip() if reader.HasMetaDataKey(index, key) else None
    return tag(_POSITION_TAG), tag(_ORIENTATION_TAG)


def check_slice_positions(folder: Path, tags: list[tuple[str | None, str | None]]) -> None:
    """Refuse a DICOM series that is not one uniform stack of slices: slices of different
    orientations, two slices at one position (the same file twice, or two acquisitions stored as one
    series), or a gap of more than 1.5 times the median slice distance (missing slices). Read as a
    grid anyway, such a series would give a mask of the wrong spacing or order.

    Args:
        tags: ``(ImagePositionPatient, ImageOrientationPatient)`` of each slice, as in the files
            (``"x\\y\\z"``), in the reader's order; series lacking them are not checked.

    Raises:
        InputError: Naming the problem and where it is.
    """
    if len(tags) < 2 or any(position is None or orientation is None for position, orientation in tags):
        return
    try:
        positions = np.array([[float(v) for v in position.split("\\")] for position, _ in tags])
        orientations = np.array([[float(v) for v in orientation.split("\\")] for _, orientation in tags])
    except ValueError:
        return
    if positions.shape[1] != 3 or orientations.shape[1] != 6:
        return
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise InputError(f"{folder}: DICOM slices of different orientations in one series; "
                         "give one series per folder")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    distances = np.sort(positions @ normal)
    steps = np.diff(distances)
    median = float(np.median(steps))
    duplicates = int(np.count_nonzero(steps < 1e-3 * max(median, 1e-3)))
    if duplicates:
        raise InputError(f"{folder}: {duplicates} DICOM slice(s) at the same position as another (the same slice "
                         "twice, or two acquisitions in one series); keep one slice per position")
    gaps = np.flatnonzero(steps > 1.5 * median)
    if gaps.size:
        at = int(gaps[0])
        raise InputError(f"{folder}: missing DICOM slices: a gap of {steps[at]:.3g} mm after slice {at + 1} of "
                         f"{len(steps) + 1} (the others are {median:.3g} mm apart)")


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
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: voxel type {array.dtype} is not numeric")
    return Volume(array, geometry)
