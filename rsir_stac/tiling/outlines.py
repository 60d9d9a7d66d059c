"""Which tiles' footprints need more than their four corners, and which lie on the Earth at all.

A tile's footprint is its four corners (:func:`~rsir_stac.tiling.footprints.tile_footprints`)
unless they misdescribe it: near a pole, across 90 degrees of longitude or more, or where its
edges, straight in the raster's CRS, bow in lon/lat by more than half a pixel (coarse products in
conic, sinusoidal or azimuthal projections).  Those tiles store their densified outline
(:func:`tile_outlines`).  A tile reaching where the CRS maps no place on the Earth (space beyond a
geostationary disk) has no footprint at all (:func:`tiles_on_earth`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rsir_stac.tiling.footprints import DENSIFY_PTS, _outline, _to_lonlat


#: Degrees past 90 of latitude within which a point counts as at the pole (a grid's rounding: the
#: MODIS sinusoidal grid's edge lies 11 m, 1e-4 degrees, past it).
POLE_TOLERANCE_DEG = 1e-3


def tiles_on_earth(transform: Any, crs: Any, windows: np.ndarray) -> np.ndarray:
    """Whether each window ``(k, 4)`` lies on the Earth as ``crs`` maps it: its corners, edge
    midpoints and centre all have a lon/lat (PROJ gives inf for space beyond a geostationary disk,
    or the far side of an orthographic view), and not all of them lie past a pole or on it (PROJ gives
    a latitude beyond 90 there: a sinusoidal grid with a margin), within :data:`POLE_TOLERANCE_DEG`.
    Returns ``(k,)`` booleans.  A point a projection maps past 180 (Web Mercator, EASE-Grid, a
    sinusoidal grid's edge) has a lon/lat: it is on the Earth."""
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    cols, rows = _outline(w[:, 0], w[:, 1], w[:, 0] + w[:, 2], w[:, 1] + w[:, 3], 1)
    cols = np.concatenate([cols, (w[:, 0] + w[:, 2] / 2)[:, None]], axis=1)
    rows = np.concatenate([rows, (w[:, 1] + w[:, 3] / 2)[:, None]], axis=1)
    t = transform
    xs = (t.a * cols + t.b * rows + t.c).ravel()
    ys = (t.d * cols + t.e * rows + t.f).ravel()
    src = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    # pyproj, not GDAL: a point PROJ cannot map comes back as inf instead of failing the whole call
    to_ll = Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    lon, lat = (np.asarray(v, dtype=np.float64) for v in to_ll.transform(xs, ys, errcheck=False))
    placed = (np.isfinite(lon) & np.isfinite(lat)).reshape(cols.shape).all(axis=1)
    alat = np.abs(lat).reshape(cols.shape)   # past a pole: no point short of it, some past it
    past_pole = (alat >= 90.0 - POLE_TOLERANCE_DEG).all(axis=1) & (alat > 90.0 + POLE_TOLERANCE_DEG).any(axis=1)
    return placed & ~past_pole



#: Latitude (degrees) beyond which a tile's footprint is stored as its densified outline: near
#: a pole a straight edge in the raster's projection is far from straight in lon/lat, so the
#: four corners alone leave out much of the tile (RELIABILITY "tiles at a pole").
POLAR_LAT = 80.0


#: Tiles wider than this many degrees of longitude store a densified outline, like polar ones.
WIDE_TILE_DEG = 90.0

#: A tile whose edge, straight in the raster's CRS, bows more than this many of its pixels away from
#: the straight line between its corners in lon/lat stores a densified outline (coarse products in
#: conic, sinusoidal or azimuthal projections: a 1 km grid's 256 px tile bows by kilometres, and its
#: four corners alone would hand points near its edge to the neighbouring tile).
BOW_PIXELS = 0.5

_EARTH_M_PER_DEG = 6_371_008.8 * math.pi / 180.0


def _bow_pixels(windows: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Largest bow of each tile's four edges, in pixels: the distance (metres, spherical, local
    equirectangular) between an edge's midpoint and the middle of its corners' chord in lon/lat,
    over the edge's metres per pixel.  ``lon``/``lat``: ``(k, 8)`` outlines with one midpoint per
    edge (:func:`_outline` with ``densify=1``)."""
    un = np.unwrap(np.concatenate([lon, lon[:, :1]], axis=1), period=360.0, axis=1)
    la = np.concatenate([lat, lat[:, :1]], axis=1)
    a_lon, m_lon, b_lon = un[:, 0:8:2], un[:, 1:8:2], un[:, 2:9:2]
    a_lat, m_lat, b_lat = la[:, 0:8:2], la[:, 1:8:2], la[:, 2:9:2]
    cos = np.cos(np.radians(m_lat))
    dev = np.hypot((m_lon - (a_lon + b_lon) / 2) * cos, m_lat - (a_lat + b_lat) / 2) * _EARTH_M_PER_DEG
    length = np.hypot((b_lon - a_lon) * cos, b_lat - a_lat) * _EARTH_M_PER_DEG
    w = np.asarray(windows, dtype=np.float64)
    pixels = np.stack([w[:, 2], w[:, 3], w[:, 2], w[:, 3]], axis=1)  # top, right, bottom, left
    with np.errstate(divide="ignore", invalid="ignore"):
        bow = np.where(length > 0, dev * pixels / length, 0.0)
    return np.nan_to_num(bow, nan=0.0).max(axis=1)


def tile_outlines(transform: Any, crs: Any, windows: np.ndarray, bboxes: np.ndarray,
                  densify: int = DENSIFY_PTS) -> dict[int, list[tuple[float, float]]]:
    """``{i: [(lon, lat), ...]}``: the outline, ``densify`` points per edge clockwise from UL, of
    each window ``i`` whose four corners do not make its footprint: its bbox reaches beyond
    :data:`POLAR_LAT`, is wider than :data:`WIDE_TILE_DEG`, or an edge bows by more than
    :data:`BOW_PIXELS` pixels in lon/lat; other tiles are left out (their four corners are their
    footprint)."""
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    width = np.where(b[:, 2] >= b[:, 0], b[:, 2] - b[:, 0], b[:, 2] + 360.0 - b[:, 0])
    # near a pole, or so wide (a coarse product's tile) that four corners cannot say which way round it goes
    keep = (b[:, 3] > POLAR_LAT) | (b[:, 1] < -POLAR_LAT) | (width > WIDE_TILE_DEG)
    rest = np.flatnonzero(~keep)
    if rest.size:
        r = w[rest]
        cols, rows = _outline(r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3], 1)
        lon, lat = _to_lonlat(transform, crs, cols, rows)
        keep[rest[_bow_pixels(r, lon, lat) > BOW_PIXELS]] = True
    chosen = np.flatnonzero(keep)
    if not chosen.size:
        return {}
    c = w[chosen]
    cols, rows = _outline(c[:, 0], c[:, 1], c[:, 0] + c[:, 2], c[:, 1] + c[:, 3], densify)
    try:
        lon, lat = _to_lonlat(transform, crs, cols, rows)
    except ValueError:  # an edge leaves the Earth between its on-Earth ends (a limb): those keep their corners
        whole = tiles_on_earth(transform, crs, c) & np.array([_finite_outline(transform, crs, r) for r in c])
        chosen, c = chosen[whole], c[whole]
        if not chosen.size:
            return {}
        cols, rows = _outline(c[:, 0], c[:, 1], c[:, 0] + c[:, 2], c[:, 1] + c[:, 3], densify)
        lon, lat = _to_lonlat(transform, crs, cols, rows)
    return {int(i): [(float(x), float(y)) for x, y in zip(lon[j], lat[j])] for j, i in enumerate(chosen)}


def _finite_outline(transform: Any, crs: Any, window: np.ndarray) -> bool:
    cols, rows = _outline(window[None, 0], window[None, 1], window[None, 0] + window[None, 2],
                          window[None, 1] + window[None, 3])
    try:
        _to_lonlat(transform, crs, cols, rows)
    except ValueError:
        return False
    return True


__all__ = ["BOW_PIXELS", "POLAR_LAT", "POLE_TOLERANCE_DEG", "WIDE_TILE_DEG", "tile_outlines", "tiles_on_earth"]
