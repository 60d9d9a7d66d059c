"""STAC datetimes with a leap second (``23:59:60Z``), which pystac's parser (dateutil) refuses."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: Item properties that hold RFC 3339 times (STAC item spec, common metadata).
TIME_PROPERTIES = ("datetime", "start_datetime", "end_datetime", "created", "updated")


def read_leap_seconds(doc: Any) -> Any:
    """Rewrite, in place, each leap-second time of a STAC Item's properties (or an
    ItemCollection's items') as the last microsecond of its minute, UTC (``2016-12-31T23:59:60Z``
    → ``2016-12-31T23:59:59.999999Z``); returns ``doc``.

    Only a second 60 at 23:59 UTC is a leap second (RFC 3339 §5.7); any other is left for pystac
    to refuse as the invalid time it is.  Source: :func:`rsir_stac.store.filter_parse.leap_second_as_last_instant`.
    """
    from rsir_stac.store.filter_parse import leap_second_as_last_instant

    if not isinstance(doc, dict):
        return doc
    for feature in doc.get("features") or ():  # an ItemCollection
        read_leap_seconds(feature)
    props = doc.get("properties")
    if doc.get("type") != "Feature" or not isinstance(props, dict):
        return doc
    for key in TIME_PROPERTIES:
        value = props.get(key)
        if isinstance(value, str) and ":60" in value:
            instant = leap_second_as_last_instant(value)
            if instant is not None:
                props[key] = instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                log.debug("item %s: %s %s (a leap second) read as %s", doc.get("id"), key, value, props[key])
    return doc


__all__ = ["TIME_PROPERTIES", "read_leap_seconds"]
