"""Request fields shared by the routers: filters, ``k``, polygons, footprints (no web framework).

Everything here raises :class:`~rsir_stac.errors.InputError` (HTTP 400) with a
one-line message naming the field and the fix.
"""

from __future__ import annotations

import json
from typing import Any

from rsir_stac.errors import InputError

#: Most results of ``/api/search`` and ``/api/search/image`` (``/api/query`` pages up to
#: :data:`rsir_stac.store.query.MAX_K`).
MAX_K = 100
#: Most positions of a ``polygon`` filter (all rings; each search tests every candidate against them).
MAX_POLYGON_VERTICES = 1_000
#: Most collection names in one filter, and the longest name (as ``ingest --collection`` allows).
MAX_COLLECTIONS = 100
MAX_COLLECTION_CHARS = 200
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"

#: OpenAPI descriptions of the filter fields.
FILTER_DOC = {
    "bbox": "Only results whose centre is in W,S,E,N (degrees).",
    "near": "Only results within LON,LAT,RADIUS_M.",
    "datetime": "Only results acquired in START/END (RFC 3339 or dates; '..' for an open end). "
                "Tiles without a date are left out (the answer's notes say how many).",
    "collection": "Only results of this STAC collection (repeatable). "
                  "Tiles without a collection are left out (the answer's notes say how many). "
                  "An empty value is the same as none (no collection filter), as for the other filters.",
    "polygon": "Only results inside a polygon: a GeoJSON geometry as JSON, or lon,lat;lon,lat;...",
    "k": f"Number of results (1..{MAX_K}).",
}
#: OpenAPI description of query expansion.
EXPAND_DOC = ("Query expansion: average the query with its N nearest stored tiles (same filter) and search "
              "again; 0 = off. Raises retrieval mAP (benchmarks/RESULTS.md section 7) for a second search's time.")
#: OpenAPI description of ``offset``.
OFFSET_DOC = "Skip this many results: the next page starts at the answer's next_offset (offset + k <= 10,000)."


def parse_polygon(value: Any) -> Any:
    """A polygon filter from a GeoJSON object / JSON string, or ``"lon,lat;lon,lat;..."``.

    GeoJSON may be any area :func:`rsir_stac.store.filters.polygon_from_geojson`
    reads (Polygon with holes, MultiPolygon, Feature, FeatureCollection): a
    validated :class:`~rsir_stac.store.areas.GeoArea`.  The text form is one
    ring, closed when the last position does not repeat the first, and
    validated when the :class:`SearchFilter` is built.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InputError("polygon is empty; give GeoJSON or lon,lat;lon,lat;... (at least 3 corners)")
        if text[0] not in "{[":
            return _ring(text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"polygon is not valid JSON ({exc.msg}); give a GeoJSON Polygon geometry") from None
        except RecursionError:
            raise InputError("polygon is JSON nested too deeply; give a GeoJSON Polygon geometry") from None
        except ValueError:  # Python's 4,300-digit limit on an integer
            raise InputError("polygon holds a number with more than 4,300 digits; give a GeoJSON Polygon geometry "
                             "in degrees") from None
    from rsir_stac.store.filter_parse import polygon_from_geojson

    # count before validating: building a huge area is the costly part the limit is there to stop
    n = polygon_vertices(value)
    if n > MAX_POLYGON_VERTICES:
        raise InputError(f"polygon has {n} vertices; simplify it to at most {MAX_POLYGON_VERTICES}")
    return polygon_from_geojson(value, "polygon")


def polygon_vertices(doc: Any, what: str = "polygon") -> int:
    """Positions in all rings of every polygon of a GeoJSON object (what :data:`MAX_POLYGON_VERTICES`
    bounds).  Raises InputError, naming ``what``, for an object that is not a GeoJSON area."""
    from rsir_stac.store.areas import _polygon_coords

    return sum(len(r) for coords, _ in _polygon_coords(doc, what) if isinstance(coords, list)
               for r in coords if isinstance(r, list))


def _ring(text: str) -> tuple[tuple[float, float], ...]:
    from rsir_stac.store.filter_parse import plain_float

    if text.count(";") >= MAX_POLYGON_VERTICES:
        raise InputError(f"polygon has {text.count(';') + 1} vertices; simplify it to at most {MAX_POLYGON_VERTICES}")
    ring = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        xy = part.split(",")
        try:
            if len(xy) != 2:
                raise ValueError
            ring.append((plain_float(xy[0]), plain_float(xy[1])))
        except ValueError:
            raise InputError(f"polygon position {part!r} is invalid; give lon,lat;lon,lat;... in degrees") from None
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
    from rsir_stac.store.filter_parse import parse_bbox, parse_datetime_range, parse_near
    from rsir_stac.store.filters import SearchFilter

    cols = check_collections(collection)
    bbox_t = _numbers_text(bbox, 4, "bbox")
    near_t = _numbers_text(near, 3, "near")
    ring = parse_polygon(polygon) if polygon not in (None, "", {}) else None
    start, end = parse_datetime_range(datetime) if datetime else (None, None)
    flt = SearchFilter(bbox=parse_bbox(bbox_t) if bbox_t else None, near=parse_near(near_t) if near_t else None,
                       polygon=ring, start=start, end=end, collections=cols)
    return None if flt.is_empty else flt


def check_collections(collection: Any) -> tuple[str, ...]:
    """The non-empty names of a ``collection`` filter (a name or a list), at most
    :data:`MAX_COLLECTIONS` of at most :data:`MAX_COLLECTION_CHARS` characters; else InputError
    (checked before any work: every name is sent to the store and may be named in the notes)."""
    if isinstance(collection, str):
        collection = [collection]
    cols = tuple(c for c in (collection or ()) if c)
    if len(cols) > MAX_COLLECTIONS:
        raise InputError(f"collection filter has {len(cols)} names; give at most {MAX_COLLECTIONS} collections "
                         "per search")
    long = next((c for c in cols if len(c) > MAX_COLLECTION_CHARS), None)
    if long is not None:
        raise InputError(f"collection {long[:40]!r}... is {len(long)} characters; collection names have at most "
                         f"{MAX_COLLECTION_CHARS}")
    return cols


def check_k(k: Any) -> int:
    """``k`` when it is an integer within 1..:data:`MAX_K`; else InputError."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InputError(f"k={k!r} must be an integer within 1..{MAX_K}")
    return k


def footprint(payload: dict | None) -> dict | None:
    """The GeoJSON footprint of a stored payload (its outline near a pole, else its ``corners``;
    None without corners), as exports and search results give it."""
    from rsir_stac.labels import footprint_geometry

    if not (payload or {}).get("corners"):
        return None
    return footprint_geometry(payload or {})


__all__ = ["FILTER_DOC", "MAX_COLLECTIONS", "MAX_K", "MAX_POLYGON_VERTICES", "UUID_PATTERN", "build_filter", "check_collections", "check_k", "footprint", "parse_polygon", "polygon_vertices"]
