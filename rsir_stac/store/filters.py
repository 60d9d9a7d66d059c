"""Search filters: parsing, validation, translation to Qdrant, and a reference matcher.

A :class:`SearchFilter` restricts a search to tiles whose payload matches every
given constraint (AND):

* ``bbox`` / ``near`` / ``polygon``: the tile *centroid* (payload ``location``)
  lies inside.  Geo semantics follow Qdrant exactly: bounding boxes are open
  (``W < lon < E``, ``S < lat < N``), radii are open (haversine distance
  ``< radius``, Earth radius 6371008.8 m, the IUGG mean radius that Qdrant's
  ``geo`` crate and qdrant-client local mode both use), polygons use the
  even-odd rule and points on an edge are not inside.
  A bbox with ``W > E`` crosses the antimeridian (RFC 7946): it is sent to the
  engine as two boxes, ``W..180`` or ``-180..E``.  ``polygon`` is a
  :class:`~rsir_stac.store.areas.GeoArea` (holes, several polygons, cut at
  180): sent as one ``geo_polygon`` with interiors per polygon, OR-ed.
* ``start`` / ``end``: a tile's time is the interval ``datetime_epoch`` ..
  ``datetime_end_epoch`` (float seconds; equal for one instant); it matches
  when that interval intersects ``start..end`` (inclusive), as STAC API search
  does.  Points written before ``datetime_end_epoch`` existed use
  ``datetime_epoch`` for both ends.  Tiles without a datetime never match a
  datetime constraint.
* ``collections`` / ``item_ids``: keyword match-any on ``collection`` / ``item_id``.
* ``missing``: the named fields (``"datetime"``, ``"collection"``) are absent
  or null, e.g. to count the undated tiles a date filter leaves out.

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
from rsir_stac.store.areas import GeoArea, Ring, _in_ring, check_ring  # noqa: F401 - _in_ring for tests

log = logging.getLogger(__name__)

#: Earth radius used by Qdrant for ``geo_radius`` (haversine), in metres.
EARTH_RADIUS_M = 6371008.8

BBox = tuple[float, float, float, float]

#: Payload field of the end of a tile's time interval (epoch seconds).
END_FIELD = "datetime_end_epoch"
#: Values of :attr:`SearchFilter.missing` and the payload field each names.
MISSING_FIELDS = {"datetime": "datetime_epoch", "collection": "collection"}


# --------------------------------------------------------------------------- dataclass


@dataclass(frozen=True)
class SearchFilter:
    """Constraints on tile payloads; every given constraint must hold."""

    bbox: BBox | None = None
    near: tuple[float, float, float] | None = None
    polygon: GeoArea | None = None
    start: datetime | None = None
    end: datetime | None = None
    collections: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.bbox is not None:
            set_(self, "bbox", _check_bbox(tuple(float(v) for v in self.bbox), "bbox"))
        if self.near is not None:
            set_(self, "near", _check_near(tuple(float(v) for v in self.near), "near"))
        if self.polygon is not None:
            set_(self, "polygon", as_area(self.polygon))
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
        missing = _str_tuple(self.missing, "missing")
        bad = [m for m in missing if m not in MISSING_FIELDS]
        if bad:
            raise InputError(f"missing={bad[0]!r} is not a field that can be missing; use one of "
                             f"{', '.join(MISSING_FIELDS)}")
        set_(self, "missing", missing)

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
            and not self.missing
        )


def as_area(value: Any) -> GeoArea:
    """A :class:`GeoArea` from a GeoArea, a GeoJSON mapping, or one ring of (lon, lat) pairs."""
    if isinstance(value, GeoArea):
        return value
    if isinstance(value, Mapping):
        return GeoArea.from_geojson(value)
    return GeoArea.from_rings(value, (), "polygon")


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
    if s >= n:
        shown = what if "'" in what else f"{what} {w},{s},{e},{n}"  # parse_bbox's name quotes the values already
        raise InputError(f"{shown} has south {s} >= north {n}; give W,S,E,N with S < N")
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
    """One closed, valid ring (see :func:`rsir_stac.store.areas.check_ring`)."""
    GeoArea.from_rings(ring, (), what)
    return check_ring(ring, what)


# --------------------------------------------------------------------------- parsers


def plain_float(text: str) -> float:
    """``float(text)``, less Python's digit separators: ``1_0`` is 10 to ``float()`` but a typo to
    anyone else (ValueError).  ``nan`` and ``inf`` parse, for the range checks to name them."""
    if "_" in text:
        raise ValueError(f"not a plain decimal number: {text!r}")
    return float(text)


def _numbers(text: str, n: int, what: str, form: str) -> tuple[float, ...]:
    parts = [p.strip() for p in str(text).strip().split(",")]
    if len(parts) != n:
        raise InputError(f"{what} {text!r} must be {form} ({n} comma-separated numbers)")
    try:
        return tuple(plain_float(p) for p in parts)
    except ValueError:
        raise InputError(f"{what} {text!r} must be {form} with plain decimal numbers; write each as digits "
                         "with an optional sign, point and exponent (no _)") from None


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
    """Parse one RFC 3339 datetime or date, or a year (``2015``) or month (``2015-06``), as
    pystac-client reads them; a date, month or year as END means the end of that period."""
    period = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", text.strip())
    if period:
        year, month = int(period.group(1)), int(period.group(2) or 0)
        if not 1 <= year <= 9999 or (period.group(2) and not 1 <= month <= 12):
            raise ValueError(text)
        if not end:
            return datetime(year, month or 1, 1, tzinfo=timezone.utc)
        import calendar

        last = month or 12
        return datetime(year, last, calendar.monthrange(year, last)[1], 23, 59, 59, 999999, tzinfo=timezone.utc)
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

    Bounds are RFC 3339 datetimes or dates, or a year or month (a date as START is
    00:00:00, as END 23:59:59.999999; a single date, month or year covers that period:
    ``2015`` is the whole year, as pystac-client reads it).  Naive times are UTC.
    Returned datetimes are timezone-aware UTC; ``None`` is an open end.
    """
    raw = str(text).strip()
    form = ("START/END with RFC 3339 datetimes, dates, months or years, e.g. 2020-01-01/2020-12-31T23:59:59Z or "
            "2015; '..' for an open end")
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


