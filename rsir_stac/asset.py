"""STAC asset choice: which asset(s) of an Item are tiled, and what their metadata says
about bands and nodata.

Order (the ``--asset`` key or keys when given): the first GeoTIFF asset with role
``visual``, then an asset keyed ``visual``, then three single-band GeoTIFF assets whose
common names (``eo:bands`` / STAC 1.1 ``bands``) are red, green and blue (Landsat
Collection 2, Sentinel-2 L2A without TCI: one composed scene, key ``"R,G,B"``), then the
first GeoTIFF asset with role ``data`` (warned about when it is one band, read in grey).
An asset is a GeoTIFF when its media type is ``image/tiff``/``...geotiff...`` or its href
ends in ``.tif``/``.tiff``.  Sources: the STAC Item spec (assets, roles), the ``eo`` and
``raster`` extensions (bands, common names, nodata) and STAC 1.1 ``bands``.
"""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any

import pystac

from .errors import AssetError, InputError

log = logging.getLogger(__name__)


def is_geotiff(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    if "tiff" in media:
        return True
    path = urllib.parse.urlsplit(asset.href).path.lower()
    return path.endswith((".tif", ".tiff"))


def choose_assets(item: pystac.Item, key: str | None) -> list[tuple[str, pystac.Asset]]:
    """The asset(s) to tile: one ``(key, asset)``, or three (R, G, B) single-band assets of a
    composed scene (``key`` ``"R,G,B"``, or found by common name); see the module docstring."""
    assets = item.assets
    available = ", ".join(list(assets)[:25]) + (" ..." if len(assets) > 25 else "")
    if key is not None:
        keys = asset_keys(key)
        missing = [k for k in keys if k not in assets]
        if missing:
            raise AssetError(f"item {item.id} has no asset {missing[0]!r} (assets: {available or 'none'}); "
                             "pass --asset with one of these" + (" (three, R,G,B)" if len(keys) == 3 else ""))
        if len(keys) == 1:
            return [(keys[0], assets[keys[0]])]
        return [_band_asset(item, k) for k in keys]
    if not assets:
        raise AssetError(f"item {item.id} has no assets at all; fix the item in the catalogue (it is skipped)")
    tiffs = [(k, a) for k, a in assets.items() if is_geotiff(a)]
    for k, a in tiffs:
        if "visual" in (a.roles or []):
            return [(k, a)]
    for k, a in tiffs:
        if k == "visual":
            return [(k, a)]
    composed = _rgb_assets(item)
    if composed is not None:
        return composed
    for k, a in tiffs:
        if "data" in (a.roles or []):
            if len(_band_list(a) or ()) == 1:
                hint = _rgb_key_hint(item)
                log.warning("item %s has no visual asset and no single-band assets whose band names say red, green and blue; indexing "
                            "asset %r, one band, in grey%s", item.id, k,
                            f" (for colour pass --asset {hint}, its R,G,B assets)" if hint else
                            " (for colour pass --asset KEY_R,KEY_G,KEY_B: three of its single-band asset keys, "
                            "for red, green and blue)")
            return [(k, a)]
    raise AssetError(_no_asset_message(item))


#: Media types of georeferenced rasters GDAL reads besides GeoTIFF (JPEG 2000, HDF, netCDF, VRT).
_RASTER_TYPES = ("tiff", "jp2", "hdf", "netcdf", "x-nc", "gdal-vrt")
#: Media types that say nothing of the content: the href's extension decides.
_OPAQUE_TYPES = ("application/octet-stream", "binary/octet-stream", "application/binary")
#: Extensions of files that are no georeferenced raster (pictures, metadata, tables, documents).
_NOT_RASTER_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".xml", ".json", ".geojson", ".txt",
                   ".html", ".htm", ".md", ".pdf", ".csv", ".parquet", ".zip", ".tar", ".gz", ".mtl", ".las",
                   ".laz", ".kml", ".kmz", ".gpkg", ".shp")


def may_be_raster(asset: pystac.Asset) -> bool:
    """Whether ``asset`` may be a raster GDAL reads as georeferenced (``--asset KEY`` can work):
    a GeoTIFF/COG, JPEG 2000, HDF, netCDF or VRT media type, or no telling media type and an href
    not ending like a picture or metadata file (``.png``, ``.jpg``, ``.xml``, ``.json`` ...)."""
    media = (asset.media_type or "").lower().strip()
    if media and not media.startswith(_OPAQUE_TYPES):
        return any(t in media for t in _RASTER_TYPES)
    path = urllib.parse.urlsplit(asset.href).path.lower()
    return not path.endswith(_NOT_RASTER_EXT)


