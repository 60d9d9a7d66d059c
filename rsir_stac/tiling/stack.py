"""Three single-band rasters of one grid read as one R, G, B raster (:class:`BandStack`).

STAC items that keep each band in its own file (USGS Landsat Collection 2
``red``/``green``/``blue``, Sentinel-2 L2A ``B04``/``B03``/``B02``) are tiled
from three files (:attr:`rsir_stac.stac.SceneRef.band_hrefs`).  A
:class:`BandStack` opens each of them exactly as a single scene file is opened
(:func:`~rsir_stac.tiling.sources._open_raster`: the GeoTIFF-only rule and the
link check of ``serve --ingest-root`` included, then the same georeference
checks) and shows the rest of the pixel path (:mod:`~rsir_stac.tiling.pixels`,
:class:`~rsir_stac.tiling.scene.SceneReader`) a dataset whose bands 1, 2, 3
are band 1 of each file, so that band choice, stretch, masks, resampling and
footprints follow the same rules as for one 3-band file.

Rules:

* Grid: the three files must share CRS, geotransform and size; otherwise
  :class:`GridMismatchError` names the file that differs (Sentinel-2's 20 m
  bands cannot be stacked with its 10 m ones).
* Band 1 of each file is read (a file with more bands is read as its first).
* Nodata, per file: the file's own nodata, mask or alpha wins; else the value
  given for it (its STAC asset's ``raster:bands`` nodata, as
  :func:`~rsir_stac.tiling.pixels.pixel_plan` does for one file) marks invalid
  pixels; a pixel is valid when any of the three is (GDAL's dataset-mask rule).
* Scaling: the stretch is per channel already (p2-p98 of each band), so each
  file is stretched on its own values; ``raster:bands`` scale/offset are
  linear and leave a percentile stretch unchanged, as for one file.

Payloads store the three files as ``band_hrefs``, relative to ``href`` (the
red file) when local (:func:`stored_band_hrefs`, :func:`payload_band_hrefs`),
so relocating ``href`` moves them too and ``hide_paths`` shows no folder.
"""

from __future__ import annotations

import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rasterio.enums import ColorInterp, MaskFlags, Resampling

from rsir_stac.errors import InputError, RasterError
from rsir_stac.tiling.georef import check_georef
from rsir_stac.tiling.masks import read_masks
from rsir_stac.tiling.sources import _is_url, _open_raster, named_reads


class GridMismatchError(RasterError):
    """The files of a composed scene are not on one pixel grid; ``index`` is the file's
    position (0 R, 1 G, 2 B) and ``detail`` says how it differs, without the fix."""

    def __init__(self, message: str, index: int, detail: str) -> None:
        super().__init__(message)
        self.index, self.detail = index, detail


#: The fix every grid mismatch message ends with.
GRID_FIX = ("pass --asset R,G,B with three single-band assets on one pixel grid: one CRS, size, pixel size and "
            "origin (e.g. Sentinel-2's 10 m B04,B03,B02), or warp them onto one (gdalwarp -tap -tr)")

#: Largest distance (pixels) between two files' pixel corners that still counts as one grid: tools that
#: rewrite a geotransform leave float noise of ~1e-7 px; a real mismatch is a fraction of a pixel or more.
GRID_TOLERANCE_PX = 1e-3


def _grid_text(ds: Any) -> str:
    crs = ds.crs.to_string() if ds.crs is not None else "no CRS"
    t = ds.transform
    return f"{crs}, pixel size {abs(t.a):.10g} x {abs(t.e):.10g}, origin ({t.c:.10g}, {t.f:.10g}), " \
           f"{ds.width} x {ds.height} px"


def _grid_offset_px(a: Any, b: Any) -> float:
    """How far (pixels of ``a``) ``b``'s pixel corners lie from ``a``'s, at the raster's four corners."""
    back = ~a.transform
    worst = 0.0
    for col, row in ((0, 0), (a.width, 0), (0, a.height), (a.width, a.height)):
        x, y = back * (b.transform * (col, row))
        worst = max(worst, math.hypot(x - col, y - row))
    return worst


def _same_grid(a: Any, b: Any) -> bool:
    """Same size and CRS, and pixel corners within :data:`GRID_TOLERANCE_PX` of each other."""
    if (a.width, a.height) != (b.width, b.height) or a.crs != b.crs:
        return False
    try:
        return _grid_offset_px(a, b) <= GRID_TOLERANCE_PX
    except Exception:  # noqa: BLE001 - a degenerate transform: not one grid
        return False


