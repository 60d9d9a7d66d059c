"""What a query of many examples costs: the engine's multi-example strategies by example count,
and the exclusion area built around each stored positive (``exclude_within_m``).

    python benchmarks/many_examples.py --points 100000 --dim 64

Builds a synthetic Edge index (``query.make_data``, ``query.build_store``), then times
``best_score``, ``sum_scores`` and ``average`` queries with 16 to 2,000 examples (two thirds
positive), and :func:`rsir_stac.store.exclusion.footprint_exclusion` about one tile footprint at
distances from 10 m to 5,000 km (the PROJ pipeline this session introduced against the CRS
transformers it replaced).  Prints figures; the last line is one JSON object.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _time(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000.0


def _crs_transformers_ms(lon: float, lat: float) -> float:
    """The three CRS-based transformers one exclusion used to build (before the PROJ pipelines)."""
    import pyproj

    def build():
        aeqd = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
        pyproj.Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)
        pyproj.Transformer.from_crs(aeqd, "EPSG:4326", always_xy=True)
        pyproj.Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)

    return _time(build, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    from query import build_store, make_data

    from rsir_stac.store.exclusion import footprint_exclusion
    from rsir_stac.store.query import MAX_EXAMPLES, ExampleQuery

    out: dict = {"points": a.points, "dim": a.dim, "max_examples": MAX_EXAMPLES, "query_ms": {}, "exclusion_ms": {}}
    vec, lon, lat, scene, epoch = make_data(a.points, a.dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(a.points)]
    with tempfile.TemporaryDirectory() as tmp:
        store, built = build_store(Path(tmp) / "idx", a.points, a.dim, ids, vec, lon, lat, scene, epoch,
                                   lambda m: print(m, file=sys.stderr))
        out["build_s"] = built["build_s"]
        rng = np.random.default_rng(1)
        for strategy in ("best_score", "sum_scores", "average"):
            for m in (16, 256, 1000, 2000):
                sel = rng.choice(a.points, m, replace=False)
                q = ExampleQuery(tuple(vec[sel[: m * 2 // 3]]), tuple(vec[sel[m * 2 // 3:]]), strategy=strategy)
                ms = _time(lambda: store.query(q, 10), a.repeat)
                out["query_ms"][f"{strategy}_{m}"] = round(ms, 2)
                print(f"{strategy:10s} {m:5d} examples: {ms:7.1f} ms")
        store.close()
    lo, la, d = -74.5, -8.4, 0.002
    payload = {"location": {"lon": lo, "lat": la},
               "corners": [{"lon": x, "lat": y} for x, y in ((lo - d, la - d), (lo + d, la - d), (lo + d, la + d),
                                                            (lo - d, la + d))]}
    for m in (10.0, 1e3, 1e5, 5e6):
        ms = _time(lambda: footprint_exclusion(payload, m), a.repeat)
        out["exclusion_ms"][f"{m:g}"] = round(ms, 2)
        print(f"exclusion about one footprint at {m:>9g} m: {ms:6.1f} ms")
    out["crs_transformers_ms"] = round(_crs_transformers_ms(lo, la), 2)
    print(f"the three CRS transformers an exclusion built before: {out['crs_transformers_ms']:.1f} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
