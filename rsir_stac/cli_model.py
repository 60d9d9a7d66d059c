"""``rsir-stac train``, ``reduce``, ``evaluate`` and ``model-info``: the model commands."""

from __future__ import annotations

import contextlib
import math
import sys

import click

from rsir_stac.cli_common import echo_json as _echo_json, handle_errors as _handle_errors
from rsir_stac.cli_common import parse_bands as _parse_bands


@contextlib.contextmanager
def _said_once():
    """While the block runs, a warning already printed by this command is not printed again (one per
    --scale said the same thing three times)."""
    import logging

    def once_filter():
        seen: set[str] = set()

        def once(record: logging.LogRecord) -> bool:
            if record.levelno < logging.WARNING:
                return True
            text = record.getMessage()
            if text in seen:
                return False
            seen.add(text)
            return True

        return once

    filters = [(h, once_filter()) for h in logging.getLogger().handlers]   # one per handler: each says it once
    for h, f in filters:
        h.addFilter(f)
    try:
        yield
    finally:
        for h, f in filters:
            h.removeFilter(f)


# --------------------------------------------------------------------------- train
@click.command()
@click.argument("data_dir", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, bundle/).")
@click.option("--unlabelled", is_flag=True,
              help="Adapt --from BUNDLE to SOURCES (STAC, GeoTIFF/COG, folders, image folders) without labels.")
@click.option("--from", "from_bundle", type=click.Path(),
              help="Bundle to start from (a folder, or a shipped name: default (= v7), v1, v2, v3, v4, v5, v6); its network is kept "
                   "[--unlabelled: the shipped model; labelled: ImageNet].")
@click.option("--triplets",
              help="--unlabelled: triplet kinds spatial,time,augment,neighbour,cluster [every kind the tiles allow].")
@click.option("--clusters", type=int,
              help="--unlabelled: k-means pseudo-classes of the start embedding for cluster triplets "
                   "[about 50 tiles a cluster, none below 250 tiles; 0: off].")
@click.option("--stride", type=int, help="--unlabelled: tile stride in pixels [half a tile].")
@click.option("--bands", help="1-based R,G,B band numbers of multi-band images (e.g. 4,3,2; default: their colour "
                                "interpretation or band names), as for ingest; recorded in the bundle.")
@click.option("--asset", help="--unlabelled: STAC asset key, as for ingest.")
@click.option("--max-tiles", default=5000, show_default=True, help="--unlabelled: tiles read at most.")
@click.option("--steps", default=300, show_default=True, help="--unlabelled: training steps at most.")
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              type=click.Choice(["efficientnet_lite0", "resnet18", "resnet50"]))
@click.option("--backbone-weights", type=click.Path(dir_okay=False), help="Local ImageNet state dict (ResNets).")
@click.option("--random-init", is_flag=True, help="Start the backbone from random weights (poor quality).")
@click.option("--input-size", default=224, show_default=True, help="Network input size in pixels.")
@click.option("--tile-size", default=256, show_default=True, help="Tile size in pixels at the training GSD.")
@click.option("--gsd", "gsd_m", default=0.3, show_default=True, type=float, help="GSD of the training tiles (m).")
@click.option("--embedding-dim", default=128, show_default=True)
@click.option("--pooling", type=click.Choice(["avg", "gem"]), help="Global pooling [v3: gem; v1, v2: avg].")
@click.option("--epochs", default=25, show_default=True)
@click.option("--p", default=16, show_default=True, help="Classes per batch.")
@click.option("--k", default=4, show_default=True, help="Images per class per batch.")
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--margin", default=0.2, show_default=True)
@click.option("--miner", default="batch-hard", show_default=True, type=click.Choice(["batch-hard", "semi-hard", "all"]))
@click.option("--xbm", type=int, default=0, show_default=True,
              help="Cross-batch memory: from the second epoch each anchor also meets its hardest positive and "
                   "negative among the last N training embeddings (Wang et al. 2020; 0: off, else at least "
                   "--p x --k; 512 made v7's first stage).")
@click.option("--test-fraction", default=0.2, show_default=True)
@click.option("--val-fraction", default=0.1, show_default=True, help="Slice of the training split for model selection.")
@click.option("--seed", default=0, show_default=True)
@click.option("--reducer", default="lda", show_default=True, type=click.Choice(["lda", "pca", "lda+pca", "none"]),
              help="lda: the classes' discriminant directions only; lda+pca: those plus PCA of the rest "
                   "(keeps what the labels do not name); pca: unsupervised.")
