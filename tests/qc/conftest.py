"""Tiny hand-built label maps for the qc tests."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.io import Geometry, Volume
from flareseg.labels import BY_NAME

#: Direction cosines of an LPS grid (x towards the patient's left) and of a RAS one (x towards the right).
LPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
RAS = ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))


def _box_mask(shape_zyx, boxes: dict, spacing_xyz=(5.0, 5.0, 5.0), origin=(0.0, 0.0, 0.0), direction=LPS) -> Volume:
    array = np.zeros(shape_zyx, np.uint8)
    for organ, (z0, z1, y0, y1, x0, x1) in boxes.items():
        array[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = BY_NAME[organ].id
    return Volume(array, Geometry(tuple(shape_zyx), tuple(spacing_xyz), tuple(origin), direction))


@pytest.fixture
def box_mask():
    """``box_mask(shape_zyx, {organ: (z0, z1, y0, y1, x0, x1)}, spacing_xyz, origin, direction)``: a uint8
    mask with each organ a box of voxels (bounds inclusive; later boxes on top); LPS by default."""
    return _box_mask

