"""HTTP endpoints of the analyst's loop, mounted by :func:`rsir_stac.serve.create_app`.

* ``POST /api/query``          several positive/negative examples (point ids, locations, a
                               label FeatureCollection), strategy, MMR, per-scene cap,
                               footprint exclusion, filters; ``k`` up to 10,000 with ``offset``
                               paging (``next_offset`` in the answer)
* ``POST /api/query/export``   the same query as a file: ``format`` geojson | csv | fgb | parquet
* ``POST /api/labels``         check a label FeatureCollection against the index and return it
                               with the stored footprints filled in (the same file the CLI reads)
* ``POST /api/classify``       logistic regression on labelled tiles over the filtered area:
                               tiles (or dissolved areas) with probability >= threshold

Limits (one-line 400 errors naming the field): ``offset + k`` <= 10,000, at most
:data:`MAX_LABELS_API` labels and :data:`MAX_EXAMPLES_API` examples, polygons of
at most :data:`MAX_POLYGON_VERTICES` vertices, ``max_hits`` <= 10,000.  Every
store access holds the app's store lock (a classify scan holds it for its whole pass).

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rsir_stac.errors import InputError

log = logging.getLogger(__name__)

MAX_LABELS_API = 2_000
MAX_EXAMPLES_API = 256
MAX_POLYGON_VERTICES = 1_000
MAX_HITS_API = 10_000
EXPORT_MEDIA = {"geojson": ("application/geo+json", ".geojson"), "csv": ("text/csv", ".csv"),
                "fgb": ("application/vnd.flatgeobuf", ".fgb"), "parquet": ("application/vnd.apache.parquet", ".parquet")}


def _examples(items: Any, what: str) -> list:
    """Examples from ``[{"point_id": ...} | {"lon": .., "lat": ..}, ...]``."""
    from rsir_stac.search import Example
    from rsir_stac.store.filters import _check_lonlat

    out = []
    for n, it in enumerate(items or [], 1):
        if not isinstance(it, dict):
            raise InputError(f"{what}[{n}] must be an object with point_id, or lon and lat")
        if it.get("point_id"):
            out.append(Example("point", str(it["point_id"])))
        elif it.get("lon") is not None and it.get("lat") is not None:
            try:
                lon, lat = float(it["lon"]), float(it["lat"])
            except (TypeError, ValueError):
                raise InputError(f"{what}[{n}] lon/lat must be numbers in degrees") from None
            _check_lonlat(lon, lat, f"{what}[{n}]")
            out.append(Example("location", (lon, lat)))
        else:
            raise InputError(f"{what}[{n}] has neither point_id nor lon and lat; give one of them")
    return out


def _labels(doc: Any):
    from rsir_stac.labels import labels_from_geojson

    if doc is None:
        return None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if isinstance(feats, list) and len(feats) > MAX_LABELS_API:
        raise InputError(f"labels has {len(feats)} features; send at most {MAX_LABELS_API}")
    return labels_from_geojson(doc, "labels")


def _filter(req: Any):
    from rsir_stac.serve import build_filter

    poly = req.polygon
    ring = poly.get("coordinates", [[]])[0] if isinstance(poly, dict) and poly.get("type") == "Polygon" else None
    if isinstance(ring, list) and len(ring) > MAX_POLYGON_VERTICES:
        raise InputError(f"polygon has {len(ring)} vertices; simplify it to at most {MAX_POLYGON_VERTICES}")
    flt = build_filter(bbox=req.bbox, near=req.near, polygon=poly, datetime=req.datetime, collection=req.collection)
    if flt is not None and flt.polygon is not None and len(flt.polygon) > MAX_POLYGON_VERTICES:
        raise InputError(f"polygon has {len(flt.polygon)} vertices; simplify it to at most {MAX_POLYGON_VERTICES}")
    return flt


def _per_item(value: Any):
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"per_item={value!r} must be a whole number >= 0 (0: no cap), null or \"auto\"")
    return value or None


def analysis_router(index: Any, *, lock: threading.Lock, dependencies: list | None = None):
    """An ``APIRouter`` with the endpoints above for ``index`` (an open :class:`~rsir_stac.search.Index`);
    ``lock`` serialises store access with the app's other endpoints."""
    from fastapi import APIRouter, Body
    from fastapi.responses import FileResponse
    from pydantic import BaseModel, Field
    from starlette.background import BackgroundTask

    from rsir_stac.search import to_geojson
    from rsir_stac.store.query import MAX_K

    from rsir_stac.apierrors import error_responses

    # InputError → 400, unknown point id → 404, too large → 413 (one error schema, see apierrors)
    router = APIRouter(dependencies=dependencies or [], responses=error_responses(400, 404, 413))

    class Filters(BaseModel):
        bbox: list[float] | str | None = Field(None, description="Only tiles whose centre is in W,S,E,N.")
        near: list[float] | str | None = Field(None, description="Only tiles within LON,LAT,RADIUS_M.")
        datetime: str | None = Field(None, description="Only tiles acquired in START/END ('..' open).")
        collection: list[str] | str | None = Field(None, description="Only tiles of these STAC collections.")
        polygon: dict | str | None = Field(None, description=f"GeoJSON Polygon (at most {MAX_POLYGON_VERTICES} "
                                                             "vertices) or lon,lat;lon,lat;...")

    class QueryRequest(Filters):
        positives: list[dict] = Field([], description="Positive examples: {point_id} or {lon, lat}.")
        negatives: list[dict] = Field([], description="Negative examples: {point_id} or {lon, lat}.")
        labels: dict | None = Field(None, description="A label FeatureCollection (adds its examples).")
        strategy: str = Field("average", description="average | best_score | sum_scores | discover | context | "
                                                     "feedback (the engine's recommend/discovery queries).")
        mmr: float | None = Field(None, description="MMR diversity 0..1 (strategy average).")
        per_item: int | str | None = Field("auto", description="Hits per scene: N, 0/null (no cap) or auto.")
        exclude_within_m: float | None = Field(None, description="Drop tiles this close to the examples (m).")
        k: int = Field(10, description=f"Results per page; offset + k <= {MAX_K}.")
        offset: int = Field(0, description="Results skipped (paging).")
        include_query: bool = False

    class ExportRequest(QueryRequest):
        format: str = Field("geojson", description="geojson | csv | fgb | parquet")
        with_vectors: bool = False

    class LabelsRequest(BaseModel):
        labels: dict = Field(..., description="A label FeatureCollection.")

    class ClassifyRequest(Filters):
        labels: dict = Field(..., description="A label FeatureCollection with at least one positive.")
        threshold: float = Field(0.5, description="Keep tiles with probability >= threshold.")
        holdout: float = Field(0.25, description="Fraction of labels held out for precision/recall.")
        max_hits: int = Field(1000, description=f"Most probable tiles returned (<= {MAX_HITS_API}).")
        dissolve: bool = Field(False, description="Return merged areas instead of tiles.")

    def run_query(req: Any, *, with_payload: bool = True):
        pos, neg = _examples(req.positives, "positives"), _examples(req.negatives, "negatives")
        if len(pos) + len(neg) > MAX_EXAMPLES_API:
            raise InputError(f"{len(pos) + len(neg)} examples given; send at most {MAX_EXAMPLES_API}")
        labels = _labels(req.labels)
        flt = _filter(req)
        with lock:
            return index.search(positives=pos, negatives=neg, labels=labels, strategy=req.strategy, mmr=req.mmr,
                                per_item=_per_item(req.per_item), exclude_within_m=req.exclude_within_m, flt=flt,
                                k=req.k, offset=req.offset, include_query=req.include_query,
                                with_payload=with_payload)

    @router.post("/api/query", tags=["analysis"], summary="Search with several positive and negative examples")
    def api_query(req: QueryRequest = Body(...)) -> dict:
        """Hits ``offset .. offset+k`` as GeoJSON; ``next_offset`` is null on the last page."""
        t0 = time.perf_counter()
        result = run_query(req)
        doc = to_geojson(result)
        full = len(result.hits) == req.k and req.offset + req.k < MAX_K
        doc.update({"k": req.k, "offset": req.offset, "next_offset": req.offset + req.k if full else None,
                    "score": result.score_name, "took_ms": round((time.perf_counter() - t0) * 1000, 2)})
        return doc

    @router.post("/api/query/export", tags=["analysis"], summary="Query results as a file")
    def api_query_export(req: ExportRequest = Body(...)):
        """The hits of the query as GeoJSON, CSV, FlatGeobuf or GeoParquet (by ``format``)."""
        from rsir_stac.export import search_pages, write_table

        if req.format not in EXPORT_MEDIA:
            raise InputError(f"format {req.format!r} is unknown; use one of {', '.join(EXPORT_MEDIA)}")
        media, ext = EXPORT_MEDIA[req.format]
        result = run_query(req, with_payload=False)
        folder = Path(tempfile.mkdtemp(prefix="rsir-export-"))
        path = folder / f"hits{ext}"
        with lock:
            write_table(search_pages(index, result, with_vectors=req.with_vectors), path)

        def cleanup() -> None:
            path.unlink(missing_ok=True)
            folder.rmdir()

        return FileResponse(path, media_type=media, filename=path.name, background=BackgroundTask(cleanup))

    @router.post("/api/labels", tags=["analysis"], summary="Check a label set and fill in stored footprints")
    def api_labels(req: LabelsRequest = Body(...)) -> dict:
        """Validates ids, labels and model against the index; returns the label FeatureCollection with each
        tile's stored footprint, item and collection, and the index's model id."""
        from rsir_stac.labels import Label, LabelSet, footprint_geometry

        labels = _labels(req.labels)
        with lock:
            index.label_examples(labels)
            stored = {h.id: h for h in index.store.retrieve([lb.point_id for lb in labels.labels])}
        out = []
        for lb in labels.labels:
            p = stored[lb.point_id].payload
            props = {**lb.properties, **{k: p[k] for k in ("item_id", "collection", "datetime") if p.get(k)}}
            out.append(Label(lb.point_id, lb.label, footprint_geometry(p), lb.note, props))
        return LabelSet(tuple(out), index.bundle.model_id).to_geojson()

    @router.post("/api/classify", tags=["analysis"], summary="Find all tiles like the positive labels")
    def api_classify(req: ClassifyRequest = Body(...)) -> dict:
        """Logistic regression on the labelled tiles' vectors, applied to every tile in the filtered area."""
        from rsir_stac.classify import classify, dissolve
        from rsir_stac.export import row_of

        if isinstance(req.max_hits, bool) or not 1 <= req.max_hits <= MAX_HITS_API:
            raise InputError(f"max_hits={req.max_hits} must be within 1..{MAX_HITS_API}")
        labels = _labels(req.labels)
        flt = _filter(req)
        with lock:
            rep = classify(index, labels, flt=flt, threshold=req.threshold, holdout=req.holdout,
                           max_hits=req.max_hits)
        rows = dissolve(rep.hits) if req.dissolve else [row_of(h, rank=n, score_name="probability")
                                                          for n, h in enumerate(rep.hits, 1)]
        feats = [{"type": "Feature", "id": r["id"], "geometry": r["geometry"],
                  "properties": {k: v for k, v in r.items() if k != "geometry"}} for r in rows]
        return {"type": "FeatureCollection", "features": feats, "summary": rep.summary()}

    return router


__all__ = ["analysis_router"]
