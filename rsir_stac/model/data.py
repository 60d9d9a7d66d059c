"""Labelled image folders (one sub-folder per class) and the stratified split."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsir_stac.errors import BandsError, DatasetError, ImageReadError, InputError

log = logging.getLogger(__name__)

#: Image files a class folder's images are read from (each decodes through :func:`load_rgb`: Pillow,
#: or rasterio/GDAL for multi-band and 16-bit rasters; JPEG 2000 through OpenJPEG in both).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".jp2", ".j2k", ".jfif", ".jpe")
#: The formats of :data:`IMAGE_SUFFIXES`, as messages name them.
IMAGE_FORMATS = "TIFF, PNG, JPEG, WebP, BMP, GIF or JPEG 2000"

#: Files beside images that are no image of a class (sidecars, notes, metadata), so not said to be
#: "not read": GDAL's .aux.xml/.ovr/.msk, world files, text and JSON/XML/CSV metadata, checksums.
SIDECAR_SUFFIXES = frozenset({".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".geojson", ".xml", ".aux", ".ovr",
                              ".msk", ".prj", ".wld", ".tfw", ".tifw", ".jgw", ".jpgw", ".pgw", ".pngw", ".gfw",
                              ".j2w", ".qml", ".sld", ".yaml", ".yml", ".ini", ".db", ".log", ".html", ".htm",
                              ".md5", ".sha1", ".sha256", ".lock", ".py", ".sh", ".bak", ".tmp", ".pdf"})
#: File names systems leave in folders (Windows' thumbnail cache and folder settings).
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})


@dataclass(frozen=True)
class ImageFolder:
    """Files of a labelled image folder, sorted by class then file name."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray  # int, index into classes

    def __len__(self) -> int:
        return len(self.paths)

    def relpaths(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.paths]


