"""Latency of the analyst's queries (issue 14) on a large Edge index.

Builds (or reuses, with ``--index DIR``) an embedded Qdrant Edge index of
``--points`` synthetic tiles at the shipped model's dimension: 60 clusters of
unit vectors (like real embeddings), full tile payloads over 40 scenes
(footprint, centroid, corners, datetime, collection, item id), uuid5-like
random point ids as ``ingest`` makes them, HNSW built (``optimize``).  The
data is a pure function of ``--points``, ``--dim`` and the seed, so
``benchmarks/classify.py --index DIR`` reuses the same index.

Cases (each ``--queries`` runs, p50/p99 ms; the large-k cases ``--queries // 5``
runs, at least 5):

* labelled queries, 5 positives (tiles of the query's cluster) and 5 negatives
  (tiles of another cluster), examples left out of the hits, k = 10, for the
  ``average`` (recommend average_vector), ``best_score``, ``sum_scores``,
  ``discover``, ``context`` and ``feedback`` strategies;
* MMR (diversity 0.5, 100 candidates) on one example and on the labelled
  average vector, k = 10; the default soft cap of 3 hits per scene, k = 10;
* k = 1,000 and k = 10,000 for a plain and a labelled ``best_score`` query:
  the ranking as ids and scores (what the CLI and the API fetch first), then
  paging through it with ``offset`` one page of 1,000 at a time with payloads
  (the CLI's streamed export: ids and scores for the whole ranking once, then
  each page's payloads).

Usage::

    python benchmarks/analyst_query.py [--points 1000000] [--index /tmp/an1m] [--queries 50]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

CLUSTERS = 60
SCENES = 40
BUILD_BATCH = 5000
MARKER = "bench-data.json"


def synthetic(n: int, dim: int, seed: int = 0) -> dict:
    """Clustered unit vectors and tile metadata (numpy arrays of length ``n``), deterministic."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, dim))
    cluster = rng.integers(0, CLUSTERS, n)
    vec = (centres[cluster] + 0.45 * rng.normal(size=(n, dim))).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    scene_lon = rng.uniform(-120, -75, SCENES)
    scene_lat = rng.uniform(30, 47, SCENES)
    scene = rng.integers(0, SCENES, n)
    lon = scene_lon[scene] + rng.uniform(0, 0.2, n)
    lat = scene_lat[scene] + rng.uniform(0, 0.2, n)
    epoch = rng.uniform(1.5e9, 1.7e9, n)
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    ids = [str(uuid.UUID(bytes=bytes(r), version=5)) for r in raw]
    return {"vec": vec, "cluster": cluster, "scene": scene, "lon": lon, "lat": lat, "epoch": epoch, "ids": ids}


def payload(lon: float, lat: float, scene: int, epoch: float) -> dict:
    """A tile payload shaped like ``ingest.tile_payload``: ``query.payload``'s, one definition for both benchmarks."""
    import query as query_bench  # benchmarks/query.py (this folder is on sys.path when run as a script)

    return query_bench.payload(0, lon, lat, scene, epoch)


def open_or_build(path: str | Path, n: int, dim: int, model_id: str, *, optimize: bool = True,
                  seed: int = 0) -> tuple[object, dict, dict]:
    """The synthetic data and an Edge store at ``path`` holding it: reused when ``path``
    was built by this function with the same ``n``, ``dim`` and ``seed``, else (re)built.
    Returns (store, data, build timings)."""
    from rsir_stac.store import Point, open_store

    path = Path(path)
    want = {"points": n, "dim": dim, "seed": seed, "model_id": model_id}
    t = time.perf_counter()
    data = synthetic(n, dim, seed)
    timings: dict = {"generate_s": round(time.perf_counter() - t, 1)}
    marker = path / MARKER
    have = json.loads(marker.read_text()) if marker.is_file() else {}
    if {k: have.get(k) for k in want} == want:
        store = open_store(str(path))
        if store.count() == n:
            timings["reused"] = True
            if optimize and not have.get("optimized"):
                timings["optimize_s"] = _optimize(store, marker, want)
            return store, data, timings
        store.close()
    shutil.rmtree(path, ignore_errors=True)
    store = open_store(str(path))
    store.ensure_collection(dim, model_id)
    t = time.perf_counter()
    vec, ids = data["vec"], data["ids"]
    lon, lat, scene, epoch = (data[k].tolist() for k in ("lon", "lat", "scene", "epoch"))
    for s in range(0, n, BUILD_BATCH):
        store.upsert([Point(ids[i], vec[i], payload(lon[i], lat[i], scene[i], epoch[i]))
                      for i in range(s, min(n, s + BUILD_BATCH))])
    store.flush()
    marker.write_text(json.dumps({**want, "optimized": False}))  # classify needs no HNSW: usable from here
    timings["build_s"] = round(time.perf_counter() - t, 1)
    if optimize:
        timings["optimize_s"] = _optimize(store, marker, want)
    return store, data, timings


def _optimize(store, marker: Path, want: dict) -> float:
    """Build the HNSW graph (``store.optimize``); returns seconds."""
    t = time.perf_counter()
    store.optimize()
    store.flush()
    marker.write_text(json.dumps({**want, "optimized": True}))
    return round(time.perf_counter() - t, 1)


