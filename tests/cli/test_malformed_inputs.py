"""A corpus of malformed inputs, each made in a temporary folder from the real scans (copied, then
truncated, re-headed or mixed up) and run through the ``flareseg`` command line in-process, one row
of one table each.

What every row asserts:

* the exit code: 1 refused, 2 a usage error (argparse), 0 handled;
* stderr: exactly one line, ``flareseg: error: ...`` (refused), ``flareseg COMMAND: error: argument
  ...`` under argparse's usage block (usage error) or ``flareseg: warning: ...`` (handled with a
  warning), matching the row's regex; or nothing at all; and never a traceback;
* nothing left behind: every file, folder and link of the temporary folder is there and
  byte-identical after the run (inputs included: a refused run must not destroy its input), with
  no other new file than the outputs the row names (no hidden ``.*.partial*`` temporary either).

Every row is refused before a prediction runs (a damaged model is refused when it is loaded, before
the CT is read), but two: the full-disk prediction (a subprocess, as tests/io/test_write.py does it:
ITK's own line on stderr is left out there) and the prediction of the 20-slice DICOM series that
holds one file twice (handled, with a warning). Rows marked ``xfail(strict=True)`` state the
behaviour wanted where flareseg does not (yet) have it; their reason says what it does instead.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from pydicom.uid import generate_uid

from flareseg import labels
from flareseg.cli.main import main
from flareseg.data import default_model_dir

CT_SM = "ts_example/example_ct_sm.nii.gz"  # 122x101x30 voxels, 3 mm, RAS, int16 HU (-1100..1207)
CT_FULL = "ts_example/example_ct.nii.gz"  # 122x101x112 voxels, 3 mm, RAS, int32 HU
LABELS_SM = "ts_example/flare_labels_sm_from_v2normal.nii.gz"  # FLARE ids 0..13 on CT_SM's grid
TS_SEG = "ts_example/example_seg.nii.gz"  # TotalSegmentator ids 0..117 on CT_SM's grid
TS_DICOM = "ts_example/example_ct_dicom"  # 20 slices 512x512, 2 mm apart, JPEG 2000, no SeriesInstanceUID value
TCIA_DICOM = "tcia_pancreatic_ct_cbct_seg_cb001/dicom_ct"  # 79 slices 512x512, 3 mm apart, uncompressed
NRRD_MASK = "dcmqi_ct3slice/liver_seg.nrrd"  # a small label map

HAS_CUDA = torch.cuda.is_available()
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: A full disk, for real (as tests/io/test_write.py): past this many bytes a write fails with EFBIG.
FULL_DISK_BYTES = 100_000
#: What ITK's NIfTI library prints itself on a failed write (C level: only a subprocess sees it).
ITK_NATIVE_LINE = re.compile(r"^\*\* ERROR")

PIXDIM_Z = 76 + 3 * 4  # NIfTI-1 header: pixdim[3], the slice spacing (float32)
QFORM_CODE = 252  # NIfTI-1 header: qform_code (int16)
QUATERN_B = 256  # NIfTI-1 header: quatern_b (float32)


# --- Builders' tools: copy the real files, then damage the copies -------------------------------------------------


def _copy(source: Path, target: Path) -> Path:
    """Copy a file's bytes (not its read-only mode) into a folder that is made when missing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _slice_position(path: Path) -> float:
    return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])


def _slices(folder: Path) -> list[Path]:
    """The DICOM files of a folder, along the body axis."""
    return sorted(folder.iterdir(), key=_slice_position)


def _dicom(data_dir: Path, folder: Path, source: str = TS_DICOM, count: int | None = None, first: int = 0) -> Path:
    """``count`` slices (None: all) of a real DICOM series from its ``first`` on, copied into ``folder``."""
    for path in _slices(data_dir / source)[first:][:count]:
        _copy(path, folder / path.name)
    return folder


def _edit(path: Path, **tags) -> Path:
    """Set DICOM header tags of a file in place (its pixel data untouched)."""
    ds = pydicom.dcmread(path)
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path)
    return path


def _edit_all(folder: Path, **tags) -> Path:
    for path in folder.iterdir():
        _edit(path, **tags)
    return folder


def _new_instance(path: Path, target: Path, **tags) -> Path:
    """A copy of a DICOM slice as another instance (a new SOPInstanceUID), with ``tags`` changed."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(target)
    return target


def _move_along_z(path: Path, mm: float) -> None:
    ds = pydicom.dcmread(path)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + mm]
    ds.save_as(path)


def _image(data_dir: Path, source: str = CT_SM) -> sitk.Image:
    """A real image with its grid but without its file's metadata (which MetaImage cannot store)."""
    image = sitk.ReadImage(str(data_dir / source))
    return _like(sitk.GetArrayFromImage(image), image)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """``array`` ``[z, y, x]`` on ``reference``'s grid."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _write(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _nifti_with(data_dir: Path, path: Path, *fields: tuple[int, str, object]) -> Path:
    """The small CT as NIfTI with header fields ``(offset, struct format, value)`` overwritten."""
    raw = bytearray(gzip.decompress((data_dir / CT_SM).read_bytes()))
    for offset, fmt, value in fields:
        struct.pack_into("<" + fmt, raw, offset, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    return path


def _mha_with(data_dir: Path, path: Path, key: str, value: str) -> Path:
    """The small CT as an uncompressed MetaImage whose header line ``key = ...`` reads ``value``."""
    _write(_image(data_dir), path, compress=False)
    head, separator, voxels = path.read_bytes().partition(b"ElementDataFile = LOCAL\n")
    head = re.sub(rf"^{key} = .*$".encode(), f"{key} = {value}".encode(), head, flags=re.M)
    path.write_bytes(head + separator + voxels)
    return path


def _model(tmp: Path, break_it: Callable[[Path], object]) -> Path:
    """A copy of the bundled model's files (not ``training/``), broken by ``break_it``."""
    copied = tmp / "model"
    for path in default_model_dir().iterdir():
        if path.is_file():
            _copy(path, copied / path.name)
    break_it(copied)
    return copied


