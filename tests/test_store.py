"""Vector store tests on the real engines: Qdrant Edge and qdrant-client ``:memory:``.

Both engines must agree with each other and with a brute-force numpy search
that uses :func:`rsir_stac.store.filters.matches` as the filter reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsir_stac.errors import (
    IncompatibleIndexError,
    IndexInUseError,
    IndexNotFoundError,
    InputError,
    PointNotFoundError,
    SourceNotFoundError,
    StoreError,
)
from rsir_stac.store import IndexInfo, Point, SearchFilter, SearchHit, open_store
from rsir_stac.store.edge import EdgeStore
from rsir_stac.store.filters import (
    haversine_m,
    GeoArea,
    load_polygon,
    matches,
    parse_bbox,
    parse_datetime_range,
    parse_near,
)
from rsir_stac.store.server import ServerStore

# qdrant-client checks the server version in a background thread; against the
# unreachable test server its warning may surface during any later test
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

REPO = Path(__file__).resolve().parents[1]
DIM = 16
N = 300
MODEL = "test-model-v1"

# (lon0, lon1, lat0, lat1) of the regions tiles are scattered over
REGIONS = [(6.0, 12.0, 45.0, 48.0), (30.0, 32.5, 29.5, 31.5), (-122.5, -118.0, 34.0, 38.0)]
COLLECTIONS = ["sentinel-2-l2a", "landsat-c2-l2", None]


def make_points(n: int = N, seed: int = 7) -> list[Point]:
    """Realistic tile payloads; a few exact duplicate vectors exercise tie-breaking."""
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs[n - 5 :] = vecs[0]  # five copies of point 0's vector
    t0 = datetime(2018, 1, 1, tzinfo=timezone.utc)
    pts = []
    for i in range(n):
        lon0, lon1, lat0, lat1 = REGIONS[i % len(REGIONS)]
        lon, lat = float(rng.uniform(lon0, lon1)), float(rng.uniform(lat0, lat1))
        h = 0.01
        bbox = [lon - h, lat - h, lon + h, lat + h]
        coll = COLLECTIONS[int(rng.integers(0, 3))]
        if i % 17 == 0:
            dt = None
        else:
            dt = t0 + timedelta(seconds=float(rng.uniform(0, 6 * 365 * 86400)))
        payload = {
            "item_id": f"item-{i // 10:03d}",
            "collection": coll,
            "asset": "visual",
            "href": f"https://example.com/{i // 10}/visual.tif",
            "window": {"col_off": (i % 10) * 256, "row_off": 0, "width": 256, "height": 256},
            "crs": "EPSG:32632",
            "bbox": bbox,
            "location": {"lon": lon, "lat": lat},
            "corners": [{"lon": bbox[0], "lat": bbox[1]}, {"lon": bbox[2], "lat": bbox[1]},
                        {"lon": bbox[2], "lat": bbox[3]}, {"lon": bbox[0], "lat": bbox[3]}],
            "datetime": dt.isoformat().replace("+00:00", "Z") if dt else None,
            "datetime_epoch": dt.timestamp() if dt else None,
            # every 5th point covers a year (an annual composite), the rest one instant
            "datetime_end_epoch": (dt + timedelta(days=365 if i % 5 == 0 else 0)).timestamp() if dt else None,
            "gsd": 10.0,
            "model_id": MODEL,
        }
        if i % 4 == 0:
            payload["label"] = ["forest", "water", "urban"][i % 3]
        if i % 23 == 1:  # written before intervals existed: only datetime_epoch
            del payload["datetime_end_epoch"]
        pts.append(Point(id=str(uuid.uuid4()), vector=vecs[i], payload=payload))
    return pts


def brute_force(points, query, k, flt=None, exclude=()):
    """Reference ranking: filter with matches(), Euclidean distance in float64, ties by id."""
    keep = [p for p in points if matches(p.payload, flt) and p.id not in set(exclude)]
    if not keep:
        return []
    d = np.linalg.norm(np.stack([p.vector for p in keep]).astype(np.float64) - query.astype(np.float64), axis=1)
    order = sorted(range(len(keep)), key=lambda j: (float(np.float32(d[j])), keep[j].id))
    return [(keep[j].id, float(d[j])) for j in order[:k]]


@pytest.fixture(scope="module")
def points():
    return make_points()


@pytest.fixture(scope="module")
def edge(points, tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("edge") / "index")
    store.ensure_collection(DIM, MODEL)
    store.upsert(points)
    store.flush()
    yield store
    store.close()


@pytest.fixture(scope="module")
def mem(points):
    store = open_store(qdrant_url=":memory:")
    store.ensure_collection(DIM, MODEL)
    store.upsert(points)
    yield store
    store.close()


ALPS_POLY = ((7.0, 45.5), (11.0, 45.2), (11.5, 47.5), (8.0, 47.8), (7.0, 45.5))

FILTERS = {
    "plain": None,
    "bbox": SearchFilter(bbox=(6.5, 45.5, 10.0, 47.5)),
    "near": SearchFilter(near=(31.0, 30.5, 120_000.0)),
    "polygon": SearchFilter(polygon=ALPS_POLY),
    "datetime": SearchFilter(start=datetime(2019, 6, 1, tzinfo=timezone.utc),
                             end=datetime(2021, 6, 30, 23, 59, 59, tzinfo=timezone.utc)),
    "open_start": SearchFilter(end=datetime(2019, 1, 1)),
    "collection": SearchFilter(collections=("sentinel-2-l2a",)),
    "two_collections": SearchFilter(collections=("sentinel-2-l2a", "landsat-c2-l2")),
    "item_ids": SearchFilter(item_ids=("item-001", "item-007", "item-020")),
    "combined": SearchFilter(bbox=(-123.0, 33.0, -117.0, 39.0), start=datetime(2019, 1, 1),
                             collections=("landsat-c2-l2", "sentinel-2-l2a")),
    # a month: instants inside it, and annual intervals that overlap it
    "datetime_month": SearchFilter(start=datetime(2020, 6, 1), end=datetime(2020, 6, 30, 23, 59, 59)),
    "polygon_with_hole": SearchFilter(polygon={"type": "Polygon", "coordinates": [
        [list(p) for p in ALPS_POLY], [[8.0, 46.0], [10.0, 46.0], [10.0, 47.0], [8.0, 47.0], [8.0, 46.0]]]}),
    "multipolygon": SearchFilter(polygon={"type": "MultiPolygon", "coordinates": [
        [[list(p) for p in ALPS_POLY]], [[[30.0, 29.0], [32.0, 29.0], [32.0, 31.0], [30.0, 31.0], [30.0, 29.0]]]]}),
    "undated": SearchFilter(missing=("datetime",)),
    "no_collection": SearchFilter(missing=("collection",)),
}


def queries(points):
    rng = np.random.default_rng(99)
    qs = [rng.normal(size=DIM).astype(np.float32) for _ in range(4)]
    return qs + [points[0].vector, points[123].vector]


def _ranked(hits):
    return [h.id for h in hits], np.array([h.score for h in hits])


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_are_selective(points, name):
    n = sum(matches(p.payload, FILTERS[name]) for p in points)
    assert (n == N) if name == "plain" else (0 < n < N), n


@pytest.mark.parametrize("name", list(FILTERS))
def test_engines_agree_with_brute_force(points, edge, mem, name):
    flt = FILTERS[name]
    for q in queries(points):
        ref = brute_force(points, q, 10, flt)
        ref_ids = [i for i, _ in ref]
        e_ids, e_d = _ranked(edge.search(q, k=10, flt=flt))
        m_ids, m_d = _ranked(mem.search(q, k=10, flt=flt))
        assert e_ids == m_ids == ref_ids
        np.testing.assert_allclose(e_d, m_d, atol=1e-4)
        np.testing.assert_allclose(e_d, [d for _, d in ref], atol=1e-4)
        assert edge.count(flt) == mem.count(flt) == sum(matches(p.payload, flt) for p in points)


def test_ties_broken_by_id(points, edge, mem):
    dup_ids = sorted([points[0].id] + [p.id for p in points[N - 5 :]])
    for store in (edge, mem):
        hits = store.search(points[0].vector, k=3)
        assert [h.id for h in hits] == dup_ids[:3]
        assert all(h.score == pytest.approx(0.0, abs=1e-5) for h in hits)


def test_exclude_ids_and_vectors(points, edge, mem):
    q = points[5].vector
    excl = [points[5].id, points[0].id]
    ref = [i for i, _ in brute_force(points, q, 8, FILTERS["bbox"], exclude=excl)]
    for store in (edge, mem):
        hits = store.search(q, k=8, flt=FILTERS["bbox"], exclude_ids=excl, with_vectors=True)
        assert [h.id for h in hits] == ref
        by_id = {p.id: p for p in points}
        for h in hits:
            assert isinstance(h, SearchHit) and h.vector is not None and h.vector.dtype == np.float32
            np.testing.assert_allclose(h.vector, by_id[h.id].vector, atol=1e-6)
            assert h.payload["item_id"] == by_id[h.id].payload["item_id"]
        assert store.search(q, k=8, exact=True)[0].id == store.search(q, k=8)[0].id


def test_retrieve_existing_ids_and_iter(points, edge, mem):
    ids = [points[3].id, points[1].id]
    ghost = str(uuid.uuid4())
    for store in (edge, mem):
        hits = store.retrieve(ids, with_vectors=True)
        assert [h.id for h in hits] == ids and all(h.score == 0.0 for h in hits)
        np.testing.assert_allclose(hits[0].vector, points[3].vector, atol=1e-6)
        with pytest.raises(PointNotFoundError, match=ghost):
            store.retrieve([ghost])
        assert store.existing_ids(ids + [ghost, ids[0].upper()]) == set(ids)
        assert store.existing_ids([]) == set()
        got = {p.id: p for p in store.iter_points(batch=64)}
        assert set(got) == {p.id for p in points}
        np.testing.assert_allclose(got[points[7].id].vector, points[7].vector, atol=1e-6)
        assert got[points[7].id].payload == points[7].payload


def test_point_at(points, edge, mem):
    p = points[42]
    lon, lat = p.payload["location"]["lon"] + 0.004, p.payload["location"]["lat"] - 0.003
    covering = [q for q in points if q.payload["bbox"][0] <= lon <= q.payload["bbox"][2]
                and q.payload["bbox"][1] <= lat <= q.payload["bbox"][3]]
    dist = {q.id: float(haversine_m(lon, lat, q.payload["location"]["lon"], q.payload["location"]["lat"]))
            for q in covering}
    nearest = min(covering, key=lambda q: dist[q.id])
    w, s, e, n = nearest.payload["bbox"]
    tie = dist[nearest.id] + max(1.0, 0.05 * float(haversine_m(w, (s + n) / 2, e, (s + n) / 2)))
    want = min((q for q in covering if dist[q.id] <= tie),
               key=lambda q: (-(q.payload["datetime_epoch"] or -np.inf), q.id))
    for store in (edge, mem):
        hit = store.point_at(lon, lat)
        assert hit.id == want.id and hit.vector is not None
        assert hit.payload["href"] == want.payload["href"]
        with pytest.raises(PointNotFoundError, match="covers"):
            store.point_at(-30.0, 0.0)  # mid-Atlantic
        other = "landsat-c2-l2" if want.payload["collection"] != "landsat-c2-l2" else "sentinel-2-l2a"
        only_other = [q for q in covering if q.payload["collection"] == other]
        if not only_other:
            with pytest.raises(PointNotFoundError):
                store.point_at(lon, lat, SearchFilter(collections=(other,)))
        with pytest.raises(InputError):
            store.point_at(200.0, 0.0)


def test_point_at_in_a_time_series_takes_the_newest_or_the_searched_date(tmp_path, caplog):
    """Three dates of one scene on grids ~1 m apart: the tile at a location is the newest
    one, and a search's own date or collection filter picks the example from those dates."""
    from rsir_stac.search import Example, Index
    from rsir_stac.store import open_store

    dates = {2010: 0.0, 2015: 0.9e-5, 2020: -1.1e-5}  # centroid offsets in degrees (~1 m)
    pts = []
    for year, off in dates.items():
        epoch = datetime(year, 6, 1, tzinfo=timezone.utc).timestamp()
        for col in range(3):
            lon, lat = 10.0 + 0.006 * col + off, 45.0 + off
            payload = _big_tile(lon, lat, 0.003, item_id=f"scene-{year}", collection=f"naip-{year}",
                                datetime_epoch=epoch)
            pts.append(Point(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{year}/{col}")),
                             np.full(DIM, year + col, np.float32), payload))
    for store in (open_store(tmp_path / "e"), open_store(qdrant_url=":memory:")):
        with store:
            store.ensure_collection(DIM, MODEL)
            store.upsert(pts)
            assert store.point_at(10.0061, 45.0002).payload["item_id"] == "scene-2020"
            idx = Index(store, None)
            for year in dates:
                when = SearchFilter(start=datetime(year, 1, 1, tzinfo=timezone.utc),
                                    end=datetime(year, 12, 31, tzinfo=timezone.utc))
                for flt in (when, SearchFilter(collections=(f"naip-{year}",))):
                    (ex,) = idx.resolve([Example("location", (10.0061, 45.0002))], prefer=flt)
                    assert ex.payload["item_id"] == f"scene-{year}"
            # a filter no covering tile matches falls back to the newest tile there, and a search says so
            # in its notes (the map page's imagery, drawn through the filters, hides that tile)
            with caplog.at_level("INFO"):
                (ex,) = idx.resolve([Example("location", (10.0061, 45.0002))],
                                    prefer=SearchFilter(collections=("other",)))
            assert ex.payload["item_id"] == "scene-2020" and "has the searched dates or collection" in caplog.text
            res = idx.search(at=(10.0061, 45.0002), flt=SearchFilter(collections=("naip-2020", "other")), k=1)
            assert not [n for n in res.notes if "which the filters leave out" in n], res.notes
            res = idx.search(at=(10.0061, 45.0002), flt=SearchFilter(collections=("other",)), k=1)
            assert any("which the filters leave out" in n and "(naip-2020)" in n for n in res.notes), res.notes


