"""Unseen classes at equal dimension: a leave-classes-out bundle against ImageNet pooled features,
unreduced and through PCA 64 / 128 / 256 fitted the same way for both (on the bundle's training
split of its trained classes).  Separates what the stored dimension costs on classes never trained
on from what training does (issue 12).  Labels of the held-out classes are used only to score.

    python benchmarks/unseen_dims.py --model runs/lco-s1/bundle

Last line: one JSON object (mAP on the 16-class test split, the held-out classes at x1 and x8).
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
    ap.add_argument("--data", default=os.path.join(os.environ.get("RSIR_DATA", "../shared/data"), "ucmerced"))
    ap.add_argument("--dims", default="64,128,256")
    args = ap.parse_args()

    from rsir_stac.evaluate import ImageNetBaseline, retrieval_metrics
    from rsir_stac.model.data import load_images, only_classes
    from rsir_stac.model.transforms import downscale
    from rsir_stac.reduce import PCAReducer

    b, folder, held, fin, tr, te = bundle_split(args.model, args.data)
    if not held:
        raise SystemExit(f"{args.model} holds no classes out; train one with --leave-out-n 5")
    train_ims = load_images([fin.paths[i] for i in tr])
    test_ims = load_images([fin.paths[i] for i in te])
    ho = only_classes(folder, held)
    held_ims = load_images(list(ho.paths))
    out = {"model": b.model_id, "held_out_classes": held}
    for name, emb in (("trained", b.embedder(bf16=True)), ("imagenet", ImageNetBaseline().embedder(bf16=True))):
        X = emb.embed(train_ims, reduce=False)
        sets = {"test": (emb.embed(test_ims, reduce=False), fin.labels[te]),
                "held_x1": (emb.embed(held_ims, reduce=False), ho.labels),
                "held_x8": (emb.embed([downscale(im, 8) for im in held_ims], reduce=False), ho.labels)}
        rows = {"full": {k: round(retrieval_metrics(Z, y)["mAP"], 4) for k, (Z, y) in sets.items()}}
        for d in (int(v) for v in args.dims.split(",")):
            p = PCAReducer(d).fit(X)
            rows[f"pca{d}"] = {k: round(retrieval_metrics(p.transform(Z), y)["mAP"], 4) for k, (Z, y) in sets.items()}
        for variant, r in rows.items():
            print(json.dumps({"features": name, "variant": variant, **r}), flush=True)
        out[name] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
