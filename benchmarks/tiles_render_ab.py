"""A/B of warm web-map tile renders in process (tile cache off): two code trees, alternately.

Each run is a fresh process importing ``rsir_stac`` from one tree: it opens an Edge index of
``../shared/data/geotiff`` (built once by :func:`tiles_load.build_index`), renders the 200 tiles
of ``tiles_load.tile_set`` once (cold), then again, timing each warm render.  Alternating the
trees (A B A B ...) keeps a shared machine's load comparable between them.

Usage::

    python benchmarks/tiles_render_ab.py TREE_A TREE_B [--rounds 2] [--work DIR]

Prints one JSON line per run, then a final JSON line with each tree's p50 values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import json, statistics, sys, threading, time, warnings
from pathlib import Path
repo, work = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, repo); sys.path.insert(0, repo + "/benchmarks")
warnings.simplefilter("ignore")
from tiles_load import build_index, tile_set
from rsir_stac.model.bundle import load_bundle
from rsir_stac.search import Index
from rsir_stac.api.tiles import SceneCatalog, scenes_document
bundle = load_bundle(None)
if not (work / "idx").exists():
    build_index(work / "idx", Path(repo).parent / "shared" / "data" / "geotiff", bundle)
idx = Index.open(str(work / "idx"), model=bundle)
scenes, r = SceneCatalog(idx, threading.Lock(), cache_bytes=0).get()
tiles = tile_set(scenes_document(scenes, r), 200)
for t in tiles:
    r.render(*t)
ms = []
for t in tiles:
    t0 = time.perf_counter(); r.render(*t); ms.append((time.perf_counter() - t0) * 1000)
ms.sort()
print(json.dumps({"tree": repo, "tiles": len(ms), "p50_ms": round(statistics.median(ms), 1),
                  "p90_ms": round(ms[int(0.9 * len(ms))], 1), "mean_ms": round(statistics.mean(ms), 1)}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="rsir-tiles-ab-")
    p50: dict[str, list[float]] = {args.tree_a: [], args.tree_b: []}
    for _ in range(args.rounds):
        for tree in (args.tree_a, args.tree_b):
            r = subprocess.run([sys.executable, "-c", CHILD, tree, work], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": tree})
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            if not lines:
                raise SystemExit(f"run on {tree} failed: {r.stderr[-2000:]}")
            print(lines[-1], flush=True)
            p50[tree].append(json.loads(lines[-1])["p50_ms"])
    print(json.dumps({"p50_ms": p50}))


if __name__ == "__main__":
    main()
