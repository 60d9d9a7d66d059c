"""The bundle an adaptation writes (:func:`rsir_stac.model.adapt.adapt`).

What goes into it besides the adapted network: the start bundle's reducer when the user's
tiles are too few to refit one (:func:`keep_start_reducer`), the adaptation's record, its
provenance (:func:`adaptation_record`: sources, tiles, triplets, the held-out criterion
before and after), and the atomic write of the bundle and ``adapt.json``
(:func:`write_adapted`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rsir_stac.model.adapt import AdaptConfig, _Tiles

log = logging.getLogger("rsir_stac.model.adapt")  # the name adapt's messages have always carried

#: A reducer is refitted on the catalogue only from this many tiles per stored dimension up
#: (:func:`keep_start_reducer`).
TILES_PER_REDUCED_DIM = 10

#: Fewer held-out tiles than this judge an adaptation too noisily to trust without looking (the
#: adaptation trial's 18 held-out tiles, of 192, kept a network that lost 0.026 mAP on UC Merced).
MIN_TRUSTED_HELDOUT = 100


def keep_start_reducer(cfg: AdaptConfig, bundle, n_tiles: int) -> str | None:
    """Why the start bundle's reducer is kept rather than refitted on ``n_tiles`` tiles, or None.

    A PCA of D dimensions fitted on fewer than :data:`TILES_PER_REDUCED_DIM` × D tiles keeps the
    directions along which those few tiles differ and drops the ones that tell them from
    everything else: 100 tiles of one UC Merced class took that class's own mAP from 0.888 to
    0.085 among the 21 classes (new-user trial).  Only a reducer of the start bundle's kind and
    size can stand in (``--reducer-dim`` other than the start's asks for a refit; a refit it
    then is, with a warning)."""
    start = bundle.meta.get("reducer") or {"kind": "none"}
    dim = int(cfg.reducer_dim or bundle.dim)
    need = TILES_PER_REDUCED_DIM * dim
    if cfg.reducer == "none" or n_tiles >= need:
        return None
    if start.get("kind") == "none" or (cfg.reducer_dim is not None and cfg.reducer_dim != bundle.dim):
        log.warning("refitting a %d-d %s reducer on %d tiles, fewer than the %d it needs to keep what tells them "
                    "from other ground: searches of other imagery may rank worse", dim, cfg.reducer, n_tiles, need)
        return None
    return (f"kept the start bundle's {start['kind']} reducer: {n_tiles} tiles are too few to refit a {dim}-d one "
            f"({need:,}+ needed; fewer keep only what those tiles differ by)")


def adaptation_record(cfg: AdaptConfig, bundle, data: _Tiles, near: np.ndarray, run: dict, kept: str | None,
                      device: str, bf16: bool, t0: float, train_seconds: float) -> dict:
    """The record of an adaptation (``meta["training"]["adaptation"]`` and ``adapt.json``): the start
    model, sources, tiles, triplet kinds and counts (``run``: what the fine-tuning returned), the
    reducer (``kept``: why the start one was kept, or None), the held-out criterion before and
    after, timings (from ``t0``) and the config.  A ``warning`` is added (and logged) when a trained
    step was kept on fewer than :data:`MIN_TRUSTED_HELDOUT` held-out tiles."""
    tiles = data.tiles
    record = {
        "from_model": bundle.model_id,
        "sources": tiles.sources,
        "gsd": tiles.gsd,
        "tile_size": bundle.tile_size,
        "stride": cfg.stride or max(1, bundle.tile_size // 2),
        "n_tiles": len(tiles), "n_train": len(data.tr), "n_heldout": len(data.ho),
        "n_scenes": data.n_scenes, "skipped": tiles.skipped,
        "triplet_kinds": data.kinds, "near_k": int(near.shape[1]),
        "clusters": int(run["clusters"].max() + 1) if run["clusters"] is not None else 0,
        "reclustered_at": run["reclustered"], "groups": run["groups"], "triplets": run["triplets"],
        "steps_run": run["step"], "best_step": int(run["best"]["step"]),
        "reducer": kept or f"refitted on the {len(tiles)} tiles",
        "criterion": "held-out positive retrieval loss (lower is better)",
        "before": run["history"][0], "after": run["best"], "history": run["history"],
        "seconds": round(time.time() - t0, 1), "train_seconds": round(train_seconds, 1),
        "device": device, "bf16": bool(bf16),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("sources", "out", "device")},
    }
    if len(data.ho) < MIN_TRUSTED_HELDOUT and int(run["best"]["step"]) > 0:
        record["warning"] = (
            f"the adapted network was kept on {len(data.ho)} held-out tiles, too few for the label-free criterion "
            f"to be trusted (an adaptation on 192 tiles improved it and lost 0.026 mAP on UC Merced): check a few "
            f"searches against the start model, or adapt on {MIN_TRUSTED_HELDOUT * 10:,}+ tiles")
        log.warning("%s", record["warning"])
    return record


def write_adapted(bundle, net, reducer, record: dict, target: Path, out: Path):
    """Write the adapted bundle to ``target`` (atomically) and ``out/adapt.json``; returns the bundle."""
    from rsir_stac.atomic import atomic_dir
    from rsir_stac.model.bundle import load_bundle, save_bundle

    meta = copy.deepcopy(bundle.meta)
    for key in ("files", "model_id", "reducer", "stored_dim", "metrics", "created", "versions"):
        meta.pop(key, None)
    meta["name"] = "rsir-adapted"
    if record["gsd"] is not None:
        meta["gsd_m"] = float(record["gsd"])
        start = bundle.gsd
        if start and abs(float(record["gsd"]) / float(start) - 1) > 0.05:
            log.warning("the adapted bundle reads scenes at %.3g m (the start model's: %.3g m): an ingest with it "
                        "tiles every scene at %.3g m (coarser ones at their own GSD, finer ones smaller than one "
                        "tile at the GSD where they are one tile across); pass ingest --gsd to choose another",
                        float(record["gsd"]), float(start), float(record["gsd"]))
    meta.setdefault("training", {})["adaptation"] = record
    with atomic_dir(target) as tmp:
        save_bundle(tmp, net, reducer, meta)
    result = load_bundle(target)
    report = out / "adapt.json"
    report.with_suffix(".json.tmp").write_text(json.dumps({"model_id": result.model_id, **record}, indent=1,
                                                          default=str))
    os.replace(report.with_suffix(".json.tmp"), report)
    return result
