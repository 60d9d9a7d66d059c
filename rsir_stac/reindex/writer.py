"""Embedding re-read tiles on the embedder's lanes and writing them to the new index in
order, :data:`WRITE_BATCH` points at a time."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from rsir_stac.reindex.report import ReindexEvent, ReindexReport


#: Points per upsert into the new index.
WRITE_BATCH = 64


class _Writer:
    """Embeds batches on the embedder's lanes (``lanes + 1`` in flight) and
    upserts the vectors in order, :data:`WRITE_BATCH` points at a time."""

    def __init__(self, embedder, store, report: ReindexReport, emit: Callable[[ReindexEvent], None]) -> None:
        self.embedder, self.store, self.report, self.emit = embedder, store, report, emit
        self.ids: list[str] = []
        self.pixels: list[np.ndarray] = []
        self.payloads: list[dict] = []
        self.inflight: deque = deque()
        self.points: list = []

    def add(self, pid: str, pixels: np.ndarray, payload: dict) -> None:
        self.ids.append(pid), self.pixels.append(pixels), self.payloads.append(payload)
        if len(self.ids) >= self.embedder.batch_size:
            self._submit()

    def _submit(self) -> None:
        if self.ids:
            self.inflight.append((self.embedder.submit(self.pixels), self.ids, self.payloads))
            self.ids, self.pixels, self.payloads = [], [], []
            self._collect(self.embedder.lanes + 1)

    def _collect(self, keep: int) -> None:
        from rsir_stac.store import Point

        while len(self.inflight) > keep:
            job, ids, payloads = self.inflight.popleft()
            self.points.extend(Point(i, v, p) for i, v, p in zip(ids, job.result(), payloads))
            if len(self.points) >= WRITE_BATCH:
                self._write()

    def _write(self) -> None:
        if self.points:
            self.store.upsert(self.points)
            n = len(self.points)
            self.points = []
            self.report.points_written += n
            self.emit(ReindexEvent("points", n=n))

    def drain(self) -> None:
        """Embed and write everything added so far."""
        self._submit()
        self._collect(0)
        self._write()

    def cancel(self) -> None:
        for job, _, _ in self.inflight:
            job.cancel()
        self.inflight.clear()
