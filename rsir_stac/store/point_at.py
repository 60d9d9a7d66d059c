"""The stored tile at a place: :meth:`Store.point_at <rsir_stac.store.base.Store.point_at>`.

Tiles whose centroid lies within a radius that widens until one covers the
location, the nearest centroid winning (a time series on grids metres apart
counts as one place, where the date decides).  A mixin of
:class:`~rsir_stac.store.base.Store`, on its engine primitives.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

from rsir_stac.errors import InputError, PointNotFoundError
from rsir_stac.store.filters import SearchFilter, haversine_m
from rsir_stac.store.payloads import PACKED
from rsir_stac.store.records import SearchHit

log = logging.getLogger("rsir_stac.store.base")  # the messages of the store's searches

#: Largest tile half-diagonal :meth:`Store.point_at` looks for, in metres, and the
#: radii it widens through (a 256 px tile at 500 m GSD has a ~90 km half-diagonal).
POINT_AT_RADII_M = (250.0, 2_500.0, 25_000.0, 250_000.0, 2_500_000.0, 20_100_000.0)
#: Radii beyond this (tiles of coarse products) are checked with a count first.
POINT_AT_FINE_M = 250_000.0
#: Most tiles a :meth:`Store.point_at` radius beyond 250 km is scanned for (coarse products
#: hold few tiles; a fine-resolution catalogue around an uncovered location is not read through).
POINT_AT_WIDE_MAX = 100_000
#: Covering tiles whose centroids lie within this share of the nearest tile's width (and
#: at least POINT_AT_TIE_M metres) of the nearest count as the same place in
#: :meth:`Store.point_at` (a time series on grids a few metres apart), so the date decides.
POINT_AT_TIE_SHARE = 0.05
POINT_AT_TIE_M = 1.0


def _covers(payload: dict, lon: float, lat: float) -> bool:
    """Whether a stored tile's footprint holds (lon, lat), edges included: its bbox first
    (cheap), then its footprint polygon where the payload has corners or an outline."""
    from rsir_stac.tiling.footprints import bbox_contains

    if abs(lat) >= 90.0 and len(payload.get("bbox") or ()) == 4:
        # a pole is one place whatever the longitude given: a tile reaching it holds it at every one
        w, _, e, _ = (float(v) for v in payload["bbox"])
        lon = (w + (e if e >= w else e + 360.0)) / 2.0
        lon = lon - 360.0 if lon > 180.0 else lon
    if not bbox_contains(payload["bbox"], lon, lat):
        return False
    if not payload.get("corners") and not payload.get("outline"):
        return True
    from shapely.geometry import Point as ShapelyPoint
    from shapely.geometry import shape

    from rsir_stac.labels import footprint_geometry

    geom = footprint_geometry(payload)
    if geom is None:
        return True
    poly = shape(geom)
    # the antimeridian is both -180 and 180: a footprint ending at 180 holds -180 too
    return any(poly.distance(ShapelyPoint(x, lat)) <= 1e-9 for x in ((lon, -lon) if abs(lon) == 180.0 else (lon,)))


class PointAtMixin:
    """:meth:`point_at` of a :class:`~rsir_stac.store.base.Store` (which supplies the
    engine primitives it calls: ``_scan``, ``count``, ``retrieve``)."""

    def point_at(
        self, lon: float, lat: float, flt: SearchFilter | None = None, *, with_vectors: bool = True
    ) -> SearchHit:
        """The stored tile covering (lon, lat): among tiles whose footprint covers the
        location, the one with the nearest centroid; score 0.  Centroids within 5 % of
        a tile's width of the nearest (:data:`POINT_AT_TIE_SHARE`) count as one place
        (a time series on grids metres apart): the newest of them wins, then the first item id,
        the nearest centroid and the smallest point id (undated scenes: the same tile whatever
        the model).

        Candidates come from the geo index: tiles whose centroid lies within a
        radius that widens through :data:`POINT_AT_RADII_M` until one covers the
        location (a nearer covering centroid would have been inside the radius); radii
        beyond 250 km (tiles of coarse products) are scanned only while they hold at most
        :data:`POINT_AT_WIDE_MAX` tiles.  A tile covers the location when its footprint
        (corners, or polar outline) does, edges included; a bbox with W > E crosses the
        antimeridian.
        """
        lon, lat = float(lon), float(lat)
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise InputError(f"location {lon},{lat} is not a lon/lat in degrees; give LON within ±180 and LAT within ±90")
        self._require_meta()
        found: list[tuple[float, float, str, Any, str]] = []  # (metres, epoch, id, bbox, item id)
        fields = ["location", "bbox", "datetime_epoch", "item_id", PACKED]
        for radius in POINT_AT_RADII_M:
            if radius > POINT_AT_FINE_M and not self._few_within(flt, lon, lat, radius):
                break
            for pid, payload, _ in self._scan(flt, around=(lon, lat, radius), fields=fields):
                try:
                    if not _covers(payload, lon, lat):
                        continue
                    loc = payload["location"]
                    d = float(haversine_m(lon, lat, float(loc["lon"]), float(loc["lat"])))
                except (KeyError, TypeError, ValueError):
                    continue
                epoch = payload.get("datetime_epoch")
                found.append((d, float(epoch) if isinstance(epoch, (int, float)) else -math.inf, pid,
                              payload["bbox"], str(payload.get("item_id") or "")))
            if found:
                break
        best = None
        if found:
            d0, _, _, (w, s_, e, n), _ = min(found, key=lambda f: f[0])
            width = float(haversine_m(w, (s_ + n) / 2, e if e >= w else e + 360.0, (s_ + n) / 2))
            near = d0 + max(POINT_AT_TIE_M, POINT_AT_TIE_SHARE * width)
            # the newest; among undated (or same-dated) scenes the first item id, then the nearest
            # centroid: a choice the model does not change (point ids do), so a reindexed index agrees
            best = min(((-ep, item, d, pid) for d, ep, pid, _, item in found if d <= near))
            best = (best[0], best[3])
        if best is None:
            raise PointNotFoundError(
                f"no tile in {self.describe()} covers lon {lon}, lat {lat}"
                + (" with the given filter" if flt is not None and not flt.is_empty else "")
                + "; pick a location inside the ingested scenes"
            )
        return self.retrieve([best[1]], with_vectors=with_vectors)[0]

    def _few_within(self, flt: SearchFilter | None, lon: float, lat: float, radius: float) -> bool:
        """Whether at most :data:`POINT_AT_WIDE_MAX` tiles matching ``flt`` have their centre
        within ``radius`` metres (a wide :meth:`point_at` scan stays cheap)."""
        if flt is not None and flt.near is not None:
            return True
        near = replace(flt or SearchFilter(), near=(lon, lat, radius))
        n = self.count(near)
        if n > POINT_AT_WIDE_MAX:
            log.info("point_at: %d tiles within %.0f km of %s,%s; not scanned for tiles that wide", n,
                     radius / 1000, lon, lat)
        return n <= POINT_AT_WIDE_MAX


__all__ = ["POINT_AT_FINE_M", "POINT_AT_RADII_M", "POINT_AT_TIE_M", "POINT_AT_TIE_SHARE", "POINT_AT_WIDE_MAX",
           "PointAtMixin"]