def scan_image_folder(root: str | Path, *, min_per_class: int = 2) -> ImageFolder:
    """List ``root/<class>/<image>`` files; one-line DatasetError when unusable.

    Warns (``log``) about what is not read: files of formats it does not read, images in deeper
    folders, folders that are no class, links to nothing, images lying in ``root`` itself."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"data folder {root} {what}; pass a folder with one sub-folder of images per class")
    classes, paths, labels, empty, deeper = [], [], [], [], {}
    hidden = 0
    dangling: list[str] = []
    unread: list[str] = []   # class-folder files of formats not read, relative to root
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name)):
        found = _class_files(sub)
        dangling += found.dangling
        unread += found.unread
        hidden += found.hidden
        files, nested = found.files, found.nested
        if nested and files:
            log.warning("class folder %s: images in its sub-folder(s) %s are not read (a class's images lie "
                        "directly in its folder); move them up into %s", sub,
                        ", ".join(nested[:5]) + (" ..." if len(nested) > 5 else ""), sub)
        if not files:
            if nested:
                deeper[sub.name] = nested
            else:
                empty.append(sub.name)
            continue
        if len(files) < min_per_class:
            raise DatasetError(
                f"class folder {sub} has {len(files)} image(s); each class needs at least {min_per_class} "
                "(add images or remove the folder)"
            )
        classes.append(sub.name)
        paths.extend(files)
        labels.extend([len(classes) - 1] * len(files))
    if classes:
        from rsir_stac.model.class_names import warn_lookalike_classes

        warn_lookalike_classes(root, classes)
        _warn_not_classes(root, empty, deeper)
        _warn_unread(root, unread)
        loose = [f.name for f in root.iterdir()
                 if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
        if loose:
            log.warning("data folder %s: %d image(s) lie directly in it (%s) and are not read: a class's images go in "
                        "its sub-folder", root, len(loose), _names(sorted(loose), 3))
    _warn_links(root, dangling)
    if hidden:  # macOS AppleDouble "._name.png" files of a zip, and other dot-files: not images of the class
        log.info("data folder %s: %d hidden file(s) (names starting with '.', e.g. macOS '._' files) are not read",
                 root, hidden)
    if len(classes) < 2:
        raise DatasetError(
            f"data folder {root} has {len(classes)} class folder(s) with images; it needs at least 2 "
            f"sub-folders of {IMAGE_FORMATS} images, one per class"
            + (f"; {_unread_text(unread)}: convert them to PNG or TIFF" if unread else "")
            + _layout_hint(root, classes, deeper)
        )
    return ImageFolder(root, tuple(classes), tuple(paths), np.asarray(labels, dtype=np.int64))


@dataclass(frozen=True)
class _ClassFiles:
    """What a class folder holds: its images (sorted), the hidden image files left out, links to
    nothing and files of formats not read (``class/name``), and sub-folders holding images."""

    files: list[Path]
    hidden: int
    dangling: list[str]
    unread: list[str]
    nested: list[str]


def _class_files(sub: Path) -> _ClassFiles:
    """List one class folder (:class:`_ClassFiles`)."""
    entries = list(sub.iterdir())
    dangling = [f"{sub.name}/{f.name}" for f in entries
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_symlink() and not f.exists()]
    listed = [f for f in entries if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    files = sorted(f for f in listed if not f.name.startswith("."))
    unread = sorted(f"{sub.name}/{f.name}" for f in entries if _unread_format(f))
    nested = sorted(d.name for d in entries if d.is_dir() and not _hidden(d.name)
                    and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.rglob("*")))
    return _ClassFiles(files, len(listed) - len(files), dangling, unread, nested)


def _unread_format(f: Path) -> bool:
    """Whether ``f`` is a file of a format not read that may be an image: not one of
    :data:`IMAGE_SUFFIXES`, not hidden (``.DS_Store``, ``._x``), not a system file
    (``Thumbs.db``), not a sidecar or note (:data:`SIDECAR_SUFFIXES`, ``x.tif.aux.xml``), and
    with a suffix (``README``, ``LICENSE`` have none)."""
    suffix = f.suffix.lower()
    if not suffix or suffix in IMAGE_SUFFIXES or suffix in SIDECAR_SUFFIXES or f.name.startswith("."):
        return False
    return f.name.lower() not in SYSTEM_FILES and f.is_file()


def _unread_text(unread: Sequence[str]) -> str:
    """``N file(s) in its class folders are not read (.xyz: a/b.xyz, ...; .psd: ...)``: each suffix
    with up to 3 of its files named."""
    by_suffix: dict[str, list[str]] = {}
    for name in unread:
        by_suffix.setdefault(Path(name).suffix.lower(), []).append(name)
    groups = "; ".join(f"{suffix}: {_names(names, 3)}" for suffix, names in sorted(by_suffix.items()))
    return f"{len(unread)} file(s) in its class folders are not read ({groups})"


def _warn_unread(root: Path, unread: Sequence[str]) -> None:
    """Warn, in one line, about the class-folder files of formats not read (the class is smaller
    than the folder shows)."""
    if unread:
        log.warning("data folder %s: %s, as only %s images are read; convert them to PNG or TIFF", root,
                    _unread_text(unread), IMAGE_FORMATS)


def _warn_links(root: Path, dangling: Sequence[str]) -> None:
    """Warn about class-folder links and image links that point at nothing."""
    gone = sorted(p.name for p in root.iterdir() if p.is_symlink() and not p.exists() and not _hidden(p.name))
    if gone:  # a class folder linked from elsewhere that moved: the whole class is missing
        log.warning("data folder %s: %d class folder link(s) point at no folder (%s) and are not read, so those "
                    "classes are missing; fix or remove the links", root, len(gone), _names(gone, 3))
    if dangling:  # a link to an image that moved: the class is smaller than the dataset says
        log.warning("data folder %s: %d image link(s) point at no file (%s) and are not read; fix or remove them",
                    root, len(dangling), _names(sorted(dangling), 3))


#: Folder names of a dataset shipped already split (torchgeo, Kaggle and most archives).
SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")


def _layout_hint(root: Path, classes: Sequence[str], deeper: dict[str, list[str]]) -> str:
    """What the folder holds instead of class folders, and which folder to pass: ``; ...`` or ``""``."""
    splits = [d for d in deeper if d.lower() in SPLIT_NAMES]
    if splits:
        test = next((d for d in splits if d.lower().startswith("test")), splits[-1])
        train = next((d for d in splits if d.lower().startswith("train")), splits[0])
        return (f"; it is split into {', '.join(sorted(splits))} folders of classes: pass one of them, e.g. "
                f"`rsir-stac train {root / train}` and `rsir-stac evaluate {root / test} --split all`")
    if deeper and not classes:
        first, inner = next(iter(deeper.items()))
        return (f"; its classes lie one level down ({_names([f'{d}/{n}' for d, ns in deeper.items() for n in ns], 3)}):"
                f" pass one group's folder (e.g. {root / first}), or move all class folders into one folder")
    flat = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not _hidden(f.name)]
    if flat:
        return (f"; its {len(flat)} image(s) lie directly in it: put each class's images in a sub-folder named "
                "after the class")
    return ""


#: Folders that systems and archives add, never classes: macOS archives, Synology thumbnails and
#: recycle bins, Windows' recycle bin and volume information.
SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN",
                            "System Volume Information", "lost+found"})


def _hidden(name: str) -> bool:
    """A folder that is no class: hidden (``.git``) or one of :data:`SYSTEM_FOLDERS`."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


