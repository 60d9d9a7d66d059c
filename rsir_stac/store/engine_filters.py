"""Translation of a :class:`~rsir_stac.store.filters.SearchFilter` to each engine's filter.

:func:`to_qdrant_filter` builds a qdrant-client ``models.Filter`` and
:func:`to_edge_filter` a ``qdrant_edge.Filter``, by one rule (:func:`_build`) over
each engine's condition constructors; nothing else builds engine filters.  Boxes
and polygons are cut and kept off the poles where the engine's own geo conditions
answer wrongly (:func:`engine_boxes`, :func:`engine_polygons`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rsir_stac.store.areas import GeoArea, Ring
from rsir_stac.store.filter_parse import BBox

if TYPE_CHECKING:
    from rsir_stac.store.filters import SearchFilter

#: Payload field of the end of a tile's time interval (epoch seconds).
END_FIELD = "datetime_end_epoch"
#: Values of :attr:`SearchFilter.missing` and the payload field each names.
MISSING_FIELDS = {"datetime": "datetime_epoch", "collection": "collection"}


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


__all__ = ["END_FIELD", "ENGINE_MAX_SPAN", "MISSING_FIELDS", "POLE_MARGIN", "engine_boxes", "engine_polygons",
           "to_edge_filter", "to_qdrant_filter"]