@click.option("--reducer-dim", default=20, show_default=True)
@click.option("--max-steps-per-epoch", type=int, help="Cap steps per epoch (smoke tests).")
@click.option("--recipe", default="v3", show_default=True, type=click.Choice(["v1", "v2", "v3"]),
              help="v3: v2 with GeM pooling; v2: hybrid output, distillation, frozen stem, multi-scale; "
                   "v1: the triplet embedding alone.")
@click.option("--hybrid", type=float, help="Weight of pooled backbone features in the output [v2, v3: 1; v1: 0].")
@click.option("--distill", type=float, help="Weight of feature distillation to ImageNet [v2, v3: 1; v1: 0].")
@click.option("--freeze-blocks", type=int, help="Stem + N blocks keep ImageNet weights [v2, v3: 5; v1: 0].")
@click.option("--downscale-max", type=float, help="Multi-scale training: downsample by 1..F [v2, v3: 8; v1: 1].")
@click.option("--downscale-prob", type=float, help="Share of training images downsampled [0.5].")
@click.option("--val-scales", help="Model selection: mean val mAP over these downscale factors [v2, v3: 1,4; v1: 1].")
@click.option("--ema", "ema_epochs", type=float,
              help="Keep an EMA of the weights with this half-life in epochs and select/ship it [0: off].")
@click.option("--view-distill", type=float,
              help="With --from: weight of distilling the start network's 4-view (rotation) average into one "
                   "view [0: off].")
@click.option("--view-distill-views", type=click.Choice(["4", "8"]), help="Views the teacher averages [4].")
@click.option("--leave-out", multiple=True,
              help="Classes kept out of training (leave-classes-out protocol): comma-separated, or the option "
                   "repeated; a class whose name holds a comma is named alone (--leave-out 'Roads, paved').")
@click.option("--leave-out-n", type=int, default=0, help="Or: leave out this many classes chosen by --seed.")
@click.option("--no-resume", is_flag=True, help="Ignore an existing checkpoint in --out.")
@_handle_errors
def train(data_dir, out, no_resume, recipe, leave_out, val_scales, unlabelled, from_bundle, triplets, stride,
          bands, asset, max_tiles, steps, **opts):
    """Train the triplet model on DATA_DIR (one sub-folder per class) and write OUT/bundle.

    With --unlabelled: adapt a bundle to DATA_DIR... (any sources ingest takes, or image
    folders) without labels, from spatial, time, augmentation, start-model neighbour and
    start-model cluster triplets.
    """
    clusters = opts.pop("clusters")
    view_distill = (opts.pop("view_distill"), opts.pop("view_distill_views"))
    _refuse_mixed_flags(unlabelled, clusters, triplets, view_distill)
    if clusters is not None:
        opts["clusters"] = clusters
    if from_bundle is not None and not unlabelled:
        _refuse_architecture_with_from(from_bundle)
    if unlabelled:
        return _train_unlabelled(data_dir, out, from_bundle, triplets, stride, bands, asset, max_tiles, steps, opts)
    if len(data_dir) != 1:
        raise click.UsageError("train takes one DATA_DIR (one sub-folder per class); "
                               "for several unlabelled sources add --unlabelled")
    data_dir = data_dir[0]

    from rsir_stac.model.train import RECIPES, TrainConfig, train as run

    chosen = {k: v for k, v in opts.items() if v is not None}
    if view_distill[0] is not None:
        chosen["view_distill"] = view_distill[0]
    if view_distill[1] is not None:
        chosen["view_distill_views"] = int(view_distill[1])
    if from_bundle is not None:
        chosen["init_from"] = from_bundle
    if val_scales:
        chosen["val_scales"] = _parse_floats(val_scales, "--val-scales")
    if leave_out:  # names are matched to the folder's (commas, Unicode form, spaces) by choose_held_out
        chosen["leave_out"] = tuple(leave_out)
    if bands:
        chosen["bands"] = _parse_bands(bands)
    cfg = TrainConfig(data_dir=data_dir, out=out, resume=not no_resume, **{**RECIPES[recipe], **chosen},
                      extra={"recipe": recipe})
    bundle = run(cfg, TrainBars(cfg.epochs))
    click.echo(f"bundle written to {bundle.path} (model id {bundle.model_id}, {bundle.dim} dims)")


