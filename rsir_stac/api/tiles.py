"""Web-map endpoints: the indexed scenes and XYZ imagery tiles rendered from them.

* ``GET /api/scenes``                    the scenes as a GeoJSON FeatureCollection of footprints
                                         (item, collection, date, tile count, zoom range, whether
                                         the imagery can be drawn), with the data extent
* ``GET /api/imagery/{z}/{x}/{y}.png``   a 256 px Web Mercator tile of the scenes (transparent
                                         where none draws), see :mod:`rsir_stac.maptiles`;
                                         ``datetime``, ``collection`` and ``item`` choose which
                                         scenes draw and which comes first (the page's filters
                                         and selected result)

The scene list is built from the stored payloads in one scan and rebuilt when
the index's point count changes.  No endpoint names a server path.

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import logging
import math
import threading
import time
import warnings
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between checks of the index's point count (a changed count rebuilds the scene list).
RECHECK_S = 10.0


class SceneCatalog:
    """The index's scenes and their :class:`~rsir_stac.maptiles.TileRenderer`, rebuilt when the count changes."""

    def __init__(self, index: Any, lock: threading.Lock, *, cache_bytes: int) -> None:
        self.index, self.lock, self.cache_bytes = index, lock, cache_bytes
        self._built: tuple[int, Any, Any] | None = None   # (count, scenes, renderer)
        self._checked = 0.0
        self._build_lock = threading.Lock()

    def get(self, recheck: bool = False):
        """``(scenes, renderer)``, rebuilding when the stored count changed (checked every RECHECK_S)."""
        from rsir_stac.maptiles.render import TileRenderer
        from rsir_stac.maptiles.scenes import scenes_from_payloads

        now = time.monotonic()
        built = self._built
        if built is not None and not (recheck and now - self._checked > RECHECK_S):
            return built[1], built[2]
        with self._build_lock:
            with self.lock:
                count = self.index.store.count()
            self._checked = now
            if self._built is not None and self._built[0] == count:
                return self._built[1], self._built[2]
            t0 = time.perf_counter()
            with self.lock:
                payloads = [p.payload for p in self.index.store.iter_points(with_vectors=False)]
            scenes = scenes_from_payloads(payloads)
            self._built = (count, scenes, TileRenderer(scenes, cache_bytes=self.cache_bytes))
            log.info("scene list: %d scenes from %d tiles in %.0f ms", len(scenes), count,
                     (time.perf_counter() - t0) * 1000)
            return self._built[1], self._built[2]


def scenes_document(scenes: list, renderer: Any) -> dict:
    """The ``/api/scenes`` answer (GeoJSON FeatureCollection plus summary fields)."""
    from rsir_stac.tiling.footprints import union_bounds

    feats, boxes = [], []
    undated = uncollected = 0
    maxzoom = None
    for sc in scenes:
        renderer.check(sc)
        zr = renderer.zooms(sc)
        props = sc.summary()
        why = renderer.broken().get(sc.id)
        props["imagery"] = why is None
        if why:
            props["imagery_problem"] = why
        coarse = renderer.undrawn_zooms(sc)
        if coarse is not None:   # drawn only zoomed in: a map tile further out would read too much of its file
            props["imagery_note"] = (f"not drawn at zoom {coarse} and coarser (the file has no overview that "
                                     "coarse); zoom in, or add overviews to the file (gdaladdo)")
        feats.append({"type": "Feature", "id": sc.id, "geometry": sc.footprint, "properties": props})
        if all(math.isfinite(v) for v in sc.bbox):  # a scene's east edge past 180 is the same longitude less 360
            w, s, e, n = sc.bbox
            boxes.append((w, s, e - 360.0 if e > 180.0 else e, n))
        undated += 0 if sc.datetime else sc.tiles
        uncollected += 0 if sc.collection else sc.tiles
        if zr is not None:
            maxzoom = zr[1] if maxzoom is None else max(maxzoom, zr[1])
    ext = union_bounds(boxes) if boxes else None  # as /api/info's: W > E across the antimeridian
    return {"type": "FeatureCollection", "features": feats,
            "extent": list(ext) if ext is not None else None,
            "tiles": sum(sc.tiles for sc in scenes), "undated_tiles": undated, "uncollected_tiles": uncollected,
            "maxzoom": maxzoom}


