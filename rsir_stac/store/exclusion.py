"""Exclusions: the points a query must not return, and the areas about example footprints.

An :class:`Exclusion` holds point ids, circles (lon, lat, radius in metres) and
lon/lat areas; :func:`footprint_exclusion` makes the circle or areas about a
stored example's footprint grown by a distance.  Pure records and geometry: the
engine filters that exclude them are built in :mod:`rsir_stac.store.query`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from rsir_stac.store.filter_parse import _check_lonlat

log = logging.getLogger("rsir_stac.store.query")  # the name the query's messages have always carried


@dataclass(frozen=True)
class Exclusion:
    """Points a query must not return: ids, tiles whose centre lies within a radius (metres)
    of a lon/lat, and tiles whose centre lies inside an area (a lon/lat ring: a query
    footprint grown by a distance, see :func:`footprint_exclusion`)."""

    ids: frozenset[str] = frozenset()
    around: tuple[tuple[float, float, float], ...] = field(default_factory=tuple)
    areas: tuple[tuple[tuple[float, float], ...], ...] = field(default_factory=tuple)


#: Metres beyond which an exclusion about a footprint is taken as a circle (half the Earth's
#: circumference is ~20,000 km; an azimuthal equidistant projection folds near its antipode).
HALF_EARTH_M = 19_000_000.0


def footprint_exclusion(payload: dict, distance_m: float) -> tuple[tuple, tuple]:
    """``(around, areas)`` for :class:`Exclusion`: tiles whose centre is within ``distance_m``
    of the footprint of ``payload``.  The footprint (each part of one cut at 180) is grown by
    ``distance_m`` in an azimuthal equidistant projection about its centre (shapely ``buffer``,
    pyproj), so the cut follows the tile's edges, and brought back to lon/lat as an area file is
    (:func:`rsir_stac.reproject.geometries_to_lonlat`: edges densified, an area around a pole a
    polar cap), then cut at 180 (:class:`~rsir_stac.store.areas.GeoArea`): ``areas`` are those
    pieces' rings, each within ±180.  A footprint the projection cannot grow falls back to the
    circle of :func:`footprint_radius`, which holds it (and a little more).  ``((), ())`` without
    a footprint."""
    from rsir_stac.labels import footprint_geometry

    geom = footprint_geometry(payload)
    loc = payload.get("location") or {}
    rings = _outer_rings(geom)
    # beyond ~19,000 km the grown area wraps round the Earth (an azimuthal projection's edge): a circle
    # of that radius holds every place as well
    if not rings or "lon" not in loc or "lat" not in loc or distance_m >= HALF_EARTH_M:
        circle = footprint_radius(payload, distance_m)
        return ((circle,) if circle else ()), ()
    import pyproj
    import shapely

    try:
        area = _grown_area(rings, float(loc["lon"]), float(loc["lat"]), float(distance_m))
    except (ValueError, TypeError, shapely.errors.GEOSException, pyproj.exceptions.ProjError) as exc:
        log.debug("exclusion about %s fell back to a circle: %s", loc, exc)  # a degenerate shape: the circle holds it
        area = None
    if area is None:
        circle = footprint_radius(payload, distance_m)
        return ((circle,) if circle else ()), ()
    return (), tuple(ext for ext, _ in area.polygons)


#: Earth's mean radius, metres (the densifying bound below).
EARTH_RADIUS_M = 6_371_008.8


def _chord_step(grown: Any, lat0: float, tol: float) -> float:
    """Metres an edge of ``grown`` (aeqd about latitude ``lat0``) may run between vertices so that
    its lon/lat chord strays under ``tol`` / 4 from the edge's true image: a line bends in the
    lon/lat plane by ~(tan(lat) + r/R)/R (meridians converging; an aeqd line off its centre), so a
    chord of length L strays ~L²·that/8.  Near a pole this is smaller than 1/512 of the extent, which
    is then kept (:func:`rsir_stac.reproject.aeqd_geometries_to_lonlat` takes the larger); at middle
    latitudes it spares a tile's exclusion ~1,400 vertices, each of which every candidate is tested
    against."""
    w, s, e, n = grown.bounds
    reach = float(max(abs(w), abs(e), abs(s), abs(n))) * math.sqrt(2.0)  # farthest vertex from the centre
    lat = min(89.9999, abs(float(lat0)) + math.degrees(reach / EARTH_RADIUS_M))
    bend = (1.0 + math.tan(math.radians(lat)) + reach / EARTH_RADIUS_M) / EARTH_RADIUS_M
    return 0.5 * math.sqrt(8.0 * tol / bend)


def _grown_area(rings: list, lon0: float, lat0: float, distance_m: float) -> Any:
    """The lon/lat :class:`~rsir_stac.store.areas.GeoArea` within ``distance_m`` of the footprint
    ``rings`` (lon/lat, each within ±180), grown about (``lon0``, ``lat0``); None when it is empty."""
    from shapely.geometry import Polygon
    from shapely.ops import transform, unary_union

    from rsir_stac.reproject import aeqd_geometries_to_lonlat, aeqd_transformers
    from rsir_stac.store.areas import GeoArea

    to_aeqd, _ = aeqd_transformers(lon0, lat0)
    parts = [transform(to_aeqd.transform, Polygon([(float(x), float(y)) for x, y in ring])).buffer(0)
             for ring in rings]
    # segments per quarter circle so that a chord strays at most max(1 m, 1e-5 of the distance) inside
    # the true distance (16 kept 3 tiles 1,000 km off a polar example that were within it)
    tol = max(1.0, 1e-5 * distance_m)
    quad = int(min(512, max(16, math.ceil(math.pi * math.sqrt(distance_m / (8.0 * tol))))))
    grown = unary_union(parts).buffer(distance_m, quad)
    if grown.is_empty:
        return None
    (lonlat,) = aeqd_geometries_to_lonlat([grown], lon0, lat0, "the exclusion around the example",
                                          step=_chord_step(grown, lat0, tol))
    out = []
    for poly in getattr(lonlat, "geoms", [lonlat]):
        ring = [(min(180.0, max(-180.0, x)), min(90.0, max(-90.0, y))) for x, y in poly.exterior.coords]
        out.extend(GeoArea.from_rings(ring, (), "the exclusion around the example", close=True).polygons)
    return GeoArea(tuple(out)) if out else None


def _outer_rings(geom: dict | None) -> list:
    """The outer rings of a GeoJSON Polygon or MultiPolygon footprint (empty for anything else)."""
    if not geom:
        return []
    if geom.get("type") == "Polygon":
        return [geom["coordinates"][0]]
    if geom.get("type") == "MultiPolygon":
        return [poly[0] for poly in geom["coordinates"] if poly]
    return []


def footprint_radius(payload: dict, distance_m: float) -> tuple[float, float, float] | None:
    """``(lon, lat, radius_m)`` covering tiles whose centre is within ``distance_m`` of a
    tile footprint: its centroid plus the footprint's half-diagonal.  None without a location."""
    from rsir_stac.store.filters import haversine_m

    loc = payload.get("location") or {}
    try:
        lon, lat = float(loc["lon"]), float(loc["lat"])
        _check_lonlat(lon, lat, "query location")
    except (KeyError, TypeError, ValueError):
        return None
    half = 0.0
    bbox = payload.get("bbox")
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
        w, s, e, n = (float(x) for x in bbox)
        half = float(haversine_m(w, s, e, n)) / 2.0
    return lon, lat, float(distance_m) + half


__all__ = ["EARTH_RADIUS_M", "HALF_EARTH_M", "Exclusion", "footprint_exclusion", "footprint_radius"]
