"""Damage detection and repair for the embedded (Qdrant Edge) index.

Qdrant Edge keeps no checksums of its own: a truncated or overwritten vector
file, a deleted id tracker or random bytes in a payload page are either
invisible or surface later as engine errors.  rsir-stac therefore keeps a
*digest ledger* (:mod:`rsir_stac.store.digests`) beside the shard, in the way
PostgreSQL keeps data checksums:

``<index>/<collection>.digests.sqlite``
    one row per point: the point id, a 64-bit BLAKE2b digest of its vector as
    stored (float32 bytes) and one of its stored payload (canonical JSON),
    written right after the engine accepted the point.

:func:`check_index` compares the index against it in three passes:

1. **files** (:func:`inspect_files`, ``stat`` only, before the engine loads
   anything): segment descriptors parse, every vector chunk file exists and has
   the size its ``config.json`` promises, appendable segments have their id
   tracker;
2. **counts**: the ids the engine holds against the ids the ledger holds
   (points *lost*, e.g. by a deleted id tracker, and points *unverified*,
   written before the ledger existed or by a process killed between the engine
   write and the ledger write);
3. **read-back**: every point's vector and payload are read back and hashed;
   a point the engine cannot read is *unreadable*, one whose digest differs is
   *damaged*.

Repair (:func:`repair_index`) rebuilds the shard from the points that pass and
drops the others from the ledger; the ingest that built them writes them
again.  Ingest itself trusts only points that pass (``EdgeStore.existing_ids``
uses :func:`verified_ids`), so re-running an ingest rewrites damaged points,
and a writable open of an index whose files are damaged repairs it first.

This module holds the check; the files pass lives in
:mod:`rsir_stac.store.shard_files`, the read-back in :mod:`rsir_stac.store.readback`,
the health record in :mod:`rsir_stac.store.health` and the repair in
:mod:`rsir_stac.store.repair` (their public names are imported here too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import IndexInUseError, StoreError
from rsir_stac.store.digests import (  # noqa: F401 - payload_digest, vector_digest: the names it always offered
    LEDGER_SUFFIX,
    DigestLedger,
    payload_digest,
    payload_matches,
    vector_digest,
)
from rsir_stac.store.folder import _collection_dir
from rsir_stac.store.health import (  # noqa: F401 - pending_rebuild, read_health, record_repair: as before
    HEALTH_SUFFIX,
    health_notes,
    pending_rebuild,
    read_health,
    record_check,
    record_repair,
)
from rsir_stac.store.readback import ReadBack, _scroll_ids, read_back, verified_ids  # noqa: F401 - verified_ids
from rsir_stac.store.repair import RepairReport, repair_index  # noqa: F401 - the repair, as before
from rsir_stac.store.shard_files import Finding, inspect_files

_SAMPLE = 5  # ids quoted per finding


# --------------------------------------------------------------------------- check


@dataclass
class CheckReport:
    """What :func:`check_index` found; ``ok`` is False when anything is damaged."""

    index: str
    points: int = 0
    ledger_points: int = 0
    verified: int = 0
    unverified: int = 0
    findings: list[Finding] = field(default_factory=list)
    loadable: bool = True  # False: the engine cannot load the shard (``points`` is then unknown, 0)
    notes: list[str] = field(default_factory=list)  # not damage: earlier repairs' dropped points still missing
    leftovers: list[str] = field(default_factory=list)  # hidden folders a killed repair or creation left
    damaged_ids: set[str] = field(default_factory=set, repr=False)  # every point a finding names (not in JSON)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("damaged_ids", None)
        d["ok"] = self.ok
        return d


def _sample(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(ids)[:_SAMPLE])


def _engine_findings(store: Any, report: CheckReport, rb: ReadBack, lost: set[str]) -> None:
    where = f"{store.collection}/segments/"
    n = report.points
    if rb.unreadable:
        report.findings.append(Finding(
            "unreadable", f"{len(rb.unreadable)} of {n} points cannot be read back (the engine fails on their "
            f"vector or payload storage under {where})", _sample(rb.unreadable)))
    if rb.vector_mismatch:
        report.findings.append(Finding(
            "vector", f"{len(rb.vector_mismatch)} of {n} points have vectors that differ from their digests "
            f"(the vector storage under {where} was modified)", _sample(rb.vector_mismatch)))
    if rb.payload_mismatch:
        report.findings.append(Finding(
            "payload", f"{len(rb.payload_mismatch)} of {n} points have payloads that differ from their digests "
            f"(the payload storage under {where} was modified)", _sample(rb.payload_mismatch)))
    if lost:
        report.findings.append(Finding(
            "lost", f"{len(lost)} points recorded in {store.collection}{LEDGER_SUFFIX} are missing from the index "
            "(an id tracker or segment was lost)", _sample(lost)))


#: Points whose payload-index entries ``check`` probes (seeded sample of the verified points).
INDEX_PROBES = 256


def index_findings(store: Any, ids: Sequence[str], probes: int = INDEX_PROBES) -> list[Finding]:
    """Probe the engine's payload indexes (location, item_id, collection, time) with the
    verified payloads of a seeded sample of ``ids``: each point must be found by a filter
    on its own values, and not by one just beside them.  The index files are the engine's
    own and carry no digests; a damaged one answers filtered searches wrongly without any
    other sign.  One finding per index that misplaces a point."""
    from rsir_stac.store.exclusion import Exclusion

    rng = np.random.default_rng(0)
    pick = [ids[i] for i in sorted(rng.choice(len(ids), size=min(probes, len(ids)), replace=False))]
    missed: dict[str, set[str]] = {}
    for h in store._retrieve_raw(pick, True, False):
        for name, flt, finds in _probes(h.payload):
            try:
                found = store._ids_from(h.id, 1, flt, Exclusion())[:1] == [h.id]
            except Exception:  # noqa: BLE001 - a damaged index may fail outright
                found = not finds
            if found != finds:
                missed.setdefault(name, set()).add(h.id)
    return [Finding("payload_index", f"the engine's {name} index misplaces {len(bad)} of {len(pick)} sampled points "
                                     f"(filtered searches on {name} answer wrongly; its files under "
                                     f"{store.collection}/segments/*/payload_index were modified)", _sample(bad))
            for name, bad in sorted(missed.items())]


def _probes(p: dict) -> list[tuple[str, Any, bool]]:
    """``(index, filter, finds the point)`` for a payload ``p``: its own location (a 1 m radius:
    boxes are open, so no box holds a centre at lon -180), item, collection and time (a second
    either side: datetime keeps microseconds) find it; 1 km north, another item and collection,
    and a minute after its end do not."""
    from datetime import datetime, timedelta, timezone

    from rsir_stac.store.filters import SearchFilter

    out: list[tuple[str, Any, bool]] = []
    loc = p.get("location") or {}
    if isinstance(loc.get("lon"), (int, float)) and isinstance(loc.get("lat"), (int, float)):
        lon, lat = float(loc["lon"]), float(loc["lat"])
        out += [("location", SearchFilter(near=(lon, lat, 1.0)), True),
                ("location", SearchFilter(near=(lon, lat + (0.009 if lat < 89.0 else -0.009), 1.0)), False)]
    for name, key in (("item_id", "item_ids"), ("collection", "collections")):
        if isinstance(p.get(name), str):
            out += [(name, SearchFilter(**{key: (p[name],)}), True),
                    (name, SearchFilter(**{key: (p[name] + "\x00other",)}), False)]
    start = p.get("datetime_epoch")
    if isinstance(start, (int, float)):
        t = datetime.fromtimestamp(float(start), timezone.utc)
        end = p.get("datetime_end_epoch")
        after = datetime.fromtimestamp(float(end if isinstance(end, (int, float)) else start), timezone.utc)
        after += timedelta(minutes=1)
        out += [("datetime_epoch", SearchFilter(start=t - timedelta(seconds=1), end=t + timedelta(seconds=1)), True),
                ("datetime_epoch", SearchFilter(start=after, end=after + timedelta(seconds=1)), False)]
    return out


def check_index(index: str | Path, *, collection: str = "rsir_tiles") -> CheckReport:
    """Check an embedded index: files, counts, and every vector and payload read
    back against its digest.

    Returns a :class:`CheckReport` whose ``findings`` name each damaged file or
    group of points.  Raises :class:`~rsir_stac.errors.StoreError` when the
    index does not exist or is in use by another process.
    """
    from rsir_stac.store.edge import EdgeStore

    from rsir_stac.store.folder import repair_marker, stale_work

    path = _collection_dir(index, collection)
    report = CheckReport(index=str(path))
    report.leftovers = [p.name for p in stale_work(path, collection)]
    if repair_marker(path, collection).is_file():
        report.leftovers.append(repair_marker(path, collection).name)
    files = inspect_files(path / collection)
    report.findings.extend(f for f in files if f.kind != "tracker")
    from rsir_stac.store.shard_files import versionless_segments

    if lost := versionless_segments(path / collection):  # loading would delete them: report, do not load
        report.loadable = False
        report.ledger_points = _ledger_count(path, collection)
        report.findings.extend(Finding("version", f"{collection}/segments/{seg.name}/version.info is missing or garbled, so the "
                                                  "engine would delete the segment as unfinished, points and all")
                               for seg in lost)
        return report
    from rsir_stac.errors import DiskFullError
    from rsir_stac.store.folder import LockFileError

    try:
        store = EdgeStore(path, collection=collection, read_only=True, repair=None, probe=True)
    except (IndexInUseError, LockFileError, DiskFullError):
        raise  # the index's folder or disk, not its shard: the error names the fix
    except StoreError as exc:
        from rsir_stac.store.folder import _compact_engine_message, _denied, _engine_message

        report.loadable = False
        report.ledger_points = _ledger_count(path, collection)
        raw = _engine_message(exc)
        why = _compact_engine_message(raw, path)
        if _denied(raw):  # this user may not read it (the engine's own test of it): not damage, nothing to set aside
            report.findings.append(Finding("permission", f"this user may not read all of {collection}/ ({why})"))
            return report
        report.findings.append(Finding("engine", f"the engine cannot open the index: it fails loading "
                                                 f"{collection}/ ({why})"))
        return report
    with store:
        check_open_store(store, report, files)
        report.notes = health_notes(store, damage=False)
        meta = store.meta()
        if meta is not None and meta.unfinished:  # not damage, but not all of it is there yet
            from rsir_stac.store.base import unfinished_note

            report.notes.append(unfinished_note(store, meta, report.points))
        if store._private is None:  # remembered for `info`, `search` and `serve` (health_notes)
            record_check(store, report)
    return report


def check_open_store(store: Any, report: CheckReport, files: list[Finding]) -> CheckReport:
    """The checks of :func:`check_index` after the engine loaded the shard: metadata, counts,
    every point read back, payload-index probes; findings go to ``report``.  ``store`` is an open
    :class:`EdgeStore` (``snapshot`` checks the store it copies, under the same lock)."""
    path, collection = store.index, store.collection
    shard, ledger = store._shard, store._ledger
    if shard is None:
        return report
    why = store.meta_recovered or store.meta_disagrees()
    if why:
        report.findings.append(Finding("meta", f"{why}; `rsir-stac check --index {path} --repair` "
                                               "writes it again from the stored points"))
    try:
        ids = _scroll_ids(shard)
    except Exception as exc:  # noqa: BLE001
        report.findings.append(Finding("engine", f"the engine cannot list the points ({str(exc).splitlines()[0]})"))
        return report
    report.points = len(ids)
    ledger_ids = set(ledger.ids()) if ledger is not None else set()
    report.ledger_points = len(ledger_ids)
    rb = read_back(shard, ids, ledger)
    report.verified, report.unverified = len(rb.verified), len(rb.unverified)
    lost = ledger_ids - set(ids)
    report.damaged_ids = rb.unreadable | rb.vector_mismatch | rb.payload_mismatch
    if lost:
        report.findings.extend(f for f in files if f.kind == "tracker")
    _engine_findings(store, report, rb, lost)
    if rb.verified:
        report.findings.extend(index_findings(store, sorted(rb.verified)))
    if ids and store.ledger_unreadable and store.ledger_unreadable.startswith("permission denied"):
        report.findings.append(Finding(
            "permission", f"{collection}{LEDGER_SUFFIX} (the digest ledger) cannot be read by this user "
            f"({store.ledger_unreadable}), so none of the {len(ids)} points can be verified; that is not damage"))
    elif ids and store.ledger_unreadable:
        report.findings.append(Finding(
            "digests", f"{collection}{LEDGER_SUFFIX} (the digest ledger) is unreadable ({store.ledger_unreadable}), so "
            f"none of the {len(ids)} points can be verified (the points themselves read back); `rsir-stac check "
            f"--index {path} --repair` sets it aside and records the digests of the points as they read now, or "
            "re-run the ingest that built the index (it sets it aside and re-embeds them)"))
    elif ids and not ledger_ids:
        report.findings.append(_no_digests(path, collection, len(ids), ledger is not None))
    return report


def _ledger_count(path: Path, collection: str) -> int:
    """How many points the digest ledger records (0 when it is missing or unreadable)."""
    ledger = path / f"{collection}{LEDGER_SUFFIX}"
    if not ledger.is_file():
        return 0
    try:
        db = DigestLedger(ledger, read_only=True)
    except StoreError:
        return 0
    try:
        return db.count()
    except Exception:  # noqa: BLE001 - a ledger without its table yet, or damaged: nothing recorded
        return 0
    finally:
        db.close()


def _no_digests(path: Path, collection: str, n: int, present: bool) -> Finding:
    """The finding for an index whose digest ledger is missing or empty while it
    holds points: nothing can be verified (deleted, emptied, or an index from
    before digests)."""
    name = f"{collection}{LEDGER_SUFFIX}"
    state = "is empty" if present else "is missing"
    return Finding("digests", f"{name} (the digest ledger) {state}, so none of the {n} points can be verified; "
                   f"re-run the ingest that built the index (it re-embeds unverified points and records their "
                   f"digests), or `rsir-stac check --index {path} --repair` to record digests of the points as "
                   "they read now")


__all__ = ["CheckReport", "DigestLedger", "Finding", "HEALTH_SUFFIX", "INDEX_PROBES", "RepairReport", "check_index",
           "health_notes", "index_findings", "pending_rebuild", "read_health", "record_check", "record_repair",
           "inspect_files",
           "payload_digest", "payload_matches", "repair_index", "vector_digest", "verified_ids"]
