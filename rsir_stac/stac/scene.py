"""The scene record: :class:`SceneRef`, one raster to tile (the STAC item and asset it comes
from, or a bare raster) with its bands, time and nodata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    #: the STAC item's GeoJSON geometry (None for a bare raster or an item without one): ingest warns
    #: when it does not overlap the raster (:func:`rsir_stac.ingest.producer.check_item_geometry`)
    item_geometry: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    #: the asset's (else the item's) projection extension fields (``proj:code``/``proj:epsg``/``proj:wkt2``,
    #: ``proj:transform``, ``proj:shape``), if any: a raster that lacks its georeferencing is refused with
    #: a fix that assigns these (:func:`rsir_stac.gsd.open_reader`)
    proj: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

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
