"""read_ct accepts every real CT and refuses, in one line, what cannot be one: label maps, HU+1024
stored without its rescale, values far outside HU, implausible or undefined voxel spacing.

The refused inputs are real scans with one defect made by hand."""

from __future__ import annotations

import dataclasses
import gzip
import re
import struct
import time

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io import Geometry, Volume, read_ct, read_geometry, read_volume
from flareseg.io.plausibility import check_ct, check_grid

FORCE = "(use --force if this really is a CT)"
#: Every real CT of the shared data folder, relative to it (image files and DICOM series folders).
REAL_CTS = [
    "dcmqi_ct3slice",
    "pyradiomics_lung/lung1_image.nrrd",
    "pyradiomics_lung/lung2_image.nrrd",
    "tcia_hcc_tace_seg_hcc006/ct.nii.gz",
    "tcia_hcc_tace_seg_multiphase/hcc005_pre_noncontrast/ct.nii.gz",
    "tcia_hcc_tace_seg_multiphase/hcc007_latevenous_abdomen/ct.nii.gz",
    "tcia_hcc_tace_seg_multiphase/hcc007_noncontrast_10mm/ct.nii.gz",
    "tcia_hcc_tace_seg_multiphase/hcc007_portalvenous/ct.nii.gz",
    "tcia_pancreatic_ct_cbct_seg_cb001/ct.nii.gz",
    "tcia_pancreatic_ct_cbct_seg_cb001/dicom_ct",
    "ts_example/example_ct.nii.gz",
    "ts_example/example_ct_dicom",
    "ts_example/example_ct_dicom.nii.gz",
    "ts_example/example_ct_sm.nii.gz",
    "ts_example/extra_aorta_report_crop/ct_cropped.nii.gz",
]
_MASK_WORDS = ("seg", "label", "aorta.", "celiac", "mesenteric")


def _shared_images(root):
    """(CTs, label maps) of the shared folder, by file name: image files and DICOM series folders."""
    images = {p for p in root.rglob("*") if p.is_file() and p.name.endswith((".nii.gz", ".nrrd"))}
    dicom_files = [*root.rglob("*.dcm"), *root.rglob("CT.*")]
    folders = {folder for folder in {p.parent for p in dicom_files} if sum(p.parent == folder for p in dicom_files) > 1}
    masks = {p for p in images if any(word in p.name for word in _MASK_WORDS)}
    return sorted(str(p.relative_to(root)) for p in (images - masks) | folders), sorted(masks)


def test_every_real_ct_is_accepted(data_dir):
    cts, _ = _shared_images(data_dir)
    assert cts == REAL_CTS  # a new scan in the folder must be added here, and so checked
    for name in cts:
        volume = read_ct(data_dir / name)
        assert volume.array.ndim == 3, name


def test_every_real_label_map_is_refused_unless_forced(data_dir):
    _, masks = _shared_images(data_dir)
    assert len(masks) == 20
    for path in masks:
        with pytest.raises(InputError, match=re.escape(FORCE) + "$") as error:
            read_ct(path)
        assert re.search(r"a label map\?|a mask or an empty image\?", str(error.value)), path
        assert "\n" not in str(error.value)
        assert read_ct(path, force=True).array.max() > 0


def test_the_check_is_cheap(data_dir):
    volume = read_volume(data_dir / "tcia_hcc_tace_seg_hcc006" / "ct.nii.gz")  # 512x512x109
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        check_ct(volume, "ct")
        seconds.append(time.perf_counter() - start)
    assert min(seconds) < 0.1


@pytest.fixture(scope="module")
def ct(data_dir) -> Volume:
    """A real LPS CT: 512x512x20, 0.98x0.98x2 mm, int16 HU, air at -1024."""
    return read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz")


def _write(volume_array, like: Volume, path, spacing=None):
    image = sitk.GetImageFromArray(volume_array)
    image.SetSpacing(spacing or like.geometry.spacing_xyz_mm)
    image.SetOrigin(like.geometry.origin_lps_mm)
    image.SetDirection([v for row in like.geometry.direction_lps for v in row])
    sitk.WriteImage(image, str(path))
    return path


