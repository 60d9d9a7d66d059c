"""Training: triplet loss with online mining over P×K batches, then a reducer.

The loop keeps the best checkpoint by validation mAP (a held-out slice of the
training split, never the test split), can resume, and writes a model bundle.
The recipe presets, the checks of a configuration and the start bundle of
fine-tuning are :mod:`rsir_stac.model.recipes`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import InputError
from rsir_stac.model.refit import _article, _least_reducer_dim
from rsir_stac.model.recipes import RECIPES, check_config  # noqa: F401 - RECIPES: importable from here as before
from rsir_stac.model.resume import bundle_model_id, load_checkpoint, resume, rng_state, split_record
from rsir_stac.model.teachers import StudentTeacher, WeightEMA
from rsir_stac.model.train_checks import check_fit_split, check_memory, usable_validation, warn_unusable_validation

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that determines a training run (recorded in the bundle)."""

    data_dir: str
    out: str
    backbone: str = "efficientnet_lite0"
    backbone_weights: str | None = None
    random_init: bool = False
    input_size: int = 224
    tile_size: int = 256
    gsd_m: float | None = 0.3
    embedding_dim: int = 128
    pooling: str = "avg"
    epochs: int = 25
    p: int = 16
    k: int = 4
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    margin: float = 0.2
    miner: str = "batch-hard"
    xbm: int = 0                   # cross-batch memory of this many embeddings, from the second epoch (0 = off)
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    reducer: str = "lda"
    reducer_dim: int = 20
    bf16: bool | None = None
    device: str | None = None
    max_steps_per_epoch: int | None = None
    resume: bool = True
    # recipe v2 (0 / 1.0 / () keep the v1 recipe)
    hybrid: float = 0.0            # weight of the pooled backbone features in the output (net.EmbeddingNet)
    distill: float = 0.0           # weight of the cosine feature-distillation loss to the frozen ImageNet backbone
    freeze_blocks: int = 0         # stem + this many MBConv blocks stay at their ImageNet weights
    downscale_max: float = 1.0     # multi-scale training: random antialiased downsampling by 1..max
    downscale_prob: float = 0.5    # probability that a training image is downsampled
    val_scales: tuple[float, ...] = (1.0,)  # validation mAP is the mean over these downscale factors
    ema_epochs: float = 0.0        # EMA of weights with this half-life in epochs (0 = off); validated and saved
    leave_out: tuple[str, ...] = ()  # classes kept out of training (leave-classes-out protocol)
    leave_out_n: int = 0           # or: this many classes, chosen by ``seed``
    init_from: str | None = None   # start from this bundle's network (fine-tuning); its architecture wins
    view_distill: float = 0.0      # weight of rotation-view distillation from the frozen start network
    view_distill_views: int = 4    # dihedral views the teacher averages (4 or 8)
    bands: tuple[int, ...] | None = None  # 1-based R,G,B bands of multi-band images (default: their own)
    extra: dict = field(default_factory=dict)


@dataclass
class TrainEvent:
    """Progress reported to the caller (the CLI draws bars from these)."""

    kind: str  # "load", "step", "epoch", "reduce", "done"
    epoch: int = 0
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    val_map: float = float("nan")
    message: str = ""