def tiles_router(index: Any, *, lock: threading.Lock, dependencies: list | None = None,
                 cache_bytes: int | None = None):
    """An ``APIRouter`` with ``/api/scenes`` and ``/api/imagery/{z}/{x}/{y}.png`` for ``index``
    (an open :class:`~rsir_stac.search.Index`); ``lock`` serialises store access with the app."""
    from fastapi import APIRouter, Query

    from rsir_stac.api.params import check_collections
    from fastapi import Path as PathParam
    from fastapi.responses import Response

    from rsir_stac.maptiles.grid import MAX_ZOOM
    from rsir_stac.maptiles.render import CACHE_BYTES
    from rsir_stac.maptiles.scenes import SceneChoice

    router = APIRouter(dependencies=dependencies or [], tags=["map"])
    catalog = SceneCatalog(index, lock, cache_bytes=CACHE_BYTES if cache_bytes is None else cache_bytes)
    router.catalog = catalog  # type: ignore[attr-defined]

    @router.get("/api/scenes", summary="Indexed scenes (footprints)")
    def api_scenes() -> dict:
        """Every indexed scene (STAC item asset) as a GeoJSON Feature: footprint (convex hull of its
        tiles), ``item_id``, ``collection``, ``datetime``, ``tiles`` (stored tile count), ``bbox``,
        the zoom levels its imagery is drawn at, and ``imagery: false`` with a reason when its
        source cannot be read.  Also the data ``extent`` [W, S, E, N] (W > E across the antimeridian,
        as ``/api/info``'s; a feature's ``bbox`` runs its east edge past 180 instead, as a web map
        draws it) and how many tiles have no
        date (``undated_tiles``) or no collection (``uncollected_tiles``): date and collection
        filters leave those out."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scenes, renderer = catalog.get(recheck=True)
            return scenes_document(scenes, renderer)

    @router.get("/api/imagery/{z}/{x}/{y}.png", summary="Web-map imagery tile (XYZ)", response_class=Response,
                responses={200: {"content": {"image/png": {}},
                                 "description": "RGBA PNG, 256 x 256 px; transparent where no scene draws. Header "
                                                "X-Imagery-Note (percent-encoded): a scene under the tile not "
                                                "drawn at this zoom, and the fix."},
                           400: {"description": "The tile is not in the Web Mercator grid."},
                           404: {"description": "The scenes under the tile cannot be read on the server."},
                           429: {"description": "Too many map tiles are being drawn or waiting; retry after "
                                                "Retry-After seconds."}})
    def api_imagery(z: int = PathParam(..., description=f"Zoom level 0..{MAX_ZOOM}."),
                    x: int = PathParam(..., description="Column, 0..2^z-1 from the west."),
                    y: int = PathParam(..., description="Row, 0..2^z-1 from the north."),
                    datetime: str | None = Query(None, description="Only scenes acquired in START/END (as the "
                                                 "search filter; undated scenes are left out)."),
                    collection: list[str] | None = Query(None, description="Only scenes of these collections "
                                                         "(repeatable)."),
                    item: str | None = Query(None, description="Draw this STAC item's scenes first (over the "
                                             "others where they overlap).")):
        """The indexed scenes' imagery in tile ``z/x/y`` of the Web Mercator grid (as OpenStreetMap and
        Leaflet number them), rendered from the source rasters with the bands and scaling ingest used.
        Where scenes overlap the newest is drawn on top, unless ``item`` names another."""
        choice = SceneChoice(datetime=datetime or None, collections=check_collections(collection), item=item or None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, renderer = catalog.get()
            png, note = renderer.render_noted(z, x, y, choice)
        headers = {"Cache-Control": "private, max-age=3600"}
        if note:   # a scene left undrawn here (percent-encoded: item ids need not be Latin-1)
            from urllib.parse import quote

            headers["X-Imagery-Note"] = quote(note, safe=" ,:;()'")
        return Response(png, media_type="image/png", headers=headers)

    return router


__all__ = ["SceneCatalog", "scenes_document", "tiles_router"]
