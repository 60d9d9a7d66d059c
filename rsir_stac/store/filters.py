"""Search filters: parsing, validation, translation to Qdrant, and a reference matcher.

A :class:`SearchFilter` restricts a search to tiles whose payload matches every
given constraint (AND):

* ``bbox`` / ``near`` / ``polygon``: the tile *centroid* (payload ``location``)
  lies inside.  Geo semantics follow Qdrant exactly: bounding boxes are open
  (``W < lon < E``, ``S < lat < N``), radii are open (haversine distance
  ``< radius``, Earth radius 6371008.8 m, the IUGG mean radius that Qdrant's
  ``geo`` crate and qdrant-client local mode both use), polygons use the
  even-odd rule and points on an edge are not inside.
* ``start`` / ``end``: inclusive range on ``datetime_epoch`` (float seconds);
  tiles without a datetime never match a datetime constraint.
* ``collections`` / ``item_ids``: keyword match-any on ``collection`` / ``item_id``.

The translation to a qdrant-client :class:`models.Filter` lives in
:func:`to_qdrant_filter` and to a ``qdrant_edge.Filter`` in
:func:`to_edge_filter`; nothing else builds engine filters.  :func:`matches`
is a pure Python/numpy re-implementation used as the brute-force reference by
tests and benchmarks.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import InputError, SourceNotFoundError

log = logging.getLogger(__name__)

#: Earth radius used by Qdrant for ``geo_radius`` (haversine), in metres.
EARTH_RADIUS_M = 6371008.8

BBox = tuple[float, float, float, float]
Ring = tuple[tuple[float, float], ...]


# --------------------------------------------------------------------------- dataclass


@dataclass(frozen=True)
class SearchFilter:
    """Constraints on tile payloads; every given constraint must hold."""

    bbox: BBox | None = None
    near: tuple[float, float, float] | None = None
    polygon: Ring | None = None
    start: datetime | None = None
    end: datetime | None = None
    collections: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.bbox is not None:
            set_(self, "bbox", _check_bbox(tuple(float(v) for v in self.bbox), "bbox"))
        if self.near is not None:
            set_(self, "near", _check_near(tuple(float(v) for v in self.near), "near"))
        if self.polygon is not None:
            ring = tuple((float(p[0]), float(p[1])) for p in self.polygon)
            set_(self, "polygon", _check_ring(ring, "polygon"))
        start = _as_utc(self.start) if self.start is not None else None
        end = _as_utc(self.end) if self.end is not None else None
        if start is not None and end is not None and start > end:
            raise InputError(
                f"datetime range {start.isoformat()}/{end.isoformat()} ends before it starts; "
                "swap START and END"
            )
        set_(self, "start", start)
        set_(self, "end", end)
        set_(self, "collections", _str_tuple(self.collections, "collections"))
        set_(self, "item_ids", _str_tuple(self.item_ids, "item_ids"))

    @property
    def is_empty(self) -> bool:
        """True when the filter constrains nothing."""
        return (
            self.bbox is None
            and self.near is None
            and self.polygon is None
            and self.start is None
            and self.end is None
            and not self.collections
            and not self.item_ids
        )


def _str_tuple(values: Any, name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    out = tuple(values or ())
    if not all(isinstance(v, str) and v for v in out):
        raise InputError(f"{name} {out!r} must be non-empty strings; pass e.g. ('sentinel-2-l2a',)")
    return out


def _as_utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"datetime bound {value!r} is not a datetime; pass datetime objects")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# --------------------------------------------------------------------------- validation


def _finite(values: Sequence[float], what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} {tuple(values)} has a non-finite number; give plain decimal degrees")


def _check_lonlat(lon: float, lat: float, what: str) -> None:
    if not -180.0 <= lon <= 180.0:
        raise InputError(f"{what}: longitude {lon} is outside -180..180; give lon/lat in degrees (EPSG:4326)")
    if not -90.0 <= lat <= 90.0:
        raise InputError(f"{what}: latitude {lat} is outside -90..90; give lon/lat in degrees (EPSG:4326)")


def _check_bbox(b: tuple[float, ...], what: str) -> BBox:
    if len(b) != 4:
        raise InputError(f"{what} {b} must have 4 numbers W,S,E,N")
    _finite(b, what)
    w, s, e, n = b
    _check_lonlat(w, s, what)
    _check_lonlat(e, n, what)
    if w > e:
        raise InputError(
            f"{what} {w},{s},{e},{n} has west {w} > east {e}; give W,S,E,N with W <= E "
            "(split boxes that cross the antimeridian)"
        )
    if s >= n:
        raise InputError(f"{what} {w},{s},{e},{n} has south {s} >= north {n}; give W,S,E,N with S < N")
    return (w, s, e, n)


def _check_near(v: tuple[float, ...], what: str) -> tuple[float, float, float]:
    if len(v) != 3:
        raise InputError(f"{what} {v} must have 3 numbers LON,LAT,RADIUS_M")
    _finite(v, what)
    lon, lat, radius = v
    _check_lonlat(lon, lat, what)
    if radius <= 0:
        raise InputError(f"{what} radius {radius} m is not positive; give LON,LAT,RADIUS_M with RADIUS_M > 0")
    return (lon, lat, radius)


def _check_ring(ring: Ring, what: str) -> Ring:
    if len(ring) < 4:
        raise InputError(
            f"{what} ring has {len(ring)} positions; a closed polygon ring needs at least 4 "
            "(first position repeated at the end)"
        )
    for lon, lat in ring:
        _finite((lon, lat), what)
        _check_lonlat(lon, lat, what)
    if ring[0] != ring[-1]:
        raise InputError(f"{what} ring is not closed: first {ring[0]} != last {ring[-1]}; repeat the first position at the end")
    from shapely.geometry import Polygon
    from shapely.validation import explain_validity

    poly = Polygon(ring)
    if not poly.is_valid:
        raise InputError(f"{what} is not a valid polygon ({explain_validity(poly)}); fix self-intersections")
    if poly.area == 0:
        raise InputError(f"{what} has zero area; give at least three distinct corners")
    return ring


# --------------------------------------------------------------------------- parsers


def _numbers(text: str, n: int, what: str, form: str) -> tuple[float, ...]:
    parts = [p.strip() for p in str(text).strip().split(",")]
    if len(parts) != n:
        raise InputError(f"{what} {text!r} must be {form} ({n} comma-separated numbers)")
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"{what} {text!r} must be {form} with plain decimal numbers") from None


def parse_bbox(text: str) -> BBox:
    """Parse ``"W,S,E,N"`` (decimal degrees) into a validated tuple."""
    return _check_bbox(_numbers(text, 4, "bbox", "W,S,E,N"), f"bbox {text!r}")


def parse_near(text: str) -> tuple[float, float, float]:
    """Parse ``"LON,LAT,RADIUS_M"`` into a validated tuple."""
    return _check_near(_numbers(text, 3, "near", "LON,LAT,RADIUS_M"), f"near {text!r}")


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$"
)


def _parse_instant(text: str, *, end: bool) -> datetime:
    """Parse one RFC 3339 datetime or date; a date as END means the end of that day."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(text)
    if m.group(4) is None:  # a plain date
        d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        dt = datetime.combine(d, time(0, 0), tzinfo=timezone.utc)
        return dt + timedelta(days=1, microseconds=-1) if end else dt
    iso = text[:10] + "T" + text[11:]
    if iso[-1] in "zZ":
        iso = iso[:-1] + "+00:00"
    frac = m.group(7)
    if frac and len(frac) > 7:  # keep microseconds; Python rejects longer fractions on 3.10
        iso = iso.replace(frac, frac[:7], 1)
    dt = datetime.fromisoformat(iso)
    return _as_utc(dt)


