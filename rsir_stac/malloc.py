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

log = logging.getLogger(__name__)

_ALLOCATOR_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep glibc's malloc from handing activation buffers back to the kernel
    after every forward pass (once per process; True when applied).

    By default glibc serves the multi-megabyte tensors of a forward pass with
    fresh ``mmap`` pages, or trims them off per-thread arenas, so each batch
    pays for page faults that zero memory again: on this 2-core machine
    0.4-2 ms of kernel time per tile, up to a quarter of the CPU of an ingest.  One arena,
    a 64 MB mmap threshold and a 256 MB trim threshold (freed memory up to that
    much stays in the process) remove them.  Nothing is changed when the user
    already set ``MALLOC_*`` tunables, preloads another allocator, sets
    ``RSIR_TUNE_MALLOC=0``, or the C library is not glibc.
    """
    global _allocator_tuned
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
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    if not (mallopt(m_mmap_threshold, 64 << 20) or mallopt(m_mmap_threshold, 32 << 20)):
        return False  # without a fixed mmap threshold, a trim threshold would make things worse
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_arena_max, 1)
    log.debug("glibc malloc tuned for inference (1 arena, mmap threshold 64 MB, trim threshold 256 MB)")
    _allocator_tuned = True
    return True
