"""The producer of the ingest pipeline: a reader thread that tiles each scene with rasterio
windows and fills a bounded queue with ``(point id, pixels, payload)`` for the tiles the index
does not hold yet, with progress and failures as messages between them.

Queue messages (``(kind, value)``): ``start``/``end``/``failed`` an item (its id), ``total``
tiles to read of an item, ``tile`` one tile, ``skip`` windows done without a tile, ``error``
an exception that stops the run, and :data:`_END` last of all.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir_stac.errors import BandsError, InputError, RasterError, RsirError, StoreError
from rsir_stac.gsd import MAX_SMALL_SCENE_UPSAMPLE, open_scene
from rsir_stac.ingest.options import IngestOptions
from rsir_stac.ingest.points import file_stamp, point_id, tile_payload, tiling_key
from rsir_stac.ingest.report import IngestReport, small_scene_hint
from rsir_stac.ingest.resume import _check_stored, _legacy_tiling, _warn_other_tilings, relabel

log = logging.getLogger(__name__)

_END = object()


#: Tiles with a side over this many times the network input are shrunk to the input as they
#: are read (:func:`~rsir_stac.model.transforms.fit_to_input`, the embedder's own resize), so the
#: queue and the batches waiting to be embedded hold at most input-sized tiles: 256 queued 4096 px
#: tiles were 12 GB.  Smaller tiles are resized by the embedding lanes, in parallel.
SHRINK_TILES_OVER = 2


def _shrinker(tile_size: int, input_size: int | None):
    """The resize queued tiles get (None: none): :func:`~rsir_stac.model.transforms.fit_to_input`
    for tiles over :data:`SHRINK_TILES_OVER` times the network input."""
    if not input_size or tile_size <= SHRINK_TILES_OVER * input_size:
        return None
    from functools import partial

    from rsir_stac.model.transforms import fit_to_input

    return partial(fit_to_input, size=input_size)


@dataclass(frozen=True)
class _Reading:
    """What the reader thread reads every scene of one run with: the queue it fills, the
    stop signal, the store (used under ``lock`` from both threads), the tiling asked for
    (``gsd`` None: each scene's own), the report it counts into and the resize of queued
    tiles (:func:`_shrinker`)."""

    q: queue.Queue
    stop: threading.Event
    lock: threading.Lock
    store: Any
    model_id: str
    options: IngestOptions
    tile_size: int
    stride: int
    gsd: float | None
    report: IngestReport
    shrink: Callable[[np.ndarray], np.ndarray] | None


def _produce(scenes, q, stop, lock, store, model_id, options, tile_size, stride, gsd, report,
             input_size: int | None = None) -> None:
    """Reader thread: tiles each scene and queues (point id, pixels, payload); tiles over
    :data:`SHRINK_TILES_OVER` times ``input_size`` are queued at the input size."""
    run = _Reading(q, stop, lock, store, model_id, options, tile_size, stride, gsd, report,
                   _shrinker(tile_size, input_size))

    try:
        for scene in scenes:
            if stop.is_set():
                return
            q.put(("start", scene.item_id))
            try:
                if not _produce_scene(run, scene):
                    return
                q.put(("end", scene.item_id))
            except StoreError:
                raise  # the index itself failed: stop the run
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop a catalogue
                if _item_failed(run, scene, exc):
                    return
    except BaseException as err:  # noqa: BLE001 - hand any crash to the consumer
        q.put(("error", err))
    finally:
        q.put((_END, None))


def _produce_scene(run: _Reading, scene) -> bool:
    """Open ``scene``, count its windows and queue the tiles the index does not hold yet;
    an item with no tile at all is reported empty.  False when the run was stopped meanwhile.
    Raises what opening or reading the scene raises (the item fails)."""
    from rsir_stac.ingest.fill import warn_unmasked_fill
    from rsir_stac.tiling import gdal_env

    options = run.options
    try:
        reader, scene_gsd, legacy = open_scene(scene, options, run.tile_size, run.stride, run.gsd)
    except BandsError:
        held = _held_bands(run, scene)
        if held is None:
            raise
        log.info("item %s: read with the bands %s it is indexed with", scene.item_id, ",".join(map(str, held)))
        scene = dataclasses.replace(scene, bands=held)
        reader, scene_gsd, legacy = open_scene(scene, options, run.tile_size, run.stride, run.gsd)
    if options.gsd is not None and scene_gsd and reader.native_gsd > scene_gsd * MAX_SMALL_SCENE_UPSAMPLE:
        run.report.items_enlarged.append({"item": scene.item_id, "native_gsd": round(reader.native_gsd, 4),
                                          "gsd": scene_gsd, "factor": round(reader.native_gsd / scene_gsd, 1)})
    check_item_geometry(run.report, scene, reader)
    check_item_crs(scene, reader)
    if legacy is not None:
        reader, scene_gsd = _legacy_tiling(run.store, run.lock, scene, reader, scene_gsd, legacy, options,
                                           run.tile_size, run.stride, run.model_id)
    with reader, gdal_env():  # one GDAL environment per scene, not per tile
        tkey = tiling_key(run.tile_size, run.stride, scene_gsd, options.edge)
        refs = reader.windows()
        ids = [point_id(scene.identity_collection, scene.item_id, scene.asset_key, r.grid, tkey, run.model_id)
               for r in refs]
        moved = _moved_item_id(run, scene, refs, ids)
        if moved is not None:
            log.info("item %s: indexed as %s, which a reindex --relocate pointed at this file", scene.item_id, moved)
            scene = dataclasses.replace(scene, item_id=moved)
            ids = [point_id(scene.identity_collection, scene.item_id, scene.asset_key, r.grid, tkey, run.model_id)
                   for r in refs]
        stamp = file_stamp(scene)
        existing = _held_tiles(run, scene, refs, ids, reader.bands, stamp)
        run.report.tiles_total += len(refs)
        run.report.tiles_off_earth += len(reader.off_earth)  # left out of refs, said only in a warning before
        if reader.off_earth_note:
            log.warning("%s", reader.off_earth_note)
        run.report.tiles_existing += len(existing)
        run.q.put(("total", len(refs) - len(existing)))
        if len(existing) < len(refs):
            _ = reader.plan  # the scene's stretch: if it cannot be read the item fails once, not each window
            warn_unmasked_fill(scene.item_id, reader, run.report.items_unmasked_fill)
        counts = _queue_windows(run, scene, reader, refs, ids, existing, scene_gsd, stamp)
        if counts is None:
            return False
        queued, failed = counts
        if not queued and not failed and not existing:
            _report_empty(run, scene, reader, len(refs))
    return True


def _moved_item_id(run: _Reading, scene, refs: Sequence, ids: Sequence[str]) -> str | None:
    """The item id a bare raster is indexed under at its current path after ``reindex --relocate``
    moved the index to it, or None.  A bare raster's item id includes its path, so the file at its new
    path gets another id, and an ingest of the moved folder (the container's ``ingest /data``) wrote
    every tile again beside the relocated ones.  Found from the stored tile centred where this
    raster's first window is, whose ``href`` is this file and whose id the run would not give it."""
    if scene.from_stac or not refs:
        return None
    from rsir_stac.store import SearchFilter
    from rsir_stac.store.query import sample_ids

    step = max(1, len(refs) // 16)  # some windows are empty and were never stored: probe 16 spread out
    with run.lock:
        if not run.store.count() or run.store.existing_ids(ids[::step][:16]):
            return None  # (a scene held under this id: _held_tiles looks up all of its ids next)
        for ref in refs[::step][:16]:
            flt = SearchFilter(near=(float(ref.centroid[0]), float(ref.centroid[1]), 0.5))
            if not run.store.count(flt):
                continue
            gone, stamp = None, file_stamp(scene)
            for hit in run.store.retrieve(sample_ids(run.store, 64, flt)):
                p = hit.payload
                if p.get("href") == scene.href and p.get("asset") == scene.asset_key \
                        and p.get("item_id") != scene.item_id:
                    return str(p["item_id"])
                if gone is None and _looks_moved(p, scene, ref, stamp):
                    gone = p
            if gone is not None:  # ops trial: a moved or renamed file became a silent second copy
                log.warning("item %s looks like %s moved or renamed here (a tile of the same grid at the same "
                            "place, and that file is gone): it is indexed again as a new item beside the old one's "
                            "tiles; to keep one copy, move the index with `rsir-stac reindex --relocate OLD=NEW` "
                            "(README, reindex) instead", scene.item_id, gone.get("href"))
                return None
    return None


def _looks_moved(payload: dict, scene, ref, now: dict | None) -> bool:
    """Whether a stored tile ``payload`` at the place of window ``ref`` of the bare raster ``scene``
    looks like the same file before a move: a bare raster's tile of the same grid window and size,
    whose local file no longer exists (and whose size, when both are stamped, is ``now``'s, this
    file's :func:`~rsir_stac.ingest.points.file_stamp`)."""
    import os

    from rsir_stac.tiling.sources import _is_url

    href = payload.get("href")
    if payload.get("source") != "raster" or not isinstance(href, str) or href == scene.href or _is_url(href):
        return False
    g = payload.get("grid") or {}
    if (g.get("col_off"), g.get("row_off"), g.get("width"), g.get("height")) != \
            (ref.grid.col_off, ref.grid.row_off, ref.grid.width, ref.grid.height) or os.path.exists(href):
        return False
    was = payload.get("file_stamp")
    return not (isinstance(was, dict) and now and was.get("size") != now.get("size"))


def _held_bands(run: _Reading, scene) -> tuple[int, int, int] | None:
    """The 1-based bands a bare raster the run cannot choose bands for (no ``--bands``; BandsError)
    is already indexed with, or None: a re-run of a folder ingest that once gave it ``--bands``
    (which applies to every file of a run) reads it as it is stored, not as a failure each time."""
    if scene.from_stac or scene.bands is not None:
        return None
    from rsir_stac.store import SearchFilter
    from rsir_stac.store.query import sample_ids

    flt = SearchFilter(item_ids=(scene.item_id,))
    with run.lock:  # counted first: a store the run has not opened yet (a new --index) is not created
        ids = sample_ids(run.store, 1, flt) if run.store.count(flt) else []
        got = run.store.retrieve(ids) if ids else []
    bands = (got[0].payload.get("tiling") or {}).get("bands") if got else None
    if isinstance(bands, (list, tuple)) and len(bands) == 3 and all(isinstance(b, int) for b in bands):
        return tuple(bands)  # type: ignore[return-value]
    return None


def _lonlat_box(w: float, s: float, e: float, n: float):
    """A lon/lat box as shapely geometry; W > E: the two parts either side of 180."""
    from shapely.geometry import MultiPolygon, box

    return box(w, s, e, n) if w <= e else MultiPolygon([box(w, s, 180.0, n), box(-180.0, s, e, n)])


def check_item_crs(scene, reader) -> None:
    """Warn when a STAC item's (or asset's) ``proj:code``/``proj:epsg`` names another CRS than its
    raster's own: the item's metadata or the file is wrong.  Nothing changes: the stored
    footprints follow the raster (its geotransform and CRS)."""
    proj = getattr(scene, "proj", None)
    if not proj:
        return
    _check_item_shape(scene, reader, proj)
    from rsir_stac.stac.projection import proj_crs

    named = proj_crs(proj)
    if named is None:
        return
    import pyproj

    try:
        same = pyproj.CRS.from_user_input(named).equals(pyproj.CRS.from_user_input(reader.crs),
                                                        ignore_axis_order=True)
    except (pyproj.exceptions.CRSError, TypeError, ValueError):
        return  # a code pyproj does not know: nothing to compare
    if not same:
        log.warning("item %s: its projection metadata names %s, but the raster of asset %r is in %s; the stored "
                    "footprints follow the raster (check the item's proj: fields or the asset)", scene.item_id,
                    named if len(named) < 40 else named[:37] + "...", scene.asset_key, reader.crs)
        return
    _check_item_transform(scene, reader, proj)


def _check_item_shape(scene, reader, proj) -> None:
    """Warn when the item's ``proj:shape`` (rows, columns) is not its raster's: the item describes
    another grid (or lists the size as columns, rows).  The stored footprints follow the raster."""
    shape = proj.get("proj:shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)):
        return
    own = [int(reader.height), int(reader.width)]
    if list(shape) != own:
        swapped = " (columns, rows: swapped?)" if list(shape) == own[::-1] else ""
        log.warning("item %s: its proj:shape %s is not the raster's %s (rows, columns)%s (asset %r); the stored "
                    "footprints follow the raster (check the item's proj: fields or the asset)", scene.item_id,
                    list(shape), own, swapped, scene.asset_key)


def _check_item_transform(scene, reader, proj) -> None:
    """Warn when the item's ``proj:transform`` (for a grid of the file's shape) places the raster
    elsewhere than the file's geotransform: by more than half a pixel, or another pixel size."""
    from rsir_stac.stac.projection import proj_transform

    native = getattr(reader, "native_transform", None)
    given = proj_transform(proj, (reader.height, reader.width))
    if native is None or given is None:
        return
    a, b, c, d, e, f = native
    ga, gb, gc, gd, ge, gf = given
    size = math.hypot(a, d) or 1.0
    moved = math.hypot(gc - c, gf - f)
    scaled = max(abs(ga - a), abs(gb - b), abs(gd - d), abs(ge - e)) > 1e-6 * size
    if moved > 0.5 * size or scaled:
        log.warning("item %s: its proj:transform %s is not the raster's geotransform %s (asset %r: %s); the stored "
                    "footprints follow the raster (check the item's proj: fields or the asset)", scene.item_id,
                    [round(v, 6) for v in given], [round(v, 6) for v in native], scene.asset_key,
                    f"its corner {moved:.3g} CRS units away" if moved > 0.5 * size else "another pixel size")


def check_item_geometry(report, scene, reader) -> None:
    """Warn (and record in ``report.items_misplaced``) when a STAC item's geometry does not
    overlap its asset's raster footprint: usually a wrong CRS or a wrong asset.  Nothing
    changes: the stored footprints follow the raster."""
    if not scene.item_geometry:
        return
    import shapely
    from shapely.geometry import shape
    from shapely.ops import nearest_points

    from rsir_stac.store.filters import haversine_m

    try:
        geom = shape(scene.item_geometry)
        raster_bbox = reader.bounds_lonlat
        raster = _lonlat_box(*raster_bbox)
        if geom.is_empty or not all(map(math.isfinite, raster_bbox)):
            return
        if geom.intersects(raster) or geom.buffer(0).intersects(raster):
            return
        a, b = nearest_points(geom, raster)
        # the short way round: a box across 180 is near an item just the other side of it
        km = float(min(haversine_m(a.x, a.y, b.x + k, b.y) for k in (0.0, -360.0, 360.0))) / 1000.0
    except (shapely.errors.GEOSException, ValueError, TypeError, AttributeError):
        return  # a geometry shapely cannot read: pystac validated the item, nothing more to say
    if km < 0.001:  # touching across 180
        return
    item_bbox = [round(float(v), 6) for v in geom.bounds]
    report.items_misplaced.append({"item": scene.item_id, "asset": scene.asset_key, "distance_km": round(km, 1),
                                   "item_bbox": item_bbox, "raster_bbox": [round(v, 6) for v in raster_bbox]})
    log.warning("item %s: its geometry (bbox %s) is %.0f km from the raster of asset %r (bbox %s) and does not "
                "overlap it; the stored footprints follow the raster (check the item's geometry, the asset, or "
                "the raster's CRS)", scene.item_id, ",".join(f"{v:g}" for v in item_bbox), km, scene.asset_key,
                ",".join(f"{v:.6g}" for v in raster_bbox))


def _held_tiles(run: _Reading, scene, refs: Sequence, ids: Sequence[str], bands: Sequence[int],
                stamp: dict | None = None) -> set[str]:
    """The ids of ``scene``'s tiles the index already holds, checked against the scene as it is
    now (InputError when they no longer match); a bare raster's held tiles get this run's
    collection and time, and other tilings of the item are warned about.  None are held when the
    file changed since they were indexed (``stamp``, :func:`~rsir_stac.ingest.points.file_stamp`,
    against the stored one): its tiles are embedded again."""
    store, report = run.store, run.report
    with run.lock:
        existing = store.existing_ids(ids) if ids else set()
        if existing:
            first = next(k for k, pid in enumerate(ids) if pid in existing)
            stored = _check_stored(store, scene, ids[first], refs[first], bands)
            if stored is not None:
                was = _changed_stamp(store, stored, [pid for pid in ids if pid in existing], stamp)
                if was is not None:  # its old tiles go first: a window now empty keeps none, a killed re-run resumes
                    log.warning("item %s: %s changed since it was indexed (%s); its %d indexed tiles are replaced by "
                                "its tiles as it is now", scene.item_id, scene.href, _stamp_change(was, stamp),
                                len(existing))
                    store.delete(sorted(existing))
                    report.items_changed.append(scene.item_id)
                    return set()
                _check_nodata(store, scene, stored, len(existing), run.options.nodata)
        if existing and not scene.from_stac:
            if not run.options.relabel:  # an HTTP job: the operator's labels are not rewritten unasked
                n = relabel(store, scene, existing, apply=False)
                if n:
                    raise InputError(f"item {scene.item_id}: {n} of its tiles are already indexed with another "
                                     "collection or date, and this job does not relabel them; send \"relabel\": "
                                     "true to give them this job's, or leave collection and datetime out")
            report.tiles_relabelled += relabel(store, scene, existing)
        if len(existing) < len(refs):
            _warn_other_tilings(store, scene, ids, len(existing))
    return existing


def _changed_stamp(store, first: dict, held: Sequence[str], stamp: dict | None) -> dict | None:
    """The stored ``file_stamp`` that differs from ``stamp`` (the file as it is now) among the scene's
    held tiles, or None when they match (or either has none): the first held tile's (``first``, its
    payload), then a spread of up to 16 of them, the last included (tiles are written in window
    order, so the last is the one a killed re-embedding had not reached yet)."""
    if not stamp:
        return None
    was = first.get("file_stamp")
    if isinstance(was, dict) and was != stamp:
        return was
    step = max(1, len(held) // 15)
    probe = list(dict.fromkeys(list(held[step::step][:15]) + list(held[-1:])))
    for hit in store.retrieve(probe) if probe else ():
        was = (hit.payload or {}).get("file_stamp")
        if isinstance(was, dict) and was != stamp:
            return was
    return None


def _stamp_change(was: dict, now: dict) -> str:
    """How a file's stamp changed, in words: its size, else its modification time."""
    if was.get("size") != now.get("size"):
        return f"{was.get('size')} -> {now.get('size')} bytes"
    return "modified since"


def _check_nodata(store, scene, payload: dict, n: int, nodata: float | None) -> None:
    """``--nodata`` against the ``n`` tiles of ``scene`` already indexed (``payload`` one's): a value
    they were not ingested with is warned about (they are not read again: their pixels, and the
    nodata tiles among them, stay); a run without the value they were ingested with is refused
    (InputError: its windows that were nodata would be added as tiles, beside the masked ones)."""
    stored = (payload.get("tiling") or {}).get("nodata")
    own = scene.nodata if scene.nodata is not None else nodata  # STAC raster:bands, else --nodata
    if nodata is not None and stored != nodata:
        log.warning("item %s: its %d indexed tiles were ingested without --nodata %g and are not read again, so "
                    "they stay as they are; ingest into a new --index to mask them", scene.item_id, n, nodata)
    elif stored is not None and own is None and not isinstance(stored, list):
        raise InputError(f"item {scene.item_id} is in {store.describe()} read with --nodata {stored:g} (its nodata "
                         f"windows left out), and this run reads it without; re-run with --nodata {stored:g}, or "
                         "ingest into a new --index")


def _queue_windows(run: _Reading, scene, reader, refs: Sequence, ids: Sequence[str], existing: set[str],
                   scene_gsd: float | None, stamp: dict | None = None) -> tuple[int, int] | None:
    """Read the windows of ``scene`` not in ``existing`` and queue their tiles (a nodata window
    and, unless ``fail_fast``, a corrupt one are skipped and counted); ``(queued, failed)``
    windows, or None when the run was stopped meanwhile."""
    options, report, q = run.options, run.report, run.q
    queued = failed = 0
    for ref, pid in zip(refs, ids):
        if run.stop.is_set():
            return None
        if pid in existing:
            continue
        try:
            tile = reader.read(ref)
        except RsirError as err:  # corrupt window: skip it, keep the scene
            if options.fail_fast:
                raise
            log.info("skipping window: %s", err)
            report.tiles_failed.append(str(err))
            failed += 1
            q.put(("skip", 1))
            continue
        if tile is None:
            report.tiles_empty += 1
            q.put(("skip", 1))
            continue
        queued += 1
        # tile.ref: ref, or its footprint narrowed to its projection's edge (SceneReader.read)
        payload = tile_payload(scene, tile.ref, model_id=run.model_id, tile_size=run.tile_size,
                               stride=run.stride, edge=options.edge, bands=reader.bands,
                               gsd_param=scene_gsd, nodata=reader.plan.nodata, stamp=stamp)
        q.put(("tile", (pid, tile.pixels if run.shrink is None else run.shrink(tile.pixels), payload)))
    return queued, failed


def _report_empty(run: _Reading, scene, reader, windows: int) -> None:
    """Report ``scene`` as empty (no tile indexed, none failed), and why: smaller than one tile
    at the GSD it was read at (``items_small``, with a hint), or all its ``windows`` nodata."""
    report, tile_size, options = run.report, run.tile_size, run.options
    report.items_empty.append(scene.item_id)
    w, h = reader.grid_width, reader.grid_height
    if w < tile_size or h < tile_size:
        hint = small_scene_hint(w, h, tile_size, reader.gsd, options.edge, options.min_valid)
        report.items_small.append({"item": scene.item_id, "width": w, "height": h,
                                   "gsd": reader.gsd, "hint": hint})
        log.info("item %s: %s", scene.item_id, hint)
    else:
        log.info("item %s: all %d windows are nodata or below --min-valid %g; nothing to index",
                 scene.item_id, windows, options.min_valid)


def _item_failed(run: _Reading, scene, exc: Exception) -> bool:
    """Report ``scene`` as failed with ``exc`` (as an RsirError carrying ``item_id``: an
    unexpected exception becomes a one-line RasterError) and queue ``failed``; with
    ``fail_fast`` the error is queued instead and True returned (stop reading)."""
    options, report = run.options, run.report
    err = exc if isinstance(exc, RsirError) else RasterError(
        f"{scene.href}: unexpected {type(exc).__name__} while tiling ({' '.join(str(exc).split())[:300]}); "
        "skip the item and report the bug (run with -v for the traceback)")
    if not isinstance(exc, RsirError):
        log.info("traceback of item %s", scene.item_id, exc_info=exc)
    if isinstance(err, BandsError) and options.bands is None and report.items > 1:
        # --bands applies to every source of a run: given here, it would fail the others
        err = BandsError(f"{err}; --bands applies to every source of a run, so ingest this one in a run of its "
                         "own with --bands and the others without it")
    err.item_id = scene.item_id  # type: ignore[attr-defined]
    if options.fail_fast:
        report.items_failed.append({"item": scene.item_id, "error": str(err)})
        run.q.put(("error", err))
        return True
    log.info("skipping item %s: %s", scene.item_id, err)
    report.items_failed.append({"item": scene.item_id, "error": str(err)})
    run.q.put(("failed", scene.item_id))
    return False
