"""Ingest: STAC / GeoTIFF sources → tiles → embeddings → points in the store.

The pipeline streams: a reader thread tiles scenes with rasterio windows and
fills a bounded queue; the calling thread embeds full batches and upserts
them.  Memory stays bounded by the queue, whatever the scene size.

Guarantees
----------
* Point ids are uuid5 of (collection, item, asset, tile grid window, tiling
  parameters, model id), so re-running an ingest writes no duplicates.
* Before reading any pixel, every source is listed (a bad path or document
  fails the run with nothing written) and the index is checked against the
  model (vector size, model id).
* Tiles already in the index are not read again: an interrupted run, re-run,
  finishes the work.  A batch of points is upserted whole; the store is
  flushed after each item.
* A failing item (unreadable asset, no CRS ...) is skipped and reported, and
  the run ends non-zero (``fail_fast`` stops at the first); a corrupt window
  inside a scene is skipped and reported while the rest of the scene ingests.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rsir_stac.errors import RsirError

log = logging.getLogger(__name__)

#: Namespace of point ids (uuid5).
POINT_NAMESPACE = uuid.UUID("6f1c3f2e-6a7b-5c1d-9e8f-2b3a4c5d6e7f")


@dataclass(frozen=True)
class IngestOptions:
    """How sources are tiled and written; ``None`` means "from the model bundle"."""

    asset: str | None = None
    bands: tuple[int, int, int] | None = None
    tile_size: int | None = None
    stride: int | None = None
    gsd: float | None = None
    native_gsd: bool = False
    max_upsample: float = 2.0
    edge: str = "shift"
    min_valid: float = 0.5
    batch_size: int = 64
    queue_batches: int = 4
    fail_fast: bool = False
    shard: tuple[int, int] | None = None


@dataclass
class IngestReport:
    """What an ingest did; ``ok`` is False when any item or window failed."""

    items: int = 0
    items_done: int = 0
    items_failed: list[dict[str, str]] = field(default_factory=list)
    tiles_total: int = 0
    tiles_read: int = 0
    tiles_existing: int = 0
    tiles_empty: int = 0
    tiles_failed: list[str] = field(default_factory=list)
    points_written: int = 0
    seconds: float = 0.0
    model_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.items_failed and not self.tiles_failed

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


@dataclass(frozen=True)
class IngestEvent:
    """Progress for the CLI: ``items`` known, an item ``start``/``end``, ``tiles`` done."""

    kind: str
    item_id: str = ""
    n: int = 0
    total: int = 0


def tiling_key(tile_size: int, stride: int, gsd: float | None, edge: str) -> str:
    return f"t{tile_size}s{stride}g{'native' if gsd is None else f'{gsd:.6g}'}e{edge}"


def point_id(collection: str | None, item_id: str, asset: str, grid: Any, tiling: str, model_id: str) -> str:
    """Deterministic point id of one tile."""
    key = "|".join([collection or "", item_id, asset,
                    f"{grid.col_off},{grid.row_off},{grid.width},{grid.height}", tiling, model_id])
    return str(uuid.uuid5(POINT_NAMESPACE, key))


def tile_payload(scene, ref, *, model_id: str, tile_size: int, stride: int, edge: str,
                 bands: Sequence[int], gsd_param: float | None) -> dict[str, Any]:
    """The stored payload of one tile (see README, "Point payload")."""
    w = ref.window
    dt = scene.datetime
    return {
        "item_id": scene.item_id,
        "collection": scene.collection,
        "asset": scene.asset_key,
        "href": scene.href,
        "window": {"col_off": w.col_off, "row_off": w.row_off, "width": w.width, "height": w.height},
        "grid": {"col_off": ref.grid.col_off, "row_off": ref.grid.row_off,
                 "width": ref.grid.width, "height": ref.grid.height},
        "crs": ref.crs,
        "bbox": list(ref.bbox),
        "location": {"lon": ref.centroid[0], "lat": ref.centroid[1]},
        "corners": [{"lon": lon, "lat": lat} for lon, lat in ref.corners],
        "datetime": dt.isoformat().replace("+00:00", "Z") if dt else None,
        "datetime_epoch": dt.timestamp() if dt else None,
        "gsd": ref.gsd,
        "tiling": {"tile_size": tile_size, "stride": stride, "edge": edge,
                   "gsd": gsd_param, "bands": list(bands)},
        "model_id": model_id,
    }


_END = object()


def list_scenes(sources: Sequence[str], options: IngestOptions, report: IngestReport,
                on_item_error: Callable[[RsirError], None]) -> list:
    """Resolve every source to scenes up front (errors here abort the run)."""
    from rsir_stac.stac import iter_scenes, split_shard

    scenes = list(iter_scenes(list(sources), asset=options.asset, bands=options.bands, on_error=on_item_error))
    return list(split_shard(scenes, options.shard))


def ingest(
    sources: Sequence[str],
    *,
    store=None,
    index: str | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    model=None,
    options: IngestOptions = IngestOptions(),
    progress: Callable[[IngestEvent], None] | None = None,
) -> IngestReport:
    """Ingest ``sources`` into a store (an open ``store``, or one opened from
    ``index`` / ``qdrant_url`` once every source has been listed)."""
    from rsir_stac.model.bundle import ModelBundle, load_bundle

    emit = progress or (lambda e: None)
    t0 = time.time()
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    report = IngestReport(model_id=bundle.model_id)

    def item_error(err: RsirError) -> None:
        if options.fail_fast:
            raise err
        report.items_failed.append({"item": getattr(err, "item_id", ""), "error": str(err)})

    scenes = list_scenes(sources, options, report, item_error)
    report.items = len(scenes) + len(report.items_failed)
    emit(IngestEvent("items", total=len(scenes)))
    embedder = bundle.embedder(batch_size=options.batch_size)
    own_store = store is None
    if own_store:
        from rsir_stac.store import open_store

        store = open_store(index, qdrant_url=qdrant_url, api_key=api_key)
    try:
        store.ensure_collection(bundle.dim, bundle.model_id)
        tile_size = options.tile_size or bundle.tile_size
        stride = options.stride or tile_size
        gsd = None if options.native_gsd else (options.gsd or bundle.gsd)
        q: queue.Queue = queue.Queue(maxsize=max(2, options.queue_batches) * options.batch_size)
        stop = threading.Event()
        lock = threading.Lock()  # the store is used from both threads
        producer = threading.Thread(
            target=_produce, name="rsir-tiles", daemon=True,
            args=(scenes, q, stop, lock, store, bundle.model_id, options, tile_size, stride, gsd, report),
        )
        producer.start()
        try:
            _consume(q, lock, store, embedder, options, report, emit)
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    producer.join(0.05)
        store.flush()
        if report.points_written:
            store.optimize()  # build the HNSW graph for what was added
    finally:
        if own_store:
            store.close()
    report.seconds = round(time.time() - t0, 2)
    log.info("ingest done: %s", {k: v for k, v in report.as_dict().items() if not isinstance(v, list)})
    return report


def _open_scene(scene, options, tile_size, stride, gsd):
    """Open a scene at the target GSD, or at its own GSD when that would upsample
    more than ``options.max_upsample`` times (a 30 m scene is not blown up to 0.3 m)."""
    from rsir_stac.tiling import SceneReader

    kw = dict(bands=scene.bands or options.bands, tile_size=tile_size, stride=stride, edge=options.edge,
              min_valid=options.min_valid)
    reader = SceneReader.open(scene.href, target_gsd=gsd, **kw)
    if gsd is not None and options.gsd is None and reader.native_gsd > gsd * options.max_upsample:
        log.warning("%s: native GSD %.3g m is much coarser than the model's %.3g m; tiling at the native GSD "
                    "(pass --gsd to force a resolution)", scene.item_id, reader.native_gsd, gsd)
        reader.close()
        return SceneReader.open(scene.href, target_gsd=None, **kw), None
    return reader, gsd


def _produce(scenes, q, stop, lock, store, model_id, options, tile_size, stride, gsd, report) -> None:
    """Reader thread: tiles each scene and queues (point id, pixels, payload)."""
    try:
        for scene in scenes:
            if stop.is_set():
                return
            q.put(("start", scene.item_id))
            try:
                reader, scene_gsd = _open_scene(scene, options, tile_size, stride, gsd)
                with reader:
                    tkey = tiling_key(tile_size, stride, scene_gsd, options.edge)
                    refs = reader.windows()
                    ids = [point_id(scene.collection, scene.item_id, scene.asset_key, r.grid, tkey, model_id)
                           for r in refs]
                    with lock:
                        existing = store.existing_ids(ids) if ids else set()
                    report.tiles_total += len(refs)
                    report.tiles_existing += len(existing)
                    q.put(("total", len(refs) - len(existing)))
                    for ref, pid in zip(refs, ids):
                        if stop.is_set():
                            return
                        if pid in existing:
                            continue
                        try:
                            tile = reader.read(ref)
                        except RsirError as err:  # corrupt window: skip it, keep the scene
                            log.warning("%s", err)
                            report.tiles_failed.append(str(err))
                            q.put(("skip", 1))
                            continue
                        if tile is None:
                            report.tiles_empty += 1
                            q.put(("skip", 1))
                            continue
                        payload = tile_payload(scene, ref, model_id=model_id, tile_size=tile_size,
                                               stride=stride, edge=options.edge, bands=reader.bands,
                                               gsd_param=scene_gsd)
                        q.put(("tile", (pid, tile.pixels, payload)))
                q.put(("end", scene.item_id))
            except RsirError as err:
                if options.fail_fast:
                    q.put(("error", err))
                    return
                log.warning("skipping item %s: %s", scene.item_id, err)
                report.items_failed.append({"item": scene.item_id, "error": str(err)})
                q.put(("failed", scene.item_id))
    except BaseException as err:  # noqa: BLE001 - hand any crash to the consumer
        q.put(("error", err))
    finally:
        q.put((_END, None))


def _consume(q, lock, store, embedder, options, report, emit) -> None:
    """Embed full batches and upsert them; flush after each item."""
    from rsir_stac.store import Point

    ids: list[str] = []
    pixels: list[np.ndarray] = []
    payloads: list[dict] = []

    def write() -> None:
        if not ids:
            return
        vectors = embedder.embed(pixels)
        with lock:
            store.upsert([Point(i, v, p) for i, v, p in zip(ids, vectors, payloads)])
        report.points_written += len(ids)
        report.tiles_read += len(ids)
        emit(IngestEvent("tiles", n=len(ids)))
        ids.clear(), pixels.clear(), payloads.clear()

    while True:
        kind, value = q.get()
        if kind is _END:
            break
        if kind == "tile":
            pid, px, payload = value
            ids.append(pid), pixels.append(px), payloads.append(payload)
            if len(ids) >= options.batch_size:
                write()
        elif kind == "skip":
            emit(IngestEvent("tiles", n=value))
        elif kind == "total":
            emit(IngestEvent("total", n=value))
        elif kind == "start":
            emit(IngestEvent("start", item_id=value))
        elif kind in ("end", "failed"):
            write()
            with lock:
                store.flush()
            if kind == "end":
                report.items_done += 1
            emit(IngestEvent("end", item_id=value))
        elif kind == "error":
            write()
            store.flush()
            raise value
    write()
