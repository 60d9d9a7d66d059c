"""The ``rsir-stac`` command line: thin click wrappers over library functions.

Heavy libraries (torch, rasterio, qdrant) are imported inside each command so
that ``rsir-stac --help`` stays fast.

Errors: a library error (:class:`RsirError`) prints ``error: <message>`` on
stderr and exits with its ``exit_code`` (2: bad usage or input, refused before
any work; 1: the run failed or some items/windows failed).  Anything else is a
bug or an unwrapped library failure: one line naming the exception type and
exit 1.  ``-v`` adds the traceback to either; Ctrl-C exits 130.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import traceback

import click

from rsir_stac import __version__
from rsir_stac.cli_analysis import _examples, _filter_options, _per_item, _search_filter, bar_pages, tqdm_bar
from rsir_stac.cli_served import served_info, served_ingest, served_search, service_for
from rsir_stac.errors import RsirError


log = logging.getLogger("rsir_stac.cli")  # not __main__ under `python -m`


def _verbosity() -> int:
    ctx = click.get_current_context(silent=True)
    return int((ctx.find_root().params.get("verbose") or 0) if ctx is not None else 0)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` (one line) on stderr and exit with ``code``."""
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


def _handle_errors(fn):
    """One line on stderr and a non-zero exit for every error; ``-v`` adds the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted; re-run the same command (ingest, reindex and train resume from what they wrote; "
                  "other commands start again and leave nothing half-written)", 130)
        except RsirError as exc:
            if _verbosity() >= 1:
                click.echo(traceback.format_exc().rstrip(), err=True)
            _fail(str(exc), exc.exit_code)
        except OSError as exc:
            from rsir_stac.store.space import disk_full, is_disk_full

            if not is_disk_full(exc):
                raise
            if _verbosity() >= 1:
                click.echo(traceback.format_exc().rstrip(), err=True)
            where = exc.filename if isinstance(exc.filename, str) else "."
            _fail(str(disk_full(where, "writing there", intact="what was written before is intact")), 1)
        except Exception as exc:  # noqa: BLE001 - last resort: no traceback unless -v
            if _verbosity() >= 1:
                click.echo(traceback.format_exc().rstrip(), err=True)
                _fail(f"unexpected {type(exc).__name__}: {exc}", 1)
            _fail(f"unexpected {type(exc).__name__}: {_one_line(exc)[:300]}; run with -v for the traceback", 1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rsir-stac")
@click.option("-v", "--verbose", count=True,
              help="-v: progress logs and tracebacks on errors; -vv: debug logs.")
def main(verbose: int) -> None:
    """Content-based retrieval of remote sensing image tiles over STAC and Qdrant."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(max(level, logging.DEBUG))
    # GDAL's HTTP retry notices ("Retrying again in 1.0 secs") are noise unless asked for
    logging.getLogger("rasterio._env").setLevel(logging.NOTSET if verbose else logging.ERROR)
    from rsir_stac.malloc import tune_allocator

    tune_allocator()  # before any thread allocates: see rsir_stac.malloc


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, default=str))


# --------------------------------------------------------------------------- train
@main.command()
@click.argument("data_dir", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, bundle/).")
@click.option("--unlabelled", is_flag=True,
              help="Adapt --from BUNDLE to SOURCES (STAC, GeoTIFF/COG, folders, image folders) without labels.")
@click.option("--from", "from_bundle", type=click.Path(),
              help="Bundle to start from (a folder, or a shipped name: default, v1, v2, v3, v4); its network is kept "
                   "[--unlabelled: the shipped model; labelled: ImageNet].")
@click.option("--triplets",
              help="--unlabelled: triplet kinds spatial,time,augment,neighbour,cluster [every kind the tiles allow].")
@click.option("--clusters", type=int,
              help="--unlabelled: k-means pseudo-classes of the start embedding for cluster triplets "
                   "[about 50 tiles a cluster, none below 250 tiles; 0: off].")
