"""The one pixel path: any window of any raster to RGB ``uint8`` and a validity mask.

Scene tiles at ingest (:class:`~rsir_stac.tiling.scene.SceneReader`), query
images (files and uploads, :mod:`~rsir_stac.tiling.query`) and stored tiles
re-read for thumbnails all go through :func:`pixel_plan` and
:func:`read_rgb`, so band choice, palette expansion, scaling, masks and the
pixel layout of the file can never differ between a tile and the same ground
given as a query.

Rules (see also :mod:`rsir_stac.tiling`):

* Bands: :func:`~rsir_stac.tiling.bands.select_bands`.
* Palette: when the three chosen bands are one band whose colour
  interpretation is *palette*, every value is looked up in the colour table
  (R, G, B); entries whose alpha is 0 are invalid (nodata).  Palette indices
  are class labels, so they are always resampled with nearest neighbour.
* Scaling: :class:`~rsir_stac.tiling.scaling.ScaleRule`, one rule per
  dataset (passthrough for ``uint8`` and palettes).
* Resampling: nearest when the window is read at its own size, else
  bilinear (palettes: nearest); a bilinear read that would hold more than
  :data:`~rsir_stac.tiling.readcost.READ_BUDGET_BYTES` (a raster far finer than
  the grid, without overviews) is a box filter of nearest samples instead
  (:func:`~rsir_stac.tiling.readcost.box_read`).
* Masks: a pixel is valid when any chosen band is valid in GDAL's masks
  (nodata, alpha, mask bands), and, for floats, finite; pixels outside the
  raster are invalid.  Invalid pixels are 0 in the output.
"""

from __future__ import annotations

import functools
import logging
import math

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.windows import Window

from rsir_stac.tiling.bands import select_bands
from rsir_stac.tiling.masks import read_masks
from rsir_stac.tiling.readcost import READ_BUDGET_BYTES, box_read, read_bytes
from rsir_stac.tiling.scaling import IDENTITY, ScaleRule, compute_scale
from rsir_stac.tiling.sources import shown_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PixelPlan:
    """How one dataset's pixels become RGB ``uint8`` (built once per dataset).

    ``bands`` are the 1-based (R, G, B) band numbers; ``palette`` the colour
    table as a ``(N, 4)`` ``uint8`` RGBA lookup table when the bands are one
    palette band, else None; ``scale`` maps raw values to ``uint8``.
    """

    bands: tuple[int, int, int]
    palette: np.ndarray | None
    scale: ScaleRule
    all_valid: bool
    is_float: bool
    nodata: float | None = None  # a nodata value the file does not declare (STAC raster:bands)

    @property
    def indexes(self) -> list[int]:
        """The distinct band numbers read, ascending."""
        return sorted(set(self.bands))

    @property
    def order(self) -> list[int]:
        """Position of each of R, G, B in :attr:`indexes`."""
        idx = self.indexes
        return [idx.index(b) for b in self.bands]

    @property
    def direct(self) -> bool:
        """True when raw bands 1..3 are already the RGB ``uint8`` output (no mask,
        no scaling, no reordering): tiles are read straight into pixel-interleaved
        memory."""
        return (self.all_valid and self.palette is None and self.scale.kind == "none"
                and self.order == [0, 1, 2] and len(self.indexes) == 3)


def palette_lut(dataset: Any, band: int) -> np.ndarray | None:
    """The colour table of ``band`` as a ``(N, 4)`` ``uint8`` RGBA lookup table,
    or None when the band is not a palette band."""
    if dataset.colorinterp[band - 1] != ColorInterp.palette:
        return None
    try:
        cmap = dataset.colormap(band)
    except ValueError:  # palette interpretation but no table
        return None
    if not cmap:
        return None
    dtype = np.dtype(dataset.dtypes[band - 1])
    size = max(max(cmap) + 1, 256 if dtype.itemsize == 1 else 65536 if dtype == np.uint16 else 0)
    lut = np.zeros((size, 4), dtype=np.uint8)
    for value, rgba in cmap.items():
        if value >= 0:
            lut[value, : len(rgba)] = rgba
    return lut


