"""Peak memory and time of evaluate's retrieval metrics on N seeded vectors (RESULTS §3).

``rsir_stac.evaluate.retrieval_metrics`` once sorted every image against every other first: an
N x N int64 array, 8 GB for NWPU-RESISC45's 31,500 images.  This scores ``--points`` seeded 64-d
vectors in 45 classes and prints the figures, the time and the process's peak RSS, so that two
checkouts can be compared one after the other (``PYTHONPATH=CHECKOUT python ...``).

Usage::

    python benchmarks/evaluate_memory.py [--points 12000] [--classes 45] [--dim 64]

Ends with one JSON line: points, mAP, P@10, ANMRR, seconds, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=12000)
    ap.add_argument("--classes", type=int, default=45)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()
    from rsir_stac.evaluate import retrieval_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.points)
    X = rng.normal(size=(args.points, args.dim)) + y[:, None] * 0.05
    t = time.perf_counter()
    m = retrieval_metrics(X, y)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"points": args.points, "mAP": round(m["mAP"], 6), "P@10": round(m["P@10"], 6),
                      "ANMRR": round(m["ANMRR"], 6), "seconds": round(seconds, 1), "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()
