"""Cut georeferenced rasters into fixed-size RGB ``uint8`` tiles with footprints.

A scene (local GeoTIFF/COG path or ``http(s)`` URL read through GDAL's
``/vsicurl``) is laid out as a grid of square tiles and every tile is read
on its own with a rasterio window, so a scene is never held in memory whole.

Rules
-----
Grid and edges (:func:`grid_windows`), tile size and stride in *target* pixels:

* ``"shift"`` (default): tiles start every ``stride`` pixels; when the last
  row/column would run past the raster it is shifted back so that it ends
  exactly at the edge (full-size tiles, a little extra overlap).  A raster
  smaller than one tile along an axis gets a single tile at offset 0 of full
  tile size; the part outside the raster is padded and masked as nodata.
* ``"drop"``: only tiles that lie wholly inside the raster; the remainder
  along the right/bottom edges is not covered.
* ``"pad"``: tiles start every ``stride`` pixels until the raster is covered;
  the last ones run past the edge and the outside part is padded (nodata).

With ``"shift"`` and ``"pad"`` every pixel is covered by at least one tile
when ``stride <= tile``.  Windows are ordered row-major (top row first, left
to right).

Scaling to ``uint8`` (:class:`ScaleRule`): ``uint8`` rasters pass through
unchanged.  Any other dtype (``uint16``, ``int16``, ``float32`` ...) is
stretched per band linearly between the 2nd and 98th percentiles of the valid
pixels and clipped to 0..255 (p2 -> 0, p98 -> 255).  The percentiles are
computed once per scene from a decimated read (longer side
:data:`STATS_SIZE` px; GDAL serves it from an overview when one exists), so
every tile of a scene uses the same stretch; :attr:`SceneReader.scale`
reports it.

Resampling: with ``target_gsd`` the scale factor per axis is
``s = target_gsd / native_gsd``; the grid is laid out over a virtual raster of
``W/s x H/s`` target pixels and every target window maps back to a
(fractional) source window that is read with ``out_shape=(bands, tile, tile)``
and **bilinear** resampling (GDAL uses overviews when they exist).  At the
native GSD windows are integral and read without resampling.

Native GSD: the pixel size in metres.  For projected CRSs it is the pixel size
in the CRS's linear unit converted to metres; for geographic CRSs (e.g.
EPSG:4326) and Mercator CRSs (e.g. EPSG:3857, whose "metres" are only true at
the equator) it is the geodesic length of one pixel at the scene centre.

Masks: validity comes from GDAL's masks for the selected bands (nodata value,
alpha band, internal/sidecar masks).  A pixel is valid when any selected band
is valid (GDAL's dataset-mask rule); invalid and padded pixels are set to 0.
A tile whose valid fraction (valid pixels / tile pixels) is below
``min_valid`` -- or is 0 -- is skipped and counted as empty.

Footprints: the four corners (UL, UR, LR, LL) of each tile's source window
and its centre go through the dataset transform into the dataset CRS and are
converted once per scene to lon/lat (EPSG:4326, x=lon, y=lat).

Remote rasters and failures: every GDAL call runs under :func:`gdal_env`,
which bounds HTTP waits (``GDAL_HTTP_TIMEOUT`` defaults to
``$RSIR_HTTP_TIMEOUT`` or 30 s, connect timeout 10 s, 2 retries on transient
HTTP errors); any ``GDAL_*``/``CPL_*`` environment variable of the same name
wins.  Whatever rasterio, GDAL or PROJ raise on bad input becomes a one-line
:class:`RasterError` (or :class:`SourceNotFoundError` for a missing file,
404 or unreachable URL) naming the file, and the window for a corrupt block.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Geod
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from .errors import ImageReadError, InputError, RasterError, RsirError, SourceNotFoundError

log = logging.getLogger(__name__)

EDGE_MODES = ("shift", "drop", "pad")
#: Longer side, in pixels, of the decimated read used to compute the stretch.
STATS_SIZE = 512
#: Percentiles of the linear stretch applied to non-``uint8`` rasters.
PERCENTILES = (2.0, 98.0)
#: Longer side cap for :func:`read_image` when it reads through rasterio.
MAX_QUERY_SIDE = 4096

_GEOD = Geod(ellps="WGS84")
#: Default seconds GDAL waits on one HTTP request (``$RSIR_HTTP_TIMEOUT`` overrides).
HTTP_TIMEOUT = 30
_URL_PREFIXES = ("http://", "https://", "s3://", "gs://", "az://", "/vsi")

Corner = tuple[float, float]


# --------------------------------------------------------------------------- grid


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


# ------------------------------------------------------------------------ scaling


@dataclass(frozen=True)
class ScaleRule:
    """How raw band values become ``uint8``: ``"none"`` or a percentile stretch.

    ``low``/``high`` hold, per output channel (R, G, B), the raw values mapped
    to 0 and 255.
    """

    kind: str
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (255.0, 255.0, 255.0)
    percentiles: tuple[float, float] = PERCENTILES

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Map a ``(3, h, w)`` array to ``uint8`` with this rule."""
        if self.kind == "none":
            return data.astype(np.uint8, copy=False)
        low = np.asarray(self.low, dtype=np.float64)[:, None, None]
        high = np.asarray(self.high, dtype=np.float64)[:, None, None]
        span = np.where(high > low, high - low, 1.0)
        out = (data.astype(np.float64) - low) * (255.0 / span)
        out = np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description, for reports."""
        if self.kind == "none":
            return {"kind": "none"}
        return {
            "kind": self.kind,
            "percentiles": list(self.percentiles),
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
        }

    def __str__(self) -> str:
        if self.kind == "none":
            return "uint8 passthrough"
        pairs = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(self.low, self.high))
        p_lo, p_hi = self.percentiles
        return f"linear stretch p{p_lo:g}-p{p_hi:g} per band (R,G,B): {pairs}"


IDENTITY = ScaleRule("none")


def percentile_rule(data: np.ndarray, valid: np.ndarray | None = None) -> ScaleRule:
    """The p2–p98 stretch of a ``(3, h, w)`` array over ``valid`` pixels."""
    lows: list[float] = []
    highs: list[float] = []
    for band in data:
        ok = np.isfinite(band)
        if valid is not None:
            ok &= valid
        values = band[ok]
        if values.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(values.astype(np.float64), PERCENTILES))
        if hi <= lo:
            hi = lo + 1.0
        lows.append(lo)
        highs.append(hi)
    return ScaleRule("percentile", tuple(lows), tuple(highs))  # type: ignore[arg-type]


def compute_scale(dataset: Any, bands: tuple[int, int, int]) -> ScaleRule:
    """The scene-wide scale rule for ``bands`` of an open rasterio dataset.

    ``uint8`` passes through; other dtypes get :func:`percentile_rule` over a
    decimated read whose longer side is at most :data:`STATS_SIZE` pixels.
    """
    dtypes = {dataset.dtypes[b - 1] for b in bands}
    if dtypes == {"uint8"}:
        return IDENTITY
    factor = min(1.0, STATS_SIZE / max(dataset.width, dataset.height))
    h = max(1, round(dataset.height * factor))
    w = max(1, round(dataset.width * factor))
    uniq = sorted(set(bands))
    data = dataset.read(indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
    masks = dataset.read_masks(indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
    valid = (masks > 0).any(axis=0)
    order = [uniq.index(b) for b in bands]
    return percentile_rule(data[order], valid)


# -------------------------------------------------------------------------- bands


def _band_error(name: str, count: int) -> RasterError:
    return RasterError(
        f"{name} has {count} bands and no red/green/blue colour interpretation; "
        "pass --bands R,G,B (1-based band numbers)"
    )


def select_bands(dataset: Any, bands: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The 1-based (R, G, B) band numbers to read from ``dataset``.

    Explicit ``bands`` (3 numbers, or 1 for grey) win; else bands whose colour
    interpretation is red/green/blue; else bands 1,2,3 for 3- and 4-band
    rasters (4th = alpha or NIR); a single band (or grey + alpha) is
    replicated.  Other band counts raise :class:`RasterError` asking for
    ``--bands``.
    """
    name = str(getattr(dataset, "name", "raster"))
    count = int(dataset.count)
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) == 1:
            chosen = chosen * 3
        if len(chosen) != 3:
            raise InputError(f"bands={list(bands)} is invalid; give 3 band numbers R,G,B (or 1 for grey)")
        bad = [b for b in chosen if not 1 <= b <= count]
        if bad:
            raise RasterError(f"{name} has {count} bands, so band {bad[0]} does not exist; pass --bands within 1..{count}")
        return chosen  # type: ignore[return-value]
    interp = list(dataset.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(ci in interp for ci in wanted):
        return tuple(interp.index(ci) + 1 for ci in wanted)  # type: ignore[return-value]
    if count in (3, 4):
        return (1, 2, 3)
    if count == 1 or (count == 2 and interp[1] == ColorInterp.alpha):
        return (1, 1, 1)
    raise _band_error(name, count)


# ------------------------------------------------------------------------ records


@dataclass(frozen=True)
class TileRef:
    """Where a tile is: source window, GSD, CRS and lon/lat footprint.

    ``window`` is in source pixels (rounded); ``grid`` is the same tile in the
    target-GSD pixel grid (equal to ``window`` at the native GSD).
    ``bbox`` is ``(W, S, E, N)``; ``corners`` are ``(lon, lat)`` in the order
    UL, UR, LR, LL; ``centroid`` is the lon/lat of the window centre.
    """

    window: PixelWindow
    gsd: float
    crs: str
    bbox: tuple[float, float, float, float]
    corners: tuple[Corner, Corner, Corner, Corner]
    centroid: Corner
    grid: PixelWindow


@dataclass(frozen=True, eq=False)
class Tile:
    """A tile's pixels (``uint8``, ``tile x tile x 3``, RGB) and its :class:`TileRef`."""

    ref: TileRef
    pixels: np.ndarray
    valid_fraction: float


@dataclass
class TileStats:
    """Counts for one scene: windows listed, tiles read, skipped as empty, failed."""

    windows: int = 0
    read: int = 0
    skipped_empty: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "read": self.read,
            "skipped_empty": self.skipped_empty,
            "failed": self.failed,
            "failures": list(self.failures),
        }


