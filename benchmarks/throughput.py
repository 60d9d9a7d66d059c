"""Embedding and ingest throughput on this machine.

(a) plain fp32 eager model on pre-decoded tensors (the baseline), in a fresh
    process with the C allocator as it comes; the same in this process after
    the allocator tuning the CLI applies is reported too,
(b) the optimised path (``Embedder``: fused batch norm, inference_mode,
    channels-last, bf16 autocast where supported, 16-tile batches on one lane
    per core, tuned allocator) on the same pre-decoded tensors,
(c) a full ingest of a generated deflate GeoTIFF of about ``--tiles`` tiles
    (2,025 by default: 11,520² px, about one NAIP quarter-quad at the model's
    0.3 m) into a fresh embedded (Edge) index: windowed reads, resize,
    normalise, embed, upsert, flush, close.  (b) and (c) alternate in one
    process for ``--rounds`` rounds.

Also: peak RSS of ingesting generated COGs of 4,096², ``--mid`` (10,000²) and
``--big`` (20,000²) px, each in a fresh subprocess, to show memory is bounded
and stops growing once GDAL's block cache (256 MB) is full.

Usage::

    python benchmarks/throughput.py [--model BUNDLE] [--tiles 2048] [--big 20000] [--skip-memory] [--rounds 3]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rate(fn, n_items: int, repeat: int = 3) -> float:
    fn()  # warm-up
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = max(best, n_items / (time.perf_counter() - t))
    return best


def make_scene(path: Path, size: int, gsd: float, seed: int = 0, cog: bool = False,
               compress: str = "deflate") -> None:
    """A blocky RGB uint8 GeoTIFF (EPSG:32615) written block by block."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32615",
                   transform=from_origin(500000.0, 3300000.0, gsd, gsd), tiled=True, blockxsize=512,
                   blockysize=512, compress=compress, BIGTIFF="IF_SAFER")
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 2048):
            h = min(2048, size - r)
            coarse = rng.integers(30, 220, size=(3, h // 32 + 1, size // 32 + 1), dtype=np.uint8)
            block = np.kron(coarse, np.ones((1, 32, 32), np.uint8))[:, :h, :size]
            block = block + rng.integers(0, 20, size=block.shape, dtype=np.uint8)
            dst.write(block, window=Window(0, r, size, h))
        if cog:
            dst.build_overviews([2, 4, 8, 16], rasterio.enums.Resampling.average)


def scene_tiles(scene: Path, bundle, n: int) -> list[np.ndarray]:
    """The first ``n`` tiles of ``scene`` as ingest reads them (H×W×3 uint8)."""
    from rsir_stac.tiling import SceneReader, gdal_env

    with SceneReader.open(str(scene), target_gsd=bundle.gsd, tile_size=bundle.tile_size) as reader, gdal_env():
        return [reader.read(ref).pixels for ref in reader.windows()[:n]]


def plain_rate(tensors: Path, model: str | None, batches: int) -> float:
    """Tiles/s of the plain fp32 eager network on saved batches, in a fresh
    process with glibc malloc as it comes (``RSIR_TUNE_MALLOC=0``)."""
    code = (
        "import json, sys, time, torch\n"
        "from rsir_stac.model.bundle import load_bundle\n"
        f"net = load_bundle({model!r}).net.float().eval()\n"
        f"chunks = torch.load({str(tensors)!r})\n"
        "def run():\n"
        "    with torch.no_grad():\n"
        f"        for i in range({batches}):\n"
        "            net(chunks[i % len(chunks)].contiguous())\n"
        "run()\n"
        "best = 0.0\n"
        "for _ in range(2):\n"
        "    t = time.perf_counter(); run()\n"
        f"    best = max(best, {batches} * len(chunks[0]) / (time.perf_counter() - t))\n"
        "print(json.dumps(best))\n"
    )
    env = dict(os.environ, RSIR_TUNE_MALLOC="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def full_batches(x, bs: int) -> list:
    """``x`` (N tiles) cut into batches of exactly ``bs`` tiles, wrapping
    around, so that every batch is full and every tile is used equally often."""
    import math

    period = len(x) * bs // math.gcd(len(x), bs)  # tiles in one full cycle
    return [x[[(s + j) % len(x) for j in range(bs)]] for s in range(0, period, bs)]


def peak_rss_of_ingest(scene: Path, model: str | None) -> dict:
    """Ingest in a fresh process; peak RSS from VmHWM (ru_maxrss would include the
    parent's footprint inherited across fork/exec)."""
    code = (
        "import json, sys\n"
        "from rsir_stac.malloc import tune_allocator; tune_allocator()\n"
        "from rsir_stac.ingest import ingest, IngestOptions\n"
        f"r = ingest([{str(scene)!r}], index=sys.argv[1], model={model!r})\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps({'peak_rss_mb': int(hwm) / 1024,"
        " 'tiles': r.points_written, 'seconds': r.seconds}))\n"
    )
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", code, str(Path(d) / "idx")], capture_output=True, text=True,
                             check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiles", type=int, default=2048,
                    help="Tiles for (b); (c) ingests a square scene of about this many tiles.")
    ap.add_argument("--fp32-tiles", type=int, default=512, help="Tiles for (a), the slow baseline.")
    ap.add_argument("--batch-size", type=int, default=None, help="Default: the embedder's for this machine.")
    ap.add_argument("--big", type=int, default=20000, help="Side of the large scene for the memory check.")
    ap.add_argument("--mid", type=int, default=10000,
                    help="Side of a middle scene: large enough to fill GDAL's block cache (256 MB).")
    ap.add_argument("--huge", type=int, default=0, help="Side of a further, larger scene for the memory check (0: none).")
    ap.add_argument("--compress", default="deflate",
                    help="Compression of the (c) scene; 'none' shows the pipeline without decoding cost.")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="Alternating (b)/(c) measurements.")
    args = ap.parse_args()

    from rsir_stac.malloc import tune_allocator

    tuned = tune_allocator()  # first thing, as the CLI does (see rsir_stac.malloc)
    import torch

    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.transforms import to_input

    bundle = load_bundle(args.model)
    size, tile, gsd = bundle.input_size, bundle.tile_size, bundle.gsd or 1.0
    n, bs = args.tiles, args.batch_size
    # (a) and (b) run on tiles of the very scene (c) ingests: inference speed
    # depends on the pixels here (all-zero tiles run ~1.4x faster than these,
    # uniform noise ~15 % slower), so the ratio must compare like with like.
    work = tempfile.TemporaryDirectory()
    scene = Path(work.name) / "scene.tif"
    make_scene(scene, int(np.sqrt(n)) * tile, gsd, compress=args.compress)
    x = to_input(scene_tiles(scene, bundle, 64), size,
                 **{k: bundle.meta["normalisation"][k] for k in ("mean", "std")})
    emb = bundle.embedder(batch_size=bs)  # (b): default batch size and lanes for this machine
    bs = emb.batch_size
    chunks = full_batches(x, bs)
    batches = n // bs

    # (a) plain fp32 eager on the same batches with torch's default threads, in
    # a fresh process left as a user's would be (no allocator tuning, which is
    # part of the optimised path); also in this tuned process, for reference.
    import copy

    plain = copy.deepcopy(bundle.net).float().eval()
    a_batches = min(n, args.fp32_tiles) // bs
    tensors = Path(work.name) / "chunks.pt"
    torch.save(chunks, tensors)
    a = plain_rate(tensors, args.model, a_batches)

    def run_a():
        with torch.no_grad():
            for i in range(a_batches):
                plain(chunks[i % len(chunks)].contiguous())

    a_tuned = _rate(run_a, a_batches * bs, repeat=2)

    # (b) the optimised embedder on the same tensors: every batch queued on its lanes
    def run_b():
        for job in [emb.submit_tensor(chunks[i % len(chunks)]) for i in range(batches)]:
            job.result()

    # quality of the optimised path: same vectors up to bf16 rounding
    with torch.no_grad():
        za = plain(x.contiguous()).numpy()
    zb = emb.embed_tensor(x)
    cos = float(np.mean(np.sum(za * zb, axis=1)))

    # (c) full ingest: a scene of about n tiles at the model's GSD.  (b) and (c)
    # alternate for --rounds rounds (this machine's speed drifts between
    # minutes); the best of each is reported, and the ratio of each round too.
    bs_rates, c_rates = [], []
    with work as d:
        ingest([str(scene)], index=str(Path(d) / "warm"), model=bundle)  # warm caches
        run_b()
        for r in range(args.rounds):
            t = time.perf_counter()
            run_b()
            bs_rates.append(batches * bs / (time.perf_counter() - t))
            t = time.perf_counter()
            rep = ingest([str(scene)], index=str(Path(d) / f"idx{r}"), model=bundle,
                         options=IngestOptions(batch_size=bs))
            c_rates.append(rep.points_written / (time.perf_counter() - t))
    emb.close()
    b, c = max(bs_rates), max(c_rates)

    out = {"fp32_tiles_s": round(a, 1), "fp32_tuned_malloc_tiles_s": round(a_tuned, 1), "opt_tiles_s": round(b, 1), "ingest_tiles_s": round(c, 1),
           "b_over_a": round(b / a, 2), "c_over_b": round(c / b, 2),
           "c_over_b_per_round": [round(ci / bi, 2) for bi, ci in zip(bs_rates, c_rates)],
           "ingest_tiles": rep.points_written, "compress": args.compress, "bf16": emb.bf16,
           "fp32_vs_opt_mean_cosine": round(cos, 5), "input_size": size, "tile_size": tile,
           "batch_size": bs, "lanes": emb.lanes, "malloc_tuned": tuned, "tiles": batches * bs, "threads": torch.get_num_threads(),
           "model_id": bundle.model_id}

    if not args.skip_memory:
        with tempfile.TemporaryDirectory() as d:
            small, mid, big = Path(d) / "small.tif", Path(d) / "mid.tif", Path(d) / "big.tif"
            make_scene(small, 4096, gsd, cog=True)
            make_scene(mid, args.mid, gsd, cog=True)
            t = time.time()
            make_scene(big, args.big, gsd, cog=True)
            out["big_scene_write_s"] = round(time.time() - t, 1)
            out["rss_small"] = peak_rss_of_ingest(small, args.model)
            out["rss_mid"] = peak_rss_of_ingest(mid, args.model)
            out["rss_big"] = peak_rss_of_ingest(big, args.model)
            out["big_side_px"] = args.big
            if args.huge:
                big.unlink()
                huge = Path(d) / "huge.tif"
                make_scene(huge, args.huge, gsd, cog=True)
                out["rss_huge"] = peak_rss_of_ingest(huge, args.model)
                out["huge_side_px"] = args.huge
    print(json.dumps(out))


if __name__ == "__main__":
    main()
