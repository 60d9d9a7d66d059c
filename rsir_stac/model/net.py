"""EmbeddingNet: backbone → global pooling → embedding head → L2 normalisation.

Recipe v2 adds a *hybrid* output: the L2-normalised triplet embedding is
concatenated with the L2-normalised pooled backbone features, scaled by
``hybrid`` (0 = v1, the triplet embedding alone).  The triplet part separates
the classes it was trained on; the pooled part, kept close to the ImageNet
features by feature distillation during training, carries generic visual
knowledge for scenes, scales and classes the training data lacks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rsir_stac.model.backbones import build_backbone


class EmbeddingNet(nn.Module):
    """Maps normalised images (B×3×H×W) to unit-length embeddings (B×out_dim).

    Euclidean distance between outputs is the retrieval metric.  ``pooling`` is
    ``"avg"`` or ``"gem"`` (generalised mean, p learnable, a common choice for
    retrieval).  ``out_dim`` is ``embedding_dim`` (``hybrid=0``) or
    ``embedding_dim + backbone channels`` (``hybrid>0``).
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        embedding_dim: int = 128,
        *,
        pooling: str = "avg",
        pretrained: bool = True,
        backbone_weights: str | None = None,
        dropout: float = 0.0,
        hybrid: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.embedding_dim = embedding_dim
        self.pooling = pooling
        self.hybrid = float(hybrid)
        self.backbone = build_backbone(backbone, pretrained=pretrained, weights=backbone_weights)
        channels = self.backbone.out_channels
        self.gem_p = nn.Parameter(torch.tensor(3.0)) if pooling == "gem" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, embedding_dim))

    @property
    def out_dim(self) -> int:
        """Dimension of :meth:`forward`'s output (before any reducer)."""
        return self.embedding_dim + (self.backbone.out_channels if self.hybrid > 0 else 0)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global pooling of a B×C×h×w feature map to B×C (float32)."""
        if self.gem_p is not None:
            p = self.gem_p.clamp(min=1.0)
            return fmap.float().clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p)
        return fmap.float().mean((2, 3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B×C), before the embedding head."""
        return self.pool(self.backbone(x))

    def embed_features(self, f: torch.Tensor) -> torch.Tensor:
        """Pooled features (B×C) → unit-length output (B×out_dim)."""
        z = F.normalize(self.head(f).float(), dim=1)
        if self.hybrid <= 0:
            return z
        g = F.normalize(f.float(), dim=1) * self.hybrid
        return torch.cat([z, g], dim=1) / math.sqrt(1.0 + self.hybrid**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(x))


class PooledFeaturesNet(nn.Module):
    """Baseline: L2-normalised global-average-pooled ImageNet backbone features.

    No training; used by the evaluation protocols as the "ImageNet features"
    reference (``rsir-stac evaluate --model imagenet``).
    """

    def __init__(self, backbone: str = "efficientnet_lite0") -> None:
        super().__init__()
        self.backbone_name = backbone
        self.backbone = build_backbone(backbone, pretrained=True)
        self.embedding_dim = self.out_dim = self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x).float().mean((2, 3)), dim=1)
