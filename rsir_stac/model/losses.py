"""Triplet margin loss with online miners (pytorch-metric-learning style).

A miner looks at a batch's embeddings and labels and returns triplet indices
``(anchor, positive, negative)``; :class:`TripletMarginLoss` averages
``max(0, d(a,p) - d(a,n) + margin)`` over them, with Euclidean ``d``.
"""

from __future__ import annotations

import torch
from torch import nn

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix, with a safe gradient at zero."""
    sq = x.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.t()).clamp(min=0.0)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return torch.sqrt(d2 + eps) * ((d2 > 0) & ~eye)


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class AllTripletsMiner:
    """Every valid (a, p, n) triplet of the batch."""

    def __call__(self, emb: torch.Tensor, labels: torch.Tensor) -> Triplets:
        pos, neg = _masks(labels)
        valid = pos[:, :, None] & neg[:, None, :]
        a, p, n = torch.nonzero(valid, as_tuple=True)
        return a, p, n


class BatchHardMiner:
    """For each anchor: its farthest positive and its closest negative (Hermans et al. 2017)."""

    def __call__(self, emb: torch.Tensor, labels: torch.Tensor) -> Triplets:
        with torch.no_grad():
            d = pairwise_distances(emb.float())
            pos, neg = _masks(labels)
            has = pos.any(1) & neg.any(1)
            p = torch.where(pos, d, torch.full_like(d, -1.0)).argmax(1)
            n = torch.where(neg, d, torch.full_like(d, float("inf"))).argmin(1)
            a = torch.arange(len(labels), device=labels.device)
        return a[has], p[has], n[has]


class SemiHardMiner:
    """For each (a, p) pair: the closest negative farther than the positive
    (FaceNet's semi-hard rule); if none is farther, the farthest negative."""

    def __call__(self, emb: torch.Tensor, labels: torch.Tensor) -> Triplets:
        with torch.no_grad():
            d = pairwise_distances(emb.float())
            pos, neg = _masks(labels)
            a, p = torch.nonzero(pos, as_tuple=True)
            d_ap = d[a, p][:, None]
            d_an = d[a]  # pairs × B
            negm = neg[a]
            semi = negm & (d_an > d_ap)
            inf = torch.full_like(d_an, float("inf"))
            n_semi = torch.where(semi, d_an, inf).argmin(1)
            n_easy = torch.where(negm, d_an, -inf).argmax(1)
            n = torch.where(semi.any(1), n_semi, n_easy)
            keep = negm.any(1)
        return a[keep], p[keep], n[keep]


MINERS = {"batch-hard": BatchHardMiner, "semi-hard": SemiHardMiner, "all": AllTripletsMiner}


class TripletMarginLoss(nn.Module):
    """Mean triplet margin loss over the miner's triplets (Euclidean distance)."""

    def __init__(self, margin: float = 0.2, miner: str = "batch-hard") -> None:
        super().__init__()
        if miner not in MINERS:
            raise ValueError(f"unknown miner {miner!r}; choose one of {', '.join(MINERS)}")
        self.margin = margin
        self.miner_name = miner
        self.miner = MINERS[miner]()

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        a, p, n = self.miner(emb, labels)
        if len(a) == 0:
            return emb.sum() * 0.0
        emb = emb.float()
        d_ap = (emb[a] - emb[p]).pow(2).sum(1).clamp(min=1e-12).sqrt()
        d_an = (emb[a] - emb[n]).pow(2).sum(1).clamp(min=1e-12).sqrt()
        return torch.relu(d_ap - d_an + self.margin).mean()
