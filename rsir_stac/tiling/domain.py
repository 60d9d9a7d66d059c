"""A projection's own edge (its central meridian +-180 degrees), and tiles that hold only fill past it.

A global projection (sinusoidal, Web Mercator, EASE-Grid 2.0, ...) maps the longitudes within its
central meridian ``lon_0`` +-180 degrees.  A point past that edge (``x`` beyond the sinusoidal's
curved edge, beyond ``x = 20037508`` in Web Mercator) still gets a lon/lat: PROJ's inverse gives a
longitude past ``lon_0 + 180`` and wraps it to the other side of the antimeridian.  What the point
is depends on the data, not the geometry (both are past their projection's own edge):

* a MODIS sinusoidal tile at the grid's edge (h35v08, h09v02, h26v02) holds fill (declared nodata)
  there: the place on the other side of 180 is not in the product;
* a Pacific mosaic in EPSG:3857 or EPSG:6933 holds pixels there: the place is real (a map-back check,
  tried and reverted, dropped those tiles).

So a tile whose corners reach past the edge (:func:`windows_past_edge`, cheap: four corners per
tile; the domain of these projections is convex, so a tile with its corners on this side lies on it
whole) is looked at once its validity mask is read (:func:`nothing_past_edge`).  When its pixels past
the edge are all invalid, its footprint is that of its part on this side
(:func:`footprint_this_side`): its lon/lat outline clipped at the edge's meridian.  Every other tile
keeps the footprint it has always had.

Past a curved edge (sinusoidal, Mollweide: the meridian ``lon_0 + 180`` has no one ``x``) there is
no place at all, only a product's fill, declared or not.  There the geometry decides, not the
pixels: a tile wholly past the edge is left out (:func:`windows_beyond_edge`), and a tile partly
past it gets the footprint of its part on this side whatever its pixels there hold.  Where PROJ's
inverse goes on past the edge (sinusoidal) that part is the outline clipped at the edge's meridian
(:func:`footprint_this_side`); Mollweide and Robinson give no lon/lat there at all, so the part is
the tile cut at the projection's edge in its own coordinates (:func:`parts_on_the_earth`,
:func:`domain_polygon`).

Longitudes past the edge come from PROJ's ``+over`` option (no wrapping; PROJ's documentation,
"Longitude wrapping"), through pyproj's :class:`~pyproj.Proj` on the CRS's PROJ string.  A CRS that
pyproj cannot write as a PROJ string, or a geographic one, has no edge here (None): its tiles are as
before.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir_stac.tiling.footprints import DENSIFY_PTS, _outline, _to_lonlat, ring_bounds

log = logging.getLogger(__name__)

#: Degrees past ``lon_0 +- 180`` below which a point counts as on the edge, not past it.
EDGE_TOLERANCE_DEG = 1e-9

#: A window ``col_off, row_off, width, height`` in source pixels (floats).
Window4 = tuple[float, float, float, float]
#: ``(outline [(lon, lat), ...], bbox (W, S, E, N), centroid (lon, lat))``, degrees.
Footprint = tuple[list[tuple[float, float]], tuple[float, float, float, float], tuple[float, float]]


@dataclass(frozen=True)
class ProjectionEdge:
    """The inverse of a projected CRS without longitude wrapping (``proj``, a pyproj ``Proj`` with
    ``+over``), its central meridian ``lon0`` (degrees, plus any prime meridian) and whether its edge
    is ``curved``: the meridian ``lon0 + 180`` has no one ``x`` (sinusoidal, Mollweide), so what lies
    past it is no place on the Earth, not a copy of the other side shifted by one turn as in a
    cylindrical projection (Web Mercator, EASE-Grid 2.0, plate carree)."""

    proj: Any
    lon0: float
    curved: bool = False

    def lon(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Unwrapped longitudes (degrees, the CRS's own datum) of points ``(xs, ys)`` (CRS units, any
        shape); NaN where PROJ gives no lon/lat."""
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        lon, _ = self.proj(xs.ravel(), ys.ravel(), inverse=True, errcheck=False)
        lon = np.asarray(lon, dtype=np.float64)
        return np.where(np.isfinite(lon) & (np.abs(lon) < 1e30), lon, np.nan).reshape(xs.shape)  # HUGE_VAL: none

    def overshoot(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Degrees each point ``(xs, ys)`` (CRS units, any shape) lies past the edge: ``|lon - lon0| - 180``
        with ``lon`` unwrapped; negative on this side, NaN where PROJ gives no lon/lat."""
        return np.abs(self.lon(xs, ys) - self.lon0) - 180.0

    def past(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """:meth:`overshoot`, with a point PROJ gives no lon/lat counted as past a ``curved`` edge
        (``inf``: beyond a Mollweide or Robinson map's edge there is none)."""
        over = self.overshoot(xs, ys)
        return np.where(np.isnan(over), np.inf, over) if self.curved else over


def projection_edge(crs: Any) -> ProjectionEdge | None:
    """The :class:`ProjectionEdge` of a projected ``crs`` (rasterio or pyproj CRS, or anything
    pyproj takes): its central meridian is its conversion's "Longitude of natural origin" (of
    origin, of false origin, of projection centre: the first of them, UTM's zone meridian included)
    plus its prime meridian.  None for a geographic CRS, one without such a parameter, or one pyproj
    cannot write as a PROJ string (their tiles keep the footprints they have)."""
    from pyproj import CRS as ProjCRS
    from pyproj import Proj

    try:
        c = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        op = c.coordinate_operation
        if not c.is_projected or op is None:
            return None
        lons = [p for p in op.params if p.name.lower().startswith("longitude of")]
        if not lons:
            return None
        pm = c.prime_meridian
        lon0 = round(math.degrees(lons[0].value * lons[0].unit_conversion_factor
                                  + pm.longitude * pm.unit_conversion_factor), 12)  # 57, not 57.00000000000001
        with warnings.catch_warnings():  # "You will likely lose important projection information"
            warnings.simplefilter("ignore", UserWarning)
            params = c.to_dict()
        if not params.get("proj"):
            return None
        proj = Proj(ProjCRS.from_dict({**params, "over": True}))
    except Exception:  # noqa: BLE001 - no PROJ string for this CRS: no edge, tiles as before
        log.debug("no +over inverse for CRS %s", crs, exc_info=True)
        return None
    return ProjectionEdge(proj, lon0, _edge_is_curved(proj, lon0))


def _edge_is_curved(proj: Any, lon0: float) -> bool:
    """Whether the meridian ``lon0 + 180`` maps to ``x`` more than one CRS unit apart at latitudes 0,
    30 and 60 (a pseudo-cylindrical edge: sinusoidal, Mollweide, Robinson); False when PROJ cannot
    map it, or maps it to one ``x`` (cylindrical, transverse Mercator, azimuthal: no change)."""
    x, _ = proj(np.full(3, lon0 + 180.0), np.array([0.0, 30.0, 60.0]), errcheck=False)
    x = np.asarray(x, dtype=np.float64)
    if not (np.isfinite(x).all() and (np.abs(x) < 1e30).all()):
        return False
    return bool(np.ptp(x) > 1.0)  # CRS units (metres, feet); an azimuthal CRS's meridian: x within 1e-8


def windows_past_edge(edge: ProjectionEdge, transform: Any, windows: np.ndarray) -> np.ndarray:
    """Whether each window ``(k, 4)`` = ``col_off, row_off, width, height`` (source pixels, floats)
    has a corner past ``edge``; ``(k,)`` booleans.  Four points a tile: the cheap test every tile
    of a scene in a projected CRS pays."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    cols = np.stack([w[:, 0], w[:, 0] + w[:, 2], w[:, 0] + w[:, 2], w[:, 0]], axis=1)
    rows = np.stack([w[:, 1], w[:, 1], w[:, 1] + w[:, 3], w[:, 1] + w[:, 3]], axis=1)
    t = transform
    over = edge.past(t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f)
    return (over > EDGE_TOLERANCE_DEG).any(axis=1)


def windows_beyond_edge(edge: ProjectionEdge, transform: Any, windows: np.ndarray) -> np.ndarray:
    """Whether each window ``(k, 4)`` = ``col_off, row_off, width, height`` (source pixels, floats)
    lies wholly past a ``curved`` edge (its outline, :data:`DENSIFY_PTS` points a side, and its
    centre all past it or on it, within :data:`EDGE_TOLERANCE_DEG`, and some point past it: a tile
    of a grid aligned on the edge touches the Earth at one corner): no place on the Earth, whatever
    its pixels hold (a sinusoidal grid's fill that the file does not declare nodata); ``(k,)``
    booleans, all False for a straight edge."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    if not edge.curved or not len(w):
        return np.zeros(len(w), dtype=bool)
    cols, rows = _outline(w[:, 0], w[:, 1], w[:, 0] + w[:, 2], w[:, 1] + w[:, 3], DENSIFY_PTS)
    cols = np.concatenate([cols, (w[:, 0] + w[:, 2] / 2)[:, None]], axis=1)
    rows = np.concatenate([rows, (w[:, 1] + w[:, 3] / 2)[:, None]], axis=1)
    t = transform
    over = edge.overshoot(t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f)
    return (over >= -EDGE_TOLERANCE_DEG).all(axis=1) & (over > EDGE_TOLERANCE_DEG).any(axis=1)


#: How far inside a curved projection's edge (a fraction of the domain's width) the part of a tile
#: reaching past it is cut, so that PROJ's inverse gives every point of it a lon/lat.
DOMAIN_INSET = 1e-9


def domain_polygon(edge: ProjectionEdge, n: int = 3601) -> Any:
    """The area a ``curved`` edge's projection maps the Earth to, in CRS units (a shapely Polygon): the
    meridian ``lon0 + 180`` from the south pole to the north, then ``lon0 - 180`` back (``n`` points
    each, PROJ's forward through pyproj).  None when PROJ cannot map them."""
    from shapely.geometry import Polygon

    lats = np.linspace(-90.0, 90.0, n)
    xe, ye = edge.proj(np.full(n, edge.lon0 + 180.0), lats, errcheck=False)
    xw, yw = edge.proj(np.full(n, edge.lon0 - 180.0), lats[::-1], errcheck=False)
    xy = np.column_stack([np.concatenate([xe, xw]), np.concatenate([ye, yw])])
    if not np.isfinite(xy).all() or (np.abs(xy) > 1e30).any():
        return None
    poly = Polygon(xy).buffer(0)
    return poly if poly.geom_type == "Polygon" and poly.area > 0 else None


#: PROJ projections of the Earth seen from a point: geostationary (every full-disk ABI, AHI or SEVIRI
#: product), orthographic, general and tilted perspective.  Their inverse gives no lon/lat past the
#: limb, a closed curve round the projection's centre (:func:`limb_polygon`).
VIEW_PROJECTIONS = frozenset({"geos", "ortho", "nsper", "tpers"})

#: CRS units along each ray from a view projection's centre within which its limb is looked for.
_LIMB_REACH = 1e8


def _has_lonlat(proj: Any, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    lon, lat = (np.asarray(v, dtype=np.float64) for v in proj(xs, ys, inverse=True, errcheck=False))
    return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) < 1e30) & (np.abs(lat) < 1e30)


def _limb_centre(edge: ProjectionEdge) -> tuple[float, float] | None:
    """The centre of a view projection (:data:`VIEW_PROJECTIONS`) in CRS units: its ``lon_0, lat_0``
    projected (the sub-satellite point of a geostationary CRS); None for another projection."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            params = edge.proj.crs.to_dict()
    except Exception:  # noqa: BLE001 - no PROJ parameters: not a view projection we know
        return None
    if params.get("proj") not in VIEW_PROJECTIONS:
        return None
    cx, cy = (float(np.asarray(v)) for v in edge.proj(float(params.get("lon_0", 0.0)),
                                                       float(params.get("lat_0", 0.0)), errcheck=False))
    return (cx, cy) if math.isfinite(cx) and math.isfinite(cy) else None


def _to_limb(edge: ProjectionEdge, centre: tuple[float, float], dx: np.ndarray, dy: np.ndarray,
             start: np.ndarray | float = 0.0) -> np.ndarray:
    """Distances (CRS units) from ``centre`` along the unit directions ``(dx, dy)`` to the farthest point
    with a lon/lat, from ``start`` (a distance that has one) out to :data:`_LIMB_REACH`: 60 halvings,
    each distance within 1e-10 of the reach short of the limb (the disk is convex: one crossing a ray)."""
    cx, cy = centre
    lo = np.broadcast_to(np.asarray(start, dtype=np.float64), dx.shape).copy()
    hi = np.full(dx.shape, _LIMB_REACH)
    for _ in range(60):
        mid = (lo + hi) / 2.0
        ok = _has_lonlat(edge.proj, cx + mid * dx, cy + mid * dy)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lo


def limb_polygon(edge: ProjectionEdge, n: int = 1440) -> Any:
    """The visible disk of a view projection (:data:`VIEW_PROJECTIONS`) in CRS units, a shapely
    Polygon: along ``n`` rays from the projection's centre (:func:`_limb_centre`) the farthest point
    PROJ's inverse gives a lon/lat (:func:`_to_limb`).  The disk is convex, so the chords between those
    points lie on it (a chord of 1,440 round a geostationary disk falls ~13 m short of the limb between
    its ends; :func:`parts_on_the_earth` moves a part's outline out onto the limb).  None for another
    projection, or when a point :data:`_LIMB_REACH` away still has a lon/lat."""
    from shapely.geometry import Polygon

    centre = _limb_centre(edge)
    if centre is None:
        return None
    cx, cy = centre
    theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    dx, dy = np.cos(theta), np.sin(theta)
    if _has_lonlat(edge.proj, cx + _LIMB_REACH * dx, cy + _LIMB_REACH * dy).any():
        return None
    r = _to_limb(edge, centre, dx, dy)
    poly = Polygon(np.column_stack([cx + r * dx, cy + r * dy])).buffer(0)
    return poly if poly.geom_type == "Polygon" and poly.area > 0 else None


def _onto_limb(edge: ProjectionEdge, centre: tuple[float, float], pts: np.ndarray) -> np.ndarray:
    """Points ``(n, 2)`` (CRS units, near the limb, on either side of it) moved along their ray from
    ``centre`` onto the limb itself (:func:`_to_limb`, from the centre: a point a hair past the limb has
    no lon/lat to start from)."""
    v = pts - np.asarray(centre)
    r = np.hypot(v[:, 0], v[:, 1])
    ok = r > 0
    out = pts.copy()
    dx, dy = v[ok, 0] / r[ok], v[ok, 1] / r[ok]
    reach = _to_limb(edge, centre, dx, dy)
    out[ok] = np.column_stack([centre[0] + reach * dx, centre[1] + reach * dy])
    return out


#: Degrees (local, longitude scaled by the cosine of latitude) within which the lon/lat outline of a
#: tile's part on a view projection's disk follows its outline in the CRS (:func:`_follow_limb`).
LIMB_OUTLINE_TOLERANCE_DEG = 1e-3


def _lonlat_gap(edge: ProjectionEdge, ring: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """Degrees between the lon/lat of each side's CRS middle ``mid[i]`` and the lon/lat middle of its ends
    ``ring[i]``, ``ring[i + 1]`` (the ring closed: the last side ends at ``ring[0]``)."""
    (la, pa), (lm, pm) = (edge.proj(q[:, 0], q[:, 1], inverse=True, errcheck=False) for q in (ring, mid))
    la, pa, lm, pm = (np.asarray(v, dtype=np.float64) for v in (la, pa, lm, pm))
    lb, pb = np.roll(la, -1), np.roll(pa, -1)
    dlon = (lb - la + 180.0) % 360.0 - 180.0
    off_lon = (lm - (la + dlon / 2.0) + 180.0) % 360.0 - 180.0
    gap = np.hypot(off_lon * np.cos(np.radians(pm)), pm - (pa + pb) / 2.0)
    return np.where(np.isfinite(gap), gap, np.inf)


def _follow_limb(edge: ProjectionEdge, centre: tuple[float, float], ring: np.ndarray, domain: Any,
                 within: float, max_points: int = 4096) -> np.ndarray:
    """The outline ``ring`` ``(n, 2)`` (CRS units, open) of a tile's part on a view projection's disk,
    made to hold its place in lon/lat: its points along the limb (within ``within`` of ``domain``'s
    edge: on the chords of :func:`limb_polygon`, ~13 m inside the limb, ~0.1 degree short on the ground)
    moved out onto the limb, and every side halved, again and again, where the lon/lat of its middle
    is more than :data:`LIMB_OUTLINE_TOLERANCE_DEG` from the middle of its ends' (near the limb a
    straight line in the CRS bends sharply in lon/lat: a tile's edge meeting the limb curved past the
    pixels beside it, and a search at them found the neighbouring tile).  Sides along the limb are not
    halved (the horizon is smooth in lon/lat); a middle that rounds off the disk goes onto the limb.
    At most ``max_points`` points; no side is halved below 2**-24 of the outline's size."""
    from shapely import distance, points

    on_limb = distance(points(ring), domain.exterior) <= within
    if on_limb.any():
        ring = ring.copy()
        ring[on_limb] = _onto_limb(edge, centre, ring[on_limb])
    shortest = float(np.hypot(*np.ptp(ring, axis=0))) / 2.0 ** 24   # sides are not halved below this
    for _ in range(40):
        nxt = np.roll(ring, -1, axis=0)
        mid = (ring + nxt) / 2.0
        along = on_limb & np.roll(on_limb, -1)
        # a side from the limb inwards is on the disk, but its middle a hair from the limb may round off it
        off = ~along & ~_has_lonlat(edge.proj, mid[:, 0], mid[:, 1])
        if off.any():
            mid[off] = _onto_limb(edge, centre, mid[off])
        # sides along the limb follow the horizon, a smooth curve in lon/lat, at the first densify already;
        # where PROJ puts the limb is uncertain by ~1e-3 degree there (ortho), so their gaps are noise
        long_enough = np.hypot(*(nxt - ring).T) > shortest
        split = long_enough & ~along & (_lonlat_gap(edge, ring, mid) > LIMB_OUTLINE_TOLERANCE_DEG)
        if not split.any() or len(ring) + int(split.sum()) > max_points:
            break
        order = np.argsort(np.concatenate([np.arange(len(ring)) * 2.0, np.flatnonzero(split) * 2.0 + 1.0]),
                           kind="stable")
        ring = np.concatenate([ring, mid[split]])[order]
        on_limb = np.concatenate([on_limb, off[split]])[order]
    return ring


def parts_on_the_earth(edge: ProjectionEdge, transform: Any, windows: np.ndarray,
                       densify: int = DENSIFY_PTS) -> dict[int, tuple[list[tuple[float, float]], Footprint]]:
    """The footprints of the parts on the Earth of windows ``(k, 4)`` (source pixels, floats) reaching
    where PROJ's inverse gives no lon/lat at all: past a ``curved`` edge (Mollweide, Robinson), or past
    the limb of a view projection (space beyond a geostationary disk): ``{i: (corners, (outline, bbox,
    centroid))}``, all lon/lat degrees.  The part is the window cut at the projection's edge
    (:func:`domain_polygon`) or limb (:func:`limb_polygon`), inset by :data:`DOMAIN_INSET` of its
    width (shapely);
    ``outline`` its ring, ``densify`` points a window's side, clockwise, within -180..180; ``bbox``
    its :func:`~rsir_stac.tiling.footprints.ring_bounds`; ``centroid`` the part's centre; ``corners``
    the points of the part nearest the window's corners (UL, UR, LR, LL).  Windows with no part of
    area on the Earth are left out of the dict."""
    import shapely
    from shapely.geometry import Point, Polygon
    from shapely.geometry.polygon import orient
    from shapely.ops import nearest_points

    domain = domain_polygon(edge) if edge.curved else limb_polygon(edge)
    if domain is None:
        return {}
    minx, _, maxx, _ = domain.bounds
    inset = DOMAIN_INSET * (maxx - minx)
    inner = domain.buffer(-inset)
    centre = None if edge.curved else _limb_centre(edge)
    t, out = transform, {}
    for i, (c0, r0, cw, rh) in enumerate(np.asarray(windows, dtype=np.float64).reshape(-1, 4)):
        cols, rows = [c0, c0 + cw, c0 + cw, c0], [r0, r0, r0 + rh, r0 + rh]
        corners_xy = [t * (c, r) for c, r in zip(cols, rows)]
        tile = Polygon(corners_xy)
        part = tile.intersection(inner)
        if not part.is_empty and part.geom_type != "Polygon":
            part = part.convex_hull
        if part.is_empty or part.geom_type != "Polygon" or part.area <= 1e-9 * tile.area:
            continue
        side = max(math.dist(corners_xy[0], corners_xy[1]), math.dist(corners_xy[1], corners_xy[2]))
        ring = np.asarray(orient(shapely.segmentize(part, side / densify), -1.0).exterior.coords[:-1])
        if centre is not None:
            ring = _follow_limb(edge, centre, ring, domain, 2.0 * inset)
        pts = np.vstack([ring, [part.representative_point().coords[0] if not part.contains(part.centroid)
                                else part.centroid.coords[0]],
                         [nearest_points(part, Point(xy))[0].coords[0] for xy in corners_xy]])
        lon, lat = _inverse_inside(edge, pts, np.asarray(part.centroid.coords[0]), maxx - minx)
        if lon is None:
            continue
        lon = (lon + 180.0) % 360.0 - 180.0
        lat = np.clip(lat, -90.0, 90.0)
        n = len(ring)
        outline = [(float(a), float(b)) for a, b in zip(lon[:n], lat[:n])]
        bbox = tuple(float(v) for v in ring_bounds(lon[None, :n], lat[None, :n])[0])
        corners = [(float(a), float(b)) for a, b in zip(lon[n + 1:], lat[n + 1:])]
        out[i] = (corners, (outline, bbox, (float(lon[n]), float(lat[n]))))  # type: ignore[assignment]
    return out


def _inverse_inside(edge: ProjectionEdge, pts: np.ndarray, centre: np.ndarray, width: float) -> tuple[Any, Any]:
    """PROJ's inverse (``+over``) of points ``(n, 2)`` (CRS units) of a part inside a curved edge;
    a point it gives no lon/lat (an iterative inverse, as Robinson's, fails within centimetres of the
    edge its forward draws) is moved towards ``centre`` by 1e-8, 1e-7, ... 1e-5 of the domain's
    ``width`` until it has one.  ``(lon, lat)`` arrays, or ``(None, None)`` when a point has none."""
    lon, lat = (np.asarray(v, dtype=np.float64) for v in edge.proj(pts[:, 0], pts[:, 1], inverse=True,
                                                                     errcheck=False))
    for step in (1e-8, 1e-7, 1e-6, 1e-5):
        bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) < 1e30))
        if not bad.any():
            return lon, lat
        towards = centre - pts[bad]
        norm = np.maximum(np.hypot(towards[:, 0], towards[:, 1]), 1e-12)[:, None]
        moved = pts[bad] + towards / norm * np.minimum(step * width, norm)
        lon[bad], lat[bad] = (np.asarray(v, dtype=np.float64) for v in edge.proj(
            moved[:, 0], moved[:, 1], inverse=True, errcheck=False))
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) < 1e30)
    return (lon, lat) if ok.all() else (None, None)


