"""Reading one scene as RGB ``uint8`` tiles with footprints (:class:`SceneReader`)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rsir_stac.errors import InputError, RasterError, RsirError
from rsir_stac.tiling.area_of_use import other_body, warn_far_from_area_of_use
from rsir_stac.tiling.bands import select_bands
from rsir_stac.tiling.domain import (footprint_this_side, nothing_past_edge, parts_on_the_earth, projection_edge,
                                    windows_beyond_edge, windows_past_edge)
from rsir_stac.tiling.footprints import Corner, crs_label, native_pixel_size, tile_footprints
from rsir_stac.tiling.outlines import tile_outlines, tiles_on_earth
from rsir_stac.tiling.georef import check_georef
from rsir_stac.tiling.grid import EDGE_MODES, PixelWindow, _positive_int, grid_windows
from rsir_stac.tiling.pixels import PixelPlan, as_on_the_map, pixel_plan, read_rgb
from rsir_stac.tiling.scaling import ScaleRule
from rsir_stac.tiling.sources import (_one_line, _open_raster, gdal_env, named_reads, named_text,
                                      read_error)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileRef:
    """Where a tile is: source window, GSD, CRS and lon/lat footprint.

    ``window`` is in source pixels (rounded); ``grid`` is the same tile in the
    target-GSD pixel grid (equal to ``window`` at the native GSD).
    ``bbox`` is ``(W, S, E, N)`` in degrees, ``W > E`` when the tile crosses the
    antimeridian (:func:`~rsir_stac.tiling.footprints.tile_footprints`);
    ``corners`` are ``(lon, lat)`` in the order
    UL, UR, LR, LL; ``centroid`` is the lon/lat of the window centre.
    """

    window: PixelWindow
    gsd: float
    crs: str
    bbox: tuple[float, float, float, float]
    corners: tuple[Corner, Corner, Corner, Corner]
    centroid: Corner
    grid: PixelWindow
    #: the densified lon/lat outline of a tile its four corners do not describe (near a pole, 90 degrees
    #: wide or more, edges bowing by more than half a pixel in lon/lat, or, in a tile read by
    #: :meth:`SceneReader.read`, fill past its projection's edge): its footprint; else None
    outline: tuple[Corner, ...] | None = None


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


#: Tile sizes (pixels at the target GSD) a scene may be cut into.
MIN_TILE, MAX_TILE = 8, 4096
#: Most tiles one scene may hold at the target GSD: the windows and footprints of a scene are
#: listed in memory (~1 KB a tile), so a mistaken --gsd (e.g. degrees for metres) is refused
#: up front instead of exhausting memory.
MAX_SCENE_TILES = 4_000_000


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
        nodata: float | None = None,
    ) -> None:
        self._ds = dataset
        self.nodata = nodata  # a nodata value declared outside the file (STAC raster:bands)
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
        self.grid_width = max(1, round(dataset.width / self._sx))
        self.grid_height = max(1, round(dataset.height / self._sy))
        self._plan: PixelPlan | None = None
        self._refs: list[TileRef] | None = None
        #: grid windows :meth:`windows` leaves out as no place on the Earth (space beyond a geostationary
        #: disk; wholly past a curved projection edge); filled by the first call
        self.off_earth: set[PixelWindow] = set()
        #: one line saying how many tiles :meth:`windows` left out as no place on the Earth, and why ("": none)
        self.off_earth_note = ""
        self._edge: Any = False  # the CRS's ProjectionEdge (None: it has none), found on first use
        self._warned_edge = False
        self._cut: set[PixelWindow] = set()
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
        nodata: float | Sequence[float | None] | None = None,
        hrefs: Sequence[str] | None = None,
    ) -> SceneReader:
        """Open a local path or URL and check it is a usable georeferenced raster.  ``nodata``:
        a value marking invalid pixels that the file does not declare itself (a STAC asset's
        ``raster:bands`` nodata; see :func:`~rsir_stac.tiling.pixels.pixel_plan`).  ``hrefs``:
        three single-band files read as bands R, G, B of one scene (``href`` names it, the
        first), :class:`~rsir_stac.tiling.stack.BandStack`; ``nodata`` is then one value per file."""
        name = os.fspath(href)
        if hrefs is not None:
            from rsir_stac.tiling.stack import BandStack

            ds = BandStack.open(hrefs, nodata)
            nodata = None  # applied file by file by the stack
        else:
            ds = _open_raster(name)
        try:
            check_georef(ds, name)
            reader = cls(
                ds, name, bands=bands, target_gsd=target_gsd, tile_size=tile_size,
                stride=stride, edge=edge, min_valid=min_valid, nodata=nodata,
            )
        except RsirError:
            ds.close()
            raise
        except Exception as err:  # PROJ/rasterio on an odd CRS or transform
            body = other_body(ds.crs)
            ds.close()
            if body:
                raise RasterError(f"{name} is on {body}, not the Earth (its CRS {crs_label(ds.crs)}): rsir-stac "
                                  "places tiles by Earth longitude and latitude, so it cannot index it") from err
            why = named_text(_one_line(err), ds)
            raise RasterError(
                f"{name} cannot be tiled ({type(err).__name__}: {why if len(why) <= 300 else why[:280] + ' ...'}); "
                "check its CRS and geotransform"
            ) from err
        except BaseException:
            ds.close()
            raise
        warn_far_from_area_of_use(ds, name)
        log.debug(
            "opened %s: %dx%d px, %d bands %s, %s, native GSD %.3g m, bands %s, grid %dx%d",
            name, ds.width, ds.height, ds.count, ds.dtypes[0], reader.crs,
            reader.native_gsd, reader.bands, reader.grid_width, reader.grid_height,
        )
        return reader

    def gsd_text(self) -> str:
        return "its own GSD" if self.target_gsd is None else f"a GSD of {self.target_gsd:g} m"

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
    def native_transform(self) -> tuple[float, float, float, float, float, float]:
        """The file's own geotransform (a, b, c, d, e, f as rasterio's ``Affine``), in its CRS's units."""
        t = self._ds.transform
        return (float(t.a), float(t.b), float(t.c), float(t.d), float(t.e), float(t.f))

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """Native pixel width and height on the ground, in metres (at the scene centre for
        geographic and Mercator CRSs)."""
        return (self._px, self._py)

    def overview_factor(self, decimation: float) -> int:
        """The decimation factor of the overview GDAL reads for ``decimation`` source pixels per
        output pixel and axis (1: full resolution; :func:`rsir_stac.tiling.readcost.overview_factor`)."""
        from rsir_stac.tiling.readcost import overview_factor

        return overview_factor(self._ds, decimation)

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
    def plan(self) -> PixelPlan:
        """How pixels become RGB ``uint8`` (:func:`~rsir_stac.tiling.pixels.pixel_plan`),
        built on first use (the stretch needs a decimated read)."""
        if self._plan is None:
            try:
                with gdal_env(), named_reads(self._ds):  # GDAL's message names the file as given
                    self._plan = pixel_plan(self._ds, self.bands, nodata=self.nodata)
            except (RasterioError, CPLE_BaseError) as err:
                raise read_error(self.href, err, "a decimated copy (to compute the stretch)") from err
            if self._plan.scale.kind != "none":
                log.info("%s: %s", self.href, self._plan.scale)
        return self._plan

    @property
    def scale(self) -> ScaleRule:
        """The scene-wide scale rule (computed on first use from a decimated read)."""
        return self.plan.scale

    # windows --------------------------------------------------------------------
    def windows(self) -> list[TileRef]:
        """All tile references, row-major; no pixel reads.  Raises InputError when the scene
        would hold more than :data:`MAX_SCENE_TILES` tiles (e.g. a --gsd in degrees, not metres)."""
        if self._refs is None:
            gw, gh = self.grid_width, self.grid_height
            tiles = math.ceil(gw / self.stride) * math.ceil(gh / self.stride)
            if tiles > MAX_SCENE_TILES:
                raise InputError(
                    f"{self.href} at {self.gsd_text()} is {gw:.3g} x {gh:.3g} px, {tiles:.3g} tiles of "
                    f"{self.tile_size} px: over the {MAX_SCENE_TILES:,} one scene may hold; give a coarser --gsd "
                    f"(metres per pixel; this scene's own is {self.native_gsd:.3g} m) or a larger --stride")
            try:
                self._refs = self._make_refs()
            except RsirError:
                raise
            except Exception as err:  # PROJ cannot map this CRS to lon/lat
                body = other_body(self._ds.crs)
                if body:
                    raise RasterError(f"{self.href} is on {body}, not the Earth (its CRS {crs_label(self._ds.crs)}): "
                                      "rsir-stac places tiles by Earth longitude and latitude, so it cannot index it"
                                      ) from err
                raise RasterError(
                    f"{self.href}: tile footprints cannot be transformed from {crs_label(self._ds.crs)} to lon/lat "
                    f"({type(err).__name__}: {_one_line(err)}); the scene lies outside where its CRS maps the "
                    "Earth, so its geotransform or CRS is probably wrong: give it the true ones, e.g. `rio "
                    "edit-info --crs EPSG:XXXX --transform '[10, 0, WEST, 0, -10, NORTH]' FILE`"
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
        # a window running past the raster (a padded tile, a scene smaller than a tile) shows
        # ground only where the raster is: its footprint and centre are that part's
        x0, y0 = np.clip(src[:, 0], 0, self.width), np.clip(src[:, 1], 0, self.height)
        x1 = np.clip(src[:, 0] + src[:, 2], 0, self.width)
        y1 = np.clip(src[:, 1] + src[:, 3], 0, self.height)
        shown = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
        on = tiles_on_earth(self._ds.transform, self._ds.crs, shown)
        parts = self._parts_on_the_earth(on, shown)
        lost = ~on & ~np.isin(np.arange(len(on)), list(parts))
        if lost.any():  # a geostationary scene's space beyond the disk
            if lost.all():
                raise ValueError("no tile of the scene lies on the Earth as its CRS maps it")
            # said by whoever lists the tiles to index (ingest warns with it), not by every reader of a tile
            self.off_earth_note = (
                f"{self.href}: {int(lost.sum())} of its {len(on)} tiles reach where its CRS {crs_label(self._ds.crs)} "
                "maps no place on the Earth (space beyond a geostationary disk, past a pole or past a world map's "
                "edge) and have no footprint that can be placed, so they are left out")
            log.info("%s", self.off_earth_note)
            self.off_earth.update(grid[i] for i in np.flatnonzero(lost))
        keep = self._on_this_side(np.flatnonzero(on), grid, shown)
        corners_, centroids, bboxes = tile_footprints(self._ds.transform, self._ds.crs, shown[keep])
        outlines = tile_outlines(self._ds.transform, self._ds.crs, shown[keep], bboxes)
        feet = {int(i): (corners_[j], (outlines.get(j), bboxes[j], centroids[j])) for j, i in enumerate(keep)}
        feet.update(parts)
        self._cut = {grid[i] for i in parts}   # cut at a Mollweide/Robinson edge: their footprints are final
        crs, gsd = self.crs, self.gsd  # once: the CRS's string costs ~20 us
        return [self._ref(grid[i], src[i], *feet[i], crs, gsd) for i in sorted(feet)]

    def _ref(self, g: PixelWindow, src: np.ndarray, corners: Any, footprint: Any, crs: str, gsd: float) -> TileRef:
        """The :class:`TileRef` of grid window ``g`` (``src``: it in source pixels, floats) with
        ``corners`` (UL, UR, LR, LL lon/lat) and ``footprint`` ``(outline or None, bbox, centroid)``."""
        outline, bbox, centroid = footprint
        x0, y0, w, h = (int(round(v)) for v in src)
        if self.edge != "pad":  # the grid at the target GSD may end a fraction of a pixel past the raster
            w, h = min(w, self.width - x0), min(h, self.height - y0)
        return TileRef(window=PixelWindow(x0, y0, w, h), gsd=gsd, crs=crs,
                       bbox=tuple(float(v) for v in bbox),  # type: ignore[arg-type]
                       corners=tuple((float(lon), float(lat)) for lon, lat in corners),  # type: ignore[arg-type]
                       centroid=(float(centroid[0]), float(centroid[1])), grid=g,
                       outline=tuple((float(a), float(b)) for a, b in outline) if outline else None)

    def _edge_of_crs(self) -> Any:
        """The CRS's :class:`~rsir_stac.tiling.domain.ProjectionEdge` (None: it has none), found once."""
        if self._edge is False:
            self._edge = projection_edge(self._ds.crs)
        return self._edge

    def _parts_on_the_earth(self, on: np.ndarray, shown: np.ndarray) -> dict[int, Any]:
        """``{i: (corners, footprint)}`` for the tiles not ``on`` the Earth whole that reach past a curved
        edge PROJ maps nothing past (Mollweide, Robinson): their part on the Earth
        (:func:`~rsir_stac.tiling.domain.parts_on_the_earth`)."""
        edge = self._edge_of_crs() if not on.all() else None
        if edge is None:
            return {}
        off = np.flatnonzero(~on)
        return {int(off[j]): v for j, v in parts_on_the_earth(edge, self._ds.transform, shown[off]).items()}

    def _on_this_side(self, idx: np.ndarray, grid: list[PixelWindow], shown: np.ndarray) -> np.ndarray:
        """``idx`` (tiles, indices into ``grid``/``shown``) without those that lie wholly past a curved
        projection edge (:func:`~rsir_stac.tiling.domain.windows_beyond_edge`: no place on the Earth)."""
        edge = self._edge_of_crs()
        if edge is None or not edge.curved or not len(idx):
            return idx
        off = windows_past_edge(edge, self._ds.transform, shown[idx])   # 4 points a tile: the few at the edge
        if off.any():   # their densified outlines: wholly past it?
            off[off] = windows_beyond_edge(edge, self._ds.transform, shown[idx[off]])
        if not off.any():
            return idx
        if off.all():
            raise RasterError(f"{self.href} lies wholly past the edge of its CRS {crs_label(self._ds.crs)}, 180 "
                              f"degrees from its central meridian {edge.lon0:g}, where it maps no place on the "
                              "Earth; its geotransform or CRS is wrong: give it the true ones, e.g. `rio edit-info "
                              f"--crs EPSG:XXXX --transform '[10, 0, WEST, 0, -10, NORTH]' {self.href}`")
        log.info("%s: %d of its %d tiles lie wholly past its CRS's edge (180 degrees from its central meridian %g), "
                 "where it maps no place: left out", self.href, int(off.sum()), len(off), edge.lon0)
        self.off_earth.update(grid[i] for i in idx[off])
        return idx[~off]

    # reading --------------------------------------------------------------------
    def read(self, ref: TileRef) -> Tile | None:
        """Read one tile through :func:`~rsir_stac.tiling.pixels.read_rgb`; ``None``
        when it is mostly empty.  The tile's ``ref`` is ``ref``, or for a tile holding only
        fill past its projection's edge, ``ref`` with the footprint of its part on this side.

        Raises :class:`RasterError` naming the window when GDAL cannot read it
        (corrupt block), so the caller can skip and report it.
        """
        plan = self.plan
        g = ref.grid
        try:
            with gdal_env(), named_reads(self._ds):  # GDAL's message names the file as given
                pixels, valid = read_rgb(self._ds, plan, Window(*self._source_float(g)), (g.height, g.width))
        except (RasterioError, CPLE_BaseError) as err:
            self.stats.failed += 1
            msg = str(read_error(self.href, err, f"window {ref.window}", window=True))
            self.stats.failures.append(msg)
            raise RasterError(msg) from err
        pixels = as_on_the_map(pixels, self._ds)
        fraction = 1.0 if valid is None else float(np.count_nonzero(valid)) / float(valid.size)
        if fraction == 0.0 or fraction < self.min_valid:
            self.stats.skipped_empty += 1
            return None
        here = self._this_side(ref, valid, pixels.shape[:2])
        if here is None:  # nothing of it on this side of a curved edge: no place on the Earth
            self.stats.skipped_empty += 1
            return None
        self.stats.read += 1
        return Tile(ref=here, pixels=pixels, valid_fraction=fraction)

    def _this_side(self, ref: TileRef, valid: np.ndarray | None, shape: tuple[int, ...]) -> TileRef | None:
        """``ref``, or for a tile whose corners reach past its projection's edge and whose pixels there
        are all fill (a MODIS sinusoidal tile at 180: PROJ wraps that fill to the other side of the
        world), ``ref`` with the bbox, outline and (when it was past the edge) centre of its part on this
        side (:mod:`rsir_stac.tiling.domain`); window, grid and corners stay.  ``valid``: the tile's mask
        as read (None: every pixel valid), ``shape`` its ``(rows, cols)``.  Tiles with pixels past the
        edge (a Pacific mosaic in EPSG:3857) keep their footprint, unless the edge is curved (sinusoidal:
        no place lies past it), where those pixels are fill the file does not declare (one warning a
        scene names the fix)."""
        if self._edge_of_crs() is None:
            return ref
        c0, r0, cw, rh = src = self._source_float(ref.grid)
        x0, y0 = np.clip(c0, 0, self.width), np.clip(r0, 0, self.height)  # the part on the raster, as _make_refs
        shown = (x0, y0, np.clip(c0 + cw, 0, self.width) - x0, np.clip(r0 + rh, 0, self.height) - y0)
        t = self._ds.transform
        if not windows_past_edge(self._edge, t, np.array([shown]))[0]:
            return ref  # nearly every tile: its corners are on this side
        if not nothing_past_edge(self._edge, t, src, np.ones(shape[:2], dtype=bool) if valid is None else valid):
            if not self._edge.curved:
                return ref  # pixels past the edge: a mosaic across 180 (EPSG:3857, 6933)
            if not self._warned_edge:  # past a sinusoidal edge: fill the file does not declare
                self._warned_edge = True
                own = self._ds.nodata
                log.warning("%s: its pixels past its CRS's edge (180 degrees from its central meridian %g), where "
                            "it maps no place, read as data (fill that is not its nodata; it declares %s): they are "
                            "embedded with its edge tiles; %s", self.href, self._edge.lon0,
                            "none" if own is None else f"{own:g}",
                            "pass --nodata VALUE, the fill's value" if own is None and self.nodata is None else
                            f"declare the fill's value as its nodata: rio edit-info --nodata VALUE {self.href}")
        if ref.grid in self._cut:
            return ref
        part = footprint_this_side(self._edge, t, self._ds.crs, shown, ref.centroid)
        if part is None:  # no part on this side with an area: off the Earth past a curved edge
            return None if self._edge.curved else ref
        outline, bbox, centroid = part
        log.debug("%s: window %s holds only fill past its CRS's edge (central meridian %g): footprint %s -> %s",
                  self.href, ref.window, self._edge.lon0, ref.bbox, bbox)
        return replace(ref, bbox=bbox, centroid=centroid, outline=tuple(outline))

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
