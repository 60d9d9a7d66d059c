"""Where a CRS applies: the celestial body it is of, and its area of use (pyproj), checked when a
scene is opened (:meth:`rsir_stac.tiling.scene.SceneReader.open`)."""

from __future__ import annotations

import logging
import math
from typing import Any

from rsir_stac.tiling.footprints import crs_label

log = logging.getLogger(__name__)


def other_body(crs: Any) -> str | None:
    """The celestial body a CRS is of when it is not the Earth (``"Mars"``: PROJ's name, else "another
    body" for an ellipsoid far from the Earth's), else None."""
    try:
        from pyproj import CRS as ProjCRS

        c = ProjCRS.from_user_input(crs.to_wkt())
        body = getattr(c, "celestial_body_name", None) or ""
        if body and body.lower() != "earth":
            return body
        a = c.ellipsoid.semi_major_metre if c.ellipsoid is not None else None
        return "another body" if a and not 6.3e6 <= a <= 6.4e6 else None
    except Exception:  # noqa: BLE001 - no CRS to tell by
        return None


#: How far (degrees of longitude, latitude) a projected scene's centre may lie outside its CRS's area
#: of use before it is warned about (national grids are used well past their zone: Norway maps its
#: whole 5-31 degrees E in UTM 33, whose area is 12-18 degrees E).
AREA_OF_USE_MARGIN_DEG = (20.0, 10.0)


def where_on_earth(ds: Any, x: float, y: float) -> tuple[float, float, Any] | None:
    """``(lon, lat, area)`` of the point ``x, y`` (in the CRS of ``ds``, a projected raster) and its CRS's
    area of use (pyproj ``AreaOfUse``, None where the CRS names none); None where ``ds`` is not projected
    or PROJ cannot place the point."""
    try:
        from pyproj import CRS as ProjCRS
        from pyproj import Transformer

        crs = ProjCRS.from_user_input(ds.crs.to_wkt())
        if not crs.is_projected:
            return None
        area = crs.area_of_use
        if area is None and crs.to_epsg(min_confidence=90):  # GDAL's WKT1 carries no usage: the registry's
            area = ProjCRS.from_epsg(crs.to_epsg(min_confidence=90)).area_of_use
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y, errcheck=False)
    except Exception:  # noqa: BLE001 - nowhere to place it
        return None
    return (float(lon), float(lat), area) if math.isfinite(lon) and math.isfinite(lat) else None


def degrees_outside(area: Any, lon: float, lat: float) -> tuple[float, float]:
    """How far (degrees of longitude, latitude) ``lon, lat`` lies outside ``area`` (pyproj ``AreaOfUse``,
    which may cross the antimeridian); ``(0, 0)`` inside it."""
    w, s, e, n = area.bounds
    dlon = 0.0 if (w <= lon <= e if w <= e else (lon >= w or lon <= e)) else min(
        (w - lon) % 360.0, (lon - e) % 360.0)
    return dlon, max(s - lat, lat - n, 0.0)


def warn_far_from_area_of_use(ds: Any, name: str) -> None:
    """Warn when a projected raster's centre lies far outside its CRS's area of use (pyproj): easting and
    northing swapped, or coordinates of another zone, put the scene on the wrong ground without any
    error (a UTM 33N raster with its coordinates swapped lands in the Indian Ocean)."""
    placed = where_on_earth(ds, *(ds.transform @ (ds.width / 2.0, ds.height / 2.0)))
    if placed is None or placed[2] is None:
        return
    lon, lat, area = placed
    dlon, dlat = degrees_outside(area, lon, lat)
    if dlon > AREA_OF_USE_MARGIN_DEG[0] or dlat > AREA_OF_USE_MARGIN_DEG[1]:
        w, s, e, n = area.bounds
        log.warning("%s: its centre falls at lon %.2f, lat %.2f, far outside where its CRS %s is used (lon %g..%g, "
                    "lat %g..%g); if the scene is not there, its coordinates or CRS are wrong (easting and northing "
                    "swapped, another zone): fix them, e.g. rio edit-info --crs EPSG:XXXX FILE", name, lon, lat,
                    crs_label(ds.crs), w, e, s, n)


__all__ = ["AREA_OF_USE_MARGIN_DEG", "degrees_outside", "other_body", "warn_far_from_area_of_use", "where_on_earth"]