def parse_datetime_range(text: str) -> tuple[datetime | None, datetime | None]:
    """Parse ``"START/END"``, ``"START/.."``, ``"../END"`` or a single instant.

    Bounds are RFC 3339 datetimes or dates (a date as START is 00:00:00, as END
    23:59:59.999999; a single date covers that day).  Naive times are UTC.
    Returned datetimes are timezone-aware UTC; ``None`` is an open end.
    """
    raw = str(text).strip()
    form = "START/END with RFC 3339 datetimes or dates, e.g. 2020-01-01/2020-12-31T23:59:59Z; '..' for an open end"
    parts = raw.split("/")
    if len(parts) > 2 or not raw:
        raise InputError(f"datetime {text!r} must be {form}")
    try:
        if len(parts) == 1:
            start = _parse_instant(parts[0], end=False)
            end = _parse_instant(parts[0], end=True)
        else:
            a, b = (p.strip() for p in parts)
            start = None if a in ("", "..") else _parse_instant(a, end=False)
            end = None if b in ("", "..") else _parse_instant(b, end=True)
    except ValueError:
        raise InputError(f"datetime {text!r} must be {form}") from None
    if start is None and end is None:
        raise InputError(f"datetime {text!r} has no bound; give START, END or both")
    if start is not None and end is not None and start > end:
        raise InputError(f"datetime {text!r} ends before it starts; swap START and END")
    return start, end


