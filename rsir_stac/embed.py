"""Batch inference for a model bundle: device choice, bf16 autocast,
channels-last, ``inference_mode``.  Takes decoded arrays; never reads files."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """True when this CPU runs bf16 matmuls natively (AVX512-BF16 / AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - older torch builds
        return False


class Embedder:
    """Turns H×W×3 uint8 tiles into stored vectors with one model bundle.

    ``bf16=None`` picks bf16 autocast where the hardware supports it (CUDA, or
    a CPU with native bf16); the output is always float32.  The network runs as
    a fused inference copy (batch norm folded into convolutions, see
    :mod:`rsir_stac.model.fuse`).
    """

    def __init__(self, net, reducer, *, input_size: int, mean, std, device: str | None = None,
                 bf16: bool | None = None, batch_size: int = 32) -> None:
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if bf16 is None:
            bf16 = self.device.type == "cuda" or cpu_supports_bf16()
        self.bf16 = bf16
        from rsir_stac.model.fuse import fuse_for_inference

        self.net = fuse_for_inference(net.eval()).to(self.device).to(memory_format=torch.channels_last)
        self.reducer = reducer
        self.input_size, self.mean, self.std = input_size, tuple(mean), tuple(std)
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.reducer.n_components_ if self.reducer is not None else self.net.embedding_dim

    def embed_tensor(self, x) -> np.ndarray:
        """Embed an already normalised N×3×H×W tensor; returns unreduced float32 vectors."""
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            z = self.net(x.to(self.device, non_blocking=True))
        return z.float().cpu().numpy()

    def reduce(self, z: np.ndarray) -> np.ndarray:
        return z if self.reducer is None else self.reducer.transform(z).astype(np.float32)

    def embed(self, images: Sequence[np.ndarray], *, reduce: bool = True,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed uint8 arrays (any size; each is resized to the model's input)."""
        from rsir_stac.model.transforms import to_input

        out = []
        for s in range(0, len(images), self.batch_size):
            chunk = images[s : s + self.batch_size]
            out.append(self.embed_tensor(to_input(chunk, self.input_size, self.mean, self.std)))
            if progress:
                progress(len(chunk))
        z = np.concatenate(out) if out else np.zeros((0, self.net.embedding_dim), np.float32)
        return self.reduce(z) if reduce else z
