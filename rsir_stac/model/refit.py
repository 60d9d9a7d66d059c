"""A new reducer for a trained network: ``rsir-stac reduce`` (PCA, LDA, LDA+PCA and
rotation views fitted on the bundle's recorded training split)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rsir_stac.errors import ImageReadError, InputError

log = logging.getLogger(__name__)


def _article(kind: str) -> str:
    """"an" before LDA / LDA+PCA (said "el-dee-ay"), "a" before PCA."""
    return "an" if kind.lower().startswith("lda") else "a"


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
        raise InputError(f"--dim {dim}: {_article(kind)} {kind.upper()} reducer fitted on {why} gives {least} to {most} dimensions; "
                         f"pass --dim {min(max(dim, least), most)}")


def _check_out(target: Path) -> Path:
    """Refuse, before any image is embedded, an ``--out`` that :func:`rsir_stac.atomic.atomic_dir`
    would refuse at the end: a bundle, a file, or a folder of other files."""
    named = target.expanduser()
    folder = named.resolve() if named.is_symlink() and named.is_dir() else named
    if (folder / "model.json").exists():
        raise InputError(f"--out {target} already holds a model bundle; pass another --out or remove it")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {target} is a file; pass a new or empty folder as --out")
    if folder.is_dir() and any(folder.iterdir()):
        raise InputError(f"--out {target} is a folder that is not empty; pass a new or empty folder as --out")
    return target


def _check_hybrid(bundle, hybrid: float) -> float:
    """Refuse a hybrid weight the bundle cannot take: a network without the pooled part in its
    output (recipe v1), or a weight that is not a finite number above 0 (0 would change the
    output's size, which is a network change)."""
    import math

    if float(bundle.meta.get("hybrid", 0.0)) <= 0:
        raise InputError(f"--hybrid {hybrid:g}: model {bundle.model_id} has no pooled backbone features in its output "
                         "(recipe v1), so there is no weight to change; drop --hybrid")
    if not (math.isfinite(hybrid) and 0 < hybrid <= 100):
        raise InputError(f"--hybrid {hybrid:g}: give a weight above 0 and at most 100 (e.g. 1 or 2; this bundle's "
                         f"is {float(bundle.meta['hybrid']):g})")
    return float(hybrid)


def _bands_refusal(err: ImageReadError, bundle, data_dir) -> ImageReadError:
    """``reduce``'s words for images that cannot be read with the bundle's recorded bands (the
    evaluate/train advice, ``--bands``, is no option of ``reduce``); ``err`` itself for images that
    cannot be decoded at all (its advice, to remove or replace them, holds)."""
    from rsir_stac.model.data import ImageBandsError, listed_with_causes

    bad = getattr(err, "bad", None) or ([(err.path, err)] if isinstance(err, ImageBandsError) else [])
    if not bad or not all(isinstance(e, ImageBandsError) for _, e in bad):
        return err
    bands = bundle.meta.get("training", {}).get("bands")
    if bands:
        shown = ",".join(str(int(b)) for b in bands)
        what = f"cannot be read with bands {shown}, which model {bundle.model_id} was trained on and reduce reads"
    else:
        what = (f"do not say which bands are red, green and blue, and model {bundle.model_id} records no --bands "
                "to read them with")
    return ImageReadError(f"{len(bad)} image(s) of {data_dir} {what}: {listed_with_causes(bad)}; pass the folder "
                          "the model was trained on (reduce takes no --bands: it reads the bands its bundle records)")


def _training_images(bundle, data_dir: str, kind: str, dim: int):
    """``(folder, train_ix)``: the images of ``data_dir`` the bundle's run trained on (fit and
    validation; its held-out classes left out), by its split recomputed as training did, or, on its
    training folder changed since (images added or removed), by the file names the bundle records
    (:class:`~rsir_stac.model.recorded_split.RecordedSplit`, said in a warning).  Raises InputError
    for another dataset."""
    from rsir_stac.model.bundle import model_name
    from rsir_stac.model.data import scan_image_folder
    from rsir_stac.model.recorded_split import RecordedSplit, training_split

    tr = bundle.meta.get("training", {})
    # a leave-classes-out bundle: its split, and so its reducer, never saw its held-out classes
    folder, train_ix, _, matches = training_split(scan_image_folder(data_dir), tr)
    rel = folder.relpaths()
    if matches is not False:   # its split (or a bundle that records none)
        return folder, train_ix
    rec = RecordedSplit.of(tr)
    if rec is not None and rec.shares(rel):
        log.warning("%s changed since model %s was trained on it (%s): the reducer is fitted on the images it "
                    "trained on that are still there, by the file names its bundle records", data_dir,
                    bundle.model_id, rec.changes(rel))
        return folder, np.asarray([i for i, r in enumerate(rel) if rec.trained_on(r)], dtype=np.int64)
    raise InputError(f"the split of {data_dir} is not the one model {bundle.model_id} recorded (another dataset, or "
                     "images added, removed or renamed since training); pass the training data folder, or, to fit "
                     "a reducer on the labels of another folder, fine-tune on it: `rsir-stac train "
                     f"{data_dir} --from {model_name(bundle)} --reducer {kind} --reducer-dim {dim} --epochs 1 "
                     "--out OUT`")


def refit_reducer(model, data_dir: str, kind: str, dim: int, out: str, *, views: int | None = None,
                  hybrid: float | None = None, progress=None):
    """Write a copy of a bundle with a new reducer fitted on its recorded
    training split of ``data_dir`` (the network is unchanged); returns the new bundle.

    ``views`` (1, 4 or 8; None keeps the bundle's) sets the dihedral views the
    new bundle averages per tile at inference (test-time augmentation,
    :func:`rsir_stac.model.transforms.dihedral_views`); the reducer is fitted
    on embeddings made the same way.  LDA needs ``dim`` ≤ classes − 1.  A
    leave-classes-out bundle's held-out classes stay out of the fit, as in training.

    ``hybrid`` (None keeps the bundle's) sets the weight ``w`` of the pooled backbone
    features in the unreduced output ``[z, w·g] / sqrt(1 + w²)`` (recipe v2/v3,
    :class:`rsir_stac.model.net.EmbeddingNet`): higher keeps more of the generic
    (ImageNet-distilled) part, for classes and sensors the labels never named; lower
    more of the triplet head, for the trained classes (RESULTS §7, eighth and
    thirty-second sessions). The weights are unchanged; the reducer is fitted anew.

    Raises InputError for another view count, a hybrid weight the bundle cannot take, an ``out`` that already holds
    a bundle or other files, a reducer size the split cannot give, or a
    ``data_dir`` whose split is not the bundle's; nothing is written unless
    the whole bundle is (:func:`rsir_stac.atomic.atomic_dir`).
    """
    import copy

    from rsir_stac.atomic import atomic_dir
    from rsir_stac.model.bundle import ModelBundle, load_bundle, save_bundle
    from rsir_stac.evaluate import embed_files
    from rsir_stac.model.transforms import VIEW_SETS
    from rsir_stac.reduce import make_reducer

    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    views = bundle.views if views is None else views
    if views not in VIEW_SETS:
        raise InputError(f"--views {views}: choose one of {', '.join(map(str, sorted(VIEW_SETS)))} "
                         "(1: none; 4: the rotations; 8: rotations and mirror images)")
    target = _check_out(Path(out))
    weight = None if hybrid is None else _check_hybrid(bundle, hybrid)
    tr = bundle.meta.get("training", {})
    folder, train_ix = _training_images(bundle, data_dir, kind, dim)
    _check_reducer_dim(kind, dim, len(train_ix), len(folder.classes), bundle.net.out_dim)
    net = bundle.net
    if weight is not None:  # a copy: the caller's bundle keeps its weight
        net = copy.deepcopy(bundle.net)
        net.hybrid = weight
    with bundle.embedder(views=views, net=net) as emb:
        try:
            z = embed_files([folder.paths[i] for i in train_ix], emb, bands=tr.get("bands"), reduce=False,
                            progress=progress)
        except ImageReadError as exc:
            raise _bands_refusal(exc, bundle, data_dir) from None
    reducer = None if kind == "none" else make_reducer(kind, dim).fit(z, folder.labels[train_ix])
    meta = copy.deepcopy(bundle.meta)
    for key in ("files", "model_id", "reducer", "stored_dim", "metrics", "created", "versions"):
        meta.pop(key, None)
    meta["views"] = int(views)
    meta.setdefault("training", {})["reducer_refit"] = {"from_model": bundle.model_id, "kind": kind, "dim": dim,
                                                        "views": int(views), "n_train": int(len(train_ix)),
                                                        "hybrid": float(net.hybrid)}
    with atomic_dir(target) as tmp:
        save_bundle(tmp, net, reducer, meta)
    return load_bundle(target)
