"""File-tree helpers for the embedded index: hole-preserving copies, checksums
and private working copies of read-only indexes.

Qdrant Edge preallocates its files as sparse 32 MiB regions (vector chunks,
payload pages, WAL segments), so a 61-point index has an apparent size of
~130 MB but only ~140 KB of data.  Copies here keep the holes
(``SEEK_DATA``/``SEEK_HOLE``), so copying or restoring an index costs its data,
not its apparent size.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from rsir_stac.atomic import pid_alive

log = logging.getLogger(__name__)

_BUF = 1 << 20
PRIVATE_PREFIX = "rsir-ro-"


def copy_sparse(src: str | Path, dst: str | Path) -> None:
    """Copy one file, writing only its data regions (holes stay holes)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        pos = 0
        try:
            while pos < size:
                try:
                    start = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
                except OSError:  # ENXIO: only a hole is left
                    break
                end = os.lseek(fi.fileno(), start, os.SEEK_HOLE)
                fi.seek(start)
                fo.seek(start)
                left = end - start
                while left > 0:
                    buf = fi.read(min(_BUF, left))
                    if not buf:
                        break
                    fo.write(buf)
                    left -= len(buf)
                pos = end
        except (AttributeError, OSError) as exc:  # no SEEK_DATA here: plain copy
            if isinstance(exc, OSError) and exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            fi.seek(0)
            fo.seek(0)
            shutil.copyfileobj(fi, fo, _BUF)
        fo.truncate(size)
    shutil.copymode(src, dst)


def copy_tree_sparse(src: str | Path, dst: str | Path) -> None:
    """Copy a directory tree with :func:`copy_sparse` (``dst`` must not exist)."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True)
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        for d in dirs:
            (dst / rel / d).mkdir(exist_ok=True)
        for f in files:
            copy_sparse(Path(root) / f, dst / rel / f)


def write_zero_aware(fi, fo, size: int) -> None:
    """Copy ``size`` bytes from stream ``fi`` to file ``fo``, seeking over blocks of
    zeros so the result is sparse (used when restoring from an archive)."""
    zero = bytes(_BUF)
    left = size
    while left > 0:
        buf = fi.read(min(_BUF, left))
        if not buf:
            raise OSError(f"archive member ends {left} bytes early")
        if buf == zero[:len(buf)]:
            fo.seek(len(buf), os.SEEK_CUR)
        else:
            fo.write(buf)
        left -= len(buf)
    fo.truncate(size)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's content (holes read as zeros)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while buf := fh.read(_BUF):
            h.update(buf)
    return h.hexdigest()


def _sweep_stale(tmp_root: Path) -> None:
    """Remove private copies left by processes that died (SIGKILL) before closing."""
    try:
        entries = list(tmp_root.glob(PRIVATE_PREFIX + "*"))
    except OSError:
        return
    for p in entries:
        try:
            pid = int(p.name[len(PRIVATE_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def private_copy(shard_dir: Path) -> Path:
    """A private, writable copy of an Edge shard (for an index on read-only
    media, which the engine cannot load in place); returns the copy's shard
    folder.  Made under ``$RSIR_TMPDIR`` (default: the system temp folder) and
    removed by :func:`remove_private_copy`.  Raises DiskFullError when it does
    not fit."""
    from rsir_stac.store.space import open_bytes, require_free, tree_bytes

    root = Path(os.environ.get("RSIR_TMPDIR") or tempfile.gettempdir())
    _sweep_stale(root)
    need = tree_bytes(shard_dir, allocated=True) + open_bytes(shard_dir, root)
    require_free(root, need, f"a private copy of the read-only index {shard_dir.parent} in {root}",
                 intact="the index is untouched")
    work = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-", dir=root))
    try:
        copy_tree_sparse(shard_dir, work / shard_dir.name)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("index %s is read-only: searching a private copy in %s", shard_dir.parent, work)
    return work / shard_dir.name


def remove_private_copy(shard_copy: Path | None) -> None:
    if shard_copy is not None:
        shutil.rmtree(shard_copy.parent, ignore_errors=True)


__all__ = ["copy_sparse", "copy_tree_sparse", "private_copy", "remove_private_copy", "sha256_file",
           "write_zero_aware"]
