"""Resident memory of building the product's index, per point: what a 10M build needs.

Builds the store of ``query.py`` (the same synthetic points and full tile
payloads, written by ``EdgeStore.upsert`` and optimised) at each ``--points``
size, each in its own child process, while a thread samples the process's
anonymous and file-backed resident memory (``/proc/self/status``) every
``--every`` seconds.  Anonymous memory cannot be paged out on a machine
without swap, so its peak is what decides whether a build fits; file-backed
pages (mmap'd segments) are dropped under memory pressure.  The slope between
two sizes extrapolates to larger builds (and calibrates ``query.py``'s
up-front memory check).

    python benchmarks/build_memory.py --points 100000,300000 [--dim 32] [--workdir DIR]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


FIELDS = ("VmRSS", "RssAnon", "RssFile")


def status_kib() -> dict:
    """This process's resident memory fields (KiB), through ``query_open.status_kib``."""
    from query_open import status_kib as field_kib

    return {f: field_kib(f) for f in FIELDS}


class Sampler(threading.Thread):
    """Peak of each memory field while a phase runs."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        self.every, self.phase, self.peaks, self.stop = every, "start", {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            s = status_kib()
            peak = self.peaks.setdefault(self.phase, {})
            for k, v in s.items():
                peak[k] = max(peak.get(k, 0), v)
            self.stop.wait(self.every)


def one(n: int, dim: int, work: Path, every: float) -> dict:
    """Build one index of ``n`` points in this process; peak memory per phase (GiB)."""
    import uuid

    from query import build_store, make_data

    sampler = Sampler(every)
    sampler.start()
    sampler.phase = "data"
    vec, lon, lat, scene, epoch = make_data(n, dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    base = status_kib()
    sampler.phase = "upsert"
    marks = {}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # build_store upserts, flushes, then optimises: mark the phase when optimise starts
    import rsir_stac.store.edge as edge

    orig = edge.EdgeStore.optimize

    def optimize(self, *a, **k):
        sampler.phase = "optimize"
        marks["before_optimize"] = status_kib()
        return orig(self, *a, **k)

    edge.EdgeStore.optimize = optimize
    store, built = build_store(work / "edge", n, dim, ids, vec, lon, lat, scene, epoch, log)
    sampler.phase = "after"
    time.sleep(2 * every)
    store.close()
    sampler.stop.set()
    sampler.join()
    gib = 2 ** 20
    return {"points": n, "build": built,
            "baseline_anon_gib": round(base["RssAnon"] / gib, 3),
            "before_optimize_anon_gib": round(marks.get("before_optimize", {}).get("RssAnon", 0) / gib, 3),
            "peaks_gib": {ph: {k: round(v / gib, 3) for k, v in p.items()} for ph, p in sampler.peaks.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", default="100000,300000")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--every", type=float, default=0.2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="rsir-buildmem-"))
    if args.child is not None:
        print(json.dumps(one(args.child, args.dim, root, args.every)))
        return
    rows = []
    for n in (int(x) for x in args.points.split(",")):
        work = root / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, __file__, "--child", str(n), "--dim", str(args.dim),
                            "--every", str(args.every), "--workdir", str(work)], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"build of {n:,} points failed: {r.stderr.strip().splitlines()[-1:]}")
        row = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    out = {"dim": args.dim, "rows": rows}
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        dn = b["points"] - a["points"]
        slope = {}
        for key in ("RssAnon", "VmRSS"):
            pa = max(p.get(key, 0) for p in a["peaks_gib"].values())
            pb = max(p.get(key, 0) for p in b["peaks_gib"].values())
            slope[key] = round((pb - pa) * 2 ** 30 / dn, 1)
        out["peak_bytes_per_point"] = slope
        out["projected_peak_anon_gib_10M"] = round(
            max(p.get("RssAnon", 0) for p in b["peaks_gib"].values())
            + slope["RssAnon"] * (10_000_000 - b["points"]) / 2 ** 30, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
