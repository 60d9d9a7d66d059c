"""HTTP endpoints of the analyst's loop (``rsir_stac.serve_analysis``) on a real Edge index."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
import json
import uuid

import pytest
from fastapi.testclient import TestClient
from test_analysis import _labels, bundle, world  # noqa: F401 - fixtures

from rsir_stac.search import Index
from rsir_stac.serve import create_app
from rsir_stac.store.query import MAX_K


@pytest.fixture()
def client(world, bundle):  # noqa: F811
    with Index.open(str(world[0]), model=bundle) as idx, TestClient(create_app(idx), base_url="http://127.0.0.1:8000") as c:
        yield c


def _err(r, status, fragment):
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and fragment in detail, detail


def test_query_pages_and_labels(client, world, bundle):  # noqa: F811
    labels = _labels(world, bundle, 5, 5).to_geojson()
    body = {"labels": labels, "strategy": "best_score", "k": 40, "per_item": None}
    full = client.post("/api/query", json=body).json()
    assert len(full["features"]) == 40 and full["score"] == "score" and full["next_offset"] == 40
    ids = [f["id"] for f in full["features"]]
    pages = []
    for off in (0, 20):
        r = client.post("/api/query", json={**body, "k": 20, "offset": off}).json()
        pages += [f["id"] for f in r["features"]]
        assert r["features"][0]["properties"]["rank"] == off + 1
    assert pages == ids
    targets = world[2]
    assert sum(i in targets for i in ids[:10]) >= 8
    pid = world[1][3].id
    r = client.post("/api/query", json={"positives": [{"point_id": pid}], "negatives": [{"lon": 10.0005, "lat": 45.0005}],
                                        "k": 12}).json()
    items = [f["properties"]["item_id"] for f in r["features"]]
    assert len(items) == 12 and max(items.count(i) for i in items) <= 3  # default per-scene cap
    last = client.post("/api/query", json={"positives": [{"point_id": pid}], "k": 10, "offset": len(world[1]) - 5,
                                           "per_item": 0}).json()
    assert len(last["features"]) == 4 and last["next_offset"] is None  # the query tile itself is left out


def test_query_export_formats(client, world):
    import geopandas as gpd

    pid = world[1][0].id
    for fmt in ("parquet", "fgb", "geojson", "csv"):
        r = client.post("/api/query/export", json={"positives": [{"point_id": pid}], "k": 25, "format": fmt,
                                                   "per_item": 0})
        assert r.status_code == 200, r.text
        if fmt == "csv":
            assert len(r.text.strip().splitlines()) == 26
        elif fmt == "parquet":
            assert len(gpd.read_parquet(io.BytesIO(r.content))) == 25
        else:
            assert len(gpd.read_file(io.BytesIO(r.content))) == 25
    _err(client.post("/api/query/export", json={"positives": [{"point_id": pid}], "format": "xlsx"}), 400, "xlsx")


def test_labels_endpoint_fills_footprints(client, world, bundle):  # noqa: F811
    labels = _labels(world, bundle, 3, 2).to_geojson()
    for f in labels["features"]:
        f["geometry"] = None
    doc = client.post("/api/labels", json={"labels": labels}).json()
    assert doc["rsir:model_id"] == bundle.model_id and len(doc["features"]) == 5
    assert all(f["geometry"]["type"] == "Polygon" and f["properties"]["item_id"] for f in doc["features"])


def test_classify_endpoint(client, world, bundle):  # noqa: F811
    labels = _labels(world, bundle).to_geojson()
    doc = client.post("/api/classify", json={"labels": labels, "threshold": 0.5}).json()
    got = {f["id"] for f in doc["features"]}
    assert len(got & world[2]) >= 0.9 * len(world[2]) and doc["summary"]["scored"] == len(world[1])
    areas = client.post("/api/classify", json={"labels": labels, "dissolve": True}).json()
    assert 1 <= len(areas["features"]) <= 4 and areas["features"][0]["properties"]["tiles"] >= 2


def test_classify_hits_carry_the_label_column(client, world, bundle):  # noqa: F811
    """As the CLI's classify exports: ``label`` is a property of its own ("positive" for a tile
    labelled so, else null), not buried in ``extra``."""
    labels = _labels(world, bundle).to_geojson()
    positives = {f["id"] for f in labels["features"] if f["properties"]["label"] == "positive"}
    doc = client.post("/api/classify", json={"labels": labels, "threshold": 0.5}).json()
    props = {f["id"]: f["properties"] for f in doc["features"]}
    assert props and all("label" in p for p in props.values())
    assert {i for i, p in props.items() if p["label"] == "positive"} == positives & set(props)
    assert all(p["label"] is None for i, p in props.items() if i not in positives)
    assert all("label" not in json.loads(p["extra"] or "{}") for p in props.values())


def test_bad_requests_are_one_line_400s(client, world, bundle):  # noqa: F811
    pid = world[1][0].id
    labels = _labels(world, bundle).to_geojson()
    neg_only = {**labels, "features": [f for f in labels["features"] if f["properties"]["label"] == "negative"]}
    contra = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": pid, "properties": {"label": "positive"}},
        {"type": "Feature", "id": pid, "properties": {"label": "negative"}}]}
    ring = [[10 + i * 1e-4, 45 + (i % 2) * 1e-4] for i in range(1500)]
    cases = [
        ({"positives": [{"point_id": pid}], "k": MAX_K + 1}, 400, "above the limit"),
        ({"positives": [{"point_id": pid}], "k": 10, "offset": MAX_K}, 400, "above the limit"),
        ({"positives": [{"point_id": str(uuid.UUID(int=7))}]}, 404, "is not in index"),
        ({"labels": neg_only}, 400, "no positive"),
        ({"labels": contra}, 400, "both positive and negative"),
        ({"labels": {"type": "Feature"}}, 400, "not a GeoJSON FeatureCollection"),
        ({"labels": {**labels, "rsir:model_id": "other-model", "features": [  # tiles of another model's index
            {**f, "id": str(uuid.UUID(int=9)), "properties": {"label": "positive"}} for f in labels["features"][:1]]}},
         404, "made on an index of model other-model"),
        ({"positives": [{"point_id": pid}], "polygon": {"type": "Polygon", "coordinates": [ring + ring[:1]]}},
         400, "vertices"),
        ({"positives": [{"point_id": str(uuid.UUID(int=i + 100))} for i in range(2001)]}, 400, "at most 2000"),
        ({"positives": [{"point_id": pid}], "strategy": "nope"}, 400, "unknown"),
        ({"positives": [{"nothing": 1}]}, 400, "unknown field 'nothing'"),
        ({"positives": [{}]}, 400, "neither point_id"),
        ({"positives": [{"point_id": pid, "lon": 10.0, "lat": 45.0}]}, 400, "both point_id and lon/lat"),
    ]
    for body, status, fragment in cases:
        _err(client.post("/api/query", json=body), status, fragment)
    r = client.post("/api/query", json={"positives": [{"point_id": pid}] * 2001, "k": 3})
    assert r.status_code == 200 and len(r.json()["features"]) == 3, r.text  # a repeated example counts once (README)
    many = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": str(uuid.UUID(int=i + 1)), "properties": {"label": "positive"}} for i in range(2001)]}
    _err(client.post("/api/labels", json={"labels": many}), 400, "at most")
    _err(client.post("/api/classify", json={"labels": labels, "max_hits": 20000}), 400, "max_hits")
    _err(client.post("/api/classify", json={"labels": labels, "threshold": 2}), 400, "threshold")
    json.dumps(labels)


def _scene_area(s: int) -> dict:
    """A GeoJSON polygon around scene ``s`` of the test world (and no other)."""
    w, e = 10.0 + s * 0.05 - 0.001, 10.0 + s * 0.05 + 0.049
    return {"type": "Polygon", "coordinates": [[[w, 44.99], [e, 44.99], [e, 45.2], [w, 45.2], [w, 44.99]]]}


def test_polygon_areas_filter_query_export_and_classify(client, world, bundle):  # noqa: F811
    pid = world[1][0].id
    labels = _labels(world, bundle).to_geojson()
    area = _scene_area(1)
    holed = {"type": "Feature", "properties": {}, "geometry": {  # the hole takes the scene's first 4 columns
        "type": "Polygon", "coordinates": area["coordinates"] + [[[10.0499, 44.995], [10.054, 44.995], [10.054, 45.1],
                                                                  [10.0499, 45.1], [10.0499, 44.995]]]}}
    outside_hole = {p.id for p in world[1] if p.payload["item_id"] == "scene-1" and p.payload["location"]["lon"] > 10.054}
    for poly in (area, {"type": "MultiPolygon", "coordinates": [area["coordinates"]]}, holed):
        r = client.post("/api/query", json={"positives": [{"point_id": pid}], "k": 20, "per_item": 0, "polygon": poly})
        assert r.status_code == 200, r.text
        feats = r.json()["features"]
        assert feats and {f["properties"]["item_id"] for f in feats} == {"scene-1"}
        if poly is holed:
            assert {f["id"] for f in feats} <= outside_hole
    r = client.post("/api/query/export", json={"positives": [{"point_id": pid}], "k": 5, "per_item": 0,
                                               "polygon": area, "format": "geojson"})
    assert r.status_code == 200 and {f["properties"]["item_id"] for f in r.json()["features"]} == {"scene-1"}
    doc = client.post("/api/classify", json={"labels": labels, "polygon": area}).json()
    assert doc["summary"]["scored"] == sum(p.payload["item_id"] == "scene-1" for p in world[1])
    ring = [[10 + i * 1e-5, 45 + (i % 2) * 1e-5] for i in range(1200)]
    big = {"type": "MultiPolygon", "coordinates": [[ring[:600] + ring[:1]], [ring[600:] + ring[600:601]]]}
    _err(client.post("/api/query", json={"positives": [{"point_id": pid}], "polygon": big}), 400, "vertices")
    _err(client.get("/api/search", params={"point_id": pid, "polygon": json.dumps(big)}), 400, "vertices")


def test_request_mistakes_are_named_not_ignored(client, world, bundle):  # noqa: F811
    pid = world[1][0].id
    r = client.post("/api/query", json={"positives": [{"point_id": pid}], "bbx": [10, 45, 10.1, 45.1]})
    assert r.status_code == 422 and "bbx" in r.json()["detail"]
    assert client.post("/api/query", json={"positives": [{"point_id": pid}], "k": True}).status_code == 422
    assert client.post("/api/search", json={"point_id": pid, "kk": 3}).status_code == 422
    labels = _labels(world, bundle).to_geojson()
    assert client.post("/api/classify", json={"labels": labels, "format": "csv"}).status_code == 422
    deep = '{"positives":' + "[" * 100_000 + "]" * 100_000 + "}"
    r = client.post("/api/query", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"]
    # numbers as text, as for k
    a = client.post("/api/query", json={"positives": [{"point_id": pid}], "k": 12, "per_item": "2"}).json()
    items = [f["properties"]["item_id"] for f in a["features"]]
    assert max(items.count(i) for i in items) <= 2
    # the library's messages name request fields, not command-line options
    for body, fragment in (({"positives": [{"point_id": pid}], "mmr": 3}, "e.g. mmr 0.5"),
                           ({}, "positives ({point_id} or {lon, lat})"),
                           ({"positives": [{"point_id": pid}], "strategy": "discover"}, "add negatives")):
        r = client.post("/api/query", json=body)
        assert r.status_code == 400 and fragment in r.json()["detail"] and " --" not in r.json()["detail"], r.text


def test_classify_large_holdout_is_cut_not_a_500(client, world, bundle):  # noqa: F811
    labels = _labels(world, bundle, 4, 2).to_geojson()
    for holdout in (0.8, 0.99):
        r = client.post("/api/classify", json={"labels": labels, "holdout": holdout})
        assert r.status_code == 200, r.text
        assert r.json()["summary"]["holdout"] == 4  # 6 labels: 2 of each kind left to fit


def test_booleans_numbers_and_example_fields_are_checked(client, world, bundle):  # noqa: F811
    pid = world[1][0].id
    labels = _labels(world, bundle).to_geojson()
    for path, body in (("/api/classify", {"labels": labels, "max_hits": True}),
                       ("/api/classify", {"labels": labels, "threshold": True}),
                       ("/api/classify", {"labels": labels, "dissolve": 1}),
                       ("/api/query", {"positives": [{"point_id": pid}], "expand": True}),
                       ("/api/query", {"positives": [{"point_id": pid}], "mmr": False}),
                       ("/api/query", {"positives": [{"point_id": pid}], "include_query": "yes"}),
                       ("/api/search", {"point_id": pid, "k": True})):
        r = client.post(path, json=body)
        assert r.status_code == 422, (path, body, r.text)
    r = client.post("/api/query", json={"positives": [{"point_id": pid, "extra": 1}]})
    assert r.status_code == 400 and "'extra'" in r.json()["detail"]
    r = client.post("/api/query", json={"positives": [{"point_id": pid}], "exclude_within_m": -5})
    assert r.status_code == 400 and "exclude_within_m" in r.json()["detail"], r.text
    # the export names its file (and the FlatGeobuf layer) as asked
    import pyogrio

    r = client.post("/api/query/export", json={"positives": [{"point_id": pid}], "k": 3, "format": "fgb",
                                               "name": "my_hits"})
    assert r.status_code == 200 and "my_hits.fgb" in r.headers["content-disposition"]
    path = Path(tempfile.mkdtemp()) / "x.fgb"
    path.write_bytes(r.content)
    assert [n for n, _ in pyogrio.list_layers(path)] == ["my_hits"]
    assert client.post("/api/query/export", json={"positives": [{"point_id": pid}], "name": "../x"}).status_code == 422


def test_booleans_in_examples_and_per_item_and_export_names(client, world):  # noqa: F811
    pid = world[1][0].id
    for body in ({"positives": [{"lon": True, "lat": 45.0}]}, {"positives": [{"point_id": pid}], "per_item": True}):
        r = client.post("/api/query", json=body)
        assert r.status_code in (400, 422), (body, r.text)
    r = client.post("/api/query/export", json={"positives": [{"point_id": pid}], "k": 2, "name": "x.geojson"})
    assert r.status_code == 200 and 'filename="x.geojson"' in r.headers["content-disposition"]


def test_answers_name_the_per_scene_cap_they_applied(client, world):  # noqa: F811
    """The page explains results out of distance order by the per-scene cap, from the answer's
    ``per_scene`` (not a copy of the service's setting): search and query say the cap they applied,
    and no cap when asked for none; the hits keep to it."""
    from rsir_stac.search import AUTO_PER_ITEM

    pid = world[1][3].id
    got = client.get("/api/search", params={"point_id": pid, "k": 12}).json()
    items = [f["properties"]["item_id"] for f in got["features"]]
    assert got["per_scene"] == AUTO_PER_ITEM and max(items.count(i) for i in items) <= AUTO_PER_ITEM
    q = client.post("/api/query", json={"positives": [{"point_id": pid}], "k": 12}).json()
    assert q["per_scene"] == AUTO_PER_ITEM
    assert client.post("/api/query", json={"positives": [{"point_id": pid}], "k": 12, "per_item": 0}).json()["per_scene"] is None
    assert client.post("/api/query", json={"positives": [{"point_id": pid}], "k": 12, "per_item": 2}).json()["per_scene"] == 2
