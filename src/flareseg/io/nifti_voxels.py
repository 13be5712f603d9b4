"""The voxels of a gzip-compressed NIfTI-1 file, inflated by ISA-L (``isal``): a 512x512x109 int16
scan reads in 0.17 s instead of 0.25 s through ITK, and the inflation lets other threads run.

Only the voxel bytes are read here; the grid comes from ITK's reading of the header, as for every
other file, so a mask still overlays the scan exactly. Files that need more than a reshape of the
stored bytes (scaled by ``scl_slope``/``scl_inter``, more than three dimensions, a data type ITK
would read as another one, no ``n+1`` magic) are left to ITK: :func:`nifti_gz_voxels` returns None.
Every gzip member's checksum is verified: a damaged stream, which ITK would read silently, is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io.nifti_header import parse_nifti_header

#: NIfTI ``datatype`` code -> the voxel type it stores and ITK's pixel type for it (scalar types).
_DATATYPES = {2: (np.uint8, sitk.sitkUInt8), 4: (np.int16, sitk.sitkInt16), 8: (np.int32, sitk.sitkInt32),
              16: (np.float32, sitk.sitkFloat32), 64: (np.float64, sitk.sitkFloat64), 256: (np.int8, sitk.sitkInt8),
              512: (np.uint16, sitk.sitkUInt16), 768: (np.uint32, sitk.sitkUInt32), 1024: (np.int64, sitk.sitkInt64),
              1280: (np.uint64, sitk.sitkUInt64)}
_HEADER_BYTES = 348  # NIfTI-1's; a NIfTI-2 header is longer and goes to ITK


def nifti_gz_voxels(path: Path, pixel_id: int, size_xyz) -> np.ndarray | None:
    """The voxel array ``[z, y, x]`` of a ``.nii.gz`` file, as ITK would read it, or None when ITK
    must read it (see the module docstring).

    Args:
        path: The file.
        pixel_id: The pixel type ITK reads it as (``ImageFileReader.GetPixelID()`` after
            ``ReadImageInformation``); the stored type must be that one.
        size_xyz: Its size as ITK reads it.

    Raises:
        InputError: The gzip stream is damaged (a bad block, a checksum that fails) or ends early.
    """
    try:
        from isal import igzip
    except ImportError:  # a platform without ISA-L's wheels: ITK inflates
        return None
    try:
        data = igzip.decompress(path.read_bytes())
    except Exception as error:  # noqa: BLE001 - isal's errors derive from Exception alone
        raise InputError(f"{path}: damaged gzip stream ({error})") from None
    layout = _layout(data[:_HEADER_BYTES])
    if layout is None:
        return None
    dtype, itk_type, shape_xyz, offset = layout
    if tuple(shape_xyz) != tuple(size_xyz) or pixel_id != itk_type:
        return None
    count = int(np.prod(shape_xyz))
    if len(data) < offset + count * dtype.itemsize:
        raise InputError(f"{path}: truncated file ({len(data)} of {offset + count * dtype.itemsize} bytes)")
    stored = np.frombuffer(data, dtype, count, offset).reshape(shape_xyz[::-1])
    return stored.astype(dtype.newbyteorder("="))  # a writable copy in this machine's byte order


def _layout(header: bytes) -> tuple[np.dtype, int, tuple[int, int, int], int] | None:
    """The stored voxel type (with its byte order), ITK's pixel type for it, the size ``x, y, z``
    and the data offset of a 3D NIfTI-1 header whose voxels are read as stored; None for any other."""
    fields = parse_nifti_header(header)
    if fields is None or fields.magic != b"n+1\0":  # a single-file NIfTI-1; Analyze, pairs and NIfTI-2 go to ITK
        return None
    dims, offset = fields.dims, fields.vox_offset
    # slope 0 means no scaling, but readers differ on its intercept
    scaled = fields.scl_slope not in (0.0, 1.0) or fields.scl_inter != 0.0
    if dims[0] != 3 or fields.datatype not in _DATATYPES or scaled or min(dims[1:4]) < 1:
        return None
    stored, itk_type = _DATATYPES[fields.datatype]
    dtype = np.dtype(stored).newbyteorder(fields.endian)
    if fields.bitpix != 8 * dtype.itemsize or offset < fields.size or offset != int(offset):
        return None
    return dtype, itk_type, tuple(int(n) for n in dims[1:4]), int(offset)
