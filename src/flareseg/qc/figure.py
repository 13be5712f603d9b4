"""The one-page ``qc.png``: organ volumes across the cohort, and views of the worst flagged cases.

Top: per organ, the volume of every case that has it (log scale), as a box plot with the cases as
jittered points; flagged cases are red crosses labelled with their name, organs flagged missing
red triangles at the bottom, and the plausible adult range (:mod:`flareseg.qc.ranges`) a grey bar.
Bottom: axial and coronal slices (the display of :mod:`flareseg.inference.preview`: radiological
orientation, soft-tissue window, the same organ colours) of the worst flagged cases, through the
centre of the first flagged organ present (the centre of all organs when none is).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from flareseg.inference.preview import centre_index, class_colour, display_slices, overlay_rgb
from flareseg.io import Volume
from flareseg.io.atomic import atomic_path, output_folder
from flareseg.labels import LABELS
from flareseg.preprocessing.orientation import to_canonical
from flareseg.qc.flags import ranked

#: Size of the page, inches, at :data:`DPI`.
SIZE_IN = (16.0, 10.0)
DPI = 100
#: Views shown per case (axial, coronal).
VIEWS_PER_CASE = 2
_ORGANS = tuple(label for label in LABELS if label.organ)


def case_views(ct: Volume | None, mask: Volume, focus_id: int | None) -> list[tuple]:
    """Axial and coronal display slices of a case (copies, so the volumes can be freed).

    Args:
        ct: The CT on the mask's grid, HU; None shows the organs over black.
        mask: Label map.
        focus_id: Class whose centre the slices pass through; None (or absent): all organs' centre.

    Returns:
        ``[(name, hu, ids, aspect, letters), ...]`` as :func:`~flareseg.inference.preview.display_slices`.
    """
    labels, _ = to_canonical(mask)
    hu = to_canonical(ct)[0] if ct is not None else Volume(np.full(labels.array.shape, -1000, np.int16),
                                                          labels.geometry)
    focus = labels.array == focus_id if focus_id is not None else labels.array
    centre = centre_index(focus if focus.any() else labels.array)
    views = list(display_slices(hu, labels.array, centre))[:VIEWS_PER_CASE]
    return [(name, np.array(image), np.array(ids), aspect, letters) for name, image, ids, aspect, letters in views]


def write_qc_figure(results, worst, path: str | os.PathLike) -> Path:
    """Write :func:`qc_figure` as a PNG, atomically; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    output_folder(path.parent)
    canvas = FigureCanvasAgg(qc_figure(results, worst))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            canvas.print_png(handle)
    return path


def qc_figure(results, worst):
    """The page as a ``matplotlib.figure.Figure`` (:data:`SIZE_IN`).

    Args:
        results: Every :class:`~flareseg.qc.report.CaseQC` of the run.
        worst: The cases to show views of (at most 3 fit), in order.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE_IN, dpi=DPI)
    checked = [result for result in results if result.measures]
    figure.suptitle(f"flareseg qc: {len(checked)} case(s) measured, {sum(bool(r.flags) for r in results)} "
                    "flagged", fontsize=13)
    volume_panel(figure.add_axes((0.05, 0.53, 0.93, 0.39)), checked)
    _organ_legend(figure)
    shown = [result for result in worst if result.views][:3]
    slot = 0.93 / (VIEWS_PER_CASE * 3)
    for column, result in enumerate(shown):
        for index, (name, hu, ids, aspect, _) in enumerate(result.views):
            axes = figure.add_axes((0.05 + (column * VIEWS_PER_CASE + index) * slot, 0.1, slot * 0.96, 0.3))
            axes.imshow(overlay_rgb(hu, ids), aspect=aspect, interpolation="antialiased")
            axes.set_axis_off()
            axes.set_title(f"{result.case}: {name}", fontsize=9)
        text = "; ".join(flag.message for flag in ranked(result.flags))
        figure.text(0.05 + column * VIEWS_PER_CASE * slot, 0.085, "\n".join(textwrap.wrap(text, 75)[:6]),
                    fontsize=7, va="top", color="darkred")
    return figure


def flagged_organs(result) -> set[str]:
    """Organs that carry a flag in a case."""
    return {organ for flag in result.flags for organ in flag.organs}


def volume_panel(axes, results) -> None:
    """Per-organ volume strip and box plots across ``results`` (cases with measures), log scale."""
    from matplotlib.patches import Rectangle

    from flareseg.qc.ranges import volume_range

    jitter = np.random.default_rng(0)
    missing = []
    lowest, highest = np.inf, 1.0
    for x, label in enumerate(_ORGANS, start=1):
        plausible = volume_range(label.name)
        if plausible:
            axes.add_patch(Rectangle((x - 0.35, plausible.low_ml), 0.7, plausible.high_ml - plausible.low_ml,
                                     color="0.88", zorder=0))
            lowest, highest = min(lowest, plausible.low_ml), max(highest, plausible.high_ml)
        points = [(r.measures[label.name].volume_ml, label.name in flagged_organs(r), r.case) for r in results
                  if label.name in r.measures and r.measures[label.name].present]
        missing += [(x, r.case) for r in results for f in r.flags if f.kind == "missing" and f.code == label.name]
        if not points:
            continue
        volumes = np.array([p[0] for p in points])
        lowest, highest = min(lowest, volumes.min()), max(highest, volumes.max())
        if len(points) >= 3:
            axes.boxplot([volumes], positions=[x], widths=0.5, showfliers=False, manage_ticks=False)
        offsets = x + jitter.uniform(-0.15, 0.15, len(points))
        for (volume, flagged, case), offset in zip(points, offsets):
            axes.scatter([offset], [volume], s=40 if flagged else 12, c="red" if flagged else "black",
                         marker="x" if flagged else "o", zorder=3)
            if flagged:
                axes.annotate(case, (offset, volume), fontsize=6, color="red", xytext=(3, 2),
                              textcoords="offset points")
    floor = (lowest if np.isfinite(lowest) else 1.0) / 4
    for k, (x, case) in enumerate(missing):
        stacked = sum(other == x for other, _ in missing[:k])  # labels of one organ stacked upwards
        axes.scatter([x], [floor * 1.3], marker="v", c="red", s=40, zorder=3)
        axes.annotate(f"{case} (missing)", (x, floor * 1.3), fontsize=6, color="red", xytext=(5, 2 + 8 * stacked),
                      textcoords="offset points")
    axes.set_yscale("log")
    axes.set_ylim(floor, highest * 2)
    axes.set_xlim(0.4, len(_ORGANS) + 0.6)
    axes.set_xticks(range(1, len(_ORGANS) + 1))
    axes.set_xticklabels([label.name.replace("_", " ") for label in _ORGANS], rotation=20, fontsize=8)
    axes.set_ylabel("volume (mL, log scale)")
    axes.set_title("organ volumes (grey: plausible adult range, docs/qc.md; red: flagged)", fontsize=10)


def _organ_legend(figure) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.asarray(class_colour(label.id)) / 255, label=label.name.replace("_", " "))
               for label in _ORGANS]
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.415), ncol=7, fontsize=7,
                  frameon=False)
