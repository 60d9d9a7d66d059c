"""Request bodies of the analyst's loop (``/api/query``, ``/api/query/export``, ``/api/labels``,
``/api/classify``): models, limits, examples, labels, filters, and the reader that takes a
query either as JSON or as multipart with uploaded images; and the JSON body of
``POST /api/search`` (:class:`SearchRequest`).

Limits (one-line 400 errors naming the field): at most :data:`MAX_LABELS_API` labels,
:data:`MAX_EXAMPLES_API` examples of which :data:`MAX_PLACES_API` places and :data:`MAX_IMAGES_API` uploaded images (all
uploads of a request together within the service's upload byte limit, each within its
pixel and decoded-byte limits), polygons of at most :data:`MAX_POLYGON_VERTICES`
vertices, ``max_hits`` <= :data:`MAX_HITS_API`.

Uploaded images are decoded only by :func:`rsir_stac.upload.decode_upload` (through
:meth:`rsir_stac.api.service.Service.decode`), one request's images one at a time inside
one decode slot, each embedded and dropped before the next is decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rsir_stac.api.params import EXPAND_DOC, FILTER_DOC, OFFSET_DOC
from rsir_stac.api.params import MAX_K as SEARCH_MAX_K  # /api/search's k (store.query.MAX_K bounds paging)
from rsir_stac.errors import ImageReadError, InputError
from rsir_stac.evaluate import MAX_EXPAND
from rsir_stac.api.params import MAX_POLYGON_VERTICES
from rsir_stac.store.query import MAX_K

MAX_LABELS_API = 2_000
#: Positions in all the label geometries of one request (2,000 stored footprints of 50 vertices).
MAX_LABEL_VERTICES_API = 100_000
#: As many examples as a label set holds: the map page refines a search from its labels by sending
#: them as point-id examples.  Of them at most :data:`MAX_PLACES_API` are places (each lon/lat is
#: its own engine lookup; point ids are read in one batch).
MAX_EXAMPLES_API = 2_000
MAX_PLACES_API = 256
MAX_IMAGES_API = 16
MAX_HITS_API = 10_000
#: Multipart file fields of a query with uploaded examples.
IMAGE_FIELDS = {"positive_image": True, "negative_image": False}


class StrictBody(BaseModel):
    """A JSON request body: NaN/Infinity/1e400 get a 422, so does a misspelt field ("bbx", which
    would filter nothing), a true/false given for a number and a number given for true/false."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        """JSON true/false is not a number (pydantic would take it as 1/0), nor 1/0 a yes/no; a
        string holding a lone surrogate is not text (:func:`rsir_stac.api.strict.refuse_lone_surrogates`)."""
        from rsir_stac.api.strict import refuse_lone_surrogates

        refuse_lone_surrogates(data)
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                value = data.get(name)
                kind = info.annotation
                kinds = set(get_args(kind)) or {kind}
                if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
                    raise ValueError(f"{name} must be a number, not {str(value).lower()}")
                if kind is bool and name in data and not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false, not {value!r}")
        return data


class Filters(StrictBody):
    bbox: list[float] | str | None = Field(None, description="Only tiles whose centre is in W,S,E,N.")
    near: list[float] | str | None = Field(None, description="Only tiles within LON,LAT,RADIUS_M.")
    datetime: str | None = Field(None, description="Only tiles acquired in START/END ('..' open); tiles without "
                                                   "a date are left out (see notes).")
    collection: list[str] | str | None = Field(None, description="Only tiles of these STAC collections; tiles "
                                                                 "without a collection are left out (see notes).")
    polygon: dict | str | None = Field(None, description=f"GeoJSON Polygon (at most {MAX_POLYGON_VERTICES} "
                                                         "vertices) or lon,lat;lon,lat;...")


class QueryRequest(Filters):
    positives: list[dict] = Field([], description="Positive examples: {point_id} or {lon, lat} (uploaded "
                                                  "images: multipart field positive_image).")
    negatives: list[dict] = Field([], description="Negative examples: {point_id} or {lon, lat} (uploaded "
                                                  "images: multipart field negative_image).")
    labels: dict | None = Field(None, description="A label FeatureCollection (adds its examples).")
    strategy: str = Field("auto", description="auto | average | best_score | sum_scores | discover | context | "
                                              "feedback (the engine's recommend/discovery queries); auto: "
                                              "best_score with negatives and no mmr, else average.")
    mmr: float | None = Field(None, description="MMR diversity 0..1 (strategy average).")
    per_item: int | str | None = Field("auto", description="Hits per scene: N, 0/null (no cap) or auto.")
    exclude_within_m: float | None = Field(None, description="Drop tiles this close to the examples (m).")
    k: int = Field(10, description=f"Results per page; offset + k <= {MAX_K}.")
    offset: int = Field(0, description="Results skipped (paging).")
    include_query: bool = False
    expand: int = Field(0, ge=0, le=MAX_EXPAND, description=EXPAND_DOC)


class ExportRequest(QueryRequest):
    format: str = Field("geojson", description="geojson | csv | fgb | parquet")
    with_vectors: bool = False
    name: str = Field("hits", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                      description="File name without extension (the FlatGeobuf layer is named after it).")


class LabelsRequest(StrictBody):
    labels: dict = Field(..., description="A label FeatureCollection.")


class ClassifyRequest(Filters):
    labels: dict = Field(..., description="A label FeatureCollection with at least one positive.")
    threshold: float = Field(0.5, description="Keep tiles with probability >= threshold.")
    holdout: float = Field(0.25, description="Fraction of labels held out for precision/recall.")
    max_hits: int = Field(1000, description=f"Most probable tiles returned (<= {MAX_HITS_API}).")
    dissolve: bool = Field(False, description="Return merged areas instead of tiles.")


class SearchRequest(StrictBody):
    # the body of POST /api/search (no docstring: it would become the schema's description)
    point_id: str | None = Field(None, description="Query with a stored tile's id.")
    lon: float | None = Field(None, description="Query with the stored tile covering lon/lat.")
    lat: float | None = None
    bbox: list[float] | str | None = Field(None, description=FILTER_DOC["bbox"])
    near: list[float] | str | None = Field(None, description=FILTER_DOC["near"])
    datetime: str | None = Field(None, description=FILTER_DOC["datetime"])
    collection: list[str] | str | None = Field(None, description=FILTER_DOC["collection"])
    polygon: dict | str | None = Field(
        None, description="A GeoJSON Polygon geometry (or Feature), or lon,lat;lon,lat;...")
    k: int = Field(10, ge=1, le=SEARCH_MAX_K, description=FILTER_DOC["k"])
    include_query: bool = False
    expand: int = Field(0, ge=0, le=MAX_EXPAND, description=EXPAND_DOC)
    offset: int = Field(0, ge=0, description=OFFSET_DOC)


@dataclass
class QueryInput:
    """A parsed query: the request fields and the uploaded example images (raw bytes, not decoded)."""

    req: Any
    images: list[tuple[str, bool, bytes]] = field(default_factory=list)  # (field[n], positive, bytes)


# --------------------------------------------------------------------------- examples, labels, filters


def examples(items: Any, what: str) -> list:
    """Examples from ``[{"point_id": ...} | {"lon": .., "lat": ..}, ...]``."""
    from rsir_stac.search import Example
    from rsir_stac.store.filter_parse import _check_lonlat

    out = []
    for n, it in enumerate(items or []):
        if not isinstance(it, dict):
            raise InputError(f"{what}[{n}] must be an object with point_id, or lon and lat")
        unknown = sorted(set(it) - {"point_id", "lon", "lat"})
        if unknown:
            raise InputError(f"{what}[{n}] has the unknown field {unknown[0]!r}; an example is {{point_id}} or {{lon, lat}}")
        if it.get("point_id") and (it.get("lon") is not None or it.get("lat") is not None):
            raise InputError(f"{what}[{n}] has both point_id and lon/lat; give one of them")
        if it.get("point_id"):
            out.append(Example("point", str(it["point_id"])))
        elif it.get("lon") is not None and it.get("lat") is not None:
            try:
                if isinstance(it["lon"], bool) or isinstance(it["lat"], bool):
                    raise TypeError
                lon, lat = float(it["lon"]), float(it["lat"])
            except (TypeError, ValueError):
                raise InputError(f"{what}[{n}] lon/lat must be numbers in degrees") from None
            _check_lonlat(lon, lat, f"{what}[{n}]")
            out.append(Example("location", (lon, lat)))
        else:
            raise InputError(f"{what}[{n}] has neither point_id nor lon and lat; give one of them")
    return out


def labels(doc: Any):
    """A :class:`~rsir_stac.labels.LabelSet` from a request's FeatureCollection (None for None)."""
    from rsir_stac.labels import labels_from_geojson

    if doc is None:
        return None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if isinstance(feats, list) and len(feats) > MAX_LABELS_API:
        raise InputError(f"labels has {len(feats)} features; send at most {MAX_LABELS_API}")
    total = 0
    for n, feat in enumerate(feats if isinstance(feats, list) else [], 1):
        count = _geometry_vertices(feat.get("geometry") if isinstance(feat, dict) else None)
        total += count
        if count > MAX_POLYGON_VERTICES:
            raise InputError(f"labels: feature {n}'s geometry has {count} vertices; a label's footprint has at most "
                             f"{MAX_POLYGON_VERTICES} (send the tile's stored footprint, or none: its point id is "
                             "enough)")
        if total > MAX_LABEL_VERTICES_API:
            raise InputError(f"labels: the geometries of features 1-{n} have {total} vertices, over the "
                             f"{MAX_LABEL_VERTICES_API} a request may send; send the stored footprints, or none (the "
                             "point ids are enough)")
    return labels_from_geojson(doc, "labels")


