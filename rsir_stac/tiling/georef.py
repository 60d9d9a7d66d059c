"""Georeference checks made when a raster is opened: a map grid (CRS and geotransform), pixels that
can be placed on the ground (no zero size, latitudes within +-90), and numbers in the CRS's own units
(degrees written under a projected CRS are refused, as are grads or radians read as degrees)."""

from __future__ import annotations

import logging
import math
from typing import Any

from rsir_stac.errors import NotGeoreferencedError, RasterError

log = logging.getLogger(__name__)


def check_georef(ds: Any, name: str) -> None:
    """Refuse a raster that is not on a map grid, naming every part that is missing and a
    fix with rasterio's own ``rio`` command (installed with rsir-stac; GDAL's tools where
    rasterio has no equivalent)."""
    no_transform = ds.transform.is_identity
    if ds.crs is None or no_transform:
        gcps, _ = ds.gcps
        if gcps:
            raise RasterError(f"{name} is georeferenced only by GCPs; warp it to a map grid first, e.g. "
                              "`rio warp in.tif out.tif --dst-crs EPSG:4326`")
        if ds.rpcs is not None:
            raise RasterError(f"{name} is georeferenced only by RPCs (a sensor model, not a map grid); orthorectify "
                              "it first, e.g. `gdalwarp -rpc -t_srs EPSG:4326 in.tif out.tif` (with a DEM: -to RPC_DEM=dem.tif)")
    if ds.crs is None and no_transform:
        raise NotGeoreferencedError(
            f"{name} is not georeferenced (no CRS and no geotransform); give it both, e.g. "
            "`rio edit-info --crs EPSG:32633 --transform '[10, 0, WEST, 0, -10, NORTH]' FILE` "
            "(pixel size and top-left corner in the CRS's units), or pass a georeferenced file", "both",
            (ds.height, ds.width))
    if ds.crs is None:
        raise NotGeoreferencedError(f"{name} has no CRS; assign its true one, e.g. `rio edit-info --crs EPSG:32633 "
                                    "FILE`, or pass a georeferenced file", "crs",
                                    (ds.height, ds.width))
    if no_transform:
        raise NotGeoreferencedError(
            f"{name} has no geotransform; give it one, e.g. `rio edit-info --transform "
            "'[10, 0, WEST, 0, -10, NORTH]' FILE` (pixel size and top-left corner in the CRS's units), "
            "or pass a georeferenced file", "transform", (ds.height, ds.width))
    if not (ds.crs.is_geographic or ds.crs.is_projected):
        raise RasterError(f"{name} has a local (engineering) CRS, {_crs_name(ds.crs)!r}, "
                          "with no link to the Earth; reproject it to a map CRS first, e.g. "
                          "`gdalwarp -s_srs EPSG:XXXX -t_srs EPSG:4326 in.tif out.tif` with its true CRS")
    if ds.width <= 0 or ds.height <= 0 or ds.count <= 0:
        raise RasterError(f"{name} is empty (no pixels or no bands); pass a valid raster")
    _check_transform(ds, name)


