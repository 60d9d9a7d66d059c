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
    interpolation on uint8 (torch's SIMD channels-last path; the same rule for
    training images, query images and tiles).  Images of one shape (the usual
    case: tiles of a scene) are resized in one batched call.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    parts = []
    for shape, idx in groups.items():
        batch = torch.from_numpy(np.stack([np.asarray(images[i], dtype=np.uint8) for i in idx]))
        t = batch.permute(0, 3, 1, 2)  # a channels-last view, no copy
        if shape[:2] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        parts.append((idx, t))
    if len(parts) == 1:
        u = parts[0][1]
    else:
        u = torch.empty((len(images), 3, size, size), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
        for idx, t in parts:
            u[idx] = t
    return _normalize(u.permute(0, 2, 3, 1).contiguous(), mean, std).permute(0, 3, 1, 2)


def fit_to_input(image: np.ndarray, size: int) -> np.ndarray:
    """One H×W×3 uint8 image resized to ``size``×``size`` exactly as :func:`to_input` resizes
    it (antialiased bilinear on uint8), as a ``size``×``size``×3 uint8 array: :func:`to_input`
    then leaves it as it is, so the embedding is the same.  Ingest shrinks large tiles with it
    as they are read, so tiles waiting to be embedded hold the network's input, not a 4096 px
    window each."""
    if image.shape[:2] == (size, size):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8)[None]).permute(0, 3, 1, 2)
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.permute(0, 2, 3, 1)[0].contiguous().numpy()


def _normalize(nhwc: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x / 255 - mean) / std of a contiguous N×H×W×3 uint8 tensor, as float32.

    The per-channel constants are tiled to a period of 3·k values and the data
    viewed as rows of that length, so the arithmetic runs on long contiguous
    rows (~5x faster than broadcasting over a channel axis of length 3).
    """
    n = nhwc.numel() // 3
    k = next(k for k in (64, 32, 16, 8, 4, 2, 1) if n % k == 0)
    scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).repeat(k)
    shift = (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)).repeat(k)
    return torch.addcmul(shift, nhwc.reshape(-1, 3 * k).float(), scale).view(nhwc.shape)


class OverheadAugment:
    """Augmentations suited to nadir imagery: random resized crop, flips, 90°
    rotations and mild colour jitter.  Operates on one H×W×3 uint8 array."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.5, 1.0), jitter: float = 0.1, seed: int = 0,
                 downscale_max: float = 1.0, downscale_prob: float = 0.5):
        self.size, self.scale, self.jitter = size, scale, jitter
        self.downscale_max, self.downscale_prob = float(downscale_max), float(downscale_prob)
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
        if self.downscale_max > 1 and rng.random() < self.downscale_prob:
            # a coarser GSD: the same ground seen by a sensor with 1–max× larger pixels
            im = downscale(im, float(np.exp(rng.uniform(0.0, np.log(self.downscale_max)))))
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


#: Test-time view counts :func:`dihedral_views` accepts, and the views each one averages.
VIEW_SETS: dict[int, tuple[int, ...]] = {1: (0,), 4: (0, 1, 2, 3), 8: (0, 1, 2, 3, 4, 5, 6, 7)}


def dihedral_views(x: torch.Tensor, views: int) -> torch.Tensor:
    """Stack the dihedral views of an N×C×H×W batch: (views·N)×C×H×W, view-major.

    ``views`` = 1 returns ``x``; 4 adds the 90°, 180° and 270° rotations; 8 also
    their mirror images (the dihedral group D4).  Overhead tiles have no "up",
    so each view shows the same ground; averaging a network's outputs over
    them gives an orientation-invariant embedding (test-time augmentation).
    Raises ValueError for another count.
    """
    if views not in VIEW_SETS:
        raise ValueError(f"views={views!r}: choose one of {sorted(VIEW_SETS)}")
    if views == 1:
        return x
    out = []
    for v in VIEW_SETS[views]:
        y = torch.rot90(x, v % 4, dims=(2, 3))
        out.append(torch.flip(y, dims=(3,)) if v >= 4 else y)
    return torch.cat(out)


def mean_over_views(net, x: torch.Tensor, views: int) -> torch.Tensor:
    """``net``'s output for an N×C×H×W batch averaged over its :func:`dihedral_views`, N×D float."""
    z = net(dihedral_views(x, views)).float()
    return z.reshape(views, x.shape[0], -1).mean(0) if views > 1 else z


def downscale(im: np.ndarray, factor: float, min_size: int = 8) -> np.ndarray:
    """Antialiased (Lanczos) downsampling of an H×W×3 uint8 array by ``factor`` ≥ 1.

    Simulates a coarser ground sample distance over the same ground: a 0.3 m
    tile downscaled by 4 is what a 1.2 m sensor records.  Used by multi-scale
    training and by the ``--scale`` evaluation protocol.
    """
    if factor <= 1.0:
        return im
    from PIL import Image

    h, w = im.shape[:2]
    size = (max(min_size, round(w / factor)), max(min_size, round(h / factor)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(im)).resize(size, Image.LANCZOS))