def _dataset(data_dir: Path, root: Path, label: np.ndarray | None = None, **spec) -> Path:
    """A one-case dataset in the nnU-Net v2 layout (the small CT with its FLARE labels, or ``label``
    on their grid), with ``dataset.json`` fields replaced by ``spec``."""
    _copy(data_dir / CT_SM, root / "imagesTr" / "ts_0000.nii.gz")
    if label is None:
        _copy(data_dir / LABELS_SM, root / "labelsTr" / "ts.nii.gz")
    else:
        _write(_like(label, _image(data_dir, LABELS_SM)), root / "labelsTr" / "ts.nii.gz")
    fields = {"channel_names": {"0": "CT"}, "labels": labels.nnunet_labels(), "numTraining": 1,
              "file_ending": ".nii.gz", **spec}
    (root / "dataset.json").write_text(json.dumps(fields))
    return root


def _predict(tmp: Path, source: Path, *more) -> list:
    return ["predict", "-i", source, "-o", tmp / "mask.nii.gz", "--quiet", *more]


def _convert(tmp: Path, source: Path, *more) -> list:
    return ["convert", "-i", source, "-o", tmp / "ct.nii.gz", *more]


def _check(tmp: Path, dataset: Path, *more) -> list:
    return ["dataset", "check", dataset, "--quiet", *more]


def _train(tmp: Path, dataset: Path, *more) -> list:
    return ["train", "--dataset", dataset, "--out", tmp / "model", "--device", "cpu", "--no-progress", *more]


# --- Builders: (tmp_path, data_dir) -> argv -------------------------------------------------------------------------

# Silent corruption: a write that fails as on a full disk (run in a subprocess).

def full_disk_convert(tmp, data):
    return _convert(tmp, data / CT_FULL)


def full_disk_predict(tmp, data):
    return ["predict", "-i", data / CT_SM, "-o", tmp / "mask.nii", "--quiet"]  # 370 kB uncompressed


# Input destroyed: the output would replace an input.

def output_is_the_input_file(tmp, data):
    ct = _copy(data / CT_SM, tmp / "ct.nii.gz")
    return ["predict", "-i", ct, "-o", ct]


def output_is_a_link_to_the_input(tmp, data):
    ct = _copy(data / CT_SM, tmp / "ct.nii.gz")
    (tmp / "link.nii.gz").symlink_to(ct)
    return ["predict", "-i", ct, "-o", tmp / "link.nii.gz"]


def output_is_the_input_folder(tmp, data):
    _copy(data / CT_SM, tmp / "scans" / "case_0000.nii.gz")
    return ["predict", "-i", tmp / "scans", "-o", tmp / "scans", "--quiet"]


def output_inside_the_dicom_folder(tmp, data):
    folder = _dicom(data, tmp / "series")
    return ["predict", "-i", folder, "-o", folder / "mask.nii.gz"]


def output_folder_inside_the_dicom_folder(tmp, data):
    folder = _dicom(data, tmp / "series")
    (folder / "masks").mkdir()
    return ["predict", "-i", folder, "-o", folder / "masks", "--quiet"]


def listed_scan_whose_mask_is_itself(tmp, data):
    _copy(data / CT_SM, tmp / "out" / "case.nii.gz")  # a scan in the output folder, named as its own mask
    (tmp / "scans.txt").write_text("out/case.nii.gz\n")
    return ["predict", "-i", tmp / "scans.txt", "-o", tmp / "out", "--quiet"]


def convert_canonical_onto_its_input(tmp, data):
    ct = _copy(data / CT_SM, tmp / "ct.nii.gz")  # RAS: --canonical would replace it by its LPS copy
    return ["convert", "-i", ct, "-o", ct, "--canonical"]


# Wrong grid: DICOM series that are not one uniform stack.

def dicom_two_slices_at_one_position(tmp, data):
    folder = _dicom(data, tmp / "series", TCIA_DICOM, count=8, first=30)
    middle = _slices(folder)[4]
    brighter = (pydicom.dcmread(middle).pixel_array + 100).astype(np.uint16).tobytes()
    _new_instance(middle, folder / "other.dcm", PixelData=brighter)
    return _convert(tmp, folder)


def dicom_missing_slices(tmp, data):
    folder = _dicom(data, tmp / "series")
    for path in _slices(folder)[8:11]:
        path.unlink()
    return _convert(tmp, folder)


def dicom_slice_spacing_changes_midway(tmp, data):
    folder = _dicom(data, tmp / "series")
    for k, path in enumerate(_slices(folder)[10:], start=1):
        _move_along_z(path, 0.9 * k)  # 2 mm apart, then 2.9 mm: no gap over 1.5x the median
    return _convert(tmp, folder)


def dicom_mixed_orientation(tmp, data):
    folder = _dicom(data, tmp / "series")
    _edit(_slices(folder)[7], ImageOrientationPatient=[1, 0, 0, 0, 0.9848078, -0.1736482])  # tilted 10 degrees
    return _convert(tmp, folder)


def dicom_mixed_pixel_spacing(tmp, data):
    folder = _dicom(data, tmp / "series")
    for path in _slices(folder)[10:]:
        _edit(path, PixelSpacing=[0.7, 0.7])
    return _convert(tmp, folder)


def dicom_slice_of_another_size(tmp, data):
    folder = _dicom(data, tmp / "series", TCIA_DICOM, count=6, first=30)
    path = _slices(folder)[3]
    ds = pydicom.dcmread(path)
    ds.PixelData, ds.Rows, ds.Columns = ds.pixel_array[:256, :256].copy().tobytes(), 256, 256
    ds.save_as(path)
    return _convert(tmp, folder)


def dicom_orientation_not_orthogonal(tmp, data):
    return _convert(tmp, _edit_all(_dicom(data, tmp / "series"), ImageOrientationPatient=[1, 0, 0, 0.5, 0.8660254, 0]))


def dicom_orientation_zero(tmp, data):
    return _convert(tmp, _edit_all(_dicom(data, tmp / "series"), ImageOrientationPatient=[0, 0, 0, 0, 0, 0]))


def _two_acquisitions(tmp, data):
    folder = _dicom(data, tmp / "series")
    for i, path in enumerate(_slices(folder)):
        _new_instance(path, folder / f"second_{i:02d}.dcm", AcquisitionNumber=15)
    return folder


def dicom_two_acquisitions(tmp, data):
    return _predict(tmp, _two_acquisitions(tmp, data))