# ------------------------------------------------------------------------- opening


def _is_url(href: str) -> bool:
    return href.lower().startswith(_URL_PREFIXES)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


#: GDAL block cache while reading scenes (bytes; ``GDAL_CACHEMAX`` in the environment wins).
GDAL_CACHE_BYTES = 256 * 1024 * 1024

#: An option our Env always sets, to recognise it when nested.
_OUR_MARK = "RSIR_STAC_ENV"


def gdal_options() -> dict[str, Any]:
    """GDAL config options for reading scenes (see the module docstring).

    Defaults only: an option already set in the environment is left out, so
    ``GDAL_HTTP_TIMEOUT=120 rsir-stac ingest ...`` wins.
    """
    timeout = os.environ.get("RSIR_HTTP_TIMEOUT") or str(HTTP_TIMEOUT)
    try:
        connect = str(max(1, min(10, math.ceil(float(timeout)))))
    except ValueError:
        raise InputError(f"RSIR_HTTP_TIMEOUT={timeout!r} is invalid; give a number of seconds") from None
    defaults = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_TIMEOUT": timeout,
        "GDAL_HTTP_CONNECTTIMEOUT": connect,
        "GDAL_HTTP_MAX_RETRY": "2",
        "GDAL_HTTP_RETRY_DELAY": "1",
        # GDAL's block cache defaults to 5 % of RAM and fills as a large scene is
        # read tile by tile.  A fixed cap keeps memory flat whatever the scene
        # size; 256 MB holds a full row of blocks of a 3-band uint8 scene up to
        # ~170,000 px wide, so each block is decoded once even when it spans two
        # rows of tiles.  rasterio passes this to GDALSetCacheMax64: bytes.
        "GDAL_CACHEMAX": GDAL_CACHE_BYTES,
    }
    out = {k: v for k, v in defaults.items() if k not in os.environ}
    out[_OUR_MARK] = "1"
    return out


