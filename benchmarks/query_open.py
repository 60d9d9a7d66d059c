"""Open a built index in a fresh process, as ``search``/``serve`` do, and query it.

Run by ``benchmarks/query.py`` after its build (so the figures exclude the
benchmark's own synthetic points): time to open, resident memory after opening
and at the end, and query latency.  Stand-alone:

    python benchmarks/query_open.py --index DIR/edge --queries q.npy [--specs specs.json]

``q.npy`` holds Q×D float32 query vectors; ``specs.json`` maps a query kind
(bbox, radius, polygon) to Q filters, each ``query_engines.Spec`` as a dict
(degrees, metres), as ``query.py`` writes it.  With ``--floor DIR`` (the raw engine's shard that
``query.py`` builds, closed by then) the same fresh process also opens the
floor and runs its queries interleaved with the store's, so the store/floor
ratio compares two freshly opened indexes on equal terms
(``store_over_floor_p50`` per query kind).
Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _tuple(v):
    return None if v is None else tuple(map(float, v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--specs", default=None, help="JSON: kind -> one Spec dict per query")
    ap.add_argument("--boxes", default=None, help="Q x 4 (W, S, E, N) degree boxes (.npy), as earlier runs wrote")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--floor", default=None, help="raw-engine floor shard to query interleaved with the store")
    args = ap.parse_args()

    from query import pct
    from query_engines import RawEdge, Spec

    from rsir_stac.store import SearchFilter, open_store

    q = np.load(args.queries)
    loaded = json.loads(Path(args.specs).read_text()) if args.specs else {}
    if args.boxes:
        loaded.setdefault("bbox", [{"bbox": b, "near": None, "ring": None} for b in np.load(args.boxes).tolist()])
    gib = 2 ** 20  # KiB per GiB
    t = time.perf_counter()
    store = open_store(args.index, read_only=True)
    open_s = time.perf_counter() - t
    out = {"open_s": round(open_s, 2), "rss_gib_after_open": round(status_kib("VmRSS") / gib, 2),
           "anon_gib_after_open": round(status_kib("RssAnon") / gib, 2)}
    specs = {"plain": [Spec("plain")] * len(q)}
    for kind, rows in loaded.items():
        specs[kind] = [Spec(kind, bbox=_tuple(r["bbox"]), near=_tuple(r["near"]),
                            ring=tuple(map(tuple, r["ring"])) if r["ring"] else None) for r in rows]
    kinds = {kind: [None if s.kind == "plain" else SearchFilter(bbox=s.bbox, near=s.near, polygon=s.ring) for s in ss]
             for kind, ss in specs.items()}
    floor = RawEdge.load(Path(args.floor)) if args.floor else None
    for kind, flts in kinds.items():
        for _ in range(2):  # first pass warms the page cache; the second is timed
            secs, fsecs = [], []
            for j, (v, f) in enumerate(zip(q, flts)):
                for who in (("store", "floor") if j % 2 == 0 else ("floor", "store")):  # interleaved, alternating
                    if who == "floor" and floor is None:
                        continue
                    t = time.perf_counter()
                    if who == "store":
                        store.search(v, k=args.k, flt=f)
                    else:
                        floor.search(v, args.k, specs[kind][j])
                    (secs if who == "store" else fsecs).append(time.perf_counter() - t)
        out[kind] = {"p50_ms": pct(secs, 50), "p99_ms": pct(secs, 99)}
        if floor is not None:
            out[kind].update(floor_p50_ms=pct(fsecs, 50), floor_p99_ms=pct(fsecs, 99),
                             store_over_floor_p50=round(pct(secs, 50) / max(1e-9, pct(fsecs, 50)), 2))
    store.close()
    if floor is not None:
        floor.close()
    out.update(peak_rss_gib=round(status_kib("VmHWM") / gib, 2), rss_gib_end=round(status_kib("VmRSS") / gib, 2),
               anon_gib_end=round(status_kib("RssAnon") / gib, 2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
