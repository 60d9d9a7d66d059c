"""The analyst's loop: labels, multi-example search through Index, classify, exports.

A real index (Qdrant Edge, and qdrant-client ``:memory:`` for congruence) of
synthetic tiles with the shipped model's id: 8 scenes of 10×6 adjacent tiles;
a compact cluster of "target" vectors sits in two blocks of the scenes, every
other tile is background.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import InputError, PointNotFoundError, SourceNotFoundError
from rsir_stac.labels import LabelSet, make_labels, read_labels, write_labels
from rsir_stac.search import Example, Index
from rsir_stac.store import Point, SearchFilter, open_store
from tests.conftest import index_of_points

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

SCENES, COLS, ROWS = 8, 10, 6
STEP = 0.001  # degrees per tile


def _points(dim: int, model_id: str) -> tuple[list[Point], set[str]]:
    rng = np.random.default_rng(3)
    target_dir = rng.normal(size=dim)
    target_dir /= np.linalg.norm(target_dir)
    pts, targets = [], set()
    for s in range(SCENES):
        lon0, lat0 = 10.0 + s * 0.05, 45.0
        for r in range(ROWS):
            for c in range(COLS):
                is_target = (s in (1, 4)) and 2 <= c <= 5 and 1 <= r <= 3
                v = rng.normal(scale=0.3, size=dim) + (2.0 * target_dir if is_target else 0.0)
                w, so = lon0 + c * STEP, lat0 + r * STEP
                e, n = w + STEP, so + STEP
                pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"t/{s}/{r}/{c}"))
                payload = {
                    "item_id": f"scene-{s}", "collection": "demo", "asset": "visual",
                    "href": f"/data/scene-{s}.tif", "crs": "EPSG:4326",
                    "window": {"col_off": c * 256, "row_off": r * 256, "width": 256, "height": 256},
                    "bbox": [w, so, e, n], "location": {"lon": (w + e) / 2, "lat": (so + n) / 2},
                    "corners": [{"lon": w, "lat": n}, {"lon": e, "lat": n}, {"lon": e, "lat": so}, {"lon": w, "lat": so}],
                    "datetime": "2020-06-01T00:00:00Z", "datetime_epoch": 1590969600.0, "gsd": 0.3,
                    "model_id": model_id,
                }
                pts.append(Point(pid, v.astype(np.float32), payload))
                if is_target:
                    targets.add(pid)
    return pts, targets


@pytest.fixture(scope="module")
def bundle(shipped_bundle):
    return shipped_bundle


@pytest.fixture(scope="module")
def world(bundle, tmp_path_factory):
    pts, targets = _points(bundle.dim, bundle.model_id)
    return index_of_points(tmp_path_factory.mktemp("an") / "index", pts, bundle), pts, targets


@pytest.fixture()
def index(world, bundle):
    with Index.open(str(world[0]), model=bundle) as idx:
        yield idx


@pytest.fixture(scope="module")
def mem_index(world, bundle):
    store = open_store(qdrant_url=":memory:")
    store.ensure_collection(bundle.dim, bundle.model_id)
    store.upsert(world[1])
    idx = Index(store, bundle)
    yield idx
    idx.close()


def _labels(world, bundle, npos=8, nneg=8) -> LabelSet:
    pts, targets = world[1], world[2]
    pos = [p for p in pts if p.id in targets][:npos]
    neg = [p for p in pts if p.id not in targets][::37][:nneg]
    hit = lambda p: type("H", (), {"id": p.id, "payload": p.payload})  # noqa: E731 - a record with id+payload
    a = make_labels([hit(p) for p in pos], "positive", model_id=bundle.model_id, note="target")
    b = make_labels([hit(p) for p in neg], "negative", model_id=bundle.model_id)
    return LabelSet(a.labels + b.labels, bundle.model_id)


# ----------------------------------------------------------------------------------- labels


def test_labels_round_trip(world, bundle, tmp_path):
    labels = _labels(world, bundle)
    path = write_labels(labels, tmp_path / "labels.geojson")
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 16
    f0 = doc["features"][0]
    assert f0["properties"]["label"] == "positive" and f0["properties"]["note"] == "target"
    assert f0["geometry"]["type"] == "Polygon" and len(f0["geometry"]["coordinates"][0]) == 5
    back = read_labels(path)
    assert back == labels and len(back.positives) == 8 and len(back.negatives) == 8


@pytest.mark.parametrize("doc, msg", [
    ("not json at all", "is not GeoJSON"),
    ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"label": "positive"}}]},
     "has no point id"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "abc", "properties": {"label": "positive"}}]},
     "is not a tile id"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": str(uuid.UUID(int=1)), "properties": {"label": "maybe"}}]}, "use \"positive\""),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": str(uuid.UUID(int=1)), "properties": {"label": "positive"}},
        {"type": "Feature", "id": str(uuid.UUID(int=1)), "properties": {"label": "negative"}}]},
     "both positive and negative"),
])
def test_bad_label_files(tmp_path, doc, msg):
    path = tmp_path / "bad.geojson"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(InputError, match=msg):
        read_labels(path)
    with pytest.raises(SourceNotFoundError):
        read_labels(tmp_path / "missing.geojson")


def test_labels_without_positive_other_index_or_model(index, world, bundle):
    only_neg = LabelSet(tuple(lb for lb in _labels(world, bundle).labels if not lb.positive), bundle.model_id)
    with pytest.raises(InputError, match="no positive"):
        index.search(labels=only_neg)
    foreign = make_labels([type("H", (), {"id": str(uuid.UUID(int=5)), "payload": {}})], "positive")
    with pytest.raises(PointNotFoundError, match="another index"):
        index.search(labels=foreign)
    other_model = LabelSet(foreign.labels, "some-other-model")  # tiles of an index of another model, not here
    with pytest.raises(PointNotFoundError, match="made on an index of model some-other-model"):
        index.search(labels=other_model)
    # ids decide: a file that names another model but this index's tiles (point ids include the model) is taken
    mislabelled = LabelSet(_labels(world, bundle).labels, "some-other-model")
    assert index.search(labels=mislabelled).hits
    pid = world[1][0].id
    with pytest.raises(InputError, match=f"the positive example point {pid} and the negative example point {pid} "
                                         "are the same tile; keep one"):
        index.search(point_id=pid, negatives=[Example("point", pid)])
    # new-user trial (thirty-fifth session): two locations on one tile named only the tile; the same picture
    # as a positive and a negative was searched (every score < 0, the tiles most unlike both) without a word
    lon, lat = world[1][0].payload["location"]["lon"], world[1][0].payload["location"]["lat"]
    with pytest.raises(InputError, match=rf"location \({lon:g}, {lat:g}\) and the negative example location "
                                         rf"\({lon + 1e-4:g}, {lat:g}\) are the same tile, both stored tile {pid}"):
        index.search(at=(lon, lat), negatives=[Example("location", (lon + 1e-4, lat))])
    px = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=r"positive example image 1 \(of that side's examples\) and the negative "
                                         r"example image 1 \(of that side's examples\) are the same picture"):
        index.search(pixels=px, negatives=[Example("pixels", px.copy())])
    with pytest.raises(InputError, match=f"positive example image 1 .* and the negative example point {pid} are the "
                                         "same picture"):
        index.search(positives=[Example("vector", world[1][0].vector)], negatives=[Example("point", pid)])
    other = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert index.search(pixels=px, negatives=[Example("pixels", other)]).hits   # two pictures: searched


# ------------------------------------------------------------------------------- searching


@pytest.mark.parametrize("strategy", ["average", "best_score", "discover", "feedback"])
def test_labelled_search_same_in_both_engines(index, mem_index, world, bundle, strategy):
    labels = _labels(world, bundle, 5, 5)
    a = index.search(labels=labels, strategy=strategy, k=30, per_item=None)
    b = mem_index.search(labels=labels, strategy=strategy, k=30, per_item=None)
    assert [h.id for h in a.hits] == [h.id for h in b.hits]
    assert not set(labels.positives + labels.negatives) & {h.id for h in a.hits}  # examples left out
    targets = world[2]
    assert sum(h.id in targets for h in a.hits[:10]) >= 8  # the labelled class comes first


def test_default_caps_hits_per_scene(index, world):
    q = next(iter(world[2]))
    hits = index.search(point_id=q, k=12).hits
    items = [h.payload["item_id"] for h in hits]
    assert max(items.count(i) for i in items) <= 3
    plain = index.search(point_id=q, k=12, per_item=None).hits
    assert len({h.payload["item_id"] for h in plain}) <= len(set(items))  # the cap never loses scenes
    big = index.search(point_id=q, k=200).hits  # the default cap is soft: capped-out hits follow
    assert len(big) == 200 and [h.id for h in big[:12]] == [h.id for h in hits]
    assert len(index.search(point_id=q, k=200, per_item=3).hits) == 3 * SCENES


def test_examples_of_every_kind_and_exclusion(index, world):
    pts = world[1]
    p = pts[SCENES and 13]
    loc = p.payload["location"]
    res = index.search(positives=[Example("point", p.id), Example("location", (loc["lon"], loc["lat"]))],
                       negatives=[Example("point", pts[200].id)], k=10, exclude_within_m=150.0, per_item=None)
    # the place is the same stored tile as the point: one example (a repeat adds only weight and work)
    assert [(e.id, e.kind, e.positive) for e in res.examples] == [(p.id, "point", True),
                                                                 (pts[200].id, "point", False)]
    from rsir_stac.store.filters import haversine_m

    for h in res.hits:
        hl = h.payload["location"]
        assert haversine_m(loc["lon"], loc["lat"], hl["lon"], hl["lat"]) > 150.0


def test_exclusion_follows_the_examples_footprint(index, mem_index, world):
    """``exclude_within_m`` drops tiles whose centre is within that distance of the example's
    footprint, measured from its edges: a circle about its centre (radius + half-diagonal)
    also dropped the edge neighbours, whose centres lie half a tile beyond the edge."""
    from rsir_stac.store.filters import haversine_m

    pts = world[1]
    p = next(q for q in pts if q.payload["item_id"] == "scene-2" and q.payload["window"]["col_off"] == 3 * 256
             and q.payload["window"]["row_off"] == 2 * 256)
    w, so, e, n = p.payload["bbox"]

    def to_edge(q):  # metres from q's centre to p's footprint (nearest point of the lon/lat box)
        lon, lat = q.payload["location"]["lon"], q.payload["location"]["lat"]
        return haversine_m(lon, lat, min(max(lon, w), e), min(max(lat, so), n))

    half = haversine_m(w, so, w, so + (n - so) / 2)  # an edge neighbour's centre is this far from the edge
    for d in (0.8 * half, 1.2 * half):
        want = {q.id for q in pts if q.id != p.id and to_edge(q) > d}
        for idx in (index, mem_index):
            got = {h.id for h in idx.search(point_id=p.id, k=len(pts), per_item=None, exclude_within_m=d).hits}
            assert got == want, (d, len(got), len(want))
    edge_neighbours = {q.id for q in pts if abs(to_edge(q) - half) < 0.01 * half}
    assert len(edge_neighbours) >= 2  # north and south (east and west ones lie closer: cos 45°)


def test_an_exclusion_that_leaves_nothing_is_named(index, mem_index, world):
    """A search emptied by ``exclude_within_m`` said nothing about why (the filters matched tiles)."""
    pts = world[1]
    for idx in (index, mem_index):
        res = idx.search(point_id=pts[0].id, k=5, exclude_within_m=5e6)
        assert not res.hits
        assert any("--exclude-within" in n and "5,000,000 m" in n for n in res.notes), res.notes
        near = idx.search(point_id=pts[0].id, k=5, exclude_within_m=10.0)
        assert near.hits and not [n for n in near.notes if "exclude" in n]
    # an empty bbox is the filters' fault, not the exclusion's: no exclusion note
    from rsir_stac.store import SearchFilter

    res = index.search(point_id=pts[0].id, k=5, exclude_within_m=10.0, flt=SearchFilter(bbox=(0.0, 0.0, 0.001, 0.001)))
    assert not res.hits and not [n for n in res.notes if "exclude" in n]


def test_cli_names_an_exclusion_that_leaves_nothing(world, bundle):
    r = CliRunner().invoke(main, ["search", "--point-id", world[1][0].id, "--index", str(world[0]),
                                  "--exclude-within", "5000000"])
    assert r.exit_code == 0, r.output
    assert "no results (the notes below say why)" in r.stdout and "--exclude-within" in r.stderr


def test_query_expansion_adds_the_nearest_tiles_and_engines_agree(index, mem_index, world):
    q = next(iter(sorted(world[2])))
    plain = index.search(point_id=q, k=5, per_item=None).hits
    res = index.search(point_id=q, k=12, per_item=None, expand=3)
    assert res.expanded == tuple(h.id for h in plain[:3])  # the query's 3 nearest tiles, query left out
    assert q not in {h.id for h in res.hits}
    # the expanded search is the engine's average of the query and those tiles
    byid = {p.id: p for p in world[1]}
    pos = [Example("point", q)] + [Example("vector", byid[i].vector) for i in res.expanded]
    same = index.search(positives=pos, k=12, per_item=None)
    assert [h.id for h in res.hits] == [h.id for h in same.hits]
    other = mem_index.search(point_id=q, k=12, per_item=None, expand=3)
    assert other.expanded == res.expanded and [h.id for h in other.hits] == [h.id for h in res.hits]
    # a filter applies to the expansion too
    flt = SearchFilter(item_ids=(byid[q].payload["item_id"],))
    inside = index.search(point_id=q, k=5, per_item=None, expand=4, flt=flt)
    assert {byid[i].payload["item_id"] for i in inside.expanded} == {byid[q].payload["item_id"]}
    assert index.search(point_id=q, k=5, expand=0).expanded == ()


def test_query_expansion_with_negatives_ranks_the_expanded_tiles_by_score(index, mem_index, world):
    """Trial finding: with a negative example (best_score) the expanded tiles joined the positives
    as examples, each matched itself, and they came back as the top hits, tied at the self-match
    score.  Now each positive is the mean of itself and the neighbours nearest it."""
    ids = sorted(world[2])
    q, n = ids[0], ids[-1]
    neg = [Example("point", n)]
    res = index.search(point_id=q, negatives=neg, k=12, per_item=None, expand=3)
    assert res.strategy == "best_score" and len(res.expanded) == 3
    self_score = index.search(point_id=q, negatives=neg, k=1, per_item=None, include_query=True).hits[0].score
    assert all(h.score < self_score for h in res.hits), [h.score for h in res.hits]
    byid = {p.id: p for p in world[1]}
    mean = np.mean([byid[q].vector] + [byid[i].vector for i in res.expanded], axis=0)
    same = index.search(positives=[Example("vector", mean)], negatives=neg, k=13, per_item=None)
    assert [h.id for h in same.hits if h.id != q][:12] == [h.id for h in res.hits]
    other = mem_index.search(point_id=q, negatives=neg, k=12, per_item=None, expand=3)
    assert other.expanded == res.expanded and [h.id for h in other.hits] == [h.id for h in res.hits]


def test_expanded_positives_join_the_positive_they_lie_nearest():
    from rsir_stac.search import expanded_positives

    pos = [np.array([0.0, 0.0]), np.array([10.0, 0.0])]
    nb = [np.array([1.0, 0.0]), np.array([9.0, 2.0]), np.array([11.0, 0.0])]
    got = expanded_positives(pos, nb, "best_score")
    assert len(got) == 2
    np.testing.assert_allclose(got[0], [0.5, 0.0])
    np.testing.assert_allclose(got[1], [10.0, 2.0 / 3.0])
    (avg,) = expanded_positives(pos, nb, "average")
    np.testing.assert_allclose(avg, [6.2, 0.4])
    assert [p.tolist() for p in expanded_positives(pos, [], "best_score")] == [[0.0, 0.0], [10.0, 0.0]]


def test_repeated_examples_count_once_and_bound_the_exclusion_work(index, world, monkeypatch):
    """Security trial: 256 copies of one place with an exclusion held the service's store lock
    for ~6.5 s (one exclusion area, ~25 ms, built per copy).  Repeats are now one example, and an
    exclusion around more distinct footprints than the limit is refused before any is built."""
    import rsir_stac.search as search_mod

    ids = sorted(world[2])
    byid = {p.id: p for p in world[1]}
    loc = byid[ids[0]].payload["location"]
    here = (loc["lon"], loc["lat"])
    once = index.search(point_id=ids[0], k=5, per_item=None, exclude_within_m=10.0)
    many = index.search(positives=[Example("point", ids[0])] * 50 + [Example("location", here)] * 50, k=5,
                        per_item=None, exclude_within_m=10.0)
    assert len(many.examples) == 1
    assert [h.id for h in many.hits] == [h.id for h in once.hits]
    monkeypatch.setattr(search_mod, "MAX_EXCLUDED_FOOTPRINTS", 2)
    three = [Example("point", i) for i in ids[:3]]
    with pytest.raises(InputError, match="exclusion around 3 stored positive examples.*at most 2"):
        index.search(positives=three, k=5, exclude_within_m=10.0)
    assert index.search(positives=three, k=5).hits  # without the exclusion: no limit


def test_aeqd_pipelines_give_the_numbers_of_the_crs_transformers():
    import pyproj

    from rsir_stac.reproject import aeqd_transformers

    lon = np.array([-74.5, -70.0, 100.0, 179.9, -179.9, 0.0])
    lat = np.array([1.0, 30.0, -60.0, 89.9, -89.9, 0.0])
    for lon0, lat0 in ((-74.5, 1.0), (179.99, -60.0), (0.0, 89.99)):
        crs = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
        ref = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        to_aeqd, to_lonlat = aeqd_transformers(lon0, lat0)
        x, y = to_aeqd.transform(lon, lat)
        np.testing.assert_allclose(np.array([x, y]), np.array(ref.transform(lon, lat)), atol=1e-6)
        np.testing.assert_allclose(np.array(to_lonlat.transform(x, y)), np.array([lon, lat]), atol=1e-9)


@pytest.mark.parametrize("bad", [-1, 101, 2.5, True])
def test_query_expansion_bad_values(index, world, bad):
    with pytest.raises(InputError, match="query expansion"):
        index.search(point_id=next(iter(world[2])), expand=bad)


# --------------------------------------------------------------------------------- exports


def _stored_rings(pts):
    return {p.id: [[c["lon"], c["lat"]] for c in p.payload["corners"]] for p in pts}


def _same_footprint(geom, ring):
    """``geom`` (shapely) is the stored footprint ``ring``: the same vertices, exterior counter-clockwise (RFC 7946)."""
    coords = np.asarray(geom.exterior.coords)
    assert geom.exterior.is_ccw and len(coords) == len(ring) + 1
    np.testing.assert_allclose(sorted(map(tuple, coords[:-1])), sorted(map(tuple, ring)))


@pytest.mark.parametrize("ext", [".geojson", ".csv", ".fgb", ".parquet"])
def test_search_export_formats(index, world, tmp_path, ext):
    import geopandas as gpd
    import pandas as pd
    from shapely import wkt

    from rsir_stac.export import write_search

    q = next(iter(world[2]))
    res = index.search(point_id=q, k=50, per_item=None, with_payload=False)
    out = tmp_path / f"hits{ext}"
    assert write_search(index, res, out, with_vectors=True) == 50
    if ext == ".csv":
        df = pd.read_csv(out)
        geoms = [wkt.loads(g) for g in df["geometry"]]
    else:
        df = gpd.read_file(out) if ext != ".parquet" else gpd.read_parquet(out)
        df = df.sort_values("rank").reset_index(drop=True)  # FlatGeobuf stores features in spatial-index order
        geoms = list(df.geometry)
        if ext == ".fgb":  # a MultiPolygon layer (a footprint across 180 needs it): one part each here
            assert all(g.geom_type == "MultiPolygon" and len(g.geoms) == 1 for g in geoms)
            geoms = [g.geoms[0] for g in geoms]
    assert list(df["id"]) == [h.id for h in res.hits] and list(df["rank"]) == list(range(1, 51))
    np.testing.assert_allclose(df["distance"], [h.score for h in res.hits], rtol=1e-6)
    rings = _stored_rings(world[1])
    for pid, g in zip(df["id"], geoms):
        _same_footprint(g, rings[pid])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    if ext == ".geojson":  # RFC 7946: exterior rings counter-clockwise, as written (not as a reader fixes them)
        from shapely.geometry import LinearRing

        for f in json.loads(out.read_text())["features"]:
            assert LinearRing(f["geometry"]["coordinates"][0]).is_ccw


def test_export_refuses_unknown_extension_and_leaves_nothing(index, world, tmp_path):
    from rsir_stac.export import row_of, write_search, write_table

    res = index.search(point_id=world[1][0].id, k=5)
    with pytest.raises(InputError, match="no known format extension"):
        write_search(index, res, tmp_path / "hits.shp")

    def failing():
        yield [row_of(h) for h in res.hits]
        raise RuntimeError("disk full")

    for ext in (".geojson", ".parquet"):
        with pytest.raises(RuntimeError):
            write_table(failing(), tmp_path / f"half{ext}")
    assert list(tmp_path.iterdir()) == []


def test_whole_index_geoparquet_with_stac_collection(index, world, tmp_path):
    import duckdb
    import geopandas as gpd

    from rsir_stac.export import export_index

    out, stac = tmp_path / "tiles.parquet", tmp_path / "collection.json"
    res = export_index(index, out, stac_collection=stac)
    pts = world[1]
    assert res["rows"] == len(pts)
    gdf = gpd.read_parquet(out)
    assert gdf.crs is not None and gdf.crs.to_string() in ("OGC:CRS84", "EPSG:4326")
    vecs = {p.id: p.vector for p in pts}
    rings = _stored_rings(pts)
    for pid, g, emb in zip(gdf["id"], gdf.geometry, gdf["embedding"]):
        _same_footprint(g, rings[pid])
        np.testing.assert_allclose(emb, vecs[pid], rtol=1e-6)
    con = duckdb.connect()
    n, scenes, dim = con.execute(f"select count(*), count(distinct item_id), max(len(embedding)) "
                                 f"from read_parquet('{out}')").fetchone()
    assert (n, scenes, dim) == (len(pts), SCENES, index.bundle.dim)
    wkb = con.execute(f"select id, geometry from read_parquet('{out}') order by id limit 5").fetchall()
    from shapely import wkb as swkb

    for pid, blob in wkb:
        _same_footprint(swkb.loads(bytes(blob)), rings[pid])
    doc = json.loads(stac.read_text())
    assert doc["type"] == "Collection" and any("embeddings" in e for e in doc["stac_extensions"])
    assert doc["emb:dimensions"] == index.bundle.dim and doc["assets"]["embeddings"]["href"] == "./tiles.parquet"
    starts = [p.payload.get("datetime_epoch") for p in pts if p.payload.get("datetime_epoch") is not None]
    want = datetime.fromtimestamp(min(starts), timezone.utc).isoformat().replace("+00:00", "Z") if starts else None
    assert doc["extent"]["temporal"]["interval"][0][0] == want  # the tiles' own time, not the export's
    link = next(lk for lk in doc["links"] if lk["rel"] == "derived-from")
    mlm = json.loads((tmp_path / link["href"]).read_text())
    assert "similarity-search" in json.dumps(mlm)
    this = next(lk for lk in doc["links"] if lk["rel"] == "self")
    assert this["href"] == str(stac.resolve())  # STAC: the self link is absolute
    assert doc["emb:chip_layout"]["gsd_m"] == 0.3 and doc["summaries"]["gsd"] == {"minimum": 0.3, "maximum": 0.3}
    assert json.loads(pq_geo(out))["columns"]["geometry"]["geometry_types"] == ["Polygon"]  # what the rows are
    # a --stac path in a missing folder is refused before the table is written
    out2 = tmp_path / "again.parquet"
    with pytest.raises(InputError, match="--stac"):
        export_index(index, out2, stac_collection=tmp_path / "nodir" / "c.json")
    assert not out2.exists()
    # the embeddings Collection describes the 'embedding' column, which --no-vectors leaves out
    with pytest.raises(InputError, match="--no-vectors"):
        export_index(index, out2, stac_collection=tmp_path / "c2.json", with_vectors=False)
    assert not out2.exists() and not (tmp_path / "c2.json").exists()


def pq_geo(path) -> bytes:
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata[b"geo"]


def test_flatgeobuf_layer_is_named_after_the_file(index, world, tmp_path):
    import pyogrio

    from rsir_stac.export import write_search

    res = index.search(point_id=world[1][0].id, k=5)
    out = tmp_path / "hits.fgb"
    write_search(index, res, out)
    assert [name for name, _ in pyogrio.list_layers(out)] == ["hits"]
    first = out.read_bytes()
    write_search(index, res, out)
    assert out.read_bytes() == first  # the same run writes the same bytes


# -------------------------------------------------------------------------------- classify


def test_classify_finds_the_labelled_class(index, world, bundle):
    from rsir_stac.classify import classify
    from rsir_stac.dissolve import dissolve

    seen = []
    rep = classify(index, _labels(world, bundle), threshold=0.5, batch=100, progress=lambda d, t: seen.append((d, t)))
    targets = world[2]
    got = {h.id for h in rep.hits}
    assert rep.scored == len(world[1]) and seen[-1] == (len(world[1]), len(world[1]))
    assert len(got & targets) >= 0.9 * len(targets) and len(got - targets) <= 3
    assert rep.precision is not None and rep.recall is not None and rep.holdout >= 2
    probs = [h.score for h in rep.hits]
    assert probs == sorted(probs, reverse=True) and min(probs) >= 0.5
    areas = dissolve(rep.hits)
    assert sum(a["tiles"] for a in areas) == len(rep.hits)
    assert len(areas) <= 4  # two blocks of adjacent tiles (plus stray background hits)


def test_classify_keeps_the_analysts_labels(index, world, bundle):
    """A tile labelled negative is never a hit, one labelled positive always is (column label),
    even where the classifier disagrees: 3 of 6 negatives used to come back as hits."""
    from rsir_stac.classify import classify

    pts, targets = world[1], world[2]
    base = _labels(world, bundle)
    odd_neg = [p for p in pts if p.id in targets][20:23]  # target tiles the analyst calls negative
    odd_pos = [p for p in pts if p.id not in targets][5:6]  # a background tile called positive
    hit = lambda p: type("H", (), {"id": p.id, "payload": p.payload})  # noqa: E731
    extra = (make_labels([hit(p) for p in odd_neg], "negative", model_id=bundle.model_id).labels
             + make_labels([hit(p) for p in odd_pos], "positive", model_id=bundle.model_id).labels)
    plain = classify(index, base, threshold=0.5)
    assert {p.id for p in odd_neg} <= {h.id for h in plain.hits}  # the model calls them positive
    assert odd_pos[0].id not in {h.id for h in plain.hits}
    rep = classify(index, LabelSet(base.labels + extra, bundle.model_id), threshold=0.5)
    got = {h.id: h for h in rep.hits}
    assert not {p.id for p in odd_neg} & set(got) and rep.negatives_overruled >= 1
    assert odd_pos[0].id in got and got[odd_pos[0].id].payload["label"] == "positive"
    assert any("labels win" in n for n in rep.notes())
    assert all(h.payload["label"] in ("positive", None) for h in rep.hits)
    assert [h.score for h in rep.hits] == sorted((h.score for h in rep.hits), reverse=True)
    labelled = {lb.point_id for lb in base.labels + extra if lb.label == "positive"}
    strict = classify(index, LabelSet(base.labels + extra, bundle.model_id), threshold=0.9999)
    kept = [h for h in strict.hits if h.payload["label"] == "positive"]
    assert {h.id for h in kept} == labelled  # every labelled positive, whatever its probability
    assert strict.positives_kept == sum(h.score < 0.9999 for h in kept) >= 1
    capped = classify(index, LabelSet(base.labels + extra, bundle.model_id), threshold=0.5, max_hits=3)
    assert labelled <= {h.id for h in capped.hits}  # --max-hits keeps the labelled positives too


def test_classify_max_hits_counts_the_area_and_the_labelled_positives_it_adds(world, bundle, tmp_path):
    """--max-hits N writes the N most probable tiles plus the labelled positives beyond them: the summary
    used to call those rows "at p >= threshold" (above_threshold: N + them) and count none of them."""
    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    idx = str(world[0])

    def run(*extra):
        r = CliRunner().invoke(main, ["classify", "--labels", str(labels), "--index", idx, *extra])
        assert r.exit_code == 0, r.output
        return r.stdout.strip().splitlines()[-1]

    whole = json.loads(run("--out", str(tmp_path / "all.csv"), "--json"))
    capped = json.loads(run("--out", str(tmp_path / "cap.geojson"), "--max-hits", "3", "--json"))
    above = whole["hits"] - whole["positives_kept"]
    assert above > 3 and whole["above_threshold"] == capped["above_threshold"] == above  # whatever --max-hits
    assert whole["positives_past_max_hits"] == 0 and capped["max_hits"] == 3
    past = capped["positives_past_max_hits"]
    assert past >= 1 and capped["rows"] == capped["hits"] == 3 + past
    feats = json.loads((tmp_path / "cap.geojson").read_text())["features"]
    assert all(f["properties"]["label"] == "positive" for f in feats[3:])
    assert any("--max-hits 3" in n and f"{past} labelled positive" in n for n in capped["notes"])
    line = run("--out", str(tmp_path / "cap.csv"), "--max-hits", "3")
    assert f"{above} at p >= 0.5" in line and f"the 3 most probable + {past} labelled positives" in line, line


def test_dissolve_keeps_dates_apart():
    """The same ground seen at two dates gives one area per date, with its date, collection and items."""
    from rsir_stac.dissolve import dissolve
    from rsir_stac.store import SearchHit

    hits = []
    for year in (2018, 2020):
        for n, w in enumerate((10.0, 10.01)):  # two touching tiles per date
            hits.append(SearchHit(f"{year}-{n}", 0.9, {"bbox": [w, 0.0, w + 0.01, 0.01], "item_id": f"naip-{year}",
                                                        "datetime": f"{year}-07-01T00:00:00Z", "collection": "naip"}))
    rows = dissolve(hits)
    assert [(r["datetime"][:4], r["tiles"], r["items"]) for r in rows] == [("2018", 2, "naip-2018"),
                                                                          ("2020", 2, "naip-2020")]
    assert [r["id"] for r in rows] == ["area-1", "area-2"] and rows[0]["collection"] == "naip"


def test_dissolve_keeps_undated_scenes_apart():
    """Analyst trial: three NAIP years ingested without --datetime (no date) were dissolved into
    single areas mixing the years.  Undated tiles now merge within their own scene only."""
    from rsir_stac.dissolve import dissolve
    from rsir_stac.store import SearchHit

    hits = []
    for year in (2010, 2015, 2020):
        for n, w in enumerate((10.0, 10.01)):
            hits.append(SearchHit(f"{year}-{n}", 0.9, {"bbox": [w, 0.0, w + 0.01, 0.01], "item_id": f"naip-{year}",
                                                        "collection": "naip"}))
    rows = dissolve(hits)
    assert sorted((r["items"], r["tiles"]) for r in rows) == [("naip-2010", 2), ("naip-2015", 2), ("naip-2020", 2)]
    assert all(r["datetime"] is None and r["collection"] == "naip" for r in rows)


def test_dissolve_keeps_an_area_across_the_antimeridian_whole():
    """Touching tiles on both sides of 180 are one area (a MultiPolygon), each tile once."""
    import geopandas as gpd
    from shapely.geometry import shape

    from rsir_stac.dissolve import dissolve
    from rsir_stac.store import SearchHit

    edges = [179.95, 179.97, 179.99, -179.99, -179.97]  # the middle tile crosses 180
    hits = [SearchHit(f"t{n}", 0.9 - n / 100, {"bbox": [w, -16.5, e, -16.48]})
            for n, (w, e) in enumerate(zip(edges, edges[1:]))]
    hits.append(SearchHit("far", 0.5, {"bbox": [10.0, 0.0, 10.01, 0.01]}))
    rows = dissolve(hits)
    assert [r["tiles"] for r in rows] == [4, 1]
    whole = shape(rows[0]["geometry"])
    assert whole.geom_type == "MultiPolygon" and whole.is_valid
    assert sorted(round(g.bounds[0], 2) for g in whole.geoms) == [-180.0, 179.95]
    assert gpd.GeoSeries([whole], crs="OGC:CRS84").is_valid.all()


def test_classify_same_in_both_engines(index, mem_index, world, bundle):
    from rsir_stac.classify import classify

    labels = _labels(world, bundle)
    a, b = classify(index, labels, threshold=0.3), classify(mem_index, labels, threshold=0.3)
    assert [h.id for h in a.hits] == [h.id for h in b.hits] and a.precision == b.precision


def test_classify_with_positives_only_draws_background(index, world, bundle):
    from rsir_stac.classify import classify

    labels = LabelSet(tuple(lb for lb in _labels(world, bundle).labels if lb.positive), bundle.model_id)
    rep = classify(index, labels, threshold=0.5)
    assert rep.background >= 50 and rep.negatives == 0
    assert len({h.id for h in rep.hits} & world[2]) >= 0.8 * len(world[2])


def test_classify_in_an_area_without_tiles_says_so(index, world, bundle):
    """Labels outside the filtered area: nothing is scored, and the report says why
    rather than only printing the held-out labels' perfect scores."""
    from rsir_stac.classify import classify

    labels = LabelSet(tuple(lb for lb in _labels(world, bundle).labels if lb.positive), bundle.model_id)
    rep = classify(index, _labels(world, bundle), flt=SearchFilter(bbox=(100.0, 10.0, 101.0, 11.0)), background=0)
    assert rep.scored == 0 and rep.hits == ()
    assert rep.notes() and "no tile matches the filters" in rep.notes()[0]
    n = len(_labels(world, bundle).labels)
    assert rep.labels_outside == n and f"{n} of the {n} labelled tiles lie outside" in rep.notes()[1]
    full = classify(index, labels, threshold=0.5)
    assert full.scored > 0 and full.notes() == []