@click.option("--stride", type=int, help="--unlabelled: tile stride in pixels [half a tile].")
@click.option("--bands", help="--unlabelled: R,G,B band numbers, as for ingest.")
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
@click.option("--leave-out", help="Comma-separated classes kept out of training (leave-classes-out protocol).")
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
    from tqdm import tqdm

    clusters = opts.pop("clusters")
    for name, value in (("--clusters", clusters), ("--triplets", triplets)):
        if value is not None and not unlabelled:
            from rsir_stac.errors import InputError

            raise InputError(f"{name} is for adaptation without labels: add --unlabelled, or drop {name} "
                             "(labelled training takes its triplets from the classes)")
    if clusters is not None:
        opts["clusters"] = clusters
    view_distill = (opts.pop("view_distill"), opts.pop("view_distill_views"))
    if unlabelled and any(v is not None for v in view_distill):
        from rsir_stac.errors import InputError

        raise InputError("--view-distill is for labelled fine-tuning: drop it with --unlabelled "
                         "(adaptation distils from the start model already)")
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
    if leave_out:
        chosen["leave_out"] = tuple(c.strip() for c in leave_out.split(",") if c.strip())
    cfg = TrainConfig(data_dir=data_dir, out=out, resume=not no_resume, **{**RECIPES[recipe], **chosen},
                      extra={"recipe": recipe})
    bar = None

    def progress(ev):
        nonlocal bar
        if ev.kind == "step":
            if bar is None:
                bar = tqdm(total=ev.steps, desc=f"epoch {ev.epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
            bar.update(1)
            bar.set_postfix(loss=f"{ev.loss:.3f}")
        elif ev.kind == "epoch":
            if bar is not None:
                bar.close()
                bar = None
            click.echo(f"epoch {ev.epoch + 1}/{cfg.epochs}: loss {ev.loss:.4f}  val mAP {ev.val_map:.4f}", err=True)
        elif ev.kind in ("load", "reduce"):
            click.echo(ev.message, err=True)

    bundle = run(cfg, progress)
    click.echo(f"bundle written to {bundle.path} (model id {bundle.model_id}, {bundle.dim} dims)")


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

    from rsir_stac.model.adapt import AdaptConfig, adapt

    ctx = click.get_current_context()

    def given(name):
        return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)

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
        kw["bands"] = tuple(int(b) for b in _parse_floats(bands, "--bands"))
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


#: The largest ``evaluate --scale``: a 256-pixel image keeps 8 pixels (``downscale``'s floor).
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
@main.command()
@click.argument("data_dir", type=click.Path())
@click.option("--model", "model", type=click.Path(), help="Bundle to start from (default: the shipped model).")
@click.option("--kind", required=True, type=click.Choice(["pca", "lda", "lda+pca", "none"]),
              help="Reducer to fit.  lda+pca: the classes' LDA directions plus PCA of what they leave out "
                   "(LDA's in-domain gain without collapsing content the labels do not name).")
@click.option("--dim", default=32, show_default=True, type=click.IntRange(1),
              help="Output dimensions (LDA: at most classes-1; PCA and LDA+PCA: at most the training images).")
@click.option("--views", type=click.Choice(["1", "4", "8"]), default=None,
              help="Average each tile's embedding over its 4 rotations (4) or rotations and mirror images (8) "
                   "at inference: higher mAP, that many times the embedding time.  Default: the bundle's.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the new bundle.")
@_handle_errors
def reduce(data_dir, model, kind, dim, views, out):
    """Fit a new PCA/LDA/LDA+PCA reducer on a bundle's training split of DATA_DIR and write a new bundle."""
    from tqdm import tqdm

    from rsir_stac.model.refit import refit_reducer

    with tqdm(desc="embedding training split", unit="img", file=sys.stderr) as bar:
        b = refit_reducer(model, data_dir, kind, dim, out, views=None if views is None else int(views),
                          progress=bar.update)
    click.echo(f"bundle written to {b.path} (model id {b.model_id}, {b.dim} dims"
               + (f", {b.views} views per tile" if b.views > 1 else "") + ")")


# ------------------------------------------------------------------------ evaluate
@main.command()
@click.argument("data_dir", type=click.Path())
@click.option("--model", "model", type=click.Path(),
              help="Model bundle folder (default: the shipped model); 'imagenet' scores ImageNet pooled features.")
@click.option("--split", type=click.Choice(["test", "all"]),
              help="test: the bundle's recorded test split; all: every image (other datasets). "
                   "[default: all with --held-out/--classes, else test]")
@click.option("--scale", default="1", show_default=True,
              help="Downsample every image by F before embedding (coarser GSD); a list such as 1,2,4,8 gives a table.")
