"""LDA+PCA reducer (``rsir_stac.reduce.LDAPCAReducer``): the weight of the LDA part, against PCA and LDA.

Embeds a bundle's training split (unreduced, one view), fits each reducer on it and scores
mAP on the test split at x1 and x8 and, for a leave-classes-out bundle, on the held-out
classes (every image queries the rest).  Labels of the held-out classes are used only to
score.  One JSON line per reducer; the last line is one JSON object with all of them.

    python benchmarks/lda_pca_weight.py --model default --weights 0.5,0.75,1,1.5,2
    python benchmarks/lda_pca_weight.py --model runs/lco-vd4/bundle --weights 0.5,0.75,1,1.5,2
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bundle_split(model: str, data: str):
    """A bundle's recorded split of the image folder ``data``:
    ``(bundle, folder, held-out classes, folder without them, train indices, test indices)``."""
    from rsir_stac.evaluate import resolve_model
    from rsir_stac.model.data import scan_image_folder, stratified_split, without_classes

    b = resolve_model(model)
    tr = b.meta.get("training", {})
    folder = scan_image_folder(data)
    held = [c for c in tr.get("held_out_classes") or [] if c in folder.classes]
    fin = without_classes(folder, held) if held else folder
    train_ix, test_ix = stratified_split(fin.labels, tr.get("test_fraction", 0.2), tr.get("split_seed", 0))
    return b, folder, held, fin, train_ix, test_ix


def score_row(row: dict, reducer, sets: dict) -> dict:
    """``row`` with the mAP of ``reducer`` on each ``sets[name] = (embeddings, labels)``
    (and P@10 on ``test_x1``); printed as one JSON line and returned."""
    from rsir_stac.evaluate import retrieval_metrics

    for key, (Z, lab) in sets.items():
        m = retrieval_metrics(reducer.transform(Z), lab)
        row[key] = round(m["mAP"], 4)
        if key == "test_x1":
            row["P@10"] = round(m["P@10"], 4)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=os.path.join(os.environ.get("RSIR_DATA", "../shared/data"), "ucmerced"))
    ap.add_argument("--weights", default="0.5,0.75,1,1.5,2")
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()

    from rsir_stac.model.data import load_images, only_classes
    from rsir_stac.model.transforms import downscale
    from rsir_stac.reduce import LDAPCAReducer, LDAReducer, PCAReducer

    b, folder, held, fin, train_ix, test_ix = bundle_split(args.model, args.data)
    emb = b.embedder(bf16=True)

    def embed(fold, ix, f):
        ims = load_images([fold.paths[i] for i in ix])
        return emb.embed([downscale(im, f) for im in ims] if f > 1 else ims, reduce=False)

    X, y = embed(fin, train_ix, 1), fin.labels[train_ix]
    sets = {f"test_x{f}": (embed(fin, test_ix, f), fin.labels[test_ix]) for f in (1, 8)}
    if held:
        ho = only_classes(folder, held)
        sets.update({f"held_x{f}": (embed(ho, np.arange(len(ho)), f), ho.labels) for f in (1, 8)})
    k = len(np.unique(y)) - 1
    reducers = {f"pca{args.dim}": PCAReducer(args.dim).fit(X), f"lda{k}": LDAReducer(k).fit(X, y)}
    for w in (float(v) for v in args.weights.split(",")):
        reducers[f"lda+pca{args.dim} w={w:g}"] = LDAPCAReducer(args.dim, lda_weight=w).fit(X, y)
    rows = [score_row({"reducer": name}, r, sets) for name, r in reducers.items()]
    print(json.dumps({"model": b.model_id, "held_out_classes": held, "rows": rows}))


if __name__ == "__main__":
    main()