def test_classify_bad_threshold(index, world, bundle):
    from rsir_stac.classify import classify

    with pytest.raises(InputError, match="threshold"):
        classify(index, _labels(world, bundle), threshold=1.5)


# ------------------------------------------------------------------------------------- CLI


def test_cli_classify_search_export(world, bundle, tmp_path):
    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    idx = str(world[0])
    r = CliRunner().invoke(main, ["classify", "--labels", str(labels), "--index", idx, "--threshold", "0.5",
                                  "--out", str(tmp_path / "hits.geojson"), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    doc = json.loads((tmp_path / "hits.geojson").read_text())
    assert len(doc["features"]) == summary["hits"] > 0
    assert all(f["properties"]["probability"] >= 0.5 for f in doc["features"])
    r = CliRunner().invoke(main, ["classify", "--labels", str(labels), "--index", idx, "--dissolve",
                                  "--out", str(tmp_path / "areas.parquet")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "-k", "300",
                                  "--out", str(tmp_path / "hits.csv")])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "hits.csv").read_text().splitlines()) == 301
    r = CliRunner().invoke(main, ["export", "--index", idx, "--out", str(tmp_path / "all.fgb"), "--no-vectors"])
    assert r.exit_code == 0, r.output
    # the score column is named after what it holds (README, "Exports")
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "--strategy", "average",
                                  "--out", str(tmp_path / "avg.csv")])
    assert r.exit_code == 0, r.output
    # labels with negatives: the default (auto) strategy is best_score, a score
    assert (tmp_path / "hits.csv").read_text().split(",")[:3] == ["id", "rank", "score"]
    assert (tmp_path / "avg.csv").read_text().split(",")[:3] == ["id", "rank", "distance"]
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "--with-vectors"])
    assert r.exit_code == 2 and "give --out FILE" in r.output  # vectors only go into a file
    import geopandas as gpd

    areas = gpd.read_parquet(tmp_path / "areas.parquet")
    assert "max_probability" in areas.columns and all(g.exterior.is_ccw for g in areas.geometry)


