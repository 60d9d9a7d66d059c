"""EmbeddingNet: backbone → global pooling → embedding head → L2 normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsir_stac.model.backbones import build_backbone


class EmbeddingNet(nn.Module):
    """Maps normalised images (B×3×H×W) to unit-length embeddings (B×dim).

    Euclidean distance between outputs is the retrieval metric.  ``pooling`` is
    ``"avg"`` or ``"gem"`` (generalised mean, p learnable, a common choice for
    retrieval).
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
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.embedding_dim = embedding_dim
        self.pooling = pooling
        self.backbone = build_backbone(backbone, pretrained=pretrained, weights=backbone_weights)
        channels = self.backbone.out_channels
        self.gem_p = nn.Parameter(torch.tensor(3.0)) if pooling == "gem" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, embedding_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B×C), before the embedding head."""
        fmap = self.backbone(x)
        if self.gem_p is not None:
            p = self.gem_p.clamp(min=1.0)
            return fmap.float().clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p)
        return fmap.float().mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.features(x))
        return F.normalize(z.float(), dim=1)