def load_polygon(path: str | Path) -> GeoArea:
    """Read the search area of a GeoJSON file (lon/lat, EPSG:4326): a Polygon
    (holes allowed), MultiPolygon, Feature, FeatureCollection (the union of its
    features) or GeometryCollection of them; see :class:`GeoArea`."""
    p = Path(path)
    if not p.is_file():
        raise SourceNotFoundError(f"polygon file {p} does not exist; give a GeoJSON file path")
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))  # a BOM is allowed (RFC 8259 8.1)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"polygon file {p} is not valid JSON ({exc}); give a GeoJSON Polygon") from None
    return polygon_from_geojson(doc, f"polygon file {p}", close=False)


#: Names a legacy GeoJSON ``crs`` member may give for lon/lat (RFC 7946 dropped the member; its
#: coordinates are always WGS 84 lon/lat).
LONLAT_CRS_NAMES = ("urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "OGC:CRS84", "CRS84",
                    "EPSG:4326", "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG:4326")


def _check_geojson_crs(doc: Any, what: str) -> None:
    """Refuse a pre-RFC 7946 ``crs`` member naming another CRS (its coordinates are not lon/lat)."""
    name = _crs_name(doc)
    if name and name not in LONLAT_CRS_NAMES:
        raise InputError(f"{what} declares the CRS {name!r}; GeoJSON areas must be lon/lat (RFC 7946): reproject "
                         "it, e.g. `ogr2ogr -t_srs EPSG:4326 out.geojson in.geojson`")


