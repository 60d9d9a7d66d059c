"""Adapt a model bundle to a user's own catalogue without labels.

``adapt`` reads the catalogue's tiles the way ingest does
(:mod:`rsir_stac.model.unlabelled`), mines triplets from space, time,
augmentation and the start model's own neighbours and k-means clusters of
the user's tiles (:mod:`rsir_stac.model.pairs`) into P×K batches, and fine-tunes
a copy of the start bundle's network with the triplet margin loss.  The
result is a normal bundle: the adapted network and a PCA reducer refitted on
the user's tiles, with a record of the sources and the triplets used.

Guard rails (what keeps the start model's knowledge):

* **distillation to the start model**: the start network, frozen, is the
  teacher; the loss adds ``distill`` × the mean cosine distance between the
  adapted and the start embedding of the same view, so the embedding moves
  only where the triplets pull it;
* the stem and first blocks stay frozen (``freeze_blocks``, the start
  recipe's), a small learning rate with warm-up and cosine decay;
* **early stopping on a held-out slice** of the user's tiles (whole ground
  cells, so the same ground at other dates stays held out with it) by
  :func:`rsir_stac.model.criteria.positive_retrieval` (its triplet loss
  against the hardest held-out negative), measured before training (step 0)
  too: the bundle keeps the best step, which is the start
  network itself when adaptation never beats it.  The start-model
  neighbour agreement of the kept step is recorded.

The student and teacher networks are :class:`~rsir_stac.model.teachers.StartTeacher`;
the bundle written (the reducer kept or refitted, the record) is
:mod:`rsir_stac.model.adapt_bundle`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import BundleNotFoundError, DatasetError, InputError
from rsir_stac.model.adapt_bundle import (  # noqa: F401 - the two thresholds, importable from here as before
    MIN_TRUSTED_HELDOUT, TILES_PER_REDUCED_DIM, adaptation_record, keep_start_reducer, write_adapted)
from rsir_stac.model.adapt_checks import check_clusters, check_negatives, check_out, held_out_split
from rsir_stac.model.teachers import StartTeacher
from rsir_stac.model.train_checks import check_adapt_options

log = logging.getLogger(__name__)

#: Fewer tiles than this cannot teach anything (and cannot fill a held-out slice).
MIN_TILES = 64


@dataclass
class AdaptConfig:
    """Everything that determines an adaptation run (recorded in the bundle)."""

    sources: tuple[str, ...]
    out: str
    start: str | None = None           # bundle folder; None: the shipped model
    triplets: tuple[str, ...] = ()     # spatial/time/augment; (): every kind the tiles allow
    gsd: float | None = None
    bands: tuple[int, int, int] | None = None
    asset: str | None = None
    stride: int | None = None          # target pixels; None: half a tile
    min_valid: float = 0.5
    max_tiles: int = 5000
    min_tiles: int = MIN_TILES
    steps: int = 300
    p: int = 8
    k: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    margin: float = 0.2
    miner: str = "random"
    distill: float = 1.0
    freeze_blocks: int | None = None   # None: the start recipe's (5 for EfficientNet-Lite0)
    neg_distance: float | None = None  # metres; None: 2 tile sides
    near_k: int | None = None          # never-negative start-embedding neighbours; None: pairs.NEAR_K rule, 0: off
    clusters: int | None = None        # k-means clusters of the start embedding; None: pairs.n_clusters rule
    recluster_every: int = 0           # steps between re-clusterings on the adapted embedding; 0: never
    downscale_max: float = 2.0         # augmentation: random downsampling by 1..max
    heldout_fraction: float = 0.1
    heldout_max: int = 200
    eval_every: int = 50
    patience: int = 3
    reducer: str = "pca"
    reducer_dim: int | None = None     # None: the start bundle's stored dimension
    seed: int = 0
    device: str | None = None
    bf16: bool | None = None


@dataclass
class AdaptEvent:
    """Progress for the caller: ``tiles`` read, ``step``, ``eval``, ``reduce``, ``done``."""

    kind: str
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    score: float = float("nan")
    agreement: float = float("nan")
    message: str = ""
    extra: dict = field(default_factory=dict)


def _embed(net, images, size, mean, std, device, bf16, batch: int = 32, views: int = 1) -> np.ndarray:
    """Unreduced N×D embeddings (averaged over ``views`` dihedral views, as the bundle's embedder does)."""
    import torch

    from rsir_stac.model.transforms import mean_over_views, to_input

    was = net.training
    net.eval()
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(images), batch):
            x = to_input(images[s:s + batch], size, mean, std).to(device)
            out.append(mean_over_views(net, x, views).cpu().numpy())
    net.train(was)
    return np.concatenate(out) if out else np.zeros((0, net.out_dim), np.float32)


