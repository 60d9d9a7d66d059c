"""Inference speed of two model bundles, A/B in one process (issue 12 target:
the new default within 10 % of the old one).

    python benchmarks/model_speed_ab.py [--a v1] [--b default] [--tiles 512] [--rounds 3]

Both embed the same random 256 px uint8 tiles through the production path
(fused network, bf16 where supported, CPU lanes, reducer); rounds alternate
A and B so machine drift hits both.  Prints tiles/s per round, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default="v1")
    ap.add_argument("--b", default="default")
    ap.add_argument("--tiles", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from rsir_stac.model.bundle import load_bundle

    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(args.tiles)]
    embs = {k: load_bundle(getattr(args, k)).embedder() for k in ("a", "b")}
    for e in embs.values():
        e.embed(tiles[:64])  # warm-up: lanes, allocator, autocast caches
    rates: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(args.rounds):
        for k in ("a", "b") if r % 2 == 0 else ("b", "a"):
            t = time.perf_counter()
            embs[k].embed(tiles)
            rates[k].append(args.tiles / (time.perf_counter() - t))
        print(f"round {r}: A {rates['a'][-1]:.1f} tiles/s, B {rates['b'][-1]:.1f} tiles/s", flush=True)
    a, b = float(np.median(rates["a"])), float(np.median(rates["b"]))
    print(json.dumps({"a": args.a, "b": args.b, "a_tiles_per_s": round(a, 1), "b_tiles_per_s": round(b, 1),
                      "b_over_a": round(b / a, 3)}))


if __name__ == "__main__":
    main()