def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_write(world, bundle, tmp_path):
    """New-user trial (thirty-fifth session): `--labels L --out L` replaced the hand-made labels with the
    results (exit 0), `--within A --out A` the area, and `export --stac` on `--out` the GeoParquet with
    its own description.  Each is now refused (exit 2) naming both options, and nothing changes on disk."""
    import os

    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [[[9, 44], [12, 44], [12, 46], [9, 46], [9, 44]]]}))
    os.link(labels, tmp_path / "hard.geojson")   # another name of the same file
    idx = str(world[0])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cases = [
        (["classify", "--labels", str(labels), "--out", str(labels)], "is the file read as --labels"),
        (["classify", "--labels", str(labels), "--out", str(tmp_path / "hard.geojson")], "is the file read as --labels"),
        (["classify", "--labels", str(labels), "--within", str(area), "--out", str(area)], "read as --within"),
        (["search", "--labels", str(labels), "--out", str(tmp_path / "." / "labels.geojson")], "read as --labels"),
        (["export", "--within", str(area), "--out", str(area)], "read as --within"),
        (["export", "--out", str(tmp_path / "x.parquet"), "--stac", str(tmp_path / "x.parquet")],
         "is the file --out writes too"),
        (["export", "--out", str(tmp_path / "x.parquet"),
          "--stac", str(tmp_path / f"{bundle.model_id}.mlm-item.json")], "is the file the model item copy writes too"),
    ]
    item = tmp_path / f"{bundle.model_id}.mlm-item.json"   # an area file that has the model item copy's name
    item.write_text(area.read_text())
    before[item.name] = item.read_bytes()
    cases.append((["export", "--within", str(item), "--out", str(tmp_path / "x.parquet"), "--stac",
                   str(tmp_path / "c.json")], "is the file read as --within; give --stac a path in another folder"))
    for args, said in cases:
        r = CliRunner().invoke(main, [*args, "--index", idx])
        assert r.exit_code == 2, (args, r.output)
        last = r.output.strip().splitlines()[-1]
        assert last.startswith("error: ") and said in last and "give --" in last, (args, last)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, args


