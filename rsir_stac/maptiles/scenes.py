"""The indexed scenes as the map shows them: stored tile payloads grouped into
:class:`Scene` s (extent unwrapped across the antimeridian, footprint from the tiles'
corners, or near a pole their union; tile count, date), and :class:`SceneChoice`, which
scenes a tile draws and in which order."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Scene:
    """One indexed source raster (a STAC item's asset) as the map shows it.

    ``bbox`` is ``(W, S, E, N)`` in degrees over the scene's stored tiles;
    ``footprint`` a GeoJSON Polygon (convex hull of the tiles' corners);
    ``bands`` the 1-based R,G,B bands ingest read; ``href`` the source, kept
    on the server (never sent to clients).
    """

    id: str
    item_id: str
    collection: str | None
    asset: str | None
    href: str
    datetime: str | None
    tiles: int
    bbox: tuple[float, float, float, float]
    footprint: dict | None
    bands: tuple[int, ...] | None
    gsd: float | None = None
    zooms: tuple[int, int] | None = None
    #: the end of the scene's acquisition interval (RFC 3339), for a scene ingested with one (a
    #: ``--datetime 2015`` or a STAC item's ``start_datetime``/``end_datetime``); ``datetime`` is its start
    end_datetime: str | None = None
    #: a nodata value ingest took from STAC (``tiling.nodata``), not the file; three (one per
    #: file, each may be None) for a composed scene
    nodata: float | tuple[float | None, ...] | None = None
    band_hrefs: tuple[str, ...] | None = None  # the R, G, B files of a composed scene (``href`` is the first)
    _corners: list = field(default_factory=list, repr=False)  # tile rings while grouping
    _ref: float | None = field(default=None, repr=False)  # longitude the scene is unwrapped about
    _polar: bool = field(default=False, repr=False)

    @property
    def files(self) -> tuple[str, ...]:
        """The source files read: ``band_hrefs``, or ``href`` alone."""
        return self.band_hrefs or (self.href,)

    def summary(self) -> dict[str, Any]:
        """The client-facing description (no server path)."""
        return {"id": self.id, "item_id": self.item_id, "collection": self.collection, "asset": self.asset,
                "datetime": self.datetime, "end_datetime": self.end_datetime, "tiles": self.tiles,
                "bbox": list(self.bbox),
                "gsd": self.gsd, "minzoom": self.zooms[0] if self.zooms else None,
                "maxzoom": self.zooms[1] if self.zooms else None}


def scene_id(collection: str | None, item_id: str, asset: str | None, href: str) -> str:
    """A short stable id of a scene (12 hex digits of a SHA-1 of its identity)."""
    key = "|".join([collection or "", item_id, asset or "", href])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def scenes_from_payloads(payloads: Iterable[Mapping[str, Any]]) -> list[Scene]:
    """Group stored tile payloads into scenes, newest first (undated last).

    Payloads without ``href`` or ``item_id`` are skipped.  Longitudes are unwrapped about
    the scene's first tile, so a scene across the antimeridian keeps one extent and outline,
    whose east edge runs past 180 (never the west edge past -180, whichever side its first
    tile lies: a lon/lat raster and a projected one alike, as a web map draws them); footprints
    are the convex hull of the tiles' ``corners`` (shapely), or, for a scene reaching within
    :data:`POLAR_LAT` of a pole (where a hull in degrees is wrong), the union of its tiles'
    footprints (:func:`rsir_stac.tiling.footprints.footprint_geometry`).
    """
    from rsir_stac.tiling.stack import payload_band_hrefs, payload_nodata

    scenes: dict[str, Scene] = {}
    for p in payloads:
        href, item = p.get("href"), p.get("item_id")
        if not isinstance(href, str) or not isinstance(item, str):
            continue
        try:
            band_hrefs = payload_band_hrefs(p)
        except (TypeError, ValueError):  # band_hrefs not written by ingest: not drawable
            continue
        col, asset = p.get("collection"), p.get("asset")
        sid = scene_id(col, item, asset, href)
        sc = scenes.get(sid)
        box = _tile_box(p.get("bbox"))
        if sc is None:
            t = p.get("tiling") or {}
            bands, nodata = t.get("bands"), t.get("nodata")
            sc = scenes[sid] = Scene(
                id=sid, item_id=item, collection=col if isinstance(col, str) else None, asset=asset, href=href,
                datetime=p.get("datetime") if isinstance(p.get("datetime"), str) else None, tiles=0,
                end_datetime=p.get("end_datetime") if isinstance(p.get("end_datetime"), str) else None,
                bbox=(math.inf, math.inf, -math.inf, -math.inf), footprint=None,
                bands=tuple(int(b) for b in bands) if bands else None,
                gsd=float(p["gsd"]) if isinstance(p.get("gsd"), (int, float)) else None,
                nodata=payload_nodata(nodata), band_hrefs=band_hrefs)
        sc.tiles += 1
        if box is not None:
            if sc._ref is None:
                sc._ref = (box[0] + box[2]) / 2
            shift = 360.0 * round((sc._ref - (box[0] + box[2]) / 2) / 360.0)
            b = sc.bbox
            sc.bbox = (min(b[0], box[0] + shift), min(b[1], box[1]), max(b[2], box[2] + shift), max(b[3], box[3]))
            if box[1] <= -POLAR_LAT or box[3] >= POLAR_LAT:
                sc._polar = True
        ring = _tile_ring(p)
        if ring:
            ref = sc._ref if sc._ref is not None else ring[0][0]
            sc._corners.append(tuple((lon + 360.0 * round((ref - lon) / 360.0), lat) for lon, lat in ring))
    for sc in scenes.values():
        sc.footprint = _scene_footprint(sc)
        if not sc._polar and sc.bbox[0] < -180.0:  # one convention: across 180, the east edge runs past it
            sc.bbox = (sc.bbox[0] + 360.0, sc.bbox[1], sc.bbox[2] + 360.0, sc.bbox[3])
            sc.footprint = _shifted(sc.footprint, 360.0)
        if sc.footprint is None and math.isfinite(sc.bbox[0]):
            w, s, e, n = sc.bbox
            sc.footprint = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        if sc._polar and math.isfinite(sc.bbox[0]):  # near a pole a tile may hold every longitude
            sc.bbox = _polar_bbox(sc)
        if math.isfinite(sc.bbox[1]):  # a grid half a pixel past a pole: latitudes stay within +-90
            sc.bbox = (sc.bbox[0], max(-90.0, sc.bbox[1]), sc.bbox[2], min(90.0, sc.bbox[3]))
        sc._corners = []
    ordered = sorted(scenes.values(), key=lambda s: (s.item_id, s.id))
    dated = sorted((s for s in ordered if s.datetime), key=lambda s: s.datetime, reverse=True)
    return dated + [s for s in ordered if not s.datetime]


def _shifted(geom: dict | None, dx: float) -> dict | None:
    """A GeoJSON Polygon / MultiPolygon moved ``dx`` degrees of longitude."""
    if geom is None:
        return None

    def move(c: Any) -> Any:
        if c and isinstance(c[0], (int, float)):
            return [c[0] + dx, *c[1:]]
        return [move(x) for x in c]

    return {**geom, "coordinates": move(geom["coordinates"])}


#: Latitude (degrees) beyond which a scene's outline is the union of its tiles' footprints.
POLAR_LAT = 80.0


def _tile_box(bbox: Any) -> tuple[float, float, float, float] | None:
    """A tile's ``bbox`` with its east edge past 180 when it crosses the antimeridian (W > E)."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        return None
    return (w, s, e + 360.0 if e < w else e, n)


def _polar_bbox(sc: Scene) -> tuple[float, float, float, float]:
    """The bbox of a scene with a tile past :data:`POLAR_LAT`: the shortest longitude interval
    holding its footprint's parts (:func:`~rsir_stac.tiling.footprints.union_bounds`; every
    longitude for one round a pole), the east edge past 180 across it; every longitude when it has
    no footprint.  A scene reaching 80 degrees without holding a pole (Svalbard; a geostationary
    disk's limb at 81) keeps its own longitudes: it was given every one, and the map zoomed out to
    the world to show it."""
    from shapely.geometry import shape

    from rsir_stac.tiling.footprints import union_bounds

    _, s, _, n = sc.bbox
    if sc.footprint is None:
        return (-180.0, s, 180.0, n)
    geom = shape(sc.footprint)
    box = union_bounds([g.bounds for g in getattr(geom, "geoms", [geom]) if not g.is_empty])
    if box is None:
        return (-180.0, s, 180.0, n)
    w, _, e, _ = box
    return (w, s, e + 360.0 if w > e else e, n)


def _tile_ring(p: Mapping[str, Any]) -> tuple[tuple[float, float], ...] | None:
    """A tile's outline (its densified ``outline`` when stored, else its ``corners``), unwrapped
    so that no edge jumps by more than 180 degrees of longitude."""
    raw = p.get("outline") if isinstance(p.get("outline"), list) else [
        (c.get("lon"), c.get("lat")) for c in p.get("corners") or [] if isinstance(c, Mapping)]
    try:
        ring = [(float(a), float(b)) for a, b in raw]
    except (TypeError, ValueError):
        return None
    if len(ring) < 3:
        return None
    out = [ring[0]]
    for lon, lat in ring[1:]:
        prev = out[-1][0]
        out.append((lon + 360.0 * round((prev - lon) / 360.0), lat))
    return tuple(out)


def _scene_footprint(sc: Scene) -> dict | None:
    """The outline of a scene's tiles (see :func:`scenes_from_payloads`)."""
    import shapely
    from shapely.geometry import MultiPoint, mapping, shape

    if not sc._corners:
        return None
    if not sc._polar:
        hull = MultiPoint([c for ring in sc._corners for c in ring]).convex_hull
        return mapping(hull) if hull.geom_type == "Polygon" else None
    from rsir_stac.tiling.footprints import footprint_geometry

    pole = 90.0 if sc.bbox[3] >= POLAR_LAT else -90.0
    try:
        parts = []
        for ring in sc._corners:  # back to -180..180 (the rings were unwrapped about the scene)
            turn = 360.0 * round(ring[0][0] / 360.0)
            ring = [(lon - turn, lat) for lon, lat in ring]
            parts.append(footprint_geometry(ring, pole=pole if max(abs(lat) for _, lat in ring) >= POLAR_LAT
                                            else None))
        geoms = [shapely.set_precision(shape(g), 1e-7) for g in parts if g]
        union = shapely.unary_union(geoms) if geoms else None
    except (shapely.errors.GEOSException, ValueError) as err:  # one odd scene must not break the list
        log.warning("scene %s: outline from its tiles failed (%s); its bbox stands in", sc.item_id, err)
        return None
    return mapping(union) if union is not None and union.geom_type in ("Polygon", "MultiPolygon") else None


@dataclass(frozen=True)
class SceneChoice:
    """Which scenes a tile draws and in which order: those acquired within ``datetime``
    (``START/END`` as the search filters take it: a scene's acquisition interval meets it, as a
    tile's does in search; undated scenes are then left out), of the ``collections`` (any when
    empty), and the scenes of STAC item ``item`` first."""

    datetime: str | None = None
    collections: tuple[str, ...] = ()
    item: str | None = None

    def __post_init__(self) -> None:
        if self.datetime:
            from rsir_stac.store.filters import parse_datetime_range

            object.__setattr__(self, "_range", parse_datetime_range(self.datetime))   # InputError when malformed

    def order(self, scenes: list[Scene]) -> list[Scene]:
        """``scenes`` (newest first) filtered and reordered by this choice."""
        out = [sc for sc in scenes if (not self.collections or sc.collection in self.collections)
               and (not self.datetime or _meets(sc.datetime, sc.end_datetime, *self._range))]
        if self.item:
            out = [sc for sc in out if sc.item_id == self.item] + [sc for sc in out if sc.item_id != self.item]
        return out


def _instant(when: str | None):
    """An RFC 3339 time as an aware datetime (UTC when naive), or None."""
    from datetime import datetime, timezone

    if not when:
        return None
    try:
        t = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def _meets(when: str | None, until: str | None, start, end) -> bool:
    """Whether the scene's acquisition ``when`` .. ``until`` (RFC 3339; ``until`` None: the instant
    ``when``) meets ``start``..``end`` (None: open), inclusive, as :func:`rsir_stac.store.filters.matches`
    tests a tile's interval."""
    t0 = _instant(when)
    if t0 is None:
        return False
    t1 = _instant(until) or t0
    return (start is None or t1 >= start) and (end is None or t0 <= end)
