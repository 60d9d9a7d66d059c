"""Polygon searches through their envelope (store.envelope) against the polygon alone.

Builds (or reuses, in ``--workdir``) a product store of ``query.make_data`` points written
scene after scene into capped segments, then runs the benchmark's polygon queries (an
octagon of radius 0.05 degrees around each query's own point, k = 10) through
``Store.search`` twice per query, interleaved (each mode first on every other query): as shipped (the envelope searched first and
refined exactly, the polygon asked itself only when too few of the envelope's nearest lie
inside) and with the envelope plan switched off (the polygon sent to the engine, as
before).  Recall@10 against numpy.  With ``--scenes 4`` 1M points are as dense as 10M
points in the benchmark's 40 scenes (RESULTS section 13.9); ``--scenes 40`` is the
benchmark's own 1M density.  Engine-level forms (polygon and bbox together, n-gons of 4 to
128 corners) were probed by hand: RESULTS section 13.15.

    python benchmarks/polygon_envelope.py --points 1000000 --scenes 4 --workdir DIR

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
    from query import K, dense_probe, pct, truth
    from query_engines import match_mask, query_spec

    import rsir_stac.store.base as base
    from rsir_stac.store import SearchFilter

    d = dense_probe(__doc__.split("\n\n")[0], 200, "rsir-polygon-")
    args, vec, lon, lat, qi, queries, sqn, store = d[:8]
    n = args.points
    build_s = d.build_s
    specs = [query_spec("polygon", float(lon[i]), float(lat[i])) for i in qi]
    masks = [match_mask(s, lon, lat) for s in specs]
    wants = [set(truth(vec, sqn, queries[j], masks[j]).tolist()) for j in range(len(qi))]
    shipped = base.envelope_plan
    modes = {"envelope then polygon (shipped)": shipped, "polygon alone (before)": lambda flt: None}
    lat_ms = {m: [] for m in modes}
    rec = {m: [] for m in modes}
    try:
        for j, spec in enumerate(specs):
            flt = SearchFilter(polygon=spec.ring)
            for m, plan in (list(modes.items()) if j % 2 == 0 else list(modes.items())[::-1]):  # either first
                base.envelope_plan = plan
                store.search(queries[j], K, flt)  # warm
                t = time.perf_counter()
                hits = store.search(queries[j], K, flt)
                lat_ms[m].append(time.perf_counter() - t)
                got = [uuid.UUID(h.id).int - 1 for h in hits]
                rec[m].append(len(set(got) & wants[j]) / max(1, min(K, len(wants[j]))))
    finally:
        base.envelope_plan = shipped
        store.close()
    out = {m: {"p50_ms": pct(lat_ms[m], 50), "p99_ms": pct(lat_ms[m], 99),
               "recall@10": round(float(np.mean(rec[m])), 4)} for m in modes}
    for m, v in out.items():
        print(m, v, file=sys.stderr)
    print(json.dumps({"points": n, "scenes": args.scenes, "queries": len(qi), "build_s": build_s,
                      "median_matches": int(np.median([m.sum() for m in masks])), "results": out}))


if __name__ == "__main__":
    main()
