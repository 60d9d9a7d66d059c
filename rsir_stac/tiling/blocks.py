"""The decoded-block limit of a process that serves rasters (``serve``): GDAL decodes a whole block
(tile or strip) to read any pixel of it and keeps it with the open dataset, so a small file of one
huge compressed block holds hundreds of MB.  Every image a read may decode is weighed: the raster's
own, its overviews and masks (SubIFDs and ``.ovr``/``.msk`` sidecars too) and a VRT's sources."""

from __future__ import annotations

import logging
import os
from typing import Any

import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError

from rsir_stac.errors import RasterError
from rsir_stac.tiling.names import _is_url, _vrt_source_names

log = logging.getLogger(__name__)


class BlockLimitError(RasterError):
    """A raster stored in blocks (tiles or strips) larger than :func:`limit_block_bytes` allows."""


#: Largest decoded block (tile or strip) of a raster this process opens, in bytes; None: no limit.
#: Set by :func:`limit_block_bytes` (``serve``): GDAL decodes a whole block to read any pixel of it
#: and keeps it with the open dataset, so a 1.7 MB GeoTIFF of one 12,000 px DEFLATE tile holds
#: 432 MB for as long as it is open.
_BLOCK_LIMIT: int | None = None


#: What :func:`check_blocks` says of a TIFF whose images (IFDs) run past ``upload.MAX_TIFF_IFDS``.
_CHAINS = "chains more images (IFDs) than a reader should follow"


def _too_many() -> tuple[int, str]:
    return (_BLOCK_LIMIT or 0) + 1, _CHAINS


def _worst_image(blocks: list[tuple[int, int, int, int, int]], where: str, first: bool) -> tuple[int, str]:
    """``(bytes, what)`` of the largest block among ``blocks`` (:func:`rsir_stac.upload.tiff_blocks` of the
    file ``where`` names), its first image included only when ``first``."""
    return max(((bw * bh * spp * nbytes, f"image {n} in {where} (an overview or mask) is stored in blocks of "
                 f"{bw}x{bh} px") for bw, bh, spp, nbytes, n in blocks if first or n > 1), default=(0, ""))


def limit_block_bytes(limit: int | None) -> None:
    """Refuse, for the rest of this process, every raster whose decoded blocks exceed ``limit``
    bytes (:func:`check_blocks`); None lifts it."""
    global _BLOCK_LIMIT
    _BLOCK_LIMIT = None if limit is None else int(limit)


def block_bytes(ds: Any) -> int:
    """Bytes GDAL decodes at once to read any pixel of ``ds``: its largest block (tile or strip,
    as GDAL sees it: an uncompressed single strip is split in rows) times the bands a block holds
    (all of them when pixel-interleaved) times the widest sample."""
    import numpy as np

    if not ds.count or not ds.block_shapes:
        return 0
    bh, bw = max(ds.block_shapes, key=lambda s: s[0] * s[1])
    interleave = (ds.tags(ns="IMAGE_STRUCTURE") or {}).get("INTERLEAVE", "").upper()
    bands = ds.count if interleave == "PIXEL" else 1
    return int(bh) * int(bw) * bands * max(np.dtype(t).itemsize for t in ds.dtypes)


def _other_images_block_bytes(ds: Any) -> tuple[int, str]:
    """``(bytes, what)`` of the largest decoded block among a raster's other images: the overviews and
    masks a read at another resolution, or of the mask, decodes, and a VRT's sources.  A local TIFF's
    every image (IFD), and those of its ``.ovr``/``.msk`` sidecars, from their tags
    (:func:`_local_tiff_block_bytes`, nothing decoded), a remote GeoTIFF's from its tags too
    (:func:`_remote_tiff_block_bytes`); a VRT's sources as opened (8 deep); elsewhere each overview
    level GDAL opens.  ``(0, "")`` when there is none."""
    if ds.driver == "VRT":
        return _vrt_sources_block_bytes(ds, 0)
    name = ds.name
    if not _is_url(name) and os.path.isfile(name):
        return _local_tiff_block_bytes(ds)
    if ds.driver == "GTiff":
        path = (list(ds.files) or [name])[0]
        tags = _remote_tiff_block_bytes(path)
        if tags is not None:  # every image of the file, SubIFDs too, from one read of its tags
            return tags
        worst = _tiff_directories_block_bytes(path)
    else:
        worst = (0, "")
    levels = len(ds.overviews(1)) if ds.count else 0
    for level in range(min(levels, 16)):
        with rasterio.open(name, driver=ds.driver, overview_level=level) as ov:
            bh, bw = max(ov.block_shapes, key=lambda s: s[0] * s[1])
            worst = max(worst, (block_bytes(ov), f"overview {level + 1} is stored in blocks of {bw}x{bh} px"))
    return worst


