"""Job-size estimation: about how many tiles an ingest job (:mod:`rsir_stac.api.jobs`) would make,
from each raster's size and GSD alone, and the refusal (413) of a job over the service's limit.

Nothing is planned or read but the rasters' headers, so a job too large for the service is
refused before any work starts.  A tile larger than the model's counts as the model's tiles it
holds in pixels, and a tile read from more than :data:`DECIMATION_FREE` source pixels per tile
pixel as that many times more: the cap bounds the pixels a job reads, not only its tiles.
"""

import math
from pathlib import Path
from typing import Any

#: Most tiles one job may make (estimated before planning; the CLI's ingest has no such limit).
MAX_JOB_TILES = 100_000
#: Source pixels per tile pixel a tile may be read from and count as one tile in a job's size
#: (8 x 8: the coarsest GSD the model is trained for, 8 times the finest); more counts as more.
DECIMATION_FREE = 64


def estimate_tiles(path: str, options: Any, bundle: Any) -> tuple[int, str]:
    """About how many tiles ingesting the raster ``path`` with ``options`` plans, from its size
    and GSD alone (nothing is planned or read but the header), and a few words on why; (0, "")
    when it cannot be opened (the job then fails that item with its own message).  Tiles
    larger than the model's count as the model's tiles they hold in pixels (a 4096 px tile
    reads 256 tiles of 256 px), and a tile read from more than :data:`DECIMATION_FREE` source
    pixels per tile pixel (at the file's best overview) as that many times more (a 51 KB sparse
    GeoTIFF of 40,000 x 40,000 px of 0.5 mm counted as one tile at 20 m), so the cap bounds the
    pixels a job reads, not only its tiles."""
    from rsir_stac.tiling import SceneReader

    try:
        with SceneReader.open(path, target_gsd=None) as reader:
            width, height = reader.width, reader.height
            px, py = reader.pixel_size_m
            native = reader.native_gsd
            gsd = _job_gsd(native, options, bundle)
            ok = gsd > 0 and math.isfinite(gsd) and px > 0 and py > 0
            factor = reader.overview_factor(min(gsd / px, gsd / py)) if ok else 1
    except Exception:  # noqa: BLE001 - not this check's business: ingest reports it
        return 0, ""
    if not ok:
        return 0, ""
    tile = options.tile_size or bundle.tile_size
    stride = options.stride or tile
    gw, gh = max(1.0, width * px / gsd), max(1.0, height * py / gsd)
    n = math.ceil(gw / stride) * math.ceil(gh / stride)
    why = f"{gw:,.0f} x {gh:,.0f} px at {gsd:.3g} m, tiles of {tile} px every {stride} px"
    weight = (tile / bundle.tile_size) ** 2  # a larger tile is that many of the model's tiles to read
    if weight > 1:
        why += f", each the pixels of {weight:.3g} tiles of {bundle.tile_size} px"
    source = (gsd / px) * (gsd / py) / factor ** 2  # source pixels read per tile pixel
    if source > DECIMATION_FREE:
        weight *= source / DECIMATION_FREE
        why += (f", each tile pixel read from {source:,.0f} pixels of the file (no overview that coarse: "
                "add overviews, e.g. gdaladdo, or give a finer gsd)")
    return math.ceil(n * max(weight, 1.0)), why


def _job_gsd(native: float, options: Any, bundle: Any) -> float:
    """The GSD (metres) a job's ingest reads a scene of ``native`` metres at (as ingest chooses it)."""
    if options.native_gsd or not (options.gsd or bundle.gsd):
        return native
    if options.gsd:
        return float(options.gsd)
    gsd = float(bundle.gsd)
    return native if native > gsd * options.max_upsample else gsd  # a much coarser scene: its own GSD


def _rasters(path: str) -> list[str]:
    """The rasters a job source makes ingest read: the file, or a folder's regular .tif/.tiff files."""
    p = Path(path)
    if not p.is_dir():
        return [path]
    return sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in (".tif", ".tiff") and f.is_file())


def check_job_size(names: list[str], sources: list[str], options: Any, bundle: Any,
                   max_tiles: int = MAX_JOB_TILES) -> None:
    """Raise HTTPException 413 when ingesting ``sources`` (real paths, as the client named them in
    ``names``) with ``options`` and the model ``bundle`` would make more than ``max_tiles`` tiles
    (:func:`estimate_tiles`, summed over every raster a source makes ingest read); the message names
    the estimate, the largest raster and how to make the job smaller."""
    from fastapi import HTTPException

    total, worst = 0, (0, "", "")
    for name, src in zip(names, sources):
        for path in _rasters(src):
            n, why = estimate_tiles(path, options, bundle)
            total += n
            if n > worst[0]:
                shown = name if path == src else f"{name}/{Path(path).relative_to(src)}"
                worst = (n, shown[:200], why)
            if total > max_tiles:
                raise HTTPException(413, f"this ingest job would make about {total:,} tiles ({worst[1]}: "
                                         f"{worst[2]}), over the service's limit of {max_tiles:,} per job; give "
                                         "a coarser gsd, a larger tile_size or stride, or fewer sources (or stop "
                                         "serve and run rsir-stac ingest)")


__all__ = ["DECIMATION_FREE", "MAX_JOB_TILES", "check_job_size", "estimate_tiles"]