def _json_safe(history: list[dict]) -> list[dict]:
    """``history`` with non-finite numbers as None (strict JSON has no NaN)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in h.items()} for h in history]


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass
class _Split:
    """The image folder a run trains on and its index arrays (into ``folder``)."""

    folder: Any
    held_out: tuple[str, ...]
    train_ix: np.ndarray  # fit + val: the reducer is fitted on these
    fit_ix: np.ndarray
    val_ix: np.ndarray
    test_ix: np.ndarray


def _split(cfg: TrainConfig) -> _Split:
    """Scan the folder, hold classes out and split train (fit + val) / test by ``cfg.seed``;
    refuses too few classes or a reducer size below its least, warns on capped sizes."""
    from rsir_stac.model.data import choose_held_out, scan_image_folder, stratified_split, without_classes

    full_folder = scan_image_folder(cfg.data_dir, min_per_class=1)  # small classes: named together below
    held_out = choose_held_out(full_folder.classes, cfg.leave_out, cfg.leave_out_n, cfg.seed)
    folder = without_classes(full_folder, held_out)
    if len(set(folder.labels.tolist())) < 2:
        raise InputError(f"training data {cfg.data_dir} has fewer than 2 classes left after --leave-out; "
                         "leave out fewer classes or add class folders")
    least = _least_reducer_dim(cfg.reducer)
    if cfg.reducer != "none" and cfg.reducer_dim < least:
        raise InputError(f"--reducer-dim {cfg.reducer_dim}: {_article(cfg.reducer)} {cfg.reducer.upper()} reducer gives at "
                         f"least {least} dimension{'s' if least != 1 else ''}; pass --reducer-dim {least} or more")
    n_classes = len(folder.classes)
    train_ix, test_ix = stratified_split(folder.labels, cfg.test_fraction, cfg.seed)
    fit_ix, val_ix = (train_ix, np.array([], dtype=np.int64))
    if cfg.val_fraction > 0:
        a, b = stratified_split(folder.labels[train_ix], cfg.val_fraction, cfg.seed + 1)
        fit_ix, val_ix = train_ix[a], train_ix[b]
    dropped = len(val_ix) if len(val_ix) and not usable_validation(folder.labels[val_ix]) else 0
    if dropped:
        fit_ix, val_ix = train_ix, np.array([], dtype=np.int64)
    check_fit_split(folder.labels[fit_ix], folder.classes, cfg.test_fraction, cfg.val_fraction,
                    folder.labels, folder.labels[test_ix], folder.root, validating=len(val_ix) > 0)
    if dropped:  # after the check: a run refused for too few images says so once, in its error
        warn_unusable_validation(dropped)
    test_counts = np.bincount(folder.labels[test_ix]) if len(test_ix) else np.zeros(0, dtype=np.int64)
    if not (test_counts >= 2).any():
        log.warning("the test split of %s has at most one image per class (%d images): no query has a match, so "
                    "`rsir-stac evaluate` of this bundle refuses its test split; evaluate it with --split all on "
                    "another labelled folder, or add images (or raise --test-fraction)", cfg.data_dir, len(test_ix))
    if cfg.reducer == "lda" and cfg.reducer_dim > n_classes - 1:
        log.warning("--reducer-dim %d: LDA keeps at most classes - 1 = %d dimensions; the bundle stores %d",
                    cfg.reducer_dim, n_classes - 1, n_classes - 1)
    elif cfg.reducer in ("pca", "lda+pca") and cfg.reducer_dim > len(train_ix):
        log.warning("--reducer-dim %d: %s keeps at most as many dimensions as training images (%d); the bundle "
                    "stores fewer", cfg.reducer_dim, cfg.reducer.upper(), len(train_ix))
    return _Split(folder, tuple(held_out), train_ix, fit_ix, val_ix, test_ix)


def _warn_tile_size(cfg: TrainConfig, images: list) -> None:
    """Warn when the training images' size is far from ``cfg.tile_size``: the bundle records that
    tile size (and GSD) for ingest to cut, so it should be the images' own (64 px EuroSAT chips at
    10 m, not 256 px at 0.3 m)."""
    if not images:
        return
    side = int(np.median([min(im.shape[:2]) for im in images]))
    if abs(side - cfg.tile_size) > 0.25 * cfg.tile_size:
        log.warning("the images of %s are about %d px, but the bundle records --tile-size %d (and --gsd %s m), "
                    "the tiles ingest will cut for it; pass --tile-size %d and --gsd with the metres per pixel of "
                    "this data", cfg.data_dir, side, cfg.tile_size, cfg.gsd_m, side)


def _make_net(cfg: TrainConfig, start, device):
    """The network to train (ImageNet, ``--backbone-weights``, random or the start bundle's
    weights), on ``device`` in channels-last layout."""
    import torch

    from rsir_stac.model.net import EmbeddingNet

    if cfg.backbone != "efficientnet_lite0" and not cfg.backbone_weights and not cfg.random_init \
            and start is None:
        raise InputError(f"backbone {cfg.backbone} needs --backbone-weights PATH (or --random-init)")
    net = EmbeddingNet(cfg.backbone, cfg.embedding_dim, pooling=cfg.pooling, hybrid=cfg.hybrid,
                       pretrained=not cfg.random_init and start is None, backbone_weights=cfg.backbone_weights)
    if start is not None:
        net.load_state_dict(start.net.state_dict())
    return net.to(device).to(memory_format=torch.channels_last)


def _optimiser(net, cfg: TrainConfig):
    """AdamW over the trainable parameters; the head learns at 10× the backbone's rate."""
    import torch

    head = [p for n, p in net.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    body = [p for n, p in net.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    return torch.optim.AdamW([{"params": body, "lr_scale": 1.0}, {"params": head, "lr_scale": 10.0}],
                             lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(cfg: TrainConfig, progress: Callable[[TrainEvent], None] | None = None):
    """Train an EmbeddingNet, fit the reducer and write a bundle to ``cfg.out``.

    With ``cfg.init_from`` the network starts from that bundle's weights and
    architecture (fine-tuning); ``cfg.view_distill`` > 0 then also distils the
    start network's rotation-view average into the student (see
    :class:`StudentTeacher`).  Returns the written :class:`ModelBundle`.
    Raises InputError for a contradictory configuration (``view_distill``
    without ``init_from``, a teacher of 1 view, too few classes), DatasetError
    for an unusable image folder and BundleError for an unreadable start bundle.
    """
    import torch

    from rsir_stac.embed import cpu_supports_bf16
    from rsir_stac.model.data import load_images

    emit = progress or (lambda e: None)
    cfg, start = check_config(cfg)
    out = Path(cfg.out)
    if (out / "model.json").is_file():  # a bundle given as --out (the start bundle belongs to --from)
        raise InputError(f"--out {out} is a model bundle (it holds model.json); train writes a run folder (with "
                         f"a bundle inside): choose another --out, e.g. {out.parent / (out.name + '-run')}, and give "
                         f"the bundle to start from as --from {out}")
    torch.manual_seed(cfg.seed)
    split = _split(cfg)
    check_memory(cfg, len(split.folder.classes))
    ck = load_checkpoint(out / "checkpoint.pt", cfg, start, split)
    old_id = bundle_model_id(out / "bundle")
    if ck is not None:
        emit(TrainEvent("load", message=f"resuming {out / 'checkpoint.pt'} after epoch {ck['epoch'] + 1} of "
                                        f"{cfg.epochs} (--no-resume starts over)"))
    elif (out / "checkpoint.pt").is_file() or old_id:
        emit(TrainEvent("load", message=f"starting over in {out} (--no-resume): its checkpoint and bundle are "
                                        "replaced"))
    emit(TrainEvent("load", steps=len(split.fit_ix) + len(split.val_ix), message="decoding images"))
    used = np.concatenate([split.fit_ix, split.val_ix])
    # test images are decoded too (and dropped): an unreadable one is refused now, not at evaluate
    images = load_images([split.folder.paths[i] for i in np.concatenate([used, split.test_ix])], bands=cfg.bands)
    cache = dict(zip(used.tolist(), images[:len(used)]))
    _warn_tile_size(cfg, images)
    del images
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # only once the data is known to be readable
    try:
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        bf16 = cfg.bf16 if cfg.bf16 is not None else (device.type == "cuda" or cpu_supports_bf16())
        net = _make_net(cfg, start, device)
        t0 = time.time()
        history = _fit(cfg, start, net, split, cache, device, bf16, out, emit, ck)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before its first epoch leaves no empty --out behind
        raise
    train_seconds = time.time() - t0
    if (out / "best.pt").is_file():
        net.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
    net.eval()
    emit(TrainEvent("reduce", message=f"fitting the {cfg.reducer.upper()} reducer" if cfg.reducer != "none"
                    else "no reducer (--reducer none): the network's own vectors are stored"))
    reducer = _fit_reducer(cfg, net, split, cache, device, bf16)
    from rsir_stac.model.bundle import save_bundle

    meta = _bundle_meta(cfg, start, split, history, train_seconds, bf16, device.type)
    bundle = save_bundle(out / "bundle", net, reducer, meta)
    (out / "history.json").write_text(json.dumps(_json_safe(history), indent=1))  # NaN (no validation): null
    if old_id and old_id != bundle.model_id:
        log.warning("bundle %s replaced: model id %s is now %s; indexes built with %s no longer open with it "
                    "(re-embed them with `rsir-stac reindex --index INDEX --to NEW_INDEX --model %s`, or train "
                    "into another --out to keep both)", bundle.path, old_id, bundle.model_id, old_id, bundle.path)
    emit(TrainEvent("done", message=str(bundle.path)))
    return bundle


def _fit_reducer(cfg: TrainConfig, net, split: _Split, cache: dict, device, bf16: bool):
    """The reducer fitted on the whole training split (fit + val), never on test, with the
    images not yet in ``cache`` decoded into it; None for ``--reducer none``."""
    from rsir_stac.model.data import load_images

    missing = [i for i in split.train_ix.tolist() if i not in cache]
    cache.update(zip(missing, load_images([split.folder.paths[i] for i in missing], bands=cfg.bands)))
    z_train = _embed(net, cfg, cache, split.train_ix, device, bf16)
    reducer = None
    if cfg.reducer != "none":
        from rsir_stac.reduce import make_reducer

        reducer = make_reducer(cfg.reducer, cfg.reducer_dim).fit(z_train, split.folder.labels[split.train_ix])
    return reducer


def _embed(net, cfg: TrainConfig, cache: dict, ix: np.ndarray, device, bf16: bool, factor: float = 1.0) -> np.ndarray:
    """Unreduced embeddings (n, out_dim) of the cached images ``ix``, downscaled by ``factor``;
    leaves ``net`` in training mode."""
    from rsir_stac.embed import Embedder
    from rsir_stac.model.backbones import NORMALISATION
    from rsir_stac.model.transforms import downscale

    mean, std = NORMALISATION[cfg.backbone]
    e = Embedder(net, None, input_size=cfg.input_size, mean=mean, std=std, device=str(device), bf16=bf16)
    z = e.embed([downscale(cache[i], factor) for i in ix.tolist()])
    net.train()
    return z


def _fit(cfg: TrainConfig, start, net, split: _Split, cache: dict, device, bf16: bool, out: Path,
         emit: Callable[[TrainEvent], None], ck: dict | None = None) -> list[dict]:
    """The epochs: triplet loss (plus the recipe's distillation terms) on P×K batches,
    validation mAP after each epoch, the best weights in ``out/best.pt`` and a resumable
    ``out/checkpoint.pt``; returns the history (one dict per epoch)."""
    import torch

    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.backbones import NORMALISATION
    from rsir_stac.model.losses import CrossBatchMemory
    from rsir_stac.model.samplers import PKSampler
    from rsir_stac.model.transforms import OverheadAugment, to_input

    labels, fit_ix, val_ix = split.folder.labels, split.fit_ix, split.val_ix
    mean, std = NORMALISATION[cfg.backbone]
    student = StudentTeacher(net, cfg, device)
    opt = _optimiser(net, cfg)
    sampler = PKSampler(labels[fit_ix], min(cfg.p, len(split.folder.classes)), cfg.k, seed=cfg.seed)
    steps_per_epoch = min(len(sampler), cfg.max_steps_per_epoch or len(sampler))
    loss_fn = _loss(cfg, steps_per_epoch, ck, device)
    total, warmup = steps_per_epoch * cfg.epochs, int(cfg.warmup_epochs * steps_per_epoch)
    aug = OverheadAugment(cfg.input_size, seed=cfg.seed, downscale_max=cfg.downscale_max,
                          downscale_prob=cfg.downscale_prob)
    ema = WeightEMA(net, cfg.ema_epochs * steps_per_epoch) if cfg.ema_epochs > 0 else None
    ckpt_path, best_path = out / "checkpoint.pt", out / "best.pt"
    start_epoch, best, history = resume(ck, cfg, net, opt, ema, aug)
    recorded = split_record(split)
    t0 = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        student.train()
        sampler.set_epoch(epoch)
        losses, ranked = [], []
        for step, batch in enumerate(sampler):
            if step >= steps_per_epoch:
                break
            g = epoch * steps_per_epoch + step
            for grp in opt.param_groups:
                grp["lr"] = _lr_at(g, total, warmup, cfg.lr) * grp["lr_scale"]
            ix = fit_ix[batch]
            x = to_input([aug(cache[i]) for i in ix.tolist()], cfg.input_size, mean, std).to(device)
            y = torch.as_tensor(labels[ix], device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                z, aux = student(x)
            loss = loss_fn(z.float(), y)
            for weight, term in aux:
                loss = loss + weight * term
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None and g >= warmup:
                ema.update(net)
            losses.append(loss.item())
            # without a validation split the epoch with the lowest loss is kept: the memory's term, which
            # only the epochs after the first have, is left out of that comparison
            ranked.append(losses[-1] - getattr(loss_fn, "last_term", 0.0))
            emit(TrainEvent("step", epoch, step + 1, steps_per_epoch, loss=losses[-1]))
        val_map = float("nan")
        live = ema.swap_in(net) if ema is not None else None  # validate and keep the averaged weights
        if len(val_ix):
            val_map = float(np.mean([retrieval_metrics(_embed(net, cfg, cache, val_ix, device, bf16, f),
                                                       labels[val_ix])["mAP"] for f in cfg.val_scales]))
        score = val_map if len(val_ix) else -float(np.mean(ranked))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_mAP": val_map,
                        "seconds": round(time.time() - t0, 1)})
        if cfg.xbm:  # the memory's share of the loss
            history[-1]["xbm_loss"] = float(np.mean(losses) - np.mean(ranked))
        if score > best:
            best = score
            _save(net.state_dict(), best_path)
        if live is not None:
            net.load_state_dict(live)
        _save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "best": best,
               "history": history, "config": asdict(cfg),
               "start_model": start.model_id if start is not None else None, **recorded,
               "ema": ema.shadow if ema is not None else None, "ema_updates": ema.updates if ema is not None else 0,
               "rng": rng_state(aug), "xbm": loss_fn.state() if isinstance(loss_fn, CrossBatchMemory) else None},
              ckpt_path)
        log.info("epoch %d loss %.4f val mAP %.4f", epoch, np.mean(losses), val_map)
        # the memory's share, so that the loss rising when it comes in (the second epoch) does not read as divergence
        emit(TrainEvent("epoch", epoch, loss=float(np.mean(losses)), val_map=val_map,
                        message=f"of which the memory {history[-1]['xbm_loss']:.4f}" if cfg.xbm else ""))
    return history