def pixel_plan(dataset: Any, bands: Sequence[int] | None = None, *, scale: ScaleRule | None = None,
               nodata: float | None = None) -> PixelPlan:
    """The :class:`PixelPlan` of an open rasterio dataset.

    ``bands`` as for :func:`select_bands`.  ``scale`` defaults to
    :func:`compute_scale` over the whole dataset (a decimated read), or
    passthrough for a palette.  ``nodata``: a value marking invalid pixels
    that the file itself does not declare (a STAC asset's ``raster:bands``
    ``nodata``); used only when GDAL sees no nodata, mask or alpha in the
    chosen bands (the file's own wins).  Raises :class:`RasterError`/
    :class:`InputError` for bands the dataset does not have.
    """
    chosen = select_bands(dataset, bands)
    uniq = sorted(set(chosen))
    flags = dataset.mask_flag_enums
    all_valid = all(list(flags[b - 1]) == [MaskFlags.all_valid] for b in uniq)
    if nodata is not None and not all_valid:
        own = dataset.nodatavals[uniq[0] - 1]
        if own is None or float(own) != float(nodata):  # the same value twice (STAC and file) says nothing
            log.warning("%s declares its own nodata (%s), which is used; the nodata value %g given for it "
                        "(ingest --nodata or STAC raster:bands) is not", shown_name(dataset),
                        "a mask or alpha band" if own is None else f"{own:g}", float(nodata))
        nodata = None
    elif nodata is not None and math.isfinite(float(nodata)) and not _in_range(float(nodata), dataset.dtypes[uniq[0] - 1]):
        log.warning("%s: the nodata value %g is not one its %s pixels can hold, so no pixel has it",
                    shown_name(dataset), float(nodata), dataset.dtypes[uniq[0] - 1])
    if nodata is not None and not math.isfinite(float(nodata)):
        nodata = None
    palette = palette_lut(dataset, chosen[0]) if chosen[0] == chosen[1] == chosen[2] else None
    if palette is not None:
        scale = IDENTITY
    elif scale is None:
        scale = compute_scale(dataset, chosen, nodata=nodata)
    if nodata is not None:
        all_valid = False
    if palette is not None and (palette[:, 3] == 0).any():
        all_valid = False
    is_float = np.issubdtype(np.dtype(dataset.dtypes[uniq[0] - 1]), np.floating)
    return PixelPlan(bands=chosen, palette=palette, scale=scale, all_valid=all_valid, is_float=is_float,
                     nodata=None if nodata is None else float(nodata))