def dicom_acquisition_that_is_not_there(tmp, data):
    return _convert(tmp, _two_acquisitions(tmp, data), "--acquisition", "3")


def dicom_two_ct_series(tmp, data):
    folder = _dicom(data, tmp / "series")
    _dicom(data, folder, TCIA_DICOM, count=4, first=20)
    return _convert(tmp, folder)


def dicom_series_split_by_uid(tmp, data):
    folder = _dicom(data, tmp / "series")
    uid = generate_uid()
    for path in _slices(folder)[::2]:
        _edit(path, SeriesInstanceUID=uid, SeriesNumber=99)
    return _predict(tmp, folder)


def dicom_truncated_slice(tmp, data):
    folder = _dicom(data, tmp / "series", TCIA_DICOM, count=6, first=30)
    _truncate(_slices(folder)[2], 0.6)
    return _convert(tmp, folder)


def dicom_files_that_are_not_dicom(tmp, data):
    for i in range(3):
        _truncate(_copy(data / TCIA_DICOM / "1-001.dcm", tmp / "series" / f"{i}.dcm"), 0.0002)
    return _convert(tmp, tmp / "series")


def dicom_same_file_twice(tmp, data):
    folder = _dicom(data, tmp / "series")
    _copy(_slices(folder)[5], folder / "again.dcm")
    return _convert(tmp, folder)


def dicom_same_file_twice_predict(tmp, data):
    folder = _dicom(data, tmp / "series")
    _copy(_slices(folder)[5], folder / "again.dcm")
    return _predict(tmp, folder)


# Garbage as CT.

def label_map_totalsegmentator(tmp, data):
    return _predict(tmp, _copy(data / TS_SEG, tmp / "seg.nii.gz"))


def label_map_flare(tmp, data):
    return _convert(tmp, _copy(data / LABELS_SM, tmp / "labels.nii.gz"))


def _hu_plus_1024(tmp, data):
    image = _image(data)
    return _write(_like(sitk.GetArrayFromImage(image) + 1024, image), tmp / "unsigned.nii.gz")


def hu_plus_1024(tmp, data):
    return _predict(tmp, _hu_plus_1024(tmp, data))


def hu_plus_1024_forced(tmp, data):
    return _convert(tmp, _hu_plus_1024(tmp, data), "--force")


def dicom_without_rescale(tmp, data):
    return _convert(tmp, _edit_all(_dicom(data, tmp / "series"), RescaleIntercept=0))  # stored values: HU+1024


def intensities_times_a_million(tmp, data):
    image = _image(data)
    scaled = sitk.GetArrayFromImage(image).astype(np.float32) * 1e6
    return _predict(tmp, _write(_like(scaled, image), tmp / "scaled.nii.gz"))


def nifti_pixdim_zero(tmp, data):
    return _convert(tmp, _nifti_with(data, tmp / "flat.nii.gz", (PIXDIM_Z, "f", 0.0)))


def nifti_pixdim_negative(tmp, data):
    return _predict(tmp, _nifti_with(data, tmp / "negative.nii.gz", (PIXDIM_Z, "f", -3.0)))


def nifti_pixdim_nan(tmp, data):
    return _convert(tmp, _nifti_with(data, tmp / "nan.nii.gz", (PIXDIM_Z, "f", float("nan"))))


def nifti_qform_nan(tmp, data):
    return _convert(tmp, _nifti_with(data, tmp / "qform.nii.gz", (QFORM_CODE, "h", 1), (QUATERN_B, "f", float("nan"))))


def _spacing(tmp, data, spacing, name):
    image = _image(data)
    image.SetSpacing(spacing)
    return _write(image, tmp / name)


def spacing_25_mm(tmp, data):
    return _predict(tmp, _spacing(tmp, data, (25.0, 25.0, 25.0), "coarse.nii.gz"))


def spacing_25_mm_forced(tmp, data):
    return _convert(tmp, _spacing(tmp, data, (25.0, 25.0, 25.0), "coarse.nii.gz"), "--force")


def spacing_in_metres(tmp, data):
    return _convert(tmp, _spacing(tmp, data, (0.003, 0.003, 0.003), "metres.nrrd"))


def mha_spacing_negative_reads_as_a_flip(tmp, data):
    """ITK reads a negative ElementSpacing as a flipped axis of positive spacing: the same voxel positions."""
    return _convert(tmp, _mha_with(data, tmp / "negative.mha", "ElementSpacing", "3 -3 3"))


def mha_spacing_nan(tmp, data):
    return _predict(tmp, _mha_with(data, tmp / "nan.mha", "ElementSpacing", "3 nan 3"))


def mha_direction_sheared(tmp, data):
    return _convert(tmp, _mha_with(data, tmp / "sheared.mha", "TransformMatrix", "1 0 0 0.5 1 0 0 0 1"))


def constant_image(tmp, data):
    image = _image(data)
    return _predict(tmp, _write(_like(np.full(image.GetSize()[::-1], -1000, np.int16), image), tmp / "air.nii.gz"))


def _with_nan(tmp, data, name):
    image = _image(data)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[10:12, 40:60, 40:60] = np.nan
    return _write(_like(array, image), tmp / name)


def nan_voxels_mha(tmp, data):
    return _predict(tmp, _with_nan(tmp, data, "nan.mha"))


def nan_voxels_nrrd_forced(tmp, data):
    return _convert(tmp, _with_nan(tmp, data, "nan.nrrd"), "--force")


def image_2d(tmp, data):
    return _convert(tmp, _write(_image(data)[:, :, 15], tmp / "slice.nii.gz"))


def image_one_slice_thick(tmp, data):
    return _predict(tmp, _write(_image(data)[:, :, 15:16], tmp / "slab.nrrd"))


def image_4d(tmp, data):
    image = _image(data)
    return _convert(tmp, _write(sitk.JoinSeries([image, image]), tmp / "time.nii.gz"))


def image_rgb(tmp, data):
    grey = sitk.Cast(sitk.RescaleIntensity(_image(data), 0, 255), sitk.sitkUInt8)
    return _predict(tmp, _write(sitk.Compose(grey, grey, grey), tmp / "rgb.mha"))


