"""What the index stores: ``GET /api/info`` (its summary) and ``GET /api/tiles/{point_id}.png``
(a stored tile's pixels, re-read from its source raster).

Tiles are addressed by point id only (no path from the client); a source that
is gone is 404, one that is no longer a raster 410, both one line naming the
tile and the fix.  PNGs are kept in a byte-bounded LRU; the summary for
:data:`rsir_stac.api.service.INFO_TTL_S` seconds (it scans every point).

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import io
from typing import Any

from rsir_stac.api.params import MAX_K, UUID_PATTERN
from rsir_stac.store.query import MAX_K as QUERY_MAX_K


def info_document(svc: Any) -> dict:
    """The ``/api/info`` answer: count, dim, model, collections, extent, undated/uncollected counts, limits."""
    from rsir_stac import __version__

    with svc.lock:
        inf = svc.index.store.info()
    return {
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
        # max_k: GET/POST /api/search; max_hits_query: offset + k of /api/query (its pages)
        "limits": {"max_k": MAX_K, "max_hits_query": QUERY_MAX_K, "max_upload_bytes": svc.max_upload_bytes,
                   "max_image_pixels": svc.limits.max_pixels, "max_decoded_bytes": svc.limits.max_decoded_bytes},
        "basemap": svc.basemap,
    }


#: Longest side (pixels) of a stored tile's PNG: larger tiles (``--tile-size`` up to 4096) are shrunk
#: (Lanczos) to it; the page shows tiles at a few hundred pixels.
MAX_TILE_PNG_SIDE = 1024


def tile_png(payload: dict, pid: str = "") -> bytes:
    """The stored tile of ``payload`` re-read from its source raster, as an RGB PNG, its longest
    side at most :data:`MAX_TILE_PNG_SIDE` pixels.

    Raises :class:`~rsir_stac.errors.SourceNotFoundError` (404) when the source is gone and
    :class:`~rsir_stac.apierrors.SourceUnreadableError` (410) when it is not a readable raster
    any more (replaced by another file, truncated) or the payload names no source.
    """
    from PIL import Image

    from rsir_stac.errors import SourceUnreadableError
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
    img = Image.fromarray(px)
    if max(img.size) > MAX_TILE_PNG_SIDE:
        img.thumbnail((MAX_TILE_PNG_SIDE, MAX_TILE_PNG_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def stored_router(svc: Any):
    """An ``APIRouter`` with ``/api/info`` and ``/api/tiles/{point_id}.png`` over ``svc``."""
    from fastapi import APIRouter
    from fastapi import Path as PathParam
    from fastapi.responses import Response

    from rsir_stac.api.schemas import INFO_ANSWER, answer
    from rsir_stac.apierrors import error_responses

    router = APIRouter(dependencies=svc.dependencies)

    @router.get("/api/info", tags=["index"], summary="Index summary",
                responses={**error_responses(500), **answer(INFO_ANSWER, "The index summary")})
    def api_info() -> dict:
        """Points, vector size, model id, STAC collections and lon/lat extent ``[W, S, E, N]``
        (the summary is cached for a minute; ``count`` is always the store's count now, so it
        follows an ingest job as it writes)."""
        doc = dict(svc.cached("info", lambda: info_document(svc)))
        with svc.lock:
            doc["count"] = svc.index.store.count()
        return doc

    @router.get("/api/tiles/{point_id}.png", tags=["tiles"], summary="Stored tile as PNG", response_class=Response,
                responses={200: {"content": {"image/png": {}}, "description": "The tile's pixels (RGB PNG)."},
                           **error_responses(404, 410, 422, 429)})
    def api_tile(point_id: str = PathParam(..., pattern=UUID_PATTERN, description="A stored point id (UUID).")):
        """The stored tile re-read from its source raster (addressed by point id only), cached."""
        from rsir_stac.store.records import normalize_id

        pid = normalize_id(point_id)
        png = svc.thumbs.get(pid)
        if png is None:
            with svc.lock:
                payload = svc.index.store.retrieve([pid])[0].payload
            with svc.reading_tile():  # a few reads at a time, a bounded queue behind them (429 beyond)
                png = tile_png(payload, pid)
            svc.thumbs.put(pid, png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    return router


__all__ = ["MAX_TILE_PNG_SIDE", "info_document", "stored_router", "tile_png"]