def _refuse_mixed_flags(unlabelled: bool, clusters, triplets, view_distill: tuple) -> None:
    """Refuse ``train`` options of the other mode: adaptation-only flags without ``--unlabelled``
    (also ones given at their default value), and view distillation with it (InputError, exit 2)."""
    from rsir_stac.errors import InputError

    for name, value in (("--clusters", clusters), ("--triplets", triplets)):
        if value is not None and not unlabelled:
            raise InputError(f"{name} is for adaptation without labels: add --unlabelled, or drop {name} "
                             "(labelled training takes its triplets from the classes)")
    if not unlabelled:
        from click.core import ParameterSource

        ctx = click.get_current_context()
        only = [n for n in ("steps", "max_tiles", "stride", "asset")
                if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)]
        if only:
            flags = ", ".join("--" + n.replace("_", "-") for n in only)
            raise InputError(f"{flags} without --unlabelled: for adaptation without labels only (labelled training "
                             "runs --epochs over the class folders); drop it, or add --unlabelled")
    if unlabelled and any(v is not None for v in view_distill):
        raise InputError("--view-distill is for labelled fine-tuning: drop it with --unlabelled "
                         "(adaptation distils from the start model already)")


class TrainBars:
    """The ``progress`` callback of :func:`rsir_stac.model.train.train`: a batch bar per epoch on a
    terminal (none in a piped log, as ingest and evaluate), one line per epoch with its loss and
    validation mAP, and the loading and reducer messages."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.bar = None

    def __call__(self, ev) -> None:
        if ev.kind == "step":
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=ev.steps, desc=f"epoch {ev.epoch + 1}/{self.epochs}", unit="batch",
                                leave=False, disable=None)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{ev.loss:.3f}")
        elif ev.kind == "epoch":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            val = "n/a" if ev.val_map is None or math.isnan(ev.val_map) else f"{ev.val_map:.4f}"  # cannot rank: said
            part = f" ({ev.message})" if ev.message else ""   # --xbm: the memory's share of the loss
            click.echo(f"epoch {ev.epoch + 1}/{self.epochs}: loss {ev.loss:.4f}{part}  val mAP {val}", err=True)
        elif ev.kind in ("load", "reduce"):
            click.echo(ev.message, err=True)


def _refuse_architecture_with_from(from_bundle: str) -> None:
    """``train --from``: the start bundle fixes the network, so an architecture option typed
    with it would be dropped silently; refuse it instead (InputError)."""
    from click.core import ParameterSource

    from rsir_stac.errors import InputError

    ctx = click.get_current_context()
    names = ("backbone", "backbone_weights", "embedding_dim", "input_size", "pooling", "hybrid")
    given = [n for n in names if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise InputError(f"{flags} with --from {from_bundle}: the start bundle's network (backbone, embedding "
                         f"dim, input size, pooling, hybrid weight) is kept; drop {flags}, or drop --from to "
                         "train that architecture from ImageNet")


def _train_unlabelled(sources, out, from_bundle, triplets, stride, bands, asset, max_tiles, steps, opts):
    """``train --unlabelled``: options left at the labelled defaults take adaptation's defaults."""
    from click.core import ParameterSource
    from tqdm import tqdm

    from rsir_stac.errors import InputError
    from rsir_stac.model.adapt import AdaptConfig, adapt

    ctx = click.get_current_context()

    def given(name):
        return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)

    labelled = [n for n in ("backbone", "backbone_weights", "random_init", "input_size", "tile_size", "embedding_dim",
                            "pooling", "epochs", "test_fraction", "val_fraction", "max_steps_per_epoch", "recipe",
                            "hybrid", "downscale_prob", "val_scales", "ema_epochs", "leave_out", "leave_out_n",
                            "no_resume") if given(n)]
    if labelled:
        flags = ", ".join("--" + {"ema_epochs": "ema"}.get(n, n).replace("_", "-") for n in labelled)
        raise InputError(f"{flags} with --unlabelled: labelled training only (adaptation keeps the start bundle's "
                         f"network and runs --steps, not epochs); drop {flags}, or drop --unlabelled")
    if opts.get("xbm"):  # 0 is off, and fine
        raise InputError(f"--xbm {opts['xbm']} with --unlabelled: the memory pairs tiles by their class labels, "
                         "which adaptation has none of; drop --xbm, or drop --unlabelled")
    if given("reducer") and opts["reducer"] in ("lda", "lda+pca"):
        raise click.BadParameter(f"--reducer {opts['reducer']} needs labels; use pca or none with --unlabelled",
                                 param_hint="--reducer")
    if given("miner") and opts["miner"] != "batch-hard":
        raise click.BadParameter("--unlabelled mines random or batch-hard negatives; use --miner batch-hard or "
                                 "leave it out", param_hint="--miner")
    kw = {name: opts[name] for name in ("lr", "p", "k", "margin", "seed", "reducer", "reducer_dim", "gsd_m")
          if given(name)}
    kw = {("gsd" if k == "gsd_m" else k): v for k, v in kw.items()}
    for name in ("distill", "freeze_blocks", "downscale_max", "clusters"):
        if opts.get(name) is not None:
            kw[name] = opts[name]
    if given("miner"):
        kw["miner"] = "batch-hard"
    if bands:
        kw["bands"] = _parse_bands(bands)
    if triplets:
        kw["triplets"] = tuple(t.strip() for t in triplets.split(",") if t.strip())
    cfg = AdaptConfig(sources=tuple(sources), out=out, start=from_bundle, stride=stride, asset=asset,
                      max_tiles=max_tiles, steps=steps, **kw)
    bars: dict = {}

    def progress(ev):
        if ev.kind in ("tiles", "step"):
            desc = "reading tiles" if ev.kind == "tiles" else "adapting"
            bar = bars.get(ev.kind)
            if bar is None:
                for other in bars.values():
                    other.close()
                bar = bars[ev.kind] = tqdm(total=ev.steps, desc=desc, unit="tile" if ev.kind == "tiles" else "step",
                                           leave=False, file=sys.stderr, disable=None)
            bar.update(ev.step - bar.n)
            if ev.kind == "step":
                bar.set_postfix(loss=f"{ev.loss:.3f}")
        elif ev.kind == "eval":
            acc = " ".join(f"{k} {v:.3f}" for k, v in ev.extra["accuracy"].items())
            click.echo(f"step {ev.step}: held-out loss {ev.score:.4f} (top-1 {acc}); "
                       f"neighbour agreement with the start model {ev.agreement:.3f}", err=True)
        elif ev.kind == "reduce":
            click.echo(ev.message, err=True)

    try:
        bundle = adapt(cfg, progress)
    finally:
        for bar in bars.values():
            bar.close()
    a = bundle.meta["training"]["adaptation"]
    counts = ", ".join(f"{k} {v}" for k, v in a["triplets"].items())
    click.echo(f"bundle written to {bundle.path} (model id {bundle.model_id}, {bundle.dim} dims); "
               f"{a['n_tiles']} tiles, triplets {counts}, best step {a['best_step']} of {a['steps_run']}, "
               f"held-out loss {a['before']['mean_loss']:.4f} -> {a['after']['mean_loss']:.4f}")


