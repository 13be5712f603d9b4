"""A PNG preview of a segmentation: axial, coronal and sagittal views with a coloured overlay.

The views pass through the centroid of all foreground voxels (the CT's centre for an empty
mask), in radiological orientation whatever the file's: axial with the patient's right on
the image's left and anterior up; coronal and sagittal with superior up (sagittal: anterior
left). Pixels keep physical proportions (the voxel spacing sets the aspect). Each class has
a fixed colour (:data:`CLASS_COLOURS`), blended over the windowed CT with opacity :data:`ALPHA`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flareseg.errors import InputError
from flareseg.io import Volume
from flareseg.io.atomic import atomic_path, output_folder
from flareseg.labels import label_name
from flareseg.preprocessing.orientation import align_to, to_canonical

#: RGB (0-255) of each FLARE class id; the same organ has the same colour in every preview.
CLASS_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (245, 130, 48),  # liver: orange
    2: (255, 225, 25),  # right kidney: yellow
    3: (145, 30, 180),  # spleen: purple
    4: (250, 150, 200),  # pancreas: pink
    5: (230, 25, 75),  # aorta: red
    6: (0, 130, 200),  # inferior vena cava: blue
    7: (0, 255, 0),  # right adrenal gland: bright green
    8: (128, 128, 0),  # left adrenal gland: olive
    9: (170, 240, 40),  # gallbladder: lime
    10: (150, 150, 255),  # esophagus: periwinkle
    11: (0, 0, 255),  # stomach: deep blue
    12: (0, 200, 120),  # duodenum: sea green
    13: (60, 180, 75),  # left kidney: green
    14: (255, 0, 255),  # lesion: magenta
}
#: Colour of an id outside the FLARE map.
OTHER_COLOUR = (255, 255, 255)
#: Opacity of the overlay: a labelled pixel is ``ALPHA * colour + (1 - ALPHA) * grey``.
ALPHA = 0.4
#: Soft-tissue window (level, width) in HU: -160 HU is black, 240 HU white.
WINDOW_HU = (40.0, 400.0)
#: Size of the PNG, in pixels (width, height).
SIZE_PX = (1500, 550)
_DPI = 100
_BACKGROUND = "#202020"
_UNSHOWN = "#8c8c8c"


def write_preview(ct: Volume, mask: Volume, path: str | os.PathLike) -> Path:
    """Write a PNG preview of ``mask`` over ``ct`` (see :func:`preview_figure`).

    The PNG appears complete or not at all (:func:`flareseg.io.atomic.atomic_path`).

    Args:
        ct: The CT, HU.
        mask: Class ids on the CT's grid, in any axis order and flips of it.
        path: The ``.png`` to write; its folder is created.

    Returns:
        The written path.

    Raises:
        InputError: ``path`` is not a ``.png``, or it or its folder cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: a preview is written as .png")
    canvas = _canvas(preview_figure(ct, mask))
    output_folder(path.parent)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            canvas.print_png(handle)
    return path


def preview_figure(ct: Volume, mask: Volume):
    """The preview as a ``matplotlib.figure.Figure`` of :data:`SIZE_PX`: three panels side by side
    (axial, coronal, sagittal) and, at the right, a legend of the classes in the mask.

    Raises:
        GeometryError: ``mask`` is not on the CT's grid.
    """
    from matplotlib.figure import Figure

    canonical, _ = to_canonical(ct)
    labels, _ = to_canonical(align_to(mask, ct.geometry))
    centre = centre_index(labels.array)
    figure = Figure(figsize=(SIZE_PX[0] / _DPI, SIZE_PX[1] / _DPI), dpi=_DPI, facecolor=_BACKGROUND)
    shown = set()
    for column, (name, hu, ids, aspect, letters) in enumerate(display_slices(canonical, labels.array, centre)):
        axes = figure.add_axes((0.01 + column * 0.275, 0.03, 0.26, 0.88))
        axes.imshow(overlay_rgb(hu, ids), aspect=aspect, interpolation="antialiased")
        _decorate(axes, name, letters)
        shown.update(np.unique(ids).tolist())
    _legend(figure, present_ids(labels.array), shown)
    return figure


