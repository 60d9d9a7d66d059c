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
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError, RasterError, RsirError, StoreError
from rsir_stac.relocate import Relocations, relocated

log = logging.getLogger(__name__)

#: Payloads scrolled from the old index per page.
PAGE_SIZE = 1024
#: Source rasters kept open between pages (least recently used are closed).
OPEN_SOURCES = 8
#: Points per upsert into the new index.
WRITE_BATCH = 64
#: Tile error messages kept in the report (the count is always exact).
MAX_TILE_ERRORS = 100


@dataclass
class ReindexReport:
    """What a reindex did; ``ok`` is False when a source or a tile could not be read."""

    source: str = ""
    target: str = ""
    model_from: str = ""
    model_to: str = ""
    points_total: int = 0
    points_written: int = 0
    points_existing: int = 0
    tiles_failed: int = 0
    tile_errors: list[str] = field(default_factory=list)
    sources_failed: list[dict[str, Any]] = field(default_factory=list)
    relocate_unmatched: list[str] = field(default_factory=list)
    tiling_kept: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every point of the old index is in the new one."""
        return not self.sources_failed and not self.tiles_failed

    @property
    def points_failed(self) -> int:
        """Points not written: unreadable tiles plus every tile of the sources that failed
        (written + existing + failed = total)."""
        return self.tiles_failed + sum(int(e.get("tiles", 0)) for e in self.sources_failed)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["points_failed"] = self.points_failed
        d["ok"] = self.ok
        return d


@dataclass(frozen=True)
class ReindexEvent:
    """Progress: ``total`` points to do, ``points`` done (written, existing or
    failed), a ``source_failed`` (its ``href``)."""

    kind: str
    n: int = 0
    href: str = ""


class _Grid(NamedTuple):
    """A tile in the target-GSD pixel grid (the payload's ``grid``)."""

    col_off: int
    row_off: int
    width: int
    height: int

    def __str__(self) -> str:
        return f"col_off={self.col_off},row_off={self.row_off},width={self.width},height={self.height}"


class _SourceKey(NamedTuple):
    """How a tile's scene is opened: the parameters of its ingest."""

    href: str
    bands: tuple[int, ...] | None
    gsd: float | None
    tile_size: int
    stride: int
    edge: str
    nodata: float | tuple[float | None, ...] | None = None  # three (R, G, B files) for a composed scene
    band_hrefs: tuple[str, ...] | None = None  # the R, G, B files of a composed scene (href is the first)


class _Todo(NamedTuple):
    new_id: str
    key: _SourceKey
    grid: _Grid
    payload: dict
    stored_href: str = ""  # the href the old index stores (before --relocate)


def _plan(payload: dict, model_id: str, relocate: Callable[[str], str] | Sequence[tuple[str, str]] = ()
          ) -> tuple[str, _SourceKey, _Grid]:
    """New point id, scene key and grid of one stored tile (KeyError/TypeError/
    ValueError when the payload was not written by ``rsir-stac ingest``).  The id does not
    depend on the href, so a relocated source keeps its tiles' ids."""
    from rsir_stac.ingest import point_id, tiling_key
    from rsir_stac.tiling.stack import payload_band_hrefs, payload_nodata

    t = payload["tiling"]
    g = payload["grid"]
    grid = _Grid(int(g["col_off"]), int(g["row_off"]), int(g["width"]), int(g["height"]))
    tile_size, stride, edge = int(t["tile_size"]), int(t["stride"]), str(t["edge"])
    gsd = None if t.get("gsd") is None else float(t["gsd"])
    bands = tuple(int(b) for b in t["bands"]) if t.get("bands") else None
    nodata = payload_nodata(t.get("nodata"))
    move = relocate if callable(relocate) else (lambda h: relocated(h, relocate))
    files = payload_band_hrefs(payload)  # None for a tile of one file
    band_hrefs = None if files is None else tuple(move(h) for h in files)
    key = _SourceKey(move(str(payload["href"])), bands, gsd, tile_size, stride, edge, nodata, band_hrefs)
    identity = payload.get("collection") if payload.get("source", "stac") == "stac" else None
    pid = point_id(identity, str(payload["item_id"]), str(payload["asset"]), grid,
                   tiling_key(tile_size, stride, gsd, edge), model_id)
    return pid, key, grid


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


class _Sources:
    """Open scenes keyed by :class:`_SourceKey` (at most :data:`OPEN_SOURCES`),
    each with its grid -> tile reference map, and the sources that failed."""

    def __init__(self) -> None:
        self._open: OrderedDict[_SourceKey, tuple[Any, dict]] = OrderedDict()
        self.failed: dict[str, dict[str, Any]] = {}

    def get(self, key: _SourceKey) -> tuple[Any, dict]:
        """``(reader, {grid: TileRef})``; raises what opening the scene raises."""
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        from rsir_stac.tiling import SceneReader

        # the parameters of rsir_stac.thumbnails.read_tile: the tile as ingest read it
        reader = SceneReader.open(key.href, bands=key.bands, target_gsd=key.gsd, tile_size=key.tile_size,
                                  stride=key.stride, edge=key.edge, min_valid=0.0, nodata=key.nodata,
                                  hrefs=key.band_hrefs)
        try:
            refs = {_Grid(r.grid.col_off, r.grid.row_off, r.grid.width, r.grid.height): r for r in reader.windows()}
        except BaseException:
            reader.close()
            raise
        self._open[key] = (reader, refs)
        while len(self._open) > OPEN_SOURCES:
            _, (old, _) = self._open.popitem(last=False)
            old.close()
        return reader, refs

    def close(self) -> None:
        while self._open:
            _, (reader, _) = self._open.popitem()
            reader.close()


class _Writer:
    """Embeds batches on the embedder's lanes (``lanes + 1`` in flight) and
    upserts the vectors in order, :data:`WRITE_BATCH` points at a time."""

    def __init__(self, embedder, store, report: ReindexReport, emit: Callable[[ReindexEvent], None]) -> None:
        self.embedder, self.store, self.report, self.emit = embedder, store, report, emit
        self.ids: list[str] = []
        self.pixels: list[np.ndarray] = []
        self.payloads: list[dict] = []
        self.inflight: deque = deque()
        self.points: list = []

    def add(self, pid: str, pixels: np.ndarray, payload: dict) -> None:
        self.ids.append(pid), self.pixels.append(pixels), self.payloads.append(payload)
        if len(self.ids) >= self.embedder.batch_size:
            self._submit()

    def _submit(self) -> None:
        if self.ids:
            self.inflight.append((self.embedder.submit(self.pixels), self.ids, self.payloads))
            self.ids, self.pixels, self.payloads = [], [], []
            self._collect(self.embedder.lanes + 1)

    def _collect(self, keep: int) -> None:
        from rsir_stac.store import Point

        while len(self.inflight) > keep:
            job, ids, payloads = self.inflight.popleft()
            self.points.extend(Point(i, v, p) for i, v, p in zip(ids, job.result(), payloads))
            if len(self.points) >= WRITE_BATCH:
                self._write()

    def _write(self) -> None:
        if self.points:
            self.store.upsert(self.points)
            n = len(self.points)
            self.points = []
            self.report.points_written += n
            self.emit(ReindexEvent("points", n=n))

    def drain(self) -> None:
        """Embed and write everything added so far."""
        self._submit()
        self._collect(0)
        self._write()

    def cancel(self) -> None:
        for job, _, _ in self.inflight:
            job.cancel()
        self.inflight.clear()


# ------------------------------------------------------------------------ opening


def _nested(a: str, b: str) -> bool:
    """Whether folders ``a`` and ``b`` are the same, or one holds the other (symlinks resolved)."""
    ra, rb = (os.path.realpath(os.path.expanduser(x)) for x in (a, b))
    return os.path.commonpath([ra, rb]) in (ra, rb)


def _open_stores(index, to, qdrant_url, api_key, collection):
    """``(source, target, opener)``: the old index read-only, and the new one
    (``None`` plus an ``opener`` when its folder does not exist yet)."""
    from rsir_stac.store import open_store

    if not to:
        raise InputError("no target given; pass --to NEW (a new index folder, or a collection name with --qdrant-url)")
    if qdrant_url:
        if index is not None:
            raise InputError(f"both --index {index} and --qdrant-url {qdrant_url} were given; pass only one of them")
        if to == collection:
            raise InputError(f"--to {to} is the collection being read on {qdrant_url}; "
                             "pass another collection name as --to")
        src = open_store(qdrant_url=qdrant_url, api_key=api_key, collection=collection, read_only=True)
        try:
            return src, src.sibling(to), None  # one client: qdrant-client's local mode locks its folder
        except BaseException:
            src.close()
            raise
    if index is None:
        from rsir_stac.store import DEFAULT_INDEX

        index = DEFAULT_INDEX
    if _nested(str(index), str(to)):
        raise InputError(f"--to {to} is the index being read (--index {index}) or a folder inside or around it; "
                         "pass a new folder beside it as --to")
    src = open_store(str(index), collection=collection, read_only=True)
    try:
        dst, opener = _open_or_defer(str(to), collection)
        return src, dst, opener
    except BaseException:
        src.close()
        raise


def _open_or_defer(to: str, collection: str):
    """``(store, None)``, or ``(None, opener)`` when folder ``to`` does not exist
    yet: it is then created on the first write, not before."""
    from rsir_stac.store import open_store

    path = os.path.abspath(os.path.expanduser(to))
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise InputError(f"--to {to} is a file, not an index folder; pass a new folder as --to")
        foreign = [n for n in os.listdir(path) if not n.startswith(".") and n.split(".")[0] != collection]
        if foreign and not os.path.isdir(os.path.join(path, collection)):
            raise InputError(f"--to {to} is a folder of other files, not an index; pass a new or empty folder "
                             "as --to (or an index made by an earlier reindex, to resume it)")
        return open_store(path, collection=collection), None
    parent = os.path.dirname(path)
    while parent and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create index directory {path} ({parent} is not a writable folder); "
                         "pass a writable --to")
    return None, lambda: open_store(path, collection=collection)


