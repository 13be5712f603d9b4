"""CT input/output with exact geometry: read NIfTI/NRRD/MHA/DICOM, write atomically."""

from flareseg.io.dicom import DicomAcquisition, DicomInputWarning, dicom_acquisitions
from flareseg.io.read import (
    IMAGE_SUFFIXES,
    has_image_suffix,
    read_ct,
    read_geometry,
    read_volume,
    strip_image_suffix,
)
from flareseg.io.volume import GEOMETRY_TOLERANCE, Geometry, Volume
from flareseg.io.write import WRITE_SUFFIXES, write_labelmap, write_volume

__all__ = [
    "GEOMETRY_TOLERANCE",
    "IMAGE_SUFFIXES",
    "WRITE_SUFFIXES",
    "DicomAcquisition",
    "DicomInputWarning",
    "Geometry",
    "Volume",
    "dicom_acquisitions",
    "has_image_suffix",
    "read_ct",
    "read_geometry",
    "read_volume",
    "strip_image_suffix",
    "write_labelmap",
    "write_volume",
]
