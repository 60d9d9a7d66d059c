"""Web-map tiles (XYZ, Web Mercator) of the indexed scenes, rendered from their rasters.

The map page shows the imagery under the search results.  The scenes are
those of the index: every stored tile records its source (``href``, or the
R, G, B files ``band_hrefs`` of a scene composed from three single-band
assets, drawn as one image from band 1 of each), its
STAC item, collection and date, the bands ingest chose and how it tiled
(``tiling``).  :func:`scenes_from_payloads` groups the tiles into scenes
(footprint = convex hull of the tiles' corners, or near a pole their union; tile count, date);
:class:`TileRenderer` renders a 256 x 256 px tile of the Web Mercator quad
tree (``z/x/y`` as in OpenStreetMap, Google and Leaflet) as a mosaic of the
scenes that cover it, with rio-tiler (``Reader.tile`` + ``mosaic_reader``,
first valid pixel wins, newest scene first).

Colours are the ones the model saw: the bands ingest read (``tiling.bands``)
and the same scaling (:func:`rsir_stac.tiling.compute_scale`: ``uint8``
passes through, other types get the scene's p2-p98 stretch, computed once
per scene).  Pixels outside every scene or masked as nodata are transparent.

Zoom limits per scene: from rio-tiler's ``minzoom`` (the scene fits one tile)
minus :data:`UNDERZOOM` to its ``maxzoom`` (native resolution) plus
:data:`OVERZOOM`; outside them the scene is not drawn (the footprint layer
still shows it).  ``z`` outside ``0..MAX_ZOOM`` or ``x``/``y`` outside the
``2**z`` grid is an :class:`InputError`.

Which scenes a tile draws, and in which order, can be chosen (:class:`SceneChoice`): only
scenes acquired within a date range (the page's date filter), only some collections, and
one STAC item first (the selected result's scene), so that where acquisitions overlap the
imagery shows the dates the page is about instead of always the newest.

A scene whose source file is missing or unreadable is left out of the
mosaic (logged once); a tile covered only by such scenes raises
:class:`SourceNotFoundError` naming the STAC item, never a server path.
Rendered PNGs are kept in a byte-bounded LRU (``cachetools``).  Each worker
thread keeps its last :data:`OPEN_PER_THREAD` opened rasters (reopened when
the file changes), and rio-tiler's per-tile bounds test is skipped because
:meth:`TileRenderer.covering` already chose the scenes that meet the tile.

Sources: rio-tiler (https://cogeotiff.github.io/rio-tiler/), morecantile's
WebMercatorQuad tile matrix set (OGC 17-083r4).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rsir_stac.errors import InputError, RsirError, SourceNotFoundError

log = logging.getLogger(__name__)

#: Largest zoom level served (about 2 cm per pixel at the equator).
MAX_ZOOM = 24
#: Zoom levels drawn above a scene's native resolution (upsampled).
OVERZOOM = 3
#: Zoom levels drawn below the one where the scene fits one tile.
UNDERZOOM = 3
#: Side of a web-map tile, pixels.
TILE_SIZE = 256
#: Default byte budget of the rendered-tile cache.
CACHE_BYTES = 128 * 1024 * 1024
#: Seconds before a scene whose source could not be read is tried again.
RETRY_S = 30.0
#: Open source rasters kept per worker thread (a dataset is used by one thread at a time).
OPEN_PER_THREAD = 4


@dataclass
class Scene:
    """One indexed source raster (a STAC item's asset) as the map shows it.

    ``bbox`` is ``(W, S, E, N)`` in degrees over the scene's stored tiles;
    ``footprint`` a GeoJSON Polygon (convex hull of the tiles' corners);
    ``bands`` the 1-based R,G,B bands ingest read; ``href`` the source, kept
    on the server (never sent to clients).
    """

    id: str
    item_id: str
    collection: str | None
    asset: str | None
    href: str
    datetime: str | None
    tiles: int
    bbox: tuple[float, float, float, float]
    footprint: dict | None
    bands: tuple[int, ...] | None
    gsd: float | None = None
    zooms: tuple[int, int] | None = None
    #: a nodata value ingest took from STAC (``tiling.nodata``), not the file; three (one per
    #: file, each may be None) for a composed scene
    nodata: float | tuple[float | None, ...] | None = None
    band_hrefs: tuple[str, ...] | None = None  # the R, G, B files of a composed scene (``href`` is the first)
    _corners: list = field(default_factory=list, repr=False)  # tile rings while grouping
    _ref: float | None = field(default=None, repr=False)  # longitude the scene is unwrapped about
    _polar: bool = field(default=False, repr=False)

    @property
    def files(self) -> tuple[str, ...]:
        """The source files read: ``band_hrefs``, or ``href`` alone."""
        return self.band_hrefs or (self.href,)

    def summary(self) -> dict[str, Any]:
        """The client-facing description (no server path)."""
        return {"id": self.id, "item_id": self.item_id, "collection": self.collection, "asset": self.asset,
                "datetime": self.datetime, "tiles": self.tiles, "bbox": list(self.bbox),
                "gsd": self.gsd, "minzoom": self.zooms[0] if self.zooms else None,
                "maxzoom": self.zooms[1] if self.zooms else None}


def scene_id(collection: str | None, item_id: str, asset: str | None, href: str) -> str:
    """A short stable id of a scene (12 hex digits of a SHA-1 of its identity)."""
    key = "|".join([collection or "", item_id, asset or "", href])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def scenes_from_payloads(payloads: Iterable[Mapping[str, Any]]) -> list[Scene]:
    """Group stored tile payloads into scenes, newest first (undated last).

    Payloads without ``href`` or ``item_id`` are skipped.  Longitudes are unwrapped about
    the scene's first tile, so a scene across the antimeridian keeps one extent and outline
    (its ``bbox`` and footprint may then run past 180, as a web map draws them); footprints
    are the convex hull of the tiles' ``corners`` (shapely), or, for a scene reaching within
    :data:`POLAR_LAT` of a pole (where a hull in degrees is wrong), the union of its tiles'
    footprints (:func:`rsir_stac.tiling.footprints.footprint_geometry`).
    """
    from rsir_stac.tiling.stack import payload_band_hrefs, payload_nodata

    scenes: dict[str, Scene] = {}
    for p in payloads:
        href, item = p.get("href"), p.get("item_id")
        if not isinstance(href, str) or not isinstance(item, str):
            continue
        try:
            band_hrefs = payload_band_hrefs(p)
        except (TypeError, ValueError):  # band_hrefs not written by ingest: not drawable
            continue
        col, asset = p.get("collection"), p.get("asset")
        sid = scene_id(col, item, asset, href)
        sc = scenes.get(sid)
        box = _tile_box(p.get("bbox"))
        if sc is None:
            t = p.get("tiling") or {}
            bands, nodata = t.get("bands"), t.get("nodata")
            sc = scenes[sid] = Scene(
                id=sid, item_id=item, collection=col if isinstance(col, str) else None, asset=asset, href=href,
                datetime=p.get("datetime") if isinstance(p.get("datetime"), str) else None, tiles=0,
                bbox=(math.inf, math.inf, -math.inf, -math.inf), footprint=None,
                bands=tuple(int(b) for b in bands) if bands else None,
                gsd=float(p["gsd"]) if isinstance(p.get("gsd"), (int, float)) else None,
                nodata=payload_nodata(nodata), band_hrefs=band_hrefs)
        sc.tiles += 1
        if box is not None:
            if sc._ref is None:
                sc._ref = (box[0] + box[2]) / 2
            shift = 360.0 * round((sc._ref - (box[0] + box[2]) / 2) / 360.0)
            b = sc.bbox
            sc.bbox = (min(b[0], box[0] + shift), min(b[1], box[1]), max(b[2], box[2] + shift), max(b[3], box[3]))
            if box[1] <= -POLAR_LAT or box[3] >= POLAR_LAT:
                sc._polar = True
        ring = _tile_ring(p)
        if ring:
            ref = sc._ref if sc._ref is not None else ring[0][0]
            sc._corners.append(tuple((lon + 360.0 * round((ref - lon) / 360.0), lat) for lon, lat in ring))
    for sc in scenes.values():
        sc.footprint = _scene_footprint(sc)
        if sc.footprint is None and math.isfinite(sc.bbox[0]):
            w, s, e, n = sc.bbox
            sc.footprint = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        if sc._polar and math.isfinite(sc.bbox[0]):  # near a pole a tile may hold every longitude
            sc.bbox = (-180.0, sc.bbox[1], 180.0, sc.bbox[3])
        if math.isfinite(sc.bbox[1]):  # a grid half a pixel past a pole: latitudes stay within +-90
            sc.bbox = (sc.bbox[0], max(-90.0, sc.bbox[1]), sc.bbox[2], min(90.0, sc.bbox[3]))
        sc._corners = []
    ordered = sorted(scenes.values(), key=lambda s: (s.item_id, s.id))
    dated = sorted((s for s in ordered if s.datetime), key=lambda s: s.datetime, reverse=True)
    return dated + [s for s in ordered if not s.datetime]


#: Latitude (degrees) beyond which a scene's outline is the union of its tiles' footprints.
POLAR_LAT = 80.0


def _tile_box(bbox: Any) -> tuple[float, float, float, float] | None:
    """A tile's ``bbox`` with its east edge past 180 when it crosses the antimeridian (W > E)."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        return None
    return (w, s, e + 360.0 if e < w else e, n)


def _tile_ring(p: Mapping[str, Any]) -> tuple[tuple[float, float], ...] | None:
    """A tile's outline (its densified ``outline`` when stored, else its ``corners``), unwrapped
    so that no edge jumps by more than 180 degrees of longitude."""
    raw = p.get("outline") if isinstance(p.get("outline"), list) else [
        (c.get("lon"), c.get("lat")) for c in p.get("corners") or [] if isinstance(c, Mapping)]
    try:
        ring = [(float(a), float(b)) for a, b in raw]
    except (TypeError, ValueError):
        return None
    if len(ring) < 3:
        return None
    out = [ring[0]]
    for lon, lat in ring[1:]:
        prev = out[-1][0]
        out.append((lon + 360.0 * round((prev - lon) / 360.0), lat))
    return tuple(out)


def _scene_footprint(sc: Scene) -> dict | None:
    """The outline of a scene's tiles (see :func:`scenes_from_payloads`)."""
    import shapely
    from shapely.geometry import MultiPoint, mapping, shape

    if not sc._corners:
        return None
    if not sc._polar:
        hull = MultiPoint([c for ring in sc._corners for c in ring]).convex_hull
        return mapping(hull) if hull.geom_type == "Polygon" else None
    from rsir_stac.tiling.footprints import footprint_geometry

    pole = 90.0 if sc.bbox[3] >= POLAR_LAT else -90.0
    try:
        parts = []
        for ring in sc._corners:  # back to -180..180 (the rings were unwrapped about the scene)
            turn = 360.0 * round(ring[0][0] / 360.0)
            ring = [(lon - turn, lat) for lon, lat in ring]
            parts.append(footprint_geometry(ring, pole=pole if max(abs(lat) for _, lat in ring) >= POLAR_LAT
                                            else None))
        geoms = [shapely.set_precision(shape(g), 1e-7) for g in parts if g]
        union = shapely.unary_union(geoms) if geoms else None
    except (shapely.errors.GEOSException, ValueError) as err:  # one odd scene must not break the list
        log.warning("scene %s: outline from its tiles failed (%s); its bbox stands in", sc.item_id, err)
        return None
    return mapping(union) if union is not None and union.geom_type in ("Polygon", "MultiPolygon") else None


def zoom_range(gsd: float, bbox: tuple[float, float, float, float]) -> tuple[int, int] | None:
    """Zoom levels a scene is drawn at, from its pixel size ``gsd`` (metres) and ``bbox`` (degrees):
    from the level where it fits one 256 px tile, minus :data:`UNDERZOOM`, to the level whose
    pixels are no larger than ``gsd`` at its latitude (native), plus :data:`OVERZOOM` (the rule
    rio-tiler's ``minzoom``/``maxzoom`` follow, without opening the raster)."""
    w, s, e, n = bbox
    if not (gsd > 0 and all(math.isfinite(v) for v in bbox)):
        return None
    lat = math.radians((s + n) / 2)
    equator = 2 * math.pi * 6378137.0 / TILE_SIZE     # metres per pixel at zoom 0 on the equator
    scale = equator * max(math.cos(lat), 1e-6)
    native = math.ceil(math.log2(scale / gsd) - 1e-9)
    span_m = max((e - w) * math.cos(lat), n - s) * 111_320.0
    fits = math.floor(math.log2(scale * TILE_SIZE / max(span_m, gsd * TILE_SIZE)))
    lo, hi = max(0, min(fits, native) - UNDERZOOM), min(MAX_ZOOM, max(0, native) + OVERZOOM)
    return (lo, hi)


def check_tile(z: int, x: int, y: int) -> None:
    """Raise :class:`InputError` unless ``z/x/y`` names a tile of the Web Mercator grid."""
    if not 0 <= z <= MAX_ZOOM:
        raise InputError(f"zoom level {z} is outside 0..{MAX_ZOOM}; ask for a tile within those zoom levels")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise InputError(f"tile {z}/{x}/{y} is outside the grid (x and y within 0..{n - 1} at zoom {z})")


@functools.lru_cache(maxsize=1)
def _web_mercator():
    """morecantile's WebMercatorQuad (``tms.get`` deep-copies it on every call: ~4 ms)."""
    import morecantile

    return morecantile.tms.get("WebMercatorQuad")


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(W, S, E, N)`` in degrees of Web Mercator tile ``z/x/y``."""
    b = _web_mercator().bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)


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


@dataclass(frozen=True)
class SceneChoice:
    """Which scenes a tile draws and in which order: those acquired within ``datetime``
    (``START/END`` as the search filters take it; undated scenes are then left out), of the
    ``collections`` (any when empty), and the scenes of STAC item ``item`` first."""

    datetime: str | None = None
    collections: tuple[str, ...] = ()
    item: str | None = None

    def __post_init__(self) -> None:
        if self.datetime:
            from rsir_stac.store.filters import parse_datetime_range

            object.__setattr__(self, "_range", parse_datetime_range(self.datetime))   # InputError when malformed

    def order(self, scenes: list[Scene]) -> list[Scene]:
        """``scenes`` (newest first) filtered and reordered by this choice."""
        out = [sc for sc in scenes if (not self.collections or sc.collection in self.collections)
               and (not self.datetime or _within(sc.datetime, *self._range))]
        if self.item:
            out = [sc for sc in out if sc.item_id == self.item] + [sc for sc in out if sc.item_id != self.item]
        return out


def _within(when: str | None, start, end) -> bool:
    """Whether the scene time ``when`` (RFC 3339) lies in ``start``..``end`` (None: open)."""
    from datetime import datetime, timezone

    if not when:
        return False
    try:
        t = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return False
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (start is None or t >= start) and (end is None or t <= end)


class _Skip(Exception):
    """A scene that adds nothing to this tile (outside, zoom limits, unreadable)."""


@functools.lru_cache(maxsize=1)
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
                self._readers.append(_reader_class()(href))
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


def _reader_class():
    """rio-tiler's ``Reader`` without its per-tile bounds test: the renderer reads only scenes whose
    stored bbox meets the tile (:meth:`TileRenderer.covering`), and rio-tiler's test reprojects the
    tile's bounds with 21 points per side on every call (~13 ms of a ~35 ms tile)."""
    from rio_tiler.io import Reader

    class SceneTileReader(Reader):
        def tile_exists(self, tile_x: int, tile_y: int, tile_z: int) -> bool:
            return True

    return SceneTileReader


class TileRenderer:
    """Renders (and caches) PNG web-map tiles of ``scenes``; thread-safe."""

    def __init__(self, scenes: list[Scene], *, cache_bytes: int = CACHE_BYTES):
        from cachetools import LRUCache

        self.scenes = list(scenes)
        self._cache: LRUCache = LRUCache(maxsize=max(0, cache_bytes) or 1, getsizeof=len)
        self._lock = threading.Lock()
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
        try:
            if scene.band_hrefs:
                return _BandTiles(scene.band_hrefs, scene.nodata)
            return _reader_class()(scene.href)
        except Exception as err:  # noqa: BLE001 - any GDAL/rasterio failure: not drawn
            self._mark_broken(scene, "its source cannot be read")
            raise _Skip from err

    def _reader(self, scene: Scene):
        """This thread's open reader of ``scene``, reused while the file is the same (inode, size,
        mtime); at most :data:`OPEN_PER_THREAD` kept per thread, the least recently used closed."""
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
        readers[scene.id] = (ident, src)
        while len(readers) > OPEN_PER_THREAD:
            _, (_, old) = readers.popitem(last=False)
            old.close()
        return src

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
        """The PNG (RGBA, 256 x 256 px) of tile ``z/x/y``; transparent where no scene draws.
        ``choice`` picks and orders the scenes (default: all, newest first).

        Raises InputError (tile not in the grid), SourceNotFoundError (every
        scene under the tile is missing or unreadable).
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
            return self.empty()
        # the tile is the scenes drawn, in their order: choices that agree on them share one entry
        key = (z, x, y, tuple(sc.id for sc in drawable))
        with self._lock:
            png = self._cache.get(key)
        if png is not None:
            return png
        png = self._render(z, x, y, drawable)
        if len(png) <= self._cache.maxsize:
            with self._lock:
                self._cache[key] = png
        return png

    def _render(self, z: int, x: int, y: int, drawable: list[Scene]) -> bytes:
        from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
        from rio_tiler.mosaic import mosaic_reader

        from rsir_stac.tiling import gdal_env

        def read(scene: Scene, tx: int, ty: int, tz: int):
            try:
                with gdal_env():
                    src = self._reader(scene)
                    bands, rule = self._scale(scene)
                    # a composed scene's nodata is applied file by file (_BandTiles)
                    extra = {"nodata": scene.nodata} if isinstance(scene.nodata, float) else {}
                    img = src.tile(tx, ty, tz, tilesize=TILE_SIZE, indexes=bands, **extra)
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

    def _raise_if_all_broken(self, scenes: list[Scene]) -> None:
        broken = self.broken()
        missing = [sc for sc in scenes if sc.id in broken]
        if missing and len(missing) == len(scenes):
            sc = missing[0]
            more = f" (and {len(missing) - 1} more scenes)" if len(missing) > 1 else ""
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


__all__ = ["CACHE_BYTES", "MAX_ZOOM", "Scene", "SceneChoice", "TileRenderer", "check_tile", "scene_id", "scenes_from_payloads",
           "tile_bounds"]
