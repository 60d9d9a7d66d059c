"""Issue 13, case 1: footprints, extents and filters at the antimeridian.

The fixture is the case from the issue: 512 x 512 px at 0.3 m in UTM zone 60S
(EPSG:32760), straddling longitude 180 near latitude -16.5.  Right values come
from rasterio's ``transform_bounds`` and pyproj, and the filters are checked in
both store back ends against a direct computation on the tile centres.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from affine import Affine
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import bounds as window_bounds

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import SearchResult, to_geojson
from rsir_stac.store import SearchFilter, open_store
from rsir_stac.store.filters import parse_bbox
from rsir_stac.tiling import SceneReader

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

CRS = "EPSG:32760"
TILE = 64
R = 6371008.8  # Qdrant's haversine radius


def make_antimeridian_scene(path):
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(180.0, -16.5)
    transform = from_origin(x - 256 * 0.3 + 0.1, y + 256 * 0.3, 0.3, 0.3)  # 180 runs through the middle
    rng = np.random.default_rng(60)
    data = np.kron(rng.integers(0, 255, (3, 32, 32)), np.ones((16, 16))).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8", crs=CRS,
                       transform=transform) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_antimeridian_scene(tmp_path_factory.mktemp("am") / "fiji.tif")


def test_tile_footprints_are_right_across_180(scene):
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    with SceneReader.open(str(scene), tile_size=TILE) as reader, rasterio.open(scene) as ds:
        refs = reader.windows()
        w, s, e, n = reader.bounds_lonlat
        assert w > e and (w - 360) < e  # the scene crosses 180: west > east, a few metres wide
        crossing = 0
        for ref in refs:
            b = window_bounds(ref.window.to_window(), ds.transform)
            want = transform_bounds(CRS, "EPSG:4326", *b, densify_pts=21)
            assert ref.bbox == pytest.approx(want, abs=1e-12)
            if ref.bbox[0] > ref.bbox[2]:
                crossing += 1
                assert ref.bbox[0] > 179.99 and ref.bbox[2] < -179.99  # narrow, not -180..180
            t = ds.transform
            c0, r0 = ref.window.col_off, ref.window.row_off
            c1, r1 = c0 + ref.window.width, r0 + ref.window.height
            for got, (col, row) in zip(ref.corners, [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]):
                assert got == pytest.approx(to_lonlat.transform(*(t * (col, row))), abs=1e-9)
            assert ref.centroid == pytest.approx(to_lonlat.transform(*(t * ((c0 + c1) / 2, (r0 + r1) / 2))),
                                                 abs=1e-9)
            assert all(-180 <= lon <= 180 for lon, _ in ref.corners)
        assert crossing >= 8  # a column of tiles straddles 180 (more where the grid is not north-south)


def test_crossing_footprint_is_a_multipolygon_cut_at_180(scene):
    from rsir_stac.store import SearchHit

    with SceneReader.open(str(scene), tile_size=TILE) as reader:
        ref = next(r for r in reader.windows() if r.bbox[0] > r.bbox[2])
    payload = {"corners": [{"lon": lon, "lat": lat} for lon, lat in ref.corners]}
    geom = to_geojson(SearchResult("point", None, None, (SearchHit("x", 0.0, payload),)))["features"][0]["geometry"]
    assert geom["type"] == "MultiPolygon" and len(geom["coordinates"]) == 2
    east, west = sorted(geom["coordinates"], key=lambda p: -p[0][0][0])
    assert all(179.99 <= x <= 180 for x, _ in east[0]) and all(-180 <= x <= -179.99 for x, _ in west[0])


@pytest.fixture(scope="module")
def stores(scene, tiny_bundle, tmp_path_factory):
    """The scene ingested into an Edge index and into qdrant-client's in-memory mode."""
    opts = IngestOptions(tile_size=TILE, native_gsd=True)
    edge_path = tmp_path_factory.mktemp("amidx") / "idx"
    assert ingest([str(scene)], index=str(edge_path), model=tiny_bundle, options=opts).points_written == 64
    mem = open_store(qdrant_url=":memory:")
    assert ingest([str(scene)], store=mem, model=tiny_bundle, options=opts).points_written == 64
    edge = open_store(str(edge_path))
    yield {"edge": edge, "qdrant-client": mem}
    edge.close()
    mem.close()


def _centres(store):
    return {p.id: (p.payload["location"]["lon"], p.payload["location"]["lat"])
            for p in store.iter_points(with_vectors=False)}