#: The largest ``evaluate --scale``: a 256-pixel tile (the models' size) keeps 8 pixels (``downscale``'s floor);
#: smaller images stop at 8 px at a smaller factor, which evaluate warns about and records.
MAX_SCALE = 32.0


def _parse_floats(text: str, what: str) -> tuple[float, ...]:
    from rsir_stac.errors import InputError

    parts = [v.strip() for v in text.split(",")]
    try:
        vals = tuple(float(v) for v in parts)
    except ValueError:
        vals = ()
    if not vals or not all(math.isfinite(v) for v in vals):
        raise InputError(f"{what} {text!r} is not a comma-separated list of finite numbers; give e.g. {what} 1,2,4,8")
    return tuple(dict.fromkeys(vals))  # a repeated value once


# -------------------------------------------------------------------------- reduce
@click.command()
@click.argument("data_dir", type=click.Path())
@click.option("--model", "model", type=click.Path(),
              help="Bundle to start from (or a shipped name: v7, the default; v1-v6).")
@click.option("--kind", required=True, type=click.Choice(["pca", "lda", "lda+pca", "none"]),
              help="Reducer to fit.  lda+pca: the classes' LDA directions plus PCA of what they leave out "
                   "(LDA's in-domain gain without collapsing content the labels do not name).")
@click.option("--dim", default=32, show_default=True, type=click.IntRange(1),
              help="Output dimensions (LDA: at most classes-1; PCA and LDA+PCA: at most the training images).")
@click.option("--views", type=click.Choice(["1", "4", "8"]), default=None,
              help="Average each tile's embedding over its 4 rotations (4) or rotations and mirror images (8) "
                   "at inference: higher mAP, that many times the embedding time.  Default: the bundle's.")
