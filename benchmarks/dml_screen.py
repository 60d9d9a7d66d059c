"""Screen (not in the product): two deep-metric-learning changes aimed at classes never trained on.

Patched into the triplet loss of ``rsir-stac train`` (the recipe's miner and margin stay):

``DML=rho``: rho-regularisation (Roth et al., ICML 2020, "Revisiting training strategies and
generalization performance in deep metric learning", section 5).  With probability ``DML_RHO``
(default 0.2) a mined triplet's negative is swapped for another positive of the anchor, so the
loss now and then pushes images of one class apart.  The paper finds that unseen-class recall
follows the spread of the embedding's spectrum, and that this swap keeps it from collapsing onto
the training classes' few directions (+1 to +3 Recall@1 on CUB-200 / Cars196 / SOP unseen classes).

``DML=xbm``: a cross-batch memory (Wang et al., CVPR 2020, "Cross-Batch Memory for Embedding
Learning").  The detached embeddings and labels of the last ``DML_MEM`` (default 512) training
images are kept; from the second epoch on, each batch anchor also gets its batch-hard triplet
against the memory (farthest remembered positive, closest remembered negative), added to the
batch's loss at weight ``DML_XBM_W`` (default 1).  With 16 classes of about 70 training images each
the batch of 64 holds 4 of a class, the memory 32.

    DML=rho python benchmarks/dml_screen.py train ../shared/data/ucmerced --out runs/rho-s0 \
        --recipe v3 --distill 0.5 --margin 0.4 --hybrid 2 --leave-out-n 5 --seed 0 --epochs 10 \
        --reducer pca --reducer-dim 64
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rsir_stac.model import losses as L  # noqa: E402

KIND = os.environ.get("DML", "rho")
RHO = float(os.environ.get("DML_RHO", "0.2"))
MEM = int(os.environ.get("DML_MEM", "512"))
XBM_W = float(os.environ.get("DML_XBM_W", "1"))
GEN = torch.Generator().manual_seed(int(os.environ.get("DML_SEED", "0")))
STATE = {"emb": None, "lab": None, "calls": 0}


def _hinge(emb, a, p, n, margin):
    d_ap = (emb[a] - emb[p]).pow(2).sum(1).clamp(min=1e-12).sqrt()
    d_an = (emb[a] - emb[n]).pow(2).sum(1).clamp(min=1e-12).sqrt()
    return torch.relu(d_ap - d_an + margin).mean()


def _rho(self, emb, labels):
    """The recipe's triplets, each negative swapped for another positive with probability RHO."""
    a, p, n = self.miner(emb, labels)
    if len(a) == 0:
        return emb.sum() * 0.0
    emb = emb.float()
    pos, _ = L._masks(labels)
    other = pos[a].clone()
    other[torch.arange(len(a)), p] = False  # a positive other than the mined one
    swap = (torch.rand(len(a), generator=GEN) < RHO) & other.any(1)
    if swap.any():
        w = other[swap].float()
        pick = torch.multinomial(w, 1, generator=GEN)[:, 0]
        n = n.clone()
        n[swap] = pick
    return _hinge(emb, a, p, n, self.margin)


def _xbm(self, emb, labels):
    """The recipe's batch loss plus each anchor's batch-hard triplet against the memory."""
    loss = _hinge_batch(self, emb, labels)
    steps_per_epoch = int(os.environ.get("DML_WARM_STEPS", "0"))
    STATE["calls"] += 1
    e, lab = emb.detach().float(), labels.detach()
    if STATE["emb"] is not None and STATE["calls"] > steps_per_epoch:
        m, ml = STATE["emb"], STATE["lab"]
        x = emb.float()
        d = torch.cdist(x, m)  # B × M
        pos, neg = lab[:, None] == ml[None, :], lab[:, None] != ml[None, :]
        has = pos.any(1) & neg.any(1)
        if has.any():
            dp = torch.where(pos, d, torch.full_like(d, -1.0)).max(1).values
            dn = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
            loss = loss + XBM_W * torch.relu(dp - dn + self.margin)[has].mean()
    STATE["emb"] = e if STATE["emb"] is None else torch.cat([e, STATE["emb"]])[:MEM]
    STATE["lab"] = lab if STATE["lab"] is None else torch.cat([lab, STATE["lab"]])[:MEM]
    return loss


_hinge_batch = L.TripletMarginLoss.forward

if __name__ == "__main__":
    from rsir_stac.cli import main

    L.TripletMarginLoss.forward = {"rho": _rho, "xbm": _xbm}[KIND]
    sys.exit(main(sys.argv[1:]))
