"""Label files made on another model's index of the same tiles, read with this index's point ids.

Point ids include the model (:func:`rsir_stac.ingest.points.point_id`), so a label file made
before ``rsir-stac reindex`` (or on an index of another model over the same sources and
tiling) names ids the new index does not hold.  Each label's tile is found again from what
the file keeps (``search``, ``classify``, ``export`` and the map page write the same):

1. its item (``properties.item_id``): the stored tiles of that item;
2. else its footprint (the label's geometry): the stored tiles centred within it;

and, among those, the tile whose id under the file's model (``rsir:model_id``, else each
feature's ``model_id`` property, which search results and exports carry) is the labelled id.  The match is exact (item, asset, grid window and tiling), never "the nearest
tile", so a time series or an overlapping tiling cannot swap one tile for another.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from rsir_stac.errors import InputError, PointNotFoundError
from rsir_stac.labels import Label, LabelSet

log = logging.getLogger(__name__)

#: Widening of a footprint's radius when its tiles are looked up by place (projected
#: footprints are not great-circle polygons).
FOOTPRINT_MARGIN = 1.1
#: Models other than the index's that one label set's labels may have been made on (each costs
#: an id computation per point scanned; a real file names one, two after chained reindexes).
MAX_OTHER_MODELS = 4


def labels_in_index(store: Any, labels: LabelSet, model_id: str, what: str = "label set") -> LabelSet:
    """``labels`` with the point ids of ``store`` (an index of ``model_id``), model ``model_id``.

    Labels whose id is stored are kept as they are.  When the set was made on an index of
    another model (``labels.model_id``), the others are matched to the stored tile they name
    (module docstring); each matched label keeps its label, note, geometry and properties.

    Raises PointNotFoundError (naming ``what``) when a label's tile is not in ``store``, and
    InputError when two labels of the file name one stored tile with opposite labels.
    """
    present = store.present_ids(lb.point_id for lb in labels.labels)
    missing = [lb for lb in labels.labels if lb.point_id not in present]
    if not missing:
        return dataclasses.replace(labels, model_id=labels.model_id or model_id)
    # the model a label was made on: the file's, else the label's own (search and export write each
    # tile's model_id; a GIS saving the file drops the file's member but keeps the properties)
    olds = {lb.point_id: _old_model(labels, lb) for lb in missing}
    named = {m for m in olds.values() if m}
    if len(named) == 1:  # labels that say no model, beside ones that all say one: that one
        olds = {pid: m or next(iter(named)) for pid, m in olds.items()}
    others = {m for m in olds.values() if m and m != model_id}
    if not others:
        if present:  # most of the file is this index's: a stale or mistyped tile, not another index
            raise PointNotFoundError(
                f"{what}: {len(missing)} of {len(labels)} labelled tiles are not in {store.describe()} (first: point "
                f"{missing[0].point_id}); remove {'that feature' if len(missing) == 1 else 'those features'} from the "
                "file (a tile deleted or re-ingested under another tiling, or an id mistyped), or label them again")
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PointNotFoundError(f"{what}: point {missing[0].point_id}{more} is not in {store.describe()}; the labels "
                                 "come from another index, open that one or label tiles of this index")
    if len(others) > MAX_OTHER_MODELS:
        raise InputError(
            f"{what}: its labels were made on {len(others)} different models (first: {sorted(others)[0]}); "
            f"labels of at most {MAX_OTHER_MODELS} other models are matched to this index's tiles; split the file "
            "by model, or label these tiles in this index")
    found = _match(store, [lb for lb in missing if olds[lb.point_id] in others], olds)
    lost = [lb for lb in missing if lb.point_id not in found]
    if lost:
        first = olds[lost[0].point_id] or "unknown"
        raise PointNotFoundError(
            f"{what}: {len(lost)} of {len(labels)} labels (first: point {lost[0].point_id}) were made on an index of "
            f"model {first}, and {store.describe()}, which holds model {model_id}, has no tile of the same "
            "item, asset and grid window; ingest their sources into this index with the same tiling, or open the "
            "index the labels came from")
    log.info("%s: %d labels made on an index of model %s matched to this index's tiles (model %s)", what,
             len(found), ", ".join(sorted(others)), model_id)
    return dataclasses.replace(labels, labels=_renamed(labels.labels, found, what), model_id=model_id,
                               matched=tuple((lb.point_id, found.get(lb.point_id, lb.point_id)) for lb in labels.labels))


def _old_model(labels: LabelSet, label: Label) -> str | None:
    """The model of the index ``label`` was made on: the label file's ``rsir:model_id``, else the
    label's own ``model_id`` property (a search or export row's), else None."""
    own = label.properties.get("model_id")
    return labels.model_id or (own if isinstance(own, str) and own else None)


def _renamed(labels: Iterable[Label], found: dict[str, str], what: str) -> tuple[Label, ...]:
    """The labels under their new ids, in file order (one label per tile: labels of the file that name one
    tile with the same label, by this index's id and by the other model's, are kept once, with a warning)."""
    out: dict[str, Label] = {}
    named: dict[str, list[str]] = defaultdict(list)
    for lb in labels:
        new = found.get(lb.point_id, lb.point_id)
        prev = out.get(new)
        if prev is not None and prev.label != lb.label:
            raise InputError(f"{what}: points {prev.point_id} and {lb.point_id} are one tile of this index, labelled "
                             "both positive and negative; keep one of the two")
        if prev is None:
            out[new] = dataclasses.replace(lb, point_id=new)
        named[new].append(lb.point_id)
    for new, ids in named.items():
        if len(ids) > 1:
            log.warning("%s: points %s and %s are one tile of this index (point %s), labelled %s each time; it is "
                        "kept once", what, ", ".join(ids[:-1]), ids[-1], new, out[new].label)
    return tuple(out.values())


def _match(store: Any, missing: list[Label], olds: dict[str, str | None]) -> dict[str, str]:
    """{labelled id: stored id} for the ``missing`` labels whose tile ``store`` holds, each label
    made on the model ``olds[its id]``.  At most about three passes over the index, whatever the
    labels: the items named (each point is under one item), the places around the labels'
    footprints while these add up to less than the index, then the whole index once for the
    labels left.  (A file of world-sized footprints made one full scan per label and per model,
    holding the store for minutes.)"""
    from rsir_stac.store.filters import SearchFilter

    want: dict[str, set[str]] = defaultdict(set)
    for lb in missing:
        want[olds[lb.point_id]].add(lb.point_id)
    found: dict[str, str] = {}
    items = {lb.properties.get("item_id") for lb in missing}
    for item in sorted(i for i in items if isinstance(i, str) and i):
        found.update(_ids_under(store._scan(SearchFilter(item_ids=(item,))), want))
    budget = [max(store.count(), 1)]
    rest = False
    for lb in missing:
        if lb.point_id in found or not lb.geometry:
            continue
        around = _footprint_circle(lb.geometry)
        if around is None:
            continue
        if budget[0] <= 0:
            rest = True
            break
        found.update(_ids_under(_counted(store._scan(None, around=around), budget), want))
        rest = rest or (budget[0] <= 0 and lb.point_id not in found)
    if rest and any(lb.point_id not in found for lb in missing if lb.geometry):
        found.update(_ids_under(store._scan(None), want))
    return found


def _counted(points: Iterator[Any], budget: list[int]) -> Iterator[Any]:
    """``points``, stopping once ``budget[0]`` of them (decremented in place) are spent."""
    for point in points:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        yield point


def _ids_under(points: Iterator[tuple[str, dict, Any]], want: dict[str, set[str]]) -> Iterator[tuple[str, str]]:
    """(labelled id, stored id) of the scrolled ``points`` whose id under one of ``want``'s models
    (at most :data:`MAX_OTHER_MODELS`) is among the ids wanted for it."""
    from rsir_stac.ingest.points import payload_point_id

    for pid, payload, _ in points:
        for model, ids in want.items():
            try:
                old = payload_point_id(payload, model)
            except (KeyError, TypeError, ValueError):  # a point not written by ingest
                break
            if old in ids:
                yield old, pid


def _footprint_circle(geometry: dict) -> tuple[float, float, float] | None:
    """(lon, lat, metres): a point inside the footprint and a radius holding all of it, so
    the tile's centre is within (None for a geometry that is not a lon/lat polygon)."""
    import shapely
    from shapely.geometry import shape

    from rsir_stac.store.filters import haversine_m

    try:
        geom = shape(geometry)
        inside = geom.representative_point()
        lon, lat = float(inside.x), float(inside.y)
        pts = [(float(x), float(y)) for x, y in shapely.get_coordinates(geom)]
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, NotImplementedError,
            shapely.errors.ShapelyError):  # not a geometry shapely can read (an empty shell with holes)
        return None
    if not pts or not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        return None
    far = max(float(haversine_m(lon, lat, float(x), float(y))) for x, y in pts)
    return lon, lat, max(1.0, far * FOOTPRINT_MARGIN)


__all__ = ["FOOTPRINT_MARGIN", "MAX_OTHER_MODELS", "labels_in_index"]
