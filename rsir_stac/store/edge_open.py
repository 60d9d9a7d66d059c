"""Opening an Edge index: loading its shard, and the damage found at open.

What a writable open does about damage it finds (``repair``): payload index
files the engine cannot read moved aside, a write-ahead log it cannot open moved
aside (the flushed segments load alone), a shard it cannot load set aside for the
ingest to build again, an unreadable digest ledger moved aside; damaged files or
points rebuilt (:func:`~rsir_stac.store.repair.rebuild_shard`).  Other opens only
warn.  A read-only open of an index on read-only media or a full disk loads a
private copy.  :class:`EdgeOpenMixin` is part of
:class:`~rsir_stac.store.edge.EdgeStore`, on its attributes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import DiskFullError, IndexInUseError, StoreError
from rsir_stac.store.folder import (
    _engine_message,
    _first_line,
    _fsync_dir,
    _payload_index_finding,
    _unloadable,
    _wal_damaged,
    damaged_aside_path,
)
from rsir_stac.store.payloads import _vector_of
from rsir_stac.store.records import CollectionMeta
from rsir_stac.store.segments import Rounds, shard_cap_points
from rsir_stac.store.space import open_bytes, require_free

log = logging.getLogger("rsir_stac.store.edge")  # the name the index's messages have always carried

#: Seconds ``check`` waits for its child process to load the shard (:meth:`EdgeStore._probe_load`)
#: before leaving the question to the real load.
PROBE_TIMEOUT_S = 600


class EdgeOpenMixin:
    """Loading the shard of an :class:`~rsir_stac.store.edge.EdgeStore` and handling the
    damage found at open (a part of that class, on its attributes)."""

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
        from rsir_stac.store.health import pending_rebuild
        from rsir_stac.store.repair import rebuild_shard
        from rsir_stac.store.shard_files import inspect_files

        if self._use_private:
            self._private = private_copy(self.shard_dir)
        else:
            require_free(self.index, open_bytes(self.shard_dir), f"opening index {self.index}")
        self._check_segment_versions(repair)
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
                from rsir_stac.store.shard_files import Finding

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

    def _check_segment_versions(self, repair: bool | None) -> None:
        """Before the engine loads the shard: a segment that lost its ``version.info`` would be
        deleted as unfinished (:func:`~rsir_stac.store.shard_files.versionless_segments`).  ``check
        --repair`` writes the file back (the points are then verified like any others); every
        other open refuses, naming that command, so that no command deletes points."""
        from rsir_stac.store.shard_files import restore_segment_versions, versionless_segments

        shard = Path(self._private or self.shard_dir)
        lost = versionless_segments(shard)
        if not lost:
            return
        names = ", ".join(os.path.relpath(p, shard.parent) for p in lost[:3]) + (", ..." if len(lost) > 3 else "")
        if repair and not self._private:
            version = restore_segment_versions(lost)
            log.warning("index %s: segment %s had lost its version.info or holds a garbled one (the engine would have deleted it as "
                        "unfinished); wrote it back (%s), and its points are verified against their digests",
                        self.index, names, version)
            return
        raise StoreError(f"index {self.index}: segment {names} has lost its version.info (or it is empty or "
                         "garbled), so the engine would delete it as unfinished, with any points only it holds (a "
                         "process killed while the engine wrote a new segment leaves one too; its points are then "
                         "in the others); nothing was opened or changed: run `rsir-stac check "
                         f"--index {self.index} --repair` to write the file back and verify its points (or restore "
                         "the index from a snapshot)")

    def _open_ledger(self, repair: bool | None) -> Any:
        """The digest ledger of the loaded shard.  One SQLite cannot read (random bytes, cut short,
        zeroed) is not damage to the points: a writable open with ``repair`` moves it aside
        (``.<collection>.digests.damaged-<time>``) and starts a new one, so a re-run ingest
        re-embeds the points and ``check --repair`` records their digests as they read now; other
        opens go on without it (``ledger_unreadable`` says why; read-only opens warn)."""
        from rsir_stac.store.digests import LEDGER_SUFFIX, DigestLedger

        path = self.index / f"{self.collection}{LEDGER_SUFFIX}"
        writer = not self.read_only and not self._private
        if writer and path.is_file() and not os.access(path, os.R_OK | os.W_OK):
            # SQLite opens a file it may only read and fails at the first write, which read as damage
            raise StoreError(f"index {self.index}: its digest ledger {path} cannot be used by this user (permission "
                             "denied: this user may not read and write it), which is not damage, so nothing was "
                             f"changed; give access to it (e.g. as its owner, `chmod u+rw {path}`) or run as the "
                             "user that owns the index")
        try:
            return DigestLedger.for_index(self.index, self.collection, read_only=self.read_only)
        except StoreError as exc:
            why = getattr(exc, "ledger_unreadable", None)
            if why is None:
                raise
        if path.exists() and not os.access(path, os.R_OK | (0 if self.read_only else os.W_OK)):
            # this user's access, not damage: never set aside (a repair then trusted changed vectors)
            why = "permission denied: this user may not " + ("read" if self.read_only else "read and write") + " it"
            if repair or not self.read_only:  # a writer would add points it cannot record: refuse before any
                raise StoreError(f"index {self.index}: its digest ledger {path} cannot be used by this user "
                                 f"({why}), which is not damage, so nothing was changed; give access to it (e.g. as "
                                 f"its owner, `chmod u+rw {path}`) or run as the user that owns the index")
        elif repair and not self.read_only and not self._private:
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
        from rsir_stac.store.repair import RepairReport

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
        from rsir_stac.store.health import record_repair

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
            if lost > 0:  # points gone without a read error: a copy would silently hold a part
                self.damage_at_open = f"{lost} recorded points are missing"
            log.warning("index %s is damaged (%s); run `rsir-stac check --index %s` and re-run the ingest that built it",
                        self.index, what, self.index)
            return
        from rsir_stac.store.health import health_notes

        for note in health_notes(self):  # what the last check or repair recorded, verified on its points
            log.warning("index %s: %s", self.index, note)
            if "are still missing from the index" in note:  # a repair dropped them: a copy would lack them
                self.damage_at_open = note.split(";")[0]

    #: Points read back at open (vectors and payloads) by :meth:`_sampled_damage`.
    OPEN_SAMPLE = 16

    def _sampled_damage(self) -> Any:
        """A finding when the first :data:`OPEN_SAMPLE` points read back without their vector or
        payload (damage the engine reads without an error: deleted flags or a vector status file
        modified, a zeroed payload tracker); None otherwise or when they cannot be read (one small
        read at open, so that `info` -- which reads no vector -- says so too)."""
        import qdrant_edge as q

        from rsir_stac.store.shard_files import Finding

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


__all__ = ["EdgeOpenMixin", "PROBE_TIMEOUT_S"]