def _refused(path, *patterns):
    with pytest.raises(InputError) as error:
        read_ct(path)
    message = str(error.value)
    assert "\n" not in message
    for pattern in patterns:
        assert re.search(pattern, message), message
    return message


# ---- intensities -----------------------------------------------------------------------------------


def test_a_label_map_with_many_classes_is_refused(data_dir, tmp_path):
    """TotalSegmentator's 117-class map spans more than 100 values; the span rule alone lets it pass."""
    message = _refused(data_dir / "ts_example" / "example_seg.nii.gz", r"only \d+ distinct integer values, 0\.\.117 "
                       r"\(a label map\?\)")
    assert message.endswith(FORCE)
    float_map = data_dir / "ts_example" / "example_seg_v1_normal_fullct.nii.gz"  # float64 voxels 0..104
    _refused(float_map, r"distinct integer values, 0\.\.104")


@pytest.mark.parametrize("storage", ["uint16", "int16 with padding"])
def test_hu_plus_1024_without_rescale_is_refused_unless_forced(ct, tmp_path, storage):
    stored = ct.array.astype(np.int32) + 1024  # air 0, soft tissue ~1024..1124
    if storage == "uint16":
        array = np.clip(stored, 0, None).astype(np.uint16)
    else:
        array = stored.astype(np.int16)
        array[:, :40, :] = -1024  # rows outside the field of view: padding at -2048 HU, stored -1024
    path = _write(array, ct, tmp_path / "raw.nii.gz")
    message = _refused(path, r"no air, lung or fat .* at 900\.\.1300, where soft tissue lies in HU\+1024")
    assert message.endswith(FORCE)
    np.testing.assert_array_equal(read_ct(path, force=True).array, array)


def test_a_ct_cropped_to_the_body_or_inside_it_is_accepted(ct, tmp_path):
    """Fat, bowel gas and lung keep voxels below -100 HU even in a tight crop: no HU+1024 alarm."""
    body = np.argwhere(ct.array > -300)
    (z0, y0, x0), (z1, y1, x1) = body.min(axis=0), body.max(axis=0) + 1
    box = ct.array[z0:z1, y0:y1, x0:x1]
    h, w = box.shape[1:]
    for name, crop in (("body", box), ("inside", box[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4])):
        image = sitk.GetImageFromArray(np.ascontiguousarray(crop))
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
        read_ct(tmp_path / f"{name}.nii.gz")


def test_values_far_outside_hounsfield_units_are_refused(ct, tmp_path):
    path = _write(ct.array.astype(np.float64) * 1e6, ct, tmp_path / "scaled.nii.gz")
    message = _refused(path, r"values reach -1\.024e\+09\.\.1\.839e\+09, far outside any Hounsfield range")
    assert message.endswith(FORCE)


def test_padding_and_extended_scale_metal_are_accepted(ct, tmp_path):
    array = ct.array.astype(np.int32)
    array[:, :10, :] = -32768  # padding as some scanners write it
    array[10, 256, 250:260] = 30000  # metal on an extended HU scale
    read_ct(_write(array, ct, tmp_path / "extended.nii.gz"))


def test_nan_voxels_are_refused_even_when_forced(ct, tmp_path):
    array = ct.array.astype(np.float32)
    array[3, 100, 100] = np.nan
    path = _write(array, ct, tmp_path / "nan.mha")  # (ITK reads a NaN in a NIfTI file as 0)
    with pytest.raises(InputError, match="voxel values include NaN or infinity$"):
        read_ct(path, force=True)


# ---- spacing and grid --------------------------------------------------------------------------------


