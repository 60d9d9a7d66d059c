"""Embedded index on Qdrant Edge (``qdrant_edge``): a directory, no server.

Layout of an index directory::

    <index>/.lock                 advisory lock (fcntl.flock), holds the owner's pid
    <index>/<collection>/         the Edge shard (segments/, wal/, edge_config.json)
    <index>/<collection>.meta.json  dim, model_id, created_at, rsir_stac version
    <index>/.<collection>.creating/ a shard being created (renamed into place when complete)
    <index>/<collection>.digests.sqlite  per-point vector/payload digests (``integrity``)

The folder's own rules (lock, atomic writes, interrupted restores and repairs, damaged
shards set aside, reading engine errors) live in :mod:`rsir_stac.store.folder`.

Integrity, space and read-only media (issue 16): every upsert records the
points' digests after the engine accepted them; ``existing_ids`` returns only
points that read back with matching digests (so a re-run ingest rewrites
damaged ones), and a writable open of a shard whose files are damaged rebuilds
it from the points that pass (``integrity.rebuild_shard``).  Loads, creations,
writes and optimizations first check free space (``space``), because the
engine answers a full disk with SIGBUS.  A read-only open of an index on
read-only media (or on a full disk) takes no lock and loads a private copy of
the shard (``files.private_copy``): the engine cannot load a shard in place
without writing to it.

Findings about qdrant-edge-py 0.9 that shape this module:

* **One process at a time.**  ``EdgeShard.load``/``create`` take an exclusive
  ``flock`` on the shard's WAL; a second load, even read-only and even in the
  same process, fails with ``Can't init WAL: Kind(WouldBlock)``.  Concurrent
  readers are therefore impossible, so read-only opens take the same exclusive
  lock as writers.  We take our own non-blocking ``flock`` on ``<index>/.lock``
  first to report the holder's pid (:class:`IndexInUseError`); the lock dies
  with the process, so a killed ingest never leaves a stale lock.  The engine's
  ``WouldBlock`` error is mapped to the same exception as a fallback.
* **Durability.**  The WAL is on by default (``wal/`` with mmap'd segments).
  ``update()`` writes the WAL before returning, so points survive a SIGKILL
  even before ``flush()`` (replayed on the next load; verified in tests).
  ``flush()`` persists the segments (call it before relying on the data after
  an OS crash or power loss); ``close()`` flushes first.
* **Search.**  New points land in an appendable plain segment (exact search).
  Edge has no background optimizer: HNSW graphs are built only by
  :meth:`EdgeStore.optimize` (blocking, and only for segments over the indexing
  threshold; 20k x 64-d points stayed plain), which ingest may call when done.  ``retrieve`` needs both ``with_payload`` and
  ``with_vector`` passed; point ids come back as ``uuid.UUID``; errors are bare
  ``Exception`` instances, mapped here to :class:`StoreError`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from itertools import chain
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import DiskFullError, IndexInUseError, IndexNotFoundError, StoreError
from rsir_stac.store.base import (
    HNSW_EF,
    acorn_selectivity,
    PAYLOAD_INDEXES,
    CollectionMeta,
    Point,
    SearchHit,
    Store,
    _vector_of,
    hit_from_record,
    unpack_payload,
    check_incompatible,
    check_points,
    chunks,
)
from rsir_stac.store.filters import SearchFilter, to_edge_filter
from rsir_stac.store.folder import (
    LOCK_NAME,
    _IndexLock,
    _denied,
    _engine_message,
    _first_line,
    _fsync_dir,
    _looks_damaged,
    _payload_index_finding,
    _unloadable,
    _wal_damaged,
    _write_json_atomic,
    damaged_aside_path,
    damaged_aside_paths,
    file_too_large,
    finish_interrupted_repair,
    refuse_broken_link,
    too_large_message,
    undo_interrupted_restore,
)
from rsir_stac.store.segments import SEGMENT_POINTS, Rounds, edge_config, shard_cap_points
from rsir_stac.store.space import (
    create_bytes,
    disk_full,
    is_disk_full,
    open_bytes,
    populates_mmaps,
    require_free,
    write_bytes,
)

log = logging.getLogger(__name__)

UPSERT_BATCH = 512
#: Seconds ``check`` waits for its child process to load the shard (:meth:`EdgeStore._probe_load`)
#: before leaving the question to the real load.
PROBE_TIMEOUT_S = 600


def graph_params(flt: SearchFilter | None) -> Any:
    """The ``qdrant_edge.SearchParams`` of a graph search: width :data:`HNSW_EF`, and
    ACORN for a filter (:func:`~rsir_stac.store.base.acorn_selectivity`)."""
    import qdrant_edge as q

    sel = acorn_selectivity(flt)
    if sel is None:
        return q.SearchParams(hnsw_ef=HNSW_EF)
    return q.SearchParams(hnsw_ef=HNSW_EF, acorn=q.AcornSearchParams(enable=True, max_selectivity=sel))


class EdgeStore(Store):
    """A :class:`Store` in a local directory, backed by a Qdrant Edge shard."""

    backend = "edge"

    def __init__(self, index: str | Path, *, collection: str = "rsir_tiles", read_only: bool = False,
                 repair: bool | None = True, segment_points: int | None = SEGMENT_POINTS, probe: bool = False) -> None:
        """Open (read-only: never write) the index folder ``index``.

        ``segment_points``: a collection this store creates caps its segments at
        about that many points (the cap is whole KB of vectors, and a round starts
        after the 512-point write batch that reaches it) and is optimized each time
        that many have been written
        (``store.segments``: bounds a build's memory by the round, not the index);
        None creates one uncapped segment.  An existing collection keeps the layout
        it was created with.

        ``repair``: a writable open of a shard whose files are damaged rebuilds
        it from the points that pass ``rsir-stac check`` (logged as a warning);
        False only warns about damage, None neither repairs nor warns (check).
        ``probe``: load the shard in a child process first (:meth:`_probe_load`; ``check``,
        ``check --repair`` and ``snapshot``), so damage that makes the engine abort the
        process is reported (and set aside by a repair) instead of killing this one.
        Raises StoreError (IndexInUseError when another process holds it,
        DiskFullError when the file system cannot take the open).
        """
        self.index = Path(index).expanduser().absolute()
        self._probe = probe
        self.location = str(self.index)
        self.collection = collection
        self.read_only = read_only
        if not collection or "/" in collection or collection.startswith("."):
            raise StoreError(f"collection name {collection!r} is not a plain name; use e.g. 'rsir_tiles'")
        self.shard_dir = self.index / collection
        self.meta_path = self.index / f"{collection}.meta.json"
        self._shard: Any = None
        self._meta: CollectionMeta | None = None
        self._dirty = False
        self._closed = False
        self._ledger: Any = None
        self._private: Path | None = None  # private copy of a read-only shard
        self._memfs: bool | None = None  # index on a memory-backed file system (see space)
        if segment_points is not None and (isinstance(segment_points, bool) or not isinstance(segment_points, int)
                                           or segment_points < 1):
            raise StoreError(f"segment_points {segment_points!r} for index {self.index} must be a positive "
                             "number of points (an int) or None")
        self._segment_points = segment_points
        self._rounds = Rounds(None)  # optimize rounds of a capped shard (segments)
        self.repaired: Any = None  # the RepairReport when this open repaired the index
        self.meta_recovered: str | None = None  # why the metadata was read back from the points
        self.ledger_unreadable: str | None = None  # why the digest ledger cannot be read (opened without it)
        self._made_dir = False  # this open created the index folder
        self._wrote = False  # a write batch reached the engine
        self._discard = False  # a failure before any write in a folder this open created: remove it at close
        if self.index.exists() and not self.index.is_dir():
            raise StoreError(f"index {self.index} is a file, not a directory; give a directory for --index")
        refuse_broken_link(self.index)
        undo_interrupted_restore(self.index, collection)
        if read_only and not self.shard_dir.is_dir():
            aside = damaged_aside_paths(self.index, collection) if self.index.is_dir() else []
            if aside:
                raise IndexNotFoundError(
                    f"index {self.index} has no collection {collection!r} (a damaged one was set aside in "
                    f"{aside[-1].name}); re-run the ingest that built it, or `rsir-stac restore SNAPSHOT --index "
                    f"{self.index} --force`")
            raise IndexNotFoundError(
                f"index {self.index} has no collection {collection!r}; build it with ingest or check --index"
            )
        self._use_private = read_only and self._needs_private_copy()
        if self._use_private:
            self._lock = _IndexLock.none()
        else:
            self._made_dir = not self.index.exists()
            try:
                self.index.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if is_disk_full(exc):
                    raise disk_full(self.index, "creating the index folder") from None
                raise StoreError(f"cannot create index directory {self.index} ({exc.strerror}); choose a writable --index") from None
            self._lock = _IndexLock(self.index)
        try:
            if not read_only:  # a writer cleans up after a killed repair or creation (we hold the lock)
                finish_interrupted_repair(self.index, collection, remove_stale=True)
            if self._has_segments():
                self._open_existing(None if repair is None else repair and not read_only)
        except BaseException:
            self.close()
            raise
        log.debug("opened %r", self)

    # -- engine plumbing ---------------------------------------------------

    def _needs_private_copy(self) -> bool:
        """A read-only open loads a private copy when the index is on read-only
        media (the engine writes while loading) or its disk is too full to load."""
        if not self._has_segments():
            return False
        if not os.access(self.index, os.W_OK) or not os.access(self.shard_dir, os.W_OK):
            return True
        try:
            require_free(self.index, open_bytes(self.shard_dir), "")
        except DiskFullError:
            return True
        return False

    def _open_existing(self, repair: bool) -> None:
        from rsir_stac.store.files import private_copy
        from rsir_stac.store.integrity import inspect_files, pending_rebuild, rebuild_shard

        if self._use_private:
            self._private = private_copy(self.shard_dir)
        else:
            require_free(self.index, open_bytes(self.shard_dir), f"opening index {self.index}")
        found = inspect_files(self.shard_dir)  # stat only: cheap
        damage = [f for f in found if f.kind != "tracker"]  # trackers: see inspect_files
        try:
            if self._probe:  # check, repair, snapshot: a load that kills the process is damage to report
                self._probe_load()
            self._load()
        except (IndexInUseError, DiskFullError):
            raise
        except StoreError as exc:
            if repair and getattr(exc, "payload_index_damaged", False) and not self._private:
                moved = self._payload_indexes_aside()
                log.warning("index %s: payload index files the engine cannot read were moved to %s; rebuilding "
                            "the index from its points", self.index, moved)
                self._load()
                damage = damage or [_payload_index_finding()]
            elif repair and not self._private and _wal_damaged(exc) and self._load_without_wal(exc):
                pass  # the segments loaded; what only the WAL held is missing and the ingest writes it again
            elif repair and (damage or _unloadable(exc)):
                from rsir_stac.store.integrity import Finding

                # damaged beyond loading (a deleted descriptor, a corrupt id tracker, WAL header or shard
                # config): set it aside, so that the ingest builds the collection again
                self._set_aside(damage or [Finding("engine", f"the engine cannot load it ({_engine_message(exc)})")])
                return
            else:
                raise
        self._ledger = self._open_ledger(repair)
        if repair is None:
            pass
        elif not repair:
            self._warn_damage(damage, found)
        elif damage:
            log.warning("index %s is damaged (%s); rebuilding it from the points that pass the check",
                        self.index, "; ".join(f.message for f in damage))
            self.repaired = rebuild_shard(self)
        elif pending := pending_rebuild(self.index, self.collection):
            log.warning("index %s: the last `rsir-stac check` found %s; rebuilding the shard from its points",
                        self.index, "; ".join(pending))
            self.repaired = rebuild_shard(self)

    def _open_ledger(self, repair: bool | None) -> Any:
        """The digest ledger of the loaded shard.  One SQLite cannot read (random bytes, cut short,
        zeroed) is not damage to the points: a writable open with ``repair`` moves it aside
        (``.<collection>.digests.damaged-<time>``) and starts a new one, so a re-run ingest
        re-embeds the points and ``check --repair`` records their digests as they read now; other
        opens go on without it (``ledger_unreadable`` says why; read-only opens warn)."""
        from rsir_stac.store.digests import LEDGER_SUFFIX, DigestLedger

        try:
            return DigestLedger.for_index(self.index, self.collection, read_only=self.read_only)
        except StoreError as exc:
            why = getattr(exc, "ledger_unreadable", None)
            if why is None:
                raise
        path = self.index / f"{self.collection}{LEDGER_SUFFIX}"
        if repair and not self.read_only and not self._private:
            aside = damaged_aside_path(self.index, f"{self.collection}.digests")
            for extra in ("", "-wal", "-shm"):
                f = path.with_name(path.name + extra)
                if f.exists():
                    os.replace(f, aside.with_name(aside.name + extra))
            _fsync_dir(self.index)
            log.warning("index %s: its digest ledger %s is unreadable (%s); moved it to %s and started a new one (the "
                        "points are unverified until the ingest re-embeds them or `rsir-stac check --repair` records "
                        "their digests)", self.index, path.name, why, aside.name)
            return DigestLedger.for_index(self.index, self.collection, read_only=False)
        self.ledger_unreadable = str(why)
        if repair is not None:
            log.warning("index %s: its digest ledger %s is unreadable (%s), so its points cannot be verified; run "
                        "`rsir-stac check --index %s --repair` (it sets the ledger aside and records the points' "
                        "digests) or re-run the ingest that built it", self.index, path.name, why, self.index)
        return None

    def _load_without_wal(self, exc: BaseException) -> bool:
        """The engine cannot open the shard's write-ahead log (a damaged header): move ``wal/``
        aside (``.<collection>.wal.damaged-<time>``) and load the segments alone, which hold
        every point flushed; points written since the last flush are lost (the ledger still
        records them, so ``check`` names them and a re-run ingest writes them again).  Returns
        whether that load worked; if not, the WAL is put back and the shard is left as it was."""
        wal = self.shard_dir / "wal"
        if not wal.is_dir():
            return False
        aside = damaged_aside_path(self.index, f"{self.collection}.wal")
        os.replace(wal, aside)
        try:
            self._load()
        except StoreError:
            if not wal.exists():
                os.replace(aside, wal)
            return False
        log.warning("index %s: its write-ahead log cannot be opened (%s); moved it to %s and loaded the segments "
                    "(points written since the last flush are missing: re-run the ingest that built it)",
                    self.index, _engine_message(exc), aside)
        return True

    def _payload_indexes_aside(self) -> Path:
        """Move every segment's payload index files (not their config) to
        ``.payload_index.damaged`` beside the collection, so that the engine loads the points;
        the rebuild that follows indexes them again.  Returns that folder."""
        aside = self.index / ".payload_index.damaged"
        shutil.rmtree(aside, ignore_errors=True)
        for field_dir in sorted(self.shard_dir.glob("segments/*/payload_index/*")):
            if field_dir.is_dir():
                target = aside / field_dir.parent.parent.name / field_dir.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(field_dir, target)
        return aside

    def _set_aside(self, damage: list) -> None:
        """Move a shard the engine cannot load (with damaged files) to
        ``.<collection>.damaged`` and forget its digests; the next write creates
        the collection again (with the same model, checked against the metadata)."""
        from rsir_stac.store.digests import LEDGER_SUFFIX, DigestLedger
        from rsir_stac.store.integrity import RepairReport

        aside = damaged_aside_path(self.index, self.collection)  # never replaces an earlier one
        os.replace(self.shard_dir, aside)
        ledger = self.index / f"{self.collection}{LEDGER_SUFFIX}"
        lost, lost_ids = 0, []
        if ledger.is_file():
            try:
                old = DigestLedger(ledger, read_only=True)
                try:
                    lost = old.count()
                    lost_ids = list(old.ids())
                finally:
                    old.close()
            except Exception:  # noqa: BLE001 - an unreadable ledger: the count is unknown
                pass
            # the digests go with the shard they describe (the new collection starts a new ledger)
            for extra in ("", "-wal", "-shm"):
                f = ledger.with_name(ledger.name + extra)
                if f.exists():
                    os.replace(f, aside / f.name)
        self._meta = self._read_meta()
        self._shard = None
        self.repaired = RepairReport(str(self.index), 0, lost, [], [f"shard unloadable: {damage[0].message}"],
                                     set_aside=str(aside))
        from rsir_stac.store.integrity import record_repair

        record_repair(self.index, self.collection, lost_ids, self.repaired.reasons, total=lost, set_aside=aside.name)
        log.warning("index %s cannot be loaded (%s); moved it to %s with its %d recorded points (delete it when "
                    "done) and will build the collection again", self.index, "; ".join(f.message for f in damage),
                    aside, lost)

    def _warn_damage(self, damage: list, found: list) -> None:
        """Warn (once, at open) when files are damaged or points recorded in the
        digest ledger are missing; ``rsir-stac check`` says exactly what.  Metadata that disagrees with
        the shard and its points (a modified ``meta.json``) is read from them instead, as ``check
        --repair`` writes it."""
        why = self.meta_disagrees() if self._meta is not None and self._meta.model_id else None
        dim, model = (self._shard_dim(), self._points_model_id()) if why else (None, None)
        if why and dim is not None and model is not None:
            self._meta = CollectionMeta.new(dim, model)
            log.warning("index %s: %s; searching it as model %s (run `rsir-stac check --index %s --repair` to write "
                        "it again)", self.index, why, model, self.index)
        lost = 0
        if self._ledger is not None and self._shard is not None:
            try:
                lost = self._ledger.count() - self.count()
            except StoreError:
                lost = 0
        if lost > 0:
            damage = found
        sampled = self._sampled_damage()
        if sampled:
            damage = [*damage, sampled]
        if damage or lost > 0:
            what = "; ".join([f.message for f in damage] + ([f"{lost} recorded points are missing"] if lost > 0 else []))
            log.warning("index %s is damaged (%s); run `rsir-stac check --index %s` and re-run the ingest that built it",
                        self.index, what, self.index)
            return
        from rsir_stac.store.integrity import health_notes

        for note in health_notes(self):  # what the last check or repair recorded, verified on its points
            log.warning("index %s: %s", self.index, note)

    #: Points read back at open (vectors and payloads) by :meth:`_sampled_damage`.
    OPEN_SAMPLE = 16

    def _sampled_damage(self) -> Any:
        """A finding when the first :data:`OPEN_SAMPLE` points read back without their vector or
        payload (damage the engine reads without an error: deleted flags or a vector status file
        modified, a zeroed payload tracker); None otherwise or when they cannot be read (one small
        read at open, so that `info` -- which reads no vector -- says so too)."""
        import qdrant_edge as q

        from rsir_stac.store.integrity import Finding

        if self._shard is None:
            return None
        try:
            recs, _ = self._shard.scroll(q.ScrollRequest(limit=self.OPEN_SAMPLE, with_payload=True, with_vector=True))
        except Exception:  # noqa: BLE001 - other damage: the reads that follow name it
            return None
        novec = [r for r in recs if _vector_of(r.vector) is None or np.size(_vector_of(r.vector)) == 0]
        nopay = self._payloads_lost([str(r.id) for r in recs if not r.payload], subset=False)
        what = ([f"{len(novec)} have no stored vector (searches leave them out)"] if novec else []) + (
            [f"{len(nopay)} have lost their payload"] if nopay else [])
        if not what:
            return None
        return Finding("engine", f"of the {len(recs)} points read at open, {' and '.join(what)}: the storage under "
                                 f"{self.collection}/segments/ was modified")

    def make_writable(self) -> None:
        """Allow writes on a store opened read-only that holds the index lock
        (``serve``'s ingest jobs).  Raises StoreError for a private copy of an
        index on read-only media (nothing could be written back)."""
        from rsir_stac.store.digests import DigestLedger

        self._check_open()
        if not self.read_only:
            return
        if self._use_private or self._lock.fd is None and self._lock.path is None:
            raise StoreError(f"index {self.index} is on read-only media (searched from a private copy); "
                             "ingest into a writable copy of it")
        if self._ledger is not None:
            self._ledger.close()
        self._ledger = DigestLedger.for_index(self.index, self.collection, read_only=False)
        self.read_only = False

    def _has_segments(self) -> bool:
        return (self.shard_dir / "segments").is_dir() or (self.shard_dir / "edge_config.json").is_file()

    def _engine_error(self, exc: Exception, action: str) -> StoreError:
        msg = _engine_message(exc)
        if self._private is not None:  # name the index, not the private copy it was loaded from
            msg = msg.replace(str(self._private), str(self.shard_dir))
        if is_disk_full(exc):
            return disk_full(self.index, action)
        if file_too_large(exc):
            return StoreError(too_large_message(self.index, action))
        if "WouldBlock" in msg:
            return IndexInUseError(
                f"index {self.index} is in use by another process (its WAL is locked); wait for it or use another --index"
            )
        if _denied(msg):
            err = StoreError(f"index {self.index}: {action} failed ({msg}); check the permissions of {self.index} "
                             "and the files in it")
        elif action == "loading the Edge shard":
            err = StoreError(
                f"index {self.index} cannot be loaded: the engine fails on its files ({msg}); run `rsir-stac check "
                f"--index {self.index} --repair` (it sets the damaged shard aside) and then re-run the ingest that "
                f"built it, or restore a snapshot with `rsir-stac restore SNAPSHOT --index {self.index} --force`")
        elif action.startswith("creating") and not self.shard_dir.is_dir():  # no index yet: nothing to check
            err = StoreError(f"index {self.index}: {action} failed ({msg}); check the free space, permissions and "
                             f"file-size limit (`ulimit -f`) for {self.index}, then re-run the same command")
        elif _looks_damaged(msg):
            err = StoreError(
                f"index {self.index} is damaged: {action} failed ({msg}); run `rsir-stac check --index {self.index} "
                "--repair`, then re-run the ingest that built it to restore the points it drops")
        else:
            err = StoreError(
                f"index {self.index}: {action} failed ({msg}); run `rsir-stac check --index {self.index}` to find "
                "damaged files (`--repair`, then re-running the ingest that built it, fixes them)")
        err.engine_message = msg  # type: ignore[attr-defined]
        return err

    def _probe_load(self) -> None:
        """Load the shard once in a child process first (``check`` and ``check --repair``): on
        some damage the engine aborts the whole process (bytes of a segment's id tracker flipped
        made it allocate ~100 GB and abort: SIGABRT, exit 134), which no Python handler catches.
        A child killed by a signal raises StoreError naming it, so that ``check`` reports the
        shard as unloadable and ``--repair`` sets it aside; any other outcome is left to the real
        load (its error, or the lock, says what it is)."""
        import signal
        import subprocess
        import sys

        shard = str(self._private or self.shard_dir)
        code = "import sys, qdrant_edge as q; q.EdgeShard.load(sys.argv[1])"
        try:
            done = subprocess.run([sys.executable, "-c", code, shard], capture_output=True, timeout=PROBE_TIMEOUT_S,
                                  env={**os.environ, "RUST_BACKTRACE": "0"})
        except (OSError, subprocess.TimeoutExpired):
            return
        if done.returncode < 0:
            try:
                name = signal.Signals(-done.returncode).name
            except ValueError:
                name = f"signal {-done.returncode}"
            raise StoreError(f"index {self.index}: the engine aborts loading {self.collection}/ ({name}; its files "
                             "are damaged, e.g. a segment's id tracker)")

    def _load(self) -> None:
        import qdrant_edge as q

        try:
            self._shard = q.EdgeShard.load(str(self._private or self.shard_dir))
        except Exception as exc:  # noqa: BLE001 - qdrant_edge raises bare Exception
            raise self._engine_error(exc, "loading the Edge shard") from None
        except BaseException as exc:  # a Rust panic: pyo3's PanicException derives from BaseException
            if type(exc).__name__ != "PanicException":
                raise
            why = _first_line(exc).replace(str(self._private), str(self.shard_dir)) if self._private else _first_line(exc)
            err = StoreError(
                f"index {self.index}: the engine stopped reading it ({why}): its payload index files "
                f"(location, item_id, date) are damaged; run `rsir-stac check --index {self.index} --repair` to "
                "rebuild them")
            err.payload_index_damaged = True  # type: ignore[attr-defined]
            raise err from None
        try:
            self._meta = self._read_meta()
        except StoreError as exc:  # unreadable: the same facts can be read back from the shard and its points
            self._meta = self._recovered_meta(str(exc))
            if self._meta is None:
                raise
        cap = shard_cap_points(self.shard_dir)
        if cap is not None and not self.read_only:
            info = self._shard.info()  # points not yet in an indexed segment count towards the next round
            self._rounds = Rounds(cap, max(0, int(info.points_count) - int(info.indexed_vectors_count)))
        if self._meta is None:
            self._meta = self._recovered_meta(f"{self.meta_path.name} is missing")
            if self._meta is None:
                dim = self._shard_dim()
                log.warning("index %s has no %s; model_id is unknown until ensure_collection", self.index,
                            self.meta_path.name)
                if dim is not None:
                    self._meta = CollectionMeta(dim=dim, model_id="", created_at="", rsir_stac_version="")

    def meta_disagrees(self) -> str | None:
        """Why ``rsir_tiles.meta.json`` disagrees with the shard (its vector size) or the stored
        points (their ``model_id``, the most common among up to 64), else None."""
        if self._meta is None or self._shard is None:
            return None
        dim, model = self._shard_dim(), self._points_model_id()
        if (dim is not None and dim != self._meta.dim) or (model is not None and model != self._meta.model_id):
            return (f"{self.meta_path.name} says {self._meta.dim}-d vectors of model {self._meta.model_id!r}, but the "
                    f"shard holds {dim}-d vectors and the points say model {model!r}")
        return None

    def _points_model_id(self, n: int = 64) -> str | None:
        """The ``model_id`` most of the first ``n`` stored points carry (None: no point has one)."""
        import qdrant_edge as q

        try:
            recs, _ = self._shard.scroll(q.ScrollRequest(limit=n, with_payload=True, with_vector=False))
        except Exception:  # noqa: BLE001
            return None
        ids = [unpack_payload(r.payload).get("model_id") for r in recs]
        ids = [m for m in ids if isinstance(m, str) and m]
        return max(set(ids), key=ids.count) if ids else None

    def _meta_from_points(self, dim: int, model_id: str) -> CollectionMeta | None:
        """When ``<collection>.meta.json`` names another model or size than a writer asks for, but the
        shard holds ``dim``-d vectors and the stored points say ``model_id`` (the file was modified, not
        the index built with another model): the metadata written again from them, as ``check
        --repair`` does (logged); else None (a real mismatch, refused by the caller)."""
        if self._shard_dim() != dim or self._points_model_id() != model_id:
            return None
        meta = CollectionMeta.new(dim, model_id)
        _write_json_atomic(self.meta_path, meta.to_dict())
        log.warning("index %s: %s said %d-d vectors of model %r, but the shard and its points hold %d-d vectors of "
                    "model %s; wrote it again from the stored points", self.index, self.meta_path.name,
                    self._meta.dim if self._meta else 0, self._meta.model_id if self._meta else "", dim, model_id)
        return meta

    def _recovered_meta(self, why: str) -> CollectionMeta | None:
        """The collection metadata read back from the shard (vector size) and the stored points'
        payloads (``model_id``, verified by the digest ledger on every check), written again
        when the index is writable; None for an empty shard or one without ``model_id``s."""
        dim, model_id = self._shard_dim(), self._points_model_id()
        if dim is None or model_id is None:
            return None
        meta = CollectionMeta.new(dim, model_id)
        self.meta_recovered = why
        if not self.read_only and not self._private:
            _write_json_atomic(self.meta_path, meta.to_dict())
            log.warning("index %s: %s; wrote it again from the stored points (model %s, %d-d)", self.index, why,
                        model_id, dim)
        else:
            log.warning("index %s: %s; read the model (%s, %d-d) from the stored points", self.index, why,
                        model_id, dim)
        return meta

    def _read_meta(self) -> CollectionMeta | None:
        try:
            doc = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"index metadata {self.meta_path} is unreadable ({exc}); restore it or rebuild the index") from None
        meta = CollectionMeta.from_dict(doc)
        if meta is None:
            raise StoreError(f"index metadata {self.meta_path} is not rsir-stac metadata; restore it or rebuild the index")
        return meta

    def _shard_dim(self) -> int | None:
        """Vector size from the shard's own edge_config.json (fallback when our metadata is lost)."""
        try:
            cfg = json.loads((self.shard_dir / "edge_config.json").read_text(encoding="utf-8"))
            return int(cfg["vectors"][""]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _ensure_indexes(self) -> None:
        import qdrant_edge as q

        kinds = {
            "keyword": q.PayloadSchemaType.Keyword,
            "tenant": q.KeywordIndexParams(is_tenant=True),
            "geo": q.PayloadSchemaType.Geo,
            "float": q.PayloadSchemaType.Float,
        }
        have = set(self._shard.info().payload_schema)
        for name, kind in PAYLOAD_INDEXES.items():
            if name not in have:
                self._shard.update(q.UpdateOperation.create_field_index(name, kinds[kind]))
                self._dirty = True

    # -- Store API ---------------------------------------------------------

    def describe(self) -> str:
        return f"index {self.index}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"index {self.index} is closed; open it again with open_store()")

    def meta(self) -> CollectionMeta | None:
        self._check_open()
        return self._meta if self._shard is not None else None

    def ensure_collection(self, dim: int, model_id: str) -> None:
        dim = int(dim)
        if dim < 1:
            raise StoreError(f"vector size {dim} for index {self.index} must be positive; check the model")
        self._check_open()
        if self._shard is not None:
            if self._meta is None:  # metadata lost and shard config unreadable: trust the caller
                self._meta = CollectionMeta(dim=dim, model_id="", created_at="", rsir_stac_version="")
            if not self._meta.model_id and self._meta.dim == dim and not self.read_only:
                # metadata file was lost: adopt the caller's model id
                self._meta = CollectionMeta.new(dim, model_id)
                _write_json_atomic(self.meta_path, self._meta.to_dict())
            if (self._meta.dim, self._meta.model_id) != (dim, str(model_id)) and not self.read_only:
                self._meta = self._meta_from_points(dim, str(model_id)) or self._meta
            check_incompatible(self._meta, dim, model_id, f"index {self.index}")
            if not self.read_only:
                try:
                    self._ensure_indexes()
                except Exception as exc:  # noqa: BLE001
                    raise self._engine_error(exc, "creating payload indexes") from None
            return
        self._require_writable()
        from rsir_stac.store.digests import DigestLedger

        if self._meta is not None:  # a shard set aside as damaged: same model only
            check_incompatible(self._meta, dim, model_id, f"index {self.index}")
        require_free(self.index, create_bytes(self.index), f"creating a collection in index {self.index}")
        meta = CollectionMeta.new(dim, model_id)
        try:
            _write_json_atomic(self.meta_path, meta.to_dict())  # before the shard: a crash leaves no orphan data
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.index, "writing the index metadata") from None
            raise
        try:
            self._create_shard(edge_config(dim, self._segment_points))
            self._rounds = Rounds(shard_cap_points(self.shard_dir))
            self._meta = meta
            self._ledger = DigestLedger.for_index(self.index, self.collection, read_only=False)
        except BaseException:
            shutil.rmtree(self.index / f".{self.collection}.creating", ignore_errors=True)
            self._discard = self._made_dir  # a new folder: nothing of it stays (close removes it)
            raise
        log.info("created index %s collection %s (dim %d, model %s)", self.index, self.collection, dim, model_id)

    def _create_shard(self, cfg: Any) -> None:
        """Create the shard atomically: build it (with payload indexes) in a hidden
        folder, then rename it into place, so a process killed half-way leaves no
        half-made shard (only the hidden folder, removed on the next creation)."""
        import qdrant_edge as q

        tmp = self.index / f".{self.collection}.creating"
        try:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a killed creation; we hold the lock
            if self.shard_dir.is_dir() and not any(self.shard_dir.iterdir()):
                self.shard_dir.rmdir()
            if self.shard_dir.exists():
                raise StoreError(
                    f"index {self.index}: {self.shard_dir.name}/ exists but is not an Edge shard; "
                    "move it away or use another --index"
                )
            self._shard = q.EdgeShard.create(str(tmp), cfg)
            self._ensure_indexes()
            self._shard.flush()
            self._shard.close()
            self._shard = None
            os.replace(tmp, self.shard_dir)
            _fsync_dir(self.index)
            self._shard = q.EdgeShard.load(str(self.shard_dir))
        except StoreError:
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.index, "creating the Edge shard") from None
            if file_too_large(exc):
                raise StoreError(too_large_message(self.index, "creating the Edge shard")) from None
            raise StoreError(f"index {self.index}: creating the Edge shard failed ({exc.strerror or exc}); "
                             "check free space and permissions") from None
        except Exception as exc:  # noqa: BLE001 - qdrant_edge raises bare Exception
            raise self._engine_error(exc, "creating the Edge shard") from None

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

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` stored *and* intact: read back with vectors and
        payloads matching their recorded digests.  Points that are damaged, or
        have no digest, are not returned, so a resumed ingest writes them again."""
        from rsir_stac.store.integrity import verified_ids

        present = self.present_ids(ids)
        if not present or self._ledger is None:
            return present
        return verified_ids(self, present)

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
        if payloads is not None:
            empty = [pid for pid, p in zip(ids, payloads) if not p]
            if empty:
                lost = self._payloads_lost(empty, subset=subset)
                if lost:
                    raise self._no_payload_error(lost)

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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._shard is not None:
                try:
                    if not self._discard:
                        self.flush()
                finally:
                    try:
                        self._shard.close()
                    except Exception as exc:  # noqa: BLE001
                        log.warning("closing index %s: %s", self.index, exc)
                    self._shard = None
        finally:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
            if self._discard:
                self._remove_created()  # under the lock
            self._lock.release()
            if self._private is not None:
                from rsir_stac.store.files import remove_private_copy

                remove_private_copy(self._private)
                self._private = None
            self._remove_if_unused()
        log.debug("closed index %s", self.index)

    def _remove_created(self) -> None:
        """Remove everything but the lock from an index folder this open created, after a failure
        before its first write (``_remove_if_unused`` then removes the lock and the folder)."""
        if not self._made_dir:
            return
        for child in list(self.index.iterdir()):
            if child.name == LOCK_NAME:
                continue
            try:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            except OSError as exc:
                log.warning("index %s: cannot remove %s, left by the failed run (%s)", self.index, child.name, exc)

    def _remove_if_unused(self) -> None:
        """An index folder this open created and nothing was written to (a full disk or another
        error before the collection existed) is removed again: nothing half-made is left."""
        if not self._made_dir:
            return
        try:
            if {p.name for p in self.index.iterdir()} <= {".lock"}:
                (self.index / ".lock").unlink(missing_ok=True)
                self.index.rmdir()
        except OSError:
            pass


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


__all__ = ["EdgeStore"]