def centre_index(labels: np.ndarray) -> tuple[int, int, int]:
    """Voxel ``[z, y, x]`` nearest the centroid of the non-zero voxels, or the array's centre."""
    foreground = labels != 0
    total = int(np.count_nonzero(foreground))
    if total == 0:
        return tuple(n // 2 for n in labels.shape)  # type: ignore[return-value]
    centre = []
    for axis in range(3):
        counts = np.count_nonzero(foreground, axis=tuple(a for a in range(3) if a != axis))
        centre.append(int(round(float(np.dot(np.arange(labels.shape[axis]), counts)) / total)))
    return tuple(centre)  # type: ignore[return-value]


def display_slices(ct: Volume, labels: np.ndarray, centre: tuple[int, int, int]):
    """The three display slices of a canonical (LPS) CT and its label array.

    Yields:
        ``(name, hu, ids, aspect, letters)``: 2D HU and label slices ``[row, column]`` as shown
        (row 0 at the top), the aspect (row spacing / column spacing) and the orientation
        letters at the (left, right, top, bottom) edges.
    """
    z, y, x = centre
    dz, dy, dx = ct.geometry.spacing_zyx_mm
    hu = ct.array
    yield "axial", hu[z], labels[z], dy / dx, "RLAP"
    yield "coronal", hu[::-1, y], labels[::-1, y], dz / dx, "RLSI"
    yield "sagittal", hu[::-1, :, x], labels[::-1, :, x], dz / dy, "APSI"


def overlay_rgb(hu: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A 2D HU slice in the soft-tissue window with each class blended in its colour.

    Returns:
        uint8 RGB image, shape ``hu.shape + (3,)``.
    """
    level, width = WINDOW_HU
    grey = np.clip((hu.astype(np.float32) - (level - width / 2)) / width, 0.0, 1.0) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for label_id in np.unique(ids):
        if label_id != 0:
            where = ids == label_id
            rgb[where] = ALPHA * np.asarray(class_colour(int(label_id)), np.float32) + (1 - ALPHA) * rgb[where]
    return np.rint(rgb).astype(np.uint8)


def class_colour(label_id: int) -> tuple[int, int, int]:
    """RGB (0-255) of a class id: :data:`CLASS_COLOURS`, or :data:`OTHER_COLOUR` outside the FLARE map."""
    return CLASS_COLOURS.get(label_id, OTHER_COLOUR)


def present_ids(labels: np.ndarray) -> list[int]:
    """The non-zero class ids in a label array, ascending."""
    return [int(i) for i in np.unique(labels) if i != 0]


def _decorate(axes, name: str, letters: str) -> None:
    """Title, and the orientation letters inside the (left, right, top, bottom) edges."""
    axes.set_axis_off()
    axes.set_title(name, color="white", fontsize=12)
    style = dict(transform=axes.transAxes, color="white", fontsize=9)
    axes.text(0.01, 0.5, letters[0], ha="left", va="center", **style)
    axes.text(0.99, 0.5, letters[1], ha="right", va="center", **style)
    axes.text(0.5, 0.99, letters[2], ha="center", va="top", **style)
    axes.text(0.5, 0.01, letters[3], ha="center", va="bottom", **style)


def _legend(figure, ids: list[int], shown: set[int]) -> None:
    """Legend of ``ids``; names of classes that no panel cuts are grey, with a note saying so."""
    from matplotlib.patches import Patch

    if not ids:
        return
    handles = [Patch(facecolor=np.asarray(class_colour(i)) / 255, label=f"{i} {label_name(i).replace('_', ' ')}")
               for i in ids]
    legend = figure.legend(handles=handles, loc="center left", bbox_to_anchor=(0.835, 0.5), frameon=False,
                           labelcolor="white", fontsize=10)
    for label_id, text in zip(ids, legend.get_texts()):
        if label_id not in shown:
            text.set_color(_UNSHOWN)
    if not shown.issuperset(ids):
        figure.text(0.84, 0.03, "grey: not in these slices", color=_UNSHOWN, fontsize=9)


def _canvas(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return FigureCanvasAgg(figure)
