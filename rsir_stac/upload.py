"""Decoding of untrusted query images (HTTP uploads): self-contained formats only, from memory.

An uploaded file must not be able to name another resource.  GDAL knows
formats whose bytes are instructions to read other files or URLs (VRT,
GDAL_WMS/WMTS XML, ``/vsicurl/`` references, sidecar files), and Pillow
knows a few dozen formats.  So an upload is decoded only when its first
bytes (magic numbers) are one of an allow-list of formats that carry their
pixels inside themselves:

========  ===========================  ============================
format    magic bytes                  decoder
========  ===========================  ============================
PNG       ``89 50 4E 47 0D 0A 1A 0A``  Pillow, PNG plugin only
JPEG      ``FF D8 FF``                 Pillow, JPEG plugin only
WebP      ``RIFF....WEBP``             Pillow, WebP plugin only
TIFF      ``II*\\0``, ``MM\\0*``, BigTIFF  GDAL, GTiff driver only
========  ===========================  ============================

Anything else (VRT and other XML, HDF, NetCDF, JPEG 2000, BMP, GIF, ...) is
refused before a decoder sees it.  A TIFF is opened from GDAL's in-memory
file system (``/vsimem/``) with only the GTiff driver allowed and, for that
read, sidecar lookup and PAM off, ``/vsicurl/`` limited to an extension no
URL has, and HTTP timeouts of one second, so nothing outside the uploaded
bytes is read even if the GTiff driver were asked to.

Memory and time are bounded before any pixel is decoded, from the header
alone: ``width * height`` against a pixel limit, ``width * height * bands *
bytes per sample`` (the bands actually decoded, at least the 3 of the RGB
output; 16-bit PNGs count 2 bytes) against a byte limit, and each side
against a side limit (decoders pay per row: a 1-pixel-wide PNG of 16 million
rows passes the pixel limit and took 88 s and 11 GB).  Two costs the image
size does not show are bounded too: a TIFF decodes a whole block (tile or
strip, all samples of a pixel-interleaved block) at a time, and a block may
be declared far larger than the image (a 1.2 KB 256 x 256 TIFF with one
16384 x 16384 tile took 0.9 GB), so every block of every image in the file
(masks and overviews included) is held to the byte limit; and a progressive
JPEG pays a full pass over the image per scan (one with its last scan repeated
20,000 times decoded for 40 s), so a JPEG of more than
:data:`MAX_JPEG_SCANS` scans is refused.  Pixels that are NaN or infinite in
a float TIFF are invalid, as in ingest (:func:`rsir_stac.tiling.pixels.read_rgb`).

A decode cannot be cut short: the decoders are C code called from a worker
thread, and Starlette does not stop a sync endpoint's thread when its client
hangs up; the limits above are what bound one decode's time and memory.

References: GDAL configuration options (``GDAL_DISABLE_READDIR_ON_OPEN``,
``GDAL_PAM_ENABLED``, ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``) at
https://gdal.org/user/configoptions.html; Pillow's ``Image.open(formats=)``;
the file signatures of the PNG, JPEG (JFIF/EXIF), RIFF/WebP and TIFF 6.0 /
BigTIFF specifications.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from rsir_stac.decoder_errors import decode_error_message, decoder_cause
from rsir_stac.errors import EmptyImageError, ImageReadError, RasterError

log = logging.getLogger(__name__)

#: Upload formats that are decoded (everything else is refused unread).
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
#: Default pixel limit (width x height) of an upload.
MAX_PIXELS = 4096 * 4096
#: Default limit on decoded bytes (width x height x bands x bytes per sample): a 4096 x 4096 RGBA 8-bit image.
MAX_DECODED_BYTES = 64 * 1024 * 1024
#: Default limit on either side (pixels): decoders pay per row, so a 1 x 16,000,000 PNG (under the
#: pixel limit) took 88 s and 11 GB to decode; 16,384 keeps every side a query could need.
MAX_SIDE = 16_384

#: GDAL options for reading an upload: no sidecar files, no PAM, no URL, fast failure.
SAFE_GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".rsir-stac-no-network",
    "GDAL_HTTP_TIMEOUT": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "1",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_GEOREF_SOURCES": "INTERNAL",
    "CHECK_DISK_FREE_SPACE": "NO",
}

#: Default limit on the scans of a JPEG (libjpeg-turbo's tools warn above 100 and libtiff refuses more
#: in a JPEG-compressed TIFF; encoders write 1 (baseline) or about 10 (progressive)).
MAX_JPEG_SCANS = 100
#: Most images (IFDs) a TIFF upload may chain: pages, masks and overview levels together.
MAX_TIFF_IFDS = 1024

_HINT = "upload a PNG, JPEG, WebP or GeoTIFF image"
#: A JPEG marker outside entropy-coded data: FF then neither 00 (stuffing), D0-D7 (restart) nor FF (fill).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: Rows stretched at a time (the float64 temporaries of the stretch stay a few MB).
_STRIP_ROWS = 256
#: Bytes per sample of Pillow modes (default 1).
_PIL_SAMPLE_BYTES = {"I": 4, "F": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


class UploadTooLarge(ImageReadError):
    """An upload (bytes, pixels or decoded bytes) over the service limits: HTTP 413."""


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may cost once decoded.

    ``max_pixels`` bounds ``width * height``; ``max_decoded_bytes`` bounds
    ``width * height * bands * bytes per sample`` of the samples decoded;
    ``max_side`` bounds the width and the height (pixels); ``max_jpeg_scans``
    the scans of a JPEG (each a full pass over the image).  A TIFF block
    (tile or strip) is held to ``max_decoded_bytes`` as well.
    """

    max_pixels: int = MAX_PIXELS
    max_decoded_bytes: int = MAX_DECODED_BYTES
    max_side: int = MAX_SIDE
    max_jpeg_scans: int = MAX_JPEG_SCANS


