"""Retrieval metrics (mAP, P@k, ANMRR) and the dataset evaluation protocol.

Protocol: every query image is compared with every *other* image of the
evaluated set by Euclidean distance; ties are broken by index.  With query
expansion (``expand`` = n > 0, average query expansion, Chum et al. 2007;
Radenović et al. 2018) each query is first replaced by the mean of itself and
its n nearest other images, as ``rsir-stac search --expand`` does with the
stored vectors, and the other images are ranked by distance to that mean.  mAP is over
the full ranking.  ANMRR follows MPEG-7 (Manjunath et al.): K(q) =
min(4·NG(q), 2·max NG), a ground-truth item ranked past K(q) counts as
1.25·K(q); 0 is perfect, 1 is worst.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.protocol import _bundle_split  # noqa: F401 - for benchmarks/strategy_quality.py
from rsir_stac.protocol import _bands_note, _choose_images, _chosen_classes

log = logging.getLogger(__name__)

DEFAULT_KS = (5, 10, 20, 50, 100)


def average_precision(relevant: np.ndarray) -> float:
    """AP of one ranked list given a boolean relevance vector (best first)."""
    relevant = np.asarray(relevant, dtype=bool)
    n_rel = relevant.sum()
    if n_rel == 0:
        return 0.0
    hits = np.cumsum(relevant)
    ranks = np.flatnonzero(relevant) + 1
    return float((hits[relevant] / ranks).sum() / n_rel)


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """Fraction of the first ``k`` results that are relevant (k counts even past the list end)."""
    return float(np.asarray(relevant[:k], dtype=bool).sum() / k)


def nmrr(relevant: np.ndarray, n_gt: int, gtm: int) -> float:
    """Normalised modified retrieval rank of one query (MPEG-7)."""
    if n_gt == 0:
        return 0.0
    k = min(4 * n_gt, 2 * gtm)
    ranks = np.flatnonzero(np.asarray(relevant, dtype=bool))[:n_gt] + 1.0
    ranks = np.where(ranks <= k, ranks, 1.25 * k)
    if len(ranks) < n_gt:  # items never retrieved count as misses
        ranks = np.concatenate([ranks, np.full(n_gt - len(ranks), 1.25 * k)])
    avr = ranks.sum() / n_gt
    mrr = avr - 0.5 - n_gt / 2.0
    return float(mrr / (1.25 * k - 0.5 - n_gt / 2.0))


#: Distances computed at a time when ranking (a batch of queries × every row): ~32 MB of float64.
RANK_BLOCK = 4_000_000


def _ranked_batches(X: np.ndarray, queries: np.ndarray | None = None, batch: int | None = None):
    """``(rows, order)`` for batches of queries: ``order[i]`` the indices of all rows of ``X`` but
    query ``rows[i]`` itself, nearest first (Euclidean; from row i of ``queries`` when given).
    ``batch`` defaults to as many queries as keep a batch's distances to :data:`RANK_BLOCK`."""
    X = np.asarray(X, dtype=np.float64)
    Q = X if queries is None else np.asarray(queries, dtype=np.float64)
    sq, sq_q = (X**2).sum(1), (Q**2).sum(1)
    n = len(X)
    batch = batch or max(16, min(1024, RANK_BLOCK // max(n, 1)))
    for s in range(0, n, batch):
        d = sq_q[s : s + batch, None] + sq[None, :] - 2.0 * Q[s : s + batch] @ X.T
        rows = np.arange(s, min(s + batch, n))
        d[rows - s, rows] = np.inf  # exclude the query itself
        yield rows, np.argsort(d, axis=1, kind="stable")[:, : n - 1]


def rank_all(X: np.ndarray, batch: int | None = None, queries: np.ndarray | None = None) -> np.ndarray:
    """For each row, the indices of all *other* rows sorted by Euclidean distance
    (from row i of ``queries`` instead of row i of ``X`` when given; same shape as ``X``).
    N × (N − 1) int64: for large N, :func:`retrieval_metrics` ranks a batch at a time instead."""
    n = len(X)
    order = np.empty((n, max(n - 1, 0)), dtype=np.int64)
    for rows, o in _ranked_batches(X, queries, batch):
        order[rows] = o
    return order


#: Largest query expansion (neighbours averaged into the query) a search or evaluation takes.
MAX_EXPAND = 100


def check_expand(expand: int) -> int:
    """``expand`` as an int in 0..:data:`MAX_EXPAND`; raises InputError otherwise."""
    from rsir_stac.errors import InputError

    if isinstance(expand, bool) or not isinstance(expand, (int, np.integer)) or not 0 <= expand <= MAX_EXPAND:
        raise InputError(f"query expansion {expand!r} must be a whole number of neighbours from 0 (off) to "
                         f"{MAX_EXPAND}, e.g. --expand 5")
    return int(expand)


def expand_queries(X: np.ndarray, n: int) -> np.ndarray:
    """Average query expansion: each row of ``X`` (N, D) replaced by the mean of itself and
    its ``n`` nearest *other* rows (Euclidean), shape (N, D) float64; ``n = 0`` returns ``X``."""
    X = np.asarray(X, dtype=np.float64)
    if n <= 0:
        return X
    out = np.empty_like(X)
    for rows, order in _ranked_batches(X):  # a batch of queries at a time: memory flat with N
        near = order[:, :n]
        out[rows] = (X[rows] + X[near].sum(axis=1)) / (1 + near.shape[1])
    return out


def retrieval_metrics(X: np.ndarray, labels: Sequence[int], ks: Sequence[int] = DEFAULT_KS,
                      expand: int = 0) -> dict:
    """mAP, P@k and ANMRR with each row of ``X`` as a query against the rest
    (``expand`` > 0: the query is first expanded with :func:`expand_queries`).

    A query whose class has no other image (a distractor) has nothing to find: it is left out
    of mAP, P@k and ANMRR, which are undefined for it (``n_unscored`` says how many; its P@k
    of 0 would count against the model, an ANMRR of 0 would claim a perfect ranking); it is
    still ranked against, as a wrong answer for the others.  Raises DatasetError when no query has a relevant image."""
    from rsir_stac.errors import DatasetError

    labels = np.asarray(labels)
    expand = check_expand(expand)
    n_gt = np.bincount(labels)[labels] - 1 if len(labels) else np.zeros(0, dtype=np.int64)
    if not (n_gt > 0).any():
        raise DatasetError(f"none of the {len(labels)} images evaluated shares its class with another, so no query "
                           "has a relevant image to find and mAP/ANMRR mean nothing; evaluate at least 2 images "
                           "of some class (e.g. evaluate --split all)")
    gtm = int(n_gt.max())
    scored = n_gt > 0
    k10 = 10 if 10 in ks else max(ks)
    ap = np.full(len(labels), np.nan)
    pk = {k: np.full(len(labels), np.nan) for k in {*ks, k10}}
    nm = np.full(len(labels), np.nan)
    # a batch of queries at a time: the full ranking (N x N) of NWPU-RESISC45's 31,500 images is 8 GB
    for rows, order in _ranked_batches(X, expand_queries(X, expand) if expand else None):
        rel = labels[order] == labels[rows, None]
        for r, i in zip(rel, rows):
            if scored[i]:
                ap[i] = average_precision(r)
                nm[i] = nmrr(r, int(n_gt[i]), gtm)
                for k in pk:
                    pk[k][i] = precision_at_k(r, k)
    out = {"mAP": float(np.nanmean(ap))}
    for k in ks:
        out[f"P@{k}"] = float(np.nanmean(pk[k]))
    out["ANMRR"] = float(np.nanmean(nm))
    out["n_queries"] = int(len(labels))
    if not scored.all():
        out["n_unscored"] = int((~scored).sum())
    out["dim"] = int(X.shape[1])
    if expand:
        out["expand"] = expand
    # per class (label): its queries' mAP and P@10, as above; None for a class of one image
    out["per_label"] = {}
    for c in np.unique(labels):
        mine = (labels == c) & scored
        out["per_label"][int(c)] = {"n": int((labels == c).sum()),
                                    "mAP": float(np.mean(ap[mine])) if mine.any() else None,
                                    f"P@{k10}": float(np.mean(pk[k10][mine])) if mine.any() else None}
    return out


IMAGENET = "imagenet"


class ImageNetBaseline:
    """Stand-in for a bundle: L2-normalised pooled ImageNet EfficientNet-Lite0
    features (1280-d, no training), the reference of every generality protocol."""

    model_id = "imagenet-efficientnet_lite0-pooled"
    meta: dict = {"training": {}}
    dim = 1280

    def embedder(self, *, device=None, bf16=None, batch_size=None, lanes=None, views=None):
        from rsir_stac.embed import Embedder
        from rsir_stac.model.backbones import NORMALISATION
        from rsir_stac.model.net import PooledFeaturesNet

        mean, std = NORMALISATION["efficientnet_lite0"]
        return Embedder(PooledFeaturesNet().eval(), None, input_size=224, mean=mean, std=std,
                        device=device, bf16=bf16, batch_size=batch_size, lanes=lanes, views=views or 1)


def resolve_model(model):
    """A loaded bundle, the ImageNet baseline for ``"imagenet"``, or the shipped model for None."""
    from rsir_stac.model.bundle import load_bundle

    if model is not None and not isinstance(model, (str, Path)):
        return model
    if isinstance(model, str) and model == IMAGENET:
        return ImageNetBaseline()
    return load_bundle(model)


#: (warning kind, folder, bundle test digest) already warned about in this process (once, not once per scale).
def evaluate_folder(
    data_dir: str | Path,
    bundle=None,
    *,
    split: str | None = "test",
    batch_size: int | None = None,
    bf16: bool | None = None,
    progress=None,
    reduce: bool = True,
    scale: float = 1.0,
    classes: str | Sequence[str] | None = None,
    expand: int = 0,
    bands: Sequence[int] | None = None,
) -> dict:
    """Embed a labelled folder with a bundle and score retrieval.

    ``split="test"`` uses the test split recorded in the bundle: the images the
    model never trained on (the split is computed over the classes it trained on,
    as training did; with ``classes``, the test images of those classes, and every
    image of a class it was trained without).  ``split=None`` is ``test`` on the dataset the
    bundle was trained on (its recorded split matches) and ``all`` on any other (a note says so,
    in ``warnings``) or with ``classes="held-out"``.  ``split="all"`` uses every image;
    when the folder is the one the bundle was trained on, the images it trained
    on are counted (``protocol["trained_on"]``) and a warning says so.  ``scale`` ≥ 1
    downsamples query and database images alike by that factor (Lanczos, antialiased)
    before the usual resize to the network input: the same ground at a ``scale``×
    coarser GSD.  ``classes="held-out"`` evaluates the classes the bundle was trained
    without (leave-classes-out protocol); a list of class names restricts to those
    classes (each a name or a comma-separated list of names, matched to the folder's names
    whatever their Unicode form or surrounding spaces: :mod:`rsir_stac.model.class_names`).  ``bundle="imagenet"`` scores the ImageNet pooled-feature baseline.
    ``expand`` > 0 scores with average query expansion over that many neighbours
    (:func:`expand_queries`, what ``search --expand`` does).  ``bands``: the 1-based
    (R, G, B) bands of multi-band images (:func:`rsir_stac.model.data.load_rgb`); by default
    each image's colour interpretation or band names (``protocol["bands"]`` None), as ingest
    and search read them, with a warning when the bundle was trained on chosen bands.

    The result records the protocol: ``split``, ``scale``, ``classes``, ``held_out``
    (the classes were chosen by ``classes="held-out"``), ``data`` (the folder,
    absolute), ``model``, ``reduced``, ``expand``, ``views``, ``split_matches_bundle``
    (whether the folder's test split is the one recorded in the bundle: False means this
    is not the training dataset, or it changed; None when not checked) and ``trained_on``
    (how many scored images the model trained on; None when unknown: another dataset, or
    a bundle that records no split), ``scored_digest`` (a fingerprint of the paths of the images scored,
    relative to the folder: two runs with the same one scored the same file names), ``effective_scale``
    (the smallest factor an image was downsampled by; below ``scale`` when small images were kept at
    8 px, as a warning says) and ``bundle_test_digest`` (the one of the test split recorded in the bundle; equal to
    ``scored_digest`` when that split was scored).  ``split`` is ``"all"`` when only classes the
    bundle was trained without are scored (every image of them is one it never trained on).  ``warnings`` lists what was warned about; ``per_class``
    gives each class's image count, mAP and P@10 (None for a class of one image).

    Raises InputError for ``scale`` < 1, an unknown split or a bad ``expand``, DatasetError for
    unknown class names or a bundle without held-out classes.
    """
    from rsir_stac.model.class_names import find_class
    from rsir_stac.model.data import scan_image_folder

    expand = _check_options(split, scale, expand, batch_size)
    bundle = resolve_model(bundle)
    tr = bundle.meta.get("training", {})
    with _warnings_of("rsir_stac.model.data") as folder_notes:   # the folder's own problems reach --json too
        full = scan_image_folder(data_dir, min_per_class=1)  # a one-image class is a distractor: nothing to find
    # the training folder's names of its held-out classes, as this folder spells them (Unicode form, spaces)
    held = [find_class(c, full.classes) or c for c in tr.get("held_out_classes") or []]
    by_held_out = classes == "held-out"
    classes = _chosen_classes(full, held, classes, by_held_out, bundle.model_id, data_dir)
    notes: list[str] = list(folder_notes) + _bands_note(bundle, bands)
    chosen, split, notes = _choose_images(full, held, classes, split, by_held_out, bundle, data_dir, notes)
    folder, idx = chosen.folder, chosen.idx
    X, sides, bf16 = _embed_images(bundle, folder, idx, bf16=bf16, batch_size=batch_size, bands=bands, scale=scale,
                                   reduce=reduce, progress=progress)
    notes += _scale_notes(sides, scale, data_dir) + _size_notes(sides, getattr(bundle, "tile_size", None), data_dir)
    notes += _expand_notes(expand, len(idx), data_dir)
    out = retrieval_metrics(X, folder.labels[idx], expand=expand)
    out["per_class"] = {folder.classes[c]: v for c, v in out.pop("per_label").items()}
    out["protocol"] = _protocol(bundle, data_dir, full, chosen, split=split, scale=scale, classes=classes,
                                by_held_out=by_held_out, bf16=bf16, batch_size=batch_size, reduce=reduce,
                                expand=expand, bands=bands)
    out["protocol"]["effective_scale"] = effective_scale(sides, scale)
    out["warnings"] = notes + chosen.warnings
    return out


def _embed_images(bundle, folder, idx: np.ndarray, *, bf16: bool | None, batch_size: int | None,
                  bands: Sequence[int] | None, scale: float, reduce: bool,
                  progress) -> tuple[np.ndarray, list[int], bool]:
    """``(X, sides, bf16)``: the images ``idx`` of ``folder`` embedded by the bundle's embedder
    (:func:`embed_files`), each image's shorter side in pixels, and whether the embedder ran in
    bf16 (``bf16`` None: it chose by the hardware)."""
    sides: list[int] = []
    with bundle.embedder(bf16=bf16, batch_size=batch_size) as emb:
        bf16 = bool(getattr(emb, "bf16", bf16))  # None: the embedder chose by the hardware
        X = embed_files([folder.paths[i] for i in idx], emb, bands=bands, scale=scale, reduce=reduce,
                         progress=progress, sizes=sides)
    return X, sides, bf16


def _protocol(bundle, data_dir, full, chosen, *, split: str, scale: float, classes, by_held_out: bool,
              bf16: bool | None, batch_size: int | None, reduce: bool, expand: int,
              bands: Sequence[int] | None) -> dict:
    """The ``protocol`` record of an evaluation (:func:`evaluate_folder` lists its keys): what was
    scored (``chosen``, of the folder ``full``), how, and with which model."""
    from rsir_stac.model.data import split_digest

    tr = bundle.meta.get("training", {})
    folder, idx = chosen.folder, chosen.idx
    # the classes scored, by name (a bundle trained leaving classes out scores its trained ones by
    # default: "all" read as every class of the folder); "all" only when that is what was scored
    scored = sorted({folder.classes[c] for c in folder.labels[idx]})
    rel = folder.relpaths()
    return {"split": split, "scale": float(scale),
            "classes": scored if classes or len(scored) < len(full.classes) else "all",
            "held_out": by_held_out, "data": str(Path(data_dir).resolve()),
            "model": bundle.model_id,
            "bundle": str(Path(bundle.path).resolve()) if getattr(bundle, "path", None) else None,
            "precision": "bf16" if bf16 else "fp32", "batch_size": batch_size,
            "scored_digest": split_digest([rel[i] for i in idx.tolist()]),
            "bundle_test_digest": tr.get("test_digest"), "versions": _versions(),
            "reduced": bool(reduce), "expand": expand,
            "views": int(getattr(bundle, "views", 1)), "split_matches_bundle": chosen.matches
            if split == "test" else None, "trained_on": chosen.trained_on,
            "adapted_on": chosen.adapted_on,
            "bands": list(bands) if bands else None}


@contextmanager
def _warnings_of(logger: str) -> Iterator[list[str]]:
    """The messages ``logger`` warns while the block runs (they are still logged as usual)."""
    got: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    handler = _Keep(logging.WARNING)
    log_ = logging.getLogger(logger)
    log_.addHandler(handler)
    try:
        yield got
    finally:
        log_.removeHandler(handler)


def _versions() -> dict[str, str]:
    """rsir-stac's and torch's versions (what produced a figure, beside the model)."""
    import torch

    from rsir_stac import __version__

    return {"rsir_stac": __version__, "torch": torch.__version__}


def effective_scale(sides: Sequence[int], scale: float) -> float:
    """The smallest factor any image was downsampled by at ``scale``: ``scale`` itself, unless
    images whose shorter side is in ``sides`` were kept at the 8 px
    :func:`rsir_stac.model.transforms.downscale` keeps (the smallest of them: its side / 8)."""
    if scale <= 1 or not sides or all(round(s / scale) >= 8 for s in sides):
        return float(scale)
    return float(max(1.0, min(sides) / 8))


def _scale_notes(sides: list[int], scale: float, data_dir) -> list[str]:
    """A warning when ``scale`` would take images below the 8 pixels
    :func:`rsir_stac.model.transforms.downscale` keeps (they
    are scored at a lower factor than the one reported), naming the largest factor all support."""
    small = [s for s in sides if round(s / scale) < 8] if scale > 1 else []
    if not small:
        return []
    msg = (f"--scale {scale:g}: {len(small)} of the {len(sides)} images of {data_dir} are under {8 * scale:g} px on "
           f"a side (the smallest {min(sides)} px), so they were kept at 8 px, a smaller factor than {scale:g}; "
           f"the largest factor every image takes is {max(1.0, min(sides) / 8):g}")
    log.warning("%s", msg)
    return [msg]


def _expand_notes(expand: int, n: int, data_dir) -> list[str]:
    """A warning when query expansion over ``expand`` neighbours takes in every other of the ``n``
    images scored: each query becomes the mean of them all, so every query is the same (P@k is the
    share of each class, whatever the model), naming a smaller value."""
    if not expand or expand < n - 1:
        return []
    smaller = min(10, (n - 1) // 4)
    msg = (f"--expand {expand} takes in all {n - 1} other images of the {n} scored from {data_dir}: every query "
           "becomes the mean of all the images, so every query is the same and the scores say nothing of the model; "
           + (f"pass a smaller --expand, e.g. --expand {smaller}" if smaller else
              "pass --expand 0 (off), or score more images"))
    log.warning("%s", msg)
    return [msg]


def _size_notes(sides: list[int], tile_size: int | None, data_dir) -> list[str]:
    """A warning when the images are far from the model's tile (median shorter side under 1/8 of it,
    or over 4 times it): each is resized to the network input, so 8 px chips are blown up and whole
    scenes squashed, and the figures say little about tiles ingest would cut."""
    if not sides or not tile_size:
        return []
    side = int(np.median(sides))
    if tile_size / 8 <= side <= 4 * tile_size:
        return []
    how = "blown up" if side < tile_size else "shrunk"
    msg = (f"the images of {data_dir} are about {side} px on a side, the model's tiles {tile_size} px: each image is "
           f"{how} to the network input, so these figures say little about the tiles ingest cuts "
           + ("(give images of about the tile's size and ground resolution)" if side < tile_size
              else "(cut the scenes into tiles first, e.g. ingest them and search, or evaluate tile-sized chips)"))
    log.warning("%s", msg)
    return [msg]


#: Images decoded and embedded at a time, in batches of the embedder's size (memory stays flat
#: with the folder's size: NWPU-RESISC45's 31,500 images would be 6 GB decoded at once).
CHUNK_BATCHES = 16
#: ...and at most about this many bytes of decoded pixels (15 JPEGs of 6000 x 6000 px held 3.9 GB).
CHUNK_BYTES = 256 * 2**20


def embed_files(paths: Sequence[Path], emb: Any, *, bands: Sequence[int] | None = None, scale: float = 1.0,
                reduce: bool = True, progress=None, sizes: list | None = None) -> np.ndarray:
    """Decode (``bands``; downsampled by ``scale``) and embed ``paths`` a chunk at a time; N×D float32.

    Every file is decoded even after one fails (embedding stops then), so that the error names
    all the unreadable ones (:func:`rsir_stac.model.data.unreadable_images_error`).  ``sizes``, when
    given, gets each image's shorter side in pixels before downsampling."""
    from rsir_stac.errors import ImageReadError
    from rsir_stac.model.data import load_rgb, unreadable_images_error
    from rsir_stac.model.transforms import downscale

    chunk = max(1, int(emb.batch_size)) * CHUNK_BATCHES
    out, bad, images = [], [], []
    held = 0  # bytes of the decoded images not yet embedded

    def flush() -> None:
        nonlocal held
        if images and not bad:
            out.append(emb.embed(images, reduce=reduce, progress=progress))
        images.clear()
        held = 0

    for path in paths:
        try:
            image = load_rgb(path, bands)
        except ImageReadError as exc:
            bad.append((path, exc))
            continue
        if sizes is not None:
            sizes.append(int(min(image.shape[:2])))
        images.append(downscale(image, scale) if scale > 1 else image)
        held += images[-1].nbytes
        if len(images) >= chunk or held >= CHUNK_BYTES:  # large images: fewer at a time, memory stays bounded
            flush()
    flush()
    if bad:
        raise unreadable_images_error(bad)
    if not out:
        return emb.embed([], reduce=reduce)
    return np.concatenate(out)


def _check_options(split: str, scale: float, expand: int, batch_size: int | None) -> int:
    """Refuse (InputError) an unknown ``split``, a ``scale`` below 1, a bad ``expand``
    (:func:`check_expand`, whose value is returned) and a ``batch_size`` that is not a positive
    whole number."""
    from rsir_stac.errors import InputError

    if split not in ("test", "all", None):
        raise InputError(f"--split {split!r} is not known; use test or all")
    if not scale >= 1.0:
        raise InputError(f"--scale {scale} is below 1; give a downsampling factor of 1 or more (e.g. 2, 4, 8)")
    expand = check_expand(expand)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise InputError(f"--batch-size {batch_size!r} is invalid; give a positive whole number of tiles per forward "
                         "pass (leave it out for the default)")
    return expand

