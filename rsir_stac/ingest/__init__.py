"""Ingest: STAC / GeoTIFF sources → tiles → embeddings → points in the store.

The pipeline streams: a reader thread tiles scenes with rasterio windows and
fills a bounded queue; the calling thread hands full batches to the
embedder's lanes (see :mod:`rsir_stac.embed`) and a writer thread upserts the
vectors.  Memory stays bounded by the queue and the batches in flight,
whatever the scene size.

Guarantees
----------
* Point ids are uuid5 of (collection, item, asset, tile grid window, tiling
  parameters, model id), so re-running an ingest writes no duplicates.
* Before reading any pixel, every source is listed (a bad path or document
  fails the run with nothing written) and an existing index is checked
  against the model (vector size, model id).  A new index (folder or server
  collection) is created only when the first point is written, so a run that
  writes nothing leaves no index behind.
* Tiles already in the index are not read again: an interrupted run, re-run,
  finishes the work.  A batch of points is upserted whole; the store is
  flushed after each item.
* A failing item (unreadable asset, no CRS ...) is skipped and reported in
  ``items_failed``, and the run ends non-zero (``fail_fast`` stops at the
  first failing item or window and raises its error, with ``item_id`` and the
  partial ``report`` attached); a corrupt window inside a scene is skipped and
  reported in ``tiles_failed`` while the rest of the scene ingests.
* An item whose every window is nodata (or below ``min_valid``) is not a
  failure: it is listed in ``items_empty``.  When the run indexes nothing at
  all, ``nothing_indexed`` says why.

See docs/RELIABILITY.md for what holds after a crash and how to resume.

Layout: :mod:`~rsir_stac.ingest.options` (what is asked, and its checks),
:mod:`~rsir_stac.ingest.report` (what was done), :mod:`~rsir_stac.ingest.sources` (the
sources listed up front), :mod:`~rsir_stac.ingest.points` (point ids and payloads),
:mod:`~rsir_stac.ingest.producer` (the reader thread), :mod:`~rsir_stac.ingest.consumer`
(embedding and writing), :mod:`~rsir_stac.ingest.resume` (what the index already holds) and
:mod:`~rsir_stac.ingest.target` (the index written to); this module runs them.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rsir_stac.errors import InputError, RsirError
from rsir_stac.ingest.consumer import _consume
from rsir_stac.ingest.options import IngestOptions, check_collection_name, check_options, cli_flag
from rsir_stac.ingest.points import POINT_NAMESPACE, WRITE_BATCH, point_id, tile_payload, tiling_key
from rsir_stac.ingest.producer import SHRINK_TILES_OVER, _produce
from rsir_stac.ingest.report import IngestEvent, IngestReport, _nothing_reason, collect_warnings, small_scene_hint
from rsir_stac.ingest.resume import LABEL_FIELDS, relabel
from rsir_stac.ingest.sources import list_scenes
from rsir_stac.ingest.target import _LazyStore, _open_or_defer

log = logging.getLogger(__name__)


@contextmanager
def _gc_frozen() -> Iterator[None]:
    """Keep the objects alive before the run out of the cyclic GC while it runs.

    With torch and a model loaded a process holds ~250k tracked objects, and
    the tiles' records trigger a full collection over all of them (~0.1 s,
    all threads stalled) about once per 2,000 tiles.  ``gc.freeze`` leaves
    them out; they are handed back (``gc.unfreeze``) at the end.  Nothing is
    done when the application froze objects itself.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@_gc_frozen()
