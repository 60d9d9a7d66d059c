"""The evaluation protocol of ``rsir-stac evaluate``: which images of a labelled folder a run
scores, and what it warns about them.

``split="test"`` scores the images the model never trained on (the bundle's own split, computed as
training did, recorded by a digest; every image of a class held out of training); ``"all"`` every
image, with a warning when the folder's classes carry the model's training class names or when the
model trained or adapted on some of the scored images.  :func:`rsir_stac.evaluate.evaluate_folder`
records the outcome in its ``protocol``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("rsir_stac.evaluate")  # the warnings of evaluate, whichever module says them


_WARNED_SPLITS: set[tuple[str, str, str]] = set()


def _warn_once(kind: str, data_dir, digest: str, message: str) -> None:
    key = (kind, str(data_dir), digest)
    if key not in _WARNED_SPLITS:
        _WARNED_SPLITS.add(key)
        log.warning("%s", message)


def _split_scored(folder, idx: np.ndarray, split: str, held: list[str], data_dir) -> tuple[str, list[str]]:
    """What ``split="test"`` scored, said: every image of a class the model was trained without is
    one it never trained on, so such classes are scored whole.  Returns the split to record
    (``"all"`` when every scored class was held out) and a note when only some were."""
    if split != "test" or not held:
        return split, []
    scored = sorted({folder.classes[c] for c in folder.labels[idx]})
    whole = [c for c in scored if c in held]
    if not whole:
        return split, []
    if len(whole) == len(scored):   # the held-out classes: none of their images was trained on
        note = (f"--split test on classes held out of training ({', '.join(whole[:5])}{' and more' if len(whole) > 5 else ''}) "
                "scores all their images (the model trained on none of them): recorded as split all")
        log.info("%s", note)
        return "all", [note]
    note = (f"{len(whole)} of the {len(scored)} classes scored from {data_dir} ({', '.join(whole[:5])}"
            f"{' and more' if len(whole) > 5 else ''}) were held out of training: all their images are scored, "
            "the other classes' test split only")
    log.warning("%s", note)
    return split, [note]


def _chosen_classes(full, held: list[str], classes, by_held_out: bool, model_id: str, data_dir):
    """The classes to evaluate: the bundle's ``held`` out classes for ``classes="held-out"``,
    else ``classes`` (None: all).  Raises DatasetError for a bundle without held-out classes,
    a class not in the folder, or fewer than 2 classes."""
    import shlex

    from rsir_stac.errors import DatasetError
    from rsir_stac.model.class_names import match_classes, quoted, unknown_class_hint

    if by_held_out:
        if not held:
            raise DatasetError(f"model {model_id} was trained on every class (no held-out classes recorded); "
                               "train one with --leave-out/--leave-out-n, or pass --classes")
        classes = held
    if classes and not by_held_out:  # names as typed: the folder's own (Unicode form, spaces, commas)
        classes, unknown = match_classes([classes] if isinstance(classes, str) else classes, full.classes)
        if unknown:
            raise DatasetError(f"class {unknown[0]!r} is not in {data_dir}; its classes are {quoted(full.classes)}"
                               + unknown_class_hint(full.classes, "--classes"))
    if classes:
        unknown = [c for c in classes if c not in full.classes]
        if unknown and by_held_out:
            there = [c for c in classes if c in full.classes]
            raise DatasetError(
                f"model {model_id} was trained without the classes {', '.join(classes)}, and {', '.join(unknown)} "
                f"{'is' if len(unknown) == 1 else 'are'} not in {data_dir}: --held-out scores the folder the model "
                "was trained on (or one with those class folders)"
                + (f"; or pass --classes {shlex.quote(','.join(there))} to score the held-out classes this folder "
                   "has" if len(there) >= 2 else ""))
        if len(set(classes)) < 2:
            raise DatasetError(f"evaluating on the one class {classes[0]!r} ranks its images only against each other "
                               "(mAP is 1 whatever the model); give at least 2 classes"
                               + (", i.e. train with more held-out classes" if held == list(classes) else ""))
    return classes


@dataclass(frozen=True)
class _ScoredImages:
    """The images scored: ``idx`` into ``folder`` (the scanned folder, restricted to the
    classes asked for); whether the folder's test split is the bundle's (``matches``, None when
    not recorded), how many scored images the model trained on (None when unknown) and the
    warnings given."""

    folder: Any
    idx: np.ndarray
    matches: bool | None
    trained_on: int | None
    warnings: list[str]
    adapted_on: int | None = None


def _bundle_split(full, held: list[str], tr: dict):
    """The bundle's split computed on ``full`` as training did
    (:func:`rsir_stac.model.recorded_split.training_split`; ``held`` the folder's names of the
    bundle's held-out classes): ``(folder, train_ix, test_ix, matches)``."""
    from rsir_stac.model.recorded_split import training_split

    return training_split(full, {**tr, "held_out_classes": held})


def _default_split(full, held: list[str], meta: dict, by_held_out: bool, model_id: str,
                   data_dir, classes=None) -> tuple[str, list]:
    """``split=None``: ``test`` on the dataset the bundle was trained on (its split matches), else
    ``all`` with a note (another dataset: a random fifth of it is no test split of anything), and a
    warning when the folder holds classes of the model's training by name: a copy, a subset or
    another download of its training data would be scored on images it trained on."""
    tr = meta.get("training", {})
    if by_held_out:
        return "all", []
    trained, _, _, matches = _bundle_split(full, held, tr)
    if matches:
        return "test", []
    if _changed_training_folder(trained, matches, tr):
        return "test", []   # the recorded file lists still tell its images apart: _scored_images says how
    import numpy as np

    counts = np.bincount(np.asarray(full.labels, dtype=np.int64)) if len(full.labels) else np.zeros(1, np.int64)
    msg = (f"the split of {data_dir} is not the one model {model_id} recorded (another dataset, or images were "
           "added, removed or renamed since training), so every image is scored (--split all)"
           # a fifth of a class of fewer than 10 images holds at most one: its test split could not be scored
           + ("; pass --split test to score only the fifth of it a training run would keep out"
              if int(counts.max()) >= 10 else ""))
    log.warning("%s", msg)
    return "all", [msg] + _trained_names(full, held, meta, model_id, data_dir, classes)


def _changed_training_folder(trained, matches: bool | None, tr: dict):
    """The bundle's recorded split (:class:`~rsir_stac.model.recorded_split.RecordedSplit`) when
    ``trained`` (the folder without its held-out classes) is the training folder changed since
    (its test split no longer ``matches`` the recorded digest, but it holds recorded images);
    else None."""
    from rsir_stac.model.recorded_split import RecordedSplit

    rec = RecordedSplit.of(tr) if matches is False else None
    return rec if rec is not None and rec.shares(trained.relpaths()) else None


def _trained_names(full, held: list[str], meta: dict, model_id: str, data_dir, classes=None) -> list[str]:
    """A warning (logged, and returned in a list) when classes of ``full`` have the names of the
    model's training classes: a copy, a subset or another download of its training data would be
    scored on images it trained on, and no split can tell (it is not the training folder)."""
    names = {c.casefold() for c in meta.get("class_names") or ()} - {c.casefold() for c in held}
    pool = list(classes) if classes else full.classes   # --classes: of the classes scored
    trained = sorted(c for c in pool if c.casefold() in names)   # Beach/ is beach/ of another download
    if not trained:
        return []
    shown = ", ".join(trained[:5]) + (f" and {len(trained) - 5} more" if len(trained) > 5 else "")
    warn = (f"{len(trained)} of the {len(pool)} classes {'scored from' if classes else 'of'} {data_dir} have the "
            f"names of classes model {model_id} was trained on ({shown}): if these are its training images (a "
            "copy, a subset or another download of that dataset), it trained on most of them and the scores are "
            "optimistic; evaluate the training folder itself (its test split), or classes it never saw")
    log.warning("%s", warn)
    return [warn]


def _scored_images(full, held: list[str], classes, split: str, tr: dict, model_id: str, data_dir) -> _ScoredImages:
    """Choose the images of ``full`` to score: with ``split="test"`` those the model never
    trained on (the bundle's split, computed as training did), else every image of the classes;
    warns (once per folder) when the split is not the bundle's or the model trained on some."""
    from rsir_stac.model.data import only_classes

    trained, train_ix, test_ix, matches = _bundle_split(full, held, tr)
    want = tr.get("test_digest")
    rel = trained.relpaths()
    changed = _changed_training_folder(trained, matches, tr)
    if changed is not None:  # the training folder since changed: its recorded file lists say which images
        seen = {r for r in rel if changed.trained_on(r)}
        never = set(rel) - seen
    else:
        never = {rel[i] for i in test_ix}  # images the model never trained on (with the classes it never saw)
        seen = {rel[i] for i in train_ix} if matches else None  # known only on the training dataset itself
    folder = only_classes(full, classes) if classes else (trained if split == "test" else full)
    frel = folder.relpaths()
    idx = np.arange(len(folder))
    warnings: list[str] = []
    if split == "test":
        idx = np.asarray([i for i, r in enumerate(frel) if r in never or r.split("/", 1)[0] not in trained.classes],
                         dtype=np.int64)
        if changed is not None:
            msg = (f"{data_dir} changed since model {model_id} was trained on it ({changed.changes(rel)}): "
                   f"scoring the {len(idx)} images it never trained on (the recorded test images still there and "
                   "any new ones), by the file names its bundle records")
            warnings.append(msg)
            _warn_once("changed", data_dir, want, msg)
        elif matches is False:
            msg = (f"the test split of {data_dir} differs from the one recorded in model {model_id}: this is "
                   "not the folder it was trained on (or images were added or removed since), so these are not "
                   "the images it never trained on; for another dataset, pass --split all")
            warnings.append(msg)
            _warn_once("split", data_dir, want, msg)
    trained_on = None if seen is None else sum(1 for i in idx.tolist() if frel[i] in seen)
    if trained_on:
        # --split test only when it can rank (helper trial: a small subset was sent to --split test, which
        # refused it and sent the user back to --split all)
        unseen = Counter(int(folder.labels[i]) for i in idx.tolist() if frel[i] not in seen)
        fix = ("pass --split test to score only images it never trained on"
               if any(n >= 2 for n in unseen.values()) else
               f"the {sum(unseen.values())} it never trained on are too few for --split test (no class has 2 of them); "
               "score it on a folder of images it never trained on")
        msg = (f"{trained_on} of the {len(idx)} images scored from {data_dir} are in the training split of model "
               f"{model_id} (it trained on them), so the scores are optimistic; {fix}")
        warnings.append(msg)
        _warn_once("trained", data_dir, want, msg)
    adapted_on = _adapted_on(folder, idx, tr.get("adaptation"))
    if adapted_on:
        msg = (f"{adapted_on} of the {len(idx)} images scored from {data_dir} were in the catalogue model {model_id} "
               "was adapted on (without their labels), so its gain on them is transductive, not a held-out figure; "
               "score it on images it did not adapt on to see how it does elsewhere")
        warnings.append(msg)
        _warn_once("adapted", data_dir, want, msg)
    return _ScoredImages(folder, idx, matches, trained_on, warnings, adapted_on)


def _adapted_on(folder, idx: np.ndarray, adaptation: dict | None) -> int | None:
    """How many of the scored images lie in an image folder (or are an image) that ``adaptation``
    (``model.json``'s ``training.adaptation``) adapted on; None for a bundle not adapted on images.
    Sources recorded without an absolute ``path`` (bundles of earlier versions) are taken as they
    were given, from the current folder."""
    if not adaptation:
        return None
    roots = [os.path.realpath(d.get("path") or d["source"]) for d in adaptation.get("sources") or ()
             if isinstance(d, dict) and d.get("kind") == "images" and (d.get("path") or d.get("source"))]
    if not roots:
        return None
    inside = tuple(r.rstrip(os.sep) + os.sep for r in roots)
    linked = _linked_images(roots)  # images a catalogue of links reached: their real paths lie elsewhere
    hits = 0
    for i in idx.tolist():
        p = os.path.realpath(folder.paths[i])
        hits += p in roots or p.startswith(inside) or p in linked
    return hits


def _linked_images(roots: Sequence[str]) -> set[str]:
    """Real paths of the image files under ``roots`` (folders still there) that are symbolic links."""
    from rsir_stac.model.data import IMAGE_SUFFIXES

    out: set[str] = set()
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for f in files:
                full = os.path.join(dirpath, f)
                if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES and os.path.islink(full):
                    out.add(os.path.realpath(full))
    return out


def _check_relevant(folder, idx: np.ndarray, split: str, data_dir) -> None:
    """Refuse (DatasetError) a choice of images where no class has 2: no query would have a
    relevant image."""
    from rsir_stac.errors import DatasetError

    counts = np.bincount(folder.labels[idx], minlength=len(folder.classes))
    if not (counts >= 2).any():
        fix = ("pass --split all to rank every image of the folder, or add images"
               if split == "test" else "add images")
        raise DatasetError(f"the {split} split of {data_dir} has at most one image per class ({len(idx)} images), "
                           f"so no query has a relevant image and mAP/ANMRR would mean nothing; {fix}")


def _bands_note(bundle, bands: Sequence[int] | None) -> list[str]:
    """A warning (logged, and returned in a list) when ``bands`` is not given but the bundle was
    trained on chosen bands: the images are read by their own colour interpretation or band
    names, as ingest and search read them."""
    tr = bundle.meta.get("training", {})
    if bands is None and tr.get("bands"):  # as ingest and search read them: the images' own bands, said
        trained_bands = ",".join(str(int(b)) for b in tr["bands"])
        warn = (f"model {bundle.model_id} was trained on bands {trained_bands} of its images; these are read by "
                f"their own colour interpretation or band names (as ingest and search read them): pass --bands "
                f"{trained_bands} to read them as it was trained, if they are that sensor's")
        log.warning("%s", warn)
        return [warn]
    return []


def _choose_images(full, held: list[str], classes, split: str | None, by_held_out: bool, bundle, data_dir,
                   notes: list[str]) -> tuple[_ScoredImages, str, list[str]]:
    """``(chosen, split, notes)``: the images of ``full`` an evaluation scores
    (:func:`_scored_images`), the split they are (``None`` chosen by
    :func:`_default_split`, whose notes then replace ``notes``) and ``notes``
    with what choosing them warned about.  Raises what the protocol's checks raise (a split
    without a query that has a match)."""
    tr = bundle.meta.get("training", {})
    asked = split
    if split is None:
        split, notes = _default_split(full, held, bundle.meta, by_held_out, bundle.model_id, data_dir, classes)
    chosen = _scored_images(full, held, classes, split, tr, bundle.model_id, data_dir)
    folder, idx = chosen.folder, chosen.idx
    if asked == "all" and not by_held_out and chosen.trained_on is None:
        # --split all on another folder: the class names are all there is to warn by (on the
        # training folder itself, or one its bundle records by name, trained_on counts the very images)
        notes += _trained_names(full, held, bundle.meta, bundle.model_id, data_dir, classes)
    split, split_notes = _split_scored(folder, idx, split, held, data_dir)
    notes += split_notes
    _check_relevant(folder, idx, split, data_dir)
    return chosen, split, notes