def test_stored_payload_is_packed(points, edge, mem):
    """The engines hold only the indexed fields plus one JSON string; the store
    hands back the payload exactly as it was given."""
    from rsir_stac.store.base import PACKED, PAYLOAD_INDEXES

    p = points[8]
    raw_edge = edge._shard.retrieve([p.id], True, False)[0].payload
    raw_mem = mem.client.retrieve(mem.collection, [p.id], with_payload=True)[0].payload
    for raw in (dict(raw_edge), dict(raw_mem)):
        assert set(raw) == set(PAYLOAD_INDEXES) | {PACKED}
        assert json.loads(raw[PACKED])["corners"] == p.payload["corners"]
    for store in (edge, mem):
        assert store.retrieve([p.id])[0].payload == p.payload


def _big_tile(lon, lat, half_deg, **extra):
    bbox = [lon - half_deg, lat - half_deg, lon + half_deg, lat + half_deg]
    return {"item_id": "big", "collection": "modis", "location": {"lon": lon, "lat": lat}, "bbox": bbox,
            "datetime_epoch": None, "href": "big.tif", **extra}


def test_point_at_widens_to_large_tiles(tmp_path):
    """A 0.8-degree tile is found from 35 km off its centre, not from outside its bbox."""
    big = Point(str(uuid.uuid4()), np.ones(DIM, np.float32), _big_tile(20.0, 10.0, 0.4))
    for store in (open_store(tmp_path / "e"), open_store(qdrant_url=":memory:")):
        with store:
            store.ensure_collection(DIM, MODEL)
            store.upsert([big])
            hit = store.point_at(20.3, 10.1)  # ~35 km east of the centroid, inside the bbox
            assert hit.id == big.id and hit.payload == big.payload
            with pytest.raises(PointNotFoundError, match="covers"):
                store.point_at(20.5, 10.0)  # within 250 km of the centroid but outside the bbox


