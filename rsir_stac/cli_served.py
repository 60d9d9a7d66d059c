"""``search``, ``info`` and ``ingest`` on an index held by a running ``serve``:
the command line sends the work to that service (:mod:`rsir_stac.served`)
instead of failing with "in use", and says so on stderr.

Everything a command reads from the client's disk (query images, label and
polygon files) is read here and sent as bytes or JSON; ingest sources are sent
as absolute paths, which the service reads only under its ``--ingest-root``
folders.  What the service cannot take (``search --thumbnails``, several
example images) is refused with one line naming the way out.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from rsir_stac.errors import InputError
from rsir_stac.served import ServiceError, find_service
from rsir_stac.service_client import ServiceClient

#: ``rsir_stac.export`` format names -> the ``format`` of ``POST /api/query/export``.
EXPORT_FORMATS = {"geojson": "geojson", "csv": "csv", "flatgeobuf": "fgb", "geoparquet": "parquet"}


def service_for(index: str | None, qdrant_url: str | None, what: str) -> ServiceClient | None:
    """A client for the ``serve`` that holds the embedded ``index``, or None (a
    Qdrant server, no ``serve`` holds it, or its address file cannot be verified:
    a one-line warning says so); notes on stderr that it is used."""
    if qdrant_url:
        return None
    addr = find_service(index, warn=lambda line: click.echo(f"warning: {line}", err=True))
    if addr is None:
        return None
    client = ServiceClient(addr)
    click.echo(f"note: index {addr.index} is in use by {addr.describe()}; sending the {what} to it", err=True)
    return client


def _check_model(client: ServiceClient, model: Any) -> None:
    from rsir_stac.errors import IncompatibleIndexError
    from rsir_stac.model.bundle import load_bundle

    if model is None:
        mid = load_bundle(None).model_id
    else:
        mid = load_bundle(model).model_id
    served = client.address.model_id
    if served and mid != served:
        raise IncompatibleIndexError(f"index {client.address.index} is served with model {served}, not {mid}; "
                                     "pass --model with the bundle that built it")


def served_info(client: ServiceClient) -> None:
    """``info`` from ``GET /api/info`` (the fields of :class:`IndexInfo` the service reports)."""
    from rsir_stac.store.base import IndexInfo

    doc = client.info()
    out: dict[str, Any] = {}
    for f in fields(IndexInfo):
        if f.name == "location":
            out["location"] = client.address.index
        elif f.name in doc:
            out[f.name] = doc[f.name]
    click.echo(json.dumps(out, indent=2))


def _examples(ids: tuple, ats: tuple) -> list[dict]:
    from rsir_stac.search import parse_lonlat

    out: list[dict] = [{"point_id": i} for i in ids]
    for text in ats:
        lon, lat = parse_lonlat(text)
        out.append({"lon": lon, "lat": lat})
    return out


def served_search(client: ServiceClient, *, image, point_id, at, not_image, not_point_id, not_at, labels,
                  strategy, mmr, per_item, exclude_within, model, bbox, near, within, datetime_, collection,
                  limit, offset, include_query, out, with_vectors, thumbnails, expand=0, image_names=None,
                  not_image_names=None):
    """Run ``search`` on the service; returns ``(SearchResult, geojson document)``, or
    ``(None, None)`` when the hits were written to ``out``.  ``image_names`` / ``not_image_names``:
    the paths the uploads are named by in the answer (default ``image`` / ``not_image``): the files
    the user gave, where ``image`` are PNGs of their chosen bands."""
    shown = (image if image_names is None else tuple(image_names),
             not_image if not_image_names is None else tuple(not_image_names))
    what = client.address.describe()
    if thumbnails:
        raise ServiceError(f"--thumbnails reads the source rasters and cannot go through {what}; "
                           f"open the map page at {client.address.url}/ or stop the service and re-run")
    _check_model(client, model)
    if image or not_image:
        from rsir_stac.tiling.query import check_image_path

        for path in (*image, *not_image):  # the same one-line refusal as without a service
            check_image_path(path)
    polygon = _served_polygon(client, within) if within else None
    lone_image = image and len(image) == 1 and not (point_id or at or not_image or not_point_id or not_at
                                                     or labels or out)
    if lone_image:
        from rsir_stac.search import SearchResult

        doc = client.search_image(image[0], {"bbox": bbox, "near": near, "datetime": datetime_,
                                             "collection": list(collection) or None,
                                             "polygon": json.dumps(polygon) if polygon else None, "k": limit,
                                             "expand": expand})
        return _named_images(_result(doc, "distance", 0, SearchResult), doc, shown[0], ())
    body = {"positives": _examples(point_id, at), "negatives": _examples(not_point_id, not_at),
            "labels": labels.to_geojson() if labels else None,
            "strategy": strategy, "mmr": mmr, "per_item": _per_item_field(per_item), "exclude_within_m": exclude_within,
            "bbox": bbox, "near": near, "datetime": datetime_, "collection": list(collection) or None,
            "polygon": polygon, "k": limit, "offset": offset, "include_query": include_query, "expand": expand}
    if out:
        from rsir_stac.atomic import atomic_output
        from rsir_stac.export import format_for

        fmt = EXPORT_FORMATS[format_for(out)]
        with atomic_output(out) as tmp:  # refuses a missing or unwritable folder before the request
            stem = "".join(c if c.isalnum() or c in "_.-" else "_" for c in Path(out).stem)[:64].lstrip("_.-")
            req = {**body, "format": fmt, "with_vectors": with_vectors, "name": stem or "hits"}
            blob, hits = client.export(req, list(image), list(not_image))  # uploaded examples: multipart
            tmp.write_bytes(blob)
        # as a direct run says it (a service older than the count: the size)
        click.echo(f"wrote {hits} hits to {out}" if hits is not None
                   else f"wrote the hits to {out} ({len(blob)} bytes)", err=True)
        return None, None
    from rsir_stac.search import SearchResult

    doc = client.query_images("/api/query", body, list(image), list(not_image)) if image or not_image \
        else client.query(body)
    return _named_images(_result(doc, doc.get("score") or "distance", offset, SearchResult), doc, *shown)


def _named_images(result: Any, doc: dict, image: tuple, not_image: tuple) -> tuple[Any, dict]:
    """``(result, doc)`` whose uploaded examples (the service names them null: it had their pixels)
    carry the paths given, as a local search's do (in the table, ``query.positives`` of JSON and of
    the GeoJSON ``doc``): the service puts uploads first on each side, in their order."""
    import dataclasses

    examples = list(result.examples)
    for positive, paths in ((True, list(image)), (False, list(not_image))):
        at = [n for n, e in enumerate(examples) if e.positive == positive and e.id is None]
        if len(at) == len(paths):  # else a repeat was dropped: which is which cannot be told
            for n, path in zip(at, paths):
                examples[n] = dataclasses.replace(examples[n], source=os.fspath(path))
    result = dataclasses.replace(result, examples=tuple(examples))
    if isinstance(doc.get("query"), dict):
        doc["query"].update(positives=[e.name for e in result.examples if e.positive],
                            negatives=[e.name for e in result.examples if not e.positive])
    return result, doc


def _served_polygon(client: ServiceClient, within: str) -> Any:
    """The ``--within`` file as the GeoJSON the service reads (a GeoPackage, Shapefile... in another CRS
    is read and reprojected to lon/lat here), with the same one-line refusals as without a service.  One
    with more vertices than the service takes is sent simplified (:func:`_fit_area`), with a note saying
    how far its edges moved, or refused by name when no simplification within 11 m fits."""
    from rsir_stac.api.params import MAX_POLYGON_VERTICES, polygon_vertices
    from rsir_stac.store.filter_parse import polygon_document, polygon_from_geojson

    what = f"polygon file {within}"
    polygon = polygon_document(within)
    polygon_from_geojson(polygon, what, close=False)
    n = polygon_vertices(polygon, what)
    if n <= MAX_POLYGON_VERTICES:
        return polygon
    fitted = _fit_area(polygon, MAX_POLYGON_VERTICES)
    if fitted is None:
        raise ServiceError(f"{what} has {n:,} vertices in lon/lat; {client.address.describe()} takes an area of at "
                           f"most {MAX_POLYGON_VERTICES:,}: simplify it (QGIS: Vector > Geometry Tools > Simplify; "
                           "ogr2ogr -simplify), or stop the service and re-run (without it any number is read)")
    doc, tolerance = fitted
    click.echo(f"note: {what} has {n:,} vertices in lon/lat, more than the {MAX_POLYGON_VERTICES:,} "
               f"{client.address.describe()} takes; it was sent with {polygon_vertices(doc):,}, within "
               f"{tolerance * 111_320:.2g} m of its edges (stop the service and re-run for the area as it is)", err=True)
    return doc


#: The most a served command simplifies an area to fit the service's vertex limit: 1e-4 degrees (~11 m).
FIT_MAX_DEG = 1e-4


def _fit_area(doc: Any, limit: int) -> tuple[dict, float] | None:
    """``(FeatureCollection, tolerance in degrees)``: the polygons of the area ``doc`` (GeoJSON in lon/lat,
    already checked) simplified (:func:`rsir_stac.reproject.simplify_area`) with the smallest tolerance,
    from 1e-7 degrees up by 4 times to :data:`FIT_MAX_DEG`, that brings them to at most ``limit``
    vertices; None when none does."""
    from shapely.geometry import mapping, shape

    from rsir_stac.api.params import polygon_vertices
    from rsir_stac.reproject import simplify_area

    if doc.get("type") == "FeatureCollection":
        geoms = [f.get("geometry") for f in doc.get("features") or []]
    else:
        geoms = [doc.get("geometry") if doc.get("type") == "Feature" else doc]
    shapes = [shape(g) for g in geoms if g]
    tolerance = 1e-7
    while tolerance <= FIT_MAX_DEG * 1.0001:
        out = json.loads(json.dumps({"type": "FeatureCollection", "features": [  # lists, as GeoJSON text has them
            {"type": "Feature", "properties": {}, "geometry": mapping(simplify_area(g, tolerance))} for g in shapes]}))
        if polygon_vertices(out) <= limit:
            return out, tolerance
        tolerance *= 4
    return None


def served_classify(client: ServiceClient, *, labels, model, bbox, near, within, datetime_, collection,
                    threshold, holdout, max_hits, dissolve) -> tuple[list[dict], dict]:
    """``classify`` ("find all") through ``POST /api/classify`` of the service that holds the index
    (the map page's Find all): ``(rows, answer)``, the rows as the command writes them (the
    service builds them with the same functions) and the answer (``summary``, ``notes``)."""
    from rsir_stac.api.bodies import MAX_HITS_API

    _check_model(client, model)
    polygon = _served_polygon(client, within) if within else None
    if max_hits is not None and max_hits > MAX_HITS_API:
        raise ServiceError(f"--max-hits {max_hits}: {client.address.describe()} returns at most {MAX_HITS_API:,} "
                           "hits; lower --max-hits, or stop the service and re-run (without it every hit is written)")
    body = {"labels": labels.to_geojson(), "threshold": threshold, "holdout": holdout,
            "max_hits": max_hits or MAX_HITS_API, "dissolve": dissolve, "bbox": bbox, "near": near,
            "datetime": datetime_, "collection": list(collection) or None, "polygon": polygon}
    doc = client.request("POST", "/api/classify", body)
    rows = [{**f["properties"], "geometry": f["geometry"]} for f in doc.get("features") or []]
    return rows, doc


def _per_item_field(text: Any) -> Any:
    """``--per-item`` as the API's ``per_item``: "auto", a whole number (0: no cap) or null."""
    if text is None:
        return None
    from rsir_stac.cli_analysis import _per_item

    return _per_item(text) or 0


