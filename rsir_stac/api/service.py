"""What every router of ``rsir-stac serve`` shares: the open index, its locks, limits and settings.

One :class:`Service` is built by :func:`rsir_stac.serve.create_app` and handed
to each router factory (``search_router(svc)``, ...), so a new router is one
module plus one ``include_router`` line.  FastAPI runs synchronous endpoints
in a thread pool; :attr:`Service.lock` serialises store access and
:attr:`Service.embed_lock` the model's forward passes, so an upload being
embedded does not hold up searches by id.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Byte budget of the PNG thumbnail LRU cache.
THUMB_CACHE_BYTES = 64 * 1024 * 1024
#: How long ``/api/info`` (a scan of every point) and the counts behind filter notes are cached.
INFO_TTL_S = 60.0
#: Filter notes kept (one entry per exact filter: place, dates and the set of collections).
NOTES_CACHE_ENTRIES = 64
#: Heavy analysis requests (``/api/query``, its export, ``/api/classify``) served at a time.
MAX_QUERIES = 2
#: Stored tiles re-read from their sources at a time (``/api/tiles``), and requests reading or waiting in
#: all (429 beyond): a results page loads its thumbnails together, a browser ~6 at a time per host; the
#: queue stays well under the server's worker threads (40), so waiting tile reads cannot hold them all.
TILE_READS_AT_ONCE = 4
TILE_READ_QUEUE = 16


class LRUBytes:
    """A thread-safe LRU of bytes values bounded by total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self._d: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._d[key] = value
            self.size += len(value)
            while self.size > self.max_bytes:
                _, v = self._d.popitem(last=False)
                self.size -= len(v)

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class Service:
    """The state the routers share.

    ``dependencies``: FastAPI dependencies of every ``/api/`` operation (the API-key
    scheme, declared so ``/docs`` shows it; the key itself is checked by
    :class:`rsir_stac.httpguard.Guard`).  ``max_upload_bytes`` bounds one request's
    uploads together; ``limits`` (:class:`rsir_stac.upload.UploadLimits`) each
    decoded image; ``max_decodes`` the requests decoding uploads at a time.
    ``hide_paths`` cuts server paths in ``href`` fields (and errors, see
    :func:`rsir_stac.apierrors.install_handlers`) to file names.  ``max_queries``: the
    multi-example queries, exports and classifications run at a time (429 beyond).
    """

    index: Any
    dependencies: list = field(default_factory=list)
    max_upload_bytes: int = 10_000_000
    limits: Any = None
    max_decodes: int = 2
    hide_paths: bool = False
    basemap: str | None = None
    thumb_cache_bytes: int = THUMB_CACHE_BYTES
    tile_cache_bytes: int | None = None
    max_queries: int = MAX_QUERIES

    def __post_init__(self) -> None:
        from rsir_stac.upload import UploadLimits

        self.limits = self.limits or UploadLimits()
        self.lock = threading.Lock()        # store access
        self.embed_lock = threading.Lock()  # the model (built lazily, one forward pass at a time)
        self.thumbs = LRUBytes(self.thumb_cache_bytes)
        self.decode_slots = threading.BoundedSemaphore(self.max_decodes)
        self.query_slots = threading.BoundedSemaphore(self.max_queries)
        self.tile_slots = threading.BoundedSemaphore(TILE_READS_AT_ONCE)
        self._tile_waiting = 0
        self._tile_lock = threading.Lock()
        self.cache: dict[str, tuple[float, Any]] = {}
        self._notes: OrderedDict[bytes, tuple[float, list[str]]] = OrderedDict()
        self._notes_lock = threading.Lock()

    # ------------------------------------------------------------------ cached values

    def cached(self, key: str, compute, ttl: float = INFO_TTL_S) -> Any:
        """``compute()``, kept for ``ttl`` seconds under ``key``."""
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = compute()
        self.cache[key] = (now, value)
        return value

    def clear_cached(self) -> None:
        """Forget every cached summary and note (an ingest job changed the index)."""
        self.cache.clear()
        with self._notes_lock:
            self._notes.clear()

    def empty_notes(self, flt: Any) -> list[str]:
        """Why a search with ``flt`` found nothing (:func:`rsir_stac.search_notes.empty_filter_notes`), the
        filters named as the API and the map page call them."""
        from rsir_stac.search_notes import empty_filter_notes

        with self.lock:
            return empty_filter_notes(self.index.store, flt, names={
                "bbox": "the bbox", "near": "the radius", "polygon": "the polygon", "datetime": "the dates",
                "collections": "the collections"})

    def filter_notes(self, flt: Any) -> list[str]:
        """One line per tile kind a date or collection filter leaves out (undated /
        uncollected tiles), with their count, and the collections asked for that the index
        does not hold; empty when the filter leaves none out.  Computed for this request's
        filter: cached (for :data:`INFO_TTL_S`, at most :data:`NOTES_CACHE_ENTRIES` filters)
        under the exact filter, so one client's collection names never reach another's answer."""
        from rsir_stac.search_notes import excluded_notes

        if flt is None or (flt.start is None and flt.end is None and not flt.collections):
            return []
        key = hashlib.sha256(repr(flt).encode()).digest()  # the whole filter, collections in their order
        now = time.monotonic()
        with self._notes_lock:
            hit = self._notes.get(key)
            if hit is not None and now - hit[0] < INFO_TTL_S:
                self._notes.move_to_end(key)
                return list(hit[1])
        with self.lock:
            notes = excluded_notes(self.index.store, flt, names=("the datetime filter", "the collection filter"))
        with self._notes_lock:
            self._notes[key] = (now, notes)
            self._notes.move_to_end(key)
            while len(self._notes) > NOTES_CACHE_ENTRIES:
                self._notes.popitem(last=False)
        return list(notes)

    # ------------------------------------------------------------------ output

    def public(self, doc: dict) -> dict:
        """``doc`` (a FeatureCollection) with local ``href`` paths cut to file names when ``hide_paths``."""
        if self.hide_paths:
            from rsir_stac.redact import public_href

            for f in doc.get("features", ()):
                props = f.get("properties") or {}
                if "href" in props:
                    props["href"] = public_href(props["href"])
                if isinstance(props.get("band_hrefs"), list):  # a composed scene's files, relative to href
                    props["band_hrefs"] = [public_href(h) for h in props["band_hrefs"]]
        return doc

    def public_rows(self, rows: list[dict]) -> list[dict]:
        """Table rows (:func:`rsir_stac.export.row_of`) with ``href`` cut to a file name when ``hide_paths``."""
        if self.hide_paths:
            from rsir_stac.redact import public_href

            for r in rows:
                if "href" in r:
                    r["href"] = public_href(r["href"])
                if isinstance(r.get("extra"), str) and "band_hrefs" in r["extra"]:  # a composed scene's files
                    import json

                    extra = json.loads(r["extra"])
                    if isinstance(extra.get("band_hrefs"), list):
                        extra["band_hrefs"] = [public_href(h) for h in extra["band_hrefs"]]
                        r["extra"] = json.dumps(extra, separators=(",", ":"))
        return rows

    # ------------------------------------------------------------------ uploads

    def upload_too_large(self) -> Exception:
        from rsir_stac.upload import UploadTooLarge

        return UploadTooLarge(f"the uploaded file is over the {self.max_upload_bytes} byte limit; "
                              "upload a smaller image")

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold one of the ``max_decodes`` slots for decoding (and embedding) uploads;
        :class:`~rsir_stac.apierrors.TooManyRequests` (429) when none is free."""
        with _slot(self.decode_slots, f"{self.max_decodes} uploaded images are being decoded already; "
                                      "retry in a second"):
            yield

    @contextmanager
    def querying(self) -> Iterator[None]:
        """Hold one of the ``max_queries`` slots for a heavy analysis request (up to 256 examples,
        10,000 hits, a scan of the index); :class:`~rsir_stac.apierrors.TooManyRequests` (429 with
        Retry-After) when none is free, so such requests cannot queue up behind the store lock."""
        with _slot(self.query_slots, f"{self.max_queries} queries, exports or classifications are running "
                                     "already; retry in a second"):
            yield

    @contextmanager
    def reading_tile(self) -> Iterator[None]:
        """Hold one of :data:`TILE_READS_AT_ONCE` slots for re-reading a stored tile from its source
        (``/api/tiles``), at most :data:`TILE_READ_QUEUE` requests reading or waiting in all (a results
        page asks for its dozens of thumbnails at once, a browser ~6 at a time);
        :class:`~rsir_stac.apierrors.TooManyRequests` (429) beyond that."""
        from rsir_stac.apierrors import TooManyRequests

        with self._tile_lock:
            if self._tile_waiting >= TILE_READ_QUEUE:
                raise TooManyRequests(f"{TILE_READ_QUEUE} stored tiles are being read or waiting already; retry "
                                      "in a second")
            self._tile_waiting += 1
        try:
            with self.tile_slots:
                yield
        finally:
            with self._tile_lock:
                self._tile_waiting -= 1

    def decode(self, data: bytes) -> np.ndarray:
        """Uploaded bytes to ``H x W x 3`` uint8 through :func:`rsir_stac.upload.decode_upload`
        (the only place client bytes meet a decoder); call it inside :meth:`decoding`."""
        from rsir_stac.upload import decode_upload

        return decode_upload(data, self.limits)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The index model's vector of ``pixels``, one forward pass at a time, outside the store lock."""
        with self.embed_lock:
            return self.index.embed_image(pixels)


@contextmanager
def _slot(slots: threading.Semaphore, busy: str) -> Iterator[None]:
    """Hold one of ``slots`` without waiting; :class:`~rsir_stac.apierrors.TooManyRequests`
    (429 with Retry-After) saying ``busy`` when none is free."""
    from rsir_stac.apierrors import TooManyRequests

    if not slots.acquire(blocking=False):
        raise TooManyRequests(busy)
    try:
        yield
    finally:
        slots.release()


__all__ = ["INFO_TTL_S", "LRUBytes", "MAX_QUERIES", "NOTES_CACHE_ENTRIES", "Service", "THUMB_CACHE_BYTES",
           "TILE_READS_AT_ONCE", "TILE_READ_QUEUE"]