def test_point_at_finds_continental_tiles_and_follows_the_footprint(tmp_path):
    """A coarse product's 25-degree tile is found ~1,000 km from its centre; a rotated
    tile (a diamond in its bbox) covers only what its footprint covers."""
    huge = Point(str(uuid.uuid4()), np.ones(DIM, np.float32), _big_tile(22.8, 7.2, 12.8))
    c = (40.0, 10.0)
    diamond = [(c[0], c[1] + 0.01), (c[0] + 0.01, c[1]), (c[0], c[1] - 0.01), (c[0] - 0.01, c[1])]
    rotated = Point(str(uuid.uuid4()), np.ones(DIM, np.float32),
                    _big_tile(*c, 0.01, corners=[{"lon": x, "lat": y} for x, y in diamond]))
    for store in (open_store(tmp_path / "e"), open_store(qdrant_url=":memory:")):
        with store:
            store.ensure_collection(DIM, MODEL)
            store.upsert([huge, rotated])
            assert store.point_at(14.0, 0.0).id == huge.id  # ~1,400 km from the centre
            assert store.point_at(40.004, 10.004).id == rotated.id
            assert store.point_at(40.01, 10.0).id == rotated.id  # a corner of the footprint
            with pytest.raises(PointNotFoundError, match="covers"):
                store.point_at(40.008, 10.008)  # inside the bbox, outside the footprint


