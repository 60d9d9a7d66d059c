"""Triplet loss and miners against a hand-computed loop over all triplets."""

import itertools

import numpy as np
import pytest
import torch

from rsir_stac.model.losses import TripletMarginLoss, pairwise_distances
from rsir_stac.model.samplers import PKSampler


def _batch(seed=0, n=12, dim=5, classes=3):
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    labels = torch.arange(n) % classes
    return emb, labels


def _d(e, i, j):
    return float(torch.linalg.norm(e[i] - e[j]))


def _loop_all(e, y, m):
    losses = []
    n = len(y)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and y[a] == y[p] and y[a] != y[q]:
            losses.append(max(0.0, _d(e, a, p) - _d(e, a, q) + m))
    return np.mean(losses)


def _loop_batch_hard(e, y, m):
    losses = []
    for a in range(len(y)):
        dp = max(_d(e, a, p) for p in range(len(y)) if p != a and y[p] == y[a])
        dn = min(_d(e, a, q) for q in range(len(y)) if y[q] != y[a])
        losses.append(max(0.0, dp - dn + m))
    return np.mean(losses)


def _loop_semi_hard(e, y, m):
    losses = []
    n = len(y)
    for a, p in itertools.product(range(n), repeat=2):
        if a == p or y[a] != y[p]:
            continue
        dap = _d(e, a, p)
        negs = [_d(e, a, q) for q in range(n) if y[q] != y[a]]
        farther = [d for d in negs if d > dap]
        dn = min(farther) if farther else max(negs)
        losses.append(max(0.0, dap - dn + m))
    return np.mean(losses)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.1, 0.5, 1.5])
def test_losses_match_loops(seed, margin):
    e, y = _batch(seed)
    assert float(TripletMarginLoss(margin, "all")(e, y)) == pytest.approx(_loop_all(e, y, margin), abs=1e-5)
    assert float(TripletMarginLoss(margin, "batch-hard")(e, y)) == pytest.approx(_loop_batch_hard(e, y, margin), abs=1e-5)
    assert float(TripletMarginLoss(margin, "semi-hard")(e, y)) == pytest.approx(_loop_semi_hard(e, y, margin), abs=1e-5)


def test_pairwise_distances_and_gradient():
    e, _ = _batch()
    d = pairwise_distances(e)
    assert torch.allclose(d, torch.cdist(e, e), atol=1e-5)
    e = e.clone().requires_grad_()
    pairwise_distances(e).sum().backward()
    assert torch.isfinite(e.grad).all()


def test_loss_zero_when_separated_and_has_gradient():
    y = torch.tensor([0, 0, 1, 1])
    e = torch.tensor([[1.0, 0], [1.0, 0], [-1.0, 0], [-1.0, 0]])
    assert float(TripletMarginLoss(0.2)(e, y)) == 0.0
    e2 = torch.randn(8, 4, requires_grad=True)
    TripletMarginLoss(0.2)(e2, torch.arange(8) % 2).backward()
    assert e2.grad.abs().sum() > 0


def test_pk_sampler_batches():
    labels = np.repeat(np.arange(6), [10, 10, 10, 10, 10, 3])
    s = PKSampler(labels, p=4, k=4, seed=0)
    batches = list(s)
    assert len(batches) == len(labels) // 16
    for b in batches:
        assert len(b) == 16
        classes, counts = np.unique(labels[b], return_counts=True)
        assert len(classes) == 4 and (counts == 4).all()
    assert batches == list(PKSampler(labels, 4, 4, seed=0))  # deterministic
    s.set_epoch(1)
    assert list(s) != batches
    with pytest.raises(ValueError):
        PKSampler(labels, p=7, k=4)
