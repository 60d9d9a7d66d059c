"""Resuming over what the index already holds: a scene's stored tiles are checked against it
(bands, position on the ground), a bare raster's stored tiles relabelled, other tilings of the
same item warned about, and an older non-square-pixel tiling kept."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from rsir_stac.errors import InputError
from rsir_stac.gsd import reader_options
from rsir_stac.ingest.points import WRITE_BATCH, _iso, point_id, tiling_key

log = logging.getLogger(__name__)


def _check_stored(store, scene, stored_id: str, ref, bands: Sequence[int]) -> dict | None:
    """Refuse (InputError) to ingest ``scene`` over stored tiles it no longer matches: other
    bands, or a tile that has moved on the ground (the file's CRS or geotransform was fixed
    since).  Point ids depend on neither, so the run would skip every tile as already indexed
    and keep the old bands or footprints without a word.  ``ref`` is the tile of ``stored_id``
    as the scene gives it now.  Returns the stored payload (None when the point is gone)."""
    from rsir_stac.tiling.footprints import FOOTPRINT_TOLERANCE_DEG, corner_shift_deg

    hits = store.retrieve([stored_id])
    if not hits:
        return None
    payload = hits[0].payload
    off = corner_shift_deg(payload, ref)  # the test reindex makes, with its tolerance (~1 cm)
    if off is not None and off > FOOTPRINT_TOLERANCE_DEG:
        moved = off * 111_320.0  # metres, roughly: the message's scale only
        raise InputError(f"item {scene.item_id} has moved on the ground since it was indexed in {store.describe()} "
                         f"(its first stored tile is {off:.2g} degrees, about {moved:,.{0 if moved >= 10 else 2}f} m, "
                         "from where the file puts it now: its CRS or geotransform changed); its tiles keep their "
                         "ids, so ingest it into a new --index to index it where it is now")
    was = (payload.get("tiling") or {}).get("bands")
    if was is not None and [int(b) for b in was] != [int(b) for b in bands]:
        had, now = ",".join(map(str, was)), ",".join(map(str, bands))
        raise InputError(f"item {scene.item_id} is already in {store.describe()} with bands {had}, not {now}; its "
                         f"tiles keep their ids whatever the bands, so ingest it with --bands {now} into another "
                         f"--index (or re-run with --bands {had})")
    return payload


#: Payload fields a bare raster's ``--collection`` / ``--datetime`` set.
LABEL_FIELDS = ("collection", "datetime", "datetime_epoch", "datetime_end_epoch", "start_datetime", "end_datetime")


def relabel(store, scene, ids: set[str], *, apply: bool = True) -> int:
    """Give stored tiles of a bare raster the collection and time of ``scene`` when
    they differ (``ingest --collection/--datetime`` run again on an indexed file):
    their vectors are kept, nothing is embedded again.  Returns how many changed (with
    ``apply`` False: how many would, nothing written)."""
    dt, end = scene.interval
    want = {"collection": scene.collection, "datetime": _iso(dt),
            "datetime_epoch": dt.timestamp() if dt else None,
            "datetime_end_epoch": end.timestamp() if end else None,
            **({"start_datetime": _iso(dt), "end_datetime": _iso(end)} if dt and end != dt else {})}
    if want["collection"] is None and want["datetime"] is None:
        return 0  # nothing given this time: keep what the tiles have
    from rsir_stac.store import Point

    changed = []
    for hit in store.retrieve(sorted(ids), with_vectors=True):
        have = {k: hit.payload.get(k) for k in LABEL_FIELDS}
        if have != {k: want.get(k) for k in LABEL_FIELDS}:
            payload = {k: v for k, v in hit.payload.items() if k not in LABEL_FIELDS} | want
            changed.append(Point(hit.id, np.asarray(hit.vector, dtype=np.float32), payload))
    if not apply:
        return len(changed)
    for s in range(0, len(changed), WRITE_BATCH):
        store.upsert(changed[s : s + WRITE_BATCH])
    return len(changed)


def _warn_other_tilings(store, scene, ids: Sequence[str], held_here: int) -> None:
    """Warn when the index already holds tiles of ``scene`` cut another way (another GSD,
    tile size, stride, edge rule, asset or bands): they are other points (ids include the
    tiling), so both sets stay and overlap on the map, in ``--at`` and in classify counts.

    ``ids`` are the scene's point ids under this run's tiling key, ``held_here`` how many of
    them the index holds intact.  The item's points that are none of ``ids`` are the other
    tilings'; the ids this run rewrites (present but damaged or unverified, e.g. after the digest
    ledger was lost) are this tiling's own and count as such."""
    from rsir_stac.store import SearchFilter

    same = SearchFilter(item_ids=(scene.item_id,),
                        collections=(scene.collection,) if scene.identity_collection else ())
    n_item = store.count(same)
    other = n_item - held_here
    if other > 0:  # only then: are the rest ours, present but not verified (rewritten now)?
        other = n_item - len(store.present_ids(ids))
    if other > 0:
        log.warning("%s: the index already holds %d tiles of this item cut another way (another --gsd, "
                    "--tile-size, --stride, --edge, --asset or --bands); both sets are kept and overlap (ingest "
                    "into a new --index to keep one tiling per index)", scene.item_id, other)


def _legacy_tiling(store, lock, scene, reader, scene_gsd, legacy, options, tile_size, stride, model_id):
    """``(reader, gsd)``: an index that already holds this scene tiled at its own,
    non-square pixels (as rsir-stac did before :func:`rsir_stac.gsd.square_pixels`) keeps that tiling,
    so a re-ingest adds no overlapping tiles; otherwise the square-pixel reader."""
    from rsir_stac.tiling import SceneReader

    old = point_id(scene.identity_collection, scene.item_id, scene.asset_key, legacy,
                   tiling_key(tile_size, stride, None, options.edge), model_id)
    with lock:
        held = bool(store.existing_ids([old]))
    if not held:
        return reader, scene_gsd
    log.warning("%s: this index holds its tiles cut from its own non-square pixels (an older rsir-stac); "
                "keeping that tiling so nothing is indexed twice (ingest into a new --index for square pixels)",
                scene.item_id)
    reader.close()
    return SceneReader.open(scene.href, target_gsd=None, **reader_options(scene, options, tile_size, stride)), None
