"""Recall and latency of graph searches against the HNSW search width (issue 18).

Opens a product index built by ``query.py --workdir DIR`` (``DIR/edge``; the
points are regenerated with ``query.make_data``) and, for ``--queries`` noisy
copies of stored vectors, compares the engine's top 10 with its exact top 10
for plain queries and a collection filter (a third of the points: too many for
the exact scan, so searched through the graph) at each ``hnsw_ef``, then the
same through ``EdgeStore.search`` (which uses ``rsir_stac.store.base.HNSW_EF``).

    python benchmarks/hnsw_ef.py --index DIR/edge --points 1000000 [--efs 100,128,200,400]

Last line: one JSON object.
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
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--efs", default="100,128,200,400")
    ap.add_argument("--collection", default="col-1")
    args = ap.parse_args()

    import qdrant_edge as q

    from rsir_stac.store import SearchFilter, open_store
    from rsir_stac.store.filters import to_edge_filter

    vec = make_data(args.points, args.dim)[0]
    st = open_store(args.index, read_only=True)
    sh = st._shard
    rng = np.random.default_rng(1)
    qi = rng.integers(0, len(vec), args.queries)
    qv = vec[qi] + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    out: dict = {"points": args.points, "engine": {}, "store": {}}
    for kind, flt in (("plain", None), ("collection", SearchFilter(collections=(args.collection,)))):
        f = to_edge_filter(flt)

        def top(v, params, f=f):
            return {str(r.id) for r in sh.query(q.QueryRequest(limit=10, query=q.Query.Nearest(v.tolist()), filter=f,
                                                               params=params, with_payload=False, with_vector=False))}

        exact = [top(v, q.SearchParams(exact=True)) for v in qv]
        for ef in [int(e) for e in args.efs.split(",")]:
            ms, rec = [], []
            for v, ex in zip(qv, exact):
                t = time.perf_counter()
                got = top(v, q.SearchParams(hnsw_ef=ef))
                ms.append(time.perf_counter() - t)
                rec.append(len(got & ex) / 10)
            row = {"p50_ms": round(1000 * float(np.median(ms)), 3), "recall@10": round(float(np.mean(rec)), 4),
                   "min": min(rec)}
            out["engine"][f"{kind}_ef{ef}"] = row
            print(kind, ef, row, file=sys.stderr, flush=True)
        ms, rec = [], []
        for v, ex in zip(qv, exact):
            t = time.perf_counter()
            got = {h.id for h in st.search(v, k=10, flt=flt)}
            ms.append(time.perf_counter() - t)
            rec.append(len(got & ex) / 10)
        out["store"][kind] = {"p50_ms": round(1000 * float(np.median(ms)), 3),
                              "recall@10": round(float(np.mean(rec)), 4), "min": min(rec)}
        print(kind, "store", out["store"][kind], file=sys.stderr, flush=True)
    st.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
