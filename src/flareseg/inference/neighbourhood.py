"""Where to look for an organ the coarse stage missed: its anatomical neighbours, as data.

:data:`NEIGHBOURHOOD` maps a FLARE class id to its neighbours, from the most to the least
telling locator; the first one found sets the search box. A neighbour's entry takes a part
of the neighbour's bounding box, grows it by a margin in mm, and bounds the result to the
organ's ``max_mm`` per axis (around its centre): resized fine stages lose resolution on
large crops.

Axes are those of the canonical array ``[z, y, x]`` (:mod:`flareseg.preprocessing.orientation`):
towards superior, posterior and the patient's left. A part is a span ``(low, high)`` per axis,
in fractions of the neighbour box's extent: 0 is its inferior, anterior or right end, 1 its
superior, posterior or left end. So the medial half of the right kidney is ``LEFT_HALF`` on x.

The relations are standard topographic anatomy (Gray's Anatomy, 42nd ed., 2020: the posterior
abdominal wall, kidneys and suprarenal glands; the liver and biliary tree; the stomach, duodenum
and pancreas; the abdominal oesophagus; see also Netter, Atlas of Human Anatomy, plates of the
upper abdomen): each suprarenal gland caps the superomedial pole of its kidney, the right one
posterior to the IVC and medial to the liver's bare area, the left one lateral to the aorta and
medial to the spleen; the gallbladder lies in its fossa on the inferior, anterior surface of the
liver, right of the midline, above the duodenum; the abdominal oesophagus joins the cardia, at the
stomach's superomedial, posterior end, anterior and left of the aorta at the hiatus; the pancreatic
head lies in the duodenal C-loop; the kidneys lie posterior to the liver (right) and medial to the
spleen (left). The margins are deliberately generous: a box too large costs little. Each
relation was checked on the organs of a real scan (tests/inference/test_neighbourhood.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from flareseg.preprocessing.crop import Box

Span = tuple[float, float]

WHOLE: Span = (0.0, 1.0)
LOWER_HALF: Span = (0.0, 0.5)  # z: inferior
UPPER_HALF: Span = (0.5, 1.0)  # z: superior
UPPER_THIRD: Span = (2 / 3, 1.0)
ANTERIOR_HALF: Span = (0.0, 0.5)  # y
ANTERIOR_TWO_THIRDS: Span = (0.0, 2 / 3)
POSTERIOR_HALF: Span = (0.5, 1.0)
RIGHT_HALF: Span = (0.0, 0.5)  # x: the patient's right
LEFT_HALF: Span = (0.5, 1.0)
WHOLE_BOX = (WHOLE, WHOLE, WHOLE)


@dataclass(frozen=True)
class Near:
    """Where an organ lies relative to one neighbour.

    Attributes:
        neighbour: The neighbour's FLARE class id.
        part_zyx: The part of the neighbour's bounding box, a span per axis ``[z, y, x]``.
        margin_mm: Growth of that part on every side, in mm.
    """

    neighbour: int
    part_zyx: tuple[Span, Span, Span]
    margin_mm: float


@dataclass(frozen=True)
class Neighbourhood:
    """An organ's neighbours, most telling first, and the largest search box, mm per axis."""

    near: tuple[Near, ...]
    max_mm: float


