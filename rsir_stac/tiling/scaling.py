"""Scaling raw band values to ``uint8`` (see :mod:`rsir_stac.tiling`, "Scaling to uint8")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from rsir_stac.tiling.masks import read_masks

#: Longer side, in pixels, of the decimated read used to compute the stretch.
STATS_SIZE = 512
#: Percentiles of the linear stretch applied to non-``uint8`` rasters.
PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True)
class ScaleRule:
    """How raw band values become ``uint8``: ``"none"`` or a percentile stretch.

    ``low``/``high`` hold, per output channel (R, G, B), the raw values mapped
    to 0 and 255.
    """

    kind: str
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (255.0, 255.0, 255.0)
    percentiles: tuple[float, float] = PERCENTILES

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Map a ``(3, h, w)`` array to ``uint8`` with this rule."""
        if self.kind == "none":
            return data.astype(np.uint8, copy=False)
        low = np.asarray(self.low, dtype=np.float64)[:, None, None]
        high = np.asarray(self.high, dtype=np.float64)[:, None, None]
        span = np.where(high > low, high - low, 1.0)
        out = (data.astype(np.float64) - low) * (255.0 / span)
        out = np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description, for reports."""
        if self.kind == "none":
            return {"kind": "none"}
        return {
            "kind": self.kind,
            "percentiles": list(self.percentiles),
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
        }

    def __str__(self) -> str:
        if self.kind == "none":
            return "uint8 passthrough"
        pairs = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(self.low, self.high))
        p_lo, p_hi = self.percentiles
        return f"linear stretch p{p_lo:g}-p{p_hi:g} per band (R,G,B): {pairs}"


IDENTITY = ScaleRule("none")


def percentile_rule(data: np.ndarray, valid: np.ndarray | None = None) -> ScaleRule:
    """The p2–p98 stretch of a ``(3, h, w)`` array over ``valid`` pixels."""
    lows: list[float] = []
    highs: list[float] = []
    for band in data:
        ok = np.isfinite(band)
        if valid is not None:
            ok &= valid
        values = band[ok]
        if values.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(values.astype(np.float64), PERCENTILES))
        if hi <= lo:
            hi = lo + 1.0
        lows.append(lo)
        highs.append(hi)
    return ScaleRule("percentile", tuple(lows), tuple(highs))  # type: ignore[arg-type]


def compute_scale(dataset: Any, bands: tuple[int, int, int], *, nodata: float | None = None) -> ScaleRule:
    """The scene-wide scale rule for ``bands`` of an open rasterio dataset.

    ``uint8`` passes through; other dtypes get :func:`percentile_rule` over a
    decimated read whose longer side is at most :data:`STATS_SIZE` pixels, over
    the valid pixels (GDAL's masks, or those not equal to ``nodata`` when given).
    """
    dtypes = {dataset.dtypes[b - 1] for b in bands}
    if dtypes == {"uint8"}:
        return IDENTITY
    factor = min(1.0, STATS_SIZE / max(dataset.width, dataset.height))
    h = max(1, round(dataset.height * factor))
    w = max(1, round(dataset.width * factor))
    uniq = sorted(set(bands))
    data = dataset.read(indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
    if nodata is not None:
        valid = (data != nodata).any(axis=0)
    else:
        masks = read_masks(dataset, indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
        valid = (masks > 0).any(axis=0)
    order = [uniq.index(b) for b in bands]
    return percentile_rule(data[order], valid)


__all__ = ["IDENTITY", "PERCENTILES", "STATS_SIZE", "ScaleRule", "compute_scale", "percentile_rule"]
