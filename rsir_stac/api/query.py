"""``POST /api/query``: search with several positive and negative examples.

Examples are stored point ids, locations, a label FeatureCollection and, in a
multipart request, uploaded images (``positive_image``/``negative_image``
files beside a ``query`` field holding the JSON body's fields); then the
strategy (the engine's recommend/discovery queries), MMR, the per-scene cap,
footprint exclusion and filters.  ``k`` up to
:data:`rsir_stac.store.query.MAX_K` with ``offset`` paging (``next_offset`` in
the answer).  Limits: :mod:`rsir_stac.api.bodies`.

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import time
from typing import Any

from rsir_stac.api import bodies
from rsir_stac.errors import InputError


def run_query(svc: Any, query: Any, *, with_payload: bool = True) -> tuple[Any, Any]:
    """The :class:`~rsir_stac.search.SearchResult` of a parsed query (:class:`bodies.QueryInput`)
    and its filter; uploaded images are decoded and embedded before the store lock is taken."""

    req = query.req
    pos, neg = bodies.examples(req.positives, "positives"), bodies.examples(req.negatives, "negatives")
    n = len({(e.kind, e.value) for e in pos + neg}) + len(query.images)  # a repeated example counts once
    if n > bodies.MAX_EXAMPLES_API:
        raise InputError(f"{n} distinct examples given; send at most {bodies.MAX_EXAMPLES_API}")
    places = len({e.value for e in pos + neg if e.kind == "location"})
    if places > bodies.MAX_PLACES_API:
        raise InputError(f"{places} places (lon/lat examples) given; send at most {bodies.MAX_PLACES_API}, or give "
                         "stored tiles by point_id")
    labels = bodies.labels(req.labels)  # at most MAX_LABELS_API of them, checked by bodies.labels
    flt = bodies.search_filter(req)
    ipos, ineg = bodies.image_examples(svc, query.images)
    with svc.lock:
        result = svc.index.search(positives=ipos + pos, negatives=ineg + neg, labels=labels, strategy=req.strategy,
                                mmr=req.mmr, per_item=bodies.per_item(req.per_item),
                                exclude_within_m=req.exclude_within_m, flt=flt, k=req.k, offset=req.offset,
                                include_query=req.include_query, with_payload=with_payload, expand=req.expand)
    if labels is not None and labels.notes:  # what the label set left out (the CLI warns of it)
        import dataclasses

        result = dataclasses.replace(result, notes=tuple(labels.notes) + tuple(result.notes))
    return result, flt


def query_reader(svc: Any, model: type):
    """A FastAPI dependency reading ``model`` as JSON or multipart (:func:`bodies.read_query`)."""
    from fastapi import Request

    async def read(request: Request) -> bodies.QueryInput:
        return await bodies.read_query(request, model, svc.max_upload_bytes)

    return read


def query_router(svc: Any):
    """An ``APIRouter`` with ``POST /api/query`` over ``svc`` (a :class:`~rsir_stac.api.service.Service`)."""
    from fastapi import APIRouter, Depends

    from rsir_stac.api.schemas import SEARCH_ANSWER, answer
    from rsir_stac.api.search import page_notes, query_tile
    from rsir_stac.apierrors import error_responses
    from rsir_stac.search import AUTO_PER_ITEM, to_geojson
    from rsir_stac.store.query import FILL_PENALTY
    from rsir_stac.store.query import MAX_K

    router = APIRouter(dependencies=svc.dependencies, tags=["analysis"],
                       responses=error_responses(400, 404, 413, 422, 429))

    @router.post("/api/query", summary="Search with several positive and negative examples",
                 responses=answer(SEARCH_ANSWER, "Result tiles as a GeoJSON FeatureCollection, with the query, "
                                                 "paging and notes"),
                 openapi_extra={"requestBody": bodies.request_body(bodies.QueryRequest, "query",
                                                                   svc.max_upload_bytes)})
    def api_query(query: bodies.QueryInput = Depends(query_reader(svc, bodies.QueryRequest))) -> dict:
        """Hits ``offset .. offset+k`` as GeoJSON; ``next_offset`` is null on the last page; ``per_scene`` is the
        cap of hits per scene that came first (null: none, ``per_item`` 0 or null); ``notes`` say what
        a user should know about the ranking (e.g. hits the context strategy could not rank) and how many
        tiles a date or collection filter leaves out.  Send JSON, or multipart/form-data with the JSON in
        a ``query`` field and example images in ``positive_image``/``negative_image`` files."""
        t0 = time.perf_counter()
        req = query.req
        with svc.querying():  # at most svc.max_queries at a time: 429 beyond, never a queue behind the lock
            result, flt = run_query(svc, query)
            doc = svc.public(to_geojson(result))
            if result.query_id:  # the first example tile's scene and date, as GET /api/search gives them (not
                # its outline: the page draws a query's outline, and a query of several examples has its own)
                tile = query_tile(result.query_payload)
                doc["query"].update({k: tile[k] for k in ("item_id", "collection", "datetime", "end_datetime")
                                     if k in tile})
            left_out = svc.filter_notes(flt)
            notes = list(result.notes) + left_out + (svc.empty_notes(flt) if not result.hits else [])
        full = len(result.hits) == req.k and req.offset + req.k < MAX_K
        cap = bodies.per_item(req.per_item)
        doc.update({"k": req.k, "offset": req.offset, "next_offset": req.offset + req.k if full else None,
                    "score": result.score_name, "per_scene": AUTO_PER_ITEM if cap == "auto" else cap,
                    **({"per_scene_penalty": FILL_PENALTY} if cap == "auto" and result.score_name == "distance"
                       else {}),
                    "notes": notes, "filter_notes": left_out, "search_notes": page_notes(result),
                    "took_ms": round((time.perf_counter() - t0) * 1000, 2)})
        return doc

    return router


__all__ = ["query_reader", "query_router", "run_query"]
