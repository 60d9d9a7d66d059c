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
)


def check_options(cfg: Any) -> None:
    """Refuse option values that cannot train (``--epochs 0``, ``--k 1``, ``--lr -1``,
    ``--gsd 0`` ...) before any work.  Raises InputError naming the option."""
    for opt, name, ok, valid in _RULES:
        value = getattr(cfg, name)
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            raise InputError(f"{opt} {value}: give {valid}")
    if cfg.gsd_m is not None and not (math.isfinite(cfg.gsd_m) and cfg.gsd_m > 0):
        raise InputError(f"--gsd {cfg.gsd_m}: give the training tiles' ground sample distance in metres (> 0), "
                         "e.g. 0.3 for UC Merced")


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


__all__ = ["check_options", "usable_validation"]