def nothing_past_edge(edge: ProjectionEdge, transform: Any, window: Window4, valid: np.ndarray) -> bool:
    """Whether every pixel of a tile that lies clearly past ``edge`` is invalid (fill), so that the
    tile's footprint is its part on this side.  ``window``: the tile in source pixels (floats,
    ``col_off, row_off, width, height``); ``valid``: its ``(rows, cols)`` validity mask as read
    (:func:`~rsir_stac.tiling.pixels.read_rgb`, at the tile's grid, nearest-neighbour).

    Each mask pixel is tested at the centre of the source pixel it was read from (the mask is a
    nearest-neighbour read), and counts as past the edge only when its four neighbours are too: a
    source pixel straddling the edge, or a product whose fill starts a pixel late, does not make a
    Pacific mosaic of it.  Cost: one inverse projection per mask pixel, for edge tiles only."""
    h, w = valid.shape
    c0, r0, cw, rh = (float(v) for v in window)
    cols = np.floor(c0 + (np.arange(w) + 0.5) * (cw / w)) + 0.5
    rows = np.floor(r0 + (np.arange(h) + 0.5) * (rh / h)) + 0.5
    cc, rr = np.meshgrid(cols, rows)
    t = transform
    past = edge.past(t.a * cc + t.b * rr + t.c, t.d * cc + t.e * rr + t.f) > EDGE_TOLERANCE_DEG
    padded = np.pad(past, 1, constant_values=True)
    clearly = past & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return not bool((valid & clearly).any())