def _in_range(value: float, dtype: str) -> bool:
    """Whether ``value`` is one a pixel of ``dtype`` can hold (integers: whole and within the type)."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def map_orientation(dataset: Any) -> tuple[bool, bool, bool]:
    """``(transpose, flip_rows, flip_cols)`` that turn a georeferenced raster's pixels to the
    map's orientation: columns running east, rows running south, up to a rotation under 45°
    (which the model is trained to ignore).  South-up, east-left, 180°-rotated, transposed
    and mirrored rasters all give the same pixels as the north-up raster of the same ground.
    Rasters without a CRS (plain images) are left as they are."""
    t = dataset.transform
    if dataset.crs is None:
        return False, False, False
    sx, sy = _axis_signs(dataset.crs.to_wkt())
    col, row = (sx * t.a, sy * t.d), (sx * t.b, sy * t.e)  # step of one column / one row (east, north)
    transpose = abs(col[1]) > abs(col[0])  # columns run north-south: swap the axes first
    if transpose:
        col, row = row, col
    return transpose, row[1] > 0, col[0] < 0


@functools.lru_cache(maxsize=64)
def _axis_signs(wkt: str) -> tuple[int, int]:
    """(+1 or -1 for x, for y): -1 where the CRS's axis, in GDAL's traditional GIS order, points
    west or south (EPSG:2053 "Lo29" counts westing and southing; EPSG:2065 Krovak southing,
    westing, which GDAL swaps to westing, southing).  Axes along other directions (the polar
    stereographic CRSs' "north along 90°E") keep the grid's own orientation: +1, +1."""
    try:
        import pyproj

        axes = [a.direction.lower() for a in pyproj.CRS.from_wkt(wkt).axis_info[:2]]
    except Exception:  # noqa: BLE001 - a CRS pyproj cannot read: the grid's orientation
        return 1, 1
    if len(axes) < 2:
        return 1, 1
    if axes[0] in ("north", "south") and axes[1] in ("east", "west"):
        axes.reverse()  # lat/lon and northing/easting CRSs: GDAL hands x = easting, y = northing
    if axes[0] not in ("east", "west") or axes[1] not in ("north", "south"):
        return 1, 1
    return (-1 if axes[0] == "west" else 1), (-1 if axes[1] == "south" else 1)


def as_on_the_map(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    """``pixels`` (rows, cols, 3) read from ``dataset``, turned as :func:`map_orientation`
    says, so that every tile shows the ground as a map does, not its mirror image or a
    quarter turn of it."""
    return turned(pixels, map_orientation(dataset))


def turned(pixels: np.ndarray, orientation: tuple[bool, bool, bool]) -> np.ndarray:
    """``pixels`` (rows, cols, ...) transposed and flipped as ``orientation``
    (:func:`map_orientation`) says; C-contiguous."""
    transpose, flip_rows, flip_cols = orientation
    if not (transpose or flip_rows or flip_cols):
        return pixels
    out = pixels.transpose(1, 0, 2) if transpose else pixels
    if flip_rows:
        out = out[::-1]
    if flip_cols:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def read_rgb(dataset: Any, plan: PixelPlan, window: Window, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``window`` (source pixels, fractional, may run past the raster) of
    ``dataset`` into ``shape = (rows, cols)`` output pixels.

    Returns ``(pixels, valid)``: ``pixels`` is ``(rows, cols, 3)`` RGB
    ``uint8`` (C-contiguous), ``valid`` a ``(rows, cols)`` bool mask, or None
    when every pixel is valid.  GDAL errors propagate (the callers name the
    file and window).
    """
    out_h, out_w = int(shape[0]), int(shape[1])
    x0, y0 = float(window.col_off), float(window.row_off)
    w, h = float(window.width), float(window.height)
    sx, sy = w / out_w, h / out_h
    native = sx == 1.0 and sy == 1.0
    resampling = Resampling.nearest if native or plan.palette is not None else Resampling.bilinear
    W, H = dataset.width, dataset.height
    inside = x0 >= 0 and y0 >= 0 and x0 + w <= W and y0 + h <= H
    # a resampled read holds the whole window at the best overview's resolution: past the budget
    # (a raster far finer than the grid read, without overviews), box-filtered nearest samples
    heavy = resampling != Resampling.nearest and read_bytes(
        dataset, min(w, W), min(h, H), out_w, out_h, len(plan.indexes)) > READ_BUDGET_BYTES
    if plan.direct and inside and not heavy:
        out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        dataset.read(indexes=plan.indexes, window=Window(x0, y0, w, h), out=out.transpose(2, 0, 1),
                     resampling=resampling)
        return out, None
    valid = np.zeros((out_h, out_w), dtype=bool)
    ix0, iy0 = max(x0, 0.0), max(y0, 0.0)
    ix1, iy1 = min(x0 + w, float(W)), min(y0 + h, float(H))
    ox0 = min(max(int(round((ix0 - x0) / sx)), 0), out_w)
    ox1 = min(max(int(round((ix1 - x0) / sx)), 0), out_w)
    oy0 = min(max(int(round((iy0 - y0) / sy)), 0), out_h)
    oy1 = min(max(int(round((iy1 - y0) / sy)), 0), out_h)
    if ix1 <= ix0 or iy1 <= iy0 or ox1 <= ox0 or oy1 <= oy0:
        return np.zeros((out_h, out_w, 3), dtype=np.uint8), valid
    src = Window(ix0, iy0, ix1 - ix0, iy1 - iy0)
    indexes = plan.indexes
    part = (len(indexes), oy1 - oy0, ox1 - ox0)
    if heavy:
        raw = box_read(dataset, indexes, src, part[1:], nodata=plan.nodata, all_valid=plan.all_valid)
    else:
        raw = dataset.read(indexes=indexes, window=src, out_shape=part, resampling=resampling)
    if plan.nodata is not None:  # declared outside the file: valid where any band is not it (nearest, as masks)
        exact = raw if resampling == Resampling.nearest else dataset.read(
            indexes=indexes, window=src, out_shape=part, resampling=Resampling.nearest)
        part_valid = (exact != plan.nodata).any(axis=0)
    elif plan.all_valid:
        part_valid = np.ones(part[1:], dtype=bool)
    else:
        masks = read_masks(dataset, indexes=indexes, window=src, out_shape=part, resampling=Resampling.nearest)
        part_valid = (masks > 0).any(axis=0)
    if plan.is_float:
        part_valid &= np.isfinite(raw).all(axis=0)
    if plan.palette is not None:
        lut = plan.palette
        idx = np.clip(raw[0].astype(np.int64, copy=False), 0, len(lut) - 1)
        rgba = lut[idx]  # (h, w, 4)
        part_valid &= rgba[..., 3] > 0
        rgb = np.ascontiguousarray(rgba[..., :3].transpose(2, 0, 1))
    else:
        rgb = plan.scale.apply(raw[plan.order])
    if part[1:] == (out_h, out_w):
        pixels = rgb
        valid = part_valid
    else:
        pixels = np.zeros((3, out_h, out_w), dtype=np.uint8)
        pixels[:, oy0:oy1, ox0:ox1] = rgb
        valid[oy0:oy1, ox0:ox1] = part_valid
    if not valid.all():
        pixels[:, ~valid] = 0
    return np.ascontiguousarray(pixels.transpose(1, 2, 0)), valid


__all__ = ["PixelPlan", "palette_lut", "pixel_plan", "read_rgb"]