@click.option("--held-out", is_flag=True, help="Only the classes the model was trained without (leave-classes-out).")
@click.option("--classes", help="Only these comma-separated classes.")
@click.option("--full", is_flag=True, help="Score the unreduced embedding instead of the stored vectors.")
@click.option("--fp32", is_flag=True, help="Disable bf16 autocast.")
@click.option("--batch-size", type=int, help="Tiles per forward pass (default: 16 on a CPU, 64 on a GPU).")
@click.option("--expand", default=0, show_default=True, type=click.IntRange(0, 100),
              help="Score with query expansion over N neighbours, as search --expand N ranks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_handle_errors
def evaluate(data_dir, model, split, scale, held_out, classes, full, fp32, batch_size, expand, as_json):
    """Retrieval mAP, P@k and ANMRR of a model on a labelled folder."""
    from pathlib import Path

    from tqdm import tqdm

    from rsir_stac.evaluate import evaluate_folder, resolve_model

    if not Path(data_dir).is_dir():
        from rsir_stac.errors import DatasetError

        what = "is a file, not a folder" if Path(data_dir).exists() else "does not exist"
        raise DatasetError(f"data folder {data_dir} {what}; pass a folder with one sub-folder of images per class "
                           "(e.g. UC Merced's folder)")
    scales = _parse_floats(scale, "--scale")
    bad = [f for f in scales if not 1 <= f <= MAX_SCALE]
    if bad:
        from rsir_stac.errors import InputError

        why = "is below 1" if bad[0] < 1 else f"leaves under 8 pixels of a 256-pixel image (at most {MAX_SCALE:g})"
        raise InputError(f"--scale {bad[0]:g} {why}; give downsampling factors from 1 to {MAX_SCALE:g}, "
                         "e.g. --scale 1,2,4,8")
    if held_out and classes:
        from rsir_stac.errors import InputError

        raise InputError(f"--held-out and --classes {classes} both choose the classes to evaluate; pass one of them")
    chosen = "held-out" if held_out else ([c.strip() for c in classes.split(",") if c.strip()] if classes else None)
    split = split or ("all" if chosen else "test")
    bundle = resolve_model(model)
    results = []
    for f in scales:
        with tqdm(desc=f"embedding x{f:g}", unit="img", disable=as_json or None, file=sys.stderr) as bar:
            results.append(evaluate_folder(data_dir, bundle, split=split, batch_size=batch_size, scale=f,
                                           classes=chosen, bf16=False if fp32 else None, progress=bar.update,
                                           reduce=not full, expand=expand))
    if as_json:
        _echo_json(results[0] if len(results) == 1 else {"model": bundle.model_id, "results": results})
        return
    click.echo(f"model {bundle.model_id}  split {split}  queries {results[0]['n_queries']}  dim {results[0]['dim']}"
               + (f"  classes {','.join(results[0]['protocol']['classes'])}" if chosen else "")
               + (f"  query expansion {expand}" if expand else "")
               + (f"  views {bundle.views}" if getattr(bundle, "views", 1) > 1 else ""))
    keys = ("mAP", "P@5", "P@10", "P@20", "ANMRR")
    click.echo("  scale " + " ".join(f"{k:>7s}" for k in keys))
    for f, res in zip(scales, results):
        click.echo(f"  x{f:<5g}" + " ".join(f"{res[k]:7.4f}" for k in keys))


@main.command("model-info")
@click.option("--model", "model", type=click.Path(), help="Model bundle folder (default: the shipped model).")
@_handle_errors
def model_info(model):
    """Print a model bundle's metadata as JSON."""
    from rsir_stac.model.bundle import load_bundle

    b = load_bundle(model)
    meta = {k: v for k, v in b.meta.items() if k != "training"}
    meta["training"] = {k: v for k, v in b.meta.get("training", {}).items() if k != "history"}
    click.echo(json.dumps(meta, indent=2))


# ------------------------------------------------------------------ shared options
def _store_options(fn):
    """--index / --qdrant-url / --api-key, shared by every command that opens an index."""
    fn = click.option("--api-key", envvar="RSIR_QDRANT_API_KEY", help="Qdrant API key [env RSIR_QDRANT_API_KEY].")(fn)
    fn = click.option("--qdrant-url", envvar="RSIR_QDRANT_URL",
                      help="Qdrant server/cluster URL instead of the embedded index [env RSIR_QDRANT_URL].")(fn)
    fn = click.option("--index", "index", type=click.Path(file_okay=False),
                      help="Embedded index folder (default ./rsir-index).")(fn)
    return fn


def _parse_bands(text: str | None):
    if not text:
        return None
    from rsir_stac.errors import InputError

    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        bands = ()
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise InputError(f"--bands {text!r} is invalid; give R,G,B band numbers (1-based), e.g. --bands 4,3,2")
    return bands * 3 if len(bands) == 1 else bands


def _ingest_datetime(text: str | None):
    """``--datetime`` of ``ingest``: an instant or a closed START/END interval."""
    if not text:
        return None
    from rsir_stac.errors import InputError
    from rsir_stac.store.filters import parse_datetime_range

    start, end = parse_datetime_range(text)
    if start is None or end is None:
        raise InputError(f"--datetime {text!r} has an open end; give an instant or START/END, "
                         "e.g. 2020-06-01T10:30:00Z or 2020-01-01/2020-12-31")
    return (start, end)  # a plain date covers that day


# -------------------------------------------------------------------------- ingest
@main.command()
@click.argument("sources", nargs=-1, required=True)
@_store_options
@click.option("--model", "model", type=click.Path(), help="Model bundle folder (default: the shipped model).")
@click.option("--asset", help="STAC asset key to tile (default: first GeoTIFF with role visual, then data).")
@click.option("--bands", help="1-based R,G,B band numbers (default: from STAC eo:bands or colour interpretation).")
@click.option("--tile-size", type=int, help="Tile size in pixels at the target GSD (default: the model's).")
@click.option("--stride", type=int, help="Step between tiles in pixels (default: tile size).")
@click.option("--gsd", type=float, help="Target ground sample distance in metres (default: the model's).")
@click.option("--native-gsd", is_flag=True, help="Tile at each scene's own resolution, no resampling.")
@click.option("--edge", default="shift", show_default=True, type=click.Choice(["shift", "drop", "pad"]),
              help="Rule for the last row/column of tiles.")
@click.option("--min-valid", default=0.5, show_default=True, help="Skip tiles with less valid data than this fraction.")
@click.option("--batch-size", type=int, help="Tiles per forward pass (default: 16 on a CPU, 64 on a GPU).")
@click.option("--shard", help="Only this worker's share I/N of the items (0 <= I < N).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing item or window instead of skipping it.")
@click.option("--collection", help="Collection name for bare rasters (not STAC items, which keep theirs).")
@click.option("--datetime", "datetime_",
              help="Acquisition time of bare rasters: an instant or START/END (RFC 3339 or dates); "
                   "default: the file's ACQUISITIONDATETIME / TIFFTAG_DATETIME when present.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_handle_errors
def ingest(sources, index, qdrant_url, api_key, model, asset, bands, tile_size, stride, gsd, native_gsd, edge,
           min_valid, batch_size, shard, fail_fast, collection, datetime_, as_json):
    """Tile, embed and index SOURCES: STAC Items/Collections/Catalogs/ItemCollections
    (files or URLs) and GeoTIFF/COG paths or URLs (also s3://, gs://, az://)."""
    from tqdm import tqdm

    from rsir_stac.ingest import IngestOptions, ingest as run
    from rsir_stac.stac import parse_shard

    opts = IngestOptions(asset=asset, bands=_parse_bands(bands), tile_size=tile_size, stride=stride, gsd=gsd,
                         native_gsd=native_gsd, edge=edge, min_valid=min_valid, batch_size=batch_size,
                         fail_fast=fail_fast, shard=parse_shard(shard) if shard else None,
                         collection=collection, datetime=_ingest_datetime(datetime_))
    svc = service_for(index, qdrant_url, "ingest")
    if svc is not None:  # a running serve holds the index: it ingests (rsir_stac.cli_served)
        report, job = served_ingest(svc, sources, model=model, asset=asset, bands=opts.bands, tile_size=tile_size,
                                    stride=stride, gsd=gsd, native_gsd=native_gsd, edge=edge, min_valid=min_valid,
                                    shard=shard, fail_fast=fail_fast, collection=collection, datetime_=datetime_)
        if job["state"] != "done":
            if report is not None:
                _ingest_summary(report, as_json, list_failures=False)
            _fail(job.get("error") or "the service's ingest job failed", int(job.get("exit_code") or 1))
        return _ingest_finish(report, as_json)
    bars: dict = {}
    done = {"items": 0, "tiles": 0, "total": 0}

    def progress(ev):
        # bars on a terminal; with -v, log lines (for unattended runs writing to a file)
        if ev.kind == "items":
            done["items_total"] = ev.total
            bars["items"] = tqdm(total=ev.total, desc="items", unit="item", position=0, file=sys.stderr, disable=None)
            bars["tiles"] = tqdm(total=0, desc="tiles", unit="tile", position=1, file=sys.stderr, disable=None)
        elif ev.kind == "total":
            done["total"] += ev.n
            bars["tiles"].total += ev.n
            bars["tiles"].refresh()
        elif ev.kind == "tiles":
            done["tiles"] += ev.n
            bars["tiles"].update(ev.n)
            log.debug("tiles %d/%d", done["tiles"], done["total"])
        elif ev.kind == "start":
            log.info("item %s: started", ev.item_id)
        elif ev.kind == "end":
            done["items"] += 1
            bars["items"].update(1)
            log.info("item %s: done (%d/%d items, %d/%d tiles)", ev.item_id, done["items"],
                     done.get("items_total", 0), done["tiles"], done["total"])

    try:
        report = run(list(sources), index=index, qdrant_url=qdrant_url, api_key=api_key, model=model,
                     options=opts, progress=progress)
    except RsirError as exc:
        partial = getattr(exc, "report", None)
        if partial is None:
            raise
        for bar in bars.values():
            bar.close()
        bars.clear()
        _ingest_summary(partial, as_json, list_failures=False)  # the failure is the error line
        _fail(f"item {getattr(exc, 'item_id', '?')} failed and --fail-fast stopped the run: {exc}", 1)
    finally:
        for bar in bars.values():
            bar.close()
    _ingest_finish(report, as_json)


def _ingest_finish(report, as_json: bool) -> None:
    """Print the summary of a finished ingest and exit 1 when anything failed or nothing was indexed."""
    n_items, n_tiles = len(report.items_failed), len(report.tiles_failed)
    single = n_items + n_tiles == 1
    _ingest_summary(report, as_json, list_failures=not single)
    if single:  # the one failure is the error line itself
        if n_items:
            f = report.items_failed[0]
            _fail(f"item {f['item'] or '?'} failed: {f['error']}", 1)
        rest = "the scene's other tiles were indexed" if report.points_written or report.tiles_existing \
            else "nothing else was indexed"
        _fail(f"window failed ({rest}): {report.tiles_failed[0]}", 1)
    if not report.ok:
        parts = ([f"{n_items} of {report.items} items failed"] if n_items else []) + (
            [f"{n_tiles} windows failed"] if n_tiles else [])
        where = "items_failed/tiles_failed in the JSON" if as_json else "listed above"
        _fail(f"{' and '.join(parts)} ({where}); fix them and re-run the same command "
             "(tiles already indexed are kept and skipped)", 1)
    if report.nothing_indexed:
        _fail(f"nothing was indexed: {report.nothing_indexed}", 1)


#: Failed windows listed per source file after an ingest (the rest are counted).
FAILED_WINDOWS_SHOWN = 3


def _ingest_summary(report, as_json: bool, list_failures: bool = True) -> None:
    if as_json:
        _echo_json(report.as_dict())
        return
    click.echo(
        f"items {report.items_done}/{report.items} done, {len(report.items_failed)} failed; "
        f"tiles {report.tiles_total}: {report.points_written} written, {report.tiles_existing} already indexed"
        + (f" ({report.tiles_relabelled} given the new collection/date)" if report.tiles_relabelled else "") + ", "
        f"{report.tiles_empty} skipped (mostly empty), {len(report.tiles_failed)} failed; {report.seconds:.1f} s"
    )
    small = {d["item"]: d["hint"] for d in report.items_small}
    for item in report.items_empty:
        click.echo(f"  skipped item {item}: {small.get(item, 'every window is nodata or below --min-valid')}", err=True)
    if not list_failures:
        return
    for f in report.items_failed:
        click.echo(f"  failed item {f['item'] or '?'}: {f['error']}", err=True)
    per_source: dict[str, int] = {}
    for msg in report.tiles_failed:  # a damaged file fails many windows alike: the first few of each
        src = msg.split(": ", 1)[0]
        per_source[src] = per_source.get(src, 0) + 1
        if per_source[src] <= FAILED_WINDOWS_SHOWN:
            click.echo(f"  failed window: {msg}", err=True)
    for src, n in per_source.items():
        if n > FAILED_WINDOWS_SHOWN:
            click.echo(f"  ... and {n - FAILED_WINDOWS_SHOWN} more failed windows of {src} (all in --json)", err=True)


# -------------------------------------------------------------------------- search
@main.command()
@click.option("--image", multiple=True, type=click.Path(dir_okay=False),
              help="Positive example: an image file or raster tile (repeatable).")
@click.option("--point-id", multiple=True, help="Positive example: a stored tile's id (repeatable).")
@click.option("--at", "at", multiple=True, help="Positive example: the stored tile covering LON,LAT (repeatable).")
@click.option("--not-image", multiple=True, type=click.Path(dir_okay=False), help="Negative example image (repeatable).")
@click.option("--not-point-id", multiple=True, help="Negative example: a stored tile's id (repeatable).")
@click.option("--not-at", multiple=True, help="Negative example: the stored tile covering LON,LAT (repeatable).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Label file (GeoJSON FeatureCollection of positive/negative tiles) adding examples.")
@click.option("--strategy", default="average", show_default=True,
              type=click.Choice(["average", "best_score", "sum_scores", "discover", "context", "feedback"]),
              help="How the engine combines several examples (Qdrant recommend/discovery/context/feedback query).")
@click.option("--mmr", type=float, help="Diversify with maximal marginal relevance (diversity 0-1, e.g. 0.5).")
@click.option("--per-item", default="auto", show_default=True,
              help="At most N hits per scene; 0: no cap; auto: other scenes first (3 per scene), then the rest.")
@click.option("--exclude-within", type=float, help="Drop tiles within this many metres of the examples' footprints.")
@click.option("--expand", default=0, show_default=True, type=click.IntRange(0, 100),
              help="Query expansion: average the examples with their N nearest tiles and search again (e.g. 5).")
@_store_options
@click.option("--model", "model", type=click.Path(), help="Model bundle that built the index (default: shipped).")
@_filter_options
@click.option("--limit", "-k", default=10, show_default=True, help="Number of results (offset + limit <= 10,000).")
@click.option("--offset", default=0, show_default=True, help="Skip this many results (paging).")
@click.option("--include-query", is_flag=True, help="Keep the example tiles themselves in the results.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json", "geojson"]))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the hits to a file: .geojson, .csv, .fgb or .parquet (GeoParquet), streamed page by page.")
@click.option("--with-vectors", is_flag=True, help="With --out: include the stored vectors.")
@click.option("--thumbnails", type=click.Path(file_okay=False), help="Write result tiles as PNG and a contact sheet here.")
@_handle_errors
def search(image, point_id, at, not_image, not_point_id, not_at, labels_path, strategy, mmr, per_item, exclude_within,
           expand, index, qdrant_url, api_key, model, bbox, near, within, datetime_, collection,
           limit, offset, include_query, fmt, out, with_vectors, thumbnails):
    """Find the stored tiles most like the examples (and unlike the negative ones), filtered by place, time
    and collection."""
    from rsir_stac.search import Index, excluded_notes

    flt = _search_filter(bbox, near, within, datetime_, collection)
    pos, neg = _examples(image, point_id, at), _examples(not_image, not_point_id, not_at)
    labels = None
    if labels_path:
        from rsir_stac.labels import read_labels

        labels = read_labels(labels_path)
    if out:
        from rsir_stac.export import format_for

        format_for(out)  # refuse an unknown extension before any work
    elif with_vectors:
        raise click.UsageError("--with-vectors adds the vectors to an --out file; give --out FILE "
                               "(e.g. --out hits.parquet), or leave --with-vectors out")
    svc = service_for(index, qdrant_url, "search")
    if svc is not None:  # a running serve holds the index: it searches (rsir_stac.cli_served)
        result, doc = served_search(svc, image=image, point_id=point_id, at=at, not_image=not_image,
                                    not_point_id=not_point_id, not_at=not_at, labels_path=labels_path,
                                    strategy=strategy, mmr=mmr, per_item=per_item, exclude_within=exclude_within,
                                    expand=expand, model=model, bbox=bbox, near=near, within=within, datetime_=datetime_,
                                    collection=collection, limit=limit, offset=offset, include_query=include_query,
                                    out=out, with_vectors=with_vectors, thumbnails=thumbnails)
        if result is not None:
            _print_search(result, fmt, offset, [], doc)
        return
    with Index.open(index, qdrant_url=qdrant_url, api_key=api_key, model=model) as idx:
        result = idx.search(positives=pos, negatives=neg, labels=labels, strategy=strategy, mmr=mmr,
                            per_item=_per_item(per_item), exclude_within_m=exclude_within, flt=flt, k=limit,
                            offset=offset, include_query=include_query, with_payload=not out, expand=expand)
        notes = excluded_notes(idx.store, flt)
        if out:
            from rsir_stac.export import empty_row, search_pages, write_table

            with tqdm_bar(len(result.hits), "rows") as bar:
                n = write_table((bar_pages(search_pages(idx, result, with_vectors=with_vectors), bar)), out,
                                empty_row(result.score_name))
            click.echo(f"wrote {n} hits to {out}", err=True)
            for note in notes:
                click.echo(f"note: {note}", err=True)
            return
        if thumbnails:
            from rsir_stac.thumbnails import write_thumbnails

            paths = write_thumbnails(result, thumbnails)
            click.echo(f"wrote {len(paths)} images to {thumbnails} (contact sheet: {paths[-1]})", err=True)
    _print_search(result, fmt, offset, notes)


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle, so that ids differing at the end stay apart."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[-(width - 1 - head):]