def _geometry_vertices(geom: Any, depth: int = 0) -> int:
    """The positions of a GeoJSON geometry, the members of a GeometryCollection included."""
    if not isinstance(geom, dict) or depth > 4:
        return 0
    members = geom.get("geometries")
    if isinstance(members, list):
        return sum(_geometry_vertices(g, depth + 1) for g in members)
    return _vertices(geom.get("coordinates"))


def _vertices(coords: Any, depth: int = 0) -> int:
    """The positions in a GeoJSON ``coordinates`` array (nested lists; 0 for anything else)."""
    if not isinstance(coords, list) or not coords or depth > 4:
        return 0
    if not isinstance(coords[0], list):
        return 1                      # a position
    if not coords[0] or not isinstance(coords[0][0], list):
        return len(coords)            # a ring or line of positions
    return sum(_vertices(c, depth + 1) for c in coords)


def search_filter(req: Any):
    """The request's :class:`SearchFilter` (None when nothing constrains), polygons within the vertex limit."""
    from rsir_stac.api.params import build_filter

    return build_filter(bbox=req.bbox, near=req.near, polygon=req.polygon, datetime=req.datetime,
                        collection=req.collection)


def per_item(value: Any):
    """The request's ``per_item`` for :meth:`Index.search` (0 and null: no cap)."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:  # "2" as "k": "2" is taken
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InputError(f"per_item={shown} must be a whole number >= 0 (0: no cap), null or \"auto\"")
    return value or None


def image_examples(svc: Any, images: list[tuple[str, bool, bytes]]) -> tuple[list, list]:
    """Positive and negative :class:`~rsir_stac.search.Example` vectors of uploaded images.

    Decoded by :meth:`Service.decode` one at a time inside one decode slot (429 when none
    is free) and embedded before the next; errors name the field (``positive_image[2]: ...``)."""
    from rsir_stac.search import Example

    pos: list = []
    neg: list = []
    if not images:
        return pos, neg
    with svc.decoding():
        while images:
            what, positive, data = images.pop(0)
            try:
                pixels = svc.decode(data)
            except ImageReadError as exc:
                raise type(exc)(f"{what}: {exc}") from None
            del data
            (pos if positive else neg).append(Example("vector", svc.embed(pixels), size=pixels.shape[:2]))
            del pixels
    return pos, neg


# --------------------------------------------------------------------------- JSON or multipart


def _invalid(errors: list[dict]) -> Exception:
    from fastapi.exceptions import RequestValidationError

    return RequestValidationError(errors)


def _validate(model: type[BaseModel], obj: Any, loc: tuple) -> BaseModel:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _invalid([{**e, "loc": loc + tuple(e["loc"])} for e in exc.errors(include_url=False)]) from None


def _json(text: bytes | str, loc: tuple) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = getattr(exc, "msg", "not UTF-8")
        raise _invalid([{"type": "json_invalid", "loc": loc, "msg": f"JSON decode error ({msg})"}]) from None
    except RecursionError:
        raise _invalid([{"type": "json_invalid", "loc": loc, "msg": "JSON nested too deeply"}]) from None
    except ValueError:  # Python's 4,300-digit limit on an integer (CVE-2020-10735)
        raise _invalid([{"type": "json_invalid", "loc": loc, "msg": "JSON holds a number with too many digits "
                                                                     "(more than 4,300)"}]) from None


async def read_query(request: Any, model: type[BaseModel], max_bytes: int) -> QueryInput:
    """The ``model`` fields of a JSON body, or of a form's ``query`` field (JSON text) plus, in
    multipart, its ``positive_image``/``negative_image`` files (at most :data:`MAX_IMAGES_API`,
    ``max_bytes`` together).  Schema errors raise FastAPI's ``RequestValidationError`` (422)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        body = await request.body()
        if not body:
            raise _invalid([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
        if ctype and not (ctype == "application/json" or ctype.endswith("+json")):
            raise _invalid([{"type": "model_attributes_type", "loc": ("body",),
                             "msg": "Input should be JSON (application/json) or multipart/form-data"}])
        return QueryInput(_validate(model, _json(body, ("body",)), ("body",)))
    form = await request.form(max_files=MAX_IMAGES_API, max_fields=8, max_part_size=max_bytes)
    try:
        from rsir_stac.api.strict import moved, unknown_fields

        inside = moved(frozenset(model.model_fields), "form as a field of its own",  # e.g. -F k=5
                       "it is a field of the query JSON: put it in the query field (-F 'query={{\"{name}\": ...}}')")
        errors = unknown_fields([k for k, _ in form.multi_items()], frozenset({"query", *IMAGE_FIELDS}),
                                frozenset(IMAGE_FIELDS), inside)
        if errors:  # e.g. pos_image for positive_image: its image would be left out without a word
            raise _invalid([{**e, "loc": ("body", e["loc"][1])} for e in errors])
        text = form.get("query") or "{}"
        if not isinstance(text, str):
            raise InputError("multipart field query must be JSON text (the JSON body's fields), not a file")
        req = _validate(model, _json(text, ("body", "query")), ("body", "query"))
        images, total = [], 0
        for name, positive in IMAGE_FIELDS.items():
            for n, up in enumerate(form.getlist(name), 1):
                if isinstance(up, str):
                    raise InputError(f"multipart field {name} must be an image file, not text")
                data = await up.read(max_bytes + 1)
                total += len(data)
                if total > max_bytes:
                    from rsir_stac.upload import UploadTooLarge

                    raise UploadTooLarge(f"the uploaded images are over the {max_bytes} byte limit together; "
                                         "upload fewer or smaller images")
                images.append((f"{name}[{n}]", positive, data))
        return QueryInput(req, images)
    finally:
        await form.close()


def request_body(model: type[BaseModel], what: str, max_bytes: int) -> dict:
    """OpenAPI ``requestBody`` of an operation read by :func:`read_query`: JSON, or multipart."""
    binary = {"type": "array", "items": {"type": "string", "format": "binary"}}
    return {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "query": {"type": "string", "description": f"The {what} as JSON text (the fields of the JSON body)."},
            "positive_image": {**binary, "maxItems": MAX_IMAGES_API, "description":
                               "Positive example images: PNG, JPEG, WebP or (Geo)TIFF (repeatable)."},
            "negative_image": {**binary, "maxItems": MAX_IMAGES_API, "description":
                               "Negative example images (repeatable)."},
        }}},
    }, "description": f"JSON, or multipart/form-data with uploaded example images: at most {MAX_IMAGES_API} "
                      f"images, {max_bytes} bytes together."}


__all__ = ["ClassifyRequest", "ExportRequest", "Filters", "LabelsRequest", "MAX_EXAMPLES_API", "MAX_HITS_API",
           "MAX_IMAGES_API", "MAX_LABEL_VERTICES_API", "MAX_LABELS_API", "MAX_PLACES_API", "MAX_POLYGON_VERTICES", "QueryInput", "QueryRequest",
           "SearchRequest", "StrictBody",
           "examples", "image_examples", "labels", "per_item", "read_query", "request_body", "search_filter"]
