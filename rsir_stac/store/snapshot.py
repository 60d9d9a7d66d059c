"""Snapshots of the embedded index: one archive with a manifest of checksums,
verified when written and again when restored.

qdrant-edge-py 0.9 can *read* engine snapshots (``EdgeShard.unpack_snapshot``
takes the plain tar a Qdrant server makes of a shard, and
``update_from_snapshot`` applies one to a loaded shard) but cannot *make* one:
its ``snapshot_manifest()`` only lists segment file versions.  So a snapshot
here is a consistent copy taken while rsir-stac holds the index lock, with the
engine flushed and closed:

``rsir-snapshot.json``   (first member) format, rsir-stac version, collection,
                          point count, model metadata, and size + SHA-256 of
                          every file;
``<collection>.meta.json``, ``<collection>.digests.sqlite``, ``<collection>/...``
                          the files as they are on disk.

The archive is a gzip-compressed tar (the engine's sparse 32 MiB preallocations
compress to almost nothing).  :func:`restore` extracts into a hidden folder
beside the target, keeping holes, checks every file against the manifest, runs
:func:`~rsir_stac.store.integrity.check_index` on the result, and only then
renames it into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from rsir_stac.errors import DiskFullError, InputError, RsirError, SnapshotError, StoreError, TargetExistsError

log = logging.getLogger(__name__)

MANIFEST = "rsir-snapshot.json"
FORMAT = 1
#: File name endings a snapshot may have (it is always a gzip-compressed tar).
EXTENSIONS = (".tar.gz", ".tgz")
_BUF = 1 << 16  # restore compares blocks this size with zeros to keep holes


@dataclass(frozen=True)
class SnapshotReport:
    """A written or restored snapshot: where, how many points, files and bytes."""

    snapshot: str
    index: str
    points: int
    files: int
    data_bytes: int
    archive_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _collection_files(index: Path, collection: str) -> list[Path]:
    files = [index / f"{collection}.meta.json"]
    ledger = index / f"{collection}.digests.sqlite"
    if ledger.is_file():
        files.append(ledger)
    for root, _dirs, names in os.walk(index / collection):
        files.extend(Path(root) / n for n in sorted(names))
    return files


def _sha256(path: Path) -> str:
    from rsir_stac.store.files import sha256_file

    return sha256_file(path)


def snapshot(index: str | Path, out: str | Path, *, collection: str = "rsir_tiles",
             force: bool = False) -> SnapshotReport:
    """Write a verified snapshot of the embedded index ``index`` to ``out`` (a
    ``.tar.gz``/``.tgz`` file, written to a temporary name and renamed when verified).

    Holds the index lock while copying, so it waits for nobody and fails with
    IndexInUseError if another process has the index open.  Raises
    IndexNotFoundError for a missing index, SnapshotError for another extension,
    TargetExistsError when ``out`` exists and ``force`` is False, DiskFullError
    when the archive may not fit.
    """
    from rsir_stac.store.edge import EdgeStore
    from rsir_stac.store.space import require_free, tree_bytes

    src = Path(index).expanduser().absolute()
    dst = Path(out).expanduser().absolute()
    if not (src / collection).is_dir():
        from rsir_stac.store.folder import index_missing_error

        raise index_missing_error(Path(src), collection)
    if dst.exists() and dst.is_dir():
        raise InputError(f"snapshot path {dst} is a folder; give a file name such as {dst / 'index.tar.gz'}")
    if not dst.name.endswith(EXTENSIONS):
        raise SnapshotError(f"snapshot path {dst} has no known extension; name it {dst.stem}.tar.gz "
                            "(a snapshot is a gzip-compressed tar)")
    if dst.exists() and not force:
        raise TargetExistsError(f"snapshot {dst} already exists; choose another file name, or pass --force to "
                                "replace it")
    # an index on read-only media is read from a private copy, without a lock (nothing can change it)
    read_only = not (os.access(src, os.W_OK) and os.access(src / collection, os.W_OK))
    with EdgeStore(src, collection=collection, repair=None, read_only=read_only, probe=True) as store:
        _refuse_damaged(store)  # the check restore runs: a damaged index makes a snapshot that restores nothing
        points = store.count()
        meta = store.meta()
        if not read_only:
            try:
                store._shard.flush()
            except Exception as exc:  # noqa: BLE001
                raise store._engine_error(exc, "flushing") from None
        store._shard.close()  # files now complete and quiet; the lock is still ours
        store._shard = None
        if store._ledger is not None:
            store._ledger.close()
            store._ledger = None
        files = _collection_files(src, collection)
        data = tree_bytes(src / collection, allocated=True)
        require_free(dst.parent, data + (4 << 20), f"writing the snapshot {dst}", intact="the index is untouched")
        entries = [{"path": f.relative_to(src).as_posix(), "size": f.stat().st_size, "sha256": _sha256(f)}
                   for f in files]
        manifest = {"format": FORMAT, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "rsir_stac_version": _version(), "collection": collection, "points": points,
                    "meta": meta.to_dict() if meta is not None else None, "data_bytes": data, "files": entries}
        _write_archive(dst, manifest, files, entries)
    log.info("snapshot of %s (%d points) written to %s", src, points, dst)
    return SnapshotReport(str(dst), str(src), points, len(files), data, dst.stat().st_size)


def _write_archive(dst: Path, manifest: dict, files: list[Path], entries: list[dict]) -> None:
    """Write the manifest and ``files`` (as ``entries`` name them) to a new partial file beside
    ``dst``, verify it and rename it to ``dst``; the partial is removed if anything fails."""
    from rsir_stac.store.space import disk_full, is_disk_full

    tmp = None
    _remove_stale_partials(dst)
    try:
        # a new file of a random name (O_CREAT|O_EXCL: never through a link planted in a shared folder)
        fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.{os.getpid()}.", suffix=".partial")
        tmp = Path(name)
        from rsir_stac.store.folder import FILE_MODE

        os.fchmod(fd, FILE_MODE)  # as a plain open() would make it
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tf:
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(datetime.now().timestamp()), 0o644
            tf.addfile(info, io.BytesIO(body))
            for f, e in zip(files, entries):
                tf.add(f, arcname=e["path"], recursive=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        verify_snapshot(tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(dst.parent, f"writing the snapshot {dst}", intact="the index is untouched") from None
        raise StoreError(f"cannot write snapshot {dst} ({exc.strerror or exc}); choose a writable path") from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _remove_stale_partials(dst: Path) -> None:
    """Remove the partial archives of ``dst`` that killed snapshots left (``.NAME.<pid>.<random>.partial``
    of a process that is gone), only regular files of this user: never another user's file or link."""
    from rsir_stac.atomic import pid_alive

    for p in dst.parent.glob(f".{dst.name}.*.partial"):
        pid = p.name[len(dst.name) + 2:].split(".", 1)[0]
        try:
            st = p.lstat()
        except OSError:
            continue
        if pid.isdigit() and not pid_alive(int(pid)) and stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            p.unlink(missing_ok=True)
            log.info("removed %s, left by a killed snapshot", p.name)


