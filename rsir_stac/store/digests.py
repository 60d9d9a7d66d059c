"""The digest ledger of an embedded index: per point, a digest of its vector
and of its payload as stored, kept beside the shard in
``<index>/<collection>.digests.sqlite`` (see :mod:`rsir_stac.store.integrity`
for how ``check`` and ingest use it)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from rsir_stac.errors import DiskFullError, StoreError

log = logging.getLogger(__name__)

LEDGER_SUFFIX = ".digests.sqlite"


def _digest64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def vector_digest(vector: Any) -> int:
    """64-bit digest of a vector as the engine stores it (float32, native order)."""
    return _digest64(np.asarray(vector, dtype=np.float32).reshape(-1).tobytes())


def _feed(h: Any, value: Any, floats: list[float]) -> None:
    """Feed a JSON value into ``h`` in a canonical form (sorted keys, typed
    tags); floats go to ``floats`` and only their place is hashed.  Leaves of
    containers are handled inline: this runs once per point written."""
    t = type(value)
    if t is dict or t is list or t is tuple or isinstance(value, (dict, list, tuple)):
        is_dict = isinstance(value, dict)
        items = [(str(k), value[k]) for k in sorted(value, key=str)] if is_dict else [(None, v) for v in value]
        h.update(b"{%d" % len(items) if is_dict else b"[%d" % len(items))
        for k, v in items:
            if k is not None:
                kb = k.encode("utf-8", "surrogatepass")
                h.update(b"k%d:" % len(kb))
                h.update(kb)
            tv = type(v)
            if tv is str:
                b = v.encode("utf-8", "surrogatepass")
                h.update(b"s%d:" % len(b))
                h.update(b)
            elif tv is float:
                floats.append(v)
                h.update(b"f")
            else:
                _feed(h, v, floats)
        h.update(b"}" if is_dict else b"]")
    elif t is str:
        b = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b))
        h.update(b)
    elif t is float:
        floats.append(value)
        h.update(b"f")
    elif t is bool:
        h.update(b"T" if value else b"F")
    elif t is int:
        h.update(b"i%d;" % value)
    elif value is None:
        h.update(b"n")
    else:  # numpy scalars and the like: as their JSON value
        _feed(h, json.loads(json.dumps(value, default=str)), floats)


def payload_digest(stored: dict | None) -> tuple[int, bytes]:
    """Digest of a stored (packed) payload: a 64-bit digest of its canonical form
    (sorted keys, typed values) with every float replaced by a marker, and the
    floats themselves (float64 bytes, in canonical order).  The engine's JSON
    float parsing is not exactly round-trip (a value can come back one ULP off),
    so floats are compared with a relative tolerance of 1e-12
    (:func:`payload_matches`), everything else exactly."""
    floats: list[float] = []
    h = hashlib.blake2b(digest_size=8)
    _feed(h, stored or {}, floats)
    digest = int.from_bytes(h.digest(), "little", signed=True)
    return digest, np.asarray(floats, dtype=np.float64).tobytes()


def payload_matches(recorded: tuple[int, bytes], stored: dict | None) -> bool:
    """Whether a payload read back matches the recorded :func:`payload_digest`."""
    digest, floats = payload_digest(stored)
    if digest != recorded[0] or len(floats) != len(recorded[1]):
        return False
    a = np.frombuffer(floats, dtype=np.float64)
    b = np.frombuffer(recorded[1], dtype=np.float64)
    return bool(np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True))


def _id_bytes(pid: str) -> bytes:
    if type(pid) is str and len(pid) == 36:
        try:
            return bytes.fromhex(pid.replace("-", ""))
        except ValueError:
            pass
    return uuid.UUID(str(pid)).bytes


class DigestLedger:
    """The per-point digests of one collection, in SQLite (WAL journal).

    ``read_only`` opens the file as immutable (works on read-only media) and
    refuses writes.  Every method is safe to call from several threads.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        try:
            if read_only and not os.access(self.path.parent, os.W_OK):
                # read-only media: nothing can change it (a writer checkpoints its WAL at close)
                uri = f"file:{quote(str(self.path))}?mode=ro&immutable=1"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            elif read_only:
                # reads the WAL of a writer killed before its checkpoint; never writes (falls back
                # to an immutable read where SQLite cannot make its shared-memory file: a full disk)
                try:
                    self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                    self._db.execute("PRAGMA query_only=ON")
                    self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                except sqlite3.OperationalError:
                    uri = f"file:{quote(str(self.path))}?mode=ro&immutable=1"
                    self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                new = not self.path.exists()
                self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                if new:  # SQLite makes it 0644 whatever the umask: the mode open() gives (a group-shared index)
                    from rsir_stac.store.folder import FILE_MODE

                    try:
                        os.chmod(self.path, FILE_MODE)
                    except OSError:
                        pass
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS points (id BLOB PRIMARY KEY, vec INTEGER NOT NULL, "
                                 "pay INTEGER NOT NULL, floats BLOB NOT NULL) WITHOUT ROWID")
            try:
                self._db.execute("SELECT count(*) FROM points").fetchone()
            except sqlite3.OperationalError as exc:
                if not (read_only and "no such table" in str(exc)):
                    raise
                # created by a process killed before its first commit: an empty ledger
                self._db.close()
                self._db = sqlite3.connect(":memory:", check_same_thread=False)
                self._db.execute("CREATE TABLE points (id BLOB PRIMARY KEY, vec INTEGER, pay INTEGER, floats BLOB)")
        except sqlite3.Error as exc:
            raise _ledger_error(self.path, exc) from None

    @classmethod
    def for_index(cls, index: Path, collection: str, *, read_only: bool) -> DigestLedger | None:
        """The ledger of ``collection`` in ``index``; None when read-only and absent."""
        path = index / f"{collection}{LEDGER_SUFFIX}"
        if read_only and not path.is_file():
            return None
        return cls(path, read_only=read_only)

    def record(self, rows: Sequence[tuple[str, Sequence[float], dict]]) -> None:
        """Store digests of (id, vector, stored payload) rows (replacing older ones)."""
        if self.read_only or not rows:
            return
        data = [(_id_bytes(pid), vector_digest(v), *payload_digest(p)) for pid, v, p in rows]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO points (id, vec, pay, floats) VALUES (?, ?, ?, ?)", data)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise _ledger_error(self.path, exc) from None

    def remove(self, ids: Iterable[str]) -> None:
        """Forget the digests of ``ids`` (points dropped by a repair)."""
        keys = [(_id_bytes(i),) for i in ids]
        if self.read_only or not keys:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM points WHERE id = ?", keys)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _ledger_error(self.path, exc) from None

    def lookup(self, ids: Sequence[str]) -> dict[str, tuple[int, tuple[int, bytes]]]:
        """(vector digest, payload digest) of those ``ids`` that have one."""
        out: dict[str, tuple[int, tuple[int, bytes]]] = {}
        with self._lock:
            for i in range(0, len(ids), 500):
                part = list(ids[i:i + 500])
                keys = {_id_bytes(p): p for p in part}
                q = f"SELECT id, vec, pay, floats FROM points WHERE id IN ({','.join('?' * len(keys))})"
                try:
                    for key, vec, pay, floats in self._db.execute(q, list(keys)):
                        out[keys[bytes(key)]] = (int(vec), (int(pay), bytes(floats)))
                except sqlite3.Error as exc:
                    raise _ledger_error(self.path, exc) from None
        return out

    def ids(self) -> Iterator[str]:
        """Every id with a digest."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT id FROM points").fetchall()
            except sqlite3.Error as exc:
                raise _ledger_error(self.path, exc) from None
        for (key,) in rows:
            yield str(uuid.UUID(bytes=bytes(key)))

    def count(self) -> int:
        with self._lock:
            try:
                return int(self._db.execute("SELECT count(*) FROM points").fetchone()[0])
            except sqlite3.Error as exc:
                raise _ledger_error(self.path, exc) from None

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            try:
                if not self.read_only:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("digest ledger %s: checkpoint failed (%s)", self.path, exc)
            finally:
                self._db.close()
                self._db = None  # type: ignore[assignment]


def _ledger_error(path: Path, exc: sqlite3.Error) -> StoreError:
    msg = str(exc)
    if "disk is full" in msg or "disk I/O" in msg and _no_space(path):
        return DiskFullError(f"disk full: cannot write the digest ledger {path}; the index is intact; "
                             "free space on that file system, then re-run the same command")
    err = StoreError(f"digest ledger {path} is unreadable ({msg}); run `rsir-stac check --index {path.parent} "
                     "--repair` (it sets the ledger aside and records the digests of the points as they read now), "
                     "or re-run the ingest that built the index (it sets the ledger aside and re-embeds the points)")
    err.ledger_unreadable = msg  # type: ignore[attr-defined]
    return err


def _no_space(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        return False


__all__ = ["DigestLedger", "LEDGER_SUFFIX", "payload_digest", "payload_matches", "vector_digest"]
