"""A CT grid as DICOM sees it: the source slices of each grid slice, and points between voxel
indices and patient LPS mm.

DICOM outputs (SEG, RTSTRUCT) reference the CT slices they were drawn on, and DICOM inputs give
patient coordinates that must land on the CT's voxels; both directions live here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from flareseg.errors import InputError
from flareseg.io.volume import Geometry

#: Largest distance, in slices, between a DICOM plane (a slice, a contour) and the grid slice it is put on.
SLICE_TOLERANCE = 0.1
#: Largest in-plane offset, in voxels, of a source slice from its grid slice.
IN_PLANE_TOLERANCE = 0.01
#: Largest difference of direction cosines, and relative difference of pixel spacings.
ORIENTATION_TOLERANCE = 1e-3
#: Patient and study attributes a DICOM output copies from its source, which the standard requires to
#: be present but allows empty (type 2), and which anonymisers often delete: restored empty.
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
           "ReferringPhysicianName", "AccessionNumber")
#: What a DICOM output must reference of each source slice.
_REFERENCED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "SOPInstanceUID")


def index_to_lps(index_xyz: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Continuous voxel indices ``(n, 3)`` ``(x, y, z)`` -> float64 ``(n, 3)`` LPS mm."""
    matrix = geometry.index_to_lps_matrix()
    return np.asarray(index_xyz, np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


def lps_to_index(points_lps: np.ndarray, geometry: Geometry) -> np.ndarray:
    """LPS mm ``(n, 3)`` -> float64 ``(n, 3)`` continuous voxel indices ``(x, y, z)``; inverse of :func:`index_to_lps`."""
    matrix = geometry.index_to_lps_matrix()
    return np.linalg.solve(matrix[:3, :3], (np.asarray(points_lps, np.float64) - matrix[:3, 3]).T).T


def highdicom_affine(geometry: Geometry) -> np.ndarray:
    """4x4 matrix from a ``(z, y, x)`` index (highdicom's slice, row, column) to LPS mm."""
    return geometry.index_to_lps_matrix()[:, [2, 1, 0, 3]]


def source_slices(folder: Path, geometry: Geometry, acquisition: int | None = None) -> list[pydicom.Dataset]:
    """The headers of the CT slices that make ``geometry``, one per grid slice, in z order.

    Slices are matched by their ImagePositionPatient projected on the slice normal. The series
    whose slices fit the grid is used (all of them must), other files in the folder are passed
    over, and the same slice twice is used once.

    Args:
        folder: The DICOM series the grid was read from.
        geometry: The grid, e.g. ``read_ct(folder).geometry``.

    Returns:
        ``geometry.shape_zyx[0]`` datasets without pixel data; item ``k`` lies on slice ``k``.

    Raises:
        InputError: The folder holds no DICOM CT series, its slices lack the UIDs an output must
            reference, they do not make the grid, or they make it twice (two series or acquisitions).
    """
    ct = source_headers(folder, acquisition)
    fitting = {str(header.SeriesInstanceUID) for header in ct if _misfit(header, geometry) is None}
    if len(fitting) > 1:
        raise InputError(f"{folder}: slices of several DICOM series lie on the mask's grid; give one series per folder")
    members = [header for header in ct if str(header.SeriesInstanceUID) in fitting] or ct
    reason = next(filter(None, (_misfit(header, geometry) for header in members)), None)
    if reason:
        raise _mismatch(folder, reason)
    by_slice: dict[int, dict[str, pydicom.Dataset]] = {}
    for header in members:
        by_slice.setdefault(_grid_slice(header, geometry), {})[str(header.SOPInstanceUID)] = header
    depth = geometry.shape_zyx[0]
    if len(by_slice) < depth:
        raise _mismatch(folder, f"slices on {len(by_slice)} of its {depth} slices")
    if any(len(headers) > 1 for headers in by_slice.values()):
        raise InputError(f"{folder}: several DICOM slices at one position (several acquisitions?); "
                         "give a folder with only the slices the mask was predicted on")
    slices = [next(iter(by_slice[k].values())) for k in range(depth)]
    for header in slices:
        if header.get("SliceThickness") in (None, ""):  # type 2, often deleted: a SEG needs a number
            header.SliceThickness = f"{geometry.spacing_xyz_mm[2]:.6g}"
    return slices


def source_headers(folder: Path, acquisition: int | None = None) -> list[pydicom.Dataset]:
    """The headers of the CT slices :func:`flareseg.io.read_ct` reads from ``folder`` (the series, the
    acquisition, each file once), which must hold the UIDs a DICOM output references; cheap enough
    to check a folder before predicting.

    Raises:
        InputError: As :func:`flareseg.io.dicom.series_files`, or a slice lacks a UID to reference.
    """
    import warnings

    from flareseg.io.dicom import DicomInputWarning, series_files

    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected the DICOM series the mask was predicted on)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomInputWarning)  # reported when the series is read
        files = series_files(folder, acquisition)
    try:
        ct = [pydicom.dcmread(path, stop_before_pixels=True, force=True) for path in files]
    except (InvalidDicomError, OSError, EOFError, ValueError) as error:
        raise InputError(f"{folder}: unreadable DICOM header ({error})") from None
    for header in ct:
        for keyword in _TYPE_2:
            if keyword not in header:
                setattr(header, keyword, "")
    missing = [key for key in _REFERENCED_UIDS if any(not str(header.get(key, "")).strip() for header in ct)]
    if missing:
        raise InputError(f"{folder}: DICOM slices without {', '.join(missing)}, which a DICOM output must "
                         "reference (anonymised too far?)")
    return ct