def polygon_from_geojson(doc: Any, what: str = "polygon", *, close: bool = True) -> GeoArea:
    """The validated :class:`GeoArea` of a GeoJSON Polygon, MultiPolygon,
    Feature, FeatureCollection or GeometryCollection; with ``close``, rings that
    are not closed are closed (the first position repeated), else refused."""
    from rsir_stac.store.areas import _polygon_coords

    _check_geojson_crs(doc, what)
    polys = []
    for coords, where in _polygon_coords(doc, what):
        if not isinstance(coords, list) or not coords or not all(isinstance(r, list) for r in coords):
            raise InputError(f"{where} has no coordinates; give a GeoJSON Polygon with rings of [lon, lat]")
        for ring in coords:
            for pos in ring:
                if (not isinstance(pos, list) or len(pos) < 2
                        or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pos[:2])):
                    raise InputError(f"{where} has a bad position {pos!r}; positions are [lon, lat]")
        try:
            polys.extend(GeoArea.from_rings(coords[0], coords[1:], where, close=close).polygons)
        except InputError as err:
            named = _crs_name(doc)
            if named and "EPSG" in named and "latitude" in str(err) and "outside" in str(err):
                raise InputError(f"{err}; the file's crs member names {named}, whose axis order is latitude, "
                                 "longitude: GeoJSON (RFC 7946) is longitude, latitude, so swap them, e.g. "
                                 "`ogr2ogr -lco RFC7946=YES out.geojson in.geojson`") from None
            raise
    return GeoArea(tuple(polys))


