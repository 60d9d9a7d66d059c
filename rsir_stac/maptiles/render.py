"""Rendering web-map tiles: a 256 x 256 px PNG of the scenes that cover a tile, as a mosaic
read with rio-tiler (first valid pixel wins, in the chosen order) in the colours the model
saw, cached in a byte-bounded LRU; per-thread open readers, unreadable scenes left out."""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from rsir_stac.errors import RsirError, SourceNotFoundError, SourceUnreadableError
from rsir_stac.maptiles.grid import MAX_ZOOM, OVERZOOM, TILE_SIZE, UNDERZOOM, check_tile, tile_bounds, zoom_range
from rsir_stac.maptiles.scenes import Scene, SceneChoice

log = logging.getLogger(__name__)


#: Default byte budget of the rendered-tile cache.
CACHE_BYTES = 128 * 1024 * 1024
#: Seconds before a scene whose source could not be read is tried again.
RETRY_S = 30.0
#: Open source rasters kept per worker thread (a dataset is used by one thread at a time).
OPEN_PER_THREAD = 4
#: A reader whose datasets' decoded blocks together exceed this (bytes) is closed after its map tile,
#: not kept: an open dataset holds its last decoded block, and idle worker threads are many
#: (:func:`rsir_stac.tiling.blocks.block_bytes`; a 512 px RGB COG tile is 0.75 MB).
KEEP_BLOCK_BYTES = 8 * 1024 * 1024
#: Why a scene refused by the service's block limit (:func:`rsir_stac.tiling.blocks.limit_block_bytes`)
#: is not drawn, with its fix; no server path (the map names scenes by item).
BLOCKS_TOO_LARGE = ("its file is stored in blocks (tiles or strips) too large for this service to decode; rewrite it "
                    "in 512 px tiles (gdal_translate -of COG in.tif out.tif) and re-ingest it")
#: Map tiles rendered at a time (others wait): each read holds at most
#: :data:`rsir_stac.tiling.readcost.READ_BUDGET_BYTES`, so all of them at most this many times it.
RENDERS_AT_ONCE = max(2, min(8, os.cpu_count() or 2))
#: Map tiles being drawn or waiting to be at a time; more are refused (429) at once.  A browser
#: keeps about 6 requests in flight per host name, so a map page never meets it.
RENDER_QUEUE = max(16, 4 * RENDERS_AT_ONCE)


def _alpha_as_ingest(img: Any) -> None:
    """An alpha band read as ingest reads it (GDAL's mask rule): alpha 0 is nodata, any other
    value is data, drawn opaque.  rio-tiler keeps only fully opaque pixels, so a 4-band file
    whose 4th band is flagged alpha but holds other values (e.g. near-infrared 37..204) was
    drawn fully transparent while its tiles were indexed.  Changes ``img`` in place."""
    import numpy as np

    alpha = getattr(img, "alpha_mask", None)
    if alpha is None:
        return
    valid = np.asarray(alpha) > 0
    img.array.mask = np.broadcast_to(~valid, img.array.shape).copy()
    img.alpha_mask = np.where(valid, np.iinfo(np.uint8).max, 0).astype(np.uint8)