def gdal_env() -> Any:
    """A ``rasterio.Env`` with :func:`gdal_options`, entered around GDAL calls; a
    no-op inside one already entered (the ingest reader enters one per scene
    instead of one per tile)."""
    if rasterio.env.hasenv() and _OUR_MARK in rasterio.env.getenv():
        return contextlib.nullcontext()
    return rasterio.Env(**gdal_options())


def _fetch_error(href: str, err: BaseException) -> RsirError | None:
    """A one-line error for a URL that GDAL could not fetch, or None when not a fetch failure."""
    if not _is_url(href):
        return None
    msg = _one_line(err)
    low = msg.lower()
    if "response code: 404" in low or "404 not found" in low or "response code: 410" in low:
        return SourceNotFoundError(f"{href} does not exist ({msg}); check the URL")
    if "timed out" in low or "timeout" in low:
        return SourceNotFoundError(
            f"{href} timed out ({msg}); check the server, or allow more time with RSIR_HTTP_TIMEOUT=SECONDS"
        )
    if "curl error" in low or "http response code" in low or "http error" in low or "does not exist" in low:
        return SourceNotFoundError(f"{href} cannot be fetched ({msg}); check the URL and the network")
    return None


def _open_raster(href: str | os.PathLike[str]) -> Any:
    """Open ``href`` with rasterio, turning failures into one-line errors."""
    href = os.fspath(href)
    if not _is_url(href):
        if not os.path.exists(href):
            raise SourceNotFoundError(f"{href} does not exist; check the path")
        if os.path.isdir(href):
            raise RasterError(f"{href} is a folder, not a raster; give a GeoTIFF/COG file")
    try:
        try:
            with gdal_env(), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return rasterio.open(href)
        except (RasterioError, CPLE_BaseError) as err:
            cached_miss = "does not exist in the file system" in str(err)
            if not (href.lower().startswith(("http://", "https://")) and cached_miss):
                raise
            # GDAL remembers a failed URL for the whole process and then reports only "does not
            # exist": ask again without its cache, to retry and to learn the real cause
            with gdal_env(), rasterio.Env(CPL_VSIL_CURL_NON_CACHED=f"/vsicurl/{href}"), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return rasterio.open(href)
    except (RasterioError, CPLE_BaseError) as err:
        fetch = _fetch_error(href, err)
        if fetch is not None:
            raise fetch from err
        raise RasterError(f"{href} is not a raster GDAL can read ({_one_line(err)}); give a GeoTIFF/COG file") from err


