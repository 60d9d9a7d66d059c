"""Test-time augmentation over the dihedral group (rotations and flips): does
averaging a tile's embedding over its D4 views raise in-domain retrieval?

Overhead tiles have no "up", so the 8 rotations/flips of a tile show the same
ground; averaging their (unreduced) embeddings before the reducer makes the
stored vector orientation-invariant (test-time augmentation, e.g. Simonyan &
Zisserman 2015; for remote sensing, rotation-invariant retrieval). Each row
refits the reducer on the training split embedded the same way, and scores
the UCMD test split (each image queries the rest) with and without query
expansion.

    python benchmarks/tta.py [--model BUNDLE] [--views 1,4,8] [--scales 1,8] [--expand 0,5]

Prints a Markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def embed_views(model, images, n_views: int) -> np.ndarray:
    """Unreduced embeddings averaged over ``n_views`` dihedral views, through the product's
    embedder (``rsir_stac.model.transforms.dihedral_views``), (N, D) float64."""
    with model.embedder(views=n_views) as emb:
        return emb.embed(images, reduce=False).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("RSIR_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--data", default=str(Path(default) / "ucmerced"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--views", default="1,4,8")
    ap.add_argument("--scales", default="1")
    ap.add_argument("--expand", default="0,5")
    ap.add_argument("--reducers", default="pca:64,lda:20")
    ap.add_argument("--query-only", action="store_true",
                    help="also score views on the query side only (stored vectors from one view)")
    ap.add_argument("--imagenet", action="store_true",
                    help="score ImageNet pooled features (no reducer) on the same images instead of the bundle")
    ap.add_argument("--lco", action="store_true",
                    help="score every image of the bundle's held-out classes (reducer fitted on the others)")
    args = ap.parse_args()

    from rsir_stac.evaluate import ImageNetBaseline, average_precision, precision_at_k, rank_all, retrieval_metrics
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.data import load_images, scan_image_folder, stratified_split
    from rsir_stac.model.transforms import downscale
    from rsir_stac.reduce import make_reducer

    bundle = load_bundle(args.model)
    tr = bundle.meta["training"]
    folder = scan_image_folder(args.data)
    if args.lco:
        held = set(tr["held_out_classes"])
        is_held = np.array([folder.classes[c] in held for c in folder.labels])
        known = np.flatnonzero(~is_held)
        tr_ix, _ = stratified_split(folder.labels[known], tr["test_fraction"], tr["split_seed"])
        train_ix, test_ix = known[tr_ix], np.flatnonzero(is_held)
    else:
        train_ix, test_ix = stratified_split(folder.labels, tr["test_fraction"], tr["split_seed"])
    y_tr, y_te = folder.labels[train_ix], folder.labels[test_ix]
    im_tr0 = load_images([folder.paths[i] for i in train_ix])
    im_te0 = load_images([folder.paths[i] for i in test_ix])
    model = ImageNetBaseline() if args.imagenet else bundle
    if args.imagenet:
        args.reducers = "none"

    def asym(X, Q, y):  # queries Q (one per row of X) against the other rows of X
        order = rank_all(X, queries=Q)
        rel = y[order] == y[:, None]
        return {"mAP": float(np.mean([average_precision(r) for r in rel])),
                "P@10": float(np.mean([precision_at_k(r, 10) for r in rel]))}

    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        im_tr = im_tr0 if scale == 1 else [downscale(im, scale) for im in im_tr0]
        im_te = im_te0 if scale == 1 else [downscale(im, scale) for im in im_te0]
        single = None
        for n in [int(v) for v in args.views.split(",")]:
            t = time.time()
            z_te = embed_views(model, im_te, n)
            z_tr = embed_views(model, im_tr, n) if not args.imagenet else None
            secs = time.time() - t
            if n == 1:
                single = (z_tr, z_te)
            for spec in args.reducers.split(","):
                if spec == "none":
                    red, x = None, z_te / np.linalg.norm(z_te, axis=1, keepdims=True)
                else:
                    kind, dim = spec.split(":")
                    red = make_reducer(kind, int(dim)).fit(z_tr, y_tr if kind == "lda" else None)
                    x = red.transform(z_te)
                for e in [int(v) for v in args.expand.split(",")]:
                    m = retrieval_metrics(x, y_te, expand=e)
                    rows.append({"scale": scale, "views": n, "reducer": spec, "expand": e,
                                 "mAP": round(m["mAP"], 4), "P@10": round(m["P@10"], 4),
                                 "embed_s": round(secs, 1)})
                    print(rows[-1], flush=True)
                if args.query_only and n > 1 and single is not None and red is not None:
                    # stored vectors: one view, reducer fitted on one view; queries: the mean over n views
                    red1 = make_reducer(kind, int(dim)).fit(single[0], y_tr if kind == "lda" else None)
                    m = asym(red1.transform(single[1]), red1.transform(z_te), y_te)
                    rows.append({"scale": scale, "views": f"{n} (query only)", "reducer": spec, "expand": 0,
                                 "mAP": round(m["mAP"], 4), "P@10": round(m["P@10"], 4),
                                 "embed_s": round(secs, 1)})
                    print(rows[-1], flush=True)
    print("| scale | views | reducer | expand | mAP | P@10 |\n|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| ×{r['scale']:g} | {r['views']} | {r['reducer']} | {r['expand']} | {r['mAP']:.4f} | {r['P@10']:.4f} |")
    print(json.dumps({"model": bundle.model_id, "rows": rows}))


if __name__ == "__main__":
    main()