def test_trial_messages_name_the_file_and_give_a_fix_that_works(world, bundle, tmp_path):
    """New-user trial (thirty-fifth session), each message before: an empty label file said "label set has
    no positive label"; with --mmr the note advised best_score, which --mmr refuses; --collection "" showed
    a Python tuple; --collection demo,other was taken as one name with no hint; a 359.9 degree box "spans
    360"; a label file that is not a FeatureCollection showed an extra "}"."""
    idx = str(world[0])
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    r = CliRunner().invoke(main, ["search", "--labels", str(empty), "--index", idx])
    assert r.exit_code == 2 and f"label file {empty} has no features" in r.output, r.output
    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "--mmr", "0.5", "-k", "3"])
    assert r.exit_code == 0 and "leave --mmr out to use it" in r.output, r.output
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "--collection", ""])
    last = r.output.strip().splitlines()[-1]
    assert r.exit_code == 2 and "('',)" not in last and "--collection sentinel-2-l2a" in last, last
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "--collection", "demo,demo"])
    assert "repeat it for each, e.g. --collection demo --collection demo" in r.output, r.output
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", idx, "--bbox", "10.1,45,10.0,45.1"])
    assert "spans 359.9 degrees" in r.output, r.output
    feature = tmp_path / "feature.geojson"
    feature.write_text('{"type": "Feature", "properties": {}, "geometry": null}')
    r = CliRunner().invoke(main, ["search", "--labels", str(feature), "--index", idx])
    assert r.exit_code == 2 and '"features": [...]} with one Feature' in r.output, r.output


