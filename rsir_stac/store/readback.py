"""Reading points back from the engine and comparing them with the digest ledger.

Every point's vector and payload read back (chunks the engine cannot read are
bisected down to the points it fails on) and hashed against the digests recorded
when it was written (:mod:`rsir_stac.store.digests`): the read-back pass of
``check``, what a repair keeps, and what ingest trusts (:func:`verified_ids`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsir_stac.store.digests import DigestLedger, payload_matches, vector_digest

_READ_CHUNK = 256


@dataclass
class ReadBack:
    """Outcome of reading points back against the ledger."""

    verified: set[str] = field(default_factory=set)
    unverified: set[str] = field(default_factory=set)  # readable, no digest recorded
    unreadable: set[str] = field(default_factory=set)
    vector_mismatch: set[str] = field(default_factory=set)
    payload_mismatch: set[str] = field(default_factory=set)
    good: list[tuple[str, list[float], dict]] = field(default_factory=list)  # kept when collecting


def _retrieve(shard: Any, ids: list[str]) -> list[Any] | None:
    try:
        return list(shard.retrieve(ids, True, True))
    except Exception:  # noqa: BLE001 - the engine raises bare Exception on damaged storage
        return None


def _read_points(shard: Any, ids: list[str]) -> Iterator[tuple[str, Any]]:
    """(id, record or None when unreadable), bisecting chunks the engine cannot read."""
    recs = _retrieve(shard, ids)
    if recs is not None:
        got = {str(r.id): r for r in recs}
        for i in ids:
            yield i, got.get(i)
        return
    if len(ids) == 1:
        yield ids[0], None
        return
    mid = len(ids) // 2
    yield from _read_points(shard, ids[:mid])
    yield from _read_points(shard, ids[mid:])


def read_back(shard: Any, ids: Sequence[str], ledger: DigestLedger | None, *, collect: bool = False) -> ReadBack:
    """Read ``ids`` from the engine with vectors and payloads and compare their digests."""
    from rsir_stac.store.payloads import _vector_of

    out = ReadBack()
    ids = list(ids)
    for start in range(0, len(ids), _READ_CHUNK):
        part = ids[start:start + _READ_CHUNK]
        want = ledger.lookup(part) if ledger is not None else {}
        for pid, rec in _read_points(shard, part):
            if rec is None:
                out.unreadable.add(pid)
                continue
            vec = _vector_of(rec.vector)
            payload = dict(rec.payload or {})
            if vec is None or not np.all(np.isfinite(vec)):
                out.vector_mismatch.add(pid)
                continue
            digests = want.get(pid)
            if digests is None:
                out.unverified.add(pid)
            elif digests[0] != vector_digest(vec):
                out.vector_mismatch.add(pid)
                continue
            elif not payload_matches(digests[1], payload):
                out.payload_mismatch.add(pid)
                continue
            else:
                out.verified.add(pid)
            if collect:
                out.good.append((pid, vec.tolist(), payload))
    return out


def verified_ids(store: Any, ids: Iterable[str]) -> set[str]:
    """The subset of stored ``ids`` whose vector and payload match their digests
    (what ingest may skip); points without a digest are not trusted."""
    ids = list(ids)
    if not ids or store._shard is None:
        return set()
    return read_back(store._shard, ids, store._ledger).verified


def _scroll_ids(shard: Any) -> list[str]:
    import qdrant_edge as q

    ids: list[str] = []
    offset = None
    while True:
        recs, offset = shard.scroll(q.ScrollRequest(offset=offset, limit=5000, with_payload=False, with_vector=False))
        ids.extend(str(r.id) for r in recs)
        if offset is None or not recs:
            return ids


__all__ = ["ReadBack", "read_back", "verified_ids"]
