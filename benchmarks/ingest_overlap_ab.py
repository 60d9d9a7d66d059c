"""Does overlapping reads with inference pay on this machine?

In one process, alternating for ``--rounds`` rounds on a generated 22 × 22-tile
deflate GeoTIFF at the model's GSD: (b) the optimised model on pre-decoded
tensors, (seq1)/(seq2) read a batch of 32 tiles with 1 or 2 threads and then
embed it (no overlap, no store), and (c) the real overlapped ``ingest`` into a
fresh Edge index.

    python benchmarks/ingest_overlap_ab.py [--rounds 2]

Ends with one JSON line (tiles/s, best of the rounds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from throughput import make_scene, scene_tiles  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from rsir_stac.ingest import ingest
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.transforms import to_input
    from rsir_stac.tiling import SceneReader, gdal_env

    bundle = load_bundle()
    norm = bundle.meta["normalisation"]
    emb = bundle.embedder(batch_size=32)
    with tempfile.TemporaryDirectory() as d:
        scene = Path(d) / "scene.tif"
        make_scene(scene, 22 * bundle.tile_size, bundle.gsd)
        x = to_input(scene_tiles(scene, bundle, 32), bundle.input_size, norm["mean"], norm["std"])  # (b) on its tiles

        def sequential(workers: int) -> int:
            readers = [SceneReader.open(str(scene), target_gsd=bundle.gsd) for _ in range(workers)]
            refs = readers[0].windows()

            def read(job):
                k, part = job
                with gdal_env():
                    return [readers[k].read(ref).pixels for ref in part]

            n = 0
            with ThreadPoolExecutor(workers) as pool:
                for s in range(0, len(refs), 32):
                    batch = refs[s:s + 32]
                    tiles = [t for part in pool.map(read, [(k, batch[k::workers]) for k in range(workers)])
                             for t in part]
                    emb.embed(tiles)
                    n += len(tiles)
            for r in readers:
                r.close()
            return n

        ingest([str(scene)], index=str(Path(d) / "warm"), model=bundle)
        rates: dict[str, list[float]] = {"b": [], "seq1": [], "seq2": [], "c": []}
        for r in range(args.rounds):
            t = time.perf_counter()
            for _ in range(15):
                emb.embed_tensor(x)
            rates["b"].append(15 * 32 / (time.perf_counter() - t))
            for k, w in (("seq1", 1), ("seq2", 2)):
                t = time.perf_counter()
                n = sequential(w)
                rates[k].append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            rep = ingest([str(scene)], index=str(Path(d) / f"idx{r}"), model=bundle)
            rates["c"].append(rep.points_written / (time.perf_counter() - t))
    print(json.dumps({k: round(max(v), 1) for k, v in rates.items()} | {"rounds": args.rounds}))


if __name__ == "__main__":
    main()
