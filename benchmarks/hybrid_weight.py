"""Hybrid weight and PCA whitening, post hoc on one trained bundle (issue 12).

The hybrid output of recipe v2/v3 is ``[z, w·g] / sqrt(1 + w²)`` (``z`` the
triplet embedding, ``g`` the pooled backbone features, both unit length), so
the weight ``w`` and the reducer can be changed without retraining.  For each
``w`` and whitening power ``p`` this refits PCA on the bundle's training split
(scaled by ``λ^(-p/2)``, Jégou & Chum 2012; ``p = 0`` is the shipped plain PCA)
and scores mAP on its test split at ×1 and ×8 and, for a leave-classes-out
bundle, on all images of its held-out classes at ×1 and ×8.

    python benchmarks/hybrid_weight.py --model runs/lco-gem/bundle --weights 0.5,1,1.5 --powers 0,0.25,0.5

Last line: one JSON object with every row.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def embed_split(b, data: str) -> tuple[np.ndarray, dict]:
    """The unreduced outputs of bundle ``b`` on its recorded split of the labelled folder ``data``:
    ``(training split at ×1, {"test_x1", "test_x8"[, "held_out_x1", "held_out_x8"]: (X, labels)})``, the
    held-out sets (every image of the classes a leave-classes-out bundle never saw) when it has them."""
    from rsir_stac.model.data import (load_images, only_classes, scan_image_folder, stratified_split,
                                      without_classes)
    from rsir_stac.model.transforms import downscale

    tr = b.meta["training"]
    held = tuple(tr.get("held_out_classes") or ())
    full = scan_image_folder(data)
    folder = without_classes(full, held)
    train_ix, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr["split_seed"])
    e = b.embedder()

    def emb(paths, f):
        return e.embed([downscale(im, f) for im in load_images(paths)], reduce=False)

    t = time.time()
    P = folder.paths
    fit_x = emb([P[i] for i in train_ix], 1)
    sets = {"test_x1": (emb([P[i] for i in test_ix], 1), folder.labels[test_ix]),
            "test_x8": (emb([P[i] for i in test_ix], 8), folder.labels[test_ix])}
    if held:
        hf = only_classes(full, held)
        sets["held_out_x1"] = (emb(hf.paths, 1), hf.labels)
        sets["held_out_x8"] = (emb(hf.paths, 8), hf.labels)
    print(f"embedded in {time.time() - t:.0f} s", file=sys.stderr)
    return fit_x, sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="Bundle directory or shipped name (default: the default model).")
    ap.add_argument("--data", default=os.environ.get("RSIR_UCMERCED", "../shared/data/ucmerced"))
    ap.add_argument("--weights", default="0.5,0.75,1,1.5")
    ap.add_argument("--powers", default="0,0.25,0.5")
    ap.add_argument("--dim", type=int, default=None, help="PCA dimension (default: the bundle's).")
    args = ap.parse_args()

    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.bundle import load_bundle

    b = load_bundle(args.model)
    if float(b.meta.get("hybrid", 0.0)) <= 0:
        sys.exit(f"model {b.model_id} has no hybrid output (recipe v1): nothing to reweight; pass a v2/v3 bundle")
    dim = args.dim or b.dim
    fit_x, sets = embed_split(b, args.data)
    D = b.net.embedding_dim

    def recombine(X, w):  # undo the shipped weight (1/sqrt(1 + h²) scaling, h = meta hybrid) and apply w
        h = float(b.meta["hybrid"])
        z, g = X[:, :D] * np.sqrt(1 + h * h), X[:, D:] * np.sqrt(1 + h * h) / h
        return np.hstack([z, w * g]) / np.sqrt(1 + w * w)

    def unit(Z):
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    rows = []
    for w in [float(x) for x in args.weights.split(",")]:
        Xf = recombine(fit_x, w)
        mu = Xf.mean(0)
        _, S, Vt = np.linalg.svd(Xf - mu, full_matrices=False)
        lam = S[:dim] ** 2 / len(Xf)
        for p in [float(x) for x in args.powers.split(",")]:
            C = Vt[:dim] / (lam ** (p / 2))[:, None]
            row = {"w": w, "p": p, "dim": dim}
            for name, (X, y) in sets.items():
                m = retrieval_metrics(unit((recombine(X, w) - mu) @ C.T), y)
                row[name] = round(m["mAP"], 4)
                if name == "test_x1":
                    row["test_x1_P@10"] = round(m["P@10"], 4)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print(json.dumps({"model": b.model_id, "rows": rows}))


if __name__ == "__main__":
    main()