def test_cli_search_expand(world, bundle, mem_index):
    q = sorted(world[2])[0]
    r = CliRunner().invoke(main, ["search", "--point-id", q, "--index", str(world[0]), "--expand", "3",
                                  "--per-item", "0", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    want = mem_index.search(point_id=q, per_item=None, expand=3)  # the same points in the other engine
    assert doc["query"]["expanded"] == list(want.expanded) and [h["id"] for h in doc["hits"]] == [h.id for h in want.hits]
    r = CliRunner().invoke(main, ["search", "--point-id", q, "--index", str(world[0]), "--expand", "-1"])
    assert r.exit_code == 2 and "--expand" in r.output


@pytest.mark.parametrize("args, msg", [
    (["search", "--labels", "{labels_bad}"], "is not GeoJSON"),
    (["search", "--point-id", str(uuid.UUID(int=9))], "is not in index"),
    (["search", "--point-id", "{pid}", "-k", "10001"], "above the limit"),
    (["search", "--point-id", "{pid}", "--out", "{tmp}/hits.shp"], "no known format extension"),
    (["export", "--out", "{tmp}/all.xlsx"], "no known format extension"),
    (["classify", "--labels", "{labels_neg}", "--out", "{tmp}/h.geojson"], "no positive"),
    (["search", "--labels", "{labels_contra}"], "both positive and negative"),
    (["classify", "--labels", "{labels_bad}", "--out", "{tmp}/h.geojson"], "is not GeoJSON"),
    (["classify", "--labels", "{labels_foreign}", "--out", "{tmp}/h.geojson"], "another index"),
    (["classify", "--labels", "{labels_model}", "--out", "{tmp}/h.geojson"], "some-other-model"),
    (["classify", "--labels", "{labels_contra}", "--out", "{tmp}/h.geojson"], "both positive and negative"),
    (["classify", "--labels", "{labels_model}", "--out", "{tmp}/h.shp"], "no known format extension"),
    (["classify", "--labels", "{labels_model}", "--threshold", "2", "--out", "{tmp}/h.geojson"], "threshold"),
])
def test_cli_bad_input_is_one_line(world, bundle, tmp_path, args, msg):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    neg = write_labels(LabelSet(tuple(lb for lb in _labels(world, bundle).labels if not lb.positive)),
                       tmp_path / "neg.geojson")
    pid = world[1][0].id
    contra = tmp_path / "contra.geojson"
    contra.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": pid, "properties": {"label": "positive"}},
        {"type": "Feature", "id": pid, "properties": {"label": "negative"}}]}))
    foreign = write_labels(make_labels([type("H", (), {"id": str(uuid.UUID(int=5)), "payload": {}})], "positive"),
                           tmp_path / "foreign.geojson")
    other_model = write_labels(LabelSet(LabelSet(_labels(world, bundle).labels).labels[:1] + read_labels(foreign).labels,
                                        "some-other-model"), tmp_path / "model.geojson")
    subs = {"{labels_bad}": str(bad), "{labels_neg}": str(neg), "{labels_contra}": str(contra), "{pid}": pid,
            "{labels_foreign}": str(foreign), "{labels_model}": str(other_model)}
    argv = [subs.get(a, a).replace("{tmp}", str(tmp_path)) for a in args] + ["--index", str(world[0])]
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err
    assert not list(tmp_path.glob("h*")) and not list(tmp_path.glob("all*")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".fgb"])
