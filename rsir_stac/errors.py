"""The rsir-stac error tree.

Every error the library raises on bad input derives from :class:`RsirError`,
and also from the matching built-in exception, so callers may catch either.
Messages are one line: what object is wrong, and how to fix it.

``exit_code`` is what the command line exits with when the error ends a run:
2 for bad usage or input that is refused before any work is done (fix the
input and re-run), 1 for failures of the run itself (index in use, store I/O).  An output file that
cannot be replaced (immutable, read-only mounted) is 2 too, as an output folder that cannot be written
in is, even when it is found only as the output is renamed into place (``atomic.ReplaceError``).
A run that skips failing items or windows also exits 1 (see docs/RELIABILITY.md).
"""

from __future__ import annotations


class RsirError(Exception):
    """Root of all rsir-stac errors."""

    exit_code = 1


class InputError(RsirError, ValueError):
    """A user-supplied argument is malformed (bbox, polygon, datetime, option)."""

    exit_code = 2


class SourceNotFoundError(RsirError, FileNotFoundError):
    """A file, URL or STAC asset that was asked for does not exist."""

    exit_code = 2


class RasterError(RsirError, ValueError):
    """A raster cannot be used: corrupt, no CRS or geotransform, empty, bad bands."""

    exit_code = 2


class SourceUnreadableError(RasterError):
    """A source raster exists but cannot be read (replaced, truncated, or stored in blocks over the
    service's decoding limit): HTTP 410 in the service."""


class NotGeoreferencedError(RasterError):
    """A raster without a CRS, a geotransform or both (``missing``: ``"crs"``, ``"transform"`` or
    ``"both"``), so its pixels cannot be placed on the ground."""

    def __init__(self, message: str, missing: str = "both", shape: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.missing = missing
        self.shape = shape  # the raster's (rows, columns)


class BandsError(RasterError):
    """A multi-band raster whose red, green and blue bands cannot be told: pass ``--bands``."""


class StacError(RsirError, ValueError):
    """A STAC document is not valid JSON or not STAC, or lacks what is needed."""

    exit_code = 2


class AssetError(StacError, LookupError):
    """A STAC item has no usable asset (missing key, wrong media type)."""


class ImageReadError(RsirError, ValueError):
    """An image file (training image or query image) cannot be decoded."""

    exit_code = 2


class EmptyImageError(ImageReadError):
    """A query image whose every pixel is nodata, masked or transparent: nothing to search by."""


class DatasetError(RsirError, ValueError):
    """A labelled image folder cannot be used for training or evaluation."""

    exit_code = 2


class BundleError(RsirError, ValueError):
    """A model bundle is missing, truncated, or from an incompatible version."""

    exit_code = 2


class BundleNotFoundError(BundleError, FileNotFoundError):
    """No model bundle at the given path."""


class StoreError(RsirError, RuntimeError):
    """The vector index cannot be opened or written."""


class IndexInUseError(StoreError):
    """Another process holds the embedded index open for writing."""


class IndexNotFoundError(StoreError, FileNotFoundError):
    """The index (or its collection) that was asked for does not exist: bad input,
    refused before any work."""

    exit_code = 2


class SnapshotError(StoreError, ValueError):
    """A snapshot file is missing, not a snapshot, damaged or truncated, or its
    name has no known extension: refused before the index is touched."""

    exit_code = 2


class TargetExistsError(StoreError, FileExistsError):
    """An output (an index to restore into, a snapshot archive) already exists and
    ``--force`` was not given: refused before any work."""

    exit_code = 2


class DiskFullError(StoreError, OSError):
    """The file system is full: the operation was refused (or stopped) before it
    could leave anything half-written."""


class IncompatibleIndexError(StoreError, ValueError):
    """The index was built with another model or vector size."""

    exit_code = 2


class PointNotFoundError(StoreError, LookupError):
    """A point id or location that was asked for is not in the index."""

    exit_code = 2


class JobCancelledError(RsirError, RuntimeError):
    """A service ingest job was cancelled (``DELETE /api/ingest/jobs/{id}``); what it wrote stays,
    and the same job again resumes it.  Exit code 130, as an interrupted command."""

    exit_code = 130


__all__ = [
    "JobCancelledError",
    "RsirError",
    "InputError",
    "SourceNotFoundError",
    "RasterError",
    "SourceUnreadableError",
    "NotGeoreferencedError",
    "BandsError",
    "StacError",
    "AssetError",
    "ImageReadError",
    "EmptyImageError",
    "DatasetError",
    "BundleError",
    "BundleNotFoundError",
    "StoreError",
    "IndexInUseError",
    "IndexNotFoundError",
    "SnapshotError",
    "TargetExistsError",
    "DiskFullError",
    "IncompatibleIndexError",
    "PointNotFoundError",
]
