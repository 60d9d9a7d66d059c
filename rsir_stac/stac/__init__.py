"""Turn STAC documents and GeoTIFF paths/URLs into scenes to tile.

A *source* is a local path or ``http(s)`` URL of:

* a STAC Item, Collection or Catalog (walked recursively; a Collection's id
  is given to the items below it unless an item names its own
  ``collection``),
* an ItemCollection (GeoJSON ``FeatureCollection`` of items),
* a GeoTIFF/COG (or any raster GDAL reads; also ``s3://``, ``gs://``,
  ``az://`` and ``/vsi...`` hrefs): one scene, ``item_id`` = file stem plus
  a digest of its resolved path or URL (:func:`raster_item_id`),
  ``collection`` None (or ``collection=``), ``asset_key`` ``"data"``, time
  from ``datetime=`` (an instant or interval), else GDAL's
  ``ACQUISITIONDATETIME`` (IMAGERY metadata), else the ``TIFFTAG_DATETIME``
  tag, when present,
* a local folder: its ``catalog.json``/``collection.json`` when present,
  else every ``*.tif``/``*.tiff`` below it (sorted).

The kind is decided from the content (TIFF magic bytes or JSON), not only
the extension.  Asset choice per item (the ``asset`` key or ``R,G,B`` keys when
given; else visual, then red/green/blue single-band assets, then data) and the
RGB bands and nodata an asset's metadata gives: :mod:`rsir_stac.asset`.

Failures: a source that does not exist, cannot be fetched, is not JSON, or is
JSON but not STAC raises (the run stops before anything is written).  An item
without a usable asset, an item link of a catalogue that is missing or not a
valid Item, a child-catalog link that cannot be read (``item_id``: its href;
the items below it are not listed) and a feature of an ItemCollection that is
not a valid Item (``item_id``: its id, else ``feature N of M``) each raise
(:class:`AssetError`, :class:`StacError` or :class:`SourceNotFoundError`,
carrying ``item_id``), or are passed to ``on_error`` and skipped: one broken
item or link does not stop a catalogue or an ItemCollection.  HTTP reads (documents and linked
children/items) time out after ``$RSIR_HTTP_TIMEOUT`` seconds (default 30).

Layout: :mod:`~rsir_stac.stac.scene` (the :class:`SceneRef` record),
:mod:`~rsir_stac.stac.hrefs` (hrefs, HTTP fetching, sniffing), :mod:`~rsir_stac.stac.items`
(item and asset resolution), :mod:`~rsir_stac.stac.catalog` (catalog walking) and
:mod:`~rsir_stac.stac.shard` (sharding); this module dispatches each source to them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from rsir_stac.asset import asset_keys
from rsir_stac.errors import InputError, RsirError, SourceNotFoundError, StacError
from rsir_stac.raster_source import DATE_TAGS, RasterDefaults, raster_item_id
from rsir_stac.stac.catalog import _scenes_from_json
from rsir_stac.stac.hrefs import (_FIX, _TIFF_MAGIC, _fetch, _is_cloud, _is_url, _looks_like_json, _parse_json,
                                  _rasterio_opens, _resolve, http_timeout)
from rsir_stac.stac.items import KEPT_PROPERTIES, _check_bands, _raster_scene, _utc
from rsir_stac.stac.scene import SceneRef
from rsir_stac.stac.shard import parse_shard, scene_shard, split_shard

log = logging.getLogger(__name__)


def _scenes_from_folder(
    folder: str,
    asset: str | None,
    bands: tuple[int, int, int] | None,
    on_error: Callable[[RsirError], None] | None,
    defaults: RasterDefaults | None = None,
) -> Iterator[SceneRef]:
    listing = walk_folder(folder)
    catalogues = listing.catalogues
    if catalogues and os.path.dirname(catalogues[0]) == os.path.abspath(folder):
        yield from _scenes_from_source(catalogues[0], asset, bands, on_error, defaults)
        return
    # a catalogue in a sub-folder is read as STAC: the rasters under it are its items' assets
    # (and their masks), not loose rasters with no date or collection
    if not listing.tiffs and not catalogues:
        links = listing.links
        held = (f" (linked folders are not followed: {', '.join(links[:3])}{' ...' if len(links) > 3 else ''}; "
                "pass each as a source of its own)" if links else "")
        raise StacError(f"{folder} is a folder with no catalog.json, collection.json or .tif files{held}; {_FIX}")
    warn_linked_folders(folder, listing.links)
    named: set[str] = set()  # rasters the catalogues' items name, wherever they lie: not loose rasters too
    for cat in catalogues:
        log.info("%s: reading the STAC catalogue %s (the rasters under it are its assets)", folder, cat)
        for scene in _scenes_from_source(cat, asset, bands, on_error, defaults):
            named.update(os.path.abspath(h) for h in (scene.href, *(scene.band_hrefs or ()))
                         if not _is_url(h) and not _is_cloud(h))
            yield scene
    for path in listing.tiffs:
        if os.path.abspath(path) not in named:
            yield _raster_scene(os.path.abspath(path), bands, defaults)


class FolderListing(NamedTuple):
    """What a folder source holds, from one walk (:func:`walk_folder`)."""

    catalogues: list[str]  # catalog.json / collection.json, absolute, the top-most of each sub-tree
    tiffs: list[Path]      # .tif/.tiff files outside those sub-trees, sorted
    links: list[str]       # symbolic links to folders, relative to the folder, sorted (not walked)


def walk_folder(folder: str | os.PathLike[str]) -> FolderListing:
    """One walk of a folder source, without following links to folders (serve's ingest roots are
    checked the same way): its STAC catalogues (a folder holding ``catalog.json`` or, else,
    ``collection.json`` is not walked further: its sub-catalogues are reached through its links and
    the rasters under it are its assets), the GeoTIFFs outside them, and the linked folders it left
    out (callers name them rather than skip them without a word)."""
    root = os.path.abspath(folder)
    catalogues: list[str] = []
    tiffs: list[Path] = []
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        name = next((n for n in ("catalog.json", "collection.json") if n in filenames
                     and os.path.isfile(os.path.join(dirpath, n))), None)
        if name is not None:
            catalogues.append(os.path.join(dirpath, name))
            dirnames[:] = []
            continue
        links += [os.path.relpath(os.path.join(dirpath, d), root) for d in dirnames
                  if os.path.islink(os.path.join(dirpath, d))]
        tiffs += [Path(dirpath, f) for f in filenames
                  if f.lower().endswith((".tif", ".tiff")) and os.path.isfile(os.path.join(dirpath, f))]
    return FolderListing(catalogues, sorted(tiffs), sorted(links))


def catalogues_in(folder: str | os.PathLike[str]) -> list[str]:
    """The STAC catalogues a folder source is read through (:func:`walk_folder`)."""
    return walk_folder(folder).catalogues


def warn_linked_folders(folder: str | os.PathLike[str], links: Sequence[str] | None = None,
                        what: str = "ingest") -> None:
    """Log one warning naming the linked folders under ``folder`` that were not walked (``links``, else
    from :func:`walk_folder`), with the fix."""
    links = walk_folder(folder).links if links is None else list(links)
    if links:
        shown = ", ".join(links[:3]) + (f" and {len(links) - 3} more" if len(links) > 3 else "")
        log.warning("%s: %d linked folder%s not read (%s): folders are walked without following links; pass each "
                    "linked folder as a source of its own (e.g. %s %s)", folder, len(links),
                    "" if len(links) == 1 else "s", shown, what, os.path.join(os.fspath(folder), links[0]))


def _scenes_from_source(
    src: str,
    asset: str | None,
    bands: tuple[int, int, int] | None,
    on_error: Callable[[RsirError], None] | None,
    defaults: RasterDefaults | None = None,
) -> Iterator[SceneRef]:
    if _is_cloud(src):  # s3:// gs:// az:// /vsi...: GDAL reads it (errors name the credentials to set)
        if urllib.parse.urlsplit(src).path.lower().endswith(".json"):
            raise StacError(f"{src}: STAC documents are read over http(s) only; give the document's https:// URL "
                            "(rasters on cloud storage are fine)")
        yield _raster_scene(src, bands, defaults)
        return
    if _is_url(src):
        path = urllib.parse.urlsplit(src).path.lower()
        if path.endswith((".tif", ".tiff")):
            yield _raster_scene(src, bands, defaults)
            return
        raw = _fetch(src)
        if raw[:4] in _TIFF_MAGIC:
            yield _raster_scene(src, bands, defaults)
            return
        if not _looks_like_json(raw[:64]):
            raise StacError(f"{src} is neither STAC JSON nor a GeoTIFF; {_FIX}")
        yield from _scenes_from_json(_parse_json(raw, src), src, asset, bands, on_error)
        return
    if src.startswith("file://"):
        src = _resolve(src, None)
    if not os.path.exists(src):
        raise SourceNotFoundError(f"{src} does not exist; check the path")
    src = os.path.abspath(src)
    if os.path.isdir(src):
        yield from _scenes_from_folder(src, asset, bands, on_error, defaults)
        return
    try:
        with open(src, "rb") as fh:
            head = fh.read(64)
    except PermissionError:
        raise SourceNotFoundError(f"{src} cannot be read (permission denied); give this user read access "
                                  "to the file, e.g. chmod a+r") from None
    if head[:4] in _TIFF_MAGIC:
        yield _raster_scene(src, bands, defaults)
        return
    if _looks_like_json(head):
        with open(src, "rb") as fh:
            d = _parse_json(fh.read(), src)
        yield from _scenes_from_json(d, src, asset, bands, on_error)
        return
    if _rasterio_opens(src):  # JPEG2000, VRT, ERDAS ... anything GDAL reads
        yield _raster_scene(src, bands, defaults)
        return
    raise StacError(f"{src} is neither STAC JSON nor a raster; {_FIX}")


def iter_scenes(
    sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    asset: str | None = None,
    bands: Sequence[int] | None = None,
    on_error: Callable[[RsirError], None] | None = None,
    collection: str | None = None,
    datetime: tuple[dt.datetime, dt.datetime] | None = None,
) -> Iterator[SceneRef]:
    """Yield one :class:`SceneRef` per item (or raster) of every source, in order.

    ``collection`` and ``datetime`` (``(start, end)``, equal for an instant)
    are given to bare rasters (not STAC items, which keep their own).

    ``asset`` picks the asset key for every item, or three single-band asset keys
    ``"R,G,B"`` composed into one scene (InputError for another count); ``bands``
    (1-based R,G,B) overrides bands found in ``eo:bands``.  Item-level :class:`AssetError` is
    raised unless ``on_error`` is given, in which case it is logged, passed to
    ``on_error`` and the item skipped.  Raises :class:`SourceNotFoundError`
    for a missing local source and :class:`StacError` for JSON that is not
    STAC or not JSON at all.
    """
    override = _check_bands(bands)
    if asset is not None:
        asset_keys(asset)
    if collection is not None and (not isinstance(collection, str) or not collection.strip()):
        raise InputError(f"collection {collection!r} is invalid; give a non-empty name, e.g. --collection my-rasters")
    start = end = None
    if datetime is not None:
        start, end = (_utc(v) for v in datetime)
        if start is None or end is None or end < start:
            raise InputError("datetime for rasters must be an instant or a closed interval START/END with "
                             "START <= END, e.g. --datetime 2020-06-01 or --datetime 2020-01-01/2020-12-31")
    defaults = RasterDefaults(collection=collection, start=start, end=end)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    for source in sources:
        yield from _scenes_from_source(os.fspath(source), asset, override, on_error, defaults)


__all__ = ["DATE_TAGS", "FolderListing", "KEPT_PROPERTIES", "RasterDefaults", "SceneRef", "catalogues_in",
           "http_timeout", "iter_scenes", "parse_shard", "raster_item_id", "scene_shard", "split_shard", "walk_folder",
           "warn_linked_folders"]
