"""Segmentation previews on real scans: orientation, physical proportions, fixed colours, atomic writes."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.image import imread

from flareseg.errors import GeometryError, InputError
from flareseg.inference.preview import (
    ALPHA,
    CLASS_COLOURS,
    SIZE_PX,
    centre_index,
    overlay_rgb,
    preview_figure,
    write_preview,
)
from flareseg.io import Volume, read_ct, read_volume
from flareseg.labels import LABELS

LIVER, RIGHT_KIDNEY, SPLEEN, ESOPHAGUS, LESION = 1, 2, 3, 10, 14
TOLERANCE = 3 / 255  # PNG rounding and the blend's own rounding


def flip(volume: Volume, array_axes: tuple[int, ...]) -> Volume:
    """The same image stored with the given array axes reversed (origin and direction computed by hand)."""
    geometry = volume.geometry
    origin = np.asarray(geometry.origin_lps_mm)
    direction = geometry.direction_matrix.copy()
    for axis in array_axes:
        index_axis = 2 - axis
        extent_mm = geometry.spacing_xyz_mm[index_axis] * (geometry.shape_zyx[axis] - 1)
        origin = origin + direction[:, index_axis] * extent_mm
        direction[:, index_axis] *= -1
    flipped = replace(geometry, origin_lps_mm=tuple(origin.tolist()),
                      direction_lps=tuple(tuple(row) for row in direction.tolist()))
    return Volume(np.ascontiguousarray(np.flip(volume.array, array_axes)), flipped)


def read_png(path) -> np.ndarray:
    image = imread(path)
    assert image.shape[:2] == (SIZE_PX[1], SIZE_PX[0])
    return image[..., :3]


def blended(image: np.ndarray, label_id: int) -> np.ndarray:
    """Where a pixel is ``ALPHA * colour + (1 - ALPHA) * grey`` for some grey level (bool, image shape)."""
    grey = (image - ALPHA * np.asarray(CLASS_COLOURS[label_id]) / 255) / (1 - ALPHA)
    spread = grey.max(axis=2) - grey.min(axis=2)
    return (spread < TOLERANCE / (1 - ALPHA)) & (grey.min(axis=2) > -TOLERANCE) & (grey.max(axis=2) < 1 + TOLERANCE)


def pure(image: np.ndarray, label_id: int) -> np.ndarray:
    return np.all(np.abs(image - np.asarray(CLASS_COLOURS[label_id]) / 255) < 1.5 / 255, axis=2)


def panel_columns(image: np.ndarray) -> list[tuple[int, int]]:
    """Column ranges ``[start, stop)`` of the drawn regions (anything but the background), left to right."""
    drawn = np.any(np.abs(image - image[0, 0]) > 1e-6, axis=(0, 2))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], drawn.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2]))


@pytest.fixture(scope="module")
def scan(data_dir):
    """The RAS abdomen CT and its FLARE label map (TotalSegmentator v2 fast output)."""
    folder = data_dir / "ts_example"
    return read_ct(folder / "example_ct.nii.gz"), read_volume(folder / "flare_labels_fullct_from_v2fast.nii.gz")


def test_class_colours_are_one_per_flare_class_and_distinguishable():
    assert sorted(CLASS_COLOURS) == [label.id for label in LABELS]
    colours = np.asarray(list(CLASS_COLOURS.values()), dtype=float)
    differences = colours[:, None] - colours[None]
    others = ~np.eye(len(colours), dtype=bool)
    assert np.linalg.norm(differences, axis=2)[others].min() > 70
    # Blended over grey, colours that differ by a grey step look alike: their chroma must differ too.
    chroma = differences - differences.mean(axis=2, keepdims=True)
    assert np.linalg.norm(chroma, axis=2)[others].min() > 50


def test_overlay_blends_documented_alpha_over_soft_tissue_window():
    hu = np.array([[-1000, -160, 40, 240, 3000, 0]])
    ids = np.array([[0, 0, 0, 0, 0, LIVER]])
    rgb = overlay_rgb(hu, ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 6, 3)
    np.testing.assert_array_equal(rgb[0, :5], [[0] * 3, [0] * 3, [128] * 3, [255] * 3, [255] * 3])  # 127.5 -> 128
    # 0 HU is grey 160 / 400 * 255 = 102; liver (245, 130, 48): 0.4 * 245 + 0.6 * 102 = 159.2, ...
    np.testing.assert_array_equal(rgb[0, 5], [159, 113, 80])


def test_centre_is_foreground_centroid_or_array_centre():
    labels = np.zeros((5, 6, 7), np.uint8)
    assert centre_index(labels) == (2, 3, 3)
    labels[1, 1, 1] = LIVER
    labels[3, 5, 1] = SPLEEN
    labels[3, 5, 4] = SPLEEN  # centroid (7/3, 11/3, 2)
    assert centre_index(labels) == (2, 4, 2)


@pytest.mark.parametrize("stored", ["RAS", "LPS", "LPI"])
def test_liver_on_image_left_and_superior_up_whatever_the_file_orientation(scan, tmp_path, stored):
    ct, labels = scan
    axes = {"RAS": (), "LPS": (1, 2), "LPI": (0, 1, 2)}[stored]
    ct, labels = flip(ct, axes), flip(labels, axes)
    assert ct.geometry.orientation_code() == stored
    image = read_png(write_preview(ct, labels, tmp_path / "preview.png"))
    (axial_start, axial_stop), coronal = panel_columns(image)[:2]
    midline = (axial_start + axial_stop) / 2
    liver_columns = np.nonzero(blended(image[:, axial_start:axial_stop], LIVER))[1] + axial_start
    spleen_columns = np.nonzero(blended(image[:, axial_start:axial_stop], SPLEEN))[1] + axial_start
    assert liver_columns.size > 1000 and spleen_columns.size > 100
    # The patient's right is on the image's left (the liver's left lobe may cross the midline).
    assert np.mean(liver_columns) < midline < np.mean(spleen_columns)
    assert np.mean(liver_columns < midline) > 0.8 and np.mean(spleen_columns > midline) > 0.9
    liver_rows = np.nonzero(blended(image[:, slice(*coronal)], LIVER))[0]
    kidney_rows = np.nonzero(blended(image[:, slice(*coronal)], RIGHT_KIDNEY))[0]
    assert liver_rows.size and kidney_rows.size
    assert liver_rows.min() < kidney_rows.min() and np.median(liver_rows) < np.median(kidney_rows)  # superior up


def test_real_lps_scan_with_las_mask(data_dir, tmp_path):
    """The DICOM-converted upper abdomen (LPS) with its mask stored LAS: liver left, spleen right."""
    folder = data_dir / "ts_example"
    ct = read_ct(folder / "example_ct_dicom.nii.gz")
    labels = read_volume(folder / "flare_labels_dicom_from_v2fast.nii.gz")
    assert (ct.geometry.orientation_code(), labels.geometry.orientation_code()) == ("LPS", "LAS")
    image = read_png(write_preview(ct, labels, tmp_path / "preview.png"))
    axial = slice(*panel_columns(image)[0])
    midline = (axial.start + axial.stop) / 2
    liver_columns = np.nonzero(blended(image[:, axial], LIVER))[1] + axial.start
    spleen_columns = np.nonzero(blended(image[:, axial], SPLEEN))[1] + axial.start
    assert liver_columns.size > 1000 and spleen_columns.size > 100
    assert np.mean(liver_columns < midline) > 0.8 and np.mean(spleen_columns > midline) > 0.9


def test_legend_and_colours_only_for_classes_in_the_mask(scan, tmp_path):
    ct, labels = scan
    present = [int(i) for i in np.unique(labels.array) if i]
    assert ESOPHAGUS not in present and LESION not in present  # outside the field of view; no lesion label
    figure = preview_figure(ct, labels)
    names = [text.get_text() for text in figure.legends[0].get_texts()]
    assert names == [f"{label.id} {label.name.replace('_', ' ')}" for label in LABELS if label.id in present]
    image = read_png(write_preview(ct, labels, tmp_path / "preview.png"))
    for label_id in present:
        assert pure(image, label_id).sum() > 50, label_id  # its legend patch
    for label_id in (ESOPHAGUS, LESION):
        assert not pure(image, label_id).any() and not blended(image, label_id).any()


def test_thick_slices_keep_physical_proportions(data_dir, tmp_path):
    """A 100 mm cube in a 0.82 x 0.82 x 5 mm scan (122 x 122 x 20 voxels) is square in every panel."""
    ct = read_ct(data_dir / "tcia_hcc_tace_seg_multiphase" / "hcc005_pre_noncontrast" / "ct.nii.gz")
    dx, dy, dz = ct.geometry.spacing_xyz_mm
    assert dz == pytest.approx(5.0) and dx == pytest.approx(0.82, abs=0.01)
    half = [int(round(50 / s)) for s in (dz, dy, dx)]
    centre = [n // 2 for n in ct.array.shape]
    cube = np.zeros(ct.array.shape, np.uint8)
    cube[tuple(slice(c - h, c + h) for c, h in zip(centre, half))] = LIVER
    image = read_png(write_preview(ct, Volume(cube, ct.geometry), tmp_path / "preview.png"))
    panels = panel_columns(image)
    assert len(panels) >= 3
    for start, stop in panels[:3]:
        rows, columns = np.nonzero(blended(image[:, start:stop], LIVER))
        height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
        assert width > 60 and abs(height - width) <= 0.06 * width, (height, width)  # not 1:6, as voxels


def test_empty_mask_still_writes_a_preview(scan, tmp_path):
    ct, _ = scan
    empty = Volume(np.zeros(ct.array.shape, np.uint8), ct.geometry)
    assert not preview_figure(ct, empty).legends
    image = read_png(write_preview(ct, empty, tmp_path / "preview.png"))
    assert len(panel_columns(image)) >= 3
    assert not any(pure(image, label.id).any() for label in LABELS)


def test_mask_on_another_grid_is_refused(scan, tmp_path):
    ct, labels = scan
    with pytest.raises(GeometryError):
        write_preview(ct, Volume(labels.array[:-1], replace(labels.geometry, shape_zyx=labels.array[:-1].shape)),
                      tmp_path / "preview.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("failure, raised, match", [
    (OSError(28, "No space left on device"), InputError, "cannot write .No space left on device"),
    (KeyboardInterrupt(), KeyboardInterrupt, None),
], ids=["disk_full", "interrupted"])
def test_failed_write_leaves_no_file_and_keeps_previous_preview(scan, tmp_path, monkeypatch, failure, raised, match):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def write_then_fail(self, handle, **kwargs):
        handle.write(b"half a png")
        raise failure

    ct, labels = scan
    target = tmp_path / "preview.png"
    target.write_bytes(b"previous preview")
    monkeypatch.setattr(FigureCanvasAgg, "print_png", write_then_fail)
    with pytest.raises(raised, match=match):
        write_preview(ct, labels, target)
    assert target.read_bytes() == b"previous preview"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]


def test_unwritable_folder_is_an_input_error(scan, tmp_path):
    ct, labels = scan
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InputError, match="cannot create output folder"):
        write_preview(ct, labels, tmp_path / "file" / "preview.png")
    with pytest.raises(InputError, match="written as .png"):
        write_preview(ct, labels, tmp_path / "preview.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.skipif(getattr(os, "geteuid", lambda: 0)() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_an_input_error(scan, tmp_path):
    ct, labels = scan
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write"):
            write_preview(ct, labels, folder / "preview.png")
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o700)
