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
"""

from __future__ import annotations

import gc
import logging
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rsir_stac.errors import InputError, RasterError, RsirError, StoreError
from rsir_stac.gsd import open_scene, reader_options

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
    batch_size: int | None = None  # tiles per forward pass; None: the embedder's default for the device
    queue_batches: int = 4
    fail_fast: bool = False
    shard: tuple[int, int] | None = None
    collection: str | None = None  # for bare rasters (STAC items keep their own)
    datetime: tuple[Any, Any] | None = None  # (start, end) for bare rasters; equal for an instant


@dataclass
class IngestReport:
    """What an ingest did; ``ok`` is False when any item or window failed."""

    items: int = 0
    items_done: int = 0
    items_failed: list[dict[str, str]] = field(default_factory=list)
    tiles_total: int = 0
    tiles_read: int = 0
    tiles_existing: int = 0
    tiles_relabelled: int = 0
    tiles_empty: int = 0
    tiles_failed: list[str] = field(default_factory=list)
    items_empty: list[str] = field(default_factory=list)
    #: The empty items that are smaller than one tile at the GSD they were read at (why they are empty):
    #: ``{"item", "width", "height", "gsd", "hint"}`` (pixels at that GSD, metres, what to do).
    items_small: list[dict] = field(default_factory=list)
    nothing_indexed: str = ""
    points_written: int = 0
    seconds: float = 0.0
    model_id: str = ""

    @property
    def ok(self) -> bool:
        """No item and no window failed (``nothing_indexed`` is reported separately)."""
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


def cli_flag(field: str) -> str:
    """An option's name on the command line: ``tile_size`` -> ``--tile-size``."""
    return "--" + field.replace("_", "-")


