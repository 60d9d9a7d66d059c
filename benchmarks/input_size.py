"""Test-time input size: a trained bundle's network fed larger inputs, no retraining (issue 12).

A network trained on random crops sees objects larger than in a whole tile resized to its input
("FixRes", Touvron et al., NeurIPS 2019), so feeding the whole tile at a larger size can match the
apparent object size of training. For each ``--sizes`` value this embeds the bundle's test split
(×1 and ×8) and, for a leave-classes-out bundle, all images of its held-out classes, through the
bundle's own reducer (fitted at its trained size) and scores mAP / P@10; it also times the
embedding of the ×1 test split, so each size's cost reads against the bundle's own size. The
bundle is never edited (its model id names its input size).

    python benchmarks/input_size.py --model default --sizes 224,240,256

Last line: one JSON object with every row.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="Bundle directory or shipped name (default: the default model).")
    ap.add_argument("--data", default=os.environ.get("RSIR_UCMERCED", "../shared/data/ucmerced"))
    ap.add_argument("--sizes", default="224,240,256", help="Network input sizes in pixels, comma-separated.")
    args = ap.parse_args()

    from rsir_stac.embed import Embedder
    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.data import (load_images, only_classes, scan_image_folder, stratified_split,
                                      without_classes)
    from rsir_stac.model.transforms import downscale

    b = load_bundle(args.model)
    tr = b.meta["training"]
    held = tuple(tr.get("held_out_classes") or ())
    full = scan_image_folder(args.data)
    folder = without_classes(full, held)
    _, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr["split_seed"])
    sets = {"test": (load_images([folder.paths[i] for i in test_ix]), folder.labels[test_ix])}
    if held:
        hf = only_classes(full, held)
        sets["held_out"] = (load_images(hf.paths), hf.labels)
    norm = b.meta["normalisation"]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        e = Embedder(b.net, b.reducer, input_size=size, mean=norm["mean"], std=norm["std"], views=b.views)
        row = {"input_size": size}
        for name, (images, labels) in sets.items():
            for f in (1, 8):
                t = time.perf_counter()
                X = e.embed([downscale(im, f) for im in images])
                if name == "test" and f == 1:
                    row["test_x1_s"] = round(time.perf_counter() - t, 2)
                m = retrieval_metrics(X, labels)
                row[f"{name}_x{f}_mAP"] = round(m["mAP"], 4)
                if name == "test":
                    row[f"{name}_x{f}_P@10"] = round(m["P@10"], 4)
        e.close()
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    base = next((r for r in rows if r["input_size"] == b.input_size), rows[0])
    for r in rows:
        r["time_vs_trained_size"] = round(r["test_x1_s"] / base["test_x1_s"], 2)
    print(json.dumps({"model": b.model_id, "trained_input_size": b.input_size, "rows": rows}))


if __name__ == "__main__":
    main()