def _misfit(header: pydicom.Dataset, geometry: Geometry) -> str | None:
    """Why a CT slice does not lie on a slice of the grid, or None when it does."""
    _, rows, columns = geometry.shape_zyx
    if any(key not in header for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")):
        return "slices without ImagePositionPatient, ImageOrientationPatient or PixelSpacing"
    if (int(header.Rows), int(header.Columns)) != (rows, columns):
        return f"slices of {header.Columns}x{header.Rows} pixels, the mask's are {columns}x{rows}"
    direction = geometry.direction_matrix
    orientation = np.asarray(header.ImageOrientationPatient, np.float64)
    if np.abs(orientation - np.r_[direction[:, 0], direction[:, 1]]).max() > ORIENTATION_TOLERANCE:
        return "slice orientation differs"
    row_mm, column_mm = (float(v) for v in header.PixelSpacing)  # between rows (y), between columns (x)
    spacing_x, spacing_y, _ = geometry.spacing_xyz_mm
    if not np.allclose((column_mm, row_mm), (spacing_x, spacing_y), rtol=ORIENTATION_TOLERANCE, atol=0):
        return f"pixel spacing {column_mm:.4g}x{row_mm:.4g} mm, the mask's is {spacing_x:.4g}x{spacing_y:.4g} mm"
    x, y, z = lps_to_index(np.asarray(header.ImagePositionPatient, np.float64)[None], geometry)[0]
    k = int(np.rint(z))
    if abs(z - k) > SLICE_TOLERANCE or not 0 <= k < geometry.shape_zyx[0]:
        return f"a slice lies at grid slice {z:.2f}"
    if max(abs(x), abs(y)) > IN_PLANE_TOLERANCE:
        return f"a slice is shifted by ({x:.2f}, {y:.2f}) voxels in its plane"
    return None


def _grid_slice(header: pydicom.Dataset, geometry: Geometry) -> int:
    """The grid slice a DICOM slice that fits the grid lies on."""
    return int(np.rint(lps_to_index(np.asarray(header.ImagePositionPatient, np.float64)[None], geometry)[0, 2]))


def _mismatch(folder: Path, reason: str) -> InputError:
    return InputError(f"{folder}: DICOM series does not match the mask's grid ({reason}); "
                      "give the series the mask was predicted on")