def _check(src, dst, bundle, to) -> None:
    """Refuse what would mix models, before anything is read or written."""
    meta = src.meta()
    if meta is None:
        raise StoreError(f"{src.describe()} holds no points; nothing to reindex (check --index)")
    if meta.model_id == bundle.model_id and meta.dim == bundle.dim:
        raise InputError(f"{src.describe()} already holds vectors of model {bundle.model_id}; "
                         "pass --model with the new model bundle")
    have = dst.meta() if dst is not None else None
    if have is not None and (have.model_id != bundle.model_id or have.dim != bundle.dim):
        raise IncompatibleIndexError(
            f"target {dst.describe()} already holds {have.dim}-d vectors of model {have.model_id or '(unknown)'}, "
            f"not {bundle.dim}-d vectors of {bundle.model_id}; pass another --to (a new one) or delete {to} first"
        )


def _tiling_note(bundle, page: list) -> str:
    """A note when the old tiling differs from what the new model expects."""
    for p in page:
        t = p.payload.get("tiling") or {}
        if t.get("tile_size") is None:
            continue
        if int(t["tile_size"]) != bundle.tile_size or (t.get("gsd") is not None and bundle.gsd is not None
                                                       and abs(float(t["gsd"]) - float(bundle.gsd)) > 1e-9):
            note = (f"the index keeps its tiling ({t['tile_size']} px at {t.get('gsd') or 'native'} m) while "
                    f"{bundle.model_id} expects {bundle.tile_size} px at {bundle.gsd} m; re-ingest the catalogue "
                    "to tile it for the new model (scenes more than twice as coarse are tiled at their own GSD "
                    "either way)")
            log.info("%s", note)  # the report carries it; the CLI prints it once
            return note
        return ""
    return ""


