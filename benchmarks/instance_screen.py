"""Screen (not in the product): an instance-level term beside the class triplet loss.

Supervised metric learning keeps what separates the training classes and drops the rest;
instance discrimination keeps what tells one image from another under augmentation.
Training both together transfers better to classes never trained on (Islam et al., ICCV
2021, "A broad study on the transferability of visual representations with contrastive
learning": SupCon + SimCLR).  Each training batch gets a second view of every image (a
random dihedral transform, a random crop of 40-100 % of the area and, half the time, an
antialiased downsampling by 1-4x, applied to the already augmented batch), both views run
through the network in one forward, and an InfoNCE term (temperature ``INST_TAU``, default
0.1; weight ``INST_W``, default 0.2) pairs each image's two *retrieval outputs* (the hybrid
vector the reducer sees; ``INST_ON=z``: the 128-d triplet head only) against every other
image of the batch.  The triplet loss and the
feature distillation stay on the first view, as in the product.  Runs ``rsir-stac`` with
this forward patched into ``StudentTeacher`` (no view distillation):

    INST_W=0.2 python benchmarks/instance_screen.py train ../shared/data/ucmerced --out runs/inst-s1 \
        --recipe v3 --distill 0.5 --leave-out-n 5 --seed 1 --epochs 10 --reducer pca --reducer-dim 64
"""
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rsir_stac.model import train as T  # noqa: E402

W = float(os.environ.get("INST_W", "0.2"))
TAU = float(os.environ.get("INST_TAU", "0.1"))
ON = os.environ.get("INST_ON", "out")  # "out": the retrieval output; "z": the triplet head only
GEN = torch.Generator().manual_seed(int(os.environ.get("INST_SEED", "0")))


def _u(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=GEN))


def second_view(x: torch.Tensor) -> torch.Tensor:
    """Another augmentation of each image of a normalised B×3×S×S batch (same shape)."""
    s = x.shape[-1]
    out = []
    for xi in x:
        xi = torch.rot90(xi, int(torch.randint(4, (1,), generator=GEN)), dims=(1, 2))
        if _u(0, 1) < 0.5:
            xi = xi.flip(2)
        c = max(8, int(round(s * math.sqrt(_u(0.4, 1.0)))))
        i, j = int(torch.randint(s - c + 1, (1,), generator=GEN)), int(torch.randint(s - c + 1, (1,), generator=GEN))
        xi = xi[:, i:i + c, j:j + c][None].float()
        if _u(0, 1) < 0.5:
            f = math.exp(_u(0.0, math.log(4.0)))
            xi = F.interpolate(xi, size=max(8, int(c / f)), mode="bilinear", antialias=True, align_corners=False)
        out.append(F.interpolate(xi, size=(s, s), mode="bilinear", antialias=True, align_corners=False)[0])
    return torch.stack(out).to(x.dtype).contiguous(memory_format=torch.channels_last)


def call(self, x):
    """StudentTeacher's forward on both views, plus the InfoNCE term between them."""
    bb, net, b = self.net.backbone, self.net, len(x)
    xx = torch.cat([x, second_view(x)]).contiguous(memory_format=torch.channels_last)
    if self.n:
        with torch.no_grad():
            h = bb.prefix(xx, self.n)
        fmap = bb.suffix(h, self.n)
    else:
        h, fmap = xx, bb(xx)
    pooled = net.pool(fmap)
    z = F.normalize(net.head(pooled).float(), dim=1)
    aux = []
    if self.teacher is not None:
        with torch.no_grad():
            tmap = self.teacher.suffix(h[:b], self.n) if self.n else self.teacher(xx[:b])
        fs, ft = fmap[:b].float().mean((2, 3)), tmap.float().mean((2, 3))
        aux.append((self.distill, (1.0 - F.cosine_similarity(fs, ft, dim=1)).mean()))
    o = z if ON == "z" else F.normalize(net.embed_features(pooled).float(), dim=1)
    logits = o[:b] @ o[b:].T / TAU
    target = torch.arange(b, device=x.device)
    aux.append((W, 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))))
    return z[:b], aux


if __name__ == "__main__":
    from rsir_stac.cli import main

    T.StudentTeacher.__call__ = call
    sys.exit(main(sys.argv[1:]))
