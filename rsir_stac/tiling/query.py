"""Reading query images (any PNG/JPEG/WebP/GeoTIFF ...) as RGB ``uint8``.

Every decoder ends in the one pixel path (:mod:`rsir_stac.tiling.pixels`)
that ingest uses for scene tiles: a raster GDAL opens is read as it is; an
image Pillow decodes (after its EXIF orientation is applied) is first wrapped
as an in-memory raster with the same bands, colour table and alpha, so band
choice, palette expansion, stretch and masks are the same as for a tile.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rsir_stac.errors import EmptyImageError, ImageReadError, InputError, RasterError, SourceNotFoundError
from rsir_stac.tiling.pixels import as_on_the_map, pixel_plan, read_rgb
from rsir_stac.tiling.sources import _fetch_error, _is_url, gdal_env, open_dataset

#: Longer side cap for query images, in pixels (larger images are downsampled, bilinear).
MAX_QUERY_SIDE = 4096

_PIL_FIRST = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


def read_dataset_image(dataset: Any, *, bands: Sequence[int] | None = None,
                       max_side: int = MAX_QUERY_SIDE) -> np.ndarray:
    """An open rasterio dataset (a file, a ``MemoryFile`` upload ...) as one
    ``H x W x 3`` RGB ``uint8`` query image, through the tiles' pixel path.

    The whole raster is read; when its longer side exceeds ``max_side`` pixels
    it is downsampled (bilinear) to that size.  Raises :class:`RasterError` /
    :class:`InputError` for bands the raster does not have; GDAL errors
    propagate.
    """
    with gdal_env():
        plan = pixel_plan(dataset, bands)
        factor = min(1.0, max_side / max(dataset.width, dataset.height))
        shape = (max(1, round(dataset.height * factor)), max(1, round(dataset.width * factor)))
        pixels, valid = read_rgb(dataset, plan, Window(0, 0, dataset.width, dataset.height), shape)
    if valid is not None and not valid.any():
        raise EmptyImageError("has no valid pixels (every pixel is nodata, masked or transparent); "
                              "search by an image with data")
    return as_on_the_map(pixels, dataset)


@contextlib.contextmanager
def pil_dataset(img: Any) -> Iterator[Any]:
    """A Pillow image as an open in-memory rasterio dataset with the same bands:
    grey (``L``, 16-bit ``I;16``, ``I``, ``F``), grey + alpha, RGB, RGB + alpha,
    or one band with the colour table of a palette image (``P``; with
    transparency it becomes RGB + alpha).  Other modes are converted to RGB.
    """
    from rasterio.io import MemoryFile

    mode = img.mode
    colormap = None
    if mode == "P" and "transparency" not in img.info:
        pal = img.getpalette() or []
        colormap = {i: (pal[3 * i], pal[3 * i + 1], pal[3 * i + 2], 255) for i in range(len(pal) // 3)}
        arr = np.asarray(img, dtype=np.uint8)[None]
        interp = [ColorInterp.palette]
    else:
        if mode in ("P", "PA"):
            img, mode = img.convert("RGBA"), "RGBA"
        elif mode == "1":
            img, mode = img.convert("L"), "L"
        elif mode.startswith("I;16"):
            img, mode = img.convert("I;16"), "I;16"
        elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
            img, mode = img.convert("RGB"), "RGB"
        if mode == "I;16":
            a = np.asarray(img, dtype=np.uint16)
        else:
            a = np.asarray(img)
        arr = a[None] if a.ndim == 2 else np.moveaxis(a, 2, 0)
        interp = {"L": [ColorInterp.gray], "I;16": [ColorInterp.gray], "I": [ColorInterp.gray],
                  "F": [ColorInterp.gray], "LA": [ColorInterp.gray, ColorInterp.alpha],
                  "RGB": [ColorInterp.red, ColorInterp.green, ColorInterp.blue],
                  "RGBA": [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]}[mode]
    arr = np.ascontiguousarray(arr)
    count, height, width = arr.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=width, height=height, count=count, dtype=arr.dtype.name,
                          photometric="PALETTE" if colormap else None) as dst:
                dst.write(arr)
                if colormap:
                    dst.write_colormap(1, colormap)
                else:
                    dst.colorinterp = interp
            with mem.open() as ds:
                yield ds


def _read_with_pil(path: Any, bands: Sequence[int] | None) -> np.ndarray:
    """Decode with Pillow (a path or a binary file object), then the pixel path."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        with pil_dataset(img) as ds:
            return read_dataset_image(ds, bands=bands)


