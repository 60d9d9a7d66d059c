"""Time of ``classify`` (fit on 10 labels, score every point) on a synthetic Edge index.

Builds ``--points`` tiles at the shipped model's dimension (clustered unit
vectors, tile payloads; no HNSW build: classify scrolls every point anyway),
labels 5 tiles of one cluster positive and 5 of others negative, and runs
:func:`rsir_stac.classify.classify` over all points.  Reports the total, the
fit phase (label lookup, held-out split, two fits; includes importing
scikit-learn) and the scan phase (scroll + scoring), and the scan rate.

Usage::

    python benchmarks/classify.py [--points 100000]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=8192)
    args = ap.parse_args()

    from rsir_stac.classify import classify
    from rsir_stac.labels import Label, LabelSet
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.search import Index
    from rsir_stac.store import Point, open_store

    bundle = load_bundle()
    n, dim = args.points, bundle.dim
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, dim))
    cl = rng.integers(0, 50, n)
    vec = (centres[cl] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    work = Path(tempfile.mkdtemp(prefix="rsir-classify-"))
    store = open_store(str(work / "idx"))
    store.ensure_collection(dim, bundle.model_id)
    t = time.time()
    for s in range(0, n, 5000):
        store.upsert([Point(ids[i], vec[i], {"item_id": f"scene-{i % 40}", "collection": "bench",
                                             "location": {"lon": 0.0, "lat": 0.0}, "bbox": [0, 0, 0.001, 0.001],
                                             "gsd": 0.3}) for i in range(s, min(n, s + 5000))])
    store.flush()
    build_s = time.time() - t
    pos = [int(i) for i in np.flatnonzero(cl == 0)[:5]]
    neg = [int(i) for i in np.flatnonzero(cl != 0)[:5]]
    labels = LabelSet(tuple([Label(ids[i], "positive") for i in pos] + [Label(ids[i], "negative") for i in neg]))
    rep = classify(Index(store, bundle), labels, threshold=0.5, batch=args.batch)
    truth = int(np.sum(cl == 0))
    got = {h.id for h in rep.hits}
    tp = sum(1 for i in np.flatnonzero(cl == 0) if ids[i] in got)
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"points": n, "dim": dim, "build_s": round(build_s, 1), **rep.summary(),
                      "scan_us_per_point": round(rep.scan_seconds / n * 1e6, 1),
                      "cluster_recall": round(tp / truth, 3), "cluster_precision": round(tp / max(1, len(got)), 3)}))


if __name__ == "__main__":
    main()
