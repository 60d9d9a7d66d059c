"""Label-free criteria on a held-out slice of a user's tiles.

* :func:`positive_retrieval`: for each held-out tile, is its positive (an
  augmented view of it, a tile of the same ground at another date, an
  adjacent tile) the nearest of the candidates that are valid negatives of
  it?  Top-1 accuracy per kind.  It is the self-supervised task measured on
  tiles the adaptation never trained on: it rises while the network learns
  what generalises across the user's tiles and falls when it over-fits, the
  label-free analogue of a validation mAP; adaptation keeps the step where it
  peaks (early stopping).
* :func:`neighbour_agreement`: the mean overlap of each tile's k nearest
  neighbours under two embeddings (1 = the same neighbourhoods).  Against
  the start model it says how much of the start model's notion of
  similarity the adapted one kept.
"""

from __future__ import annotations

import numpy as np


def knn(Z: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows (Euclidean), N×k."""
    Z = np.asarray(Z, dtype=np.float64)
    sq = (Z**2).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * Z @ Z.T
    np.fill_diagonal(d, np.inf)
    k = min(k, len(Z) - 1)
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(d, part, 1).argsort(1, kind="stable")
    return np.take_along_axis(part, order, 1)


def neighbour_agreement(Z_a: np.ndarray, Z_b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of shared k-nearest neighbours of every row under two embeddings."""
    if len(Z_a) < 2:
        return float("nan")
    a, b = knn(Z_a, k), knn(Z_b, k)
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / a.shape[1] for x, y in zip(a, b)]))


def positive_retrieval(Z: np.ndarray, queries: list[tuple[str, int, int, int]], neg: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy of finding each query's target among the target and
    the valid negatives of the query's tile.

    ``Z`` holds the embeddings of the gallery (the n held-out tiles, rows
    0..n-1) followed by any extra query views (augmented copies); ``queries``
    are ``(kind, query row, target row, anchor tile)``; ``neg`` is the n×n
    mask of valid negatives (:func:`rsir_stac.model.pairs.negative_mask`).
    Returns the accuracy of each kind and ``mean``, their mean.
    """
    Z = np.asarray(Z, dtype=np.float64)
    n = neg.shape[0]
    hits: dict[str, list[float]] = {}
    for kind, q, t, anchor in queries:
        cand = np.flatnonzero(neg[anchor, :n])
        cand = cand[cand != t]
        d_t = np.linalg.norm(Z[q] - Z[t])
        ok = 1.0 if not len(cand) else float(d_t < np.linalg.norm(Z[cand] - Z[q], axis=1).min())
        hits.setdefault(kind, []).append(ok)
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out
