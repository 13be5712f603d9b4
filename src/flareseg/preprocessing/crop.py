"""Bounding boxes: find one around a mask, crop to it, and paste a crop back (its inverse)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A box of array indices ``[start, stop)`` per axis ``[z, y, x]``."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def scaled(self, factor_zyx, shape_zyx) -> "Box":
        """The same region on a grid ``factor`` times finer (e.g. coarse to full resolution)."""
        start = tuple(max(0, math.floor(a * f)) for a, f in zip(self.start, factor_zyx))
        stop = tuple(min(n, math.ceil(b * f)) for b, f, n in zip(self.stop, factor_zyx, shape_zyx))
        return Box(start, stop)  # type: ignore[arg-type]

    def shifted(self, offset_zyx) -> "Box":
        """The same box in an array where this one's array starts at ``offset_zyx``."""
        return Box(tuple(a + o for a, o in zip(self.start, offset_zyx)),  # type: ignore[arg-type]
                   tuple(b + o for b, o in zip(self.stop, offset_zyx)))

    def expanded(self, margin_zyx, shape_zyx) -> "Box":
        """Grown by ``margin`` voxels per side (per axis, rounded up), clipped to the array."""
        start = tuple(max(0, a - math.ceil(m)) for a, m in zip(self.start, margin_zyx))
        stop = tuple(min(n, b + math.ceil(m)) for b, m, n in zip(self.stop, margin_zyx, shape_zyx))
        return Box(start, stop)  # type: ignore[arg-type]


def bounding_box(mask: np.ndarray) -> Box | None:
    """The tightest box around the non-zero voxels of ``mask``, or None when it is empty."""
    if not mask.any():
        return None
    start, stop = [], []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        start.append(int(hits[0]))
        stop.append(int(hits[-1]) + 1)
    return Box(tuple(start), tuple(stop))  # type: ignore[arg-type]


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The part of ``array`` inside ``box`` (a view)."""
    return array[box.slices]


def paste(target: np.ndarray, box: Box, patch: np.ndarray, where: np.ndarray | None = None) -> None:
    """Write ``patch`` (shape ``box.shape``) back into ``target`` in place; only where ``where`` if given."""
    np.copyto(target[box.slices], patch, casting="unsafe", where=True if where is None else where)


def padded_shape(shape, multiple: int, minimum: int = 0) -> tuple[int, ...]:
    """Each size rounded up to a multiple of ``multiple`` that is at least ``minimum``."""
    return tuple(-(-max(n, minimum) // multiple) * multiple for n in shape)


def pad_to_multiple(array: np.ndarray, multiple: int, value: float, minimum: int = 0) -> tuple[np.ndarray, Box]:
    """``array`` padded with ``value`` at the end of each axis to a multiple of ``multiple``
    that is at least ``minimum`` voxels.

    Returns:
        The padded array and the box of ``array`` inside it (``crop`` with it undoes the padding).
    """
    pad = [(0, m - n) for n, m in zip(array.shape, padded_shape(array.shape, multiple, minimum))]
    box = Box((0,) * array.ndim, tuple(array.shape))  # type: ignore[arg-type]
    if not any(after for _, after in pad):
        return array, box
    return np.pad(array, pad, constant_values=value), box


def network_shape(shape, multiple: int) -> tuple[int, ...]:
    """The shape :func:`pad_for_network` pads ``shape`` to."""
    return padded_shape(shape, multiple, 2 * multiple)


def pad_for_network(array: np.ndarray, multiple: int, value: float) -> tuple[np.ndarray, Box]:
    """``array`` padded with ``value`` to a multiple of ``multiple`` (``2^levels``) that is at least
    twice it: at ``multiple`` voxels on every axis the network's deepest level would hold a
    single voxel, which instance normalisation cannot normalise. Returns the box of ``array``."""
    return pad_to_multiple(array, multiple, value, minimum=2 * multiple)
