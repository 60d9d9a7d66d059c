"""Reindex: peak memory against index size, and speed next to ingest.

Generated deflate GeoTIFFs (``--scene`` px square, blocky RGB) are ingested
with model A into a fresh embedded index, then reindexed with model B, each
step in a fresh process (peak RSS from ``VmHWM``).  The run is repeated for
indexes of 1 and ``--scenes`` scenes, to show that the reindex's memory does
not grow with the index.

Models: by default two cheap bundles made here (EfficientNet-Lite0 with
random weights at a 64 px input and 64 px tiles; B is A's network with an
8-d PCA reducer), so the figures show the pipeline rather than the network.
``--model A --to-model B`` uses real bundles (tiling from A).

Usage::

    python benchmarks/reindex.py [--scene 2048] [--scenes 8] [--model A --to-model B]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_scene  # noqa: E402

_HWM = "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"


def make_bundles(root: Path) -> tuple[str, str]:
    """Two small real bundles: A (no reducer, 16-d) and B (A's network + PCA 8-d)."""
    import torch

    from rsir_stac.model.bundle import save_bundle
    from rsir_stac.model.net import EmbeddingNet
    from rsir_stac.reduce import make_reducer

    torch.manual_seed(0)
    net = EmbeddingNet("efficientnet_lite0", 16, pretrained=False).eval()
    meta = {"name": "bench-a", "input_size": 64, "tile_size": 64, "gsd_m": 1.0,
            "normalisation": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    a = save_bundle(root / "a", net, None, dict(meta))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(32)]
    with a.embedder() as emb:
        z = emb.embed(images, reduce=False)
    b = save_bundle(root / "b", net, make_reducer("pca", 8).fit(z), {**meta, "name": "bench-b"})
    return str(a.path), str(b.path)


def run_child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest_then_reindex(scenes: list[Path], model_a: str, model_b: str, work: Path) -> dict:
    old, new = work / "old", work / "new"
    ing = run_child(
        "import json\n"
        "from rsir_stac.malloc import tune_allocator; tune_allocator()\n"
        "from rsir_stac.ingest import ingest\n"
        f"r = ingest({[str(s) for s in scenes]!r}, index={str(old)!r}, model={model_a!r})\n"
        + _HWM +
        "print(json.dumps({'peak_rss_mb': int(hwm) / 1024, 'tiles': r.points_written, 'seconds': r.seconds}))\n"
    )
    rei = run_child(
        "import json\n"
        "from rsir_stac.malloc import tune_allocator; tune_allocator()\n"
        "from rsir_stac.reindex import reindex\n"
        f"r = reindex({str(old)!r}, {str(new)!r}, model={model_b!r})\n"
        "assert r.ok, r.as_dict()\n"
        + _HWM +
        "print(json.dumps({'peak_rss_mb': int(hwm) / 1024, 'tiles': r.points_written, 'seconds': r.seconds}))\n"
    )
    for r in (ing, rei):
        r["tiles_per_s"] = round(r["tiles"] / max(r["seconds"], 1e-9), 1)
        r["peak_rss_mb"] = round(r["peak_rss_mb"], 1)
    return {"ingest": ing, "reindex": rei}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", type=int, default=2048, help="Scene side in pixels.")
    ap.add_argument("--scenes", type=int, default=8, help="Scenes in the larger index.")
    ap.add_argument("--model", default=None, help="Bundle A (default: a small one made here).")
    ap.add_argument("--to-model", default=None, help="Bundle B (with --model).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        if args.model:
            model_a, model_b = args.model, args.to_model
            from rsir_stac.model.bundle import load_bundle

            gsd = load_bundle(model_a).gsd or 1.0
        else:
            model_a, model_b = make_bundles(root)
            gsd = 1.0
        scenes = []
        for i in range(args.scenes):
            p = root / f"scene{i}.tif"
            make_scene(p, args.scene, gsd, seed=i)
            scenes.append(p)
        results = {}
        for n in sorted({1, args.scenes}):
            work = root / f"run{n}"
            work.mkdir()
            results[n] = ingest_then_reindex(scenes[:n], model_a, model_b, work)
            r = results[n]
            print(f"{n} scene(s), {r['ingest']['tiles']} tiles: ingest {r['ingest']['tiles_per_s']} tiles/s "
                  f"peak {r['ingest']['peak_rss_mb']} MB; reindex {r['reindex']['tiles_per_s']} tiles/s "
                  f"peak {r['reindex']['peak_rss_mb']} MB", flush=True)
    print(json.dumps({"scene_px": args.scene, "model": args.model or "small random-weight pair",
                      "runs": {str(k): v for k, v in results.items()}}))


if __name__ == "__main__":
    main()
