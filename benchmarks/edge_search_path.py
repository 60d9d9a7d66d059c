"""Where ``EdgeStore.search`` spends its time next to the bare engine (issue 18).

Opens an existing product index (built by ``query.py --workdir DIR``, folder
``DIR/edge``; the points are regenerated with ``query.make_data``) and, on the
same shard and queries:

1. times the engine calls the search path is made of (wall, process CPU and
   calling-thread CPU; the engine searches on its own thread pool, payload
   reads by id run on the calling thread): query for 10 / 11 / 26 ids,
   query with payloads inline, retrieve 10 points with payloads, and our
   Python steps (id strings, JSON decoding of the packed payload);
2. A/B of the search path before issue 18 (26 candidates, generic record
   conversion, payloads by a second call) against now (k + 1 candidates with
   their payloads in the one engine call, decoded only for the k kept hits;
   the seventeenth session's change, RESULTS §13.12), both against the bare
   engine asked for 10 ids (the floor),
   interleaved so that load drifts hit all alike; results are checked equal.

    python benchmarks/edge_search_path.py --index DIR/edge --points N [--dim 32]

Ends with one JSON line (microseconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from query import make_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--points", type=int, required=True)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()

    import qdrant_edge as q

    from rsir_stac.store import SearchFilter, open_store
    from rsir_stac.store.base import HNSW_EF, SearchHit, as_query_vector, hit_from_record, unpack_payload
    from rsir_stac.store.filters import to_edge_filter

    vec, lon, lat, *_ = make_data(args.points, args.dim)
    st = open_store(args.index, read_only=False)
    sh = st._shard
    rng = np.random.default_rng(1)
    qi = rng.integers(0, args.points, args.queries)
    qv = vec[qi] + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    ql = [v.tolist() for v in qv]
    nq = args.queries

    def timed(fn, reps=3) -> dict:
        best = {}
        for _ in range(reps):
            w, c, th = time.perf_counter(), time.process_time(), time.thread_time()
            for j in range(nq):
                fn(j)
            got = {"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "thread": time.thread_time() - th}
            best = {k: min(v, best.get(k, v)) for k, v in got.items()}
        return {k: round(v / nq * 1e6, 1) for k, v in best.items()}

    def req(j, limit, payload=False, flt=None):
        return q.QueryRequest(limit=limit, query=q.Query.Nearest(ql[j]), filter=flt, with_payload=payload,
                              with_vector=False, params=q.SearchParams(hnsw_ef=HNSW_EF))

    parts = {}
    for limit in (10, 11, 26):
        parts[f"engine_query_{limit}_ids"] = timed(lambda j, limit=limit: sh.query(req(j, limit)))
    parts["engine_query_11_with_payloads"] = timed(lambda j: sh.query(req(j, 11, True)))
    res = [sh.query(req(j, 11)) for j in range(nq)]
    ids = [[str(r.id) for r in rs][:10] for rs in res]
    parts["engine_retrieve_10_with_payloads"] = timed(lambda j: sh.retrieve(ids[j], True, False))
    parts["python_11_id_strings"] = timed(lambda j: [str(r.id) for r in res[j]])
    stored = [[r.payload for r in sh.retrieve(ids[j], True, False)] for j in range(nq)]
    parts["python_unpack_10_payloads"] = timed(lambda j: [unpack_payload(p) for p in stored[j]])
    parts["python_query_vector_check"] = timed(lambda j: as_query_vector(qv[j], args.dim, "x"))

    def before(v, k, flt):  # the search path before issue 18
        v = as_query_vector(v, args.dim, "x")
        hits = [hit_from_record(r, False) for r in sh.query(q.QueryRequest(
            limit=k + 16, query=q.Query.Nearest(v.tolist()), filter=to_edge_filter(flt), with_payload=False,
            with_vector=False, params=q.SearchParams(hnsw_ef=HNSW_EF)))]  # the same search width as now
        hits.sort(key=lambda h: (h.score, h.id))
        top = hits[:k]
        full = {h.id: h for h in st._retrieve_raw([h.id for h in top], True, False)}
        return [SearchHit(h.id, h.score, full[h.id].payload, None) for h in top if h.id in full]

    ab = {}
    for kind in ("plain", "bbox"):
        flts = [None if kind == "plain" else SearchFilter(bbox=(lon[i] - 0.08, lat[i] - 0.08, lon[i] + 0.08, lat[i] + 0.08))
                for i in qi]
        for j in range(nq):
            assert before(qv[j], 10, flts[j]) == st.search(qv[j], k=10, flt=flts[j]), j
        fns = {"before": lambda j: before(qv[j], 10, flts[j]), "now": lambda j: st.search(qv[j], k=10, flt=flts[j]),
               "floor_10_ids": lambda j: sh.query(req(j, 10, flt=to_edge_filter(flts[j])))}
        ts = {k: {"wall": [], "cpu": []} for k in fns}
        for _ in range(9):
            for name, fn in fns.items():
                w, c = time.perf_counter(), time.process_time()
                for j in range(0, nq, 2):
                    fn(j)
                ts[name]["wall"].append((time.perf_counter() - w) / (nq // 2) * 1e6)
                ts[name]["cpu"].append((time.process_time() - c) / (nq // 2) * 1e6)
        ab[kind] = {k: {m: round(float(np.median(v)), 1) for m, v in d.items()} for k, d in ts.items()}
        for name in ("before", "now"):
            ab[kind][f"{name}_over_floor_cpu"] = round(ab[kind][name]["cpu"] / ab[kind]["floor_10_ids"]["cpu"], 2)
        print(kind, ab[kind], file=sys.stderr, flush=True)
    st.close()
    print(json.dumps({"points": args.points, "dim": args.dim, "queries": nq, "parts_us": parts, "ab_us_median": ab}))


if __name__ == "__main__":
    main()
