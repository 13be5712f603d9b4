"""DICOM-SEG segments onto a CT grid, by their frames' positions."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from flareseg.datasets import dicom_import as di
from flareseg.datasets import dicom_seg
from flareseg.datasets import structure_mapping as sm
from flareseg.datasets.rtstruct import Mask
from flareseg.io import read_ct


def _mask(mask: Mask, shape_zyx):
    out = np.zeros(int(np.prod(shape_zyx)), bool)
    out[mask.voxels] = True
    return out.reshape(shape_zyx)


def test_seg_is_placed_by_frame_position_and_named_by_property_type(data_dir):
    """A one-frame SEG of the middle CT slice, made with highdicom, lands on slice 1."""
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    folder = data_dir / "dcmqi_ct3slice"
    source = pydicom.dcmread(folder / "02.dcm")
    source.SpecificCharacterSet = "ISO_IR 100"
    pixels = np.zeros((1, 512, 512), bool)
    pixels[0, 100:120, 200:230] = True  # rows 100..119, columns 200..229
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Segment 1", segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Spleen, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the source's single-component patient name
        seg = hd.seg.Segmentation(
            source_images=[source], pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=2,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
            software_versions="1", device_serial_number="1")
    ct = read_ct(folder)
    structures = di.list_structures(seg, di.SEG)
    assert structures == [sm.StructureInfo(1, ("Segment 1", "Spleen"))]
    assert sm.resolve_targets(structures) == [("spleen",)]
    mask = _mask(dicom_seg.seg_masks(seg, ct.geometry, [1])[1], ct.geometry.shape_zyx)
    expected = np.zeros(ct.geometry.shape_zyx, bool)
    expected[1, 100:120, 200:230] = True  # 02.dcm is the middle slice (z = -127.69 mm)
    np.testing.assert_array_equal(mask, expected)
