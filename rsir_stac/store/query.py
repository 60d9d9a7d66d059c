"""Queries from several examples, run with the engine's own query API in both back ends.

An :class:`ExampleQuery` holds positive and negative example vectors and a
*strategy* naming the Qdrant query that combines them:

=============  ==========================================================  =============
strategy       engine query (Qdrant Edge / qdrant-client)                  ``score``
=============  ==========================================================  =============
``average``    recommend, ``average_vector``: one nearest-neighbour         distance
               search for ``2·mean(pos) − mean(neg)``. qdrant-client runs   (smaller is
               ``RecommendQuery(strategy=AVERAGE_VECTOR)``; Qdrant Edge     closer)
               has no such query, so the same formula (Qdrant's, from its
               documentation) is applied here and sent as ``Nearest``.
``best_score`` recommend, ``best_score``: each candidate scored by its      higher is
               nearest example; a candidate nearer a negative is pushed     better
               below every one nearer a positive.
``sum_scores`` recommend, ``sum_scores``: sum of similarities to the        higher is
               positives minus those to the negatives.                      better
``discover``   discovery: target ``mean(pos)``, context pairs pos×neg.       higher is
                                                                            better
``context``    context: pairs pos×neg only (exploration; many ties, which   higher is
               are broken by point id among at most 16 candidates per hit   better
               wanted: a larger tie group is cut there).
``feedback``   relevance feedback (naive strategy a=b=c=1): target          higher is
               ``mean(pos)``, each positive fed back with score 1, each     better
               negative with 0.
=============  ==========================================================  =============

``mmr`` (diversity 0–1) re-ranks with the engine's maximal marginal relevance
(Qdrant Edge ``Mmr``, qdrant-client ``NearestQuery(mmr=...)``); it applies to
a single query vector, so only to the ``average`` strategy.  Edge's ``lambda_``
weighs relevance, so it gets ``1 − diversity``.  Among exactly equal vectors
(duplicate tiles) MMR keeps one, and which one may differ between the engines.

The points a query must not return (:class:`Exclusion`, the areas about example
footprints) are in :mod:`~rsir_stac.store.exclusion`; their engine filters are built here.

Every query is translated in this module only; :func:`run_query` ranks the
engine's answer the same way for both (ties by point id, widened until the
cut is settled), so the two back ends return the same ids in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir_stac.errors import InputError
from rsir_stac.store.exclusion import Exclusion, footprint_exclusion, footprint_radius  # noqa: F401 - importable from here too
from rsir_stac.store.filters import SearchFilter

log = logging.getLogger(__name__)

STRATEGIES = ("average", "best_score", "sum_scores", "discover", "context", "feedback")

#: Largest ``offset + k`` a query may ask for.
MAX_K = 10_000
#: Largest number of examples (positives plus negatives) in one query, as many as a label set the
#: service takes.  Each candidate the engine visits is compared with every example (``best_score``
#: with 2,000 examples: ~37 ms at 100,000 points against 5.7 ms with 256).
MAX_EXAMPLES = 2_000
#: Largest number of positive×negative pairs for discover/context queries.
MAX_PAIRS = 1024
#: Widening stops here: a tie group (or a per-item cap) that needs more candidates is cut.
MAX_CANDIDATES = 200_000
#: A soft per-scene cap looks at most this many candidates per result wanted before filling up.
FILL_CANDIDATES = 64
#: The soft per-scene cap (``fill``) of a query ranked by distance: a hit beyond its scene's cap ranks
#: as if it were this many times farther, so other scenes' hits come first only while they are about
#: as near (a scene holding the only good matches is not buried under far worse tiles of others).
FILL_PENALTY = 1.3
#: Context queries (exploration) widen to at most this many candidates per result wanted: most points tie
#: at the top score, and settling a tie group of a million points costs seconds.
CONTEXT_CANDIDATES = 16


@dataclass(frozen=True)
class ExampleQuery:
    """Positive and negative example vectors (each 1-D, the index's size) and how to combine them.

    ``mmr``: diversity in [0, 1] for the engine's MMR re-ranking (``average`` only);
    ``mmr_candidates``: how many nearest candidates MMR picks from (default 10×k, at least 100).
    """

    positives: tuple[np.ndarray, ...]
    negatives: tuple[np.ndarray, ...] = ()
    strategy: str = "average"
    mmr: float | None = None
    mmr_candidates: int | None = None

    def __post_init__(self) -> None:
        pos = tuple(np.asarray(v, dtype=np.float32).reshape(-1) for v in self.positives)
        neg = tuple(np.asarray(v, dtype=np.float32).reshape(-1) for v in self.negatives)
        object.__setattr__(self, "positives", pos)
        object.__setattr__(self, "negatives", neg)
        if self.strategy not in STRATEGIES:
            raise InputError(f"query strategy {self.strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
        if not pos:
            raise InputError("the query has no positive example; give at least one --image, --point-id, --at "
                             "or a positive label")
        if len(pos) + len(neg) > MAX_EXAMPLES:
            raise InputError(f"the query has {len(pos) + len(neg)} examples and a search uses at most {MAX_EXAMPLES}; "
                             "to find every tile like a larger label set use `rsir-stac classify` (the map page's "
                             "Find all), or search with fewer examples")
        if self.strategy in ("discover", "context") and not neg:
            raise InputError(f"strategy {self.strategy} needs at least one negative example; add --not-image, "
                             "--not-point-id, --not-at or a negative label, or use --strategy average")
        if self.strategy in ("discover", "context") and len(pos) * len(neg) > MAX_PAIRS:
            raise InputError(f"strategy {self.strategy} pairs every positive with every negative "
                             f"({len(pos)}×{len(neg)}); use at most {MAX_PAIRS} pairs or --strategy best_score")
        if self.mmr is not None:
            if not (0.0 <= float(self.mmr) <= 1.0):
                raise InputError(f"MMR diversity {self.mmr!r} must be within 0 and 1, e.g. --mmr 0.5")
            if self.strategy != "average":
                raise InputError(f"MMR re-ranks one query vector; it does not combine with strategy "
                                 f"{self.strategy}; use --strategy average or drop --mmr")

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger ``score`` ranks first (False: the score is a Euclidean distance)."""
        return self.strategy != "average"

    @property
    def score_name(self) -> str:
        return "score" if self.higher_is_better else "distance"

    def average_vector(self) -> np.ndarray:
        """Qdrant's average_vector formula: ``mean(pos) + mean(pos) − mean(neg)`` (or ``mean(pos)``)."""
        p = np.mean(np.stack(self.positives), axis=0, dtype=np.float64)
        if not self.negatives:
            return p.astype(np.float32)
        n = np.mean(np.stack(self.negatives), axis=0, dtype=np.float64)
        return (p + p - n).astype(np.float32)

    def _target(self) -> list[float]:
        return np.mean(np.stack(self.positives), axis=0, dtype=np.float64).astype(np.float32).tolist()

    def _pairs(self) -> list[tuple[list[float], list[float]]]:
        return [(p.tolist(), n.tolist()) for p in self.positives for n in self.negatives]

    def candidates(self, limit: int) -> int:
        """MMR candidates for ``limit`` results: ``mmr_candidates`` or 10×limit (at least 100)."""
        return max(int(self.mmr_candidates or max(100, 10 * limit)), int(limit))


# --------------------------------------------------------------------------- engine translation


def edge_query(q: ExampleQuery, limit: int) -> Any:
    """The ``qdrant_edge`` scoring query for ``q``."""
    import qdrant_edge as e

    if q.strategy == "average":
        vec = q.average_vector().tolist()
        # Edge's lambda_ weighs relevance; qdrant-client's diversity is 1 - lambda (as in Qdrant's server)
        return e.Mmr(vec, 1.0 - float(q.mmr), q.candidates(limit)) if q.mmr is not None else e.Query.Nearest(vec)
    pos = [v.tolist() for v in q.positives]
    neg = [v.tolist() for v in q.negatives]
    if q.strategy == "best_score":
        return e.Query.RecommendBestScore(e.RecommendQuery(pos, neg))
    if q.strategy == "sum_scores":
        return e.Query.RecommendSumScores(e.RecommendQuery(pos, neg))
    pairs = [e.ContextPair(p, n) for p, n in q._pairs()]
    if q.strategy == "discover":
        return e.Query.Discover(e.DiscoverQuery(q._target(), pairs))
    if q.strategy == "context":
        return e.Query.Context(e.ContextQuery(pairs))
    items = [e.FeedbackItem(v, 1.0) for v in pos] + [e.FeedbackItem(v, 0.0) for v in neg]
    return e.Query.FeedbackNaive(e.FeedbackNaiveQuery(q._target(), items, e.NaiveFeedbackStrategy(1.0, 1.0, 1.0)))


def qdrant_query(q: ExampleQuery, limit: int) -> Any:
    """The qdrant-client ``query_points`` query for ``q``."""
    from qdrant_client import models as m

    pos = [v.tolist() for v in q.positives]
    neg = [v.tolist() for v in q.negatives]
    if q.strategy == "average":
        if q.mmr is not None:
            return m.NearestQuery(nearest=q.average_vector().tolist(),
                                  mmr=m.Mmr(diversity=float(q.mmr), candidates_limit=q.candidates(limit)))
        if len(pos) == 1 and not neg:
            return pos[0]
        return m.RecommendQuery(recommend=m.RecommendInput(positive=pos, negative=neg or None,
                                                           strategy=m.RecommendStrategy.AVERAGE_VECTOR))
    if q.strategy in ("best_score", "sum_scores"):
        strategy = m.RecommendStrategy.BEST_SCORE if q.strategy == "best_score" else m.RecommendStrategy.SUM_SCORES
        return m.RecommendQuery(recommend=m.RecommendInput(positive=pos, negative=neg or None, strategy=strategy))
    pairs = [m.ContextPair(positive=p, negative=n) for p, n in q._pairs()]
    if q.strategy == "discover":
        return m.DiscoverQuery(discover=m.DiscoverInput(target=q._target(), context=pairs))
    if q.strategy == "context":
        return m.ContextQuery(context=pairs)
    fb = [m.FeedbackItem(example=v, score=1.0) for v in pos] + [m.FeedbackItem(example=v, score=0.0) for v in neg]
    return m.RelevanceFeedbackQuery(relevance_feedback=m.RelevanceFeedbackInput(
        target=q._target(), feedback=fb,
        strategy=m.NaiveFeedbackStrategy(naive=m.NaiveFeedbackStrategyParams(a=1.0, b=1.0, c=1.0))))


def edge_filter(flt: SearchFilter | None, excl: Exclusion) -> Any:
    """``qdrant_edge.Filter``: ``flt`` minus excluded ids and footprint neighbourhoods."""
    from rsir_stac.store.engine_filters import _EdgeTerms, to_edge_filter

    return _excluding(to_edge_filter(flt, exclude_ids=excl.ids), excl, _EdgeTerms())


def qdrant_filter(flt: SearchFilter | None, excl: Exclusion) -> Any:
    """qdrant-client ``Filter`` with the same semantics as :func:`edge_filter`."""
    from rsir_stac.store.engine_filters import _ClientTerms, to_qdrant_filter

    return _excluding(to_qdrant_filter(flt, exclude_ids=excl.ids), excl, _ClientTerms())


def _excluding(base: Any, excl: Exclusion, terms: Any) -> Any:
    """``base`` and not within any of ``excl.around`` (lon, lat, radius m) nor ``excl.areas``, built with
    one engine's terms; an area is the closed area as :func:`~rsir_stac.store.engine_filters.polygon_area`
    makes it for ``--within`` (edges, ±180 and poles included), so a centre on its edge, on 180 or at
    the pole is excluded as the area says."""
    if not excl.around and not excl.areas:
        return base
    from rsir_stac.store.areas import GeoArea
    from rsir_stac.store.engine_filters import _area_terms, polygon_area

    conds = [terms.radius(lon, lat, r) for lon, lat, r in excl.around]
    for ring in excl.areas:
        conds += _area_terms(terms, polygon_area(GeoArea(((tuple(ring), ()),))))
    return terms.filter(must=[base] if base is not None else None, must_not=conds)


# --------------------------------------------------------------------------- ranking


def check_k(k: Any, offset: Any = 0) -> tuple[int, int]:
    """Validate ``k`` (results wanted) and ``offset`` (results skipped); offset + k <= MAX_K."""
    for name, v, low in (("--limit", k, 1), ("--offset", offset, 0)):
        api = "k" if name == "--limit" else "offset"
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            raise InputError(f"{name} {v!r} (API: {api}) must be a whole number >= {low}")
    if int(k) + int(offset) > MAX_K:
        room = MAX_K - int(offset)
        fix = (f"ask for at most {room}" + (f" with --offset {offset}" if offset else "") if room >= 1
               else f"page with --offset below {MAX_K}")
        raise InputError(f"--offset {offset} + --limit {k} (API: offset + k) is above the limit of {MAX_K} results; "
                         f"{fix}")
    return int(k), int(offset)


def run_query(
    store: Any,
    query: ExampleQuery,
    k: int = 10,
    *,
    offset: int = 0,
    flt: SearchFilter | None = None,
    exclude: Exclusion = Exclusion(),
    per_item: int | None = None,
    fill: bool = False,
    with_vectors: bool = False,
    with_payload: bool = True,
) -> list:
    """Hits ``offset .. offset+k`` of ``query`` in ``store`` (a :class:`~rsir_stac.store.base.Store`).

    Ranking: by score (ascending distance, or descending score for the
    recommend/discovery strategies), ties by point id; MMR keeps the engine's
    selection order.  ``per_item``: at most this many hits per STAC item (scene),
    kept greedily in rank order; with ``fill`` the cap is soft: for a distance, a hit beyond
    its scene's cap ranks as if :data:`FILL_PENALTY` times farther (other scenes' hits come first
    while they are about as near); for a score or MMR, when the capped
    hits run short of ``offset + k``, the capped-out hits follow in rank order
    (candidates are widened to at most :data:`FILL_CANDIDATES` × (offset + k)
    looking for other scenes first).  Payloads (and vectors) are fetched only for
    the returned page.  Raises InputError for a bad k/offset/per_item.
    """
    from rsir_stac.store.base import as_query_vector
    from rsir_stac.store.records import SearchHit, normalize_id

    k, offset = check_k(k, offset)
    if per_item is not None and (not isinstance(per_item, int) or isinstance(per_item, bool) or per_item < 1):
        raise InputError(f"per_item={per_item!r} must be a whole number >= 1 (hits kept per scene)")
    meta = store._require_meta()
    for v in query.positives + query.negatives:
        as_query_vector(v, meta.dim, store.describe())
    excl = Exclusion(frozenset(normalize_id(i) for i in exclude.ids), tuple(exclude.around), tuple(exclude.areas))
    want = offset + k
    sign = -1.0 if query.higher_is_better else 1.0
    fields = ["item_id"] if per_item is not None else None
    limit = want * (4 if per_item is not None else 1) + 16
    while True:
        raw = store._query_raw(query, limit, flt, excl, fields)
        if query.mmr is None:
            raw.sort(key=lambda h: (sign * h.score, h.id))
        else:  # MMR order is the engine's selection order; only runs of equal scores are put in id order
            raw = _sort_equal_runs(raw)
        penalised = fill and per_item is not None and query.mmr is None and not query.higher_is_better
        if penalised:
            ranked, keys = _soft_cap(raw, per_item, FILL_PENALTY)
        else:
            ranked = _cap_per_item(raw, per_item) if per_item is not None else raw
            keys = None
        full = len(raw) >= limit
        # settled: no candidate not yet seen (scoring as raw[-1] or worse) can enter the page; a tie
        # group at the cut is widened, per-scene cap or not, so the engines' order of ties never shows
        last = (keys[want - 1] if keys is not None else sign * ranked[want - 1].score) if len(ranked) >= want else 0.0
        settled = len(ranked) >= want and (query.mmr is not None or last < sign * raw[-1].score)
        bound = min(MAX_CANDIDATES, FILL_CANDIDATES * want + 16) if fill else MAX_CANDIDATES
        if query.strategy == "context":
            bound = min(bound, CONTEXT_CANDIDATES * want + 16)
        if fill and per_item is not None and (not full or limit >= bound) and len(ranked) < want:
            kept = {h.id for h in ranked}
            ranked = ranked + [h for h in raw if h.id not in kept]
        if not full or settled or limit >= bound:
            if full and not settled:
                log.debug("query stopped widening at %d candidates", limit)
            break
        limit = min(limit * 4, bound)
    page = ranked[offset:want]
    if not page or not (with_payload or with_vectors):
        return [SearchHit(h.id, h.score, {}, None) for h in page]
    got = {h.id: h for h in store._retrieve_raw([h.id for h in page], True, with_vectors)}
    return [SearchHit(h.id, h.score, got[h.id].payload, got[h.id].vector) for h in page if h.id in got]


def sample_ids(store: Any, n: int, flt: SearchFilter | None = None, exclude: Exclusion = Exclusion(),
               seed: int = 0) -> list[str]:
    """Ids of up to ``n`` points matching ``flt``, a sample fixed by ``seed``.

    Point ids are uuid5 hashes, so the points that follow a seeded random id in id
    order are a random sample; both engines scroll in id order, so they draw the
    same sample (wrapping round to the lowest ids when the range runs out).
    """
    import uuid

    if store.meta() is None or n < 1:
        return []
    start = str(uuid.UUID(int=int(np.random.default_rng(seed).integers(0, 2**63)) << 64))
    out = store._ids_from(start, n, flt, exclude)
    if len(out) < n:
        seen = set(out)
        out += [i for i in store._ids_from(None, n, flt, exclude) if i not in seen][: n - len(out)]
    return out


def _sort_equal_runs(hits: list) -> list:
    out: list = []
    i = 0
    while i < len(hits):
        j = i + 1
        while j < len(hits) and hits[j].score == hits[i].score:
            j += 1
        out.extend(sorted(hits[i:j], key=lambda h: h.id))
        i = j
    return out


def _soft_cap(hits: Sequence, per_item: int, penalty: float) -> tuple[list, list[float]]:
    """``hits`` (by ascending distance) re-ranked by a soft per-scene cap: the first ``per_item`` of each
    scene keep their distance, the others rank at ``penalty`` times theirs; ties keep rank order.
    A capped-out exact duplicate (distance 0, where a factor changes nothing) ranks at ``penalty``
    times the nearest non-zero distance of ``hits``, so one scene's copies of a tile do not fill a page.
    Returns the hits and their ranking keys, in the new order."""
    floor = min((h.score for h in hits if h.score > 0), default=0.0)
    seen: dict[Any, int] = {}
    keyed = []
    for n, h in enumerate(hits):
        item = h.payload.get("item_id")
        kept = seen.get(item, 0)
        seen[item] = kept + 1
        keyed.append((h.score if kept < per_item else max(h.score, floor) * penalty, n, h))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [h for _, _, h in keyed], [k for k, _, _ in keyed]


def _cap_per_item(hits: Sequence, per_item: int) -> list:
    seen: dict[Any, int] = {}
    out = []
    for h in hits:
        item = h.payload.get("item_id")
        n = seen.get(item, 0)
        if n < per_item:
            seen[item] = n + 1
            out.append(h)
    return out


__all__ = ["ExampleQuery", "Exclusion", "FILL_PENALTY", "MAX_K", "STRATEGIES", "check_k", "footprint_exclusion", "footprint_radius",
           "run_query", "sample_ids"]
