"""Memory and time of an index's lon/lat extent over N tile bboxes: every box held (as ``Store.info()``
and the STAC export did before the thirty-sixth session) against :class:`BoundsUnion`, which merges
them into covered longitude runs as it goes (issue 18: ten million tiles on one machine).

Boxes are 0.01-degree tiles scattered over a 10 x 10 degree block (a scene catalogue), given one at a
time as the index scan gives them.  Peak Python allocations by ``tracemalloc``; both give the same
extent (checked).

    python benchmarks/extent_memory.py --boxes 1000000

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np


def _peak(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, peak / 2**20, seconds


def main() -> None:
    from rsir_stac.tiling.footprints import BoundsUnion, union_bounds

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boxes", type=int, default=1_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w, s = rng.uniform(-100, -90, args.boxes), rng.uniform(30, 40, args.boxes)
    boxes = np.stack([w, s, w + 0.01, s + 0.01], 1).tolist()

    def held():
        kept = [[float(x) for x in b] for b in boxes]
        return union_bounds(kept)

    def streamed():
        acc = BoundsUnion()
        for b in boxes:
            acc.add_box(b)
        return acc.bounds()

    a, mib_held, s_held = _peak(held)
    b, mib_stream, s_stream = _peak(streamed)
    assert a == b, (a, b)
    row = {"boxes": args.boxes, "extent": list(b), "held_mib": round(mib_held, 1), "held_s": round(s_held, 2),
           "bounds_union_mib": round(mib_stream, 1), "bounds_union_s": round(s_stream, 2)}
    print(f"{args.boxes:,} boxes: every box held {mib_held:.0f} MiB, {s_held:.2f} s; "
          f"BoundsUnion {mib_stream:.1f} MiB, {s_stream:.2f} s")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