def sniff_format(data: bytes) -> str | None:
    """The allowed format named by the first bytes of ``data`` (``"PNG"``, ...), or None."""
    head = bytes(data[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _describe(data: bytes) -> str:
    head = bytes(data[:64]).lstrip()
    if head.startswith(b"<"):
        return "it is XML/markup (e.g. a GDAL VRT or WMS description), which is never opened"
    return "its first bytes are not those of a PNG, JPEG, WebP or TIFF file"


def decode_upload(data: bytes, limits: UploadLimits = UploadLimits()) -> np.ndarray:
    """Decode an untrusted image to ``H x W x 3`` ``uint8`` RGB, from memory only.

    PNG/JPEG/WebP are decoded by Pillow (16-bit/float grey gets the p2–p98
    stretch of :func:`rsir_stac.tiling.percentile_rule`); TIFF/GeoTIFF by
    GDAL's GTiff driver with the band choice and stretch of scene tiles
    (:func:`rsir_stac.tiling.select_bands`, :func:`rsir_stac.tiling.compute_scale`),
    longer side capped at :data:`rsir_stac.tiling.MAX_QUERY_SIDE` pixels.

    Raises :class:`ImageReadError` for an empty or undecodable upload or a
    format off the allow-list, :class:`UploadTooLarge` when the header shows
    more pixels or decoded bytes than ``limits`` allow, a TIFF block over the
    decoded-byte limit or a JPEG of more scans than allowed (nothing is decoded),
    :class:`EmptyImageError` when no pixel is valid.
    """
    if not data:
        raise ImageReadError(f"the uploaded file is empty; {_HINT}")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageReadError(f"the uploaded file cannot be decoded: {_describe(data)}; {_HINT}")
    try:
        if fmt == "TIFF":
            px = _decode_tiff(data, limits)
        else:
            px = _decode_pillow(data, fmt, limits)
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad upload
        raise ImageReadError(decode_error_message(f"the uploaded {fmt} file", err)) from None
    if px.ndim != 3 or px.shape[2] != 3 or px.size == 0:
        raise ImageReadError(f"the uploaded {fmt} file has no usable pixels; {_HINT}")
    return px


def count_jpeg_scans(data: bytes, stop_after: int | None = None) -> int:
    """The scans (SOS markers, ``FF DA``) of a JPEG up to its end (``FF D9``), counted from the markers
    alone: entropy-coded data after each scan header is skipped up to the next marker (``FF 00`` is a
    stuffed byte, ``FF D0``-``FF D7`` restart markers, ``FF FF`` fill).  Stops counting past ``stop_after``."""
    n = len(data)
    scans = 0
    m = _JPEG_MARKER.search(data, 2)
    while m is not None:
        i = m.start()
        code = data[i + 1]
        if code == 0xD9:  # EOI: what follows is not decoded
            break
        if code in (0x01, 0xD8) or i + 4 > n:  # TEM and SOI have no length; nor has a marker cut short
            m = _JPEG_MARKER.search(data, i + 2)
            continue
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if code == 0xDA:
            scans += 1
            if stop_after is not None and scans > stop_after:
                break
        m = _JPEG_MARKER.search(data, max(end, i + 2))
    return scans


def check_jpeg_scans(data: bytes, limits: UploadLimits) -> None:
    """Raise :class:`UploadTooLarge` for a JPEG of more than ``limits.max_jpeg_scans`` scans (each scan
    of a progressive JPEG is one more pass over the whole image), before it is decoded."""
    scans = count_jpeg_scans(data, stop_after=limits.max_jpeg_scans)
    if scans > limits.max_jpeg_scans:
        raise UploadTooLarge(
            f"the uploaded JPEG has more than {limits.max_jpeg_scans} scans (each one more pass over the "
            "whole image; encoders write about 10); re-save it as a baseline JPEG or PNG "
            "(e.g. convert in.jpg -interlace none out.jpg)")


def _tiff_values(data: bytes, order: str, typ: int, count: int, field: bytes) -> list[int]:
    """The integer values of one TIFF tag (inline or at an offset); [] when unreadable."""
    size = {1: 1, 3: 2, 4: 4, 8: 2, 9: 4, 13: 4, 16: 8, 17: 8, 18: 8}.get(typ)
    if size is None or count <= 0:
        return []
    count = min(count, 65536)
    raw = field
    if size * count > len(field):
        off = int.from_bytes(field, "little" if order == "<" else "big")
        raw = data[off:off + size * count]
        if len(raw) < size * count:
            return []
    fmt = {1: "B", 3: "H", 4: "I", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}[typ]
    return list(struct.unpack(f"{order}{count}{fmt}", raw[:size * count]))


def tiff_blocks(data: bytes, max_ifds: int = MAX_TIFF_IFDS) -> list[tuple[int, int, int, int, int]]:
    """Per image (IFD) of a TIFF/BigTIFF, from its tags alone: ``(block width, block height, samples per
    block, bytes per sample, IFD number)`` of the tile or strip a decoder fills at once (a strip is
    RowsPerStrip rows, at most the image height; a pixel-interleaved block holds every sample; a sample
    under 8 bits counts 1 byte, as GDAL expands it).  The images of the main chain and of every SubIFD
    (tag 330: GDAL reads overviews and masks there), numbered in the order met.  Raises
    :class:`UploadTooLarge` past ``max_ifds`` images; stops quietly at a malformed chain (the decoder
    then says what is wrong)."""
    if len(data) < 16:
        return []
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    todo = [struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]]
    seen: set[int] = set()
    out = []
    while todo:
        off = todo.pop(0)
        if not 0 < off < len(data) or off in seen:
            continue
        if len(seen) >= max_ifds:
            raise UploadTooLarge(f"the uploaded TIFF chains more than {max_ifds} images (IFDs); "
                                 "upload one image (e.g. gdal_translate in.tif out.tif keeps the first)")
        seen.add(off)
        ifd = _tiff_ifd(data, off, order, big)
        if ifd is None:
            continue
        block, nxt, subifds = ifd
        out.append((*block, len(seen)))
        todo[:0] = [*subifds, nxt]  # an image's SubIFDs before the next image of its chain
    return out


def _tiff_ifd(data: bytes, off: int, order: str, big: bool
              ) -> tuple[tuple[int, int, int, int], int, list[int]] | None:
    """``((block width, block height, samples per block, bytes per sample), next IFD offset, SubIFD
    offsets)`` of the TIFF image (IFD) at ``off``; None when it is cut short."""
    entry, csize, size = (20, 8, 8) if big else (12, 2, 4)
    if off + csize > len(data):
        return None
    n = struct.unpack(order + ("Q" if big else "H"), data[off:off + csize])[0]
    base = off + csize
    if base + n * entry > len(data):
        return None
    tags: dict[int, list[int]] = {}
    for k in range(n):
        e = data[base + k * entry:base + (k + 1) * entry]
        tag, typ = struct.unpack(order + "HH", e[:4])
        if tag in (256, 257, 258, 277, 278, 284, 322, 323, 330):
            cnt = struct.unpack(order + ("Q" if big else "I"), e[4:12] if big else e[4:8])[0]
            tags[tag] = _tiff_values(data, order, typ, cnt, e[12:20] if big else e[8:12])
    width, height = (tags.get(256) or [0])[0], (tags.get(257) or [0])[0]
    bits = max(tags.get(258) or [1])
    spp = max(1, (tags.get(277) or [1])[0])
    planar = (tags.get(284) or [1])[0]
    if tags.get(322) and tags.get(323):
        bw, bh = tags[322][0], tags[323][0]
    else:
        bw, bh = width, min((tags.get(278) or [height])[0], height)
    nxt = base + n * entry
    nxt = struct.unpack(order + ("Q" if big else "I"), data[nxt:nxt + size])[0] if nxt + size <= len(data) else 0
    return (bw, bh, spp if planar != 2 else 1, max(1, (bits + 7) // 8)), nxt, list(tags.get(330) or [])


def check_tiff_blocks(data: bytes, limits: UploadLimits) -> None:
    """Raise :class:`UploadTooLarge` when a block (tile or strip) of any image in a TIFF would take more
    than ``limits.max_decoded_bytes`` decoded: decoders fill a whole block at once, and a block may be
    declared far larger than the image it belongs to."""
    for bw, bh, samples, sample_bytes, ifd in tiff_blocks(data):
        _check_block(bw, bh, samples, sample_bytes, limits, "" if ifd == 1 else f" (image {ifd} in the file)")


def _check_block(bw: int, bh: int, samples: int, sample_bytes: int, limits: UploadLimits, where: str = "") -> None:
    size = bw * bh * samples * sample_bytes
    if size > limits.max_decoded_bytes:
        raise UploadTooLarge(
            f"the uploaded TIFF{where} declares blocks (tiles or strips) of {bw}x{bh} pixels x {samples} "
            f"sample(s) x {sample_bytes} byte(s) = {size} bytes, decoded whole, over the "
            f"{limits.max_decoded_bytes} byte limit; re-export it with small tiles or strips "
            "(e.g. gdal_translate -co TILED=YES in.tif out.tif) or as PNG")


def check_size(fmt: str, width: int, height: int, bands: int, sample_bytes: int, limits: UploadLimits) -> None:
    """Raise :class:`UploadTooLarge` (or :class:`ImageReadError` for an empty image) from header values."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"the uploaded image has size {width}x{height}; upload a non-empty image")
    pixels = width * height
    if max(width, height) > limits.max_side:
        raise UploadTooLarge(f"the uploaded image is {width}x{height} pixels, a side over the {limits.max_side} "
                             "pixel limit; upload a smaller image or crop it")
    if pixels > limits.max_pixels:
        raise UploadTooLarge(f"the uploaded image is {width}x{height} = {pixels} pixels, over the "
                             f"{limits.max_pixels} pixel limit; upload a smaller image or crop it")
    bands = max(bands, 3)  # the decoded samples, or the RGB output when larger
    decoded = pixels * bands * sample_bytes
    if decoded > limits.max_decoded_bytes:
        raise UploadTooLarge(
            f"the uploaded {fmt} image would take {decoded} bytes decoded ({width}x{height} x {bands} band(s) x "
            f"{sample_bytes} byte(s)), over the {limits.max_decoded_bytes} byte limit; "
            "upload a smaller image, fewer bands or 8-bit samples")


def _decode_pillow(data: bytes, fmt: str, limits: UploadLimits) -> np.ndarray:
    from PIL import Image, ImageOps

    from rsir_stac.tiling import percentile_rule

    if fmt == "JPEG":
        check_jpeg_scans(data, limits)
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])  # header only; our pixel limit is checked next
    except Image.DecompressionBombError:
        raise UploadTooLarge(f"the uploaded {fmt} image is over the {limits.max_pixels} pixel limit; "
                             "upload a smaller image") from None
    with img:
        w, h = img.size
        # a 16-bit PNG is decoded at 16 bits whatever mode Pillow reports (48/64-bit RGB[A] open as RGB[A])
        sixteen = 2 if fmt == "PNG" and len(data) > 24 and data[24] == 16 else 1
        check_size(fmt, w, h, len(img.getbands()), max(sixteen, _PIL_SAMPLE_BYTES.get(img.mode, 1)), limits)
        img.load()
        img = ImageOps.exif_transpose(img) or img
        if ("A" in img.getbands() or "transparency" in img.info) and not np.asarray(img.convert("RGBA"))[..., 3].any():
            raise EmptyImageError(f"the uploaded {fmt} image is transparent everywhere; upload an image with data")
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            grey = np.asarray(img, dtype=np.float32)
            stack = np.stack([grey, grey, grey])
            rgb = percentile_rule(stack).apply(stack)
            return np.ascontiguousarray(rgb.transpose(1, 2, 0))
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _decode_tiff(data: bytes, limits: UploadLimits) -> np.ndarray:
    import rasterio
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    from rsir_stac.tiling import MAX_QUERY_SIDE, compute_scale, select_bands
    from rsir_stac.tiling.masks import read_masks
    from rsir_stac.tiling.pixels import map_orientation, turned

    check_tiff_blocks(data, limits)  # from the tags, before GDAL sees the file
    with rasterio.Env(**SAFE_GDAL_OPTIONS), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data, ext=".tif") as mem, mem.open(driver="GTiff") as ds:
            if ds.driver != "GTiff":  # belt and braces: the driver list above already says so
                raise ImageReadError(f"the uploaded file opened as {ds.driver}, not a TIFF; {_HINT}")
            palette = ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette
            try:
                chosen = (1, 1, 1) if palette else select_bands(ds)
            except RasterError:  # its message names the in-memory file and --bands, which an upload has not
                raise ImageReadError(f"the uploaded TIFF has {ds.count} bands and none is marked red, green or "
                                     "blue; upload an RGB (3-band) or grey (1-band) image") from None
            turn = map_orientation(ds)  # a georeferenced upload is shown as on the map, as its tiles are
            uniq = sorted(set(chosen))
            sample = max(np.dtype(ds.dtypes[b - 1]).itemsize for b in uniq)
            check_size("TIFF", ds.width, ds.height, len(uniq), sample, limits)
            # and as GDAL sees the blocks (a pixel-interleaved block is decoded with all its bands)
            bh, bw = max(ds.block_shapes, key=lambda s: s[0] * s[1])
            pixel_interleaved = ds.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "").upper() == "PIXEL"
            _check_block(bw, bh, ds.count if pixel_interleaved else 1,
                         max(np.dtype(t).itemsize for t in ds.dtypes), limits)
            factor = min(1.0, MAX_QUERY_SIDE / max(ds.width, ds.height))
            h, w = max(1, round(ds.height * factor)), max(1, round(ds.width * factor))
            resampling = Resampling.nearest if factor == 1.0 or palette else Resampling.bilinear
            raw = ds.read(indexes=uniq, out_shape=(len(uniq), h, w), resampling=resampling)
            masks = read_masks(ds, indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
            if palette:
                lut = np.zeros((256, 3), np.uint8)
                for value, rgba in ds.colormap(1).items():
                    if 0 <= value < 256:
                        lut[value] = rgba[:3]
                rgb = lut[np.clip(raw[0], 0, 255).astype(np.intp)].transpose(2, 0, 1)
            else:
                scale = compute_scale(ds, chosen)
                order = [uniq.index(b) for b in chosen]
                rgb = np.empty((3, h, w), np.uint8)
                for r0 in range(0, h, _STRIP_ROWS):  # the float64 stretch in strips: bounded temporaries
                    rgb[:, r0:r0 + _STRIP_ROWS] = scale.apply(raw[order, r0:r0 + _STRIP_ROWS])
    valid = (masks > 0).any(axis=0)
    if np.issubdtype(raw.dtype, np.floating):  # NaN / infinite samples are invalid, as in ingest (read_rgb)
        valid &= np.isfinite(raw).all(axis=0)
    if not valid.any():
        raise EmptyImageError("the uploaded TIFF has no valid pixels (every pixel is nodata, masked, NaN or "
                              "infinite); upload an image with data")
    rgb[:, ~valid] = 0
    return turned(np.ascontiguousarray(rgb.transpose(1, 2, 0)), turn)


__all__ = [
    "ALLOWED_FORMATS",
    "MAX_DECODED_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MAX_TIFF_IFDS",
    "SAFE_GDAL_OPTIONS",
    "UploadLimits",
    "UploadTooLarge",
    "check_jpeg_scans",
    "check_size",
    "check_tiff_blocks",
    "count_jpeg_scans",
    "decode_error_message",
    "decode_upload",
    "decoder_cause",
    "sniff_format",
    "tiff_blocks",
]
