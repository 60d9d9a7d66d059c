"""What one decimated read of a raster costs in memory, and a read that stays within a budget.

GDAL resamples a window read at a smaller ``out_shape`` with anything but nearest
neighbour (bilinear here, average and others in rio-tiler) by first reading the whole
window at the resolution of the best overview no coarser than the request, then
filtering it down.  A raster without overviews whose pixels are far finer than the
grid read (a 40,000 x 40,000 px sparse GeoTIFF of 0.5 mm pixels read at 20 m: 51 KB on
disk) therefore takes gigabytes for one tile.  Nearest-neighbour decimation reads only
the blocks that hold the sampled pixels, through GDAL's block cache, so it does not.

* :func:`read_bytes` is the memory a resampled read holds (source pixels at the chosen
  overview level x bands x bytes per sample).
* :func:`box_read` reads within :data:`READ_BUDGET_BYTES` whatever the decimation:
  ``m x m`` nearest samples per output pixel, averaged over the valid ones (a box filter:
  a close stand-in for bilinear at decimations this large, where bilinear averages
  thousands of pixels per output pixel).
* :func:`source_window` gives the source pixels a map tile in another CRS covers, for a
  reader (rio-tiler) that does not go through :func:`box_read`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from rsir_stac.tiling.masks import read_masks

log = logging.getLogger(__name__)

#: Bytes one resampled read may hold before it is read by :func:`box_read` instead (ingest,
#: queries, thumbnails) or left undrawn (web-map tiles).  A NAIP scene read at 20 m (4,480 px
#: square, 4 bands) holds 80 MB.
READ_BUDGET_BYTES = 256 * 1024 * 1024
#: Nearest samples per output pixel and axis that :func:`box_read` averages.
BOX_SAMPLES = 4
#: Bytes of samples (with their sums and mask) one strip of :func:`box_read` holds.
STRIP_BYTES = 32 * 1024 * 1024


def overview_factor(dataset: Any, decimation: float) -> int:
    """The largest overview decimation factor of ``dataset`` (band 1) not above
    ``decimation`` (source pixels per output pixel, per axis); 1 when none is (full resolution).
    GDAL picks its overview level the same way (``GDALBandGetBestOverviewLevel2``)."""
    try:
        factors = dataset.overviews(1)
    except Exception:  # noqa: BLE001 - a dataset that cannot list overviews reads at full resolution
        factors = []
    return max([1] + [int(f) for f in factors if 1 < f <= decimation])


def read_bytes(dataset: Any, src_w: float, src_h: float, out_w: int, out_h: int, bands: int) -> int:
    """Bytes a resampled read of a ``src_w`` x ``src_h`` source-pixel window into
    ``out_w`` x ``out_h`` output pixels holds: the window at the overview level GDAL reads
    (:func:`overview_factor`) x ``bands`` x the largest sample size of the dataset's bands."""
    sx, sy = src_w / max(out_w, 1), src_h / max(out_h, 1)
    f = overview_factor(dataset, min(sx, sy)) if min(sx, sy) > 1 else 1
    size = max(np.dtype(d).itemsize for d in dataset.dtypes) if dataset.dtypes else 1
    return int(math.ceil(max(src_w, 0.0) / f) * math.ceil(max(src_h, 0.0) / f) * max(bands, 1) * size)


