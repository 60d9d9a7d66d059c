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
    ("--test-fraction", "test_fraction", lambda v: 0 < v < 1, "a fraction between 0 and 1, e.g. 0.2"),
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
    if cfg.gsd_m is not None and not (math.isfinite(cfg.gsd_m) and cfg.gsd_m > 0):
        raise InputError(f"--gsd {cfg.gsd_m}: give the training tiles' ground sample distance in metres (> 0), "
                         "e.g. 0.3 for UC Merced")


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
                    root: Any = None) -> None:
    """Refuse a split that leaves some class fewer than 2 images to train on (a triplet
    needs a positive), naming the class and the fix that works: a class of fewer than
    :data:`MIN_IMAGES_PER_CLASS` images needs more images (the test split takes one of
    every class), otherwise ``--val-fraction 0`` or a lower ``--test-fraction``."""
    from rsir_stac.errors import DatasetError

    counts = np.bincount(labels, minlength=len(classes))
    if all_labels is not None:
        total = np.bincount(all_labels, minlength=len(classes))
        small = [c for c in range(len(classes)) if total[c] < MIN_IMAGES_PER_CLASS]
        if small:
            c = small[0]
            where = f"{root}/{classes[c]}" if root is not None else repr(classes[c])
            more = f" (and {len(small) - 1} more class(es))" if len(small) > 1 else ""
            raise DatasetError(f"class folder {where} has {int(total[c])} images{more}; training needs at least "
                               f"{MIN_IMAGES_PER_CLASS} per class (1 for the test split, 2 for a triplet's anchor "
                               "and positive): add images, or remove the folder")
    if counts.min() < 2:
        c = int(np.argmin(counts))
        n_total = int(np.bincount(all_labels, minlength=len(classes))[c]) if all_labels is not None else None
        n_test = int(np.bincount(test_labels, minlength=len(classes))[c]) if test_labels is not None else None
        if n_total is not None and n_test is not None and val_fraction > 0 and n_total - n_test >= 2:
            fix = (f"--val-fraction {val_fraction:g} takes one of them for validation: pass --val-fraction 0, "
                   "or add images")
        elif n_test is not None and n_test > 1:
            fix = (f"--test-fraction {test_fraction:g} takes {n_test} of them for the test split: lower "
                   "--test-fraction" + (" and pass --val-fraction 0" if val_fraction > 0 else "") + ", or add images")
        else:
            fix = "add images"
        had = f" of its {n_total}" if n_total is not None else ""
        raise InputError(f"class {classes[c]!r} keeps {int(counts[c])}{had} image(s) to train on and a triplet needs "
                         f"2; {fix}")


def usable_validation(labels: np.ndarray) -> bool:
    """Whether a validation split can rank anything: some class has two images (a query and
    a match).  With fewer, the run selects by training loss instead, and says so."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    if (counts >= 2).any():
        return True
    log.warning("the validation split has at most one image per class (%d images), so it cannot rank anything; "
                "the run keeps the epoch with the lowest training loss instead (more images per class, or a "
                "larger --val-fraction, gives a validation mAP)", len(labels))
    return False


__all__ = ["MIN_IMAGES_PER_CLASS", "check_adapt_options", "check_fit_split", "check_options",
           "usable_validation"]
