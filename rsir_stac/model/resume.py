"""Resuming a training run: which checkpoint in ``--out`` a run may continue.

A checkpoint records its configuration, start bundle, classes, held-out classes and test
split; a run resumes it only when all of these are its own (:func:`check_resumable`),
so weights are never written under another run's description and no image trained on
becomes a test image.  Errors are one-line :class:`~rsir_stac.errors.InputError` naming
what changed, ``--no-resume`` and another ``--out``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsir_stac.errors import InputError

if TYPE_CHECKING:
    from rsir_stac.model.train import TrainConfig, _Split

log = logging.getLogger(__name__)


def load_checkpoint(ckpt_path: Path, cfg: TrainConfig, start, split: _Split) -> dict | None:
    """The checkpoint in ``--out`` this run resumes (None: there is none, or ``--no-resume``);
    refuses, before any work, one of another run (:func:`check_resumable`)."""
    import torch

    if not (cfg.resume and ckpt_path.is_file()):
        return None
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    check_resumable(ck, cfg, start, ckpt_path, split)
    return ck


def resume(ck: dict | None, cfg: TrainConfig, net, opt, ema, aug) -> tuple[int, float, list[dict]]:
    """Load a checkpoint of the same run into ``net``, ``opt`` and ``ema``; returns
    (first epoch to run, best validation score, history), or a fresh start."""
    if ck is None:
        return 0, -1.0, []
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["opt"])
    if ema is not None and ck.get("ema") is not None:
        ema.shadow = ck["ema"]
        ema.updates = int(ck.get("ema_updates", 1))  # >= 1: the next update averages, it does not copy
    if ck.get("rng") is not None:
        set_rng_state(ck["rng"], aug)
    else:  # a checkpoint written before the random state was saved: resumes close to, not exactly as, a straight run
        aug.rng = np.random.default_rng([cfg.seed, ck["epoch"] + 1])
    log.info("resumed at epoch %d", ck["epoch"] + 1)
    return ck["epoch"] + 1, ck["best"], ck["history"]


def rng_state(aug) -> dict:
    """Every random state a training epoch draws from (torch CPU and CUDA, numpy's and Python's
    global generators, the augmentation's generator), saved with the checkpoint so that a
    resumed run continues exactly as a run that was never stopped.  (The P×K sampler is
    seeded per epoch and keeps no state.)"""
    import random

    import torch

    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(), "random": random.getstate(),
            "augment": aug.rng.bit_generator.state}


def set_rng_state(state: dict, aug) -> None:
    """Restore what :func:`rng_state` saved."""
    import random

    import torch

    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    aug.rng.bit_generator.state = state["augment"]


def split_record(split: _Split) -> dict:
    """What a checkpoint records of its split, to refuse resuming on another one."""
    from rsir_stac.model.data import split_digest

    rel = split.folder.relpaths()
    test = [rel[i] for i in split.test_ix]
    return {"classes": list(split.folder.classes), "held_out": list(split.held_out),
            "test_digest": split_digest(test), "n_test": int(len(split.test_ix)), "files": rel, "test_files": test}


def bundle_model_id(path: Path) -> str | None:
    """The model id of the bundle at ``path`` (None: none there, or unreadable)."""
    try:
        return json.loads((path / "model.json").read_text()).get("model_id")
    except (OSError, ValueError, AttributeError):
        return None


def check_resumable(ck: dict, cfg: TrainConfig, start, ckpt_path: Path, split: _Split | None = None) -> None:
    """Refuse to resume a checkpoint trained from another start bundle, with other
    rotation-view distillation settings, another recipe or option (:data:`_RESUME_KEYS`),
    other held-out classes, another class set or another test split (an image added or
    removed): its weights would be written under this run's description, or test images
    trained on; and one that has run more epochs than ``cfg.epochs`` (its bundle would
    record fewer epochs than its history).  One-line InputError naming what changed,
    ``--no-resume`` and another ``--out``."""
    from rsir_stac.model.train import TrainConfig

    old = ck.get("config", {})
    fix = "pass --no-resume to start over in this folder or choose another --out"
    was = ck.get("start_model")  # None: started from ImageNet (and every checkpoint written before --from)
    now = start.model_id if start is not None else None

    def views(c) -> tuple:
        w = float(c.get("view_distill", 0.0) or 0.0)
        return (w, int(c.get("view_distill_views", 4))) if w > 0 else (0.0,)

    same_start, same_views = was == now, views(old) == views(asdict(cfg))
    if not same_start or not same_views:
        then = f"from {was or 'ImageNet'}, --view-distill {old.get('view_distill', 0.0)}"
        this = f"from {now or 'ImageNet'}, --view-distill {cfg.view_distill}"
        raise InputError(f"checkpoint {ckpt_path} was trained {then}, not {this}; {fix}")
    recipe_then, recipe_now = (old.get("extra") or {}).get("recipe"), cfg.extra.get("recipe")
    if recipe_then and recipe_now and recipe_then != recipe_now:
        raise InputError(f"checkpoint {ckpt_path} was trained with --recipe {recipe_then}, not {recipe_now}; {fix}")
    if epochs_done(ck) > cfg.epochs:
        raise InputError(f"checkpoint {ckpt_path} has already run {epochs_done(ck)} epochs, more than --epochs "
                         f"{cfg.epochs} (its bundle would record {cfg.epochs} epochs and a history of "
                         f"{epochs_done(ck)}); pass --epochs {epochs_done(ck)} or more to resume it, or --no-resume to "
                         f"train {cfg.epochs} epochs from the start in this folder, or choose another --out")

    record = split_record(split) if split is not None else {}
    now_cfg, defaults = asdict(cfg), asdict(TrainConfig("", ""))
    for key in _RESUME_KEYS:
        if key in ("leave_out", "leave_out_n") and "held_out" in ck and record:
            continue
        a, b = old.get(key, defaults[key]), now_cfg[key]
        if key == "leave_out":  # as typed: "a,b" or "a" and "b" (--leave-out repeated)
            a, b = (sorted(p.strip() for v in x or () for p in str(v).split(",") if p.strip()) for x in (a, b))
        if (tuple(a) if isinstance(a, (list, tuple)) else a) != (tuple(b) if isinstance(b, (list, tuple)) else b):
            flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
            raise InputError(f"checkpoint {ckpt_path} was trained with {flag} {_show(a) or '(none)'}, not "
                             f"{_show(b) or '(none)'}; {fix}")
    # held-out classes: compared as the classes actually held out (the order of --leave-out, or
    # --leave-out-n drawing the same ones, does not matter); older checkpoints by their options
    if "held_out" in ck and record:
        a, b = sorted(ck["held_out"]), sorted(record["held_out"])
        if a != b:
            raise InputError(f"checkpoint {ckpt_path} was trained holding out {_show(a) or 'no classes'}, not "
                             f"{_show(b) or 'no classes'} (--leave-out or --leave-out-n); {fix}")
    if not record:
        return
    if "classes" not in ck:  # written before the split was recorded: the data folder must be the same
        if old.get("data_dir") != cfg.data_dir:
            raise InputError(f"checkpoint {ckpt_path} was trained on {old.get('data_dir')}, not {cfg.data_dir}; "
                             f"{fix}")
        return
    if list(ck["classes"]) != record["classes"]:
        gone = [c for c in ck["classes"] if c not in record["classes"]]
        new = [c for c in record["classes"] if c not in ck["classes"]]
        what = "; ".join(x for x in (f"{_show(new)} added" if new else "", f"{_show(gone)} gone" if gone else "") if x)
        raise InputError(f"checkpoint {ckpt_path} was trained on other classes than {cfg.data_dir} has now "
                         f"({what}); {fix}")
    if ck["test_digest"] != record["test_digest"]:
        raise InputError(f"checkpoint {ckpt_path} was trained with another test split: "
                         f"{_split_change(ck, record, cfg.data_dir)}; {fix}")


def epochs_done(ck: dict) -> int:
    """Epochs a checkpoint has run."""
    return int(ck["epoch"]) + 1


def _split_change(ck: dict, record: dict, data_dir: str) -> str:
    """What changed in the data folder since a checkpoint, in words, from the file lists that
    checkpoints record (older ones: the size of the test split then and now)."""
    if "files" not in ck:
        sizes = (f"{ck['n_test']} test images then, {record['n_test']} now" if ck["n_test"] != record["n_test"]
                 else f"as many test images as then, {ck['n_test']}, but other files")
        return f"images were added to or removed from {data_dir} since ({sizes}), so images it trained on may now " \
               "be test images"
    old, new = set(ck["files"]), set(record["files"])
    added, removed = sorted(new - old), sorted(old - new)
    changes = [f"gained {len(added)} image(s) ({_first(added)})" if added else "",
               f"lost {len(removed)} ({_first(removed)})" if removed else ""]
    changed = " and ".join(c for c in changes if c) or "had its images reorganised"
    moved = sorted((old - set(ck["test_files"])) & set(record["test_files"]))
    then = (f"{len(moved)} image(s) it trained on ({_first(moved)}) would now be test images" if moved
            else "its test images are not the ones it kept out of training")
    return f"since then {data_dir} {changed}, so {then}"


def _first(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


#: TrainConfig fields a resumed checkpoint must share with the run (epochs may grow).
_RESUME_KEYS = ("bands", "seed", "test_fraction", "val_fraction", "leave_out", "leave_out_n", "backbone", "embedding_dim",
                "pooling", "hybrid", "input_size", "freeze_blocks", "distill", "downscale_max", "margin", "miner",
                "xbm", "p", "k", "lr", "ema_epochs", "downscale_prob", "val_scales", "max_steps_per_epoch")
#: Command-line flags of the keys whose flag is not the key's own name.
_FLAGS = {"ema_epochs": "--ema"}


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


__all__ = ["bundle_model_id", "check_resumable", "epochs_done", "load_checkpoint", "resume", "rng_state",
           "set_rng_state", "split_record"]