def _ids(store, flt):
    q = np.zeros(store.meta().dim, np.float32)
    return {h.id for h in store.search(q, k=1000, flt=flt, exact=True)}


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_info_extent_crosses_180(scene, stores, backend):
    info = stores[backend].info()
    with rasterio.open(scene) as ds:
        want = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    assert info.extent == pytest.approx(want, abs=1e-9)
    assert info.extent[0] > info.extent[2]


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_bbox_across_180(stores, backend):
    store = stores[backend]
    centres = _centres(store)
    w, s, e, n = parse_bbox("179.9996,-16.5006,-179.9996,-16.4994")  # accepted, W > E
    want = {i for i, (lon, lat) in centres.items() if (lon > w or lon < e) and s < lat < n}
    assert 0 < len(want) < len(centres)
    assert any(lon > 0 for i, (lon, _) in centres.items() if i in want)
    assert any(lon < 0 for i, (lon, _) in centres.items() if i in want)
    flt = SearchFilter(bbox=(w, s, e, n))
    assert _ids(store, flt) == want and store.count(flt) == len(want)


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_near_radius_across_180(stores, backend):
    store = stores[backend]
    centres = _centres(store)
    lon0, lat0, radius = 180.0, -16.5, 40.0

    def dist(lon, lat):  # haversine, metres
        p1, p2, dl = math.radians(lat0), math.radians(lat), math.radians(lon - lon0)
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * R * math.asin(math.sqrt(a))

    want = {i for i, (lon, lat) in centres.items() if dist(lon, lat) < radius}
    assert {np.sign(centres[i][0]) for i in want} == {-1.0, 1.0}  # both sides of 180
    flt = SearchFilter(near=(lon0, lat0, radius))
    assert _ids(store, flt) == want and store.count(flt) == len(want)
    # and centred on the other side
    flt = SearchFilter(near=(-180.0, lat0, radius))
    assert _ids(store, flt) == want


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_polygon_across_180(stores, backend, tmp_path):
    """A ring whose edges jump over 180 is the small area around it (cut in two), as GeoJSON tools take it."""
    from rsir_stac.store.filters import load_polygon

    store = stores[backend]
    centres = _centres(store)
    w, e, s, n = 179.9997, -179.9995, -16.5004, -16.4996
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    path = tmp_path / "across.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    area = load_polygon(path)
    assert len(area.polygons) == 2
    want = {i for i, (lon, lat) in centres.items() if (lon > w or lon < e) and s < lat < n}
    assert {np.sign(centres[i][0]) for i in want} == {-1.0, 1.0}
    flt = SearchFilter(polygon=area)
    assert _ids(store, flt) == want and store.count(flt) == len(want)


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_point_at_finds_a_tile_that_crosses_180(stores, backend):
    store = stores[backend]
    crossing = [p for p in store.iter_points(with_vectors=False) if p.payload["bbox"][0] > p.payload["bbox"][2]]
    assert crossing
    target = crossing[0].payload
    lat = target["location"]["lat"]
    hit = store.point_at(180.0, lat, with_vectors=False)
    w, s, e, n = hit.payload["bbox"]
    assert w > e and s <= lat <= n


def test_geographic_raster_past_180_is_stored_within_180(tmp_path):
    """EPSG:4326 longitudes beyond 180 (or 0..360): centres and corners are stored within
    -180..180, so every filter finds the tiles east of 180 too."""
    path = tmp_path / "past180.tif"
    rng = np.random.default_rng(7)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=128, count=3, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(179.98, -16.4, 0.0002, 0.0002)) as ds:
        ds.write(np.kron(rng.integers(0, 255, (3, 8, 16)), np.ones((16, 16))).astype(np.uint8))
    idx = tmp_path / "idx"
    rep = ingest([str(path)], index=str(idx), options=IngestOptions(tile_size=TILE, native_gsd=True))
    assert rep.ok and rep.points_written == 8
    with open_store(idx) as st:
        pts = list(st._scan(None))
        lons = [p["location"]["lon"] for _, p, _ in pts]
        assert all(-180 <= x < 180 for x in lons) and sum(x < 0 for x in lons) == 4
        assert all(-180 <= c["lon"] < 180 for _, p, _ in pts for c in p["corners"])
        v = np.zeros(st.meta().dim, np.float32)
        assert len(st.search(v, k=20, flt=SearchFilter(bbox=(179.9, -17, -179.9, -16)))) == 8
        assert len(st.search(v, k=20, flt=SearchFilter(bbox=(-180, -17, -179.9, -16)))) == 4
        assert len(st.search(v, k=20, flt=SearchFilter(near=(-179.985, -16.41, 3000.0)))) >= 2