def pct(xs, q) -> float:
    return round(1000 * float(np.percentile(xs, q)), 2)


def timed(make, runs: int) -> dict:
    """p50/p99 ms of ``runs`` calls (wall clock) and the p50 of the process CPU time they
    used (all threads: on a shared machine the CPU time is what the query costs, the wall
    clock adds the wait for a core); ``make(j)`` returns the j-th zero-argument call."""
    ms, cpu = [], []
    for j in range(runs):
        call = make(j)
        t, c = time.perf_counter(), time.process_time()
        call()
        ms.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "cpu_p50_ms": pct(cpu, 50), "runs": runs}


def analyst_cases(store, data: dict, nq: int, seed: int = 2) -> dict:
    """Latency of labelled, MMR, capped and large-k queries (see the module docstring)."""
    from rsir_stac.store.exclusion import Exclusion
    from rsir_stac.store.query import ExampleQuery

    vec, cluster, ids = data["vec"], data["cluster"], data["ids"]
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(cluster == c) for c in range(CLUSTERS)]
    qi = rng.integers(0, len(vec), max(nq, 1))
    ex = []
    for j in range(len(qi)):
        c = int(cluster[qi[j]])
        pos = [int(x) for x in rng.choice(members[c], 5, replace=False)]
        neg = [int(x) for x in rng.choice(members[(c + 7) % CLUSTERS], 5, replace=False)]
        ex.append((pos, neg))

    def labelled(strategy, k=10, mmr=None, with_payload=True, offset=0):
        def make(j):
            pos, neg = ex[j]
            q = ExampleQuery(tuple(vec[pos]), tuple(vec[neg]), strategy=strategy, mmr=mmr,
                             mmr_candidates=100 if mmr is not None else None)
            excl = Exclusion(ids=frozenset(ids[i] for i in pos + neg))
            return lambda: store.query(q, k, offset=offset, exclude=excl, with_payload=with_payload)
        return make

    def single(k=10, mmr=None, with_payload=True, **kw):
        def make(j):
            q = ExampleQuery((vec[qi[j]],), mmr=mmr, mmr_candidates=100 if mmr is not None else None)
            return lambda: store.query(q, k, with_payload=with_payload, **kw)
        return make

    out = {"plain_k10": timed(single(), nq)}
    for strategy in ("average", "best_score", "sum_scores", "discover", "context", "feedback"):
        out[f"labelled_5pos_5neg_{strategy}_k10"] = timed(labelled(strategy), nq)
    out["mmr_0.5_single_k10"] = timed(single(mmr=0.5), nq)
    out["mmr_0.5_labelled_average_k10"] = timed(labelled("average", mmr=0.5), nq)
    out["soft_cap_3_per_scene_k10"] = timed(single(per_item=3, fill=True), nq)
    runs = max(5, nq // 5)
    for k in (1000, 10_000):
        out[f"plain_k{k}_ids"] = timed(single(k, with_payload=False), runs)
        out[f"labelled_best_score_k{k}_ids"] = timed(labelled("best_score", k, with_payload=False), runs)
        out[f"plain_k{k}_ids_then_payload_pages"] = timed(lambda j, k=k: (lambda: _paged(store, vec[qi[j]], k)), runs)
    out["offset_9000_k1000_page"] = timed(single(1000, offset=9000), runs)
    return out


def _paged(store, v, k: int, page: int = 1000) -> None:
    """Ranking of k as ids and scores, then payloads page by page (as the CLI streams an export)."""
    from rsir_stac.store.query import ExampleQuery

    bare = store.query(ExampleQuery((v,)), k, with_payload=False)
    for s in range(0, len(bare), page):
        store.retrieve([h.id for h in bare[s:s + page]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--dim", type=int, default=None, help="Default: the shipped model's stored dimension.")
    ap.add_argument("--index", default=None, help="Index folder to build or reuse (default: a temporary one).")
    ap.add_argument("--build-only", action="store_true", help="Build (or check) the index at --index and stop.")
    args = ap.parse_args()

    from rsir_stac.model.bundle import load_bundle

    bundle = load_bundle()
    dim = args.dim or bundle.dim
    path = Path(args.index) if args.index else Path(tempfile.mkdtemp(prefix="rsir-analyst-")) / "idx"
    store, data, timings = open_or_build(path, args.points, dim, bundle.model_id)
    if args.build_only:
        store.close()
        print(json.dumps({"points": args.points, "dim": dim, "index": str(path), **timings}))
        return
    try:
        cases = analyst_cases(store, data, args.queries)
    finally:
        store.close()
        if not args.index:
            shutil.rmtree(path.parent, ignore_errors=True)
    k10 = {k: v for k, v in cases.items() if k.endswith("_k10") and "context" not in k}
    print(json.dumps({"points": args.points, "dim": dim, "queries": args.queries, **timings,
                      "load_avg_1min": round(os.getloadavg()[0], 1),
                      "worst_k10_p50_ms": max(v["p50_ms"] for v in k10.values()),
                      "worst_k10_cpu_p50_ms": max(v["cpu_p50_ms"] for v in k10.values()), "cases": cases}))


if __name__ == "__main__":
    main()