def test_implausible_spacing_is_refused_unless_forced(ct, tmp_path):
    coarse = _write(ct.array, ct, tmp_path / "coarse.nii.gz", spacing=(0.977, 0.977, 25.0))
    message = _refused(coarse, r"voxel spacing 0\.977x0\.977x25 mm: 25 mm is too coarse for a CT \(>= 20 mm\)")
    assert message.endswith("(use --force if the spacing is right)")
    assert read_ct(coarse, force=True).geometry.spacing_xyz_mm[2] == 25.0
    metres = _write(ct.array, ct, tmp_path / "metres.nii.gz", spacing=(0.000977, 0.000977, 0.002))
    _refused(metres, r"0\.000977 mm is too fine for a CT \(< 0\.05 mm; metres instead of mm\?\)")


def _nifti_with(path, out, offset, fmt, value):
    """A copy of an uncompressed-then-gzipped NIfTI-1 file with one header field changed."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[offset: offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    out.write_bytes(gzip.compress(bytes(raw)))
    return out


@pytest.mark.parametrize("pixdim_z", [0.0, -2.0, float("nan")])
def test_a_nifti_spacing_of_zero_is_refused_even_when_forced(data_dir, tmp_path, pixdim_z):
    """ITK reads pixdim 0 (or NaN) as 1 mm without a word: the header itself is checked."""
    source = data_dir / "ts_example" / "example_ct_sm.nii.gz"  # 3 mm voxels
    path = _nifti_with(source, tmp_path / "bad.nii.gz", 76 + 3 * 4, "<f", pixdim_z)  # pixdim[3]
    pattern = r"voxel spacing 3x3x(0|-2|nan) mm in the NIfTI header \(pixdim\) is zero, negative or not a number"
    for read in (read_volume, read_geometry, lambda p: read_ct(p, force=True)):
        with pytest.raises(InputError, match=pattern):
            read(path)


def test_a_nan_in_the_nifti_sform_is_refused_before_itk_reads_it(data_dir, tmp_path):
    source = data_dir / "ts_example" / "example_ct_sm.nii.gz"  # qform and sform set; ITK uses the sform
    path = _nifti_with(source, tmp_path / "nan.nii.gz", 280, "<f", float("nan"))  # srow_x[0]
    with pytest.raises(InputError, match="NIfTI header's sform holds NaN or infinity; the voxel grid is undefined$"):
        read_ct(path, force=True)


@pytest.mark.parametrize("field, value, message", [
    ("spacing_xyz_mm", (1.0, 1.0, 0.0), r"voxel spacing 1x1x0 mm is zero, negative or not a number"),
    ("spacing_xyz_mm", (1.0, float("inf"), 2.0), r"voxel spacing 1xinfx2 mm is zero"),
    ("origin_lps_mm", (0.0, float("nan"), 0.0), r"origin .* is not finite"),
    ("direction_lps", ((1.0, 0.0, 0.0), (0.0, float("nan"), 0.0), (0.0, 0.0, 1.0)), "direction cosines are not finite"),
])
def test_undefined_grids_by_hand(field, value, message):
    geometry = dataclasses.replace(Geometry((2, 3, 4), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), **{field: value})
    with pytest.raises(InputError, match=message):
        check_grid(geometry, "ct")


def _mha_with(ct: Volume, tmp_path, field: str, value: str):
    path = tmp_path / "ct.mha"
    _write(ct.array[:4], ct, path)
    raw = path.read_bytes()
    path.write_bytes(re.sub(rb"\n" + field.encode() + rb" = [^\n]*", b"\n" + f"{field} = {value}".encode(), raw, 1))
    return path


def test_direction_cosines_that_are_not_orthonormal_are_refused(ct, tmp_path):
    path = _mha_with(ct, tmp_path, "TransformMatrix", "2 0 0 0 1 0 0 0 1")  # ITK reads it as it is
    with pytest.raises(InputError, match=r"direction cosines are not orthonormal \(axis lengths 2, 1, 1"):
        read_volume(path)


def test_zero_spacing_in_an_mha_header_is_a_one_line_error(ct, tmp_path):
    path = _mha_with(ct, tmp_path, "ElementSpacing", "0.977 0.977 0")
    with pytest.raises(InputError, match=r"unreadable or corrupt image \(.*spacing") as error:
        read_volume(path)
    assert "\n" not in str(error.value)
