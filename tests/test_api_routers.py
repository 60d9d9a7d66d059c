"""The HTTP API's routers (rsir_stac/api/) on a real Edge index of real rasters with a real tiny model:
image examples in /api/query, the per-scene default of image search, notes for date/collection
filters, hidden paths in every answer, request limits before the body is read."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from PIL import Image

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Example, Index
from rsir_stac.serve import create_app
from tests.conftest import make_geotiff

BASE = "http://127.0.0.1:8000"
NATIVE = IngestOptions(tile_size=64, gsd=None, native_gsd=True)
GEOTIFF = "image/tiff; application=geotiff"
LIMIT = 200_000


def _repeating_geotiff(path: Path, origin: tuple[float, float]) -> Path:
    """256 x 128 px whose 64 px tiles are all the same picture (so their vectors are equal)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(7)
    tile = rng.integers(20, 235, size=(3, 4, 4))
    tile = np.kron(tile, np.ones((16, 16))).astype("uint8")          # 3 x 64 x 64 blocks
    data = np.tile(tile, (1, 2, 4))
    with rasterio.open(path, "w", driver="GTiff", width=256, height=128, count=3, dtype="uint8",
                       crs="EPSG:32615", transform=from_origin(*origin, 1.0, 1.0)) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bundle):
    """scene-a: 8 equal tiles; scene-b: 8 textured tiles; bare.tif: 8 tiles with no date or collection."""
    root = tmp_path_factory.mktemp("routers")
    _repeating_geotiff(root / "a.tif", (500000.0, 3300000.0))
    make_geotiff(root / "b.tif", width=256, height=128, origin=(502000.0, 3300000.0), seed=2)
    make_geotiff(root / "bare.tif", width=256, height=128, origin=(504000.0, 3300000.0), seed=3)
    sources = []
    for item_id, col, dt in (("scene-a", "coll-a", "2021-06-01T10:00:00Z"), ("scene-b", "coll-b",
                                                                            "2022-03-01T10:00:00Z")):
        item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": col, "geometry": None,
                "properties": {"datetime": dt}, "links": [],
                "assets": {"image": {"href": f"{item_id[-1]}.tif", "type": GEOTIFF, "roles": ["data"]}}}
        (root / f"{item_id}.json").write_text(json.dumps(item))
        sources.append(str(root / f"{item_id}.json"))
    sources.append(str(root / "bare.tif"))
    report = ingest(sources, index=str(root / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written == 24, report
    return root


@pytest.fixture(scope="module")
def index(built, tiny_bundle):
    with Index.open(str(built / "idx"), model=tiny_bundle) as idx:
        yield idx


@pytest.fixture(scope="module")
def points(index):
    return {p.id: p.payload for p in index.store.iter_points(with_vectors=False)}


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index, max_upload_bytes=LIMIT, max_image_pixels=1024 * 1024), base_url=BASE) as c:
        yield c


def _of(points, item_id):
    return sorted(i for i, p in points.items() if p["item_id"] == item_id)


def _pixels(payload) -> np.ndarray:
    from rsir_stac.thumbnails import read_tile

    return read_tile(payload)


def _png(px: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG")
    return buf.getvalue()


def _items(doc) -> list[str]:
    return [f["properties"]["item_id"] for f in doc["features"]]


def _one_line(r, status, fragment=""):
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) <= {"detail", "error", "errors"} and "\n" not in doc["detail"], doc
    assert fragment in doc["detail"], doc["detail"]
    return doc


# --------------------------------------------------------------------------- image search: diverse like the rest


def raw_other(index, tile):
    """The tiles of scenes other than scene a, nearest first (no cap)."""
    return [h for h in index.search(pixels=tile, k=40, per_item=None).hits if h.payload["item_id"] != "scene-a"]