def _start_neighbours(nets, tr, tr_pos, kinds: list[str], cfg: AdaptConfig,
                      embed_args) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(N×M never-negative neighbours, N cluster ids or None, kinds to mine) from the
    start network's embedding of the training tiles.

    Fills ``tr_pos.neighbour`` with mutual nearest neighbours
    (:data:`~rsir_stac.model.pairs.MUTUAL_K`) and ``tr_pos.cluster`` with the
    k-means clusters of the start embedding (``cfg.clusters`` or
    :func:`~rsir_stac.model.pairs.n_clusters`); M is ``cfg.near_k`` or
    :data:`~rsir_stac.model.pairs.NEAR_K` capped at 2 % of the tiles.
    Raises InputError when neighbour or cluster triplets are asked for and
    the start embedding gives none.
    """
    from rsir_stac.model.pairs import (MUTUAL_K, NEAR_K, cluster_labels, cluster_positives, embedding_neighbours,
                                       mutual_neighbours, n_clusters)

    n = len(tr)
    m = cfg.near_k if cfg.near_k is not None else min(NEAR_K, max(MUTUAL_K, int(0.02 * n)))
    z0 = _embed(nets.teacher, tr.pixels, *embed_args)
    nn_ix = embedding_neighbours(z0, max(int(m), MUTUAL_K))
    tr_pos.neighbour = mutual_neighbours(nn_ix, MUTUAL_K)
    labels = None
    k = n_clusters(n) if cfg.clusters is None else int(cfg.clusters)
    if cfg.clusters and not 2 <= k <= n // 2:
        raise InputError(f"--clusters {k}: the {n} training tiles make 2 to {n // 2} clusters of two or more; "
                         f"give --clusters between 2 and {max(2, n // 2)}, or 0 to turn cluster triplets off")
    if k >= 2 and n >= 2 * k:
        labels = cluster_labels(z0, k, cfg.seed)
        tr_pos.cluster = cluster_positives(labels)
    if cfg.triplets and "neighbour" in cfg.triplets and not tr_pos.has("neighbour", n):
        raise InputError("neighbour triplets asked for but no tile has a mutual nearest neighbour in the start "
                         "embedding; drop it from --triplets")
    if cfg.triplets and "cluster" in cfg.triplets and not tr_pos.has("cluster", n):
        raise InputError(f"cluster triplets asked for but {n} training tiles cannot make 2 clusters of two or "
                         "more; drop it from --triplets or add tiles")
    kinds = [k_ for k_ in kinds if tr_pos.has(k_, n)] or ["augment"]
    if not cfg.triplets:
        for kind in ("neighbour", "cluster"):
            if kind not in kinds and tr_pos.has(kind, n):
                kinds.append(kind)
    use_clusters = labels if "cluster" in kinds else None
    return nn_ix[:, :int(m)], use_clusters, kinds


def _recluster(net, tr, tr_pos, sampler, k: int, seed: int, embed_args) -> np.ndarray:
    """New cluster ids of the training tiles from ``net``'s current embedding; updates
    ``tr_pos.cluster`` and the sampler's cluster anchors in place (pseudo-labels refreshed as
    the embedding adapts, as DeepCluster re-clusters every epoch).  Costs one embedding pass."""
    from rsir_stac.model.pairs import cluster_labels, cluster_positives

    labels = cluster_labels(_embed(net, tr.pixels, *embed_args), k, seed)
    tr_pos.cluster = cluster_positives(labels)
    sampler.refresh("cluster")
    log.info("re-clustered the %d training tiles into %d clusters", len(tr), k)
    return labels


def _heldout_queries(n_held: int, n_gal: int, positives) -> list[tuple[str, int, int, int]]:
    """(kind, query row, target row, anchor row) of the held-out criterion.

    Gallery rows 0..n_held-1 are the held-out tiles, n_held..n_gal-1
    distractors; rows n_gal.. are one augmented view of each held-out tile.
    Targets are always held-out tiles."""
    q = [("augment", n_gal + i, i, i) for i in range(n_held)]
    for kind in ("spatial", "time"):
        for r in range(n_held):
            mates = [int(j) for j in positives.of(kind, r) if int(j) < n_held]
            if mates:
                q.append((kind, r, mates[0], r))
    return q


@dataclass
class _Tiles:
    """The user's tiles split for adaptation: training tiles, the held-out slice and the
    held-out criterion's gallery (held-out tiles, then training tiles as distractors)."""

    tiles: Any
    tr: Any
    tr_pos: Any
    ho: Any
    gal: Any
    gal_pos: Any
    kinds: list[str]
    n_scenes: int


