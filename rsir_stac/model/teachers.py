"""Teachers for training: the exponential moving average of the weights (mean teacher),
:class:`StudentTeacher`, one training forward with its distillation terms (frozen
ImageNet features, rotation-view average of the start network), and :class:`StartTeacher`,
the student and the frozen start network of an adaptation (:mod:`rsir_stac.model.adapt`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from rsir_stac.errors import InputError

if TYPE_CHECKING:
    from rsir_stac.model.train import TrainConfig


class WeightEMA:
    """Exponential moving average of a network's weights and buffers
    (Polyak & Juditsky 1992; "mean teacher", Tarvainen & Valpola 2017).

    ``half_life`` is in optimiser steps: after that many updates a weight's
    old value counts half.  Integer buffers (batch-norm counters) are copied.
    """

    def __init__(self, net, half_life: float) -> None:
        self.decay = 0.5 ** (1.0 / max(1.0, float(half_life)))
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.updates = 0

    def update(self, net) -> None:
        """Fold the live weights in (the first update copies them: warm-up weights are not averaged)."""
        import torch

        self.updates += 1
        if self.updates == 1:
            self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return
        with torch.no_grad():
            for k, v in net.state_dict().items():
                s = self.shadow[k]
                if v.dtype.is_floating_point:
                    s.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    s.copy_(v)

    def swap_in(self, net) -> dict:
        """Load the averaged weights into ``net``; returns the live weights to restore."""
        live = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.shadow)
        return live


class StudentTeacher:
    """One training forward: the student EmbeddingNet and, when ``cfg.distill``
    > 0, the frozen ImageNet backbone it is distilled towards.

    With ``cfg.freeze_blocks = n`` the stem and first ``n`` blocks of the
    student keep their ImageNet weights (and batch-norm statistics); teacher
    and student then share that prefix, so it runs once per batch.  The
    distillation term is the mean cosine distance between the student's and
    the teacher's average-pooled features (feature distillation, Hinton et
    al. 2015 / Romero et al. 2015 "FitNets", on pooled features).

    With ``cfg.view_distill`` > 0 a frozen copy of the start network is a second
    teacher: its unreduced output averaged over the dihedral views of the batch
    (what ``reduce --views`` computes at inference), and the term is the mean
    cosine distance of the student's single-view output to it.  The student
    learns the orientation-invariant embedding at one view's cost
    (self-distillation of test-time augmentation; cf. Hinton et al. 2015,
    and the ensemble distillation of Allen-Zhu & Li 2020).
    """

    def __init__(self, net, cfg: TrainConfig, device) -> None:
        import torch

        self.net, self.n = net, int(cfg.freeze_blocks)
        bb = net.backbone
        if self.n and not hasattr(bb, "prefix"):
            raise InputError(f"--freeze-blocks needs the efficientnet_lite0 backbone, not {cfg.backbone}")
        if self.n:
            self.n = min(self.n, bb.n_blocks)
            for m in bb.prefix_modules(self.n):
                for p in m.parameters():
                    p.requires_grad_(False)
        self.distill, self.view_distill = float(cfg.distill), float(cfg.view_distill)
        self.views = int(cfg.view_distill_views)
        self.view_teacher = None
        if self.view_distill > 0:
            self.view_teacher = copy.deepcopy(net).to(device).eval()
            for p in self.view_teacher.parameters():
                p.requires_grad_(False)
        self.teacher = None
        if cfg.distill > 0:
            from rsir_stac.model.backbones import build_backbone

            t = build_backbone(cfg.backbone, pretrained=True, weights=cfg.backbone_weights)
            self.teacher = t.to(device).to(memory_format=torch.channels_last).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def train(self) -> None:
        self.net.train()
        if self.n:
            for m in self.net.backbone.prefix_modules(self.n):
                m.eval()

    def __call__(self, x):
        """Returns (B×dim unit embeddings of the triplet head, [(weight, auxiliary loss), ...])."""
        import torch
        import torch.nn.functional as F

        from rsir_stac.model.transforms import mean_over_views

        bb, net = self.net.backbone, self.net
        if self.n:
            with torch.no_grad():
                h = bb.prefix(x, self.n)
            fmap = bb.suffix(h, self.n)
        else:
            h, fmap = x, bb(x)
        pooled = net.pool(fmap)
        z = F.normalize(net.head(pooled).float(), dim=1)
        aux = []
        if self.teacher is not None:
            with torch.no_grad():
                tmap = self.teacher.suffix(h, self.n) if self.n else self.teacher(x)
            fs, ft = fmap.float().mean((2, 3)), tmap.float().mean((2, 3))
            aux.append((self.distill, (1.0 - F.cosine_similarity(fs, ft, dim=1)).mean()))
        if self.view_teacher is not None:
            with torch.no_grad():
                target = mean_over_views(self.view_teacher, x, self.views)
            out = net.embed_features(pooled).float()
            aux.append((self.view_distill, (1.0 - F.cosine_similarity(out, target, dim=1)).mean()))
        return z, aux


class StartTeacher:
    """Student (trainable copy of the start network) and teacher (the start
    network, frozen), sharing the frozen prefix when the backbone has one: the
    networks of an adaptation, distilled towards the start model."""

    def __init__(self, bundle, freeze_blocks: int | None, device) -> None:
        import torch

        self.teacher = bundle.net.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student = copy.deepcopy(self.teacher)
        bb = self.student.backbone
        if freeze_blocks is None:
            freeze_blocks = int(bundle.meta.get("training", {}).get("freeze_blocks") or 5)
        self.n = min(int(freeze_blocks), bb.n_blocks) if hasattr(bb, "prefix") else 0
        for p in self.student.parameters():
            p.requires_grad_(True)
        if self.n:
            for m in bb.prefix_modules(self.n):
                for p in m.parameters():
                    p.requires_grad_(False)
        self.student = self.student.to(memory_format=torch.channels_last)

    def train(self) -> None:
        self.student.train()
        if self.n:
            for m in self.student.backbone.prefix_modules(self.n):
                m.eval()

    def __call__(self, x, with_teacher: bool):
        """(student output B×D, teacher output or None) for a normalised batch."""
        import torch

        s, t = self.student, self.teacher
        if self.n:
            with torch.no_grad():
                h = s.backbone.prefix(x, self.n)
            z = s.embed_features(s.pool(s.backbone.suffix(h, self.n)))
            if not with_teacher:
                return z, None
            with torch.no_grad():
                zt = t.embed_features(t.pool(t.backbone.suffix(h, self.n)))
            return z, zt
        z = s(x)
        if not with_teacher:
            return z, None
        with torch.no_grad():
            return z, t(x)