def test_image_search_keeps_the_per_scene_default(client, index, points):
    a1 = _of(points, "scene-a")[0]
    tile = _pixels(points[a1])
    raw = index.search(pixels=tile, k=6, per_item=None)
    assert [h.payload["item_id"] for h in raw.hits] == ["scene-a"] * 6   # without a cap: one scene's copies
    r = client.post("/api/search/image", files={"file": ("q.png", _png(tile), "image/png")}, data={"k": "6"})
    assert r.status_code == 200, r.text
    doc = r.json()
    want = index.search(pixels=tile, k=6).hits  # the library's default: the soft per-scene cap
    assert [f["id"] for f in doc["features"]] == [h.id for h in want] and len(doc["features"]) == 6
    assert doc["query"]["kind"] == "image" and doc["query"]["size"] == [64, 64] and doc["notes"] == []
    assert doc["per_scene"] == 3 and doc["per_scene_penalty"] > 1
    # beyond 3 of scene a, a tile ranks as if per_scene_penalty times farther: it comes after any other
    # scene's tile nearer than that
    for f in doc["features"][3:]:
        if f["properties"]["item_id"] == "scene-a":
            others = [o for o in raw_other(index, tile) if o.score < f["properties"]["distance"] * doc["per_scene_penalty"]]
            assert all(o.id in {g["id"] for g in doc["features"]} for o in others[:3])
    # the same default as a search by the stored tile's id
    by_id = client.get("/api/search", params={"point_id": a1, "k": 6}).json()
    assert [f["id"] for f in by_id["features"]] == [h.id for h in index.search(point_id=a1, k=6).hits]
    # the cap is soft: with fewer other scenes than k needs, the capped-out tiles follow
    more = client.post("/api/search/image", files={"file": ("q.png", _png(tile))}, data={"k": "20"}).json()
    assert _items(more).count("scene-a") == 8


def test_query_expansion_through_every_search_route(client, index, points):
    a1 = _of(points, "scene-a")[0]
    want = index.search(point_id=a1, k=6, expand=3)
    assert len(want.expanded) == 3
    for r in (client.get("/api/search", params={"point_id": a1, "k": 6, "expand": 3}),
              client.post("/api/search", json={"point_id": a1, "k": 6, "expand": 3}),
              client.post("/api/query", json={"positives": [{"point_id": a1}], "k": 6, "expand": 3})):
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["query"]["expanded"] == list(want.expanded)
        assert [f["id"] for f in doc["features"]] == [h.id for h in want.hits]
    tile = _pixels(points[a1])
    doc = client.post("/api/search/image", files={"file": ("q.png", _png(tile))}, data={"k": "6", "expand": "2"}).json()
    assert doc["query"]["expanded"] == list(index.search(pixels=tile, k=6, expand=2).expanded)
    assert "expanded" not in client.get("/api/search", params={"point_id": a1, "k": 6}).json()["query"]
    r = client.get("/api/search", params={"point_id": a1, "expand": 500})
    assert r.status_code == 422 and "expand" in r.text


# --------------------------------------------------------------------------- /api/query with uploaded examples


def _query(client, query: dict | str | None = None, pos=(), neg=()):
    """A multipart query: ``query`` (JSON text of the body's fields) and example images."""
    files = [("positive_image", (f"p{n}.png", b, "image/png")) for n, b in enumerate(pos)]
    files += [("negative_image", (f"n{n}.png", b, "image/png")) for n, b in enumerate(neg)]
    data = {} if query is None else {"query": query if isinstance(query, str) else json.dumps(query)}
    return client.post("/api/query", data=data, files=files or None)


def test_query_with_uploaded_positive_and_negative_images(client, index, points):
    a1, b1 = _of(points, "scene-a")[0], _of(points, "scene-b")[0]
    ta, tb = _pixels(points[a1]), _pixels(points[b1])
    r = _query(client, {"k": 7, "per_item": 0}, pos=[_png(ta)])
    assert r.status_code == 200, r.text
    doc = r.json()
    lib = index.search(positives=[Example("pixels", ta)], per_item=None, k=7)
    assert [f["id"] for f in doc["features"]] == [h.id for h in lib.hits]
    assert set(_items(doc)) == {"scene-a"} and doc["features"][0]["properties"]["distance"] < 1e-3
    # images, point ids and locations mix; negatives change the query as in the library
    b2 = _of(points, "scene-b")[1]
    loc = points[b2]["location"]
    body = {"k": 10, "strategy": "best_score", "positives": [{"lon": loc["lon"], "lat": loc["lat"]}],
            "negatives": [{"point_id": a1}]}
    r = _query(client, body, pos=[_png(tb)], neg=[_png(ta)])
    assert r.status_code == 200, r.text
    doc = r.json()
    lib = index.search(positives=[Example("pixels", tb), Example("location", (loc["lon"], loc["lat"]))],
                       negatives=[Example("pixels", ta), Example("point", a1)], strategy="best_score", k=10)
    assert [f["id"] for f in doc["features"]] == [h.id for h in lib.hits]
    assert doc["score"] == "score" and len(doc["query"]["positives"]) == 2 and len(doc["query"]["negatives"]) == 2
    assert "scene-a" not in _items(doc)[:3]
    # export takes the same multipart query
    r = client.post("/api/query/export", data={"query": json.dumps({"k": 5, "format": "csv"})},
                    files=[("positive_image", ("p.png", _png(ta), "image/png"))])
    assert r.status_code == 200, r.text
    assert len(r.text.strip().splitlines()) == 6


