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


class CrossBatchMemory(nn.Module):
    """A triplet loss plus, for each anchor, its batch-hard triplet against the embeddings of
    earlier batches (XBM: Wang et al., CVPR 2020, "Cross-Batch Memory for Embedding Learning";
    pytorch-metric-learning's ``CrossBatchMemory`` wraps a loss the same way).

    The last ``size`` embeddings (detached, float32) and their labels are kept, newest first.
    Once ``start_after`` batches have been seen (the embedding drifts fast at the start, and
    stale memory entries would mislead it), each anchor of a batch that has a remembered
    positive and a remembered negative adds ``weight × max(0, d(a, p*) - d(a, n*) + margin)``,
    with ``p*`` its farthest remembered positive and ``n*`` its closest remembered negative
    (Euclidean ``d``), averaged over those anchors: the hardest pair whatever the wrapped loss's
    miner (XBM's own choice).  With P×K batches of 4 images a class, a
    memory of 512 holds about 32 images a class, so the hardest pairs come from far more of
    the training set than one batch shows.

    ``emb``: (B, D) embeddings; ``labels``: (B,) integer labels.  :meth:`state` and
    :meth:`load_state` carry the memory through a checkpoint, so a resumed run continues as
    one that was never stopped.
    """

    def __init__(self, loss: TripletMarginLoss, size: int, start_after: int = 0, weight: float = 1.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"memory size {size}: give at least 1 embedding")
        self.loss, self.size, self.start_after, self.weight = loss, int(size), int(start_after), float(weight)
        self.emb: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.seen = 0  # batches seen
        self.last_term = 0.0

    @property
    def margin(self) -> float:
        return self.loss.margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = self.loss(emb, labels)
        self.last_term = 0.0  # the memory's share of this batch's loss (weighted)
        if self.emb is not None and self.seen >= self.start_after:
            term = self.weight * self._against_memory(emb.float(), labels)
            self.last_term = float(term.detach())
            total = total + term
        self._enqueue(emb, labels)
        return total

    def _against_memory(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, self.emb)  # B × M
        pos = labels[:, None] == self.labels[None, :]
        has = pos.any(1) & (~pos).any(1)
        if not has.any():
            return x.sum() * 0.0
        dp = torch.where(pos, d, torch.full_like(d, -1.0)).max(1).values
        dn = torch.where(~pos, d, torch.full_like(d, float("inf"))).min(1).values
        return torch.relu(dp - dn + self.margin)[has].mean()

    def _enqueue(self, emb: torch.Tensor, labels: torch.Tensor) -> None:
        e, lab = emb.detach().float(), labels.detach()
        self.emb = (e if self.emb is None else torch.cat([e, self.emb]))[: self.size]
        self.labels = (lab if self.labels is None else torch.cat([lab, self.labels]))[: self.size]
        self.seen += 1

    def state(self) -> dict:
        """The memory and the count of batches seen (CPU tensors), for a checkpoint."""
        cpu = (lambda t: None if t is None else t.cpu())
        return {"emb": cpu(self.emb), "labels": cpu(self.labels), "seen": self.seen}

    def load_state(self, state: dict, device=None) -> None:
        """Restore what :meth:`state` saved (on ``device``)."""
        move = (lambda t: None if t is None else t.to(device) if device is not None else t)
        self.emb, self.labels, self.seen = move(state["emb"]), move(state["labels"]), int(state["seen"])
