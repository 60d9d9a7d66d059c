"""\"Find all\": a light classifier fitted on labelled tiles, applied to every tile in an area.

The classifier is scikit-learn's ``LogisticRegression`` (L2, C=1, balanced
class weights) on the stored vectors.  Why: an analyst gives tens of labels,
not thousands; the vectors are a metric embedding trained so that classes are
close to linearly separable, so a linear model has the right capacity and
over-fits less than kernels or trees would; it outputs probabilities, so
``--threshold P`` means something; it fits in milliseconds and scores a batch
of vectors as one matrix product, which keeps a pass over 1,000,000 points
within the scroll's own cost.

Tiles drawn at random (fixed by ``seed``) are added as background negatives
(``background``, default max(50, 5 × positives); equal shares from the scenes
holding the labels, the ground around them and the filtered area, those a first
fit scores positive left out: :func:`_background`, :func:`_reliable_negatives`): the
thing searched for is rare, and a handful of negative labels cannot cover
every other kind of tile in the area (measured in benchmarks/RESULTS.md,
section 10).  A background tile that is in fact positive costs little: it is
one of many.  Precision and recall are measured on a stratified held-out part
of the *labels* (default 25 %), then the model is refitted on all of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsir_stac.errors import InputError
from rsir_stac.labels import LabelSet
from rsir_stac.store import SearchFilter, SearchHit
from rsir_stac.store.filters import matches

log = logging.getLogger(__name__)

#: Fewest background negatives drawn by default (else 5 per positive label).
MIN_BACKGROUND = 50


@dataclass(frozen=True)
class ClassifyReport:
    """Tiles above the threshold (``score`` = probability, highest first) and how the model did.

    ``precision``/``recall`` are on the held-out labels at ``threshold`` (None when
    there were too few labels to hold any out); ``holdout`` is how many labels that was.
    """

    hits: tuple[SearchHit, ...]
    scored: int
    threshold: float
    positives: int
    negatives: int
    background: int
    precision: float | None
    recall: float | None
    holdout: int
    seconds: float
    model: str = "LogisticRegression(C=1.0, class_weight='balanced')"
    fit_seconds: float = 0.0
    scan_seconds: float = 0.0
    coef: tuple[float, ...] = field(default=(), repr=False)
    labels_outside: int = 0  # labelled tiles the filters leave out
    negatives_overruled: int = 0  # labelled negatives scored >= threshold, left out of the hits
    positives_kept: int = 0  # labelled positives scored < threshold, kept in the hits
    holdout_fraction: float = 0.25  # the fraction of the labels asked to be held out (0: none)
    max_hits: int | None = None  # the most probable hits asked for (None: all)
    positives_past_max_hits: int = 0  # labelled positives kept beyond the max_hits most probable
    above: int | None = None  # tiles at p >= threshold in the area, whatever max_hits kept (None: from the hits)

    @property
    def above_threshold(self) -> int:
        """Tiles the classifier put at or above the threshold in the filtered area (labelled negatives
        left out: they are never hits), all of them whatever ``max_hits`` kept."""
        return self.above if self.above is not None else len(self.hits) - self.positives_kept

    def _left_out_by_max_hits(self) -> int:
        """How many hits ``max_hits`` left out: those past the most probable that are not labelled positive."""
        if self.max_hits is None:
            return 0
        return max(0, self.above_threshold + self.positives_kept - self.max_hits - self.positives_past_max_hits)

    def cut_text(self) -> str:
        """How ``max_hits`` cut the hits (``"the 5 most probable + 3 labelled positives"``), or ""
        when it kept every hit (also when every hit past the most probable is a labelled positive)."""
        if not self._left_out_by_max_hits():
            return ""
        past = self.positives_past_max_hits
        return (f"the {self.max_hits} most probable"
                + (f" + {past} labelled {'positive' if past == 1 else 'positives'}" if past else ""))

    def holdout_text(self) -> str:
        """How the held-out labels scored, or why none were held out."""
        def num(v):  # None: undefined (no held-out label was predicted positive, or none was positive)
            return "n/a" if v is None else f"{v:.2f}"

        if self.holdout:
            fitted = self.positives + self.negatives - self.holdout
            rough = ([f"only {self.holdout} held-out labels: a rough figure, look at the hits too"]
                     if self.holdout < MIN_HOLDOUT else [])
            if fitted < self.holdout:
                rough.append(f"measured with a model fitted on {fitted} labels, fewer than the full fit's "
                             f"{self.positives + self.negatives}: --holdout 0.25 keeps most for the fit")
            return (f"precision {num(self.precision)}, recall {num(self.recall)} on {self.holdout} held-out labels"
                    + (" (none predicted positive: try a lower --threshold)" if self.precision is None else "")
                    + (f" ({'; '.join(rough)})" if rough else ""))
        if self.holdout_fraction <= 0:
            return ("no labels held out (--holdout 0; API: holdout), so no precision/recall; give e.g. --holdout 0.25 "
                    "to measure them")
        return ("too few labels to hold any out, so no precision/recall (needs 2+ positive and 2+ negative labels, "
                "6+ in all)")

    def notes(self) -> list[str]:
        """What a user should know about this run beyond its figures."""
        out = []
        if self.scored == 0:
            out.append("no tile matches the filters, so none was scored; the precision and recall are those of "
                       "the held-out labels alone: widen the area or time, or label tiles inside it")
        if self.labels_outside:
            one = self.labels_outside == 1
            out.append(f"{self.labels_outside} of the {self.positives + self.negatives} labelled tiles "
                       f"{'lies' if one else 'lie'} outside the filters: the classifier learns from "
                       f"{'it' if one else 'them'}, but the tiles it scores are elsewhere")
        neg, pos = self.negatives_overruled, self.positives_kept
        parts = ([f"{neg} {'tile' if neg == 1 else 'tiles'} you labelled negative scored >= {self.threshold:g} and "
                  f"{'is' if neg == 1 else 'are'} left out"] if neg else []) + (
                 [f"{pos} you labelled positive scored below {'it' if neg else f'{self.threshold:g}'} and "
                  f"{'is' if pos == 1 else 'are'} kept (marked by {'its' if pos == 1 else 'their'} label)"] if pos else [])
        if parts:
            out.append(f"your labels win over the classifier: {', '.join(parts)}; {self._advice()}")
        past = self.positives_past_max_hits
        if self.cut_text():
            out.append(f"--max-hits {self.max_hits} (API: max_hits) kept the {self.max_hits} most probable of "
                       f"{self.above_threshold + self.positives_kept} hits"
                       + (f", and the {past} labelled {'positive' if past == 1 else 'positives'} beyond them "
                          f"(your labels win): {self.max_hits + past} in all" if past else ""))
        elif past:  # past the most probable there were only tiles labelled positive, which are always kept
            every = self.above_threshold == 0
            out.append(f"--max-hits {self.max_hits} (API: max_hits) left out no hit: "
                       + (f"all {self.positives_kept} are tiles you labelled positive, scored below "
                          f"{self.threshold:g} and kept (your labels win)" if every else
                          f"the {past} beyond the {self.max_hits} most probable "
                          f"{'is a tile' if past == 1 else 'are tiles'} you labelled positive, kept whatever "
                          "the rank (your labels win)")
                       + f": {self.max_hits + past} in all")
        return out

    def _advice(self) -> str:
        """What to do when labels win over the classifier.  At a threshold of 1 no tile is
        expected to score at or above it and at 0 every tile does, so more labels would not
        help there: the threshold is what to change."""
        if self.threshold >= 1:
            like = "it" if self.positives == 1 else "them"
            return f"no tile is expected to score 1: lower the threshold (e.g. 0.9) to find tiles like {like}"
        if self.threshold <= 0:
            return ("every tile scores at least 0, so none is left out: raise the threshold (e.g. 0.5) to keep "
                    f"only tiles like your {'positive' if self.positives == 1 else 'positives'}")
        neg, pos = self.negatives_overruled, self.positives_kept
        return f"label more tiles like {'it' if neg + pos == 1 else 'them'} to teach it"

    def summary(self) -> dict[str, Any]:
        return {"hits": len(self.hits), "scored": self.scored, "threshold": self.threshold,
                "positives": self.positives, "negatives": self.negatives, "background": self.background,
                "holdout": self.holdout, "precision": self.precision, "recall": self.recall,
                "above_threshold": self.above_threshold, "negatives_overruled": self.negatives_overruled,
                "positives_kept": self.positives_kept, "max_hits": self.max_hits,
                "positives_past_max_hits": self.positives_past_max_hits,
                "seconds": round(self.seconds, 2), "fit_seconds": round(self.fit_seconds, 2),
                "scan_seconds": round(self.scan_seconds, 2), "model": self.model}


#: Fewer held-out labels than this give a precision/recall the output calls rough.
MIN_HOLDOUT = 10


def _fit(x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed).fit(x, y)


def _reliable_negatives(x: np.ndarray, y: np.ndarray, real: np.ndarray, seed: int) -> np.ndarray:
    """Rows to fit on: every label, and the background tiles a first fit on all rows scores below
    0.5, i.e. not more likely positive than not (the two-step positive-unlabelled scheme: keep the
    reliable negatives of the unlabelled draw; Liu et al., ICML 2002 / ICDM 2003).  A background
    drawn where the labels are holds some tiles of the labelled kind, which would otherwise teach
    the classifier that its own class is background."""
    keep = np.ones(len(y), bool)
    if real.all() or len(np.unique(y)) < 2:
        return keep
    p = _fit(x, y, seed).predict_proba(x)[:, 1]
    keep[~real & (p >= 0.5)] = False
    if len(np.unique(y[keep])) < 2:  # every negative was background and scored positive: keep them all
        return np.ones(len(y), bool)
    if (~keep).any():
        log.info("left out %d of %d background tiles that a first fit scores as positive", int((~keep).sum()),
                 int((~real).sum()))
    return keep


def _holdout_scores(x: np.ndarray, y: np.ndarray, real: np.ndarray, fraction: float, threshold: float,
                    seed: int) -> tuple[float | None, float | None, int]:
    """Precision/recall on a stratified held-out part of the real labels (background rows always train)."""
    from sklearn.model_selection import train_test_split

    idx = np.flatnonzero(real)
    counts = np.bincount(y[idx], minlength=2)
    if fraction <= 0 or counts.min() < 2 or len(idx) < 6:
        return None, None, 0
    # at least one label of each kind on both sides: a large fraction is cut down to what that leaves
    n_test = min(max(2, int(round(len(idx) * fraction))), len(idx) - 2)
    if n_test < int(round(len(idx) * fraction)):
        log.info("holdout cut to %d of %d labels so that both kinds stay in the fit", n_test, len(idx))
    train, test = train_test_split(idx, test_size=n_test, stratify=y[idx], random_state=seed)
    train = np.concatenate([train, np.flatnonzero(~real)])
    if len(np.unique(y[train])) < 2:
        return None, None, 0
    pred = _fit(x[train], y[train], seed).predict_proba(x[test])[:, 1] >= threshold
    truth = y[test] == 1
    tp = int(np.sum(pred & truth))
    precision = tp / int(pred.sum()) if pred.sum() else None
    recall = tp / int(truth.sum()) if truth.sum() else None
    return precision, recall, len(test)


def classify(index: Any, labels: LabelSet, *, flt: SearchFilter | None = None, threshold: float = 0.5,
             holdout: float = 0.25, seed: int = 0, batch: int = 4096, max_hits: int | None = None,
             background: int | None = None, progress: Callable[[int, int], None] | None = None) -> ClassifyReport:
    """Fit on ``labels`` (tiles of ``index``, an :class:`~rsir_stac.search.Index`) and return
    every tile matching ``flt`` whose probability is >= ``threshold``.

    ``progress(done, total)`` is called after each scrolled batch of ``batch`` points.
    ``max_hits`` keeps only the most probable hits (None: all), plus the labelled positives.  ``background``:
    random tiles added as negatives (None: max(50, 5 × positives); 0: none).  Labels made on an
    index of another model over the same tiles are matched to this index's (:meth:`Index.labels_here`).
    Raises InputError (no positive label, threshold outside 0–1) and PointNotFoundError (labels of
    another index).
    """
    t0 = time.perf_counter()
    check_options(threshold, holdout, max_hits)
    labels.require_positive()
    labels = index.labels_here(labels)  # this index's ids (labels of a reindexed one matched), one-line errors
    store = index.store
    ex = _examples(store, labels, flt, background, seed)
    keep = _reliable_negatives(ex.x, ex.y, ex.real, seed)
    x, y, real = ex.x[keep], ex.y[keep], ex.real[keep]
    precision, recall, n_test = _holdout_scores(x, y, real, float(holdout), float(threshold), seed)
    clf = _fit(x, y, seed)
    w = clf.coef_[0].astype(np.float64)
    b = float(clf.intercept_[0])
    t_scan = time.perf_counter()
    fit_s = t_scan - t0
    found, done = _scan(store, flt, batch, w, b, threshold, progress)
    scan_s = time.perf_counter() - t_scan
    scanned = len(found)
    found, overruled, kept, past = _labels_win(found, ex, w, b, flt, max_hits)
    above = scanned - overruled  # every tile at p >= threshold but those labelled negative, before any cut
    hits = _hit_records(store, found, set(ex.pos))
    return ClassifyReport(tuple(hits), done, float(threshold), len(ex.pos), len(ex.neg), len(ex.drawn),
                          precision, recall, n_test, time.perf_counter() - t0, fit_seconds=fit_s, scan_seconds=scan_s,
                          coef=tuple(w.tolist()), labels_outside=ex.outside, negatives_overruled=overruled,
                          positives_kept=kept, holdout_fraction=float(holdout), max_hits=max_hits,
                          positives_past_max_hits=past, above=above)


def check_options(threshold: float, holdout: float, max_hits: int | None) -> None:
    """Refuse (InputError) a ``threshold`` outside 0..1, a ``holdout`` outside 0..1 (1 excluded)
    and a ``max_hits`` that is not a whole number >= 1."""
    if not (0.0 <= float(threshold) <= 1.0) or math.isnan(float(threshold)):
        raise InputError(f"threshold {threshold!r} must be a probability within 0 and 1, e.g. --threshold 0.5")
    if not (0.0 <= float(holdout) < 1.0):
        raise InputError(f"--holdout {holdout!r} (API: holdout) must be a fraction within 0 and 1 (1 excluded), "
                         "e.g. --holdout 0.25")
    if max_hits is not None and (isinstance(max_hits, bool) or not isinstance(max_hits, (int, np.integer))
                                 or max_hits < 1):
        raise InputError(f"--max-hits {max_hits!r} (API: max_hits) must be a whole number >= 1 (the most probable "
                         "tiles kept); leave it out to keep every tile at or above the threshold")


@dataclass(frozen=True)
class _Examples:
    """What the classifier is fitted on: the positive and negative labels' ids, the background
    tiles drawn as negatives, the retrieved points (``got``) and their vectors by id, ``x``
    (N x dim float32, positives, negatives, background in that order), ``y`` (1/0), ``real``
    (True for labels, False for background) and how many labels lie outside the filters."""

    pos: list[str]
    neg: list[str]
    drawn: list[str]
    got: list
    vecs: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    real: np.ndarray
    outside: int


def _examples(store, labels: LabelSet, flt: SearchFilter | None, background: int | None, seed: int) -> _Examples:
    """The labelled tiles and ``background`` random tiles of the filtered area (None:
    max(:data:`MIN_BACKGROUND`, 5 × positives), drawn with ``seed``) with their vectors.
    Raises InputError for a negative ``background`` or when there is no negative example."""
    pos, neg = list(labels.positives), list(labels.negatives)
    want = max(MIN_BACKGROUND, 5 * len(pos)) if background is None else int(background)
    if want < 0:
        raise InputError(f"background={background!r} must be a whole number >= 0 (random tiles used as negatives)")
    got = store.retrieve(pos + neg, with_vectors=True)
    drawn = _background(store, want, flt, got, seed) if want else []
    log.info("drew %d background tiles as negatives (%d negative labels)", len(drawn), len(neg))
    got = got + store.retrieve(drawn, with_vectors=True)
    ids = pos + neg + drawn
    vecs = {h.id: h.vector for h in got}
    labelled = set(pos + neg)
    outside = sum(1 for h in got if h.id in labelled and not matches(h.payload, flt))
    x = np.stack([vecs[i] for i in ids]).astype(np.float32)
    y = np.array([1] * len(pos) + [0] * (len(neg) + len(drawn)))
    if len(np.unique(y)) < 2:
        raise InputError("the classifier needs negative examples and the filtered area has no other tiles; "
                         "label some tiles negative or widen the filters")
    real = np.array([True] * (len(pos) + len(neg)) + [False] * len(drawn))
    return _Examples(pos, neg, drawn, got, vecs, x, y, real, outside)


def _background(store, want: int, flt: SearchFilter | None, labelled: list, seed: int) -> list[str]:
    """Ids of ``want`` random tiles to add as negatives, none of them labelled: equal shares from the
    scenes (items) that hold the labelled tiles, from the ground around the labels (any date; only
    when no area is given, :func:`_around`), and from the whole filtered area (with whatever the
    first shares could not give).

    Why the shares: drawn from the area alone, the background comes mostly from scenes with no label
    when the labels sit in one of many scenes, and the classifier then learns "this imagery, not the
    rest" (its sensor, date, radiometry) instead of "this kind of ground, not the rest": in a map-page
    trial, lake labels on a NAIP scene marked 94 % of its tiles, fields included, with no area drawn,
    and 22 % with a box around it.  Background from the labels' own scenes and place holds the other
    ground of the same imagery (positive-unlabelled learning draws its unlabelled set where the
    positives are); the last share still covers the area the classifier will score.  Items a filter's
    own ``item_ids`` leave out are not drawn from."""
    from dataclasses import replace

    from rsir_stac.store.exclusion import Exclusion
    from rsir_stac.store.query import sample_ids

    taken = {h.id for h in labelled}
    base = flt or SearchFilter()
    items = sorted({h.payload.get("item_id") for h in labelled if h.payload.get("item_id")})
    if base.item_ids:
        items = [i for i in items if i in base.item_ids]
    area_given = base.bbox is not None or base.near is not None or base.polygon is not None
    box = None if area_given else _around(labelled)
    parts = ([replace(base, item_ids=tuple(items))] if items else []) + ([replace(base, bbox=box)] if box else [])
    share = want // (len(parts) + 1)
    drawn: list[str] = []
    for n, part in enumerate(parts + [flt]):
        got = sample_ids(store, share if n < len(parts) else want - len(drawn), part,
                         Exclusion(ids=frozenset(taken)), seed=seed + n)
        drawn += got
        taken.update(got)
    return drawn


#: Least padding (degrees) of the box around the labels that background tiles are partly drawn from.
AROUND_PAD_DEG = 0.02


def _around(labelled: list) -> tuple[float, float, float, float] | None:
    """The lon/lat box (W, S, E, N) of the labelled tiles' centres, padded on each side by half its
    size and at least :data:`AROUND_PAD_DEG` (about 2 km); None without locations, or for labels
    more than 90 degrees of longitude apart (then the whole area is as near)."""
    pts = [(float(loc["lon"]), float(loc["lat"])) for h in labelled
           if isinstance(loc := (h.payload or {}).get("location"), dict) and "lon" in loc and "lat" in loc]
    if not pts:
        return None
    lons, lats = [p[0] for p in pts], [p[1] for p in pts]
    w, e, s, n = min(lons), max(lons), min(lats), max(lats)
    if e - w > 90:
        return None
    px, py = max((e - w) / 2, AROUND_PAD_DEG), max((n - s) / 2, AROUND_PAD_DEG)
    return max(-180.0, w - px), max(-90.0, s - py), min(180.0, e + px), min(90.0, n + py)


def _scan(store, flt: SearchFilter | None, batch: int, w: np.ndarray, b: float, threshold: float,
          progress: Callable[[int, int], None] | None) -> tuple[list[tuple[float, str]], int]:
    """``(found, done)``: every tile matching ``flt`` whose probability under the linear model
    ``w``, ``b`` is >= ``threshold``, as ``(probability, id)``, scrolled ``batch`` vectors at a
    time, and how many tiles were scored; ``progress(done, total)`` after each batch."""
    total = store.count(flt)
    found: list[tuple[float, str]] = []
    done = 0
    for ids_, mat in store._vector_batches(flt, batch=batch):
        p = 1.0 / (1.0 + np.exp(-(mat.astype(np.float64) @ w + b)))
        for j in np.flatnonzero(p >= threshold).tolist():
            found.append((float(p[j]), ids_[j]))
        done += len(mat)
        if progress is not None:
            progress(done, total)
    return found, done


def _labels_win(found: list[tuple[float, str]], ex: _Examples, w: np.ndarray, b: float, flt: SearchFilter | None,
                max_hits: int | None) -> tuple[list[tuple[float, str]], int, int, int]:
    """``(found, overruled, kept, past)``: the hits with the analyst's labels applied, most probable
    first, cut to ``max_hits`` (None: all) but every labelled positive kept; how many hits were
    labelled negative (left out), how many labelled positives below the threshold were added, and
    how many labelled positives are kept beyond the ``max_hits`` most probable."""
    # the analyst's labels win: a tile labelled negative is never a hit, one labelled positive
    # (inside the filters) always is, with the probability the model gives it
    negs, poss = set(ex.neg), set(ex.pos)
    overruled = sum(1 for _, i in found if i in negs)
    found = [(p, i) for p, i in found if i not in negs]
    have = {i for _, i in found}
    inside = {h.id for h in ex.got if h.id in poss and matches(h.payload, flt)}
    kept = [(float(1.0 / (1.0 + np.exp(-(ex.vecs[i].astype(np.float64) @ w + b)))), i) for i in ex.pos
            if i in inside and i not in have]
    found += kept
    found.sort(key=lambda t: (-t[0], t[1]))
    past: list[tuple[float, str]] = []
    if max_hits is not None:  # the most probable hits, and every labelled positive whatever its rank
        past = [t for t in found[max_hits:] if t[1] in inside]
        found = found[:max_hits] + past
    return found, overruled, len(kept), len(past)


def _hit_records(store, found: list[tuple[float, str]], poss: set[str]) -> list[SearchHit]:
    """The hits of ``found`` with their payloads (read 1,000 at a time), labelled positives
    marked ``label: "positive"``; ids no longer in the store are left out."""
    hits: list[SearchHit] = []
    for start in range(0, len(found), 1000):
        part = found[start:start + 1000]
        rec = {h.id: h for h in store._retrieve_raw([i for _, i in part], True, False)}
        hits.extend(SearchHit(i, p, {**rec[i].payload, "label": "positive" if i in poss else None})
                    for p, i in part if i in rec)
    return hits


__all__ = ["ClassifyReport", "check_options", "classify"]