def _result(doc: dict, score_name: str, offset: int, cls: Any):
    """A :class:`SearchResult` (hits with their payloads) from the service's GeoJSON answer."""
    from rsir_stac.store.base import SearchHit

    hits = []
    for f in doc.get("features", []):
        props = dict(f.get("properties") or {})
        pid, score = str(props.pop("id", f.get("id"))), float(props.pop(score_name, 0.0))
        props.pop("rank", None)
        payload = {k: _unflat(v) for k, v in props.items()}
        hits.append(SearchHit(pid, score, payload))
    import numpy as np

    from rsir_stac.search import ResolvedExample

    q = doc.get("query") or {}
    # the examples as the service named them (their vectors stay on the service)
    examples = tuple(ResolvedExample("point" if i else "image", positive, np.empty(0, np.float32), id=i)
                     for positive, key in ((True, "positives"), (False, "negatives")) for i in q.get(key) or ())
    return cls(q.get("kind") or "point", q.get("id"),
               {k: q.get(k) for k in ("item_id", "datetime", "end_datetime")}, tuple(hits),
               strategy=q.get("strategy") or "average", score_name=score_name, offset=offset,
               expanded=tuple(q.get("expanded") or ()), examples=examples)


def _unflat(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


#: Seconds between tries while another ingest job holds the service.
BUSY_RETRY_S = 2.0


def _ingest_when_free(client: ServiceClient, body: dict, progress: Any) -> dict:
    """Send the ingest job; while the service runs another one, wait for it (as a local
    ingest waits for nothing, but two jobs cannot write one index at once)."""
    import time

    told = False
    while True:
        try:
            return client.ingest(body, progress)
        except ServiceError as exc:
            if "another ingest job is running" not in str(exc):
                raise
            if not told:
                click.echo(f"{client.address.describe()} is running another ingest job; this one starts when it "
                           "has finished (Ctrl-C to give up)", err=True)
                told = True
            time.sleep(BUSY_RETRY_S)


def _refuse_stac(client: ServiceClient, given: str, path: str) -> None:
    """Refuse a STAC document before it is sent, as the service refuses one under its roots
    (:func:`rsir_stac.api.jobs.stac_refusal`): outside them the service answers only that it lies
    outside (it tells nothing about files there), and following that advice got this refusal next.
    The command line reads the file itself: its user has it.  A source it cannot read is left to
    the service."""
    import stat

    from rsir_stac.api.jobs import stac_refusal

    try:
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return
        refusal = stac_refusal(given, Path(path))
    except OSError:
        return
    if refusal:
        raise InputError(f"{client.address.describe()}: {refusal}")


def served_ingest(client: ServiceClient, sources, *, model, asset, bands, tile_size, stride, gsd, native_gsd, edge,
                  min_valid, shard, fail_fast, collection, datetime_, nodata=None):
    """``ingest`` as a job of the service; returns ``(IngestReport, job document)``."""
    from rsir_stac.ingest.report import IngestReport

    if not client.address.ingest_jobs:
        raise ServiceError(f"index {client.address.index} is in use by {client.address.describe()}, which takes no "
                           "ingest jobs; restart it with --ingest-root DIR (a folder holding the sources), or stop "
                           "it and re-run")
    _check_model(client, model)
    srcs = []
    for s in sources:
        if "://" in s or s.startswith("/vsi"):
            raise InputError(f"{client.address.describe()} ingests only local files under its --ingest-root; "
                               f"{s} is remote: stop the service and re-run, or download it under the root")
        srcs.append(os.path.abspath(os.path.expanduser(s)))
        _refuse_stac(client, s, srcs[-1])
    body = {"sources": srcs, "model_id": client.address.model_id or None, "asset": asset,
            "bands": list(bands) if bands else None, "tile_size": tile_size, "stride": stride, "gsd": gsd,
            "native_gsd": native_gsd, "edge": edge, "min_valid": min_valid, "shard": shard,
            "fail_fast": fail_fast, "collection": collection, "datetime": datetime_,
            "relabel": True,  # the command line's ingest relabels an indexed raster it is given again, served or not
            **({"nodata": nodata} if nodata is not None else {})}
    bars: dict = {}

    def progress(job: dict) -> None:
        from tqdm import tqdm

        p = job.get("progress") or {}
        if not bars and p.get("items_total"):
            bars["items"] = tqdm(total=p["items_total"], desc="items", unit="item", position=0, file=sys.stderr,
                                 disable=None)
            bars["tiles"] = tqdm(total=0, desc="tiles", unit="tile", position=1, file=sys.stderr, disable=None)
        if bars:
            bars["tiles"].total = p.get("tiles_total", 0)
            bars["items"].update(p.get("items_done", 0) - bars["items"].n)
            bars["tiles"].update(p.get("tiles_done", 0) - bars["tiles"].n)

    try:
        job = _ingest_when_free(client, body, progress)
    finally:
        for bar in bars.values():
            bar.close()
    rep = job.get("report")
    report = None
    if rep:
        known = {f.name for f in fields(IngestReport)}
        report = IngestReport(**{k: v for k, v in rep.items() if k in known})
    return report, job


__all__ = ["served_info", "served_ingest", "served_search", "service_for"]