def _refuse_damaged(store: Any) -> None:
    """StoreError (exit 1) when ``store`` fails the check :func:`restore` runs on what it extracts."""
    from rsir_stac.store.integrity import CheckReport, check_open_store
    from rsir_stac.store.shard_files import inspect_files

    files = inspect_files(store.shard_dir)
    report = CheckReport(index=str(store.index), findings=[f for f in files if f.kind != "tracker"])
    check_open_store(store, report, files)
    if not report.ok:
        first = report.findings[0].message
        more = f" and {len(report.findings) - 1} more finding(s)" if len(report.findings) > 1 else ""
        raise StoreError(f"index {store.index} is damaged ({first}{more}), so a snapshot of it would not restore; "
                         f"run `rsir-stac check --index {store.index} --repair`, then re-run the ingest that built it, "
                         "and snapshot it again (no snapshot was written)")


def _version() -> str:
    from rsir_stac import __version__

    return __version__


def _open_archive(path: Path) -> tuple[tarfile.TarFile, dict]:
    try:
        tf = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise SnapshotError(f"snapshot {path} does not exist; check the path") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SnapshotError(f"snapshot {path} is not a readable archive ({exc}); use a file written by rsir-stac snapshot") from None
    try:
        first = tf.next()
        if first is None or first.name != MANIFEST:
            raise SnapshotError(f"snapshot {path} has no {MANIFEST} first; use a file written by rsir-stac snapshot")
        manifest = json.loads(tf.extractfile(first).read())  # type: ignore[union-attr]
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
            raise SnapshotError(f"snapshot {path} has an unknown manifest format; use this rsir-stac version's snapshot")
    except (tarfile.TarError, OSError, EOFError, ValueError, RecursionError, AttributeError) as exc:
        tf.close()  # AttributeError: a manifest that is JSON but not an object
        from rsir_stac.json_errors import json_problem

        why = f"its manifest is {json_problem(exc)}" if isinstance(exc, (ValueError, RecursionError)) \
            and not isinstance(exc, RsirError) else " ".join(str(exc).split())[:200]
        raise SnapshotError(f"snapshot {path} is damaged ({why}); use another copy") from None
    except BaseException:
        tf.close()
        raise
    return tf, manifest


