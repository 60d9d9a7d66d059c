"""``--exclude-within`` about an example tile that straddles 180: its footprint, a MultiPolygon cut
at the antimeridian, fell back to a circle about its centre holding the whole tile, which dropped
neighbours ~20 m beyond the distance asked (38.4 m away at 65 N, dropped for any M from 20 to 30)."""

from __future__ import annotations

import pytest
from pyproj import Transformer

from tests.test_analysis import bundle, index, world  # noqa: F401 - fixtures

from rsir_stac.store.areas import GeoArea
from rsir_stac.store.exclusion import footprint_exclusion

TILE = 76.8  # metres (256 px at 0.3 m)


def _tile(crs: str, col: int, row: int, x0: float, y0: float) -> dict:
    """A stored tile's payload (corners, centre, bbox) for grid cell (col, row) from corner (x0, y0) in ``crs``."""
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    xs = (x0 + col * TILE, x0 + (col + 1) * TILE)
    ys = (y0 - row * TILE, y0 - (row + 1) * TILE)
    corners = [to_ll.transform(x, y) for x, y in ((xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1]))]
    cx, cy = to_ll.transform((xs[0] + xs[1]) / 2, (ys[0] + ys[1]) / 2)
    lons = [c[0] for c in corners]
    w, e = (min(lons), max(lons)) if max(lons) - min(lons) < 180 else (min(v for v in lons if v > 0),
                                                                      max(v for v in lons if v < 0))
    return {"corners": [{"lon": lo, "lat": la} for lo, la in corners], "location": {"lon": cx, "lat": cy},
            "bbox": [w, min(c[1] for c in corners), e, max(c[1] for c in corners)]}


@pytest.mark.parametrize("lat", [65.0, -16.5])
def test_neighbours_of_a_tile_across_180_are_cut_at_the_distance_asked(lat):
    crs = "EPSG:32660" if lat > 0 else "EPSG:32760"  # UTM zone 60: its grid runs straight over 180
    x180, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(180.0, lat)
    x0, y0 = x180 - TILE / 2, y + TILE / 2  # the example tile (1, 1) straddles 180
    x0 -= TILE
    y0 += TILE
    example = _tile(crs, 1, 1, x0, y0)
    assert max(c["lon"] for c in example["corners"]) > 179 and min(c["lon"] for c in example["corners"]) < -179
    neighbours = {(c, r): _tile(crs, c, r, x0, y0)["location"] for c in range(3) for r in range(3) if (c, r) != (1, 1)}
    for d, side_kept in ((30.0, True), (37.0, True), (40.0, False)):
        around, areas = footprint_exclusion(example, d)
        assert not around and areas  # the tile's own shape, not a circle
        area = GeoArea.from_rings(areas[0]) if len(areas) == 1 else GeoArea(tuple(
            p for ring in areas for p in GeoArea.from_rings(ring).polygons))
        for (c, r), loc in neighbours.items():
            dropped = area.contains(loc["lon"], loc["lat"])
            side = c == 1 or r == 1  # 38.4 m from the example's edge; corners are 54.3 m away
            assert dropped == (side and not side_kept), (d, (c, r), dropped)


@pytest.mark.parametrize("lon, lat, d, tile", [(100.0, -89.99, 1e6, 76.8), (0.0, 90.0, 3e5, 76.8), (45.0, -80.0, 30.0, 76.8),
                                               (-179.99, 70.0, 5000.0, 76.8)])
def test_the_exclusion_is_the_set_of_centres_within_the_distance_anywhere(lon, lat, d, tile):
    """Re-check: near a pole the exclusion fell back to a circle that dropped nothing at 200 km or
    more, or crashed (GEOSException); a centre exactly on 180 was never dropped.  The grown area is
    now brought back like an area file (polar caps, cut at 180) and answered like --within."""
    import numpy as np
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    # a square tile about (lon, lat): its corners tile/sqrt(2) from the centre at 45, 135, 225, 315 degrees
    corners = [geod.fwd(lon, lat, az, tile / np.sqrt(2))[:2] for az in (315, 45, 135, 225)]
    from rsir_stac.tiling.footprints import footprint_geometry as ring_geometry

    geom = ring_geometry(corners, pole=90.0 if lat > 89 else -90.0 if lat < -89 else None)
    rings = [p[0] for p in geom["coordinates"]] if geom["type"] == "MultiPolygon" else [geom["coordinates"][0]]
    from shapely.geometry import Point, Polygon

    payload = {"corners": [{"lon": a, "lat": b} for a, b in corners], "location": {"lon": lon, "lat": lat},
               "bbox": [min(c[0] for c in corners), min(c[1] for c in corners), max(c[0] for c in corners),
                        max(c[1] for c in corners)]}
    around, areas = footprint_exclusion(payload, d)
    assert not around and areas
    area = GeoArea(tuple(p for ring in areas for p in GeoArea.from_rings(ring).polygons))
    rng = np.random.default_rng(1)
    for az, dist in zip(rng.uniform(0, 360, 400), rng.uniform(0, 2.5 * (d + tile), 400)):
        plon, plat, _ = geod.fwd(lon, lat, az, dist)
        plon = 180.0 if abs(abs(plon) - 180.0) < 1e-3 else plon  # some on 180 itself
        # truth: the geodesic distance from the point to the tile's edge (densified), 0 inside
        near = min(geod.inv(plon, plat, *_along(corners, k))[2] for k in range(400))
        inside = any(Polygon(r).buffer(0).contains(Point(plon, plat)) for r in rings)
        truth = inside or near <= d
        margin = max(2.0, 2e-5 * d) + tile / 100
        if abs(near - d) > margin:  # away from the boundary, where rounding decides
            assert area.contains(plon, plat) == truth, (plon, plat, near, d)


def _along(corners, k, n=400):
    """Point k of n along the closed ring of corners (lon/lat, straight in lon/lat between them)."""
    side, t = divmod(k * 4 / n, 1)
    a, b = corners[int(side) % 4], corners[(int(side) + 1) % 4]
    dlon = (b[0] - a[0] + 540) % 360 - 180
    return a[0] + t * dlon, a[1] + t * (b[1] - a[1])


def test_an_exclusion_round_the_whole_earth_drops_everything_and_infinity_is_refused(index, world):
    """Re-check R6: at ~19,995 km or more the grown area folded (an azimuthal projection's antipode)
    and dropped almost nothing; inf crashed with an OverflowError."""
    from rsir_stac.errors import InputError

    pid = world[1][0].id
    assert not index.search(point_id=pid, k=5, exclude_within_m=19_995_000.0).hits
    assert not index.search(point_id=pid, k=5, exclude_within_m=25_000_000.0).hits
    assert index.search(point_id=pid, k=5, exclude_within_m=10.0).hits
    with pytest.raises(InputError, match="finite number"):
        index.search(point_id=pid, k=5, exclude_within_m=float("inf"))
