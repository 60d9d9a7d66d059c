"""Repair of an embedded index: rebuild its shard from the points that pass.

:func:`repair_index` (``rsir-stac check --repair``) and :func:`rebuild_shard` (also
run by a writable open of a damaged shard) keep the points that read back with
their digests, drop the others from the ledger and record them in the health
record; the ingest that built them writes them again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rsir_stac.store.folder import _collection_dir
from rsir_stac.store.health import record_repair
from rsir_stac.store.readback import ReadBack, _scroll_ids, read_back

log = logging.getLogger("rsir_stac.store.integrity")  # the name its warnings have always carried


def _write_text_durable(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class RepairReport:
    """What :func:`repair_index` did."""

    index: str
    kept: int
    dropped: int
    dropped_ids: list[str]
    reasons: list[str]
    set_aside: str | None = None  # where a shard the engine cannot load was moved (its points all dropped)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _salvage(store: Any) -> tuple[list[tuple[str, list[float], dict]], list[str], list[str]]:
    """(good rows, dropped ids, reasons) from a loaded, possibly damaged store."""
    shard, ledger = store._shard, store._ledger
    ledger_ids = set(ledger.ids()) if ledger is not None else set()
    try:
        ids = _scroll_ids(shard) if shard is not None else []
    except Exception:  # noqa: BLE001 - nothing can be listed: salvage nothing, re-ingest all
        ids = []
    rb = read_back(shard, ids, ledger, collect=True) if shard is not None else ReadBack()
    lost = ledger_ids - set(ids)
    dropped = rb.unreadable | rb.vector_mismatch | rb.payload_mismatch | lost
    reasons = [f"{len(s)} {what}" for s, what in ((rb.unreadable, "unreadable"), (rb.vector_mismatch, "damaged vectors"),
               (rb.payload_mismatch, "damaged payloads"), (lost, "lost")) if s]
    return rb.good, sorted(dropped), reasons


def rebuild_shard(store: Any) -> RepairReport:
    """Rebuild ``store``'s shard (an open, writable :class:`EdgeStore` holding the
    lock) from the points that pass, swap it into place and forget the dropped
    points' digests.  The shard is built beside the old one and renamed into
    place, so a crash leaves either the old or the new shard."""
    import qdrant_edge as q

    from rsir_stac.store.segments import SEGMENT_POINTS, Rounds, edge_config, shard_cap_points
    from rsir_stac.store.space import create_bytes, require_free, tree_bytes

    good, dropped, reasons = _salvage(store)
    index, name = store.index, store.collection
    require_free(index, tree_bytes(store.shard_dir, allocated=True) + create_bytes(index), f"repairing index {index}")
    cfg_doc = json.loads((store.shard_dir / "edge_config.json").read_text(encoding="utf-8")) \
        if (store.shard_dir / "edge_config.json").is_file() else {}
    dim = int(((cfg_doc.get("vectors") or {}).get("") or {}).get("size") or store._require_meta().dim)
    from rsir_stac.store.folder import _fsync_dir, damaged_aside_path, repair_marker, repairing_path

    tmp, old = repairing_path(index, name), damaged_aside_path(index, name)  # never an earlier set-aside shard
    shutil.rmtree(tmp, ignore_errors=True)
    if store._shard is not None:
        try:
            store._shard.close()
        except Exception:  # noqa: BLE001
            pass
        store._shard = None
    # the rebuilt shard keeps the layout (segments.py).  A config without "optimizers" was
    # lost and rewritten by the engine on load (ours always carry the key): today's layout
    cap = shard_cap_points(store.shard_dir) if "optimizers" in cfg_doc else SEGMENT_POINTS
    shard = q.EdgeShard.create(str(tmp), edge_config(dim, cap))
    store._shard = shard
    store._ensure_indexes()
    rounds = Rounds(cap)
    for i in range(0, len(good), 512):
        part = good[i:i + 512]
        shard.update(q.UpdateOperation.upsert_points([q.Point(id=p, vector=v, payload=pl) for p, v, pl in part]))
        if rounds.add(len(part)):  # index each capped segment as it fills, as the store's writes do
            shard.optimize()
            rounds.reset()
    shard.flush()
    shard.close()
    store._shard = None
    # the new shard is complete: a kill from here on is finished by the next open (edge.finish_interrupted_repair)
    marker = repair_marker(index, name)
    _write_text_durable(marker, old.name + "\n")
    os.replace(store.shard_dir, old)
    os.replace(tmp, store.shard_dir)
    _fsync_dir(index)
    shutil.rmtree(old, ignore_errors=True)
    marker.unlink(missing_ok=True)
    store._shard = q.EdgeShard.load(str(store.shard_dir))
    if store._ledger is not None:
        store._ledger.remove(dropped)  # kept points keep their digests (unverified ones stay unverified)
    record_repair(index, name, dropped, reasons)
    log.warning("index %s repaired: kept %d points, dropped %d (%s)", index, len(good), len(dropped),
                ", ".join(reasons) or "none")
    return RepairReport(str(index), len(good), len(dropped), dropped, reasons)


def repair_index(index: str | Path, *, collection: str = "rsir_tiles", adopt: bool = True) -> RepairReport:
    """Repair an embedded index: rebuild it from the points that pass
    :func:`check_index` and drop the others (re-run the ingest that built them
    to restore them).  ``adopt``: also record digests of readable points that
    have none (a deleted or emptied ledger), trusting them as they read now.  Raises StoreError when the index is missing or in use,
    DiskFullError when the rebuild does not fit."""
    from rsir_stac.store.edge import EdgeStore

    path = _collection_dir(index, collection)
    with EdgeStore(path, collection=collection, repair=True, probe=True) as store:
        why = store.meta_disagrees() if store._shard is not None else None
        if why:
            store._meta = store._recovered_meta(why) or store._meta
        report = store.repaired or rebuild_shard(store)
        if adopt and store._shard is not None and store._ledger is not None:
            _adopt_unverified(store)
        return report


def remove_leftovers(index: str | Path, *, collection: str = "rsir_tiles") -> list[str]:
    """Under the index lock, finish or remove what a killed repair or creation left
    (:func:`rsir_stac.store.edge.finish_interrupted_repair`); returns the names removed."""
    from rsir_stac.store.folder import _IndexLock, finish_interrupted_repair

    path = Path(index).expanduser().absolute()
    lock = _IndexLock(path)
    try:
        return finish_interrupted_repair(path, collection, remove_stale=True)
    finally:
        lock.release()


def _adopt_unverified(store: Any) -> int:
    """Record digests for points that read back but have none (a deleted or
    emptied ledger): they are trusted as they read now.  Returns how many."""
    ids = _scroll_ids(store._shard)
    rb = read_back(store._shard, ids, store._ledger, collect=True)
    rows = [g for g in rb.good if g[0] in rb.unverified]
    store._ledger.record(rows)
    if rows:
        log.warning("index %s: recorded digests of %d points that had none (trusted as they read now)",
                    store.index, len(rows))
    return len(rows)


__all__ = ["RepairReport", "rebuild_shard", "remove_leftovers", "repair_index"]
