"""Reindex: move an index to a new model without re-listing its catalogue.

Every point of the old index is re-read from its source raster through its
payload (``href``, or the three ``band_hrefs`` of a scene composed from
single-band assets, ``tiling`` and target-GSD ``grid``, the same reading
:func:`rsir_stac.thumbnails.read_tile` does), embedded with the new model and
written to a new index.  The new points get the ids an ingest with the new
model would give them (:func:`rsir_stac.ingest.point_id` with the new model id)
and keep their payload, with ``model_id`` updated.

Guarantees
----------
* The old index is opened read-only and never written.
* Bad input is refused before anything is written: the target is the index
  being read, the target already holds another model, or the old index
  already holds the new model.
* Memory does not grow with the index: the old index is scrolled in pages of
  ``page_size`` payloads (no vectors) and at most ``lanes + 2`` batches of
  pixels are in flight.  Within a page, tiles are read grouped by source, so a
  scene is opened once per page (a few recently used scenes stay open).
* Resumable and idempotent like ingest: points already in the target are not
  read again, so a re-run after a kill finishes the work and the final index
  equals a clean run.  The target is created only when the first point is
  written and flushed after every page.
* A source that can no longer be read (moved, deleted, unreachable) is
  skipped and reported in ``sources_failed`` with the number of its tiles; a
  tile that cannot be read any more (the file changed) in ``tiles_failed``.
  The run carries on and ``ok`` is False.

The tiling of the old index is kept.  When the new model expects another tile
size or GSD, the index keeps the old one (a warning says so); re-ingest the
catalogue to tile it for the new model.

Layout: :mod:`~rsir_stac.reindex.stores` (the old and new index, and the checks before
anything is written), :mod:`~rsir_stac.reindex.plan` (a stored payload -> how to read the
tile again), :mod:`~rsir_stac.reindex.sources` (re-reading tiles from their rasters),
:mod:`~rsir_stac.reindex.writer` (embedding and writing) and
:mod:`~rsir_stac.reindex.report`; this module runs them, a page of points at a time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone

from rsir_stac.errors import InputError
from rsir_stac.reindex.plan import _plan, _SourceKey, _Todo
from rsir_stac.reindex.report import MAX_TILE_ERRORS, ReindexEvent, ReindexReport, _tile_failed
from rsir_stac.reindex.sources import OPEN_SOURCES, _read_group, _Sources
from rsir_stac.reindex.stores import _check, _open_stores, _tiling_note, page_tilings
from rsir_stac.reindex.writer import WRITE_BATCH, _Writer
from rsir_stac.relocate import Relocations

log = logging.getLogger(__name__)

#: Payloads scrolled from the old index per page.
PAGE_SIZE = 1024


def reindex(
    index: str | None = None,
    to: str | None = None,
    *,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str | None = None,
    model=None,
    batch_size: int | None = None,
    page_size: int = PAGE_SIZE,
    relocate: Sequence[tuple[str, str] | str] = (),
    progress: Callable[[ReindexEvent], None] | None = None,
    skip_missing: bool = False,
) -> ReindexReport:
    """Write the points of index ``index`` into a new index ``to``, re-embedded
    with ``model`` (a bundle folder or :class:`~rsir_stac.model.bundle.ModelBundle`;
    default: the shipped model).

    ``index`` (default ``./rsir-index``) and ``to`` are embedded index
    folders; with ``qdrant_url`` the old index is collection ``collection`` on
    that Qdrant (default :func:`rsir_stac.store.default_collection`) and ``to`` names the new collection
    there.  ``collection`` is also the
    collection inside both folders.  ``batch_size`` is tiles per forward pass
    (default: the embedder's for the device); ``page_size`` payloads are read
    from the old index at a time.  ``relocate``: ``(OLD, NEW)`` prefixes (or ``"OLD=NEW"``
    strings, :func:`rsir_stac.relocate.parse_relocation`) for sources that moved since ingest: read from the new
    place, written with its href, same point ids.  ``progress`` gets :class:`ReindexEvent` s.
    ``skip_missing``: sources that cannot be read are gone for good; the new index is marked
    finished without their tiles (they are still reported in ``sources_failed``).

    Raises :class:`InputError` (no target, the target is the index read, the
    index already holds the model), :class:`IncompatibleIndexError` (the
    target holds another model), :class:`StoreError` (an index cannot be
    opened or written), :class:`BundleError`.  Sources that cannot be read are
    not raised but reported (``sources_failed``, ``ok`` False).
    """
    from rsir_stac.model.bundle import ModelBundle, load_bundle
    from rsir_stac.store import DEFAULT_COLLECTION, default_collection

    _check_sizes(page_size, batch_size)
    moves = Relocations(relocate)
    collection = collection or (default_collection() if qdrant_url else DEFAULT_COLLECTION)
    emit = progress or (lambda e: None)
    t0 = time.time()
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    src, target, report = _open_run(index, to, qdrant_url, api_key, collection, bundle, relocating=bool(relocate))
    if src.meta().unfinished:  # a copy of part of its source: the new index is no more whole than it
        from rsir_stac.store.base import unfinished_note

        log.warning("%s; the new index stays marked unfinished until that one is finished and this is run again",
                    unfinished_note(src, src.meta()))
    sources = _Sources()
    embedder = None
    try:
        report.points_total = src.count()
        emit(ReindexEvent("total", n=report.points_total))
        embedder = bundle.embedder(batch_size=batch_size)
        _copy_pages(src, target, bundle, embedder, sources, report, emit, moves, int(page_size))
        target.flush()
        if report.points_written:
            target.optimize()
        report.skip_missing = bool(skip_missing)
        if (report.complete or (skip_missing and not report.tiles_failed)) and not src.meta().unfinished:
            target.finished()  # every source read: the index is whole (as whole as what it copies)
        report.relocate_unmatched = moves.unmatched()
        for line in report.relocate_unmatched:
            log.warning("%s", line)
    finally:
        sources.close()
        if embedder is not None:
            embedder.close()
        target.close()
        src.close()
    report.seconds = round(time.time() - t0, 2)
    log.info("reindex done: %s", {k: v for k, v in report.as_dict().items() if not isinstance(v, list)})
    return report


def _check_sizes(page_size: int, batch_size: int | None) -> None:
    """Refuse (InputError) a ``page_size`` below 1 and a ``batch_size`` that is not a positive whole number."""
    if int(page_size) < 1:
        raise InputError(f"page_size={page_size!r} must be a positive whole number")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"--batch-size {batch_size!r} is invalid; give a positive whole number of tiles per forward "
                         "pass (leave it out for the default)")


def _open_run(index, to, qdrant_url, api_key, collection: str, bundle, relocating: bool = False):
    """``(source, target, report)``: the old index read-only, the new one as the pipeline writes
    it (created on the first write) and the report naming both; both closed again when a check
    fails (InputError, IncompatibleIndexError, StoreError as :func:`_open_stores` and
    :func:`_check` raise them)."""
    from rsir_stac.ingest.target import _LazyStore

    src, dst, opener = _open_stores(index, to, qdrant_url, api_key, collection)
    try:
        _check(src, dst, bundle, to, relocating)
        report = ReindexReport(source=src.describe(), target=dst.describe() if dst is not None
                               else f"index {os.path.abspath(os.path.expanduser(str(to)))}",
                               model_from=src.meta().model_id, model_to=bundle.model_id)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        note = f"a reindex of {src.describe()} to model {bundle.model_id}, started {since}"
        target = _LazyStore(dst, opener, bundle.dim, bundle.model_id, own=True, unfinished=note)
    except BaseException:
        if dst is not None:
            dst.close()
        src.close()
        raise
    return src, target, report


def _copy_pages(src, target, bundle, embedder, sources: _Sources, report: ReindexReport,
                emit: Callable[[ReindexEvent], None], moves: Relocations, page_size: int) -> None:
    """Re-read, embed and write every point of ``src``, ``page_size`` payloads at a time (the
    index's tilings say whether the old one is kept, :func:`_tiling_note`); the batches in
    flight are cancelled when a page fails."""
    writer = _Writer(embedder, target, report, emit)
    tilings: set = set()
    try:
        for page in _pages(src.iter_points(batch=page_size, with_vectors=False), page_size):
            tilings |= page_tilings(page)
            _do_page(page, bundle.model_id, target, sources, writer, report, emit, moves)
    except BaseException:
        writer.cancel()
        raise
    if report.model_from != report.model_to:  # a relocate to the same model keeps its own tiling: nothing to say
        report.tiling_kept = _tiling_note(bundle, tilings)


def _pages(points: Iterable, size: int) -> Iterable[list]:
    page: list = []
    for p in points:
        page.append(p)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _do_page(page: list, model_id: str, target, sources: _Sources, writer: _Writer, report: ReindexReport,
             emit: Callable[[ReindexEvent], None], relocate: Callable[[str], str] | Sequence = ()) -> None:
    """Re-read, embed and write the points of one page not yet in the target."""
    from rsir_stac.malloc import release_free_memory

    todo: list[_Todo] = []
    for p in page:
        try:
            pid, key, grid = _plan(p.payload, model_id, relocate)
        except (KeyError, TypeError, ValueError):
            _tile_failed(report, f"point {p.id} has no href/grid/tiling in its payload (not written by "
                                 "rsir-stac ingest); it cannot be re-read, ingest its source again")
            emit(ReindexEvent("points", n=1))
            continue
        moved = {"href": key.href}
        if key.band_hrefs:  # the three files where they are now, stored as ingest stores them
            from rsir_stac.tiling.stack import stored_band_hrefs

            moved["band_hrefs"] = stored_band_hrefs(key.href, key.band_hrefs)
        todo.append(_Todo(pid, key, grid, {**p.payload, "model_id": model_id, **moved}, str(p.payload["href"])))
    existing = target.existing_ids([t.new_id for t in todo]) if todo else set()
    if existing:
        report.points_existing += len(existing)
        emit(ReindexEvent("points", n=len(existing)))
    groups: dict[_SourceKey, list[_Todo]] = {}
    for t in todo:
        if t.new_id not in existing:
            groups.setdefault(t.key, []).append(t)
    for key, tiles in groups.items():
        _read_group(key, sorted(tiles, key=lambda t: (t.grid.row_off, t.grid.col_off)), sources, writer,
                    report, emit)
    writer.drain()
    target.flush()
    release_free_memory()


__all__ = ["MAX_TILE_ERRORS", "OPEN_SOURCES", "PAGE_SIZE", "WRITE_BATCH", "ReindexEvent", "ReindexReport", "reindex"]
