"""The Edge index's folder around the engine's shard: its lock, atomic metadata writes,
interrupted restores and repairs, damaged shards set aside, and what engine errors mean.

Layout (see :mod:`rsir_stac.store.edge`)::

    <index>/.lock                          advisory lock (fcntl.flock), holds the owner's pid
    <index>/<collection>/                  the Edge shard
    <index>/.<collection>.repairing/       a repair's new shard before the swap
    <index>/.<collection>.damaged-<time>/  a shard the engine could not load, set aside

Pure path rules and small helpers, no engine calls: :class:`~rsir_stac.store.edge.EdgeStore`,
``integrity`` and ``snapshot`` share them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rsir_stac.errors import DiskFullError, IndexInUseError, IndexNotFoundError, InputError, StoreError
from rsir_stac.store.space import disk_full, is_disk_full

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"

# the process's umask, read once at import (setting it is process-wide: never while threads run)
_UMASK = os.umask(0)
os.umask(_UMASK)
#: The mode a plain ``open()`` gives a new file under the process's umask (``mkstemp`` gives 0600).
FILE_MODE = 0o666 & ~_UMASK


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON via a temporary file, fsync and os.replace (never half-written).  A folder
    where the file belongs (a damaged index: the rename cannot replace it) is moved aside to
    ``NAME.damaged-<UTC time>`` first, with a warning, never deleted."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # as open() would make it (mkstemp's 0600 shut out a group sharing the index)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        if path.is_dir() and not path.is_symlink():
            from datetime import datetime, timezone

            base = f"{path.name}.damaged-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
            aside, n = path.with_name(base), 1
            while aside.exists() or aside.is_symlink():  # an earlier one is never replaced
                n += 1
                aside = path.with_name(f"{base}-{n}")
            os.replace(path, aside)
            log.warning("%s was a folder, not a file; moved it to %s (delete it when done) and wrote the file",
                        path, aside.name)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)  # make the rename itself durable


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _in_use_message(index: Path, holder: str) -> str:
    """The one-line "in use" message; names the service and its address only when the holder is a
    ``serve`` that :func:`rsir_stac.served.verify_address` confirms (an address file anyone could
    have written is never repeated as the place work goes)."""
    from rsir_stac.served import ADDRESS_NAME, UnverifiedServiceError, verify_address

    try:
        doc = json.loads((index / ADDRESS_NAME).read_text(encoding="utf-8"))
        if holder and str(doc.get("pid")) == holder:
            url = verify_address(index, doc)
            return (f"index {index} is in use by rsir-stac serve (pid {holder}) at {url}; "
                    "`search`, `classify`, `info` and `ingest` send their work to it; search results export from "
                    f"the map page or POST {url}/api/query/export; other commands need it stopped")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnverifiedServiceError):
        pass
    if holder and holder == str(os.getpid()):  # a library user opening the same index twice
        return (f"index {index} is already open in this process; use the open Index (or store) or close it "
                "first (`with Index.open(...) as idx:` closes it at the end of the block)")
    return f"index {index} is in use by another process (pid {holder or '?'}); wait for it or use another --index"


class LockFileError(StoreError):
    """``<index>/.lock`` cannot be made or opened (a folder in its place, permissions, read-only
    media): nothing about the index itself, so ``check`` does not call the index damaged."""


def _refuse_shared_lock_file(fd: int, path: Path) -> None:
    """Close ``fd`` and raise :class:`LockFileError` unless it is a regular file with one name.

    The lock file is truncated to hold the holder's pid, so a hard link planted at ``.lock`` (in an
    index folder others may write) would truncate the file it shares its data with; O_NOFOLLOW only
    stops symbolic links.  A FIFO or device there would block or be written to."""
    import stat

    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        return
    os.close(fd)
    what = (f"a hard link ({st.st_nlink} names share its data, which is never written)" if stat.S_ISREG(st.st_mode)
            else "not a regular file")
    raise LockFileError(
        f"lock file {path} is {what}; rsir-stac makes it as a file of its own: remove it (`rm {path}`) and "
        "re-run the same command")


class _IndexLock:
    """Exclusive, non-blocking advisory lock on ``<index>/.lock`` (released on close or death)."""

    def __init__(self, index: Path) -> None:
        self.path = index / LOCK_NAME
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # Windows: rely on the engine's own WAL lock
            log.debug("fcntl unavailable; relying on the Edge WAL lock for %s", index)
            return
        try:
            # O_NOFOLLOW: a link planted at .lock (an index in a folder others may write) is never opened,
            # so its target is never truncated
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)  # the umask applies
        except OSError as exc:
            if exc.errno == errno.ELOOP or self.path.is_symlink():
                raise LockFileError(
                    f"lock file {self.path} is a link, not a file (rsir-stac makes it as a file; a link there may "
                    f"point at another file, which is never written); remove it (`rm {self.path}`) and re-run the "
                    "same command") from None
            if is_disk_full(exc):
                raise disk_full(index, f"creating the lock file {self.path}") from None
            if exc.errno == errno.EISDIR or self.path.is_dir():
                raise LockFileError(
                    f"lock file {self.path} is a folder, not a file (rsir-stac makes it as a file; the index itself is "
                    f"not damaged); remove that folder (`rmdir {self.path}`, or move it elsewhere if it holds files) "
                    "and re-run the same command") from None
            raise LockFileError(f"cannot create lock file {self.path} ({exc.strerror}); choose a writable --index") from None
        _refuse_shared_lock_file(fd, self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise IndexInUseError(_in_use_message(index, holder)) from None
            raise StoreError(f"cannot lock index {index} ({exc}); check permissions on {self.path}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds without the pid
            pass
        self.fd = fd

    @classmethod
    def none(cls) -> _IndexLock:
        """No lock: a read-only open of a private copy (nothing to protect)."""
        lock = cls.__new__(cls)
        lock.path, lock.fd = None, None  # type: ignore[assignment]
        return lock

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def require_creatable(path: str, option: str) -> None:
    """StoreError unless the index folder ``path`` (absolute, not there yet) can be created: its
    nearest existing parent is a writable folder; the fix names ``option`` (e.g. ``--index``)."""
    parent = os.path.dirname(path)
    while parent and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    verb = "choose" if option == "--index" else "pass"
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create index directory {path} ({parent} is not a writable folder); "
                         f"{verb} a writable {option}")
    # the permission bits do not tell everything (root in /proc, a read-only mount): make the first missing
    # folder and take it away again, so the refusal comes now and names ``option`` (helper trial: `reindex
    # --to /proc/nope` failed at the first write, naming --index)
    first = path
    while os.path.dirname(first) != parent:
        first = os.path.dirname(first)
    try:
        os.mkdir(first)
        os.rmdir(first)
    except OSError as exc:
        raise StoreError(f"cannot create index directory {path} ({exc.strerror}); {verb} a writable {option}") from None


def refuse_broken_link(index: Path) -> None:
    """StoreError when ``index`` is a symbolic link that leads nowhere (dangling, or a loop)."""
    if index.is_symlink() and not index.exists():
        raise StoreError(f"index {index} is a symbolic link to {os.readlink(index)}, which does not lead to a folder "
                         "(broken or a loop); fix the link or give a folder for --index")


def undo_interrupted_restore(index: Path, collection: str) -> None:
    """A restore killed while it swapped files leaves ``.<collection>.replaced``: put the index
    from before the restore back (under the index lock) before anything reads it."""
    if (index / f".{collection}.replaced").is_dir():
        from rsir_stac.store.snapshot import _undo_interrupted

        lock = _IndexLock(index)
        try:
            _undo_interrupted(index, collection)
        finally:
            lock.release()
    if repair_marker(index, collection).is_file() and os.access(index, os.W_OK):
        lock = _IndexLock(index)
        try:
            finish_interrupted_repair(index, collection, remove_stale=False)
        finally:
            lock.release()


def repairing_path(index: Path, collection: str) -> Path:
    """Where ``check --repair`` builds the new shard (renamed into place when complete)."""
    return index / f".{collection}.repairing"


def repair_marker(index: Path, collection: str) -> Path:
    """Written when the shard in :func:`repairing_path` is complete, before the swap; it names
    the folder the old shard moves to.  Removed when the swap and its clean-up are done."""
    return index / f".{collection}.repair-swap"


def stale_work(index: Path, collection: str) -> list[Path]:
    """Hidden folders a killed process left in ``index``: a shard being repaired or created."""
    return [p for p in (repairing_path(index, collection), index / f".{collection}.creating")
            if p.is_dir() or p.is_symlink()]


def finish_interrupted_repair(index: Path, collection: str, *, remove_stale: bool) -> list[str]:
    """Call under the index lock.  A ``check --repair`` killed while it swapped shards (its
    marker is there) is completed: the new, complete shard goes into place if the old one was
    already moved out, and the old one is removed.  With ``remove_stale``, a half-built shard of
    a repair (or creation) killed earlier is removed.  Returns the names removed or moved."""
    done: list[str] = []
    marker, tmp = repair_marker(index, collection), repairing_path(index, collection)
    shard = index / collection
    if marker.is_file():
        try:
            old = index / marker.read_text(encoding="utf-8").strip()
        except OSError:
            old = None
        if not shard.exists() and tmp.is_dir():
            os.replace(tmp, shard)  # the rebuilt shard was complete: finish the swap
            _fsync_dir(index)
            done.append(tmp.name)
            log.warning("index %s: a repair was interrupted while swapping shards; its rebuilt shard is now in place "
                        "(points it dropped are reported by `rsir-stac check`; re-run the ingest to restore them)",
                        index)
        if old is not None and old.name.startswith(f".{collection}.damaged") and old.is_dir() and shard.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        if shard.is_dir():
            marker.unlink(missing_ok=True)
            done.append(marker.name)
    if remove_stale:
        for p in stale_work(index, collection):
            if p == tmp and not shard.exists():
                continue  # the only copy of the points: leave it (a marker-less half-swap cannot happen)
            shutil.rmtree(p, ignore_errors=True)
            if not p.exists():
                done.append(p.name)
                log.warning("index %s: removed %s/, a half-made shard left by a process that was killed (%s)",
                            index, p.name, "a repair" if p == tmp else "a creation")
    return done


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _engine_message(exc: BaseException) -> str:
    """The engine's own message (first line), or the bare reason of an rsir-stac StoreError made from one."""
    msg = getattr(exc, "engine_message", None)
    if isinstance(msg, str):
        return msg
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