def _local_tiff_block_bytes(ds: Any) -> tuple[int, str]:
    """:func:`_other_images_block_bytes` of a local file: every image (IFD, SubIFDs too) of the file after
    its first, and every image of the TIFF sidecars GDAL found for it (``.ovr`` overviews, ``.msk`` masks),
    from their tags (:func:`rsir_stac.upload.tiff_blocks` on the memory-mapped file)."""
    import mmap

    from rsir_stac.stac.hrefs import _TIFF_MAGIC
    from rsir_stac.upload import UploadTooLarge, tiff_blocks

    try:
        files = list(dict.fromkeys([ds.name, *list(ds.files)[1:]]))
    except Exception:  # noqa: BLE001 - no file list: the file alone
        files = [ds.name]
    worst = (0, "")
    for k, path in enumerate(files):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                continue
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                try:
                    blocks = tiff_blocks(mm)
                except UploadTooLarge:
                    return _too_many()
        worst = max(worst, _worst_image(blocks, "the file" if k == 0 else os.path.basename(path), first=k > 0))
    return worst


def _vrt_sources_block_bytes(ds: Any, depth: int) -> tuple[int, str]:
    """``(bytes, what)`` of the largest decoded block a read of VRT ``ds`` makes: each source's own blocks
    and other images (:func:`block_bytes`, :func:`_other_images_block_bytes`), a VRT source's sources
    8 deep.  A source that cannot be opened counts nothing (the read says why)."""
    worst = (0, "")
    for name in _vrt_source_names(ds):
        try:
            sub = rasterio.open(name)
        except (RasterioError, CPLE_BaseError):
            continue
        with sub:
            if sub.driver == "VRT":
                size, what = _vrt_sources_block_bytes(sub, depth + 1) if depth < 8 else (0, "")
            else:
                bh, bw = max(sub.block_shapes, key=lambda s: s[0] * s[1]) if sub.block_shapes else (0, 0)
                size, what = block_bytes(sub), f"reads {name}, which is stored in blocks of {bw}x{bh} px"
                other, said = _other_images_block_bytes(sub)
                if other > size:
                    size, what = other, f"reads {name}, whose {said}"
        worst = max(worst, (size, what))
    return worst


def _remote_tiff_block_bytes(path: str) -> tuple[int, str] | None:
    """``(bytes, what)`` of the largest block among the images after the first of a remote TIFF (its main
    chain and SubIFDs, tag 330, where GDAL keeps overviews and masks too), from its tags read through
    GDAL (:class:`~rsir_stac.tiling.vsi_bytes.VsiBytes`, at most 8 MB of them, nothing decoded); None
    when they cannot be read this way (then :func:`_tiff_directories_block_bytes`)."""
    from rsir_stac.tiling.vsi_bytes import VsiBytes
    from rsir_stac.upload import UploadTooLarge, tiff_blocks

    try:
        with VsiBytes(path) as data:
            blocks = tiff_blocks(data)
    except UploadTooLarge:
        return _too_many()
    except OSError as err:  # libgdal out of reach, or a read GDAL refuses
        log.debug("tags of %s not read: %s", path, err)
        return None
    return _worst_image(blocks, "the file", first=False)


def _tiff_directories_block_bytes(path: str) -> tuple[int, str]:
    """Where :func:`_remote_tiff_block_bytes` cannot read the tags: ``(bytes, what)`` of the largest
    decoded block among the images (IFDs) after the first of the remote GeoTIFF at GDAL ``path``, each
    opened by GDAL as ``GTIFF_DIR:N:path`` (its header is cached: no new request for most): internal
    masks, which no overview level shows, as GDAL reads them."""
    from rsir_stac.upload import MAX_TIFF_IFDS

    worst = (0, "")
    for n in range(2, MAX_TIFF_IFDS + 2):
        try:
            sub = rasterio.open(f"GTIFF_DIR:{n}:{path}")
        except (RasterioError, CPLE_BaseError):
            return worst  # no image N: the chain has ended
        with sub:
            bh, bw = max(sub.block_shapes, key=lambda s: s[0] * s[1])
            worst = max(worst, (block_bytes(sub), f"image {n} in the file (an overview or mask) is stored in "
                                                  f"blocks of {bw}x{bh} px"))
    return _too_many()


def check_blocks(ds: Any, href: str) -> Any:
    """``ds``, or (closed) RasterError when a decoded block of it (its image, an overview or an internal
    mask) is over :func:`limit_block_bytes`'s limit."""
    if _BLOCK_LIMIT is None:
        return ds
    size, what = block_bytes(ds), ""
    if size <= _BLOCK_LIMIT:
        try:
            size, what = _other_images_block_bytes(ds)
        except Exception:  # noqa: BLE001 - an image GDAL cannot open: the read itself says so
            size, what = 0, ""
    if size > _BLOCK_LIMIT:
        bh, bw = max(ds.block_shapes, key=lambda s: s[0] * s[1])
        where = what or f"is stored in blocks (tiles or strips) of {bw}x{bh} px"
        why = where if what == _CHAINS else \
            f"{where}, {size:,} bytes decoded whole for any read, over the service's {_BLOCK_LIMIT:,} byte limit"
        ds.close()
        raise BlockLimitError(f"{href} {why}; rewrite it in 512 px tiles, e.g. gdal_translate -of COG in.tif out.tif, "
                          "or ingest it from the command line")
    return ds


__all__ = ["BlockLimitError", "block_bytes", "check_blocks", "limit_block_bytes"]
