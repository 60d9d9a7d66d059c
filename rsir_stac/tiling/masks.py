"""GDAL's per-band validity masks, read without rasterio's warning about them."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def read_masks(dataset: Any, **kwargs: Any) -> np.ndarray:
    """``dataset.read_masks(**kwargs)`` (uint8, 0 invalid, 255 valid; shape as rasterio gives it).

    A file that declares a nodata value and also has an alpha band makes rasterio warn
    (``NodataShadowWarning``) that the nodata value decides the masks, GDAL's rule (RFC 15):
    the tiles follow that rule, so the warning (a Python warning naming our source line) says
    nothing a user can act on and is not shown.
    """
    from rasterio.errors import NodataShadowWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NodataShadowWarning)
        return dataset.read_masks(**kwargs)
