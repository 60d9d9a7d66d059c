"""The model results table: ImageNet features with no training (baseline),
the triplet-trained embedding at full size, and PCA / LDA reductions.

All rows use the UCMD test split recorded in the bundle (queries against the
other test images); reducers are fitted on the training split only.  Also
reports bf16 vs fp32 mAP of the stored vectors.

    python benchmarks/model_table.py [--data ../shared/data/ucmerced] [--model BUNDLE] [--write-metrics]

``--write-metrics`` records the stored-dimension test metrics in the bundle's
model.json (``metrics``).  Prints a Markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("RSIR_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--data", default=str(Path(default) / "ucmerced"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--write-metrics", action="store_true")
    args = ap.parse_args()

    import torch

    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.bundle import META, load_bundle
    from rsir_stac.model.data import load_images, scan_image_folder, stratified_split
    from rsir_stac.model.net import EmbeddingNet
    from rsir_stac.reduce import make_reducer

    bundle = load_bundle(args.model)
    tr = bundle.meta["training"]
    folder = scan_image_folder(args.data)
    train_ix, test_ix = stratified_split(folder.labels, tr["test_fraction"], tr["split_seed"])
    y_tr, y_te = folder.labels[train_ix], folder.labels[test_ix]
    t = time.time()
    im_tr = load_images([folder.paths[i] for i in train_ix])
    im_te = load_images([folder.paths[i] for i in test_ix])
    decode_s = time.time() - t

    emb = bundle.embedder()
    t = time.time()
    z_te = emb.embed(im_te, reduce=False)
    embed_s = time.time() - t
    z_tr = emb.embed(im_tr, reduce=False)
    emb32 = bundle.embedder(bf16=False)
    z_te32 = emb32.embed(im_te, reduce=False)

    # baseline: ImageNet Lite0 pooled features, no training
    base = EmbeddingNet(bundle.meta["backbone"], 8).eval()
    norm = bundle.meta["normalisation"]
    from rsir_stac.model.transforms import to_input

    feats = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=emb.bf16):
        for s in range(0, len(im_te), 64):
            x = to_input(im_te[s : s + 64], bundle.input_size, norm["mean"], norm["std"])
            feats.append(torch.nn.functional.normalize(base.features(x).float(), dim=1).numpy())
    f_te = np.concatenate(feats)

    rows = []

    def row(name, X, note=""):
        m = retrieval_metrics(X, y_te)
        rows.append({"variant": name, "dim": X.shape[1], "mAP": m["mAP"], "P@10": m["P@10"],
                     "ANMRR": m["ANMRR"], "note": note, "metrics": m})

    row("ImageNet Lite0 pooled features (no training)", f_te, "baseline")
    row("triplet, full embedding", z_te)
    for kind, dims in (("pca", (64, 32, 16)), ("lda", (20, 16, 8))):
        for d in dims:
            r = make_reducer(kind, d).fit(z_tr, y_tr)
            row(f"triplet + {kind.upper()} {d}", r.transform(z_te))
    stored = emb.reduce(z_te)
    stored32 = emb32.reduce(z_te32)
    m16, m32 = retrieval_metrics(stored, y_te), retrieval_metrics(stored32, y_te)
    full_map = rows[1]["mAP"]

    print(f"model {bundle.model_id} on {args.data} (test split: {len(test_ix)} queries)\n")
    print("| variant | dim | mAP | P@10 | ANMRR |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['dim']} | {r['mAP']:.4f} | {r['P@10']:.4f} | {r['ANMRR']:.4f} |")
    print(f"\nstored vectors ({bundle.meta['reducer']['kind']} {bundle.dim}): bf16 mAP {m16['mAP']:.4f}, "
          f"fp32 mAP {m32['mAP']:.4f}, |diff| {abs(m16['mAP'] - m32['mAP']):.4f}")
    if args.write_metrics:
        meta_path = bundle.path / META
        meta = json.loads(meta_path.read_text())
        meta["metrics"] = {"split": "test", "dataset": Path(args.data).name, **m16,
                           "full_embedding_mAP": full_map, "fp32_mAP": m32["mAP"]}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({"model_id": bundle.model_id, "stored": {"mAP": m16["mAP"], "P@10": m16["P@10"],
                      "ANMRR": m16["ANMRR"], "dim": bundle.dim}, "stored_fp32_mAP": m32["mAP"],
                      "bf16_fp32_abs_diff": abs(m16["mAP"] - m32["mAP"]),
                      "rows": [{k: v for k, v in r.items() if k != "metrics"} for r in rows],
                      "test_embed_s": round(embed_s, 2), "decode_s": round(decode_s, 2)}))


if __name__ == "__main__":
    main()
