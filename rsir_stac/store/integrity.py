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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import IndexInUseError, IndexNotFoundError, StoreError
from rsir_stac.store.digests import LEDGER_SUFFIX, DigestLedger, payload_digest, payload_matches, vector_digest

log = logging.getLogger(__name__)

_READ_CHUNK = 256
_SAMPLE = 5  # ids quoted per finding


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Finding:
    """One damaged thing: ``kind`` (file, unreadable, vector, payload, lost, engine),
    a one-line ``message`` naming it, and up to a few affected point ids."""

    kind: str
    message: str
    ids: tuple[str, ...] = ()


def inspect_files(shard_dir: Path) -> list[Finding]:
    """File-level damage of an Edge shard, from ``stat`` and small JSON files only
    (safe before the engine maps anything).  Empty when nothing is wrong.

    A missing id tracker is reported with kind ``tracker``: it is also the state
    of a segment whose process was killed before its first flush (the WAL then
    restores every point), so it is damage only when points are lost."""
    out: list[Finding] = []
    rel = lambda p: os.path.relpath(p, shard_dir.parent)  # noqa: E731
    seg_root = shard_dir / "segments"
    if not (shard_dir / "edge_config.json").is_file():
        out.append(Finding("file", f"{rel(shard_dir / 'edge_config.json')} is missing"))
    if not seg_root.is_dir():
        out.append(Finding("file", f"{rel(seg_root)}/ is missing"))
        return out
    for seg in sorted(p for p in seg_root.iterdir() if p.is_dir()):
        try:
            desc = json.loads((seg / "segment.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            out.append(Finding("file", f"{rel(seg / 'segment.json')} is missing or unreadable ({exc.__class__.__name__})"))
            continue
        vector_data = (desc.get("config") or {}).get("vector_data") or {}
        appendable = any((v or {}).get("storage_type") == "InRamChunkedMmap" for v in vector_data.values())
        # an appendable segment that never held a point has neither id tracker nor vector chunks
        written = any(seg.glob("mutable_id_tracker.*")) or any(seg.glob("vector_storage/*/chunk_*.mmap"))
        if not written:
            continue
        if appendable:
            for name in ("mutable_id_tracker.mappings", "mutable_id_tracker.versions"):
                if not (seg / name).is_file():  # also normal before the first flush: only evidence
                    out.append(Finding("tracker", f"{rel(seg / name)} (the id tracker) is missing"))
        vs = seg / "vector_storage"
        for cfg_path in sorted(vs.glob("*/config.json")) if vs.is_dir() else []:
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                out.append(Finding("file", f"{rel(cfg_path)} is unreadable"))
                continue
            size = cfg.get("chunk_size_bytes") if isinstance(cfg, dict) else None
            if not isinstance(size, int):
                continue
            chunks = sorted(cfg_path.parent.glob("chunk_*.mmap"))
            if not chunks:
                out.append(Finding("file", f"{rel(cfg_path.parent / 'chunk_0.mmap')} (vector data) is missing"))
            for ch in chunks:
                have = ch.stat().st_size
                if have != size:
                    out.append(Finding("file", f"{rel(ch)} (vector data) is {have} bytes, not {size}: truncated"))
        out.extend(_page_findings(seg, rel))
    return out


def _page_findings(seg: Path, rel: Any) -> list[Finding]:
    """Payload pages (``payload_storage/page_*.dat``) and payload-index pages of one
    segment that are missing or not the ``page_size_bytes`` their ``config.json``
    promises (a truncated page file)."""
    out: list[Finding] = []
    cfgs = [seg / "payload_storage" / "config.json"] + sorted(seg.glob("payload_index/*/config.json"))
    for cfg_path in cfgs:
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if cfg_path.parent.name == "payload_storage" and cfg_path.parent.is_dir():
                out.append(Finding("file", f"{rel(cfg_path)} (payload storage) is missing"))
            continue
        except (OSError, ValueError):
            out.append(Finding("file", f"{rel(cfg_path)} is unreadable"))
            continue
        size = cfg.get("page_size_bytes") if isinstance(cfg, dict) else None
        if not isinstance(size, int):
            continue
        what = "payload data" if cfg_path.parent.name == "payload_storage" else "payload index data"
        pages = sorted(cfg_path.parent.glob("page_*.dat"))
        if not pages and what == "payload data":
            out.append(Finding("file", f"{rel(cfg_path.parent / 'page_0.dat')} ({what}) is missing"))
        for pg in pages:
            have = pg.stat().st_size
            if have != size:
                out.append(Finding("file", f"{rel(pg)} ({what}) is {have} bytes, not {size}: truncated"))
    return out


# --------------------------------------------------------------------------- read-back


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
    from rsir_stac.store.base import _vector_of

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


def _scroll_ids(shard: Any) -> list[str]:
    import qdrant_edge as q

    ids: list[str] = []
    offset = None
    while True:
        recs, offset = shard.scroll(q.ScrollRequest(offset=offset, limit=5000, with_payload=False, with_vector=False))
        ids.extend(str(r.id) for r in recs)
        if offset is None or not recs:
            return ids


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
    from rsir_stac.store.query import Exclusion

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


def _collection_dir(index: str | Path, collection: str) -> Path:
    """The absolute index path, after refusing a broken link and undoing an interrupted restore;
    IndexNotFoundError when it holds no ``collection``."""
    from rsir_stac.store.folder import damaged_aside_paths, refuse_broken_link, undo_interrupted_restore

    path = Path(index).expanduser().absolute()
    refuse_broken_link(path)
    undo_interrupted_restore(path, collection)
    if not (path / collection).is_dir():
        aside = damaged_aside_paths(path, collection)
        if aside:
            raise IndexNotFoundError(f"index {path} has no collection {collection!r} (a damaged one was set aside in "
                                     f"{aside[-1].name}); re-run the ingest that built it, or `rsir-stac restore "
                                     f"SNAPSHOT --index {path} --force`")
        raise IndexNotFoundError(f"index {path} has no collection {collection!r}; check the --index path, or build "
                                 "it with rsir-stac ingest")
    return path


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
    from rsir_stac.errors import DiskFullError
    from rsir_stac.store.folder import LockFileError

    try:
        store = EdgeStore(path, collection=collection, read_only=True, repair=None, probe=True)
    except (IndexInUseError, LockFileError, DiskFullError):
        raise  # the index's folder or disk, not its shard: the error names the fix
    except StoreError as exc:
        from rsir_stac.store.folder import _engine_message

        report.loadable = False
        report.ledger_points = _ledger_count(path, collection)
        report.findings.append(Finding("engine", f"the engine cannot open the index: it fails loading "
                                                 f"{collection}/ ({_engine_message(exc)})"))
        return report
    with store:
        check_open_store(store, report, files)
        report.notes = health_notes(store, damage=False)
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
    if ids and store.ledger_unreadable:
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


# --------------------------------------------------------------------------- health record

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


def _write_text_durable(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------- repair


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


__all__ = ["CheckReport", "DigestLedger", "Finding", "HEALTH_SUFFIX", "INDEX_PROBES", "RepairReport", "check_index",
           "health_notes", "index_findings", "pending_rebuild", "read_health", "record_check", "record_repair",
           "inspect_files",
           "payload_digest", "payload_matches", "repair_index", "vector_digest", "verified_ids"]
