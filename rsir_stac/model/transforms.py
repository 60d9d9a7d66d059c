"""Tensor preprocessing shared by training and inference, and train-time augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_input(
    images: Sequence[np.ndarray] | np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """H×W×3 uint8 arrays → normalised N×3×size×size float tensor (channels-last).

    Every image is resized to ``size``×``size`` with antialiased bilinear
    interpolation (the same rule for training images, query images and tiles).
    """
    out = torch.empty((len(images), 3, size, size), dtype=torch.float32)
    for i, im in enumerate(images):
        t = torch.from_numpy(np.require(im, np.uint8, ["C", "W"])).permute(2, 0, 1)[None].float()
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i] = t[0]
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return ((out - m) / s).contiguous(memory_format=torch.channels_last)


class OverheadAugment:
    """Augmentations suited to nadir imagery: random resized crop, flips, 90°
    rotations and mild colour jitter.  Operates on one H×W×3 uint8 array."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.5, 1.0), jitter: float = 0.1, seed: int = 0):
        self.size, self.scale, self.jitter = size, scale, jitter
        self.rng = np.random.default_rng(seed)

    def __call__(self, im: np.ndarray) -> np.ndarray:
        rng = self.rng
        h, w = im.shape[:2]
        area = rng.uniform(*self.scale) * h * w
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(min(h, round(np.sqrt(area / ratio))))
        cw = int(min(w, round(np.sqrt(area * ratio))))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        im = im[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            im = im[:, ::-1]
        if rng.random() < 0.5:
            im = im[::-1]
        im = np.rot90(im, int(rng.integers(4)))
        if self.jitter > 0:
            f = im.astype(np.float32)
            b = 1 + rng.uniform(-self.jitter, self.jitter)
            c = 1 + rng.uniform(-self.jitter, self.jitter)
            s = 1 + rng.uniform(-self.jitter, self.jitter)
            mean = f.mean()
            f = (f - mean) * c + mean * b
            grey = f.mean(2, keepdims=True)
            f = grey + (f - grey) * s
            im = np.clip(f, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(im)