def _start_bundle(cfg: AdaptConfig):
    """Check the options and load the start bundle (its weights too), before any tile is read."""
    from rsir_stac.model.bundle import load_bundle

    check_adapt_options(cfg)
    if cfg.p < 2 or cfg.k < 2:
        raise InputError(f"--p {cfg.p} / --k {cfg.k}: each batch needs at least 2 groups of 2 views")
    check_clusters(cfg)
    try:
        bundle = load_bundle(cfg.start)
    except BundleNotFoundError as err:  # the fix names this command's option
        raise BundleNotFoundError(str(err).replace("pass --model", "pass --from")) from None
    _ = bundle.net  # a bundle whose weights cannot be loaded fails here, before any tile is read
    return bundle


def _collect(cfg: AdaptConfig, bundle, emit: Callable[[AdaptEvent], None]) -> _Tiles:
    """Read the sources' tiles as ingest does, find their positives and split off the held-out
    slice; raises DatasetError for too few tiles and InputError for kinds the tiles cannot give."""
    from rsir_stac.model.pairs import available_kinds, find_positives
    from rsir_stac.model.unlabelled import collect_tiles

    tiles = collect_tiles(list(cfg.sources), bundle, gsd=cfg.gsd, bands=cfg.bands, asset=cfg.asset,
                          stride=cfg.stride, min_valid=cfg.min_valid, max_tiles=cfg.max_tiles, seed=cfg.seed,
                          progress=lambda d, n: emit(AdaptEvent("tiles", d, n)))
    positives = find_positives(tiles.pos, tiles.scene, tiles.time, tiles.side_m)
    n_scenes = len(set(tiles.scene[tiles.georeferenced].tolist()))
    kinds = available_kinds(positives, len(tiles), cfg.triplets or None, n_scenes)
    check_negatives(tiles, cfg.neg_distance)
    if len(tiles) < cfg.min_tiles:
        raise DatasetError(f"the sources give {len(tiles)} tiles; adapting needs at least {cfg.min_tiles} "
                           "(add scenes or images, or use a smaller --stride for more overlapping tiles)")
    train_ix, held = held_out_split(tiles, cfg.heldout_fraction, cfg.heldout_max, cfg.seed)
    tr = tiles.subset(train_ix)
    ho = tiles.subset(held)
    # gallery of the held-out criterion: the held-out tiles, then training tiles as distractors (negatives
    # only: a held-out slice from a few ground cells may hold no tile far enough to be a negative)
    n_dis = min(len(train_ix), max(len(held), 32))
    gal = tiles.subset(np.concatenate([held, np.random.default_rng([cfg.seed, 5]).choice(
        train_ix, size=n_dis, replace=False)]))
    log.info("adapting on %d tiles (%d more held out), triplet kinds from the ground: %s (neighbour and cluster kinds "
             "are added once the start model has embedded them)", len(tr), len(ho), kinds)
    return _Tiles(tiles, tr, find_positives(tr.pos, tr.scene, tr.time, tr.side_m), ho, gal,
                  find_positives(gal.pos, gal.scene, gal.time, gal.side_m), kinds, n_scenes)