def _check_transform(ds: Any, name: str) -> None:
    """Refuse a geotransform that cannot place pixels on the ground: a zero pixel size (every pixel
    at one point; a degenerate matrix) or, in a lon/lat CRS, a latitude beyond ±90 (by more than
    half a pixel: a grid whose edge sits on the pole is fine).  Both once gave impossible footprints."""
    t = ds.transform
    det = t.a * t.e - t.b * t.d
    if not math.isfinite(det) or abs(det) < 1e-300 or not all(math.isfinite(v) for v in (t.c, t.f)):
        raise RasterError(f"{name} has a geotransform with a zero pixel size ({tuple(round(v, 9) for v in t[:6])}), "
                          "which puts every pixel at one point; give it the true one, e.g. `rio edit-info "
                          "--transform '[10, 0, WEST, 0, -10, NORTH]' FILE` (pixel size and top-left corner in the "
                          "CRS's units)")
    if ds.crs.is_projected:
        _check_projected_pixels(ds, name)
    if ds.crs.is_geographic:
        deg = _degrees_per_unit(ds.crs)   # a CRS in grads or radians: its numbers are not degrees
        ys = [(t * (x, y))[1] * deg for x in (0, ds.width) for y in (0, ds.height)]
        half = 0.5 * math.hypot(t.d, t.e) * deg
        worst = max(ys, key=abs)
        xs = [(t * (x, y))[0] * deg for x in (0, ds.width) for y in (0, ds.height)]
        if max(abs(v) for v in xs + ys) > 1000:  # metres under a degree CRS
            raise RasterError(f"{name}: its corner ({xs[0]:.6g}, {ys[0]:.6g}) is not a longitude and latitude, "
                              f"yet its CRS {_crs_name(ds.crs)} is geographic: the CRS is probably wrong (projected "
                              "coordinates); assign the right one, e.g. `rio edit-info --crs EPSG:32633 FILE`")
        far = max(xs, key=abs)
        unit = _angle_unit(ds.crs) if deg != 1.0 else "degree"
        if abs(far) > 360 + 0.5 * math.hypot(t.a, t.b) * deg:  # no convention goes there: -180..180 or 0..360
            raise RasterError(f"{name} reaches longitude {_angle(far, deg, unit)}, beyond both -180..180 and 0..360"
                              f"{_in_units(deg, unit, 180, 360)}: its geotransform is wrong ({unit}s in "
                              f"{_crs_name(ds.crs)}); give it the true one, e.g. `rio edit-info --transform '[0.01, 0, "
                              f"WEST, 0, -0.01, NORTH]' FILE` with WEST within ±{180 / deg:g}")
        if abs(worst) > 90 + half:
            raise RasterError(f"{name} reaches latitude {_angle(worst, deg, unit)}, beyond ±90"
                              f"{_in_units(deg, unit, 90)}: its geotransform or CRS is wrong ({unit}s in "
                              f"{_crs_name(ds.crs)}); give it the true ones, e.g. `rio edit-info --transform "
                              f"'[0.01, 0, WEST, 0, -0.01, NORTH]' FILE` with NORTH within ±{90 / deg:g}")


def _angle_unit(crs: Any) -> str:
    """The name of a geographic CRS's angular unit ("grad", "radian"), singular."""
    try:
        return str(crs.units_factor[0]).rstrip("s") or "unit"
    except Exception:  # noqa: BLE001 - a name for a message only
        return "unit"


def _angle(value_deg: float, deg: float, unit: str) -> str:
    """``value_deg`` for a message: degrees, and the file's own number where its CRS is in ``unit``."""
    return f"{value_deg:.6g}" if deg == 1.0 else f"{value_deg:.6g} degrees ({value_deg / deg:.6g} {unit}s)"


def _in_units(deg: float, unit: str, *bounds: float) -> str:
    """`` degrees (±100 grads)`` after a bound in degrees where the CRS is in another ``unit``."""
    if deg == 1.0:
        return ""
    return " degrees (" + " and ".join(f"{b / deg:g}" for b in bounds) + f" {unit}s)"


def _degrees_per_unit(crs: Any) -> float:
    """Degrees in one angular unit of a geographic ``crs`` (1 for degrees, 0.9 for grads)."""
    try:
        _, radians = crs.units_factor
        return float(radians) / (math.pi / 180.0) if radians and math.isfinite(float(radians)) else 1.0
    except Exception:  # noqa: BLE001 - a CRS without units: taken as degrees, as GDAL does
        return 1.0


#: Pixels finer than this (metres) are no aerial or satellite image's.  A projected raster with pixels
#: this fine is refused: its numbers are degrees written under a metre CRS (a 1 m pixel is ~1e-5 degrees).
MIN_PIXEL_M = 1e-4


def _check_projected_pixels(ds: Any, name: str) -> None:
    """Refuse a projected raster whose pixel size says its geotransform is in degrees, not the CRS's
    units: it would be placed thousands of kilometres away (near the projection's false origin)."""
    t = ds.transform
    try:
        unit, metres = ds.crs.units_factor
        metres = float(metres)
    except Exception:  # noqa: BLE001 - no unit known: nothing to compare
        return
    px = min(math.hypot(t.a, t.d), math.hypot(t.b, t.e)) * metres
    corners = [t @ (x, y) for x in (0, ds.width) for y in (0, ds.height)]
    near_origin = all(-180 <= x <= 360 and abs(y) <= 90 for x, y in corners)  # lon/lat, -180..180 or 0..360
    if px < MIN_PIXEL_M:
        x0, y0 = corners[0]
        looks = f", and its corner ({x0:.6g}, {y0:.6g}) looks like a longitude and latitude" if near_origin else ""
        raise RasterError(f"{name} has pixels of {px:.3g} m ({_crs_name(ds.crs)}, unit: {unit}), finer than any "
                          f"aerial or satellite image{looks}: its geotransform is probably in degrees under a "
                          "projected CRS; assign the CRS its numbers are in, e.g. `rio edit-info --crs EPSG:4326 "
                          "FILE`, or give the true transform")
    if near_origin and px <= DEGREE_PIXEL_MAX_M:
        _check_not_degrees(ds, name, corners[0])


