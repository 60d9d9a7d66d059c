"""Size-capped segments: what bounds the memory of building a large embedded index.

Measured in ``benchmarks/build_memory.py`` (RESULTS §13.7): Qdrant Edge keeps new
points in one appendable segment whose vectors and mutable payload indexes hold about
1.9 KB per point in anonymous memory until :meth:`EdgeShard.optimize` turns it into an
indexed, memory-mapped segment, and ``optimize`` adds its own working set on top (about
3 KB per point in all).  One build of N points therefore needs ~3 KB × N of memory:
~29 GiB for 10 million tiles.

A shard created here carries ``max_segment_size`` (the engine's cap on a segment's
vector storage, in KB) sized for :data:`SEGMENT_POINTS` vectors, and the store runs
``optimize`` each time that many points have been written since the last one (checked
after each write batch of up to 512 points, so a segment may exceed the cap by one batch).  Each
such round indexes only its own segment and the engine never merges segments past the
cap, so the build holds one round's points in memory, not the whole index, and no round
re-indexes what earlier rounds built.  Searches fan out over the segments (about one
per :data:`SEGMENT_POINTS` points).

Indexes created before this (no cap in their ``edge_config.json``) keep their single
segment and get no periodic rounds: there, every ``optimize`` would merge and re-index
everything again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Points per capped segment (and per optimize round).  With ~1.9 KB of anonymous
#: memory per unindexed point this bounds a build at ~0.5 GB plus the optimizer's
#: working set, whatever the index size.  Measured at 1M points (RESULTS §13.7): four
#: 250k rounds built in 587 s against 1,394 s for one segment, at 1.25 against 2.8 GiB
#: peak, with filtered searches faster (bbox 3.7 against 6.1 ms p50) and plain ones
#: slower (4.5 against 3.7 ms): a search visits every segment.
SEGMENT_POINTS = 250_000

#: The engine's default indexing threshold (KB of vectors): smaller segments stay plain
#: (exact search).  Lowered to a quarter of the cap when the cap is small, so that small
#: capped segments are still indexed.
_DEFAULT_INDEXING_KB = 10_000


def cap_kb(dim: int, segment_points: int) -> int:
    """The engine's ``max_segment_size`` (KB of float32 vector storage) for
    ``segment_points`` vectors of ``dim`` dimensions, rounded up to whole KB; at least 1."""
    return max(1, -(-int(segment_points) * int(dim) * 4 // 1024))


def edge_config(dim: int, segment_points: int | None = SEGMENT_POINTS, *, full_scan_kb: int | None = None) -> Any:
    """The ``qdrant_edge.EdgeConfig`` of a new shard: ``dim``-d float32 vectors,
    Euclidean distance, and (unless ``segment_points`` is None) segments capped at
    ``segment_points`` vectors.  ``full_scan_kb`` overrides the engine's HNSW
    ``full_scan_threshold`` (KB of vectors a filter must match in a segment before the
    graph answers it instead of an exact scan; the engine's default is 10,000) and is for
    benchmarks and tests.  Raises ValueError for a non-positive ``segment_points``."""
    import qdrant_edge as q

    vectors = q.EdgeVectorParams(size=int(dim), distance=q.Distance.Euclid)
    hnsw = {} if full_scan_kb is None else {
        "hnsw_config": q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=int(full_scan_kb))}
    if segment_points is None:
        return q.EdgeConfig(vectors=vectors, **hnsw)
    if int(segment_points) < 1:
        raise ValueError(f"segment_points {segment_points} must be a positive number of points")
    kb = cap_kb(dim, segment_points)
    indexing = kb // 4 if kb // 4 < _DEFAULT_INDEXING_KB else None
    return q.EdgeConfig(vectors=vectors, **hnsw,
                        optimizers=q.EdgeOptimizersConfig(max_segment_size=kb, indexing_threshold=indexing))


def shard_cap_points(shard_dir: str | Path) -> int | None:
    """Points per segment of the shard in ``shard_dir``, from the cap its
    ``edge_config.json`` records; None for an uncapped (older) shard or an unreadable config."""
    try:
        cfg = json.loads((Path(shard_dir) / "edge_config.json").read_text(encoding="utf-8"))
        kb = (cfg.get("optimizers") or {}).get("max_segment_size")
        dim = int(cfg["vectors"][""]["size"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not kb or dim < 1:
        return None
    return max(1, int(kb) * 1024 // (dim * 4))


@dataclass
class Rounds:
    """Counts points written since the last optimize; :meth:`add` says when a round is due.

    ``every``: points per round (None: never due, for uncapped shards)."""

    every: int | None
    pending: int = 0

    def add(self, n: int) -> bool:
        """Count ``n`` written points; True when ``every`` or more are pending."""
        self.pending += int(n)
        return self.every is not None and self.pending >= self.every

    def reset(self) -> None:
        self.pending = 0


__all__ = ["SEGMENT_POINTS", "Rounds", "cap_kb", "edge_config", "shard_cap_points"]
