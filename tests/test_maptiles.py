"""Web-map imagery: /api/scenes and /api/imagery/{z}/{x}/{y}.png on a real Edge index built from real rasters."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("rio_tiler")

import morecantile
from fastapi.testclient import TestClient
from PIL import Image

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.maptiles import MAX_ZOOM, scenes_from_payloads
from rsir_stac.search import Index
from rsir_stac.serve import create_app
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, gsd=None, native_gsd=True)
TMS = morecantile.tms.get("WebMercatorQuad")


def _item(root, item_id, tif, collection, datetime):
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
           "geometry": None, "properties": {"datetime": datetime}, "links": [],
           "assets": {"image": {"href": tif.name, "type": "image/tiff; application=geotiff", "roles": ["data"]}}}
    p = root / f"{item_id}.json"
    p.write_text(json.dumps(doc))
    return str(p)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bundle):
    """Three scenes: uint8 RGB, uint16 (stretched), uint8 with an alpha band (left half nodata)."""
    root = tmp_path_factory.mktemp("maptiles")
    a = make_geotiff(root / "a.tif", width=256, height=128, origin=(500000.0, 3300000.0), seed=1)
    b = make_geotiff(root / "b.tif", width=256, height=128, origin=(502000.0, 3300000.0), seed=2, dtype="uint16")
    c = make_geotiff(root / "c.tif", width=256, height=128, origin=(504000.0, 3300000.0), seed=3, alpha=True)
    srcs = [_item(root, "scene-a", a, "coll-a", "2021-06-01T10:00:00Z"),
            _item(root, "scene-b", b, "coll-b", "2022-03-01T10:00:00Z"),
            str(c)]   # a bare GeoTIFF: no date, no collection
    report = ingest(srcs, index=str(root / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok, report
    return root


@pytest.fixture()
def client(built, tiny_bundle, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(built / "idx", root / "idx")   # a fresh app (and caches) per test
    with Index.open(str(root / "idx"), model=tiny_bundle) as idx, \
            TestClient(create_app(idx, allowed_hosts=("testserver",))) as c:
        c.root = built
        yield c


def _scenes(client):
    r = client.get("/api/scenes")
    assert r.status_code == 200, r.text
    return r.json()


def _png(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA"))


def _tile_at(feature, z):
    w, s, e, n = feature["properties"]["bbox"]
    return TMS.tile((w + e) / 2, (s + n) / 2, z)


def test_scenes_list_footprints_counts_and_no_paths(client):
    doc = _scenes(client)
    feats = {f["properties"]["item_id"]: f for f in doc["features"]}
    assert {"scene-a", "scene-b"} < set(feats) and len(feats) == 3
    info = client.get("/api/info").json()
    assert doc["tiles"] == info["count"] == sum(f["properties"]["tiles"] for f in feats.values())
    bare = doc["features"][-1]["properties"]   # newest first, undated last
    assert [f["properties"]["item_id"] for f in doc["features"][:2]] == ["scene-b", "scene-a"]
    assert bare["datetime"] is None and bare["collection"] is None
    assert doc["undated_tiles"] == doc["uncollected_tiles"] == bare["tiles"] > 0
    for f in feats.values():
        assert f["geometry"]["type"] == "Polygon"
        w, s, e, n = f["properties"]["bbox"]
        ring = f["geometry"]["coordinates"][0]
        assert all(w - 1e-9 <= x <= e + 1e-9 and s - 1e-9 <= y <= n + 1e-9 for x, y in ring)
        assert f["properties"]["imagery"] is True
        lo, hi = f["properties"]["minzoom"], f["properties"]["maxzoom"]
        assert 0 <= lo < hi <= MAX_ZOOM
    assert doc["extent"][0] == min(f["properties"]["bbox"][0] for f in feats.values())
    assert str(client.root) not in json.dumps(doc)


def test_imagery_draws_scenes_with_ingest_colours(client):
    doc = _scenes(client)
    for f in doc["features"]:
        z = f["properties"]["maxzoom"] - 3          # native resolution
        t = _tile_at(f, z)
        px = _png(client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png"))
        assert (px[..., 3] == 255).mean() > 0.1, f["properties"]["item_id"]
    # the uint16 scene is stretched to the full 0..255 range like its ingested tiles (not clipped to 255)
    b = next(f for f in doc["features"] if f["properties"]["item_id"] == "scene-b")
    t = _tile_at(b, b["properties"]["maxzoom"] - 3)
    px = _png(client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png"))
    vals = px[..., :3][px[..., 3] == 255]
    lo, hi = np.percentile(vals, [5, 95])
    assert lo < 60 and hi > 190, (lo, hi)


def test_imagery_outside_scenes_is_transparent(client):
    t = TMS.tile(10.0, 50.0, 12)   # Europe: no scene
    px = _png(client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png"))
    assert px.shape == (256, 256, 4) and (px[..., 3] == 0).all()


def test_imagery_zoom_and_grid_limits(client):
    r = client.get(f"/api/imagery/{MAX_ZOOM + 1}/0/0.png")
    assert r.status_code == 400 and "zoom level" in r.json()["detail"]
    r = client.get("/api/imagery/3/8/0.png")
    assert r.status_code == 400 and "outside the grid" in r.json()["detail"]
    r = client.get("/api/imagery/-1/0/0.png")
    assert r.status_code == 400
    a = next(f for f in _scenes(client)["features"] if f["properties"]["item_id"] == "scene-a")
    for z in (a["properties"]["minzoom"] - 1, a["properties"]["maxzoom"] + 1):
        if z < 0:
            continue
        t = _tile_at(a, z)
        px = _png(client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png"))
        assert (px[..., 3] == 0).all(), f"zoom {z} is outside the scene's zoom range but drew pixels"
    t = _tile_at(a, a["properties"]["maxzoom"])
    assert (_png(client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png"))[..., 3] == 255).any()


def test_imagery_nodata_is_transparent(client):
    from pyproj import Transformer

    c = _scenes(client)["features"][-1]   # the bare GeoTIFF with an alpha band
    z = c["properties"]["maxzoom"]
    # the raster (UTM 15N, x 504000..504256, y 3299872..3300000) has its left half masked by its alpha band
    to_ll = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    left = TMS.tile(*to_ll.transform(504030.0, 3299936.0), z)
    right = TMS.tile(*to_ll.transform(504226.0, 3299936.0), z)
    assert (left.x, left.y) != (right.x, right.y)
    pl = _png(client.get(f"/api/imagery/{left.z}/{left.x}/{left.y}.png"))
    pr = _png(client.get(f"/api/imagery/{right.z}/{right.x}/{right.y}.png"))
    assert (pl[..., 3] == 0).mean() > 0.9
    assert (pr[..., 3] == 255).mean() > 0.2
    assert (pl[..., :3][pl[..., 3] == 0] == 0).all()


def test_imagery_missing_source_file(client, built):
    doc = _scenes(client)
    a = next(f for f in doc["features"] if f["properties"]["item_id"] == "scene-a")
    src = built / "a.tif"      # the payloads name the ingested file
    src.rename(built / "a.tif.away")
    try:
        t = _tile_at(a, a["properties"]["maxzoom"] - 3)
        r = client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png")
        assert r.status_code == 404
        detail = r.json()["detail"]
        assert "scene-a" in detail and "missing" in detail
        assert str(built) not in detail and "a.tif" not in detail
        after = {f["properties"]["item_id"]: f["properties"] for f in _scenes(client)["features"]}
        assert after["scene-a"]["imagery"] is False and "missing" in after["scene-a"]["imagery_problem"]
        assert after["scene-b"]["imagery"] is True
    finally:
        (built / "a.tif.away").rename(src)


def test_scenes_from_payloads_groups_and_skips():
    pay = [{"item_id": "i", "href": "/x.tif", "collection": "c", "bbox": [0, 0, 1, 1],
            "corners": [{"lon": 0, "lat": 0}, {"lon": 1, "lat": 0}, {"lon": 1, "lat": 1}, {"lon": 0, "lat": 1}],
            "datetime": "2020-01-01T00:00:00Z", "tiling": {"bands": [1, 2, 3]}},
           {"item_id": "i", "href": "/x.tif", "collection": "c", "bbox": [1, 0, 2, 1],
            "corners": [{"lon": 1, "lat": 0}, {"lon": 2, "lat": 0}, {"lon": 2, "lat": 1}, {"lon": 1, "lat": 1}]},
           {"no": "href"}]
    (sc,) = scenes_from_payloads(pay)
    assert sc.tiles == 2 and sc.bbox == (0, 0, 2, 1) and sc.bands == (1, 2, 3)
    from shapely.geometry import shape

    assert shape(sc.footprint).area == pytest.approx(2.0)


def _tile(w, s, e, n, **extra):
    corners = [{"lon": w, "lat": n}, {"lon": e, "lat": n}, {"lon": e, "lat": s}, {"lon": w, "lat": s}]
    return {"item_id": "i", "href": "/x.tif", "bbox": [w, s, e, n], "corners": corners, **extra}


def test_a_scene_across_the_antimeridian_keeps_one_extent_and_outline():
    """Tiles at 179.9..180.15 E: the scene's bbox was -180..180 wide and its outline a band
    round the world (half its pixels outside it); now both stay at the antimeridian, and the
    imagery tiles on either side of 180 find the scene."""
    import math

    from shapely.geometry import Point, shape

    from rsir_stac.maptiles import TileRenderer

    pay = [_tile(179.90, -16.1, 179.95, -16.0), _tile(179.95, -16.1, -179.95, -16.0),  # the middle one crosses
           _tile(-179.95, -16.1, -179.85, -16.0)]
    (sc,) = scenes_from_payloads(pay)
    assert sc.bbox == pytest.approx((179.90, -16.1, 180.15, -16.0))
    fp = shape(sc.footprint)
    assert fp.area == pytest.approx(0.25 * 0.1) and fp.contains(Point(180.1, -16.05))
    r = TileRenderer.__new__(TileRenderer)
    r.scenes = [sc]
    z = 8
    east, west = (0, 1 << (z - 1)), ((1 << z) - 1, 1 << (z - 1))  # x at lon -180.., at ..180
    y = int((1 - math.asinh(math.tan(math.radians(-16.05))) / math.pi) / 2 * (1 << z))
    for x in (east[0], west[0]):
        assert r.covering(z, x, y) == [sc], x


def test_a_scene_round_a_pole_is_outlined_by_its_tiles():
    """Near a pole a hull in degrees is wrong (helper trial: 46-69 % of a polar scene's pixels
    fell outside it, and the pole itself); the outline is the union of the tiles' footprints."""
    from shapely.geometry import Point, shape

    pay = [_tile(lon, 85.0, lon + 90.0, 88.0) for lon in (-180.0, -90.0, 0.0, 90.0)]  # a ring round the pole
    cap = {"item_id": "i", "href": "/x.tif", "bbox": [-180.0, 88.0, 180.0, 90.0],
           "corners": [{"lon": 45.0, "lat": 88.0}, {"lon": 135.0, "lat": 88.0}, {"lon": -135.0, "lat": 88.0},
                       {"lon": -45.0, "lat": 88.0}]}
    (sc,) = scenes_from_payloads(pay + [cap])
    fp = shape(sc.footprint)
    for lon in (-170.0, -60.0, 10.0, 100.0, 170.0):
        assert fp.contains(Point(lon, 86.5)), lon
    assert fp.intersects(Point(0.0, 89.9)) and sc.bbox[0] == -180.0 and sc.bbox[2] == 180.0


