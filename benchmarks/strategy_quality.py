"""Which query strategy to use with negative examples: precision of each on real embeddings.

The analyst trial found that one negative example made the default ``average`` strategy
(Qdrant's recommend average vector: 2·mean(positives) − mean(negatives)) visibly worse, while
``best_score`` stayed clean.  This measures it on UC Merced's test split (420 images, 21
classes) embedded by a bundle (default: the shipped model) and stored in a real Qdrant Edge
index: for every class and ``--reps`` draws, ``--pos`` positive images of the class and
``--neg`` negatives from the class whose centroid is nearest (the confusable one), searched
with each strategy (examples left out of the hits, no per-scene cap); precision@10 = the share
of the 10 hits in the positives' class.  The positives alone (no negative) are the baseline.

Usage::

    python benchmarks/strategy_quality.py ../shared/data/ucmerced [--model default] [--reps 5] [--pos 3] [--neg 1] [--scale 1]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid

import numpy as np

STRATEGIES = ("average", "best_score", "sum_scores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--model", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pos", type=int, default=3)
    ap.add_argument("--neg", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--scale", type=float, default=1.0, help="downsample every image by this factor first")
    args = ap.parse_args()

    from rsir_stac.evaluate import _bundle_split, embed_files
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.data import scan_image_folder
    from rsir_stac.store import Point, open_store
    from rsir_stac.store.exclusion import Exclusion
    from rsir_stac.store.query import ExampleQuery

    bundle = load_bundle(args.model)
    full = scan_image_folder(args.data)
    folder, _, test_ix, _ = _bundle_split(full, [], bundle.meta.get("training", {}))
    paths = [folder.paths[i] for i in test_ix]
    labels = np.asarray([folder.labels[i] for i in test_ix])
    with bundle.embedder() as emb:
        z = embed_files(paths, emb, scale=args.scale)
    classes = sorted(set(labels.tolist()))
    cent = np.stack([z[labels == c].mean(0) for c in classes])
    d = np.linalg.norm(cent[:, None] - cent[None], axis=2)
    np.fill_diagonal(d, np.inf)
    confusable = {c: classes[int(np.argmin(d[i]))] for i, c in enumerate(classes)}
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(z))]
    rng = np.random.default_rng(0)
    out: dict = {"model": bundle.model_id, "images": len(z), "pos": args.pos, "neg": args.neg, "k": args.k,
                 "scale": args.scale}
    with tempfile.TemporaryDirectory() as tmp, open_store(f"{tmp}/index") as store:
        store.ensure_collection(bundle.dim, bundle.model_id)
        store.upsert([Point(i, v.astype(np.float32), {"item_id": f"img-{n}", "collection": str(labels[n])})
                      for n, (i, v) in enumerate(zip(ids, z))])
        store.flush()
        prec: dict[str, list[float]] = {s: [] for s in ("positives only", *STRATEGIES)}
        for c in classes:
            mine, other = np.flatnonzero(labels == c), np.flatnonzero(labels == confusable[c])
            for _ in range(args.reps):
                pos = rng.choice(mine, args.pos, replace=False)
                neg = rng.choice(other, args.neg, replace=False)
                excl = Exclusion(ids=frozenset(ids[i] for i in (*pos, *neg)))
                runs = [("positives only", ExampleQuery(tuple(z[pos]), (), strategy="average"))] + [
                    (s, ExampleQuery(tuple(z[pos]), tuple(z[neg]), strategy=s)) for s in STRATEGIES]
                for name, q in runs:
                    hits = store.query(q, args.k, exclude=excl)
                    got = [labels[ids.index(h.id)] for h in hits]
                    prec[name].append(float(np.mean([g == c for g in got])))
    for name, v in prec.items():
        out[name] = round(float(np.mean(v)), 4)
        print(f"{name:16} precision@{args.k} {out[name]:.4f} ({len(v)} queries)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
