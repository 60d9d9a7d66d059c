"""Checks of a training configuration and its data, made before any image is decoded or
anything is written: one-line errors naming the option and a value that works."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from rsir_stac.errors import InputError

log = logging.getLogger(__name__)

#: (option, TrainConfig field, test, what a valid value is) for the numeric options.
_RULES: tuple[tuple[str, str, Any, str], ...] = (
    ("--epochs", "epochs", lambda v: v >= 1, "a whole number of epochs >= 1, e.g. 25"),
    ("--p", "p", lambda v: v >= 2, "at least 2 classes per batch (triplets need negatives), e.g. 16"),
    ("--k", "k", lambda v: v >= 2, "at least 2 images per class per batch (triplets need positives), e.g. 4"),
    ("--lr", "lr", lambda v: math.isfinite(v) and v > 0, "a learning rate > 0, e.g. 3e-4"),
    ("--margin", "margin", lambda v: math.isfinite(v) and v > 0, "a triplet margin > 0, e.g. 0.2"),
    ("--embedding-dim", "embedding_dim", lambda v: v >= 2, "at least 2 dimensions, e.g. 128"),
    ("--input-size", "input_size", lambda v: 32 <= v <= 1024, "32..1024 pixels, e.g. 224"),
    ("--tile-size", "tile_size", lambda v: 8 <= v <= 4096, "8..4096 pixels, e.g. 256"),
    ("--test-fraction", "test_fraction", lambda v: 0 < v < 1,
     "a fraction above 0 and below 1 (a test split is kept out of training for evaluate), e.g. 0.2"),
    ("--val-fraction", "val_fraction", lambda v: 0 <= v < 1, "a fraction from 0 (no validation) to below 1, e.g. 0.1"),
    ("--downscale-max", "downscale_max", lambda v: math.isfinite(v) and v >= 1, "a factor >= 1, e.g. 8"),
    ("--downscale-prob", "downscale_prob", lambda v: 0 <= v <= 1, "a probability from 0 to 1, e.g. 0.5"),
    ("--ema", "ema_epochs", lambda v: math.isfinite(v) and v >= 0, "a half-life in epochs >= 0 (0: off)"),
    ("--freeze-blocks", "freeze_blocks", lambda v: v >= 0, "a number of blocks >= 0"),
    ("--hybrid", "hybrid", lambda v: math.isfinite(v) and v >= 0, "a weight >= 0 (0: the triplet embedding alone)"),
    ("--max-steps-per-epoch", "max_steps_per_epoch", lambda v: v is None or v >= 1,
     "at least 1 step (leave it out for whole epochs)"),
    ("--val-scales", "val_scales", lambda v: len(v) > 0 and all(math.isfinite(f) and f >= 1 for f in v),
     "downscale factors >= 1, e.g. 1,4"),
)

#: The same for ``train --unlabelled`` (:class:`~rsir_stac.model.adapt.AdaptConfig`).
_ADAPT_RULES: tuple[tuple[str, str, Any, str], ...] = (
    ("--steps", "steps", lambda v: v >= 1, "at least 1 training step, e.g. 300"),
    ("--max-tiles", "max_tiles", lambda v: v >= 1, "at least 1 tile, e.g. 5000"),
    ("--stride", "stride", lambda v: v is None or v >= 1, "a positive number of pixels (leave it out for half a tile)"),
    ("--lr", "lr", lambda v: math.isfinite(v) and v > 0, "a learning rate > 0, e.g. 1e-4"),
    ("--margin", "margin", lambda v: math.isfinite(v) and v > 0, "a triplet margin > 0, e.g. 0.2"),
)


def _check(cfg: Any, rules: tuple[tuple[str, str, Any, str], ...]) -> None:
    """Raise InputError for the first option ``rules`` refuse."""
    for opt, name, ok, valid in rules:
        value = getattr(cfg, name)
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            shown = ",".join(f"{v:g}" for v in value) if isinstance(value, (tuple, list)) else value
            raise InputError(f"{opt} {shown}: give {valid}")


def check_options(cfg: Any) -> None:
    """Refuse option values that cannot train (``--epochs 0``, ``--k 1``, ``--lr -1``,
    ``--gsd 0`` ...) before any work.  Raises InputError naming the option."""
    _check(cfg, _RULES)
    if cfg.xbm != 0 and not (isinstance(cfg.xbm, int) and cfg.xbm >= 1):
        raise InputError(f"--xbm {cfg.xbm}: give 0 (off) or a memory of at least one batch of embeddings, e.g. 512")
    if cfg.xbm and cfg.epochs < 2:
        log.warning("--xbm %d with --epochs %d: the memory joins the loss from the second epoch, so this run "
                    "trains without it; pass --epochs 2 or more", cfg.xbm, cfg.epochs)
    if cfg.gsd_m is not None and not (math.isfinite(cfg.gsd_m) and cfg.gsd_m > 0):
        raise InputError(f"--gsd {cfg.gsd_m}: give the training tiles' ground sample distance in metres (> 0), "
                         "e.g. 0.3 for UC Merced")


def check_memory(cfg: Any, n_classes: int) -> None:
    """Refuse a cross-batch memory (``--xbm``) smaller than one P×K batch of this folder: newest first, it
    would hold a few classes of one batch (at most ``--k`` images a class), so its term has no negative or
    shows no more than the batch itself.  InputError naming the batch (``min(--p, classes) × --k``)."""
    batch = min(cfg.p, n_classes) * cfg.k
    if cfg.xbm and cfg.xbm < batch:
        per = f"--p {cfg.p}" if cfg.p <= n_classes else f"{n_classes} classes, fewer than --p {cfg.p}"
        raise InputError(f"--xbm {cfg.xbm}: give 0 (off) or a memory of at least one batch, {batch} embeddings here "
                         f"({per}, x --k {cfg.k}), e.g. 512")


def check_adapt_options(cfg: Any) -> None:
    """:func:`check_options` for ``train --unlabelled`` (``--steps 0``, ``--lr -1``, ``--gsd 0`` ...)."""
    _check(cfg, _ADAPT_RULES)
    gsd = getattr(cfg, "gsd", None)
    if gsd is not None and not (isinstance(gsd, (int, float)) and math.isfinite(gsd) and gsd > 0):
        raise InputError(f"--gsd {gsd}: give the ground sample distance to read the tiles at in metres (> 0), "
                         "e.g. 0.3, or leave it out to keep the sources' own")


#: Images a class needs to train: one for the test split and two for a triplet's anchor and positive.
MIN_IMAGES_PER_CLASS = 3


def check_fit_split(labels: np.ndarray, classes: Any, test_fraction: float, val_fraction: float,
                    all_labels: np.ndarray | None = None, test_labels: np.ndarray | None = None,
                    root: Any = None, *, validating: bool = True) -> None:
    """Refuse (DatasetError) a split that leaves some class fewer than 2 images to train on (a
    triplet needs an anchor and a positive), naming every such class with its size, the least a
    class needs under these fractions (:func:`images_needed`) and the fixes that work: add images,
    ``--val-fraction 0`` or a lower ``--test-fraction`` when they lower it, or remove the folders.
    ``validating=False``: the run left validation out (too few images for one), so the least a
    class needs is counted without it."""
    from rsir_stac.errors import DatasetError

    asked_val = val_fraction
    if not validating:
        val_fraction = 0.0

    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() >= 2:
        return
    total = np.bincount(all_labels if all_labels is not None else labels, minlength=len(classes))
    small = [c for c in range(len(classes)) if counts[c] < 2]
    listed = ", ".join(f"{classes[c]} ({int(total[c])} image{'s' if total[c] != 1 else ''})" for c in small[:5])
    listed += f" and {len(small) - 5} more" if len(small) > 5 else ""
    need = images_needed(test_fraction, val_fraction)
    n_test = _takes(need, test_fraction)
    parts = [f"{n} for {what}" for n, what in ((n_test, "the test split"),
                                               (_takes(need - n_test, val_fraction), "validation")) if n]
    fixes = ["add images to them"]
    if val_fraction > 0 and images_needed(test_fraction, 0) < need:
        fixes.append(f"pass --val-fraction 0 (then {images_needed(test_fraction, 0)} are enough)")
    if images_needed(test_fraction, 0) > MIN_IMAGES_PER_CLASS:
        fixes.append(f"lower --test-fraction (with --val-fraction 0, {MIN_IMAGES_PER_CLASS} are enough)")
    fixes.append("remove their folders")
    where = f" of {root}" if root is not None else ""
    raise DatasetError(
        f"{len(small)} class(es){where} have too few images to train: {listed}; with --test-fraction "
        f"{test_fraction:g} and "
        + (f"--val-fraction {val_fraction:g}" if validating or not asked_val
           else "no validation split (the folder has too few images for one)")
        + f" each class needs at least {need} ("
        + ", ".join(parts + ["2 for a triplet's anchor and positive"]) + "): " + ", ".join(fixes[:-1])
        + f", or {fixes[-1]}")


def _takes(n: int, fraction: float) -> int:
    """Images a stratified split (:func:`rsir_stac.model.data.stratified_split`) takes from a class of ``n``."""
    return min(max(1, round(n * fraction)), n - 1) if fraction > 0 and n > 0 else 0


def images_needed(test_fraction: float, val_fraction: float) -> int:
    """The fewest images a class needs so that 2 are left to train on after the test split takes
    its share and validation its share of the rest (as :func:`_takes` counts them)."""
    n = 2
    while n < 10_000:
        rest = n - _takes(n, test_fraction)
        if rest - _takes(rest, val_fraction) >= 2:
            return n
        n += 1
    return n


def usable_validation(labels: np.ndarray) -> bool:
    """Whether a validation split can rank anything: some class has two images (a query and
    a match).  With fewer, the run selects by training loss instead
    (:func:`warn_unusable_validation` says so, once the split is known to train)."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    return bool((counts >= 2).any())


def warn_unusable_validation(n_images: int) -> None:
    """Say that a validation split of ``n_images`` (:func:`usable_validation` False) is left out and
    the run keeps the epoch with the lowest training loss."""
    log.warning("the validation split has at most one image per class (%d images), so it cannot rank anything; "
                "the run keeps the epoch with the lowest training loss instead (more images per class, or a "
                "larger --val-fraction, gives a validation mAP)", n_images)


__all__ = ["MIN_IMAGES_PER_CLASS", "check_adapt_options", "check_fit_split", "check_options", "images_needed",
           "usable_validation", "warn_unusable_validation"]