@pytest.mark.parametrize("epsg,origin", [(3413, (-7680.0, 4800.0)), (3031, (-7680.0, 4800.0)),
                                          (3413, (-7000.0, 4000.0)), (3031, (-7000.0, 4500.0))],
                         ids=["north_pole_on_edges", "south_pole_on_edges", "north_pole_inside", "south_pole_inside"])
def test_footprints_of_polar_tiles_hold_their_pixels(tmp_path, epsg, origin):
    """Polar stereographic tiles holding the pole (inside or on an edge) and tiles beside it:
    every exported footprint holds the tile's pixels (sampled, projected with pyproj).  Near a
    pole straight edges are far from straight in lon/lat, so such tiles keep their outline."""
    from shapely.geometry import Point as ShapelyPoint
    from shapely.geometry import shape

    from rsir_stac.labels import footprint_geometry

    t = from_origin(origin[0], origin[1], 30, 30)
    path = tmp_path / "polar.tif"
    rng = np.random.default_rng(3)
    with rasterio.open(path, "w", driver="GTiff", width=512, height=320, count=3, dtype="uint8",
                       crs=f"EPSG:{epsg}", transform=t) as ds:
        ds.write(np.kron(rng.integers(0, 255, (3, 20, 32)), np.ones((16, 16))).astype(np.uint8))
    idx = tmp_path / "idx"
    rep = ingest([str(path)], index=str(idx), options=IngestOptions(native_gsd=True))
    assert rep.ok and rep.points_written == 4
    to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
    with open_store(idx) as st:
        payloads = sorted((p for _, p, _ in st._scan(None)), key=lambda p: (p["window"]["row_off"], p["window"]["col_off"]))
    assert sum(abs(p["bbox"][1 if epsg == 3031 else 3]) >= 89.999 for p in payloads) >= 2  # the pole's tiles
    for p in payloads:
        w = p["window"]
        geom = shape(footprint_geometry(p))
        assert geom.is_valid and geom.geom_type == "Polygon"
        cols = w["col_off"] + rng.uniform(0, w["width"], 300)
        rows = w["row_off"] + rng.uniform(0, w["height"], 300)
        lon, lat = to_lonlat.transform(t.c + cols * t.a, t.f + rows * t.e)
        outside = sum(not geom.buffer(1e-9).contains(ShapelyPoint(a, b)) for a, b in zip(lon, lat))
        # the outline is 21 points an edge: a sample right at an edge may fall just outside its chord
        assert outside <= 6, (w, outside)  # 2 %; the four corners alone left out 8-100 % of these tiles


def test_a_tile_wider_than_half_the_world_keeps_its_side(tmp_path, monkeypatch):
    """A coarse product's tile spanning 205 degrees of longitude: its four corners alone
    read the short way round (the 155 degrees it does not cover); the outline keeps its side.
    (Its 0.8 x 0.1 degree pixels are tiled as they are, not made square on the ground first:
    the outline of such a tile is what is checked here.)"""
    from shapely.geometry import shape

    import rsir_stac.gsd as gsd_mod
    from rsir_stac.labels import footprint_geometry

    monkeypatch.setattr(gsd_mod, "MAX_PIXEL_ANISOTROPY", float("inf"))

    path = tmp_path / "wide.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300, height=300, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(0.8, 0, -100, 0, -0.1, 10)) as ds:
        ds.write(np.random.default_rng(1).integers(0, 255, (3, 300, 300)).astype(np.uint8))
    idx = tmp_path / "idx"
    assert ingest([str(path)], index=str(idx), options=IngestOptions(native_gsd=True)).ok
    with open_store(idx) as st:
        payloads = [p for _, p, _ in st._scan(None)]
        first = min(payloads, key=lambda p: (p["window"]["row_off"], p["window"]["col_off"]))
        geom = shape(footprint_geometry(first))
        assert geom.is_valid and abs(geom.area - 204.8 * 25.6) < 1.0
        assert geom.covers(shape({"type": "Point", "coordinates": [0.0, 0.0]}))
        assert st.point_at(0.0, 0.0, with_vectors=False).id is not None


