"""Pooled mid-level backbone features, alone and added to the hybrid output (issue 12).

The v2/v3 recipes freeze the stem and the first blocks, so pooled features of
those blocks are ImageNet features the stored vector could carry at no extra
inference cost.  For a leave-classes-out bundle this pools (the bundle's own
pooling) the outputs of blocks ``--blocks``, then scores on the 16-class test
split and on all images of the held-out classes (×1, ×8): each block alone
(unit length, no PCA), and ``[hybrid output, w·block]`` with PCA 64 refitted on
the training split.

    python benchmarks/mid_features.py --model runs/lco-gem/bundle [--blocks 3,5,8,11]

Last line: one JSON object with every row.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="A leave-classes-out bundle (recipe v2/v3).")
    ap.add_argument("--data", default=os.environ.get("RSIR_UCMERCED", "../shared/data/ucmerced"))
    ap.add_argument("--blocks", default="3,5,8,11")
    ap.add_argument("--weights", default="0.5,1")
    args = ap.parse_args()

    import torch

    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.data import (load_images, only_classes, scan_image_folder, stratified_split,
                                      without_classes)
    from rsir_stac.model.transforms import downscale, to_input

    b = load_bundle(args.model)
    net, bb = b.net.eval(), b.net.backbone.net
    tr = b.meta["training"]
    held = tuple(tr.get("held_out_classes") or ())
    if not held or float(b.meta.get("hybrid", 0)) <= 0:
        sys.exit(f"model {b.model_id} needs held-out classes and a hybrid output (recipe v2/v3)")
    full = scan_image_folder(args.data)
    folder = without_classes(full, held)
    train_ix, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr["split_seed"])
    hf = only_classes(full, held)
    norm = b.meta["normalisation"]
    blocks = [int(x) for x in args.blocks.split(",")]

    def feats(paths, f):
        out: dict[str, list] = {k: [] for k in ["hybrid", *(f"b{n}" for n in blocks)]}
        for s in range(0, len(paths), 32):
            x = to_input([downscale(im, f) for im in load_images(paths[s:s + 32])], int(b.meta["input_size"]),
                         norm["mean"], norm["std"])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                h = bb._swish(bb._bn0(bb._conv_stem(x)))
                for i, block in enumerate(bb._blocks):
                    h = block(h, drop_connect_rate=0.0)
                    if i + 1 in blocks:
                        out[f"b{i + 1}"].append(net.pool(h).float())
                pooled = net.pool(bb._swish(bb._bn1(bb._conv_head(h))))
                out["hybrid"].append(net.embed_features(pooled).float())
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    t = time.time()
    P = folder.paths
    sets = {"fit": feats([P[i] for i in train_ix], 1), "test_x1": feats([P[i] for i in test_ix], 1),
            "held_out_x1": feats(hf.paths, 1), "held_out_x8": feats(hf.paths, 8)}
    ys = {"test_x1": folder.labels[test_ix], "held_out_x1": hf.labels, "held_out_x8": hf.labels}
    print(f"embedded in {time.time() - t:.0f} s", file=sys.stderr)

    def unit(Z):
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    rows = []

    def score(name, build, pca):
        row = {"variant": name}
        if pca:
            Xf = build("fit")
            mu = Xf.mean(0)
            C = np.linalg.svd(Xf - mu, full_matrices=False)[2][:b.dim]
        for s, y in ys.items():
            row[s] = round(retrieval_metrics(unit((build(s) - mu) @ C.T) if pca else unit(build(s)), y)["mAP"], 4)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)

    for n in blocks:
        score(f"block {n} alone", lambda s, n=n: sets[s][f"b{n}"], False)
    score("hybrid (shipped form)", lambda s: sets[s]["hybrid"], True)
    for n in blocks:
        for w in [float(x) for x in args.weights.split(",")]:
            score(f"hybrid + {w:g}*block {n}", lambda s, n=n, w=w: np.hstack([sets[s]["hybrid"],
                                                                             w * unit(sets[s][f"b{n}"])]), True)
    print(json.dumps({"model": b.model_id, "rows": rows}))


if __name__ == "__main__":
    main()