def test_a_whole_world_scene_does_not_break_the_scene_list(tmp_path, tiny_bundle):
    """A Web Mercator raster of the whole world (tiles 180 degrees wide, reaching +-85 degrees):
    outlining it raised a GEOS TopologyException, and /api/scenes answered 500 for every scene
    of the index; now it is listed, its latitudes within +-90."""
    half = 20037508.342789244
    path = make_geotiff(tmp_path / "world.tif", width=64, height=64, crs="EPSG:3857", res=2 * half / 64,
                        origin=(-half, half))
    idx = tmp_path / "idx"
    assert ingest([str(path)], index=str(idx), model=tiny_bundle,
                  options=IngestOptions(tile_size=32, native_gsd=True, min_valid=0.0)).points_written == 4
    with Index.open(str(idx), model=tiny_bundle) as index:
        (sc,) = scenes_from_payloads(p.payload for p in index.store.iter_points(with_vectors=False))
        assert sc.footprint is not None and -90 <= sc.bbox[1] < sc.bbox[3] <= 90
        with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as c:
            r = c.get("/api/scenes")
            assert r.status_code == 200 and len(r.json()["features"]) == 1


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory, tiny_bundle):
    """Two acquisitions of one place (same grid, other pixels): 2019 in coll-old, 2023 in coll-new."""
    root = tmp_path_factory.mktemp("overlap")
    old = make_geotiff(root / "old.tif", width=128, height=128, origin=(500000.0, 3300000.0), seed=4)
    new = make_geotiff(root / "new.tif", width=128, height=128, origin=(500000.0, 3300000.0), seed=5)
    srcs = [_item(root, "place-2019", old, "coll-old", "2019-05-01T10:00:00Z"),
            _item(root, "place-2023", new, "coll-new", "2023-05-01T10:00:00Z")]
    report = ingest(srcs, index=str(root / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok, report
    with Index.open(str(root / "idx"), model=tiny_bundle) as idx, \
            TestClient(create_app(idx, allowed_hosts=("testserver",))) as c:
        yield c


def test_imagery_follows_the_date_collection_and_selected_scene(overlapping):
    """Where acquisitions overlap, the newest is drawn unless the date or collection filter leaves it
    out or ``item`` puts another first; the tile cache keeps the choices apart."""
    c = overlapping
    feats = _scenes(c)["features"]
    f = feats[0]
    t = _tile_at(f, f["properties"]["maxzoom"] - 3)

    def tile(**params):
        return _png(c.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png", params=params))

    default = tile()
    old, new = tile(item="place-2019"), tile(item="place-2023")
    assert (default[..., 3] == 255).any() and not np.array_equal(old, new)
    assert np.array_equal(default, new)                      # newest on top
    assert np.array_equal(tile(), default)                   # after another choice: not served from its entry
    assert np.array_equal(tile(datetime="2019-01-01/2020-12-31"), old)
    assert np.array_equal(tile(datetime="2019"), old)
    assert np.array_equal(tile(datetime="2022-01-01/.."), new)
    assert np.array_equal(tile(collection="coll-old"), old)
    assert np.array_equal(tile(collection=["coll-old", "coll-new"]), new)
    assert np.array_equal(tile(item="place-2019", datetime="2019/2023"), old)
    assert np.array_equal(tile(datetime="2023", item="place-2019"), new)   # the filter wins over the preference
    assert (tile(datetime="2010/2011")[..., 3] == 0).all()   # nothing acquired then: transparent
    assert (tile(collection="coll-other")[..., 3] == 0).all()
    r = c.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png", params={"datetime": "not-a-date"})
    assert r.status_code == 400 and "datetime" in r.json()["detail"] and "\n" not in r.json()["detail"]


def test_an_alpha_band_holding_other_values_is_drawn_as_ingest_reads_it(tmp_path, tiny_bundle):
    """A 4-band file whose 4th band is flagged alpha but holds 37..204 (NAIP's near-infrared in
    a real file): ingest indexes its tiles (GDAL: alpha 0 is nodata, any other value data) but
    the map drew every pixel transparent (rio-tiler keeps only alpha 255).  Now the imagery
    follows ingest: alpha 0 is transparent, any other value opaque."""
    import rasterio
    from rasterio.enums import ColorInterp

    path = make_geotiff(tmp_path / "nir-as-alpha.tif", width=256, height=128, origin=(504000.0, 3300000.0), seed=3,
                        alpha=True)
    with rasterio.open(path, "r+") as ds:  # the alpha band: 0 on the left half, 37..204 on the right
        a = np.zeros((128, 256), np.uint8)
        a[:, 128:] = np.random.default_rng(0).integers(37, 205, size=(128, 128))
        ds.write(a, 4)
        assert ds.colorinterp[3] == ColorInterp.alpha
    idx = tmp_path / "idx"
    report = ingest([str(path)], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written > 0
    with Index.open(str(idx), model=tiny_bundle) as index, \
            TestClient(create_app(index, allowed_hosts=("testserver",))) as c:
        (f,) = _scenes(c)["features"]
        from pyproj import Transformer

        z = f["properties"]["maxzoom"]
        to_ll = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
        left = TMS.tile(*to_ll.transform(504030.0, 3299936.0), z)
        right = TMS.tile(*to_ll.transform(504226.0, 3299936.0), z)
        pl = _png(c.get(f"/api/imagery/{left.z}/{left.x}/{left.y}.png"))
        pr = _png(c.get(f"/api/imagery/{right.z}/{right.x}/{right.y}.png"))
    assert (pl[..., 3] == 0).mean() > 0.9  # alpha 0: nodata, as ingest reads it
    drawn = pr[..., 3] > 0
    assert drawn.mean() > 0.2 and (pr[..., 3][drawn] == 255).all()  # any other alpha: data, opaque


def test_imagery_under_the_ingest_roots_never_follows_a_link_swapped_in_later(tmp_path, tiny_bundle):
    """Re-check N1: once a scene had been drawn, /api/imagery reopened its file by name, so a file
    or folder under --ingest-root swapped for a link afterwards had the service draw a file outside
    the roots.  Every reader there is now opened as the rest of serve's reads are: the opened file
    checked against the roots."""
    import rasterio

    from rsir_stac.tiling.sources import restrict_to_geotiff

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (outside / "sub").mkdir(parents=True)
    a = make_geotiff(root / "sub" / "a.tif", width=256, height=256, seed=1)
    secret = make_geotiff(outside / "sub" / "a.tif", width=256, height=256, seed=1)
    with rasterio.open(secret, "r+") as ds:   # the same grid, solid magenta
        ds.write(np.stack([np.full((256, 256), v, np.uint8) for v in (255, 0, 255)]))
    report = ingest([str(a)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok, report

    def magenta(img):
        px = img[img[..., 3] > 0][:, :3].astype(int)
        return bool(len(px)) and float(((px[:, 0] > 200) & (px[:, 1] < 60) & (px[:, 2] > 200)).mean()) > 0.5

    try:
        with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as idx, \
                TestClient(create_app(idx, allowed_hosts=("testserver",), ingest_roots=[str(root)])) as c:
            feat = _scenes(c)["features"][0]
            zoom = feat["properties"]["maxzoom"] - 2
            t = _tile_at(feat, zoom)
            first = c.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png")
            assert not magenta(_png(first))   # drawn once: its reader is open
            (root / "sub").rename(root / "sub.orig")
            (root / "sub").symlink_to(outside / "sub", target_is_directory=True)
            for z in (zoom - 1, zoom + 1):   # tiles not in the cache
                t = _tile_at(feat, z)
                r = c.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png")
                assert r.status_code != 200 or not magenta(_png(r)), "a file outside the roots was drawn"
    finally:
        restrict_to_geotiff(())


@pytest.mark.parametrize("tiles, want", [
    # Svalbard in UTM 33: up to 80.5 degrees north, nowhere near every longitude
    ([(10.0, 78.0, 14.0, 79.0), (10.0, 79.0, 14.0, 80.5)], (10.0, 78.0, 14.0, 80.5)),
    # across 180 at 81 degrees (Chukchi side): the east edge runs past 180
    ([(178.0, 79.0, 179.9, 81.0), (179.9, 79.0, -178.0, 81.0)], (178.0, 79.0, 182.0, 81.0)),
])
def test_a_scene_past_80_degrees_keeps_its_longitudes(tiles, want):
    """A scene reaching past 80 degrees (Svalbard, northern Greenland, a geostationary disk's limb at
    81) was given every longitude as its bbox, as if it held a pole: the map zoomed out to the whole
    world to show it, and every imagery tile round the globe looked it up.  It now keeps the shortest
    interval holding its footprint; a scene round a pole still gets every longitude (test above)."""
    (sc,) = scenes_from_payloads([_tile(*t) for t in tiles])
    assert sc.bbox == pytest.approx(want, abs=1e-6)
