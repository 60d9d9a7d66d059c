"""Catalog walking: a STAC JSON document recognised (Item, Collection, Catalog,
ItemCollection), catalogs walked recursively through their item and child links, and every
item made a scene.  A broken item link, a broken child-catalog link (its items are not
listed) and an invalid feature of an ItemCollection each fail alone: the rest is listed."""

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
from rsir_stac.stac.hrefs import _FIX, LOCAL_IN_REMOTE_FIX, _is_url, _one_line, _StacIO, network_href
from rsir_stac.stac.items import _scene_from_item
from rsir_stac.stac.scene import SceneRef

log = logging.getLogger(__name__)


def _stac_kind(d: Any) -> str | None:
    """"item", "collection", "catalog", "itemcollection" or None (not STAC)."""
    if not isinstance(d, dict):
        return None
    kind = d.get("type")
    if kind == "FeatureCollection" and isinstance(d.get("features"), list):
        feats = d["features"]  # an ItemCollection when any feature is a STAC Item (the others fail alone)
        if not feats or any(isinstance(f, dict) and ("assets" in f or "stac_version" in f) for f in feats):
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


#: pystac's messages for an invalid Item, as (what it says, the cause and fix said instead).
_PYSTAC_CAUSES = (
    ("If datetime is None, a start_datetime and end_datetime must be supplied",
     "datetime is null and there is no start_datetime/end_datetime",
     "give it a datetime, or both start_datetime and end_datetime"),
)


def _item_problem(err: BaseException, doc: Any = None) -> tuple[str, str]:
    """``(cause, fix)`` of an Item that pystac refused with ``err`` (``doc``: its JSON, when at
    hand): an impossible time named (``2021-06 has 30 days, no day 31``), pystac's own words
    made plain, else its message in one line."""
    from rsir_stac.stac.leapseconds import TIME_PROPERTIES
    from rsir_stac.store.filter_parse import datetime_problem

    props = doc.get("properties") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and not isinstance(props, dict):
        return "it has no properties object", "give it properties with a datetime"
    for key in TIME_PROPERTIES if props else ():
        value = props.get(key)
        problem = datetime_problem(value) if isinstance(value, str) else None
        if problem:
            return f"its {key} {value!r} names no real time: {problem}", f"correct its {key}"
    text = _one_line(err)
    for said, cause, fix in _PYSTAC_CAUSES:
        if said in text:
            return cause, fix
    if isinstance(err, KeyError) and err.args:
        return f"it has no {err.args[0]!r} member", f"give it {err.args[0]!r}"
    if text.startswith("Invalid Item: "):
        text = text[len("Invalid Item: "):]
    return text or type(err).__name__, "fix the item"


def _link_error(href: str, parent: str, err: BaseException, want: str = "object") -> RsirError:
    """A one-line error for a link that cannot be followed (``want``: ``"Item"`` or ``"Catalog"``)."""
    cause: BaseException | None = err
    while isinstance(cause, pystac.STACError) and cause.__cause__ is not None:
        cause = cause.__cause__
    child = want == "Catalog"
    where = f"{'child catalog ' if child else ''}{href} (linked from {parent})"
    lost = " (its items are not ingested)" if child else ""
    if isinstance(cause, RsirError):  # from _StacIO: already names the URL and the fix
        return type(cause)(f"{'child catalog ' if child else ''}linked from {parent}{lost}: {cause}")
    if isinstance(cause, FileNotFoundError):
        return SourceNotFoundError(f"{where} does not exist{lost}; fix the link or the catalog")
    if isinstance(cause, json.JSONDecodeError):
        return StacError(f"{where} is not valid JSON ({cause.msg}){lost}; fix the file")
    if isinstance(cause, (pystac.STACError, KeyError, TypeError, ValueError)):
        if want == "Item":
            problem, fix = _item_problem(cause)
            return StacError(f"{where} is not a valid STAC Item: {problem}; {fix}")
        return StacError(f"{where} is not a valid STAC {want} ({_one_line(cause)}){lost}; fix the document")
    return SourceNotFoundError(f"{where} cannot be read ({_one_line(cause or err)}){lost}; fix the link or check "
                               "the network")


def _link_href(link: Any, self_href: str) -> str:
    """The absolute href of ``link`` (a pystac Link of the document at ``self_href``).  A link without a
    scheme in a document read over the network is set to its URL first (RFC 3986 5.2): pystac kept
    ``/path`` as a local path, and joined only the path of ``//host/path`` to the document's host."""
    raw = link.href
    if isinstance(raw, str) and _is_url(self_href) and not urllib.parse.urlsplit(raw).scheme:
        link.target = urllib.parse.urljoin(self_href, raw)  # "/x" too: pystac kept a path as a local one
    return link.get_absolute_href() or link.href


def _failed(err: RsirError, name: str) -> RsirError:
    """``err`` named for the ingest report: ``item_id`` (an item's id, a link's file stem, a child
    catalog's href, or ``feature N of M``)."""
    err.item_id = name  # type: ignore[attr-defined]
    return err