def footprint_this_side(edge: ProjectionEdge, transform: Any, crs: Any, window: Window4,
                        centroid: tuple[float, float], densify: int = DENSIFY_PTS) -> Footprint | None:
    """The footprint of the part of ``window`` (source pixels, floats, ``col_off, row_off, width,
    height``) on this side of ``edge``: ``(outline, bbox, centroid)``, all lon/lat degrees (EPSG:4326,
    as :func:`~rsir_stac.tiling.footprints.tile_footprints`).  ``outline``: the window's outline
    (``densify`` points per edge) with longitudes unwrapped by ``+over``, clipped at the edge's
    meridian ``lon0 +- 180`` (shapely), clockwise, within -180..180; ``bbox``: its
    :func:`~rsir_stac.tiling.footprints.ring_bounds`; ``centroid``: the given one (the window's
    centre) when it is on this side, else the clipped outline's centroid (pieces: their convex hull).
    None when the part on this side has no area, or an outline point has no lon/lat."""
    from shapely.geometry import Polygon, box
    from shapely.geometry.polygon import orient

    x0, y0, ww, wh = (np.array([float(v)]) for v in window)
    cols, rows = _outline(x0, y0, x0 + ww, y0 + wh, densify)
    try:
        lon, lat = _to_lonlat(transform, crs, cols, rows)
    except ValueError:  # an outline point without lon/lat
        return None
    t = transform
    raw = edge.lon(t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f)
    if not np.isfinite(raw).all():
        return None
    # the +over longitude in EPSG:4326 (as every other footprint): the wrapped lon/lat moved by the
    # whole turns +over undid
    unwrapped = lon + 360.0 * np.round((raw - lon) / 360.0)
    part = Polygon(zip(unwrapped[0], lat[0])).buffer(0).intersection(
        box(edge.lon0 - 180.0, -90.0, edge.lon0 + 180.0, 90.0))
    if not part.is_empty and part.geom_type != "Polygon":  # pieces (an outline bowing across the meridian)
        part = part.convex_hull   # within the box still (it is convex), covering every piece
    if part.is_empty or part.geom_type != "Polygon" or part.area <= 0:
        return None
    part = orient(part, -1.0)  # clockwise, as a window's outline from UL
    ring = np.asarray(part.exterior.coords[:-1], dtype=np.float64)
    ring_lon = ring[:, 0] - 360.0 * (ring[:, 0] > 180.0) + 360.0 * (ring[:, 0] < -180.0)  # 180 itself stays
    outline = [(float(a), float(b)) for a, b in zip(ring_lon, ring[:, 1])]
    bbox = tuple(float(v) for v in ring_bounds(ring_lon[None, :], ring[None, :, 1])[0])
    cx, cy = (float(v) for v in centroid)
    if not _on_this_side(edge, transform, window):
        c = part.centroid if part.contains(part.centroid) else part.representative_point()
        cx, cy = float(c.x), float(c.y)
        cx = cx - 360.0 if cx > 180.0 else cx + 360.0 if cx < -180.0 else cx
    return outline, bbox, (cx, cy)  # type: ignore[return-value]


def _on_this_side(edge: ProjectionEdge, transform: Any, window: Window4) -> bool:
    """Whether the centre of ``window`` (source pixels) is on this side of ``edge``."""
    c0, r0, cw, rh = (float(v) for v in window)
    col, row, t = c0 + cw / 2.0, r0 + rh / 2.0, transform
    over = edge.overshoot(np.array([t.a * col + t.b * row + t.c]), np.array([t.d * col + t.e * row + t.f]))[0]
    return bool(math.isfinite(over) and over <= EDGE_TOLERANCE_DEG)


__all__ = ["DOMAIN_INSET", "EDGE_TOLERANCE_DEG", "VIEW_PROJECTIONS", "Footprint", "ProjectionEdge", "Window4",
           "domain_polygon", "limb_polygon",
           "footprint_this_side", "nothing_past_edge", "parts_on_the_earth", "projection_edge", "windows_beyond_edge",
           "windows_past_edge"]
