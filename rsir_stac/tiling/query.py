"""Reading query images (any PNG/JPEG/WebP/GeoTIFF ...) as RGB ``uint8``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning

from rsir_stac.errors import ImageReadError, InputError, RasterError, SourceNotFoundError
from rsir_stac.tiling.bands import select_bands
from rsir_stac.tiling.scaling import compute_scale, percentile_rule
from rsir_stac.tiling.sources import _is_url, _one_line, gdal_env

#: Longer side cap for :func:`read_image` when it reads through rasterio.
MAX_QUERY_SIDE = 4096

_PIL_FIRST = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


def _read_with_pil(path: str, bands: Sequence[int] | None) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            grey = np.asarray(img, dtype=np.float64)
            stack = np.stack([grey, grey, grey])
            rgb = percentile_rule(stack).apply(stack)
            return np.ascontiguousarray(rgb.transpose(1, 2, 0))
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _read_with_rasterio(path: str, bands: Sequence[int] | None) -> np.ndarray:
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            if bands is None and ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette:
                raise ValueError("palette image: decoded by Pillow")  # Pillow applies the colour map
            chosen = select_bands(ds, bands)
            scale = compute_scale(ds, chosen)
            factor = min(1.0, MAX_QUERY_SIDE / max(ds.width, ds.height))
            h, w = max(1, round(ds.height * factor)), max(1, round(ds.width * factor))
            uniq = sorted(set(chosen))
            resampling = Resampling.nearest if factor == 1.0 else Resampling.bilinear
            raw = ds.read(indexes=uniq, out_shape=(len(uniq), h, w), resampling=resampling)
            masks = ds.read_masks(indexes=uniq, out_shape=(len(uniq), h, w), resampling=Resampling.nearest)
    valid = (masks > 0).any(axis=0)
    rgb = scale.apply(raw[[uniq.index(b) for b in chosen]])
    rgb[:, ~valid] = 0
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def read_image(path: str | os.PathLike[str], *, bands: Sequence[int] | None = None) -> np.ndarray:
    """Read any query image as ``H x W x 3`` RGB ``uint8``.

    PNG/JPEG/WebP/BMP/GIF are decoded by Pillow first (16-bit/float grey gets
    the p2–p98 stretch); TIFFs and other extensions by rasterio first, with
    the same band rule and stretch as scene tiles (longer side capped at
    :data:`MAX_QUERY_SIDE`); each falls back to the other decoder.  Raises
    :class:`ImageReadError` when neither can decode it.
    """
    name = os.fspath(path)
    if not _is_url(name):
        if not os.path.exists(name):
            raise SourceNotFoundError(f"{name} does not exist; check the path")
        if os.path.isdir(name):
            raise ImageReadError(f"{name} is a folder; give a PNG/JPEG/WebP/GeoTIFF image")
    ext = Path(name.split("?", 1)[0]).suffix.lower()
    pil_first = ext in _PIL_FIRST
    readers = [_read_with_pil, _read_with_rasterio] if pil_first else [_read_with_rasterio, _read_with_pil]
    first: BaseException | None = None
    for reader in readers:
        try:
            image = reader(name, bands)
        except (RasterError, InputError):
            raise
        except Exception as err:  # noqa: BLE001 - try the next decoder
            first = first or err
            continue
        if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            continue
        return image
    detail = f" ({_one_line(first)})" if first is not None else ""
    raise ImageReadError(f"{name} cannot be decoded as an image{detail}; give a PNG/JPEG/WebP/GeoTIFF image")


__all__ = ["MAX_QUERY_SIDE", "read_image"]