def _read_with_rasterio(path: str, bands: Sequence[int] | None) -> np.ndarray:
    """Decode with GDAL (a path, URL or ``/vsimem/`` name), then the pixel path."""
    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_dataset(str(path)) as ds:
                return read_dataset_image(ds, bands=bands)
    except (RasterioError, CPLE_BaseError) as err:
        fetch = _fetch_error(str(path), err)
        if fetch is not None:
            raise fetch from err
        raise


def check_image_path(name: str) -> None:
    """Refuse a local image path that is missing (SourceNotFoundError), a folder, not a regular
    file (a named pipe, a device such as ``/dev/zero``, a socket: reading one would block or never
    end) or unreadable (ImageReadError), with a one-line fix.  Nothing is opened."""
    import stat

    from rsir_stac.tiling.sources import file_kind

    if not os.path.exists(name):
        raise SourceNotFoundError(f"{name} does not exist; check the path")
    if os.path.isdir(name):
        raise ImageReadError(f"{name} is a folder; give a PNG/JPEG/WebP/GeoTIFF image")
    mode = os.stat(name).st_mode
    if not stat.S_ISREG(mode):
        raise ImageReadError(f"{name} is {file_kind(mode)}, not a regular file; query images are read from "
                             "regular files only: save the image to a PNG/JPEG/WebP/GeoTIFF file and give that")
    if not os.access(name, os.R_OK):
        raise ImageReadError(f"{name} cannot be read (permission denied); give this user read access "
                             "to the file, e.g. chmod a+r")


def read_image(path: str | os.PathLike[str], *, bands: Sequence[int] | None = None) -> np.ndarray:
    """Read any query image as ``H x W x 3`` RGB ``uint8``.

    PNG/JPEG/WebP/BMP/GIF are decoded by Pillow first, TIFFs and other
    extensions by rasterio first (each falls back to the other); both end in
    the scene tiles' pixel path (:func:`read_dataset_image`: same bands,
    palette, stretch and masks; longer side capped at :data:`MAX_QUERY_SIDE`).
    Raises :class:`ImageReadError` when neither can decode it, :class:`EmptyImageError`
    when every pixel is nodata, masked or transparent,
    :class:`SourceNotFoundError` when a path or URL cannot be read.
    """
    name = os.fspath(path)
    if not _is_url(name):
        check_image_path(name)
    ext = Path(name.split("?", 1)[0]).suffix.lower()
    pil_first = ext in _PIL_FIRST
    readers = [_read_with_pil, _read_with_rasterio] if pil_first else [_read_with_rasterio, _read_with_pil]
    first: BaseException | None = None
    for reader in readers:
        try:
            image = reader(name, bands)
        except (RasterError, InputError, SourceNotFoundError) as err:
            if "/vsimem/" in str(err):  # an image Pillow decoded is an in-memory raster: name the file
                raise type(err)(re.sub(r"/vsimem/\S+", name, str(err))) from None
            raise
        except EmptyImageError as err:
            raise EmptyImageError(f"{name} {err}") from None
        except Exception as err:  # noqa: BLE001 - try the next decoder
            first = first or err
            continue
        if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            continue
        return image
    from rsir_stac.decoder_errors import decoder_cause  # GDAL's own words, not "Read failed. See previous exception"

    detail = f" ({decoder_cause(first)})" if first is not None else ""
    raise ImageReadError(f"{name} cannot be decoded as an image{detail}; give a PNG/JPEG/WebP/GeoTIFF image")


__all__ = ["MAX_QUERY_SIDE", "check_image_path", "pil_dataset", "read_dataset_image", "read_image"]