def check_options(options: IngestOptions, flag: Callable[[str], str] = cli_flag) -> None:
    """Refuse, before any work, sizes that cannot be meant: zero or negative pixels, a GSD
    that is not a positive number of metres, a tile outside
    :data:`~rsir_stac.tiling.scene.MIN_TILE`..:data:`~rsir_stac.tiling.scene.MAX_TILE` px,
    ``--gsd`` together with ``--native-gsd`` (InputError naming the option as ``flag`` spells
    it: the CLI's ``--tile-size``, or the HTTP job's ``tile_size``)."""
    from rsir_stac.tiling.scene import MAX_TILE, MIN_TILE

    for field in ("tile_size", "stride", "batch_size"):
        value = getattr(options, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{flag(field)} {value!r} is invalid; give a positive whole number (leave it out for "
                             "the default)")
    if options.tile_size is not None and not MIN_TILE <= options.tile_size <= MAX_TILE:
        raise InputError(f"{flag('tile_size')} {options.tile_size} is outside {MIN_TILE}..{MAX_TILE} pixels; the "
                         "network sees every tile at 224 px, so give e.g. 256")
    if options.gsd is not None and not (math.isfinite(float(options.gsd)) and float(options.gsd) > 0):
        raise InputError(f"{flag('gsd')} {options.gsd!r} is invalid; give a positive number of metres per pixel, "
                         "e.g. 0.6")
    if options.gsd is not None and options.native_gsd:
        raise InputError(f"{flag('gsd')} and {flag('native_gsd')} were both given; keep one (a GSD in metres, or "
                         "each scene's own)")
    if options.collection is not None:
        check_collection_name(options.collection, flag("collection"))


def check_collection_name(name: str, option: str = "--collection") -> None:
    """Refuse (InputError) a collection name (``option``, as the caller spells it) that is empty,
    over 200 characters or holds control or invisible formatting characters (a NUL, a line break,
    a right-to-left override): the name is stored in every tile, shown on the map page and written
    into exports."""
    import unicodedata

    if not name.strip():
        raise InputError(f"{option} is empty; give a name, e.g. naip-2020 (or leave it out)")
    if len(name) > 200:
        raise InputError(f"{option} {name[:40]!r}... is {len(name)} characters; give at most 200")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise InputError(f"{option} {name[:60]!r} holds the control character U+{ord(bad):04X}; give the name "
                         "without it, e.g. naip-2020")


def tiling_key(tile_size: int, stride: int, gsd: float | None, edge: str) -> str:
    return f"t{tile_size}s{stride}g{'native' if gsd is None else f'{gsd:.6g}'}e{edge}"


def point_id(collection: str | None, item_id: str, asset: str, grid: Any, tiling: str, model_id: str) -> str:
    """Deterministic point id of one tile."""
    key = "|".join([collection or "", item_id, asset,
                    f"{grid.col_off},{grid.row_off},{grid.width},{grid.height}", tiling, model_id])
    return str(uuid.uuid5(POINT_NAMESPACE, key))


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def tile_payload(scene, ref, *, model_id: str, tile_size: int, stride: int, edge: str,
                 bands: Sequence[int], gsd_param: float | None, nodata: float | None = None) -> dict[str, Any]:
    """The stored payload of one tile (see README, "Point payload"); ``nodata`` is a nodata
    value the reader took from outside the file (STAC ``raster:bands``), kept in ``tiling``
    so that thumbnails and map imagery mask the same pixels (for a scene composed from three
    single-band assets, its three assets' values, and its files in ``band_hrefs``)."""
    w = ref.window
    dt, end = scene.interval
    band_hrefs = getattr(scene, "band_hrefs", None)
    if band_hrefs:  # a scene composed from three files: each file's nodata, as the stack applies them
        from rsir_stac.tiling.stack import stored_band_hrefs

        nodata = list(scene.nodata) if isinstance(scene.nodata, tuple) else scene.nodata
    return {
        "item_id": scene.item_id,
        "collection": scene.collection,
        "source": "stac" if scene.from_stac else "raster",
        "asset": scene.asset_key,
        "href": scene.href,
        # the R, G, B files of a composed scene, relative to href (absent: href alone)
        **({"band_hrefs": stored_band_hrefs(scene.href, band_hrefs)} if band_hrefs else {}),
        "window": {"col_off": w.col_off, "row_off": w.row_off, "width": w.width, "height": w.height},
        "grid": {"col_off": ref.grid.col_off, "row_off": ref.grid.row_off,
                 "width": ref.grid.width, "height": ref.grid.height},
        "crs": ref.crs,
        "bbox": list(ref.bbox),
        "location": {"lon": ref.centroid[0], "lat": ref.centroid[1]},
        "corners": [{"lon": lon, "lat": lat} for lon, lat in ref.corners],
        **({"outline": [[lon, lat] for lon, lat in ref.outline]} if ref.outline else {}),
        # an interval item's own datetime (its nominal time) is what it shows; filters use the interval
        "datetime": _iso(getattr(scene, "nominal", None) or dt),
        "datetime_epoch": dt.timestamp() if dt else None,
        "datetime_end_epoch": end.timestamp() if end else None,
        **({"start_datetime": _iso(dt), "end_datetime": _iso(end)} if dt and end != dt else {}),
        "gsd": ref.gsd,
        "tiling": {"tile_size": tile_size, "stride": stride, "edge": edge,
                   "gsd": gsd_param, "bands": list(bands),
                   **({"nodata": nodata} if nodata is not None else {})},
        "model_id": model_id,
    }


_END = object()


def _check_stored(store, scene, stored_id: str, ref, bands: Sequence[int]) -> None:
    """Refuse (InputError) to ingest ``scene`` over stored tiles it no longer matches: other
    bands, or a tile that has moved on the ground (the file's CRS or geotransform was fixed
    since).  Point ids depend on neither, so the run would skip every tile as already indexed
    and keep the old bands or footprints without a word.  ``ref`` is the tile of ``stored_id``
    as the scene gives it now."""
    from rsir_stac.tiling.footprints import FOOTPRINT_TOLERANCE_DEG, corner_shift_deg

    hits = store.retrieve([stored_id])
    if not hits:
        return
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

#: Payload fields a bare raster's ``--collection`` / ``--datetime`` set.
LABEL_FIELDS = ("collection", "datetime", "datetime_epoch", "datetime_end_epoch", "start_datetime", "end_datetime")


def relabel(store, scene, ids: set[str]) -> int:
    """Give stored tiles of a bare raster the collection and time of ``scene`` when
    they differ (``ingest --collection/--datetime`` run again on an indexed file):
    their vectors are kept, nothing is embedded again.  Returns how many changed."""
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
    for s in range(0, len(changed), WRITE_BATCH):
        store.upsert(changed[s : s + WRITE_BATCH])
    return len(changed)

#: Points per upsert: several embedding batches, written whole.
WRITE_BATCH = 64


def list_scenes(sources: Sequence[str], options: IngestOptions, report: IngestReport,
                on_item_error: Callable[[RsirError], None]) -> list:
    """Resolve every source to scenes up front (errors here abort the run).

    A scene listed twice (the same item and asset at the same href: a file
    named twice, a folder and a file in it) is kept once.  Two *different*
    scenes with the same identity (collection, item id, asset) would share
    point ids, so the second is reported as a failed item instead of silently
    overwriting the first.
    """
    from rsir_stac.errors import StacError
    from rsir_stac.stac import iter_scenes, split_shard

    listed = iter_scenes(list(sources), asset=options.asset, bands=options.bands, on_error=on_item_error,
                         collection=options.collection, datetime=options.datetime)
    seen: dict[tuple, str] = {}
    scenes = []
    for scene in listed:
        key = (scene.collection, scene.item_id, scene.asset_key)
        first = seen.get(key)
        if first is None:
            seen[key] = scene.href
            scenes.append(scene)
        elif _same_source(first, scene.href):
            log.info("item %s is listed twice; ingesting it once", scene.item_id)
        else:
            where = f" of collection {scene.collection}" if scene.collection else ""
            err = StacError(
                f"item {scene.item_id}{where} is listed twice with different rasters ({first} and {scene.href}); "
                "item ids must be unique within a collection: fix the catalogue (only the first was ingested)")
            err.item_id = scene.item_id  # type: ignore[attr-defined]
            on_item_error(err)
    bare = [s.item_id for s in scenes if not s.from_stac]
    if options.asset and bare:  # a bare raster has one asset: the option cannot mean anything for it
        log.warning("--asset %s applies to STAC items only; %d bare raster(s) (e.g. %s) were read as they are",
                    options.asset, len(bare), bare[0])
    return list(split_shard(scenes, options.shard))


def _same_source(a: str, b: str) -> bool:
    """Two hrefs naming the same raster (equal, or local paths resolving to one file)."""
    if a == b:
        return True
    if "://" in a or "://" in b or a.startswith("/vsi") or b.startswith("/vsi"):
        return False
    return os.path.realpath(a) == os.path.realpath(b)


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
    check_options(options)
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    report = IngestReport(model_id=bundle.model_id)

    def item_error(err: RsirError) -> None:
        report.items_failed.append({"item": getattr(err, "item_id", ""), "error": str(err)})
        if options.fail_fast:
            err.report = report  # type: ignore[attr-defined]
            raise err

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
        tile_size = options.tile_size or bundle.tile_size
        stride = options.stride or tile_size
        gsd = None if options.native_gsd else (options.gsd or bundle.gsd)
        q: queue.Queue = queue.Queue(maxsize=max(2, options.queue_batches) * max(WRITE_BATCH, embedder.batch_size))
        stop = threading.Event()
        lock = threading.Lock()  # the store is used from both threads
        producer = threading.Thread(
            target=_produce, name="rsir-tiles", daemon=True,
            args=(scenes, q, stop, lock, store, bundle.model_id, options, tile_size, stride, gsd, report,
                  bundle.input_size),
        )
        producer.start()
        try:
            _consume(q, lock, store, embedder, options, report, emit)
        except RsirError as err:
            if getattr(err, "item_id", None) is not None:  # --fail-fast on an item or window
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
    finally:
        embedder.close()
        store.close()
    if not report.points_written and not report.tiles_existing and report.ok:
        report.nothing_indexed = _nothing_reason(report, scenes, options)
    report.seconds = round(time.time() - t0, 2)
    log.info("ingest done: %s", {k: v for k, v in report.as_dict().items() if not isinstance(v, list)})
    return report


def _nothing_reason(report: IngestReport, scenes: list, options: IngestOptions) -> str:
    """Why a run without failures indexed no tile (empty string when that is expected)."""
    if not scenes:
        if options.shard is not None:
            return ""  # this worker's share of a small catalogue may be empty
        return "the sources hold no STAC items or rasters; check the catalogue's item links"
    if report.items_small and len(report.items_small) == len(report.items_empty):
        first = report.items_small[0]
        return f"the {len(report.items_small)} scene(s) are smaller than one tile (e.g. {first['hint']})"
    if not report.tiles_total:
        return (f"the {len(scenes)} scene(s) are smaller than one tile and --edge {options.edge} "
                "keeps no partial tiles; use --edge pad, --native-gsd or a finer --gsd")
    return (f"all {report.tiles_total} windows of {len(scenes)} scene(s) are nodata or less than "
            f"{options.min_valid:g} valid; check the nodata value/mask and --bands, or lower --min-valid")


def small_scene_hint(width: int, height: int, tile: int, gsd: float, edge: str) -> str:
    """Why a scene of ``width`` x ``height`` px (at ``gsd`` m) gave no tile, and what to do."""
    what = f"{width}x{height} px at {gsd:.3g} m is smaller than one {tile} px tile"
    if edge == "drop":
        return f"{what} and --edge drop keeps no partial tile; use --edge pad, --native-gsd or a finer --gsd"
    return (f"{what}, so its one padded tile is mostly empty; read it with more pixels (a finer --gsd, "
            "without --native-gsd), give a smaller --tile-size, or lower --min-valid to keep the padded tile")


def _open_or_defer(index, qdrant_url, api_key):
    """``(store, None)``, or ``(None, opener)`` when the embedded index folder does
    not exist yet: it is then created on the first write, not before."""
    from rsir_stac.store import DEFAULT_INDEX, ENV_URL, open_store

    def opener():
        return open_store(index, qdrant_url=qdrant_url, api_key=api_key)

    embedded = not qdrant_url and (index is not None or not os.environ.get(ENV_URL))
    if embedded:
        path = os.path.abspath(os.path.expanduser(str(index if index is not None else DEFAULT_INDEX)))
        if not os.path.lexists(path):
            parent = os.path.dirname(path)
            while parent and not os.path.lexists(parent):
                parent = os.path.dirname(parent)
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
                raise StoreError(f"cannot create index directory {path} ({parent} is not a writable folder); "
                                 "choose a writable --index")
            return None, opener
    return opener(), None


class _LazyStore:
    """The store as the pipeline sees it.

    A missing collection is created (and a missing index folder opened) only
    when the first points are written; until then ``existing_ids`` is empty and
    ``flush`` does nothing.  An existing collection is checked against the model
    at once.
    """

    def __init__(self, store, opener, dim: int, model_id: str, *, own: bool) -> None:
        self._store, self._opener, self._own = store, opener, own
        self._dim, self._model_id = dim, model_id
        self._ready = False
        if store is not None:
            try:
                if store.meta() is not None:
                    store.ensure_collection(dim, model_id)  # IncompatibleIndexError before any read
                    self._ready = True
            except BaseException:
                if own:
                    store.close()
                raise

    def _writable(self):
        if self._store is None:
            self._store = self._opener()
        if not self._ready:
            self._store.ensure_collection(self._dim, self._model_id)
            self._ready = True
        return self._store

    def existing_ids(self, ids):
        return self._store.existing_ids(ids) if self._ready else set()

    def retrieve(self, ids, with_vectors: bool = False):
        return self._store.retrieve(ids, with_vectors=with_vectors) if self._ready else []

    def count(self, flt=None) -> int:
        return self._store.count(flt) if self._ready else 0

    def upsert(self, points) -> None:
        self._writable().upsert(points)

    def flush(self) -> None:
        if self._ready:
            self._store.flush()

    def optimize(self) -> bool:
        return self._store.optimize() if self._ready else False

    def close(self) -> None:
        if self._own and self._store is not None:
            self._store.close()

    def __getattr__(self, name: str):
        return getattr(self._writable(), name)


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


def _produce(scenes, q, stop, lock, store, model_id, options, tile_size, stride, gsd, report,
             input_size: int | None = None) -> None:
    """Reader thread: tiles each scene and queues (point id, pixels, payload); tiles over
    :data:`SHRINK_TILES_OVER` times ``input_size`` are queued at the input size."""
    from rsir_stac.tiling import gdal_env

    shrink = _shrinker(tile_size, input_size)

    try:
        for scene in scenes:
            if stop.is_set():
                return
            q.put(("start", scene.item_id))
            try:
                reader, scene_gsd, legacy = open_scene(scene, options, tile_size, stride, gsd)
                if legacy is not None:
                    reader, scene_gsd = _legacy_tiling(store, lock, scene, reader, scene_gsd, legacy, options,
                                                       tile_size, stride, model_id)
                with reader, gdal_env():  # one GDAL environment per scene, not per tile
                    tkey = tiling_key(tile_size, stride, scene_gsd, options.edge)
                    refs = reader.windows()
                    ids = [point_id(scene.identity_collection, scene.item_id, scene.asset_key, r.grid, tkey, model_id)
                           for r in refs]
                    with lock:
                        existing = store.existing_ids(ids) if ids else set()
                        if existing:
                            first = next(k for k, pid in enumerate(ids) if pid in existing)
                            _check_stored(store, scene, ids[first], refs[first], reader.bands)
                        if existing and not scene.from_stac:
                            report.tiles_relabelled += relabel(store, scene, existing)
                        if len(existing) < len(refs):
                            _warn_other_tilings(store, scene, ids, len(existing))
                    report.tiles_total += len(refs)
                    report.tiles_existing += len(existing)
                    q.put(("total", len(refs) - len(existing)))
                    if len(existing) < len(refs):
                        _ = reader.plan  # the scene's stretch: if it cannot be read the item fails once, not each window
                    queued = failed = 0
                    for ref, pid in zip(refs, ids):
                        if stop.is_set():
                            return
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
                        payload = tile_payload(scene, ref, model_id=model_id, tile_size=tile_size,
                                               stride=stride, edge=options.edge, bands=reader.bands,
                                               gsd_param=scene_gsd, nodata=reader.plan.nodata)
                        q.put(("tile", (pid, tile.pixels if shrink is None else shrink(tile.pixels), payload)))
                    if not queued and not failed and not existing:
                        report.items_empty.append(scene.item_id)
                        w, h = reader.grid_width, reader.grid_height
                        if w < tile_size or h < tile_size:
                            hint = small_scene_hint(w, h, tile_size, reader.gsd, options.edge)
                            report.items_small.append({"item": scene.item_id, "width": w, "height": h,
                                                       "gsd": reader.gsd, "hint": hint})
                            log.info("item %s: %s", scene.item_id, hint)
                        else:
                            log.info("item %s: all %d windows are nodata or below --min-valid %g; nothing to index",
                                     scene.item_id, len(refs), options.min_valid)
                q.put(("end", scene.item_id))
            except StoreError:
                raise  # the index itself failed: stop the run
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop a catalogue
                err = exc if isinstance(exc, RsirError) else RasterError(
                    f"{scene.href}: unexpected {type(exc).__name__} while tiling ({' '.join(str(exc).split())[:300]}); "
                    "skip the item and report the bug (run with -v for the traceback)")
                if not isinstance(exc, RsirError):
                    log.info("traceback of item %s", scene.item_id, exc_info=exc)
                err.item_id = scene.item_id  # type: ignore[attr-defined]
                if options.fail_fast:
                    report.items_failed.append({"item": scene.item_id, "error": str(err)})
                    q.put(("error", err))
                    return
                log.info("skipping item %s: %s", scene.item_id, err)
                report.items_failed.append({"item": scene.item_id, "error": str(err)})
                q.put(("failed", scene.item_id))
    except BaseException as err:  # noqa: BLE001 - hand any crash to the consumer
        q.put(("error", err))
    finally:
        q.put((_END, None))


def _consume(q, lock, store, embedder, options, report, emit) -> None:
    """Queue full batches on the embedder's lanes (``lanes + 1`` in flight),
    take their vectors in order and upsert them on a writer thread in groups of
    :data:`WRITE_BATCH` points (one write in flight), so that reading,
    inference and writing overlap.  The store is flushed after each item."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from rsir_stac.malloc import release_free_memory
    from rsir_stac.store import Point

    ids: list[str] = []
    pixels: list[np.ndarray] = []
    payloads: list[dict] = []
    inflight: deque = deque()  # (future of vectors, ids, payloads), oldest first
    points: list = []
    pending = None
    max_inflight = embedder.lanes + 1

    def upsert(batch) -> int:
        with lock:
            store.upsert(batch)
        return len(batch)

    def settle() -> None:
        nonlocal pending
        if pending is not None:
            n = pending.result()  # re-raises a write error here, in the caller's thread
            pending = None
            report.points_written += n
            report.tiles_read += n
            emit(IngestEvent("tiles", n=n))

    def write(writer) -> None:
        nonlocal pending, points
        if points:
            settle()
            pending, points = writer.submit(upsert, points), []
            release_free_memory()  # keep the single malloc arena from fragmenting without bound

    def collect(writer, keep: int) -> None:
        """Take finished batches, oldest first, until ``keep`` are in flight."""
        while len(inflight) > keep:
            job, bids, bpayloads = inflight.popleft()
            points.extend(Point(i, v, p) for i, v, p in zip(bids, job.result(), bpayloads))
            if len(points) >= WRITE_BATCH:
                write(writer)

    def embed_batch(writer) -> None:
        nonlocal ids, pixels, payloads
        if ids:
            inflight.append((embedder.submit(pixels), ids, payloads))
            ids, pixels, payloads = [], [], []
            collect(writer, max_inflight)

    def drain(writer) -> None:
        embed_batch(writer)
        collect(writer, 0)
        write(writer)
        settle()

    def finish_item(writer) -> None:
        drain(writer)
        with lock:
            store.flush()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsir-upsert") as writer:
        try:
            while True:
                kind, value = q.get()
                if kind is _END:
                    break
                if kind == "tile":
                    pid, px, payload = value
                    ids.append(pid), pixels.append(px), payloads.append(payload)
                    if len(ids) >= embedder.batch_size:
                        embed_batch(writer)
                elif kind == "skip":
                    emit(IngestEvent("tiles", n=value))
                elif kind == "total":
                    emit(IngestEvent("total", n=value))
                elif kind == "start":
                    emit(IngestEvent("start", item_id=value))
                elif kind in ("end", "failed"):
                    finish_item(writer)
                    if kind == "end":
                        report.items_done += 1
                    emit(IngestEvent("end", item_id=value))
                elif kind == "error":
                    finish_item(writer)
                    raise value
            drain(writer)  # the caller flushes the store once more at the end
        except BaseException:
            for job, _, _ in inflight:  # batches not yet embedded are dropped
                job.cancel()
            try:  # keep what the writer already stored counted; the first error wins
                settle()
            except Exception:  # noqa: BLE001
                pass
            raise