#: Pixels up to this size (metres) may be degrees under a projected CRS (a degree is 111 km: any
#: raster of 1 degree pixels or finer, written in degrees, has pixels of 1 "metre" or less).
DEGREE_PIXEL_MAX_M = 1.0
#: A projected raster whose numbers are degrees lands within this many degrees of lon/lat 0, 0 in a CRS
#: whose false origin is there (Web Mercator, plate carree): no aerial image's ground.
NULL_ISLAND_DEG = 0.01


def _check_not_degrees(ds: Any, name: str, corner: tuple[float, float]) -> None:
    """A projected raster lying within -180..360, +-90 units of its CRS's false origin with pixels of
    at most :data:`DEGREE_PIXEL_MAX_M` (numbers that read as lon/lat degrees): refused where, read in
    the CRS, it falls outside the CRS's area of use (pyproj; UTM's and most national grids' false
    origins lie outside their zone), on lon/lat 0, 0 (Web Mercator), or where its numbers read as degrees
    fall inside that area too (a false origin inside its own area: the British National Grid, Japan's
    plane rectangular systems).  Read as given where the metres fall inside the area and the degrees
    outside it; warned about where nothing decides (a site grid with no area of use, a polar CRS at
    its pole)."""
    from rsir_stac.tiling.area_of_use import degrees_outside, where_on_earth

    placed = where_on_earth(ds, *(ds.transform @ (ds.width / 2.0, ds.height / 2.0)))
    if placed is None:
        return
    lon, lat, area = placed
    looks = (f"{name}: its corner ({corner[0]:.6g}, {corner[1]:.6g}) looks like a longitude and latitude under "
             f"the projected CRS {_crs_name(ds.crs)}, which places it at lon {lon:.4f}, lat {lat:.4f}")
    if area is not None and degrees_outside(area, lon, lat) != (0.0, 0.0):
        w, s, e, n = area.bounds
        where = f"outside where the CRS is used (lon {w:g}..{e:g}, lat {s:g}..{n:g})"
    elif abs(lon) < NULL_ISLAND_DEG and abs(lat) < NULL_ISLAND_DEG:
        where = "in the sea at lon/lat 0, 0"
    elif area is not None and not _polar(area):
        if not _read_as_degrees_inside(ds, area):
            return  # as metres inside the CRS's area, as degrees outside it: a survey near the origin
        w, s, e, n = area.bounds
        where = (f"while read as degrees it lies inside where the CRS is used (lon {w:g}..{e:g}, lat {s:g}..{n:g}), "
                 "as a real survey there almost never does")
    else:
        log.warning("%s, within metres of the CRS's origin; if its numbers are degrees, assign the CRS they are in "
                    "(rio edit-info --crs EPSG:4326 FILE) and ingest it into a new index; if it is a survey near "
                    "that origin, ignore this", looks)
        return
    raise RasterError(f"{looks}, {where}: its geotransform is probably in degrees; assign the CRS its numbers are "
                      "in, e.g. `rio edit-info --crs EPSG:4326 FILE`, or give the true transform")


def _polar(area: Any) -> bool:
    """Whether ``area`` (pyproj ``AreaOfUse``) holds a pole: there a polar CRS's origin, degrees and a
    survey of the pole all fall inside its cap."""
    return area.bounds[1] <= -89.0 or area.bounds[3] >= 89.0


def _read_as_degrees_inside(ds: Any, area: Any) -> bool:
    """Whether a corner or the centre of ``ds``, its numbers read as lon/lat degrees (0..360 folded to
    -180..180), lies inside ``area`` (pyproj ``AreaOfUse``)."""
    from rsir_stac.tiling.area_of_use import degrees_outside

    points = [ds.transform @ (x, y) for x in (0, ds.width / 2.0, ds.width) for y in (0, ds.height / 2.0, ds.height)]
    return any(degrees_outside(area, x - 360.0 if x > 180.0 else x, y) == (0.0, 0.0) for x, y in points)


def _crs_name(crs: Any) -> str:
    import pyproj

    try:
        return pyproj.CRS.from_user_input(crs.to_wkt()).name
    except Exception:  # noqa: BLE001 - a name for a message only
        return "unnamed"


__all__ = ["DEGREE_PIXEL_MAX_M", "MIN_PIXEL_M", "NULL_ISLAND_DEG", "check_georef"]