def _crs_name(doc: Any) -> str | None:
    """The name of a legacy GeoJSON ``crs`` member, or None."""
    crs = doc.get("crs") if isinstance(doc, dict) else None
    props = crs.get("properties") if isinstance(crs, dict) else None
    name = props.get("name") if isinstance(props, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else None


# --------------------------------------------------------------------------- translation


def _epoch(dt: datetime) -> float:
    return dt.timestamp()


class _ClientTerms:
    """Condition constructors of qdrant-client's ``models``."""

    def __init__(self) -> None:
        from qdrant_client import models

        self.m = models

    def box(self, w: float, s: float, e: float, n: float) -> Any:
        m = self.m
        return m.FieldCondition(key="location", geo_bounding_box=m.GeoBoundingBox(
            top_left=m.GeoPoint(lon=w, lat=n), bottom_right=m.GeoPoint(lon=e, lat=s)))

    def radius(self, lon: float, lat: float, r: float) -> Any:
        m = self.m
        return m.FieldCondition(key="location", geo_radius=m.GeoRadius(center=m.GeoPoint(lon=lon, lat=lat), radius=r))

    def polygon(self, exterior: Ring, holes: Sequence[Ring]) -> Any:
        m = self.m

        def line(ring: Ring) -> Any:
            return m.GeoLineString(points=[m.GeoPoint(lon=x, lat=y) for x, y in ring])

        return m.FieldCondition(key="location", geo_polygon=m.GeoPolygon(
            exterior=line(exterior), interiors=[line(h) for h in holes] or None))

    def range(self, key: str, gte: float | None, lte: float | None) -> Any:
        return self.m.FieldCondition(key=key, range=self.m.Range(gte=gte, lte=lte))

    def any(self, key: str, values: Sequence[str]) -> Any:
        return self.m.FieldCondition(key=key, match=self.m.MatchAny(any=list(values)))

    def empty(self, key: str) -> Any:
        return self.m.IsEmptyCondition(is_empty=self.m.PayloadField(key=key))

    def not_ids(self, ids: Collection[str]) -> Any:
        return self.m.HasIdCondition(has_id=list(ids))

    def filter(self, must: list | None = None, should: list | None = None, must_not: list | None = None) -> Any:
        return self.m.Filter(must=must or None, should=should or None, must_not=must_not or None)


class _EdgeTerms(_ClientTerms):
    """Condition constructors of ``qdrant_edge``."""

    def __init__(self) -> None:
        import qdrant_edge

        self.m = qdrant_edge  # box and radius: the same constructors as qdrant-client's (inherited)

    def polygon(self, exterior: Ring, holes: Sequence[Ring]) -> Any:
        q = self.m

        def line(ring: Ring) -> list:
            return [q.GeoPoint(lon=x, lat=y) for x, y in ring]

        return q.FieldCondition(key="location", geo_polygon=q.GeoPolygon(
            exterior=line(exterior), interiors=[line(h) for h in holes] or None))

    def range(self, key: str, gte: float | None, lte: float | None) -> Any:
        return self.m.FieldCondition(key=key, range=self.m.RangeFloat(gte=gte, lte=lte))

    def empty(self, key: str) -> Any:
        return self.m.IsEmptyCondition(key=key)

    def not_ids(self, ids: Collection[str]) -> Any:
        return self.m.HasIdCondition(point_ids=set(ids))


#: Degrees kept between a box edge sent to the engine and a pole (about 1 cm): Qdrant's
#: ``geo_bounding_box`` misses most points of a box whose south or north edge is at -90 / 90
#: (RESULTS §14), and no point lies strictly inside the box beyond it.
POLE_MARGIN = 1e-7


def engine_boxes(bbox: BBox) -> list[BBox]:
    """``bbox`` (open, W > E across the antimeridian) as boxes Qdrant's ``geo_bounding_box``
    answers right, OR-ed: cut at 180, edges kept off the poles, and a box around the whole
    world sent as two overlapping halves (the engine misses most points of a -180..180 box)."""
    w, s, e, n = bbox
    s, n = max(s, -90.0 + POLE_MARGIN), min(n, 90.0 - POLE_MARGIN)
    if w > e:  # across the antimeridian: W..180 or -180..E
        return [(w, s, 180.0, n), (-180.0, s, e, n)]
    if e - w > 180.0:  # wide boxes: halves that overlap, so a point on the cut is in one of them
        mid = (w + e) / 2.0
        return [(w, s, mid + 1.0, n), (mid - 1.0, s, e, n)]
    return [(w, s, e, n)]


#: Widest polygon (degrees of longitude) sent to the engine in one piece; its ``geo_polygon``
#: misses most points of a polygon spanning the map (RESULTS §14).
ENGINE_MAX_SPAN = 120.0


def engine_polygons(area: GeoArea) -> list[tuple[Ring, tuple[Ring, ...]]]:
    """The polygons of ``area`` as the engine answers them right, OR-ed: latitudes kept
    :data:`POLE_MARGIN` off the poles, and one wider than :data:`ENGINE_MAX_SPAN` degrees cut
    into vertical strips that overlap by 1e-6 degrees, so a point on a cut is strictly inside
    one strip and the union has the area's own edges."""
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.geometry import box

    def off_poles(ring: Ring) -> Ring:  # as box edges: the engine misreads a polygon reaching both poles
        return tuple((x, min(max(y, -90.0 + POLE_MARGIN), 90.0 - POLE_MARGIN)) for x, y in ring)

    out: list[tuple[Ring, tuple[Ring, ...]]] = []
    for ext, holes in ((off_poles(e), tuple(off_poles(h) for h in hs)) for e, hs in area.polygons):
        lons = [x for x, _ in ext]
        lo, hi = min(lons), max(lons)
        if hi - lo <= ENGINE_MAX_SPAN:
            out.append((ext, holes))
            continue
        poly = ShapelyPolygon(ext, holes)
        k = int(math.ceil((hi - lo) / ENGINE_MAX_SPAN))
        step = (hi - lo) / k
        for i in range(k):
            piece = poly.intersection(box(lo + i * step - 1e-6, -90.0, lo + (i + 1) * step + 1e-6, 90.0))
            for g in getattr(piece, "geoms", [piece]):
                if g.geom_type == "Polygon" and not g.is_empty and g.area > 0:
                    out.append((tuple((float(x), float(y)) for x, y in g.exterior.coords),
                                tuple(tuple((float(x), float(y)) for x, y in h.coords) for h in g.interiors)))
    return out


def _one_of(t: _ClientTerms, conds: list) -> Any:
    return conds[0] if len(conds) == 1 else t.filter(should=conds)


def _build(t: _ClientTerms, flt: SearchFilter | None, exclude_ids: Collection[str],
           around: tuple[float, float, float] | None) -> Any:
    """The engine filter for ``flt`` with the constructors ``t`` (one rule for both engines)."""
    must: list[Any] = []
    if flt is not None:
        if flt.bbox is not None:
            must.append(_one_of(t, [t.box(*b) for b in engine_boxes(flt.bbox)]))
        if flt.near is not None:
            must.append(t.radius(*flt.near))
        if flt.polygon is not None:
            must.append(_one_of(t, [t.polygon(ext, holes) for ext, holes in engine_polygons(flt.polygon)]))
        if flt.end is not None:  # the interval starts before the filter ends
            must.append(t.range("datetime_epoch", None, _epoch(flt.end)))
        if flt.start is not None:  # ... and ends after it starts (older points: one instant)
            start = _epoch(flt.start)
            must.append(t.filter(should=[
                t.range(END_FIELD, start, None),
                t.filter(must=[t.empty(END_FIELD), t.range("datetime_epoch", start, None)]),
            ]))
        if flt.collections:
            must.append(t.any("collection", flt.collections))
        if flt.item_ids:
            must.append(t.any("item_id", flt.item_ids))
        for name in flt.missing:
            must.append(t.empty(MISSING_FIELDS[name]))
    if around is not None:
        must.append(t.radius(*around))
    must_not = [t.not_ids(exclude_ids)] if exclude_ids else None
    if not must and not must_not:
        return None
    return t.filter(must=must, must_not=must_not)


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
    return _build(_ClientTerms(), flt, exclude_ids, around)


def to_edge_filter(
    flt: SearchFilter | None,
    *,
    exclude_ids: Collection[str] = (),
    around: tuple[float, float, float] | None = None,
) -> Any:
    """Build a ``qdrant_edge.Filter`` with the same semantics as :func:`to_qdrant_filter`."""
    return _build(_EdgeTerms(), flt, exclude_ids, around)


# --------------------------------------------------------------------------- reference matcher


def haversine_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Great-circle distance in metres (Qdrant's formula and Earth radius); broadcasts."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return EARTH_RADIUS_M * 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
            inside_lon = w < lon < e if w <= e else (w < lon < 180.0 or -180.0 < lon < e)
            if not (inside_lon and s < lat < n):
                return False
        if flt.near is not None:
            clon, clat, r = flt.near
            if not float(haversine_m(lon, lat, clon, clat)) < r:
                return False
        if flt.polygon is not None and not flt.polygon.contains(lon, lat):
            return False
    if flt.start is not None or flt.end is not None:
        t0 = payload.get("datetime_epoch")
        if not _is_number(t0):
            return False
        t1 = payload.get(END_FIELD)
        t1 = t1 if _is_number(t1) else t0
        if flt.start is not None and t1 < _epoch(flt.start):
            return False
        if flt.end is not None and t0 > _epoch(flt.end):
            return False
    for name in flt.missing:
        if payload.get(MISSING_FIELDS[name]) not in (None, "", []):
            return False
    if flt.collections and payload.get("collection") not in flt.collections:
        return False
    if flt.item_ids and payload.get("item_id") not in flt.item_ids:
        return False
    return True


__all__ = [
    "EARTH_RADIUS_M",
    "END_FIELD",
    "GeoArea",
    "MISSING_FIELDS",
    "SearchFilter",
    "as_area",
    "haversine_m",
    "engine_boxes",
    "engine_polygons",
    "load_polygon",
    "matches",
    "parse_bbox",
    "parse_datetime_range",
    "parse_near",
    "polygon_from_geojson",
    "to_edge_filter",
    "to_qdrant_filter",
]
