"""HTTP search service and map page: ``rsir-stac serve``.

One process opens the index once (the embedded Qdrant Edge index is locked
exclusively by its owner) and every request shares that :class:`Index`;
two ``threading.Lock`` objects serialise store access and model forward
passes because FastAPI runs the synchronous endpoints in a thread pool.
Run it with one worker process.

Endpoints (JSON; OpenAPI at ``/docs`` and ``/openapi.json``):

* ``GET  /api/info``                 count, dim, model_id, collections, extent
* ``GET  /api/search``               by ``point_id`` or ``lon``/``lat`` + filters
* ``POST /api/search``               the same as a JSON body
* ``POST /api/search/image``         multipart upload (``file``) + filters
* ``GET  /api/tiles/{point_id}.png`` a stored tile re-read from its source raster
* ``POST /api/ingest/jobs``          ingest files under ``--ingest-root`` (:mod:`rsir_stac.api.jobs`)
* ``GET  /``                         the map page (``rsir_stac/web/``)

No endpoint takes a filesystem path: tiles are addressed by point id and
uploads are decoded from memory, only as PNG/JPEG/WebP/TIFF, within pixel,
decoded-byte and concurrency limits (:mod:`rsir_stac.upload`).  Host
allow-list, origin check, security headers, the API key (``X-API-Key``
header, or ``?api_key=`` for tile images; redacted from the access log) and
the body limit are enforced by :class:`rsir_stac.httpguard.Guard`; every
error is one JSON schema (:mod:`rsir_stac.apierrors`).  See the security
section of docs/RELIABILITY.md.

FastAPI, uvicorn and Pillow are imported only when an app is built, so
importing this module (for the ``serve`` click command) stays cheap.  This
module deliberately does not use postponed annotations: FastAPI resolves the
endpoint annotations at definition time, inside :func:`create_app`.
"""

import io
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import click

from rsir_stac.errors import InputError, RsirError

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_K = 100
#: Extra body bytes allowed on top of ``max_upload_bytes`` for multipart framing and form fields.
FORM_OVERHEAD_BYTES = 64 * 1024
#: Byte budget of the PNG thumbnail LRU cache.
THUMB_CACHE_BYTES = 64 * 1024 * 1024
#: How long ``/api/info`` is cached (it scans every point).
INFO_TTL_S = 60.0
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"


# --------------------------------------------------------------------------- helpers (no web framework)


def http_status(exc: BaseException) -> int:
    """HTTP status for a library error (see :mod:`rsir_stac.apierrors`)."""
    from rsir_stac.apierrors import http_status as status

    return status(exc)


def parse_polygon(value: Any) -> Any:
    """A polygon filter from a GeoJSON object / JSON string, or ``"lon,lat;lon,lat;..."``.

    GeoJSON may be any area :func:`rsir_stac.store.filters.polygon_from_geojson`
    reads (Polygon with holes, MultiPolygon, Feature, FeatureCollection): a
    validated :class:`~rsir_stac.store.areas.GeoArea`.  The text form is one
    ring, closed when the last position does not repeat the first, and
    validated when the :class:`SearchFilter` is built.
    """
    what = "polygon"
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InputError("polygon is empty; give GeoJSON or lon,lat;lon,lat;... (at least 3 corners)")
        if text[0] in "{[":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"polygon is not valid JSON ({exc.msg}); give a GeoJSON Polygon geometry") from None
        else:
            ring = []
            for part in text.split(";"):
                part = part.strip()
                if not part:
                    continue
                xy = part.split(",")
                try:
                    if len(xy) != 2:
                        raise ValueError
                    ring.append((float(xy[0]), float(xy[1])))
                except ValueError:
                    raise InputError(
                        f"polygon position {part!r} is invalid; give lon,lat;lon,lat;... in degrees"
                    ) from None
            return _close(ring)
    from rsir_stac.store.filters import polygon_from_geojson

    return polygon_from_geojson(value, what)


