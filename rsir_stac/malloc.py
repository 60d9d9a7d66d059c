"""glibc malloc settings for CPU inference (see :func:`tune_allocator`).

The CLI applies them first thing.  Library users get them when the first CPU
:class:`~rsir_stac.embed.Embedder` is made, but ``M_ARENA_MAX`` only binds
threads that have no malloc arena yet, so a long-lived process that embeds
should call :func:`tune_allocator` at start (before torch runs an operator
or an Edge shard is opened), or set the ``MALLOC_*`` variables itself.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

#: Growth of the resident size after which :func:`release_free_memory` trims the heap.
RSS_SLACK = 256 << 20
#: Least time between two trims.
TRIM_INTERVAL_S = 20.0

_ALLOCATOR_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_allocator_tuned: bool | None = None
_libc = None
_rss_mark: int | None = None
_last_trim: float | None = None


def tune_allocator() -> bool:
    """Keep glibc's malloc from handing activation buffers back to the kernel
    after every forward pass (once per process; True when applied).

    By default glibc serves the multi-megabyte tensors of a forward pass with
    fresh ``mmap`` pages, or trims them off per-thread arenas, so each batch
    pays for page faults that zero memory again: on this 2-core machine
    0.4-2 ms of kernel time per tile, up to a quarter of the CPU of an ingest.  One arena,
    a 64 MB mmap threshold and a 256 MB trim threshold (freed memory up to that
    much stays in the process) remove them.  One arena fragments over a long
    run (free holes between long-lived blocks), so long jobs call
    :func:`release_free_memory` now and then to keep the heap bounded.  Nothing is changed when the user
    already set ``MALLOC_*`` tunables, preloads another allocator, sets
    ``RSIR_TUNE_MALLOC=0``, or the C library is not glibc.
    """
    global _allocator_tuned, _libc
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("RSIR_TUNE_MALLOC", "1") == "0" or any(k in os.environ for k in _ALLOCATOR_ENV):
        return False
    if any(a in os.environ.get("LD_PRELOAD", "") for a in ("jemalloc", "tcmalloc", "mimalloc")):
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    if not (mallopt(m_mmap_threshold, 64 << 20) or mallopt(m_mmap_threshold, 32 << 20)):
        return False  # without a fixed mmap threshold, a trim threshold would make things worse
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_arena_max, 1)
    log.debug("glibc malloc tuned for inference (1 arena, mmap threshold 64 MB, trim threshold 256 MB)")
    _allocator_tuned, _libc = True, libc
    return True


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_free_memory(limit: int = RSS_SLACK, interval: float = TRIM_INTERVAL_S) -> bool:
    """With the tuned allocator, hand free heap pages back to the kernel
    (``malloc_trim``) when the resident size has grown ``limit`` bytes past
    where the last trim left it, at most once per ``interval`` seconds (the
    first call only takes the mark and starts the clock).

    One arena reuses freed blocks, but over a long run the holes between
    long-lived blocks add up (~10 MB/s during an ingest here): without this,
    the peak RSS of an ingest grew with the scene (1.3 / 1.5 / 1.7 GB for
    10,000² / 20,000² / 28,000² px).  Trimming releases pages that are then
    faulted in again when reused, so it is kept rare: an ingest's normal swing
    (GDAL's 256 MB block cache refilling) must not trigger it every few
    seconds.  Cheap to call often (one read of ``/proc/self/statm``); True
    when it trimmed.
    """
    global _rss_mark, _last_trim
    if _libc is None:
        return False
    now = time.monotonic()
    rss = _rss_bytes()
    if _rss_mark is None or rss < _rss_mark:
        _rss_mark = rss
    if _last_trim is None:
        _last_trim = now
        return False
    if now - _last_trim < interval or rss < _rss_mark + limit:
        return False
    _libc.malloc_trim(0)
    _rss_mark, _last_trim = _rss_bytes(), time.monotonic()
    log.debug("released %d MB of free heap memory", (rss - _rss_mark) >> 20)
    return True
