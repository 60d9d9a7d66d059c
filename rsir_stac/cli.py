"""The ``rsir-stac`` command line: thin click wrappers over library functions.

Heavy libraries (torch, rasterio, qdrant) are imported inside each command so
that ``rsir-stac --help`` stays fast.  Library errors (:class:`RsirError`)
print one line on stderr and exit non-zero; ``-v`` adds the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys

import click

from rsir_stac import __version__
from rsir_stac.errors import RsirError


def _handle_errors(fn):
    """Turn RsirError into a one-line message and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RsirError as exc:
            if logging.getLogger().level <= logging.DEBUG:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rsir-stac")
@click.option("-v", "--verbose", count=True, help="More logging; -vv shows tracebacks on errors.")
def main(verbose: int) -> None:
    """Content-based retrieval of remote sensing image tiles over STAC and Qdrant."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(max(level, logging.DEBUG))


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, default=str))


# --------------------------------------------------------------------------- train
@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, bundle/).")
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              type=click.Choice(["efficientnet_lite0", "resnet18", "resnet50"]))
@click.option("--backbone-weights", type=click.Path(dir_okay=False), help="Local ImageNet state dict (ResNets).")
@click.option("--random-init", is_flag=True, help="Start the backbone from random weights (poor quality).")
@click.option("--input-size", default=224, show_default=True, help="Network input size in pixels.")
@click.option("--tile-size", default=256, show_default=True, help="Tile size in pixels at the training GSD.")
@click.option("--gsd", "gsd_m", default=0.3, show_default=True, type=float, help="GSD of the training tiles (m).")
@click.option("--embedding-dim", default=128, show_default=True)
@click.option("--pooling", default="avg", show_default=True, type=click.Choice(["avg", "gem"]))
@click.option("--epochs", default=25, show_default=True)
@click.option("--p", default=16, show_default=True, help="Classes per batch.")
@click.option("--k", default=4, show_default=True, help="Images per class per batch.")
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--margin", default=0.2, show_default=True)
@click.option("--miner", default="batch-hard", show_default=True, type=click.Choice(["batch-hard", "semi-hard", "all"]))
@click.option("--test-fraction", default=0.2, show_default=True)
@click.option("--val-fraction", default=0.1, show_default=True, help="Slice of the training split for model selection.")
@click.option("--seed", default=0, show_default=True)
@click.option("--reducer", default="lda", show_default=True, type=click.Choice(["lda", "pca", "none"]))
@click.option("--reducer-dim", default=20, show_default=True)
@click.option("--max-steps-per-epoch", type=int, help="Cap steps per epoch (smoke tests).")
@click.option("--no-resume", is_flag=True, help="Ignore an existing checkpoint in --out.")
@_handle_errors
def train(data_dir, out, no_resume, **opts):
    """Train the triplet model on DATA_DIR (one sub-folder per class) and write OUT/bundle."""
    from tqdm import tqdm

    from rsir_stac.model.train import TrainConfig, train as run

    cfg = TrainConfig(data_dir=data_dir, out=out, resume=not no_resume, **opts)
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


# ------------------------------------------------------------------------ evaluate
@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--model", "model", type=click.Path(), help="Model bundle folder (default: the shipped model).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "all"]),
              help="test: the bundle's recorded test split; all: every image (other datasets).")
@click.option("--full", is_flag=True, help="Score the unreduced embedding instead of the stored vectors.")
@click.option("--fp32", is_flag=True, help="Disable bf16 autocast.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_handle_errors
def evaluate(data_dir, model, split, full, fp32, batch_size, as_json):
    """Retrieval mAP, P@k and ANMRR of a model on a labelled folder."""
    from pathlib import Path

    from tqdm import tqdm

    from rsir_stac.evaluate import evaluate_folder
    from rsir_stac.model.bundle import load_bundle

    if not Path(data_dir).is_dir():
        from rsir_stac.errors import DatasetError

        raise DatasetError(
            f"data folder {data_dir} does not exist; pass a folder of class sub-folders "
            "(e.g. UC Merced: ../shared/data/ucmerced) or set RSIR_DATA"
        )
    bundle = load_bundle(model)
    with tqdm(desc="embedding", unit="img", disable=as_json or None, file=sys.stderr) as bar:
        res = evaluate_folder(data_dir, bundle, split=split, batch_size=batch_size,
                              bf16=False if fp32 else None, progress=bar.update, reduce=not full)
    if as_json:
        _echo_json(res)
        return
    click.echo(f"model {bundle.model_id}  split {split}  queries {res['n_queries']}  dim {res['dim']}")
    for key in ("mAP", "P@5", "P@10", "P@20", "P@50", "P@100", "ANMRR"):
        click.echo(f"  {key:6s} {res[key]:.4f}")


# ----------------------------------------------------------------------- model info
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


if __name__ == "__main__":  # pragma: no cover
    main()
