"""The training split a bundle records by name: which images of its data folder a run trained on
(fit and validation) and which it kept out (test), so that ``evaluate`` can still score only
images the model never trained on after the folder has gained or lost images.

Stored in ``model.json`` as ``training.split_files`` (written by :func:`split_files`): two sorted
lists of paths relative to the data folder, as :func:`image_key` gives them (the same dataset
saved as TIFF instead of WebP, or with capitalised class folders, names the same images).  An image
moved to another class folder (a class renamed, ``harbor`` to ``Harbour``) is still the recorded one
when its file name is one no other recorded image has (:meth:`RecordedSplit.recorded_key`).
Bundles of earlier versions record only the test split's digest
(:func:`rsir_stac.model.data.split_digest`); :meth:`RecordedSplit.of` gives None for them."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any


def image_key(relpath: str) -> str:
    """A relative image path without its suffix, its class folder in lower case and the whole in
    Unicode NFC (``Beach/beach07.webp`` → ``beach/beach07``): the same image in another download
    of the dataset (other capitals, another format, a folder unpacked on macOS)."""
    path = PurePosixPath(unicodedata.normalize("NFC", relpath)).with_suffix("")
    return "/".join([path.parts[0].casefold(), *path.parts[1:]]) if path.parts else ""


def training_split(folder, training: dict[str, Any]):
    """A bundle's training split computed on an image ``folder`` as training did: over the folder
    without the bundle's held-out classes (matched as :func:`~rsir_stac.model.class_names.find_class`
    does), :func:`~rsir_stac.model.data.stratified_split` by the recorded fraction and seed.
    Returns ``(trained, train_ix, test_ix, matches)``: the folder without the held-out classes, the
    index arrays into it, and whether its test images are the recorded ones in any image format
    (:func:`~rsir_stac.model.data.same_split`; None when ``training`` records no digest: another
    dataset cannot be told)."""
    from rsir_stac.model.class_names import find_class
    from rsir_stac.model.data import same_split, stratified_split, without_classes

    held = [h for h in (find_class(c, folder.classes) for c in training.get("held_out_classes") or ()) if h]
    trained = without_classes(folder, held)
    want = training.get("test_digest")
    train_ix, test_ix = stratified_split(trained.labels, training.get("test_fraction", 0.2),
                                         training.get("split_seed", 0))
    rel = trained.relpaths()
    matches = None if not want else same_split([rel[i] for i in test_ix], want)
    return trained, train_ix, test_ix, matches


def split_files(relpaths: Sequence[str], trained_ix: Iterable[int], test_ix: Iterable[int]) -> dict[str, list[str]]:
    """The record of a training split for ``model.json``: ``{"trained": [...], "test": [...]}``, the
    sorted keys (:func:`image_key`) of the images at ``trained_ix`` (fit and validation) and
    ``test_ix`` of ``relpaths`` (paths relative to the data folder)."""
    return {"trained": sorted(image_key(relpaths[i]) for i in trained_ix),
            "test": sorted(image_key(relpaths[i]) for i in test_ix)}


@dataclass(frozen=True)
class RecordedSplit:
    """The images a bundle's training run used (``trained``) and kept out (``test``), by
    :func:`image_key`."""

    trained: frozenset[str]
    test: frozenset[str]

    @classmethod
    def of(cls, training: dict[str, Any]) -> RecordedSplit | None:
        """The split recorded in a bundle's ``training`` metadata; None when it records none."""
        rec = training.get("split_files")
        if not isinstance(rec, dict) or not isinstance(rec.get("trained"), list):
            return None
        return cls(frozenset(map(str, rec["trained"])), frozenset(map(str, rec.get("test") or ())))

    @cached_property
    def _by_name(self) -> dict[str, str]:
        """Recorded keys by their file name alone (``harbor/harbor07`` by ``harbor07``), for the names
        only one recorded image has (datasets that number each class's files ``0001`` have none)."""
        names = Counter(_name(k) for k in self.trained | self.test)
        return {_name(k): k for k in self.trained | self.test if names[_name(k)] == 1}

    def recorded_key(self, relpath: str) -> str | None:
        """The recorded key of the image at ``relpath`` (relative to the data folder): its own
        :func:`image_key`, or, for an image moved to another class folder (``harbor`` renamed
        ``Harbour``), the one recorded image with its file name; None for an image never recorded."""
        key = image_key(relpath)
        if key in self.trained or key in self.test:
            return key
        return self._by_name.get(_name(key))

    def shares(self, relpaths: Iterable[str]) -> bool:
        """Whether any of ``relpaths`` is an image the run trained on or kept out: the folder is
        the training folder (a copy of it, or it since changed), not another dataset."""
        return any(self.recorded_key(r) is not None for r in relpaths)

    def trained_on(self, relpath: str) -> bool:
        """Whether the run trained on the image at ``relpath`` (relative to the data folder), under
        its recorded path or moved to another class folder (:meth:`recorded_key`)."""
        return self.recorded_key(relpath) in self.trained

    def changes(self, relpaths: Sequence[str]) -> str:
        """What changed in a folder since training, said briefly: ``"gained 1 image (beach/x.jpg);
        lost 2 (...); moved 10 to another class folder (Harbour/harbor0.jpg, ...)"``, or, when it
        holds exactly the recorded images (its split differs all the same), that its files were
        renamed or re-saved."""
        now = {r: self.recorded_key(r) for r in relpaths}
        gained = sorted(r for r, k in now.items() if k is None)
        moved = sorted(r for r, k in now.items() if k is not None and k != image_key(r))
        lost = sorted((self.trained | self.test) - set(now.values()))
        parts = [f"gained {_count(gained)} ({_first(gained)})" if gained else "",
                 f"lost {_count(lost)} ({_first(lost)})" if lost else "",
                 f"moved {_count(moved)} to another class folder ({_first(moved)})" if moved else ""]
        return "; ".join(p for p in parts if p) or "its files were renamed or re-saved"


