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
* ``GET  /``                         the map page (``rsir_stac/web/``)

No endpoint takes a filesystem path: tiles are addressed by point id and
uploads are decoded from memory.  With an API key set, every ``/api/*``
request needs the ``X-API-Key`` header (or ``?api_key=``), else 401.

FastAPI, uvicorn and Pillow are imported only when an app is built, so
importing this module (for the ``serve`` click command) stays cheap.  This
module deliberately does not use postponed annotations: FastAPI resolves the
endpoint annotations at definition time, inside :func:`create_app`.
"""

import hmac
import io
import json
import logging
import math
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import click

from rsir_stac.errors import (
    ImageReadError,
    InputError,
    PointNotFoundError,
    RsirError,
    SourceNotFoundError,
)

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
    """HTTP status for a library error."""
    if isinstance(exc, (PointNotFoundError, SourceNotFoundError)):
        return 404
    if isinstance(exc, ImageReadError):
        return 422
    if isinstance(exc, InputError):
        return 400
    return 500


def parse_polygon(value: Any) -> tuple[tuple[float, float], ...]:
    """A polygon filter from a GeoJSON object / JSON string, or ``"lon,lat;lon,lat;..."``.

    GeoJSON may be a Polygon (no holes), a Feature holding one, a
    FeatureCollection of exactly one, or a MultiPolygon of one.  The ring is
    closed when the last position does not repeat the first.  The ring is
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

    return _close(list(polygon_from_geojson(value, what)))


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
    corners = (payload or {}).get("corners") or []
    ring = [[c["lon"], c["lat"]] for c in corners if isinstance(c, dict) and "lon" in c and "lat" in c]
    return {"type": "Polygon", "coordinates": [ring + ring[:1]]} if ring else None


def decode_upload(data: bytes, *, max_image_pixels: int) -> Any:
    """Decode uploaded bytes to ``H x W x 3`` uint8 without touching the filesystem.

    The image size is read from the header first; images over
    ``max_image_pixels`` raise :class:`UploadTooLarge` before any pixel is
    decoded.  PNG/JPEG/WebP/BMP/GIF go through Pillow, TIFF/GeoTIFF (and
    anything Pillow cannot read) through rasterio's in-memory files, with the
    same decoders (band choice, stretch) as :func:`rsir_stac.tiling.read_image`.
    """
    from PIL import Image

    from rsir_stac import tiling

    if not data:
        raise ImageReadError("the uploaded file is empty; upload a PNG/JPEG/WebP/GeoTIFF image")
    size, fmt, first = None, None, None
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only, no pixels
            size, fmt = img.size, img.format
    except Image.DecompressionBombError:
        raise UploadTooLarge(
            f"the uploaded image is too large to decode (over {max_image_pixels} pixels); upload a smaller image"
        ) from None
    except Exception as err:  # noqa: BLE001 - not a Pillow format: try rasterio
        first = err
    use_pil = size is not None and fmt != "TIFF"
    if not use_pil:  # TIFF/GeoTIFF, or a format only GDAL knows
        rsize = _raster_size(data)
        if rsize is not None:
            size = rsize
        elif size is None:
            detail = f" ({str(first).splitlines()[0][:200]})" if first is not None else ""
            raise ImageReadError(f"the uploaded file cannot be decoded as an image{detail}; "
                                 "upload a PNG/JPEG/WebP/GeoTIFF image")
        else:
            use_pil = True
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageReadError(f"the uploaded image has size {w}x{h}; upload a non-empty image")
    if w * h > max_image_pixels:
        raise UploadTooLarge(
            f"the uploaded image is {w}x{h} = {w * h} pixels, over the {max_image_pixels} pixel limit; "
            "upload a smaller image or crop it"
        )
    # the same decoders read_image uses, given in-memory sources instead of paths
    readers = [_pil_reader, _raster_reader] if use_pil else [_raster_reader, _pil_reader]
    err0: BaseException | None = None
    for reader in readers:
        try:
            px = reader(data, tiling)
        except Image.DecompressionBombError:
            raise UploadTooLarge(f"the uploaded image is over the {max_image_pixels} pixel limit; "
                                 "upload a smaller image") from None
        except RsirError:
            raise
        except Exception as err:  # noqa: BLE001 - try the other decoder
            err0 = err0 or err
            continue
        if px is not None and px.ndim == 3 and px.shape[2] == 3 and px.size:
            return px
    detail = f" ({str(err0).splitlines()[0][:200]})" if err0 is not None else ""
    raise ImageReadError(f"the uploaded file cannot be decoded as an image{detail}; "
                         "upload a PNG/JPEG/WebP/GeoTIFF image")


def _pil_reader(data: bytes, tiling):
    return tiling._read_with_pil(io.BytesIO(data), None)


def _raster_reader(data: bytes, tiling):
    from rasterio.io import MemoryFile

    with MemoryFile(data) as mem:  # GDAL /vsimem/, never the real filesystem
        return tiling._read_with_rasterio(mem.name, None)


def _raster_size(data: bytes) -> tuple[int, int] | None:
    try:
        from rasterio.errors import NotGeoreferencedWarning
        from rasterio.io import MemoryFile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as ds:
                return int(ds.width), int(ds.height)
    except Exception:  # noqa: BLE001 - not a raster either
        return None


class UploadTooLarge(ImageReadError):
    """An upload (bytes or pixels) over the service limits: HTTP 413."""


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


class _Guard:
    """ASGI middleware for ``/api/*``: API key check, then a request body size limit.

    The body limit is enforced on the Content-Length header up front and on
    the bytes actually received (chunked uploads), so an oversized upload is
    cut off with 413 while it is being read.
    """

    def __init__(self, app, *, api_key: str | None, max_body: int) -> None:
        self.app, self.max_body = app, max_body
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.api_key is not None and not self._authorised(scope, headers):
            resp = JSONResponse({"detail": "missing or wrong API key; send the X-API-Key header (or ?api_key=)"},
                                status_code=401, headers={"WWW-Authenticate": "X-API-Key"})
            return await resp(scope, receive, send)
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                too_big = False
            if too_big:
                resp = JSONResponse({"detail": f"request body of {int(length)} bytes is over the "
                                               f"{self.max_body} byte limit; upload a smaller file"},
                                    status_code=413, headers={"Connection": "close"})
                return await resp(scope, receive, send)
        received = 0
        limit = self.max_body

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body is over the {limit} byte limit; upload a smaller file")
            return message

        return await self.app(scope, limited_receive, send)

    def _authorised(self, scope, headers) -> bool:
        given = headers.get("x-api-key")
        if given is None:
            from urllib.parse import parse_qs

            qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            vals = qs.get("api_key")
            given = vals[-1].encode("latin-1", "replace") if vals else None
        return given is not None and hmac.compare_digest(given, self.api_key)


# --------------------------------------------------------------------------- app


def create_app(index, *, api_key: str | None = None, max_upload_bytes: int = 10_000_000,
               max_image_pixels: int = 4096 * 4096, thumb_cache_bytes: int = THUMB_CACHE_BYTES):
    """The FastAPI app serving ``index`` (an open :class:`rsir_stac.search.Index`).

    The caller owns ``index`` (and closes it after the server stops).
    """
    from fastapi import Body, FastAPI, File, Form, Query, Request, Security, UploadFile
    from fastapi import Path as PathParam
    from fastapi.exceptions import HTTPException
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.security import APIKeyHeader, APIKeyQuery
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field

    from rsir_stac import __version__
    from rsir_stac.search import to_geojson

    lock = threading.Lock()        # store access
    embed_lock = threading.Lock()  # the model (built lazily, one forward pass at a time)
    thumbs = _LRUBytes(thumb_cache_bytes)
    info_cache: dict[str, Any] = {}

    security = []
    if api_key:
        # enforced by _Guard; declared here so /docs shows an "Authorize" button
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

    @app.exception_handler(RsirError)
    async def _rsir_error(request: Request, exc: RsirError):
        status = 413 if isinstance(exc, UploadTooLarge) else http_status(exc)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)

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
            "extent": list(inf.extent) if inf.extent else None,
            "backend": inf.backend,
            "version": __version__,
            "limits": {"max_k": MAX_K, "max_upload_bytes": max_upload_bytes, "max_image_pixels": max_image_pixels},
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
    @app.get("/api/info", tags=["index"], summary="Index summary", dependencies=security)
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

    @app.get("/api/search", tags=["search"], summary="Search by point id or location", dependencies=security)
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

    @app.post("/api/search", tags=["search"], summary="Search (JSON body)", dependencies=security)
    def api_search_post(req: SearchRequest = Body(...)) -> dict:
        """The same search as ``GET /api/search`` with a JSON body; ``polygon`` may be GeoJSON."""
        flt = build_filter(bbox=req.bbox, near=req.near, polygon=req.polygon, datetime=req.datetime,
                           collection=req.collection)
        return _search(point_id=req.point_id, lon=req.lon, lat=req.lat, flt=flt, k=req.k,
                       include_query=req.include_query)

    @app.post("/api/search/image", tags=["search"], summary="Search by an uploaded image", dependencies=security)
    def api_search_image(
        file: UploadFile = File(..., description=f"PNG/JPEG/WebP/GeoTIFF, at most {max_upload_bytes} bytes "
                                                 f"and {max_image_pixels} pixels."),
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
            raise HTTPException(413, f"the uploaded file is over the {max_upload_bytes} byte limit; "
                                     "upload a smaller image")
        flt = build_filter(bbox=bbox, near=near, polygon=polygon, datetime=datetime, collection=collection)
        pixels = decode_upload(data, max_image_pixels=max_image_pixels)
        doc = _search(pixels=pixels, flt=flt, k=k)
        doc["query"]["size"] = [int(pixels.shape[1]), int(pixels.shape[0])]
        return doc

    @app.get("/api/tiles/{point_id}.png", tags=["tiles"], summary="Stored tile as PNG",
             response_class=Response, dependencies=security,
             responses={200: {"content": {"image/png": {}}, "description": "The tile's pixels (RGB PNG)."},
                        404: {"description": "No point with that id."}})
    def api_tile(point_id: str = PathParam(..., pattern=UUID_PATTERN, description="A stored point id (UUID).")):
        """The stored tile re-read from its source raster (addressed by point id only), cached."""
        from rsir_stac.store.base import normalize_id

        pid = normalize_id(point_id)
        png = thumbs.get(pid)
        if png is None:
            with lock:
                payload = index.store.retrieve([pid])[0].payload
            png = _tile_png(payload)
            thumbs.put(pid, png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    # ------------------------------------------------------------------ page
    from rsir_stac.serve_analysis import analysis_router

    app.include_router(analysis_router(index, lock=lock, dependencies=security))

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs():
        from fastapi.openapi.docs import get_swagger_ui_html

        ui = "static/vendor/swagger-ui/"
        return get_swagger_ui_html(openapi_url="openapi.json", title="rsir-stac search API",
                                   swagger_js_url=ui + "swagger-ui-bundle.js", swagger_css_url=ui + "swagger-ui.css",
                                   swagger_favicon_url=ui + "favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")
    app.add_middleware(_Guard, api_key=api_key, max_body=max_upload_bytes + FORM_OVERHEAD_BYTES)
    return app


def _tile_png(payload: dict) -> bytes:
    from PIL import Image

    from rsir_stac.errors import RasterError
    from rsir_stac.thumbnails import read_tile

    try:
        px = read_tile(payload)
    except (KeyError, TypeError) as exc:
        raise RasterError(f"stored payload has no usable source ({exc}); re-ingest the item") from None
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


# --------------------------------------------------------------------------- run / CLI


def run(index: str | None = None, qdrant_url: str | None = None, api_key_qdrant: str | None = None,
        model=None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
        log_level: str = "info") -> None:
    """Open the index once and serve it with uvicorn until interrupted (one worker: the index lock)."""
    import uvicorn

    from rsir_stac.search import Index

    idx = Index.open(index, qdrant_url=qdrant_url, api_key=api_key_qdrant, model=model, read_only=True)
    try:
        app = create_app(idx, api_key=api_key)
        log.warning("serving %s (model %s) on http://%s:%s/", idx.store.describe(), idx.bundle.model_id, host, port)
        uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)
    finally:
        idx.close()


@click.command("serve")
@click.option("--index", type=click.Path(file_okay=False), help="Embedded (Qdrant Edge) index folder.")
@click.option("--qdrant-url", help="Qdrant server URL instead of --index (env RSIR_QDRANT_URL).")
@click.option("--api-key", "api_key_qdrant", help="Qdrant API key (env RSIR_QDRANT_API_KEY).")
@click.option("--model", type=click.Path(), help="Model bundle that built the index (default: shipped).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--service-key", envvar="RSIR_SERVICE_KEY", help="Require this key (X-API-Key header) on /api/*.")
def serve_command(index, qdrant_url, api_key_qdrant, model, host, port, service_key):
    """Serve the search API and the map page over HTTP (open http://HOST:PORT/)."""
    import sys

    if host not in ("127.0.0.1", "localhost", "::1") and not service_key:
        click.echo(f"warning: serving on {host} without --service-key; anyone who can reach it can search",
                   err=True)
    try:
        run(index=index, qdrant_url=qdrant_url, api_key_qdrant=api_key_qdrant, model=model, host=host,
            port=port, api_key=service_key)
    except RsirError as exc:
        if logging.getLogger().level <= logging.DEBUG:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


__all__ = ["build_filter", "create_app", "decode_upload", "parse_polygon", "run", "serve_command"]
