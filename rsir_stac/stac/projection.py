"""The STAC projection extension (``proj:``) as a fix for a raster that lacks its georeferencing.

An item may georeference an asset the file itself does not (a PNG or JPEG, a GeoTIFF whose
tags were stripped): ``proj:code`` (v2; ``proj:epsg`` in v1, ``proj:wkt2``), ``proj:transform``
(the affine coefficients a, b, c, d, e, f, as rasterio's ``Affine``) and ``proj:shape`` (rows,
columns).  Ingest reads the georeferencing from the file only (the tiles' footprints follow
it, and every later reader, thumbnails, map imagery, reindex, opens the same file); when it
is missing, the error gives the ``rio edit-info`` command that writes the item's values into
the file.  Spec: https://github.com/stac-extensions/projection
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import Any


def proj_crs(proj: Mapping[str, Any]) -> str | None:
    """The CRS ``proj`` names, as ``rio edit-info --crs`` takes it: ``proj:code`` (e.g.
    ``EPSG:32615``), else ``EPSG:<proj:epsg>``, else ``proj:wkt2``; None when none is usable."""
    code = proj.get("proj:code")
    if isinstance(code, str) and code.strip():
        return code.strip()
    epsg = proj.get("proj:epsg")
    if isinstance(epsg, int) and not isinstance(epsg, bool) and epsg > 0:
        return f"EPSG:{epsg}"
    wkt = proj.get("proj:wkt2")
    return wkt.strip() if isinstance(wkt, str) and wkt.strip() else None


def proj_transform(proj: Mapping[str, Any], shape: tuple[int, int] | None) -> list[float] | None:
    """``proj:transform``'s six affine coefficients (a, b, c, d, e, f) when they can place
    pixels (finite, non-zero pixel size) and describe a grid of ``shape`` (rows, columns):
    an item whose ``proj:shape`` differs from the file's describes another grid.  None otherwise."""
    t = proj.get("proj:transform")
    if not isinstance(t, (list, tuple)) or len(t) not in (6, 9):
        return None
    try:
        a, b, c, d, e, f = (float(v) for v in t[:6])
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (a, b, c, d, e, f)) or abs(a * e - b * d) < 1e-300:
        return None
    size = proj.get("proj:shape")
    if shape is not None and isinstance(size, (list, tuple)) and len(size) == 2 and list(size) != list(shape):
        return None
    return [a, b, c, d, e, f]


def _number(v: float) -> str:
    return f"{v:.15g}"


def georef_fix(href: str, item_id: str, proj: Mapping[str, Any] | None, missing: str,
               shape: tuple[int, int] | None) -> str | None:
    """The error line for ``href`` (the asset of STAC item ``item_id``), which lacks ``missing``
    (``"crs"``, ``"transform"`` or ``"both"``), when the item's ``proj`` fields supply it: the
    ``rio edit-info`` command that assigns them (with rasterio, installed with rsir-stac).  None
    when they do not supply what is missing (then the raster's own error stands)."""
    if not proj:
        return None
    crs = proj_crs(proj) if missing in ("crs", "both") else None
    transform = proj_transform(proj, shape) if missing in ("transform", "both") else None
    if (missing in ("crs", "both") and crs is None) or (missing in ("transform", "both") and transform is None):
        return None
    what = {"crs": "has no CRS", "transform": "has no geotransform",
            "both": "is not georeferenced (no CRS and no geotransform)"}[missing]
    args = ([f"--crs {shlex.quote(crs)}"] if crs else []) + (
        [f"--transform '[{', '.join(_number(v) for v in transform)}]'"] if transform else [])
    given = ", ".join(k for k in ("proj:code", "proj:epsg", "proj:wkt2", "proj:transform")
                      if (k != "proj:transform" and crs and k in proj) or (k == "proj:transform" and transform))
    return (f"{href} {what}, but its STAC item {item_id} gives it ({given}); write it into the file with "
            f"`rio edit-info {' '.join(args)} {shlex.quote(href)}` (or fix the file at its source), then ingest again")


__all__ = ["georef_fix", "proj_crs", "proj_transform"]
