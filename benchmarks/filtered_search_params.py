"""Engine search parameters for geo filters where tiles are dense: HNSW width, ACORN, exact.

Builds (or reuses, in ``--workdir``) a product store of ``query.make_data`` points written
scene after scene into capped segments, then runs the same bbox and 6 km radius queries
straight through the engine with each set of search parameters (ids only, k + 1 like the
store), with recall@10 and the worst query's recall against numpy.  With ``--scenes 4`` 1M
points are as dense as 10M points in the benchmark's 40 scenes: a filter matches more
tiles in a segment than the engine's ``full_scan_threshold``, so the graph answers it
(RESULTS §13.9).

    python benchmarks/filtered_search_params.py --points 1000000 --scenes 4 --workdir DIR

Last line: one JSON object.
"""
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    import qdrant_edge as q
    from query import K, dense_probe, pct, truth
    from query_engines import match_mask, query_spec

    from rsir_stac.store import SearchFilter
    from rsir_stac.store.edge import to_edge_filter

    d = dense_probe(__doc__.split("\n\n")[0], 100, "rsir-filtered-")
    args, vec, lon, lat, qi, queries, sqn, store = d[:8]
    n = args.points

    def acorn(sel):
        return q.AcornSearchParams(enable=True, max_selectivity=sel)

    variants = {
        "ef200": q.SearchParams(hnsw_ef=200), "ef800": q.SearchParams(hnsw_ef=800),
        "ef2000": q.SearchParams(hnsw_ef=2000),
        "ef200+acorn(engine default)": q.SearchParams(hnsw_ef=200, acorn=q.AcornSearchParams(enable=True)),
        "ef100+acorn(1.0)": q.SearchParams(hnsw_ef=100, acorn=acorn(1.0)),
        "ef200+acorn(1.0)": q.SearchParams(hnsw_ef=200, acorn=acorn(1.0)),
        "ef400+acorn(1.0)": q.SearchParams(hnsw_ef=400, acorn=acorn(1.0)),
        "exact": q.SearchParams(exact=True),
    }
    out = {}
    for kind in ("bbox", "radius"):
        specs = [query_spec(kind, float(lon[i]), float(lat[i])) for i in qi]
        masks = [match_mask(s, lon, lat) for s in specs]
        wants = [set(truth(vec, sqn, queries[j], masks[j]).tolist()) for j in range(len(qi))]
        for name, params in variants.items():
            lat_ms, rec = [], []
            for j, spec in enumerate(specs):
                req = q.QueryRequest(limit=K + 1, query=q.Query.Nearest(queries[j].tolist()),
                                     filter=to_edge_filter(SearchFilter(bbox=spec.bbox, near=spec.near)),
                                     with_payload=False, with_vector=False, params=params)
                store._shard.query(req)  # warm
                t = time.perf_counter()
                res = store._shard.query(req)
                lat_ms.append(time.perf_counter() - t)
                got = [uuid.UUID(str(r.id)).int - 1 for r in res][:K]
                rec.append(len(set(got) & wants[j]) / max(1, min(K, len(wants[j]))))
            out[f"{kind} {name}"] = {"p50_ms": pct(lat_ms, 50), "p99_ms": pct(lat_ms, 99),
                                     "recall@10": round(float(np.mean(rec)), 4), "worst": round(float(np.min(rec)), 2),
                                     "median_matches": int(np.median([m.sum() for m in masks]))}
            print(kind, name, out[f"{kind} {name}"], file=sys.stderr, flush=True)
    store.close()
    print(json.dumps({"points": n, "scenes": args.scenes, "segment_points": args.segment_points, "results": out}))


if __name__ == "__main__":
    main()
