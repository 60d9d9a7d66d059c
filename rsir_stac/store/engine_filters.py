"""Translation of a :class:`~rsir_stac.store.filters.SearchFilter` to each engine's filter.

:func:`to_qdrant_filter` builds a qdrant-client ``models.Filter`` and
:func:`to_edge_filter` a ``qdrant_edge.Filter``, by one rule (:func:`_build`) over
each engine's condition constructors; nothing else builds engine filters.  Boxes
and polygons are closed (a centre on an edge, at ±180 or at a pole the area reaches is
inside): the engine's open geo conditions get them grown by :data:`EDGE_TOL`, cut where
the engine answers wrongly, with slivers across 180 and boxes for the caps at the poles
(:func:`box_area`, :func:`polygon_area`, :class:`EngineArea`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

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
#: (RESULTS §14), and Qdrant Edge finds a point at latitude exactly 90 by no geo condition at
#: all.  Tile centres nearer a pole are stored :data:`~rsir_stac.store.payloads.POLE_OFFSET`
#: off it, and an area that reaches a pole also matches its cap: every centre within
#: :data:`POLE_CAP` of that pole, whatever its longitude (:attr:`EngineArea.north`,
#: :attr:`EngineArea.south`), sent as indexed boxes (a latitude range is not indexed: the
#: engine would read every payload of the index).
POLE_MARGIN = 1e-7

#: Degrees from a pole (about 3 cm) within which every centre is at that pole.
POLE_CAP = 3e-7

#: Degrees (about 0.1 mm) by which a box or polygon is widened before it goes to the engine:
#: Qdrant's ``geo_bounding_box`` and ``geo_polygon`` are open (a point on an edge is outside),
#: and the store's boxes and polygons are closed (a centre on an edge is inside, as in a STAC
#: API bbox).  So a centre within this of an edge may match too; far below any tile's size,
#: far above the rounding of a printed coordinate.
EDGE_TOL = 1e-9

#: Widest polygon (degrees of longitude) sent to the engine in one piece; its ``geo_polygon``
#: misses most points of a polygon spanning the map (RESULTS §14).
ENGINE_MAX_SPAN = 120.0


@dataclass(frozen=True)
class EngineArea:
    """A closed box or area as the engine answers it right: the union (OR) of open boxes
    (``W > E`` across 180, Qdrant's own rule), open polygons, and the caps within
    :data:`POLE_CAP` of the north / south pole (:func:`_cap_boxes`).

    Together they hold every centre in the closed area (edges, ±180 and poles included),
    grown by :data:`EDGE_TOL`.  :meth:`mask` is the same rule in Python, used by the
    reference matcher and wherever the store tests centres itself (:mod:`rsir_stac.store.envelope`).
    """

    boxes: tuple[BBox, ...] = ()
    polygons: tuple[tuple[Ring, tuple[Ring, ...]], ...] = ()
    north: bool = False
    south: bool = False
    #: the polygons as shapely geometries, when the maker has them
    geoms: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def shapes(self) -> tuple[Any, ...]:
        """The polygons as prepared shapely geometries."""
        import shapely
        from shapely.geometry import Polygon as ShapelyPolygon

        out = self.geoms if len(self.geoms) == len(self.polygons) else tuple(
            ShapelyPolygon(ext, holes) for ext, holes in self.polygons)
        for p in out:
            shapely.prepare(p)  # once: a prepared geometry stays prepared
        return out

    def mask(self, lon: Any, lat: Any, shapes: Sequence[Any] | None = None) -> np.ndarray:
        """Boolean array: which (lon, lat) the engine matches (NaN: none); ``shapes``:
        :meth:`shapes`, when the caller keeps them."""
        import shapely

        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        out = np.zeros(np.broadcast(lon, lat).shape, bool)
        for w, s, e, n in self.boxes:
            in_lon = ((w < lon) & (lon < e)) if w <= e else ((lon > w) | (lon < e))
            out |= in_lon & (s < lat) & (lat < n)
        if self.polygons:
            ok = np.isfinite(lon) & np.isfinite(lat)
            for shape in self.shapes() if shapes is None else shapes:
                out[ok] |= shapely.contains_xy(shape, lon[ok], lat[ok])
        if self.north:
            out |= lat > 90.0 - POLE_CAP
        if self.south:
            out |= lat < -90.0 + POLE_CAP
        return out


def _cap_boxes(north: bool) -> list[BBox]:
    """Open boxes holding every stored centre within :data:`POLE_CAP` of the north (or south)
    pole at any longitude: the band between ``POLE_CAP`` and :data:`POLE_MARGIN` off the pole,
    which holds centres stored :data:`~rsir_stac.store.payloads.POLE_OFFSET` off it, as two
    overlapping halves and a sliver across 180 (no box holds a point at exactly ±180)."""
    lo, hi = 90.0 - POLE_CAP, 90.0 - POLE_MARGIN
    if not north:
        lo, hi = -hi, -lo
    return [(-180.0, lo, 1.0, hi), (-1.0, lo, 180.0, hi), _sliver(lo, hi)]


def _sliver(s: float, n: float) -> BBox:
    """An open box across 180 holding longitudes ±180 (and within :data:`EDGE_TOL` of it)
    between latitudes ``s`` and ``n``: no box with W < E holds a point at exactly ±180."""
    return (180.0 - EDGE_TOL, s, -180.0 + EDGE_TOL, n)


@lru_cache(maxsize=256)
def box_area(bbox: BBox) -> EngineArea:
    """The closed ``bbox`` (W > E across the antimeridian) as an :class:`EngineArea`: grown by
    :data:`EDGE_TOL`, cut at 180, edges kept :data:`POLE_MARGIN` off the poles (the caps
    of the poles it comes within :data:`POLE_CAP` of added), a sliver across 180 where the box reaches ±180, and a box around
    the whole world sent as two overlapping halves (the engine misses most points of a
    -180..180 box)."""
    w, s, e, n = bbox
    s, n = s - EDGE_TOL, n + EDGE_TOL
    south, north = s <= -90.0 + POLE_CAP, n >= 90.0 - POLE_CAP
    s, n = max(s, -90.0 + POLE_MARGIN), min(n, 90.0 - POLE_MARGIN)
    boxes: list[BBox] = []
    if s < n:
        if w > e:  # across the antimeridian: W..180 or -180..E
            spans = [(w - EDGE_TOL, 180.0), (-180.0, e + EDGE_TOL)]
        else:
            spans = [(max(w - EDGE_TOL, -180.0), min(e + EDGE_TOL, 180.0))]
        for lo, hi in spans:
            if hi - lo > 180.0:  # wide boxes: halves that overlap, so a point on the cut is in one of them
                mid = (lo + hi) / 2.0
                boxes += [(lo, s, mid + 1.0, n), (mid - 1.0, s, hi, n)]
            elif hi - lo > 0:
                boxes.append((lo, s, hi, n))
        if w > e or w - EDGE_TOL <= -180.0 or e + EDGE_TOL >= 180.0:
            boxes.append(_sliver(s, n))
    return EngineArea(tuple(boxes), (), north, south)


def engine_boxes(bbox: BBox) -> list[BBox]:
    """The open boxes of :func:`box_area` (the pole caps aside)."""
    return list(box_area(bbox).boxes)


def _rings(g: Any) -> tuple[Ring, tuple[Ring, ...]]:
    import shapely

    def ring(r: Any) -> Ring:
        return tuple(map(tuple, shapely.get_coordinates(r).tolist()))

    return ring(g.exterior), tuple(ring(h) for h in g.interiors)


def _parts(g: Any, kind: str) -> list[Any]:
    return [p for p in getattr(g, "geoms", [g]) if p.geom_type == kind and not p.is_empty]


@lru_cache(maxsize=256)
def polygon_area(area: GeoArea) -> EngineArea:
    """The closed ``area`` as an :class:`EngineArea`: each polygon grown by :data:`EDGE_TOL`
    (its holes shrunk), kept :data:`POLE_MARGIN` off the poles (the caps of the poles
    it comes within :data:`POLE_CAP` of added), one wider than :data:`ENGINE_MAX_SPAN` degrees cut into vertical strips that
    overlap by 1e-6 degrees (so a point on a cut is strictly inside one strip), and where it
    reaches ±180, slivers across 180 over the latitudes it holds there."""
    from shapely.geometry import LineString, box
    from shapely.geometry import Polygon as ShapelyPolygon

    polys: list[Any] = []
    boxes: list[BBox] = []
    north = south = False
    lat_lo, lat_hi = -90.0 + POLE_MARGIN, 90.0 - POLE_MARGIN
    for ext, holes in area.polygons:
        grown = ShapelyPolygon(ext, holes).buffer(EDGE_TOL, join_style="mitre", mitre_limit=10.0)
        gw, gs, ge, gn = grown.bounds
        north |= gn >= 90.0 - POLE_CAP
        south |= gs <= -90.0 + POLE_CAP
        for x in (180.0, -180.0):  # the latitudes it holds at ±180
            if gw <= x <= ge:
                for seg in _parts(grown.intersection(LineString([(x, -91.0), (x, 91.0)])), "LineString"):
                    lo, hi = max(seg.bounds[1], lat_lo), min(seg.bounds[3], lat_hi)
                    if lo < hi and _sliver(lo, hi) not in boxes:
                        boxes.append(_sliver(lo, hi))
        inside = -180.0 <= gw and ge <= 180.0 and lat_lo <= gs and gn <= lat_hi  # most areas: no cut
        for piece in [grown] if inside else _parts(grown.intersection(box(-180.0, lat_lo, 180.0, lat_hi)), "Polygon"):
            lo, hi = piece.bounds[0], piece.bounds[2]
            if hi - lo <= ENGINE_MAX_SPAN:
                polys.append(piece)
                continue
            k = int(math.ceil((hi - lo) / ENGINE_MAX_SPAN))
            step = (hi - lo) / k
            for i in range(k):
                strip = piece.intersection(box(lo + i * step - 1e-6, -90.0, lo + (i + 1) * step + 1e-6, 90.0))
                polys.extend(g for g in _parts(strip, "Polygon") if g.area > 0)
    return EngineArea(tuple(boxes), tuple(_rings(g) for g in polys), north, south, tuple(polys))


def engine_polygons(area: GeoArea) -> list[tuple[Ring, tuple[Ring, ...]]]:
    """The open polygons of :func:`polygon_area` (its slivers and pole caps aside)."""
    return list(polygon_area(area).polygons)


def _area_terms(t: _ClientTerms, a: EngineArea) -> list:
    """The engine conditions (OR-ed) of ``a``."""
    conds = [t.box(*b) for b in a.boxes] + [t.polygon(ext, holes) for ext, holes in a.polygons]
    for pole, reached in ((True, a.north), (False, a.south)):
        if reached:
            conds += [t.box(*b) for b in _cap_boxes(pole)]
    return conds


def _one_of(t: _ClientTerms, conds: list) -> Any:
    if not conds:  # an area the engine can hold no point of
        return t.filter(must=[t.range("location.lat", 91.0, None)])
    return conds[0] if len(conds) == 1 else t.filter(should=conds)


def _build(t: _ClientTerms, flt: SearchFilter | None, exclude_ids: Collection[str],
           around: tuple[float, float, float] | None) -> Any:
    """The engine filter for ``flt`` with the constructors ``t`` (one rule for both engines)."""
    must: list[Any] = []
    if flt is not None:
        if flt.bbox is not None:
            must.append(_one_of(t, _area_terms(t, box_area(flt.bbox))))
        if flt.near is not None:
            must.append(t.radius(*flt.near))
        if flt.polygon is not None:
            must.append(_one_of(t, _area_terms(t, polygon_area(flt.polygon))))
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


__all__ = ["EDGE_TOL", "END_FIELD", "ENGINE_MAX_SPAN", "EngineArea", "MISSING_FIELDS", "POLE_CAP", "POLE_MARGIN", "box_area",
           "engine_boxes", "engine_polygons", "polygon_area", "to_edge_filter", "to_qdrant_filter"]