def _what_asset_is(key: str, asset: pystac.Asset) -> str:
    """``'thumb' is image/png`` / ``'thumb' is a .png file`` (by its href, no media type)."""
    if asset.media_type:
        return f"{key!r} is {' '.join(asset.media_type.split())}"
    ext = os.path.splitext(urllib.parse.urlsplit(asset.href).path)[1]
    return f"{key!r} is a {ext or 'extension-less'} file with no media type"


def _no_asset_message(item: pystac.Item) -> str:
    """Why no asset of ``item`` was chosen, and the advice that works: ``--asset KEY`` naming the
    assets that may be georeferenced rasters, or (none) that the item has no GeoTIFF/COG asset."""
    assets = item.assets
    rasters = [k for k, a in assets.items() if may_be_raster(a)]
    others = [(k, a) for k, a in assets.items() if not may_be_raster(a)]
    if not rasters:
        shown = ", ".join(f"asset {_what_asset_is(k, a)}" for k, a in others[:8]) + (", ..." if len(others) > 8 else "")
        what = "not a GeoTIFF/COG" if len(others) == 1 else "none a GeoTIFF/COG"
        return (f"item {item.id} has no GeoTIFF/COG asset: {shown}, {what}; it cannot be tiled (rsir-stac reads "
                "georeferenced rasters): add a GeoTIFF/COG asset to the item, or ingest such a file directly")
    keys = ", ".join(rasters[:25]) + (" ..." if len(rasters) > 25 else "")
    skipped = "".join(f"; asset {_what_asset_is(k, a)}, not a GeoTIFF/COG" for k, a in others[:4]) + \
        ("; ..." if len(others) > 4 else "")
    hint = _rgb_key_hint(item)
    colour = f" (for colour: --asset {hint}, its R,G,B assets)" if hint else ""
    return (f"item {item.id} has no GeoTIFF/COG asset with role 'visual' or 'data' (rasters: {keys}{skipped}); "
            f"pass --asset KEY with one of the rasters{colour}")


def asset_keys(text: str) -> list[str]:
    """``--asset`` as a list of keys: one key, or three R,G,B keys separated by commas
    (InputError otherwise: the option is wrong for every item)."""
    keys = [k.strip() for k in str(text).split(",")] if "," in str(text) else [str(text)]
    if len(keys) not in (1, 3) or not all(keys) or (len(keys) == 3 and len(set(keys)) != 3):
        raise InputError(f"--asset {text!r} is invalid; give one asset key, or three different single-band "
                         "asset keys in R,G,B order, e.g. --asset red,green,blue")
    return keys


def _band_list(asset: pystac.Asset) -> list[Any] | None:
    """The asset's band list (``eo:bands``, else STAC 1.1 ``bands``, else ``raster:bands``), or None."""
    for name in ("eo:bands", "bands", "raster:bands"):
        bands = asset.extra_fields.get(name)
        if isinstance(bands, list):
            return bands
    return None


def _band_asset(item: pystac.Item, key: str) -> tuple[str, pystac.Asset]:
    """``(key, asset)`` of one channel of an ``--asset R,G,B`` list: a GeoTIFF asset that is
    one band by its metadata (or says nothing about its bands; band 1 is read)."""
    asset = item.assets[key]
    if not is_geotiff(asset):
        raise AssetError(f"item {item.id}: asset {key!r} is not a GeoTIFF ({asset.media_type or asset.href}); "
                         "pass --asset with three single-band GeoTIFF asset keys, R,G,B")
    count = len(_band_list(asset) or [None])
    if count != 1:
        raise AssetError(f"item {item.id}: asset {key!r} has {count} bands, not one; pass --asset {key} alone "
                         "(with --bands R,G,B), or three single-band asset keys R,G,B")
    return key, asset


def _single_common_name(asset: pystac.Asset, item: pystac.Item) -> str | None:
    """The common name of a GeoTIFF asset that is exactly one band, else None."""
    if not is_geotiff(asset):
        return None
    bands = asset.extra_fields.get("eo:bands")
    if not isinstance(bands, list):
        bands = asset.extra_fields.get("bands")
    if not isinstance(bands, list) or len(bands) != 1:
        return None
    return _common_name(bands[0], item.properties.get("eo:bands") or [])


