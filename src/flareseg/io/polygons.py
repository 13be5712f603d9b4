"""Planar polygons and the pixels they cover: the two directions of RTSTRUCT contours.

:func:`polygon_mask` fills polygons (even-odd rule, pixel centres) and :func:`mask_polygons`
traces a mask into polygons that fill back to exactly that mask. Coordinates are continuous
pixel indices ``(x = column, y = row)``.
"""

from __future__ import annotations

import contourpy
import numpy as np


def polygon_mask(points_xy: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside a closed polygon, by the even-odd rule.

    A scanline fill: on each pixel row, a pixel is inside when an odd number of the polygon's
    edges cross the row to its left. Self-intersecting polygons follow the same rule.

    Args:
        points_xy: ``(n, 2)`` vertices in continuous pixel indices ``(x = column, y = row)``;
            the last vertex joins the first.
        shape_yx: ``(rows, columns)`` of the slice.

    Returns:
        bool ``[rows, columns]``; parts of the polygon beyond the slice are cut off.
    """
    rows, columns = shape_yx
    mask = np.zeros(shape_yx, dtype=bool)
    x0, y0 = points_xy[:, 0], points_xy[:, 1]
    first, last = max(int(np.ceil(y0.min())), 0), min(int(np.floor(y0.max())), rows - 1)
    if len(points_xy) < 3 or last < first:
        return mask
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    row_y = np.arange(first, last + 1, dtype=np.float64)[:, None]
    row, edge = np.nonzero((y0 >= row_y) != (y1 >= row_y))  # edge crosses the row (half-open in y)
    crossing_x = x0[edge] + (row_y[row, 0] - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    start = np.clip(np.floor(crossing_x).astype(np.int64) + 1, 0, columns)  # first pixel right of it
    toggles = np.bincount(row * (columns + 1) + start, minlength=(last - first + 1) * (columns + 1))
    parity = np.cumsum(toggles.reshape(-1, columns + 1)[:, :columns], axis=1) % 2
    mask[first : last + 1] = parity.astype(bool)
    return mask


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The closed polygons around a 2D mask's regions and holes; the inverse of :func:`polygon_mask`.

    Traced by marching squares at level 0.5: each vertex lies halfway between an inside and an
    outside pixel centre, so no centre is nearer than 0.35 pixels to an edge and filling the
    polygons together by the even-odd rule (each XOR-ed onto the slice) gives back ``mask``
    exactly. Diagonal neighbours (a saddle) become separate polygons. Polygons never cross.

    Args:
        mask: bool ``[rows, columns]``.

    Returns:
        One float64 ``(n, 2)`` array of ``(x, y)`` vertices per polygon, outer boundaries and
        holes alike; the last vertex joins the first (it is not repeated), and vertices on a
        straight run are left out. Empty for an empty mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    columns = np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    padded = np.pad(crop.astype(np.float64), 1)  # a border of outside pixels closes every line
    lines = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate).lines(0.5)
    offset = np.array([columns[0] - 1.0, rows[0] - 1.0])
    return [_corners(line[:-1]) + offset for line in lines]


def _corners(points: np.ndarray) -> np.ndarray:
    """A closed polygon without the vertices that lie on a straight line between their neighbours."""
    incoming = points - np.roll(points, 1, axis=0)
    outgoing = np.roll(points, -1, axis=0) - points
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]  # exact: half-pixel coordinates
    return points[turn != 0]