def test_unpacked_payloads_are_read_as_they_are(tmp_path):
    """Points stored with the whole payload as engine fields (by versions before
    payload packing, or by another tool) are searched, filtered and read unchanged."""
    legacy_payload = _big_tile(-60.0, -10.0, 0.001, item_id="legacy", corners=[{"lon": -60.001, "lat": -10.001}])
    legacy = str(uuid.uuid4())
    edge, mem = open_store(tmp_path / "e"), open_store(qdrant_url=":memory:")
    for store in (edge, mem):
        with store:
            store.ensure_collection(DIM, MODEL)
            if store is edge:
                import qdrant_edge as q

                store._shard.update(q.UpdateOperation.upsert_points(
                    [q.Point(id=legacy, vector=[0.0] * DIM, payload=legacy_payload)]))
            else:
                from qdrant_client import models as m

                store.client.upsert(store.collection, [m.PointStruct(id=legacy, vector=[0.0] * DIM,
                                                                     payload=legacy_payload)])
            assert store.point_at(-60.0005, -10.0).id == legacy
            assert store.retrieve([legacy])[0].payload == legacy_payload
            hits = store.search(np.zeros(DIM, np.float32), k=1, flt=SearchFilter(near=(-60.0, -10.0, 500.0)))
            assert [h.id for h in hits] == [legacy] and hits[0].payload == legacy_payload


def test_info(points, edge, mem):
    for store in (edge, mem):
        info = store.info()
        assert isinstance(info, IndexInfo)
        assert (info.count, info.dim, info.model_id) == (N, DIM, MODEL)
        assert info.collections == ("landsat-c2-l2", "sentinel-2-l2a")
        w = min(p.payload["bbox"][0] for p in points)
        n = max(p.payload["bbox"][3] for p in points)
        assert info.extent[0] == pytest.approx(w) and info.extent[3] == pytest.approx(n)
        assert info.undated == sum(p.payload["datetime_epoch"] is None for p in points) > 0
        assert info.no_collection == sum(p.payload["collection"] is None for p in points) > 0
        assert info.undated == store.count(SearchFilter(missing=("datetime",)))
        # each count is said in the notes with its fix (trial 37: the uncollected points were not)
        assert [n.split(" points")[0] for n in info.notes if "left out by any" in n] == \
            [str(info.undated), str(info.no_collection)], info.notes
        assert any("left out by any --collection filter" in n and "ingest --collection" in n for n in info.notes)
        assert info.legacy_item_ids == 0
    assert edge.info().backend == "edge" and mem.info().backend == "qdrant-local"
    meta = mem.client.get_collection(mem.collection).config.metadata  # kept in the collection config
    assert meta["rsir_stac"]["model_id"] == MODEL and meta["rsir_stac"]["dim"] == DIM


# --------------------------------------------------------------------------- writes


def _small_stores(tmp_path, points):
    stores = [open_store(tmp_path / "idx"), open_store(qdrant_url=":memory:")]
    for s in stores:
        s.ensure_collection(DIM, MODEL)
        s.upsert(points[:60])
    return stores


def test_upsert_is_idempotent(tmp_path, points):
    for store in _small_stores(tmp_path, points):
        with store:
            store.upsert(points[:60])
            store.upsert(points[30:60])
            assert store.count() == 60
            changed = Point(points[0].id, points[0].vector, {**points[0].payload, "label": "changed"})
            store.upsert([changed])
            assert store.count() == 60
            assert store.retrieve([points[0].id])[0].payload["label"] == "changed"
            store.ensure_collection(DIM, MODEL)  # re-ensuring an existing collection is fine
            store.upsert([])
            assert store.count() == 60


