"""The health record of an index: what the last ``check`` found and what repairs dropped.

``<index>/<collection>.health.json`` lets ``info``, ``search``, ``serve`` and a
later ``check`` say so without reading every point (:func:`health_notes` verifies
only the points it names).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsir_stac.store.readback import read_back

if TYPE_CHECKING:
    from rsir_stac.store.integrity import CheckReport

log = logging.getLogger("rsir_stac.store.integrity")  # as the check and repair that write it

#: ``<index>/<collection>.health.json``: what the last ``check`` found and what repairs dropped,
#: so that ``info``, ``search``, ``serve`` and a later ``check`` can say so without reading every point.
HEALTH_SUFFIX = ".health.json"
_KEEP_IDS = 10_000  # point ids kept per entry (counts are exact; beyond this "at least")


def health_path(index: str | Path, collection: str) -> Path:
    return Path(index) / f"{collection}{HEALTH_SUFFIX}"


def read_health(index: str | Path, collection: str) -> dict[str, Any]:
    try:
        doc = json.loads(health_path(index, collection).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_health(index: str | Path, collection: str, doc: dict[str, Any]) -> None:
    """Write the record atomically; a record that cannot be written is only logged (it never fails
    the command that found or repaired the damage)."""
    from rsir_stac.store.folder import _write_json_atomic

    try:
        _write_json_atomic(health_path(index, collection), doc)
    except OSError as exc:
        log.debug("index %s: cannot write %s (%s)", index, health_path(index, collection).name, exc)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def record_check(store: Any, report: CheckReport) -> None:
    """Remember which points the check found damaged (call under the index lock)."""
    if not os.access(store.index, os.W_OK):
        return
    doc = read_health(store.index, store.collection)
    bad = sorted(report.damaged_ids)
    doc["last_check"] = {"at": _now(), "points": report.points, "ok": report.ok, "damaged": len(bad),
                         "damaged_ids": bad[:_KEEP_IDS],
                         "findings": [{"kind": f.kind, "message": f.message} for f in report.findings][:20]}
    _write_health(store.index, store.collection, doc)


#: Kinds of :class:`Finding` that only a rebuild of the shard fixes and that no cheap read at open
#: finds again: ``info``, ``search`` and ``serve`` warn about them from the health record until a
#: repair (``check --repair``, or the writable open of a re-run ingest) or a clean ``check``.
REBUILD_KINDS = ("payload_index",)


def pending_rebuild(index: str | Path, collection: str) -> list[str]:
    """The messages of findings of :data:`REBUILD_KINDS` the last ``check`` recorded and no repair
    has fixed since (read from the health record: no engine call)."""
    last = read_health(index, collection).get("last_check") or {}
    if last.get("ok") is not False:
        return []
    return [str(f.get("message")) for f in last.get("findings") or []
            if isinstance(f, dict) and f.get("kind") in REBUILD_KINDS]


def record_repair(index: str | Path, collection: str, dropped: Sequence[str], reasons: Sequence[str],
                  *, total: int | None = None, set_aside: str | None = None) -> None:
    """Remember the points a repair dropped (call under the index lock), so that a later
    ``check`` or ``info`` says they are missing until the ingest that built them is re-run."""
    n = len(dropped) if total is None else total
    doc = read_health(index, collection)
    if doc.get("last_check"):
        # the repair dropped the damaged points (the entry below says so) and rebuilt the shard's indexes
        doc["last_check"].update(damaged=0, damaged_ids=[], findings=[], repaired_at=_now())
    if n:
        repairs = [r for r in doc.get("repairs", []) if isinstance(r, dict)]
        repairs.append({"at": _now(), "dropped": n, "dropped_ids": sorted(dropped)[:_KEEP_IDS],
                        "reasons": list(reasons), "set_aside": set_aside})
        doc["repairs"] = repairs[-20:]
    _write_health(index, collection, doc)


def _present(shard: Any, ids: list[str]) -> set[str]:
    out: set[str] = set()
    for i in range(0, len(ids), 1000):
        try:
            out.update(str(r.id) for r in shard.retrieve(ids[i:i + 1000], False, False))
        except Exception:  # noqa: BLE001 - unreadable: not counted as present
            pass
    return out


def health_notes(store: Any, *, damage: bool = True) -> list[str]:
    """One line per thing the health record says is still wrong, verified now on only the points
    it names (cheap): points dropped by a repair that are still missing, and (``damage``) points the
    last ``check`` found damaged that still fail their digests."""
    shard = store._shard
    doc = read_health(store.index, store.collection)
    if shard is None or not doc:
        return []
    notes: list[str] = []
    last = doc.get("last_check") or {}
    ids = [str(i) for i in last.get("damaged_ids") or []]
    if damage and ids:
        rb = read_back(shard, ids, store._ledger)
        still = rb.unreadable | rb.vector_mismatch | rb.payload_mismatch
        if still:
            notes.append(f"{len(still)} points failed their digests at the last `rsir-stac check` ({last.get('at')}) "
                         f"and still do (searches may leave them out); run `rsir-stac check --index {store.index} "
                         "--repair`, then re-run the ingest that built it")
    if damage:
        for msg in pending_rebuild(store.index, store.collection):
            notes.append(f"the last `rsir-stac check` ({last.get('at')}) found {msg}, and it is not repaired yet; run "
                         f"`rsir-stac check --index {store.index} --repair` (or re-run the ingest that built it: "
                         "either rebuilds the shard)")
    for rep in doc.get("repairs") or []:
        ids = [str(i) for i in rep.get("dropped_ids") or []]
        if not ids:
            continue
        missing = len(ids) - len(_present(shard, ids))
        if missing:
            more = "at least " if int(rep.get("dropped") or 0) > len(ids) else ""
            how = "set aside" if rep.get("set_aside") else "dropped"
            notes.append(f"{more}{missing} point(s) {how} by a repair on {rep.get('at')} are still missing from the "
                         f"index; re-run the ingest that built {store.index} to index them again")
    return notes


__all__ = ["HEALTH_SUFFIX", "REBUILD_KINDS", "health_notes", "health_path", "pending_rebuild", "read_health",
           "record_check", "record_repair"]
