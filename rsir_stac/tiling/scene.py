"""Reading one scene as RGB ``uint8`` tiles with footprints (:class:`SceneReader`)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio._err import CPLE_BaseError
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rsir_stac.errors import InputError, RasterError, RsirError
from rsir_stac.tiling.bands import select_bands
from rsir_stac.tiling.footprints import Corner, native_pixel_size
from rsir_stac.tiling.grid import EDGE_MODES, PixelWindow, _positive_int, grid_windows
from rsir_stac.tiling.scaling import ScaleRule, compute_scale
from rsir_stac.tiling.sources import _check_georef, _fetch_error, _one_line, _open_raster, gdal_env

log = logging.getLogger(__name__)


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


__all__ = ["SceneReader", "Tile", "TileRef", "TileStats", "open_scene"]