def test_footprints_of_world_tiles_are_valid_geometries(tmp_path):
    """A global 0.5-degree raster in 512 px tiles: outlines running along ±90 used to double
    back on themselves ("Self-intersection"), which PostGIS and GIS tools refuse."""
    from shapely.geometry import shape

    from rsir_stac.labels import footprint_geometry

    path = tmp_path / "world.tif"
    with rasterio.open(path, "w", driver="GTiff", width=720, height=360, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(0.5, 0, -180, 0, -0.5, 90)) as ds:
        ds.write(np.random.default_rng(2).integers(0, 255, (3, 360, 720)).astype(np.uint8))
    assert ingest([str(path)], index=str(tmp_path / "idx"),
                  options=IngestOptions(native_gsd=True, tile_size=512, min_valid=0.1)).ok
    with open_store(tmp_path / "idx") as st:
        geoms = [shape(footprint_geometry(p)) for _, p, _ in st._scan(None)]
    assert geoms and all(g.is_valid and g.area > 0 for g in geoms)
    assert all(p.area > 1e-9 for g in geoms for p in getattr(g, "geoms", [g]))  # no sliver at ±180
    assert abs(max(g.bounds[3] for g in geoms) - 90) < 1e-9 and abs(min(g.bounds[1] for g in geoms) + 90) < 1e-9


def test_a_tile_with_a_corner_on_the_pole_has_a_tight_bbox():
    """The pole has no longitude of its own (EPSG:3413 gives its central meridian, -45): a tile with
    a corner on the pole got a bbox 180 degrees wide ([-45, .., 135, 90]), or -180..180 across 180.
    The four tiles round the pole now span 90 degrees each, as their footprints do."""
    import numpy as np
    from rasterio.transform import Affine

    from rsir_stac.tiling.footprints import tile_footprints

    t = Affine(0.3, 0, -76.8, 0, -0.3, 76.8)  # 512 x 512 px, the pole at the centre
    w = np.array([[0, 0, 256, 256], [256, 0, 256, 256], [0, 256, 256, 256], [256, 256, 256, 256]], float)
    _, _, b = tile_footprints(t, "EPSG:3413", w)
    want = [(135.0, -135.0), (45.0, 135.0), (-135.0, -45.0), (-45.0, 45.0)]
    for (west, s, east, n), (ww, ee) in zip(b, want):
        assert (west, east) == pytest.approx((ww, ee), abs=1e-6) and n == 90.0 and s > 89.99


def _covered(bboxes, grid):
    """Which longitudes of ``grid`` the boxes cover (a crossing box covers west..180 and -180..east)."""
    hit = np.zeros(len(grid), dtype=bool)
    for w, _, e, _ in bboxes:
        hit |= ((grid >= w) & (grid <= e)) if w <= e else ((grid >= w) | (grid <= e))
    return hit


def _width(w, e):
    return 360.0 if (w, e) == (-180.0, 180.0) else (e - w) % 360.0


@pytest.mark.parametrize("seed", range(40))
def test_union_bounds_is_the_shortest_interval_holding_every_box(seed):
    """Against a brute force on a 0.5-degree grid: the union holds every box's longitudes and is no
    wider than 360 minus the widest uncovered gap.  Boxes that cross 180 next to boxes near -180
    once gave an extent missing part of a box ([-170,-160] with [-100,-150] gave east -160), and
    boxes covering the circle in two runs gave a 350-degree extent."""
    from rsir_stac.tiling.footprints import BoundsUnion, union_bounds

    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 7))
    w = rng.integers(-360, 360, k) / 2.0
    width = rng.choice([1, 10, 60, 200, 330], k) * rng.integers(1, 3, k) / 2.0
    e = (w + width + 180.0) % 360.0 - 180.0
    boxes = [[float(a), -1.0, float(b), 1.0] for a, b in zip(w, e)]
    got = union_bounds(boxes)
    grid = np.arange(-180.0, 180.0, 0.5)
    cov = _covered(boxes, grid)
    assert (_covered([got], grid) | ~cov).all(), (boxes, got)
    # the widest run of uncovered grid cells, round the circle
    free = np.concatenate([~cov, ~cov])
    best = run = 0
    for f in free:
        run = run + 1 if f else 0
        best = max(best, run)
    best = min(best, len(grid))
    want_width = 360.0 if best == 0 else 360.0 - (best + 1) * 0.5
    assert _width(got[0], got[2]) <= want_width + 1e-9, (boxes, got)
    # the same boxes a few at a time, merged into runs between batches, give the same union
    acc = BoundsUnion(compact_at=2)
    for i in range(0, k, 2):
        acc.add(boxes[i:i + 2])
    assert acc.bounds() == got
    one = BoundsUnion(compact_at=3)
    for b in boxes:
        one.add_box(b)
    assert one.bounds() == got
