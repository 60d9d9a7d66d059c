"""Time of ``classify`` (fit on 10 labels, score every point) on a synthetic Edge index.

Uses the synthetic tiles of ``benchmarks/analyst_query.py`` (60 clusters of
unit vectors at the shipped model's dimension, full tile payloads over 40
scenes): ``--index DIR`` reuses the index either script built there (with the
same ``--points``) or builds it there, without HNSW (classify scrolls every
point anyway); without ``--index`` a temporary one is built and removed.  5 tiles of cluster 0 are labelled positive and 5
of other clusters negative, and :func:`rsir_stac.classify.classify` runs over
all points.  Reports the total, the fit phase (label lookup, background draw,
held-out split, two fits; includes importing scikit-learn), the scan phase
(scroll + scoring), the hit phase (payloads of the hits), the scan rate, and
recall/precision of cluster 0 among the hits.

Usage::

    python benchmarks/classify.py [--points 100000] [--index DIR] [--batch N] [--profile FILE]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=None, help="Points per scrolled batch (default: classify's).")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--index", default=None, help="Index folder built by analyst_query.py to reuse (or build).")
    ap.add_argument("--profile", default=None, help="Write cProfile stats of the classify call here.")
    args = ap.parse_args()

    from analyst_query import open_or_build

    from rsir_stac.classify import classify
    from rsir_stac.labels import Label, LabelSet
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.search import Index

    bundle = load_bundle()
    n = args.points
    path = Path(args.index) if args.index else Path(tempfile.mkdtemp(prefix="rsir-classify-")) / "idx"
    store, data, timings = open_or_build(path, n, bundle.dim, bundle.model_id, optimize=False)
    ids, cl = data["ids"], data["cluster"]
    pos = [int(i) for i in np.flatnonzero(cl == 0)[:5]]
    neg = [int(i) for i in np.flatnonzero(cl != 0)[:5]]
    labels = LabelSet(tuple([Label(ids[i], "positive") for i in pos] + [Label(ids[i], "negative") for i in neg]))
    kw = {} if args.batch is None else {"batch": args.batch}
    calls = []
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t, cpu = time.perf_counter(), time.process_time()
    rep = classify(Index(store, bundle), labels, threshold=args.threshold,
                   progress=lambda done, total: calls.append(done), **kw)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    truth = int(np.sum(cl == 0))
    got = {h.id for h in rep.hits}
    tp = sum(1 for i in np.flatnonzero(cl == 0) if ids[i] in got)
    store.close()
    if not args.index:
        shutil.rmtree(path.parent, ignore_errors=True)
    print(json.dumps({"points": n, "dim": bundle.dim, **timings, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "load_avg_1min": round(os.getloadavg()[0], 1), **rep.summary(),
                      "hits_s": round(rep.seconds - rep.fit_seconds - rep.scan_seconds, 2),
                      "progress_calls": len(calls), "scan_us_per_point": round(rep.scan_seconds / n * 1e6, 2),
                      "cluster_recall": round(tp / truth, 3), "cluster_precision": round(tp / max(1, len(got)), 3)}))


if __name__ == "__main__":
    main()
