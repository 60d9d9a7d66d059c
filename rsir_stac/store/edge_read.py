"""The raw reads of an Edge index: search, query, retrieve, scroll and count.

The engine primitives :class:`~rsir_stac.store.base.Store` ranks and pages on
(``_search_raw``, ``_query_raw``, ``_retrieve_raw``, ``_scan``), each one engine
call per page, its hits verified (:mod:`rsir_stac.store.edge_verify`).  The search
path is performance-critical (``benchmarks/query.py``): keep per-hit work out of
it.  :class:`EdgeReadMixin` is part of :class:`~rsir_stac.store.edge.EdgeStore`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np

from rsir_stac.store.base import HNSW_EF, acorn_selectivity
from rsir_stac.store.engine_filters import to_edge_filter
from rsir_stac.store.filters import SearchFilter
from rsir_stac.store.payloads import _vector_of, hit_from_record, unpack_payload
from rsir_stac.store.records import SearchHit

log = logging.getLogger("rsir_stac.store.edge")  # the name the index's messages have always carried


def graph_params(flt: SearchFilter | None) -> Any:
    """The ``qdrant_edge.SearchParams`` of a graph search: width :data:`HNSW_EF`, and
    ACORN for a filter (:func:`~rsir_stac.store.base.acorn_selectivity`)."""
    import qdrant_edge as q

    sel = acorn_selectivity(flt)
    if sel is None:
        return q.SearchParams(hnsw_ef=HNSW_EF)
    return q.SearchParams(hnsw_ef=HNSW_EF, acorn=q.AcornSearchParams(enable=True, max_selectivity=sel))


class EdgeReadMixin:
    """The engine reads of an :class:`~rsir_stac.store.edge.EdgeStore` (a part of that
    class, on its attributes)."""

    def _search_raw(
        self,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None,
        exclude_ids: Collection[str],
        with_vectors: bool,
        exact: bool,
    ) -> list[tuple[float, str, Any]]:
        import qdrant_edge as q

        req = q.QueryRequest(
            limit=limit,
            query=q.Query.Nearest(vector.tolist()),
            filter=to_edge_filter(flt, exclude_ids=exclude_ids),
            with_payload=True,
            with_vector=with_vectors,
            params=q.SearchParams(exact=True) if exact else graph_params(flt),
        )
        try:
            res = self._shard.query(req)
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, "searching") from None
        if len(res) < limit:
            self._note_left_out(len(res), limit, lambda: to_edge_filter(flt, exclude_ids=exclude_ids))
        return [(r.score, str(r.id), r) for r in res]

    def _note_left_out(self, got: int, limit: int, efilter: Any) -> None:
        """Warn when a search returned fewer hits than it asked for although more points match:
        the engine silently leaves out a point whose stored vector is not finite (damaged bytes
        read as NaN), so a short answer is the cheap sign of it (one exact count, only then)."""
        import qdrant_edge as q

        try:
            n = int(self._shard.count(q.CountRequest(exact=True, filter=efilter())))
        except Exception:  # noqa: BLE001 - only a note: the search itself succeeded
            return
        if min(n, limit) > got:
            log.warning("index %s: the search returned %d hits, but %d points match it; the engine leaves out points "
                        "whose stored vector is damaged (not a finite number), so run `rsir-stac check --index %s` "
                        "(then `--repair` and re-run the ingest that built it)", self.index, got, min(n, limit),
                        self.index)

    def _query_raw(self, query: Any, limit: int, flt: SearchFilter | None, excl: Any,
                   fields: Sequence[str] | None) -> list[SearchHit]:
        """Engine query for :func:`rsir_stac.store.query.run_query`: (id, score[, fields]) rows."""
        import qdrant_edge as q

        from rsir_stac.store.query import edge_filter, edge_query

        req = q.QueryRequest(limit=limit, query=edge_query(query, limit), filter=edge_filter(flt, excl),
                             with_payload=q.PayloadSelector.Include(list(fields)) if fields else False,
                             with_vector=False, params=graph_params(flt))
        try:
            res = self._shard.query(req)
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, "querying") from None
        if len(res) < limit:
            self._note_left_out(len(res), limit, lambda: edge_filter(flt, excl))
        hits = [hit_from_record(r, False) for r in res]
        if fields:
            self._verify([h.id for h in hits], [h.payload for h in hits], None, subset=True)
        return hits

    def _ids_from(self, start: str | None, limit: int, flt: SearchFilter | None, excl: Any) -> list[str]:
        """Up to ``limit`` ids in id order from ``start`` (inclusive) among points matching ``flt``."""
        import qdrant_edge as q

        from rsir_stac.store.query import edge_filter

        req = q.ScrollRequest(offset=start, limit=max(1, int(limit)), filter=edge_filter(flt, excl),
                              with_payload=False, with_vector=False)
        try:
            recs, _ = self._shard.scroll(req)
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, "scrolling points") from None
        return [str(r.id) for r in recs]

    def _retrieve_raw(self, ids: Sequence[str], with_payload: bool, with_vectors: bool) -> list[SearchHit]:
        try:
            recs = self._shard.retrieve(list(ids), with_payload, with_vectors)
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, "retrieving points") from None
        hits = [hit_from_record(r, with_vectors, 0.0) for r in recs]
        self._verify_hits(hits, with_payload, with_vectors)
        return hits

    def _scan(
        self,
        flt: SearchFilter | None,
        *,
        around: tuple[float, float, float] | None = None,
        fields: Sequence[str] | None = None,
        with_vectors: bool = False,
        batch: int = 1000,
    ) -> Iterator[tuple[str, dict, np.ndarray | None]]:
        import qdrant_edge as q

        if self._shard is None:
            return
        with_payload: Any = q.PayloadSelector.Include(list(fields)) if fields is not None else True
        for recs in self._scroll_pages(to_edge_filter(flt, around=around), batch, with_payload, with_vectors):
            rows = [(str(r.id), unpack_payload(r.payload), _vector_of(r.vector) if with_vectors else None)
                    for r in recs]
            self._verify([i for i, _, _ in rows], [p for _, p, _ in rows] if fields is None or fields else None,
                         [v for _, _, v in rows] if with_vectors else None, subset=fields is not None)
            yield from rows

    def _scroll_pages(self, efilter: Any, batch: int, with_payload: Any, with_vector: bool) -> Iterator[list]:
        """Pages of engine records of a filtered scroll, ``batch`` at a time, until the end."""
        import qdrant_edge as q

        offset = None
        while True:
            req = q.ScrollRequest(offset=offset, limit=max(1, int(batch)), filter=efilter,
                                  with_payload=with_payload, with_vector=with_vector)
            try:
                recs, offset = self._shard.scroll(req)
            except Exception as exc:  # noqa: BLE001
                raise self._engine_error(exc, "scrolling points") from None
            if recs:
                yield recs
            if offset is None or not recs:
                return

    def _vector_batches(self, flt: SearchFilter | None, batch: int = 4096) -> Iterator[tuple[Sequence[str], np.ndarray]]:
        """Bulk :meth:`Store._vector_batches`: scroll without payload (an empty payload
        selector costs as much as the vectors), vectors straight into one matrix, point
        ids converted only where indexed (:class:`_RecordIds`)."""
        if self._shard is None:
            return
        for recs in self._scroll_pages(to_edge_filter(flt), batch, False, True):
            vecs = [r.vector for r in recs]
            if not isinstance(vecs[0], list) or not vecs[0] or not isinstance(vecs[-1], list) or not vecs[-1]:
                self._verify([str(r.id) for r in recs], None, [_vector_of(v) for v in vecs])  # a missing one: damage
            dim = len(vecs[0]) if isinstance(vecs[0], list) else 0
            try:  # one pass over the floats: faster than np.array on a list of lists
                mat = np.fromiter(chain.from_iterable(vecs), np.float32, len(vecs) * dim).reshape(len(vecs), dim)
            except (TypeError, ValueError):  # named vectors ({'': [...]}) or ragged (a missing one): one by one
                self._verify([str(r.id) for r in recs], None, [_vector_of(v) for v in vecs])
                mat = np.stack([_vector_of(v) for v in vecs]).astype(np.float32, copy=False)
            finite = np.isfinite(mat).all(axis=1)
            if not finite.all():
                raise self._nan_error(str(recs[int(np.flatnonzero(~finite)[0])].id))
            yield _RecordIds(recs), mat

    def count(self, flt: SearchFilter | None = None) -> int:
        return self._count(flt, True, "counting points")

    def estimate(self, flt: SearchFilter | None = None) -> int | None:
        """The engine's estimate of how many points match ``flt`` (its query planner's
        cardinality estimate, e.g. from geohash cells for a geo filter: no point is read)."""
        return self._count(flt, False, "estimating a count")

    def _count(self, flt: SearchFilter | None, exact: bool, action: str) -> int:
        import qdrant_edge as q

        self._check_open()
        if self._shard is None:
            return 0
        try:
            return int(self._shard.count(q.CountRequest(exact=exact, filter=to_edge_filter(flt))))
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, action) from None


class _RecordIds(Sequence):
    """Point ids of engine records as canonical strings, converted when indexed."""

    def __init__(self, recs: list) -> None:
        self._recs = recs

    def __len__(self) -> int:
        return len(self._recs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [str(r.id) for r in self._recs[i]]
        return str(self._recs[i].id)


__all__ = ["EdgeReadMixin", "graph_params"]