def test_an_empty_export_has_the_same_columns(index, world, tmp_path, ext):
    """No hit (a threshold nothing reaches, an empty area): the file still has every column a
    non-empty one has, so scripts reading item_id or probability do not break."""
    import geopandas as gpd
    import pandas as pd

    from rsir_stac.export import write_search

    read = (lambda p: pd.read_csv(p)) if ext == ".csv" else (gpd.read_parquet if ext == ".parquet" else gpd.read_file)
    full, empty = tmp_path / f"full{ext}", tmp_path / f"empty{ext}"
    res = index.search(point_id=world[1][0].id, k=5)
    write_search(index, res, full)
    none = index.search(point_id=world[1][0].id, k=5, flt=SearchFilter(bbox=(-10.0, -10.0, -9.0, -9.0)))
    assert not none.hits
    write_search(index, none, empty)
    a, b = read(full), read(empty)
    assert len(b) == 0 and set(a.columns) == set(b.columns) and "item_id" in b.columns
    from rsir_stac.store.files import copy_tree_sparse

    copy = tmp_path / "copy"
    copy_tree_sparse(world[0], copy)  # the fixture holds the index open
    r = CliRunner().invoke(main, ["classify", "--index", str(copy), "--labels", str(_labels_file(world, tmp_path)),
                                  "--bbox", "-10,-10,-9,-9", "--out", str(tmp_path / f"cls{ext}")])
    assert r.exit_code == 0, r.output  # labelled positives always come back: an area without them is empty
    c = read(tmp_path / f"cls{ext}")
    assert len(c) == 0 and {"item_id", "probability", "label"} <= set(c.columns)