def _check_georef(ds: Any, name: str) -> None:
    if ds.crs is None:
        gcps, _ = ds.gcps
        if gcps:
            raise RasterError(f"{name} is georeferenced only by GCPs; warp it first, e.g. `gdalwarp -t_srs EPSG:4326 in.tif out.tif`")
        raise RasterError(f"{name} has no CRS; assign one with `gdal_edit.py -a_srs EPSG:XXXX` or pass a georeferenced file")
    if ds.transform.is_identity:
        raise RasterError(f"{name} has no geotransform; georeference it (e.g. `gdal_edit.py -a_ullr ...`) or pass a georeferenced file")
    if ds.width <= 0 or ds.height <= 0 or ds.count <= 0:
        raise RasterError(f"{name} is empty (no pixels or no bands); pass a valid raster")


def _is_mercator(crs: Any) -> bool:
    try:
        from pyproj import CRS as ProjCRS

        op = ProjCRS.from_user_input(crs.to_wkt()).coordinate_operation
    except Exception:  # noqa: BLE001 - unusual CRS: treat as plain projected
        return False
    method = (op.method_name if op is not None else "").lower()
    return "mercator" in method and "transverse" not in method


def native_pixel_size(ds: Any) -> tuple[float, float]:
    """Pixel width and height in metres (see the module docstring)."""
    t = ds.transform
    px = math.hypot(t.a, t.d)
    py = math.hypot(t.b, t.e)
    crs = ds.crs
    if crs.is_projected and not _is_mercator(crs):
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # noqa: BLE001 - unknown unit: fall back to geodesic
            factor = 0.0
        if factor > 0:
            return px * factor, py * factor
    cc, cr = ds.width / 2.0, ds.height / 2.0
    cols = np.array([cc, cc + 1.0, cc])
    rows = np.array([cr, cr, cr + 1.0])
    xs = t.a * cols + t.b * rows + t.c
    ys = t.d * cols + t.e * rows + t.f
    lon, lat = warp_transform(crs, "EPSG:4326", xs.tolist(), ys.tolist())
    _, _, dx = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = _GEOD.inv(lon[0], lat[0], lon[2], lat[2])
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx <= 0 or dy <= 0:
        raise RasterError(f"{ds.name}: cannot compute the pixel size in metres at the scene centre; check its CRS and geotransform")
    return float(dx), float(dy)


