"""Free-space estimates for the embedded index, so a full disk ends a command
with one line instead of a SIGBUS.

Qdrant Edge writes through memory maps.  When a write lands on a page the file
system cannot allocate (a full disk), the kernel answers with SIGBUS and the
process dies without a word (exit 135); the engine never sees an error.  The
only defence is to check before the engine touches new pages.  What it touches,
measured with qdrant-edge-py 0.9 (``tests/test_space.py``):

* **creating a collection**: the WAL (two 32 MiB segments, sparse) and
  preallocated payload-index pages, ~28 MiB on tmpfs, a few KiB on ext4;
* **opening**: the vector storage of appendable segments is an "in-RAM chunked
  mmap" of 32 MiB chunks that the engine populates on load.  On tmpfs (and
  other memory-backed file systems) populating allocates the whole chunk, so
  opening a 380 KB index takes 32 MiB; on disk file systems the holes stay
  holes.  With the two WAL segments that is the "60 MB mapped" of a tiny index;
* **writing**: each point goes to the WAL and to the segment (vector, payload,
  id tracker, payload indexes): about ``2 * (4 * dim + payload bytes) + 512``;
* **optimizing**: a new segment is built beside the old ones (up to the size
  of the data).

The engine offers no setting for the vector chunk size; the WAL segment size
can be set through an undocumented ``wal_options.segment_capacity`` in the
shard's ``edge_config.json`` (the engine keeps it), which rsir-stac leaves at
the default because the WAL files are sparse.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from rsir_stac.errors import DiskFullError

log = logging.getLogger(__name__)

MiB = 1 << 20
#: Headroom kept on top of every estimate (small journals, directory entries).
MARGIN = 2 * MiB
#: What creating a collection allocates on a memory-backed file system.
CREATE_BYTES_MEMFS = 40 * MiB
CREATE_BYTES_DISK = 2 * MiB
#: Size of one vector chunk file (fixed by the engine, whatever the dimension).
CHUNK_BYTES = 32 * MiB
#: File systems whose pages are allocated when a mapping is populated.
_MEMORY_FS = frozenset({"tmpfs", "ramfs", "shm", "devtmpfs", "hugetlbfs"})


def human(n: int | float) -> str:
    """Bytes as a short human figure (``3.2 MB``)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _existing(path: str | Path) -> Path:
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged process may still write on the file system holding
    ``path`` (or its nearest existing parent)."""
    st = os.statvfs(_existing(path))
    return int(st.f_bavail) * int(st.f_frsize)


def fs_type(path: str | Path) -> str:
    """File-system type of the mount holding ``path`` (Linux ``/proc/self/mountinfo``);
    empty when unknown."""
    p = str(_existing(path).resolve())
    best, kind = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mnt = fields[4].replace("\\040", " ")
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, right.split()[0]
    except OSError:
        return ""
    return kind


def populates_mmaps(path: str | Path) -> bool:
    """Whether populating a shared mapping allocates pages there (memory-backed
    file systems); unknown file systems count as such (the safe side)."""
    kind = fs_type(path)
    return kind in _MEMORY_FS or kind == ""


def tree_bytes(path: str | Path, *, allocated: bool = True) -> int:
    """Bytes under ``path``: allocated on disk (holes not counted) or apparent sizes."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_blocks * 512 if allocated else st.st_size
    return total


def open_bytes(shard_dir: str | Path, where: str | Path | None = None) -> int:
    """Bytes an engine load of ``shard_dir`` (or of a copy of it made in ``where``)
    may allocate: the holes of the vector chunk files where the file system
    allocates populated pages, plus a margin."""
    need = MARGIN
    if not populates_mmaps(where if where is not None else shard_dir):
        return need
    for chunk in Path(shard_dir).glob("segments/*/vector_storage/*/chunk_*.mmap"):
        try:
            st = chunk.stat()
        except OSError:
            continue
        need += max(0, st.st_size - st.st_blocks * 512)
    return need


def create_bytes(index: str | Path) -> int:
    """Bytes creating a collection in ``index`` allocates."""
    return CREATE_BYTES_MEMFS if populates_mmaps(index) else CREATE_BYTES_DISK


def write_bytes(n_points: int, dim: int, payload_bytes: int, *, memfs: bool = False) -> int:
    """Bytes writing ``n_points`` points of ``dim`` floats with ``payload_bytes`` of
    stored payload in all (WAL and segment) takes, plus the margin.  On a
    memory-backed file system (``memfs``) a write may start a new vector chunk,
    which the engine populates at once: one chunk of headroom is kept."""
    need = 2 * (4 * int(dim) * int(n_points) + int(payload_bytes)) + 512 * int(n_points) + MARGIN
    return need + (CHUNK_BYTES if memfs else 0)


INTACT = "the index is intact (nothing was half-written)"


def optimize_bytes(shard_dir: str | Path) -> int:
    """Bytes optimizing may take: the optimizer rebuilds the appendable segments
    (indexed, immutable ones are left as they are) into new ones beside them."""
    import json

    need = MARGIN
    for seg in Path(shard_dir).glob("segments/*"):
        try:
            desc = json.loads((seg / "segment.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data = (desc.get("config") or {}).get("vector_data") or {}
        if any((v or {}).get("storage_type") == "InRamChunkedMmap" for v in data.values()):
            need += tree_bytes(seg, allocated=True)
    return need


def require_free(path: str | Path, need: int, action: str, *, intact: str = INTACT) -> None:
    """Raise :class:`DiskFullError` when the file system holding ``path`` has
    less than ``need`` bytes free for ``action`` (a phrase: "writing 64 points
    to index X")."""
    try:
        free = free_bytes(path)
    except OSError:
        return  # cannot tell: let the operation try
    if free < need:
        raise disk_full(path, action, need=need, free=free, intact=intact)


def disk_full(path: str | Path, action: str, *, need: int | None = None, free: int | None = None,
              intact: str = INTACT) -> DiskFullError:
    """The one-line disk-full error: where, how much is needed, that the data is intact (for a
    folder that holds no index yet, that nothing was written)."""
    where = _existing(path)
    p = Path(path)
    if intact == INTACT and (not p.exists() or (p.is_dir() and not any(p.glob("*.meta.json"))
                                                and not any(p.glob("*/segments")))):
        intact = "nothing was written (no index was there yet)"
    if free is None:
        try:
            free = free_bytes(where)
        except OSError:
            free = None
    have = f" has {human(free)} free" if free is not None else " is full"
    needs = f" but {action} needs about {human(need)}" if need else f"; {action} failed"
    return DiskFullError(f"disk full: {where}{have}{needs}; {intact}; "
                         "free space there (or choose another location) and re-run the same command")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError or an engine error) says the disk or quota is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    msg = str(exc)
    return ("No space left on device" in msg or "os error 28" in msg or "Disk quota exceeded" in msg
            or "database or disk is full" in msg)  # SQLite's SQLITE_FULL (the ledger, qdrant-client local mode)


__all__ = ["INTACT", "create_bytes", "optimize_bytes", "disk_full", "free_bytes", "fs_type", "human", "is_disk_full", "open_bytes",
           "populates_mmaps", "require_free", "tree_bytes", "write_bytes"]