def _names(items: Sequence[str], most: int = 5) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def _warn_not_classes(root: Path, empty: Sequence[str], deeper: dict[str, list[str]]) -> None:
    """Say which sub-folders of ``root`` are not classes: those without any image, and those
    whose images lie only in deeper folders (each named, with where to move it)."""
    splits = [d for d in deeper if d.lower() in SPLIT_NAMES]
    if splits:  # a dataset shipped split: moving its classes up would mix test images into training
        log.warning("data folder %s: %s %s a split of classes, not classes; they are not read: pass one of them "
                    "(e.g. `rsir-stac evaluate %s --split all`)", root, ", ".join(sorted(splits)),
                    "is" if len(splits) == 1 else "are", root / splits[0])
        deeper = {d: n for d, n in deeper.items() if d not in splits}
    if deeper:
        inner = [f"{d}/{n}" for d, names in deeper.items() for n in names]
        free = [(d, n) for d, names in deeper.items() for n in names if not (root / n).exists()]
        first_dir = next(iter(deeper))
        move = (f"to make each deeper folder a class, move it beside the other classes (e.g. mv "
                f"{root / free[0][0] / free[0][1]} {root / free[0][1]}); " if free else
                "their names are those of classes here (a train/test split? pass one of its folders instead); ")
        log.warning("data folder %s: %d sub-folder(s) are not classes (%s): their images lie only in deeper folders "
                    "(%s), which are not read; %sto make %s one class, move the images directly into %s", root,
                    len(deeper), _names(list(deeper)), _names(inner), move, first_dir, root / first_dir)
    runs = [d for d in empty if (root / d / "checkpoint.pt").is_file() or (root / d / "bundle").is_dir()]
    empty = [d for d in empty if d not in runs]
    if runs:  # a train --out inside the data folder: advice to remove it would delete a model
        log.warning("data folder %s: %d sub-folder(s) are training runs, not classes (%s); they are not read, "
                    "and --out folders are best kept outside the data folder", root, len(runs), _names(runs))
    if empty:
        log.warning("data folder %s: %d sub-folder(s) hold no %s images and are not classes (%s); put images in "
                    "them, or remove them", root, len(empty), IMAGE_FORMATS, _names(list(empty)))