# -------------------------------------------------------------------------- reader


class SceneReader:
    """Reads one scene as RGB ``uint8`` tiles; use :meth:`open` and ``with``.

    >>> with SceneReader.open("scene.tif", target_gsd=1.0) as scene:
    ...     for tile in scene.iter_tiles():
    ...         ...
    """

    def __init__(
        self,
        dataset: Any,
        href: str,
        *,
        bands: Sequence[int] | None = None,
        target_gsd: float | None = None,
        tile_size: int = 256,
        stride: int | None = None,
        edge: str = "shift",
        min_valid: float = 0.5,
    ) -> None:
        self._ds = dataset
        self.href = href
        self.tile_size = _positive_int("tile size", tile_size)
        self.stride = self.tile_size if stride is None else _positive_int("stride", stride)
        if edge not in EDGE_MODES:
            raise InputError(f"edge={edge!r} is invalid; use one of {', '.join(EDGE_MODES)}")
        self.edge = edge
        if not 0.0 <= float(min_valid) <= 1.0:
            raise InputError(f"min_valid={min_valid!r} is invalid; give a fraction between 0 and 1")
        self.min_valid = float(min_valid)
        if target_gsd is not None and (not math.isfinite(float(target_gsd)) or float(target_gsd) <= 0):
            raise InputError(f"target GSD {target_gsd!r} is invalid; give a positive number of metres")
        self.target_gsd = None if target_gsd is None else float(target_gsd)
        self.bands = select_bands(dataset, bands)
        self._px, self._py = native_pixel_size(dataset)
        if self.target_gsd is None:
            self._sx = self._sy = 1.0
        else:
            self._sx = self.target_gsd / self._px
            self._sy = self.target_gsd / self._py
        native = self._sx == 1.0 and self._sy == 1.0
        self._resampling = Resampling.nearest if native else Resampling.bilinear
        self.grid_width = max(1, round(dataset.width / self._sx))
        self.grid_height = max(1, round(dataset.height / self._sy))
        self._uniq = sorted(set(self.bands))
        self._order = [self._uniq.index(b) for b in self.bands]
        # no nodata, alpha or mask on the bands read: every pixel inside the raster is
        # valid, so tiles skip GDAL's mask reads (a second read per tile otherwise)
        flags = dataset.mask_flag_enums
        self._all_valid = all(list(flags[b - 1]) == [MaskFlags.all_valid] for b in self._uniq)
        self._float = np.issubdtype(np.dtype(dataset.dtypes[self._uniq[0] - 1]), np.floating)
        self._direct = (self._all_valid and self._order == [0, 1, 2]
                        and all(dataset.dtypes[b - 1] == "uint8" for b in self._uniq))
        self._scale: ScaleRule | None = None
        self._refs: list[TileRef] | None = None
        self.stats = TileStats()

    @classmethod
    def open(
        cls,
        href: str | os.PathLike[str],
        *,
        bands: Sequence[int] | None = None,
        target_gsd: float | None = None,
        tile_size: int = 256,
        stride: int | None = None,
        edge: str = "shift",
        min_valid: float = 0.5,
    ) -> SceneReader:
        """Open a local path or URL and check it is a usable georeferenced raster."""
        name = os.fspath(href)
        ds = _open_raster(name)
        try:
            _check_georef(ds, name)
            reader = cls(
                ds, name, bands=bands, target_gsd=target_gsd, tile_size=tile_size,
                stride=stride, edge=edge, min_valid=min_valid,
            )
        except RsirError:
            ds.close()
            raise
        except Exception as err:  # PROJ/rasterio on an odd CRS or transform
            ds.close()
            raise RasterError(
                f"{name} cannot be tiled ({type(err).__name__}: {_one_line(err)}); check its CRS and geotransform"
            ) from err
        except BaseException:
            ds.close()
            raise
        log.debug(
            "opened %s: %dx%d px, %d bands %s, %s, native GSD %.3g m, bands %s, grid %dx%d",
            name, ds.width, ds.height, ds.count, ds.dtypes[0], reader.crs,
            reader.native_gsd, reader.bands, reader.grid_width, reader.grid_height,
        )
        return reader

    # context manager -----------------------------------------------------------
    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying dataset."""
        self._ds.close()

    # properties -----------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self._ds.width)

    @property
    def height(self) -> int:
        return int(self._ds.height)

    @property
    def count(self) -> int:
        return int(self._ds.count)

    @property
    def dtype(self) -> str:
        return str(self._ds.dtypes[0])

    @property
    def crs(self) -> str:
        return str(self._ds.crs.to_string())

    @property
    def native_gsd(self) -> float:
        """Native pixel size in metres (geometric mean of x and y)."""
        return math.sqrt(self._px * self._py)

    @property
    def gsd(self) -> float:
        """GSD of the tiles as embedded, in metres."""
        return self.target_gsd if self.target_gsd is not None else self.native_gsd

    @property
    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """Scene bounds as ``(W, S, E, N)`` in EPSG:4326."""
        b = self._ds.bounds
        w, s, e, n = transform_bounds(self._ds.crs, "EPSG:4326", b.left, b.bottom, b.right, b.top, densify_pts=21)
        return (float(w), float(s), float(e), float(n))

    @property
    def scale(self) -> ScaleRule:
        """The scene-wide scale rule (computed on first use from a decimated read)."""
        if self._scale is None:
            try:
                with gdal_env():
                    self._scale = compute_scale(self._ds, self.bands)
            except (RasterioError, CPLE_BaseError) as err:
                fetch = _fetch_error(self.href, err)
                if fetch is not None:
                    raise fetch from err
                raise RasterError(
                    f"{self.href}: cannot read a decimated copy to compute the stretch ({_one_line(err)}); "
                    "the file may be corrupt, re-download it"
                ) from err
            if self._scale.kind != "none":
                log.info("%s: %s", self.href, self._scale)
        return self._scale

    # windows --------------------------------------------------------------------
    def windows(self) -> list[TileRef]:
        """All tile references, row-major; no pixel reads."""
        if self._refs is None:
            try:
                self._refs = self._make_refs()
            except RsirError:
                raise
            except Exception as err:  # PROJ cannot map this CRS to lon/lat
                raise RasterError(
                    f"{self.href}: tile footprints cannot be transformed from {self.crs} to lon/lat "
                    f"({type(err).__name__}: {_one_line(err)}); reproject the scene, e.g. with gdalwarp"
                ) from err
            self.stats.windows = len(self._refs)
        return list(self._refs)

    def _source_float(self, g: PixelWindow) -> tuple[float, float, float, float]:
        return (g.col_off * self._sx, g.row_off * self._sy, g.width * self._sx, g.height * self._sy)

    def _make_refs(self) -> list[TileRef]:
        grid = grid_windows(self.grid_width, self.grid_height, self.tile_size, self.stride, self.edge)
        if not grid:
            return []
        src = np.array([self._source_float(g) for g in grid], dtype=np.float64)
        x0, y0 = src[:, 0], src[:, 1]
        x1, y1 = x0 + src[:, 2], y0 + src[:, 3]
        # UL, UR, LR, LL, centre for every window, in one batch.
        cols = np.stack([x0, x1, x1, x0, (x0 + x1) / 2], axis=1).ravel()
        rows = np.stack([y0, y0, y1, y1, (y0 + y1) / 2], axis=1).ravel()
        t = self._ds.transform
        xs = t.a * cols + t.b * rows + t.c
        ys = t.d * cols + t.e * rows + t.f
        lon, lat = warp_transform(self._ds.crs, "EPSG:4326", xs.tolist(), ys.tolist())
        lon = np.asarray(lon, dtype=np.float64).reshape(-1, 5)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1, 5)
        crs, gsd = self.crs, self.gsd
        refs = []
        for i, g in enumerate(grid):
            corners = tuple((float(lon[i, k]), float(lat[i, k])) for k in range(4))
            bbox = (
                float(lon[i, :4].min()), float(lat[i, :4].min()),
                float(lon[i, :4].max()), float(lat[i, :4].max()),
            )
            window = PixelWindow(
                int(round(src[i, 0])), int(round(src[i, 1])), int(round(src[i, 2])), int(round(src[i, 3]))
            )
            refs.append(
                TileRef(
                    window=window, gsd=gsd, crs=crs, bbox=bbox, corners=corners,  # type: ignore[arg-type]
                    centroid=(float(lon[i, 4]), float(lat[i, 4])), grid=g,
                )
            )
        return refs

    # reading --------------------------------------------------------------------
    def read(self, ref: TileRef) -> Tile | None:
        """Read one tile; ``None`` when it is mostly empty.

        Raises :class:`RasterError` naming the window when GDAL cannot read it
        (corrupt block), so the caller can skip and report it.
        """
        scale = self.scale
        pixels = None
        try:
            with gdal_env():
                if self._direct and scale.kind == "none":
                    pixels = self._read_direct(ref.grid)
                if pixels is None:
                    data, valid = self._read_window(ref.grid)
        except (RasterioError, CPLE_BaseError) as err:
            self.stats.failed += 1
            detail = _one_line(err.__cause__ or err)
            if _fetch_error(self.href, err) is not None:
                msg = (f"{self.href}: window {ref.window} cannot be fetched ({detail}); "
                       "check the server, then re-run the same command to retry the window")
            else:
                msg = (f"{self.href}: window {ref.window} cannot be read ({detail}); "
                       "the file may be corrupt, re-download it or skip the window")
            self.stats.failures.append(msg)
            raise RasterError(msg) from err
        if pixels is not None:
            self.stats.read += 1
            return Tile(ref=ref, pixels=pixels, valid_fraction=1.0)
        t_h, t_w = valid.shape
        fraction = float(np.count_nonzero(valid)) / float(t_h * t_w)
        if fraction == 0.0 or fraction < self.min_valid:
            self.stats.skipped_empty += 1
            return None
        pixels = scale.apply(data)
        if fraction < 1.0:
            pixels[:, ~valid] = 0
        self.stats.read += 1
        return Tile(ref=ref, pixels=np.ascontiguousarray(pixels.transpose(1, 2, 0)), valid_fraction=fraction)

    def _read_direct(self, g: PixelWindow) -> np.ndarray | None:
        """The tile as ``(h, w, 3)`` uint8 read straight into pixel-interleaved
        memory, or None when it is not wholly inside the raster.  Only for
        rasters where every pixel is valid and the bands need no reordering or
        scaling (``self._direct``): the common uint8 RGB case, with no mask
        read and no copies."""
        x0, y0, w, h = self._source_float(g)
        if x0 < 0 or y0 < 0 or x0 + w > self._ds.width or y0 + h > self._ds.height:
            return None
        out = np.empty((g.height, g.width, 3), dtype=np.uint8)
        self._ds.read(indexes=self._uniq, window=Window(x0, y0, w, h), out=out.transpose(2, 0, 1),
                      resampling=self._resampling)
        return out

    def _read_window(self, g: PixelWindow) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(3, tile, tile)`` data in the source dtype and its validity mask."""
        x0, y0, w, h = self._source_float(g)
        W, H = self._ds.width, self._ds.height
        data = np.zeros((3, g.height, g.width), dtype=self._ds.dtypes[self.bands[0] - 1])
        valid = np.zeros((g.height, g.width), dtype=bool)
        ix0, iy0 = max(x0, 0.0), max(y0, 0.0)
        ix1, iy1 = min(x0 + w, float(W)), min(y0 + h, float(H))
        if ix1 <= ix0 or iy1 <= iy0:
            return data, valid
        ox0 = min(max(int(round((ix0 - x0) / self._sx)), 0), g.width)
        ox1 = min(max(int(round((ix1 - x0) / self._sx)), 0), g.width)
        oy0 = min(max(int(round((iy0 - y0) / self._sy)), 0), g.height)
        oy1 = min(max(int(round((iy1 - y0) / self._sy)), 0), g.height)
        if ox1 <= ox0 or oy1 <= oy0:
            return data, valid
        window = Window(ix0, iy0, ix1 - ix0, iy1 - iy0)
        shape = (len(self._uniq), oy1 - oy0, ox1 - ox0)
        raw = self._ds.read(indexes=self._uniq, window=window, out_shape=shape, resampling=self._resampling)
        if self._all_valid:
            part_valid = np.ones(shape[1:], dtype=bool)
        else:
            masks = self._ds.read_masks(indexes=self._uniq, window=window, out_shape=shape,
                                        resampling=Resampling.nearest)
            part_valid = (masks > 0).any(axis=0)
        if self._float:
            part_valid &= np.isfinite(raw).all(axis=0)
        if shape[1:] == (g.height, g.width) and self._order == [0, 1, 2]:
            return raw, part_valid  # the whole tile lies inside the raster: no padding copy
        data = data.astype(raw.dtype, copy=False)
        data[:, oy0:oy1, ox0:ox1] = raw[self._order]
        valid[oy0:oy1, ox0:ox1] = part_valid
        return data, valid

    def iter_tiles(self) -> Iterator[Tile]:
        """Yield every non-empty tile; failed windows are logged, counted and skipped.

        A scene whose stretch cannot be computed raises :class:`RasterError` before
        the first tile.
        """
        refs = self.windows()
        if refs:
            _ = self.scale
        for ref in refs:
            try:
                tile = self.read(ref)
            except RasterError as err:
                log.warning("%s", err)
                continue
            if tile is not None:
                yield tile


