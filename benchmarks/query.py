"""Query latency and recall of the vector store at scale.

Builds an embedded (Qdrant Edge) index of ``--points`` (default 1,000,000)
synthetic tiles at the shipped model's stored dimension: clustered unit
vectors (like real embeddings) with realistic payloads (footprint bbox,
centroid geo point, corners, datetime, collection, item id) spread over 40
"scenes" across the US, written in random scene order (the hard case for
storage locality: ``ingest`` writes scene by scene; ``--by-scene`` does that).  Then, for plain, bbox, radius and polygon filtered
top-10 queries: p50/p99 latency and recall@10 against exact numpy brute force
over the same points.  Side by side in the same run: numpy brute force, and
qdrant-client local mode (the embedded alternative) at 20,000 and 100,000
points.

The analyst's queries (issue 14) run on the same Edge index: labelled
queries (5 positives, 5 negatives from the query's scene and another scene)
with the recommend ``average``/``best_score`` and ``discover`` strategies, MMR
(diversity 0.5), the default soft per-scene cap, k = 1,000 and 10,000 (ids
and scores, then the payloads of the first page of 1,000), and one
``classify`` pass over every point (``--analysis-queries 0`` skips them).

Usage::

    python benchmarks/query.py [--points 1000000] [--queries 200] [--dim D] [--by-scene]
                               [--analysis-queries 50]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

K = 10


def make_data(n: int, dim: int, seed: int = 0, by_scene: bool = False):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, dim))
    lab = rng.integers(0, 60, n)
    vec = centres[lab] + 0.45 * rng.normal(size=(n, dim))
    vec = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)
    scene_lon = rng.uniform(-120, -75, 40)
    scene_lat = rng.uniform(30, 47, 40)
    scene = rng.integers(0, 40, n)
    lon = scene_lon[scene] + rng.uniform(0, 0.2, n)
    lat = scene_lat[scene] + rng.uniform(0, 0.2, n)
    epoch = rng.uniform(1.5e9, 1.7e9, n)
    if by_scene:  # the order ingest writes tiles in: scene after scene
        order = np.argsort(scene, kind="stable")
        vec, lon, lat, scene, epoch = vec[order], lon[order], lat[order], scene[order], epoch[order]
    return vec, lon, lat, scene, epoch


def payload(i, lon, lat, scene, epoch) -> dict:
    """A tile payload shaped like ``ingest.tile_payload`` (plain Python numbers)."""
    lon, lat, scene, epoch = float(lon), float(lat), int(scene), float(epoch)
    d = 0.0007
    w, s, e, n_ = lon - d, lat - d, lon + d, lat + d
    return {
        "item_id": f"scene-{scene:03d}", "collection": f"col-{scene % 3}", "asset": "visual",
        "href": f"/data/scene-{scene:03d}.tif",
        "window": {"col_off": 0, "row_off": 0, "width": 256, "height": 256},
        "crs": "EPSG:32615", "bbox": [w, s, e, n_], "location": {"lon": lon, "lat": lat},
        "corners": [{"lon": w, "lat": n_}, {"lon": e, "lat": n_}, {"lon": e, "lat": s}, {"lon": w, "lat": s}],
        "datetime": None, "datetime_epoch": epoch, "gsd": 0.3, "model_id": "bench",
    }


def pct(xs, q):
    return round(1000 * float(np.percentile(xs, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=None, help="Default: the shipped model's stored dimension.")
    ap.add_argument("--client-sizes", default="20000,100000")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--by-scene", action="store_true", help="Write points scene after scene, as ingest does.")
    ap.add_argument("--analysis-queries", type=int, default=50, help="Queries per analyst case (0: skip).")
    args = ap.parse_args()

    from rsir_stac.store import Point, SearchFilter, open_store
    from rsir_stac.store.filters import matches
    from rsir_stac.store.server import ServerStore

    if args.dim is None:
        from rsir_stac.model.bundle import load_bundle

        args.dim = load_bundle().dim
    n, dim = args.points, args.dim
    t = time.time()
    vec, lon, lat, scene, epoch = make_data(n, dim, by_scene=args.by_scene)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    gen_s = time.time() - t
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsir-query-"))
    rng = np.random.default_rng(1)

    # --- build the Edge index -------------------------------------------------------
    store = open_store(str(work / "edge"))
    store.ensure_collection(dim, "bench")
    t = time.time()
    B = 5000
    upsert_s = 0.0  # time inside store.upsert/flush only, not building the synthetic points
    for s in range(0, n, B):
        batch = [Point(ids[i], vec[i], payload(i, lon[i], lat[i], scene[i], epoch[i])) for i in range(s, min(n, s + B))]
        t_up = time.perf_counter()
        store.upsert(batch)
        upsert_s += time.perf_counter() - t_up
    t_up = time.perf_counter()
    store.flush()
    upsert_s += time.perf_counter() - t_up
    build_s = time.time() - t
    t = time.time()
    store.optimize()
    optimize_s = time.time() - t

    # --- query set and filters -------------------------------------------------------
    qi = rng.integers(0, n, args.queries)
    queries = vec[qi] + 0.05 * rng.normal(size=(args.queries, dim)).astype(np.float32)

    def filters_for(j):
        clon, clat = lon[qi[j]], lat[qi[j]]
        r = 0.05
        ring = tuple((clon + r * math.cos(a), clat + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 9)[:-1])
        return {
            "plain": None,
            "bbox": SearchFilter(bbox=(clon - 0.08, clat - 0.08, clon + 0.08, clat + 0.08)),
            "radius": SearchFilter(near=(float(clon), float(clat), 6000.0)),
            "polygon": SearchFilter(polygon=ring + ring[:1]),
        }

    def mask_for(flt):
        if flt is None:
            return None
        if flt.bbox:
            w, s_, e, n_ = flt.bbox
            return (lon > w) & (lon < e) & (lat > s_) & (lat < n_)
        if flt.near:
            from rsir_stac.store.filters import haversine_m

            return haversine_m(flt.near[0], flt.near[1], lon, lat) < flt.near[2]

    def brute(q, m):
        d = np.linalg.norm(vec - q, axis=1) if m is None else np.linalg.norm(vec[m] - q, axis=1)
        sel = np.argsort(d, kind="stable")[:K]
        base = np.arange(n) if m is None else np.flatnonzero(m)
        return [ids[i] for i in base[sel]]

    res = {}
    for kind in ("plain", "bbox", "radius", "polygon"):
        lat_ms, recalls, bf_ms, sel = [], [], [], []
        for j, q in enumerate(queries):
            flt = filters_for(j)[kind]
            t = time.perf_counter()
            hits = store.search(q, k=K, flt=flt)
            lat_ms.append(time.perf_counter() - t)
            t = time.perf_counter()
            if kind == "polygon":  # exact reference with the same point-in-polygon rule as the store
                box = (lon > flt.polygon[4][0] - 1e-9) & (lon < flt.polygon[0][0] + 1e-9) & \
                      (lat > flt.polygon[6][1] - 1e-9) & (lat < flt.polygon[2][1] + 1e-9)
                cand = np.flatnonzero(box)
                ok = np.array([matches({"location": {"lon": lon[i], "lat": lat[i]}}, flt) for i in cand], bool)
                m = np.zeros(n, bool)
                m[cand[ok]] = True
            else:
                m = mask_for(flt)
            truth = brute(q, m)
            bf_ms.append(time.perf_counter() - t)
            sel.append(n if m is None else int(m.sum()))
            got = [h.id for h in hits]
            recalls.append(len(set(got) & set(truth)) / max(1, min(K, len(truth))))
        res[kind] = {"p50_ms": pct(lat_ms, 50), "p99_ms": pct(lat_ms, 99), "recall@10": round(float(np.mean(recalls)), 4),
                     "numpy_p50_ms": pct(bf_ms, 50), "matching_points_median": int(np.median(sel))}
    analysis = analyst_queries(store, vec, scene, qi, args.analysis_queries) if args.analysis_queries else {}
    store.close()
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)  # ~1 GB at 1M points

    # --- qdrant-client local mode, side by side ---------------------------------------
    client = {}
    for size in [int(s) for s in args.client_sizes.split(",") if s]:
        size = min(size, n)
        cs = ServerStore(":memory:", collection=f"bench{size}")
        cs.ensure_collection(dim, "bench")
        t = time.time()
        for s in range(0, size, B):
            cs.upsert([Point(ids[i], vec[i], payload(i, lon[i], lat[i], scene[i], epoch[i]))
                       for i in range(s, min(size, s + B))])
        up = time.time() - t
        out = {"upsert_points_s": round(size / up, 1)}
        for kind in ("plain", "bbox"):
            lat_ms = []
            for j, q in enumerate(queries[:50]):
                t = time.perf_counter()
                cs.search(q, k=K, flt=filters_for(j)[kind])
                lat_ms.append(time.perf_counter() - t)
            out[kind] = {"p50_ms": pct(lat_ms, 50), "p99_ms": pct(lat_ms, 99)}
        client[str(size)] = out
        cs.close()

    filtered = [res[k] for k in ("bbox", "radius", "polygon")]
    print(json.dumps({
        "points": n, "dim": dim, "queries": args.queries, "order": "by_scene" if args.by_scene else "interleaved",
        "upsert_points_s": round(n / upsert_s, 1), "upsert_with_point_building_points_s": round(n / build_s, 1),
        "optimize_s": round(optimize_s, 1), "generate_s": round(gen_s, 1),
        "edge": res,
        "filtered_p50_ms_max": max(r["p50_ms"] for r in filtered),
        "filtered_p99_ms_max": max(r["p99_ms"] for r in filtered),
        "recall@10_min": min(r["recall@10"] for r in res.values()),
        "qdrant_client_local": client,
        "analysis": analysis,
    }))


def analyst_queries(store, vec, scene, qi, nq: int) -> dict:
    """Latency of labelled / MMR / large-k queries and of one classify pass (issue 14)."""
    from rsir_stac.classify import classify
    from rsir_stac.labels import Label, LabelSet
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.search import Index
    from rsir_stac.store.query import ExampleQuery

    rng = np.random.default_rng(2)
    by_scene = {}
    for i, s in enumerate(scene):
        by_scene.setdefault(int(s), []).append(i)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vec))]

    def examples(j):
        own = by_scene[int(scene[qi[j]])]
        other = by_scene[int((scene[qi[j]] + 7) % len(by_scene))]
        return [int(x) for x in rng.choice(own, 5)], [int(x) for x in rng.choice(other, 5)]

    def timed(make, runs):
        ms = []
        for j in range(runs):
            q = make(j)
            t = time.perf_counter()
            q()
            ms.append(time.perf_counter() - t)
        return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "runs": runs}

    def labelled(strategy, k=10, **kw):
        def make(j):
            p, n = examples(j)
            eq = ExampleQuery(tuple(vec[p]), tuple(vec[n]), strategy=strategy, mmr=kw.get("mmr"))
            return lambda: store.query(eq, k, exclude=_excl(p + n), per_item=kw.get("per_item"),
                                       fill=kw.get("fill", False), with_payload=kw.get("with_payload", True))
        return make

    def _excl(idx):
        from rsir_stac.store.query import Exclusion

        return Exclusion(ids=frozenset(ids[i] for i in idx))

    out = {
        "labelled_5pos_5neg_average_k10": timed(labelled("average"), nq),
        "labelled_5pos_5neg_best_score_k10": timed(labelled("best_score"), nq),
        "labelled_5pos_5neg_discover_k10": timed(labelled("discover"), nq),
        "mmr_0.5_k10": timed(lambda j: (lambda: store.query(ExampleQuery((vec[qi[j]],), mmr=0.5), 10)), nq),
        "soft_cap_3_per_scene_k10": timed(
            lambda j: (lambda: store.query(ExampleQuery((vec[qi[j]],)), 10, per_item=3, fill=True)), nq),
    }
    runs = max(3, nq // 5)
    for k in (1000, 10_000):
        out[f"plain_k{k}_ids"] = timed(
            lambda j, k=k: (lambda: store.query(ExampleQuery((vec[qi[j]],)), k, with_payload=False)), runs)
        out[f"labelled_best_score_k{k}_ids"] = timed(labelled("best_score", k, with_payload=False), runs)
        out[f"plain_k{k}_first_page_payloads"] = timed(
            lambda j, k=k: (lambda: store.query(ExampleQuery((vec[qi[j]],)), min(k, 1000))), runs)
    bundle = load_bundle()
    if bundle.dim == vec.shape[1]:
        p, n = examples(0)
        labels = LabelSet(tuple([Label(ids[i], "positive") for i in p] + [Label(ids[i], "negative") for i in n]))
        idx = Index(store, bundle)
        t = time.perf_counter()
        rep = classify(idx, labels, threshold=0.9, batch=8192)
        out["classify_all_points"] = {"seconds": round(time.perf_counter() - t, 2), "scored": rep.scored,
                                      "hits": len(rep.hits)}
    return out


if __name__ == "__main__":
    main()