NEIGHBOURHOOD: dict[int, Neighbourhood] = {
    # liver: over the right kidney's upper pole, around the gallbladder and the IVC
    1: Neighbourhood((Near(2, WHOLE_BOX, 80), Near(9, WHOLE_BOX, 100), Near(6, WHOLE_BOX, 80)), 250),
    # right kidney: posterior and inferior to the right lobe of the liver; right of the IVC
    2: Neighbourhood((Near(1, (LOWER_HALF, POSTERIOR_HALF, RIGHT_HALF), 40), Near(6, WHOLE_BOX, 60)), 160),
    # spleen: above and lateral to the left kidney; posterolateral to the stomach's fundus
    3: Neighbourhood((Near(13, (UPPER_HALF, POSTERIOR_HALF, LEFT_HALF), 60),
                      Near(11, (UPPER_HALF, POSTERIOR_HALF, LEFT_HALF), 80)), 200),
    # pancreas: head in the duodenal C-loop, body behind the stomach
    4: Neighbourhood((Near(12, WHOLE_BOX, 50), Near(11, WHOLE_BOX, 50)), 200),
    # aorta: left of the IVC, behind the pancreas
    5: Neighbourhood((Near(6, WHOLE_BOX, 40), Near(4, WHOLE_BOX, 50)), 250),
    # IVC: right of the aorta, medial to the right kidney
    6: Neighbourhood((Near(5, WHOLE_BOX, 40), Near(2, (WHOLE, WHOLE, LEFT_HALF), 50)), 250),
    # right adrenal gland: on the right kidney's superomedial pole, behind the IVC, medial to the liver
    7: Neighbourhood((Near(2, (UPPER_THIRD, ANTERIOR_TWO_THIRDS, LEFT_HALF), 20),
                      Near(6, (UPPER_HALF, POSTERIOR_HALF, WHOLE), 25),
                      Near(1, ((0.25, 0.75), POSTERIOR_HALF, (0.3, 0.6)), 15)), 100),
    # left adrenal gland: on the left kidney's superomedial pole, left of the aorta, medial to the spleen
    8: Neighbourhood((Near(13, (UPPER_THIRD, ANTERIOR_TWO_THIRDS, RIGHT_HALF), 20),
                      Near(5, (UPPER_HALF, WHOLE, WHOLE), 40),
                      Near(3, (WHOLE, ANTERIOR_HALF, (0.0, 0.3)), 25)), 100),
    # gallbladder: under the liver's inferior, anterior surface, right of the midline; above the duodenum
    9: Neighbourhood((Near(1, (LOWER_HALF, ANTERIOR_HALF, (0.1, 0.6)), 20),
                      Near(12, (UPPER_HALF, ANTERIOR_HALF, RIGHT_HALF), 30)), 120),
    # esophagus: joins the cardia (the stomach's superomedial, posterior end); anterior to the aorta
    10: Neighbourhood((Near(11, (UPPER_THIRD, POSTERIOR_HALF, RIGHT_HALF), 20),
                       Near(5, (UPPER_THIRD, ANTERIOR_HALF, WHOLE), 25)), 100),
    # stomach: in front of the pancreas; anteromedial to the spleen
    11: Neighbourhood((Near(4, WHOLE_BOX, 60), Near(3, (WHOLE, ANTERIOR_HALF, RIGHT_HALF), 80)), 200),
    # duodenum: around the pancreatic head; its second part in front of the right kidney
    12: Neighbourhood((Near(4, (WHOLE, WHOLE, RIGHT_HALF), 40), Near(2, WHOLE_BOX, 50)), 160),
    # left kidney: below, medial to and behind the spleen; left of the aorta
    13: Neighbourhood((Near(3, (LOWER_HALF, POSTERIOR_HALF, RIGHT_HALF), 50), Near(5, WHOLE_BOX, 80)), 160),
}


def search_box(label: int, found: Mapping[int, Box], spacing_zyx_mm, shape_zyx) -> Box | None:
    """The box in which to look for ``label``, from the boxes of the organs found.

    Args:
        label: The FLARE class id sought.
        found: Bounding boxes of the organs found, by class id, on the grid searched.
        spacing_zyx_mm: That grid's voxel size ``[z, y, x]`` in mm.
        shape_zyx: That grid's shape; the box is clipped to it.

    Returns:
        The first found neighbour's part (:data:`NEIGHBOURHOOD`), grown by its margin, cut to
        ``max_mm`` per axis around its centre and clipped to the grid; None when ``label`` has
        no neighbourhood or none of its neighbours was found.
    """
    hood = NEIGHBOURHOOD.get(label)
    near = next((n for n in hood.near if n.neighbour in found), None) if hood else None
    if near is None:
        return None
    box = found[near.neighbour]
    start, stop = [], []
    for a, b, (low, high), s, n in zip(box.start, box.stop, near.part_zyx, spacing_zyx_mm, shape_zyx):
        grow, most = math.ceil(near.margin_mm / s), math.floor(hood.max_mm / s)
        lo = a + math.floor(low * (b - a) + 1e-9) - grow  # the part, widened to whole voxels
        hi = a + math.ceil(high * (b - a) - 1e-9) + grow
        if hi - lo > most:  # the centred window of ``most`` voxels
            lo = (lo + hi - most) // 2
            hi = lo + most
        start.append(max(0, lo))
        stop.append(min(n, hi))
    return Box(tuple(start), tuple(stop))  # type: ignore[arg-type]


def union(a: Box, b: Box) -> Box:
    """The smallest box holding both ``a`` and ``b``."""
    return Box(tuple(map(min, a.start, b.start)), tuple(map(max, a.stop, b.stop)))  # type: ignore[arg-type]