def test_query_image_errors_are_one_line(client, points):
    a1 = _of(points, "scene-a")[0]
    png = _png(_pixels(points[a1]))
    vrt = b'<VRTDataset rasterXSize="8" rasterYSize="8"><VRTRasterBand dataType="Byte" band="1">' \
          b'<SimpleSource><SourceFilename>/etc/passwd</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>'
    doc = _one_line(_query(client, {"k": 3}, pos=[png], neg=[vrt]), 422, "negative_image[1]: ")
    assert "XML" in doc["detail"] and doc["error"] == "ImageReadError"
    _one_line(_query(client, {"k": 3}, pos=[b"GIF89a" + b"\0" * 64]), 422, "positive_image[1]")
    _one_line(_query(client, {"k": 3}, pos=[png] * 17), 400, "16")                     # too many files
    big = _png(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    assert LIMIT / 2 < len(big) < LIMIT
    _one_line(_query(client, {"k": 3}, pos=[big, big]), 413, "together")              # within the body limit
    _one_line(_query(client, {}), 400, "positive example")                            # no example at all
    doc = _one_line(_query(client, "{nope", pos=[png]), 422, "query")
    assert doc["errors"][0]["loc"] == ["body", "query"]
    doc = _one_line(_query(client, {"k": "many"}, pos=[png]), 422, "k")
    assert doc["errors"][0]["loc"] == ["body", "query", "k"]
    _one_line(client.post("/api/query", content=b"k=3", headers={"content-type": "text/plain"}), 422, "JSON")
    _one_line(client.post("/api/query", content=b"", headers={"content-type": "application/json"}), 422)
    # JSON bodies are read as before, schema errors included
    doc = _one_line(client.post("/api/query", json={"positives": [{"point_id": a1}], "mmr": "x"}), 422, "mmr")
    assert doc["errors"][0]["loc"] == ["body", "mmr"]
    _one_line(client.post("/api/query", content=b'{"positives": [], "mmr": NaN}',
                          headers={"content-type": "application/json"}), 422)


def test_query_k_and_offset_errors_name_the_request_fields(client, points):
    """Re-check N6: the library names --limit and --offset as the command line takes them; an HTTP client
    sent k and offset, and read `--limit 0 (API: k)`."""
    a1 = _of(points, "scene-a")[0]
    doc = _one_line(client.post("/api/query", json={"positives": [{"point_id": a1}], "k": 0}), 400,
                    "k 0 (API: k) must be a whole number >= 1")
    assert "--" not in doc["detail"], doc
    doc = _one_line(client.post("/api/query", json={"positives": [{"point_id": a1}], "k": 10, "offset": 9999}), 400,
                    "offset 9999 + k 10 (API: offset + k) is above the limit of 10000 results")
    assert "--" not in doc["detail"], doc


def test_query_images_take_a_decode_slot(client, points):
    a1 = _of(points, "scene-a")[0]
    slots = client.app.state.decode_slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        r = _query(client, {"k": 3}, pos=[_png(_pixels(points[a1]))])
        doc = _one_line(r, 429, "retry")
        assert r.headers["Retry-After"] == "1" and doc["error"] == "TooManyRequests"
        # a query without images needs no slot
        assert client.post("/api/query", json={"positives": [{"point_id": a1}], "k": 3}).status_code == 200
    finally:
        for _ in range(taken):
            slots.release()


def test_query_body_over_the_limit_is_refused_before_it_is_read(client):
    reads, sent = [], []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message):
        sent.append(message)

    for path in ("/api/query", "/api/query/export", "/api/classify"):
        reads.clear(), sent.clear()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 8000),
                 "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", str(LIMIT * 10).encode()),
                             (b"content-type", b"multipart/form-data; boundary=x")]}
        asyncio.run(client.app(scope, receive, send))
        assert sent[0]["status"] == 413 and reads == [], path
        assert b'"error":"RequestTooLarge"' in b"".join(m.get("body", b"") for m in sent[1:])