def _name(key: str) -> str:
    """The file name part of an :func:`image_key` (``harbor/harbor07`` → ``harbor07``)."""
    return key.rsplit("/", 1)[-1]


def _count(items: Sequence[str]) -> str:
    return f"{len(items)} image{'' if len(items) == 1 else 's'}"


def _first(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def record_split_files(bundle: str | Path, data_dir: str | Path) -> int:
    """Add ``training.split_files`` to the ``model.json`` of a bundle folder written before bundles
    recorded them, from ``data_dir``, the folder it was trained on, still as it was (its test split
    must match the recorded digest).  The model id and the embedding do not change (neither depends
    on the training record).  Returns the number of images recorded; a bundle that already records
    them is left as it is.

    Raises DatasetError when ``data_dir``'s split is not the recorded one (it changed since, or is
    another dataset: recording it would call the wrong images unseen), BundleError when ``bundle``
    holds no ``model.json``."""
    import json

    from rsir_stac.atomic import atomic_output
    from rsir_stac.errors import BundleError, DatasetError
    from rsir_stac.model.data import scan_image_folder

    path = Path(bundle) / "model.json"
    if not path.is_file():
        raise BundleError(f"{bundle} holds no model.json; pass a model bundle folder")
    meta = json.loads(path.read_text())
    tr = meta.get("training") or {}
    if RecordedSplit.of(tr) is not None:
        return len(tr["split_files"]["trained"]) + len(tr["split_files"]["test"])
    folder, train_ix, test_ix, matches = training_split(scan_image_folder(data_dir, min_per_class=1), tr)
    rel = folder.relpaths()
    if not matches:
        raise DatasetError(f"the split of {data_dir} is not the one model {meta.get('model_id')} recorded (it "
                           "changed since training, or is another dataset); pass the folder it was trained on, "
                           "as it was then")
    tr["split_files"] = split_files(rel, train_ix.tolist(), test_ix.tolist())
    meta["training"] = tr
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return len(rel)
