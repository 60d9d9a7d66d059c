"""The abstract vector-store interface shared by the Edge and server back-ends, and its ranking.

Scores are Euclidean distances (smaller is closer).  Hits are sorted by
ascending distance and ties are broken by point id, so two engines holding the
same points return the same ranking.

The records (:class:`Point`, :class:`SearchHit`, :class:`IndexInfo`,
:class:`CollectionMeta`) live in :mod:`rsir_stac.store.records`, the stored form
of payloads in :mod:`rsir_stac.store.payloads`, and :meth:`Store.point_at` in
:mod:`rsir_stac.store.point_at`; they are imported here too.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError, PointNotFoundError, StoreError
from rsir_stac.store.envelope import EnvelopePlan, envelope_plan
from rsir_stac.store.filters import SearchFilter
from rsir_stac.store.payloads import (  # noqa: F401 - hit_from_record, pack_payload, PAYLOAD_INDEXES: tests and benchmarks
    PACKED,
    PAYLOAD_INDEXES,
    _vector_of,
    hit_from_record,
    pack_payload,
    unpack_payload,
)
from rsir_stac.store.point_at import PointAtMixin
from rsir_stac.store.records import CollectionMeta, IndexInfo, Point, SearchHit, normalize_id

log = logging.getLogger(__name__)

#: HNSW search width (``ef``) of every graph search, Edge and server alike (the
#: engine's default is 100).  At 1M points a collection filter matching a third of
#: them (too many for the exact scan, so searched through the graph) found 0.913 of
#: the true top 10 at ef 100, some queries none, and 0.995 (each query >= 0.9) at
#: 200, for 1.6 -> 2.4 ms p50; plain queries 0.992 -> 0.999 (benchmarks/RESULTS.md
#: section 13.5).  Geo filters on that index were answered by exact scans; where
#: tiles are dense they go through the graph too (see ACORN below).
HNSW_EF = 200

#: Filtered graph searches use ACORN (Patel et al., SIGMOD 2024; Qdrant's
#: ``AcornSearchParams``): when a neighbour fails the filter, the search looks at its
#: neighbours instead of stopping there.  The engine answers a filter by an exact scan
#: of the matching points while they are few in a segment (its ``full_scan_threshold``,
#: 10 MB of vectors: ~80,000 points at 32-d), and through the graph above that, which
#: happens where tiles are dense: many dates of one area, or a segment holding one
#: scene, as ingest writes them.  There, on 1M points in 4 scenes (each as dense as 10M
#: points in the benchmark's 40), ef 200 without ACORN found 0.85 (bbox) and 0.64 (6 km
#: radius) of the true top 10, some queries none; with ACORN at every selectivity 1.0 and
#: 0.999, at 1.3 and 2.9 ms p50 (RESULTS section 13.9).  The engine's own default (ACORN
#: only below 0.4 selectivity) did not engage there.  Set to 0 to switch ACORN off.
ACORN_MAX_SELECTIVITY = 1.0


def acorn_selectivity(flt: SearchFilter | None) -> float | None:
    """The ACORN ``max_selectivity`` a graph search with ``flt`` should send, or None for
    none: a filter with no condition (ids excluded from a plain search are no filter
    here) or ACORN switched off (:data:`ACORN_MAX_SELECTIVITY` <= 0)."""
    if flt is None or flt.is_empty or ACORN_MAX_SELECTIVITY <= 0:
        return None
    return ACORN_MAX_SELECTIVITY


def as_query_vector(vector: Any, dim: int | None, where: str) -> np.ndarray:
    """Validate one vector against the collection size; returns float32 1-D."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1:
        v = v.reshape(-1) if v.ndim == 2 and 1 in v.shape else v
    if v.ndim != 1:
        raise InputError(f"vector with shape {v.shape} for {where} must be 1-D; pass one embedding")
    if dim is not None and v.shape[0] != dim:
        raise IncompatibleIndexError(
            f"vector has {v.shape[0]} values but {where} holds {dim}-d vectors; use the model that built the index"
        )
    if not np.all(np.isfinite(v)):
        raise InputError(f"vector for {where} has NaN or infinite values; check the model output")
    return v


def _row_key(row: tuple[float, str, Any]) -> tuple[float, str]:
    return (row[0], row[1])  # by score, ties by id


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def is_legacy_item_id(payload: Mapping[str, Any]) -> bool:
    """Whether a point of a bare raster (no collection, asset ``data``) carries the
    old item id, the file name without extension (see README, "Scene identity")."""
    if payload.get("collection") or payload.get("asset") != "data":
        return False
    href, item = payload.get("href"), payload.get("item_id")
    if not isinstance(href, str) or not isinstance(item, str):
        return False
    import posixpath
    import urllib.parse

    path = urllib.parse.unquote(urllib.parse.urlsplit(href).path) if "://" in href else href
    stem = posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0]
    return item == stem


