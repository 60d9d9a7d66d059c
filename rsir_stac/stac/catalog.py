"""Catalog walking: a STAC JSON document recognised (Item, Collection, Catalog,
ItemCollection), catalogs walked recursively through their item and child links, and every
item made a scene; a broken item link fails that item alone, a broken child catalog the walk."""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pystac
from pystac.serialization import identify_stac_object_type

from rsir_stac.errors import AssetError, RsirError, SourceNotFoundError, StacError
from rsir_stac.stac.hrefs import _FIX, _one_line, _StacIO
from rsir_stac.stac.items import _scene_from_item
from rsir_stac.stac.scene import SceneRef

log = logging.getLogger(__name__)


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
    from rsir_stac.stac.leapseconds import read_leap_seconds

    if kind in ("item", "itemcollection"):
        read_leap_seconds(d)
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