class _HeldOutCriterion:
    """The early-stopping criterion: positive retrieval on the held-out slice
    (:func:`rsir_stac.model.criteria.positive_retrieval`) and the neighbour agreement
    with the start network, for the student's weights at a step."""

    def __init__(self, nets: StartTeacher, data: _Tiles, cfg: AdaptConfig, embed_args: tuple,
                 emit: Callable[[AdaptEvent], None]) -> None:
        from rsir_stac.model.pairs import negative_mask
        from rsir_stac.model.transforms import OverheadAugment

        size = embed_args[0]
        view_aug = OverheadAugment(size, scale=(0.4, 1.0), jitter=0.2, seed=cfg.seed + 1,
                                   downscale_max=cfg.downscale_max, downscale_prob=0.3)
        gal = data.gal
        self.nets, self.cfg, self.embed_args, self.emit, self.n_gal = nets, cfg, embed_args, emit, len(gal)
        self.images = list(gal.pixels) + [view_aug(im) for im in data.ho.pixels]
        self.neg = negative_mask(gal.pos, np.arange(len(gal)), np.arange(len(gal)), gal.side_m, cfg.neg_distance)
        self.queries = _heldout_queries(len(data.ho), len(gal), data.gal_pos)
        self.z_start = _embed(nets.teacher, self.images, *embed_args)

    def __call__(self, step: int) -> dict:
        from rsir_stac.model.criteria import neighbour_agreement, positive_retrieval

        z = _embed(self.nets.student, self.images, *self.embed_args)
        r = positive_retrieval(z, self.queries, self.neg, self.cfg.margin)
        r["agreement"] = neighbour_agreement(self.z_start[:self.n_gal], z[:self.n_gal])
        r["step"] = step
        self.emit(AdaptEvent("eval", step, self.cfg.steps, score=r["mean_loss"], agreement=r["agreement"],
                             extra={"accuracy": r["accuracy"], "loss": r["loss"]}))
        return r


def adapt(cfg: AdaptConfig, progress: Callable[[AdaptEvent], None] | None = None):
    """Adapt ``cfg.start`` to the tiles of ``cfg.sources``; write ``cfg.out``/bundle.

    Returns the new :class:`~rsir_stac.model.bundle.ModelBundle`; its
    ``meta["training"]["adaptation"]`` (also ``out``/adapt.json) records the
    sources, tiles, triplet kinds and counts, the held-out criterion before
    and after and the start-model neighbour agreement.

    Raises BundleError for a start bundle that cannot be loaded, InputError
    for an existing output, mixed GSDs without ``gsd``, or triplet kinds the
    tiles cannot give (spatial from one scene), DatasetError for sources
    with no or too few tiles.  Nothing is written until the bundle is
    complete (it is built in a temporary folder and renamed).
    """
    import torch

    from rsir_stac.embed import cpu_supports_bf16

    emit = progress or (lambda e: None)
    t0 = time.time()
    out = Path(cfg.out)
    target = check_out(out)
    bundle = _start_bundle(cfg)
    data = _collect(cfg, bundle, emit)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = cfg.bf16 if cfg.bf16 is not None else (device.type == "cuda" or cpu_supports_bf16())
    torch.manual_seed(cfg.seed)
    nets = StartTeacher(bundle, cfg.freeze_blocks, device)
    embed_args = (bundle.input_size, bundle.meta["normalisation"]["mean"], bundle.meta["normalisation"]["std"],
                  device, bf16)
    # the start model's view of the training tiles: mutual neighbours become positives, near ones never negatives
    near, clusters, data.kinds = _start_neighbours(nets, data.tr, data.tr_pos, data.kinds, cfg, embed_args)
    log.info("triplet kinds mined: %s", ", ".join(data.kinds))
    run = _fit(cfg, nets, data, near, clusters, embed_args, _HeldOutCriterion(nets, data, cfg, embed_args, emit),
               emit)
    train_seconds = time.time() - t0
    net = nets.student
    net.load_state_dict(run["best_state"] if run["best_state"] is not None else nets.teacher.state_dict())
    net = net.eval().to("cpu")
    kept = keep_start_reducer(cfg, bundle, len(data.tiles))
    if kept:
        log.warning("%s", kept)
        reducer = bundle.reducer
    else:
        emit(AdaptEvent("reduce", message=f"fitting the {cfg.reducer} reducer on {len(data.tiles)} tiles"))
        reducer = _fit_reducer(cfg, bundle, net, data.tiles, embed_args[:3] + (torch.device("cpu"),
                                                                                bf16 if device.type == "cpu" else False))
    record = adaptation_record(cfg, bundle, data, near, run, kept, device.type, bf16, t0, train_seconds)
    result = write_adapted(bundle, net, reducer, record, target, out)
    emit(AdaptEvent("done", run["step"], cfg.steps, message=str(target)))
    return result