def _labels_file(world, tmp_path):
    from rsir_stac.model.bundle import load_bundle

    return write_labels(_labels(world, load_bundle(None)), tmp_path / "labels.geojson")


@pytest.mark.parametrize("threshold,positives,overruled,kept,want", [
    (1.0, 1, 0, 1, "lower the threshold (e.g. 0.9) to find tiles like it"),
    (1.0, 3, 0, 2, "lower the threshold (e.g. 0.9) to find tiles like them"),
    (0.0, 2, 2, 0, "every tile scores at least 0, so none is left out: raise the threshold"),
    (0.5, 2, 1, 0, "label more tiles like it to teach it"),
    (0.5, 2, 1, 1, "label more tiles like them to teach it"),
])
def test_labels_win_advice_fits_the_threshold(threshold, positives, overruled, kept, want):
    """At a threshold of 1 no tile can reach it and at 0 every tile does, so the advice there is
    to change the threshold, not to label more (re-check of the page's find-all messages)."""
    from rsir_stac.classify import ClassifyReport

    rep = ClassifyReport(hits=(), scored=10, threshold=threshold, positives=positives, negatives=2, background=50,
                         precision=None, recall=None, holdout=0, seconds=0.0, negatives_overruled=overruled,
                         positives_kept=kept)
    (note,) = [n for n in rep.notes() if "labels win" in n]
    assert note.endswith(want) or want in note, note
    assert threshold not in (0.0, 1.0) or "label more" not in note, note


def test_an_exclusion_is_cut_only_as_finely_as_its_chords_need():
    """Re-check N2: every exclusion had ~1,400 vertices (edges cut to 1/512 of the extent), ~7 ms
    each under the service's store lock and a polygon each candidate is tested against.  At middle
    latitudes a small one now takes a few dozen; near a pole the cut is finer."""
    from rsir_stac.store.exclusion import footprint_exclusion

    def tile(lon, lat, d=0.002):
        return {"location": {"lon": lon, "lat": lat},
                "corners": [{"lon": x, "lat": min(y, 90.0)} for x, y in
                            ((lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d))]}

    def vertices(payload, m):
        return sum(len(r) for r in footprint_exclusion(payload, m)[1])

    assert vertices(tile(-74.5, -8.4), 10.0) < 100
    assert vertices(tile(-74.5, -8.4), 1000.0) < 300
    from shapely.geometry import box

    from rsir_stac.store.exclusion import _chord_step

    area = box(-5000.0, -5000.0, 5000.0, 5000.0)   # aeqd metres
    assert _chord_step(area, 89.9, 1.0) < _chord_step(area, 0.0, 1.0) / 10   # lines bend near a pole: finer


def test_a_stored_example_the_filters_leave_out_is_noted(index, world):
    """Re-check N4: the map page re-runs a place's search by the tile's id once the filters change;
    the note that the example is a tile the filters leave out (its imagery hidden on the page) was
    given for places only, so the page said nothing."""
    from rsir_stac.store import SearchFilter

    q = sorted(world[2])[0]
    res = index.search(point_id=q, k=5, flt=SearchFilter(collections=("other",)))
    assert any(n.startswith("the example tile is") and "(demo), which the filters leave out" in n
               for n in res.notes), res.notes
    same = index.search(point_id=q, k=5, flt=SearchFilter(collections=("demo",)))
    assert not any("which the filters leave out" in n for n in same.notes), same.notes


def test_expansion_is_left_out_when_the_first_search_cannot_rank(index, world):
    """Re-check N6: under the context strategy, where one pair gives every tile nearer the positive
    the score 0, the 'nearest' tiles averaged into the query were the first ids in sort order."""
    ids = sorted(world[2])
    neg = [Example("point", ids[-1])]
    res = index.search(point_id=ids[0], negatives=neg, strategy="context", expand=3, k=5, per_item=None)
    assert res.expanded == ()
    assert any(n.startswith("query expansion was left out: the first search could not rank") for n in res.notes)
    ranked = index.search(point_id=ids[0], negatives=neg, strategy="best_score", expand=3, k=5, per_item=None)
    assert len(ranked.expanded) == 3 and not any("expansion was left out" in n for n in ranked.notes)


def test_a_search_whose_every_match_is_an_example_says_so(index, world):
    """Re-check N8: with every matching tile given as an example, the search said 'no results
    (loosen the filters?)', though no filter was set."""
    from rsir_stac.store import SearchFilter

    item = world[1][0].payload["item_id"]
    scene = [Example("point", p.id) for p in world[1] if p.payload["item_id"] == item]
    res = index.search(positives=scene, k=5, flt=SearchFilter(item_ids=(item,)))
    assert not res.hits
    assert any(n.startswith(f"every tile that matches is one of the {len(scene)} examples") for n in res.notes), \
        res.notes


@pytest.mark.parametrize("args", [["info", "--index", "{tmp}/none"], ["export", "--index", "{tmp}/none", "--out",
                                  "{tmp}/x.parquet"], ["model-info", "--model", "{tmp}/none"]])
