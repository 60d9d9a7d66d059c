"""Pixel size in metres and lon/lat footprints of tiles."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyproj import Geod
from rasterio.warp import transform as warp_transform

from rsir_stac.errors import RasterError

_GEOD = Geod(ellps="WGS84")

Corner = tuple[float, float]


def _is_mercator(crs: Any) -> bool:
    try:
        from pyproj import CRS as ProjCRS

        op = ProjCRS.from_user_input(crs.to_wkt()).coordinate_operation
    except Exception:  # noqa: BLE001 - unusual CRS: treat as plain projected
        return False
    method = (op.method_name if op is not None else "").lower()
    return "mercator" in method and "transverse" not in method


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
        raise RasterError(f"{ds.name}: cannot compute the pixel size in metres at the scene centre; check its CRS and geotransform")
    return float(dx), float(dy)


__all__ = ["Corner", "native_pixel_size"]
