"""Screen (not in the product): a normalised-softmax class term beside the triplet loss.

"Classification is a strong baseline for deep metric learning" (Zhai & Wu, BMVC 2019):
a cosine classifier (unit-norm class weights, unit-norm embeddings, temperature
``SM_TAU``, default 0.05) trained with cross-entropy gives embeddings whose classes are
tighter than batch-hard triplet alone, at no inference cost.  Here the term is added to
the product's loss with weight ``SM_W`` (default 0.2) on the same 128-d unit triplet head
the triplet loss sees; the triplet
loss and the recipe's distillation terms are unchanged.  The class weights learn at
``SM_LR`` times the base rate (default 10, as the head).  Runs ``rsir-stac`` with the
loss and the optimiser patched:

    SM_W=0.2 python benchmarks/softmax_screen.py train ../shared/data/ucmerced --out runs/sm-s0 \
        --recipe v3 --distill 0.5 --leave-out-n 5 --seed 0 --epochs 10 --reducer pca --reducer-dim 64

The class weights are not saved in the bundle (inference never uses them).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rsir_stac.model import losses as L  # noqa: E402
from rsir_stac.model import train as T  # noqa: E402

W = float(os.environ.get("SM_W", "0.2"))
TAU = float(os.environ.get("SM_TAU", "0.05"))
LR = float(os.environ.get("SM_LR", "10"))
CLASSES = 64  # rows for every label a folder can have; unused rows are only more negatives
STATE: dict = {}


def _proxies(dim: int) -> torch.nn.Parameter:
    if "w" not in STATE:
        g = torch.Generator().manual_seed(0)
        STATE["w"] = torch.nn.Parameter(torch.randn(CLASSES, dim, generator=g) * 0.01)
        STATE["opt"].add_param_group({"params": [STATE["w"]], "lr_scale": LR, "weight_decay": 0.0})
    return STATE["w"]


_orig_opt = T._optimiser


def optimiser(net, cfg):
    """The product's optimiser; the class weights join it on the first loss call."""
    STATE["opt"] = _orig_opt(net, cfg)
    return STATE["opt"]


_orig_forward = L.TripletMarginLoss.forward


def forward(self, emb, labels):
    """Triplet loss plus ``SM_W`` × cross-entropy of the cosine classifier."""
    loss = _orig_forward(self, emb, labels)
    e = F.normalize(emb.float(), dim=1)
    w = F.normalize(_proxies(e.shape[1]).to(e.device), dim=1)
    return loss + W * F.cross_entropy(e @ w.T / TAU, labels.long())


if __name__ == "__main__":
    from rsir_stac.cli import main

    T._optimiser = optimiser
    L.TripletMarginLoss.forward = forward
    sys.exit(main(sys.argv[1:]))
