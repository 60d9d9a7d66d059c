"""The product store built in rounds into size-capped segments: build time, memory, latency.

Issue 18's way to 10M tiles on one machine (RESULTS §13.7): a single build holds ~3 KB of
anonymous memory per point until ``optimize`` ends.  The store creates its shard with
segments capped at ``--segment-points`` vectors and optimizes each time that many points
have been written (``rsir_stac.store.segments``), so each round indexes only its own segment.
Same synthetic points, payloads and queries as ``query.py``; queries run in this process
after the build (each once to warm, once timed), recall@10 against numpy.
``--segment-points 0`` builds one uncapped segment (indexes made before the cap), for an A/B.

    python benchmarks/segmented_build.py --points 1000000 --segment-points 250000 --workdir DIR
    python benchmarks/segmented_build.py --points 1000000 --segment-points 125000 --by-scene

Last line: one JSON object.
"""
import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--segment-points", type=int, default=None,
                    help="Points per capped segment (default: the store's SEGMENT_POINTS; 0: no cap).")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--by-scene", action="store_true",
                    help="Write points scene after scene, as ingest writes an item's tiles (default: random order).")
    ap.add_argument("--scenes", type=int, default=40,
                    help="0.2-degree scenes holding the points (density: points / scenes); default as query.py.")
    ap.add_argument("--full-scan-kb", type=int, default=None,
                    help="The shard's HNSW full_scan_threshold in KB of vectors (default: the store's own).")
    args = ap.parse_args()

    from build_memory import Sampler
    from query import K, make_data, payload, pct, preflight, truth
    from query_engines import match_mask, query_spec

    from rsir_stac.malloc import tune_allocator
    from rsir_stac.store import Point, SearchFilter
    from rsir_stac.store.edge import EdgeStore
    from rsir_stac.store.segments import SEGMENT_POINTS, cap_kb

    tune_allocator()
    n, dim = args.points, args.dim
    per = SEGMENT_POINTS if args.segment_points is None else args.segment_points
    # refuse what cannot fit before anything is built or created (query.py's estimate)
    preflight(n, dim, Path(args.workdir or tempfile.gettempdir()), [])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsir-segmented-"))
    mem = Sampler(0.5)
    mem.start()
    vec, lon, lat, scene, epoch = make_data(n, dim, by_scene=args.by_scene, scenes=args.scenes)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    rng = np.random.default_rng(1)
    if args.full_scan_kb is not None:  # a new shard with another threshold, as tests/test_filtered_recall.py
        import functools

        import rsir_stac.store.edge as edge_module
        edge_module.edge_config = functools.partial(edge_module.edge_config, full_scan_kb=args.full_scan_kb)
    store = EdgeStore(work / "edge", segment_points=per or None)
    store.ensure_collection(dim, "bench")
    t0, opt_s = time.time(), []
    optimize = store.optimize

    def timed_optimize() -> bool:  # the store's own rounds call this; time and label each
        mem.phase = f"optimize{len(opt_s)}"
        t = time.time()
        changed = optimize()
        opt_s.append(round(time.time() - t, 1))
        print(json.dumps({"round": len(opt_s) - 1, "optimize_s": opt_s[-1], "at_s": round(time.time() - t0)}),
              file=sys.stderr, flush=True)
        mem.phase = f"upsert{len(opt_s)}"
        return changed

    store.optimize = timed_optimize
    mem.phase = "upsert0"
    for st in range(0, n, 5000):
        store.upsert([Point(ids[i], vec[i], payload(i, lon[i], lat[i], scene[i], epoch[i]))
                      for i in range(st, min(n, st + 5000))])
    store.flush()
    store.optimize()  # the tail, as ingest does at its end
    store.flush()
    build_s = time.time() - t0
    mem.phase = "query"
    qi = rng.integers(0, n, args.queries)
    queries = vec[qi] + 0.05 * rng.normal(size=(args.queries, dim)).astype(np.float32)
    sqn = np.einsum("ij,ij->i", vec, vec)
    res = {}
    for kind in ("plain", "bbox", "radius"):
        lat_ms, rec = [], []
        for j, v in enumerate(queries):
            spec = query_spec(kind, float(lon[qi[j]]), float(lat[qi[j]]))  # as query.py
            flt = None if kind == "plain" else SearchFilter(bbox=spec.bbox, near=spec.near)
            m = match_mask(spec, lon, lat)
            want = set(truth(vec, sqn, v, m).tolist())
            store.search(v, k=K, flt=flt)  # warm
            t = time.perf_counter()
            got = [uuid.UUID(h.id).int - 1 for h in store.search(v, k=K, flt=flt)]
            lat_ms.append(time.perf_counter() - t)
            rec.append(len(set(got) & want) / max(1, min(K, len(want))))
        res[kind] = {"p50_ms": pct(lat_ms, 50), "p99_ms": pct(lat_ms, 99), "recall@10": round(float(np.mean(rec)), 4)}
        print(kind, res[kind], file=sys.stderr, flush=True)
    store.close()
    mem.stop.set()
    mem.join()

    segs = len(list((work / "edge" / "rsir_tiles" / "segments").iterdir()))
    print(json.dumps({"points": n, "order": "by_scene" if args.by_scene else "interleaved",
                      "scenes": args.scenes, "segment_points": per or None, "full_scan_kb": args.full_scan_kb,
                      "max_segment_kb": cap_kb(dim, per) if per else None,
                      "segments": segs,
                      "build_s": round(build_s, 1), "optimize_s": opt_s, "queries": res,
                      "peak_anon_gib": {ph: round(p.get("RssAnon", 0) / 2**20, 3) for ph, p in mem.peaks.items()}}))


if __name__ == "__main__":
    main()
