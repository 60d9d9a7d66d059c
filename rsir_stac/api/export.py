"""``POST /api/query/export``: the hits of a query (as ``POST /api/query`` takes it, JSON or
multipart with example images) as a file: GeoJSON, CSV, FlatGeobuf or GeoParquet by ``format``.

Written to a private temporary folder (removed after the response is sent), payloads
fetched one page at a time (:func:`rsir_stac.export.search_pages`).

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import tempfile
from pathlib import Path
from typing import Any

from rsir_stac.api import bodies
from rsir_stac.api.query import query_reader, run_query
from rsir_stac.errors import InputError
from rsir_stac.served import HIT_COUNT_HEADER

EXPORT_MEDIA = {"geojson": ("application/geo+json", ".geojson"), "csv": ("text/csv", ".csv"),
                "fgb": ("application/vnd.flatgeobuf", ".fgb"),
                "parquet": ("application/vnd.apache.parquet", ".parquet")}


#: OpenAPI schemas of the text formats (the others are binary files).
EXPORT_SCHEMA = {"geojson": {"type": "object", "description": "A GeoJSON FeatureCollection"},
                 "csv": {"type": "string"}}


def export_router(svc: Any):
    """An ``APIRouter`` with ``POST /api/query/export`` over ``svc`` (a :class:`~rsir_stac.api.service.Service`)."""
    from fastapi import APIRouter, Depends
    from fastapi.responses import FileResponse
    from starlette.background import BackgroundTask

    from rsir_stac.apierrors import error_responses

    router = APIRouter(dependencies=svc.dependencies, tags=["analysis"],
                       responses=error_responses(400, 404, 413, 422, 429))

    @router.post("/api/query/export", summary="Query results as a file", response_class=FileResponse,
                 responses={200: {"description": "The hits as a file of the asked format",
                                  "content": {media: {"schema": EXPORT_SCHEMA.get(fmt, {"type": "string",
                                                                                        "format": "binary"})}
                                              for fmt, (media, _) in EXPORT_MEDIA.items()}}},
                 openapi_extra={"requestBody": bodies.request_body(bodies.ExportRequest, "query and format",
                                                                   svc.max_upload_bytes)})
    def api_query_export(query: bodies.QueryInput = Depends(query_reader(svc, bodies.ExportRequest))):
        """The hits of the query as GeoJSON, CSV, FlatGeobuf or GeoParquet (by ``format``); the
        ``X-Hit-Count`` header says how many the file holds."""
        from rsir_stac.export import empty_row, search_pages, write_table

        req = query.req
        if req.format not in EXPORT_MEDIA:
            raise InputError(f"format {req.format!r} is unknown; use one of {', '.join(EXPORT_MEDIA)}")
        media, ext = EXPORT_MEDIA[req.format]
        with svc.querying():  # a heavy request: at most svc.max_queries at a time (429 beyond)
            result, _ = run_query(svc, query, with_payload=False)
            folder = Path(tempfile.mkdtemp(prefix="rsir-export-"))
            stem = req.name[: -len(ext)] if req.name.lower().endswith(ext) else req.name  # "x.fgb" is x.fgb
            path = folder / f"{stem or 'hits'}{ext}"
            pages = (svc.public_rows(rows) for rows in search_pages(svc.index, result, with_vectors=req.with_vectors))
            with svc.lock:
                hits = write_table(pages, path, empty_row(result.score_name, with_vectors=req.with_vectors))

        def cleanup() -> None:
            path.unlink(missing_ok=True)
            folder.rmdir()

        return FileResponse(path, media_type=media, filename=path.name, background=BackgroundTask(cleanup),
                            headers={HIT_COUNT_HEADER: str(hits)})

    return router


__all__ = ["EXPORT_MEDIA", "export_router"]