def _rgb_assets(item: pystac.Item) -> list[tuple[str, pystac.Asset]] | None:
    """The (R, G, B) single-band GeoTIFF assets of ``item`` by common name (the first of each
    colour, those with role ``data`` first), or None when a colour is missing."""
    found: dict[str, tuple[str, pystac.Asset]] = {}
    ranked = sorted(item.assets.items(), key=lambda kv: "data" not in (kv[1].roles or []))
    for k, a in ranked:
        name = _single_common_name(a, item)
        if name in ("red", "green", "blue") and name not in found:
            found[name] = (k, a)
    if len(found) != 3:
        return None
    return [found["red"], found["green"], found["blue"]]


#: Asset keys of R, G, B in common products whose items may not name the bands' colours.
_RGB_KEYS = (("red", "green", "blue"), ("B04", "B03", "B02"), ("B4", "B3", "B2"),
             ("SR_B4", "SR_B3", "SR_B2"), ("SR_B4.TIF", "SR_B3.TIF", "SR_B2.TIF"))


def _rgb_key_hint(item: pystac.Item) -> str | None:
    """``"R,G,B"`` asset keys of ``item`` that ``--asset`` could compose (GeoTIFF assets keyed
    as Landsat or Sentinel-2 name the red, green and blue bands), or None."""
    lowered = {k.lower(): k for k, a in item.assets.items() if is_geotiff(a)}
    for triple in _RGB_KEYS:
        keys = [lowered.get(k.lower()) for k in triple]
        if all(keys):
            return ",".join(keys)  # type: ignore[arg-type]
    # keys that name a colour as one of their words (DEA's nbart_red, nbart_green, nbart_blue), one each
    import re

    words = {k: set(re.split(r"[^a-z0-9]+", low)) for low, k in lowered.items()}
    found = [[k for k, w in words.items() if colour in w] for colour in ("red", "green", "blue")]
    if all(len(f) == 1 for f in found):
        return ",".join(f[0] for f in found)
    return None


def _common_name(band: Any, item_bands: Sequence[Any]) -> str | None:
    if isinstance(band, int) and 0 <= band < len(item_bands):  # STAC <1.0 index into item eo:bands
        band = item_bands[band]
    if not isinstance(band, dict):
        return None
    name = band.get("common_name") or band.get("eo:common_name")
    return str(name).lower() if name else None


def rgb_bands(asset: pystac.Asset, item: pystac.Item) -> tuple[int, int, int] | None:
    """1-based (R, G, B) from the asset's eo:bands / bands common names, or None.

    An asset without a band list takes the Item's (``properties["eo:bands"]`` or
    ``"bands"``, which the eo extension allows when the bands are the item's) when it is
    the item's only GeoTIFF asset: with several, the list cannot say which file it describes.
    """
    item_bands = item.properties.get("eo:bands") or []
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands")
    if not isinstance(bands, list):
        bands = item.properties.get("eo:bands") or item.properties.get("bands")
        if not isinstance(bands, list) or sum(is_geotiff(a) for a in item.assets.values()) != 1:
            return None
    names = [_common_name(b, item_bands) for b in bands]
    if not all(c in names for c in ("red", "green", "blue")):
        return None
    return (names.index("red") + 1, names.index("green") + 1, names.index("blue") + 1)


def raster_nodata(asset: pystac.Asset) -> float | None:
    """The nodata value of the asset's ``raster:bands`` (raster extension; STAC 1.1 ``bands``
    with ``nodata``) when all bands that give one agree on a finite number, else None.  The
    reader uses it only when the file declares no nodata, mask or alpha of its own."""
    bands = asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands")
    if not isinstance(bands, list):
        return None
    values = {b.get("nodata") for b in bands if isinstance(b, dict) and b.get("nodata") is not None}
    if len(values) != 1:
        return None
    try:
        value = float(values.pop())
    except (TypeError, ValueError):  # "nan", "inf" strings: floats are masked as non-finite anyway
        return None
    return value if math.isfinite(value) else None


__all__ = ["asset_keys", "choose_assets", "is_geotiff", "may_be_raster", "raster_nodata", "rgb_bands"]
