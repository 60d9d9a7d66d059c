"""The HTTP service (rsir_stac.serve) on a real Qdrant Edge index with real rasters and a real tiny model."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from PIL import Image

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from rsir_stac.serve import create_app, parse_polygon
from tests.conftest import make_geotiff

GEOTIFF = "image/tiff; application=geotiff"
#: The service answers only to its own host names (DNS rebinding protection), so tests use one of them.
BASE = "http://127.0.0.1:8000"
NATIVE = IngestOptions(tile_size=64, gsd=None, native_gsd=True)
# scene a: UTM 15N at (500000, 3300000), scene b: 2 km east of it; 256 x 128 px at 1 m -> 4 x 2 tiles each
SCENES = {
    "scene-a": {"collection": "coll-a", "datetime": "2021-06-01T10:00:00Z", "origin": (500000.0, 3300000.0), "seed": 1},
    "scene-b": {"collection": "coll-b", "datetime": "2022-03-01T10:00:00Z", "origin": (502000.0, 3300000.0), "seed": 2},
}


def build_test_index(root: Path, bundle) -> Path:
    """Two STAC items (two collections, two dates), 16 tiles of 64 px, in an Edge index at root/idx."""
    root.mkdir(parents=True, exist_ok=True)
    sources = []
    for item_id, s in SCENES.items():
        tif = make_geotiff(root / f"{item_id}.tif", width=256, height=128, origin=s["origin"], seed=s["seed"])
        item = {
            "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": s["collection"],
            "geometry": None, "properties": {"datetime": s["datetime"]}, "links": [],
            "assets": {"image": {"href": tif.name, "type": GEOTIFF, "roles": ["data"]}},
        }
        p = root / f"{item_id}.json"
        p.write_text(json.dumps(item))
        sources.append(str(p))
    report = ingest(sources, index=str(root / "idx"), model=bundle, options=NATIVE)
    assert report.ok and report.points_written == 16, report
    return root / "idx"


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_bundle):
    path = build_test_index(tmp_path_factory.mktemp("serve"), tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx:
        yield idx


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index, max_upload_bytes=200_000, max_image_pixels=1024 * 1024), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def points(index):
    return {p.id: p.payload for p in index.store.iter_points(with_vectors=False)}


def _loc(feature) -> tuple[float, float]:
    loc = json.loads(feature["properties"]["location"])
    return loc["lon"], loc["lat"]


def _png(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (the IDAT is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- info / docs


def test_info(client, points):
    r = client.get("/api/info")
    assert r.status_code == 200
    doc = r.json()
    assert doc["count"] == 16 == len(points)
    assert doc["dim"] > 0 and doc["model_id"]
    assert doc["collections"] == ["coll-a", "coll-b"]
    w, s, e, n = doc["extent"]
    lons = [p["location"]["lon"] for p in points.values()]
    lats = [p["location"]["lat"] for p in points.values()]
    assert w < min(lons) <= max(lons) < e and s < min(lats) <= max(lats) < n


def test_openapi_lists_endpoints(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "/api/info" in paths and "/api/tiles/{point_id}.png" in paths
    assert {"get", "post"} <= set(paths["/api/search"]) and "post" in paths["/api/search/image"]
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # vendored Swagger UI, works offline
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/static/vendor/swagger-ui/{asset}").status_code == 200


def test_page_and_static(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "static/app.js" in r.text and "static/vendor/leaflet/leaflet.js" in r.text
    for path in ("/static/app.js", "/static/style.css", "/static/vendor/leaflet/leaflet.js",
                 "/static/vendor/leaflet/leaflet.css", "/static/vendor/leaflet/images/marker-icon.png"):
        assert client.get(path).status_code == 200, path
    assert "http://" not in r.text and "https://" not in r.text  # no CDN at run time


# --------------------------------------------------------------------------- search


def test_search_by_point_id(client, points):
    pid = next(iter(points))
    r = client.get("/api/search", params={"point_id": pid, "k": 5})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 5
    assert doc["query"]["kind"] == "point" and doc["query"]["id"] == pid
    assert doc["query"]["geometry"]["type"] == "Polygon"
    ids = [f["id"] for f in doc["features"]]
    assert pid not in ids and all(i in points for i in ids)
    d = [f["properties"]["distance"] for f in doc["features"]]
    assert d == sorted(d) and [f["properties"]["rank"] for f in doc["features"]] == [1, 2, 3, 4, 5]
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    # the same as the library
    from rsir_stac.search import to_geojson

    lib = to_geojson(client.app.state.index.search(point_id=pid, k=5))
    assert ids == [f["id"] for f in lib["features"]]
    # POST with a JSON body gives the same
    r2 = client.post("/api/search", json={"point_id": pid, "k": 5})
    assert r2.status_code == 200 and [f["id"] for f in r2.json()["features"]] == ids
    # include_query keeps the query first at distance 0
    r3 = client.get("/api/search", params={"point_id": pid, "k": 3, "include_query": "true"}).json()
    assert r3["features"][0]["id"] == pid and r3["features"][0]["properties"]["distance"] == pytest.approx(0, abs=1e-4)


def test_search_by_location(client, points):
    pid, payload = next(iter(points.items()))
    lon, lat = payload["location"]["lon"], payload["location"]["lat"]
    r = client.get("/api/search", params={"lon": lon, "lat": lat, "k": 4})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["query"]["kind"] == "location" and doc["query"]["id"] == pid
    assert doc["query"]["at"] == [lon, lat] and len(doc["features"]) == 4
    # outside every tile -> 404
    r = client.get("/api/search", params={"lon": 10, "lat": 10})
    assert r.status_code == 404 and "covers" in r.json()["detail"]


def _by_item(points, item_id):
    return [(p["location"]["lon"], p["location"]["lat"]) for p in points.values() if p["item_id"] == item_id]


def test_search_filters(client, points):
    pid = next(i for i, p in points.items() if p["item_id"] == "scene-a")
    a = _by_item(points, "scene-a")
    b = _by_item(points, "scene-b")
    a_box = (min(x for x, _ in a) - 1e-4, min(y for _, y in a) - 1e-4, max(x for x, _ in a) + 1e-4,
             max(y for _, y in a) + 1e-4)

    def ids(**params):
        r = client.get("/api/search", params={"point_id": pid, "k": 20, **params})
        assert r.status_code == 200, r.text
        return {f["id"]: f for f in r.json()["features"]}

    everything = ids()
    assert len(everything) == 15
    in_a = {i for i, p in points.items() if p["item_id"] == "scene-a"} - {pid}
    in_b = {i for i, p in points.items() if p["item_id"] == "scene-b"}
    # bbox around scene a only
    assert set(ids(bbox=",".join(map(str, a_box)))) == in_a
    # radius around scene b's centre covering it, not a (2 km away)
    cx, cy = np.mean([x for x, _ in b]), np.mean([y for _, y in b])
    assert set(ids(near=f"{cx},{cy},300")) == in_b
    # polygon: the bbox of scene a as "lon,lat;..." text (auto-closed) and as GeoJSON
    w, s, e, n = a_box
    assert set(ids(polygon=f"{w},{s};{e},{s};{e},{n};{w},{n}")) == in_a
    gj = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    assert set(ids(polygon=json.dumps(gj))) == in_a
    r = client.post("/api/search", json={"point_id": pid, "k": 20, "polygon": gj})
    assert {f["id"] for f in r.json()["features"]} == in_a
    r = client.post("/api/search", json={"point_id": pid, "k": 20, "polygon": {"type": "Feature", "geometry": gj},
                                         "bbox": list(a_box)})
    assert {f["id"] for f in r.json()["features"]} == in_a
    # datetime
    assert set(ids(datetime="2022-01-01/..")) == in_b
    assert set(ids(datetime="2021-06-01")) == in_a
    # collections (repeatable)
    assert set(ids(collection="coll-b")) == in_b
    r = client.get("/api/search", params=[("point_id", pid), ("k", 20), ("collection", "coll-a"),
                                          ("collection", "coll-b")])
    assert len(r.json()["features"]) == 15
    assert ids(collection="nope") == {}
    # filters combine (AND)
    assert ids(collection="coll-a", datetime="2022-01-01/..") == {}


@pytest.mark.parametrize("params, fragment", [
    ({"bbox": "1,2,3"}, "W,S,E,N"),
    ({"bbox": "10,5,0,4"}, "south"),
    ({"near": "0,0,-5"}, "radius"),
    ({"datetime": "yesterday"}, "START/END"),
    ({"polygon": "0,0;1,1"}, "ring"),
    ({"polygon": "0,0;1,1;1,0;0,1"}, "valid polygon"),
    ({"polygon": '{"type": "Point", "coordinates": [0, 0]}'}, "not a Polygon"),
    ({"polygon": "{nope"}, "JSON"),
])
def test_bad_filters_are_400(client, points, params, fragment):
    pid = next(iter(points))
    r = client.get("/api/search", params={"point_id": pid, **params})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["detail"]


def test_bad_queries(client, points):
    pid = next(iter(points))
    assert client.get("/api/search").status_code == 400
    assert client.get("/api/search", params={"lon": 1}).status_code == 400
    assert client.get("/api/search", params={"point_id": pid, "lon": 1, "lat": 2}).status_code == 400
    assert client.get("/api/search", params={"lon": 500, "lat": 0}).status_code == 400
    assert client.get("/api/search", params={"point_id": "not-a-uuid"}).status_code == 400
    r = client.get("/api/search", params={"point_id": "00000000-0000-4000-8000-000000000000"})
    assert r.status_code == 404 and r.json()["error"] == "PointNotFoundError"
    for k in (0, 101, "x"):
        assert client.get("/api/search", params={"point_id": pid, "k": k}).status_code == 422
    assert client.post("/api/search", json={"point_id": pid, "k": 1000}).status_code == 422
    assert client.post("/api/search", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 422


def test_parse_polygon_forms():
    ring = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0))
    assert parse_polygon("0,0;1,0;1,1") == ring
    assert parse_polygon("0,0; 1,0; 1,1; 0,0;") == ring
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]}}]}
    assert parse_polygon(fc).polygons == ((ring, ()),)
    holed = parse_polygon({"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]],
                                                              [[1, 0.5], [2, 0.5], [2, 1.5], [1, 0.5]]]})
    assert holed.polygons == ((((0.0, 0.0), (9.0, 0.0), (9.0, 9.0), (0.0, 0.0)),
                               (((1.0, 0.5), (2.0, 0.5), (2.0, 1.5), (1.0, 0.5)),)),)
    assert holed.contains(5, 2) and not holed.contains(1.8, 0.8)  # inside the outer ring, inside the hole


# --------------------------------------------------------------------------- image upload


def test_image_upload(client, index, points):
    from rsir_stac.thumbnails import read_tile

    payload = next(iter(points.values()))
    tile = read_tile(payload)
    buf = io.BytesIO()
    Image.fromarray(tile).save(buf, format="PNG")
    r = client.post("/api/search/image", files={"file": ("../../../etc/evil.png", buf.getvalue(), "image/png")},
                    data={"k": "3"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["query"]["kind"] == "image" and doc["query"]["size"] == [64, 64]
    assert len(doc["features"]) == 3
    # the stored tile itself is (one of) the nearest; the same as the library on the same pixels
    lib = index.search(pixels=tile, k=3)
    assert [f["id"] for f in doc["features"]] == [h.id for h in lib.hits]
    assert doc["features"][0]["properties"]["distance"] < 1e-3
    assert not Path("/etc/evil.png").exists()
    # with filters as form fields (collection repeatable)
    other = "coll-b" if payload["collection"] == "coll-a" else "coll-a"
    r = client.post("/api/search/image", files={"file": ("q.png", buf.getvalue(), "image/png")},
                    data={"k": "20", "collection": [other], "datetime": "2000-01-01/.."})
    assert r.status_code == 200, r.text
    assert {f["properties"]["collection"] for f in r.json()["features"]} == {other}
    # JPEG and GeoTIFF uploads decode too
    jb = io.BytesIO()
    Image.fromarray(tile).save(jb, format="JPEG", quality=90)
    assert client.post("/api/search/image", files={"file": ("q.jpg", jb.getvalue())}).status_code == 200
    tif = Path(payload["href"]).read_bytes()
    r = client.post("/api/search/image", files={"file": ("scene.tif", tif, "image/tiff")}, data={"k": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["query"]["size"] == [256, 128]


def test_upload_errors(client):
    # not an image
    r = client.post("/api/search/image", files={"file": ("x.png", b"hello world", "image/png")})
    assert r.status_code == 422 and "cannot be decoded" in r.json()["detail"]
    r = client.post("/api/search/image", files={"file": ("x.png", b"", "image/png")})
    assert r.status_code == 422
    # missing file field
    assert client.post("/api/search/image", data={"k": "3"}).status_code == 422
    # bad filter
    r = client.post("/api/search/image", files={"file": ("q.png", _png(32, 32))}, data={"bbox": "x"})
    assert r.status_code == 400


def test_upload_too_large_is_413(client):
    big = _png(400, 400, seed=3)  # random noise does not compress: ~480 kB > 200 kB limit
    assert len(big) > 200_000
    r = client.post("/api/search/image", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413, r.text

    # chunked (no Content-Length): cut off while reading
    def gen():
        boundary = b"----b"
        yield b"------b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 10_000
        yield b"\r\n--" + boundary + b"--\r\n"

    r = client.post("/api/search/image", content=gen(),
                    headers={"content-type": "multipart/form-data; boundary=----b"})
    assert r.status_code == 413, r.text


def test_decompression_bomb_rejected(client):
    bomb = _bomb_png(50_000, 50_000)
    assert len(bomb) < 200
    r = client.post("/api/search/image", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 413, r.text
    # under Pillow's own limit but over the service's pixel limit (1024*1024 here)
    r = client.post("/api/search/image", files={"file": ("b.png", _bomb_png(2000, 2000), "image/png")})
    assert r.status_code == 413 and "pixel limit" in r.json()["detail"]


# --------------------------------------------------------------------------- tiles


def test_tile_png(client, points):
    from rsir_stac.thumbnails import read_tile

    pid, payload = next(iter(points.items()))
    r = client.get(f"/api/tiles/{pid}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (64, 64) == (payload["grid"]["width"], payload["grid"]["height"])
    assert np.array_equal(np.asarray(img.convert("RGB")), read_tile(payload))
    # cached: second call served from the LRU
    cache = client.app.state.thumbs
    n = len(cache)
    assert client.get(f"/api/tiles/{pid}.png").content == r.content and len(cache) == n
    # upper-case / unhyphenated ids name the same point
    assert client.get(f"/api/tiles/{pid.upper().replace('-', '')}.png").content == r.content


def test_tile_unknown_and_traversal(client):
    assert client.get("/api/tiles/00000000-0000-4000-8000-000000000000.png").status_code == 404
    assert client.get("/api/tiles/nope.png").status_code in (404, 422)
    for path in ("/api/tiles/../../etc/passwd.png", "/api/tiles/..%2F..%2Fetc%2Fpasswd.png",
                 "/api/tiles/%2e%2e/%2e%2e/etc/passwd.png", "/static/../serve.py",
                 "/static/%2e%2e/serve.py", "/static/..%2Fserve.py", "/api/tiles/etc/passwd.png"):
        r = client.get(path)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert b"root:" not in r.content and b"create_app" not in r.content


# --------------------------------------------------------------------------- API key


def test_api_key(index, points):
    pid = next(iter(points))
    with TestClient(create_app(index, api_key="s3cret"), base_url=BASE) as c:
        for path in ("/api/info", f"/api/search?point_id={pid}", f"/api/tiles/{pid}.png", "/api/nothing"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/api/search", json={"point_id": pid}).status_code == 401
        assert c.post("/api/search/image", files={"file": ("q.png", _png(32, 32))}).status_code == 401
        assert c.get("/api/info", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/api/info", params={"api_key": "s3cret"}).status_code == 401  # in URLs: images only
        assert c.get(f"/api/tiles/{pid}.png", params={"api_key": "s3cret"}).status_code == 200
        # the page and the docs stay public (they hold no data); the docs show the key scheme
        assert c.get("/").status_code == 200
        doc = c.get("/openapi.json").json()
        assert "X-API-Key" in json.dumps(doc["components"]["securitySchemes"])


def test_concurrent_requests_share_one_index(client, points):
    from concurrent.futures import ThreadPoolExecutor

    ids = list(points)[:8]

    def one(pid):
        return client.get("/api/search", params={"point_id": pid, "k": 3}).status_code, \
            client.get(f"/api/tiles/{pid}.png").status_code

    with ThreadPoolExecutor(8) as ex:
        assert set(ex.map(one, ids * 3)) == {(200, 200)}


def test_serve_command_help():
    from click.testing import CliRunner

    from rsir_stac.serve import serve_command

    r = CliRunner().invoke(serve_command, ["--help"])
    assert r.exit_code == 0
    for opt in ("--index", "--qdrant-url", "--api-key", "--model", "--host", "--port", "--service-key",
                "--allow-host", "--allow-origin", "--hide-paths"):
        assert opt in r.output
    # a missing index is a one-line error, not a traceback
    r = CliRunner().invoke(serve_command, ["--index", "/nonexistent/idx", "--model", "/nonexistent/model"])
    assert r.exit_code != 0 and "error:" in r.output
