"""Write a FLARE label map as a DICOM RT Structure Set (RTSTRUCT) on the CT series it was predicted on.

Written with pydicom and the marching-squares tracer of :mod:`flareseg.io.polygons`, because
highdicom 0.28 has no RTSTRUCT writer and rt-utils would add OpenCV and put its vertices on the
centres of boundary pixels (which a reader sampling pixel centres may drop, thin parts whole),
whereas these vertices lie between pixel centres and the contours fill back to exactly the mask.

One ROI per class present (ROI number = FLARE id, name = FLARE name, with a display colour), one
CLOSED_PLANAR contour in patient LPS mm per region and per hole on each slice, each referencing
its CT slice. Holes are contours nested in another one: the even-odd rule of
:func:`flareseg.datasets.rtstruct.rtstruct_masks` fills them back.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from scipy import ndimage

import flareseg
from flareseg.io.dicom_codes import CLASS_CODES, classes_present
from flareseg.io.dicom_file import build_and_write
from flareseg.io.dicom_grid import index_to_lps
from flareseg.io.polygons import mask_polygons
from flareseg.io.volume import Geometry, Volume
from flareseg.labels import BY_ID

#: Series number of the structure set (after the CT's usual numbers).
SERIES_NUMBER = 902
_STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                   "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def write_rtstruct(mask: Volume, series_folder: Path, path: Path, acquisition: int | None = None) -> Path:
    """Write ``mask`` as an RTSTRUCT file referencing the CT series in ``series_folder``.

    Args:
        mask: uint8 FLARE class ids ``[z, y, x]`` on the grid of ``read_ct(series_folder)``.
        series_folder: The DICOM CT series the mask was predicted on.
        path: The file to write (atomically).
        acquisition: The acquisition the mask was predicted on, of a series that holds several.

    Returns:
        ``path``.

    Raises:
        InputError: The folder is not a DICOM CT series of the mask's grid, the mask holds no
            FLARE class (refused as by the SEG writer, so both outputs agree) or a value that is
            not one, or the file cannot be written.
    """
    return build_and_write(structure_set, mask, series_folder, path, acquisition)


def structure_set(mask: Volume, sources: Sequence[pydicom.Dataset]) -> Dataset:
    """The RTSTRUCT dataset of a label map, in memory.

    Args:
        mask: FLARE class ids ``[z, y, x]``; slice ``k`` lies on ``sources[k]``.
        sources: CT slice headers, one per slice of ``mask``, as :func:`source_slices` gives them.
    """
    present = classes_present(mask.array)
    dataset = _header(sources[0])
    frame_uid = str(sources[0].FrameOfReferenceUID)
    dataset.ReferencedFrameOfReferenceSequence = [_frame_reference(sources)]
    boxes = ndimage.find_objects(mask.array)
    dataset.StructureSetROISequence, dataset.ROIContourSequence, dataset.RTROIObservationsSequence = [], [], []
    for class_id in present:
        dataset.StructureSetROISequence.append(_roi(class_id, frame_uid))
        dataset.ROIContourSequence.append(_roi_contours(mask, class_id, boxes[class_id - 1], sources))
        dataset.RTROIObservationsSequence.append(_observation(class_id))
    return dataset


def _header(source: pydicom.Dataset) -> Dataset:
    """Patient, study, RT series, equipment and SOP common attributes; the first three from the CT."""
    dataset = Dataset()
    for keyword in _STUDY_KEYWORDS:
        setattr(dataset, keyword, source.get(keyword, ""))
    if "SpecificCharacterSet" in source:
        dataset.SpecificCharacterSet = source.SpecificCharacterSet
    now = datetime.now()
    dataset.SOPClassUID, dataset.SOPInstanceUID = RTStructureSetStorage, generate_uid()
    dataset.InstanceCreationDate, dataset.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    dataset.Modality, dataset.SeriesInstanceUID, dataset.SeriesNumber = "RTSTRUCT", generate_uid(), SERIES_NUMBER
    dataset.SeriesDescription, dataset.OperatorsName = "flareseg structures", ""
    dataset.Manufacturer = dataset.ManufacturerModelName = "flareseg"
    dataset.SoftwareVersions = flareseg.__version__
    dataset.InstanceNumber = 1
    dataset.StructureSetLabel, dataset.StructureSetName = "FLARESEG", "FLARE abdominal organs, predicted"
    dataset.StructureSetDate, dataset.StructureSetTime = dataset.InstanceCreationDate, dataset.InstanceCreationTime
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


def _frame_reference(sources: Sequence[pydicom.Dataset]) -> Dataset:
    """The frame of reference, study and series the contours are drawn on, with every CT slice."""
    series = Dataset()
    series.SeriesInstanceUID = sources[0].SeriesInstanceUID
    series.ContourImageSequence = [_image_reference(source) for source in sources]
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management, as structure sets name it
    study.ReferencedSOPInstanceUID = sources[0].StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = sources[0].FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study]
    return frame


def _image_reference(source: pydicom.Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    return reference


def _roi(class_id: int, frame_uid: str) -> Dataset:
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID = class_id, frame_uid
    roi.ROIName, roi.ROIGenerationAlgorithm = BY_ID[class_id].name, "AUTOMATIC"
    return roi


def _observation(class_id: int) -> Dataset:
    observation = Dataset()
    observation.ObservationNumber = observation.ReferencedROINumber = class_id
    observation.RTROIInterpretedType = "ORGAN" if BY_ID[class_id].organ else ""
    observation.ROIInterpreter = ""
    return observation


def _roi_contours(mask: Volume, class_id: int, box: tuple[slice, ...], sources: Sequence[pydicom.Dataset]) -> Dataset:
    """The contours of one class, slice by slice within its bounding box ``box`` (z, y, x)."""
    item = Dataset()
    item.ReferencedROINumber = class_id
    item.ROIDisplayColor = list(CLASS_CODES[class_id].rgb)
    item.ContourSequence = []
    offset_xy = np.array([box[2].start, box[1].start], np.float64)
    for dz, plane in enumerate(mask.array[box] == class_id):
        k = box[0].start + dz
        for polygon in mask_polygons(plane):
            contour = _contour(polygon + offset_xy, k, mask.geometry)
            contour.ContourImageSequence = [_image_reference(sources[k])]
            item.ContourSequence.append(contour)
    return item


def _contour(polygon_xy: np.ndarray, k: int, geometry: Geometry) -> Dataset:
    """A CLOSED_PLANAR contour from ``(n, 2)`` pixel indices on grid slice ``k``."""
    points = index_to_lps(np.c_[polygon_xy, np.full(len(polygon_xy), k, np.float64)], geometry)
    contour = Dataset()
    contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
    contour.ContourData = [float(f"{value:.6f}") for value in points.ravel()]  # DS: at most 16 characters
    return contour