def load_polygon(path: str | Path) -> Ring:
    """Read the exterior ring of one polygon from a GeoJSON file (lon/lat, EPSG:4326).

    Accepts a Polygon, a Feature with a Polygon, a FeatureCollection holding
    exactly one, or a MultiPolygon of one polygon.  Polygons with holes are
    rejected (only the exterior ring is used for filtering).
    """
    p = Path(path)
    if not p.is_file():
        raise SourceNotFoundError(f"polygon file {p} does not exist; give a GeoJSON file path")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"polygon file {p} is not valid JSON ({exc}); give a GeoJSON Polygon") from None

    return _check_ring(polygon_from_geojson(doc, f"polygon file {p}"), f"polygon in {p}")


def polygon_from_geojson(doc: Any, what: str = "polygon") -> Ring:
    """The exterior ring (lon, lat) of the one polygon in a GeoJSON Polygon,
    Feature, FeatureCollection or single-polygon MultiPolygon; not yet closed or
    validated (callers close it or check it with the ring rules)."""
    geom = _single_polygon(doc, what)
    rings = geom.get("coordinates")
    if not isinstance(rings, list) or not rings or not isinstance(rings[0], list):
        raise InputError(f"{what} has no coordinates; give a GeoJSON Polygon with one ring of [lon, lat]")
    if len(rings) > 1:
        raise InputError(f"{what} has {len(rings) - 1} hole(s); remove the inner rings")
    ring = []
    for pos in rings[0]:
        if (not isinstance(pos, list) or len(pos) < 2
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pos[:2])):
            raise InputError(f"{what} has a bad position {pos!r}; positions are [lon, lat]")
        ring.append((float(pos[0]), float(pos[1])))
    return tuple(ring)