def _close(ring: list) -> tuple[tuple[float, float], ...]:
    if len(ring) >= 3 and ring[0] != ring[-1]:
        ring = ring + ring[:1]
    return tuple(ring)


def _numbers_text(value: Any, n: int, what: str) -> str | None:
    """Accept ``"a,b,c"`` or a list of numbers; returns the comma form (None when empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != n or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise InputError(f"{what} {value!r} must be {n} numbers")
        return ",".join(repr(float(v)) for v in value)
    return str(value)


def build_filter(*, bbox: Any = None, near: Any = None, polygon: Any = None, datetime: str | None = None,
                 collection: Any = None):
    """A :class:`SearchFilter` (or None when nothing constrains) from request fields."""
    from rsir_stac.store.filters import SearchFilter, parse_bbox, parse_datetime_range, parse_near

    bbox_t = _numbers_text(bbox, 4, "bbox")
    near_t = _numbers_text(near, 3, "near")
    ring = parse_polygon(polygon) if polygon not in (None, "", {}) else None
    start, end = parse_datetime_range(datetime) if datetime else (None, None)
    if isinstance(collection, str):
        collection = [collection]
    cols = tuple(c for c in (collection or ()) if c)
    flt = SearchFilter(bbox=parse_bbox(bbox_t) if bbox_t else None, near=parse_near(near_t) if near_t else None,
                       polygon=ring, start=start, end=end, collections=cols)
    return None if flt.is_empty else flt


def check_k(k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InputError(f"k={k!r} must be an integer within 1..{MAX_K}")
    return k


def _footprint(payload: dict | None) -> dict | None:
    from rsir_stac.tiling.footprints import footprint_geometry

    corners = (payload or {}).get("corners") or []
    ring = [(c["lon"], c["lat"]) for c in corners if isinstance(c, dict) and "lon" in c and "lat" in c]
    return footprint_geometry(ring) if ring else None


class _LRUBytes:
    """A thread-safe LRU of bytes values bounded by total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self._d: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._d[key] = value
            self.size += len(value)
            while self.size > self.max_bytes:
                _, v = self._d.popitem(last=False)
                self.size -= len(v)

    def __len__(self) -> int:
        return len(self._d)


# --------------------------------------------------------------------------- app


