"""Search areas: any GeoJSON area (Polygon with holes, MultiPolygon, Feature,
FeatureCollection) as a validated :class:`GeoArea`, right at the antimeridian.

A :class:`GeoArea` is a union of polygons, each an exterior ring and zero or
more holes, in lon/lat degrees (EPSG:4326).  A tile matches when its centre
lies inside one polygon and outside that polygon's holes; the area is closed:
a centre on an edge (exterior or hole) matches, and a centre at a pole matches
an area reaching that pole (within
:data:`~rsir_stac.store.engine_filters.EDGE_TOL`; Qdrant's own ``geo_polygon`` is
open, see :func:`~rsir_stac.store.engine_filters.polygon_area`).

Antimeridian: as in RFC 7946 and the ``antimeridian`` package used by STAC
tools, a ring edge whose longitudes differ by more than 180 degrees is taken
to cross the antimeridian (the short way round), and the polygon is cut
there into parts on either side, so ``[[179,-17],[-179,-17],[-179,-16],
[179,-16],[179,-17]]`` is a 2-degree box around 180, not a 358-degree one.
A ring with an edge from -180 to 180 runs along the map's edge instead (a world
box, a polar cap, Natural Earth's Antarctica) and is read as drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsir_stac.errors import InputError

Ring = tuple[tuple[float, float], ...]
Polygon = tuple[Ring, tuple[Ring, ...]]  # exterior, holes


def _finite_lonlat(lon: float, lat: float, what: str) -> None:
    if not (np.isfinite(lon) and np.isfinite(lat)):
        raise InputError(f"{what} has a non-finite position ({lon}, {lat}); give plain decimal degrees")
    if not -180.0 <= lon <= 180.0:
        if -540.0 <= lon <= 540.0:  # degrees, counted past 180 (a 0..360 grid, an unwrapped web map)
            raise InputError(f"{what}: longitude {lon} is outside -180..180; give it as {(lon + 180.0) % 360.0 - 180.0:g} "
                             "(an area across 180 may jump from e.g. 170 to -170: each edge is read the short way round)")
        raise InputError(f"{what}: longitude {lon} is outside -180..180; give lon/lat in degrees (EPSG:4326)")
    if not -90.0 <= lat <= 90.0:
        raise InputError(f"{what}: latitude {lat} is outside -90..90; give lon/lat in degrees (EPSG:4326)")


def check_ring(ring: Sequence[Sequence[float]], what: str, *, close: bool = False) -> Ring:
    """A closed ring of at least 4 (lon, lat) positions within ±180/±90;
    ``close=True`` repeats the first position at the end when it is missing."""
    try:
        pts = tuple((float(p[0]), float(p[1])) for p in ring)
    except (TypeError, ValueError, IndexError):
        raise InputError(f"{what} has a bad position; positions are [lon, lat] numbers") from None
    if close and len(pts) >= 3 and pts[0] != pts[-1]:
        pts = pts + pts[:1]
    if len(pts) < 4:
        raise InputError(
            f"{what} ring has {len(pts)} positions; a closed polygon ring needs at least 4 "
            "(first position repeated at the end)"
        )
    for lon, lat in pts:
        _finite_lonlat(lon, lat, what)
    if pts[0] != pts[-1]:
        raise InputError(f"{what} ring is not closed: first {pts[0]} != last {pts[-1]}; repeat the first position at the end")
    return pts


def _on_map_edge(ring: Ring) -> bool:
    """Whether the ring runs along the map's edge: an edge between longitude -180 and 180
    (a world box, a polar cap, Natural Earth's Antarctica).  Such a ring is read as drawn on
    the map, not as crossing the antimeridian the short way."""
    lon = np.asarray(ring, dtype=np.float64)[:, 0]
    a, b = lon[:-1], lon[1:]
    return bool(np.any((np.abs(a) == 180.0) & (np.abs(b) == 180.0) & (a != b)))


def _unwrap(ring: Ring, near: float | None = None) -> np.ndarray:
    """Ring longitudes unwrapped (no jump over 180), shifted by whole turns to start near ``near``;
    a ring along the map's edge (:func:`_on_map_edge`) as it is."""
    xy = np.asarray(ring, dtype=np.float64)
    if _on_map_edge(ring):
        return xy
    lon = xy[:, 0].copy()
    # whole turns only: the unwrapped sum of differences drifts by ~1e-14, which can leave
    # the ring unclosed or kinked (shapely: "Ring Self-intersection")
    xy[:, 0] = lon + 360.0 * np.round((np.unwrap(lon, period=360.0) - lon) / 360.0)
    if near is not None:
        xy[:, 0] += 360.0 * round((near - xy[0, 0]) / 360.0)
    return xy


def _wide_edge(ring: Ring) -> tuple[float, float] | None:
    """The first edge of ``ring`` whose longitudes differ by more than 180 degrees (read as crossing the
    antimeridian), as its two longitudes; None when none does or the ring runs along the map's edge."""
    if _on_map_edge(ring):
        return None
    for (a, _), (b, _) in zip(ring[:-1], ring[1:]):
        if abs(float(b) - float(a)) > 180.0:
            return float(a), float(b)
    return None


def _split(exterior: Ring, holes: tuple[Ring, ...], what: str) -> list[Polygon]:
    """One polygon, validated, cut at the antimeridian into parts within ±180."""
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.geometry import box
    from shapely.validation import explain_validity

    ext = _unwrap(exterior)
    if abs(ext[-1, 0] - ext[0, 0]) >= 180.0:  # read the short way round, its edges circle a pole
        pole = "north" if float(ext[:, 1].mean()) > 0 else "south"
        lat = float(ext[:, 1].max() if pole == "south" else ext[:, 1].min())
        edge = 90 if pole == "north" else -90
        raise InputError(
            f"{what} goes round the {pole} pole (each edge is read the short way round, so the ring does not close "
            f"on itself); give a cap round a pole along the map's edge, e.g. [[-180, {lat:g}], [180, {lat:g}], "
            f"[180, {edge}], [-180, {edge}], [-180, {lat:g}]], or --bbox=-180,{min(lat, edge):g},180,{max(lat, edge):g}")
    inner = [_unwrap(h, near=float(ext[:, 0].mean())) for h in holes]
    poly = ShapelyPolygon(ext, inner)
    if not poly.is_valid:
        raise InputError(f"{what} is not a valid polygon ({explain_validity(poly)}); fix self-intersections "
                         "and keep holes inside the outer ring")
    if poly.area == 0:
        raise InputError(f"{what} has zero area; give at least three distinct corners")
    lo, hi = float(ext[:, 0].min()), float(ext[:, 0].max())
    if hi - lo >= 360.0 and not (lo >= -180.0 and hi <= 180.0):  # -180..180 itself: the whole map
        raise InputError(f"{what} spans {hi - lo:g} degrees of longitude; give an area less than 360 degrees wide")
    if lo >= -180.0 and hi <= 180.0:
        return [(exterior, holes)]
    parts: list[Polygon] = []
    for turn in (-360.0, 0.0, 360.0):  # the pieces in each copy of -180..180
        piece = poly.intersection(box(-180.0 + turn, -90.0, 180.0 + turn, 90.0))
        for g in getattr(piece, "geoms", [piece]):
            if g.geom_type != "Polygon" or g.is_empty or g.area == 0:
                continue
            ring = tuple((float(x) - turn, float(y)) for x, y in g.exterior.coords)
            rings = tuple(tuple((float(x) - turn, float(y)) for x, y in h.coords) for h in g.interiors)
            parts.append((ring, rings))
    return parts


@dataclass(frozen=True)
class GeoArea:
    """A union of polygons with holes (lon/lat degrees), each within ±180."""

    polygons: tuple[Polygon, ...]
    #: The first ring edge (its two longitudes) read as crossing the antimeridian, when one was: a note can
    #: say why an area drawn the long way round (-100 to 100) holds none of the tiles between
    crossing: tuple[float, float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.polygons:
            raise InputError("the search area holds no polygon; give a Polygon or MultiPolygon")

    @classmethod
    def from_rings(cls, exterior: Sequence[Sequence[float]], holes: Sequence[Sequence[Sequence[float]]] = (),
                   what: str = "polygon", *, close: bool = False) -> GeoArea:
        """One polygon from its exterior ring and holes (validated, cut at 180)."""
        ext = check_ring(exterior, what, close=close)
        inner = tuple(check_ring(h, f"{what} hole {i + 1}", close=close) for i, h in enumerate(holes))
        return cls(tuple(_split(ext, inner, what)), _wide_edge(ext))

    @classmethod
    def from_geojson(cls, doc: Any, what: str = "polygon") -> GeoArea:
        """The area of a GeoJSON Polygon, MultiPolygon, GeometryCollection of
        them, Feature or FeatureCollection (the union of all its features)."""
        polys: list[Polygon] = []
        crossing = None
        for coords, where in _polygon_coords(doc, what):
            if not isinstance(coords, list) or not coords:
                raise InputError(f"{where} has no coordinates; give a GeoJSON Polygon with rings of [lon, lat]")
            rings = []
            for ring in coords:
                if not isinstance(ring, list) or not all(
                        isinstance(p, list) and len(p) >= 2
                        and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p[:2])
                        for p in ring):
                    raise InputError(f"{where} has a bad position in {str(ring)[:60]}; positions are [lon, lat]")
                rings.append(ring)
            one = cls.from_rings(rings[0], rings[1:], where)
            polys.extend(one.polygons)
            crossing = crossing or one.crossing
        return cls(tuple(polys), crossing)

    def contains(self, lon: float, lat: float) -> bool:
        """Inside one polygon and outside its holes; edges are inside (the area is closed,
        as the search filters: :func:`~rsir_stac.store.engine_filters.polygon_area`)."""
        from rsir_stac.store.engine_filters import polygon_area

        return bool(polygon_area(self).mask(lon, lat))

    def to_geojson(self) -> dict[str, Any]:
        """The area as a GeoJSON Polygon or MultiPolygon."""
        polys = [[[list(p) for p in ext]] + [[list(p) for p in h] for h in holes] for ext, holes in self.polygons]
        if len(polys) == 1:
            return {"type": "Polygon", "coordinates": polys[0]}
        return {"type": "MultiPolygon", "coordinates": polys}


def _polygon_coords(doc: Any, what: str) -> list[tuple[Any, str]]:
    """(polygon coordinates, name for messages) of every polygon in a GeoJSON object."""
    if doc is None and what.split()[-2:-1] == ["feature"]:
        raise InputError(f"{what} has no geometry (null); give it a Polygon or MultiPolygon, or remove the feature")
    if not isinstance(doc, Mapping):
        raise InputError(f"{what} is not a GeoJSON object; give a Polygon, MultiPolygon, Feature or FeatureCollection")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list) or not feats:
            raise InputError(f"{what} is a FeatureCollection with no features; give at least one polygon")
        out = []
        for i, f in enumerate(feats):
            out.extend(_polygon_coords(f, f"{what} feature {i + 1}"))
        return out
    if kind == "Feature":
        if doc.get("geometry") is None and what.split()[-2:-1] != ["feature"]:  # (a collection's: below)
            raise InputError(f"{what} is a Feature with no geometry (\"geometry\": null); give it a Polygon "
                             "or MultiPolygon")
        return _polygon_coords(doc.get("geometry"), what)
    if kind == "GeometryCollection":
        out = []
        for i, g in enumerate(doc.get("geometries") or []):
            out.extend(_polygon_coords(g, f"{what} geometry {i + 1}"))
        if not out:
            raise InputError(f"{what} is an empty GeometryCollection; give at least one polygon")
        return out
    if kind == "MultiPolygon":
        polys = doc.get("coordinates")
        if not isinstance(polys, list) or not polys:
            raise InputError(f"{what} is a MultiPolygon with no polygons; give at least one")
        return [(p, f"{what} polygon {i + 1}") for i, p in enumerate(polys)]
    if kind == "Polygon":
        return [(doc.get("coordinates"), what)]
    if kind is None:
        raise InputError(f"{what} has no GeoJSON \"type\"; give a Polygon, MultiPolygon, Feature or FeatureCollection")
    raise InputError(f"{what} holds a {kind!r}, not a Polygon or MultiPolygon; give a GeoJSON area")


def _in_ring(lon: float, lat: float, ring: Ring, *, edge: bool = False) -> bool:
    """Even-odd point-in-polygon; a point on an edge counts as ``edge``."""
    pts = np.asarray(ring[:-1] if ring[0] == ring[-1] else ring, dtype=np.float64)
    xi, yi = pts[:, 0], pts[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    on_edge = (
        (lat * (xi - xj) + yi * (xj - lon) + yj * (lon - xi) == 0)
        & ((xi - lon) * (xj - lon) <= 0)
        & ((yi - lat) * (yj - lat) <= 0)
    )
    if on_edge.any():
        return edge
    with np.errstate(divide="ignore", invalid="ignore"):
        crosses = ((yi > lat) != (yj > lat)) & (lon < (xj - xi) * (lat - yi) / (yj - yi) + xi)
    return bool(np.count_nonzero(crosses) % 2)


__all__ = ["GeoArea", "Ring", "check_ring"]
