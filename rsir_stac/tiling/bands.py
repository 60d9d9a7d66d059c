"""Which bands of a raster become the R, G, B channels of a tile."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rasterio.enums import ColorInterp

from rsir_stac.errors import BandsError, InputError, RasterError
from rsir_stac.tiling.sources import shown_name


def _band_error(name: str, count: int) -> BandsError:
    example = (", e.g. 4,3,2 for Sentinel-2 or Landsat 8-9 bands in their band order" if count >= 7 else "")
    return BandsError(
        f"{name} has {count} bands and neither its colour interpretation nor its band names say which are red, green and blue; "
        f"pass --bands R,G,B (1-based band numbers{example})"
    )


#: Words of a band description that name another part of the spectrum than the colour word
#: beside them ("Red Edge 1", "Coastal Blue", "Near Infrared" is one word already).
_NOT_VISIBLE = frozenset({"edge", "rededge", "coastal", "aerosol", "deep", "nir", "swir", "infrared", "yellow"})
#: Whole descriptions that name a colour band unambiguously: Sentinel-2's zero-padded band names
#: (ESA's B02/B03/B04; "B2".."B4" are left out: Landsat 4-7 number their bands otherwise).
_EXACT = {"b04": "red", "b03": "green", "b02": "blue"}


def bands_from_descriptions(descriptions: Sequence[str | None]) -> tuple[int, int, int] | None:
    """The 1-based (R, G, B) bands named by GDAL band descriptions, or None.

    A band is red, green or blue when its description is that colour's word ("Red",
    "band 3: green", "Blue (B2)"), not beside a word naming another part of the spectrum
    ("Red Edge", "Coastal Blue"), or exactly Sentinel-2's ``B04``/``B03``/``B02``.
    None unless each colour is named by exactly one band.
    """
    found: dict[str, list[int]] = {"red": [], "green": [], "blue": []}
    for number, text in enumerate(descriptions, start=1):
        if not text:
            continue
        words = set(re.split(r"[^a-z0-9]+", str(text).strip().lower())) - {""}
        colour = _EXACT.get(str(text).strip().lower())
        if colour is None and not words & _NOT_VISIBLE:
            named = [c for c in found if c in words]
            colour = named[0] if len(named) == 1 else None
        if colour:
            found[colour].append(number)
    if all(len(v) == 1 for v in found.values()):
        return found["red"][0], found["green"][0], found["blue"][0]
    return None


def select_bands(dataset: Any, bands: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The 1-based (R, G, B) band numbers to read from ``dataset``.

    Explicit ``bands`` (3 numbers, or 1 for grey) win; else bands whose colour
    interpretation is red/green/blue; else bands whose descriptions name red, green
    and blue (:func:`bands_from_descriptions`: "Blue, Green, Red, NIR" reads 3,2,1;
    Sentinel-2's B04/B03/B02); else bands 1,2,3 for 3- and 4-band rasters (4th =
    alpha or NIR); a single band (or grey + alpha) is replicated.  Other band counts
    raise :class:`RasterError` asking for ``--bands``.
    """
    name = shown_name(dataset)
    count = int(dataset.count)
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) == 1:
            chosen = chosen * 3
        if len(chosen) != 3:
            raise InputError(f"bands={list(bands)} is invalid; give 3 band numbers R,G,B (or 1 for grey)")
        bad = [b for b in chosen if not 1 <= b <= count]
        if bad:
            raise BandsError(f"{name} has {count} bands, so band {bad[0]} does not exist; pass --bands within 1..{count}")
        return chosen  # type: ignore[return-value]
    interp = list(dataset.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(ci in interp for ci in wanted):
        return tuple(interp.index(ci) + 1 for ci in wanted)  # type: ignore[return-value]
    named = bands_from_descriptions(list(getattr(dataset, "descriptions", None) or ()))
    if named is not None and max(named) <= count:
        return named
    if count in (3, 4):
        return (1, 2, 3)
    if count == 1 or (count == 2 and interp[1] == ColorInterp.alpha):
        return (1, 1, 1)
    raise _band_error(name, count)


__all__ = ["bands_from_descriptions", "select_bands"]
