"""Bytes of a file read through GDAL's virtual file system (``/vsicurl/``, ``/vsis3/`` ...), with GDAL's
own network settings and credentials: the C functions ``VSIFOpenL``/``VSIFSeekL``/``VSIFReadL`` of the
libgdal that rasterio loaded, through ctypes (rasterio wraps no raw read).  Used to read a remote
TIFF's tags (:func:`rsir_stac.upload.tiff_blocks`) without decoding any pixel."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

#: Bytes fetched at once (GDAL's ``/vsicurl/`` reads 16 KB chunks and caches them).
CHUNK_BYTES = 64 * 1024


class ReadLimitError(OSError):
    """More of a file was asked for than :class:`VsiBytes` ``max_bytes`` allows."""


@functools.lru_cache(maxsize=1)
def _libgdal() -> Any:
    """The libgdal that rasterio loaded (found in this process's memory map), with the VSI functions
    typed; None where it cannot be found (then nothing is read this way)."""
    import rasterio._io  # noqa: F401 - loads libgdal

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            found = list(dict.fromkeys(ln.split()[-1] for ln in fh
                                       if "libgdal" in ln and ln.split()[-1].startswith("/")))
    except OSError:
        found = []
    # pyogrio brings a libgdal of its own: the one rasterio loaded holds rasterio.Env's settings
    path = next((p for p in found if "rasterio" in p), found[0] if len(found) == 1 else None)
    if path is None or not os.path.exists(path):
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.VSIFOpenL.restype, lib.VSIFOpenL.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
        lib.VSIFSeekL.restype, lib.VSIFSeekL.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
        lib.VSIFTellL.restype, lib.VSIFTellL.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
        lib.VSIFReadL.restype = ctypes.c_size_t
        lib.VSIFReadL.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
        lib.VSIFCloseL.restype, lib.VSIFCloseL.argtypes = ctypes.c_int, [ctypes.c_void_p]
    except (OSError, AttributeError) as err:
        log.debug("libgdal at %s has no VSI functions to call: %s", path, err)
        return None
    return lib


class VsiBytes:
    """A read-only, bytes-like view of the file at GDAL path ``path`` (``len`` and slices only), read in
    :data:`CHUNK_BYTES` chunks as slices ask for them; at most ``max_bytes`` in all (ReadLimitError past
    it).  OSError when GDAL cannot open the file or libgdal cannot be reached.  Close it when done."""

    def __init__(self, path: str, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._lib = _libgdal()
        if self._lib is None:
            raise OSError("GDAL's virtual file functions cannot be reached from Python here")
        self._fp = self._lib.VSIFOpenL(path.encode("utf-8"), b"rb")
        if not self._fp:
            raise OSError(f"GDAL cannot open {path}")
        self._lib.VSIFSeekL(self._fp, 0, 2)
        self._size = int(self._lib.VSIFTellL(self._fp))
        self._chunks: dict[int, bytes] = {}
        self._max = max_bytes

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: slice) -> bytes:
        if not isinstance(key, slice):
            raise TypeError("VsiBytes reads slices only")
        start, stop, _ = key.indices(self._size)
        if stop <= start:
            return b""
        first, last = start // CHUNK_BYTES, (stop - 1) // CHUNK_BYTES
        raw = b"".join(self._chunk(k) for k in range(first, last + 1))
        return raw[start - first * CHUNK_BYTES:stop - first * CHUNK_BYTES]

    def _chunk(self, k: int) -> bytes:
        if k not in self._chunks:
            if (len(self._chunks) + 1) * CHUNK_BYTES > self._max:
                raise ReadLimitError(f"reading more than {self._max} bytes of the file's tags")
            buf = ctypes.create_string_buffer(CHUNK_BYTES)
            self._lib.VSIFSeekL(self._fp, k * CHUNK_BYTES, 0)
            got = self._lib.VSIFReadL(buf, 1, CHUNK_BYTES, self._fp)
            self._chunks[k] = buf.raw[:got]
        return self._chunks[k]

    def close(self) -> None:
        if self._fp:
            self._lib.VSIFCloseL(self._fp)
            self._fp = None

    def __enter__(self) -> VsiBytes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["CHUNK_BYTES", "ReadLimitError", "VsiBytes"]