# --------------------------------------------------------------------------- run


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
) -> ReindexReport:
    """Write the points of index ``index`` into a new index ``to``, re-embedded
    with ``model`` (a bundle folder or :class:`~rsir_stac.model.bundle.ModelBundle`;
    default: the shipped model).

    ``index`` (default ``./rsir-index``) and ``to`` are embedded index
    folders; with ``qdrant_url`` the old index is collection ``collection`` on
    that Qdrant (default ``rsir_tiles``) and ``to`` names the new collection
    there.  ``collection`` is also the
    collection inside both folders.  ``batch_size`` is tiles per forward pass
    (default: the embedder's for the device); ``page_size`` payloads are read
    from the old index at a time.  ``relocate``: ``(OLD, NEW)`` prefixes (or ``"OLD=NEW"``
    strings, :func:`rsir_stac.relocate.parse_relocation`) for sources that moved since ingest: read from the new
    place, written with its href, same point ids.  ``progress`` gets :class:`ReindexEvent` s.

    Raises :class:`InputError` (no target, the target is the index read, the
    index already holds the model), :class:`IncompatibleIndexError` (the
    target holds another model), :class:`StoreError` (an index cannot be
    opened or written), :class:`BundleError`.  Sources that cannot be read are
    not raised but reported (``sources_failed``, ``ok`` False).
    """
    from rsir_stac.ingest import _LazyStore
    from rsir_stac.model.bundle import ModelBundle, load_bundle
    from rsir_stac.store import DEFAULT_COLLECTION

    if int(page_size) < 1:
        raise InputError(f"page_size={page_size!r} must be a positive whole number")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"--batch-size {batch_size!r} is invalid; give a positive whole number of tiles per forward "
                         "pass (leave it out for the default)")
    moves = Relocations(relocate)
    collection = collection or DEFAULT_COLLECTION
    emit = progress or (lambda e: None)
    t0 = time.time()
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    src, dst, opener = _open_stores(index, to, qdrant_url, api_key, collection)
    try:
        _check(src, dst, bundle, to)
        report = ReindexReport(source=src.describe(), target=dst.describe() if dst is not None
                               else f"index {os.path.abspath(os.path.expanduser(str(to)))}",
                               model_from=src.meta().model_id, model_to=bundle.model_id)
        target = _LazyStore(dst, opener, bundle.dim, bundle.model_id, own=True)
    except BaseException:
        if dst is not None:
            dst.close()
        src.close()
        raise
    sources = _Sources()
    embedder = None
    try:
        report.points_total = src.count()
        emit(ReindexEvent("total", n=report.points_total))
        embedder = bundle.embedder(batch_size=batch_size)
        writer = _Writer(embedder, target, report, emit)
        try:
            for n, page in enumerate(_pages(src.iter_points(batch=int(page_size), with_vectors=False),
                                            int(page_size))):
                if n == 0:
                    report.tiling_kept = _tiling_note(bundle, page)
                _do_page(page, bundle.model_id, target, sources, writer, report, emit, moves)
        except BaseException:
            writer.cancel()
            raise
        target.flush()
        if report.points_written:
            target.optimize()
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


