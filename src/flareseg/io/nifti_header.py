"""The fields of a NIfTI-1 or NIfTI-2 header that flareseg reads itself (ITK reads the grid):
one parser for the truncation check, the grid check and the ISA-L voxel reader."""

from __future__ import annotations

import struct
from typing import NamedTuple


class NiftiHeader(NamedTuple):
    """Header fields, as stored (byte order applied)."""

    size: int  #: ``sizeof_hdr``: 348 (NIfTI-1) or 540 (NIfTI-2)
    endian: str  #: ``"<"`` or ``">"``, as struct writes it
    magic: bytes  #: ``b"n+1\0"`` for a single-file NIfTI-1; NIfTI-2: its 8 bytes
    dims: tuple[int, ...]  #: ``dim[0..7]``
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]  #: ``pixdim[0..7]``
    vox_offset: float
    scl_slope: float
    scl_inter: float
    codes: tuple[int, int]  #: ``qform_code, sform_code``
    quatern: tuple[float, ...]  #: ``quatern_b, c, d, qoffset_x, y, z``
    srow: tuple[float, ...]  #: ``srow_x, srow_y, srow_z``: 12 values


#: Per header size: the magic's bytes, then each field's struct format and byte offset.
_LAYOUTS = {
    348: ((344, 348), {"dims": ("8h", 40), "datatype": ("h", 70), "bitpix": ("h", 72), "pixdim": ("8f", 76),
                       "vox_offset": ("f", 108), "scl_slope": ("f", 112), "scl_inter": ("f", 116),
                       "codes": ("2h", 252), "quatern": ("6f", 256), "srow": ("12f", 280)}),
    540: ((4, 12), {"dims": ("8q", 16), "datatype": ("h", 12), "bitpix": ("h", 14), "pixdim": ("8d", 104),
                    "vox_offset": ("q", 168), "scl_slope": ("d", 176), "scl_inter": ("d", 184),
                    "codes": ("2i", 344), "quatern": ("6d", 352), "srow": ("12d", 400)}),
}
_SCALARS = ("datatype", "bitpix", "vox_offset", "scl_slope", "scl_inter")


def parse_nifti_header(header: bytes) -> NiftiHeader | None:
    """The fields of the first bytes of a NIfTI file (at least its header), or None when they
    hold no NIfTI-1/2 header in either byte order."""
    for endian in "<>":
        for size, (magic, fields) in _LAYOUTS.items():
            if len(header) >= size and struct.unpack_from(endian + "i", header)[0] == size:
                values = {name: struct.unpack_from(endian + fmt, header, at) for name, (fmt, at) in fields.items()}
                values.update((name, values[name][0]) for name in _SCALARS)
                return NiftiHeader(size=size, endian=endian, magic=header[magic[0]:magic[1]], **values)
    return None