def _print_search(result, fmt: str, offset: int, notes: list, doc: dict | None = None) -> None:
    """Print search hits as a table, JSON or GeoJSON (``doc``: the service's GeoJSON, when it searched)."""
    from rsir_stac.search import hit_record, to_geojson

    if fmt == "json":
        _echo_json({"query": {"kind": result.query_kind, "id": result.query_id, "strategy": result.strategy,
                              "positives": [e.id for e in result.examples if e.positive],
                              "negatives": [e.id for e in result.examples if not e.positive],
                              **({"expanded": list(result.expanded)} if result.expanded else {})},
                    "hits": [hit_record(h, result.score_name) for h in result.hits]})
    elif fmt == "geojson":
        _echo_json(doc if doc is not None else to_geojson(result))
    else:
        if result.query_id:
            qp = result.query_payload or {}
            about = ", ".join(str(v) for v in (qp.get("item_id"), qp.get("datetime")) if v)
            click.echo(f"query: {result.query_kind} {result.query_id}" + (f" ({about})" if about else "")
                       + (f" + {len(result.examples) - 1} more examples" if len(result.examples) > 1 else "")
                       + (f", expanded with {len(result.expanded)} nearest tiles" if result.expanded else ""))
        click.echo(f"{'#':>3} {result.score_name:>9}  {'id':36}  {'item':28} {'lon':>10} {'lat':>9}  datetime")
        for rank, h in enumerate(result.hits, offset + 1):
            loc = h.payload.get("location") or {}
            click.echo(f"{rank:>3} {h.score:9.4f}  {h.id:36}  {_fit(str(h.payload.get('item_id')), 28):28} "
                       f"{loc.get('lon', float('nan')):10.5f} {loc.get('lat', float('nan')):9.5f}  "
                       f"{h.payload.get('datetime') or ''}")
        if not result.hits:
            click.echo(f"no results at --offset {offset} (fewer tiles match)" if offset else
                       "no results (loosen the filters?)")
    for note in notes:
        click.echo(f"note: {note}", err=True)


