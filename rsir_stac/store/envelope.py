"""Polygon searches in two steps: the polygon's envelope first, then the polygon.

Spatial databases answer a polygon query with a cheap *primary filter* on bounding boxes
and an exact *secondary filter* on the candidates it passes (PostGIS: ``&&`` on the GiST
index, then ``ST_Contains``).  In a filtered HNSW search Qdrant's ``geo_polygon`` condition
costs about three times its ``geo_bounding_box`` whatever the polygon's vertex count (a
4-gon and a 128-gon alike; RESULTS section 13.15), because every point the graph walk visits
is tested (where matches are few the engine scans them exactly and a polygon is as fast as a
box, so the engine's cardinality estimate decides: :meth:`EnvelopePlan.worth_it`).  So
:meth:`rsir_stac.store.base.Store.search` asks the engine for the nearest
tiles in the polygon's envelope, widened by the share of the envelope the polygon fills
(:meth:`EnvelopePlan.wide`, at most the graph search's width
:data:`~rsir_stac.store.base.HNSW_EF`), and keeps the ones inside the polygon.  When fewer than asked
remain while the envelope held more, it asks again with the polygon itself, so the answer
is always the polygon's: the ``wide`` nearest in the envelope hold the nearest in the
polygon whenever at least ``limit`` of them lie inside it.

Inside means the engine's answer to the polygon (:mod:`rsir_stac.store.areas`): inside one
polygon, outside its holes, and a point on an edge inside (the area is closed), tested by
:meth:`~rsir_stac.store.engine_filters.EngineArea.mask` on the very parts the engine gets
(the polygons grown by ``EDGE_TOL``, slivers across 180, pole caps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rsir_stac.store.engine_filters import ENGINE_MAX_SPAN, EngineArea, polygon_area
from rsir_stac.store.filters import SearchFilter

#: Smallest share of its envelope a polygon must fill (planar, in degrees) to be searched
#: through the envelope; a thinner one (a diagonal strip, a ring of islands) would need
#: too wide a first search.
MIN_FILL = 0.25
#: Candidates asked per result, over the polygon's share of the envelope (the tiles nearest
#: in vector space are not spread evenly over the envelope).
WIDEN = 2.0
#: Qdrant's default HNSW ``full_scan_threshold`` (KB of vectors): a segment whose filter
#: matches fewer points scans them exactly, and there a polygon costs no more than a box.
ENGINE_FULL_SCAN_KB = 10_000
#: Share of that many points (by the engine's own cardinality estimate, which counts whole
#: geohash cells and so runs ~2x high) from which the envelope is searched first.
GRAPH_SHARE = 0.25


@dataclass(frozen=True)
class EnvelopePlan:
    """How one polygon search goes through its envelope.

    ``box_filter``: the search's filter with the polygon replaced by its envelope (lon/lat
    degrees, a closed box); ``area``: the polygon as the engine gets it; ``shapes``: its
    polygons, prepared shapely geometries (OR-ed); ``fill``: their area over the envelope's
    (0..1, planar degrees).
    """

    box_filter: SearchFilter
    area: EngineArea
    shapes: tuple[Any, ...]
    fill: float

    def wide(self, limit: int) -> int:
        """Candidates to ask the envelope for, to keep ``limit`` inside the polygon."""
        return int(math.ceil(WIDEN * limit / self.fill))

    def worth_it(self, estimate: int | None, dim: int) -> bool:
        """Whether to go through the envelope, given the engine's estimate of the points the
        polygon matches: only where the engine would walk its graph, testing the polygon on
        every point it visits (at least :data:`GRAPH_SHARE` of the full-scan threshold's
        points of ``dim`` float32 values).  Below it the engine scans the matches exactly and
        the polygon is as fast as a box (RESULTS section 13.15).  No estimate: go through it."""
        if estimate is None:
            return True
        return estimate >= GRAPH_SHARE * ENGINE_FULL_SCAN_KB * 1024 / (4 * max(1, dim))

    def inside(self, records: Sequence[Any]) -> np.ndarray:
        """Boolean mask: which engine records (with a payload ``location`` of ``lon``/``lat``)
        lie inside the polygon; a record without a location is outside."""
        lon = np.full(len(records), np.nan)
        lat = np.full(len(records), np.nan)
        for i, rec in enumerate(records):
            loc = (rec.payload or {}).get("location")
            if isinstance(loc, dict):
                lon[i], lat[i] = loc.get("lon", np.nan), loc.get("lat", np.nan)
        return self.area.mask(lon, lat, self.shapes)  # the engine's own answer (NaN: outside)


def envelope_plan(flt: SearchFilter | None) -> EnvelopePlan | None:
    """The two-step plan for ``flt``, or None where the polygon goes to the engine as it is:
    no polygon, a bbox given as well, an area the engine gets in pieces (wider than
    :data:`~rsir_stac.store.engine_filters.ENGINE_MAX_SPAN`, or either side of 180 so that its
    envelope spans the map), or one filling less than :data:`MIN_FILL` of its envelope."""
    if flt is None or flt.polygon is None or flt.bbox is not None:
        return None
    import shapely

    area = polygon_area(flt.polygon)
    shapes = area.shapes()
    w, s, e, n = (float(v) for v in shapely.total_bounds(shapes))
    if not (e - w > 0 and n - s > 0) or e - w > ENGINE_MAX_SPAN:
        return None
    fill = min(1.0, float(shapely.area(shapes).sum()) / ((e - w) * (n - s)))
    if not fill >= MIN_FILL:
        return None
    return EnvelopePlan(replace(flt, polygon=None, bbox=(w, s, e, n)), area, shapes, fill)


__all__ = ["ENGINE_FULL_SCAN_KB", "EnvelopePlan", "GRAPH_SHARE", "MIN_FILL", "WIDEN", "envelope_plan"]
