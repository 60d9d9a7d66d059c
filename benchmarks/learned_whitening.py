"""Learned whitening against nuisance scatter before PCA (a reducer screen; not in the product).

Learned whitening (Radenović, Tolias & Chum, ECCV 2016; within-class covariance
normalisation, Hatch et al. 2006): PCA of the training embeddings to ``pre_dim``
dimensions, whitening by the regularised *nuisance scatter* ``S``, then the 64
principal components of the whitened embeddings.  ``S`` mixes, at unit trace each,
the within-class covariance (labels; weight ``share``) and the within-image
covariance across views of the same training image (its three quarter turns and
its downsampling by 2, 4 and 8; no labels; weight ``1 - share``).  Embeds a
bundle's training split and its views once (``--cache``), then scores each
setting's mAP on the test split at x1 and x8 and, for a leave-classes-out bundle,
on the held-out classes (labels of those used only to score).

    python benchmarks/learned_whitening.py --model runs/lco-vd4/bundle --cache lco0.npz
    python benchmarks/learned_whitening.py --model default --cache v5.npz

One JSON line per setting; the last line is one JSON object with all of them.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lda_pca_weight import bundle_split, score_row  # noqa: E402

ROTATIONS = (1, 2, 3)
SCALES = (2.0, 4.0, 8.0)


class LearnedWhitening:
    """The linear map ``x -> normalise((x - mean) @ components.T)`` described above."""

    def __init__(self, X, y, views, share: float, pre_dim: int = 192, shrinkage: float = 0.1, dim: int = 64):
        mean = X.mean(0)
        Xc = X - mean
        d0 = min(pre_dim, len(X) - 1, X.shape[1])
        P = np.linalg.svd(Xc, full_matrices=False)[2][:d0]
        Z = Xc @ P.T
        S = shrinkage / d0 * np.eye(d0)
        if share > 0:
            R = Z.copy()
            for c in np.unique(y):
                R[y == c] -= R[y == c].mean(0)
            C = R.T @ R
            S += share * C / np.trace(C)
        if share < 1:
            G = np.concatenate([Z[None], (views - mean) @ P.T])
            G -= G.mean(0, keepdims=True)
            C = np.einsum("vni,vnj->ij", G, G)
            S += (1 - share) * C / np.trace(C)
        e, V = np.linalg.eigh(S)
        W = (V / np.sqrt(e)) @ V.T
        Zw = Z @ W
        Q = np.linalg.svd(Zw - Zw.mean(0), full_matrices=False)[2][:dim]
        self.mean, self.components = mean, Q @ W @ P

    def transform(self, X):
        Z = (X - self.mean) @ self.components.T
        return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=os.path.join(os.environ.get("RSIR_DATA", "../shared/data"), "ucmerced"))
    ap.add_argument("--shares", default="0,0.5,0.75,1", help="weights of the labelled within-class scatter")
    ap.add_argument("--cache", default=None, help="npz file for the embeddings (written once, then read)")
    args = ap.parse_args()

    from rsir_stac.model.data import load_images, only_classes
    from rsir_stac.model.transforms import downscale
    from rsir_stac.reduce import LDAPCAReducer, PCAReducer

    b, folder, held, fin, train_ix, test_ix = bundle_split(args.model, args.data)
    if args.cache and Path(args.cache).is_file():
        d = dict(np.load(args.cache))
    else:
        emb = b.embedder(bf16=True)

        def embed(ims, f=1.0):
            return emb.embed([downscale(im, f) for im in ims] if f > 1 else ims, reduce=False)

        tr = load_images([fin.paths[i] for i in train_ix])
        te = load_images([fin.paths[i] for i in test_ix])
        d = {"X": embed(tr), "y": fin.labels[train_ix], "T1": embed(te), "T8": embed(te, 8), "yt": fin.labels[test_ix]}
        d["V"] = np.stack([embed([np.ascontiguousarray(np.rot90(im, k)) for im in tr]) for k in ROTATIONS]
                          + [embed(tr, f) for f in SCALES])
        if held:
            ho = only_classes(folder, held)
            hi = load_images(list(ho.paths))
            d.update({"H1": embed(hi), "H8": embed(hi, 8), "yh": ho.labels})
        if args.cache:
            np.savez(args.cache, **d)
    sets = {"test_x1": (d["T1"], d["yt"]), "test_x8": (d["T8"], d["yt"])}
    if "H1" in d:
        sets.update({"held_x1": (d["H1"], d["yh"]), "held_x8": (d["H8"], d["yh"])})
    X, y = d["X"].astype(np.float64), d["y"]
    rows = [score_row({"reducer": "pca64"}, PCAReducer(64).fit(X), sets),
            score_row({"reducer": "lda+pca64"}, LDAPCAReducer(64).fit(X, y), sets)]
    for share in (float(s) for s in args.shares.split(",")):
        rows.append(score_row({"reducer": "lw64", "label_share": share},
                              LearnedWhitening(X, y, d["V"].astype(np.float64), share), sets))
    print(json.dumps({"model": b.model_id, "held_out_classes": held, "rows": rows}))


if __name__ == "__main__":
    main()