def _pages(points: Iterable, size: int) -> Iterable[list]:
    page: list = []
    for p in points:
        page.append(p)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _tile_failed(report: ReindexReport, message: str) -> None:
    report.tiles_failed += 1
    if len(report.tile_errors) < MAX_TILE_ERRORS:
        report.tile_errors.append(message)
    log.info("tile failed: %s", message)


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


def _source_failed(key: _SourceKey, tiles: list[_Todo], err: BaseException, sources: _Sources,
                   report: ReindexReport, emit: Callable[[ReindexEvent], None]) -> None:
    entry = sources.failed.get(key.href)
    if entry is None:
        msg = str(err) if isinstance(err, RsirError) else (
            f"{key.href}: unexpected {type(err).__name__} while opening ({_one_line(err)}); "
            "run with -v for the traceback")
        entry = {"href": key.href, "stored_href": tiles[0].stored_href or key.href,
                 "item": tiles[0].payload.get("item_id", ""), "error": " ".join(msg.split()),
                 "tiles": 0, "ingest_options": _ingest_options(key, tiles[0].payload)}
        sources.failed[key.href] = entry
        report.sources_failed.append(entry)
        log.warning("source %s cannot be read: %s", key.href, entry["error"])
        emit(ReindexEvent("source_failed", href=key.href))
    entry["tiles"] += len(tiles)
    emit(ReindexEvent("points", n=len(tiles)))


