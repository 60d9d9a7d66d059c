"""Dissolve: touching hit footprints merged into areas, one acquisition at a time.

What ``classify --dissolve`` writes instead of tiles.  Geometry is shapely's
(``unary_union`` on a ~1 cm precision grid); areas cut at the antimeridian are
grouped back into one MultiPolygon.
"""

from __future__ import annotations

from typing import Any

import numpy as np


#: The columns of :func:`dissolve`'s rows (for a file with no area: :func:`rsir_stac.export.write_table`'s ``empty``).
DISSOLVED_EMPTY_ROW: dict[str, Any] = {"id": None, "datetime": None, "collection": None, "tiles": 0, "items": None,
                                       "max_probability": 0.0, "mean_probability": 0.0, "geometry": None}


def dissolve(hits: Any) -> list[dict[str, Any]]:
    """Merge touching/overlapping hit footprints into polygons (shapely ``unary_union``), one
    acquisition at a time: tiles of the same ``datetime`` (and collection) merge, so the same
    ground seen in several years gives one area per date, not one over all of them.  Tiles
    without a date (bare rasters ingested without ``--datetime``) merge within their own item
    (scene) only: nothing says two undated scenes are one acquisition.

    Returns rows (for :func:`rsir_stac.export.write_table`): ``id`` (``area-N``),
    ``datetime``, ``collection``, ``tiles``, ``items`` (item ids, comma-separated),
    ``max_probability``, ``mean_probability`` and ``geometry`` (GeoJSON), by date, then
    largest first.
    """
    groups: dict[tuple, list] = {}
    for h in hits:
        when = h.payload.get("datetime") or ""
        scene = "" if when else str(h.payload.get("item_id") or "")
        groups.setdefault((when, h.payload.get("collection") or "", scene), []).append(h)
    rows = []
    for (when, coll, _), part in sorted(groups.items()):
        rows += [{"datetime": when or None, "collection": coll or None, **r} for r in _dissolve_one(part)]
    return [{"id": f"area-{n}", **r} for n, r in enumerate(rows, 1)]


def _dissolve_one(hits: list) -> list[dict[str, Any]]:
    """Dissolved areas of hits of one acquisition, largest first (rows without ids)."""
    import shapely
    from shapely.geometry import mapping, shape
    from shapely.geometry.polygon import orient

    from rsir_stac.labels import footprint_geometry

    geoms = [footprint_geometry(h.payload) for h in hits]
    keep = [(shape(g), h.score, h.payload.get("item_id")) for g, h in zip(geoms, hits) if g]
    if not keep:
        return []
    polys = [shapely.set_precision(g, 1e-7) for g, _, _ in keep]  # ~1 cm grid: neighbours share edges exactly
    merged = shapely.unary_union(polys)
    parts = list(getattr(merged, "geoms", [merged]))
    tree = shapely.STRtree(polys)
    members = [{int(j) for j in tree.query(part, predicate="intersects") if polys[int(j)].intersection(part).area > 0}
               for part in parts]
    rows = []
    for group in _across_antimeridian(parts):
        tiles = set().union(*(members[i] for i in group))
        probs = [keep[j][1] for j in tiles] or [0.0]
        items = sorted({str(keep[j][2]) for j in tiles if keep[j][2] is not None})
        shapes = [orient(parts[i], 1.0) for i in group]
        geom = shapes[0] if len(shapes) == 1 else shapely.MultiPolygon(shapes)
        rows.append({"tiles": len(tiles), "items": ",".join(items), "max_probability": float(max(probs)),
                     "mean_probability": float(np.mean(probs)), "geometry": mapping(geom)})
    rows.sort(key=lambda r: (-r["tiles"], -r["max_probability"]))
    return rows


def _across_antimeridian(parts: list) -> list[list[int]]:
    """Groups of dissolved parts (indexes) that are one area cut at ±180: a part with an
    edge on 180 joins one with an edge on -180 where the two edges share a stretch of latitude."""
    from shapely.geometry import LineString

    def edge(part, lon):
        return part.boundary.intersection(LineString([(lon, -90.0), (lon, 90.0)]))

    group = list(range(len(parts)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    east = {i: e for i, e in ((i, edge(p, 180.0)) for i, p in enumerate(parts)) if e.length > 0}
    west = {i: e for i, e in ((i, edge(p, -180.0)) for i, p in enumerate(parts)) if e.length > 0}
    for i, e in east.items():
        for j, w in west.items():
            if i != j and _shares_stretch(e, w):
                group[root(i)] = root(j)
    out: dict[int, list[int]] = {}
    for i in range(len(parts)):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


def _shares_stretch(east, west) -> bool:
    """Whether two edges, one on lon 180 and one on -180, overlap along some latitude."""
    from shapely.affinity import translate

    return east.intersection(translate(west, xoff=360.0)).length > 0


__all__ = ["DISSOLVED_EMPTY_ROW", "dissolve"]