def _fit(cfg: AdaptConfig, nets: StartTeacher, data: _Tiles, near: np.ndarray, clusters: np.ndarray | None,
         embed_args: tuple, criterion: _HeldOutCriterion, emit: Callable[[AdaptEvent], None]) -> dict:
    """The fine-tuning steps (triplet loss on P×K batches of mined groups, plus distillation
    to the start network), evaluated every ``cfg.eval_every`` steps with early stopping;
    returns the history, the best step's record and weights, and the triplet counts."""
    import torch

    from rsir_stac.model.pairs import TripletSampler, negative_mask, triplet_loss
    from rsir_stac.model.transforms import OverheadAugment

    tr, kinds = data.tr, data.kinds
    size, mean, std, device, bf16 = embed_args
    aug = OverheadAugment(size, scale=(0.4, 1.0), jitter=0.2, seed=cfg.seed, downscale_max=cfg.downscale_max,
                          downscale_prob=0.3)
    body = [p for n_, p in nets.student.named_parameters() if n_.startswith("backbone.") and p.requires_grad]
    head = [p for n_, p in nets.student.named_parameters() if not n_.startswith("backbone.") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": body, "scale": 1.0}, {"params": head, "scale": 10.0}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = TripletSampler(data.tr_pos, len(tr), kinds, p=cfg.p, k=cfg.k, seed=cfg.seed)
    rng = np.random.default_rng([cfg.seed, 3])
    triplets = {k: 0 for k in kinds}
    reclustered: list[int] = []
    history = [criterion(0)]
    best, best_state, since = history[0], None, 0
    warmup = max(1, cfg.steps // 10)
    losses: list[float] = []
    step = 0
    nets.train()
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * (step / warmup if step <= warmup else
                       0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup))))
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        ix, group, kind, x = _batch(sampler, tr, aug, embed_args)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            z, zt = nets(x, cfg.distill > 0)
        neg = negative_mask(tr.pos[ix], ix, group, tr.side_m[ix], cfg.neg_distance, near=near, cluster=clusters)
        loss, used = triplet_loss(z.float(), group, neg, cfg.margin, rng, cfg.miner)
        for a in used.tolist():
            triplets[kind[a]] += 1
        if zt is not None:
            loss = loss + cfg.distill * (1.0 - torch.nn.functional.cosine_similarity(
                z.float(), zt.float(), dim=1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        emit(AdaptEvent("step", step, cfg.steps, loss=losses[-1]))
        if (cfg.recluster_every and clusters is not None and step % cfg.recluster_every == 0
                and step < cfg.steps):
            clusters = _recluster(nets.student, tr, data.tr_pos, sampler, int(clusters.max() + 1), cfg.seed + step,
                                  embed_args)
            reclustered.append(step)
            nets.train()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            r = criterion(step)
            r["train_loss"] = float(np.mean(losses[-cfg.eval_every:]))
            history.append(r)
            nets.train()
            undefined = math.isnan(history[0]["mean_loss"])  # no held-out query: no early stopping
            if undefined or r["mean_loss"] < best["mean_loss"] - 1e-4:
                best, since = r, 0
                best_state = {k: v.detach().clone() for k, v in nets.student.state_dict().items()}
            else:
                since += 1
                if since >= cfg.patience:
                    log.info("early stop at step %d (best step %d)", step, best["step"])
                    break
    return {"history": history, "best": best, "best_state": best_state, "step": step, "triplets": triplets,
            "reclustered": reclustered, "clusters": clusters, "groups": dict(sampler.counts)}


def _batch(sampler, tr, aug, embed_args: tuple) -> tuple[np.ndarray, np.ndarray, list[str], Any]:
    """The sampler's next P×K batch: (training-tile rows, group ids, triplet kind of each row, and
    their augmented views as a normalised channels-last batch on the device)."""
    import torch

    from rsir_stac.model.transforms import to_input

    size, mean, std, device, _ = embed_args
    batch = sampler.batch()
    ix = np.asarray([b[0] for b in batch])
    group = np.asarray([b[1] for b in batch])
    kind = [b[2] for b in batch]
    x = to_input([aug(tr.pixels[i]) for i in ix.tolist()], size, mean, std).to(device)
    return ix, group, kind, x.contiguous(memory_format=torch.channels_last)


def _fit_reducer(cfg: AdaptConfig, bundle, net, tiles, embed_args: tuple):
    """The PCA reducer refitted on every tile's embedding by the adapted network (views as
    the start bundle's embedder); None for ``--reducer none``."""
    from rsir_stac.reduce import make_reducer

    if cfg.reducer == "none":
        return None
    z_all = _embed(net, tiles.pixels, *embed_args, views=bundle.views)
    dim = cfg.reducer_dim or (bundle.dim if bundle.meta.get("reducer", {}).get("kind") != "none" else 32)
    return make_reducer(cfg.reducer, min(dim, len(tiles) - 1, net.out_dim)).fit(z_all)
