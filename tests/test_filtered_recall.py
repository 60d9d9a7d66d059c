"""Filtered searches that the engine answers through the HNSW graph keep their recall.

Qdrant answers a filter by an exact scan of the matching points while a segment holds
few of them, and through the graph above its ``full_scan_threshold`` (10 MB of vectors),
which happens where tiles are dense (RESULTS §13.9).  Here that threshold is lowered to
1 KB so a 12,000-point index, all of it in one small area, takes the graph path; the
store's searches (ACORN for filtered graph searches, ``store.base.ACORN_MAX_SELECTIVITY``)
must still find the brute-force top 10.  On the real Qdrant Edge engine; without ACORN the
small box below finds ~0.8 of them.
"""

from __future__ import annotations

import functools
import uuid

import numpy as np
import pytest

from rsir_stac.store import Point, SearchFilter
from rsir_stac.store import edge as edge_module
from rsir_stac.store.edge import EdgeStore
from test_store import brute_force

N, DIM = 12_000, 16


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """Clustered unit vectors (30 kinds of ground) on tiles packed into a 0.2° square."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, DIM))
    v = centres[rng.integers(0, 30, N)] + 0.45 * rng.normal(size=(N, DIM))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    lon, lat = rng.uniform(10.0, 10.2, N), rng.uniform(45.0, 45.2, N)
    pts = [Point(str(uuid.UUID(int=i + 1)), v[i], {
        "item_id": "scene", "collection": "naip",
        "bbox": [lon[i] - 1e-3, lat[i] - 1e-3, lon[i] + 1e-3, lat[i] + 1e-3],
        "location": {"lon": float(lon[i]), "lat": float(lat[i])},
        "datetime_epoch": 1.6e9, "datetime_end_epoch": 1.6e9}) for i in range(N)]
    mp = pytest.MonkeyPatch()  # the engine's threshold lowered to 1 KB: every filter takes the graph
    mp.setattr(edge_module, "edge_config", functools.partial(edge_module.edge_config, full_scan_kb=1))
    store = EdgeStore(tmp_path_factory.mktemp("dense") / "index", segment_points=N)
    store.ensure_collection(DIM, "test-model")  # creates the shard
    mp.undo()
    for s in range(0, N, 1000):
        store.upsert(pts[s:s + 1000])
    store.flush()
    store.optimize()
    assert store._shard.info().indexed_vectors_count == N  # the graph exists
    yield store, pts, v
    store.close()


@pytest.mark.parametrize("flt", [
    SearchFilter(bbox=(10.0, 45.0, 10.04, 45.04)),       # ~4 % of the tiles
    SearchFilter(bbox=(10.0, 45.0, 10.13, 45.13)),       # ~40 %
    SearchFilter(near=(10.1, 45.1, 2500.0)),             # ~7 %
])
def test_filtered_graph_search_finds_the_true_neighbours(dense, flt):
    store, pts, v = dense
    rng = np.random.default_rng(3)
    hits = total = 0
    for qi in rng.integers(0, N, 30):
        qv = v[qi] + 0.05 * rng.normal(size=DIM).astype(np.float32)
        want = [i for i, _ in brute_force(pts, qv, 10, flt)]
        got = [h.id for h in store.search(qv, k=10, flt=flt)]
        hits += len(set(got) & set(want))
        total += len(want)
    assert total > 0
    assert hits / total >= 0.99