#: Phrases of qdrant-edge errors that mean its files hold bytes it cannot use (storage damage).
_DAMAGE_PHRASES = ("corrupt", "malformed", "failed to decode", "decompress", "deserialize", "illegal",
                   "unexpected end", "invalid", "checksum", "no such file", "failed to load", "eof while")


def file_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError or an engine error) is EFBIG: a file would pass the process's
    file-size limit (``ulimit -f``) or the largest file its file system takes."""
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return True
    msg = str(exc)
    return "FileTooLarge" in msg or "File too large" in msg or "os error 27" in msg


def too_large_message(index: Path, action: str) -> str:
    """The one-line error for EFBIG: the real cause (the process's file-size limit, or the file
    system's largest file) and the fix that works (raise the limit; another file system)."""
    import resource

    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (OSError, ValueError):
        soft = resource.RLIM_INFINITY
    why = "File too large"
    if soft != resource.RLIM_INFINITY:
        from rsir_stac.store.space import human

        return (f"index {index}: {action} failed ({why}): this process may not write files over {human(soft)} "
                f"(its file-size limit, `ulimit -f` {soft // 1024}), and the engine's files are 32 MiB; raise the "
                "limit (`ulimit -f unlimited`) and re-run the same command (nothing was half-written)")
    return (f"index {index}: {action} failed ({why}): the file system under {index} does not take files as large "
            "as the engine's (32 MiB); choose an --index on another file system and re-run the same command "
            "(nothing was half-written)")


def _looks_damaged(msg: str) -> bool:
    low = msg.lower()
    return any(p in low for p in _DAMAGE_PHRASES)


def _compact_engine_message(msg: str, index: Path) -> str:
    """An engine message made shorter for one error line that already names ``index``: its paths
    relative to the index folder, and the engine's repeated ``Service runtime error:`` prefixes
    once (a segment descriptor that was a folder gave ~900 characters, the path 3-4 times)."""
    import re

    msg = msg.replace(f"{index}/", "")
    msg = re.sub(r"(Service runtime error:\s*)+", "Service runtime error: ", msg)
    msg = re.sub(r"(: Service runtime error: )", ": ", msg)
    parts = msg.split(": ")
    if len(msg) > 240 and len(parts) > 4:  # the chain's head (what failed) and its tail (the cause)
        msg = ": ".join(parts[:2]) + ": ...: " + ": ".join(parts[-2:])
    return msg


def _denied(msg: str) -> bool:
    low = msg.lower()
    return "permission denied" in low or "os error 13" in low or "read-only file system" in low


def _unloadable(exc: BaseException) -> bool:
    """Whether a failed load means the shard's files are unusable (set it aside), rather than
    permissions or the index being in use (leave it alone)."""
    if isinstance(exc, (IndexInUseError, DiskFullError)):
        return False
    return not _denied(_engine_message(exc))


def _wal_damaged(exc: BaseException) -> bool:
    """Whether a failed load is the engine refusing the shard's write-ahead log itself (a damaged
    header), not the index being in use (``WouldBlock``) or other files."""
    msg = _engine_message(exc)
    return "WAL" in msg and "WouldBlock" not in msg and not _denied(msg)


def damaged_aside_path(index: Path, collection: str) -> Path:
    """A new ``.<collection>.damaged-<UTC time>`` folder name in ``index`` that does not exist yet:
    each shard set aside keeps its own (an earlier one is never replaced)."""
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = index / f".{collection}.damaged-{stamp}"
    out, n = base, 1
    while out.exists() or out.is_symlink():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def damaged_aside_paths(index: Path, collection: str) -> list[Path]:
    """Shards set aside in ``index`` (oldest first), including the untimestamped name of earlier versions."""
    return sorted(p for p in index.glob(f".{collection}.damaged*") if p.is_dir())


def _payload_index_finding() -> Any:
    from rsir_stac.store.shard_files import Finding

    return Finding("payload_index", "the payload index files could not be read by the engine")


def is_qdrant_local_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a qdrant-client local-mode store (its ``meta.json`` and ``collection/``)."""
    p = Path(path)
    return (p / "meta.json").is_file() and (p / "collection").is_dir()


def is_edge_index_folder(path: str | Path) -> bool:
    """Whether ``path`` holds an embedded (Qdrant Edge) index: a ``NAME.meta.json`` or
    ``NAME.digests.sqlite`` of rsir-stac beside its shard folder ``NAME``."""
    p = Path(path)
    try:
        names = {e.name for e in p.iterdir()}
    except OSError:
        return False
    return any((n.endswith(".meta.json") and n[:-len(".meta.json")] in names)
               or (n.endswith(".digests.sqlite") and n[:-len(".digests.sqlite")] in names) for n in names)


def refuse_other_store(path: str | Path, opened_as: str) -> None:
    """InputError when folder ``path``, opened as ``opened_as`` (``"edge"`` for ``--index``, ``"local"``
    for a qdrant-client ``--qdrant-url`` folder), holds the other kind of store: opening it would
    write a second store into it (and its ``.lock`` is the other's)."""
    if opened_as == "edge" and is_qdrant_local_folder(path):
        raise InputError(f"{path} is a qdrant-client local folder (a --qdrant-url store), not an embedded index; "
                         f"open it with --qdrant-url {path}")
    if opened_as == "local" and is_edge_index_folder(Path(path).parent) and (Path(path) / "edge_config.json").is_file():
        raise InputError(f"{path} is the shard folder inside the embedded index {Path(path).parent}, not a "
                         f"qdrant-client local folder; open the index with --index {Path(path).parent}")
    if opened_as == "local" and is_edge_index_folder(path):
        raise InputError(f"{path} is an embedded (Qdrant Edge) index, not a qdrant-client local folder; open it "
                         f"with --index {path} (copy it to a Qdrant store with rsir-stac migrate --index {path} "
                         "--qdrant-url URL)")


def no_index_message(path: Path, collection: str) -> str:
    """Why ``path`` cannot be opened as an index holding ``collection`` (the engine's collection of
    tiles, not a STAC collection), in a user's words, and the fix."""
    if not path.exists():
        return (f"no index at {path} (no such folder); check the --index path, or build one with "
                f"`rsir-stac ingest SOURCES --index {path}`")
    shard = path / collection
    if shard.exists() and not shard.is_dir():  # a file (or a link to one) where the shard folder belongs
        from rsir_stac.store.integrity import _ledger_count

        n = _ledger_count(path, collection)
        held = f"; its digest ledger records {n} points" if n else ""
        return (f"index {path} is damaged: {shard} is a file, not the shard folder{held}; move the file away "
                f"(`mv {shard} {shard}.bad`), then re-run the ingest that built the index, or `rsir-stac restore "
                f"SNAPSHOT --index {path} --force`")
    aside = damaged_aside_paths(path, collection)
    if aside:
        return (f"index {path} has no collection {collection!r} (a damaged one was set aside in {aside[-1].name}); "
                f"re-run the ingest that built it, or `rsir-stac restore SNAPSHOT --index {path} --force`")
    if is_qdrant_local_folder(path):
        return (f"{path} is a qdrant-client local folder (a --qdrant-url store), not an embedded index; open it "
                f"with --qdrant-url {path} (check, snapshot and restore work on embedded indexes only)")
    return (f"{path} is not an rsir-stac index (it holds no tile collection {collection!r}); check the --index path, "
            f"or build one there with `rsir-stac ingest SOURCES --index {path}`")


def index_missing_error(path: Path, collection: str) -> StoreError:
    """The error for ``path`` holding no usable ``collection`` folder (:func:`no_index_message`):
    IndexNotFoundError (bad input, exit 2), or a plain StoreError (damage, exit 1) when a file sits
    where the shard folder belongs."""
    shard = path / collection
    damaged = shard.exists() and not shard.is_dir()
    return (StoreError if damaged else IndexNotFoundError)(no_index_message(path, collection))


def _collection_dir(index: str | Path, collection: str) -> Path:
    """The absolute index path, after refusing a broken link and undoing an interrupted restore;
    IndexNotFoundError when it holds no ``collection`` (``check`` and ``check --repair``)."""
    path = Path(index).expanduser().absolute()
    refuse_broken_link(path)
    undo_interrupted_restore(path, collection)
    if not (path / collection).is_dir():
        raise index_missing_error(path, collection)
    return path
