"""Search by example: query (image file | stored point id | lon/lat) → vector →
filtered nearest neighbours in the store → :class:`SearchHit` records.

>>> with Index.open("rsir-index") as idx:                        # doctest: +SKIP
...     result = idx.search(at=(-95.36, 29.75), flt=SearchFilter(bbox=(-96, 29, -95, 30)), k=10)
...     for hit in result.hits: print(hit.score, hit.payload["item_id"])
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError, PointNotFoundError
from rsir_stac.examples import Example, ResolvedExample, check_examples, check_pixels, distinct, refuse_contradictions
from rsir_stac.labels import LabelSet
from rsir_stac.store import SearchFilter, SearchHit
from rsir_stac.store.base import normalize_id

log = logging.getLogger(__name__)

from rsir_stac.search_notes import (cap_note, left_out_note, mmr_note, outside_note, query_size_note,  # noqa: E402
                                    ranking_notes, reordered, swapped_bbox_note)

#: Soft cap of hits per scene by default (benchmarks/diversity.py).
AUTO_PER_ITEM = 3

#: Most stored positive examples a search grows an exclusion area around (``exclude_within_m``).
MAX_EXCLUDED_FOOTPRINTS = 256

#: The strategies a search accepts: the engine's (:data:`rsir_stac.store.query.STRATEGIES`) and ``auto``.
SEARCH_STRATEGIES = ("auto", "average", "best_score", "sum_scores", "discover", "context", "feedback")


def pick_strategy(strategy: str, negatives: int, mmr: float | None) -> str:
    """The engine strategy a search runs: ``strategy`` itself, or for ``"auto"`` (the default)
    ``best_score`` when there are ``negatives`` (> 0) and no ``mmr`` (MMR re-ranks the ``average``
    query only), else ``average``.  With negative examples ``best_score`` ranked at least as well
    as ``average`` in every setting measured (``benchmarks/strategy_quality.py``, RESULTS §10:
    +0.004 to +0.021 precision@10 on UC Merced); with positives only both rank alike and
    ``average`` is one nearest-neighbour search, the fastest.  Raises InputError for an unknown name."""
    if strategy not in SEARCH_STRATEGIES:
        raise InputError(f"search strategy {strategy!r} is unknown; use one of {', '.join(SEARCH_STRATEGIES)}")
    if strategy != "auto":
        return strategy
    return "best_score" if negatives and mmr is None else "average"


@dataclass(frozen=True)
class SearchResult:
    """The hits of one search and what the query was (the first positive example, for
    single-example callers, plus every example).  ``score_name`` says what ``hit.score``
    is: ``distance`` (Euclidean, smaller is closer) or ``score`` (higher is better)."""

    query_kind: str  # "image" | "point" | "location"
    query_id: str | None
    query_payload: dict | None
    hits: tuple[SearchHit, ...]
    query_pixels: np.ndarray | None = None
    examples: tuple[ResolvedExample, ...] = ()
    strategy: str = "average"
    score_name: str = "distance"
    offset: int = 0
    expanded: tuple[str, ...] = ()  # ids of the hits averaged into the query (``expand``)
    notes: tuple[str, ...] = ()  # what a user should know about the ranking (see :func:`ranking_notes`)


def parse_lonlat(text: str) -> tuple[float, float]:
    """Parse ``"LON,LAT"``; InputError when malformed or out of range."""
    try:
        lon, lat = (float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"location {text!r} is invalid; use LON,LAT in degrees, e.g. --at -95.36,29.75") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        swapped = (f" (LON comes first: if you meant latitude {lon:g}, longitude {lat:g}, write {lat:g},{lon:g})"
                   if -90 <= lon <= 90 and -180 <= lat <= 180 else "")
        raise InputError(f"location {text!r} is out of range; LON must be within ±180 and LAT within ±90{swapped}")
    return lon, lat


class Index:
    """A store plus the model bundle that made its vectors."""

    def __init__(self, store, bundle) -> None:
        self.store, self.bundle = store, bundle
        self._embedder = None

    @classmethod
    def open(cls, index: str | None = None, *, qdrant_url: str | None = None, api_key: str | None = None,
             model=None, read_only: bool = True) -> Index:
        """Open an index read-only with the bundle (default: the shipped model)."""
        from rsir_stac.model.bundle import ModelBundle, load_bundle
        from rsir_stac.store import open_store

        bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
        store = open_store(index, qdrant_url=qdrant_url, api_key=api_key, read_only=read_only)
        try:
            meta = store.meta()
            if meta is None:
                from rsir_stac.errors import IndexNotFoundError

                raise IndexNotFoundError(f"{store.describe()} is empty or missing; run `rsir-stac ingest` into it first")
            if getattr(store, "foreign", None):
                raise IncompatibleIndexError(
                    f"{store.describe()} was not made by rsir-stac (no rsir-stac metadata; it holds {store.foreign}); "
                    "pass --qdrant-collection with a collection rsir-stac ingest or migrate wrote")
            if meta.distance != "Euclid":  # what the engine ranks by must be what the model was trained for
                raise IncompatibleIndexError(
                    f"{store.describe()} ranks by {meta.distance} distance, and rsir-stac's vectors are compared by "
                    "Euclidean distance; ingest (or migrate) into a new --qdrant-collection NAME")
            if meta.model_id != bundle.model_id or meta.dim != bundle.dim:
                from rsir_stac.model.bundle import model_name, shipped_hint

                where = (f"--index {store.location}" if store.backend == "edge"
                         else f"--qdrant-url {store.location} --collection {store.collection}")
                raise IncompatibleIndexError(
                    f"{store.describe()} was built with model {meta.model_id} ({meta.dim}-d), not "
                    f"{bundle.model_id} ({bundle.dim}-d"
                    + (f", {bundle.views} views per tile" if bundle.views > 1 else "")
                    + f"); pass --model with the bundle that built it{shipped_hint(meta.model_id)}, or move the "
                    f"index to this model with `rsir-stac reindex {where} --to NEW --model {model_name(bundle)}`"
                    + ("" if store.backend == "edge" else
                       " and open NEW with --qdrant-collection NEW")
                )
            if meta.unfinished:  # a reindex or migrate target read before its run ended
                from rsir_stac.store.base import unfinished_note

                log.warning("%s", unfinished_note(store, meta))
        except BaseException:
            store.close()
            raise
        return cls(store, bundle)

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self.bundle.embedder()
        return self._embedder

    def embed_image(self, pixels: np.ndarray) -> np.ndarray:
        """The stored-dimension vector of an H×W×3 uint8 RGB array (InputError otherwise:
        :func:`~rsir_stac.examples.check_pixels`)."""
        return self.embedder.embed([check_pixels(pixels)])[0]

    def resolve(self, examples: Sequence[Example], *, positive: bool = True,
                prefer: SearchFilter | None = None) -> list[ResolvedExample]:
        """Vectors of examples: images are embedded, point ids and locations looked up (one
        batch).  A location takes the tile there (:meth:`Store.point_at`), among those of the
        dates, collections and items ``prefer`` allows when one covers it (the search's own
        filter: in a time series, the example comes from the dates searched).  Raises
        PointNotFoundError for an unknown id or an uncovered location."""
        out: list[ResolvedExample | None] = [None] * len(examples)
        tiles: dict[tuple[float, float], Any] = {}
        ids = [(n, normalize_id(e.value)) for n, e in enumerate(examples) if e.kind == "point"]
        if ids:
            for (n, _), hit in zip(ids, self.store.retrieve([i for _, i in ids], with_vectors=True)):
                out[n] = ResolvedExample("point", positive, hit.vector, hit.id, hit.payload)
        for n, e in enumerate(examples):
            if e.kind in ("image", "pixels"):
                from rsir_stac.tiling import read_image

                px = read_image(e.value, bands=e.bands) if e.kind == "image" else np.asarray(e.value)
                out[n] = ResolvedExample("image", positive, self.embed_image(px), pixels=px,
                                         source=os.fspath(e.value) if e.kind == "image" else None)
            elif e.kind == "vector":
                out[n] = ResolvedExample("image", positive, self._check_vector(e.value), size=e.size)
            elif e.kind == "location":
                at = (float(e.value[0]), float(e.value[1]))
                if at not in tiles:  # the same place given twice is looked up once
                    tiles[at] = self._tile_at(at, prefer)
                hit = tiles[at]
                out[n] = ResolvedExample("location", positive, hit.vector, hit.id, hit.payload)
        return [r for r in out if r is not None]

    def _tile_at(self, at: tuple[float, float], prefer: SearchFilter | None):
        """The tile at a location, from ``prefer``'s dates, collections and items if one covers it."""
        when = None if prefer is None else SearchFilter(start=prefer.start, end=prefer.end,
                                                        collections=prefer.collections, item_ids=prefer.item_ids)
        if when is not None and not when.is_empty:
            try:
                return self.store.point_at(*at, when, with_vectors=True)
            except PointNotFoundError:
                hit = self.store.point_at(*at, with_vectors=True)
                log.info("no tile at %s,%s has the searched dates or collection; the example is the tile "
                            "there from %s (%s)", at[0], at[1], hit.payload.get("datetime") or "no date",
                            hit.payload.get("collection") or "no collection")
                return hit
        return self.store.point_at(*at, with_vectors=True)

    def _check_vector(self, value: Any) -> np.ndarray:
        vec = np.asarray(value, dtype=np.float32)
        if vec.shape != (self.bundle.dim,) or not np.isfinite(vec).all():
            raise InputError(f"example vector of shape {vec.shape} is not a finite {self.bundle.dim}-d vector of "
                             f"model {self.bundle.model_id}; embed the image with this index's model")
        return vec

    def labels_here(self, labels: LabelSet, what: str = "label set") -> LabelSet:
        """``labels`` with this index's point ids: a set made on an index of another model over
        the same tiles (before ``rsir-stac reindex``) is matched tile by tile
        (:func:`rsir_stac.label_transfer.labels_in_index`).

        Raises PointNotFoundError (naming ``what``) when a labelled tile is not in this index."""
        from rsir_stac.label_transfer import labels_in_index

        return labels_in_index(self.store, labels, self.bundle.model_id, what)

    def label_examples(self, labels: LabelSet, what: str = "label set") -> tuple[list[Example], list[Example]]:
        """Positive and negative examples from a label set of this index (or of an index of another
        model over the same tiles: :meth:`labels_here`).

        Raises PointNotFoundError (naming ``what``) when a labelled tile is not in this index."""
        labels = self.labels_here(labels, what)
        ex = [Example("point", lb.point_id, origin=_label_origin(labels, lb)) for lb in labels.labels]
        return ([e for e, lb in zip(ex, labels.labels) if lb.positive],
                [e for e, lb in zip(ex, labels.labels) if not lb.positive])

    def search(self, *, image: str | None = None, point_id: str | None = None,
               at: tuple[float, float] | None = None, pixels: np.ndarray | None = None,
               positives: Sequence[Example] = (), negatives: Sequence[Example] = (),
               labels: LabelSet | None = None, strategy: str = "auto", mmr: float | None = None,
               per_item: int | str | None = "auto", exclude_within_m: float | None = None,
               flt: SearchFilter | None = None, k: int = 10, offset: int = 0,
               include_query: bool = False, with_vectors: bool = False, with_payload: bool = True,
               expand: int = 0) -> SearchResult:
        """Stored tiles most like the positive examples (and least like the negatives).

        Examples: ``image``/``point_id``/``at``/``pixels`` (one positive each, the
        single-example form), ``positives``/``negatives`` (:class:`Example` lists),
        and ``labels`` (a :class:`~rsir_stac.labels.LabelSet`).  ``strategy`` names
        the engine query (:data:`rsir_stac.store.query.STRATEGIES`), or ``"auto"`` (the default,
        :func:`pick_strategy`: ``best_score`` with negatives, else ``average``); ``mmr``
        (diversity 0–1) re-ranks with maximal marginal relevance; ``per_item`` keeps
        at most that many hits per scene (None or 0: no cap); ``"auto"``, the default,
        is a soft cap of :data:`AUTO_PER_ITEM`: hits from other scenes come first, so
        a page is not one scene's adjacent tiles, and the capped-out hits follow when
        there are no more scenes (a small index, a large k); ``exclude_within_m``
        drops tiles whose centre is within that many metres of a stored positive
        example's footprint.  Hits
        ``offset .. offset+k`` (offset + k <= 10,000).  Stored examples are left out of
        the hits unless ``include_query``.  ``with_payload=False`` returns bare hits (id
        and score) for paging them in later (:func:`rsir_stac.export.search_pages`).
        ``expand`` = n > 0 is average query expansion (Chum et al. 2007; Radenović et al.
        2018): the query's n nearest stored tiles (same filter, examples left out) join
        the positive examples, then the search runs again; ``score`` is then measured
        from the expanded query and ``SearchResult.expanded`` lists the n tiles.
        ``benchmarks/RESULTS.md`` §7 measures what it gains.

        Raises InputError (no positive, bad k/strategy/expand, labels of another model),
        PointNotFoundError (unknown id, labels of another index).
        """
        from rsir_stac.evaluate import check_expand
        from rsir_stac.store.exclusion import Exclusion
        from rsir_stac.store.query import ExampleQuery, check_k

        check_k(k, offset)
        expand = check_expand(expand)
        if flt is not None and not isinstance(flt, SearchFilter):
            raise InputError(f"flt is a {type(flt).__name__}, not a SearchFilter; give e.g. "
                             "SearchFilter(bbox=(W, S, E, N), start=..., collections=(...))")
        per_item, fill = _per_item_cap(per_item)
        pos, neg = self._gather_examples(image, point_id, at, pixels, positives, negatives, labels)
        strategy = pick_strategy(strategy, len(neg), mmr)
        if exclude_within_m is not None and not (0 <= float(exclude_within_m) < float("inf")):
            raise InputError(f"exclusion distance {exclude_within_m!r} must be a finite number >= 0 metres, "
                             "e.g. --exclude-within 100")
        rp, rn = self._resolve_examples(pos, neg, flt)
        query = ExampleQuery(tuple(r.vector for r in rp), tuple(r.vector for r in rn), strategy=strategy, mmr=mmr)
        ids = frozenset() if include_query else frozenset(r.id for r in rp + rn if r.id)
        around, areas = _footprint_exclusions(rp, exclude_within_m)
        expanded: tuple[str, ...] = ()
        unranked = None
        if expand:
            query, expanded, tied = self._expand_query(query, rp + rn, expand, flt, around, areas, strategy, mmr)
            unranked = None if not tied else ("query expansion was left out: the first search could not rank "
                                              f"its hits (the {strategy} strategy gave them all one score), so "
                                              "any 'nearest' tiles would be arbitrary; use another strategy")
        hits = self.store.query(query, k, offset=offset, flt=flt, exclude=Exclusion(ids, around, areas),
                                per_item=per_item, fill=fill, with_vectors=with_vectors,
                                with_payload=with_payload)
        first = rp[0]
        excluded = left_out_note(self.store, query, hits, offset, flt, ids, around, areas, exclude_within_m)
        size_note = query_size_note(rp + rn, self.bundle.tile_size) if self.bundle is not None else None
        return SearchResult(first.kind, first.id, first.payload, tuple(hits), first.pixels, tuple(rp + rn),
                            strategy, query.score_name, offset, expanded,
                            tuple(ranking_notes(strategy, hits, len(query.positives), len(query.negatives), mmr)
                                  + [n for n in (size_note,
                                                 swapped_bbox_note(flt), outside_note(rp, flt), excluded, unranked,
                                                 mmr_note(mmr, hits, query.score_name),
                                                 cap_note(query.score_name) if fill and mmr is None
                                                 and reordered(hits, query.score_name) else None)
                                     if n]))

    def _resolve_examples(self, pos: Sequence[Example], neg: Sequence[Example], flt: SearchFilter | None
                          ) -> tuple[list[ResolvedExample], list[ResolvedExample]]:
        """The positive and negative examples of a search resolved to vectors (:meth:`resolve`),
        repeats dropped (:func:`rsir_stac.examples.distinct`).  Raises InputError when a stored tile is both."""
        rp = self.resolve(pos, positive=True, prefer=flt)
        rn = self.resolve(neg, positive=False, prefer=flt)
        refuse_contradictions(pos, rp, neg, rn)
        return distinct(rp), distinct(rn)

    def _gather_examples(self, image: str | None, point_id: str | None, at: tuple[float, float] | None,
                         pixels: np.ndarray | None, positives: Sequence[Example], negatives: Sequence[Example],
                         labels: LabelSet | None) -> tuple[list[Example], list[Example]]:
        """``(positives, negatives)`` of a search: the single examples given (``image``,
        ``point_id``, ``at``, ``pixels``), then ``positives``/``negatives``, then the examples of
        ``labels``.  Raises InputError when there is no positive (and what
        :meth:`label_examples` raises)."""
        pos = [Example(kind, v) for kind, v in (("image", image), ("point", point_id), ("location", at),
                                                ("pixels", pixels)) if v is not None]
        pos += check_examples(positives, "positives")
        neg = check_examples(negatives, "negatives")
        if labels is not None:
            if not pos:
                labels.require_positive()
            lp, ln = self.label_examples(labels)
            pos, neg = pos + lp, neg + ln
        if not pos:
            raise InputError("give at least one positive example: --image FILE, --point-id ID, --at LON,LAT "
                             "or a labels file with a positive label")
        return pos, neg

    def _expand_query(self, query, examples: Sequence[ResolvedExample], expand: int, flt: SearchFilter | None,
                      around: tuple, areas: tuple, strategy: str, mmr: float | None
                      ) -> tuple[Any, tuple[str, ...], bool]:
        """``(query, expanded, tied)``: average query expansion, the ``expand`` stored tiles nearest
        ``query`` (same filter and exclusions, the stored ``examples`` left out) averaged into its
        positives (:func:`expanded_positives`), and their ids; ``tied``: the first search gave its
        hits one score (the context strategy's ties), so ``query`` is returned as it was."""
        from rsir_stac.store.exclusion import Exclusion
        from rsir_stac.store.query import ExampleQuery

        first = self.store.query(ExampleQuery(query.positives, query.negatives, strategy=strategy), expand,
                                 flt=flt, exclude=Exclusion(frozenset(r.id for r in examples if r.id), around,
                                                            areas),
                                 per_item=None, with_vectors=True, with_payload=False)
        if len(first) > 1 and len({h.score for h in first}) == 1 and query.higher_is_better:
            return query, (), True  # one score for all (context's ties): no "nearest" tiles to expand with
        expanded = tuple(h.id for h in first)
        positives = expanded_positives(query.positives, [h.vector for h in first], strategy)
        return ExampleQuery(positives, query.negatives, strategy=strategy, mmr=mmr), expanded, False


