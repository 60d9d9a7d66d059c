"""Tile grid maths: pixel windows laid out over a raster (see :mod:`rsir_stac.tiling`, "Grid and edges").

Pure functions and a small frozen record, in the style of ``rasterio.windows``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from rsir_stac.errors import InputError

EDGE_MODES = ("shift", "drop", "pad")


@dataclass(frozen=True)
class PixelWindow:
    """A rectangular pixel window; may extend past the raster when padded."""

    col_off: int
    row_off: int
    width: int
    height: int

    def to_window(self) -> Window:
        """The same window as a :class:`rasterio.windows.Window`."""
        return Window(self.col_off, self.row_off, self.width, self.height)

    def __str__(self) -> str:
        return f"col_off={self.col_off},row_off={self.row_off},width={self.width},height={self.height}"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"{name}={value!r} is invalid; give a positive whole number of pixels")
    return int(value)


def _axis_offsets(length: int, tile: int, stride: int, edge: str) -> list[int]:
    if edge == "drop":
        return list(range(0, length - tile + 1, stride)) if length >= tile else []
    if length <= tile:
        return [0]
    if edge == "shift":
        offsets = list(range(0, length - tile + 1, stride))
        if offsets[-1] + tile < length:
            offsets.append(length - tile)
        return offsets
    offsets = [0]  # pad
    while offsets[-1] + tile < length and offsets[-1] + stride < length:
        offsets.append(offsets[-1] + stride)
    return offsets


def grid_windows(
    width: int, height: int, tile: int, stride: int | None = None, edge: str = "shift"
) -> list[PixelWindow]:
    """Tile windows over a ``width`` x ``height`` raster, row-major.

    ``stride`` defaults to ``tile`` (no overlap).  ``edge`` is ``"shift"``,
    ``"drop"`` or ``"pad"`` (see the module docstring).  Every window is
    ``tile`` x ``tile``; with ``"shift"`` windows stay inside the raster unless
    the raster is smaller than one tile.
    """
    width = _positive_int("width", width)
    height = _positive_int("height", height)
    tile = _positive_int("tile size", tile)
    stride = tile if stride is None else _positive_int("stride", stride)
    if edge not in EDGE_MODES:
        raise InputError(f"edge={edge!r} is invalid; use one of {', '.join(EDGE_MODES)}")
    cols = _axis_offsets(width, tile, stride, edge)
    rows = _axis_offsets(height, tile, stride, edge)
    return [PixelWindow(c, r, tile, tile) for r in rows for c in cols]


__all__ = ["EDGE_MODES", "PixelWindow", "grid_windows"]