def choose_held_out(classes: Sequence[str], names: Sequence[str] = (), n: int = 0, seed: int = 0) -> tuple[str, ...]:
    """Classes kept out of training (the leave-classes-out protocol).

    ``names`` are given explicitly (class names or comma-separated lists of them, matched to the
    folder's names as :func:`rsir_stac.model.class_names.match_classes` does: Unicode forms and
    surrounding spaces aside; the folder's names are returned), or ``n`` of ``classes`` are drawn with
    ``seed`` (numpy's default generator, so the choice is reproducible).
    Raises DatasetError for an unknown class name, or when fewer than 2
    classes would be left to train on; InputError for both ``names`` and ``n``
    or an ``n`` outside 1..classes − 2.
    """
    from rsir_stac.model.class_names import match_classes, quoted, unknown_class_hint

    names = tuple(names or ())
    if names and n:
        raise InputError(f"--leave-out {','.join(names)} and --leave-out-n {n} both choose the held-out classes; "
                         "pass one of them")
    names, unknown = match_classes(names, classes, "--leave-out")
    if unknown:
        raise DatasetError(f"--leave-out names unknown class {unknown[0]!r}; the data folder's classes are "
                           f"{quoted(classes)}" + unknown_class_hint(classes, "--leave-out"))
    if not names and n:
        if not 0 < int(n) <= len(classes) - 2:
            raise InputError(f"--leave-out-n {n}: the data folder has {len(classes)} classes and training needs 2; "
                             f"pass --leave-out-n from 1 to {max(0, len(classes) - 2)}, or 0 to hold none out")
        names = tuple(sorted(np.random.default_rng(seed).choice(list(classes), size=int(n), replace=False).tolist()))
    if len(classes) - len(set(names)) < 2:
        raise DatasetError(f"leaving out {len(set(names))} of {len(classes)} classes leaves fewer than 2 to train on; "
                           "leave out fewer classes")
    return tuple(sorted(set(names)))


def without_classes(folder: ImageFolder, names: Sequence[str]) -> ImageFolder:
    """The folder without the named classes (labels renumbered)."""
    if not names:
        return folder
    keep_classes = tuple(c for c in folder.classes if c not in set(names))
    remap = {folder.classes.index(c): i for i, c in enumerate(keep_classes)}
    keep = [i for i, lab in enumerate(folder.labels.tolist()) if lab in remap]
    return ImageFolder(folder.root, keep_classes, tuple(folder.paths[i] for i in keep),
                       np.asarray([remap[int(folder.labels[i])] for i in keep], dtype=np.int64))


def only_classes(folder: ImageFolder, names: Sequence[str]) -> ImageFolder:
    """The folder restricted to the named classes (labels renumbered)."""
    return without_classes(folder, [c for c in folder.classes if c not in set(names)])


