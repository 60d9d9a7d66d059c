"""Adaptation without labels, scored with labels: before / reducer refit only / adapted.

Protocol (labels are used only to score):

* UCMD test split at scale ×F (F in --scales): the adaptation sees images of
  the folder downsampled by F, written flat into one folder (no class
  sub-folders, so no labels); retrieval is scored on the bundle's recorded
  test split of the labelled folder at the same scale (``evaluate_folder``),
  before and after.  "refit" is the start network with only the PCA reducer
  refitted on the user's images (``adapt`` with 0 steps): what adaptation
  adds beyond the reducer.
* leave-classes-out: with ``--lco BUNDLE`` (a bundle trained with
  ``--leave-out``), adaptation on the folder's images and scoring on the
  held-out classes only.
* shared GeoTIFFs: the NAIP (5 m, 10 dates) and Landsat (~89 m, 8 dates)
  series, each adapted on its own (their GSDs differ): run time, tiles used,
  triplet counts, held-out positive retrieval (ground-neighbour and
  augmentation-view agreement) before/after, start-model neighbour agreement.

Small runs (``--adapt-per-class``, ``--eval-per-class``, ``--steps``,
``--max-tiles``) keep it inside a loaded 2-core CPU; the full protocol is
``--adapt-per-class 0 --eval-per-class 0 --steps 300 --max-tiles 5000``.
Prints one line per result and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsir_stac.evaluate import evaluate_folder  # noqa: E402
from rsir_stac.model.adapt import AdaptConfig, adapt  # noqa: E402
from rsir_stac.model.bundle import load_bundle  # noqa: E402
from rsir_stac.model.data import load_rgb, scan_image_folder, stratified_split  # noqa: E402
from rsir_stac.model.transforms import downscale  # noqa: E402


def _subset(folder, ix, per_class, seed):
    """Up to ``per_class`` indices of each class from ``ix`` (0: all)."""
    if not per_class:
        return np.asarray(ix)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(folder.labels[ix]):
        cls = [i for i in ix if folder.labels[i] == c]
        out.extend(rng.permutation(cls)[:per_class].tolist())
    return np.sort(np.asarray(out))


def _labelled_copy(folder, ix, dest: Path) -> Path:
    """A labelled folder of symlinks to the chosen images (for scoring)."""
    for i in ix.tolist():
        p = folder.paths[i]
        d = dest / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        (d / p.name).symlink_to(p.resolve())
    return dest


def _unlabelled_copy(folder, ix, factor: float, dest: Path) -> Path:
    """The chosen images downsampled by ``factor``, flat PNGs with anonymous names (no labels)."""
    from PIL import Image

    dest.mkdir(parents=True)
    for n, i in enumerate(np.random.default_rng(1).permutation(ix).tolist()):
        Image.fromarray(downscale(load_rgb(folder.paths[i]), factor)).save(dest / f"img{n:05d}.png")
    return dest


def _score(eval_dir, bundle, scale, classes=None):
    r = evaluate_folder(eval_dir, bundle, split="all", scale=scale, classes=classes)
    return {"mAP": round(r["mAP"], 4), "P@10": round(r["P@10"], 4), "n": r["n_queries"]}


def _adapt(sources, out, start, args, steps=None, **kw):
    t = time.time()
    if args.triplets:
        kw.setdefault("triplets", tuple(args.triplets.split(",")))
    for name in ("distill", "clusters", "recluster_every"):
        if getattr(args, name) is not None:
            kw.setdefault(name, getattr(args, name))
    b = adapt(AdaptConfig(sources=tuple(map(str, sources)), out=str(out), start=start,
                          steps=args.steps if steps is None else steps, p=args.p, k=args.k,
                          max_tiles=args.max_tiles, eval_every=args.eval_every, min_tiles=args.min_tiles, **kw))
    a = b.meta["training"]["adaptation"]
    return b, {"seconds": round(time.time() - t, 1), "n_tiles": a["n_tiles"], "kinds": a["triplet_kinds"],
               "triplets": a["triplets"], "best_step": a["best_step"], "steps_run": a["steps_run"], "clusters": a.get("clusters", 0), "reclustered_at": a.get("reclustered_at", []),
               "loss_before": round(a["before"]["mean_loss"], 4), "loss_after": round(a["after"]["mean_loss"], 4),
               "top1_before": {k: round(v, 3) for k, v in a["before"]["accuracy"].items()},
               "top1_after": {k: round(v, 3) for k, v in a["after"]["accuracy"].items()},
               "n_heldout": a["n_heldout"],
               "start_agreement": round(a["after"]["agreement"], 4)}


def ucmd(args, work: Path, results: dict) -> None:
    start = load_bundle(args.start)
    folder = scan_image_folder(args.data)
    tr = start.meta.get("training", {})
    _, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr.get("split_seed", 0))
    eval_ix = _subset(folder, test_ix, args.eval_per_class, args.seed)
    adapt_ix = _subset(folder, np.arange(len(folder)), args.adapt_per_class, args.seed)
    eval_dir = _labelled_copy(folder, eval_ix, work / "eval")
    for f in args.scales:
        src = _unlabelled_copy(folder, adapt_ix, f, work / f"adapt_x{f:g}")
        row = {"scale": f, "adapt_images": int(len(adapt_ix)), "eval_images": int(len(eval_ix))}
        row["before"] = _score(eval_dir, start, f)
        if args.refit:
            b, _ = _adapt([src], work / f"refit_x{f:g}", args.start, args, steps=0)
            row["refit"] = _score(eval_dir, b, f)
        b, info = _adapt([src], work / f"run_x{f:g}", args.start, args)
        row["adapted"] = _score(eval_dir, b, f)
        row["adapt"] = info
        row["delta_mAP"] = round(row["adapted"]["mAP"] - row["before"]["mAP"], 4)
        print(f"UCMD test x{f:g}: mAP before {row['before']['mAP']:.4f}"
              + (f"  refit {row['refit']['mAP']:.4f}" if "refit" in row else "")
              + f"  adapted {row['adapted']['mAP']:.4f}  ({info['seconds']} s, {info['n_tiles']} images, "
              f"best step {info['best_step']}/{info['steps_run']}, held-out loss "
              f"{info['loss_before']:.4f}->{info['loss_after']:.4f})", flush=True)
        results["ucmd"].append(row)
    if not args.lco:
        results["leave_classes_out"] = {"skipped": "no --lco bundle (train one with --leave-out-n 5)"}
        print("leave-classes-out: skipped (no --lco bundle)", flush=True)
        return
    lco = load_bundle(args.lco)
    held = lco.meta.get("training", {}).get("held_out_classes") or []
    if not held:
        results["leave_classes_out"] = {"skipped": f"{args.lco} records no held-out classes"}
        return
    h_ix = _subset(folder, [i for i in range(len(folder)) if folder.classes[folder.labels[i]] in held],
                   args.eval_per_class, args.seed)
    h_dir = _labelled_copy(folder, h_ix, work / "eval_heldout")
    src = work / "adapt_x1" if (work / "adapt_x1").exists() else _unlabelled_copy(folder, adapt_ix, 1, work / "adapt_x1")
    row = {"held_out_classes": held, "before": _score(h_dir, lco, 1.0)}
    b, info = _adapt([src], work / "run_lco", args.lco, args)
    row.update(adapted=_score(h_dir, b, 1.0), adapt=info)
    row["delta_mAP"] = round(row["adapted"]["mAP"] - row["before"]["mAP"], 4)
    print(f"leave-classes-out {held}: mAP before {row['before']['mAP']:.4f} adapted {row['adapted']['mAP']:.4f}",
          flush=True)
    results["leave_classes_out"] = row


def geotiffs(args, work: Path, results: dict) -> None:
    root = Path(args.geotiff)
    # Landsat at its native ~89 m: 256 px tiles are 23 km wide and the 62×34 km subset holds no pair of tiles
    # 2 sides apart (no negatives); read at 30 m (the Landsat product GSD) as a user would with --gsd 30
    for name, pattern, gsd in (("naip", "opengeos_naip_*.tif", None), ("landsat", "opengeos_landsat_*.tif", 30.0)):
        files = sorted(root.glob(pattern))
        if not files:
            continue
        _, info = _adapt(files, work / f"geo_{name}", args.start, args, gsd=gsd)
        info["gsd"] = gsd
        info["scenes"] = len(files)
        print(f"GeoTIFF {name}: {len(files)} scenes, {info['n_tiles']} tiles, {info['seconds']} s, kinds "
              f"{info['kinds']}, triplets {info['triplets']}, {info['n_heldout']} held out: loss "
              f"{info['loss_before']:.4f} -> {info['loss_after']:.4f}, top-1 {info['top1_before']} -> "
              f"{info['top1_after']} (best step {info['best_step']}/{info['steps_run']}), start-model neighbour agreement "
              f"{info['start_agreement']}", flush=True)
        results["geotiff"][name] = info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/ucmerced")
    ap.add_argument("--geotiff", default="../shared/data/geotiff")
    ap.add_argument("--start", default=None, help="start bundle (default: the shipped model)")
    ap.add_argument("--lco", default=None, help="a leave-classes-out bundle for that protocol")
    ap.add_argument("--scales", default="1,4,8")
    ap.add_argument("--adapt-per-class", type=int, default=0, help="images per class adapted on (0: all)")
    ap.add_argument("--eval-per-class", type=int, default=0, help="test images per class scored (0: all)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--p", type=int, default=8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--max-tiles", type=int, default=5000)
    ap.add_argument("--min-tiles", type=int, default=64)
    ap.add_argument("--triplets", default=None, help="triplet kinds (default: every kind the tiles allow)")
    ap.add_argument("--distill", type=float, default=None, help="distillation weight (default: adapt's)")
    ap.add_argument("--clusters", type=int, default=None, help="k-means clusters (default: adapt's rule; 0: off)")
    ap.add_argument("--recluster-every", type=int, default=None,
                    help="steps between re-clusterings on the adapted embedding (default: adapt's)")
    ap.add_argument("--no-refit", dest="refit", action="store_false", help="skip the reducer-refit-only baseline")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: ucmd,geotiff")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/rsir-adapt-bench")
    args = ap.parse_args()
    args.scales = [float(s) for s in args.scales.split(",") if s.strip() and s.strip() != "none"]
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.time()
    results: dict = {"ucmd": [], "geotiff": {}, "args": {k: v for k, v in vars(args).items()}}
    skip = set(args.skip.split(","))
    if "ucmd" not in skip and Path(args.data).is_dir():
        ucmd(args, work, results)
    if "geotiff" not in skip and Path(args.geotiff).is_dir():
        geotiffs(args, work, results)
    import torch

    results["seconds"] = round(time.time() - t0, 1)
    results["hardware"] = {"torch_threads": torch.get_num_threads(), "device": "cpu"}
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
