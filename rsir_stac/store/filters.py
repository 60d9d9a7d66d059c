"""Search filters: the record, and a reference matcher of their semantics.

A :class:`SearchFilter` restricts a search to tiles whose payload matches every
given constraint (AND):

* ``bbox`` / ``near`` / ``polygon``: the tile *centroid* (payload ``location``)
  lies inside.  Bounding boxes and polygons are closed: a centre on an edge is
  inside (``W <= lon <= E``, ``S <= lat <= N``, as a STAC API bbox), a centre at
  lon -180 is at 180 too, and one at a pole is inside every box or polygon
  reaching that pole, whatever its longitude.  Qdrant's ``geo_bounding_box`` and
  ``geo_polygon`` are open, so the engine gets them grown by
  :data:`~rsir_stac.store.engine_filters.EDGE_TOL` (1e-9 degrees, ~0.1 mm: a centre
  that close outside an edge matches too), with a sliver box across 180 and, for
  an area reaching a pole, boxes holding the 3 cm about it (centres nearer a pole are
  stored 2 cm off it: the engine finds no point at exactly 90 degrees)
  (:func:`~rsir_stac.store.engine_filters.box_area`,
  :func:`~rsir_stac.store.engine_filters.polygon_area`).  Radii are open (haversine distance
  ``< radius``, Earth radius 6371008.8 m, the IUGG mean radius that Qdrant's
  ``geo`` crate and qdrant-client local mode both use); polygons use the
  even-odd rule, and a hole's edge belongs to the area.
  A bbox with ``W > E`` crosses the antimeridian (RFC 7946): it is sent to the
  engine as two boxes, ``W..180`` or ``-180..E``.  ``polygon`` is a
  :class:`~rsir_stac.store.areas.GeoArea` (holes, several polygons, cut at
  180): sent as one ``geo_polygon`` with interiors per polygon, OR-ed.
* ``start`` / ``end``: a tile's time is the interval ``datetime_epoch`` ..
  ``datetime_end_epoch`` (float seconds; equal for one instant); it matches
  when that interval intersects ``start..end`` (inclusive), as STAC API search
  does.  Points written before ``datetime_end_epoch`` existed use
  ``datetime_epoch`` for both ends.  Tiles without a datetime never match a
  datetime constraint.
* ``collections`` / ``item_ids``: keyword match-any on ``collection`` / ``item_id``.
* ``missing``: the named fields (``"datetime"``, ``"collection"``) are absent
  or null, e.g. to count the undated tiles a date filter leaves out.

Here are the :class:`SearchFilter` record and :func:`matches`, a pure
Python/numpy re-implementation of the semantics used as the brute-force reference
by tests and benchmarks.  Parsing and validating the values lives in
:mod:`rsir_stac.store.filter_parse`; the translation to a qdrant-client
:class:`models.Filter` (:func:`to_qdrant_filter`) and to a ``qdrant_edge.Filter``
(:func:`to_edge_filter`) in :mod:`rsir_stac.store.engine_filters`; their names are
imported here too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from rsir_stac.errors import InputError
from rsir_stac.store.areas import GeoArea, _in_ring  # noqa: F401 - _in_ring for tests
from rsir_stac.store.engine_filters import (  # noqa: F401 - engine_boxes, engine_polygons, to_*_filter: as before
    END_FIELD,
    MISSING_FIELDS,
    EDGE_TOL,
    _epoch,
    box_area,
    engine_boxes,
    engine_polygons,
    polygon_area,
    to_edge_filter,
    to_qdrant_filter,
)
from rsir_stac.store.filter_parse import (  # noqa: F401 - the parsers: as before
    BBox,
    _as_utc,
    _check_bbox,
    _check_near,
    load_polygon,
    parse_bbox,
    parse_datetime_range,
    parse_near,
    plain_float,
    polygon_from_geojson,
)

log = logging.getLogger(__name__)

#: Earth radius used by Qdrant for ``geo_radius`` (haversine), in metres.
EARTH_RADIUS_M = 6371008.8


# --------------------------------------------------------------------------- dataclass


def _float_tuple(value: Any, what: str, form: str) -> tuple[float, ...]:
    """``value`` as a tuple of floats; InputError naming ``what`` and its ``form`` for anything
    that is not a sequence of numbers (a dict, a number, a list holding text)."""
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{what}={value!r} is not a sequence of numbers; give ({form}), or the text form "
                         "the command line takes") from None


@dataclass(frozen=True)
class SearchFilter:
    """Constraints on tile payloads; every given constraint must hold."""

    bbox: BBox | None = None
    near: tuple[float, float, float] | None = None
    polygon: GeoArea | None = None
    start: datetime | None = None
    end: datetime | None = None
    collections: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("bbox", "near"):  # text as bytes (read from a file or a socket) is text
            if isinstance(getattr(self, name), (bytes, bytearray)):
                set_(self, name, bytes(getattr(self, name)).decode("utf-8", "replace"))
        if self.bbox is not None:  # (W, S, E, N), or the command line's "W,S,E,N" text
            set_(self, "bbox", parse_bbox(self.bbox) if isinstance(self.bbox, str)
                 else _check_bbox(_float_tuple(self.bbox, "bbox", "W, S, E, N in degrees"), "bbox"))
        if self.near is not None:  # (lon, lat, radius_m), or "LON,LAT,RADIUS_M"
            set_(self, "near", parse_near(self.near) if isinstance(self.near, str)
                 else _check_near(_float_tuple(self.near, "near", "lon, lat in degrees, radius in metres"), "near"))
        if self.polygon is not None:
            set_(self, "polygon", as_area(self.polygon))
        start = _as_utc(self.start) if self.start is not None else None
        end = _as_utc(self.end) if self.end is not None else None
        if start is not None and end is not None and start > end:
            raise InputError(
                f"datetime range {start.isoformat()}/{end.isoformat()} ends before it starts; "
                "swap START and END"
            )
        set_(self, "start", start)
        set_(self, "end", end)
        set_(self, "collections", _str_tuple(self.collections, "collections"))
        set_(self, "item_ids", _str_tuple(self.item_ids, "item_ids"))
        missing = _str_tuple(self.missing, "missing")
        bad = [m for m in missing if m not in MISSING_FIELDS]
        if bad:
            raise InputError(f"missing={bad[0]!r} is not a field that can be missing; use one of "
                             f"{', '.join(MISSING_FIELDS)}")
        set_(self, "missing", missing)

    @property
    def is_empty(self) -> bool:
        """True when the filter constrains nothing."""
        return (
            self.bbox is None
            and self.near is None
            and self.polygon is None
            and self.start is None
            and self.end is None
            and not self.collections
            and not self.item_ids
            and not self.missing
        )


def as_area(value: Any) -> GeoArea:
    """A :class:`GeoArea` from a GeoArea, a GeoJSON mapping, or one ring of (lon, lat) pairs."""
    if isinstance(value, GeoArea):
        return value
    if isinstance(value, Mapping):
        return GeoArea.from_geojson(value)
    return GeoArea.from_rings(value, (), "polygon")


def _str_tuple(values: Any, name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    out = tuple(values or ())
    bad = [v for v in out if not (isinstance(v, str) and v.strip())]
    if bad:
        what = "an empty name" if all(isinstance(v, str) for v in bad) else f"{bad[0]!r}, not a name"
        example = {"collections": " (e.g. --collection sentinel-2-l2a; API: collection)"}.get(name, "")
        raise InputError(f"{name} must be non-empty names, and {what} was given; give each by its name{example}")
    return out


# --------------------------------------------------------------------------- reference matcher


def haversine_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Great-circle distance in metres (Qdrant's formula and Earth radius); broadcasts."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return EARTH_RADIUS_M * 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def matches(payload: Mapping[str, Any], flt: SearchFilter | None) -> bool:
    """Reference implementation of the filter semantics on one payload."""
    if flt is None:
        return True
    loc = payload.get("location")
    if flt.bbox is not None or flt.near is not None or flt.polygon is not None:
        if not isinstance(loc, Mapping) or loc.get("lon") is None or loc.get("lat") is None:
            return False
        lon, lat = float(loc["lon"]), float(loc["lat"])
        if flt.bbox is not None and not box_area(flt.bbox).mask(lon, lat):
            return False
        if flt.near is not None:
            clon, clat, r = flt.near
            if not float(haversine_m(lon, lat, clon, clat)) < r:
                return False
        if flt.polygon is not None and not polygon_area(flt.polygon).mask(lon, lat):
            return False
    if flt.start is not None or flt.end is not None:
        t0 = payload.get("datetime_epoch")
        if not _is_number(t0):
            return False
        t1 = payload.get(END_FIELD)
        t1 = t1 if _is_number(t1) else t0
        if flt.start is not None and t1 < _epoch(flt.start):
            return False
        if flt.end is not None and t0 > _epoch(flt.end):
            return False
    for name in flt.missing:
        if payload.get(MISSING_FIELDS[name]) not in (None, "", []):
            return False
    if flt.collections and payload.get("collection") not in flt.collections:
        return False
    if flt.item_ids and payload.get("item_id") not in flt.item_ids:
        return False
    return True


__all__ = [
    "EARTH_RADIUS_M",
    "EDGE_TOL",
    "END_FIELD",
    "GeoArea",
    "MISSING_FIELDS",
    "SearchFilter",
    "as_area",
    "haversine_m",
    "engine_boxes",
    "engine_polygons",
    "load_polygon",
    "matches",
    "parse_bbox",
    "parse_datetime_range",
    "parse_near",
    "polygon_from_geojson",
    "to_edge_filter",
    "to_qdrant_filter",
]