def test_openapi_documents_both_bodies_and_the_limits(client):
    doc = client.get("/openapi.json").json()
    for path in ("/api/query", "/api/query/export"):
        op = doc["paths"][path]["post"]
        content = op["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        props = content["multipart/form-data"]["schema"]["properties"]
        assert props["positive_image"]["items"]["format"] == "binary" and props["positive_image"]["maxItems"] == 16
        assert "positives" in content["application/json"]["schema"]["properties"]
        assert str(LIMIT) in op["requestBody"]["description"]
        assert {"400", "404", "413", "422", "429"} <= set(op["responses"])
        for code in ("400", "413", "429"):
            assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")


# --------------------------------------------------------------------------- notes: what a filter leaves out


def _filter_notes(doc: dict) -> list[str]:
    """The notes of an answer but the per-scene cap's on the order (the filters' own)."""
    from rsir_stac.search_notes import cap_note

    return [n for n in doc["notes"] if n not in (cap_note("distance"), cap_note("score"))]


def test_date_and_collection_filters_say_what_they_leave_out(client, points):
    a1 = _of(points, "scene-a")[0]
    doc = client.get("/api/search", params={"point_id": a1, "k": 20}).json()
    assert _filter_notes(doc) == [] and any(i.startswith("bare-") for i in _items(doc))
    doc = client.get("/api/search", params={"point_id": a1, "k": 20, "datetime": "2000-01-01/.."}).json()
    assert not any(i.startswith("bare-") for i in _items(doc))
    assert _filter_notes(doc) == ["8 tiles in the searched area have no date, so the datetime filter leaves them out; "
                            "give bare rasters a date with `rsir-stac ingest --datetime`"]
    doc = client.post("/api/search", json={"point_id": a1, "collection": ["coll-a", "coll-b"]}).json()
    assert len(_filter_notes(doc)) == 1 and _filter_notes(doc)[0].startswith("8 tiles in the searched area have no collection")
    doc = client.post("/api/query", json={"positives": [{"point_id": a1}], "datetime": "2000-01-01/..",
                                          "collection": "coll-b"}).json()
    # the 8 bare tiles have neither a date nor a collection: one line for them, not one from each filter
    assert len(_filter_notes(doc)) == 2 and set(_items(doc)) == {"scene-b"}
    assert _filter_notes(doc)[1].startswith("8 tiles in the searched area have neither a date nor a collection, so "
                                            "the datetime filter and the collection filter leave them out")
    assert doc["notes"][0].startswith("the example tile is from 2021-06-01") and "(coll-a)" in doc["notes"][0]
    assert doc["search_notes"] == doc["notes"][:1]   # the page shows this one; it counts the others itself
    a = _pixels(points[a1])
    doc = client.post("/api/search/image", files={"file": ("q.png", _png(a))}, data={"collection": "coll-a"}).json()
    assert "no collection" in doc["notes"][0]
    # a filter without date or collection leaves nothing out silently
    assert _filter_notes(client.get("/api/search", params={"point_id": a1, "bbox": "-180,-90,180,90"}).json()) == []


# --------------------------------------------------------------------------- server paths hidden everywhere


def test_hide_paths_covers_every_answer(index, points, built):
    a1 = _of(points, "scene-a")[0]
    labels = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": i, "geometry": None, "properties": {"label": lab}}
        for ids, lab in ((_of(points, "scene-a")[:4], "positive"), (_of(points, "scene-b")[:4], "negative"))
        for i in ids]}
    with TestClient(create_app(index, hide_paths=True), base_url=BASE) as c:
        answers = [
            c.get("/api/search", params={"point_id": a1, "k": 5}),
            c.post("/api/query", json={"positives": [{"point_id": a1}], "k": 5}),
            c.post("/api/query/export", json={"positives": [{"point_id": a1}], "k": 5, "format": "csv"}),
            c.post("/api/classify", json={"labels": labels, "threshold": 0.0, "holdout": 0.0}),
            c.get("/api/info"), c.get("/api/scenes"),
        ]
        for r in answers:
            assert r.status_code == 200, r.text
            assert str(built) not in r.text and "/tmp" not in r.text, r.request.url
        hrefs = [f["properties"]["href"] for r in answers[:2] for f in r.json()["features"]]
        hrefs += [f["properties"]["href"] for f in answers[3].json()["features"]]
        assert hrefs and {h for h in hrefs} <= {"a.tif", "b.tif", "bare.tif"}
        assert "a.tif" in answers[2].text
    with TestClient(create_app(index), base_url=BASE) as c:   # the library default shows them
        r = c.post("/api/query", json={"positives": [{"point_id": a1}], "k": 5})
        assert all(f["properties"]["href"].startswith(str(built)) for f in r.json()["features"])


