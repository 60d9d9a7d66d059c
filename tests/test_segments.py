"""Size-capped segments and optimize rounds (``rsir_stac.store.segments``), on the real
Qdrant Edge engine: a capped store indexes its points round by round into several
segments and still answers exactly like a brute-force search, plain and filtered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsir_stac.errors import StoreError
from rsir_stac.store import SearchFilter
from rsir_stac.store.edge import EdgeStore
from rsir_stac.store.integrity import repair_index
from rsir_stac.store.segments import Rounds, cap_kb, edge_config, shard_cap_points
from test_store import DIM, MODEL, brute_force, make_points

EVERY = 200  # points per segment in these tests


def _info(store: EdgeStore):
    return store._shard.info()


def _write(store: EdgeStore, points, batch: int = 50) -> None:
    for s in range(0, len(points), batch):
        store.upsert(points[s:s + batch])


def _build(path, points, segment_points=EVERY) -> None:
    """An index at ``path`` holding ``points``, written 50 at a time, then closed."""
    with EdgeStore(path, segment_points=segment_points) as store:
        store.ensure_collection(DIM, MODEL)
        _write(store, points)


@pytest.fixture(scope="module")
def points():
    return make_points(1000, seed=11)


@pytest.fixture(scope="module")
def capped(points, tmp_path_factory):
    store = EdgeStore(tmp_path_factory.mktemp("seg") / "index", segment_points=EVERY)
    store.ensure_collection(DIM, MODEL)
    _write(store, points)
    store.flush()
    yield store
    store.close()


def test_cap_is_recorded_in_the_shard_config(capped):
    cfg = json.loads((capped.shard_dir / "edge_config.json").read_text())
    assert cfg["optimizers"]["max_segment_size"] == cap_kb(DIM, EVERY)
    assert EVERY <= shard_cap_points(capped.shard_dir) < EVERY + 1024 // (DIM * 4)  # whole KB


def test_rounds_index_each_segment_as_it_fills(capped, points):
    info = _info(capped)
    assert info.points_count == len(points)
    # 1000 points in rounds of 200: the rounds indexed (at least) the first 800, in several segments
    assert info.segments_count >= 4
    assert info.indexed_vectors_count >= 800


@pytest.mark.parametrize("flt", [
    None,
    SearchFilter(bbox=(5.0, 44.0, 13.0, 49.0)),
    SearchFilter(near=(31.0, 30.5, 150_000.0)),
    SearchFilter(collections=("landsat-c2-l2",)),
])
def test_capped_store_answers_like_brute_force(capped, points, flt):
    rng = np.random.default_rng(3)
    hits = 0
    total = 0
    for qi in rng.integers(0, len(points), 20):
        q = points[qi].vector + 0.05 * rng.normal(size=DIM).astype(np.float32)
        want = [i for i, _ in brute_force(points, q, 10, flt)]
        got = [h.id for h in capped.search(q, k=10, flt=flt)]
        assert len(got) == len(want)
        hits += len(set(got) & set(want))
        total += len(want)
    assert hits / total >= 0.98


def test_uncapped_store_has_no_rounds(points, tmp_path):
    with EdgeStore(tmp_path / "index", segment_points=None) as store:
        store.ensure_collection(DIM, MODEL)
        _write(store, points[:600])
        info = _info(store)
        assert shard_cap_points(store.shard_dir) is None
        assert info.segments_count == 1 and info.indexed_vectors_count == 0


def test_reopened_capped_store_counts_unindexed_points(points, tmp_path):
    path = tmp_path / "index"
    with EdgeStore(path, segment_points=EVERY) as store:
        store.ensure_collection(DIM, MODEL)
        _write(store, points[:150])  # below one round: nothing indexed yet
        assert _info(store).indexed_vectors_count == 0
    with EdgeStore(path) as store:  # the default segment size here is far larger: the shard's own cap rules
        store.ensure_collection(DIM, MODEL)
        _write(store, points[150:250])  # 250 unindexed points in all: one round is due
        assert _info(store).indexed_vectors_count >= 200


def test_index_made_without_cap_keeps_its_layout(points, tmp_path):
    path = tmp_path / "index"
    _build(path, points[:100], None)
    with EdgeStore(path, segment_points=EVERY) as store:
        store.ensure_collection(DIM, MODEL)
        _write(store, points[100:500])
        assert shard_cap_points(store.shard_dir) is None
        assert _info(store).indexed_vectors_count == 0  # no rounds: they would re-merge everything


def test_repair_keeps_the_cap(points, tmp_path):
    path = tmp_path / "index"
    _build(path, points[:500])
    cap = shard_cap_points(path / "rsir_tiles")
    report = repair_index(path)
    assert report.kept == 500
    assert cap is not None and shard_cap_points(path / "rsir_tiles") == cap
    with EdgeStore(path, read_only=True) as store:
        assert store.count() == 500
        assert _info(store).segments_count >= 2


def test_repair_of_a_lost_config_gives_the_default_cap(points, tmp_path):
    from rsir_stac.store.segments import SEGMENT_POINTS

    path = tmp_path / "index"
    _build(path, points[:300])
    (path / "rsir_tiles" / "edge_config.json").unlink()
    assert repair_index(path).kept == 300
    assert shard_cap_points(path / "rsir_tiles") == SEGMENT_POINTS  # not silently the old uncapped layout


def test_bad_segment_points_is_refused(tmp_path):
    for bad in (0, -5, True, 2.7, "300"):
        with pytest.raises(StoreError, match="must be a positive number of points"):
            EdgeStore(tmp_path / "index", segment_points=bad)
    assert not (tmp_path / "index" / "rsir_tiles").exists()
    with pytest.raises(ValueError, match="positive"):
        edge_config(DIM, -5)


def test_rounds_counter():
    r = Rounds(100)
    assert not r.add(60)
    assert r.add(40)
    r.reset()
    assert not r.add(99)
    assert not Rounds(None).add(10**9)
