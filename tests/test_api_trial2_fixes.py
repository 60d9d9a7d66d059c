"""Fixes from the twenty-ninth session's library/API trial, on a real Edge index of real rasters
with a real tiny model: paging and strict fields in ``/api/search``, the library's checks of what
a caller passes (pixels, locations, examples, filters, ingest options), the per-scene cap's note
outside the command line, and the smaller messages."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from PIL import Image

from rsir_stac.errors import IndexInUseError, InputError, RsirError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Example, Index
from rsir_stac.search_notes import cap_note
from rsir_stac.serve import create_app
from rsir_stac.store import SearchFilter
from tests.conftest import make_geotiff

BASE = "http://127.0.0.1:8000"
NATIVE = IngestOptions(tile_size=64, gsd=None, native_gsd=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bundle):
    """Three bare scenes of 4 x 2 tiles of 64 px (24 tiles), side by side in UTM 15N."""
    root = tmp_path_factory.mktemp("trial2")
    sources = [str(make_geotiff(root / f"s{n}.tif", width=256, height=128, origin=(500000.0 + 2000 * n, 3300000.0),
                                seed=n)) for n in range(3)]
    report = ingest(sources, index=str(root / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written == 24, report
    return root


@pytest.fixture(scope="module")
def index(built, tiny_bundle):
    with Index.open(str(built / "idx"), model=tiny_bundle) as idx:
        yield idx


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def pid(index):
    return next(iter(index.store.iter_points(with_vectors=False))).id


def _ids(doc: dict) -> list[str]:
    return [f["id"] for f in doc["features"]]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- /api/search: paging, strict fields


def test_get_search_pages_with_offset(client, pid):
    first = client.get("/api/search", params={"point_id": pid, "k": 5}).json()
    assert first["offset"] == 0 and first["next_offset"] == 5
    second = client.get("/api/search", params={"point_id": pid, "k": 5, "offset": 5}).json()
    assert second["offset"] == 5 and len(second["features"]) == 5
    assert not set(_ids(first)) & set(_ids(second))  # page 2 is not page 1 again
    both = client.get("/api/search", params={"point_id": pid, "k": 10}).json()
    assert _ids(both) == _ids(first) + _ids(second)
    body = client.post("/api/search", json={"point_id": pid, "k": 5, "offset": 5}).json()
    assert _ids(body) == _ids(second)
    last = client.get("/api/search", params={"point_id": pid, "k": 10, "offset": 20}).json()
    assert len(last["features"]) == 3 and last["next_offset"] is None  # 23 other tiles in all


def test_unknown_or_repeated_query_parameters_are_refused(client, pid):
    for params, word in ((f"point_id={pid}&bbx=0,0,1,1", "bbx"), (f"point_id={pid}&offest=3", "offest"),
                         (f"point_id={pid}&k=1&k=2", "more than once")):
        r = client.get(f"/api/search?{params}")
        assert r.status_code == 422, r.text
        assert word in r.json()["detail"], r.json()
    ok = client.get(f"/api/search?point_id={pid}&collection=a&collection=b&api_key=x")  # lists repeat; the key may come here
    assert ok.status_code == 200, ok.text
    assert client.get("/api/info?verbose=1").status_code == 422
    assert client.get("/api/scenes?v=2").status_code == 422  # JSON, as the rest (re-check NEW-8)
    assert "takes none here" in client.get("/api/info?x=1").json()["detail"]
    assert client.get("/api/imagery/0/0/0.png?v=2").status_code in (200, 204, 404)  # map clients add their own
    assert client.get(f"/api/tiles/{pid}.png?v=2").status_code == 200  # image URLs take cache busters


def test_unknown_form_fields_are_refused(client):
    r = client.post("/api/search/image", files={"file": ("q.png", _png(), "image/png")}, data={"offest": "3"})
    assert r.status_code == 422 and "offest" in r.text, r.text
    r = client.post("/api/search/image", files={"file": ("q.png", _png(), "image/png")}, data={"offset": "2", "k": "3"})
    assert r.status_code == 200 and r.json()["offset"] == 2, r.text
    r = client.post("/api/query", data={"query": '{"k": 2}'}, files={"pos_image": ("x.png", _png(), "image/png")})
    assert r.status_code == 422 and "pos_image" in r.text, r.text  # not "give at least one positive example"
    r = client.post("/api/query", data={"query": '{"k": 2}'}, files={"positive_image": ("x.png", _png(), "image/png")})
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- the per-scene cap's note


def _capped_world(tmp_path, bundle):
    """An index where the per-scene cap must reorder: the query tile of scene A, 6 more A tiles at
    distance 0.10-0.15 from it, and 2 tiles of scene B at 0.16 and 0.17 (beyond 3 of one scene a
    distance ranks as if 30 % larger, so B's come before A's last three)."""
    import uuid

    from rsir_stac.store import Point
    from tests.conftest import index_of_points

    rng = np.random.default_rng(0)
    q = rng.normal(size=bundle.dim).astype(np.float32)
    step = rng.normal(size=bundle.dim).astype(np.float32)
    step /= np.linalg.norm(step)
    pts = []
    for n, (scene, d) in enumerate([("A", 0.0), ("A", 0.10), ("A", 0.11), ("A", 0.12), ("A", 0.13), ("A", 0.14),
                                    ("A", 0.15), ("B", 0.16), ("B", 0.17)]):
        lon = -95.0 + 0.01 * n
        pts.append(Point(str(uuid.UUID(int=n + 1)), q + d * step,
                         {"item_id": f"scene-{scene}", "collection": "c", "location": {"lon": lon, "lat": 29.0},
                          "bbox": [lon - 0.001, 28.999, lon + 0.001, 29.001], "model_id": bundle.model_id,
                          "datetime": "2020-06-01T00:00:00Z", "datetime_epoch": 1590969600.0}))
    return index_of_points(tmp_path / "capped", pts, bundle), pts[0].id


def test_cap_note_reaches_library_and_api_users(tmp_path, shipped_bundle):
    path, qid = _capped_world(tmp_path, shipped_bundle)
    with Index.open(str(path), model=shipped_bundle) as idx:
        res = idx.search(point_id=qid, k=8)
        assert [h.payload["item_id"] for h in res.hits][:4] == ["scene-A"] * 3 + ["scene-B"]  # B's 0.16 before A's 0.13
        assert cap_note("distance") in res.notes  # the library says it (only the CLI did)
        plain = idx.search(point_id=qid, k=8, per_item=0)  # 0 is no cap, as the CLI's --per-item 0
        assert [h.score for h in plain.hits] == sorted(h.score for h in plain.hits)
        assert cap_note("distance") not in plain.notes
        with TestClient(create_app(idx), base_url=BASE) as c:
            for doc in (c.get("/api/search", params={"point_id": qid, "k": 8}).json(),
                        c.post("/api/query", json={"positives": [{"point_id": qid}], "k": 8}).json()):
                assert cap_note("distance") in doc["notes"] and cap_note("distance") not in doc["search_notes"]


# --------------------------------------------------------------------------- the library's own checks


@pytest.mark.parametrize("pixels, word", [
    (np.random.default_rng(0).random((64, 64, 3)), "float64"),        # a 0..1 image was read as black
    (np.zeros((64, 64), np.uint8), "H×W×3"),
    (np.zeros((64, 64, 4), np.uint8), "RGBA"),
    (np.zeros((0, 0, 3), np.uint8), "no pixels"),
    (np.zeros((64, 64, 3), np.uint16), "uint16"),
])
def test_pixels_of_another_type_are_refused(index, pixels, word):
    with pytest.raises(InputError, match=word):
        index.search(pixels=pixels, k=3)


@pytest.mark.parametrize("kwargs, word", [
    ({"at": "-95.36,29.75"}, "not a \\(lon, lat\\) pair"),
    ({"at": (1.0, 2.0, 3.0)}, "not a \\(lon, lat\\) pair"),
    ({"positives": ["387200ba-e983-5945-901c-8703c63c76c4"]}, "not an Example"),
    ({"positives": "387200ba-e983-5945-901c-8703c63c76c4"}, "list of Example"),
    ({"at": (-93.0, 29.8), "flt": {"bbox": (-96, 29, -95, 30)}}, "not a SearchFilter"),
])
def test_wrong_argument_types_are_input_errors(index, kwargs, word):
    with pytest.raises(InputError, match=word):
        index.search(k=3, **kwargs)


def test_filter_takes_the_command_lines_text_and_refuses_other_types():
    assert SearchFilter(bbox="-96,29,-95,30").bbox == (-96.0, 29.0, -95.0, 30.0)
    assert SearchFilter(near="-95,29,500").near == (-95.0, 29.0, 500.0)
    for kw in ({"bbox": {"w": 1}}, {"bbox": ["a", 1, 2, 3]}, {"near": 5}):
        with pytest.raises(InputError, match="not a sequence of numbers"):
            SearchFilter(**kw)


def test_ingest_options_datetime_forms():
    day = IngestOptions(datetime="2021-01-01").datetime
    assert day == (datetime(2021, 1, 1, tzinfo=timezone.utc), datetime(2021, 1, 1, 23, 59, 59, 999999, tzinfo=timezone.utc))
    t = datetime(2021, 1, 1, 10, tzinfo=timezone.utc)
    assert IngestOptions(datetime=t).datetime == (t, t)
    assert IngestOptions(datetime=("2021-01-01", "2021-12-31")).datetime[1].month == 12
    for bad, word in ((("2022-01-01", "2021-12-31"), "ends before"), (5, "not an acquisition time"),
                      ("2021-01-01/..", "open end")):
        with pytest.raises(InputError, match=word):
            IngestOptions(datetime=bad)


def test_ingest_takes_one_path_and_refuses_run_wide_options_up_front(tmp_path, tiny_bundle):
    tif = make_geotiff(tmp_path / "one.tif", width=128, height=64)
    for opts, word in ((IngestOptions(tile_size=64, native_gsd=True, edge="bogus"), "--edge 'bogus'"),
                       (IngestOptions(tile_size=64, native_gsd=True, min_valid=2.0), "--min-valid 2.0")):
        with pytest.raises(InputError, match=word):
            ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=opts)
    assert not (tmp_path / "idx").exists()  # refused before any work
    report = ingest(str(tif), index=str(tmp_path / "idx"), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, native_gsd=True, datetime="2020-06-01"))
    assert report.ok and report.points_written == 2, report
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as idx:
        assert {p.payload["datetime"][:10] for p in idx.store.iter_points()} == {"2020-06-01"}


def test_second_open_in_one_process_says_so(index, built, tiny_bundle):
    with pytest.raises(IndexInUseError, match="already open in this process"):  # `index` holds it open
        Index.open(str(built / "idx"), model=tiny_bundle)


def test_errors_of_the_library_are_rsir_errors(index):
    """Every refusal above is caught by one ``except RsirError`` (and by the matching built-in)."""
    with pytest.raises(RsirError):
        index.search(pixels=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        index.search(pixels=np.zeros((8, 8), np.uint8))
    assert Example("location", [1, 2]).value == (1.0, 2.0)


# --------------------------------------------------------------------------- find all: background where the labels are


def _scene_world(dim: int, model_id: str, *, lake_w: float = 1.0, flight_w: float = 2.5, noise: float = 0.1):
    """12 scenes of 8 x 5 tiles, one flight each: every tile's vector is its scene's offset (sensor,
    date, radiometry) plus its ground; scene 0, the labelled one, has a strong offset of its own and
    8 tiles of the target ground ("lake"); the rest of every scene is other ground ("field")."""
    import uuid

    from rsir_stac.store import Point

    rng = np.random.default_rng(5)
    lake, flight = rng.normal(size=dim), rng.normal(size=dim)
    lake, flight = lake / np.linalg.norm(lake), flight / np.linalg.norm(flight)
    pts, lakes = [], set()
    for s in range(12):
        offset = flight_w * flight if s == 0 else 0.3 * rng.normal(size=dim) / np.sqrt(dim)
        for r in range(5):
            for c in range(8):
                is_lake = s == 0 and r in (1, 2) and 2 <= c <= 5
                v = offset + rng.normal(scale=noise, size=dim) + (lake_w * lake if is_lake else 0.0)
                lon, lat = -99.0 + 0.2 * s + 0.002 * c, 47.0 + 0.002 * r
                pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sw/{s}/{r}/{c}"))
                payload = {"item_id": f"flight-{s}", "collection": "demo", "datetime": "2020-06-01T00:00:00Z",
                           "datetime_epoch": 1590969600.0, "location": {"lon": lon, "lat": lat},
                           "bbox": [lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001], "model_id": model_id}
                pts.append(Point(pid, v.astype(np.float32), payload))
                if is_lake:
                    lakes.add(pid)
    return pts, lakes


def test_find_all_draws_background_where_the_labels_are(tmp_path, shipped_bundle):
    """Labels in one of many scenes: with the background drawn over the index alone the classifier
    learned "this scene" and marked its fields too (page trial: 94 % of a NAIP scene; here 19 of the
    32 field tiles, against none with the background drawn where the labels are)."""
    from rsir_stac.classify import classify
    from rsir_stac.labels import Label, LabelSet
    from tests.conftest import index_of_points

    pts, lakes = _scene_world(shipped_bundle.dim, shipped_bundle.model_id)
    path = index_of_points(tmp_path / "idx", pts, shipped_bundle)
    scene0 = [p.id for p in pts if p.payload["item_id"] == "flight-0"]
    fields0 = [i for i in scene0 if i not in lakes]
    pos = sorted(lakes)[:3]
    neg = fields0[:2]
    labels = LabelSet(tuple([Label(i, "positive") for i in pos] + [Label(i, "negative") for i in neg]))
    with Index.open(str(path), model=shipped_bundle) as idx:
        rep = classify(idx, labels)
    hits = {h.id for h in rep.hits}
    assert lakes <= hits  # every lake found
    false = [i for i in fields0 if i in hits and i not in neg]
    assert len(false) <= 3, f"{len(false)} of the labelled scene's {len(fields0)} field tiles marked as lakes"


def test_an_exclusion_beyond_the_earth_is_said_in_readable_digits(index, pid):
    res = index.search(point_id=pid, k=3, exclude_within_m=1e30)
    assert not res.hits and any("within 1e+30 m of an example's footprint" in n for n in res.notes), res.notes


def test_a_forced_gsd_far_finer_than_a_scene_is_warned_about(tmp_path, tiny_bundle, caplog):
    """Page trial S1: `--gsd 2` blew a 300 m scene up 150x into 16,900 near-identical tiles, silently."""
    import logging

    tif = make_geotiff(tmp_path / "coarse.tif", width=64, height=64, res=30.0)
    with caplog.at_level(logging.WARNING, logger="rsir_stac"):
        report = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                        options=IngestOptions(tile_size=64, gsd=1.0))
    assert report.points_written == 900, report  # 64 px at 30 m is 1,920 px at 1 m: 30 x 30 tiles
    warned = [r.getMessage() for r in caplog.records if "enlarges its 30 m pixels 30x" in r.getMessage()]
    assert len(warned) == 1 and "--native-gsd" in warned[0], [r.getMessage() for r in caplog.records]
    assert [d["factor"] for d in report.items_enlarged] == [30.0]  # in the report too: HTTP jobs, served ingests
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rsir_stac"):
        ingest([str(tif)], index=str(tmp_path / "idx2"), model=tiny_bundle, options=IngestOptions(tile_size=64, gsd=6.0))
    assert not [r for r in caplog.records if "enlarges" in r.getMessage()]  # 5x: within what the model saw


def test_openapi_describes_the_answers(client, pid):
    """API trial 11: every 200 answer was an untyped object; a generated client got a bare dict."""
    doc = client.get("/openapi.json").json()
    for path, method in (("/api/search", "get"), ("/api/search", "post"), ("/api/search/image", "post"),
                         ("/api/query", "post")):
        schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        props = schema["properties"]
        assert {"features", "query", "k", "offset", "next_offset", "notes"} <= set(props), (path, method)
        assert props["features"]["items"]["properties"]["properties"]["properties"]["rank"]["type"] == "integer"
    cls = doc["paths"]["/api/classify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "precision" in cls["properties"]["summary"]["properties"]
    info = doc["paths"]["/api/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "extent" in info["properties"]
    # the documented fields are the ones an answer has
    answer = client.get("/api/search", params={"point_id": pid, "k": 3}).json()
    search = doc["paths"]["/api/search"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(search["required"]) <= set(answer)
    assert set(search["properties"]) - {"score"} <= set(answer), set(search["properties"]) - set(answer)
    hit = answer["features"][0]["properties"]
    documented = search["properties"]["features"]["items"]["properties"]["properties"]["properties"]
    assert {"rank", "distance", "id", "item_id", "href", "gsd"} <= set(hit) & set(documented)
