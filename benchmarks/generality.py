"""Generality protocols (issue 12): every model on the UCMD test split at
several GSDs (``--scale``) and on classes it never trained on (leave classes out).

    python benchmarks/generality.py \
        --models imagenet,rsir_stac/models/v1,rsir_stac/models/default \
        --lco imagenet,runs/lco-v1/bundle,runs/lco-v2/bundle [--scales 1,2,4,8]

* Scale table: the test split recorded in each bundle (for ``imagenet``: the
  default split, 20 % per class, seed 0, the same images), every image
  downsampled by F (Lanczos) before the resize to the network input; query
  and database alike; stored (reduced) vectors.
* Leave-classes-out table: every image of the classes the ``--lco`` bundles
  were trained without (they must agree; ``imagenet`` is scored on the same
  classes), at the same scales.
* ``--expand 0,5``: each table once per query expansion (``evaluate --expand``:
  average query expansion over N neighbours, as ``search --expand N``).
Prints two Markdown tables, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("RSIR_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--data", default=str(Path(default) / "ucmerced"))
    ap.add_argument("--models", default="imagenet,default")
    ap.add_argument("--lco", default="")
    ap.add_argument("--scales", default="1,2,4,8")
    ap.add_argument("--expand", default="0", help="Query expansion values, e.g. 0,5 (0: off).")
    args = ap.parse_args()

    from rsir_stac.evaluate import evaluate_folder, resolve_model

    scales = [float(s) for s in args.scales.split(",")]
    expands = [int(e) for e in args.expand.split(",")]
    out: dict = {"scale": {}, "lco": {}, "lco_classes": None}

    def name(m, e=0):
        return (m if m in ("imagenet",) else Path(m).name if m != "default" else "default") + (f", QE {e}" if e else "")

    def key(b, e):
        return b.model_id + (f"+qe{e}" if e else "")

    t0 = time.time()
    print("| model | " + " | ".join(f"mAP x{s:g}" for s in scales) + " | P@10 x1 | dim |")
    print("|---|" + "---:|" * (len(scales) + 2))
    for m in [m for m in args.models.split(",") if m]:
        b = resolve_model(None if m == "default" else m)
        for e in expands:
            row = [evaluate_folder(args.data, b, split="test", scale=s, expand=e) for s in scales]
            out["scale"][key(b, e)] = {f"x{s:g}": r["mAP"] for s, r in zip(scales, row)} | {"P@10": row[0]["P@10"]}
            print(f"| {name(m, e)} `{b.model_id}` | " + " | ".join(f"{r['mAP']:.4f}" for r in row)
                  + f" | {row[0]['P@10']:.4f} | {row[0]['dim']} |", flush=True)
    lco = [m for m in args.lco.split(",") if m]
    if lco:
        bundles = [resolve_model(m) for m in lco]
        held = {tuple(b.meta["training"].get("held_out_classes") or ()) for b in bundles if b.model_id != "imagenet-efficientnet_lite0-pooled"}
        if len(held) != 1 or not next(iter(held)):
            raise SystemExit(f"--lco bundles must share one non-empty set of held-out classes, got {held}")
        classes = list(next(iter(held)))
        out["lco_classes"] = classes
        print(f"\nLeave classes out: held-out classes {', '.join(classes)} (every image of them)\n")
        print("| model | " + " | ".join(f"mAP x{s:g}" for s in scales) + " |")
        print("|---|" + "---:|" * len(scales))
        for m, b in zip(lco, bundles):
            for e in expands:
                row = [evaluate_folder(args.data, b, split="all", classes=classes, scale=s, expand=e) for s in scales]
                out["lco"][key(b, e)] = {f"x{s:g}": r["mAP"] for s, r in zip(scales, row)}
                print(f"| {name(m, e)} `{b.model_id}` | " + " | ".join(f"{r['mAP']:.4f}" for r in row) + " |",
                      flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
