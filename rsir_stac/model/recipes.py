"""Training recipes and what a run starts from, settled before any work.

:data:`RECIPES` are the presets of ``rsir-stac train --recipe``; :func:`check_config` refuses
a contradictory configuration (loss weights, ``--from``, ``--view-distill`` without a start
network, a backbone the recipe cannot train: :func:`check_backbone`) and loads the start bundle
of fine-tuning (:func:`start_from`), whose architecture replaces the recipe's.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rsir_stac.errors import InputError
from rsir_stac.model.train_checks import check_options

if TYPE_CHECKING:
    from rsir_stac.model.train import TrainConfig

log = logging.getLogger("rsir_stac.model.train")  # the name training's messages have always carried


#: Presets of ``rsir-stac train --recipe``: v3 (v2 with GeM pooling, chosen by the
#: leave-classes-out ablation, RESULTS §7) with ``--distill 0.5`` made the shipped
#: model v4 (v5 is v4 fine-tuned with view distillation); with ``--distill 0.5
#: --margin 0.4 --hybrid 2`` the stage that model v6 was fine-tuned from (v7: the same
#: with ``--xbm 512``); v3 with its preset weight 1 made ``--model v3``.
RECIPES = {
    "v1": {"hybrid": 0.0, "distill": 0.0, "freeze_blocks": 0, "downscale_max": 1.0, "val_scales": (1.0,),
           "pooling": "avg"},
    "v2": {"hybrid": 1.0, "distill": 1.0, "freeze_blocks": 5, "downscale_max": 8.0, "val_scales": (1.0, 4.0),
           "pooling": "avg"},
    "v3": {"hybrid": 1.0, "distill": 1.0, "freeze_blocks": 5, "downscale_max": 8.0, "val_scales": (1.0, 4.0),
           "pooling": "gem"},
}


def check_config(cfg: TrainConfig):
    """Refuse contradictory options before any work; returns (config, start bundle or None)."""
    check_options(cfg)
    for name, value in (("--view-distill", cfg.view_distill), ("--distill", cfg.distill)):
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} {value}: the weight of a loss term must be a finite number >= 0 "
                             f"(0 turns it off)")
    if cfg.init_from is not None and not str(cfg.init_from).strip():
        raise InputError("--from is empty: give a bundle folder (RUN/bundle) or a shipped model name, "
                         "or leave --from out to start from ImageNet")
    start = None
    if cfg.init_from is not None:
        cfg, start = start_from(cfg)
    elif cfg.view_distill > 0:
        raise InputError("--view-distill needs --from BUNDLE: the frozen start network is the teacher; "
                         "add --from (e.g. the shipped model: --from default)")
    if start is None:
        check_backbone(cfg)
    return cfg, start


def check_backbone(cfg: TrainConfig) -> None:
    """Refuse, before any work, a ResNet backbone the recipe cannot train: frozen blocks exist
    for efficientnet_lite0 only, distillation needs the backbone's ImageNet weights, and so
    does a ResNet without ``--random-init``.  One InputError naming the recipe and every fix."""
    if cfg.backbone == "efficientnet_lite0":
        return
    recipe = cfg.extra.get("recipe")
    preset = RECIPES.get(recipe, {})

    def said(flag: str, key: str, value) -> str:
        return f"{flag} {value:g}" + (f" (set by --recipe {recipe})" if recipe and preset.get(key) == value else "")

    why = []
    if cfg.freeze_blocks > 0:
        why.append(f"{said('--freeze-blocks', 'freeze_blocks', cfg.freeze_blocks)} freezes efficientnet_lite0 blocks")
    if cfg.distill > 0 and not cfg.backbone_weights:
        why.append(f"{said('--distill', 'distill', cfg.distill)} distils to ImageNet {cfg.backbone} features, "
                   "which needs --backbone-weights PATH")
    weights = "" if cfg.backbone_weights or cfg.random_init else " --random-init"
    if why:
        # each alternative is whole: following either one trains (the weights, when missing, too)
        base = "--recipe v1" if recipe and recipe != "v1" else \
            " ".join(f for f, on in (("--freeze-blocks 0", cfg.freeze_blocks > 0),
                                      ("--distill 0", cfg.distill > 0 and not cfg.backbone_weights)) if on)
        fix = f"{base}{weights}" + (f", or {base} --backbone-weights PATH (a torchvision {cfg.backbone} state dict)"
                                    if weights else "")
        raise InputError(f"--backbone {cfg.backbone}: {'; '.join(why)}; pass {fix}")
    if weights:
        raise InputError(f"backbone {cfg.backbone} needs ImageNet weights from a local file: pass --backbone-weights "
                         f"PATH (a torchvision {cfg.backbone} state dict), or --random-init to train from scratch")


def start_from(cfg: TrainConfig):
    """Load ``cfg.init_from`` and take its architecture (backbone, head, pooling,
    hybrid weight, input size) into the config; returns (config, bundle).

    Raises BundleNotFoundError (naming ``--from``) for a path without a bundle,
    BundleError for an unreadable one, and InputError for ``random_init`` with a
    start bundle or a view teacher of fewer than 4 views.
    """
    from dataclasses import replace

    from rsir_stac.errors import BundleNotFoundError
    from rsir_stac.model.bundle import load_bundle, shipped_models
    from rsir_stac.model.transforms import VIEW_SETS

    try:
        start = load_bundle(cfg.init_from)
    except BundleNotFoundError:
        run = Path(cfg.init_from) / "bundle"
        hint = (f"did you mean --from {run}?" if (run / "model.json").is_file() else
                f"give a folder written by `rsir-stac train`/`reduce` (RUN/bundle) or a shipped model name "
                f"({', '.join(shipped_models())})")
        why = ("the path does not exist, and it is not a shipped model name" if not Path(cfg.init_from).exists()
               else "model.json missing")
        raise BundleNotFoundError(f"--from {cfg.init_from}: no model bundle there ({why}); {hint}") from None
    m = start.meta
    if cfg.view_distill > 0 and cfg.view_distill_views not in (4, 8):
        raise InputError(f"--view-distill-views {cfg.view_distill_views}: the teacher averages 4 or 8 dihedral "
                         f"views ({sorted(VIEW_SETS)} exist; 1 teaches nothing); use 4")
    if cfg.random_init:
        raise InputError(f"--random-init and --from {cfg.init_from} contradict each other: drop one")
    cfg = replace(cfg, backbone=m["backbone"], embedding_dim=int(m["embedding_dim"]),
                  pooling=m.get("pooling", "avg"), hybrid=float(m.get("hybrid", 0.0)),
                  input_size=int(m["input_size"]), backbone_weights=None)
    log.info("starting from %s (%s); its architecture replaces the recipe's", start.model_id, start.path)
    return cfg, start