def _safe_name(name: str, path: Path) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise SnapshotError(f"snapshot {path} holds an unsafe member name {name!r}; it was not written by rsir-stac")
    return p.as_posix()


def _members(tf: tarfile.TarFile, manifest: dict, path: Path, sink=None) -> int:
    """Stream every member, checking size and SHA-256 against the manifest; ``sink(name, size)``
    returns a file object to write the member to (or None).  Returns the file count."""
    want = {e["path"]: e for e in manifest["files"]}
    seen: set[str] = set()
    try:
        for m in tf:
            if m.name == MANIFEST:
                continue
            name = _safe_name(m.name, path)
            why = ("is not in its manifest" if name not in want else "appears twice" if name in seen
                   else None if m.isfile() else "is a link" if m.issym() or m.islnk() else "is not a regular file")
            if why:
                raise SnapshotError(f"snapshot {path}: member {name!r} {why}, which rsir-stac never writes (the archive "
                                    "was altered); use another copy")
            e = want[name]
            if m.size != e["size"]:
                raise SnapshotError(f"snapshot {path}: {name} is {m.size} bytes, the manifest says {e['size']}; use another copy")
            fi = tf.extractfile(m)
            h = hashlib.sha256()
            fo = sink(name, m.size) if sink else None
            zero = bytes(_BUF)
            left = m.size
            while left > 0:
                buf = fi.read(min(_BUF, left))  # type: ignore[union-attr]
                if not buf:
                    raise SnapshotError(f"snapshot {path} is truncated in {name}; use another copy")
                h.update(buf)
                if fo is not None:
                    if buf == zero[:len(buf)]:
                        fo.seek(len(buf), os.SEEK_CUR)  # keep the engine's preallocations sparse
                    else:
                        fo.write(buf)
                left -= len(buf)
            if fo is not None:
                fo.truncate(m.size)
                fo.close()
            if h.hexdigest() != e["sha256"]:
                raise SnapshotError(f"snapshot {path}: {name} does not match its checksum (the archive is damaged); "
                                 "use another copy")
            seen.add(name)
    except (tarfile.TarError, EOFError, zlib_error()) as exc:
        raise SnapshotError(f"snapshot {path} is damaged or truncated ({exc}); use another copy") from None
    missing = set(want) - seen
    if missing:
        raise SnapshotError(f"snapshot {path} lacks {len(missing)} file(s) of its manifest (e.g. {sorted(missing)[0]}); "
                         "it is truncated, use another copy")
    return len(seen)


def zlib_error() -> type[BaseException]:
    import zlib

    return zlib.error


def verify_snapshot(path: str | Path) -> dict:
    """Check every file in a snapshot against its manifest without extracting it;
    returns the manifest.  Raises StoreError naming the first damaged file."""
    path = Path(path).expanduser().absolute()
    tf, manifest = _open_archive(path)
    with tf:
        _members(tf, manifest, path)
    return manifest