def _nodata_values(nodata: float | Sequence[float | None] | None) -> tuple[float | None, float | None, float | None]:
    if nodata is None or isinstance(nodata, (int, float)):
        return (nodata, nodata, nodata)  # type: ignore[return-value]
    values = tuple(nodata)
    if len(values) != 3:
        raise InputError(f"nodata {list(values)!r} is invalid for three band files; give one value or three")
    return tuple(None if v is None else float(v) for v in values)  # type: ignore[return-value]


class BandStack:
    """Band 1 of three rasters of one grid as one 3-band, dataset-like object (R, G, B).

    Offers what the tiling modules use of a rasterio dataset: size, ``count``,
    ``dtypes``, CRS, transform, bounds, colour interpretation (red, green, blue),
    mask flags, ``read``, ``read_masks``, ``close``.  Use :meth:`open`.
    """

    def __init__(self, datasets: Sequence[Any], hrefs: Sequence[str],
                 nodata: float | Sequence[float | None] | None = None) -> None:
        self._parts = list(datasets)
        self.hrefs = tuple(hrefs)
        first = self._parts[0]
        for i, ds in enumerate(self._parts[1:], 1):
            if not _same_grid(first, ds):
                detail = f"{_grid_text(ds)}, not {_grid_text(first)} as {self.hrefs[0]}"
                if (first.width, first.height) == (ds.width, ds.height) and first.crs == ds.crs:
                    detail += f" (its pixel corners are up to {_grid_offset_px(first, ds):.3g} px off)"
                raise GridMismatchError(f"{self.hrefs[i]} is on another pixel grid ({detail}); {GRID_FIX}", i, detail)
        wanted = _nodata_values(nodata)
        #: per file, the nodata value applied from outside the file (None: its own masks, or none)
        self.outside_nodata = tuple(
            v if v is not None and math.isfinite(v) and list(ds.mask_flag_enums[0]) == [MaskFlags.all_valid] else None
            for ds, v in zip(self._parts, wanted))
        self.name = self.hrefs[0]
        self.width, self.height, self.count = int(first.width), int(first.height), 3
        self.crs, self.transform, self.bounds = first.crs, first.transform, first.bounds
        self.gcps, self.rpcs, self.res = first.gcps, first.rpcs, first.res
        self.driver = first.driver
        self.dtypes = tuple(ds.dtypes[0] for ds in self._parts)
        self.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        self.mask_flag_enums = tuple(
            [MaskFlags.nodata] if nd is not None else list(ds.mask_flag_enums[0])
            for ds, nd in zip(self._parts, self.outside_nodata))
        self._dtype = np.result_type(*[np.dtype(d) for d in self.dtypes])

    @classmethod
    def open(cls, hrefs: Sequence[str | os.PathLike[str]],
             nodata: float | Sequence[float | None] | None = None) -> BandStack:
        """Open three single-band rasters (R, G, B) as one; each goes through the checks of a
        single scene file (:func:`~rsir_stac.tiling.sources._open_raster`, georeference).
        Raises :class:`GridMismatchError` when they are not on one grid, the errors of
        opening a raster otherwise (closing what was opened)."""
        names = [os.fspath(h) for h in hrefs]
        if len(names) != 3:
            raise InputError(f"band files {names!r} are invalid; give three files, R,G,B")
        opened: list[Any] = []
        try:
            for name in names:
                opened.append(_open_raster(name))
                check_georef(opened[-1], name)
            return cls(opened, names, nodata)
        except BaseException:
            for ds in opened:
                ds.close()
            raise

    # dataset-like -------------------------------------------------------------------
    def colormap(self, band: int) -> Any:
        raise ValueError(f"{self.name}: band {band} of a composed scene has no colour table")

    def overviews(self, band: int) -> list[int]:
        return list(self._parts[band - 1].overviews(1))

    @staticmethod
    def _indexes(indexes: int | Sequence[int] | None) -> tuple[list[int], bool]:
        if indexes is None:
            return [1, 2, 3], False
        if isinstance(indexes, (int, np.integer)):
            return [int(indexes)], True
        return [int(i) for i in indexes], False

    def read(self, indexes: int | Sequence[int] | None = None, *, window: Any = None, out_shape: Any = None,
             resampling: Resampling = Resampling.nearest, out: np.ndarray | None = None, **kw: Any) -> np.ndarray:
        """Band ``indexes`` (1 R, 2 G, 3 B) as rasterio's ``read`` gives them; each is
        band 1 of its file, read with the same window, shape and resampling."""
        idx, single = self._indexes(indexes)
        shape = tuple(out_shape)[-2:] if out_shape is not None else (out.shape[-2:] if out is not None else None)
        parts = []
        for i in idx:
            with named_reads(self._parts[i - 1]):  # a failure names its own file
                parts.append(self._parts[i - 1].read(1, window=window, out_shape=shape, resampling=resampling, **kw))
        if out is not None:
            for k, part in enumerate(parts):
                out[k] = part
            return out
        data = np.stack([p.astype(self._dtype, copy=False) for p in parts])
        return data[0] if single else data

    def read_masks(self, indexes: int | Sequence[int] | None = None, *, window: Any = None, out_shape: Any = None,
                   resampling: Resampling = Resampling.nearest, **kw: Any) -> np.ndarray:
        """GDAL's masks of bands ``indexes`` (255 valid, 0 not); for a file with a nodata
        value from outside it, pixels not equal to that value (read with nearest)."""
        idx, single = self._indexes(indexes)
        shape = None if out_shape is None else tuple(out_shape)[-2:]
        parts = []
        for i in idx:
            ds, nd = self._parts[i - 1], self.outside_nodata[i - 1]
            with named_reads(ds):  # a failure names its own file
                if nd is None:
                    parts.append(read_masks(ds, indexes=1, window=window, out_shape=shape, resampling=resampling, **kw))
                else:
                    exact = ds.read(1, window=window, out_shape=shape, resampling=Resampling.nearest, **kw)
                    parts.append(np.where(exact != nd, 255, 0).astype(np.uint8))
        data = np.stack(parts)
        return data[0] if single else data

    def close(self) -> None:
        """Close the three files."""
        for ds in self._parts:
            ds.close()

    def __enter__(self) -> BandStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_band_stack(hrefs: Sequence[str | os.PathLike[str]],
                    nodata: float | Sequence[float | None] | None = None) -> BandStack:
    """Shorthand for :meth:`BandStack.open`."""
    return BandStack.open(hrefs, nodata)


