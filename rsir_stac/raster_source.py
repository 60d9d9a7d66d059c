"""Bare raster sources (a GeoTIFF path or URL, not STAC): their identity and acquisition time.

See README, "Scene identity": a bare raster's item id is its file stem plus a
digest of its resolved path or URL (:func:`raster_item_id`); its time comes
from ``ingest --datetime``, else from GDAL metadata (:data:`DATE_TAGS`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_URL_SCHEMES = ("http", "https")
_CLOUD_PREFIXES = ("s3://", "gs://", "az://", "azure://", "oss://", "/vsi")


def _is_remote(href: str) -> bool:
    return (urllib.parse.urlsplit(href).scheme.lower() in _URL_SCHEMES
            or href.lower().startswith(_CLOUD_PREFIXES))


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


#: GDAL metadata items holding an acquisition time, most specific first: (domain, key).
DATE_TAGS = (("IMAGERY", "ACQUISITIONDATETIME"), ("", "ACQUISITIONDATETIME"), ("", "TIFFTAG_DATETIME"))


def parse_tag_datetime(value: str) -> dt.datetime | None:
    """A GDAL metadata time ("YYYY:MM:DD HH:MM:SS", ISO 8601 ...; naive = UTC) or None."""
    text = value.strip().rstrip("\x00").strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    try:
        return _utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def tag_has_zone(value: str) -> bool:
    """Whether a GDAL metadata time names its zone (``Z`` or an offset); TIFF's own
    ``YYYY:MM:DD HH:MM:SS`` never does."""
    text = value.strip().rstrip("\x00").strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _tiff_datetime(href: str) -> dt.datetime | None:
    """The acquisition time GDAL exposes for a raster (:data:`DATE_TAGS`), or None."""
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    from rasterio._err import CPLE_BaseError

    from rsir_stac.errors import RasterError
    from rsir_stac.tiling import gdal_env
    from rsir_stac.tiling.sources import open_dataset

    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_dataset(href) as ds:
                tags = {dom: ds.tags(ns=dom) if dom else ds.tags() for dom in {d for d, _ in DATE_TAGS}}
    except (RasterioError, CPLE_BaseError, RasterError) as err:  # the scene's own read reports it
        log.debug("cannot read tags of %s: %s", href, err)
        return None
    for dom, key in DATE_TAGS:
        value = tags.get(dom, {}).get(key)
        if value:
            when = parse_tag_datetime(value)
            if when is not None:
                if not tag_has_zone(value):
                    log.warning("%s: its %s tag %r has no time zone; it is taken as UTC (TIFF times are often "
                                "local: give the time with --datetime if it is not UTC)", href, key, value.strip())
                return when
            log.warning("%s: its %s tag %r is not a date; the raster is indexed without a date (give one with "
                        "--datetime)", href, key, value)
    return None


def raster_item_id(href: str) -> str:
    """The item id of a bare raster: its file stem, ``-``, and the first 12 hex
    digits of the SHA-256 of its resolved path (symlinks followed) or URL.

    Unique per source, so two files named ``T33TWL.tif`` in different folders
    never share points, and stable, so ingesting the same file again is
    idempotent.  Moving the file (or changing a URL's query string) gives it a
    new id.
    """
    if _is_remote(href):
        key, name = href, urllib.parse.unquote(urllib.parse.urlsplit(href).path)
    else:
        key = name = os.path.realpath(href)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{Path(name).stem}-{digest}"


@dataclass(frozen=True)
class RasterDefaults:
    """What bare rasters (not STAC) are given: a collection and a time (an instant,
    ``start == end``, or an interval); None leaves them unset / read from tags."""

    collection: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None



__all__ = ["DATE_TAGS", "RasterDefaults", "parse_tag_datetime", "raster_item_id", "tag_has_zone"]