def create_app(index, *, api_key: str | None = None, max_upload_bytes: int = 10_000_000,
               max_image_pixels: int = 4096 * 4096, max_decoded_bytes: int = 64 * 1024 * 1024,
               max_decodes: int = 2, allowed_hosts: Sequence[str] | None = None,
               allowed_origins: Sequence[str] = (), hide_paths: bool = False,
               csp_img_sources: Sequence[str] = (), thumb_cache_bytes: int = THUMB_CACHE_BYTES,
               basemap: str | None = None, tile_cache_bytes: int | None = None, ingest_roots: Sequence[str] = ()):
    """The FastAPI app serving ``index`` (an open :class:`rsir_stac.search.Index`).

    The caller owns ``index`` (and closes it after the server stops).
    Uploads are decoded by :func:`rsir_stac.upload.decode_upload` within
    ``max_upload_bytes`` (body), ``max_image_pixels`` and ``max_decoded_bytes``
    (413 beyond), at most ``max_decodes`` at a time (429 beyond).
    ``allowed_hosts`` (default: loopback names), ``allowed_origins`` and
    ``api_key`` are enforced by :class:`rsir_stac.httpguard.Guard`;
    ``hide_paths`` cuts server paths in hrefs and error messages to file names;
    ``csp_img_sources`` lets the page load images from more origins (CSP).
    ``basemap``: an optional XYZ tile URL template (``https://host/{z}/{x}/{y}.png``) the map
    page draws under the imagery (its origin is added to the page's image sources);
    ``tile_cache_bytes``: the budget of rendered web-map tiles kept in memory (default
    :data:`rsir_stac.maptiles.CACHE_BYTES`); ``ingest_roots``: folders ingest jobs may read
    (:mod:`rsir_stac.api.jobs`; none: jobs are refused).
    """
    from fastapi import Body, FastAPI, File, Form, Query, Security, UploadFile
    from fastapi import Path as PathParam
    from fastapi.responses import FileResponse, HTMLResponse, Response
    from fastapi.security import APIKeyHeader, APIKeyQuery
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field

    from rsir_stac import __version__
    from rsir_stac.apierrors import TooManyRequests, document_errors, error_responses, install_handlers
    from rsir_stac.httpguard import Guard, public_href, script_hashes_csp
    from rsir_stac.search import to_geojson
    from rsir_stac.upload import UploadLimits, UploadTooLarge, decode_upload

    lock = threading.Lock()        # store access
    embed_lock = threading.Lock()  # the model (built lazily, one forward pass at a time)
    thumbs = _LRUBytes(thumb_cache_bytes)
    decode_slots = threading.BoundedSemaphore(max_decodes)  # uploads decoded (and embedded) at a time
    limits = UploadLimits(max_pixels=max_image_pixels, max_decoded_bytes=max_decoded_bytes)
    info_cache: dict[str, Any] = {}

    security = []
    if api_key:
        # enforced by Guard; declared here so /docs shows an "Authorize" button
        security = [Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
                    Security(APIKeyQuery(name="api_key", auto_error=False))]

    app = FastAPI(
        docs_url=None,   # served below from the vendored Swagger UI: no CDN at run time
        redoc_url=None,
        title="rsir-stac search",
        version=__version__,
        description="Content-based retrieval of remote sensing image tiles: find stored tiles like a query "
                    "tile (by point id, by location or by an uploaded image), filtered by place, time and "
                    "STAC collection. Distances are Euclidean (smaller is closer).",
    )
    app.state.index = index
    app.state.thumbs = thumbs
    app.state.decode_slots = decode_slots
    install_handlers(app, hide_paths=hide_paths)
    common = (401, 403, 405, 422, 500) if api_key else (403, 405, 422, 500)  # see document_errors below

    # ------------------------------------------------------------------ core
    def _info() -> dict:
        now = time.monotonic()
        cached = info_cache.get("v")
        if cached is not None and now - cached[0] < INFO_TTL_S:
            return cached[1]
        with lock:
            inf = index.store.info()
        doc = {
            "count": inf.count,
            "dim": inf.dim,
            "model_id": inf.model_id,
            "collections": list(inf.collections),
            "extent": list(inf.extent) if inf.extent else None,  # W > E across the antimeridian
            "undated": inf.undated,
            "no_collection": inf.no_collection,
            "notes": list(inf.notes),
            "backend": inf.backend,
            "version": __version__,
            "limits": {"max_k": MAX_K, "max_upload_bytes": max_upload_bytes, "max_image_pixels": max_image_pixels,
                       "max_decoded_bytes": max_decoded_bytes},
            "basemap": basemap,
        }
        info_cache["v"] = (now, doc)
        return doc

    def _search(*, point_id=None, lon=None, lat=None, pixels=None, flt=None, k=10, include_query=False) -> dict:
        k = check_k(k)
        at = None
        if point_id is None and pixels is None:
            if lon is None or lat is None:
                raise InputError("give a query: point_id, or lon and lat, (or upload an image to /api/search/image)")
            for name, v, lim in (("lon", lon, 180), ("lat", lat, 90)):
                if not math.isfinite(v) or abs(v) > lim:
                    raise InputError(f"{name}={v} is out of range; give lon within ±180 and lat within ±90 degrees")
            at = (float(lon), float(lat))
        elif point_id is not None and (lon is not None or lat is not None):
            raise InputError("give either point_id or lon/lat, not both")
        t0 = time.perf_counter()
        if pixels is not None:
            # embed outside the store lock so a CNN forward pass does not hold up other searches
            from rsir_stac.search import SearchResult

            with embed_lock:
                vector = index.embed_image(pixels)
            with lock:
                hits = index.store.search(vector, k=k, flt=flt)
            result = SearchResult("image", None, None, tuple(hits), pixels)
        else:
            with lock:
                result = index.search(point_id=point_id, at=at, flt=flt, k=k, include_query=include_query)
        doc = to_geojson(result)
        if hide_paths:
            for f in doc["features"]:
                if "href" in f["properties"]:
                    f["properties"]["href"] = public_href(f["properties"]["href"])
        q = doc.get("query") or {}
        qp = result.query_payload or {}
        if result.query_id:
            q.update({"item_id": qp.get("item_id"), "collection": qp.get("collection"),
                      "datetime": qp.get("datetime"), "location": qp.get("location"),
                      "geometry": _footprint(qp)})
        if at is not None:
            q["at"] = list(at)
        doc["query"] = q
        doc["k"] = k
        doc["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return doc

    # ------------------------------------------------------------------ API
    @app.get("/api/info", tags=["index"], summary="Index summary", dependencies=security,
             responses=error_responses(500))
    def api_info() -> dict:
        """Points, vector size, model id, STAC collections and lon/lat extent ``[W, S, E, N]``."""
        return _info()

    filter_doc = {
        "bbox": "Only results whose centre is in W,S,E,N (degrees).",
        "near": "Only results within LON,LAT,RADIUS_M.",
        "datetime": "Only results acquired in START/END (RFC 3339 or dates; '..' for an open end).",
        "collection": "Only results of this STAC collection (repeatable).",
        "polygon": "Only results inside a polygon: a GeoJSON geometry as JSON, or lon,lat;lon,lat;...",
        "k": f"Number of results (1..{MAX_K}).",
    }

    @app.get("/api/search", tags=["search"], summary="Search by point id or location", dependencies=security,
             responses=error_responses(400, 404, 422))
    def api_search_get(
        point_id: str | None = Query(None, description="Query with a stored tile's id."),
        lon: float | None = Query(None, description="Query with the stored tile covering lon/lat."),
        lat: float | None = Query(None, description="Latitude for lon/lat queries."),
        bbox: str | None = Query(None, description=filter_doc["bbox"], examples=["-95.5,29.6,-95.2,29.9"]),
        near: str | None = Query(None, description=filter_doc["near"], examples=["-95.36,29.75,5000"]),
        datetime: str | None = Query(None, description=filter_doc["datetime"], examples=["2020-01-01/.."]),
        collection: list[str] | None = Query(None, description=filter_doc["collection"]),
        polygon: str | None = Query(None, description=filter_doc["polygon"]),
        k: int = Query(10, ge=1, le=MAX_K, description=filter_doc["k"]),
        include_query: bool = Query(False, description="Keep the query tile itself in the results."),
    ) -> dict:
        """Nearest stored tiles to a stored tile, as a GeoJSON FeatureCollection of footprints
        (``properties``: rank, distance, id and the payload) plus ``query`` information."""
        flt = build_filter(bbox=bbox, near=near, polygon=polygon, datetime=datetime, collection=collection)
        return _search(point_id=point_id, lon=lon, lat=lat, flt=flt, k=k, include_query=include_query)

    class SearchRequest(BaseModel):
        model_config = ConfigDict(allow_inf_nan=False)  # NaN/Infinity/1e400 in a JSON body: 422
        point_id: str | None = Field(None, description="Query with a stored tile's id.")
        lon: float | None = Field(None, description="Query with the stored tile covering lon/lat.")
        lat: float | None = None
        bbox: list[float] | str | None = Field(None, description=filter_doc["bbox"])
        near: list[float] | str | None = Field(None, description=filter_doc["near"])
        datetime: str | None = Field(None, description=filter_doc["datetime"])
        collection: list[str] | str | None = Field(None, description=filter_doc["collection"])
        polygon: dict | str | None = Field(
            None, description="A GeoJSON Polygon geometry (or Feature), or lon,lat;lon,lat;...")
        k: int = Field(10, ge=1, le=MAX_K, description=filter_doc["k"])
        include_query: bool = False

    @app.post("/api/search", tags=["search"], summary="Search (JSON body)", dependencies=security,
              responses=error_responses(400, 404, 413, 422))
    def api_search_post(req: SearchRequest = Body(...)) -> dict:
        """The same search as ``GET /api/search`` with a JSON body; ``polygon`` may be GeoJSON."""
        flt = build_filter(bbox=req.bbox, near=req.near, polygon=req.polygon, datetime=req.datetime,
                           collection=req.collection)
        return _search(point_id=req.point_id, lon=req.lon, lat=req.lat, flt=flt, k=req.k,
                       include_query=req.include_query)

    @app.post("/api/search/image", tags=["search"], summary="Search by an uploaded image", dependencies=security,
              responses=error_responses(400, 413, 422, 429))
    def api_search_image(
        file: UploadFile = File(..., description=f"PNG, JPEG, WebP or (Geo)TIFF only (other formats, e.g. "
                                                 f"GDAL VRT/XML, are refused), at most {max_upload_bytes} bytes, "
                                                 f"{max_image_pixels} pixels and {max_decoded_bytes} bytes decoded."),
        bbox: str | None = Form(None, description=filter_doc["bbox"]),
        near: str | None = Form(None, description=filter_doc["near"]),
        datetime: str | None = Form(None, description=filter_doc["datetime"]),
        collection: list[str] | None = Form(None, description=filter_doc["collection"]),
        polygon: str | None = Form(None, description=filter_doc["polygon"]),
        k: int = Form(10, ge=1, le=MAX_K, description=filter_doc["k"]),
    ) -> dict:
        """Embed the uploaded image with the index's model and return the nearest stored tiles.
        The upload is decoded in memory; it is never written under a user-chosen name."""
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise UploadTooLarge(f"the uploaded file is over the {max_upload_bytes} byte limit; "
                                 "upload a smaller image")
        flt = build_filter(bbox=bbox, near=near, polygon=polygon, datetime=datetime, collection=collection)
        if not decode_slots.acquire(blocking=False):
            raise TooManyRequests(f"{max_decodes} uploaded images are being decoded already; "
                                  "retry in a second")
        try:  # the slot also covers the embedding: decoded pixels wait for the model inside the bound
            pixels = decode_upload(data, limits)
            del data
            doc = _search(pixels=pixels, flt=flt, k=k)
        finally:
            decode_slots.release()
        doc["query"]["size"] = [int(pixels.shape[1]), int(pixels.shape[0])]
        return doc

    @app.get("/api/tiles/{point_id}.png", tags=["tiles"], summary="Stored tile as PNG",
             response_class=Response, dependencies=security,
             responses={200: {"content": {"image/png": {}}, "description": "The tile's pixels (RGB PNG)."},
                        **error_responses(404, 410, 422)})
    def api_tile(point_id: str = PathParam(..., pattern=UUID_PATTERN, description="A stored point id (UUID).")):
        """The stored tile re-read from its source raster (addressed by point id only), cached."""
        from rsir_stac.store.base import normalize_id

        pid = normalize_id(point_id)
        png = thumbs.get(pid)
        if png is None:
            with lock:
                payload = index.store.retrieve([pid])[0].payload
            png = _tile_png(payload, pid)
            thumbs.put(pid, png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    from rsir_stac.api.tiles import tiles_router

    app.include_router(tiles_router(index, lock=lock, dependencies=security, cache_bytes=tile_cache_bytes))

    # ------------------------------------------------------------------ page
    from rsir_stac.serve_analysis import analysis_router

    app.include_router(analysis_router(index, lock=lock, dependencies=security))
    from rsir_stac.api.jobs import check_roots, jobs_router

    app.include_router(jobs_router(index, lock=lock, dependencies=security, roots=check_roots(ingest_roots),
                                   on_change=info_cache.clear))

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs():
        from fastapi.openapi.docs import get_swagger_ui_html

        ui = "static/vendor/swagger-ui/"
        page = get_swagger_ui_html(openapi_url="openapi.json", title="rsir-stac search API",
                                   swagger_js_url=ui + "swagger-ui-bundle.js", swagger_css_url=ui + "swagger-ui.css",
                                   swagger_favicon_url=ui + "favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})
        html = bytes(page.body).decode()
        # the page's one inline script is allowed by its hash, nothing else inline
        return HTMLResponse(html, headers={"Content-Security-Policy": script_hashes_csp(html)})

    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")
    if allowed_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"])
    app.add_middleware(Guard, api_key=api_key, max_body=max_upload_bytes + FORM_OVERHEAD_BYTES,
                       allowed_hosts=allowed_hosts, allowed_origins=allowed_origins,
                       img_sources=tuple(csp_img_sources) + ((_origin(basemap),) if basemap else ()))
    document_errors(app, common)  # last: also for operations of included routers
    return app


def _tile_png(payload: dict, pid: str = "") -> bytes:
    from PIL import Image

    from rsir_stac.apierrors import SourceUnreadableError
    from rsir_stac.errors import RasterError
    from rsir_stac.thumbnails import read_tile

    try:
        px = read_tile(payload)
    except (KeyError, TypeError) as exc:
        raise SourceUnreadableError(f"stored payload of tile {pid} has no usable source ({exc}); "
                                    "re-ingest the item") from None
    except RasterError as exc:
        cause = str(exc).split("; ")[0]  # the reader's cause; its advice is for ingest, not for this request
        raise SourceUnreadableError(f"the source raster of tile {pid} cannot be read any more ({cause}); "
                                    "restore the file or re-ingest the item") from None
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


# --------------------------------------------------------------------------- run / CLI


class AddressInUseError(RsirError, OSError):
    """``serve`` cannot listen on the asked host and port (taken by another process, or not local)."""


def bind_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port`` (not listening yet), for uvicorn.

    Bound before anything else is opened, so a busy port is one line and
    exit 1 (:class:`AddressInUseError`) instead of uvicorn's own exit 3.
    """
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"port {port} on {host} is already in use (another serve?); stop that "
                                    "process or choose another port with --port") from None
        raise AddressInUseError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); give a local "
                                "address with --host and a free port with --port") from None
    sock.set_inheritable(True)
    return sock


def _log_config() -> dict:
    """uvicorn's logging set-up with ``api_key=...`` redacted from the access log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["redact_key"] = {"()": "rsir_stac.httpguard.RedactKeyFilter"}
    cfg["handlers"]["access"].setdefault("filters", []).append("redact_key")
    return cfg


def run(index: str | None = None, qdrant_url: str | None = None, api_key_qdrant: str | None = None,
        model=None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
        log_level: str = "info", allow_hosts: Sequence[str] = (), allow_origins: Sequence[str] = (),
        hide_paths: bool | None = None, basemap: str | None = None, ingest_roots: Sequence[str] = ()) -> None:
    """Open the index once and serve it with uvicorn until interrupted (one worker: the index lock).

    The port is bound first (:class:`AddressInUseError` when taken).  Allowed
    hosts are :func:`rsir_stac.httpguard.default_allowed_hosts` of ``host``
    plus ``allow_hosts``; ``hide_paths`` None hides server paths unless
    ``host`` is a loopback address.  While it runs, ``<index>/.serve.json`` records
    where it listens (:func:`rsir_stac.served.publish`), so ``search``, ``info`` and
    ``ingest`` on the same index send their work here.
    """
    import uvicorn

    from rsir_stac.httpguard import default_allowed_hosts, is_loopback
    from rsir_stac.api.jobs import check_roots
    from rsir_stac.search import Index
    from rsir_stac.served import clean_stop, publish, unpublish

    check_roots(ingest_roots)
    sock = bind_socket(host, port)
    try:
        idx = Index.open(index, qdrant_url=qdrant_url, api_key=api_key_qdrant, model=model, read_only=True)
    except BaseException:
        sock.close()
        raise
    address = None
    try:
        hide = (not is_loopback(host)) if hide_paths is None else hide_paths
        app = create_app(idx, api_key=api_key, allowed_hosts=default_allowed_hosts(host) + tuple(allow_hosts),
                         allowed_origins=tuple(allow_origins), hide_paths=hide, basemap=basemap,
                         ingest_roots=ingest_roots)
        address = publish(idx.store, host, port, key_required=bool(api_key), ingest_jobs=bool(ingest_roots),
                          model_id=idx.bundle.model_id)
        log.warning("serving %s (model %s) on http://%s:%s/", idx.store.describe(), idx.bundle.model_id, host, port)
        config = uvicorn.Config(app, log_level=log_level, log_config=_log_config(), workers=1)
        with clean_stop():  # Ctrl-C / SIGTERM: exit 0 after closing the index and the address file
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        unpublish(address)
        sock.close()
        idx.close()


@click.command("serve")
@click.option("--index", type=click.Path(file_okay=False), help="Embedded (Qdrant Edge) index folder.")
@click.option("--qdrant-url", help="Qdrant server URL instead of --index (env RSIR_QDRANT_URL).")
@click.option("--api-key", "api_key_qdrant", help="Qdrant API key (env RSIR_QDRANT_API_KEY).")
@click.option("--model", type=click.Path(), help="Model bundle that built the index (default: shipped).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--service-key", envvar="RSIR_SERVICE_KEY",
              help="Require this key (X-API-Key header, or api_key= in tile URLs) on /api/*.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this Host name (repeatable; '.example.org' with subdomains, "
                   "'*' any). Default: loopback names and the --host address.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Allow POSTs (and CORS) from this web origin, e.g. https://maps.example.org (repeatable).")
@click.option("--hide-paths/--show-paths", default=None,
              help="Hide server file paths in hrefs and errors. Default: hidden unless --host is loopback.")
@click.option("--basemap", metavar="URL", help="Online XYZ basemap under the imagery, e.g. "
              "https://tile.openstreetmap.org/{z}/{x}/{y}.png (default: none, fully offline).")
@click.option("--ingest-root", "ingest_roots", multiple=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Accept ingest jobs (POST /api/ingest/jobs, used by `rsir-stac ingest` on this index) for "
                   "files under DIR (repeatable). Default: none accepted.")
def serve_command(index, qdrant_url, api_key_qdrant, model, host, port, service_key, allow_hosts, allow_origins,
                  hide_paths, basemap, ingest_roots):
    """Serve the search API and the map page over HTTP (open http://HOST:PORT/)."""
    import sys

    from rsir_stac.httpguard import is_loopback

    if not is_loopback(host) and not service_key:
        click.echo(f"warning: serving on {host} without --service-key; anyone who can reach it can search",
                   err=True)
    try:
        run(index=index, qdrant_url=qdrant_url, api_key_qdrant=api_key_qdrant, model=model, host=host,
            port=port, api_key=service_key, allow_hosts=allow_hosts, allow_origins=allow_origins,
            hide_paths=hide_paths, basemap=_check_basemap(basemap), ingest_roots=ingest_roots)
    except RsirError as exc:
        if logging.getLogger().level <= logging.DEBUG:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _check_basemap(url: str | None) -> str | None:
    """``url`` when it is an http(s) XYZ template with {z}, {x} and {y}; else InputError."""
    if not url:
        return None
    from urllib.parse import urlsplit

    if urlsplit(url).scheme not in ("http", "https") or not all(f"{{{c}}}" in url for c in "zxy"):
        raise InputError(f"--basemap {url!r} is not an XYZ tile URL; give https://host/path/{{z}}/{{x}}/{{y}}.png")
    return url


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL template (a CSP source); ``{s}`` subdomains become ``*.``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("{s}.", "sub."))
    host = parts.netloc.replace("sub.", "*.", 1) if "{s}." in url else parts.netloc
    return f"{parts.scheme}://{host}"


__all__ = ["AddressInUseError", "bind_socket", "build_filter", "create_app", "parse_polygon", "run", "serve_command"]
