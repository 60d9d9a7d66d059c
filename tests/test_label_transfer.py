"""Label files made before `rsir-stac reindex` work on the new index: each label is matched to the
tile it named (same item, asset, grid window and tiling), by item or, failing that, by footprint.

Real GeoTIFFs made here, the shipped model and a second real bundle (the shipped network with an
8-d PCA reducer), the real Qdrant Edge engine, real `reindex`, `search`, `classify` and the HTTP API.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import PointNotFoundError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.labels import LabelSet, make_labels, merge, read_labels, write_labels
from rsir_stac.reindex import reindex
from rsir_stac.search import Index
from tests.conftest import make_geotiff
from tests.test_reindex import new_bundle, shipped  # noqa: F401 - fixtures: the shipped model and an 8-d PCA one


@pytest.fixture(scope="module")
def indexes(shipped, new_bundle, tmp_path_factory):
    """(old index, reindexed index, index of scenes a and b only with the new model, scene paths).
    Scenes a and b are one place on two dates (a time series: the same tiles' footprints)."""
    root = tmp_path_factory.mktemp("labels")
    d = root / "scenes"
    d.mkdir()
    scenes = [
        make_geotiff(d / "a.tif", width=512, height=256, res=0.3, seed=1, datetime_tag="2021:06:01 10:00:00"),
        make_geotiff(d / "b.tif", width=512, height=256, res=0.3, seed=2, datetime_tag="2022:06:01 10:00:00"),
        make_geotiff(d / "c.tif", width=512, height=256, crs="EPSG:3857", res=0.3,
                     origin=(-10620000.0, 3480000.0), seed=3),
    ]
    old, new, part = root / "old", root / "new", root / "part"
    assert ingest([str(s) for s in scenes], index=str(old), model=shipped, options=IngestOptions()).ok
    assert reindex(str(old), str(new), model=new_bundle).ok
    assert ingest([str(s) for s in scenes[:2]], index=str(part), model=new_bundle, options=IngestOptions()).ok
    return old, new, part, scenes


def _tiles(index, bundle) -> dict:
    """{point id: payload} of every tile."""
    with Index.open(str(index), model=bundle) as idx:
        return {p.id: p.payload for p in idx.store.iter_points(with_vectors=False)}


def _key(payload: dict) -> tuple:
    g = payload["grid"]
    return payload["item_id"], payload["asset"], g["col_off"], g["row_off"], g["width"], g["height"]


def _old_labels(old, shipped, tmp_path, keep=("item_id", "collection", "datetime")) -> tuple:
    """A label file of the old index: scene a's tiles positive, scene b's first tile negative (same
    place as a's, a year later) and scene c's first tile negative."""
    with Index.open(str(old), model=shipped) as idx:
        hits = idx.store.retrieve([p.id for p in idx.store.iter_points(with_vectors=False)])
    by_scene = {}
    for h in hits:
        by_scene.setdefault(h.payload["href"].rsplit("/", 1)[-1], []).append(h)
    for v in by_scene.values():
        v.sort(key=lambda h: h.payload["grid"]["col_off"])
    pos = by_scene["a.tif"]
    neg = [by_scene["b.tif"][0], by_scene["c.tif"][0]]
    labels = merge(make_labels(pos, "positive", model_id=shipped.model_id, keep=keep),
                   make_labels(neg, "negative", model_id=shipped.model_id, keep=keep))
    path = write_labels(labels, tmp_path / "old-labels.geojson")
    want = {_key(h.payload): lb for h, lb in zip(pos + neg, labels.labels)}
    return path, want


@pytest.mark.parametrize("keep", [("item_id", "collection", "datetime"), ()], ids=["by-item", "by-footprint"])
def test_labels_made_before_a_reindex_name_the_same_tiles_in_the_new_index(indexes, shipped, new_bundle, tmp_path,
                                                                           keep):
    old, new, _, _ = indexes
    path, want = _old_labels(old, shipped, tmp_path, keep)
    new_tiles = _tiles(new, new_bundle)
    with Index.open(str(new), model=new_bundle) as idx:
        here = idx.labels_here(read_labels(path))
    assert here.model_id == new_bundle.model_id and len(here) == len(want) == 4
    for lb in here.labels:
        assert lb.point_id in new_tiles, lb.point_id
        old_lb = want[_key(new_tiles[lb.point_id])]  # the same item, asset and grid window
        assert (lb.label, lb.note, lb.geometry) == (old_lb.label, old_lb.note, old_lb.geometry)
        assert lb.point_id != old_lb.point_id


def test_search_classify_and_the_api_take_labels_made_before_a_reindex(indexes, shipped, new_bundle, tmp_path):
    old, new, _, _ = indexes
    path, want = _old_labels(old, shipped, tmp_path)
    new_tiles = _tiles(new, new_bundle)
    positives = {pid for pid, p in new_tiles.items() if want.get(_key(p)) and want[_key(p)].positive}
    assert len(positives) == 2
    r = CliRunner().invoke(main, ["search", "--index", str(new), "--model", new_bundle.path, "--labels", str(path),
                                  "--include-query", "-k", "6", "--format", "geojson"])
    assert r.exit_code == 0, r.output
    ids = [f["id"] for f in json.loads(r.stdout)["features"]]
    assert positives <= set(ids) and set(ids) <= set(new_tiles)

    from rsir_stac.classify import classify

    with Index.open(str(new), model=new_bundle) as idx:
        report = classify(idx, read_labels(path), holdout=0, background=0)
    assert positives <= {h.id for h in report.hits}

    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    doc = json.loads(path.read_text())
    with Index.open(str(new), model=new_bundle) as idx, \
            TestClient(create_app(idx), base_url="http://127.0.0.1:8000") as client:
        resp = client.post("/api/labels", json={"labels": doc})
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["rsir:model_id"] == new_bundle.model_id
    assert {f["id"] for f in got["features"] if f["properties"]["label"] == "positive"} == positives


def test_labels_of_tiles_the_new_index_lacks_are_refused_in_one_line(indexes, shipped, new_bundle, tmp_path):
    old, _, part, _ = indexes  # part: scenes a and b only
    path, _ = _old_labels(old, shipped, tmp_path)
    with Index.open(str(part), model=new_bundle) as idx, pytest.raises(PointNotFoundError) as err:
        idx.labels_here(read_labels(path))
    msg = str(err.value)
    assert "1 of 4 labels" in msg and f"made on an index of model {shipped.model_id}" in msg, msg
    assert f"holds model {new_bundle.model_id}" in msg and "ingest their sources" in msg, msg
    r = CliRunner().invoke(main, ["search", "--index", str(part), "--model", new_bundle.path, "--labels", str(path)])
    assert r.exit_code != 0 and "1 of 4 labels" in r.output and "Traceback" not in r.output, r.output


def test_labels_without_their_model_are_matched_by_id_only(indexes, shipped, new_bundle, tmp_path):
    """A label file that does not say its model cannot be moved to another model's ids: refused as
    labels of another index, as before."""
    old, new, _, _ = indexes
    path, _ = _old_labels(old, shipped, tmp_path)
    doc = json.loads(path.read_text())
    doc.pop("rsir:model_id")
    path.write_text(json.dumps(doc))
    with Index.open(str(new), model=new_bundle) as idx, pytest.raises(PointNotFoundError) as err:
        idx.labels_here(read_labels(path))
    assert "(and 3 more) is not in" in str(err.value) and "the labels come from another index" in str(err.value)
    # the same file on the index it was made on is taken as it is
    with Index.open(str(old), model=shipped) as idx:
        assert [lb.point_id for lb in idx.labels_here(read_labels(path)).labels] == [f["id"] for f in doc["features"]]


def test_a_label_set_of_this_index_is_unchanged(indexes, shipped, tmp_path):
    old, _, _, _ = indexes
    path, _ = _old_labels(old, shipped, tmp_path)
    labels = read_labels(path)
    with Index.open(str(old), model=shipped) as idx:
        assert idx.labels_here(labels) == LabelSet(labels.labels, shipped.model_id)


def test_search_results_saved_as_labels_carry_over_without_the_files_model(indexes, shipped, new_bundle, tmp_path):
    """Re-check: the README's recipe (`search --format geojson`, then set each feature's label) wrote no
    rsir:model_id, and such a file was refused on the reindexed index although every feature says its
    model_id; a GIS saving the file drops the member too."""
    old, new, _, scenes = indexes
    with Index.open(str(old), model=shipped) as idx:
        pid = next(p.id for p in idx.store.iter_points(with_vectors=False) if p.payload["href"].endswith("c.tif"))
    r = CliRunner().invoke(main, ["search", "--index", str(old), "--model", shipped.path, "--point-id", pid,
                                  "--include-query", "-k", "3", "--format", "geojson"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    doc.pop("rsir:model_id", None)
    for f in doc["features"]:
        f["properties"]["label"] = "positive"
    path = tmp_path / "from-search.geojson"
    path.write_text(json.dumps(doc))
    new_tiles = _tiles(new, new_bundle)
    with Index.open(str(new), model=new_bundle) as idx:
        here = idx.labels_here(read_labels(path))
    assert len(here) == len(doc["features"]) and all(lb.point_id in new_tiles for lb in here.labels)


def test_two_labels_of_one_tile_are_kept_once_and_said(indexes, shipped, new_bundle, tmp_path, caplog):
    """Re-check P2: a file of another model naming one tile twice (by this index's id and by the other
    model's, one label) loaded as one label without a word; the API's model_match counted 1 by id and
    0 by item for its 2 features.  Each label is counted now (by_id 1, by_item 1) and the two are said
    to name one tile (same_tile), by the API and by a warning of search and classify."""
    old, new, _, _ = indexes
    path, want = _old_labels(old, shipped, tmp_path)
    doc = json.loads(path.read_text())
    first = doc["features"][0]   # scene a's first tile, positive, by its id in the old index
    new_id = next(pid for pid, p in _tiles(new, new_bundle).items() if _key(p) == _key_of(old, shipped, first["id"]))
    here = json.loads(json.dumps(first))
    here["id"] = here["properties"]["point_id"] = new_id
    doc["features"] = [here, first]
    path.write_text(json.dumps(doc))
    with Index.open(str(new), model=new_bundle) as idx:
        labels = idx.labels_here(read_labels(path))
    assert [lb.point_id for lb in labels.labels] == [new_id]
    assert labels.matched == ((new_id, new_id), (first["id"], new_id))
    said = f"points {new_id} and {first['id']} are one tile of this index (point {new_id}), labelled positive " \
           "each time; it is kept once"
    for args in (["search", "-k", "3"], ["classify", "--out", str(tmp_path / "hits.csv")]):
        caplog.clear()
        r = CliRunner().invoke(main, [args[0], "--index", str(new), "--model", new_bundle.path, "--labels", str(path),
                                      *args[1:]])
        assert r.exit_code == 0, r.output
        warned = [rec.getMessage() for rec in caplog.records if "are one tile of this index" in rec.getMessage()]
        assert warned == [f"label set: {said}"], (args[0], warned)

    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    with Index.open(str(new), model=new_bundle) as idx, \
            TestClient(create_app(idx), base_url="http://127.0.0.1:8000") as client:
        resp = client.post("/api/labels", json={"labels": doc})
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert [f["id"] for f in got["features"]] == [new_id]
    assert got["model_match"] == {"model_ids": [shipped.model_id], "model_id": new_bundle.model_id, "by_id": 1,
                                  "by_item": 1, "by_footprint": 0, "same_tile": {"labels": 2, "tiles": 1}}


def _key_of(index, bundle, pid: str) -> tuple:
    with Index.open(str(index), model=bundle) as idx:
        return _key(idx.store.retrieve([pid])[0].payload)
