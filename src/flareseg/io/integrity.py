"""Detect truncated image files: ITK reads a short NIfTI silently with zero-filled voxels, and its
NIfTI writer reports a full disk only on stderr.

The read check is cheap in the common case: the NIfTI header says how many bytes the file
holds, and a single-member gzip stream records its uncompressed size in its last four
bytes. Only when those disagree (a truncated file, or a valid multi-member gzip) is the
stream decompressed to find out which. A file just written is checked in full
(:func:`stored_voxel_bytes`): every byte is decompressed and every checksum verified.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from flareseg.errors import InputError
from flareseg.io.nifti_header import parse_nifti_header

_CHUNK = 1 << 20
_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_MHA_DATA = b"ElementDataFile = LOCAL"


def check_nifti_complete(path: Path) -> None:
    """Raise if a ``.nii`` or ``.nii.gz`` file is shorter than its header promises.

    Raises:
        InputError: The file is truncated, its gzip stream is damaged (ends without its trailer
            or fails its checksum), or it is not a NIfTI-1/NIfTI-2 file.
    """
    compressed = path.name.lower().endswith(".gz")
    offset, data = _nifti_layout(_nifti_header(path, compressed), path)
    expected = offset + data
    if not compressed:
        actual = path.stat().st_size
    else:
        with open(path, "rb") as raw:
            raw.seek(-4, 2)
            (actual,) = struct.unpack("<I", raw.read(4))
        if actual == expected % 2**32:
            return
        actual, intact = inflated_size(path)
        if actual >= expected and not intact:
            raise InputError(f"{path}: damaged gzip stream (no trailer, or a checksum fails)")
    if actual < expected:
        raise InputError(f"{path}: truncated file ({actual} of {expected} bytes)")


def stored_voxel_bytes(path: Path) -> tuple[int, bool]:
    """Bytes of voxel data a single-file ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.mha`` holds,
    decompressed, and whether its compressed stream is intact (True when uncompressed).

    Reads the whole file, to verify one just written; a header that cannot be parsed holds 0 bytes.
    """
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_voxel_bytes(path, name.endswith(".gz"))
    header = _text_header(path, b"\n\n" if name.endswith(".nrrd") else _MHA_DATA + b"\n")
    if header is None:
        return 0, False
    offset, fields = header
    if name.endswith(".nrrd"):
        compressed = fields.get("encoding", "raw") in ("gzip", "gz")
    else:
        compressed = fields.get("CompressedData", "False") == "True"
    if not compressed:
        return max(path.stat().st_size - offset, 0), True
    return inflated_size(path, offset, _GZIP if name.endswith(".nrrd") else _ZLIB)


def inflated_size(path: Path, start: int = 0, wbits: int = _GZIP) -> tuple[int, bool]:
    """Decompressed bytes of a gzip stream (or with ``wbits=zlib.MAX_WBITS``, one zlib stream)
    from byte ``start`` of a file, and whether it is intact: each member ends with its trailer
    and passes its checks. Counting stops where the data breaks; bytes after a complete member
    that start no new one are ignored, as gzip does."""
    total, members, decoder, fed = 0, 0, zlib.decompressobj(wbits), False
    with open(path, "rb") as raw:
        raw.seek(start)
        while chunk := raw.read(_CHUNK):
            while chunk:
                try:
                    total += _inflate(decoder, chunk)
                except zlib.error:
                    return total, members > 0 and not fed
                fed = True
                if not decoder.eof:
                    break
                members += 1
                if wbits != _GZIP:
                    return total, True
                chunk, decoder, fed = decoder.unused_data, zlib.decompressobj(wbits), False
    return total, members > 0 and not fed


def _inflate(decoder, data: bytes) -> int:
    """Feed ``data`` to a decompressor in bounded steps (a mask of zeros inflates a thousandfold)."""
    total = 0
    while True:
        produced = len(decoder.decompress(data, _CHUNK))
        total += produced
        data = decoder.unconsumed_tail
        if decoder.eof or (not data and produced < _CHUNK):
            return total


def _nifti_header(path: Path, compressed: bool) -> bytes:
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
        try:
            return stream.read(540)
        except (OSError, EOFError, zlib.error):
            raise InputError(f"{path}: not a gzip-compressed NIfTI file") from None


def _nifti_voxel_bytes(path: Path, compressed: bool) -> tuple[int, bool]:
    try:
        offset, _ = _nifti_layout(_nifti_header(path, compressed), path)
    except InputError:
        return 0, False
    stored, intact = inflated_size(path) if compressed else (path.stat().st_size, True)
    return max(stored - offset, 0), intact


def _nifti_layout(header: bytes, path: Path) -> tuple[int, int]:
    """Where a NIfTI header says the voxel data starts, and how many bytes it holds."""
    fields = parse_nifti_header(header)
    if fields is None:
        raise InputError(f"{path}: not a NIfTI file (bad header)")
    n_dims = fields.dims[0]
    if not 1 <= n_dims <= 7:
        raise InputError(f"{path}: not a NIfTI file (bad dimension count {n_dims})")
    voxels = 1
    for size in fields.dims[1 : n_dims + 1]:
        voxels *= max(int(size), 1)
    return max(int(fields.vox_offset), fields.size), voxels * fields.bitpix // 8


def _text_header(path: Path, end: bytes, limit: int = 1 << 20) -> tuple[int, dict[str, str]] | None:
    """The byte after an NRRD/MetaImage text header (which ends with ``end``) and its
    ``key: value`` / ``key = value`` fields; None when the file holds no complete header."""
    with open(path, "rb") as raw:
        head = raw.read(limit)
    position = head.find(end)
    if position < 0:
        return None
    fields = {}
    for line in head[:position].decode("latin-1").splitlines():
        key, _, value = line.partition(" = " if " = " in line else ":")
        fields[key.strip()] = value.strip()
    return position + len(end), fields