def _loss(cfg: TrainConfig, steps_per_epoch: int, ck: dict | None, device):
    """The run's triplet loss (:mod:`rsir_stac.model.losses`), with ``--xbm`` wrapped in a cross-batch
    memory that joins from the second epoch on (its contents restored from a resumed checkpoint ``ck``)."""
    from rsir_stac.model.losses import CrossBatchMemory, TripletMarginLoss

    loss_fn = TripletMarginLoss(cfg.margin, cfg.miner)
    if cfg.xbm <= 0:
        return loss_fn
    memory = CrossBatchMemory(loss_fn, cfg.xbm, start_after=steps_per_epoch)
    if ck is not None and ck.get("xbm") is not None:
        memory.load_state(ck["xbm"], device)
    return memory


def _save(obj, path: Path) -> None:
    """``torch.save`` whole or not at all (a run killed while saving keeps the previous file)."""
    import os

    import torch

    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _bundle_meta(cfg: TrainConfig, start, split: _Split, history: list[dict], train_seconds: float,
                 bf16: bool, device: str) -> dict:
    """The bundle's ``model.json`` description of this run (config, split, history)."""
    from rsir_stac.model.backbones import NORMALISATION
    from rsir_stac.model.data import split_digest
    from rsir_stac.model.recorded_split import split_files

    mean, std = NORMALISATION[cfg.backbone]
    folder = split.folder
    rel = folder.relpaths()
    return {
        "name": cfg.extra.get("name", "rsir"),
        "input_size": cfg.input_size,
        "tile_size": cfg.tile_size,
        "gsd_m": cfg.gsd_m,
        "normalisation": {"mean": list(mean), "std": list(std)},
        "class_names": list(folder.classes),
        "recipe": cfg.extra.get("recipe") or ("v2" if (cfg.hybrid or cfg.distill or cfg.downscale_max > 1) else "v1"),
        "pretrained_source": ("random" if cfg.random_init else start.model_id if start is not None
                              else "ImageNet" if not cfg.backbone_weights else str(cfg.backbone_weights)),
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("out", "extra", "resume", "device", "init_from")},
            "data_dir": Path(cfg.data_dir).name,
            "split_seed": cfg.seed,
            "held_out_classes": list(split.held_out),
            "n_train": int(len(split.fit_ix)), "n_val": int(len(split.val_ix)), "n_test": int(len(split.test_ix)),
            "test_digest": split_digest([rel[i] for i in split.test_ix]),
            "split_files": split_files(rel, split.train_ix.tolist(), split.test_ix.tolist()),
            "history": _json_safe(history),  # NaN (validation cannot rank): null, as in history.json
            "train_seconds": round(train_seconds, 1),
            "bf16": bool(bf16),
            "device": device,
            **({"start": start_record(start.meta, start.model_id)} if start is not None else {}),
        },
    }


#: What ``training.start`` keeps of the start bundle's own training: the options that made it.
START_KEYS = ("epochs", "lr", "margin", "miner", "xbm", "hybrid", "distill", "freeze_blocks", "downscale_max",
              "pooling", "view_distill", "leave_out_n", "seed", "train_seconds")


def start_record(meta: dict, model_id: str) -> dict:
    """How the start bundle of a fine-tuning run was trained (``model.json`` ``training.start``), so a
    bundle says what its whole recipe was (helper trial: v7's model.json recorded ``xbm: 0`` from its
    second stage, and nothing told it from v6); nested when that bundle was itself fine-tuned."""
    tr = meta.get("training") or {}
    out = {"model_id": model_id, "recipe": meta.get("recipe"), **{k: tr[k] for k in START_KEYS if k in tr}}
    if isinstance(tr.get("start"), dict):
        out["start"] = tr["start"]
    return out
