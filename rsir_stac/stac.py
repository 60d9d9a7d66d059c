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
JSON but not STAC raises (the run stops before anything is written), and so
does a child catalog of it that cannot be read; an item without a usable
asset, or an item link of a catalogue that is missing or not a valid Item,
raises (:class:`AssetError`, :class:`StacError` or
:class:`SourceNotFoundError`, carrying ``item_id``), or is passed to
``on_error`` and skipped: one broken item does not stop a catalogue.  HTTP reads (documents and linked
children/items) time out after ``$RSIR_HTTP_TIMEOUT`` seconds (default 30).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
import pystac.stac_io
from pystac.serialization import identify_stac_object_type

from .asset import asset_keys, choose_assets, raster_nodata, rgb_bands
from .errors import AssetError, InputError, RsirError, SourceNotFoundError, StacError
from .raster_source import DATE_TAGS, RasterDefaults, _tiff_datetime, raster_item_id

log = logging.getLogger(__name__)

#: Item properties copied into :attr:`SceneRef.properties` when present.
KEPT_PROPERTIES = (
    "gsd",
    "platform",
    "constellation",
    "instruments",
    "eo:cloud_cover",
    "proj:epsg",
    "proj:code",
    "title",
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_URL_SCHEMES = ("http", "https")
_FIX = "pass a STAC Item/Collection/Catalog/ItemCollection JSON or a GeoTIFF/COG"


@dataclass(frozen=True)
class SceneRef:
    """One raster to tile: the item and asset it comes from and where it is.

    ``href`` is an absolute path or URL; ``bands`` are 1-based (R, G, B) band
    numbers when known; ``datetime`` is timezone-aware UTC; ``properties``
    holds a JSON-friendly subset of the item properties (e.g. ``gsd``).
    """

    item_id: str
    collection: str | None
    asset_key: str
    href: str
    bands: tuple[int, int, int] | None = None
    datetime: dt.datetime | None = None
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    end_datetime: dt.datetime | None = None
    from_stac: bool = True  # False for a bare raster (no STAC item)
    #: the asset's raster:bands nodata (one value for all bands), if any; for a composed scene
    #: the R, G, B assets' values (each may be None)
    nodata: float | tuple[float | None, float | None, float | None] | None = None
    nominal: dt.datetime | None = None  # an interval item's own ``datetime`` (its nominal time), if any
    #: the R, G, B single-band files of a scene composed from three assets (``href`` is the first), else None
    band_hrefs: tuple[str, str, str] | None = None

    @property
    def identity_collection(self) -> str | None:
        """The collection that is part of the tiles' identity (point ids): a STAC item's
        collection; None for a bare raster, whose ``--collection`` is a label only, so
        adding or changing it later updates the tiles instead of duplicating them."""
        return self.collection if self.from_stac else None

    @property
    def interval(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The time the scene covers, ``(start, end)`` (equal for one instant; None when undated)."""
        if self.datetime is None:
            return (None, None)
        return (self.datetime, self.end_datetime or self.datetime)


# ------------------------------------------------------------------------- helpers


def _is_url(href: str) -> bool:
    return urllib.parse.urlsplit(href).scheme.lower() in _URL_SCHEMES


_CLOUD_PREFIXES = ("s3://", "gs://", "az://", "azure://", "oss://", "/vsi")


def _is_cloud(href: str) -> bool:
    """A cloud-storage or GDAL virtual-file href, read by GDAL only."""
    return href.lower().startswith(_CLOUD_PREFIXES)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _resolve(href: str, base: str | None) -> str:
    """``href`` made absolute against the document at ``base``."""
    if _is_cloud(href):
        return href
    parts = urllib.parse.urlsplit(href)
    if parts.scheme == "file":
        return os.path.normpath(urllib.parse.unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # URL (a 1-letter scheme is a drive)
        return href
    if os.path.isabs(href):
        return _decoded_if_missing(os.path.normpath(href))
    if base is None:
        return _decoded_if_missing(os.path.abspath(href))
    if _is_url(base):
        return urllib.parse.urljoin(base, href)
    base_path = _resolve(base, None)
    return _decoded_if_missing(os.path.normpath(os.path.join(os.path.dirname(base_path), href)))


def _decoded_if_missing(path: str) -> str:
    """``path``, or its percent-decoded form when only that exists: a STAC href is a URI
    reference (RFC 3986), so ``my%20scene.tif`` names ``my scene.tif``; a file really named
    with ``%20`` is kept."""
    if "%" not in path or os.path.exists(path):
        return path
    decoded = urllib.parse.unquote(path)
    return decoded if os.path.exists(decoded) else path


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _check_bands(bands: Sequence[int] | None) -> tuple[int, int, int] | None:
    if bands is None:
        return None
    try:
        chosen = tuple(int(b) for b in bands)
    except (TypeError, ValueError):
        chosen = ()
    if len(chosen) == 1:
        chosen = chosen * 3
    if len(chosen) != 3 or min(chosen) < 1:
        raise InputError(f"bands={bands!r} is invalid; give three 1-based band numbers R,G,B, e.g. --bands 4,3,2")
    return chosen  # type: ignore[return-value]


# ----------------------------------------------------------------------- sniffing


def http_timeout() -> float:
    """Seconds to wait on one HTTP request: ``$RSIR_HTTP_TIMEOUT`` or 30."""
    text = os.environ.get("RSIR_HTTP_TIMEOUT") or "30"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"RSIR_HTTP_TIMEOUT={text!r} is invalid; give a positive number of seconds")
    return value


def _fetch(url: str, limit: int | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "rsir-stac"})
    timeout = http_timeout()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user-given URL
            return response.read(limit) if limit else response.read()
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise SourceNotFoundError(f"{url} does not exist (HTTP {err.code}); check the URL") from err
        raise SourceNotFoundError(f"{url} cannot be fetched (HTTP {err.code}); check the URL and the server") from err
    except (TimeoutError, socket.timeout) as err:
        raise SourceNotFoundError(
            f"{url} timed out after {timeout:g} s; check the server, or allow more time with RSIR_HTTP_TIMEOUT=SECONDS"
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise SourceNotFoundError(
                f"{url} timed out after {timeout:g} s; check the server, or allow more time with RSIR_HTTP_TIMEOUT=SECONDS"
            ) from err
        raise SourceNotFoundError(f"{url} cannot be fetched ({_one_line(err)}); check the URL and the network") from err


class _StacIO(pystac.stac_io.DefaultStacIO):
    """pystac I/O whose HTTP reads time out and fail with one-line errors."""

    def read_text_from_href(self, href: str) -> str:
        if _is_url(href):
            raw = _fetch(href)
            try:
                return raw.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                raise StacError(f"{href} is not UTF-8 text; {_FIX}") from err
        return super().read_text_from_href(href)


def _parse_json(raw: bytes, src: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise StacError(f"{src} is not UTF-8 text; {_FIX}") from err
    except json.JSONDecodeError as err:
        raise StacError(f"{src} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); fix the file or {_FIX}") from err


def _looks_like_json(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text[:1] in (b"{", b"[")


def _rasterio_opens(path: str) -> bool:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path):
                return True
    except RasterioError:
        return False


# ------------------------------------------------------------------------ rasters


def _raster_scene(href: str, bands: tuple[int, int, int] | None,
                  defaults: RasterDefaults | None = None) -> SceneRef:
    d = defaults or RasterDefaults()
    start, end = (d.start, d.end) if d.start is not None else (_tiff_datetime(href), None)
    return SceneRef(
        item_id=raster_item_id(href),
        collection=d.collection,
        asset_key="data",
        href=href,
        bands=bands,
        datetime=start,
        end_datetime=end if end != start else None,
        from_stac=False,
    )


# --------------------------------------------------------------------------- STAC


def _stac_kind(d: Any) -> str | None:
    """"item", "collection", "catalog", "itemcollection" or None (not STAC)."""
    if not isinstance(d, dict):
        return None
    kind = d.get("type")
    if kind == "FeatureCollection" and isinstance(d.get("features"), list):
        feats = d["features"]
        if all(isinstance(f, dict) and f.get("type") == "Feature" and "assets" in f for f in feats):
            return "itemcollection"
        return None
    if "stac_version" not in d:
        return None
    if kind == "Feature":
        return "item"
    if kind in ("Collection", "Catalog"):
        return kind.lower()
    try:
        ident = identify_stac_object_type(d)
    except Exception:  # noqa: BLE001 - unidentifiable means not STAC
        return None
    return {
        pystac.STACObjectType.ITEM: "item",
        pystac.STACObjectType.COLLECTION: "collection",
        pystac.STACObjectType.CATALOG: "catalog",
    }.get(ident)  # type: ignore[arg-type]


def _prop_datetime(item: pystac.Item, key: str) -> dt.datetime | None:
    value = item.properties.get(key)
    if isinstance(value, str):
        try:
            return _utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            log.debug("item %s: unparsable %s %r", item.id, key, value)
    return None


def _item_datetime(item: pystac.Item) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``(start, end)`` of an item: ``start_datetime``..``end_datetime`` when both
    are given (an interval, whatever ``datetime`` says), else ``datetime`` (end
    None); a lone ``start_datetime`` is taken as an instant."""
    start, end = _prop_datetime(item, "start_datetime"), _prop_datetime(item, "end_datetime")
    if start is not None and end is not None and end >= start:
        return start, (end if end != start else None)
    if start is not None and end is not None:  # the STAC spec asks start <= end
        log.warning("item %s: start_datetime %s is after end_datetime %s; using %s", item.id, start.isoformat(),
                    end.isoformat(), "its datetime" if item.datetime is not None else "start_datetime alone")
    if item.datetime is not None:
        return _utc(item.datetime), None
    return start, None


def _properties(item: pystac.Item, asset: pystac.Asset) -> dict[str, Any]:
    props = {k: item.properties[k] for k in KEPT_PROPERTIES if item.properties.get(k) is not None}
    gsd = asset.extra_fields.get("gsd")
    if gsd is not None:
        props["gsd"] = gsd
    return props


def _scene_from_item(
    item: pystac.Item,
    collection: str | None,
    doc_href: str,
    asset: str | None,
    bands: tuple[int, int, int] | None,
) -> SceneRef:
    try:
        chosen = choose_assets(item, asset)
    except AssetError as err:
        err.item_id = item.id  # type: ignore[attr-defined]
        raise
    base = item.get_self_href() or doc_href
    start, end = _item_datetime(item)
    nominal = _utc(item.datetime) if item.datetime is not None and end is not None else None
    key, first = chosen[0]
    hrefs = tuple(_resolve(a.href, base) for _, a in chosen)
    composed = len(chosen) == 3
    nodata: Any = tuple(raster_nodata(a) for _, a in chosen) if composed else raster_nodata(first)
    return SceneRef(
        item_id=item.id,
        collection=item.collection_id or collection,
        asset_key=",".join(k for k, _ in chosen),
        href=hrefs[0],
        bands=bands or ((1, 2, 3) if composed else rgb_bands(first, item)),
        datetime=start,
        end_datetime=end,
        properties=_properties(item, first),
        nodata=None if composed and not any(v is not None for v in nodata) else nodata,
        nominal=nominal if nominal is not None and start <= nominal <= end else None,
        band_hrefs=hrefs if composed else None,  # type: ignore[arg-type]
    )


def _invalid(src: str, kind: str, err: BaseException) -> StacError:
    return StacError(f"{src} is not a valid STAC {kind} ({_one_line(err)}); fix the document or {_FIX}")


def _link_error(href: str, parent: str, err: BaseException) -> RsirError:
    """A one-line error for a link that cannot be followed."""
    cause: BaseException | None = err
    while isinstance(cause, pystac.STACError) and cause.__cause__ is not None:
        cause = cause.__cause__
    where = f"{href} (linked from {parent})"
    if isinstance(cause, RsirError):  # from _StacIO: already names the URL and the fix
        return type(cause)(f"linked from {parent}: {cause}")
    if isinstance(cause, FileNotFoundError):
        return SourceNotFoundError(f"{where} does not exist; fix the link or the catalog")
    if isinstance(cause, json.JSONDecodeError):
        return StacError(f"{where} is not valid JSON ({cause.msg}); fix the file")
    if isinstance(cause, (pystac.STACError, KeyError, TypeError, ValueError)):
        return _invalid(where, "object", cause)
    return SourceNotFoundError(f"{where} cannot be read ({_one_line(cause or err)}); fix the link or check the network")


def _walk(
    cat: pystac.Catalog, root: pystac.Catalog, collection: str | None, seen: set[str]
) -> Iterator[tuple[pystac.Item | RsirError, str | None]]:
    """Items below ``cat`` (its items first, then its children, in link order).  An item link
    that cannot be read or is not a valid Item is yielded as its error (carrying ``item_id``,
    the link's file stem): one broken item of a catalogue fails alone, like an item without
    a usable asset.  A child catalog that cannot be read stops the walk (raised)."""
    self_href = cat.get_self_href() or cat.id
    if self_href in seen:
        return
    seen.add(self_href)
    if isinstance(cat, pystac.Collection):
        collection = cat.id
    for rel, want in ((pystac.RelType.ITEM, pystac.Item), (pystac.RelType.CHILD, pystac.Catalog)):
        for link in cat.get_links(rel):
            href = link.get_absolute_href() or link.href
            try:
                target = link.resolve_stac_object(root=root).target
            except Exception as err:  # noqa: BLE001 - classified into one-line errors
                failure = _link_error(href, self_href, err)
                if want is not pystac.Item:
                    raise failure from err
                failure.item_id = os.path.splitext(os.path.basename(urllib.parse.urlsplit(href).path))[0]  # type: ignore[attr-defined]
                yield failure, collection
                continue
            if not isinstance(target, want):
                raise StacError(f"{href} (linked from {self_href} as {rel}) is not a STAC {want.__name__}; fix the link")
            if isinstance(target, pystac.Item):
                yield target, collection
            else:
                yield from _walk(target, root, collection, seen)


def _scenes_from_json(
    d: Any,
    src: str,
    asset: str | None,
    bands: tuple[int, int, int] | None,
    on_error: Callable[[RsirError], None] | None,
) -> Iterator[SceneRef]:
    kind = _stac_kind(d)
    if kind is None:
        raise StacError(f"{src} is JSON but not a STAC Item, Collection, Catalog or ItemCollection; {_FIX}")
    try:
        if kind == "item":
            pairs: Iterable[tuple[pystac.Item, str | None]] = [(pystac.Item.from_dict(d, href=src, migrate=True), None)]
        elif kind == "itemcollection":
            items = pystac.ItemCollection.from_dict(d, preserve_dict=False).items
            pairs = [(it, None) for it in items]
        else:
            root = pystac.read_dict(d, href=src, stac_io=_StacIO())
            if not isinstance(root, pystac.Catalog):
                raise StacError(f"{src} is not a STAC catalog; {_FIX}")
            pairs = _walk(root, root, None, set())
    except (pystac.STACError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, RsirError):
            raise
        raise _invalid(src, kind, err) from err
    count = 0
    for item, collection in pairs:
        count += 1
        try:
            if isinstance(item, RsirError):  # an item link of a catalogue that could not be read
                raise item
            yield _scene_from_item(item, collection, src, asset, bands)
        except (AssetError, StacError, SourceNotFoundError) as err:
            if on_error is None:
                raise
            log.info("skipping item: %s", err)
            on_error(err)
    if count == 0:
        log.warning("%s contains no STAC items", src)


def _scenes_from_folder(
    folder: str,
    asset: str | None,
    bands: tuple[int, int, int] | None,
    on_error: Callable[[RsirError], None] | None,
    defaults: RasterDefaults | None = None,
) -> Iterator[SceneRef]:
    for name in ("catalog.json", "collection.json"):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            yield from _scenes_from_source(candidate, asset, bands, on_error, defaults)
            return
    tiffs = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
    if not tiffs:
        raise StacError(f"{folder} is a folder with no catalog.json, collection.json or .tif files; {_FIX}")
    for path in tiffs:
        yield _raster_scene(os.path.abspath(path), bands, defaults)


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


# ------------------------------------------------------------------------ sharding


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` into ``(I, N)`` with ``0 <= I < N``."""
    try:
        left, right = str(text).strip().split("/")
        index, total = int(left), int(right)
    except ValueError:
        index, total = -1, 0
    if total < 1 or not 0 <= index < total:
        raise InputError(f"shard {text!r} is invalid; use I/N with 0 <= I < N, e.g. --shard 0/4")
    return index, total


def scene_shard(scene: SceneRef, total: int) -> int:
    """The shard (0..total-1) of ``scene``: sha1 of ``item_id + "/" + asset_key`` mod ``total``."""
    digest = hashlib.sha1(f"{scene.item_id}/{scene.asset_key}".encode()).hexdigest()
    return int(digest, 16) % total


def split_shard(scenes: Iterable[SceneRef], shard: tuple[int, int] | None) -> Iterator[SceneRef]:
    """Keep the scenes of shard ``(I, N)`` (all of them when ``shard`` is None)."""
    if shard is None:
        return iter(scenes)
    index, total = shard
    if total < 1 or not 0 <= index < total:
        raise InputError(f"shard {index}/{total} is invalid; use I/N with 0 <= I < N, e.g. --shard 0/4")
    return (scene for scene in scenes if scene_shard(scene, total) == index)


__all__ = ["DATE_TAGS", "RasterDefaults", "SceneRef", "iter_scenes", "raster_item_id", "parse_shard", "scene_shard", "split_shard"]
