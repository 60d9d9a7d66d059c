"""Inference-only rewrite of the EfficientNet-Lite trunk for speed on CPU.

Batch norm is folded into the preceding convolution, TF-"same" padding is
folded into the convolution when it is symmetric (an explicit pad remains
only for the stride-2 convolutions), and ReLU6 runs in place.  The result
computes the same function as the eval-mode network (checked in tests); it is
never trained.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    w = conv.weight.detach().float()
    b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(w.shape[0], device=w.device)
    if bn is None:
        return w, b
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    return w * scale.view(-1, 1, 1, 1), (b - bn.running_mean.float()) * scale + bn.bias.detach().float()


class FusedConv(nn.Module):
    """Conv (+ folded BN) (+ ReLU6) with static TF-same padding."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu6: bool) -> None:
        super().__init__()
        w, b = _fold(conv, bn)
        pad = getattr(getattr(conv, "static_padding", None), "padding", (0, 0, 0, 0))
        left, right, top, bottom = pad if isinstance(pad, tuple) and len(pad) == 4 else (0, 0, 0, 0)
        symmetric = left == right and top == bottom
        self.pad = None if symmetric or not any(pad) else (left, right, top, bottom)
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              padding=(top, left) if symmetric else 0, dilation=conv.dilation,
                              groups=conv.groups, bias=True, device=w.device)
        with torch.no_grad():
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(b)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return x.clamp_(0.0, 6.0) if self.relu6 else x


class FusedMBConv(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        a = block._block_args
        self.expand = FusedConv(block._expand_conv, block._bn0, True) if a.expand_ratio != 1 else None
        self.depthwise = FusedConv(block._depthwise_conv, block._bn1, True)
        self.se = None
        if block.has_se:
            self.se = nn.ModuleList([FusedConv(block._se_reduce, None, True), FusedConv(block._se_expand, None, False)])
        self.project = FusedConv(block._project_conv, block._bn2, False)
        self.skip = a.id_skip and a.stride == 1 and a.input_filters == a.output_filters

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.expand(inputs) if self.expand is not None else inputs
        x = self.depthwise(x)
        if self.se is not None:
            s = self.se[1](self.se[0](x.mean((2, 3), keepdim=True)))
            x = x * torch.sigmoid(s)
        x = self.project(x)
        return x + inputs if self.skip else x


class FusedLiteTrunk(nn.Module):
    """Drop-in replacement for the Lite trunk's ``forward`` (feature map out)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.stem = FusedConv(net._conv_stem, net._bn0, True)
        self.blocks = nn.Sequential(*[FusedMBConv(b) for b in net._blocks])
        self.head = FusedConv(net._conv_head, net._bn1, True)
        self.out_channels = net._conv_head.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """An eval-only copy of an EmbeddingNet with a fused backbone (when supported)."""
    from rsir_stac.model.backbones import _LiteFeatures

    if not isinstance(net.backbone, _LiteFeatures):
        return net
    fused = copy.deepcopy(net).eval()
    fused.backbone = FusedLiteTrunk(net.backbone.net.eval())
    return fused.eval()
