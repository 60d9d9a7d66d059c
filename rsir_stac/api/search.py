"""Search by one example: ``GET``/``POST /api/search`` (a stored tile or a location) and
``POST /api/search/image`` (an uploaded image).

All three answer the same GeoJSON FeatureCollection (``properties``: rank,
distance, id and the payload) plus ``query``, ``k``, ``offset`` and ``next_offset`` (paging, as ``POST /api/query``),
``per_scene`` (the cap below), ``per_scene_penalty``, ``notes`` and ``took_ms``, and apply the library's defaults of
:meth:`rsir_stac.search.Index.search`: the soft cap of
:data:`rsir_stac.search.AUTO_PER_ITEM` hits per scene (``per_item="auto"``),
the query tile itself left out unless ``include_query``.  An upload is decoded
by :func:`rsir_stac.upload.decode_upload` only and embedded outside the store
lock; one much smaller than the model's input gets a warning (``query.warning``,
also in ``notes``: :func:`small_upload_warning`; the whole upload path: :func:`image_search`).
The JSON body of ``POST /api/search`` is :class:`rsir_stac.api.bodies.SearchRequest`.

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import math
import time
from typing import Any

from rsir_stac.api.params import EXPAND_DOC, FILTER_DOC, MAX_K, OFFSET_DOC, build_filter, check_k, footprint
from rsir_stac.errors import InputError
from rsir_stac.evaluate import MAX_EXPAND

#: An upload whose shorter side is under the model's input size divided by this gets a warning.
SMALL_UPLOAD_FACTOR = 4


def small_upload_warning(size: list[int], input_size: int) -> str | None:
    """A one-line warning when an uploaded image (``size``: width, height in pixels) is much smaller
    than the model's input (``input_size`` px square): enlarged that much, it holds too little detail
    for the results to mean much.  None when it is large enough."""
    side = min(size)
    if side * SMALL_UPLOAD_FACTOR >= input_size:
        return None
    return (f"the uploaded image is {size[0]}×{size[1]} px, much smaller than the model's {input_size}×{input_size} "
            f"px input: it is enlarged {input_size / max(side, 1):.0f} times, so the results may mean little; upload "
            f"an image of at least {input_size}×{input_size} px")


def _location(lon: Any, lat: Any) -> tuple[float, float]:
    if lon is None or lat is None:
        raise InputError("give a query: point_id, or lon and lat, (or upload an image to /api/search/image)")
    for name, v, lim in (("lon", lon, 180), ("lat", lat, 90)):
        if not math.isfinite(v) or abs(v) > lim:
            raise InputError(f"{name}={v} is out of range; give lon within ±180 and lat within ±90 degrees")
    return float(lon), float(lat)


def page_notes(result: Any) -> list[str]:
    """The notes of ``result`` about the search itself, as the map page shows them: all but the one on
    the per-scene cap's order, which the page words itself with the rank it starts at."""
    from rsir_stac.search_notes import cap_note

    return [n for n in result.notes if n != cap_note(result.score_name)]


def query_tile(payload: dict | None) -> dict:
    """The example tile's scene, date, place and footprint from its stored payload, as the answers of
    ``/api/search`` and ``/api/query`` give them in ``query`` (and the CLI prints on its query line)."""
    qp = payload or {}
    return {"item_id": qp.get("item_id"), "collection": qp.get("collection"), "datetime": qp.get("datetime"),
            **({"end_datetime": qp["end_datetime"]} if qp.get("end_datetime") else {}),
            "location": qp.get("location"), "geometry": footprint(qp)}