def _walk(
    cat: pystac.Catalog, root: pystac.Catalog, collection: str | None, seen: set[str], remote: bool = False
) -> Iterator[tuple[pystac.Item | RsirError, str | None]]:
    """Items below ``cat`` (its items first, then its children, in link order).  A link that
    cannot be read or is not of its kind is yielded as its error: an item link's carries
    ``item_id`` = the link's file stem, a child catalog's its href.  One broken link of a
    catalogue fails alone (a broken child: the items below it), like an item without a usable
    asset.  In a catalogue read over the network (``remote``) a link to a local file fails so
    too (:data:`~rsir_stac.stac.hrefs.NETWORK_SCHEMES`), unread."""
    self_href = cat.get_self_href() or cat.id
    if self_href in seen:
        return
    seen.add(self_href)
    remote = remote or _is_url(self_href)  # a catalogue fetched over the network, below a local root too
    if isinstance(cat, pystac.Collection):
        collection = cat.id
    for rel, want in ((pystac.RelType.ITEM, pystac.Item), (pystac.RelType.CHILD, pystac.Catalog)):
        for link in cat.get_links(rel):
            href = _link_href(link, self_href)
            name = href if want is pystac.Catalog else \
                os.path.splitext(os.path.basename(urllib.parse.urlsplit(href).path))[0]
            if remote and not network_href(href):
                lost = " (its items are not ingested)" if want is pystac.Catalog else ""
                yield _failed(StacError(f"{href} (linked from {self_href} as {rel}) is not read{lost}: "
                                        f"{LOCAL_IN_REMOTE_FIX}"), name), collection
                continue
            try:
                target = link.resolve_stac_object(root=root).target
            except Exception as err:  # noqa: BLE001 - classified into one-line errors
                yield _failed(_link_error(href, self_href, err, want.__name__), name), collection
                continue
            if not isinstance(target, want):
                lost = " (its items are not ingested)" if want is pystac.Catalog else ""
                yield _failed(StacError(f"{href} (linked from {self_href} as {rel}) is not a STAC "
                                        f"{want.__name__}{lost}; fix the link"), name), collection
                continue
            if isinstance(target, pystac.Item):
                yield target, collection
            else:
                yield from _walk(target, root, collection, seen, remote)


def _feature_items(d: dict, src: str) -> Iterator[tuple[pystac.Item | RsirError, None]]:
    """The Items of an ItemCollection, one by one: a feature pystac refuses (or without an id)
    is yielded as its error, named by its id (or ``feature N of M``), and fails alone."""
    feats = d["features"]
    total = len(feats)
    for n, feat in enumerate(feats, 1):
        fid = feat.get("id") if isinstance(feat, dict) else None
        usable = isinstance(fid, str) and fid.strip() != ""
        name = fid if usable else f"feature {n} of {total}"
        where = f"item {fid} (feature {n} of {total} of {src})" if usable else f"feature {n} of {total} of {src}"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            yield _failed(StacError(f"{where} is not a STAC Item (not a GeoJSON Feature); fix the feature or "
                                    "leave it out"), name), None
            continue
        if "assets" not in feat:
            yield _failed(StacError(f"{where} is not a STAC Item (no 'assets'); give it its assets or leave it "
                                    "out"), name), None
            continue
        if not usable:
            yield _failed(StacError(f"{where} has no id; give each item a unique string id"), name), None
            continue
        try:
            yield pystac.Item.from_dict(feat, preserve_dict=True), None
        except Exception as err:  # noqa: BLE001 - pystac raises many kinds; each becomes a one-line cause
            problem, fix = _item_problem(err, feat)
            yield _failed(StacError(f"{where} is not a valid STAC Item: {problem}; {fix}"), name), None


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
            pairs: Iterable[tuple[pystac.Item | RsirError, str | None]] = [(pystac.Item.from_dict(d, href=src, migrate=True), None)]
        elif kind == "itemcollection":
            pairs = _feature_items(d, src)
        else:
            root = pystac.read_dict(d, href=src, stac_io=_StacIO(remote=_is_url(src)))
            if not isinstance(root, pystac.Catalog):
                raise StacError(f"{src} is not a STAC catalog; {_FIX}")
            root.set_root(root)  # the catalogue given is the root: its own "root" link (maybe elsewhere) is not read
            pairs = _walk(root, root, None, set(), _is_url(src))
    except (pystac.STACError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, RsirError):
            raise
        if kind == "item":
            problem, fix = _item_problem(err, d)
            raise StacError(f"{src} is not a valid STAC Item: {problem}; {fix}") from err
        raise _invalid(src, kind, err) from err
    count = 0
    for item, collection in pairs:
        count += 1
        if isinstance(item, RsirError):  # a link or feature that could not be read: it fails alone
            if on_error is None:
                raise item
            log.info("skipping: %s", item)
            on_error(item)
            continue
        try:
            remote = _is_url(src) or _is_url(item.get_self_href() or "")  # fetched over the network
            yield _scene_from_item(item, collection, src, asset, bands, remote=remote)
        except (AssetError, StacError, SourceNotFoundError) as err:
            if on_error is None:
                raise
            log.info("skipping item: %s", err)
            on_error(err)
    if count == 0:
        log.warning("%s contains no STAC items", src)
