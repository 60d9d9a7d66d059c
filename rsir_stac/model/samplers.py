"""P×K class-balanced batch sampler: P classes, K images of each, per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class PKSampler:
    """Yields lists of dataset indices, each holding ``p`` classes × ``k`` images.

    One epoch draws about ``len(labels) // (p*k)`` batches.  Classes with fewer
    than ``k`` images are sampled with replacement.  Deterministic for a seed;
    call :meth:`set_epoch` to vary the draw across epochs.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.classes = np.unique(self.labels)
        if p > len(self.classes):
            raise ValueError(f"P={p} exceeds the {len(self.classes)} classes available; lower --p")
        if k < 2:
            raise ValueError("K must be at least 2 so each batch has positives")
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in self.classes}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // (self.p * self.k))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pools = {c: list(rng.permutation(ix)) for c, ix in self.by_class.items()}
        for _ in range(len(self)):
            batch: list[int] = []
            for c in rng.choice(self.classes, size=self.p, replace=False):
                pool = pools[c]
                if len(pool) < self.k:  # refill this class's pool
                    pool.extend(rng.permutation(self.by_class[c]))
                if len(self.by_class[c]) < self.k:
                    batch.extend(rng.choice(self.by_class[c], size=self.k, replace=True).tolist())
                else:
                    batch.extend(int(pool.pop()) for _ in range(self.k))
            yield batch
