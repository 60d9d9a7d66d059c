"""``--exclude-within`` about an example tile that straddles 180: its footprint, a MultiPolygon cut
at the antimeridian, fell back to a circle about its centre holding the whole tile, which dropped
neighbours ~20 m beyond the distance asked (38.4 m away at 65 N, dropped for any M from 20 to 30)."""

from __future__ import annotations

import pytest
from pyproj import Transformer

from rsir_stac.store.areas import GeoArea
from rsir_stac.store.query import footprint_exclusion

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