def test_a_command_that_always_prints_json_prints_one_document_when_it_fails(args, tmp_path):
    """New-user trial C7: `search --format json` and `classify --json` print {"ok": false, ...} on a failure,
    `export`, `info` and `model-info` (always JSON) printed nothing on stdout, so a script read no document."""
    r = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and str(tmp_path / "none") in doc["error"], doc
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_hits_file_with_some_rows_labelled_is_a_label_file(world, bundle, tmp_path, caplog):
    """New-user trial C6 (find all -> review -> refine): classify's hits file with a few rows labelled was
    refused as labels ("feature 2 has no label") until every other row was deleted.  Result rows (they have
    a rank) left unlabelled are now left out with a warning; a hits file with no row labelled is refused,
    and an unlabelled Feature that is not a result row still is."""
    import logging

    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    hits = tmp_path / "hits.geojson"
    r = CliRunner().invoke(main, ["classify", "--labels", str(labels), "--index", str(world[0]), "--out", str(hits)])
    assert r.exit_code == 0, r.output
    doc = json.loads(hits.read_text())
    feats = doc["features"]
    assert len(feats) > 4 and all("rank" in f["properties"] for f in feats)
    with pytest.raises(InputError, match=f"holds {len(feats)} search or classify results and none is labelled"):
        for f in feats:
            f["properties"]["label"] = None
        hits.write_text(json.dumps(doc))
        read_labels(hits)
    feats[0]["properties"]["label"], feats[3]["properties"]["label"] = "positive", "negative"
    hits.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="rsir_stac.labels"):
        got = read_labels(hits)
    assert got.positives == (feats[0]["id"],) and got.negatives == (feats[3]["id"],)
    assert any(f"{len(feats) - 2} result rows without a label were left out" in m for m in caplog.messages)
    r = CliRunner().invoke(main, ["classify", "--labels", str(hits), "--index", str(world[0]),
                                  "--out", str(tmp_path / "again.geojson")])
    assert r.exit_code == 0, r.output
    del feats[1]["properties"]["rank"]   # not a result row: its missing label is a mistake to name
    feats[1]["properties"]["label"] = None
    hits.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"feature 2 \(point .*\) has no label; .*or delete the feature"):
        read_labels(hits)


def test_an_area_drawn_the_long_way_round_that_finds_nothing_says_it_was_read_across_180(world, bundle, tmp_path):
    """New-user trial C4: a --within polygon with the corners of a working --bbox (-100..100) found nothing,
    read as crossing the antimeridian (RFC 7946), and the note said only to check where the area is."""
    area = tmp_path / "wide.geojson"
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [[[-100, 40], [100, 40], [100, 50], [-100, 50],
                                                                    [-100, 40]]]}))
    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", str(world[0]), "--within", str(area)])
    assert r.exit_code == 0, r.output
    assert "its edge from longitude -100 to 100 spans more than 180 degrees" in r.output, r.output
    assert "add a vertex on each edge that long (e.g. at longitude 0)" in r.output, r.output
    # classify and export say the same (re-check R5: "widen the area" and nothing)
    for args in (["classify", "--labels", str(labels), "--out", str(tmp_path / "h.geojson")],
                 ["export", "--out", str(tmp_path / "e.parquet")]):
        r = CliRunner().invoke(main, [*args, "--index", str(world[0]), "--within", str(area)])
        assert r.exit_code == 0 and "read as crossing the antimeridian" in r.stderr, (args, r.output)
    r = CliRunner().invoke(main, ["export", "--out", str(tmp_path / "e.parquet"), "--index", str(world[0]),
                                  "--bbox", "10.1,45,10.0,45.1"])
    assert r.exit_code == 0 and "spans 359.9 degrees" in r.stderr, r.output
    # following it: a vertex at 0 on both long edges, and the tiles (at 10 E, 45 N) are found
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [[[-100, 40], [0, 40], [100, 40], [100, 50], [0, 50],
                                                                    [-100, 50], [-100, 40]]]}))
    r = CliRunner().invoke(main, ["search", "--labels", str(labels), "--index", str(world[0]), "--within", str(area),
                                  "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"], r.output


@pytest.mark.parametrize("ext", ["csv", "parquet", "fgb"])
def test_a_hits_file_in_any_export_format_reads_back_as_labels_and_as_an_area(world, bundle, tmp_path, ext):
    """Re-check R2: a CSV hits file (it has a WKT `geometry` and a `crs` column, as every export does) given as
    --labels or --within ended in "unexpected ValueError: The truth value of a Series is ambiguous"; a
    GeoParquet one in GDAL's "libduckdb.so: cannot open shared object file"."""
    import geopandas as gpd

    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    hits = tmp_path / f"hits.{ext}"
    r = CliRunner().invoke(main, ["classify", "--labels", str(labels), "--index", str(world[0]), "--out", str(hits)])
    assert r.exit_code == 0, r.output
    if ext == "csv":   # a spreadsheet's edit: the label column set on two rows
        import pandas as pd

        table = pd.read_csv(hits)
        table["label"] = None   # the analyst's review starts from a clean column
        table.loc[0, "label"], table.loc[3, "label"] = "positive", "negative"
        table.to_csv(hits, index=False)
        ids = table["id"].tolist()
    else:
        g = gpd.read_parquet(hits) if ext == "parquet" else gpd.read_file(hits)
        g = g.sort_values("rank").reset_index(drop=True)
        g["label"] = None
        g["label"] = g["label"].astype(object)
        g.loc[0, "label"], g.loc[3, "label"] = "positive", "negative"
        g.to_parquet(hits) if ext == "parquet" else g.to_file(hits)
        ids = g["id"].tolist()
    got = read_labels(hits)
    assert got.positives == (ids[0],) and got.negatives == (ids[3],), got
    r = CliRunner().invoke(main, ["search", "--labels", str(hits), "--index", str(world[0]), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"], r.output
    r = CliRunner().invoke(main, ["search", "--point-id", ids[0], "--index", str(world[0]), "--within", str(hits),
                                  "--include-query", "--format", "json"])
    assert r.exit_code == 0, r.output
    found = {h["id"] for h in json.loads(r.stdout)["hits"]}
    assert ids[0] in found, r.output


def test_a_label_file_error_quotes_a_long_value_short_and_keeps_the_reason():
    """Page trial 4: a 20,000-character point_id filled the page's status with the id, and the API's
    400-character detail was cut before saying what was wrong with it."""
    from rsir_stac.labels import labels_from_geojson

    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "point_id": "a" * 20000, "label": "positive"}}]}
    with pytest.raises(InputError) as err:
        labels_from_geojson(doc, "labels")
    msg = str(err.value)
    assert len(msg) < 200 and msg.endswith("is not a tile id (a UUID); copy it from search results"), msg
    assert "(20,000 characters)" in msg, msg


def test_two_tiles_of_one_picture_as_positive_and_negative_are_refused(world, bundle, tmp_path):
    """Re-check R3: two stored tiles with the same pixels (a scene ingested twice, a copy), one a positive
    and the other a negative, were searched for what is unlike both, with no word."""
    first = world[1][0]
    twin = Point(str(uuid.uuid5(uuid.NAMESPACE_URL, "twin")), first.vector.copy(), {**first.payload, "item_id": "copy"})
    path = index_of_points(tmp_path / "twins", [first, twin, *world[1][1:20]], bundle)
    with Index.open(str(path), model=bundle) as idx:
        with pytest.raises(InputError, match=f"the positive example point {first.id} and the negative example point "
                                             f"{twin.id} are two tiles of the same picture"):
            idx.search(point_id=first.id, negatives=[Example("point", twin.id)])
        assert idx.search(point_id=first.id, negatives=[Example("point", world[1][1].id)]).hits