def truncated_nii_gz(tmp, data):
    return _predict(tmp, _truncate(_copy(data / CT_FULL, tmp / "cut.nii.gz")))


def truncated_nii(tmp, data):
    return _convert(tmp, _truncate(_write(_image(data), tmp / "cut.nii", compress=False), 0.7))


def truncated_nrrd(tmp, data):
    return _convert(tmp, _truncate(_write(_image(data), tmp / "cut.nrrd", compress=False), 0.7))


def truncated_nii_gz_info(tmp, data):
    return ["info", _truncate(_copy(data / CT_SM, tmp / "cut.nii.gz"))]


def garbage_named_nii_gz(tmp, data):
    (tmp / "noise.nii.gz").write_bytes(np.random.default_rng(7).bytes(50_000))
    return _predict(tmp, tmp / "noise.nii.gz")


def gzipped_garbage_named_nii_gz(tmp, data):
    (tmp / "noise.nii.gz").write_bytes(gzip.compress(np.random.default_rng(7).bytes(50_000)))
    return _convert(tmp, tmp / "noise.nii.gz")


def empty_file(tmp, data):
    (tmp / "empty.nii.gz").write_bytes(b"")
    return _predict(tmp, tmp / "empty.nii.gz")


def unsupported_suffix(tmp, data):
    return _predict(tmp, _copy(data / CT_SM, tmp / "ct.png"))


def dicom_of_another_modality(tmp, data):
    return _predict(tmp, _edit_all(_dicom(data, tmp / "series"), Modality="MR"))


# Folder mode (and list files).

def dicom_folder_holding_an_nrrd(tmp, data):
    folder = _dicom(data, tmp / "series")
    _copy(data / NRRD_MASK, folder / "liver.nrrd")
    return _convert(tmp, folder)


def dicom_folder_holding_an_nrrd_info(tmp, data):
    folder = _dicom(data, tmp / "series")
    _copy(data / NRRD_MASK, folder / "liver.nrrd")
    return ["info", folder]


def folder_without_scans(tmp, data):
    _copy(data / "ts_example" / "README.txt", tmp / "scans" / "README.txt")
    return ["predict", "-i", tmp / "scans", "-o", tmp / "out", "--quiet"]


def list_file_of_binary_bytes(tmp, data):
    (tmp / "scans.txt").write_bytes(gzip.compress((data / CT_SM).read_bytes()[:2000]))
    return ["predict", "-i", tmp / "scans.txt", "-o", tmp / "out", "--quiet"]


def list_file_naming_a_missing_scan(tmp, data):
    (tmp / "scans.txt").write_text("# one scan\nmissing_0000.nii.gz\n")
    return ["predict", "-i", tmp / "scans.txt", "-o", tmp / "out", "--quiet"]


# evaluate and train refuse.

def _evaluate(tmp, data, gt_source: str, *more) -> list:
    _copy(data / LABELS_SM, tmp / "pred" / "ts.nii.gz")
    _copy(data / gt_source, tmp / "gt" / "ts.nii.gz")
    return ["evaluate", "--pred", tmp / "pred", "--gt", tmp / "gt", "--out", tmp / "scores", "--quiet", *more]


def evaluate_gt_of_117_classes(tmp, data):
    return _evaluate(tmp, data, TS_SEG)


def evaluate_ct_as_gt(tmp, data):
    return _evaluate(tmp, data, CT_SM)