def restore(snapshot_path: str | Path, index: str | Path, *, force: bool = False) -> SnapshotReport:
    """Restore a snapshot into the embedded index folder ``index``.

    The files are extracted beside the target, checked against the manifest's
    checksums and then by :func:`check_index` (structure, count, every vector
    and payload against its digest) before anything at ``index`` changes.  An
    existing collection there is replaced only with ``force`` (and only while no
    other process has it open).  Raises StoreError (damaged snapshot, index in
    use or present without ``force``), DiskFullError when it may not fit.
    """
    from rsir_stac.store.folder import _IndexLock, refuse_broken_link, refuse_other_store
    from rsir_stac.store.integrity import check_index
    from rsir_stac.store.space import disk_full, is_disk_full, require_free

    src = Path(snapshot_path).expanduser().absolute()
    dst = Path(index).expanduser().absolute()
    refuse_broken_link(dst)
    if dst.is_dir():  # an embedded index beside a qdrant-client store: neither could be opened after
        refuse_other_store(dst, "edge")
    tf, manifest = _open_archive(src)
    collection = str(manifest.get("collection") or "rsir_tiles")
    if (dst / collection).exists() and not force:
        tf.close()
        raise TargetExistsError(f"index {dst} already has a collection {collection!r}; restore into a new --index, "
                         "or pass --force to replace it")
    stage = dst.parent / f".{dst.name}.restoring"
    if stage.is_symlink():  # not ours: a link planted where the restore stages its files is never followed
        tf.close()
        raise StoreError(f"cannot restore into {dst}: {stage} is a link, not a folder rsir-stac made; remove it "
                         f"(`rm {stage}`) and run the restore again")
    need = _restore_bytes(manifest, dst.parent)
    try:
        with tf:
            dst.parent.mkdir(parents=True, exist_ok=True)
            require_free(dst.parent, need, f"restoring {src} into {dst}", intact="the index is untouched")
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir()

            def sink(name: str, size: int):
                target = stage / name
                target.parent.mkdir(parents=True, exist_ok=True)
                return open(target, "wb")

            n = _members(tf, manifest, src, sink)
        report = check_index(stage, collection=collection)
        expected = int(manifest.get("points", -1))
        if not report.ok or report.points != expected:
            why = "; ".join(f.message for f in report.findings) or f"{report.points} points, not {expected}"
            raise SnapshotError(f"snapshot {src} restores to an index that fails its check ({why}); use another copy")
        def say() -> None:  # --force: what goes, said once the index is ours (not while another process writes it)
            from rsir_stac.store.integrity import _ledger_count

            if (dst / collection).exists():
                log.warning("restore --force: index %s and its %d recorded points are replaced by the snapshot's "
                            "%d points (no copy of them is kept)", dst, _ledger_count(dst, collection), report.points)

        _swap_in(stage, dst, collection, _IndexLock, say)
    except OSError as exc:  # DiskFullError included: whatever part ran out of space, say what the restore needs
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, DiskFullError) or is_disk_full(exc):
            raise disk_full(dst.parent, f"restoring {src} into {dst}", need=need,
                            intact="the index is untouched") from None
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        raise StoreError(f"cannot restore into {dst} ({exc.strerror or exc}{where}); choose a writable --index") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("restored %s (%d points) into %s", src, report.points, dst)
    return SnapshotReport(str(src), str(dst), report.points, n, int(manifest.get("data_bytes") or 0), src.stat().st_size)


def _restore_bytes(manifest: dict, where: Path) -> int:
    """Bytes a restore into ``where`` takes: the data and a margin."""
    return int(manifest.get("data_bytes") or 0) + (4 << 20)


def _swap_in(stage: Path, dst: Path, collection: str, lock_cls: Any, say: Any = None) -> None:
    """Move the verified files from ``stage`` into ``dst`` (under its lock when it exists; ``say()``
    once the lock is held, before anything moves)."""
    from rsir_stac.store.folder import _fsync_dir

    if not dst.exists():
        os.replace(stage, dst)
        _fsync_dir(dst.parent)
        return
    lock = lock_cls(dst)
    try:
        if say is not None:
            say()
        _undo_interrupted(dst, collection)
        old = dst / f".{collection}.replaced"
        old.mkdir()
        for name in _PARTS(collection):
            if (dst / name).exists():
                os.replace(dst / name, old / name)
        (old / _MOVED_OUT).touch()  # from here on what is in place of the old files is new
        for child in stage.iterdir():
            os.replace(child, dst / child.name)
        _fsync_dir(dst)
        (old / _DONE).touch()  # from here on a crash keeps the restored index
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)
    finally:
        lock.release()


_DONE, _MOVED_OUT = "swap-complete", "old-moved-out"


def _PARTS(collection: str) -> tuple[str, ...]:
    return (collection, f"{collection}.meta.json", f"{collection}.digests.sqlite", f"{collection}.health.json")


def _undo_interrupted(dst: Path, collection: str) -> bool:
    """Finish what a ``restore --force`` killed during its swap left (call under the index
    lock): the old files in ``.<collection>.replaced`` go back in place of any half-moved new
    ones, so the index is the one from before the restore; after the swap completed (its
    marker is there) the leftovers are removed.  Returns True when it put the old index back."""
    old = dst / f".{collection}.replaced"
    if not old.is_dir():
        return False
    if (old / _DONE).exists():
        shutil.rmtree(old, ignore_errors=True)
        return False
    moved_out = (old / _MOVED_OUT).exists()
    for name in _PARTS(collection):
        if moved_out or (old / name).exists():  # a file in place is then a new one: it goes
            if (dst / name).is_dir():
                shutil.rmtree(dst / name)
            elif (dst / name).exists():
                (dst / name).unlink()
        if (old / name).exists():
            os.replace(old / name, dst / name)
    shutil.rmtree(old, ignore_errors=True)
    log.warning("index %s: a restore was interrupted while swapping files; the index is back as it was before "
                "it (run the restore again)", dst)
    return True


__all__ = ["EXTENSIONS", "SnapshotReport", "restore", "snapshot", "verify_snapshot"]
