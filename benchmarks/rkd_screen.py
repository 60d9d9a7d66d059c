"""Screen (not in the product): relational distillation of the triplet head towards ImageNet.

Relational knowledge distillation (Park et al., CVPR 2019, distance-wise, here on cosine
similarities): an extra training term pulls the batch's pairwise similarities of the triplet
head ``z`` towards those of the frozen ImageNet teacher's pooled features (each matrix centred
on its mean off-diagonal value; smooth L1, beta 0.1; weight ``RKD_W``, default 2), so that the
head keeps distinctions between images that no training class asks for.  Runs ``rsir-stac``
with the term patched into ``StudentTeacher`` (recipe v2/v3 with ``--distill`` > 0 only):

    RKD_W=2 python benchmarks/rkd_screen.py train ../shared/data/ucmerced --out runs/rkd-s1 \
        --recipe v3 --distill 0.5 --leave-out-n 5 --seed 1 --epochs 10 --reducer pca --reducer-dim 64
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rsir_stac.model import train as T  # noqa: E402

W = float(os.environ.get("RKD_W", "2"))
orig = T.StudentTeacher.__call__


def call(self, x):
    """StudentTeacher's forward plus the relational term."""
    bb = self.net.backbone
    z, aux = orig(self, x)
    with torch.no_grad():
        h = bb.prefix(x, self.n) if self.n else x
        tmap = self.teacher.suffix(h, self.n) if self.n else self.teacher(x)
        ft = F.normalize(tmap.float().mean((2, 3)), dim=1)
        St = ft @ ft.T
    Ss = z @ z.T
    mask = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    # centre both similarity matrices so only the relative structure counts
    d = (Ss - Ss[mask].mean()) - (St - St[mask].mean())
    aux.append((W, F.smooth_l1_loss(d[mask], torch.zeros_like(d[mask]), beta=0.1)))
    return z, aux


if __name__ == "__main__":
    from rsir_stac.cli import main

    T.StudentTeacher.__call__ = call
    sys.exit(main(sys.argv[1:]))