def evaluate_prediction_on_another_grid(tmp, data):
    argv = _evaluate(tmp, data, LABELS_SM)
    _copy(data / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz", tmp / "pred" / "ts.nii.gz")
    return argv


def evaluate_out_is_a_file(tmp, data):
    (tmp / "scores").write_text("a file where the scores folder would go")
    return _evaluate(tmp, data, LABELS_SM)


def evaluate_scores_csv_is_a_folder(tmp, data):
    (tmp / "scores" / "scores.csv").mkdir(parents=True)
    return _evaluate(tmp, data, LABELS_SM)


def evaluate_threads_negative(tmp, data):
    return _evaluate(tmp, data, LABELS_SM, "--threads", "-3")


def evaluate_threads_zero(tmp, data):
    return _evaluate(tmp, data, LABELS_SM, "--threads", "0")


def _undeclared_label(data):
    array = sitk.GetArrayFromImage(_image(data, LABELS_SM))
    array[0, 0, 0] = 200  # dataset.json declares 0..14
    return array


def train_on_an_undeclared_label(tmp, data):
    return _train(tmp, _dataset(data, tmp / "Dataset001", _undeclared_label(data)))


def dataset_check_undeclared_label(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", _undeclared_label(data)))


def train_on_a_truncated_image(tmp, data):
    dataset = _dataset(data, tmp / "Dataset001")
    _truncate(dataset / "imagesTr" / "ts_0000.nii.gz")
    return _train(tmp, dataset)


def dataset_check_truncated_image(tmp, data):
    dataset = _dataset(data, tmp / "Dataset001")
    _truncate(dataset / "imagesTr" / "ts_0000.nii.gz")
    return _check(tmp, dataset)


def train_lr_negative(tmp, data):
    return _train(tmp, _dataset(data, tmp / "Dataset001"), "--lr", "-1")


def train_threads_zero(tmp, data):
    return _train(tmp, _dataset(data, tmp / "Dataset001"), "--threads", "0")


def train_recipe_yaml_corrupt(tmp, data):
    (tmp / "recipe.yaml").write_text("stages: [\n")
    return _train(tmp, _dataset(data, tmp / "Dataset001"), "--recipe", tmp / "recipe.yaml")


def train_recipe_stages_a_number(tmp, data):
    (tmp / "recipe.yaml").write_text("name: broken\nstages: 5\n")
    return _train(tmp, _dataset(data, tmp / "Dataset001"), "--recipe", tmp / "recipe.yaml")


def train_recipe_not_text(tmp, data):
    _copy(data / CT_SM, tmp / "recipe.yaml")
    return _train(tmp, _dataset(data, tmp / "Dataset001"), "--recipe", tmp / "recipe.yaml")


# Tracebacks -> one line: damaged models, bad option values, unwritable outputs, mistyped dataset.json.

def _with_model(tmp, data, break_it, *more):
    return _predict(tmp, data / CT_SM, "-m", _model(tmp, break_it), *more)


def model_json_corrupt(tmp, data):
    return _with_model(tmp, data, lambda model: _truncate(model / "model.json"))


def model_json_a_list(tmp, data):
    return _with_model(tmp, data, lambda model: (model / "model.json").write_text("[1, 2]"))


def recipe_yaml_corrupt(tmp, data):
    return _with_model(tmp, data, lambda model: (model / "recipe.yaml").write_text("stages: [coarse\n  - {: ]\n"))


def recipe_yaml_network_a_number(tmp, data):
    return _with_model(tmp, data, lambda model: (model / "recipe.yaml").write_text("name: x\nnetwork: 3\n"))


def recipe_yaml_stages_a_number(tmp, data):
    return _with_model(tmp, data, lambda model: (model / "recipe.yaml").write_text("name: x\nstages: 5\n"))


def _truncate_onnx_and_record_it(model: Path) -> None:
    """Truncate an ONNX file and record its new sha256 in onnx.json, as if it had been exported so."""
    _truncate(model / "coarse.onnx", 0.3)
    record = json.loads((model / "onnx.json").read_text())
    record["stages"]["coarse"]["onnx_sha256"] = hashlib.sha256((model / "coarse.onnx").read_bytes()).hexdigest()
    (model / "onnx.json").write_text(json.dumps(record))


def onnx_truncated(tmp, data):
    return _with_model(tmp, data, _truncate_onnx_and_record_it, "--backend", "onnx")


def onnx_truncated_unrecorded(tmp, data):
    return _with_model(tmp, data, lambda model: _truncate(model / "coarse.onnx", 0.3), "--backend", "onnx")


def onnx_json_corrupt(tmp, data):
    return _with_model(tmp, data, lambda model: (model / "onnx.json").write_text("{"))


def weights_truncated(tmp, data):
    return _with_model(tmp, data, lambda model: _truncate(model / "small.pt"), "--backend", "torch")


def weights_of_another_shape(tmp, data):
    return _with_model(tmp, data, lambda model: _copy(model / "small.pt", model / "coarse.pt"), "--backend", "torch")


def weights_of_another_shape_backend_auto(tmp, data):
    return _with_model(tmp, data, lambda model: _copy(model / "small.pt", model / "coarse.pt"))


def model_folder_missing(tmp, data):
    return _predict(tmp, data / CT_SM, "-m", tmp / "no_model")


def device_banana(tmp, data):
    return _predict(tmp, data / CT_SM, "--device", "banana")


def device_cuda(tmp, data):
    return _predict(tmp, data / CT_SM, "--device", "cuda")


def backend_onnx_on_cuda(tmp, data):
    return _predict(tmp, data / CT_SM, "--backend", "onnx", "--device", "cuda")


def threads_negative(tmp, data):
    return _predict(tmp, data / CT_SM, "--threads", "-3")


def threads_zero(tmp, data):
    return _predict(tmp, data / CT_SM, "--threads", "0")


def read_only_output_folder(tmp, data):
    (tmp / "locked").mkdir()
    (tmp / "locked").chmod(0o555)
    return ["convert", "-i", data / CT_SM, "-o", tmp / "locked" / "ct.nii.gz"]


def convert_output_is_a_folder(tmp, data):
    (tmp / "ct.nii.gz").mkdir()
    return _convert(tmp, data / CT_SM)


def convert_output_under_a_file(tmp, data):
    _copy(data / CT_SM, tmp / "ct_in.nii.gz")
    return ["convert", "-i", tmp / "ct_in.nii.gz", "-o", tmp / "ct_in.nii.gz" / "ct.nii.gz"]


def convert_to_png(tmp, data):
    return ["convert", "-i", data / CT_SM, "-o", tmp / "ct.png"]


def dataset_check_json_is_a_folder(tmp, data):
    (tmp / "report.json").mkdir()
    return _check(tmp, _dataset(data, tmp / "Dataset001"), "--json", tmp / "report.json")


def dataset_json_truncated(tmp, data):
    dataset = _dataset(data, tmp / "Dataset001")
    _truncate(dataset / "dataset.json")
    return _check(tmp, dataset)


def dataset_labels_a_number(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", labels=5))


def dataset_num_training_text(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", numTraining="x"))


def dataset_file_ending_a_number(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", file_ending=3))


def dataset_annotated_classes_a_list(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", annotated_classes=[1, 2]))


def dataset_annotated_classes_of_a_number(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", annotated_classes={"ts": 5}))


def dataset_unlabelled_a_number(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", unlabelled=5))


def dataset_label_mapping_a_number(tmp, data):
    return _check(tmp, _dataset(data, tmp / "Dataset001", label_mapping=5))


# Quiet inconsistencies.

def canonical_of_an_oblique_scan(tmp, data):
    image = _image(data)
    angle = np.radians(12.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection((turn @ np.array(image.GetDirection()).reshape(3, 3)).ravel().tolist())
    return _convert(tmp, _write(image, tmp / "oblique.nii.gz"), "--canonical")


def dicom_seg_of_a_nifti(tmp, data):
    return ["predict", "-i", data / CT_SM, "-o", tmp / "mask.dcm", "--output-type", "dicom_seg"]


def rtstruct_of_a_nifti(tmp, data):
    return ["predict", "-i", data / CT_SM, "-o", tmp / "mask.dcm", "--output-type", "rtstruct"]


def dicom_seg_not_named_dcm(tmp, data):
    return ["predict", "-i", _dicom(data, tmp / "series"), "-o", tmp / "mask.nii.gz", "--output-type", "dicom_seg"]


def rtstruct_not_named_dcm(tmp, data):
    return ["predict", "-i", _dicom(data, tmp / "series"), "-o", tmp / "mask", "--output-type", "rtstruct"]


def nifti_mask_named_dcm(tmp, data):
    return ["predict", "-i", data / CT_SM, "-o", tmp / "mask.dcm"]


def acquisition_of_a_nifti(tmp, data):
    return _predict(tmp, data / CT_SM, "--acquisition", "1")


def acquisition_of_a_nifti_convert(tmp, data):
    return _convert(tmp, data / CT_SM, "--acquisition", "2")


# --- The table ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One malformed input and what ``flareseg`` must do with it.

    Attributes:
        build: Makes the input in a temporary folder from the real data; returns the command's arguments.
        code: Exit code: 1 refused, 2 usage error, 0 handled.
        stderr: Regex the one stderr line must match (searched); None: nothing on stderr.
        writes: Files (relative to the temporary folder) the run adds; nothing else may change.
        stdout: Regex stdout must match, when given.
        prefix: Regex the stderr line starts with, when not the one of its exit code.
        full_disk: Run ``python -m flareseg`` in a subprocess whose writes fail past :data:`FULL_DISK_BYTES`.
    """

    build: Callable[[Path, Path], list]
    code: int
    stderr: str | None
    writes: tuple[str, ...] = ()
    stdout: str | None = None
    prefix: str | None = None
    full_disk: bool = False


PREFIXES = {0: r"flareseg: warning: ", 1: r"flareseg: error: ", 2: r"flareseg [\w -]+: error: argument "}


def row(build, code, stderr, *, bug: str | None = None, skip: tuple[bool, str] = (False, ""), **more):
    """A table row; ``bug`` marks one whose expectation flareseg does not meet (yet), saying how it fails."""
    marks = [pytest.mark.skipif(skip[0], reason=skip[1])]
    if bug:
        marks.append(pytest.mark.xfail(strict=True, reason=bug))
    return pytest.param(Row(build, code, stderr, **more), id=build.__name__, marks=marks)


ROWS = [
    # Silent corruption: a full disk.
    row(full_disk_convert, 1, r"ct\.nii\.gz: cannot write \(disk full\? wrote only \d+ of 5520256 bytes\)",
        full_disk=True),
    row(full_disk_predict, 1, r"mask\.nii: cannot write \(disk full\? wrote only \d+ of 369660 bytes\)",
        full_disk=True),
    # Input destroyed.
    row(output_is_the_input_file, 1, r"ct\.nii\.gz: the output is the input .*; write it elsewhere"),
    row(output_is_a_link_to_the_input, 1, r"link\.nii\.gz: the output is the input .*ct\.nii\.gz"),
    row(output_is_the_input_folder, 1, r"scans: the output is the input .*scans"),
    row(output_inside_the_dicom_folder, 1, r"mask\.nii\.gz: the output lies inside the input folder .*series"),
    row(output_folder_inside_the_dicom_folder, 1, r"masks: the output lies inside the input folder .*series"),
    row(listed_scan_whose_mask_is_itself, 1, r"^failed: case\.nii\.gz: its mask .* would overwrite an input scan$",
        prefix=r"failed: ", writes=("out/summary.json", "out/manifest.csv")),
    row(convert_canonical_onto_its_input, 1, r"the output is the input"),
    # Wrong grid.
    row(dicom_two_slices_at_one_position, 1, r"1 DICOM slice\(s\) at the same position as another"),
    row(dicom_missing_slices, 1, r"missing DICOM slices: a gap of 8 mm after slice 8 of 17 \(the others are 2 mm"),
    row(dicom_slice_spacing_changes_midway, 1, r"DICOM slice distances vary from 2 to 2\.9 mm"),
    row(dicom_mixed_orientation, 1, r"DICOM slices of different orientations in one series"),
    row(dicom_mixed_pixel_spacing, 1, r"different in-plane grids in one series \(512x512 at 0\.7 x 0\.7 mm: 10 slice"),
    row(dicom_slice_of_another_size, 1, r"DICOM slices of different in-plane grids in one series"),
    row(dicom_orientation_not_orthogonal, 1, r"ImageOrientationPatient .* is not two orthogonal unit vectors"),
    row(dicom_orientation_zero, 1, r"ImageOrientationPatient \[0\.0, 0\.0, 0\.0, 0\.0, 0\.0, 0\.0\] is not two orthogonal"),
    row(dicom_two_acquisitions, 1, r"holds 2 acquisitions over the same slice range .*; choose one with --acquisition"),
    row(dicom_acquisition_that_is_not_there, 1, r"no acquisition 3; the series holds 2"),
    row(dicom_two_ct_series, 1, r"holds 2 CT series .*; give one series per folder"),
    row(dicom_series_split_by_uid, 1, r"holds 2 CT series .*series 99 'CT Body 3\.0': 10 slices"),
    row(dicom_truncated_slice, 1, r"series: unreadable or corrupt image"),
    row(dicom_files_that_are_not_dicom, 1, r"no DICOM series found in this folder"),
    row(dicom_same_file_twice, 0, r"series: 1 duplicate DICOM file\(s\) read once \(again\.dcm = CT\.",
        writes=("ct.nii.gz",), stdout=r"512x512x20 voxels"),
    row(dicom_same_file_twice_predict, 0, r"series: 1 duplicate DICOM file\(s\) read once \(again\.dcm = CT\.",
        writes=("mask.nii.gz",)),
    # Garbage as CT.
    row(label_map_totalsegmentator, 1, r"not a CT scan: only \d+ distinct integer values, 0\.\.117 \(a label map\?\)"),
    row(label_map_flare, 1, r"not a CT scan: values span only 0\.\.13"),
    row(hu_plus_1024, 1, r"not a CT scan: no air, lung or fat .*HU\+1024.*\(use --force"),
    row(hu_plus_1024_forced, 0, None, writes=("ct.nii.gz",), stdout=r"^wrote .*ct\.nii\.gz \(122x101x30 voxels"),
    row(dicom_without_rescale, 1, r"not a CT scan: no air, lung or fat .*HU\+1024"),
    row(intensities_times_a_million, 1, r"not a CT scan: values reach .* far outside any Hounsfield range"),
    row(nifti_pixdim_zero, 1, r"voxel spacing 3x3x0 mm in the NIfTI header \(pixdim\) is zero, negative or not a"),
    row(nifti_pixdim_negative, 1, r"voxel spacing 3x3x-3 mm in the NIfTI header \(pixdim\) is zero, negative"),
    row(nifti_pixdim_nan, 1, r"voxel spacing 3x3xnan mm in the NIfTI header \(pixdim\)"),
    row(nifti_qform_nan, 1, r"the NIfTI header's qform holds NaN or infinity"),
    row(spacing_25_mm, 1, r"25 mm is too coarse for a CT .*\(use --force if the spacing is right\)"),
    row(spacing_25_mm_forced, 0, None, writes=("ct.nii.gz",), stdout=r"25x25x25 mm"),
    row(spacing_in_metres, 1, r"0\.003 mm is too fine for a CT .*metres instead of mm"),
    row(mha_spacing_negative_reads_as_a_flip, 0, None, writes=("ct.nii.gz",), stdout=r"3x3x3 mm, RPS\)"),
    row(mha_spacing_nan, 1, r"nan\.mha: unreadable or corrupt image \(.*spacing"),
    row(mha_direction_sheared, 1, r"direction cosines are not orthonormal"),
    row(constant_image, 1, r"not a CT scan: values span only -1000\.\.-1000"),
    row(nan_voxels_mha, 1, r"nan\.mha: voxel values include NaN or infinity"),
    row(nan_voxels_nrrd_forced, 1, r"nan\.nrrd: voxel values include NaN or infinity"),
    row(image_2d, 1, r"image is 2D \(122x101\); flareseg needs a 3D volume"),
    row(image_one_slice_thick, 1, r"image is 2D \(122x101x1\)"),
    row(image_4d, 1, r"image is 4D \(122x101x30x2\)"),
    row(image_rgb, 1, r"image has 3 channels per voxel; expected a single-channel CT"),
    row(truncated_nii_gz, 1, r"cut\.nii\.gz: truncated file \(\d+ of 5520608 bytes\)"),
    row(truncated_nii, 1, r"cut\.nii: truncated file"),
    row(truncated_nrrd, 1, r"cut\.nrrd: unreadable or corrupt image"),
    row(truncated_nii_gz_info, 1, r"cut\.nii\.gz: truncated file"),
    row(garbage_named_nii_gz, 1, r"noise\.nii\.gz: not a gzip-compressed NIfTI file"),
    row(gzipped_garbage_named_nii_gz, 1, r"noise\.nii\.gz: not a NIfTI file \(bad header\)"),
    row(empty_file, 1, r"empty\.nii\.gz: empty file"),
    row(unsupported_suffix, 1, r"ct\.png: unsupported file type"),
    row(dicom_of_another_modality, 1, r"DICOM series of modality MR, not CT"),
    # Folder mode (the name collision of case_0000.nii.gz and case.nii.gz: a test of its own below).
    row(dicom_folder_holding_an_nrrd, 0, None, writes=("ct.nii.gz",), stdout=r"512x512x20 voxels"),
    row(dicom_folder_holding_an_nrrd_info, 0, None, stdout=r"^\S*series: 512x512x20 voxels"),
    row(folder_without_scans, 1, r"scans: no CT files"),
    row(list_file_of_binary_bytes, 1, r"scans\.txt: cannot read the list of inputs"),
    row(list_file_naming_a_missing_scan, 1, r"^failed: missing_0000\.nii\.gz: .*: no such file or folder$",
        prefix=r"failed: ", writes=("out/summary.json", "out/manifest.csv")),
    # evaluate and train refuse.
    row(evaluate_gt_of_117_classes, 1, r"gt/ts\.nii\.gz: not a FLARE label map: values 0\.\.117"),
    row(evaluate_ct_as_gt, 1, r"gt/ts\.nii\.gz: not a FLARE label map"),
    row(evaluate_prediction_on_another_grid, 1, r"ts: prediction does not overlay the ground truth"),
    row(evaluate_out_is_a_file, 1, r"scores"),
    row(evaluate_scores_csv_is_a_folder, 1, r"scores\.csv"),
    row(evaluate_threads_negative, 2, r"argument --threads"),
    row(evaluate_threads_zero, 2, r"argument --threads"),
    row(train_on_an_undeclared_label, 1,
        r"Dataset001: dataset has 1 error\(s\); first: ts: unknown label value\(s\) \[200\]", stdout=r"^training "),
    row(dataset_check_undeclared_label, 1, None, stdout=r"ERROR ts: unknown label value\(s\) \[200\]"),
    row(train_on_a_truncated_image, 1, r"ts_0000\.nii\.gz: truncated file"),
    row(dataset_check_truncated_image, 1, None, stdout=r"truncated"),
    row(train_lr_negative, 2, r"argument --lr: must be a positive number, got -1"),
    row(train_threads_zero, 2, r"argument --threads: must be at least 1, got 0"),
    row(train_recipe_yaml_corrupt, 1, r"recipe\.yaml: cannot read recipe"),
    row(train_recipe_stages_a_number, 1, r"recipe\.yaml: .*stages"),
    row(train_recipe_not_text, 1, r"recipe\.yaml: cannot read recipe"),
    # Tracebacks -> one line.
    row(model_json_corrupt, 1, r"model/model\.json: unreadable model description"),
    row(model_json_a_list, 1, r"model: model format None is not 1"),
    row(recipe_yaml_corrupt, 1, r"model/recipe\.yaml: unreadable recipe"),
    row(recipe_yaml_network_a_number, 1, r"model/recipe\.yaml: network: expected a mapping, got 3"),
    row(recipe_yaml_stages_a_number, 1, r"model/recipe\.yaml: .*stages"),
    row(onnx_truncated, 1, r"model/coarse\.onnx: unreadable ONNX network"),
    row(onnx_truncated_unrecorded, 1, r"model: coarse\.onnx changed after it was exported; run `flareseg export-onnx"),
    row(onnx_json_corrupt, 1, r"model/onnx\.json: unreadable ONNX export record"),
    row(weights_truncated, 1, r"model/small\.pt: unreadable weights for stage 'small'"),
    row(weights_of_another_shape, 1, r"model/coarse\.pt: weights do not fit .*\('head\.weight' is 5x8x1x1x1"),
    row(weights_of_another_shape_backend_auto, 1, r"model/coarse\.pt: weights do not fit"),
    row(model_folder_missing, 1, r"no_model: not a flareseg model directory"),
    row(device_banana, 2, r"argument --device: expected cpu, cuda, cuda:N or auto, got 'banana'"),
    row(device_cuda, 2, r"argument --device: cuda: no CUDA device is available",
        skip=(HAS_CUDA, "a CUDA device is here")),
    row(backend_onnx_on_cuda, *((1, r"--backend onnx runs on the CPU only") if HAS_CUDA else
                                (2, r"argument --device: cuda: no CUDA device is available"))),
    row(threads_negative, 2, r"argument --threads: must be at least 1, got -3"),
    row(threads_zero, 2, r"argument --threads: must be at least 1, got 0"),
    row(read_only_output_folder, 1, r"locked/ct\.nii\.gz: cannot write \(",
        skip=(AS_ROOT, "root writes into a read-only folder")),
    row(convert_output_is_a_folder, 1, r"ct\.nii\.gz: cannot write \(Is a directory\)"),
    row(convert_output_under_a_file, 1, r"ct_in\.nii\.gz: cannot create output folder"),
    row(convert_to_png, 1, r"ct\.png: cannot write this file type"),
    row(dataset_check_json_is_a_folder, 1, r"report\.json"),
    row(dataset_json_truncated, 1, r"dataset\.json: not valid JSON"),
    row(dataset_labels_a_number, 1, r"dataset\.json: 'channel_names' and 'labels' must be JSON objects"),
    row(dataset_num_training_text, 1, r"dataset\.json: .*numTraining"),
    row(dataset_file_ending_a_number, 1, r"dataset\.json: .*file_ending"),
    row(dataset_annotated_classes_a_list, 1, r"dataset\.json: .*annotated_classes"),
    row(dataset_annotated_classes_of_a_number, 1, r"dataset\.json: .*annotated_classes"),
    row(dataset_unlabelled_a_number, 1, r"dataset\.json: .*unlabelled"),
    row(dataset_label_mapping_a_number, 1, r"dataset\.json: 'label_mapping' must map label names"),
    # Quiet inconsistencies.
    row(canonical_of_an_oblique_scan, 1, r"oblique grid \(12° from the body axes\) cannot be made canonical"),
    row(dicom_seg_of_a_nifti, 1, r"--output-type dicom_seg needs a DICOM series folder as input"),
    row(rtstruct_of_a_nifti, 1, r"--output-type rtstruct needs a DICOM series folder as input"),
    row(dicom_seg_not_named_dcm, 1, r"mask\.nii\.gz: a dicom_seg output is a DICOM file; name it \*\.dcm"),
    row(rtstruct_not_named_dcm, 1, r"mask: a rtstruct output is a DICOM file; name it \*\.dcm"),
    row(nifti_mask_named_dcm, 1, r"mask\.dcm: cannot write this file type"),
    row(acquisition_of_a_nifti, 1, r"--acquisition chooses within one DICOM series"),
    row(acquisition_of_a_nifti_convert, 1, r"acquisition 2 chosen, but this is an image file, not a DICOM folder"),
]


# --- Running a row --------------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    """Every file, folder and link under ``root``: relative path -> sha256, ``dir`` or the link's target."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[key] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _limit_writes():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES))


def _run(argv: list[str], full_disk: bool, capsys) -> tuple[int | str, str, str]:
    """Exit code (``"traceback"`` for an exception), stdout and stderr of ``flareseg ARGV``."""
    if full_disk:
        done = subprocess.run([sys.executable, "-m", "flareseg", *argv], preexec_fn=_limit_writes,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        ours = [line for line in done.stderr.splitlines() if not ITK_NATIVE_LINE.match(line)]
        return done.returncode, done.stdout, "\n".join(ours)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    except Exception as error:  # noqa: BLE001 - a traceback is one of the things looked for
        out, err = capsys.readouterr()
        return "traceback", out, f"{err}Traceback: {type(error).__name__}: {error}"
    out, err = capsys.readouterr()
    return code, out, err


def _message_lines(err: str) -> list[str]:
    """stderr's non-empty lines without argparse's usage block (``usage: ...`` and its indented lines)."""
    lines = [line for line in err.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage: "):
        lines = lines[1:]
        while lines and lines[0].startswith(" "):
            lines = lines[1:]
    return lines


@pytest.mark.parametrize("case", ROWS)
def test_malformed_input(case: Row, tmp_path, data_dir, capsys):
    argv = [str(arg) for arg in case.build(tmp_path, data_dir)]
    before = _snapshot(tmp_path)
    code, out, err = _run(argv, case.full_disk, capsys)
    after = _snapshot(tmp_path)

    assert "Traceback" not in err, err
    assert code == case.code, err
    lines = _message_lines(err)
    if case.stderr is None:
        assert lines == [], err
    else:
        assert len(lines) == 1, err
        assert re.match(case.prefix or PREFIXES[code], lines[0]), lines[0]
        assert re.search(case.stderr, lines[0]), lines[0]
    if case.stdout is not None:
        assert re.search(case.stdout, out, re.M), out
    assert not [name for name in after if ".partial" in name], sorted(after)
    assert [name for name in before if after.get(name) != before[name]] == [], "an input changed or vanished"
    added, writes = set(after) - set(before), set(case.writes)
    folders = {parent.as_posix() for name in writes for parent in Path(name).parents} - {"."}
    assert writes <= added and added - writes <= folders, f"added {sorted(added)}, expected {sorted(writes)}"


def test_two_scans_that_would_write_one_mask_both_fail_before_they_are_read(data_dir, tmp_path, capsys):
    """``case_0000.nii.gz`` and ``case.nii.gz`` would both write ``case.nii.gz``: both fail, before
    either is read (so truncated copies do), and no model is loaded; only summary.json is written."""
    for name in ("case_0000.nii.gz", "case.nii.gz"):
        _truncate(_copy(data_dir / CT_SM, tmp_path / "scans" / name), 0.01)
    before = _snapshot(tmp_path)
    code, out, err = _run(["predict", "-i", str(tmp_path / "scans"), "-o", str(tmp_path / "out"), "--quiet"],
                          False, capsys)
    assert code == 1 and out == ""
    assert sorted(err.splitlines()) == [
        "failed: case.nii.gz: case.nii.gz and case_0000.nii.gz would both write case.nii.gz",
        "failed: case_0000.nii.gz: case_0000.nii.gz and case.nii.gz would both write case.nii.gz",
    ]
    assert set(_snapshot(tmp_path)) - set(before) == {"out", "out/summary.json", "out/manifest.csv"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (0, 2)
    assert {case["error"].split(" would both write ")[1] for case in summary["cases"]} == {"case.nii.gz"}