@click.option("--hybrid", type=float, default=None,
              help="Weight of the pooled backbone features in the output (recipe v2/v3): higher keeps more for "
                   "classes and sensors the labels never named, lower more for the trained classes (v6, v7: 2; "
                   "1 gives +0.003 mAP on UCMD, -0.03 on unseen classes).  Default: the bundle's.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the new bundle.")
@_handle_errors
def reduce(data_dir, model, kind, dim, views, hybrid, out):
    """Fit a new PCA/LDA/LDA+PCA reducer on a bundle's training split of DATA_DIR and write a new bundle
    (optionally with other rotation views or another hybrid weight; the network's weights are kept)."""
    from tqdm import tqdm

    from rsir_stac.model.refit import refit_reducer

    bar = None

    def progress(n):  # the bar appears once the checks passed and embedding starts
        nonlocal bar
        if bar is None:
            bar = tqdm(desc="embedding training split", unit="img", file=sys.stderr, disable=None)
        bar.update(n)

    try:
        b = refit_reducer(model, data_dir, kind, dim, out, views=None if views is None else int(views),
                          hybrid=hybrid, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"bundle written to {b.path} (model id {b.model_id}, {b.dim} dims"
               + (f", {b.views} views per tile" if b.views > 1 else "") + ")")


# ------------------------------------------------------------------------ evaluate
@click.command()
@click.argument("data_dir", type=click.Path())
@click.option("--model", "model", type=click.Path(),
              help="Model bundle folder (or a shipped name: v7, the default; v1-v6); "
                   "'imagenet' scores ImageNet pooled features.")
@click.option("--split", type=click.Choice(["test", "all"]),
              help="test: the images the model never trained on (the bundle's recorded test split; with --classes, "
                   "its test images of those classes); all: every image (other datasets; on the training folder "
                   "the images trained on are counted and warned about). [default: test on the dataset the model "
                   "was trained on, else all]")
@click.option("--scale", default="1", show_default=True,
              help="Downsample every image by F before embedding (coarser GSD); a list such as 1,2,4,8 gives a table.")
@click.option("--held-out", is_flag=True, help="Only the classes the model was trained without (leave-classes-out).")
@click.option("--classes", multiple=True,
              help="Only these classes: comma-separated, or the option repeated; a class whose name holds a comma "
                   "is named alone (--classes 'Roads, paved' --classes beach).")
@click.option("--full", is_flag=True, help="Score the unreduced embedding instead of the stored vectors.")
@click.option("--fp32", is_flag=True, help="Disable bf16 autocast.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Tiles per forward pass (default: 16 on a CPU, 64 on a GPU).")
@click.option("--expand", default=0, show_default=True, type=click.IntRange(0, 100),
              help="Score with query expansion over N neighbours, as search --expand N ranks.")
@click.option("--bands", help="1-based R,G,B band numbers of multi-band images, e.g. 4,3,2 for Sentinel-2 "
                              "(default: their colour interpretation or band names).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: the first --scale's metrics and protocol and every scale's warnings at "
                   "the top level, plus model and results (one such object per --scale, in order).")
@_handle_errors
def evaluate(data_dir, model, split, scale, held_out, classes, full, fp32, batch_size, expand, bands, as_json):
    """Retrieval mAP, P@k and ANMRR of a model on a labelled folder."""
    from rsir_stac.errors import RsirError

    try:
        _evaluate(data_dir, model, split, scale, held_out, classes, full, fp32, batch_size, expand, bands, as_json)
    except RsirError as exc:  # --json: an object on stdout for a script, as ingest --json prints
        if as_json:
            _echo_json({"ok": False, "error": " ".join(str(exc).split()), "exit_code": exc.exit_code})
        raise


