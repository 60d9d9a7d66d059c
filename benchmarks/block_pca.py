"""Block PCA, post hoc on one trained bundle (issue 12; a screen, not in the product).

The hybrid output is ``[z, w·g] / sqrt(1 + w²)`` (``z`` the unit triplet embedding, ``g`` the unit
pooled backbone features) and the shipped reducer is one PCA 64 of it, whose directions the pooled
part's variance mostly takes.  Here each part gets its own PCA, fitted on the bundle's training
split: ``[PCA_a(z), w · PCA_(64-a)(g)]``, so the triplet head keeps ``a`` dimensions whatever ``w``.
Scored as ``hybrid_weight.py`` scores (test split at ×1 and ×8; a leave-classes-out bundle's held-out
classes at ×1 and ×8), beside the joint PCA 64 at the bundle's own weight.

    python benchmarks/block_pca.py --model runs/lco6-vd4/bundle --splits 16,24,32 --weights 1,1.5,2,3

Last line: one JSON object with every row.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="Bundle directory or shipped name (default: the default model).")
    ap.add_argument("--data", default=os.environ.get("RSIR_UCMERCED", "../shared/data/ucmerced"))
    ap.add_argument("--splits", default="16,24,32", help="Dimensions given to the triplet head (of 64).")
    ap.add_argument("--weights", default="1,1.5,2,3", help="Weights of the pooled part's block.")
    args = ap.parse_args()

    from hybrid_weight import embed_split  # benchmarks/, beside this script

    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.bundle import load_bundle

    b = load_bundle(args.model)
    h = float(b.meta.get("hybrid", 0.0))
    if h <= 0:
        sys.exit(f"model {b.model_id} has no hybrid output (recipe v1): it has no parts to reduce apart")
    fit_x, sets = embed_split(b, args.data)
    D = b.net.embedding_dim

    def parts(X):  # undo the shipped mix: the unit triplet part and the unit pooled part
        s = np.sqrt(1 + h * h)
        return X[:, :D] * s, X[:, D:] * s / h

    def unit(Z):
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    def pca(F, k):
        mu = F.mean(0)
        _, _, Vt = np.linalg.svd(F - mu, full_matrices=False)
        return mu, Vt[:k]

    zf, gf = parts(fit_x)
    rows = []

    def score(name, fn):
        row = {"variant": name}
        for key, (X, y) in sets.items():
            m = retrieval_metrics(unit(fn(X)), y)
            row[key] = round(m["mAP"], 4)
            if key == "test_x1":
                row["test_x1_P@10"] = round(m["P@10"], 4)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)

    mu, V = pca(fit_x, b.dim)
    score(f"joint PCA {b.dim}, w {h:g} (shipped form)", lambda X: (X - mu) @ V.T)
    for a in [int(x) for x in args.splits.split(",")]:
        muz, Vz = pca(zf, a)
        mug, Vg = pca(gf, b.dim - a)
        for w in [float(x) for x in args.weights.split(",")]:
            def fn(X, muz=muz, Vz=Vz, mug=mug, Vg=Vg, w=w):
                z, g = parts(X)
                return np.hstack([(z - muz) @ Vz.T, w * ((g - mug) @ Vg.T)])
            score(f"block z {a} + g {b.dim - a}, w {w:g}", fn)
    print(json.dumps({"model": b.model_id, "rows": rows}))


if __name__ == "__main__":
    main()
