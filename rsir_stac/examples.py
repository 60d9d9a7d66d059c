"""Query examples: what a search is given (:class:`Example`) and what it searches with
(:class:`ResolvedExample`), each value checked when the example is made, so a wrong
type is one :class:`~rsir_stac.errors.InputError` naming the fix rather than an error
from deep inside the network or the store.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsir_stac.errors import InputError

#: The kinds of :class:`Example`.
EXAMPLE_KINDS = ("image", "pixels", "point", "location", "vector")


def check_pixels(value: Any, what: str = "pixels") -> np.ndarray:
    """``value`` as the ``H x W x 3`` RGB ``uint8`` array the network embeds (H, W >= 1 pixels).

    Raises InputError naming ``what`` for another dtype (a float image in 0..1, 16-bit
    counts), another shape (grey ``H x W``, RGBA ``H x W x 4``) or no pixels, with the
    conversion that fixes it; :func:`rsir_stac.tiling.read_image` reads a file, of any of
    these, as ingest reads its tiles."""
    if not isinstance(value, np.ndarray):
        raise InputError(f"{what} is a {type(value).__name__}, not a numpy array; give an H×W×3 uint8 RGB array, "
                         "or a file through image= (rsir_stac.tiling.read_image reads one as ingest does)")
    if value.dtype != np.uint8:
        fix = ("scale it first, e.g. (a * 255).round().astype(np.uint8) for values in 0..1"
               if value.dtype.kind == "f" else
               "stretch it to 0..255 first, or give the file through image= (read as ingest reads tiles)")
        raise InputError(f"{what} is a {value.dtype} array; the network takes uint8 RGB (0..255): {fix}")
    if value.ndim != 3 or value.shape[2] != 3:
        raise InputError(f"{what} has shape {value.shape}, not H×W×3 (RGB); give a grey H×W array as "
                         "np.repeat(a[..., None], 3, axis=2) and an RGBA one as a[..., :3]")
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise InputError(f"{what} has shape {value.shape}: it holds no pixels; give an image of at least 1×1 pixels")
    return value


def check_location(value: Any, what: str = "location") -> tuple[float, float]:
    """``value`` as ``(lon, lat)`` in degrees: exactly two numbers (range checks are the
    store's, :meth:`~rsir_stac.store.base.Store.point_at`).  Raises InputError otherwise."""
    bad = InputError(f"{what} {value!r} is not a (lon, lat) pair; give two numbers in degrees, e.g. (-95.36, 29.75)")
    if isinstance(value, (str, bytes)):
        raise bad
    try:
        if len(value) != 2:
            raise bad
        return float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise bad from None


@dataclass(frozen=True)
class Example:
    """One query example: ``kind`` is ``image`` (a file path), ``pixels`` (an H×W×3 uint8
    array), ``point`` (a stored point id), ``location`` ((lon, lat) in degrees: the stored
    tile covering it) or ``vector`` (an image already embedded with this index's model,
    :meth:`rsir_stac.search.Index.embed_image`; it counts as an image example).  ``bands``: an
    ``image`` file's 1-based R,G,B bands (a multi-band GeoTIFF chip; default: as ingest chooses).
    ``origin``: where the user gave it, in their words (``--not-point-id``, ``label file labels.geojson
    feature 3``), for a message that refuses it; it does not change the example.  ``size``: for a
    ``vector``, the (height, width) in pixels of the image it was embedded from, when known (an
    upload), for the note on a query image far from a tile (:func:`rsir_stac.search_notes.query_size_note`).

    Raises InputError for an unknown kind or a value of the wrong type or shape
    (:func:`check_pixels`, :func:`check_location`)."""

    kind: str
    value: Any
    bands: tuple[int, ...] | None = None
    origin: str | None = field(default=None, compare=False)
    size: tuple[int, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in EXAMPLE_KINDS:
            raise InputError(f"example kind {self.kind!r} is unknown; use image, pixels, point, location or vector")
        if self.kind == "pixels":
            check_pixels(self.value, "pixels example")
        elif self.kind == "location":
            object.__setattr__(self, "value", check_location(self.value, "location example"))
        elif self.kind == "point" and not isinstance(self.value, (str, uuid.UUID)):
            raise InputError(f"point example {self.value!r} is not a point id; give the stored tile's id as text")
        elif self.kind == "image" and not isinstance(self.value, (str, os.PathLike)):
            raise InputError(f"image example {self.value!r} is not a path; give the image file's path (or the "
                             "array as Example('pixels', a))")


@dataclass(frozen=True)
class ResolvedExample:
    """An example with its vector; ``id``/``payload`` when it is a stored tile; ``source``: an image
    file's path as it was given (None for pixels, vectors and stored tiles)."""

    kind: str
    positive: bool
    vector: np.ndarray
    id: str | None = None
    payload: dict | None = None
    pixels: np.ndarray | None = None
    source: str | None = None
    size: tuple[int, int] | None = None  # (height, width) px of an embedded upload whose pixels are gone

    @property
    def name(self) -> str | None:
        """How the example is named in a search's answer: a stored tile's id, else an image file's path."""
        return self.id or self.source


def check_examples(examples: Any, what: str) -> list[Example]:
    """``examples`` (a ``positives``/``negatives`` argument) as a list of :class:`Example`;
    InputError naming ``what`` for text, one bare Example or anything else in the list."""
    if isinstance(examples, (str, bytes, Example)) or not hasattr(examples, "__iter__"):
        raise InputError(f"{what} must be a list of Example objects, e.g. [Example('point', ID)] or "
                         "[Example('location', (lon, lat))]")
    out = list(examples)
    bad = next((e for e in out if not isinstance(e, Example)), None)
    if bad is not None:
        raise InputError(f"{what} holds {bad!r}, not an Example; wrap it, e.g. Example('point', ID) for a stored "
                         "tile's id or Example('location', (lon, lat))")
    return out


#: Distance (stored-vector units) under which two examples are one picture: an image file and the stored tile
#: it was cut from embed ~1e-6 apart (the pixel path is ingest's); two different tiles, > 0.01.
SAME_PICTURE = 1e-4
#: The step two stored tiles' vectors are rounded to before they are compared (equal pixels, equal vectors).
SAME_PICTURE_ROUNDED = 1e-4


def _described(example: Example, resolved: ResolvedExample, n: int) -> str:
    """``example`` (the ``n``-th of its side, from 1) as the user gave it, e.g. ``location (-99.15, 47.02)``,
    ``image a.png`` or, for pixels and vectors (an uploaded image), ``image 2``."""
    if example.kind == "location":
        return f"location ({example.value[0]:g}, {example.value[1]:g})"
    if example.kind == "image":
        return f"image {example.value}"
    if example.kind == "point":
        return f"point {resolved.id}"
    return f"image {n} (of that side's examples)"


def _from_file(example: Example) -> bool:
    """Whether ``example`` came from a label file (its origin is not a command-line option)."""
    return bool(example.origin) and not example.origin.startswith("-")


def _both(p: tuple, q: tuple) -> str:
    """The start of a refusal of positive ``p`` and negative ``q`` (each ``(example, resolved, n)``), up to
    its verb: ``the positive example point X and the negative example point X are``, or, when either came
    from a label file, where each came from: ``labels.geojson feature 1 labels point X positive, and
    --not-point-id gives point X as negative: they are``."""
    if not (_from_file(p[0]) or _from_file(q[0])):
        return f"the positive example {_described(*p)} and the negative example {_described(*q)} are"

    def told(x: tuple, side: str) -> str:
        e = x[0]
        if _from_file(e):
            return f"{e.origin} labels {_described(*x)} {side}"
        return f"{e.origin or 'the search'} gives {_described(*x)} as {side}"

    return f"{told(p, 'positive')}, and {told(q, 'negative')}: they are"


def refuse_contradictions(pos: Sequence[Example], rp: Sequence[ResolvedExample], neg: Sequence[Example],
                           rn: Sequence[ResolvedExample]) -> None:
    """Raise InputError when a positive and a negative example are the same stored tile (a point id, or a
    location on it) or the same picture (an image whose vector is within :data:`SAME_PICTURE` of the other
    side's): the search cannot prefer one over the other, and ranked the tiles most unlike both.
    ``rp``/``rn`` are :meth:`rsir_stac.search.Index.resolve`'s answers, one for each of ``pos``/``neg`` in order."""
    P = [(e, r, n) for n, (e, r) in enumerate(zip(pos, rp), 1)]
    N = [(e, r, n) for n, (e, r) in enumerate(zip(neg, rn), 1)]
    by_id = {r.id: (e, r, n) for e, r, n in N if r.id}
    for e, r, n in P:
        if r.id and r.id in by_id:
            ne, nr, nn = by_id[r.id]
            same = "" if e.kind == ne.kind == "point" else f", both stored tile {r.id}"
            raise InputError(f"{_both((e, r, n), (ne, nr, nn))} the same tile{same}; keep one of the two")
    # two stored tiles with the same pixels (a scene ingested twice, a copy): their vectors, rounded, match
    # (a hash, not all pairs: label files hold up to 10,000 tiles a side)
    def key(r: ResolvedExample) -> bytes:
        return np.round(np.asarray(r.vector, np.float64) / SAME_PICTURE_ROUNDED).astype(np.int64).tobytes()

    stored = {key(r): (e, r, n) for e, r, n in N if r.id}
    for e, r, n in P:
        other = stored.get(key(r)) if r.id else None
        if other is not None:
            raise InputError(f"{_both((e, r, n), other)} two tiles of the same picture (their vectors are equal), "
                             "so the search cannot prefer one over the other; keep one of the two")
    pictures = [(True, x) for x in P if not x[1].id] + [(False, x) for x in N if not x[1].id]
    for positive, this in pictures:   # few: only images, pixels and vectors (no id) are compared by vector
        others = N if positive else P
        if not others:
            continue
        d = np.linalg.norm(np.stack([o[1].vector for o in others]).astype(np.float32)
                           - np.asarray(this[1].vector, np.float32)[None, :], axis=1)
        i = int(np.argmin(d))
        if d[i] <= SAME_PICTURE:
            p, q = (this, others[i]) if positive else (others[i], this)
            raise InputError(f"{_both(p, q)} the same picture (their vectors are {d[i]:.1g} apart), so the search "
                             "cannot prefer one over the other; keep one of the two")


def distinct(examples: Sequence[ResolvedExample]) -> list[ResolvedExample]:
    """``examples`` without repeats (the same stored tile, or the same vector, given again), in
    their first order: a repeat adds no information, only weight and work (256 copies of one
    place cost 256 exclusion areas)."""
    seen: set = set()
    out = []
    for r in examples:
        key = r.id if r.id else np.asarray(r.vector, dtype=np.float32).tobytes()
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


__all__ = ["EXAMPLE_KINDS", "Example", "ResolvedExample", "check_examples", "check_location", "check_pixels",
           "distinct", "refuse_contradictions"]
