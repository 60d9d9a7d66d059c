"""A scene whose fill is read as pixels: the black border of a rotated or clipped scene that the
file does not mark (no nodata value, mask or alpha band).

Satellite scenes delivered rotated in a north-up grid (SkySat, Landsat Level-1, many mosaics)
carry a border of zeros around the image.  Without nodata those zeros are pixels: the border's
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


def unmasked_fill(dataset: Any, bands: tuple[int, ...]) -> bool:
    """Whether the four corners of ``dataset`` (an open rasterio dataset, or a band stack) are 0 in
    every one of ``bands`` (1-based) while the scene holds other values: a fill border.  Read at
    most :data:`PREVIEW_SIDE` pixels a side (GDAL takes them from an overview where the file has
    one).  False when it cannot be read."""
    from rasterio.enums import Resampling

    try:
        h, w = min(int(dataset.height), PREVIEW_SIDE), min(int(dataset.width), PREVIEW_SIDE)
        arr = np.asarray(dataset.read(sorted(set(bands)), out_shape=(len(set(bands)), h, w),
                                      resampling=Resampling.nearest))
    except Exception:  # noqa: BLE001 - only a hint: an unreadable preview says nothing
        return False
    corners = arr[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    return bool((corners == 0).all() and (arr != 0).any())


def warn_unmasked_fill(item_id: str, reader: Any, seen: list[str]) -> None:
    """Log a warning naming ``--nodata 0`` when ``reader`` (a :class:`~rsir_stac.tiling.SceneReader`)
    reads a scene whose corners are a zero fill the file does not mark as nodata, and append
    ``item_id`` to ``seen`` (the run's report); the first such scene of a run gets the whole
    explanation, later ones a short line."""
    plan = reader.plan
    if not plan.all_valid or plan.nodata is not None or plan.palette is not None:
        return  # a nodata value, mask or alpha band marks the fill already (or a class map: 0 is a class)
    if not unmasked_fill(reader._ds, plan.bands):
        return
    if not seen:
        log.warning("item %s: its corners are 0 in every band and the file marks no nodata, so the fill around the "
                    "image (a rotated or clipped scene's black border) is read as pixels: its tiles are indexed and "
                    "the map draws it black; re-run with --nodata 0 into a new --index (or mark it in the file: "
                    "rio edit-info --nodata 0 FILE)", item_id)
    else:
        log.warning("item %s: corners 0 in every band and no nodata marked, as item %s (--nodata 0)", item_id, seen[0])
    seen.append(item_id)


__all__ = ["PREVIEW_SIDE", "unmasked_fill", "warn_unmasked_fill"]