# ------------------------------------------------------------------------- payloads

def _is_remote(href: str) -> bool:
    return _is_url(href) or "://" in href


def stored_band_hrefs(href: str, band_hrefs: Sequence[str]) -> list[str]:
    """``band_hrefs`` as a payload keeps them: local paths relative to the folder of ``href``
    (the red file), URLs and cloud hrefs as they are."""
    if _is_remote(href):
        return [str(h) for h in band_hrefs]
    folder = os.path.dirname(href)
    return [str(h) if _is_remote(str(h)) else os.path.relpath(str(h), folder) for h in band_hrefs]


def resolve_band_hrefs(href: str, stored: Sequence[str]) -> tuple[str, str, str]:
    """The three files of :func:`stored_band_hrefs` made whole again against ``href`` (the red
    file, wherever it is now: a relocated ``href`` moves them too)."""
    out = []
    for h in stored:
        h = str(h)
        if _is_remote(h) or os.path.isabs(h):
            out.append(h)
        elif _is_remote(href):
            out.append(posixpath.normpath(posixpath.join(posixpath.dirname(href), h)))
        else:
            out.append(os.path.normpath(os.path.join(os.path.dirname(href), h)))
    if len(out) != 3:
        raise RasterError(f"{href}: the stored band files {list(stored)!r} are not three; re-ingest the item")
    return tuple(out)  # type: ignore[return-value]


def payload_band_hrefs(payload: Mapping[str, Any], href: str | None = None) -> tuple[str, str, str] | None:
    """The R, G, B files of a stored tile of a composed scene, or None for a tile of one file
    (a payload without ``band_hrefs``, as every index written before them).  ``href``: the
    red file's place now (default the payload's)."""
    stored = payload.get("band_hrefs")
    if not stored:
        return None
    if not isinstance(stored, (list, tuple)) or not all(isinstance(h, str) for h in stored):
        raise TypeError(f"band_hrefs {stored!r} is not a list of three hrefs")
    return resolve_band_hrefs(str(href if href is not None else payload["href"]), stored)


def payload_nodata(value: Any) -> float | tuple[float | None, float | None, float | None] | None:
    """``tiling.nodata`` of a stored payload as the reader takes it: a number, three (a
    composed scene's, each a number or None), or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                     for v in value)  # type: ignore[return-value]
    return None


__all__ = ["BandStack", "GRID_FIX", "GridMismatchError", "open_band_stack", "payload_band_hrefs",
           "payload_nodata", "resolve_band_hrefs", "stored_band_hrefs"]
