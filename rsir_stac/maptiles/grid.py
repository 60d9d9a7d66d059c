"""Tile math of the Web Mercator quad tree (``z/x/y`` as in OpenStreetMap, Google and
Leaflet): zoom limits, the grid check, a tile's bounds in degrees, and the zoom levels a
scene is drawn at from its GSD and extent (morecantile's WebMercatorQuad, OGC 17-083r4)."""

from __future__ import annotations

import functools
import math

from rsir_stac.errors import InputError

#: Largest zoom level served (about 2 cm per pixel at the equator).
MAX_ZOOM = 24
#: Zoom levels drawn above a scene's native resolution (upsampled).
OVERZOOM = 3
#: Zoom levels drawn below the one where the scene fits one tile.
UNDERZOOM = 3
#: Side of a web-map tile, pixels.
TILE_SIZE = 256


def zoom_range(gsd: float, bbox: tuple[float, float, float, float]) -> tuple[int, int] | None:
    """Zoom levels a scene is drawn at, from its pixel size ``gsd`` (metres) and ``bbox`` (degrees):
    from the level where it fits one 256 px tile, minus :data:`UNDERZOOM`, to the level whose
    pixels are no larger than ``gsd`` at its latitude (native), plus :data:`OVERZOOM` (the rule
    rio-tiler's ``minzoom``/``maxzoom`` follow, without opening the raster)."""
    w, s, e, n = bbox
    if not (gsd > 0 and all(math.isfinite(v) for v in bbox)):
        return None
    lat = math.radians((s + n) / 2)
    equator = 2 * math.pi * 6378137.0 / TILE_SIZE     # metres per pixel at zoom 0 on the equator
    scale = equator * max(math.cos(lat), 1e-6)
    native = math.ceil(math.log2(scale / gsd) - 1e-9)
    span_m = max((e - w) * math.cos(lat), n - s) * 111_320.0
    fits = math.floor(math.log2(scale * TILE_SIZE / max(span_m, gsd * TILE_SIZE)))
    lo, hi = max(0, min(fits, native) - UNDERZOOM), min(MAX_ZOOM, max(0, native) + OVERZOOM)
    return (lo, hi)


def check_tile(z: int, x: int, y: int) -> None:
    """Raise :class:`InputError` unless ``z/x/y`` names a tile of the Web Mercator grid."""
    if not 0 <= z <= MAX_ZOOM:
        raise InputError(f"zoom level {z} is outside 0..{MAX_ZOOM}; ask for a tile within those zoom levels")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise InputError(f"tile {z}/{x}/{y} is outside the grid (x and y within 0..{n - 1} at zoom {z})")


@functools.lru_cache(maxsize=1)
def _web_mercator():
    """morecantile's WebMercatorQuad (``tms.get`` deep-copies it on every call: ~4 ms)."""
    import morecantile

    return morecantile.tms.get("WebMercatorQuad")


def mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(W, S, E, N)`` in metres (EPSG:3857) of Web Mercator tile ``z/x/y``."""
    b = _web_mercator().xy_bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(W, S, E, N)`` in degrees of Web Mercator tile ``z/x/y``."""
    b = _web_mercator().bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)
