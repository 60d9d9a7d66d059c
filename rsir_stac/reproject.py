"""Vector geometries from a GIS's CRS to lon/lat (EPSG:4326) as areas: edges densified, poles kept.

Reprojecting a polygon's vertices alone turns each straight edge of its own CRS into a straight
lon/lat chord between the reprojected corners: a 200 km box drawn in UTM moves ~0.9 km at its
edges, a 1,000 km polar-stereographic one ~80 km.  Edges are therefore densified in the source
CRS first (``shapely.segmentize``, as ``rasterio.warp.transform_bounds`` densifies a box's edges),
to at most 1/:data:`DENSIFY_PARTS` of the geometry's extent.  A ring that winds once around a
pole (an area drawn in EPSG:3413 or 3031 that holds the pole) becomes a polar cap in lon/lat: cut
at the antimeridian and closed along the map's edge and the pole's latitude, as
:class:`rsir_stac.store.areas.GeoArea` reads such a ring; a vertex on a pole becomes the stretch of
latitude ±90 between its neighbours' longitudes.  Rings that cross the antimeridian otherwise are
left as jumps over 180, which :class:`~rsir_stac.store.areas.GeoArea` cuts there (RFC 7946).

Densifying is for the edges that curve in lon/lat; along the rest the added vertices lie on the
straight lon/lat chord between their neighbours.  Those are taken out again after reprojecting
(Douglas-Peucker, ``shapely.simplify``, within :data:`SIMPLIFY_DEG`), so that a 1.5 km box saved in
UTM is not 1,400 vertices, more than the HTTP service takes (``api.params.MAX_POLYGON_VERTICES``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rsir_stac.errors import InputError

#: A geometry's edges are cut to at most its extent (bounds' diagonal) / this many parts before
#: reprojecting: a chord of 1/512 of a 1,000 km box strays < 1 m from the true edge.
DENSIFY_PARTS = 512

#: Vertices within this many degrees (about 1 cm) of the straight lon/lat line through their
#: neighbours are dropped after reprojecting (module doc).
SIMPLIFY_DEG = 1e-7

_POLE_TOL = 1e-9  # degrees from ±90 taken as on the pole


def geometries_to_lonlat(geoms: Any, crs: Any, what: str) -> list:
    """``geoms`` (shapely geometries in ``crs``, a pyproj-readable CRS) in lon/lat degrees, as shapely
    geometries: polygons and lines densified first in a projected CRS, rings around a pole made polar
    caps (module doc).  Points are reprojected as they are.  Raises InputError naming ``what`` for an
    invalid polygon (a self-intersecting ring, checked before densifying, which would re-node it) and
    for a ring that winds around a pole but crosses the antimeridian several times (not read as a cap)."""
    import pyproj

    src = pyproj.CRS.from_user_input(crs)
    fwd = pyproj.Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    back = pyproj.Transformer.from_crs("EPSG:4326", src, always_xy=True)
    projected = not src.is_geographic
    out = [None if g is None else _to_lonlat(g, fwd, back, projected, what) for g in geoms]
    # the vertices densifying put on edges that stayed straight in lon/lat taken out again (module doc)
    return [simplify_area(g, SIMPLIFY_DEG) for g in out] if projected else out


def simplify_area(geom: Any, tolerance: float) -> Any:
    """A lon/lat area (shapely Polygon or MultiPolygon, as :func:`geometries_to_lonlat` makes them: a
    ring may cross the antimeridian, a polar cap runs along ±90) with the vertices within ``tolerance``
    degrees of the line through their neighbours taken out (Douglas-Peucker, ring by ring:
    :func:`_simpler_ring`).  Other geometries are returned as they are, and so is ``geom`` when it was
    valid and the result is not."""
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        return geom
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    out = [Polygon(_simpler_ring(p.exterior.coords, tolerance), [_simpler_ring(h.coords, tolerance)
                                                                   for h in p.interiors]) for p in polys]
    simple = out[0] if geom.geom_type == "Polygon" else MultiPolygon(out)
    return geom if geom.is_valid and not simple.is_valid else simple


def _simpler_ring(coords: Any, tolerance: float) -> np.ndarray:
    """One lon/lat ring (N×2, closed) without its vertices within ``tolerance`` degrees of straight runs.
    A ring crossing the antimeridian is simplified with its longitudes made continuous and then put back
    in -180..180 (the jumps :class:`~rsir_stac.store.areas.GeoArea` cuts at come back where they were); a
    ring with vertices on a pole (a polar cap, or the pole on its edge: :func:`_widen_poles`) keeps
    those, whose steps along ±90 say which way round the pole the area lies, and only the runs between
    them are simplified; a ring that still winds around a pole is kept whole."""
    import shapely
    from shapely.geometry import LinearRing

    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    if np.any(np.abs(xy[:, 1]) >= 90.0 - _POLE_TOL):
        return _simpler_between_poles(xy, tolerance)
    lon = xy[0, 0] + np.concatenate([[0.0], np.cumsum(_wrap(np.diff(xy[:, 0])))])
    if abs(lon[-1] - lon[0]) > 1e-9:
        return xy
    simple = np.asarray(shapely.simplify(LinearRing(np.column_stack([lon, xy[:, 1]])), tolerance,
                                         preserve_topology=True).coords)
    if len(simple) < 4:
        return xy
    back = (simple[:, 0] + 180.0) % 360.0 - 180.0
    simple[:, 0] = np.where((back == -180.0) & (simple[:, 0] > 0), 180.0, back)
    return simple


def _simpler_between_poles(xy: np.ndarray, tolerance: float) -> np.ndarray:
    """A closed lon/lat ring with its vertices on ±90 kept and each run between two of them simplified
    (Douglas-Peucker, the run's ends kept)."""
    from shapely.geometry import LineString

    ring = xy[:-1]
    on = np.abs(ring[:, 1]) >= 90.0 - _POLE_TOL
    first = int(np.flatnonzero(on)[0])
    ring, on = np.roll(ring, -first, axis=0), np.roll(on, -first)
    closed = np.vstack([ring, ring[:1]])
    kept = [*np.flatnonzero(on).tolist(), len(ring)]
    out: list = []
    for a, b in zip(kept[:-1], kept[1:]):
        run = closed[a:b + 1]
        if b - a > 1:
            run = np.asarray(LineString(run).simplify(tolerance, preserve_topology=False).coords)
        out.extend(run[:-1])
    return np.asarray(out + out[:1])


class _Inverse:
    """The inverse direction of a PROJ pipeline, with a Transformer's ``transform`` call."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline

    def transform(self, x: Any, y: Any, errcheck: bool = False) -> Any:
        from pyproj.enums import TransformDirection

        return self._pipeline.transform(x, y, errcheck=errcheck, direction=TransformDirection.INVERSE)


def aeqd_transformers(lon0: float, lat0: float) -> tuple[Any, Any]:
    """``(to_aeqd, to_lonlat)``: the azimuthal equidistant projection about (``lon0``, ``lat0``)
    degrees on WGS84, in metres, both ways, each with a ``transform(x, y)`` call.  A PROJ pipeline
    (~0.06 ms to build) gives the same numbers as ``Transformer.from_crs("EPSG:4326",
    "+proj=aeqd ...", always_xy=True)`` (~6 ms: that looks both CRSs up in PROJ's database)."""
    import pyproj

    pipe = pyproj.Transformer.from_pipeline(
        f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=aeqd +lat_0={float(lat0)!r} +lon_0={float(lon0)!r} +ellps=WGS84")
    return pipe, _Inverse(pipe)


def aeqd_geometries_to_lonlat(geoms: Any, lon0: float, lat0: float, what: str, *,
                              step: float | None = None) -> list:
    """:func:`geometries_to_lonlat` of ``geoms`` in the azimuthal equidistant projection of
    :func:`aeqd_transformers` about (``lon0``, ``lat0``), without building a CRS.  ``step``
    (metres): edges are cut to the larger of it and 1/:data:`DENSIFY_PARTS` of the extent."""
    back, fwd = aeqd_transformers(lon0, lat0)
    densify: Any = float(step) if step else True
    return [None if g is None else _to_lonlat(g, fwd, back, densify, what) for g in geoms]


def _to_lonlat(geom: Any, fwd: Any, back: Any, densify: bool, what: str) -> Any:
    import shapely
    from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Polygon

    if geom.is_empty:
        return geom
    if geom.geom_type in ("Polygon", "MultiPolygon") and not geom.is_valid:
        from shapely.validation import explain_validity

        # refused here, in its own CRS: densifying re-nodes a bow-tie into one valid lobe, silently
        raise InputError(f"{what} holds a polygon that is not valid in its own CRS ({explain_validity(geom)}); fix "
                         "self-intersections and keep holes inside the outer ring (QGIS: Vector > Geometry Tools > "
                         "Check Validity, or Fix Geometries)")
    if densify and geom.geom_type not in ("Point", "MultiPoint"):
        w, s, e, n = geom.bounds
        step = float(np.hypot(e - w, n - s)) / DENSIFY_PARTS
        if not isinstance(densify, bool):  # a step the caller has bounded the error of (never finer)
            step = max(step, float(densify))
        if step > 0:
            geom = shapely.segmentize(geom, step)
    kind = geom.geom_type
    if kind == "Polygon":
        poles = _poles_inside(geom, back)
        geom = _pole_vertices(geom, back, poles)

        def inside(lon: float, lat: float) -> bool:
            from shapely.geometry import Point

            return bool(geom.covers(Point(*back.transform(lon, lat))))

        ext = _ring(geom.exterior.coords, fwd, poles, inside, what)
        return Polygon(ext, [_ring(h.coords, fwd, poles, inside, what) for h in geom.interiors])
    if kind == "MultiPolygon":
        return MultiPolygon([_to_lonlat(p, fwd, back, False, what) for p in geom.geoms])
    if kind == "GeometryCollection":
        return GeometryCollection([_to_lonlat(g, fwd, back, False, what) for g in geom.geoms])
    if kind == "LineString":
        x, y = fwd.transform(*np.asarray(geom.coords, dtype=np.float64)[:, :2].T)
        return LineString(np.column_stack([x, y]))
    return shapely.transform(geom, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))


def _poles_inside(poly: Any, back: Any) -> dict[float, bool]:
    """{90: whether ``poly`` (source CRS) holds the North Pole, -90: the South Pole}; a pole the
    CRS cannot place (e.g. UTM) is not held."""
    from shapely.geometry import Point

    out = {}
    for lat in (90.0, -90.0):
        try:
            x, y = back.transform(0.0, lat, errcheck=True)
            out[lat] = bool(np.isfinite(x) and np.isfinite(y) and poly.covers(Point(x, y)))
        except Exception:  # noqa: BLE001 - pyproj's ProjError: the pole is outside the projection's domain
            out[lat] = False
    return out


def _pole_vertices(poly: Any, back: Any, poles: dict[float, bool]) -> Any:
    """``poly`` with a vertex where its boundary passes through a pole it covers (an edge through
    the pole has no lon/lat image but the pole's stretch of latitude, :func:`_widen_poles`)."""
    from shapely.geometry import LinearRing, LineString, Point, Polygon

    for lat, held in poles.items():
        if not held:
            continue
        pole = Point(*back.transform(0.0, lat))
        tol = 1e-9 * max(1.0, float(np.hypot(poly.bounds[2] - poly.bounds[0], poly.bounds[3] - poly.bounds[1])))
        rings = [poly.exterior, *poly.interiors]
        for k, ring in enumerate(rings):
            if ring.distance(pole) > tol:
                continue
            xy = [tuple(c[:2]) for c in ring.coords]
            if any(Point(c).distance(pole) <= tol for c in xy):
                continue
            i = min(range(len(xy) - 1), key=lambda j: LineString([xy[j], xy[j + 1]]).distance(pole))
            rings[k] = LinearRing(xy[:i + 1] + [(pole.x, pole.y)] + xy[i + 1:])
        poly = Polygon(rings[0], rings[1:])
    return poly


def _ring(coords: Any, fwd: Any, poles: dict[float, bool], inside: Any, what: str) -> list[tuple[float, float]]:
    """One ring in lon/lat: vertices on a pole widened to the stretch of ±90 between their
    neighbours' longitudes (on the side ``inside(lon, lat)`` says the polygon lies), and a ring
    winding once around a pole closed as a polar cap."""
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    lon, lat = (np.asarray(v, dtype=np.float64) for v in fwd.transform(xy[:, 0], xy[:, 1]))
    pts = _widen_poles(list(zip(lon.tolist(), lat.tolist())), inside)
    if len(pts) < 4:
        return pts
    lons = np.array([p[0] for p in pts])
    turns = float(np.sum(_wrap(np.diff(lons)))) / 360.0
    if abs(turns) < 0.5:
        return pts
    pole = 90.0 if poles.get(90.0) or (not poles.get(-90.0) and np.mean([p[1] for p in pts]) > 0) else -90.0
    return _cap(pts, pole, what)


def _wrap(d: np.ndarray) -> np.ndarray:
    """Longitude differences the short way round, in (-180, 180]."""
    return (d + 180.0) % 360.0 - 180.0


def _widen_poles(pts: list[tuple[float, float]], inside: Any) -> list[tuple[float, float]]:
    """A vertex on a pole (its longitude is arbitrary) replaced by the stretch of latitude ±90
    from the previous vertex's longitude to the next one's, the way round that ``inside`` (lon,
    lat -> bool) says the polygon lies, in steps under 90 degrees: in lon/lat the pole is the
    whole top (or bottom) edge of the map."""
    if not any(abs(abs(lat) - 90.0) < _POLE_TOL for _, lat in pts):
        return pts
    ring = pts[:-1]  # open; closed again below
    n = len(ring)
    out: list[tuple[float, float]] = []
    for i, (lon, lat) in enumerate(ring):
        if abs(abs(lat) - 90.0) >= _POLE_TOL:
            out.append((lon, lat))
            continue
        pole = 90.0 if lat > 0 else -90.0
        prev = next((ring[(i - k) % n] for k in range(1, n) if abs(abs(ring[(i - k) % n][1]) - 90) >= _POLE_TOL),
                    None)
        nxt = next((ring[(i + k) % n] for k in range(1, n) if abs(abs(ring[(i + k) % n][1]) - 90) >= _POLE_TOL),
                   None)
        if prev is None or nxt is None:
            continue
        out += _pole_arc(prev[0], nxt[0], pole, inside)
    return out + out[:1]


def _pole_arc(a: float, b: float, pole: float, inside: Any) -> list[tuple[float, float]]:
    """Points along latitude ``pole`` from longitude ``a`` to ``b``, eastward or westward, whichever
    way the polygon lies next to the pole (tested half way, just off the pole), each step < 90
    degrees (so that no step reads as crossing the antimeridian)."""
    east = (b - a) % 360.0 or 360.0
    span = east if inside(_lon(a + east / 2), pole - np.sign(pole) * 1e-6) else east - 360.0
    steps = max(1, int(np.ceil(abs(span) / 80.0)))
    return [(_lon(a + span * k / steps), pole) for k in range(steps + 1)]


def _lon(x: float) -> float:
    """A longitude in -180..180 (180 kept as 180)."""
    y = (x + 180.0) % 360.0 - 180.0
    return 180.0 if y == -180.0 and x > 0 else y


def _cap(pts: list[tuple[float, float]], pole: float, what: str) -> list[tuple[float, float]]:
    """A ring that winds once around ``pole`` (±90) as a polar cap: opened where it crosses the
    antimeridian, run from longitude -180 to 180 and closed along the map's edge through the pole."""
    ring = pts[:-1]
    lons = np.array([p[0] for p in ring])
    jumps = [i for i in range(len(ring)) if abs(lons[(i + 1) % len(ring)] - lons[i]) > 180.0]
    if len(jumps) != 1:
        raise InputError(f"{what} winds around the pole and crosses the antimeridian {len(jumps)} times; save it "
                         "in lon/lat (EPSG:4326) as a polar cap, e.g. a ring from -180 to 180 closed along "
                         "latitude ±90")
    i = jumps[0]
    seq = ring[i + 1:] + ring[:i + 1]  # from just after the crossing round to just before it
    (la, pa), (lb, pb) = ring[i], ring[(i + 1) % len(ring)]
    # the latitude where the edge a -> b meets the antimeridian (lb' = lb moved to a's side)
    lb_side = lb + 360.0 if la > 0 else lb - 360.0
    edge = 180.0 if la > 0 else -180.0
    t = (edge - la) / (lb_side - la) if lb_side != la else 0.0  # a on the antimeridian itself: it is the crossing
    cross = pa + t * (pb - pa)
    start, end = (-edge, cross), (edge, cross)  # seq runs from -edge's side round to edge's side
    out = [start] + [tuple(p) for p in seq] + [end, (edge, pole), (-edge, pole), start]
    return out


__all__ = ["DENSIFY_PARTS", "SIMPLIFY_DEG", "aeqd_geometries_to_lonlat", "aeqd_transformers", "geometries_to_lonlat",
           "simplify_area"]
