"""A scene whose fill is read as pixels: the black border of a rotated or clipped scene that the
file does not mark (no nodata value, mask or alpha band).

Satellite scenes delivered rotated in a north-up grid (SkySat, Landsat Level-1, many mosaics)
carry a border of zeros (some mosaics another constant, e.g. 1) around the image.  Without nodata those zeros are pixels: the border's
tiles pass ``--min-valid``, are embedded and indexed (a search finds black tiles like other black
tiles), and the map draws the border as an opaque black frame.  The fix is one flag, and ingest
cannot guess it (a zero may be real data), so it says so: in full for a run's first such scene,
in a short line for the others, and lists them in the report.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Side, in pixels, of the decimated read the corners are taken from.
PREVIEW_SIDE = 64


def unmasked_fill(dataset: Any, bands: tuple[int, ...]) -> float | None:
    """The fill value of ``dataset`` (an open rasterio dataset, or a band stack) when its four corners
    hold one value, the same in every one of ``bands`` (1-based), while the scene holds other values:
    a fill border the file does not mark (0 for most, but a uint16 mosaic's fill of 1 was indexed
    as 45 % of a trial's index, one identical vector).  None otherwise, or when it cannot be read.
    Read at most :data:`PREVIEW_SIDE` pixels a side (GDAL takes them from an overview where the
    file has one)."""
    from rasterio.enums import Resampling

    try:
        h, w = min(int(dataset.height), PREVIEW_SIDE), min(int(dataset.width), PREVIEW_SIDE)
        arr = np.asarray(dataset.read(sorted(set(bands)), out_shape=(len(set(bands)), h, w),
                                      resampling=Resampling.nearest))
    except Exception:  # noqa: BLE001 - only a hint: an unreadable preview says nothing
        return None
    corners = arr[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    value = corners.flat[0]
    if not (corners == value).all() or not np.isfinite(value) or not (arr != value).any():
        return None
    return float(value)


def warn_unmasked_fill(item_id: str, reader: Any, seen: list[str]) -> None:
    """Log a warning naming ``--nodata V`` when ``reader`` (a :class:`~rsir_stac.tiling.SceneReader`)
    reads a scene whose corners are a fill of value V the file does not mark as nodata, and append
    ``item_id`` to ``seen`` (the run's report); the first such scene of a run gets the whole
    explanation, later ones a short line."""
    plan = reader.plan
    if not plan.all_valid or plan.nodata is not None or plan.palette is not None:
        return  # a nodata value, mask or alpha band marks the fill already (or a class map: 0 is a class)
    value = unmasked_fill(reader._ds, plan.bands)
    if value is None:
        return
    v = f"{value:g}"
    if not seen:
        log.warning("item %s: its corners are %s in every band and the file marks no nodata; if that is fill around "
                    "the image (a rotated or clipped scene's border), it is read as pixels: its tiles are indexed (all "
                    "alike) and the map draws it; then re-run with --nodata %s into a new --index (or mark it in the "
                    "file: rio edit-info --nodata %s FILE); if those pixels are real data, ignore this", item_id, v,
                    v, v)
    else:
        log.warning("item %s: corners %s in every band and no nodata marked, as item %s (--nodata %s)", item_id, v,
                    seen[0], v)
    seen.append(item_id)