# ---------------------------------------------------------------------------- info
@main.command()
@_store_options
@_handle_errors
def info(index, qdrant_url, api_key):
    """Summarise an index: points, vector size, model, collections and extent."""
    from dataclasses import asdict

    from rsir_stac.store import open_store

    svc = service_for(index, qdrant_url, "info")
    if svc is not None:  # a running serve holds the index: it answers (rsir_stac.cli_served)
        return served_info(svc)
    with open_store(index, qdrant_url=qdrant_url, api_key=api_key, read_only=True) as store:
        click.echo(json.dumps(asdict(store.info()), indent=2))


# ------------------------------------------------------------------------- migrate
@main.command()
@click.option("--index", "index", required=True, type=click.Path(file_okay=False, exists=True),
              help="Embedded index folder to copy from.")
@click.option("--qdrant-url", envvar="RSIR_QDRANT_URL", required=True, help="Qdrant server/cluster to copy to.")
@click.option("--api-key", envvar="RSIR_QDRANT_API_KEY", help="Qdrant API key [env RSIR_QDRANT_API_KEY].")
@click.option("--batch-size", default=1000, show_default=True)
@_handle_errors
def migrate(index, qdrant_url, api_key, batch_size):
    """Copy an embedded index (ids, vectors, payloads) to a Qdrant server or cluster."""
    from tqdm import tqdm

    from rsir_stac.store import open_store
    from rsir_stac.store.migrate import migrate as run

    with open_store(index, read_only=True) as src, open_store(qdrant_url=qdrant_url, api_key=api_key) as dst:
        with tqdm(total=src.count(), desc="points", unit="pt", file=sys.stderr) as bar:
            n = run(src, dst, batch_size=batch_size, progress=bar.update)
        where = dst.describe()
    click.echo(f"copied {n} points from {index} to {where}")


