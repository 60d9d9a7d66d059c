"""Cost of the digest ledger, `check`, snapshot and restore on a synthetic Edge index.

    python benchmarks/integrity.py --points 20000 --dim 32

Writes N points with a realistic tile payload twice (ledger on / off), then
times check_index, reading every point with its vector with and without the
digest check of each page (export and migrate), snapshot and restore.  Prints figures; the last line is one
JSON object.
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


def _payload(i: int) -> dict:
    lon, lat = -95.4 + (i % 500) * 1e-4, 29.7 + (i // 500) * 1e-4
    return {
        "item_id": f"item-{i // 300}", "collection": "bench", "asset": "visual", "href": f"/data/scene-{i // 300}.tif",
        "location": {"lon": lon, "lat": lat}, "datetime_epoch": 1.5e9 + i, "datetime": "2017-08-31T00:00:00Z",
        "bbox": [lon - 1e-4, lat - 1e-4, lon + 1e-4, lat + 1e-4], "crs": "EPSG:32615", "gsd": 0.3,
        "window": {"col_off": i, "row_off": 0, "width": 256, "height": 256},
        "grid": {"col_off": i, "row_off": 0, "width": 256, "height": 256},
        "corners": [{"lon": lon, "lat": lat}] * 4, "model_id": "bench-model",
        "tiling": {"tile_size": 256, "stride": 256, "edge": "shift", "gsd": 0.3, "bands": [1, 2, 3]},
    }


def _write(path: Path, points, dim: int, ledger: bool) -> float:
    from rsir_stac.store.edge import EdgeStore

    with EdgeStore(path) as s:
        s.ensure_collection(dim, "bench-model")
        if not ledger:
            s._ledger.close()
            s._ledger = None
        t = time.perf_counter()
        for i in range(0, len(points), 64):
            s.upsert(points[i:i + 64])
        s.flush()
        return time.perf_counter() - t


def _read(path: Path, ledger: bool) -> float:
    """Seconds to read every point with its vector (as export and migrate do); with ``ledger`` each
    page's vectors are checked against their digests, without it not (the ledger set aside)."""
    from rsir_stac.store.edge import EdgeStore

    with EdgeStore(path, read_only=True) as s:
        if not ledger:
            s._ledger.close()
            s._ledger = None
        t = time.perf_counter()
        n = sum(1 for _ in s.iter_points(with_vectors=True))
        took = time.perf_counter() - t
    assert n > 0
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=32)
    args = ap.parse_args()
    from rsir_stac.store.base import Point
    from rsir_stac.store.integrity import check_index
    from rsir_stac.store.snapshot import restore, snapshot
    from rsir_stac.store.space import tree_bytes

    rng = np.random.default_rng(0)
    pts = [Point(str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))), rng.normal(size=args.dim).astype("f4"), _payload(i))
           for i in range(args.points)]
    root = Path(tempfile.mkdtemp(prefix="rsir-bench-integrity-"))
    try:
        off = _write(root / "off", pts, args.dim, ledger=False)
        on = _write(root / "on", pts, args.dim, ledger=True)
        t = time.perf_counter()
        rep = check_index(root / "on")
        t_check = time.perf_counter() - t
        assert rep.ok and rep.verified == args.points, rep.findings
        read_plain = min(_read(root / "on", ledger=False) for _ in range(3))
        read_checked = min(_read(root / "on", ledger=True) for _ in range(3))
        t = time.perf_counter()
        snap = snapshot(root / "on", root / "s.tar.gz")
        t_snap = time.perf_counter() - t
        t = time.perf_counter()
        restore(root / "s.tar.gz", root / "restored")
        t_restore = time.perf_counter() - t
        res = {
            "points": args.points, "dim": args.dim,
            "upsert_s_without_ledger": round(off, 2), "upsert_s_with_ledger": round(on, 2),
            "ledger_overhead_pct": round(100 * (on - off) / off, 1),
            "ledger_bytes": (root / "on" / "rsir_tiles.digests.sqlite").stat().st_size,
            "check_s": round(t_check, 2), "check_points_per_s": round(args.points / t_check),
            "read_vectors_s_unchecked": round(read_plain, 3), "read_vectors_s_digest_checked": round(read_checked, 3),
            "read_digest_overhead_pct": round(100 * (read_checked - read_plain) / read_plain, 1),
            "snapshot_s": round(t_snap, 2), "snapshot_bytes": snap.archive_bytes,
            "index_bytes_allocated": tree_bytes(root / "on"), "restore_s": round(t_restore, 2),
        }
        for k, v in res.items():
            print(f"{k:28s} {v}")
        print(json.dumps(res))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
