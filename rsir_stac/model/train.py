"""Training: triplet loss with online mining over P×K batches, then a reducer.

The loop keeps the best checkpoint by validation mAP (a held-out slice of the
training split, never the test split), can resume, and writes a model bundle.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rsir_stac.errors import InputError
from rsir_stac.model.train_checks import check_fit_split, check_options, usable_validation

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
    extra: dict = field(default_factory=dict)


#: Presets of ``rsir-stac train --recipe``: v3 (v2 with GeM pooling, chosen by the
#: leave-classes-out ablation, RESULTS §7) with ``--distill 0.5`` made the shipped
#: model v4; v3 with its preset weight 1 made ``--model v3``.
RECIPES = {
    "v1": {"hybrid": 0.0, "distill": 0.0, "freeze_blocks": 0, "downscale_max": 1.0, "val_scales": (1.0,),
           "pooling": "avg"},
    "v2": {"hybrid": 1.0, "distill": 1.0, "freeze_blocks": 5, "downscale_max": 8.0, "val_scales": (1.0, 4.0),
           "pooling": "avg"},
    "v3": {"hybrid": 1.0, "distill": 1.0, "freeze_blocks": 5, "downscale_max": 8.0, "val_scales": (1.0, 4.0),
           "pooling": "gem"},
}


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

    from rsir_stac.embed import Embedder, cpu_supports_bf16
    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.backbones import NORMALISATION
    from rsir_stac.model.bundle import save_bundle
    from rsir_stac.model.data import (choose_held_out, load_images, scan_image_folder, split_digest,
                                      stratified_split, without_classes)
    from rsir_stac.model.losses import TripletMarginLoss
    from rsir_stac.model.net import EmbeddingNet
    from rsir_stac.model.samplers import PKSampler
    from rsir_stac.model.transforms import OverheadAugment, downscale, to_input
    from rsir_stac.reduce import make_reducer

    emit = progress or (lambda e: None)
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
        cfg, start = _start_from(cfg)
    elif cfg.view_distill > 0:
        raise InputError("--view-distill needs --from BUNDLE: the frozen start network is the teacher; "
                         "add --from (e.g. the shipped model: --from default)")
    torch.manual_seed(cfg.seed)
    full_folder = scan_image_folder(cfg.data_dir)
    held_out = choose_held_out(full_folder.classes, cfg.leave_out, cfg.leave_out_n, cfg.seed)
    folder = without_classes(full_folder, held_out)
    if len(set(folder.labels.tolist())) < 2:
        raise InputError(f"training data {cfg.data_dir} has fewer than 2 classes left after --leave-out; "
                         "leave out fewer classes or add class folders")
    least = _least_reducer_dim(cfg.reducer)
    if cfg.reducer != "none" and cfg.reducer_dim < least:
        raise InputError(f"--reducer-dim {cfg.reducer_dim}: a {cfg.reducer.upper()} reducer gives at least "
                         f"{least} dimensions; pass --reducer-dim {least} or more")
    out = Path(cfg.out)
    n_classes = len(folder.classes)
    p = min(cfg.p, n_classes)
    train_ix, test_ix = stratified_split(folder.labels, cfg.test_fraction, cfg.seed)
    fit_ix, val_ix = (train_ix, np.array([], dtype=np.int64))
    if cfg.val_fraction > 0:
        a, b = stratified_split(folder.labels[train_ix], cfg.val_fraction, cfg.seed + 1)
        fit_ix, val_ix = train_ix[a], train_ix[b]
        if not usable_validation(folder.labels[val_ix]):
            fit_ix, val_ix = train_ix, np.array([], dtype=np.int64)
    check_fit_split(folder.labels[fit_ix], folder.classes, cfg.test_fraction, cfg.val_fraction)
    if cfg.reducer == "lda" and cfg.reducer_dim > n_classes - 1:
        log.warning("--reducer-dim %d: LDA keeps at most classes - 1 = %d dimensions; the bundle stores %d",
                    cfg.reducer_dim, n_classes - 1, n_classes - 1)
    elif cfg.reducer in ("pca", "lda+pca") and cfg.reducer_dim > len(train_ix):
        log.warning("--reducer-dim %d: %s keeps at most as many dimensions as training images (%d); the bundle "
                    "stores fewer", cfg.reducer_dim, cfg.reducer.upper(), len(train_ix))

    emit(TrainEvent("load", steps=len(fit_ix) + len(val_ix), message="decoding images"))
    used = np.concatenate([fit_ix, val_ix])
    # test images are decoded too (and dropped): an unreadable one is refused now, not at evaluate
    images = load_images([folder.paths[i] for i in np.concatenate([used, test_ix])])
    cache = dict(zip(used.tolist(), images[:len(used)]))
    del images
    out.mkdir(parents=True, exist_ok=True)  # only once the data is known to be readable

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = cfg.bf16 if cfg.bf16 is not None else (device.type == "cuda" or cpu_supports_bf16())
    if cfg.backbone != "efficientnet_lite0" and not cfg.backbone_weights and not cfg.random_init \
            and start is None:
        raise InputError(f"backbone {cfg.backbone} needs --backbone-weights PATH (or --random-init)")
    net = EmbeddingNet(cfg.backbone, cfg.embedding_dim, pooling=cfg.pooling, hybrid=cfg.hybrid,
                       pretrained=not cfg.random_init and start is None, backbone_weights=cfg.backbone_weights)
    if start is not None:
        net.load_state_dict(start.net.state_dict())
    net = net.to(device).to(memory_format=torch.channels_last)
    mean, std = NORMALISATION[cfg.backbone]
    student = StudentTeacher(net, cfg, device)
    head_params = [p_ for n, p_ in net.named_parameters() if not n.startswith("backbone.") and p_.requires_grad]
    body_params = [p_ for n, p_ in net.named_parameters() if n.startswith("backbone.") and p_.requires_grad]
    opt = torch.optim.AdamW([{"params": body_params, "lr_scale": 1.0}, {"params": head_params, "lr_scale": 10.0}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = TripletMarginLoss(cfg.margin, cfg.miner)
    sampler = PKSampler(folder.labels[fit_ix], p, cfg.k, seed=cfg.seed)
    steps_per_epoch = min(len(sampler), cfg.max_steps_per_epoch or len(sampler))
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    aug = OverheadAugment(cfg.input_size, seed=cfg.seed, downscale_max=cfg.downscale_max,
                          downscale_prob=cfg.downscale_prob)

    ema = WeightEMA(net, cfg.ema_epochs * steps_per_epoch) if cfg.ema_epochs > 0 else None
    start_epoch, best, history = 0, -1.0, []
    ckpt_path, best_path = out / "checkpoint.pt", out / "best.pt"
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_resumable(ck, cfg, start, ckpt_path)
        if ck.get("config", {}).get("data_dir") == cfg.data_dir:
            net.load_state_dict(ck["net"])
            opt.load_state_dict(ck["opt"])
            if ema is not None and ck.get("ema") is not None:
                ema.shadow = ck["ema"]
            start_epoch, best, history = ck["epoch"] + 1, ck["best"], ck["history"]
            aug.rng = np.random.default_rng([cfg.seed, start_epoch])
            log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)

    def embed_ix(ix: np.ndarray, factor: float = 1.0) -> np.ndarray:
        e = Embedder(net, None, input_size=cfg.input_size, mean=mean, std=std, device=str(device), bf16=bf16)
        z = e.embed([downscale(cache[i], factor) for i in ix.tolist()])
        net.train()
        return z

    t0 = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        student.train()
        sampler.set_epoch(epoch)
        losses = []
        for step, batch in enumerate(sampler):
            if step >= steps_per_epoch:
                break
            g = epoch * steps_per_epoch + step
            for grp in opt.param_groups:
                grp["lr"] = _lr_at(g, total, warmup, cfg.lr) * grp["lr_scale"]
            ix = fit_ix[batch]
            x = to_input([aug(cache[i]) for i in ix.tolist()], cfg.input_size, mean, std).to(device)
            y = torch.as_tensor(folder.labels[ix], device=device)
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
            emit(TrainEvent("step", epoch, step + 1, steps_per_epoch, loss=losses[-1]))
        val_map = float("nan")
        live = ema.swap_in(net) if ema is not None else None  # validate and keep the averaged weights
        if len(val_ix):
            val_map = float(np.mean([retrieval_metrics(embed_ix(val_ix, f), folder.labels[val_ix])["mAP"]
                                     for f in cfg.val_scales]))
        score = val_map if len(val_ix) else -float(np.mean(losses))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_mAP": val_map,
                        "seconds": round(time.time() - t0, 1)})
        if score > best:
            best = score
            torch.save(net.state_dict(), best_path)
        if live is not None:
            net.load_state_dict(live)
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "best": best,
                    "history": history, "config": asdict(cfg),
                    "start_model": start.model_id if start is not None else None,
                    "ema": ema.shadow if ema is not None else None}, ckpt_path)
        log.info("epoch %d loss %.4f val mAP %.4f", epoch, np.mean(losses), val_map)
        emit(TrainEvent("epoch", epoch, loss=float(np.mean(losses)), val_map=val_map))

    train_seconds = time.time() - t0
    if best_path.is_file():
        net.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    net.eval()
    emit(TrainEvent("reduce", message=f"fitting {cfg.reducer} reducer"))
    # The reducer is fitted on the whole training split (fit + val), never on test.
    missing = [i for i in train_ix.tolist() if i not in cache]
    cache.update(zip(missing, load_images([folder.paths[i] for i in missing])))
    z_train = embed_ix(train_ix)
    reducer = None
    if cfg.reducer != "none":
        reducer = make_reducer(cfg.reducer, cfg.reducer_dim).fit(z_train, folder.labels[train_ix])
    rel = folder.relpaths()
    meta = {
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
            "held_out_classes": list(held_out),
            "n_train": int(len(fit_ix)), "n_val": int(len(val_ix)), "n_test": int(len(test_ix)),
            "test_digest": split_digest([rel[i] for i in test_ix]),
            "history": history,
            "train_seconds": round(train_seconds, 1),
            "bf16": bool(bf16),
            "device": device.type,
        },
    }
    bundle = save_bundle(out / "bundle", net, reducer, meta)
    (out / "history.json").write_text(json.dumps(_json_safe(history), indent=1))  # NaN (no validation): null
    emit(TrainEvent("done", message=str(bundle.path)))
    return bundle


def _start_from(cfg: TrainConfig):
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
        raise BundleNotFoundError(f"--from {cfg.init_from}: no model bundle there (model.json missing); "
                                  f"{hint}") from None
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


def _check_resumable(ck: dict, cfg: TrainConfig, start, ckpt_path: Path) -> None:
    """Refuse to resume a checkpoint trained from another start bundle, with other
    rotation-view distillation settings, another split (seed, fractions, held-out
    classes) or another recipe (:data:`_RESUME_KEYS`): its weights would be written
    under this run's description, or test images trained on; InputError names
    ``--no-resume`` and another ``--out``."""
    old = ck.get("config", {})
    if old.get("data_dir") != cfg.data_dir:
        return  # another dataset: the checkpoint is ignored, as before
    was = ck.get("start_model")  # None: started from ImageNet (and every checkpoint written before --from)
    now = start.model_id if start is not None else None

    def views(c) -> tuple:
        w = float(c.get("view_distill", 0.0) or 0.0)
        return (w, int(c.get("view_distill_views", 4))) if w > 0 else (0.0,)

    same_start, same_views = was == now, views(old) == views(asdict(cfg))
    if not same_start or not same_views:
        then = f"from {was or 'ImageNet'}, --view-distill {old.get('view_distill', 0.0)}"
        this = f"from {now or 'ImageNet'}, --view-distill {cfg.view_distill}"
        raise InputError(f"checkpoint {ckpt_path} was trained {then}, not {this}; pass --no-resume to start "
                         "over in this folder or choose another --out")
    # the split (which images are test, which classes are held out) and the recipe must match too:
    # resuming under other ones would train on test images or describe the weights wrongly
    now_cfg, defaults = asdict(cfg), asdict(TrainConfig("", ""))
    for key in _RESUME_KEYS:
        a, b = old.get(key, defaults[key]), now_cfg[key]
        if (tuple(a) if isinstance(a, (list, tuple)) else a) != (tuple(b) if isinstance(b, (list, tuple)) else b):
            flag = "--" + key.replace("_", "-")
            raise InputError(f"checkpoint {ckpt_path} was trained with {flag} {_show(a)}, not {_show(b)}; pass "
                             "--no-resume to start over in this folder or choose another --out")


#: TrainConfig fields a resumed checkpoint must share with the run (epochs may grow).
_RESUME_KEYS = ("seed", "test_fraction", "val_fraction", "leave_out", "leave_out_n", "backbone", "embedding_dim",
                "pooling", "hybrid", "input_size", "freeze_blocks", "distill", "downscale_max", "margin", "miner",
                "p", "k")


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def _least_reducer_dim(kind: str) -> int:
    """The smallest output size of a reducer kind: lda+pca needs one LDA and one PCA direction."""
    return 2 if kind == "lda+pca" else 1


def _check_reducer_dim(kind: str, dim: int, n_train: int, n_classes: int, out_dim: int) -> None:
    """Refuse a reducer size the training split cannot give (before any image is embedded)."""
    if kind == "none":
        return
    most = {"pca": min(n_train, out_dim), "lda": min(n_classes - 1, out_dim),
            "lda+pca": min(n_train - 1, out_dim)}[kind]  # centred data has rank n - 1
    least = _least_reducer_dim(kind)
    if not least <= dim <= most:
        why = (f"{n_classes} classes (LDA gives at most classes - 1)" if kind == "lda"
               else f"{n_train} training images of {out_dim}-d embeddings")
        raise InputError(f"--dim {dim}: a {kind.upper()} reducer fitted on {why} gives {least} to {most} dimensions; "
                         f"pass --dim {min(max(dim, least), most)}")


def refit_reducer(model, data_dir: str, kind: str, dim: int, out: str, *, views: int | None = None,
                  progress=None):
    """Write a copy of a bundle with a new reducer fitted on its recorded
    training split of ``data_dir`` (the network is unchanged); returns the new bundle.

    ``views`` (1, 4 or 8; None keeps the bundle's) sets the dihedral views the
    new bundle averages per tile at inference (test-time augmentation,
    :func:`rsir_stac.model.transforms.dihedral_views`); the reducer is fitted
    on embeddings made the same way.  LDA needs ``dim`` ≤ classes − 1.  A
    leave-classes-out bundle's held-out classes stay out of the fit, as in training.

    Raises InputError for another view count, an ``out`` that already holds
    a bundle or other files, a reducer size the split cannot give, or a
    ``data_dir`` whose split is not the bundle's; nothing is written unless
    the whole bundle is (:func:`rsir_stac.atomic.atomic_dir`).
    """
    import copy

    from rsir_stac.atomic import atomic_dir
    from rsir_stac.model.bundle import ModelBundle, load_bundle, save_bundle
    from rsir_stac.model.data import load_images, scan_image_folder, split_digest, stratified_split, without_classes
    from rsir_stac.model.transforms import VIEW_SETS
    from rsir_stac.reduce import make_reducer

    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    views = bundle.views if views is None else views
    if views not in VIEW_SETS:
        raise InputError(f"--views {views}: choose one of {', '.join(map(str, sorted(VIEW_SETS)))} "
                         "(1: none; 4: the rotations; 8: rotations and mirror images)")
    target = Path(out)
    if (target / "model.json").exists():
        raise InputError(f"{target} already holds a model bundle; pass another --out or remove it")
    tr = bundle.meta.get("training", {})
    folder = scan_image_folder(data_dir)
    held = [c for c in tr.get("held_out_classes") or [] if c in folder.classes]
    if held:  # a leave-classes-out bundle: its split, and so its reducer, never saw these classes
        folder = without_classes(folder, held)
    train_ix, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr.get("split_seed", 0))
    rel = folder.relpaths()
    if tr.get("test_digest") and split_digest([rel[i] for i in test_ix]) != tr["test_digest"]:
        raise InputError(f"{data_dir} is not the dataset {bundle.model_id} was trained on (its split differs); "
                         "pass the training data folder")
    _check_reducer_dim(kind, dim, len(train_ix), len(folder.classes), bundle.net.out_dim)
    with bundle.embedder(views=views) as emb:
        z = emb.embed(load_images([folder.paths[i] for i in train_ix]), reduce=False, progress=progress)
    reducer = None if kind == "none" else make_reducer(kind, dim).fit(z, folder.labels[train_ix])
    meta = copy.deepcopy(bundle.meta)
    for key in ("files", "model_id", "reducer", "stored_dim", "metrics", "created", "versions"):
        meta.pop(key, None)
    meta["views"] = int(views)
    meta.setdefault("training", {})["reducer_refit"] = {"from_model": bundle.model_id, "kind": kind, "dim": dim,
                                                        "views": int(views), "n_train": int(len(train_ix))}
    with atomic_dir(target) as tmp:
        save_bundle(tmp, bundle.net, reducer, meta)
    return load_bundle(target)


class WeightEMA:
    """Exponential moving average of a network's weights and buffers
    (Polyak & Juditsky 1992; "mean teacher", Tarvainen & Valpola 2017).

    ``half_life`` is in optimiser steps: after that many updates a weight's
    old value counts half.  Integer buffers (batch-norm counters) are copied.
    """

    def __init__(self, net, half_life: float) -> None:
        self.decay = 0.5 ** (1.0 / max(1.0, float(half_life)))
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.updates = 0

    def update(self, net) -> None:
        """Fold the live weights in (the first update copies them: warm-up weights are not averaged)."""
        import torch

        self.updates += 1
        if self.updates == 1:
            self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return
        with torch.no_grad():
            for k, v in net.state_dict().items():
                s = self.shadow[k]
                if v.dtype.is_floating_point:
                    s.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    s.copy_(v)

    def swap_in(self, net) -> dict:
        """Load the averaged weights into ``net``; returns the live weights to restore."""
        live = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.shadow)
        return live


class StudentTeacher:
    """One training forward: the student EmbeddingNet and, when ``cfg.distill``
    > 0, the frozen ImageNet backbone it is distilled towards.

    With ``cfg.freeze_blocks = n`` the stem and first ``n`` blocks of the
    student keep their ImageNet weights (and batch-norm statistics); teacher
    and student then share that prefix, so it runs once per batch.  The
    distillation term is the mean cosine distance between the student's and
    the teacher's average-pooled features (feature distillation, Hinton et
    al. 2015 / Romero et al. 2015 "FitNets", on pooled features).

    With ``cfg.view_distill`` > 0 a frozen copy of the start network is a second
    teacher: its unreduced output averaged over the dihedral views of the batch
    (what ``reduce --views`` computes at inference), and the term is the mean
    cosine distance of the student's single-view output to it.  The student
    learns the orientation-invariant embedding at one view's cost
    (self-distillation of test-time augmentation; cf. Hinton et al. 2015,
    and the ensemble distillation of Allen-Zhu & Li 2020).
    """

    def __init__(self, net, cfg: TrainConfig, device) -> None:
        import torch

        self.net, self.n = net, int(cfg.freeze_blocks)
        bb = net.backbone
        if self.n and not hasattr(bb, "prefix"):
            raise InputError(f"--freeze-blocks needs the efficientnet_lite0 backbone, not {cfg.backbone}")
        if self.n:
            self.n = min(self.n, bb.n_blocks)
            for m in bb.prefix_modules(self.n):
                for p in m.parameters():
                    p.requires_grad_(False)
        self.distill, self.view_distill = float(cfg.distill), float(cfg.view_distill)
        self.views = int(cfg.view_distill_views)
        self.view_teacher = None
        if self.view_distill > 0:
            import copy

            self.view_teacher = copy.deepcopy(net).to(device).eval()
            for p in self.view_teacher.parameters():
                p.requires_grad_(False)
        self.teacher = None
        if cfg.distill > 0:
            from rsir_stac.model.backbones import build_backbone

            t = build_backbone(cfg.backbone, pretrained=True, weights=cfg.backbone_weights)
            self.teacher = t.to(device).to(memory_format=torch.channels_last).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def train(self) -> None:
        self.net.train()
        if self.n:
            for m in self.net.backbone.prefix_modules(self.n):
                m.eval()

    def __call__(self, x):
        """Returns (B×dim unit embeddings of the triplet head, [(weight, auxiliary loss), ...])."""
        import torch
        import torch.nn.functional as F

        from rsir_stac.model.transforms import mean_over_views

        bb, net = self.net.backbone, self.net
        if self.n:
            with torch.no_grad():
                h = bb.prefix(x, self.n)
            fmap = bb.suffix(h, self.n)
        else:
            h, fmap = x, bb(x)
        pooled = net.pool(fmap)
        z = F.normalize(net.head(pooled).float(), dim=1)
        aux = []
        if self.teacher is not None:
            with torch.no_grad():
                tmap = self.teacher.suffix(h, self.n) if self.n else self.teacher(x)
            fs, ft = fmap.float().mean((2, 3)), tmap.float().mean((2, 3))
            aux.append((self.distill, (1.0 - F.cosine_similarity(fs, ft, dim=1)).mean()))
        if self.view_teacher is not None:
            with torch.no_grad():
                target = mean_over_views(self.view_teacher, x, self.views)
            out = net.embed_features(pooled).float()
            aux.append((self.view_distill, (1.0 - F.cosine_similarity(out, target, dim=1)).mean()))
        return z, aux