def _png(data, mask) -> bytes:
    """RGBA PNG of a ``(3, h, w)`` array and its ``(h, w)`` mask (255 = data); zlib level 1
    (about 4x faster than GDAL's default level 6, ~10 % larger)."""
    import io

    import numpy as np
    from PIL import Image

    rgba = np.dstack([np.moveaxis(data[:3], 0, -1).astype(np.uint8, copy=False), mask.astype(np.uint8, copy=False)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class _Skip(Exception):
    """A scene that adds nothing to this tile (outside, zoom limits, unreadable)."""


class _BandTiles:
    """A composed scene's three files (R, G, B) as one rio-tiler reader: ``tile`` reads band 1
    of each file through its own :func:`_reader_class` reader (opened exactly as a one-file
    scene's) and stacks them; a file's STAC nodata is applied when the file declares no
    nodata, mask or alpha of its own, as :class:`rsir_stac.tiling.stack.BandStack` does."""

    def __init__(self, hrefs: Sequence[str], nodata: Any) -> None:
        from rasterio.enums import MaskFlags

        from rsir_stac.tiling.stack import _nodata_values

        self._readers: list[Any] = []
        try:
            for href in hrefs:
                self._readers.append(_open_reader(href))
        except BaseException:
            self.close()
            raise
        self._nodata = tuple(
            v if v is not None and math.isfinite(v)
            and list(r.dataset.mask_flag_enums[0]) == [MaskFlags.all_valid] else None
            for r, v in zip(self._readers, _nodata_values(nodata)))
        self.minzoom, self.maxzoom = self._readers[0].minzoom, self._readers[0].maxzoom

    def tile(self, tile_x: int, tile_y: int, tile_z: int, *, indexes: Sequence[int] = (1, 2, 3),
             **kw: Any) -> Any:
        """The tile of bands ``indexes`` (1 R, 2 G, 3 B: band 1 of each file), one ImageData."""
        from rio_tiler.models import ImageData

        kw.pop("nodata", None)
        images = []
        for b in indexes:
            nd = self._nodata[int(b) - 1]
            images.append(self._readers[int(b) - 1].tile(tile_x, tile_y, tile_z, indexes=1,
                                                         **({"nodata": nd} if nd is not None else {}), **kw))
        return ImageData.create_from_list(images)

    def close(self) -> None:
        for r in self._readers:
            r.close()


@functools.lru_cache(maxsize=1)
def _reader_class():
    """rio-tiler's ``Reader`` without its per-tile bounds test: the renderer reads only scenes whose
    stored bbox meets the tile (:meth:`TileRenderer.covering`), and rio-tiler's test reprojects the
    tile's bounds with 21 points per side on every call (~13 ms of a ~35 ms tile)."""
    from rio_tiler.io import Reader

    class SceneTileReader(Reader):
        def tile_exists(self, tile_x: int, tile_y: int, tile_z: int) -> bool:
            return True

    return SceneTileReader


def _open_reader(href: str) -> Any:
    """A :func:`_reader_class` reader of ``href``, its dataset opened as ingest opens it
    (:func:`rsir_stac.tiling.sources.open_dataset`): a file under ``serve --ingest-root`` as every
    other read there (GeoTIFF alone, the opened file checked against the roots, each time a reader
    is made, so a file or folder swapped for a link after the scene was first drawn is refused, not
    followed), a URL as an image format only (never a VRT naming other files), and blocks over the
    service's limit refused."""
    from rsir_stac.tiling.sources import open_dataset

    ds = open_dataset(href)   # as ingest opens it: confined under the roots, URLs as image formats only, blocks bounded
    try:
        reader = _reader_class()(href, dataset=ds)
    except BaseException:
        ds.close()
        raise
    reader._ctx_stack.enter_context(ds)  # closed with the reader (rio-tiler closes only what it opened)
    return reader


def _datasets(src: Any) -> list[Any]:
    """The rasterio datasets a reader (rio-tiler ``Reader`` or :class:`_BandTiles`) reads."""
    return [r.dataset for r in getattr(src, "_readers", None) or [src]]


def _wrap_options(src: Any, tile: tuple[float, float, float, float]) -> dict:
    """rio-tiler ``vrt_options`` that read a lon/lat raster whose longitudes run past ±180 (a
    scene across the antimeridian in -180..180 + more, a 0..360 grid) a turn east or west,
    where the web-map tile ``tile`` (lon/lat W, S, E, N) lies on the other side of 180: GDAL's
    warper does not wrap longitudes, so the tile at -180..-179.6 found nothing of a raster at
    179.85..180.15.  The raster's own georeferencing is shifted by 360 degrees (``src_transform``
    of the warped VRT); the pixels are not touched.  ``{}`` where no shift is needed."""
    from affine import Affine

    ds = _datasets(src)[0]
    crs = ds.crs
    if crs is None or not crs.is_geographic or abs(crs.units_factor[1] - math.pi / 180.0) > 1e-12:
        return {}  # projected, or longitudes not in degrees (grads)
    left, right = ds.bounds.left, ds.bounds.right
    if -180.0 <= min(left, right) and max(left, right) <= 180.0:
        return {}
    w, e = tile[0], tile[2]

    def overlap(k: float) -> float:
        return min(e, max(left, right) + k) - max(w, min(left, right) + k)

    best = max((0.0, -360.0, 360.0), key=overlap)
    if best == 0.0 or overlap(best) <= 0.0:
        return {}
    t = ds.transform
    return {"src_transform": Affine(t.a, t.b, t.c + best, t.d, t.e, t.f), "src_crs": crs}


class TileRenderer:
    """Renders (and caches) PNG web-map tiles of ``scenes``; thread-safe."""

    def __init__(self, scenes: list[Scene], *, cache_bytes: int = CACHE_BYTES):
        from cachetools import LRUCache

        self.scenes = list(scenes)
        self._cache: LRUCache = LRUCache(maxsize=max(0, cache_bytes) or 1, getsizeof=len)
        self._lock = threading.Lock()
        self._renders = threading.BoundedSemaphore(RENDERS_AT_ONCE)
        self._queued = 0   # renders running or waiting for a slot
        # scene id -> the finest zoom a map tile of it was not drawn at for its read's size (warned once);
        # tiles at that zoom and coarser read more, so they are not drawn either
        self._too_costly: dict[str, int] = {}
        self._scales: dict[str, Any] = {}
        self._broken: dict[str, tuple[str, float]] = {}
        self._empty: bytes | None = None
        self._local = threading.local()   # this thread's open readers: scene id -> (file identity, Reader)

    # ------------------------------------------------------------------ scenes
    def broken(self) -> dict[str, str]:
        """Scene id -> why its imagery cannot be drawn (a one-line reason, no path); entries
        older than :data:`RETRY_S` are dropped, so a restored file is drawn again."""
        now = time.monotonic()
        for sid, (_, t) in list(self._broken.items()):
            if now - t > RETRY_S:
                self._broken.pop(sid, None)
        return {sid: why for sid, (why, _) in self._broken.items()}

    def check(self, scene: Scene) -> bool:
        """False (and the scene marked) when its local source file is missing; no raster is opened."""
        from rsir_stac.tiling.sources import _is_url

        if scene.id in self.broken():
            return False
        if any(not _is_url(f) and not os.path.isfile(f) for f in scene.files):
            self._mark_broken(scene, "its source file is missing on the server")
            return False
        return True

    def zooms(self, scene: Scene) -> tuple[int, int] | None:
        """``(minzoom, maxzoom)`` drawn for ``scene``: from its stored GSD and extent when known
        (:func:`zoom_range`), else from the raster (rio-tiler); None when it cannot be opened."""
        if scene.zooms is None and scene.gsd:
            scene.zooms = zoom_range(scene.gsd, scene.bbox)
        if scene.zooms is None and scene.id not in self.broken():
            try:
                with self._open(scene) as src:
                    scene.zooms = (max(0, int(src.minzoom) - UNDERZOOM), min(MAX_ZOOM, int(src.maxzoom) + OVERZOOM))
            except _Skip:
                return None
        return scene.zooms

    def _mark_broken(self, scene: Scene, why: str) -> None:
        if scene.id not in self._broken:
            log.warning("imagery of %s (%s) not drawn: %s", scene.item_id, scene.href, why)
        self._broken[scene.id] = (why, time.monotonic())

    def _open(self, scene: Scene):
        from rsir_stac.tiling.sources import _is_url

        if scene.id in self.broken():
            raise _Skip
        if any(not _is_url(f) and not os.path.isfile(f) for f in scene.files):
            self._mark_broken(scene, "its source file is missing on the server")
            raise _Skip
        from rsir_stac.tiling.blocks import BlockLimitError

        try:
            if scene.band_hrefs:
                return _BandTiles(scene.band_hrefs, scene.nodata)
            return _open_reader(scene.href)
        except BlockLimitError as err:
            self._mark_broken(scene, BLOCKS_TOO_LARGE)
            raise _Skip from err
        except Exception as err:  # noqa: BLE001 - any GDAL/rasterio failure: not drawn
            self._mark_broken(scene, "its source cannot be read")
            raise _Skip from err

    def _reader(self, scene: Scene):
        """This thread's open reader of ``scene``, reused while the file is the same (inode, size,
        mtime); at most :data:`OPEN_PER_THREAD` kept per thread, the least recently used closed, and
        none whose blocks exceed :data:`KEEP_BLOCK_BYTES` (:meth:`_release` closes it after the tile)."""
        from collections import OrderedDict

        from rsir_stac.tiling.sources import _is_url

        if scene.id in self.broken():
            raise _Skip
        ident: tuple | None = None
        for f in scene.files:
            if _is_url(f):
                continue
            try:
                st = os.stat(f)
            except OSError:
                self._mark_broken(scene, "its source file is missing on the server")
                raise _Skip from None
            ident = (ident or ()) + (st.st_ino, st.st_size, st.st_mtime_ns)
        readers = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = OrderedDict()
        got = readers.get(scene.id)
        if got is not None and got[0] == ident:
            readers.move_to_end(scene.id)
            return got[1]
        self._drop(scene.id)
        src = self._open(scene)
        from rsir_stac.tiling.blocks import block_bytes

        if sum(block_bytes(ds) for ds in _datasets(src)) > KEEP_BLOCK_BYTES:
            return src   # not kept: closed after this tile (_release)
        readers[scene.id] = (ident, src)
        while len(readers) > OPEN_PER_THREAD:
            _, (_, old) = readers.popitem(last=False)
            old.close()
        return src

    def _release(self, scene: Scene, src: Any) -> None:
        """Close ``src`` after a tile unless it is this thread's kept reader of ``scene``."""
        got = getattr(self._local, "readers", {}).get(scene.id)
        if got is None or got[1] is not src:
            src.close()

    def _drop(self, scene_id: str) -> None:
        """Close this thread's reader of a scene (after a failed read, or a changed file)."""
        got = getattr(self._local, "readers", {}).pop(scene_id, None)
        if got is not None:
            got[1].close()

    def _scale(self, scene: Scene):
        """The scene's (bands, scale rule), as ingest chose them (computed once)."""
        got = self._scales.get(scene.id)
        if got is None:
            from rsir_stac.tiling import SceneReader

            with SceneReader.open(scene.href, bands=scene.bands, nodata=scene.nodata,
                                  hrefs=scene.band_hrefs) as reader:
                got = (tuple(reader.bands), reader.scale)
            self._scales[scene.id] = got
        return got

    # ------------------------------------------------------------------ tiles
    def covering(self, z: int, x: int, y: int) -> list[Scene]:
        """Scenes whose bbox meets tile ``z/x/y`` (newest first)."""
        w, s, e, n = tile_bounds(z, x, y)
        # a scene's bbox may run past +-180 (unwrapped across the antimeridian): try it a turn either way
        return [sc for sc in self.scenes if sc.bbox[1] < n and sc.bbox[3] > s
                and any(sc.bbox[0] + k < e and sc.bbox[2] + k > w for k in (0.0, -360.0, 360.0))]

    def render(self, z: int, x: int, y: int, choice: SceneChoice | None = None) -> bytes:
        """The PNG of :meth:`render_noted` without its note."""
        return self.render_noted(z, x, y, choice)[0]

    def render_noted(self, z: int, x: int, y: int, choice: SceneChoice | None = None) -> tuple[bytes, str]:
        """``(png, note)``: the PNG (RGBA, 256 x 256 px) of tile ``z/x/y``, transparent where no scene
        draws, and a one-line note naming a scene under it that is not drawn at this zoom because one
        map tile would read too much of its file (:meth:`undrawn_note`; "" when none).
        ``choice`` picks and orders the scenes (default: all, newest first).

        Raises InputError (tile not in the grid), SourceNotFoundError (every
        scene under the tile is missing or unreadable), TooManyRequests (:data:`RENDER_QUEUE`
        tiles are being drawn or waiting already: the service answers 429).  At most
        :data:`RENDERS_AT_ONCE` tiles are drawn at a time; a scene whose read would hold more than
        :data:`~rsir_stac.tiling.readcost.READ_BUDGET_BYTES` is left out of the tile.
        """
        check_tile(z, x, y)
        cands = (choice or SceneChoice()).order(self.covering(z, x, y))
        drawable = []
        for sc in cands:
            zr = self.zooms(sc)
            if zr is not None and zr[0] <= z <= zr[1]:
                drawable.append(sc)
        if not drawable:
            self._raise_if_all_broken(cands)
            return self.empty(), ""
        # the tile is the scenes drawn, in their order: choices that agree on them share one entry
        key = (z, x, y, tuple(sc.id for sc in drawable))
        with self._lock:
            png = self._cache.get(key)
        if png is not None:
            return png, self.undrawn_note(z, drawable)
        with self._lock:   # a burst beyond the queue is refused: waiting renders hold the service's threads
            if self._queued >= RENDER_QUEUE:
                from rsir_stac.apierrors import TooManyRequests

                raise TooManyRequests(f"{self._queued} map tiles are being drawn or waiting already; retry in a "
                                      "second")
            self._queued += 1
        try:
            with self._renders:   # each within the read budget; this many at once bounds the memory of all
                with self._lock:
                    png = self._cache.get(key)   # drawn meanwhile by a request for the same tile
                if png is None:
                    png = self._render(z, x, y, drawable)
        finally:
            with self._lock:
                self._queued -= 1
        if len(png) <= self._cache.maxsize:
            with self._lock:
                self._cache[key] = png
        return png, self.undrawn_note(z, drawable)

    def undrawn_note(self, z: int, scenes: list[Scene]) -> str:
        """A one-line note for a map user when one of ``scenes`` is not drawn at zoom ``z`` because a map
        tile would read over :data:`~rsir_stac.tiling.readcost.READ_BUDGET_BYTES` of its file (a fine
        raster without overviews, seen zoomed out): which scene, from which zoom it is drawn, and the fix;
        "" when every one of them is drawn (as far as the tiles drawn so far tell)."""
        with self._lock:
            costly = [(sc, self._too_costly[sc.id]) for sc in scenes if self._too_costly.get(sc.id, -1) >= z]
        if not costly:
            return ""
        sc = costly[0][0]
        more = f" (and {len(costly) - 1} more scenes)" if len(costly) > 1 else ""
        return (f"the imagery of {sc.item_id}{more} is not drawn at zoom {z}: its file has no overview this coarse, "
                "so one map tile would read too much of it; zoom in to see it, or add overviews to the file "
                "(gdaladdo, or rio cogeo create)")

    def undrawn_zooms(self, scene: Scene) -> int | None:
        """The finest zoom ``scene`` was found too costly to draw at (tiles at it and coarser are not
        drawn), or None when no tile of it was refused so far."""
        with self._lock:
            return self._too_costly.get(scene.id)

    def _render(self, z: int, x: int, y: int, drawable: list[Scene]) -> bytes:
        from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
        from rio_tiler.mosaic import mosaic_reader

        from rsir_stac.tiling import gdal_env

        def read(scene: Scene, tx: int, ty: int, tz: int):
            try:
                with gdal_env():
                    src = self._reader(scene)
                    try:
                        bands, rule = self._scale(scene)
                        # a composed scene's nodata is applied file by file (_BandTiles)
                        extra = {"nodata": scene.nodata} if isinstance(scene.nodata, float) else {}
                        self._check_read_cost(scene, src, tz, tx, ty)
                        wrap = _wrap_options(src, tile_bounds(tz, tx, ty))  # a lon/lat raster past 180
                        if wrap:
                            extra["vrt_options"] = wrap
                        img = src.tile(tx, ty, tz, tilesize=TILE_SIZE, indexes=bands, **extra)
                    finally:
                        self._release(scene, src)
            except (_Skip, TileOutsideBounds):
                raise TileOutsideBounds("skipped") from None
            except RsirError as err:
                self._drop(scene.id)
                self._mark_broken(scene, "its source cannot be read")
                raise TileOutsideBounds("unreadable") from err
            except Exception as err:  # noqa: BLE001 - a corrupt block: leave the scene out of this tile
                self._drop(scene.id)
                log.warning("tile %s/%s/%s of %s not drawn: %s", tz, tx, ty, scene.item_id, err)
                raise TileOutsideBounds("unreadable") from err
            _alpha_as_ingest(img)
            if rule.kind != "none":
                img = img.rescale(in_range=list(zip(rule.low, rule.high)))
            return img

        try:
            # sequential: scenes are read in order (newest first unless chosen), reading stops once the tile is full
            img, _ = mosaic_reader(drawable, read, x, y, z, threads=0)
        except EmptyMosaicError:
            self._raise_if_all_broken(drawable)
            return self.empty()
        return _png(img.data, img.mask)

    def _check_read_cost(self, scene: Scene, src: Any, z: int, x: int, y: int) -> None:
        """Raises :class:`_Skip` when drawing tile ``z/x/y`` of ``scene`` would hold more than
        :data:`~rsir_stac.tiling.readcost.READ_BUDGET_BYTES` (rio-tiler resamples the whole window
        at the best overview's resolution: a raster far finer than the tile, without overviews,
        took 6 GB a tile); the scene is still drawn at the zooms where it fits, and the first
        skip says how to draw it at all zooms."""
        from rsir_stac.maptiles.grid import mercator_bounds
        from rsir_stac.tiling.readcost import READ_BUDGET_BYTES, read_bytes, source_window

        bounds = None
        for ds in _datasets(src):
            bands = ds.count if not scene.band_hrefs else 1
            if ds.crs is None or read_bytes(ds, ds.width, ds.height, ds.width, ds.height, bands) <= READ_BUDGET_BYTES:
                continue   # the whole raster at full resolution fits: no tile of it can read more (most scenes)
            bounds = bounds or mercator_bounds(z, x, y)
            w, h = source_window(ds, bounds, "EPSG:3857")
            cost = read_bytes(ds, w, h, TILE_SIZE, TILE_SIZE, bands)
            if cost > READ_BUDGET_BYTES:
                with self._lock:
                    said = scene.id in self._too_costly
                    self._too_costly[scene.id] = max(z, self._too_costly.get(scene.id, z))
                if not said:
                    log.warning("imagery of %s is not drawn where one map tile would read over %.0f MB of its "
                                "pixels (first at zoom %d: %.0f MB, %d x %d px; the file has no overview that "
                                "coarse); add overviews to it (gdaladdo, or rio cogeo create) to draw it there",
                                scene.item_id, READ_BUDGET_BYTES / 1e6, z, cost / 1e6, w, h)
                raise _Skip

    def _raise_if_all_broken(self, scenes: list[Scene]) -> None:
        broken = self.broken()
        missing = [sc for sc in scenes if sc.id in broken]
        if missing and len(missing) == len(scenes):
            sc = missing[0]
            more = f" (and {len(missing) - 1} more scenes)" if len(missing) > 1 else ""
            if broken[sc.id] == BLOCKS_TOO_LARGE:   # the file is there: 410, with its own fix
                raise SourceUnreadableError(f"the imagery of scene {sc.item_id!r}{more} cannot be drawn: "
                                            f"{BLOCKS_TOO_LARGE}")
            raise SourceNotFoundError(f"the imagery of scene {sc.item_id!r}{more} cannot be drawn: "
                                      f"{broken[sc.id]}; restore the file or re-ingest the item")

    def empty(self) -> bytes:
        """A fully transparent tile."""
        if self._empty is None:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGBA", (TILE_SIZE, TILE_SIZE), (0, 0, 0, 0)).save(buf, format="PNG")
            self._empty = buf.getvalue()
        return self._empty
