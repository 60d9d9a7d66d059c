"""Which bands of a raster become the R, G, B channels of a tile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rasterio.enums import ColorInterp

from rsir_stac.errors import InputError, RasterError


def _band_error(name: str, count: int) -> RasterError:
    return RasterError(
        f"{name} has {count} bands and no red/green/blue colour interpretation; "
        "pass --bands R,G,B (1-based band numbers)"
    )


def select_bands(dataset: Any, bands: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The 1-based (R, G, B) band numbers to read from ``dataset``.

    Explicit ``bands`` (3 numbers, or 1 for grey) win; else bands whose colour
    interpretation is red/green/blue; else bands 1,2,3 for 3- and 4-band
    rasters (4th = alpha or NIR); a single band (or grey + alpha) is
    replicated.  Other band counts raise :class:`RasterError` asking for
    ``--bands``.
    """
    name = str(getattr(dataset, "name", "raster"))
    count = int(dataset.count)
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) == 1:
            chosen = chosen * 3
        if len(chosen) != 3:
            raise InputError(f"bands={list(bands)} is invalid; give 3 band numbers R,G,B (or 1 for grey)")
        bad = [b for b in chosen if not 1 <= b <= count]
        if bad:
            raise RasterError(f"{name} has {count} bands, so band {bad[0]} does not exist; pass --bands within 1..{count}")
        return chosen  # type: ignore[return-value]
    interp = list(dataset.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(ci in interp for ci in wanted):
        return tuple(interp.index(ci) + 1 for ci in wanted)  # type: ignore[return-value]
    if count in (3, 4):
        return (1, 2, 3)
    if count == 1 or (count == 2 and interp[1] == ColorInterp.alpha):
        return (1, 1, 1)
    raise _band_error(name, count)


__all__ = ["select_bands"]