def box_read(dataset: Any, indexes: Sequence[int], window: Window, shape: tuple[int, int], *,
             nodata: float | None = None, all_valid: bool = False) -> np.ndarray:
    """``dataset``'s bands ``indexes`` over ``window`` (source pixels, inside the raster) as a
    ``(len(indexes), rows, cols)`` array of the dataset's dtype, ``shape = (rows, cols)``:
    :data:`BOX_SAMPLES` squared nearest-neighbour samples per output pixel (fewer when the
    window holds fewer), averaged over the valid ones.  Valid: not ``nodata`` in any band when
    given, else GDAL's mask of any band (unless ``all_valid``), and finite for floats.  An output
    pixel with no valid sample is 0.  Read in strips of output rows whose samples hold at most
    :data:`STRIP_BYTES`: memory is the output and one strip, whatever the window's size."""
    rows, cols = int(shape[0]), int(shape[1])
    m = int(max(1, min(BOX_SAMPLES, math.floor(min(window.width / max(cols, 1), window.height / max(rows, 1))))))
    dtype = np.dtype(dataset.dtypes[int(indexes[0]) - 1]) if dataset.dtypes else np.dtype("uint8")
    per_row = len(indexes) * cols * m * m * (dtype.itemsize + 9)  # samples, a band's sum terms, the mask
    step = max(1, int(STRIP_BYTES // max(per_row, 1)))
    out = None
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        part = Window(window.col_off, window.row_off + window.height * r0 / rows, window.width,
                      window.height * (r1 - r0) / rows)
        strip = _box_strip(dataset, indexes, part, (r1 - r0, cols), m, nodata, all_valid)
        if out is None:
            out = np.empty((len(indexes), rows, cols), dtype=strip.dtype)
        out[:, r0:r1] = strip
    return out if out is not None else np.zeros((len(indexes), rows, cols), dtype=dtype)


def _box_strip(dataset: Any, indexes: Sequence[int], window: Window, shape: tuple[int, int], m: int,
               nodata: float | None, all_valid: bool) -> np.ndarray:
    """One strip of :func:`box_read`: ``m`` x ``m`` nearest samples per output pixel, averaged."""
    rows, cols = shape
    big = (len(indexes), rows * m, cols * m)
    raw = dataset.read(indexes=list(indexes), window=window, out_shape=big, resampling=Resampling.nearest)
    if nodata is not None:
        ok = (raw != nodata).any(axis=0)
    elif all_valid:
        ok = np.ones(big[1:], dtype=bool)
    else:
        masks = read_masks(dataset, indexes=list(indexes), window=window, out_shape=big, resampling=Resampling.nearest)
        ok = (masks > 0).any(axis=0)
        del masks
    floats = np.issubdtype(raw.dtype, np.floating)
    if floats:
        ok &= np.isfinite(raw).all(axis=0)
    count = ok.reshape(rows, m, cols, m).sum(axis=(1, 3), dtype=np.float32)
    # float32 sums 16 samples of up to 16 bits exactly; wider integers and floats sum in float64
    exact32 = not floats and raw.dtype.itemsize <= 2
    total = np.empty((len(indexes), rows, cols), dtype=np.float32 if exact32 else np.float64)
    for b in range(len(indexes)):   # one band at a time: no full float copy of the samples
        vals = np.where(ok, raw[b], 0)
        total[b] = vals.reshape(rows, m, cols, m).sum(axis=(1, 3), dtype=total.dtype)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    if floats:
        mean[:, count == 0] = np.nan  # no valid sample: not finite, so invalid downstream
        return mean.astype(raw.dtype)
    info = np.iinfo(raw.dtype)
    return np.clip(np.rint(mean), info.min, info.max).astype(raw.dtype)


def source_window(dataset: Any, bounds: tuple[float, float, float, float], crs: Any) -> tuple[float, float]:
    """Width and height, in source pixels, of the part of ``dataset`` that ``bounds``
    (W, S, E, N in ``crs``) covers: its bounds reprojected into the dataset's CRS (21 points a
    side), through the inverse geotransform, clipped to the raster.  A lon/lat raster is also
    tried a turn (360 degrees) east and west, the largest part kept, as a reader that wraps
    longitudes reads it (a raster at 179..181 drawn on a tile at -180..-179).  (0, 0) when they
    miss it or cannot be reprojected."""
    from rasterio.warp import transform_bounds

    try:
        left, bottom, right, top = transform_bounds(crs, dataset.crs, *bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - outside the CRS's domain: nothing of it to read
        return 0.0, 0.0
    src = dataset.crs
    turns = (0.0, -360.0, 360.0) if src is not None and src.is_geographic \
        and abs(src.units_factor[1] - math.pi / 180.0) < 1e-12 else (0.0,)
    inv = ~dataset.transform
    best = (0.0, 0.0)
    for k in turns:
        xs, ys = zip(*(inv @ (x + k, y) for x in (left, right) for y in (bottom, top)))
        if not all(math.isfinite(v) for v in xs + ys):
            continue
        w = max(min(max(xs), dataset.width) - max(min(xs), 0.0), 0.0)
        h = max(min(max(ys), dataset.height) - max(min(ys), 0.0), 0.0)
        if w * h > best[0] * best[1]:
            best = (w, h)
    return best


__all__ = ["BOX_SAMPLES", "READ_BUDGET_BYTES", "STRIP_BYTES", "box_read", "overview_factor", "read_bytes", "source_window"]
