"""Reducers fitted on the dihedral views of the training split, stacked (not averaged).

A screen for issue 12: does the reducer (PCA, LDA, LDA+PCA) gain when it is fitted on the
embeddings of each training image's rotations and mirror images as extra samples, while
stored tiles and queries stay one view (no extra embedding cost)?  Fits, on the bundle's
training split (unreduced embeddings):

* ``1view``: the training images as they are (what ``reduce`` and ``train`` fit on);
* ``rot4`` / ``d8``: the 4 rotations / 8 dihedral views, each a sample with its image's label;
* ``mean4``: the mean of the 4 rotations' embeddings, one sample per image.

Scores mAP on the test split at x1 and x8 (one view) and, for a leave-classes-out bundle, on
the held-out classes (their labels only score).  ``--cache`` keeps the embeddings (npz).

    python benchmarks/reducer_fit_views.py --model default

Last line: one JSON object.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def view(im: np.ndarray, v: int) -> np.ndarray:
    """Dihedral view ``v`` (0–7) of an H×W×C image, as ``model.transforms.dihedral_views`` orders them."""
    y = np.rot90(im, v % 4)
    return np.ascontiguousarray(y[:, ::-1] if v >= 4 else y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=os.path.join(os.environ.get("RSIR_DATA", "../shared/data"), "ucmerced"))
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--cache", default=None, help="npz file for the embeddings (read if it exists)")
    args = ap.parse_args()

    from lda_pca_weight import bundle_split, score_row

    from rsir_stac.model.data import load_images, only_classes
    from rsir_stac.model.transforms import downscale
    from rsir_stac.reduce import LDAPCAReducer, LDAReducer, PCAReducer

    b, folder, held, fin, train_ix, test_ix = bundle_split(args.model, args.data)
    if args.cache and os.path.exists(args.cache):
        d = dict(np.load(args.cache))
        XV = d["XV"]
        sets = {k[4:]: (d[k], d["lab_" + k[4:]]) for k in d if k.startswith("set_")}
    else:
        emb = b.embedder(bf16=True)

        def embed(ims, f=1):
            return emb.embed([downscale(im, f) for im in ims] if f > 1 else ims, reduce=False)

        ims = load_images([fin.paths[i] for i in train_ix])
        XV = np.stack([embed([view(im, v) for im in ims]) for v in range(8)])
        tims = load_images([fin.paths[i] for i in test_ix])
        sets = {f"test_x{f}": (embed(tims, f), fin.labels[test_ix]) for f in (1, 8)}
        if held:
            ho = only_classes(folder, held)
            hims = load_images(ho.paths)
            sets.update({f"held_x{f}": (embed(hims, f), ho.labels) for f in (1, 8)})
        if args.cache:
            np.savez(args.cache, XV=XV, **{"set_" + k: v[0] for k, v in sets.items()},
                     **{"lab_" + k: v[1] for k, v in sets.items()})
    y = fin.labels[train_ix]
    k = len(np.unique(y)) - 1
    d = XV.shape[-1]
    fits = {"1view": (XV[0], y), "rot4": (XV[:4].reshape(-1, d), np.tile(y, 4)),
            "d8": (XV.reshape(-1, d), np.tile(y, 8)), "mean4": (XV[:4].mean(0), y)}
    rows = []
    for fname, (X, yy) in fits.items():
        for rname, r in ((f"pca{args.dim}", PCAReducer(args.dim)), (f"lda{k}", LDAReducer(k)),
                         (f"lda+pca{args.dim}", LDAPCAReducer(args.dim))):
            r = r.fit(X) if rname.startswith("pca") else r.fit(X, yy)
            rows.append(score_row({"fit": fname, "reducer": rname}, r, sets))
    print(json.dumps({"model": b.model_id, "held_out_classes": held, "rows": rows}))


if __name__ == "__main__":
    main()