def expanded_positives(positives: Sequence[np.ndarray], neighbours: Sequence[np.ndarray],
                       strategy: str) -> tuple[np.ndarray, ...]:
    """The positive example vectors of an expanded query (average query expansion, Chum et al.
    2007): for ``average``, one vector, the mean of the positives and the ``neighbours``
    (the same ranking as searching from all of them); for the strategies that score each
    candidate against each example (``best_score``, ``sum_scores``, ``discover``, ``context``,
    ``feedback``), each neighbour joins the positive it lies nearest (Euclidean) and each positive
    becomes the mean of itself and its neighbours.  A neighbour is never an example itself, so it
    cannot match itself and outrank every other tile.  Shapes: each vector ``(dim,)``; as many
    positives come out as went in (one for ``average``)."""
    pos = np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in positives])
    if not len(neighbours):
        return tuple(p.astype(np.float32) for p in pos)
    nb = np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in neighbours])
    if strategy == "average":
        return (np.concatenate([pos, nb]).mean(axis=0).astype(np.float32),)
    nearest = ((nb[:, None, :] - pos[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    return tuple(np.vstack([pos[i], nb[nearest == i]]).mean(axis=0).astype(np.float32) for i in range(len(pos)))


def _per_item_cap(per_item: int | str | None) -> tuple[int | None, bool]:
    """``(per_item, fill)`` of a search's ``per_item``: 0 (as the command line's ``--per-item 0``)
    is no cap (None); ``"auto"`` is the soft cap of :data:`AUTO_PER_ITEM` hits per scene
    (``fill``: the capped-out hits follow when there are no more scenes)."""
    if per_item == 0 and not isinstance(per_item, bool):
        per_item = None  # as the command line's --per-item 0 and the API's per_item 0: no cap
    fill = per_item == "auto"
    if fill:
        per_item = AUTO_PER_ITEM
    return per_item, fill


def _label_origin(labels: LabelSet, label) -> str | None:
    """Where ``label`` of ``labels`` was read, e.g. ``labels.geojson feature 3`` (None: not from a file)."""
    if not labels.source:
        return None
    return f"{labels.source} feature {label.feature}" if label.feature else labels.source


def _footprint_exclusions(rp: Sequence[ResolvedExample], exclude_within_m: float | None) -> tuple[tuple, tuple]:
    """``(around, areas)``: the circles and rings within ``exclude_within_m`` metres of the
    stored positive examples' footprints (:func:`rsir_stac.store.exclusion.footprint_exclusion`);
    empty when no distance is given.  Raises InputError for more than
    :data:`MAX_EXCLUDED_FOOTPRINTS` footprints (each area takes a few milliseconds to build and
    adds a polygon every candidate is tested against)."""
    from rsir_stac.store.exclusion import footprint_exclusion

    if exclude_within_m is None:
        return (), ()
    stored = [r for r in rp if r.payload]
    if len(stored) > MAX_EXCLUDED_FOOTPRINTS:
        raise InputError(f"an exclusion around {len(stored)} stored positive examples is asked; it is built for at "
                         f"most {MAX_EXCLUDED_FOOTPRINTS}: give fewer positives, or search without --exclude-within "
                         "(API: exclude_within_m)")
    parts = [footprint_exclusion(r.payload, float(exclude_within_m)) for r in stored]
    around = tuple(a for circles, _ in parts for a in circles)
    areas = tuple(ring for _, rings in parts for ring in rings)
    return around, areas


def hit_record(hit: SearchHit, score_name: str = "distance") -> dict[str, Any]:
    """A flat JSON-friendly record of one hit (``score_name``: distance or score)."""
    return {"id": hit.id, score_name: hit.score, **hit.payload}


def to_geojson(result: SearchResult) -> dict[str, Any]:
    """A FeatureCollection of result footprints (polygons, lon/lat; MultiPolygons cut at
    the antimeridian) with rank, distance and payload."""
    from rsir_stac.labels import footprint_geometry

    feats = []

    for rank, hit in enumerate(result.hits, result.offset + 1):
        geom = footprint_geometry(hit.payload)
        props = {"rank": rank, result.score_name: hit.score, "id": hit.id}
        for key, value in hit.payload.items():
            if key in ("corners",):
                continue
            props[key] = value if not isinstance(value, (dict, list)) else _flat(value)
        feats.append({"type": "Feature", "id": hit.id, "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats,
            "query": {"kind": result.query_kind, "id": result.query_id, "strategy": result.strategy,
                      "positives": [e.name for e in result.examples if e.positive],
                      "negatives": [e.name for e in result.examples if not e.positive],
                      **({"expanded": list(result.expanded)} if result.expanded else {})}}


def _flat(value: Any) -> Any:
    # QGIS shows nested JSON as text; keep it compact
    import json

    return json.dumps(value, separators=(",", ":"))