def stratified_split(labels: Sequence[int], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split; returns sorted (train, test) index arrays.

    Each class contributes ``round(n * test_fraction)`` images (at least one,
    and at least one left for training) to the test side.
    """
    labels = np.asarray(labels)
    train, test = [], []
    for c in np.unique(labels):
        ix = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, int(c)])
        ix = rng.permutation(ix)
        n_test = min(max(1, round(len(ix) * test_fraction)), len(ix) - 1) if test_fraction > 0 else 0
        test.extend(ix[:n_test])
        train.extend(ix[n_test:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


def split_digest(relpaths: Sequence[str]) -> str:
    """A short fingerprint of a list of files, to check a split is the recorded one."""
    return hashlib.sha256("\n".join(relpaths).encode()).hexdigest()[:16]


def same_split(relpaths: Sequence[str], digest: str) -> bool:
    """Whether ``relpaths`` (a test split) are the files a :func:`split_digest` was taken of, in
    this format or another: the same dataset saved as TIFF instead of WebP (UC Merced ships as
    ``.tif``) names the same images with another extension, in the same order."""
    if split_digest(relpaths) == digest:
        return True
    stems = [str(Path(r).with_suffix("")) for r in relpaths]
    return any(split_digest([f"{st}{ext}" for st in stems]) == digest
               for ext in {*IMAGE_SUFFIXES, *(e.upper() for e in IMAGE_SUFFIXES)})


class ImageDecodeError(ImageReadError):
    """A training image that cannot be decoded: ``path`` and ``cause`` (the decoder's words),
    so that :func:`load_images` can list several in one line."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path, self.cause = Path(path), cause
        super().__init__(f"image {path} cannot be decoded ({cause}); remove or replace the file")


def _decode_cause(path: str | Path, err: BaseException) -> str:
    """What went wrong decoding ``path``, without its name and the advice of ``err``'s message
    (``read_image``'s "NAME cannot be decoded as an image (CAUSE); give ...")."""
    msg = " ".join(str(err).split())
    m = re.search(r" cannot be decoded as an image \((.*)\); give ", msg)
    if m:
        msg = m.group(1)
    else:
        for name in (str(path), f"image {path}"):
            if msg.startswith(name + " "):
                msg = msg[len(name) + 1:]
        msg = msg.rsplit("; ", 1)[0] if "; " in msg else msg
    return msg.replace(f" '{path}'", "").replace(f" {path}", "")  # the name is said once, before the cause


class ImageBandsError(ImageDecodeError):
    """A training image whose red, green and blue bands cannot be told, or lacks a band of
    ``--bands`` (:class:`~rsir_stac.errors.BandsError`): the fix is ``--bands``, not another file."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path, self.cause = Path(path), cause
        self.missing = "does not exist" in cause  # --bands asks a band the image lacks
        self.fix = ("evaluate or train the images of one band layout at a time (a folder per sensor), with --bands "
                    "for that layout" if self.missing else "pass --bands R,G,B (1-based band numbers)")
        ImageReadError.__init__(self, f"image {path} {cause}; {self.fix}")


#: Suffixes read through rasterio/GDAL, never Pillow: JPEG 2000 of any bit depth and band count.
_GDAL_FIRST = (".jp2", ".j2k")


def load_rgb(path: str | Path, bands: Sequence[int] | None = None) -> np.ndarray:
    """Decode an image file to an H×W×3 uint8 array (PIL, GeoTIFF via rasterio).

    ``bands``: 1-based (R, G, B) band numbers (or one, for grey) of a multi-band image,
    read through rasterio with ingest's band and stretch rules
    (:func:`rsir_stac.tiling.read_image`); by default an image's colour interpretation or
    band names choose them (:func:`rsir_stac.tiling.bands.select_bands`).

    Raises :class:`ImageDecodeError` (an ImageReadError) naming the file and the cause,
    advising to remove or replace it; :class:`ImageBandsError` for a multi-band image whose
    colour bands cannot be told, advising ``--bands``; ImageReadError when it does not exist.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    # JPEG 2000 through GDAL as ingest and search read it (Pillow broke off 16-bit RGB files)
    if bands is None and Path(path).suffix.lower() not in _GDAL_FIRST:
        try:
            with warnings.catch_warnings():  # a large image is read below, its side capped as a query's
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(path)
            with im:
                _check_shape(path, *im.size)  # from the header, before decoding
                if im.mode not in ("RGB", "L", "RGBA", "P", "LA"):
                    raise UnidentifiedImageError(im.mode)
                try:
                    return np.asarray(im.convert("RGB"))
                except (OSError, ValueError, SyntaxError) as exc:  # a known format that breaks off: cut short
                    if im.format in ("TIFF", "MPO"):
                        raise UnidentifiedImageError(im.format) from exc  # multi-band TIFFs: rasterio below
                    raise ImageDecodeError(path, " ".join(str(exc).split())) from None
        except FileNotFoundError:
            raise ImageReadError(f"image {path} does not exist; check the path") from None
        except ImageReadError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
                Image.DecompressionBombError):
            pass
    elif not Path(path).exists():
        raise ImageReadError(f"image {path} does not exist; check the path")
    try:  # multi-band / 16-bit rasters and large images: same band, stretch and size rules as ingest
        from rsir_stac.tiling import read_image

        if Path(path).stat().st_size == 0:
            raise ImageDecodeError(path, "an empty file, 0 bytes")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = read_image(path, bands=bands)
        _check_shape(path, image.shape[1], image.shape[0])
        return image
    except ImageDecodeError:
        raise
    except BandsError as exc:
        raise ImageBandsError(path, _band_cause(path, exc)) from None
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(path, _decode_cause(path, exc)) from None


#: The most one side of a labelled image may be times the other: a strip of 1 × 2,000,000 px is
#: no scene (resized to the network's square it took 2 GB).
MAX_ASPECT = 32


def _check_shape(path: str | Path, width: int, height: int) -> None:
    """ImageDecodeError for an image whose sides differ more than :data:`MAX_ASPECT` times."""
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageDecodeError(path, f"it is {width} × {height} px, one side over {MAX_ASPECT} times the other: "
                                     "not a scene image")


def _band_cause(path: str | Path, err: BaseException) -> str:
    """"has 13 bands and no red/green/blue ..." out of a BandsError, without name and advice."""
    msg = " ".join(str(err).split())
    msg = msg.split("; pass --bands", 1)[0]
    m = re.match(r"^.*? (has \d+ bands?\b.*)$", msg)  # the raster's name (or GDAL's /vsimem/ one) dropped
    return m.group(1) if m else msg


def load_images(paths: Sequence[Path], progress=None, bands: Sequence[int] | None = None) -> list[np.ndarray]:
    """Decode many images (``bands`` as for :func:`load_rgb`); ``progress`` is an optional
    callable(n_done).  Raises ImageReadError naming every file that cannot be decoded
    (:func:`unreadable_images_error`)."""
    out, bad = [], []
    for i, p in enumerate(paths):
        try:
            out.append(load_rgb(p, bands))
        except ImageReadError as exc:
            bad.append((p, exc))
        if progress:
            progress(i + 1)
    if bad:
        raise unreadable_images_error(bad)
    return out


def unreadable_images_error(bad: Sequence[tuple[Path, ImageReadError]]) -> ImageReadError:
    """One error for the images that could not be decoded (``(path, error)`` pairs from
    :func:`load_rgb`): the first three named, and how many; one cause said once; advising
    ``--bands`` when multi-band images are why, else to remove or replace them."""
    if len(bad) == 1:
        return bad[0][1]
    listed = listed_with_causes(bad)
    band = [e for _, e in bad if isinstance(e, ImageBandsError)]
    if len(band) == len(bad):
        missing = sum(e.missing for e in band)
        what = ("cannot be read with these --bands" if missing == len(band) else
                "do not say which bands are red, green and blue" if not missing else
                "cannot be read with these --bands or do not say which bands are red, green and blue")
        fixes = "; or ".join(sorted({e.fix for e in band}))
        return _with_bad(ImageReadError(f"{len(bad)} images {what}: {listed}; {fixes}"), bad)
    fix = ("pass --bands R,G,B for the multi-band ones, and remove or replace the others" if band
           else "remove or replace them")
    return _with_bad(ImageReadError(f"{len(bad)} images cannot be decoded: {listed}; {fix}"), bad)


def listed_with_causes(bad: Sequence[tuple[Path, ImageReadError]]) -> str:
    """``a, b, c and 2 more (cause)`` (one cause, said once) or ``a (cause), b (cause) ...``: the
    first three images of ``(path, error)`` pairs named with why each failed."""
    causes = [e.cause if isinstance(e, ImageDecodeError) else _decode_cause(p, e) for p, e in bad]
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    if len(set(causes)) == 1:  # one cause, said once
        return f"{', '.join(str(p) for p, _ in bad[:3])}{more} ({causes[0]})"
    return ", ".join(f"{p} ({c})" for (p, _), c in zip(bad[:3], causes[:3])) + more


def _with_bad(err: ImageReadError, bad: Sequence[tuple[Path, ImageReadError]]) -> ImageReadError:
    """``err`` carrying the ``(path, error)`` pairs it tells of (``err.bad``), so that a caller can
    word its own advice (``reduce`` takes no ``--bands``)."""
    err.bad = list(bad)  # type: ignore[attr-defined]
    return err
