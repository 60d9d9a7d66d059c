"""Writing to an Edge index: upserts in batches, deletes, the optimize rounds, flushing.

Every write batch first checks free space (the engine answers a full disk with
SIGBUS), then records the points' digests in the ledger after the engine
accepted them; a capped shard is flushed and optimized each time its round of
``segment_points`` is written (:mod:`~rsir_stac.store.segments`).
:class:`EdgeWriteMixin` is part of :class:`~rsir_stac.store.edge.EdgeStore`, on its
attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence

from rsir_stac.errors import DiskFullError
from rsir_stac.store.base import chunks
from rsir_stac.store.payloads import check_points
from rsir_stac.store.records import CollectionMeta, Point
from rsir_stac.store.space import populates_mmaps, require_free, write_bytes

log = logging.getLogger("rsir_stac.store.edge")  # the name the index's messages have always carried

UPSERT_BATCH = 512


class EdgeWriteMixin:
    """The writes of an :class:`~rsir_stac.store.edge.EdgeStore` (a part of that class, on its
    attributes)."""

    def upsert(self, points: Sequence[Point]) -> None:
        """Write ``points`` (replacing same ids).  On a capped shard, every
        ``segment_points`` written points also flush and :meth:`optimize` (blocking;
        minutes per million points), so unindexed points never pile up in memory."""
        self._require_writable()
        meta = self._require_meta()
        rows = check_points(points, meta.dim, f"index {self.index}")
        try:
            self._upsert_rows(rows, meta)
        except BaseException:
            # nothing written yet into a folder this open created (a full disk refused the first
            # batch): the run leaves no empty index behind (close removes it)
            self._discard = self._made_dir and not self._wrote
            raise

    def _upsert_rows(self, rows: list, meta: CollectionMeta) -> None:
        import qdrant_edge as q

        for part in chunks(rows, UPSERT_BATCH):
            payload_bytes = sum(len(p.get("packed", "")) + 256 for _, _, p in part)
            if self._memfs is None:
                self._memfs = populates_mmaps(self.index)
            require_free(self.index, write_bytes(len(part), meta.dim, payload_bytes, memfs=self._memfs),
                         f"writing {len(part)} points to index {self.index}")
            op = q.UpdateOperation.upsert_points([q.Point(id=i, vector=v, payload=p) for i, v, p in part])
            try:
                self._shard.update(op)
            except Exception as exc:  # noqa: BLE001
                raise self._engine_error(exc, "upserting points") from None
            self._dirty = self._wrote = True
            if self._ledger is not None:
                self._ledger.record(part)  # after the engine: a crash in between leaves a point unverified
            if self._rounds.add(len(part)):
                log.info("index %s: %d points since the last optimize; indexing them as one segment",
                         self.index, self._rounds.pending)
                self.flush()
                self.optimize()

    def delete(self, ids: Collection[str]) -> None:
        """Remove the points ``ids`` from the shard, then their digests (a crash in between leaves
        digests of gone points, which ``check`` reports and ``--repair`` drops)."""
        import qdrant_edge as q

        from rsir_stac.store.records import normalize_id

        self._require_writable()
        self._require_meta()
        keys = [normalize_id(i) for i in ids]
        for part in chunks(keys, UPSERT_BATCH):
            try:
                self._shard.update(q.UpdateOperation.delete_points(part))
            except Exception as exc:  # noqa: BLE001
                raise self._engine_error(exc, "deleting points") from None
            self._dirty = True
            if self._ledger is not None:
                self._ledger.remove(part)

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` stored *and* intact: read back with vectors and
        payloads matching their recorded digests.  Points that are damaged, or
        have no digest, are not returned, so a resumed ingest writes them again."""
        from rsir_stac.store.readback import verified_ids

        present = self.present_ids(ids)
        if not present or self._ledger is None:
            return present
        return verified_ids(self, present)

    def optimize(self) -> bool:
        """Run Edge's segment optimizers (builds HNSW for large segments); blocking.
        Returns whether anything changed.  Skipped with a warning (False) when the
        disk cannot take it: search works without it."""
        self._require_writable()
        if self._shard is None:
            return False
        self._rounds.reset()
        from rsir_stac.store.space import optimize_bytes

        try:
            require_free(self.index, optimize_bytes(self.shard_dir), f"optimizing index {self.index}")
        except DiskFullError as exc:  # search works without it: skip, do not fail the run
            log.warning("skipping the index optimization: %s", exc)
            return False
        import time

        t0 = time.monotonic()
        log.info("index %s: building the search graph and payload indexes of the new points "
                 "(about 6 minutes per million points on 2 cores; benchmarks/RESULTS.md section 13)", self.index)
        try:
            changed = bool(self._shard.optimize())
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, "optimizing") from None
        log.info("index %s: optimized in %.1f s", self.index, time.monotonic() - t0)
        self._dirty = self._dirty or changed
        return changed

    def flush(self) -> None:
        if self._shard is None or self.read_only:
            return
        try:
            self._shard.flush()
        except Exception as exc:  # noqa: BLE001
            raise self._engine_error(exc, "flushing") from None
        self._dirty = False


__all__ = ["UPSERT_BATCH", "EdgeWriteMixin"]
