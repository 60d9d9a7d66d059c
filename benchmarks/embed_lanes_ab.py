"""Batch size and lanes for CPU inference: what the Embedder defaults rest on.

For each batch size, the optimised network embeds the same pre-decoded
tiles of a generated scene (``--tiles`` in all) either on one lane that uses
every core for each batch (``intra``: torch's intra-op threads) or on one
single-threaded lane per core (``lanes``); the two alternate for ``--rounds``
rounds in one process and the best of each is reported (tiles/s).

    python benchmarks/embed_lanes_ab.py [--batch-sizes 4,8,16,32] [--tiles 1024] [--rounds 2]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from throughput import full_batches, make_scene, scene_tiles  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="4,8,16,32")
    ap.add_argument("--tiles", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from rsir_stac.malloc import tune_allocator

    tune_allocator()
    import torch

    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.transforms import to_input

    bundle = load_bundle()
    norm = bundle.meta["normalisation"]
    with tempfile.TemporaryDirectory() as d:
        scene = Path(d) / "scene.tif"
        make_scene(scene, 8 * bundle.tile_size, bundle.gsd)
        x = to_input(scene_tiles(scene, bundle, 64), bundle.input_size, norm["mean"], norm["std"])
    cores = torch.get_num_threads()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    embedders = {(bs, lanes): bundle.embedder(batch_size=bs, lanes=lanes) for bs in sizes for lanes in (1, cores)}
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for (bs, lanes), emb in embedders.items():
            chunks = full_batches(x, bs)
            n = args.tiles // bs
            jobs = [emb.submit_tensor(chunks[i % len(chunks)]) for i in range(len(chunks))]  # warm the lanes
            for j in jobs:
                j.result()
            t = time.perf_counter()
            for j in [emb.submit_tensor(chunks[i % len(chunks)]) for i in range(n)]:
                j.result()
            key = f"b{bs}_{'intra' if lanes == 1 else 'lanes'}"
            best[key] = max(best.get(key, 0.0), round(n * bs / (time.perf_counter() - t), 1))
    for emb in embedders.values():
        emb.close()
    print(json.dumps({"tiles_s": best, "cores": cores, "input_size": bundle.input_size}))


if __name__ == "__main__":
    main()