def ingest(
    sources: Sequence[str] | str | os.PathLike,
    *,
    store=None,
    index: str | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    model=None,
    options: IngestOptions = IngestOptions(),
    progress: Callable[[IngestEvent], None] | None = None,
) -> IngestReport:
    """Ingest ``sources`` (paths or URLs of rasters, folders and STAC documents; one path
    alone is taken as a list of it) into a store (an open ``store``, or one opened from
    ``index`` / ``qdrant_url`` once every source has been listed).  Raises InputError for
    options that cannot be meant (:func:`~rsir_stac.ingest.options.check_options`)."""
    from rsir_stac.model.bundle import ModelBundle, load_bundle

    emit = progress or (lambda e: None)
    t0 = time.time()
    if isinstance(sources, (str, os.PathLike)):  # one path, not its characters
        sources = [os.fspath(sources)]
    if any(not str(s).strip() for s in sources):
        raise InputError("a source is empty text; give the path or URL of a raster, folder or STAC document")
    check_options(options)
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    report = IngestReport(model_id=bundle.model_id)

    def item_error(err: RsirError) -> None:
        report.items_failed.append({"item": getattr(err, "item_id", ""), "error": str(err)})
        if options.fail_fast:
            err.report = report  # type: ignore[attr-defined]
            raise err

    with collect_warnings(report):  # in the report too: a run a service made tells its client
        scenes = list_scenes(sources, options, report, item_error)
        report.items = len(scenes) + len(report.items_failed)
        emit(IngestEvent("items", total=len(scenes)))
        embedder = bundle.embedder(batch_size=options.batch_size)
        if bundle.views > 1:
            log.info("model %s averages %d views per tile: embedding takes %dx as long", bundle.model_id,
                     bundle.views, bundle.views)
        own_store = store is None
        opener = None
        if own_store:
            store, opener = _open_or_defer(index, qdrant_url, api_key)
        store = _LazyStore(store, opener, bundle.dim, bundle.model_id, own=own_store)
        try:
            _stream(scenes, store, bundle, embedder, options, report, emit, t0)
        finally:
            embedder.close()
            store.close()
        if not report.points_written and not report.tiles_existing and report.ok:
            report.nothing_indexed = _nothing_reason(report, scenes, options)
    report.seconds = round(time.time() - t0, 2)
    log.info("ingest done: %s", {k: v for k, v in report.as_dict().items() if not isinstance(v, list)})
    return report


def _stream(scenes: list, store, bundle, embedder, options: IngestOptions, report: IngestReport,
            emit: Callable[[IngestEvent], None], t0: float) -> None:
    """Run the pipeline over the listed ``scenes``: a reader thread
    (:func:`~rsir_stac.ingest.producer._produce`) tiles them into a bounded queue while this
    thread embeds and writes the batches (:func:`~rsir_stac.ingest.consumer._consume`); then the
    store is flushed and, when points were written, its graph built.  An error that stops the
    run (``fail_fast``, a full disk, Ctrl-C) is raised with the ``report`` so far attached (its
    ``seconds`` counted from ``t0``); the reader thread is stopped either way."""
    tile_size = options.tile_size or bundle.tile_size
    stride = options.stride or tile_size
    gsd = None if options.native_gsd else (options.gsd or bundle.gsd)
    q: queue.Queue = queue.Queue(maxsize=max(2, options.queue_batches) * max(WRITE_BATCH, embedder.batch_size))
    stop = threading.Event()
    lock = threading.Lock()  # the store is used from both threads
    producer = threading.Thread(  # in this run's context: its warnings go to the report (collect_warnings)
        target=contextvars.copy_context().run, name="rsir-tiles", daemon=True,
        args=(_produce, scenes, q, stop, lock, store, bundle.model_id, options, tile_size, stride, gsd, report,
              bundle.input_size),
    )
    producer.start()
    try:
        _consume(q, lock, store, embedder, options, report, emit)
    except (RsirError, KeyboardInterrupt) as err:
        # --fail-fast on an item or window, the run stopped (a full disk), or Ctrl-C / SIGTERM:
        # what it did so far (the points written stay in the index)
        report.seconds = round(time.time() - t0, 2)
        err.report = report  # type: ignore[attr-defined]
        raise
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


__all__ = ["LABEL_FIELDS", "POINT_NAMESPACE", "SHRINK_TILES_OVER", "WRITE_BATCH", "IngestEvent", "IngestOptions",
           "IngestReport", "check_collection_name", "check_options", "cli_flag", "ingest", "list_scenes",
           "point_id", "relabel", "small_scene_hint", "tile_payload", "tiling_key"]