def _single_polygon(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise InputError(f"{what} is not a GeoJSON object; give a Polygon, Feature or FeatureCollection")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        feats = doc.get("features") or []
        if len(feats) != 1:
            raise InputError(f"{what} has {len(feats)} features; keep exactly one polygon")
        return _single_polygon(feats[0], what)
    if kind == "Feature":
        return _single_polygon(doc.get("geometry"), what)
    if kind == "MultiPolygon":
        polys = doc.get("coordinates") or []
        if len(polys) != 1:
            raise InputError(f"{what} is a MultiPolygon of {len(polys)} polygons; keep exactly one")
        return {"type": "Polygon", "coordinates": polys[0]}
    if kind != "Polygon":
        raise InputError(f"{what} holds a {kind!r}, not a Polygon; give a GeoJSON Polygon")
    return doc


# --------------------------------------------------------------------------- translation


def _epoch(dt: datetime) -> float:
    return dt.timestamp()


def to_qdrant_filter(
    flt: SearchFilter | None,
    *,
    exclude_ids: Collection[str] = (),
    around: tuple[float, float, float] | None = None,
) -> Any:
    """Build a qdrant-client ``models.Filter`` (or None when nothing is constrained).

    ``exclude_ids`` drops those point ids; ``around=(lon, lat, metres)`` also
    keeps only tiles whose centroid lies within that radius (used by ``point_at``,
    on top of any radius in ``flt``).
    """
    from qdrant_client import models as m

    must: list[Any] = []
    if flt is not None:
        if flt.bbox is not None:
            w, s, e, n = flt.bbox
            must.append(m.FieldCondition(key="location", geo_bounding_box=m.GeoBoundingBox(
                top_left=m.GeoPoint(lon=w, lat=n), bottom_right=m.GeoPoint(lon=e, lat=s))))
        if flt.near is not None:
            lon, lat, r = flt.near
            must.append(m.FieldCondition(key="location", geo_radius=m.GeoRadius(
                center=m.GeoPoint(lon=lon, lat=lat), radius=r)))
        if flt.polygon is not None:
            ring = m.GeoLineString(points=[m.GeoPoint(lon=x, lat=y) for x, y in flt.polygon])
            must.append(m.FieldCondition(key="location", geo_polygon=m.GeoPolygon(exterior=ring)))
        if flt.start is not None or flt.end is not None:
            must.append(m.FieldCondition(key="datetime_epoch", range=m.Range(
                gte=_epoch(flt.start) if flt.start else None, lte=_epoch(flt.end) if flt.end else None)))
        if flt.collections:
            must.append(m.FieldCondition(key="collection", match=m.MatchAny(any=list(flt.collections))))
        if flt.item_ids:
            must.append(m.FieldCondition(key="item_id", match=m.MatchAny(any=list(flt.item_ids))))
    if around is not None:
        lon, lat, r = around
        must.append(m.FieldCondition(key="location", geo_radius=m.GeoRadius(center=m.GeoPoint(lon=lon, lat=lat), radius=r)))
    must_not = [m.HasIdCondition(has_id=list(exclude_ids))] if exclude_ids else None
    if not must and not must_not:
        return None
    return m.Filter(must=must or None, must_not=must_not)


def to_edge_filter(
    flt: SearchFilter | None,
    *,
    exclude_ids: Collection[str] = (),
    around: tuple[float, float, float] | None = None,
) -> Any:
    """Build a ``qdrant_edge.Filter`` with the same semantics as :func:`to_qdrant_filter`."""
    import qdrant_edge as q

    must: list[Any] = []
    if flt is not None:
        if flt.bbox is not None:
            w, s, e, n = flt.bbox
            must.append(q.FieldCondition(key="location", geo_bounding_box=q.GeoBoundingBox(
                top_left=q.GeoPoint(lon=w, lat=n), bottom_right=q.GeoPoint(lon=e, lat=s))))
        if flt.near is not None:
            lon, lat, r = flt.near
            must.append(q.FieldCondition(key="location", geo_radius=q.GeoRadius(
                center=q.GeoPoint(lon=lon, lat=lat), radius=r)))
        if flt.polygon is not None:
            ring = [q.GeoPoint(lon=x, lat=y) for x, y in flt.polygon]
            must.append(q.FieldCondition(key="location", geo_polygon=q.GeoPolygon(exterior=ring)))
        if flt.start is not None or flt.end is not None:
            must.append(q.FieldCondition(key="datetime_epoch", range=q.RangeFloat(
                gte=_epoch(flt.start) if flt.start else None, lte=_epoch(flt.end) if flt.end else None)))
        if flt.collections:
            must.append(q.FieldCondition(key="collection", match=q.MatchAny(any=list(flt.collections))))
        if flt.item_ids:
            must.append(q.FieldCondition(key="item_id", match=q.MatchAny(any=list(flt.item_ids))))
    if around is not None:
        lon, lat, r = around
        must.append(q.FieldCondition(key="location", geo_radius=q.GeoRadius(center=q.GeoPoint(lon=lon, lat=lat), radius=r)))
    must_not = [q.HasIdCondition(point_ids=set(exclude_ids))] if exclude_ids else None
    if not must and not must_not:
        return None
    return q.Filter(must=must or None, must_not=must_not)


# --------------------------------------------------------------------------- reference matcher


def haversine_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Great-circle distance in metres (Qdrant's formula and Earth radius); broadcasts."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return EARTH_RADIUS_M * 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _in_ring(lon: float, lat: float, ring: Ring) -> bool:
    """Even-odd point-in-polygon; points on an edge are outside (as in Qdrant)."""
    pts = np.asarray(ring[:-1] if ring[0] == ring[-1] else ring, dtype=np.float64)
    xi, yi = pts[:, 0], pts[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    on_edge = (
        (lat * (xi - xj) + yi * (xj - lon) + yj * (lon - xi) == 0)
        & ((xi - lon) * (xj - lon) <= 0)
        & ((yi - lat) * (yj - lat) <= 0)
    )
    if on_edge.any():
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        crosses = ((yi > lat) != (yj > lat)) & (lon < (xj - xi) * (lat - yi) / (yj - yi) + xi)
    return bool(np.count_nonzero(crosses) % 2)


def matches(payload: Mapping[str, Any], flt: SearchFilter | None) -> bool:
    """Reference implementation of the filter semantics on one payload."""
    if flt is None:
        return True
    loc = payload.get("location")
    if flt.bbox is not None or flt.near is not None or flt.polygon is not None:
        if not isinstance(loc, Mapping) or loc.get("lon") is None or loc.get("lat") is None:
            return False
        lon, lat = float(loc["lon"]), float(loc["lat"])
        if flt.bbox is not None:
            w, s, e, n = flt.bbox
            if not (w < lon < e and s < lat < n):
                return False
        if flt.near is not None:
            clon, clat, r = flt.near
            if not float(haversine_m(lon, lat, clon, clat)) < r:
                return False
        if flt.polygon is not None and not _in_ring(lon, lat, flt.polygon):
            return False
    if flt.start is not None or flt.end is not None:
        t = payload.get("datetime_epoch")
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            return False
        if flt.start is not None and t < _epoch(flt.start):
            return False
        if flt.end is not None and t > _epoch(flt.end):
            return False
    if flt.collections and payload.get("collection") not in flt.collections:
        return False
    if flt.item_ids and payload.get("item_id") not in flt.item_ids:
        return False
    return True


__all__ = [
    "EARTH_RADIUS_M",
    "SearchFilter",
    "haversine_m",
    "load_polygon",
    "matches",
    "parse_bbox",
    "parse_datetime_range",
    "parse_near",
    "to_edge_filter",
    "to_qdrant_filter",
]
