"""Verification of what an Edge index reads back: damage the engine reads without an error.

The engine answers some storage damage (a zeroed payload tracker, modified
deleted flags or vector status) with empty or non-finite values and no error;
every read of :class:`~rsir_stac.store.edge.EdgeStore` tests the points it
returned (a loop over them, the digest ledger asked only about empty payloads),
so that such damage is a :class:`~rsir_stac.errors.StoreError` naming the fix,
not silent wrong output.  :class:`EdgeVerifyMixin` is part of that class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rsir_stac.errors import StoreError
from rsir_stac.store.records import SearchHit


class EdgeVerifyMixin:
    """The read-back checks of an :class:`~rsir_stac.store.edge.EdgeStore` (a part of that
    class, on its attributes)."""

    def _require_finite(self, pid: Any, vec: Any) -> None:
        """StoreError naming storage damage when a vector read back from the index is missing or
        empty (the engine reads none back for a point whose deleted flags or vector status file were
        modified) or holds NaN or infinite values (the model's are refused at write, so the stored
        bytes were modified)."""
        if vec is None or np.size(vec) == 0:
            raise self._no_vector_error(str(pid))
        if not np.all(np.isfinite(vec)):
            raise self._nan_error(str(pid))

    # -- damage the engine reads back without an error --------------------

    def _verify_hits(self, hits: Sequence[SearchHit], payload: bool, vectors: bool) -> None:
        """:meth:`_verify` of hits as :meth:`Store.search` and :meth:`_retrieve_raw` return them."""
        self._verify([h.id for h in hits], [h.payload for h in hits] if payload else None,
                     [h.vector for h in hits] if vectors else None)

    def _verify(self, ids: Sequence[str], payloads: Sequence[Any] | None, vectors: Sequence[Any] | None, *,
                subset: bool = False) -> None:
        """Raise StoreError naming storage damage when points read back lack what every point was
        written with: a vector (``vectors`` given: each must be there and finite) or its payload
        (``payloads`` given: an empty one is checked against the digest ledger; ``subset``: they
        are a selection of fields).  The engine answers such damage (a zeroed payload tracker,
        modified deleted flags) with empty values and no error, so this test on the points a read
        actually returned -- a loop over them, the ledger asked only about empty payloads -- keeps
        it from silent wrong output (hits, exports and migrations without metadata or vectors)."""
        if vectors is not None:
            for pid, vec in zip(ids, vectors):
                self._require_finite(pid, vec)
            changed = self._vectors_changed(ids, vectors)
            if changed:
                raise self._changed_vector_error(changed)
        if payloads is not None:
            empty = [pid for pid, p in zip(ids, payloads) if not p]
            if empty:
                lost = self._payloads_lost(empty, subset=subset)
                if lost:
                    raise self._no_payload_error(lost)

    def _vectors_changed(self, ids: Sequence[str], vectors: Sequence[Any]) -> list[str]:
        """Those of ``ids`` whose vector read back is not the one written: its digest differs from
        the ledger's (stored bytes modified, still finite numbers: a search from such a point found
        tiles of another continent, and export and migrate copied it).  One ledger lookup per read;
        points without a digest, or without a ledger, cannot be told (empty)."""
        from rsir_stac.store.digests import vector_digest

        if self._ledger is None or not ids:
            return []
        try:
            recorded = self._ledger.lookup(list(ids))
        except StoreError:
            return []
        return [str(pid) for pid, vec in zip(ids, vectors)
                if str(pid) in recorded and vector_digest(vec) != recorded[str(pid)][0]]

    def _changed_vector_error(self, ids: Sequence[str]) -> StoreError:
        more = f" (and {len(ids) - 1} more of the points read)" if len(ids) > 1 else ""
        return StoreError(
            f"index {self.index} is damaged: the stored vector of point {ids[0]}{more} is not the one written (its "
            f"digest differs: the vector storage under {self.collection}/segments/ was modified); nothing was "
            f"searched or copied from it: run `rsir-stac check --index {self.index} --repair`, then re-run the ingest "
            "that built it")

    def _payloads_lost(self, ids: list[str], *, subset: bool) -> list[str]:
        """Those of ``ids`` (points that read back with an empty payload) that were written with a
        payload: their digest in the ledger is not the empty payload's.  For a field selection
        (``subset``), a point may lack those fields, so the whole payload is read again first.
        Without a ledger nothing can tell (empty)."""
        from rsir_stac.store.digests import payload_digest

        if self._ledger is None:
            return []
        try:
            recorded = self._ledger.lookup(ids)
        except StoreError:
            return []
        empty = payload_digest({})[0]
        lost = [i for i in ids if i in recorded and recorded[i][1][0] != empty]
        if lost and subset:
            try:
                whole = self._shard.retrieve(lost, True, False)
            except Exception as exc:  # noqa: BLE001
                raise self._engine_error(exc, "retrieving points") from None
            lost = [str(r.id) for r in whole if not r.payload]
        return lost

    def _no_payload_error(self, ids: Sequence[str]) -> StoreError:
        more = f" (and {len(ids) - 1} more of the points read)" if len(ids) > 1 else ""
        return StoreError(
            f"index {self.index} is damaged: point {ids[0]}{more} reads back without its payload (item, footprint, "
            f"date), which it was written with (the payload storage under {self.collection}/segments/ was "
            f"modified); run `rsir-stac check --index {self.index} --repair`, then re-run the ingest that built it")

    def _no_vector_error(self, pid: str) -> StoreError:
        return StoreError(
            f"index {self.index} is damaged: the stored vector of point {pid} is missing (the engine reads none back, "
            f"but every point was written with one: the vector storage under {self.collection}/segments/ was "
            f"modified, e.g. its deleted flags or status file); run `rsir-stac check --index {self.index} --repair`, "
            "then re-run the ingest that built it")

    def _nan_error(self, pid: str) -> StoreError:
        return StoreError(
            f"index {self.index} is damaged: the stored vector of point {pid} reads back with NaN or infinite "
            f"values (the vector storage under {self.collection}/segments/ was modified; every written vector was "
            f"finite); run `rsir-stac check --index {self.index} --repair`, then re-run the ingest that built it")


__all__ = ["EdgeVerifyMixin"]
