"""Label-free criteria on a held-out slice of a user's tiles.

* :func:`positive_retrieval`: for each held-out tile, is its positive (an
  augmented view of it, a tile of the same ground at another date, an
  adjacent tile) nearer than every held-out tile that is a valid negative of
  it?  Top-1 accuracy and the triplet loss against the hardest such negative,
  per kind.  It is the self-supervised task measured on tiles the adaptation
  never trained on: the loss falls while the network learns what
  generalises across the user's tiles and rises when it over-fits, the
  label-free analogue of a validation loss; adaptation keeps the step where
  it is lowest (early stopping).  The accuracy alone saturates on small
  held-out slices (all 1.0 before training), so it cannot choose.
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


def positive_retrieval(Z: np.ndarray, queries: list[tuple[str, int, int, int]], neg: np.ndarray,
                       margin: float = 0.2) -> dict:
    """How well each query finds its target among the valid negatives of its tile.

    ``Z`` holds the embeddings of the gallery (the n held-out tiles, rows
    0..n-1) followed by any extra query views (augmented copies); ``queries``
    are ``(kind, query row, target row, anchor tile)``; ``neg`` is the n×n
    mask of valid negatives (:func:`rsir_stac.model.pairs.negative_mask`).

    Returns ``accuracy`` (per kind: share of queries whose target is nearer
    than every candidate, top-1), ``loss`` (per kind: mean
    ``max(0, d(q,target) - d(q,nearest candidate) + margin)``, the triplet
    loss with the hardest held-out negative; it keeps falling after the
    accuracy saturates), and their means over kinds, ``mean_accuracy`` and
    ``mean_loss``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    n = neg.shape[0]
    acc: dict[str, list[float]] = {}
    loss: dict[str, list[float]] = {}
    for kind, q, t, anchor in queries:
        cand = np.flatnonzero(neg[anchor, :n])
        cand = cand[cand != t]
        if not len(cand):
            continue
        d_t = float(np.linalg.norm(Z[q] - Z[t]))
        d_n = float(np.linalg.norm(Z[cand] - Z[q], axis=1).min())
        acc.setdefault(kind, []).append(float(d_t < d_n))
        loss.setdefault(kind, []).append(max(0.0, d_t - d_n + margin))
    out: dict = {"accuracy": {k: float(np.mean(v)) for k, v in acc.items()},
                 "loss": {k: float(np.mean(v)) for k, v in loss.items()}}
    out["mean_accuracy"] = float(np.mean(list(out["accuracy"].values()))) if acc else float("nan")
    out["mean_loss"] = float(np.mean(list(out["loss"].values()))) if loss else float("nan")
    return out
