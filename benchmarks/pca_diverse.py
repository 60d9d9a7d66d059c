"""Screen (issue 12): fit the PCA reducer on more diverse imagery than the labelled training split.

The shipped reducer is a PCA fitted on the embeddings of the UCMD training split; its 64
directions are those the *training classes* vary along, and the classes a model never saw can
fall in the discarded rest (``unseen_dims.py``: the 64-d store costs the trained features
0.015-0.035 on unseen classes).  Here the same PCA is also fitted on the tiles of other
catalogues, read as ``ingest`` reads them (``shared/data/geotiff``: NAIP time series, aerial,
drone and Landsat scenes, each at its own GSD; no labels), alone or pooled with the training
split at equal weight, and every variant is scored on a leave-classes-out bundle's trained
classes (test split) and held-out classes (x1, x8).  Held-out labels are used only to score.

    python benchmarks/pca_diverse.py --model runs/lco-s1/bundle [--max-tiles 3000]

Last line: one JSON object.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lda_pca_weight import bundle_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a leave-classes-out bundle")
    root = os.environ.get("RSIR_DATA", "../shared/data")
    ap.add_argument("--data", default=os.path.join(root, "ucmerced"))
    ap.add_argument("--extra", default=os.path.join(root, "geotiff"), help="unlabelled sources (ingest's rules)")
    ap.add_argument("--max-tiles", type=int, default=3000)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()

    import numpy as np

    from rsir_stac.errors import RsirError
    from rsir_stac.evaluate import ImageNetBaseline, retrieval_metrics
    from rsir_stac.model.data import load_images, only_classes
    from rsir_stac.model.transforms import downscale
    from rsir_stac.model.unlabelled import collect_tiles
    from rsir_stac.reduce import PCAReducer

    b, folder, held, fin, tr, te = bundle_split(args.model, args.data)
    if not held:
        raise SystemExit(f"{args.model} holds no classes out; train one with --leave-out-n 5")
    files = sorted(p for p in Path(args.extra).glob("*.tif"))
    pixels, skipped = [], {}
    for f in files:  # one scene at a time: every scene at its own GSD (mixed GSDs are refused together)
        try:
            t = collect_tiles([str(f)], b, native_gsd=True, max_tiles=max(1, args.max_tiles // len(files)), seed=0)
            pixels.extend(t.pixels)
        except RsirError as e:
            skipped[f.name] = str(e)[:120]
    print(json.dumps({"extra_tiles": len(pixels), "files": len(files), "skipped": skipped}), flush=True)
    train_ims = load_images([fin.paths[i] for i in tr])
    test_ims = load_images([fin.paths[i] for i in te])
    ho = only_classes(folder, held)
    held_ims = load_images(list(ho.paths))
    out = {"model": b.model_id, "held_out_classes": held, "extra_tiles": len(pixels)}
    for name, emb in (("trained", b.embedder(bf16=True)), ("imagenet", ImageNetBaseline().embedder(bf16=True))):
        X = emb.embed(train_ims, reduce=False)
        E = emb.embed(pixels, reduce=False)
        sets = {"test": (emb.embed(test_ims, reduce=False), fin.labels[te]),
                "held_x1": (emb.embed(held_ims, reduce=False), ho.labels),
                "held_x8": (emb.embed([downscale(im, 8) for im in held_ims], reduce=False), ho.labels)}
        # equal weight: the extra tiles are resampled to the training split's count
        rng = np.random.default_rng(0)
        E_eq = E[rng.choice(len(E), size=len(X), replace=len(E) < len(X))]
        fits = {"train": X, "extra": E, "train+extra": np.concatenate([X, E_eq])}
        rows = {}
        for fit_name, F in fits.items():
            p = PCAReducer(args.dim).fit(F)
            rows[fit_name] = {k: round(retrieval_metrics(p.transform(Z), y)["mAP"], 4) for k, (Z, y) in sets.items()}
            print(json.dumps({"features": name, "fit": fit_name, **rows[fit_name]}), flush=True)
        out[name] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
