"""Detect truncated NIfTI files, which ITK reads silently with zero-filled voxels.

The check is cheap in the common case: the NIfTI header says how many bytes the file
holds, and a single-member gzip stream records its uncompressed size in its last four
bytes. Only when those disagree (a truncated file, or a valid multi-member gzip) is the
stream decompressed to find out which.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from flareseg.errors import InputError

_CHUNK = 1 << 20


def check_nifti_complete(path: Path) -> None:
    """Raise if a ``.nii`` or ``.nii.gz`` file is shorter than its header promises.

    Raises:
        InputError: The file is truncated, or is not a NIfTI-1/NIfTI-2 file.
    """
    compressed = path.name.lower().endswith(".gz")
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
        try:
            header = stream.read(540)
        except (OSError, EOFError, zlib.error):
            raise InputError(f"{path}: not a gzip-compressed NIfTI file") from None
    expected = _expected_size(header, path)
    if not compressed:
        actual = path.stat().st_size
    else:
        with open(path, "rb") as raw:
            raw.seek(-4, 2)
            (actual,) = struct.unpack("<I", raw.read(4))
        if actual == expected % 2**32:
            return
        actual = _decompressed_size(path)
    if actual < expected:
        raise InputError(f"{path}: truncated file ({actual} of {expected} bytes)")


def _expected_size(header: bytes, path: Path) -> int:
    """Bytes of header plus voxel data that a NIfTI header announces."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = max(int(struct.unpack(endian + "f", header[108:112])[0]), 348)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            offset = max(struct.unpack(endian + "q", header[168:176])[0], 540)
            break
    else:
        raise InputError(f"{path}: not a NIfTI file (bad header)")
    n_dims = dims[0]
    if not 1 <= n_dims <= 7:
        raise InputError(f"{path}: not a NIfTI file (bad dimension count {n_dims})")
    voxels = 1
    for size in dims[1 : n_dims + 1]:
        voxels *= max(int(size), 1)
    return offset + voxels * bitpix // 8


def _decompressed_size(path: Path) -> int:
    """Bytes in a gzip file's decompressed members, stopping where the data ends or breaks."""
    total = 0
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    with open(path, "rb") as raw:
        while chunk := raw.read(_CHUNK):
            while chunk:
                try:
                    total += len(decoder.decompress(chunk))
                except zlib.error:
                    return total
                chunk = decoder.unused_data if decoder.eof else b""
                if decoder.eof:
                    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    return total
