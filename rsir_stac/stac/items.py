"""Item and asset resolution: one STAC item (its asset or three single-band assets, RGB
bands, nodata, time interval and kept properties), or one bare raster, made a
:class:`~rsir_stac.stac.scene.SceneRef`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import pystac

from rsir_stac.asset import choose_assets, raster_nodata, rgb_bands
from rsir_stac.errors import AssetError, InputError, StacError
from rsir_stac.raster_source import RasterDefaults, _tiff_datetime, raster_item_id
from rsir_stac.stac.hrefs import LOCAL_IN_REMOTE_FIX, _resolve, network_href
from rsir_stac.stac.scene import SceneRef

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


#: The projection extension's fields (STAC ``proj`` v1/v2) kept for a raster without georeferencing.
PROJ_FIELDS = ("proj:code", "proj:epsg", "proj:wkt2", "proj:transform", "proj:shape")


def _proj(item: pystac.Item, asset: pystac.Asset) -> dict[str, Any] | None:
    """The projection fields of ``asset``, else of ``item`` (an asset's own override the item's,
    as the extension says); None when there are none."""
    got = {k: item.properties[k] for k in PROJ_FIELDS if item.properties.get(k) is not None}
    got.update({k: asset.extra_fields[k] for k in PROJ_FIELDS if asset.extra_fields.get(k) is not None})
    return got or None


def _scene_from_item(
    item: pystac.Item,
    collection: str | None,
    doc_href: str,
    asset: str | None,
    bands: tuple[int, int, int] | None,
    *,
    remote: bool = False,
) -> SceneRef:
    """The scene of ``item`` (read from ``doc_href``).  ``remote``: the document was read over the
    network, so each chosen asset must name a network location too, else StacError (the item
    fails alone): :func:`rsir_stac.stac.hrefs.network_href`."""
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
    for (k, _), href in zip(chosen, hrefs) if remote else ():
        if not network_href(href):
            err = StacError(f"asset {k!r} of item {item.id} (read from {doc_href}) names {href}, which is not "
                            f"read: {LOCAL_IN_REMOTE_FIX}")
            err.item_id = item.id  # type: ignore[attr-defined]
            raise err
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
        item_geometry=item.geometry if isinstance(item.geometry, dict) else None,
        proj=None if composed else _proj(item, first),
    )
