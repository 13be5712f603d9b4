"""Write a FLARE label map as a DICOM Segmentation (SEG) of the CT series it was predicted on.

One BINARY segment per class present, labelled with the FLARE name and coded as in
:mod:`flareseg.io.dicom_codes`; frame ``k`` of the mask is stored against CT slice ``k``
(empty frames are left out), so the SEG references the source series, study and frame of
reference. Read back with :func:`flareseg.datasets.dicom_seg.seg_masks`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

import flareseg
from flareseg.io.dicom_codes import CLASS_CODES, classes_present
from flareseg.io.dicom_file import build_and_write
from flareseg.io.volume import Volume
from flareseg.labels import BY_ID

#: Series number of the SEG (after the CT's usual numbers).
SERIES_NUMBER = 901


def write_dicom_seg(mask: Volume, series_folder: Path, path: Path, acquisition: int | None = None) -> Path:
    """Write ``mask`` as a DICOM-SEG file referencing the CT series in ``series_folder``.

    Args:
        mask: uint8 FLARE class ids ``[z, y, x]`` on the grid of ``read_ct(series_folder)``.
        series_folder: The DICOM CT series the mask was predicted on.
        path: The file to write (atomically).
        acquisition: The acquisition the mask was predicted on, of a series that holds several.

    Returns:
        ``path``.

    Raises:
        InputError: The folder is not a DICOM CT series of the mask's grid, the mask holds no
            FLARE class (a SEG needs at least one segment) or a value that is not one, or the
            file cannot be written.
    """
    return build_and_write(lambda volume, sources: segmentation(volume.array, sources), mask, series_folder, path,
                           acquisition)


def segmentation(labels: np.ndarray, sources: Sequence[pydicom.Dataset]) -> hd.seg.Segmentation:
    """The SEG dataset of a label map, in memory.

    Args:
        labels: FLARE class ids ``[z, y, x]``; slice ``k`` lies on ``sources[k]``.
        sources: CT slice headers, one per slice of ``labels``, as :func:`source_slices` gives them.
    """
    present = classes_present(labels)
    segment_of = np.zeros(256, np.uint8)  # class id -> segment number 1..n (highdicom numbers them so)
    segment_of[present] = np.arange(1, len(present) + 1)
    descriptions = [_description(number, class_id) for number, class_id in enumerate(present, start=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # about the source's own header values, e.g. its patient name
        return hd.seg.Segmentation(
            source_images=list(sources), pixel_array=segment_of[labels],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="flareseg", manufacturer_model_name="flareseg",
            software_versions=flareseg.__version__, device_serial_number="0",
            series_description="flareseg segmentation", content_label="FLARESEG",
            content_description="FLARE abdominal organs, predicted")


def _description(number: int, class_id: int) -> hd.seg.SegmentDescription:
    coding = CLASS_CODES[class_id]
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=BY_ID[class_id].name,
        segmented_property_category=coding.category, segmented_property_type=coding.type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="flareseg", family=codes.cid7162.ArtificialIntelligence, version=flareseg.__version__),
        display_color=hd.color.CIELabColor.from_rgb(*coding.rgb))
    if coding.modifier is not None:
        modifier = hd.sr.CodedConcept(coding.modifier.value, coding.modifier.scheme_designator, coding.modifier.meaning)
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    return description