def test_incompatible_and_bad_vectors(tmp_path, points):
    for store in _small_stores(tmp_path, points):
        with store:
            with pytest.raises(IncompatibleIndexError, match="use the same model or") as ei:
                store.ensure_collection(DIM * 2, MODEL)
            assert str(DIM * 2) in str(ei.value) and str(DIM) in str(ei.value)
            assert ("new --index" in str(ei.value)) == isinstance(store, EdgeStore)
            with pytest.raises(IncompatibleIndexError, match="other-model"):
                store.ensure_collection(DIM, "other-model")
            bad = Point(str(uuid.uuid4()), np.zeros(DIM - 1, np.float32), {})
            with pytest.raises(ValueError, match=f"{DIM - 1}-d"):
                store.upsert([bad])
            with pytest.raises(StoreError):
                store.upsert([bad])
            with pytest.raises(IncompatibleIndexError):
                store.search(np.zeros(DIM + 3, np.float32))
            with pytest.raises(InputError):
                store.upsert([Point("not-a-uuid", points[0].vector, {})])
            with pytest.raises(InputError):
                store.upsert([Point(str(uuid.uuid4()), np.full(DIM, np.nan, np.float32), {})])
            with pytest.raises(InputError):
                store.search(points[0].vector, k=0)
            assert store.count() == 60


