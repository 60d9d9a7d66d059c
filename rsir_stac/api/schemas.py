"""JSON Schemas of the service's answer documents, for the OpenAPI document (``/openapi.json``,
``/docs``): generated clients get the fields of a search, query, classification and index summary
instead of an untyped object.  Documentation only: the answers are built as plain dicts (the
routers), and these schemas are not used to validate or filter them.  No web framework here.
"""

from __future__ import annotations

from typing import Any

_TEXT_OR_NULL = {"type": ["string", "null"]}

#: The ``properties`` of a result Feature (the tile's stored payload fields, flattened; see the
#: README's "Point payload"; nested ones such as ``window`` and ``bbox`` are JSON text).
HIT_PROPERTIES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rank": {"type": "integer", "description": "1-based rank in the whole answer (offset + position)."},
        "distance": {"type": "number", "description": "Euclidean distance to the query vector (smaller is "
                                                      "more alike); single-example and average queries."},
        "score": {"type": "number", "description": "The engine's score (higher is more alike); the other "
                                                   "strategies."},
        "id": {"type": "string", "description": "The stored point id (UUID)."},
        "item_id": {"type": "string"}, "collection": _TEXT_OR_NULL, "asset": {"type": "string"},
        "href": {"type": "string", "description": "The source raster (cut to its file name with --hide-paths)."},
        "datetime": {**_TEXT_OR_NULL, "description": "Acquisition time, RFC 3339 (null: undated)."},
        "datetime_epoch": {"type": ["number", "null"]}, "gsd": {"type": "number", "description": "Metres."},
        "crs": {"type": "string"}, "model_id": {"type": "string"},
    },
    "additionalProperties": True,
}

#: One result tile as a GeoJSON Feature: its lon/lat footprint (a MultiPolygon across the antimeridian).
HIT_FEATURE: dict[str, Any] = {
    "type": "object",
    "required": ["type", "id", "geometry", "properties"],
    "properties": {
        "type": {"const": "Feature"},
        "id": {"type": "string"},
        "geometry": {"type": "object", "description": "GeoJSON Polygon or MultiPolygon in lon/lat (RFC 7946)."},
        "properties": HIT_PROPERTIES,
    },
}

_NOTES = {"type": "array", "items": {"type": "string"}}

#: ``GET``/``POST /api/search``, ``/api/search/image`` and ``POST /api/query``.
SEARCH_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["type", "features", "query", "k", "notes"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": HIT_FEATURE},
        "query": {"type": "object", "description": "What was searched with: kind, id, strategy, examples, the "
                                                   "query tile's footprint and date, an upload's size and warning."},
        "k": {"type": "integer"},
        "offset": {"type": "integer", "description": "Results skipped before this page."},
        "next_offset": {"type": ["integer", "null"], "description": "The next page's offset; null on the last."},
        "score": {"type": "string", "enum": ["distance", "score"], "description": "What ranks the hits (/api/query)."},
        "per_scene": {"type": ["integer", "null"], "description": "Hits per scene that come first (the soft cap)."},
        "per_scene_penalty": {"type": "number", "description": "Beyond the cap a distance ranks as if this many "
                                                               "times larger."},
        "notes": {**_NOTES, "description": "Every note for people: what filters leave out, what the ranking did."},
        "search_notes": {**_NOTES, "description": "The notes about the search itself but the cap's (the map "
                                                  "page words that one itself)."},
        "filter_notes": {**_NOTES, "description": "The notes of `notes` on the tiles the date and collection "
                                                  "filters leave out for having no date or collection (those the "
                                                  "other filters let through)."},
        "took_ms": {"type": "number"},
    },
    "additionalProperties": True,
}

#: ``POST /api/classify`` ("find all").
CLASSIFY_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["type", "features", "summary", "notes"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": {**HIT_FEATURE, "properties": {
            **HIT_FEATURE["properties"], "properties": {**HIT_PROPERTIES, "properties": {
                **HIT_PROPERTIES["properties"],
                "probability": {"type": "number", "description": "The classifier's probability, 0-1."},
                "label": {**_TEXT_OR_NULL, "description": "\"positive\" for a tile you labelled so, else null."}}}}}},
        "summary": {"type": "object", "properties": {
            "hits": {"type": "integer"}, "scored": {"type": "integer"}, "threshold": {"type": "number"},
            "positives": {"type": "integer"}, "negatives": {"type": "integer"}, "background": {"type": "integer"},
            "holdout": {"type": "integer", "description": "Labels held out to measure precision and recall."},
            "precision": {"type": ["number", "null"]}, "recall": {"type": ["number", "null"]},
            "above_threshold": {"type": "integer", "description": "Tiles at or above the threshold in the area "
                                "(labelled negatives left out), whatever max_hits returned."},
            "positives_kept": {"type": "integer", "description": "Labelled positives scored below the threshold, "
                               "returned all the same."},
            "positives_past_max_hits": {"type": "integer", "description": "Labelled positives returned beyond the "
                                        "max_hits most probable tiles."},
        }, "additionalProperties": True},
        "notes": _NOTES,
    },
    "additionalProperties": True,
}

#: ``GET /api/info``.
INFO_ANSWER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"}, "dim": {"type": ["integer", "null"]}, "model_id": _TEXT_OR_NULL,
        "collections": {"type": "array", "items": {"type": "string"}},
        "extent": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                   "description": "[W, S, E, N] in degrees; W > E across the antimeridian."},
        "undated": {"type": "integer"}, "no_collection": {"type": "integer"}, "notes": _NOTES,
        "backend": {"type": "string"}, "version": {"type": "string"}, "limits": {"type": "object"},
        "basemap": _TEXT_OR_NULL,
    },
    "additionalProperties": True,
}


def answer(schema: dict[str, Any], description: str) -> dict[int, dict[str, Any]]:
    """An operation's ``responses`` entry documenting its 200 answer as ``schema``."""
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


__all__ = ["CLASSIFY_ANSWER", "HIT_FEATURE", "HIT_PROPERTIES", "INFO_ANSWER", "SEARCH_ANSWER", "answer"]
