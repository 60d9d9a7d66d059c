"""Pixel size in metres and lon/lat footprints of tiles, right at the antimeridian.

Footprint of a tile (:func:`tile_footprints`): its four corners (UL, UR, LR,
LL) and its centre go through the dataset transform and CRS to lon/lat
(EPSG:4326, x=lon, y=lat).  Its bbox is the lon/lat bounds of the tile's
outline densified with :data:`DENSIFY_PTS` points per edge -- exactly what
``rasterio.warp.transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)``
gives for a north-up tile -- and, as in RFC 7946 section 5.2 and STAC, a
tile that crosses the antimeridian has ``west > east`` (e.g. ``179.99,
-16.5, -179.99, -16.4``).  A tile around a pole spans ``-180..180``.

Unions of bboxes (:func:`union_bounds`, the index extent) take the shortest
longitude interval covering them all, so an index on both sides of 180 has
an extent with ``west > east`` rather than a global one.
:func:`footprint_geometry` writes a footprint as GeoJSON, split into a
MultiPolygon at the antimeridian (RFC 7946 section 3.1.9).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyproj import Geod
from rasterio.warp import transform as warp_transform

from rsir_stac.errors import RasterError
from rsir_stac.tiling.sources import shown_name

_GEOD = Geod(ellps="WGS84")

Corner = tuple[float, float]
BBox = tuple[float, float, float, float]

#: Points added on each edge of a tile outline for its bbox (as ``transform_bounds``).
DENSIFY_PTS = 21


def _is_mercator(crs: Any) -> bool:
    try:
        from pyproj import CRS as ProjCRS

        op = ProjCRS.from_user_input(crs.to_wkt()).coordinate_operation
    except Exception:  # noqa: BLE001 - unusual CRS: treat as plain projected
        return False
    method = (op.method_name if op is not None else "").lower()
    return "mercator" in method and "transverse" not in method


def crs_label(crs: Any) -> str:
    """A CRS in a few words for a message: ``EPSG:n``, else its PROJ string when short, else its
    name (a custom CRS's WKT runs to a kilobyte)."""
    try:
        from pyproj import CRS as ProjCRS

        c = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        code = c.to_epsg(min_confidence=90)
        if code:
            return f"EPSG:{code}"
        import warnings

        with warnings.catch_warnings():  # "You will likely lose important projection information"
            warnings.simplefilter("ignore", UserWarning)
            proj4 = " ".join((c.to_proj4() or "").split())
        return proj4 if proj4 and len(proj4) <= 120 else f"'{c.name}'"
    except Exception:  # noqa: BLE001 - whatever PROJ makes of it, a message still needs words
        text = str(crs)
        return text if len(text) <= 120 else text[:117] + "..."


def native_pixel_size(ds: Any) -> tuple[float, float]:
    """Pixel width and height in metres (see the module docstring)."""
    t = ds.transform
    px = math.hypot(t.a, t.d)
    py = math.hypot(t.b, t.e)
    crs = ds.crs
    if crs.is_projected and not _is_mercator(crs):
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # noqa: BLE001 - unknown unit: fall back to geodesic
            factor = 0.0
        if factor > 0:
            return px * factor, py * factor
    cc, cr = ds.width / 2.0, ds.height / 2.0
    cols = np.array([cc, cc + 1.0, cc])
    rows = np.array([cr, cr, cr + 1.0])
    xs = t.a * cols + t.b * rows + t.c
    ys = t.d * cols + t.e * rows + t.f
    lon, lat = warp_transform(crs, "EPSG:4326", xs.tolist(), ys.tolist())
    _, _, dx = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = _GEOD.inv(lon[0], lat[0], lon[2], lat[2])
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx <= 0 or dy <= 0:
        if crs.is_geographic and not (abs(xs[0]) <= 360.0 and abs(ys[0]) <= 90.0):
            raise RasterError(f"{shown_name(ds)}: its centre ({xs[0]:.6g}, {ys[0]:.6g}) is not a longitude and latitude, "
                              f"yet its CRS {crs.to_string()} is geographic: the CRS is probably wrong (projected "
                              "coordinates); assign the right one, e.g. gdal_edit.py -a_srs EPSG:32633 FILE")
        raise RasterError(f"{shown_name(ds)}: cannot compute the pixel size in metres at the scene centre; check its CRS and geotransform")
    return float(dx), float(dy)


def _outline(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray,
             densify: int = DENSIFY_PTS) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows of each window's outline, ``(k, 4 * (densify + 1))``,
    clockwise from UL: top, right, bottom, left edge; corners at multiples of
    ``densify + 1``."""
    t = np.linspace(0.0, 1.0, densify + 2)[:-1]
    x0, y0, x1, y1 = (v[:, None] for v in (x0, y0, x1, y1))
    cols = np.concatenate([x0 + (x1 - x0) * t, np.broadcast_to(x1, (len(x1), len(t))),
                           x1 + (x0 - x1) * t, np.broadcast_to(x0, (len(x0), len(t)))], axis=1)
    rows = np.concatenate([np.broadcast_to(y0, (len(y0), len(t))), y0 + (y1 - y0) * t,
                           np.broadcast_to(y1, (len(y1), len(t))), y1 + (y0 - y1) * t], axis=1)
    return cols, rows


def ring_bounds(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Antimeridian-aware lon/lat bounds ``(k, 4)`` of ``k`` closed outlines given
    as ``(k, m)`` lon/lat arrays (the first point is not repeated).

    Consecutive points are taken to be joined the short way round, so a jump
    of more than 180 degrees crosses the antimeridian: the result then has
    ``west > east``.  An outline around a pole gets ``-180..180`` and reaches
    that pole's latitude.
    """
    lon = np.array(lon, dtype=np.float64, copy=True)
    lat = np.asarray(lat, dtype=np.float64)
    # a lone point on a pole has no longitude of its own (the projection gives its central meridian):
    # it takes its neighbour's, so that it widens no bbox (a tile with a corner on the pole spans 90
    # degrees, not 180).  A run of points on the pole is an edge along it (a lon/lat grid reaching
    # 90 degrees): their longitudes are the grid's and say which way round the tile goes
    for r, i in zip(*np.nonzero(np.abs(lat) >= 90.0 - 1e-9)):
        row = lon[r]
        on = np.abs(lat[r]) >= 90.0 - 1e-9
        m = len(row)
        if on.all() or (on[(i - 1) % m] and row[(i - 1) % m] != row[i]) or (on[(i + 1) % m] and row[(i + 1) % m] != row[i]):
            continue
        j = next(k for k in range(1, m + 1) if not on[(i - k) % m])
        row[i] = row[(i - j) % m]
    closed = np.concatenate([lon, lon[:, :1]], axis=1)
    un = np.unwrap(closed, period=360.0, axis=1)
    lo, hi = un[:, :-1].min(axis=1), un[:, :-1].max(axis=1)
    west = np.where(lo >= 180.0, lo - 360.0, np.where(lo < -180.0, lo + 360.0, lo))
    east = hi + (west - lo)  # exactly hi when no shift was needed
    # a tile ending on 180 from the west: PROJ may give its corner there as 180 + 5e-13 (east 180, not -180)
    east = np.where(east > 180.0 + 1e-9, east - 360.0, np.minimum(east, 180.0))
    s, n = lat.min(axis=1), lat.max(axis=1)
    pole = np.abs(un[:, -1] - un[:, 0]) > 180.0  # the outline winds around a pole
    full = pole | (hi - lo >= 360.0)
    west = np.where(full, -180.0, west)
    east = np.where(full, 180.0, east)
    n = np.where(pole & (n > 0), 90.0, n)
    s = np.where(pole & (n <= 0), -90.0, s)
    return np.stack([west, s, east, n], axis=1)


#: How far (degrees) an edge midpoint may lie beyond both ends of its edge before
#: the tile's outline is densified with :data:`DENSIFY_PTS` points per edge.
BOW_TOLERANCE = 1e-12


def _to_lonlat(transform: Any, crs: Any, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = transform
    xs = t.a * cols + t.b * rows + t.c
    ys = t.d * cols + t.e * rows + t.f
    lon, lat = warp_transform(crs, "EPSG:4326", xs.ravel().tolist(), ys.ravel().tolist())
    lon = np.asarray(lon, dtype=np.float64).reshape(cols.shape)
    lat = np.asarray(lat, dtype=np.float64).reshape(cols.shape)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ValueError("some tile corners fall outside the CRS's valid area (PROJ returned inf)")
    # past a pole PROJ gives latitudes beyond 90 (a sinusoidal or plate carree grid with a margin, a
    # geographic raster half a pixel past 90): the pole is the nearest place (tiles wholly past it are
    # left out by outlines.tiles_on_earth)
    lat = np.clip(lat, -90.0, 90.0)
    # a geographic raster may run past 180 (or use 0..360): the same places within -180..180,
    # so that centres and corners match the filters and footprints of every other tile
    out = (lon < -180.0) | (lon >= 180.0)
    if out.any():
        lon = np.where(out, (lon + 180.0) % 360.0 - 180.0, lon)
    return lon, lat


def tile_footprints(transform: Any, crs: Any, windows: np.ndarray,
                    densify: int = DENSIFY_PTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lon/lat footprints of ``k`` source windows ``(k, 4)`` = ``col_off, row_off,
    width, height`` (fractional pixels) of a raster with affine ``transform``
    in ``crs``.

    Returns ``corners (k, 4, 2)`` (UL, UR, LR, LL as lon, lat), ``centroids
    (k, 2)`` and ``bboxes (k, 4)`` (W, S, E, N; ``W > E`` across the
    antimeridian), all in degrees.  The bbox is that of the outline densified
    with ``densify`` points per edge, as ``transform_bounds`` computes it.  To
    keep this cheap, a tile is densified only when an edge may reach beyond
    both its ends in lon or lat (its midpoint, or the vertex of the parabola
    through its ends and midpoint, lies beyond them: the edge bows out, e.g.
    across a UTM zone's central meridian or in a conic projection); along the
    other edges lon and lat are monotone, so corners and midpoints give the
    same bounds.
    """
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    x0, y0 = w[:, 0], w[:, 1]
    x1, y1 = x0 + w[:, 2], y0 + w[:, 3]
    # outline with one midpoint per edge (UL, top mid, UR, right mid, LR, bottom mid, LL, left mid), centre
    cols, rows = _outline(x0, y0, x1, y1, 1)
    cols = np.concatenate([cols, ((x0 + x1) / 2)[:, None]], axis=1)
    rows = np.concatenate([rows, ((y0 + y1) / 2)[:, None]], axis=1)
    lon, lat = _to_lonlat(transform, crs, cols, rows)
    corners = np.stack([lon[:, 0:8:2], lat[:, 0:8:2]], axis=2)
    centroids = np.stack([lon[:, 8], lat[:, 8]], axis=1)
    ring_lon, ring_lat = lon[:, :8], lat[:, :8]
    bboxes = ring_bounds(ring_lon, ring_lat)
    # an edge whose midpoint lies beyond both its ends is not monotone in lon or lat:
    # its extreme may be inside the edge, so that tile's outline is densified
    un = np.unwrap(np.concatenate([ring_lon, ring_lon[:, :1]], axis=1), period=360.0, axis=1)
    la = np.concatenate([ring_lat, ring_lat[:, :1]], axis=1)
    beyond = np.zeros(len(w), dtype=bool)
    for v in (un, la):
        a, mid, b = v[:, 0:8:2], v[:, 1:8:2], v[:, 2:9:2]
        # the parabola through the ends and the midpoint: its vertex estimates an inner extreme
        c1, c2 = 4 * mid - 3 * a - b, 2 * a + 2 * b - 4 * mid
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(np.where(c2 != 0, -c1 / (2 * c2), 0.5), 0.0, 1.0)
        peak = np.maximum(mid, a + c1 * t + c2 * t * t)
        low = np.minimum(mid, a + c1 * t + c2 * t * t)
        beyond |= ((peak > np.maximum(a, b) + BOW_TOLERANCE) | (low < np.minimum(a, b) - BOW_TOLERANCE)).any(axis=1)
    # a tile 90 degrees of longitude or wider (a coarse global product's): points of its 8-point
    # outline may be 180 apart, where "the short way round" cannot tell which way it goes
    beyond |= (np.abs(np.diff(un, axis=1)) > 90.0).any(axis=1)
    curved = np.flatnonzero(beyond)
    if densify > 1 and curved.size:
        dc, dr = _outline(x0[curved], y0[curved], x1[curved], y1[curved], densify)
        dlon, dlat = _to_lonlat(transform, crs, dc, dr)
        bboxes[curved] = ring_bounds(dlon, dlat)
    return corners, centroids, bboxes


def _wrap_lon(x: np.ndarray) -> np.ndarray:
    """Longitudes in ``[-180, 180]``: values outside go round once (180 itself stays 180)."""
    return np.where((x < -180.0) | (x > 180.0), (x + 180.0) % 360.0 - 180.0, x)


def _circle_runs(wests: Any, easts: Any) -> tuple[np.ndarray, np.ndarray]:
    """The longitudes covered by the intervals ``west_i..east_i`` (``west_i > east_i`` crosses the
    antimeridian), as sorted, disjoint runs ``(starts, ends)`` within ``[-180, 180]``: a crossing
    interval is cut at 180 into ``west..180`` and ``-180..east``, then touching runs are merged."""
    w = _wrap_lon(np.asarray(wests, dtype=np.float64).ravel())
    e = _wrap_lon(np.asarray(easts, dtype=np.float64).ravel())
    cross = e < w
    s = np.concatenate([w, np.full(int(cross.sum()), -180.0)])
    t = np.concatenate([np.where(cross, 180.0, e), e[cross]])
    order = np.argsort(s, kind="stable")
    s, t = s[order], t[order]
    # a new run starts where the interval begins past every end before it
    reach = np.maximum.accumulate(t)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(s)) - 1
    return s[first], reach[last]


def lon_extent(wests: Any, easts: Any) -> tuple[float, float]:
    """The shortest longitude interval ``(west, east)`` covering every interval
    ``west_i..east_i`` (``west_i > east_i`` crosses the antimeridian); ``west >
    east`` when the result crosses it, ``(-180, 180)`` when they cover the circle.

    The covered longitudes are cut into runs on the circle (:func:`_circle_runs`); the result is the
    complement of the widest gap between them, the gap across 180 winning a tie (a result that does not
    cross the antimeridian).  Raises ``ValueError`` for no intervals.
    """
    starts, ends = _circle_runs(wests, easts)
    if starts.size == 0:
        raise ValueError("no intervals")
    across = float(starts[0] + 180.0 + 180.0 - ends[-1])  # the gap through the antimeridian
    inner = starts[1:] - ends[:-1]
    if inner.size and float(inner.max()) > across:
        i = int(np.argmax(inner))
        west, east = float(starts[i + 1]), float(ends[i])
        return (-180.0 if west == 180.0 else west, 180.0 if east == -180.0 else east)
    if across <= 0.0:
        return (-180.0, 180.0)
    return (float(starts[0]), float(ends[-1]))


def union_bounds(bboxes: Any) -> BBox | None:
    """The smallest lon/lat box ``(W, S, E, N)`` holding every bbox of ``(k, 4)``,
    antimeridian-aware (see :func:`lon_extent`); None for no boxes."""
    acc = BoundsUnion()
    acc.add(bboxes)
    return acc.bounds()


class BoundsUnion:
    """:func:`union_bounds` of boxes given a batch at a time (an index scan, a file read a row group
    at a time), in memory bounded by the covered longitude runs rather than the boxes: every
    ``compact_at`` boxes the pending ones are merged into disjoint runs (:func:`_circle_runs`),
    which cover the same longitudes and so give the same :func:`lon_extent`."""

    def __init__(self, compact_at: int = 1 << 16) -> None:
        self._w: list[np.ndarray] = []
        self._e: list[np.ndarray] = []
        self._pending = 0
        self._compact_at = compact_at
        self._south = math.inf
        self._north = -math.inf
        self._rows: list[list[float]] = []

    def add_box(self, bbox: Any) -> None:
        """Add one lon/lat box ``[W, S, E, N]`` (degrees); boxes are buffered and added 4,096 at a time.
        Raises ``TypeError``/``ValueError`` for a box that is not four numbers."""
        w, s, e, n = (float(x) for x in bbox)
        self._rows.append([w, s, e, n])
        if len(self._rows) >= 4096:
            self._flush()

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if rows:
            self.add(rows)

    def add(self, bboxes: Any) -> None:
        """Add ``(k, 4)`` lon/lat boxes ``[W, S, E, N]`` (degrees); rows with a non-finite value are skipped."""
        b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        b = b[np.isfinite(b).all(axis=1)]
        if not len(b):
            return
        self._south = min(self._south, float(b[:, 1].min()))
        self._north = max(self._north, float(b[:, 3].max()))
        self._w.append(b[:, 0].copy())
        self._e.append(b[:, 2].copy())
        self._pending += len(b)
        if self._pending >= self._compact_at:
            starts, ends = _circle_runs(np.concatenate(self._w), np.concatenate(self._e))
            self._w, self._e, self._pending = [starts], [ends], len(starts)
            self._compact_at = max(self._compact_at, 2 * len(starts))

    def bounds(self) -> BBox | None:
        """The union so far, ``(W, S, E, N)`` in degrees (``W > E`` across 180), or None for no box."""
        self._flush()
        if not self._w:
            return None
        w, e = lon_extent(np.concatenate(self._w), np.concatenate(self._e))
        return (w, self._south, e, self._north)


def bbox_contains(bbox: Any, lon: float, lat: float) -> bool:
    """Whether ``(lon, lat)`` lies in ``bbox`` (closed; ``W > E`` crosses 180; longitude -180 is 180)."""
    w, s, e, n = (float(v) for v in bbox)
    if not s <= lat <= n:
        return False
    for x in ((lon, -lon) if abs(lon) == 180.0 else (lon,)):
        if (w <= x <= e) if w <= e else (x >= w or x <= e):
            return True
    return False


def _counter_clockwise(pts: list[list[float]]) -> list[list[float]]:
    """``pts`` (an open ring) counter-clockwise, as RFC 7946 3.1.6 wants exterior rings;
    a clockwise ring is reversed keeping its first vertex (shoelace signed area)."""
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))
    return pts if area2 >= 0 else pts[:1] + pts[:0:-1]


def _open_pole_corners(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A corner on a pole has no longitude of its own: the outline reaches the pole along its
    two edges (meridians there), so the corner becomes two points at the pole's latitude, at
    the longitudes of its neighbours."""
    if not any(abs(lat) >= 90.0 - 1e-9 for _, lat in ring):
        return ring
    out = []
    for i, (lon, lat) in enumerate(ring):
        if abs(lat) >= 90.0 - 1e-9:
            pole = math.copysign(90.0, lat)
            out += [(ring[i - 1][0], pole), (ring[(i + 1) % len(ring)][0], pole)]
        else:
            out.append((lon, lat))
    return out


def _polar_cap(lons: np.ndarray, lats: list[float], closing: float) -> dict[str, Any]:
    """The footprint of a tile holding a pole: its outline (longitudes unwrapped once round)
    closed along the pole's latitude, cut at the antimeridian and joined into one Polygon."""
    from shapely import set_precision
    from shapely.affinity import translate
    from shapely.geometry import MultiPolygon, Polygon, box, mapping
    from shapely.geometry.polygon import orient
    from shapely.ops import unary_union

    pole = 90.0 if float(np.mean(lats)) > 0 else -90.0
    end = float(lons[0]) + math.copysign(360.0, float(lons[-1] + closing - lons[0]))  # exactly once round
    pts = list(zip(lons.tolist(), lats)) + [(end, lats[0]), (end, pole), (float(lons[0]), pole)]
    shift = -360.0 * np.floor((min(p[0] for p in pts) + 180.0) / 360.0)  # start within -180..180
    poly = Polygon([(x + shift, y) for x, y in pts]).buffer(0)
    parts = [poly.intersection(box(-180.0, -90.0, 180.0, 90.0))]
    right = poly.intersection(box(180.0, -90.0, 540.0, 90.0))
    if not right.is_empty:
        parts.append(translate(right, xoff=-360.0))
    cap = unary_union([set_precision(g, 1e-9) for g in parts])  # the two pieces meet on one meridian
    polys = [g for g in getattr(cap, "geoms", [cap]) if g.geom_type == "Polygon" and g.area > 0]
    if len(polys) == 1:
        return mapping(orient(polys[0], 1.0))
    return mapping(MultiPolygon([orient(g, 1.0) for g in polys]))  # pieces that still do not join


def _pole_on_an_edge(ring: list[tuple[float, float]], pole: float) -> list[tuple[float, float]]:
    """The outline of a tile whose edge runs through a pole (its bbox reaches it, yet no corner is
    on it and the outline does not wind round it): that edge, the one with the largest jump in
    longitude, goes to the pole and back along the pole's latitude, so the rest of the outline
    and the pole segment sweep opposite ways (unwrapped longitudes, may run past 180)."""
    n = len(ring)
    d = [(ring[(i + 1) % n][0] - ring[i][0] + 180.0) % 360.0 - 180.0 for i in range(n)]
    k = max(range(n), key=lambda i: abs(d[i]))  # the edge A -> B through the pole
    order = [ring[(k + 1 + j) % n] for j in range(n)]  # B, ..., A
    lons = [order[0][0]]
    for i in range(1, n):
        lons.append(lons[-1] + d[(k + i) % n])
    rest = lons[-1] - lons[0]
    pts = list(zip(lons, [lat for _, lat in order]))
    pts += [(lons[-1], pole), (lons[-1] - rest / 2.0, pole), (lons[0], pole)]  # back along the pole, in halves
    return pts


def footprint_geometry(corners: Any, pole: float | None = None) -> dict[str, Any] | None:
    """A footprint ring ``[(lon, lat), ...]`` as a valid GeoJSON geometry: a Polygon, or a
    MultiPolygon cut at the antimeridian when an edge crosses it (RFC 7946 3.1.9);
    exterior rings counter-clockwise (RFC 7946 3.1.6), whatever the order of ``corners``.
    A ring that winds round a pole, or has a corner on one, is closed along the pole's
    latitude; ``pole`` (90 or -90, from a bbox reaching it) says that an edge runs through it.
    Outlines that double back along the pole's latitude, and slivers of no area at ±180,
    are repaired (shapely ``make_valid``) so that GIS tools and PostGIS take them."""
    geom = _footprint_geometry(corners, pole)
    return geom if geom is None else _valid(geom)


def _valid(geom: dict[str, Any]) -> dict[str, Any]:
    """``geom`` (GeoJSON Polygon/MultiPolygon) made valid: its polygonal parts of positive
    area, exterior rings counter-clockwise; unchanged when it is valid already."""
    import shapely
    from shapely.geometry import MultiPolygon, mapping, shape
    from shapely.geometry.polygon import orient

    g = shape(geom)
    if g.is_valid and all(p.area > 0 for p in shapely.get_parts(g)):
        return geom
    fixed = shapely.make_valid(g)  # parts of a collection may be multi-part: flatten twice
    polys = [orient(p, 1.0) for p in shapely.get_parts(shapely.get_parts(fixed))
             if p.geom_type == "Polygon" and p.area > 0]
    if not polys:
        return geom
    return mapping(polys[0] if len(polys) == 1 else MultiPolygon(polys))


def _footprint_geometry(corners: Any, pole: float | None) -> dict[str, Any] | None:
    ring = [(float(c[0]), float(c[1])) for c in corners]
    if len(ring) < 3:
        return None
    opened = _open_pole_corners(ring)
    lons = np.unwrap(np.array([p[0] for p in opened]), period=360.0)
    closing = (lons[0] - lons[-1] + 180.0) % 360.0 - 180.0
    if abs(lons[-1] - lons[0] + closing) > 180.0:  # the outline winds once round a pole: the tile holds it
        return _polar_cap(lons, [lat for _, lat in opened], closing)
    if pole is not None and opened is ring:  # the bbox reaches the pole, no corner is on it: an edge is
        ring = _pole_on_an_edge(ring, pole)
        return _cut_at_antimeridian([p[0] for p in ring], ring)
    ring = opened
    return _cut_at_antimeridian(lons, ring)


def _cut_at_antimeridian(lons: Any, ring: list[tuple[float, float]]) -> dict[str, Any]:
    """A ring with unwrapped longitudes ``lons`` as a GeoJSON Polygon, or a MultiPolygon cut at
    180 when it runs past it; exterior rings counter-clockwise."""
    lons = np.asarray(lons, dtype=np.float64)
    if lons.max() <= 180.0 and lons.min() >= -180.0:
        pts = _counter_clockwise([[lon, lat] for lon, (_, lat) in zip(lons.tolist(), ring)])
        return {"type": "Polygon", "coordinates": [pts + pts[:1]]}
    from shapely.geometry import Polygon, box, mapping
    from shapely.geometry.polygon import orient

    shift = 360.0 if lons.min() < -180.0 else 0.0  # work in 0..360 (or -180..180+)
    poly = Polygon([(lon + shift, lat) for lon, (_, lat) in zip(lons, ring)])
    parts = []
    for lo, hi, move in ((-540.0, 180.0, 0.0), (180.0, 540.0, -360.0)):
        piece = poly.intersection(box(lo, -90.0, hi, 90.0))
        if piece.is_empty or piece.area == 0:
            continue
        geoms = getattr(piece, "geoms", [piece])
        for g in geoms:
            if g.geom_type == "Polygon" and g.area > 0:
                coords = [[x + move, y] for x, y in orient(g, 1.0).exterior.coords]
                parts.append([coords])
    if len(parts) == 1:
        return {"type": "Polygon", "coordinates": parts[0]}
    return {"type": "MultiPolygon", "coordinates": parts} if parts else mapping(orient(poly, 1.0))


#: Degrees a stored tile footprint may differ from the same grid window's footprint now (~1 cm).
FOOTPRINT_TOLERANCE_DEG = 1e-7


def corner_shift_deg(payload: dict, ref: Any) -> float | None:
    """Degrees between the stored (``payload["corners"]``) and the present (``ref.corners``)
    first corner of a tile's window (pixel ``(col_off, row_off)``: inside the raster, so never
    moved by how much of a window past the raster's edge the footprint holds); None when the
    payload has no corners.  Used by ingest and reindex to tell a raster whose georeferencing
    changed since it was indexed."""
    corners = payload.get("corners")
    try:
        lon, lat = float(corners[0]["lon"]), float(corners[0]["lat"])
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    dlon = (lon - float(ref.corners[0][0]) + 180.0) % 360.0 - 180.0
    return max(abs(dlon), abs(lat - float(ref.corners[0][1])))


__all__ = [
    "FOOTPRINT_TOLERANCE_DEG",
    "corner_shift_deg",
    "crs_label",
    "BBox",
    "Corner",
    "BOW_TOLERANCE",
    "DENSIFY_PTS",
    "bbox_contains",
    "footprint_geometry",
    "lon_extent",
    "native_pixel_size",
    "ring_bounds",
    "tile_footprints",
    "union_bounds",
    "BoundsUnion",
]
