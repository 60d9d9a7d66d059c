"""The consumer of the ingest pipeline: full batches of queued tiles go to the embedder's
lanes, their vectors are taken in order and upserted by a writer thread, so that reading,
inference and writing overlap; the store is flushed after each item."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np

from rsir_stac.ingest.options import IngestOptions
from rsir_stac.ingest.points import WRITE_BATCH
from rsir_stac.ingest.producer import _END
from rsir_stac.ingest.report import IngestEvent, IngestReport


class _Batches:
    """The tiles on their way from the queue to the store: the batch being filled, the
    batches on the embedder's lanes (at most ``lanes + 1``, oldest first), the points waiting
    to be written (:data:`WRITE_BATCH` at a time) and the one write in flight on ``writer``
    (a one-thread executor).  Written points are counted into ``report`` and ``emit``-ted."""

    def __init__(self, store, lock: threading.Lock, embedder, report: IngestReport,
                 emit: Callable[[IngestEvent], None], writer: Executor) -> None:
        self.store, self.lock, self.embedder, self.report, self.emit = store, lock, embedder, report, emit
        self.writer = writer
        self.ids: list[str] = []
        self.pixels: list[np.ndarray] = []
        self.payloads: list[dict] = []
        self.inflight: deque = deque()  # (future of vectors, ids, payloads), oldest first
        self.points: list = []
        self.pending: Future | None = None
        self.max_inflight = embedder.lanes + 1

    def _upsert(self, batch) -> int:
        """Write ``batch`` (on the writer thread); how many points it held."""
        with self.lock:
            self.store.upsert(batch)
        return len(batch)

    def settle(self) -> None:
        """Wait for the write in flight and count it (re-raises its error in the caller's thread)."""
        if self.pending is not None:
            n = self.pending.result()  # re-raises a write error here, in the caller's thread
            self.pending = None
            self.report.points_written += n
            self.report.tiles_read += n
            self.emit(IngestEvent("tiles", n=n))

    def write(self) -> None:
        """Hand the waiting points to the writer thread, once the previous write is done."""
        from rsir_stac.malloc import release_free_memory

        if self.points:
            self.settle()
            self.pending, self.points = self.writer.submit(self._upsert, self.points), []
            release_free_memory()  # keep the single malloc arena from fragmenting without bound

    def collect(self, keep: int) -> None:
        """Take finished batches, oldest first, until ``keep`` are in flight."""
        from rsir_stac.store import Point

        while len(self.inflight) > keep:
            job, bids, bpayloads = self.inflight.popleft()
            self.points.extend(Point(i, v, p) for i, v, p in zip(bids, job.result(), bpayloads))
            if len(self.points) >= WRITE_BATCH:
                self.write()

    def add(self, pid: str, px: np.ndarray, payload: dict) -> None:
        """Add one tile; a full batch goes to the embedder."""
        self.ids.append(pid), self.pixels.append(px), self.payloads.append(payload)
        if len(self.ids) >= self.embedder.batch_size:
            self.embed_batch()

    def embed_batch(self) -> None:
        """Send the batch being filled to the embedder's lanes (if any tile)."""
        if self.ids:
            self.inflight.append((self.embedder.submit(self.pixels), self.ids, self.payloads))
            self.ids, self.pixels, self.payloads = [], [], []
            self.collect(self.max_inflight)

    def drain(self) -> None:
        """Embed and write everything added so far, and wait for the write."""
        self.embed_batch()
        self.collect(0)
        self.write()
        self.settle()

    def finish_item(self) -> None:
        """Drain, then flush the store: the end of an item."""
        self.drain()
        with self.lock:
            self.store.flush()

    def abort(self) -> None:
        """Drop the batches not yet embedded; the points the writer already stored stay counted."""
        for job, _, _ in self.inflight:  # batches not yet embedded are dropped
            job.cancel()
        try:  # keep what the writer already stored counted; the first error wins
            self.settle()
        except Exception:  # noqa: BLE001
            pass


def _consume(q: queue.Queue, lock: threading.Lock, store, embedder, options: IngestOptions,
             report: IngestReport, emit: Callable[[IngestEvent], None]) -> None:
    """Queue full batches on the embedder's lanes (``lanes + 1`` in flight),
    take their vectors in order and upsert them on a writer thread in groups of
    :data:`WRITE_BATCH` points (one write in flight), so that reading,
    inference and writing overlap.  The store is flushed after each item."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsir-upsert") as writer:
        batches = _Batches(store, lock, embedder, report, emit, writer)
        try:
            while True:
                kind, value = q.get()
                if kind is _END:
                    break
                _handle(batches, kind, value)
            batches.drain()  # the caller flushes the store once more at the end
        except BaseException:
            batches.abort()
            raise


def _handle(batches: _Batches, kind: Any, value: Any) -> None:
    """Act on one queue message of the producer (see :mod:`rsir_stac.ingest.producer`);
    raises the error an ``error`` message carries, after the item's points are written."""
    emit = batches.emit
    if kind == "tile":
        batches.add(*value)
    elif kind == "skip":
        emit(IngestEvent("tiles", n=value))
    elif kind == "total":
        emit(IngestEvent("total", n=value))
    elif kind == "start":
        emit(IngestEvent("start", item_id=value))
    elif kind in ("end", "failed"):
        batches.finish_item()
        if kind == "end":
            batches.report.items_done += 1
        emit(IngestEvent("end", item_id=value))
    elif kind == "error":
        batches.finish_item()
        raise value