# --------------------------------------------------------------------------- a source replaced by a non-raster


def _tile_over(scene: dict, zoom: int):
    import morecantile

    w, s, e, n = scene["properties"]["bbox"]
    return morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, zoom)


def test_source_replaced_by_a_non_raster_is_never_500(tmp_path, tiny_bundle):
    root = tmp_path / "w"
    root.mkdir()
    src = make_geotiff(root / "x.tif", width=128, height=128, seed=5)
    assert ingest([str(src)], index=str(root / "idx"), model=tiny_bundle, options=NATIVE).ok
    src.write_bytes(b"II*\x00" + b"this was a GeoTIFF and is not any more" * 10)
    with Index.open(str(root / "idx"), model=tiny_bundle) as idx, \
            TestClient(create_app(idx, hide_paths=True), base_url=BASE) as c:
        pid = next(p.id for p in idx.store.iter_points(with_vectors=False))
        doc = _one_line(c.get(f"/api/tiles/{pid}.png"), 410, "re-ingest")
        assert str(root) not in doc["detail"]
        scenes = c.get("/api/scenes").json()
        scene = scenes["features"][0]
        t = _tile_over(scene, scene["properties"]["maxzoom"] - 3)
        r = c.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png")
        assert r.status_code in (200, 404), r.text
        if r.status_code == 404:
            assert str(root) not in r.json()["detail"] and "\n" not in r.json()["detail"]
        after = c.get("/api/scenes").json()["features"][0]["properties"]
        assert after["imagery"] is False and str(root) not in after["imagery_problem"]


def test_an_unexpected_error_leaves_the_connection_usable():
    """A route's unexpected exception gets its JSON 500 inside the app, so a keep-alive client's
    next request on the same connection is answered (Starlette's outermost handler re-raises and
    the server used to drop the connection: the next request failed with a reset)."""
    import httpx
    from fastapi import FastAPI

    from rsir_stac.apierrors import install_handlers
    from tests.conftest import serve_in_thread

    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    @app.get("/deep")
    def deep():
        raise RecursionError("maximum recursion depth exceeded")

    @app.get("/ok")
    def ok():
        return {"ok": True}

    with serve_in_thread(app) as base, httpx.Client(base_url=base) as c:
        for _ in range(3):
            r = c.get("/boom")
            assert r.status_code == 500 and r.json()["error"] == "InternalError"
            assert "a bug" not in r.text  # the detail stays in the server log
            assert c.get("/ok").json() == {"ok": True}  # the same connection
        r = c.get("/deep")
        assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]


def test_an_uploaded_image_far_from_a_tile_gets_the_note_a_local_search_gives(client, index):
    """Re-check of trial 37: through the service a 4000 x 200 strip and a whole scene got no note (the
    upload reached the search as a bare vector); the tiny image keeps the small-upload warning."""
    tile = index.bundle.tile_size
    rng = np.random.default_rng(0)

    def blocks(h: int, w: int) -> bytes:  # 8 px blocks: a small PNG within the upload limit
        return _png(np.kron(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)))

    strip, scene, chip = blocks(tile // 2, tile * 5), blocks(tile * 5, tile * 5), blocks(tile, tile)
    for blob, how, wh in ((strip, "squashed", (tile * 5, tile // 2)), (scene, "shrunk", (tile * 5, tile * 5)),
                          (chip, None, None)):
        for doc in (_query(client, {"k": 2}, pos=[blob]).json(),
                    client.post("/api/search/image", files={"file": ("q.png", blob, "image/png")},
                                data={"k": "2"}).json()):
            said = [n for n in doc["notes"] if "network input" in n]
            if how is None:
                assert not said, said
            else:
                assert said == [f"the query image is {wh[0]} x {wh[1]} px and the index's tiles {tile} x {tile} px: "
                                f"it is {how} whole into one network input, so its vector may say little about tiles "
                                "like these; search by a chip of about one tile's size and ground resolution, or by a "
                                "stored tile (a result, or the tile at a place)"], said
                assert said[0] in doc["search_notes"], doc["search_notes"]
