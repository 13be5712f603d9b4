"""Writing: exact geometry round trips in every format, and atomic outputs."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.errors import InputError
from flareseg.io import read_ct, read_volume, write_labelmap, write_volume

nib = pytest.importorskip("nibabel")

REAL_SCANS = [
    "ts_example/example_ct.nii.gz",  # RAS
    "ts_example/example_ct_dicom.nii.gz",  # LPS
    "ts_example/extra_aorta_report_crop/ct_cropped.nii.gz",  # LPS, 1.5 mm
    "ts_example/flare_labels_dicom_from_v2fast.nii.gz",  # LAS label map
    "pyradiomics_lung/lung1_image.nrrd",
    "dcmqi_ct3slice/liver_seg.nrrd",
]


@pytest.mark.parametrize("source", REAL_SCANS)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_voxels_and_geometry(data_dir, tmp_path, source, suffix):
    volume = read_volume(data_dir / source)
    out = write_volume(volume, tmp_path / f"copy{suffix}")
    again = read_volume(out)
    np.testing.assert_array_equal(again.array, volume.array)
    assert again.array.dtype == volume.array.dtype
    np.testing.assert_allclose(again.geometry.index_to_lps_matrix(), volume.geometry.index_to_lps_matrix(), atol=1e-4)


@pytest.mark.parametrize("source", [s for s in REAL_SCANS if ".nii" in s])
def test_nifti_mask_affine_equals_input_affine(data_dir, tmp_path, source, rng):
    """A prediction-shaped uint8 array written with the input geometry overlays the input."""
    path = data_dir / source
    ct = read_volume(path)
    prediction = rng.integers(0, 15, size=ct.array.shape, dtype=np.uint8)
    out = write_labelmap(prediction, ct.geometry, tmp_path / "mask.nii.gz")
    written, original = nib.load(out), nib.load(path)
    assert written.shape == original.shape
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(original.affine)
    # Voxel [i, j, k] of the mask is voxel [i, j, k] of the prediction (nibabel order is x, y, z).
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), prediction.transpose(2, 1, 0))


def test_dicom_input_mask_overlays_reference_conversion(data_dir, tmp_path):
    ct = read_ct(data_dir / "ts_example" / "example_ct_dicom")
    out = write_labelmap(np.zeros(ct.array.shape, np.uint8), ct.geometry, tmp_path / "mask.nii.gz")
    reference = nib.load(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    np.testing.assert_allclose(nib.load(out).affine, reference.affine, atol=1e-4)


def test_failed_write_leaves_no_file_and_keeps_previous_output(data_dir, tmp_path, monkeypatch):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    target = tmp_path / "mask.nii.gz"
    target.write_bytes(b"previous result")

    def write_then_fail(image, path, useCompression=False):
        with open(path, "wb") as partial:
            partial.write(b"half an image")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", write_then_fail)
    with pytest.raises(InputError, match="cannot write"):
        write_labelmap(np.zeros(ct.array.shape, np.uint8), ct.geometry, target)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]


def test_interrupted_write_leaves_no_file(data_dir, tmp_path, monkeypatch):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")

    def interrupted(image, path, useCompression=False):
        with open(path, "wb") as partial:
            partial.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(sitk, "WriteImage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_labelmap(np.zeros(ct.array.shape, np.uint8), ct.geometry, tmp_path / "mask.nii.gz")
    assert not list(tmp_path.iterdir())


def test_labelmap_values_must_fit_uint8(data_dir, tmp_path):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    with pytest.raises(ValueError, match="uint8"):
        write_labelmap(np.full(ct.array.shape, 300), ct.geometry, tmp_path / "mask.nii.gz")
    assert not list(tmp_path.iterdir())


def test_unsupported_output_type_is_an_input_error(data_dir, tmp_path):
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    with pytest.raises(InputError, match="cannot write"):
        write_volume(ct, tmp_path / "mask.png")


# A full disk, for real: the writing process gets a file-size limit, so writes past it fail with
# EFBIG as they would with ENOSPC (ITK's NIfTI writer then only prints "NWAD" and returns).
FULL_DISK_LIMIT = 100_000  # bytes: the header fits, the voxels do not
CT_VOXEL_BYTES = 122 * 101 * 112 * 4  # ts_example/example_ct.nii.gz, int32

_FULL_DISK_SCRIPT = """
import sys
from flareseg.errors import InputError
from flareseg.io import read_volume, write_volume
volume = read_volume(sys.argv[1])
for out in sys.argv[2:]:
    try:
        write_volume(volume, out)
        print("written", out)
    except InputError as error:
        print(error)