def run_search(svc: Any, *, point_id: Any = None, lon: Any = None, lat: Any = None, vector: Any = None,
               flt: Any = None, k: int = 10, include_query: bool = False, started: float | None = None,
               expand: int = 0, offset: int = 0) -> dict:
    """One search's answer document (see the module docstring): hits ``offset .. offset+k``
    (``next_offset``: the next page's, null on the last); ``vector``: an embedded upload;
    ``started``: ``time.perf_counter()`` when the request's work began (``took_ms``)."""
    from rsir_stac.search import AUTO_PER_ITEM, Example, to_geojson
    from rsir_stac.store.query import FILL_PENALTY, MAX_K as MAX_PAGED

    k = check_k(k)
    at = None
    if point_id is None and vector is None:
        at = _location(lon, lat)
    elif point_id is not None and (lon is not None or lat is not None):
        raise InputError("give either point_id or lon/lat, not both")
    t0 = time.perf_counter() if started is None else started
    positives = [Example("vector", vector)] if vector is not None else []
    with svc.lock:
        result = svc.index.search(point_id=point_id, at=at, positives=positives, flt=flt, k=k, offset=offset,
                                  include_query=include_query, expand=expand)
    doc = svc.public(to_geojson(result))
    q = doc.get("query") or {}
    qp = result.query_payload or {}
    if result.query_id:
        q.update(query_tile(qp))
    if at is not None:
        q["at"] = list(at)
    doc["query"] = q
    doc["k"] = k
    doc["offset"] = offset
    doc["next_offset"] = offset + k if len(result.hits) == k and offset + k < MAX_PAGED else None
    doc["per_scene"] = AUTO_PER_ITEM  # the soft cap these searches apply (the page explains its order)
    doc["per_scene_penalty"] = FILL_PENALTY  # beyond it a distance ranks as if this many times larger
    left_out = svc.filter_notes(flt)
    doc["notes"] = list(result.notes) + left_out + (svc.empty_notes(flt) if not result.hits else [])
    doc["filter_notes"] = left_out  # the same lines alone: what the date and collection filters left out
    doc["search_notes"] = page_notes(result)  # about this search itself (the page counts the filters' own)
    doc["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return doc


def image_search(svc: Any, file: Any, filters: dict, *, k: int = 10, expand: int = 0, offset: int = 0) -> dict:
    """The answer of ``POST /api/search/image`` for the upload ``file`` (a FastAPI ``UploadFile``) and the
    filter fields ``filters`` (:func:`~rsir_stac.api.params.build_filter`'s keywords): the upload read
    within the service's byte limit (413 beyond), decoded and embedded inside one decode slot, then
    searched (:func:`run_search`); ``query.size`` is the upload's width and height, and a
    :func:`small_upload_warning` goes to ``query.warning`` and the notes."""
    t0 = time.perf_counter()
    data = file.file.read(svc.max_upload_bytes + 1)
    if len(data) > svc.max_upload_bytes:
        raise svc.upload_too_large()
    flt = build_filter(**filters)
    with svc.decoding():  # the slot also covers the embedding: decoded pixels wait for the model inside it
        pixels = svc.decode(data)
        del data
        size = [int(pixels.shape[1]), int(pixels.shape[0])]
        vector = svc.embed(pixels)
        del pixels
    doc = run_search(svc, vector=vector, flt=flt, k=k, started=t0, expand=expand, offset=offset)
    doc["query"]["size"] = size
    from rsir_stac.search_notes import image_size_note, resized_how

    how = resized_how(size[1], size[0], svc.index.bundle.tile_size)
    # a strip (8000 x 10 px) is above all squashed, small side or not: the note below says so
    warning = None if how == "squashed" else small_upload_warning(size, svc.index.bundle.input_size)
    if warning:
        doc["query"]["warning"] = warning
        doc["notes"].append(warning)
    else:  # a strip or a whole scene (a tiny image has the warning above)
        note = image_size_note("", size[1], size[0], svc.index.bundle.tile_size, how)
        if note:
            doc["notes"].append(note)
            doc["search_notes"].append(note)
    return doc


def search_router(svc: Any):
    """An ``APIRouter`` with the three search operations over ``svc`` (a :class:`~rsir_stac.api.service.Service`)."""
    from fastapi import APIRouter, Body, File, Form, Query, UploadFile

    from rsir_stac.api.bodies import SearchRequest
    from rsir_stac.api.schemas import SEARCH_ANSWER, answer

    from rsir_stac.apierrors import error_responses

    router = APIRouter(dependencies=svc.dependencies, tags=["search"])

    @router.get("/api/search", summary="Search by point id or location",
                responses={**error_responses(400, 404, 422), **answer(SEARCH_ANSWER, "Result tiles as a GeoJSON FeatureCollection, with the query, paging and notes")})
    def api_search_get(
        point_id: str | None = Query(None, description="Query with a stored tile's id."),
        lon: float | None = Query(None, description="Query with the stored tile covering lon/lat."),
        lat: float | None = Query(None, description="Latitude for lon/lat queries."),
        bbox: str | None = Query(None, description=FILTER_DOC["bbox"], examples=["-95.5,29.6,-95.2,29.9"]),
        near: str | None = Query(None, description=FILTER_DOC["near"], examples=["-95.36,29.75,5000"]),
        datetime: str | None = Query(None, description=FILTER_DOC["datetime"], examples=["2020-01-01/.."]),
        collection: list[str] | None = Query(None, description=FILTER_DOC["collection"]),
        polygon: str | None = Query(None, description=FILTER_DOC["polygon"]),
        k: int = Query(10, ge=1, le=MAX_K, description=FILTER_DOC["k"]),
        include_query: bool = Query(False, description="Keep the query tile itself in the results."),
        expand: int = Query(0, ge=0, le=MAX_EXPAND, description=EXPAND_DOC),
        offset: int = Query(0, ge=0, description=OFFSET_DOC),
    ) -> dict:
        """Nearest stored tiles to a stored tile, as a GeoJSON FeatureCollection of footprints
        (``properties``: rank, distance, id and the payload) plus ``query`` information; at most
        3 hits per scene while other scenes have hits (``notes``: tiles a filter leaves out)."""
        flt = build_filter(bbox=bbox, near=near, polygon=polygon, datetime=datetime, collection=collection)
        return run_search(svc, point_id=point_id, lon=lon, lat=lat, flt=flt, k=k, include_query=include_query,
                          expand=expand, offset=offset)

    @router.post("/api/search", summary="Search (JSON body)",
                 responses={**error_responses(400, 404, 413, 422), **answer(SEARCH_ANSWER, "Result tiles as a GeoJSON FeatureCollection, with the query, paging and notes")})
    def api_search_post(req: SearchRequest = Body(...)) -> dict:
        """The same search as ``GET /api/search`` with a JSON body; ``polygon`` may be GeoJSON."""
        flt = build_filter(bbox=req.bbox, near=req.near, polygon=req.polygon, datetime=req.datetime,
                           collection=req.collection)
        return run_search(svc, point_id=req.point_id, lon=req.lon, lat=req.lat, flt=flt, k=req.k,
                          include_query=req.include_query, expand=req.expand, offset=req.offset)

    lim = svc.limits

    @router.post("/api/search/image", summary="Search by an uploaded image",
                 responses={**error_responses(400, 413, 422, 429), **answer(SEARCH_ANSWER, "Result tiles as a GeoJSON FeatureCollection, with the query, paging and notes")})
    def api_search_image(
        file: UploadFile = File(..., description=f"PNG, JPEG, WebP or (Geo)TIFF only (other formats, e.g. "
                                                 f"GDAL VRT/XML, are refused), at most {svc.max_upload_bytes} "
                                                 f"bytes, {lim.max_pixels} pixels and {lim.max_decoded_bytes} "
                                                 "bytes decoded."),
        bbox: str | None = Form(None, description=FILTER_DOC["bbox"]),
        near: str | None = Form(None, description=FILTER_DOC["near"]),
        datetime: str | None = Form(None, description=FILTER_DOC["datetime"]),
        collection: list[str] | None = Form(None, description=FILTER_DOC["collection"]),
        polygon: str | None = Form(None, description=FILTER_DOC["polygon"]),
        k: int = Form(10, ge=1, le=MAX_K, description=FILTER_DOC["k"]),
        expand: int = Form(0, ge=0, le=MAX_EXPAND, description=EXPAND_DOC),
        offset: int = Form(0, ge=0, description=OFFSET_DOC),
    ) -> dict:
        """Embed the uploaded image with the index's model and return the nearest stored tiles (at most
        3 per scene while other scenes have hits, as ``GET /api/search``).
        The upload is decoded in memory; it is never written under a user-chosen name."""
        filters = {"bbox": bbox, "near": near, "polygon": polygon, "datetime": datetime, "collection": collection}
        return image_search(svc, file, filters, k=k, expand=expand, offset=offset)

    return router


__all__ = ["SMALL_UPLOAD_FACTOR", "image_search", "page_notes", "query_tile", "run_search", "search_router", "small_upload_warning"]
