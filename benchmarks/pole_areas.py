"""Filtered search latency for areas that reach a pole, next to ordinary areas (RESULTS §13.18).

An area reaching a pole also matches the pole's cap (every centre within
``engine_filters.POLE_CAP`` of it).  The cap was once sent as a range on
``location.lat``, a field the collection does not index, and the engine then read every
payload of the index for such a search.  This builds (or reuses) an embedded index of
``--points`` synthetic tiles (``query.make_data``: 40 scenes across the US, none near a
pole) and times top-10 searches for: the world box, a box just inside it, a US box and
the south polar cap (no tile in it).

Usage::

    python benchmarks/pole_areas.py [--points 200000] [--queries 200] [--workdir DIR]

Ends with one JSON line: p50 / p99 ms and the fewest hits per area, and plain p50.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

AREAS = {
    "world": (-180.0, -90.0, 180.0, 90.0),
    "near_world": (-179.9, -89.9, 179.9, 89.9),
    "us": (-125.0, 25.0, -70.0, 50.0),
    "south_polar_cap": (-180.0, -90.0, 180.0, -60.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=None, help="keep (or reuse) the index here")
    a = ap.parse_args()

    import query

    from rsir_stac.store import SearchFilter, open_store

    work = a.workdir or Path(tempfile.mkdtemp(prefix="pole_areas_"))
    idx = work / "edge"
    vec, lon, lat, scene, epoch = query.make_data(a.points, 32)
    if not idx.exists():
        ids = [str(uuid.UUID(int=i + 1)) for i in range(a.points)]
        store, _ = query.build_store(idx, a.points, 32, ids, vec, lon, lat, scene, epoch, print)
        store.close()
    qs = vec[np.random.default_rng(5).integers(0, a.points, a.queries)]
    store = open_store(str(idx), read_only=True)
    out: dict = {"points": a.points, "queries": a.queries}
    for name, box in AREAS.items():
        flt = SearchFilter(bbox=box)
        for v in qs[:10]:
            store.search(v, 10, flt)
        times, hits = [], []
        for v in qs:
            t = time.perf_counter()
            hits.append(len(store.search(v, 10, flt)))
            times.append(time.perf_counter() - t)
        out[name] = {"p50_ms": round(float(np.median(times)) * 1e3, 3),
                     "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3), "fewest_hits": min(hits)}
    times = []
    for v in qs:
        t = time.perf_counter()
        store.search(v, 10)
        times.append(time.perf_counter() - t)
    out["plain_p50_ms"] = round(float(np.median(times)) * 1e3, 3)
    store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