def _ingest_options(key: _SourceKey, payload: dict) -> str:
    """The ``rsir-stac ingest`` options that read the source as it was read (its tiling,
    and for a bare raster its collection and datetime), to ingest it again by hand."""
    opts = [f"--tile-size {key.tile_size}", f"--stride {key.stride}", f"--edge {key.edge}"]
    if key.gsd is not None:
        opts.append(f"--gsd {key.gsd:g}")
    if key.bands:
        opts.append("--bands " + ",".join(map(str, key.bands)))
    if payload.get("source", "stac") != "stac":
        if payload.get("collection"):
            opts.append(f"--collection {payload['collection']}")
        if payload.get("datetime"):
            opts.append(f"--datetime {payload['datetime']}")
    return " ".join(opts)


def _changed_since_ingest(href: str, tiles: list[_Todo], refs: dict) -> str | None:
    """Why the raster now at ``href`` is not the one the tiles were ingested from (its CRS, or
    where a tile's grid window starts, differs from the stored payload), or None.  Compared on every tile of the group whose window still exists."""
    from rsir_stac.tiling.footprints import FOOTPRINT_TOLERANCE_DEG, corner_shift_deg

    for t in tiles:
        ref = refs.get(t.grid)
        if ref is None:
            continue
        crs = t.payload.get("crs")
        if crs and not _same_crs(ref.crs, crs):
            why = f"its CRS is {ref.crs}, the index says {crs}"
        else:
            off = corner_shift_deg(t.payload, ref)
            if off is None:  # no stored corners (a point written by another tool): its bbox
                bbox = t.payload.get("bbox")
                try:
                    off = max(abs(float(a) - float(b)) for a, b in zip(bbox, ref.bbox)) if bbox else 0.0
                except (TypeError, ValueError):
                    off = 0.0
            if not off > FOOTPRINT_TOLERANCE_DEG:
                continue
            why = f"tile {t.grid} lies {off:.2g} degrees from where it was ingested"
        return (f"{href} is not the raster that was ingested ({why}); nothing of it was reindexed: put the "
                "ingested file back and re-run the same command, or ingest the item again with the new model")
    return None


def _same_crs(a: Any, b: Any) -> bool:
    """Whether two CRS descriptions (EPSG codes, WKT, PROJ strings) name the same CRS
    (rasterio's equality when the spellings differ; unparseable ones count as the same)."""
    if str(a) == str(b):
        return True
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(str(a)) == CRS.from_user_input(str(b))
    except CRSError:
        return True


def _read_group(key: _SourceKey, tiles: list[_Todo], sources: _Sources, writer: _Writer, report: ReindexReport,
                emit: Callable[[ReindexEvent], None]) -> None:
    """Read the tiles of one scene and hand them to the writer."""
    from rsir_stac.tiling import gdal_env

    if key.href in sources.failed:
        _source_failed(key, tiles, RuntimeError(), sources, report, emit)
        return
    try:
        reader, refs = sources.get(key)
    except StoreError:
        raise
    except Exception as err:  # noqa: BLE001 - a moved or broken source must not stop the run
        if not isinstance(err, RsirError):
            log.info("traceback of %s", key.href, exc_info=err)
        _source_failed(key, tiles, err, sources, report, emit)
        return
    changed = _changed_since_ingest(key.href, tiles, refs)
    if changed is not None:  # another raster at the same path: nothing of it is written
        _source_failed(key, tiles, RasterError(changed), sources, report, emit)
        return
    with gdal_env():
        for t in tiles:
            ref = refs.get(t.grid)
            tile = None
            if ref is None:
                _tile_failed(report, f"tile {t.grid} of {key.href} is not in the raster any more (the file "
                                     "changed since ingest); re-ingest the item with the new model")
            else:
                try:
                    tile = reader.read(ref)
                except Exception as err:  # noqa: BLE001 - one bad window must not stop the run
                    _tile_failed(report, str(err) if isinstance(err, RsirError) else
                                 f"{key.href}: tile {t.grid}: unexpected {type(err).__name__} "
                                 f"({_one_line(err)})")
                else:
                    if tile is None:
                        _tile_failed(report, f"tile {t.grid} of {key.href} has no valid pixels any more "
                                             "(the file changed since ingest); re-ingest the item")
            if tile is None:
                emit(ReindexEvent("points", n=1))
                continue
            writer.add(t.new_id, tile.pixels, t.payload)


__all__ = ["ReindexEvent", "ReindexReport", "reindex"]
