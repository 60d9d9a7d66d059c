"""Area files saved in a projected CRS (QGIS: a GeoPackage in UTM or polar stereographic) read as
the same area in lon/lat: edges densified before reprojecting (a 4-corner box's edges moved by
~0.9 km in UTM and ~80 km in EPSG:3413 when only its corners were reprojected), and areas that
hold or touch a pole read as polar caps (they were refused as self-intersecting)."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import Point, box

from rsir_stac.store.filter_parse import load_polygon

gpd = pytest.importorskip("geopandas")


def _save(tmp_path, geom, crs, name="area.gpkg"):
    path = tmp_path / name
    gpd.GeoDataFrame(geometry=[geom], crs=crs).to_file(path)
    return path


def _agree(area, geom, crs, lonlats):
    """Each lon/lat point is in ``area`` exactly when it is in ``geom`` (in ``crs``)."""
    to_src = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    for lon, lat in lonlats:
        want = geom.covers(Point(*to_src.transform(lon, lat)))
        assert area.contains(lon, lat) == want, (lon, lat, want)


@pytest.mark.parametrize("crs, geom", [
    ("EPSG:32614", box(400e3, 5100e3, 600e3, 5300e3)),                # a 200 km UTM box
    ("EPSG:3413", box(-500e3, -2500e3, 500e3, -1500e3)),              # a 1,000 km box over Greenland
])
def test_a_projected_box_keeps_its_straight_edges(tmp_path, crs, geom):
    area = load_polygon(_save(tmp_path, geom, crs))
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    w, s, e, n = geom.bounds
    pts = []
    for f in np.linspace(0.05, 0.95, 7):  # just inside and just outside each edge, along it
        x, y = w + f * (e - w), s + f * (n - s)
        for d in (-400.0, 400.0):
            pts += [to_ll.transform(x, n + d), to_ll.transform(x, s + d), to_ll.transform(w + d, y),
                    to_ll.transform(e + d, y)]
    _agree(area, geom, crs, pts)


@pytest.mark.parametrize("crs, geom, pole", [
    ("EPSG:3413", box(-100e3, -100e3, 100e3, 100e3), 90.0),   # holds the North Pole
    ("EPSG:3031", box(-100e3, -100e3, 100e3, 100e3), -90.0),  # holds the South Pole
    ("EPSG:3413", box(-100.0, 0.0, 100.0, 100.0), 90.0),      # the pole on its edge
    ("EPSG:3413", box(0.0, 0.0, 100.0, 100.0), 90.0),         # the pole at its corner
])
def test_areas_holding_or_touching_a_pole_are_polar_caps(tmp_path, crs, geom, pole):
    area = load_polygon(_save(tmp_path, geom, crs))
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    w, s, e, n = geom.bounds
    rng = np.random.default_rng(0)
    pts = [to_ll.transform(x, y) for x, y in zip(rng.uniform(w - (e - w), e + (e - w), 300),
                                                 rng.uniform(s - (n - s), n + (n - s), 300))]
    _agree(area, geom, crs, pts)
    assert area.contains(0.0, pole) and area.contains(123.0, pole)  # the pole itself, at any longitude


def test_an_area_across_the_antimeridian_in_utm_is_cut_there(tmp_path):
    crs = "EPSG:32760"
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(180.0, -16.5)
    geom = box(x - 5e3, y - 5e3, x + 5e3, y + 5e3)
    area = load_polygon(_save(tmp_path, geom, crs))
    _agree(area, geom, crs, [(lon, lat) for lon in (179.96, 179.99, -179.99, -179.96, 179.9, -179.9)
                             for lat in (-16.53, -16.5, -16.47)])


def test_a_bow_tie_in_a_projected_crs_is_refused_not_halved(tmp_path):
    """Re-check: a self-intersecting ring in EPSG:32614 was densified (which re-nodes it into one
    valid lobe) and searched as a quarter of its hull, exit 0."""
    from shapely.geometry import Polygon

    from rsir_stac.errors import InputError

    bowtie = Polygon([(200e3, 4600e3), (800e3, 5200e3), (800e3, 4600e3), (200e3, 5200e3)])
    path = _save(tmp_path, bowtie, "EPSG:32614")
    with pytest.raises(InputError, match=r"not valid in its own CRS \(Self-intersection"):
        load_polygon(path)