def open_scene(href: str | os.PathLike[str], **options: Any) -> SceneReader:
    """Shorthand for :meth:`SceneReader.open`."""
    return SceneReader.open(href, **options)


# --------------------------------------------------------------------- query images

_PIL_FIRST = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


def _read_with_pil(path: str, bands: Sequence[int] | None) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            grey = np.asarray(img, dtype=np.float64)
            stack = np.stack([grey, grey, grey])
            rgb = percentile_rule(stack).apply(stack)
            return np.ascontiguousarray(rgb.transpose(1, 2, 0))
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _read_with_rasterio(path: str, bands: Sequence[int] | None) -> np.ndarray:
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            if bands is None and ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette:
                raise ValueError("palette image: decoded by Pillow")  # Pillow applies the colour map
            chosen = select_bands(ds, bands)
            scale = compute_scale(ds, chosen)
            factor = min(1.0, MAX_QUERY_SIDE / max(ds.width, ds.height))
            h, w = max(1, round(ds.height * factor)), max(1, round(ds.width * factor))
            uniq = sorted(set(chosen))
            resampling = Resampling.nearest if factor == 1.0 else Resampling.bilinear
            raw = ds.read(indexes=uniq, out_shape=(len(uniq), h, w), resampling=resampling)
            masks = ds.read_masks(indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
    valid = (masks > 0).any(axis=0)
    rgb = scale.apply(raw[[uniq.index(b) for b in chosen]])
    rgb[:, ~valid] = 0
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def read_image(path: str | os.PathLike[str], *, bands: Sequence[int] | None = None) -> np.ndarray:
    """Read any query image as ``H x W x 3`` RGB ``uint8``.

    PNG/JPEG/WebP/BMP/GIF are decoded by Pillow first (16-bit/float grey gets
    the p2–p98 stretch); TIFFs and other extensions by rasterio first, with
    the same band rule and stretch as scene tiles (longer side capped at
    :data:`MAX_QUERY_SIDE`); each falls back to the other decoder.  Raises
    :class:`ImageReadError` when neither can decode it.
    """
    name = os.fspath(path)
    if not _is_url(name):
        if not os.path.exists(name):
            raise SourceNotFoundError(f"{name} does not exist; check the path")
        if os.path.isdir(name):
            raise ImageReadError(f"{name} is a folder; give a PNG/JPEG/WebP/GeoTIFF image")
    ext = Path(name.split("?", 1)[0]).suffix.lower()
    pil_first = ext in _PIL_FIRST
    readers = [_read_with_pil, _read_with_rasterio] if pil_first else [_read_with_rasterio, _read_with_pil]
    first: BaseException | None = None
    for reader in readers:
        try:
            image = reader(name, bands)
        except (RasterError, InputError):
            raise
        except Exception as err:  # noqa: BLE001 - try the next decoder
            first = first or err
            continue
        if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            continue
        return image
    detail = f" ({_one_line(first)})" if first is not None else ""
    raise ImageReadError(f"{name} cannot be decoded as an image{detail}; give a PNG/JPEG/WebP/GeoTIFF image")


__all__ = [
    "EDGE_MODES",
    "PERCENTILES",
    "STATS_SIZE",
    "PixelWindow",
    "ScaleRule",
    "SceneReader",
    "Tile",
    "TileRef",
    "TileStats",
    "compute_scale",
    "gdal_env",
    "gdal_options",
    "grid_windows",
    "native_pixel_size",
    "open_scene",
    "percentile_rule",
    "read_image",
    "select_bands",
]