# --------------------------------------------------------------------------- interface


class Store(PointAtMixin, abc.ABC):
    """A collection of tile embeddings with geo-metadata.

    Concrete stores implement the engine primitives (``_search_raw``, ``_scan``,
    ``_retrieve_raw`` and the write/lifecycle methods); ranking, ``point_at``,
    ``existing_ids`` and ``info`` are shared here.
    """

    backend: str = "abstract"
    #: What opening the store found missing (points its digest ledger records but the engine does not
    #: hold), or None: commands that copy the whole index (migrate, export) refuse such a store rather
    #: than copy a part (damage the engine reports on reading is refused where it is read).
    damage_at_open: str | None = None
    location: str = ""
    collection: str = "rsir_tiles"
    read_only: bool = False

    # -- engine primitives -------------------------------------------------

    @abc.abstractmethod
    def meta(self) -> CollectionMeta | None:
        """The collection metadata, or None when the collection does not exist."""

    @abc.abstractmethod
    def _search_raw(
        self,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None,
        exclude_ids: Collection[str],
        with_vectors: bool,
        exact: bool,
    ) -> list[tuple[float, str, Any]]:
        """Engine nearest-neighbour query with payloads: ``(score, id, record)`` rows,
        unsorted ties allowed; :meth:`search` makes hits of only the records it keeps."""

    @abc.abstractmethod
    def _retrieve_raw(self, ids: Sequence[str], with_payload: bool, with_vectors: bool) -> list[SearchHit]:
        """Engine lookup by canonical ids; missing ids are left out."""

    @abc.abstractmethod
    def _scan(
        self,
        flt: SearchFilter | None,
        *,
        around: tuple[float, float, float] | None = None,
        fields: Sequence[str] | None = None,
        with_vectors: bool = False,
        batch: int = 1000,
    ) -> Iterator[tuple[str, dict, np.ndarray | None]]:
        """Scroll (id, unpacked payload, vector) of matching points; ``fields`` limits
        the stored fields read (name :data:`PACKED` for any non-indexed field)."""

    def _vector_batches(self, flt: SearchFilter | None, batch: int = 4096) -> Iterator[tuple[Sequence[str], np.ndarray]]:
        """Scroll the vectors of points matching ``flt`` without their payloads, ``batch``
        at a time: (ids, float32 matrix of shape (len(ids), dim)) in scroll order.

        ``ids`` may convert lazily (index only the rows needed: converting every engine
        id costs as much as the scroll itself).  Engines override this with a bulk path.
        """
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        for pid, _, vec in self._scan(flt, fields=[], with_vectors=True, batch=batch):
            ids.append(pid)
            vecs.append(vec)
            if len(ids) >= batch:
                yield ids, np.stack(vecs).astype(np.float32, copy=False)
                ids, vecs = [], []
        if ids:
            yield ids, np.stack(vecs).astype(np.float32, copy=False)

    # -- public abstract API ----------------------------------------------

    @abc.abstractmethod
    def ensure_collection(self, dim: int, model_id: str) -> None:
        """Create the collection (Euclid, payload indexes) or check it matches dim and model_id."""

    @abc.abstractmethod
    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or replace points by id (idempotent)."""

    def delete(self, ids: Collection[str]) -> None:
        """Remove the points ``ids`` (those not stored are ignored); back ends that can write override
        this.  Raises StoreError where the back end cannot."""
        raise StoreError(f"{self.describe()} cannot delete points")

    def estimate(self, flt: SearchFilter | None = None) -> int | None:
        """The engine's estimate of how many points match ``flt``, without reading them, or
        None where the back end gives none (then :meth:`count` is the only answer)."""
        return None

    @abc.abstractmethod
    def count(self, flt: SearchFilter | None = None) -> int:
        """Number of points matching ``flt`` (all points when None)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make all writes durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the engine (and any lock); idempotent."""

    # -- shared behaviour --------------------------------------------------

    def _require_meta(self) -> CollectionMeta:
        meta = self.meta()
        if meta is None:
            raise StoreError(
                f"{self.describe()} has no collection {self.collection!r} yet; ingest tiles into it first"
            )
        return meta

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.describe()} was opened read-only; open it with read_only=False to write")

    def describe(self) -> str:
        """Human name for messages, e.g. ``index /data/idx`` or ``Qdrant http://h:6333 collection c``."""
        return f"index {self.location}"

    def search(
        self,
        vector: Any,
        k: int = 10,
        flt: SearchFilter | None = None,
        exclude_ids: Collection[str] = (),
        with_vectors: bool = False,
        *,
        exact: bool = False,
    ) -> list[SearchHit]:
        """The ``k`` nearest points to ``vector`` matching ``flt``, minus ``exclude_ids``.

        ``exact=True`` forces a brute-force scan even where an HNSW graph exists.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k={k!r} must be a positive integer; ask for at least one result")
        meta = self._require_meta()
        v = as_query_vector(vector, meta.dim, self.describe())
        excl = {normalize_id(i) for i in exclude_ids} if exclude_ids else set()
        # one hit more than asked tells whether a tie group straddles the cut (the HNSW
        # search width does not depend on the limit: ef is max(hnsw_ef, limit), HNSW_EF)
        limit = k + 1
        plan = None if exact else envelope_plan(flt)
        if plan is not None and not plan.worth_it(self.estimate(flt), meta.dim):
            plan = None
        while True:
            rows = self._filtered_rows(v, limit, flt, excl, with_vectors, exact, plan)
            rows.sort(key=_row_key)
            # a tie group may straddle the cut: widen until the k-th score is settled
            if len(rows) < limit or rows[k - 1][0] < rows[-1][0]:
                break
            limit *= 4
        # payloads are fetched with the search (one engine call; RESULTS §13.12) and
        # decoded only for the k kept hits
        hits = [SearchHit(i, float(score), unpack_payload(rec.payload), _vector_of(rec.vector) if with_vectors else None)
                for score, i, rec in rows[:k]]
        self._verify_hits(hits, True, with_vectors)
        return hits

    def _verify_hits(self, hits: Sequence[SearchHit], payload: bool, vectors: bool) -> None:
        """Raise StoreError when hits read back lack what they were written with (storage damage the
        engine does not report); engines that can tell override this (Edge, with its digest ledger)."""

    def _filtered_rows(self, v: np.ndarray, limit: int, flt: SearchFilter | None, excl: Collection[str],
                       with_vectors: bool, exact: bool, plan: EnvelopePlan | None) -> list[tuple[float, str, Any]]:
        """:meth:`_search_raw`, a polygon through its envelope first where ``plan`` says so
        (:mod:`rsir_stac.store.envelope`): the ``plan.wide(limit)`` nearest in the envelope,
        those inside the polygon kept, unless fewer than ``limit`` remain of an envelope that
        held more; then the polygon itself."""
        if plan is not None and (wide := plan.wide(limit)) <= HNSW_EF:  # the walk's own width
            rows = self._search_raw(v, wide, plan.box_filter, excl, with_vectors, exact)
            keep = plan.inside([rec for _, _, rec in rows])
            kept = [row for row, ok in zip(rows, keep) if ok]
            if len(kept) >= limit or len(rows) < wide:
                return kept
        return self._search_raw(v, limit, flt, excl, with_vectors, exact)

    def query(self, query: Any, k: int = 10, **kwargs: Any) -> list[SearchHit]:
        """Hits of an :class:`~rsir_stac.store.query.ExampleQuery` (several positive and
        negative examples) through the engine's own query API; see
        :func:`rsir_stac.store.query.run_query` for ``offset``, ``flt``, ``exclude``,
        ``per_item``, ``fill`` and ``with_vectors``."""
        from rsir_stac.store.query import run_query

        return run_query(self, query, k, **kwargs)

    def retrieve(self, ids: Iterable[str], with_vectors: bool = False) -> list[SearchHit]:
        """Points by id, in the order asked (duplicates once); score 0.

        Raises PointNotFoundError naming the first id that is not stored.
        """
        want = list(dict.fromkeys(normalize_id(i) for i in ids))
        if not want:
            return []
        self._require_meta()
        found: dict[str, SearchHit] = {}
        for part in chunks(want, 1000):
            for h in self._retrieve_raw(part, True, with_vectors):
                found[h.id] = h
        missing = [i for i in want if i not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            ledger = getattr(self, "_ledger", None)
            try:
                lost = [i for i in missing if i in ledger.lookup(missing)] if ledger is not None else []
            except StoreError:
                lost = []
            if lost:  # written and recorded, now gone: damage, not a mistyped id
                raise StoreError(
                    f"point {lost[0]} was written to {self.describe()} (its digest is recorded) but is lost from it: "
                    f"the index is damaged; run `rsir-stac check --index {self.location} --repair`, then re-run "
                    "the ingest that built it")
            raise PointNotFoundError(
                f"point {missing[0]}{more} is not in {self.describe()}; check the id or ingest it first (ids "
                "change with the model: one from an index of another model, such as before a reindex, is not here; "
                "search at its place with --at LON,LAT)"
            )
        return [found[i] for i in want]

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` already stored (canonical form), for resumable ingest (engines that
        verify what they store return only the intact ones)."""
        return self.present_ids(ids)

    def present_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` stored, intact or not (canonical form)."""
        want = list(dict.fromkeys(normalize_id(i) for i in ids))
        if not want or self.meta() is None:
            return set()
        out: set[str] = set()
        for part in chunks(want, 1000):
            out.update(h.id for h in self._retrieve_raw(part, False, False))
        return out

    def iter_points(self, batch: int = 1000, with_vectors: bool = True) -> Iterator[Point]:
        """Every stored point with payload (and vector), in scroll order; for migration."""
        if self.meta() is None:
            return
        for pid, payload, vec in self._scan(None, with_vectors=with_vectors, batch=batch):
            yield Point(id=pid, vector=vec if vec is not None else np.empty(0, np.float32), payload=payload)

    def info(self) -> IndexInfo:
        """Count, vector size, model, STAC collections, lon/lat extent (antimeridian-aware)
        and the points without a date or collection (one scan)."""
        from rsir_stac.tiling.footprints import BoundsUnion

        meta = self.meta()
        if meta is None:
            return IndexInfo(0, None, None, (), None, self.backend, self.location)
        cols: set[str] = set()
        boxes = BoundsUnion()
        n = undated = no_collection = legacy = 0
        fields = ["bbox", "collection", "item_id", "datetime_epoch", PACKED]
        for _, payload, _ in self._scan(None, fields=fields):
            n += 1
            c = payload.get("collection")
            if isinstance(c, str) and c:
                cols.add(c)
            else:
                no_collection += 1
            if payload.get("datetime_epoch") is None:
                undated += 1
            if is_legacy_item_id(payload):
                legacy += 1
            b = payload.get("bbox")
            if isinstance(b, list) and len(b) == 4:
                try:
                    boxes.add_box(b)
                except (TypeError, ValueError):
                    continue
        notes = []
        if legacy:
            notes.append(
                f"{legacy} points of bare rasters were indexed under the file name alone as item id (before "
                "path-based ids; two files with the same name shared it); they are kept and searchable, but re-ingesting "
                "those files adds them again under the new path-based id: ingest into a new --index to avoid "
                "duplicates")
        if undated:
            notes.append(f"{undated} points have no date and are left out by any --datetime filter; give bare "
                         "rasters one with `ingest --datetime`")
        if no_collection:
            notes.append(f"{no_collection} points have no collection and are left out by any --collection filter; "
                         "give bare rasters one with `ingest --collection`")
        return IndexInfo(
            count=n,
            dim=meta.dim,
            model_id=meta.model_id or None,
            collections=tuple(sorted(cols)),
            extent=boxes.bounds(),
            backend=self.backend,
            location=self.location,
            undated=undated,
            no_collection=no_collection,
            legacy_item_ids=legacy,
            notes=tuple(([unfinished_note(self, meta, n)] if meta.unfinished else []) + notes),
            unfinished=meta.unfinished,
        )

    def mark_unfinished(self, note: str) -> None:
        """Record in the collection's metadata that ``reindex``/``migrate`` is writing it (``note``:
        from where, since when) or, with ``""``, that it finished.  Readers warn about an unfinished
        index (:func:`unfinished_note`).  Raises StoreError when the metadata cannot be written."""
        from dataclasses import replace

        meta = self._require_meta()
        self._require_writable()
        if meta.unfinished != note:
            self._store_meta(replace(meta, unfinished=str(note)))

    def _store_meta(self, meta: CollectionMeta) -> None:
        """Write ``meta`` as the collection's metadata (the back end's own place for it)."""
        raise NotImplementedError

    def optimize(self) -> bool:
        """Build search indexes now where the engine needs it; True if anything changed."""
        return False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend} {self.location} collection={self.collection!r}>"


def unfinished_note(store: Store, meta: CollectionMeta, count: int | None = None) -> str:
    """The warning an unfinished index (``meta.unfinished``) is read with: what wrote it, how many
    points it holds, and the fix."""
    n = store.count() if count is None else count
    verb = "migrate" if meta.unfinished.startswith("a migrate") else "reindex"
    return (f"{store.describe()} is unfinished ({meta.unfinished}); it holds {n:,} points, maybe not all of its "
            f"source: re-run the same `rsir-stac {verb}` command to finish it")


__all__ = [
    "CollectionMeta",
    "IndexInfo",
    "PACKED",
    "PAYLOAD_INDEXES",
    "Point",
    "SearchHit",
    "Store",
    "normalize_id",
    "pack_payload",
    "unfinished_note",
    "unpack_payload",
]