def _evaluate(data_dir, model, split, scale, held_out, classes, full, fp32, batch_size, expand, bands, as_json):
    from pathlib import Path

    from tqdm import tqdm

    from rsir_stac.evaluate import evaluate_folder, resolve_model
    from rsir_stac.model.class_names import listed, names_no_class

    if not Path(data_dir).is_dir():
        from rsir_stac.errors import DatasetError

        what = "is a file, not a folder" if Path(data_dir).exists() else "does not exist"
        raise DatasetError(f"data folder {data_dir} {what}; pass a folder with one sub-folder of images per class "
                           "(e.g. UC Merced's folder)")
    scales = _parse_floats(scale, "--scale")
    bands = _parse_bands(bands)
    bad = [f for f in scales if not 1 <= f <= MAX_SCALE]
    if bad:
        from rsir_stac.errors import InputError

        why = "is below 1" if bad[0] < 1 else f"is over the largest factor evaluate takes (at most {MAX_SCALE:g})"
        raise InputError(f"--scale {bad[0]:g} {why}; give downsampling factors from 1 to {MAX_SCALE:g}, "
                         "e.g. --scale 1,2,4,8")
    if held_out and classes:
        from rsir_stac.errors import InputError

        raise InputError(f"--held-out and --classes {','.join(classes)} both choose the classes to evaluate; pass "
                         "one of them")
    if classes and names_no_class(classes):  # "--classes ," or "--classes ''" named none
        raise click.BadParameter(f"{','.join(classes)!r} names no class; give class folder names, e.g. --classes "
                                 "beach,forest", param_hint="'--classes'")
    # names as typed (matched to the folder's by evaluate_folder: commas, Unicode form, spaces)
    chosen = "held-out" if held_out else (list(classes) if classes else None)
    # None: test on the training dataset, all on another or for held-out classes (evaluate_folder)
    bundle = resolve_model(model)
    results = []
    from tqdm.contrib.logging import logging_redirect_tqdm

    # a warning is said once, not once per scale, and above the bar rather than on its line
    with logging_redirect_tqdm(), _said_once():
        for f in scales:
            with tqdm(desc=f"embedding x{f:g}", unit="img", disable=as_json or None, file=sys.stderr) as bar:
                results.append(evaluate_folder(data_dir, bundle, split=split, batch_size=batch_size, scale=f,
                                               classes=chosen, bf16=False if fp32 else None, progress=bar.update,
                                               reduce=not full, expand=expand, bands=bands))
    if as_json:  # one shape whatever the number of scales (the first scale's keys stay at the top level)
        said = list(dict.fromkeys(w for res in results for w in res["warnings"]))  # every scale's, each once
        _echo_json({**results[0], "warnings": said, "model": bundle.model_id, "results": results})
        return
    first = results[0]
    unscored = int(first.get("n_unscored") or 0)   # one-image classes: distractors, not in the scores
    click.echo(f"model {bundle.model_id}  split {first['protocol']['split']}  queries {first['n_queries']}"
               + (f" ({first['n_queries'] - unscored} scored, {unscored} one-image distractor"
                  f"{'' if unscored == 1 else 's'})" if unscored else "") + f"  dim {first['dim']}"
               + (f"  classes {listed(results[0]['protocol']['classes'])}" if chosen else "")
               + (f"  query expansion {expand}" if expand else "")
               + (f"  views {bundle.views}" if getattr(bundle, "views", 1) > 1 else ""))
    keys = ("mAP", "P@5", "P@10", "P@20", "ANMRR")
    labels = [_scale_label(f, res["protocol"].get("effective_scale", f)) for f, res in zip(scales, results)]
    width = max(6, *(len(label) + 1 for label in labels))   # "x16 (x8)" keeps a gap before its figures
    click.echo(f"  {'scale':<{width}s}" + " ".join(f"{k:>7s}" for k in keys))
    for label, res in zip(labels, results):
        click.echo(f"  {label:<{width}s}" + " ".join(f"{res[k]:7.4f}" for k in keys))


def _scale_label(scale: float, effective: float) -> str:
    """A table row's scale: ``x16``, or ``x16 (x8)`` when the images were downsampled by less."""
    return f"x{scale:g}" + (f" (x{effective:g})" if effective != scale else "")


@click.command("model-info")
@click.option("--model", "model", type=click.Path(),
              help="Model bundle folder (or a shipped name: v7, the default; v1-v6).")
@_handle_errors
def model_info(model):
    """Print a model bundle's metadata as JSON."""
    from rsir_stac.evaluate import IMAGENET, ImageNetBaseline
    from rsir_stac.model.bundle import load_bundle

    if model == IMAGENET:  # the baseline evaluate scores: no bundle, its description
        base = ImageNetBaseline()
        _echo_json({"model_id": base.model_id, "stored_dim": base.dim, "input_size": 224,
                    "description": "ImageNet EfficientNet-Lite0 pooled features, L2-normalised, no "
                                   "training: the reference of evaluate's generality protocols "
                                   "(evaluate --model imagenet); not a bundle ingest can use"}, indent=2)
        return
    b = load_bundle(model)
    meta = {k: v for k, v in b.meta.items() if k != "training"}
    # the history and the split's file lists (thousands of names) are in model.json itself
    meta["training"] = {k: v for k, v in b.meta.get("training", {}).items() if k not in ("history", "split_files")}
    _echo_json(meta, indent=2)
