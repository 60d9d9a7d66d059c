"""What every router of ``rsir-stac serve`` shares: the open index, its locks, limits and settings.

One :class:`Service` is built by :func:`rsir_stac.serve.create_app` and handed
to each router factory (``search_router(svc)``, ...), so a new router is one
module plus one ``include_router`` line.  FastAPI runs synchronous endpoints
in a thread pool; :attr:`Service.lock` serialises store access and
:attr:`Service.embed_lock` the model's forward passes, so an upload being
embedded does not hold up searches by id.
"""

from __future__ import annotations

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
    :func:`rsir_stac.apierrors.install_handlers`) to file names.
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

    def __post_init__(self) -> None:
        from rsir_stac.upload import UploadLimits

        self.limits = self.limits or UploadLimits()
        self.lock = threading.Lock()        # store access
        self.embed_lock = threading.Lock()  # the model (built lazily, one forward pass at a time)
        self.thumbs = LRUBytes(self.thumb_cache_bytes)
        self.decode_slots = threading.BoundedSemaphore(self.max_decodes)
        self.cache: dict[str, tuple[float, Any]] = {}

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

    def filter_notes(self, flt: Any) -> list[str]:
        """One line per tile kind a date or collection filter leaves out (undated /
        uncollected tiles), with their count; empty when the filter leaves none out."""
        from rsir_stac.search import excluded_notes

        if flt is None or (flt.start is None and flt.end is None and not flt.collections):
            return []

        def compute() -> list[str]:  # the counts depend only on which of the two filters is given
            with self.lock:
                return excluded_notes(self.index.store, flt, names=("the datetime filter", "the collection filter"))

        kind = ("d" if flt.start is not None or flt.end is not None else "") + ("c" if flt.collections else "")
        return self.cached("notes:" + kind, compute)

    # ------------------------------------------------------------------ output

    def public(self, doc: dict) -> dict:
        """``doc`` (a FeatureCollection) with local ``href`` paths cut to file names when ``hide_paths``."""
        if self.hide_paths:
            from rsir_stac.httpguard import public_href

            for f in doc.get("features", ()):
                props = f.get("properties") or {}
                if "href" in props:
                    props["href"] = public_href(props["href"])
        return doc

    def public_rows(self, rows: list[dict]) -> list[dict]:
        """Table rows (:func:`rsir_stac.export.row_of`) with ``href`` cut to a file name when ``hide_paths``."""
        if self.hide_paths:
            from rsir_stac.httpguard import public_href

            for r in rows:
                if "href" in r:
                    r["href"] = public_href(r["href"])
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
        from rsir_stac.apierrors import TooManyRequests

        if not self.decode_slots.acquire(blocking=False):
            raise TooManyRequests(f"{self.max_decodes} uploaded images are being decoded already; "
                                  "retry in a second")
        try:
            yield
        finally:
            self.decode_slots.release()

    def decode(self, data: bytes) -> np.ndarray:
        """Uploaded bytes to ``H x W x 3`` uint8 through :func:`rsir_stac.upload.decode_upload`
        (the only place client bytes meet a decoder); call it inside :meth:`decoding`."""
        from rsir_stac.upload import decode_upload

        return decode_upload(data, self.limits)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The index model's vector of ``pixels``, one forward pass at a time, outside the store lock."""
        with self.embed_lock:
            return self.index.embed_image(pixels)


__all__ = ["INFO_TTL_S", "LRUBytes", "Service", "THUMB_CACHE_BYTES"]