# ------------------------------------------------------------------------- reindex
@main.command()
@_store_options
@click.option("--to", "to", required=True,
              help="New index folder (with --qdrant-url: new collection name on the same Qdrant).")
@click.option("--collection", default="rsir_tiles", show_default=True, help="Collection to read.")
@click.option("--model", "model", type=click.Path(), help="New model bundle folder (default: the shipped model).")
@click.option("--batch-size", type=int, help="Tiles per forward pass (default: 16 on a CPU, 64 on a GPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_handle_errors
def reindex(index, qdrant_url, api_key, to, collection, model, batch_size, as_json):
    """Re-embed every tile of an index with a new model into a new index (the old one is left as it is)."""
    from tqdm import tqdm

    from rsir_stac.reindex import reindex as run

    bar = None

    def progress(ev):
        nonlocal bar
        if ev.kind == "total":
            bar = tqdm(total=ev.n, desc="points", unit="pt", file=sys.stderr, disable=None)
        elif ev.kind == "points" and bar is not None:
            bar.update(ev.n)
        elif ev.kind == "source_failed":
            log.info("source %s cannot be read; its tiles are skipped", ev.href)

    try:
        report = run(index, to, qdrant_url=qdrant_url, api_key=api_key, collection=collection, model=model,
                     batch_size=batch_size, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        _echo_json(report.as_dict())
    else:
        click.echo(f"{report.points_total} points of {report.source} ({report.model_from}) -> {report.target} "
                   f"({report.model_to}): {report.points_written} written, {report.points_existing} already there, "
                   f"{sum(f['tiles'] for f in report.sources_failed) + report.tiles_failed} failed; "
                   f"{report.seconds:.1f} s")
        if report.tiling_kept:
            click.echo(f"  note: {report.tiling_kept}", err=True)
        for f in report.sources_failed:
            click.echo(f"  failed source {f['href']} ({f['tiles']} tiles): {f['error']}; it was ingested with "
                       f"{f['ingest_options']}", err=True)
        for msg in report.tile_errors:
            click.echo(f"  failed tile: {msg}", err=True)
    if not report.ok:
        n_src = len(report.sources_failed)
        parts = ([f"{n_src} source(s) could not be read"] if n_src else []) + (
            [f"{report.tiles_failed} tile(s) could not be read"] if report.tiles_failed else [])
        where = "sources_failed/tile_errors in the JSON" if as_json else "listed above"
        _fail(f"{' and '.join(parts)} ({where}); their tiles are not in the new index: put the files back and "
              "re-run the same command, or ingest them again with the new model and the options listed for each", 1)


# ------------------------------------------------------- check / snapshot / restore
@main.command()
@click.option("--index", "index", default="./rsir-index", show_default=True, type=click.Path(file_okay=False),
              help="Embedded index folder.")
@click.option("--repair", is_flag=True, help="Rebuild the index from the points that pass; drop the others.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_handle_errors
def check(index, repair, as_json):
    """Check an embedded index: files, counts, every vector and payload against its digest.

    Exit 0 when nothing is damaged, 1 when something is (each finding is one
    line on stderr).  --repair rebuilds it from the points that pass; re-run
    the ingest that built the index to restore the dropped ones.
    """
    from rsir_stac.store.integrity import check_index, repair_index

    report = check_index(index)
    fixed = repair_index(index) if repair and not report.ok else None
    if as_json:
        _echo_json({**report.as_dict(), "repair": fixed.as_dict() if fixed else None})
    else:
        click.echo(f"index {report.index}: {report.points} points, {report.verified} verified against their "
                   f"digests, {report.unverified} without a digest (re-embedded by the next ingest)")
    for f in report.findings:
        sample = f" (e.g. {', '.join(f.ids[:3])})" if f.ids else ""
        click.echo(f"damaged: {f.message}{sample}", err=True)
    if fixed is not None:
        click.echo(f"repaired: kept {fixed.kept} points, dropped {fixed.dropped}; re-run the ingest that built "
                   f"{index} to restore them" if fixed.dropped else f"repaired: kept all {fixed.kept} points", err=True)
    elif not report.ok:
        _fail(f"index {report.index} is damaged ({len(report.findings)} finding(s) above); re-run the ingest "
              f"that built it, or `rsir-stac check --index {index} --repair` then re-run it", 1)


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--index", "index", default="./rsir-index", show_default=True, type=click.Path(file_okay=False),
              help="Embedded index folder.")
@click.option("--force", is_flag=True, help="Replace OUT when it exists.")
@_handle_errors
def snapshot(out, index, force):
    """Write a verified snapshot of an embedded index to OUT (.tar.gz or .tgz)."""
    from rsir_stac.store.snapshot import snapshot as run

    r = run(index, out, force=force)
    click.echo(f"snapshot {r.snapshot}: {r.points} points, {r.files} files, {r.archive_bytes} bytes, verified")


@main.command()
@click.argument("snapshot_file", type=click.Path(dir_okay=False))
@click.option("--index", "index", required=True, type=click.Path(file_okay=False), help="Index folder to restore into.")
@click.option("--force", is_flag=True, help="Replace the collection already in --index.")
@_handle_errors
def restore(snapshot_file, index, force):
    """Restore SNAPSHOT_FILE into --index after verifying every file and point."""
    from rsir_stac.store.snapshot import restore as run

    r = run(snapshot_file, index, force=force)
    click.echo(f"restored {r.points} points into {r.index} (checksums and check passed)")


from rsir_stac.serve import serve_command  # noqa: E402  (imports only click)
from rsir_stac.cli_analysis import register  # noqa: E402  (imports only click)

main.add_command(serve_command)
register(main, _handle_errors, _store_options)


if __name__ == "__main__":  # pragma: no cover
    main()