"""


def _with_file_size_limit(limit):
    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def _bytes_written(message, target):
    """N of a one-line ``TARGET: cannot write (disk full? wrote only N of M bytes)``, M the CT's voxel bytes."""
    found = re.fullmatch(rf"{re.escape(str(target))}: cannot write \(disk full\? wrote only (\d+) of "
                         rf"{CT_VOXEL_BYTES} bytes\)", message)
    assert found, message
    return int(found.group(1))


def _run_limited(args, limit=FULL_DISK_LIMIT):
    return subprocess.run([sys.executable, *args], preexec_fn=_with_file_size_limit(limit), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_convert_on_a_full_disk_fails_in_one_line_and_leaves_nothing(data_dir, tmp_path, suffix, existing):
    target = tmp_path / f"out{suffix}"
    if existing:
        target.write_bytes(b"previous result")
    done = _run_limited(["-m", "flareseg", "convert", "-i", str(data_dir / "ts_example" / "example_ct.nii.gz"),
                         "-o", str(target)])
    assert done.returncode == 1, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("flareseg")]  # ITK may print its own line
    assert len(ours) == 1 and ours[0].startswith("flareseg: error: ")
    assert _bytes_written(ours[0].removeprefix("flareseg: error: "), target) < CT_VOXEL_BYTES
    assert "Traceback" not in done.stderr and "wrote" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ([target.name] if existing else [])
    if existing:
        assert target.read_bytes() == b"previous result"


@pytest.mark.parametrize("limit", [0, FULL_DISK_LIMIT])
def test_write_volume_on_a_full_disk_raises_and_keeps_the_previous_file(data_dir, tmp_path, limit):
    targets = [tmp_path / f"out{suffix}" for suffix in (".nii.gz", ".nii", ".nrrd", ".mha")]
    targets[0].write_bytes(b"previous result")
    done = _run_limited(["-c", _FULL_DISK_SCRIPT, str(data_dir / "ts_example" / "example_ct.nii.gz"),
                         *map(str, targets)], limit)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(targets)
    written = [_bytes_written(line, target) for line, target in zip(lines, targets)]
    assert all(n < CT_VOXEL_BYTES for n in written) and (limit or written == [0] * 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    assert targets[0].read_bytes() == b"previous result"


def test_the_same_writes_succeed_without_the_limit(data_dir, tmp_path):
    """The full-disk tests fail because of the limit, not because the subprocess cannot write."""
    target = tmp_path / "out.nii.gz"
    done = _run_limited(["-c", _FULL_DISK_SCRIPT, str(data_dir / "ts_example" / "example_ct.nii.gz"), str(target)],
                        limit=100_000_000)
    assert done.stdout.strip() == f"written {target}", done.stderr
    source = read_volume(data_dir / "ts_example" / "example_ct.nii.gz")
    np.testing.assert_array_equal(read_volume(target).array, source.array)


def test_a_written_file_is_checked_against_the_volume(data_dir, tmp_path, monkeypatch):
    """A writer that returns without error but writes another grid is caught."""
    ct = read_ct(data_dir / "ts_example" / "example_ct_sm.nii.gz")
    real_write = sitk.WriteImage

    def shifted(image, path, useCompression=False):
        image = sitk.Image(image)
        image.SetOrigin(tuple(v + 1.0 for v in image.GetOrigin()))
        real_write(image, path, useCompression)

    monkeypatch.setattr(sitk, "WriteImage", shifted)
    with pytest.raises(InputError, match="its header reads back as"):
        write_volume(ct, tmp_path / "ct.nrrd")
    assert not list(tmp_path.iterdir())
