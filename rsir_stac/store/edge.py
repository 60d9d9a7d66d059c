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
it from the points that pass (``repair.rebuild_shard``).  Loads, creations,
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

The parts of :class:`EdgeStore` live beside it, as mixins on its attributes:
opening and the damage found at open (:mod:`~rsir_stac.store.edge_open`), the
collection metadata and its recovery (:mod:`~rsir_stac.store.edge_meta`), the raw
reads (:mod:`~rsir_stac.store.edge_read`), the verification of what they read
back (:mod:`~rsir_stac.store.edge_verify`), and the writes: upserts, deletes,
optimizing and flushing (:mod:`~rsir_stac.store.edge_write`).  Here: the folder and
lock, creating the collection, and closing.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from rsir_stac.errors import IndexInUseError, StoreError
from rsir_stac.store.base import Store
from rsir_stac.store.edge_meta import EdgeMetaMixin
from rsir_stac.store.edge_open import EdgeOpenMixin
from rsir_stac.store.edge_read import EdgeReadMixin
from rsir_stac.store.edge_verify import EdgeVerifyMixin
from rsir_stac.store.edge_write import EdgeWriteMixin
from rsir_stac.store.engine_filters import to_edge_filter  # noqa: F401 - benchmarks import it from here
from rsir_stac.store.folder import (
    LOCK_NAME,
    _IndexLock,
    _compact_engine_message,
    _denied,
    _engine_message,
    _fsync_dir,
    _looks_damaged,
    _write_json_atomic,
    file_too_large,
    finish_interrupted_repair,
    refuse_broken_link,
    too_large_message,
    undo_interrupted_restore,
)
from rsir_stac.store.payloads import PAYLOAD_INDEXES
from rsir_stac.store.records import CollectionMeta, check_incompatible
from rsir_stac.store.segments import SEGMENT_POINTS, Rounds, edge_config, shard_cap_points
from rsir_stac.store.space import create_bytes, disk_full, is_disk_full, require_free

log = logging.getLogger(__name__)


class EdgeStore(EdgeOpenMixin, EdgeMetaMixin, EdgeVerifyMixin, EdgeReadMixin, EdgeWriteMixin, Store):
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
        self.damage_at_open: str | None = None  # recorded points the open found missing (warned about)
        self._made_dir = False  # this open created the index folder
        self._wrote = False  # a write batch reached the engine
        self._discard = False  # a failure before any write in a folder this open created: remove it at close
        self._open_folder(read_only)
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

    def _open_folder(self, read_only: bool) -> None:
        """Check the index folder (a folder, not a broken link nor another store's; an interrupted
        restore undone), then create it and take its lock; a read-only open that loads a private
        copy of the shard takes none."""
        if self.index.exists() and not self.index.is_dir():
            raise StoreError(f"index {self.index} is a file, not a directory; give a directory for --index")
        refuse_broken_link(self.index)
        if self.index.is_dir():
            from rsir_stac.store.folder import refuse_other_store

            refuse_other_store(self.index, "edge")
        undo_interrupted_restore(self.index, self.collection)
        if read_only and not self.shard_dir.is_dir():
            from rsir_stac.store.folder import index_missing_error

            raise index_missing_error(self.index, self.collection)
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

    def _has_segments(self) -> bool:
        return (self.shard_dir / "segments").is_dir() or (self.shard_dir / "edge_config.json").is_file()

    def _engine_error(self, exc: Exception, action: str) -> StoreError:
        msg = _engine_message(exc)
        if self._private is not None:  # name the index, not the private copy it was loaded from
            msg = msg.replace(str(self._private), str(self.shard_dir))
        raw, msg = msg, _compact_engine_message(msg, self.index)  # raw for the tests below, msg to show
        if is_disk_full(exc):
            return disk_full(self.index, action)
        if file_too_large(exc):
            return StoreError(too_large_message(self.index, action))
        if "WouldBlock" in raw:
            return IndexInUseError(
                f"index {self.index} is in use by another process (its WAL is locked); wait for it or use another --index"
            )
        if _denied(raw):
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
        elif _looks_damaged(raw):
            err = StoreError(
                f"index {self.index} is damaged: {action} failed ({msg}); run `rsir-stac check --index {self.index} "
                "--repair`, then re-run the ingest that built it to restore the points it drops")
        else:
            err = StoreError(
                f"index {self.index}: {action} failed ({msg}); run `rsir-stac check --index {self.index}` to find "
                "damaged files (`--repair`, then re-running the ingest that built it, fixes them)")
        err.engine_message = raw  # type: ignore[attr-defined]
        return err

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
            raise StoreError(f"index {self.index} is closed; open it again (rsir_stac.search.Index.open, or rsir_stac.store.open_store for the store alone)")

    def meta(self) -> CollectionMeta | None:
        self._check_open()
        return self._meta if self._shard is not None else None

    def _store_meta(self, meta: CollectionMeta) -> None:
        _write_json_atomic(self.meta_path, meta.to_dict())
        self._meta = meta

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
                    f"index {self.index}: {self.shard_dir} exists but is not an Edge shard; move it away "
                    f"(`mv {self.shard_dir} {self.shard_dir}.bad`) and run the command again, or use another --index"
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


__all__ = ["EdgeStore"]