def test_edge_reopen_from_disk(tmp_path, points):
    path = tmp_path / "idx"
    flt = FILTERS["combined"]
    q = queries(points)[0]
    with open_store(path) as store:
        store.ensure_collection(DIM, MODEL)
        store.upsert(points)
        before = [(h.id, h.score) for h in store.search(q, k=10, flt=flt)]
        before_plain = [h.id for h in store.search(q, k=10)]
    assert (path / "rsir_tiles.meta.json").is_file()
    meta = json.loads((path / "rsir_tiles.meta.json").read_text())["rsir_stac"]
    assert meta["dim"] == DIM and meta["model_id"] == MODEL and meta["created_at"]
    for read_only in (True, False):
        with open_store(path, read_only=read_only) as store:
            assert store.count() == N
            assert [(h.id, h.score) for h in store.search(q, k=10, flt=flt)] == before
            assert [h.id for h in store.search(q, k=10)] == before_plain
            store.ensure_collection(DIM, MODEL)
            with pytest.raises(IncompatibleIndexError):
                store.ensure_collection(DIM, "other-model")
            if read_only:
                with pytest.raises(StoreError, match="read-only"):
                    store.upsert(points[:1])
    with pytest.raises(StoreError, match=r"no index at .*missing \(no such folder\)"):
        open_store(tmp_path / "missing", read_only=True)
    store = open_store(path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.count()


def _child(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


OPEN_IN_CHILD = "import sys; from rsir_stac.store import open_store; s = open_store(sys.argv[1]); print(s.count()); s.close()"


def test_index_in_use_by_another_process(tmp_path, points):
    path = tmp_path / "idx"
    store = open_store(path)
    store.ensure_collection(DIM, MODEL)
    store.upsert(points[:20])
    try:
        res = _child(OPEN_IN_CHILD, str(path))
        assert res.returncode != 0
        assert "IndexInUseError" in res.stderr
        assert f"is in use by another process (pid {os.getpid()})" in res.stderr
        with pytest.raises(IndexInUseError, match="already open in this process"):
            open_store(path, read_only=True)  # the engine allows one opener, readers included
    finally:
        store.close()
    res = _child(OPEN_IN_CHILD, str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "20"


@pytest.mark.parametrize("flush", [True, False])
def test_sigkill_after_upsert_loses_nothing(tmp_path, flush):
    path = tmp_path / "idx"
    code = (
        "import os, sys, signal, uuid, numpy as np\n"
        "from rsir_stac.store import open_store, Point\n"
        "s = open_store(sys.argv[1]); s.ensure_collection(16, 'm')\n"
        "s.upsert([Point(str(uuid.uuid4()), np.random.rand(16).astype('float32'), {'k': i}) for i in range(50)])\n"
        f"{'s.flush()' if flush else ''}\n"
        "print('written', flush=True); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    res = _child(code, str(path))
    assert res.returncode == -9 and "written" in res.stdout, res.stderr
    with open_store(path) as store:  # the dead process's lock is gone
        assert store.count() == 50
        store.ensure_collection(16, "m")


def test_server_create_race_and_env(monkeypatch, points):
    a = ServerStore(":memory:")
    b = ServerStore(":memory:")
    b.client = a.client  # two workers on one "server"
    monkeypatch.setattr(b.client, "collection_exists", lambda name: False)  # b checked before a created
    a.ensure_collection(DIM, MODEL)
    b.ensure_collection(DIM, MODEL)  # create conflicts -> re-read and verify
    with pytest.raises(IncompatibleIndexError):
        b.ensure_collection(DIM, "x")
    b.upsert(points[:10])
    assert a.count() == 10
    a.close()

    monkeypatch.setenv("RSIR_QDRANT_URL", ":memory:")
    with open_store() as s:
        assert isinstance(s, ServerStore)
    with pytest.raises(InputError, match="only one"):
        open_store("idx", qdrant_url=":memory:")


def test_server_local_path_mode(tmp_path, points):
    with open_store(qdrant_url=str(tmp_path / "qlocal")) as s:
        s.ensure_collection(DIM, MODEL)
        s.upsert(points[:30])
    with open_store(qdrant_url=str(tmp_path / "qlocal"), read_only=True) as s:
        assert s.count() == 30 and s.info().model_id == MODEL
        with pytest.raises(IncompatibleIndexError):
            s.ensure_collection(DIM + 1, MODEL)


def test_server_local_path_mode_urls(tmp_path, points, monkeypatch):
    """file: URLs are folders; a missing folder is not created by a read; bare HOST:PORT
    and other schemes are refused instead of becoming folders of that name."""
    monkeypatch.chdir(tmp_path)
    with open_store(qdrant_url=(tmp_path / "q").as_uri()) as s:
        s.ensure_collection(DIM, MODEL)
        s.upsert(points[:5])
    with open_store(qdrant_url=str(tmp_path / "q"), read_only=True) as s:
        assert s.count() == 5
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        open_store(qdrant_url=str(tmp_path / "missing"), read_only=True)
    for url, msg in (("localhost:6333", "no scheme; give http://localhost:6333"), ("grpc://h:6334", "not supported")):
        with pytest.raises(InputError, match=msg):
            open_store(qdrant_url=url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]


def test_unreachable_server_is_store_error():
    with pytest.raises(StoreError, match="cannot open Qdrant"):
        open_store(qdrant_url="http://127.0.0.1:9")


def test_edge_store_on_empty_index(tmp_path):
    with open_store(tmp_path / "fresh") as s:
        assert isinstance(s, EdgeStore)
        assert s.count() == 0 and s.existing_ids([str(uuid.uuid4())]) == set()
        assert list(s.iter_points()) == []
        assert s.info() == IndexInfo(0, None, None, (), None, "edge", str(tmp_path / "fresh"))
        with pytest.raises(StoreError, match="no collection"):
            s.search(np.zeros(DIM, np.float32))
        with pytest.raises(StoreError, match="ensure_collection|no collection"):
            s.upsert([])


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize("text,want", [
    ("5,45,10,48", (5.0, 45.0, 10.0, 48.0)),
    (" -180, -90, 180, 90 ", (-180.0, -90.0, 180.0, 90.0)),
    ("7.5,46.1,7.5,46.2", (7.5, 46.1, 7.5, 46.2)),
    ("179.5,-17,-179.5,-16", (179.5, -17.0, -179.5, -16.0)),  # across the antimeridian (RFC 7946)
])
def test_parse_bbox_good(text, want):
    assert parse_bbox(text) == want


@pytest.mark.parametrize("text,msg", [
    ("5,45,10,91", "latitude"),
    ("5,48,10,45", "south"),
    ("5,45,190,48", "longitude"),
    ("5,45,10", "W,S,E,N"),
    ("a,b,c,d", "W,S,E,N"),
    ("5,45,nan,48", "non-finite"),
])
def test_parse_bbox_bad(text, msg):
    with pytest.raises(InputError, match=msg) as ei:
        parse_bbox(text)
    assert "\n" not in str(ei.value)


def test_parse_near():
    assert parse_near("8.5,47.3,5000") == (8.5, 47.3, 5000.0)
    for bad in ("8.5,47.3,0", "8.5,47.3,-1", "8.5,95,10", "8.5,47.3", "x,1,2"):
        with pytest.raises(InputError):
            parse_near(bad)


def test_parse_datetime_range_good():
    utc = timezone.utc
    assert parse_datetime_range("2020-01-01/2020-12-31") == (
        datetime(2020, 1, 1, tzinfo=utc), datetime(2020, 12, 31, 23, 59, 59, 999999, tzinfo=utc))
    assert parse_datetime_range("2020-01-01T10:00:00Z/..") == (datetime(2020, 1, 1, 10, tzinfo=utc), None)
    assert parse_datetime_range("/2020-01-01T10:00:00+02:00") == (None, datetime(2020, 1, 1, 8, tzinfo=utc))
    assert parse_datetime_range("2020-01-01T10:00:00") == (datetime(2020, 1, 1, 10, tzinfo=utc),) * 2
    assert parse_datetime_range("2020-05-01")[1] - parse_datetime_range("2020-05-01")[0] == timedelta(
        days=1, microseconds=-1)
    assert parse_datetime_range("2020-01-01t10:00:00.123456789z/..")[0] == datetime(
        2020, 1, 1, 10, 0, 0, 123456, tzinfo=utc)


@pytest.mark.parametrize("text", [
    "2020-13-01/..", "2021-01-01/2020-01-01", "yesterday", "2020-01-01/2020-02-01/2020-03-01",
    "../..", "", "2020-01-01T25:00:00Z", "2020/2019", "2020-00",
])
def test_parse_datetime_range_bad(text):
    with pytest.raises(InputError, match="datetime") as ei:
        parse_datetime_range(text)
    assert "\n" not in str(ei.value)


def _geojson(tmp_path, doc, name="poly.geojson"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


SQUARE = [[7.0, 45.0], [9.0, 45.0], [9.0, 47.0], [7.0, 47.0], [7.0, 45.0]]


def test_load_polygon_good(tmp_path):
    want = GeoArea(((tuple(tuple(p) for p in SQUARE), ()),))
    poly = {"type": "Polygon", "coordinates": [SQUARE]}
    assert load_polygon(_geojson(tmp_path, poly)) == want
    feat = {"type": "Feature", "properties": {}, "geometry": poly}
    assert load_polygon(_geojson(tmp_path, feat)) == want
    fc = {"type": "FeatureCollection", "features": [feat]}
    assert load_polygon(_geojson(tmp_path, fc)) == want
    assert SearchFilter(polygon=load_polygon(_geojson(tmp_path, poly))).polygon == want


@pytest.mark.parametrize("edge", [179.9, 179.96, 179.97, 179.98, 179.99])
@pytest.mark.parametrize("reverse", [False, True])
def test_antimeridian_box_in_either_orientation(edge, reverse):
    """Unwrapping a ring across 180 summed float differences, so some boxes came back
    unclosed ("Ring Self-intersection"), e.g. the anticlockwise box at ±179.97."""
    ring = [[edge, -16.52], [-edge, -16.52], [-edge, -16.49], [edge, -16.49], [edge, -16.52]]
    area = GeoArea.from_geojson({"type": "Polygon", "coordinates": [ring[::-1] if reverse else ring]})
    assert len(area.polygons) == 2
    assert area.contains(179.995, -16.5) and area.contains(-179.995, -16.5)
    assert not area.contains(0.0, -16.5) and not area.contains(179.995, -16.6)


@pytest.mark.parametrize("coords,msg", [
    (SQUARE[:-1], "not closed"),
    ([[7.0, 45.0], [9.0, 47.0], [9.0, 45.0], [7.0, 47.0], [7.0, 45.0]], "not a valid polygon"),  # bowtie
    ([[7.0, 45.0], [9.0, 45.0], [7.0, 45.0]], "at least 4"),
    ([[7.0, 45.0], [9.0, 45.0], [9.0, 91.0], [7.0, 45.0]], "latitude"),
])
def test_load_polygon_bad_ring(tmp_path, coords, msg):
    with pytest.raises(InputError, match=msg) as ei:
        load_polygon(_geojson(tmp_path, {"type": "Polygon", "coordinates": [coords]}))
    assert "\n" not in str(ei.value)


def test_load_polygon_legacy_crs_member(tmp_path):
    """A pre-RFC 7946 crs member naming a projected CRS is refused (its numbers may still
    look like degrees); one naming lon/lat is read."""
    poly = {"type": "Polygon", "coordinates": [SQUARE]}
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
           "features": [{"type": "Feature", "properties": {}, "geometry": poly}]}
    with pytest.raises(InputError, match="declares the CRS 'urn:ogc:def:crs:EPSG::3857'.*ogr2ogr"):
        load_polygon(_geojson(tmp_path, doc))
    doc["crs"]["properties"]["name"] = "urn:ogc:def:crs:OGC:1.3:CRS84"
    assert load_polygon(_geojson(tmp_path, doc)) == load_polygon(_geojson(tmp_path, poly, "plain.geojson"))


def test_load_polygon_bad_documents(tmp_path):
    with pytest.raises(SourceNotFoundError):
        load_polygon(tmp_path / "missing.geojson")
    (tmp_path / "junk.geojson").write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        load_polygon(tmp_path / "junk.geojson")
    with pytest.raises(InputError, match="Point"):
        load_polygon(_geojson(tmp_path, {"type": "Point", "coordinates": [1, 2]}))
    with pytest.raises(InputError, match="no features"):
        load_polygon(_geojson(tmp_path, {"type": "FeatureCollection", "features": []}))
    outside = [[9.5, 45.5], [10.0, 45.5], [10.0, 46.0], [9.5, 45.5]]  # a "hole" outside the ring
    with pytest.raises(InputError, match="not a valid polygon .*keep holes inside the outer ring"):
        load_polygon(_geojson(tmp_path, {"type": "Polygon", "coordinates": [SQUARE, outside]}))


def test_search_filter_validates():
    with pytest.raises(InputError):
        SearchFilter(bbox=(10, 1, 5, 0))
    with pytest.raises(InputError):
        SearchFilter(start=datetime(2021, 1, 1), end=datetime(2020, 1, 1))
    f = SearchFilter(bbox=[1, 2, 3, 4], collections=["a"], start=datetime(2020, 1, 1))
    assert f.bbox == (1.0, 2.0, 3.0, 4.0) and f.collections == ("a",)
    assert f.start.tzinfo is timezone.utc and not f.is_empty and SearchFilter().is_empty


# --------------------------------------------------------------------------- properties

lons = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-90, 90, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(lons, lons, lats, lats)
def test_bbox_round_trip(a, b, c, d):
    if c == d:
        return
    w, e = sorted((a, b))
    s, n = sorted((c, d))
    assert parse_bbox(f"{w!r},{s!r},{e!r},{n!r}") == (w, s, e, n)
    assert parse_bbox(f"{w},{s},{e},{n}") == (w, s, e, n)


instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]),
)


@settings(max_examples=200, deadline=None)
@given(instants, instants, st.booleans())
def test_datetime_range_round_trip(x, y, zulu):
    start, end = sorted((x, y))
    fmt = (lambda t: t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")) if zulu else datetime.isoformat
    got = parse_datetime_range(f"{fmt(start)}/{fmt(end)}")
    assert got == (start, end)
    assert all(t.tzinfo == timezone.utc for t in got)
    assert parse_datetime_range(f"../{fmt(end)}") == (None, end)
    assert parse_datetime_range(f"{fmt(start)}/") == (start, None)


@settings(max_examples=100, deadline=None)
@given(st.dates(min_value=datetime(1970, 1, 2).date(), max_value=datetime(2100, 1, 1).date()))
def test_date_range_covers_whole_days(d):
    start, end = parse_datetime_range(f"{d.isoformat()}/{d.isoformat()}")
    assert start == datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    assert end - start == timedelta(days=1, microseconds=-1)


def test_upload_settings_from_environment(monkeypatch):
    from rsir_stac.errors import InputError
    from rsir_stac.store import open_store

    monkeypatch.setenv("RSIR_QDRANT_BATCH", "64")
    monkeypatch.setenv("RSIR_QDRANT_PARALLEL", "3")
    s = open_store(qdrant_url=":memory:")
    assert (s.batch_size, s.parallel) == (64, 3)
    s.close()
    monkeypatch.setenv("RSIR_QDRANT_BATCH", "many")
    with pytest.raises(InputError, match="RSIR_QDRANT_BATCH"):
        open_store(qdrant_url=":memory:")



def test_payload_values_are_made_json_safe_and_bad_ones_refused(tmp_path):
    """numpy scalars/arrays, tuples and datetimes are stored as JSON; an object
    JSON cannot hold is refused naming the point, before anything is written."""
    pid, bad = str(uuid.uuid4()), str(uuid.uuid4())
    payload = {"item_id": np.str_("it"), "location": {"lon": np.float64(1.5), "lat": np.float32(2.5)},
               "bbox": np.array([1.0, 2.0, 3.0, 4.0]), "window": (0, 0, 256, 256), "gsd": np.float32(0.5),
               "when": datetime(2020, 1, 2, tzinfo=timezone.utc), "n": np.int64(7)}
    want = {"item_id": "it", "location": {"lon": 1.5, "lat": 2.5}, "bbox": [1.0, 2.0, 3.0, 4.0],
            "window": [0, 0, 256, 256], "gsd": 0.5, "when": "2020-01-02T00:00:00+00:00", "n": 7}
    for store in (open_store(tmp_path / "e"), open_store(qdrant_url=":memory:")):
        with store:
            store.ensure_collection(DIM, MODEL)
            store.upsert([Point(pid, np.zeros(DIM, np.float32), payload)])
            assert store.retrieve([pid])[0].payload == want
            assert store.search(np.zeros(DIM), k=1, flt=SearchFilter(near=(1.5, 2.5, 10.0)))[0].id == pid
            with pytest.raises(InputError, match=f"payload of point {bad}"):
                store.upsert([Point(str(uuid.uuid4()), np.ones(DIM, np.float32), {"a": 1}),
                              Point(bad, np.ones(DIM, np.float32), {"a": {1, 2}})])
            assert store.count() == 1


def test_item_id_is_a_tenant_index(tmp_path):
    """item_id groups each item's points in storage (filtered-search locality)."""
    with open_store(tmp_path / "e") as store:
        store.ensure_collection(DIM, MODEL)
        assert store._shard.info().payload_schema["item_id"].params.is_tenant is True


def test_payload_values_orjson_refuses_still_round_trip(tmp_path):
    """Packed payloads decode through orjson; what the standard encoder writes but
    orjson refuses (NaN, integers beyond 64 bits) still comes back as stored."""
    import math

    from rsir_stac.store.base import pack_payload, unpack_payload

    payload = _big_tile(5.0, 5.0, 0.01, nodata=float("nan"), big=2**70, unicode="Zürich ✓", nested={"a": [1, 2.5]})
    back = unpack_payload(pack_payload(payload))
    assert math.isnan(back.pop("nodata")) and math.isnan(payload["nodata"])
    assert back == {k: v for k, v in payload.items() if k != "nodata"}
    p = Point(str(uuid.uuid4()), np.ones(DIM, np.float32), payload)
    with open_store(tmp_path / "e") as store:
        store.ensure_collection(DIM, MODEL)
        store.upsert([p])
        got = store.search(np.ones(DIM, np.float32), k=1)[0].payload
        assert got["big"] == 2**70 and got["unicode"] == "Zürich ✓" and math.isnan(got["nodata"])


def test_an_index_of_an_earlier_shipped_model_names_its_model(tmp_path):
    """After a default-model upgrade, opening an index of the old default says which --model opens it."""
    from rsir_stac.model.bundle import load_bundle

    old, new = load_bundle("v4"), load_bundle()
    assert old.model_id != new.model_id
    with open_store(str(tmp_path / "idx")) as store:
        store.ensure_collection(old.dim, old.model_id)
        with pytest.raises(IncompatibleIndexError, match=r"use the same model \(shipped: --model v4, or RSIR_MODEL=v4 for every command\) or"):
            store.ensure_collection(new.dim, new.model_id)
    with open_store(str(tmp_path / "idx2")) as store:  # an index of a model not shipped: no hint
        store.ensure_collection(old.dim, "rsir-someone-elses-64d-000000000000")
        with pytest.raises(IncompatibleIndexError, match=r"use the same model or"):
            store.ensure_collection(new.dim, new.model_id)
