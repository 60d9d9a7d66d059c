"""Opening raster sources (paths and URLs) under GDAL's environment, and their errors
(see :mod:`rsir_stac.tiling`, "Remote rasters and failures")."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import stat
import threading
import warnings
import weakref
from typing import Any

import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rsir_stac.errors import InputError, RasterError, RsirError, SourceNotFoundError
from rsir_stac.tiling.blocks import check_blocks
from rsir_stac.tiling.names import _is_url, _one_line, _plain_path, _vrt_source_names

log = logging.getLogger(__name__)

#: Default seconds GDAL waits on one HTTP request (``$RSIR_HTTP_TIMEOUT`` overrides).
HTTP_TIMEOUT = 30


#: GDAL block cache while reading scenes (bytes; ``GDAL_CACHEMAX`` in the environment wins).
GDAL_CACHE_BYTES = 256 * 1024 * 1024

#: An option our Env always sets, to recognise it when nested.
_OUR_MARK = "RSIR_STAC_ENV"


def gdal_options() -> dict[str, Any]:
    """GDAL config options for reading scenes (see the module docstring).

    Defaults only: an option already set in the environment is left out, so
    ``GDAL_HTTP_TIMEOUT=120 rsir-stac ingest ...`` wins.
    """
    timeout = os.environ.get("RSIR_HTTP_TIMEOUT") or str(HTTP_TIMEOUT)
    try:
        connect = str(max(1, min(10, math.ceil(float(timeout)))))
    except ValueError:
        raise InputError(f"RSIR_HTTP_TIMEOUT={timeout!r} is invalid; give a number of seconds") from None
    defaults = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_TIMEOUT": timeout,
        "GDAL_HTTP_CONNECTTIMEOUT": connect,
        "GDAL_HTTP_MAX_RETRY": "2",
        "GDAL_HTTP_RETRY_DELAY": "1",
        # GDAL's block cache defaults to 5 % of RAM and fills as a large scene is
        # read tile by tile.  A fixed cap keeps memory flat whatever the scene
        # size; 256 MB holds a full row of blocks of a 3-band uint8 scene up to
        # ~170,000 px wide, so each block is decoded once even when it spans two
        # rows of tiles.  rasterio passes this to GDALSetCacheMax64: bytes.
        "GDAL_CACHEMAX": GDAL_CACHE_BYTES,
    }
    out = {k: v for k, v in defaults.items() if k not in os.environ}
    out[_OUR_MARK] = "1"
    return out


#: Real paths of folders whose rasters are read as GeoTIFF only (``serve --ingest-root``): a
#: client who can write a file there must not make the service read other files or URLs
#: through it (a VRT named ``.tif`` names any file or ``/vsicurl/`` URL; so can a sidecar
#: ``.ovr``/``.msk``, which GDAL opens with any driver).  Set by :func:`restrict_to_geotiff`.
_GEOTIFF_ONLY: tuple[str, ...] = ()


def restrict_to_geotiff(roots: Any) -> None:
    """Read every raster under ``roots`` (folders) with GDAL's GTiff driver alone and no
    sibling files, for the rest of this process (``serve --ingest-root``); ``()`` lifts it."""
    global _GEOTIFF_ONLY
    _GEOTIFF_ONLY = tuple(os.path.realpath(os.fspath(r)) for r in roots)


def _under_roots(path: str) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in _GEOTIFF_ONLY)


def geotiff_only(href: str) -> bool:
    """Whether ``href`` is a local file under a :func:`restrict_to_geotiff` root (symlinks resolved)."""
    if not _GEOTIFF_ONLY or _is_url(href):
        return False
    return _under_roots(os.path.realpath(href))


def links_out_of_roots(href: str) -> bool:
    """Whether ``href`` names a place under a :func:`restrict_to_geotiff` root that resolves (through
    a symbolic link) to a file outside every root: a link swapped in after ingest."""
    if not _GEOTIFF_ONLY or _is_url(href):
        return False
    named = os.path.abspath(href)
    if not _under_roots(named) and not _under_roots(os.path.join(os.path.realpath(os.path.dirname(named)),
                                                                  os.path.basename(named))):
        return False
    return not _under_roots(os.path.realpath(href))


#: The formats a raster named by a URL (or a GDAL virtual path) is opened as, GDAL driver names tried
#: in turn: formats that hold their own pixels.  A VRT, or another of GDAL's indirect formats (GTI,
#: WMS, STACIT, MRF...), names other files and URLs, which whoever serves it would choose: this
#: machine's own files read as pixels, requests into its network.
NETWORK_DRIVERS = ("GTiff", "JP2OpenJPEG", "PNG", "JPEG", "WEBP")
#: Words of GDAL's error when a driver does not take a file.
_NOT_RECOGNIZED = "not recognized"


def open_url(href: str) -> Any:
    """``rasterio.open(href)`` of a URL or GDAL virtual path as one of :data:`NETWORK_DRIVERS`
    (GeoTIFF/COG first).  Raises RasterioIOError "not recognized" for any other format (a VRT),
    and GDAL's own error for a request that fails."""
    with _gdal_errors() as said:
        for driver in NETWORK_DRIVERS:
            try:
                return rasterio.open(href, driver=driver)
            except rasterio.errors.RasterioIOError as err:
                # "does not exist in the file system, and is not recognized as a supported dataset name":
                # nothing there (or a failed request), whatever the driver: GDAL's own error
                if _NOT_RECOGNIZED not in str(err) or "does not exist" in str(err):
                    raise
    # GDAL's reason before its "not recognized" (a server that ignores HTTP ranges), when it gave one
    reason = next((m for m in said if _NOT_RECOGNIZED not in m), None)
    if reason is not None:
        raise rasterio.errors.RasterioIOError(f"{href} cannot be read over the network: {reason}")
    raise rasterio.errors.RasterioIOError(f"{href} not recognized as one of the formats a raster read over the "
                                          f"network is opened as ({', '.join(NETWORK_DRIVERS)})")


@contextlib.contextmanager
def _gdal_errors() -> Any:
    """A list that collects, while the block runs, the error messages GDAL signals in this thread
    (rasterio logs each at INFO on ``rasterio._env``; its exception keeps only the last one).  What
    the logger shows is unchanged: records under its level before are dropped by the filter."""
    said: list[str] = []
    me = threading.get_ident()
    env_log = logging.getLogger("rasterio._env")

    class _Collect(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.thread == me and record.msg == _GDAL_SIGNAL and isinstance(record.args, tuple):
                said.append(" ".join(str(record.args[-1]).split()))
            return record.levelno >= _GDAL_LOG_SHOWN[0]

    collect = _Collect()
    with _GDAL_LOG_LOCK:
        if _GDAL_LOG_SHOWN[1] == 0:
            _GDAL_LOG_SHOWN[0], _GDAL_LOG_SHOWN[2] = env_log.getEffectiveLevel(), env_log.level
            env_log.setLevel(min(logging.INFO, _GDAL_LOG_SHOWN[0]))
        _GDAL_LOG_SHOWN[1] += 1
        env_log.addFilter(collect)
    try:
        yield said
    finally:
        with _GDAL_LOG_LOCK:
            env_log.removeFilter(collect)
            _GDAL_LOG_SHOWN[1] -= 1
            if _GDAL_LOG_SHOWN[1] == 0:
                env_log.setLevel(_GDAL_LOG_SHOWN[2])


#: rasterio's log line for each error GDAL signals.
_GDAL_SIGNAL = "GDAL signalled an error: err_no=%r, msg=%r"
#: ``[level shown before, collectors active, level set before]`` of ``rasterio._env`` while
#: :func:`_gdal_errors` collects (under :data:`_GDAL_LOG_LOCK`).
_GDAL_LOG_SHOWN = [logging.WARNING, 0, logging.NOTSET]
_GDAL_LOG_LOCK = threading.Lock()


def open_dataset(href: str) -> Any:
    """``rasterio.open(href)`` for reading: a local file with its sidecar files (``.msk``,
    ``.aux.xml``, world files), a URL without a folder listing and as one of
    :data:`NETWORK_DRIVERS` only (:func:`open_url`); as GeoTIFF only without sidecars when
    :func:`geotiff_only` says so (RasterioIOError "not recognized" otherwise); RasterError for
    blocks over :func:`rsir_stac.tiling.blocks.limit_block_bytes`'s limit."""
    confined = open_under_roots(href)
    if confined is not None:
        return check_blocks(confined, href)
    if _is_url(href):
        return check_blocks(open_url(href), href)
    if "GDAL_DISABLE_READDIR_ON_OPEN" in os.environ:
        return check_blocks(rasterio.open(href), href)
    # a local file's sidecars are part of it: an external mask (.msk), nodata or a CRS in
    # .aux.xml, a world file; GDAL finds them only by listing the folder, which gdal_options
    # turns off for remote files (a listing is one more request per file)
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"):
        return check_blocks(rasterio.open(href), href)


_PROC_FD = "/proc/self/fd"
#: The attribute :func:`_open_confined` sets on a dataset it opened by descriptor: the path it was given.
_GIVEN_PATH = "rsir_given_path"


def shown_name(dataset: Any) -> str:
    """The name of an open ``dataset`` for messages: the path it was opened by.  A file under the
    ingest roots is opened by descriptor (:func:`_open_confined`), so its GDAL name (``dataset.name``)
    is a ``/proc/self/fd/N`` that says nothing to the user (and names another file once closed)."""
    return str(getattr(dataset, _GIVEN_PATH, None) or getattr(dataset, "name", None) or "raster")


def _unfd(text: str, fd_path: str, given: str) -> str:
    """``text``, a GDAL message about the file GDAL opened as ``fd_path`` (``/proc/self/fd/N``), naming
    it as GDAL names a file opened by its path ``given``: the whole path for the path, the file name
    for GDAL's last-component form (``N, band 1: IReadBlock failed ...``)."""
    text = text.replace(fd_path, given)
    return re.sub(rf"(?<![\w./-]){re.escape(os.path.basename(fd_path))}(?=, band \d)",
                  lambda _: os.path.basename(given), text)


def named_text(text: str, dataset: Any) -> str:
    """``text`` (a GDAL message about ``dataset``) naming the file by the path it was opened by
    (:func:`shown_name`), not the ``/proc/self/fd/N`` of a file opened under the ingest roots."""
    given = getattr(dataset, _GIVEN_PATH, None)
    return _unfd(text, str(dataset.name), given) if given else text


@contextlib.contextmanager
def named_reads(dataset: Any) -> Any:
    """Reads of ``dataset`` whose GDAL failures name it by the path it was opened by
    (:func:`named_text`), as :func:`read_error` and a direct run's messages do."""
    try:
        yield
    except (RasterioError, CPLE_BaseError) as err:
        text = _one_line(err.__cause__ or err)
        named = named_text(text, dataset)
        if named == text:
            raise
        raise rasterio.errors.RasterioIOError(named) from None


def open_under_roots(href: str) -> Any | None:
    """The dataset of ``href`` when it lies under a :func:`restrict_to_geotiff` root, opened as every
    read there is (GeoTIFF alone, the opened file checked: :func:`_open_confined`; a link out of
    the roots refused with RasterioIOError), or None when it lies under no root (nothing is
    restricted).  :func:`open_dataset` and the map's imagery readers (rio-tiler) both open through it."""
    if not _GEOTIFF_ONLY or _is_url(href):
        return None
    if links_out_of_roots(href):
        raise rasterio.errors.RasterioIOError(f"{href}: a link out of the service's ingest roots is not read")
    if geotiff_only(href):
        return _open_confined(href)
    return None


def _open_confined(href: str) -> Any:
    """Open a file under a :func:`restrict_to_geotiff` root as GeoTIFF alone, checking the file
    actually opened, not its name: the file is opened once (``O_NOFOLLOW``), the path the kernel
    holds for that open file is checked to lie under a root, and GDAL opens that same file
    through ``/proc/self/fd`` (Linux); the descriptor is closed with the dataset (when it is
    collected), so a read that reopens the dataset by its name reads this file.  A link swapped in between a check of the name and GDAL's
    own open cannot send the read elsewhere.  Elsewhere: the resolved path, opened as GeoTIFF."""
    real = os.path.realpath(href)
    env = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")
    if not os.path.isdir(_PROC_FD):
        with env:
            return rasterio.open(real, driver="GTiff")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise rasterio.errors.RasterioIOError(f"{href}: {exc.strerror}") from None
    kept = False
    try:
        held = os.readlink(f"{_PROC_FD}/{fd}")
        if not _under_roots(held):
            raise rasterio.errors.RasterioIOError(f"{href}: a link out of the service's ingest roots is not read")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise rasterio.errors.RasterioIOError(f"{href}: not a regular file")
        _note_sidecars(real)
        try:
            with env:
                ds = rasterio.open(f"{_PROC_FD}/{fd}", driver="GTiff")
        except rasterio.errors.RasterioIOError as err:  # GDAL's message names the descriptor
            raise rasterio.errors.RasterioIOError(_unfd(str(err), f"{_PROC_FD}/{fd}", href)) from err
        setattr(ds, _GIVEN_PATH, href)  # named in messages, not as /proc/self/fd/N (shown_name)
        # rasterio reopens a dataset by its name for a read past its edges (boundless, a VRT of
        # ``ds.name``): the descriptor stays this file's while the dataset lives, or its number, reused
        # by the next open, would send that read to another file (any driver, outside the roots)
        weakref.finalize(ds, os.close, fd)
        kept = True
        return ds
    finally:
        if not kept:
            os.close(fd)


#: Sibling files GDAL reads with a raster elsewhere (an external mask, nodata or CRS, overviews).
SIDECARS = (".msk", ".aux.xml", ".ovr")
_told_sidecars: set[str] = set()


def _note_sidecars(path: str) -> None:
    """Warn once per file when a raster read under the ingest roots (GeoTIFF alone, no sibling
    files: a sidecar may name files outside the roots) has sidecars it would be read with elsewhere:
    its tiles can differ from an ingest of the same file on the command line."""
    found = [s for s in SIDECARS if os.path.isfile(path + s)]
    if found and path not in _told_sidecars:
        _told_sidecars.add(path)
        log.warning("%s has %s beside it, which the service does not read under its ingest roots (GeoTIFF alone, no "
                    "sibling files); an external mask or nodata there is not applied: write them into a GeoTIFF of "
                    "its own (gdal_translate in.tif out.tif reads them with the file), or ingest it from the command "
                    "line", os.path.basename(path), ", ".join(os.path.basename(path) + s for s in found))


def gdal_env() -> Any:
    """A ``rasterio.Env`` with :func:`gdal_options`, entered around GDAL calls; a
    no-op inside one already entered (the ingest reader enters one per scene
    instead of one per tile)."""
    if rasterio.env.hasenv() and _OUR_MARK in rasterio.env.getenv():
        return contextlib.nullcontext()
    return rasterio.Env(**gdal_options())


#: Cloud storage schemes GDAL reads (rasterio's ``s3://`` ... and GDAL's ``/vsis3/`` ...)
#: and how to give it access.  Following the advice lets GDAL sign (or skip
#: signing) the request; then only the network or the object itself can fail.
CLOUD_ACCESS = {
    "s3": (("s3://", "/vsis3/", "/vsis3_streaming/"),
           "set AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), "
           "or AWS_NO_SIGN_REQUEST=YES for a public bucket"),
    "gs": (("gs://", "/vsigs/", "/vsigs_streaming/"),
           "set Google Cloud credentials (GOOGLE_APPLICATION_CREDENTIALS, or GS_ACCESS_KEY_ID and "
           "GS_SECRET_ACCESS_KEY), or GS_NO_SIGN_REQUEST=YES for a public bucket"),
    "az": (("az://", "azure://", "/vsiaz/", "/vsiadls/", "/vsiaz_streaming/"),
           "set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_ACCESS_KEY or AZURE_STORAGE_SAS_TOKEN (or "
           "AZURE_STORAGE_CONNECTION_STRING), or AZURE_STORAGE_ACCOUNT with AZURE_NO_SIGN_REQUEST=YES "
           "for a public container"),
    "oss": (("oss://", "/vsioss/"), "set OSS_ACCESS_KEY_ID, OSS_SECRET_ACCESS_KEY and OSS_ENDPOINT"),
}
_DENIED = ("configuration options not defined", "credentials", "none.blob.core.windows.net",
           "azure_storage", "invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "access denied",
           "authenticationfailed", "expiredtoken", "http response code: 403", "http response code: 401",
           "http error 403", "http error 401", "forbidden", "unauthorized", "oauth2", "access token")


def cloud_kind(href: str) -> str | None:
    """``"s3"``, ``"gs"``, ``"az"`` or ``"oss"`` for a cloud-storage href, else None."""
    low = href.lower()
    for kind, (prefixes, _) in CLOUD_ACCESS.items():
        if low.startswith(prefixes):
            return kind
    return None


def _fetch_error(href: str, err: BaseException) -> RsirError | None:
    """A one-line error for a remote href that GDAL could not fetch, or None when
    the failure is not about fetching (the bytes came but are not a raster).

    The message names the real cause and a fix: missing cloud credentials (with
    the variables to set, :data:`CLOUD_ACCESS`), access denied, not found,
    timeout, or the network.
    """
    if not _is_url(href):
        return None
    msg = _one_line(err)
    low = msg.lower()
    cloud = cloud_kind(href)
    if any(k in low for k in _DENIED):
        if cloud is not None:
            return SourceNotFoundError(
                f"{href} cannot be read without access to its {cloud}:// storage ({msg}); {CLOUD_ACCESS[cloud][1]}"
            )
        return SourceNotFoundError(
            f"{href} refused access ({msg}); the URL needs authorisation: sign it again (signed URLs expire) "
            "or pass credentials with GDAL_HTTP_HEADERS / GDAL_HTTP_USERPWD"
        )
    if "response code: 404" in low or "404 not found" in low or "response code: 410" in low \
            or "nosuchkey" in low or "nosuchbucket" in low or "blobnotfound" in low:
        return SourceNotFoundError(f"{href} does not exist ({msg}); check the URL")
    if "range downloading not supported" in low:
        return RasterError(f"{href} cannot be read over the network: its server does not answer HTTP range requests, "
                           "which GDAL reads parts of a file with (\"Range downloading not supported by this "
                           "server!\"); download the file and ingest the local copy, or serve it from a server "
                           "that answers them (web servers and object stores do; python -m http.server does not)")
    if "timed out" in low or "timeout" in low:
        return SourceNotFoundError(
            f"{href} timed out ({msg}); check the server, or allow more time with RSIR_HTTP_TIMEOUT=SECONDS"
        )
    if "curl error" in low or "http response code" in low or "http error" in low or "does not exist" in low:
        return SourceNotFoundError(f"{href} cannot be fetched ({msg}); check the URL and the network")
    return None


def read_error(href: str, err: BaseException, what: str, *, window: bool = False) -> RsirError:
    """A one-line error for a GDAL failure reading ``what`` (``"window ..."``, or
    ``"a decimated copy ..."``) of ``href``, naming the real cause: access,
    network, permissions, or corrupt data (for a window: re-run to retry a
    fetch, or re-download / skip it)."""
    detail = _one_line(err.__cause__ or err)
    fetch = _fetch_error(href, err)
    if fetch is not None:
        if window and "cannot be fetched" in str(fetch):
            return RasterError(f"{href}: {what} cannot be fetched ({detail}); "
                               "check the server, then re-run the same command to retry the window")
        return fetch
    if "permission denied" in detail.lower():
        return RasterError(f"{href}: {what} cannot be read (permission denied); give this user read access "
                           "to the file, e.g. chmod a+r")
    fix = "re-download it (ingest skips this window until then)" if window else "re-download it"
    return RasterError(f"{href}: {what} cannot be read ({detail}); the file may be corrupt or cut short, {fix}")


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words (``st_mode`` of ``os.stat``)."""
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _open_raster(href: str | os.PathLike[str]) -> Any:
    """Open ``href`` with rasterio, turning failures into one-line errors; a VRT whose local source
    files are missing is refused (:func:`check_vrt_sources`)."""
    return check_vrt_sources(_open_checked(os.fspath(href)), os.fspath(href))


def check_vrt_sources(ds: Any, href: str) -> Any:
    """``ds``, or (closed) an error naming the source files of a VRT that do not exist
    (SourceNotFoundError) or that GDAL cannot open (RasterError: a text or empty file, a missing
    ``/vsizip/`` member, a URL that answers 404).  GDAL opens such a mosaic, fails the first read of
    that part, and from then on returns zeros for it without an error, so its tiles would be indexed
    as black.  Every source is opened once, here (:func:`_vrt_source_faults`)."""
    if ds.driver != "VRT":
        return ds
    missing, unreadable = _vrt_source_faults(ds, 0)
    if missing:
        ds.close()
        shown = _some(os.path.basename(f) for f in missing)
        raise SourceNotFoundError(f"{href} is a VRT whose source file{'s' if len(missing) > 1 else ''} {shown} "
                                  f"{'do' if len(missing) > 1 else 'does'} not exist (looked for "
                                  f"{os.path.dirname(missing[0]) or '.'}); restore "
                                  f"{'them' if len(missing) > 1 else 'it'}, or rebuild the VRT over the files you "
                                  "have (gdalbuildvrt)")
    if unreadable:
        ds.close()
        (first, why), n = unreadable[0], len(unreadable)
        more = f" (and {n - 1} more source{'s' if n > 2 else ''})" if n > 1 else ""
        raise RasterError(f"{href} is a VRT whose source {first} cannot be opened ({why}){more}; its part would be "
                          "read as black: replace the source by a readable raster, or rebuild the VRT over the "
                          "files you have (gdalbuildvrt)")
    return ds


def _some(names: Any, shown: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


#: How many VRT sources are opened at once by :func:`_vrt_source_faults` (URLs wait on the network).
VRT_CHECKS_AT_ONCE = 8


def _vrt_source_faults(ds: Any, depth: int) -> tuple[list[str], list[tuple[str, str]]]:
    """The source files of VRT ``ds`` that do not exist (local paths) and those GDAL cannot open
    (path, GDAL's reason), looking into sources that are VRTs themselves (a mosaic of mosaics; at
    most 8 deep)."""
    from concurrent.futures import ThreadPoolExecutor

    files = _vrt_source_names(ds)
    missing = [f for f in files if _plain_path(f) and not os.path.exists(f)]
    present = [f for f in files if f not in missing]
    with ThreadPoolExecutor(max_workers=max(1, min(VRT_CHECKS_AT_ONCE, len(present)))) as pool:
        faults = list(pool.map(lambda f: _source_fault(f, depth), present))
    unreadable: list[tuple[str, str]] = []
    for inner_missing, inner_unreadable in faults:
        missing += inner_missing
        unreadable += inner_unreadable
    return missing, unreadable


def _source_fault(name: str, depth: int) -> tuple[list[str], list[tuple[str, str]]]:
    """What :func:`_vrt_source_faults` finds in one source ``name`` of a VRT: nothing when it opens
    (and, being a VRT, its own sources are sound), else ``name`` with GDAL's reason."""
    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(name) as sub:
                if sub.driver == "VRT" and depth < 8:
                    return _vrt_source_faults(sub, depth + 1)
    except (RasterioError, CPLE_BaseError) as err:
        return [], [(name, _one_line(err))]
    return [], []


def _open_checked(href: str) -> Any:
    """Open ``href`` with rasterio, turning failures into one-line errors."""
    if links_out_of_roots(href):
        raise RasterError(f"{href} is a link to a file outside the service's ingest roots; it is not read (replace "
                          "the link by the file, under a root)")
    if not _is_url(href):
        if not os.path.exists(href):
            raise SourceNotFoundError(f"{href} does not exist; check the path")
        if os.path.isdir(href):
            raise RasterError(f"{href} is a folder, not a raster; give a GeoTIFF/COG file")
        if not stat.S_ISREG(os.stat(href).st_mode):  # a named pipe would block the reader forever
            raise RasterError(f"{href} is not a regular file (a named pipe, device or socket); give a GeoTIFF/COG file")
    try:
        try:
            with gdal_env(), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return open_dataset(href)
        except (RasterioError, CPLE_BaseError) as err:
            cached_miss = "does not exist in the file system" in str(err)
            if not (href.lower().startswith(("http://", "https://")) and cached_miss):
                raise
            # GDAL remembers a failed URL for the whole process and then reports only "does not
            # exist": ask again without its cache, to retry and to learn the real cause
            with gdal_env(), rasterio.Env(CPL_VSIL_CURL_NON_CACHED=f"/vsicurl/{href}"), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return check_blocks(open_url(href), href)
    except (RasterioError, CPLE_BaseError) as err:
        fetch = _fetch_error(href, err)
        if fetch is not None:
            raise fetch from err
        detail = _one_line(err)
        if "permission denied" in detail.lower():
            raise RasterError(f"{href} cannot be read (permission denied); give this user read access "
                              "to the file, e.g. chmod a+r") from err
        if _is_url(href) and _NOT_RECOGNIZED in detail:
            raise RasterError(f"{href} is not a GeoTIFF/COG, JPEG 2000, PNG, JPEG or WebP, the formats a raster read "
                              "over the network is opened as (a VRT or another indirect format names other files "
                              "and URLs, chosen by whoever serves it); convert it, e.g. gdal_translate -of COG "
                              "in.vrt out.tif, or download it and ingest the local file") from err
        if geotiff_only(href):
            raise RasterError(f"{href} is not a GeoTIFF: files under the service's ingest roots are read as "
                              "GeoTIFF/COG only (a VRT or another format may name files outside them); convert "
                              "it, e.g. gdal_translate -of COG in.vrt out.tif") from err
        raise RasterError(
            f"{href} is not a raster GDAL can read ({detail}); give a GeoTIFF/COG (or another format "
            "`gdalinfo` opens), or re-download it if it was cut short"
        ) from err


__all__ = ["CLOUD_ACCESS", "GDAL_CACHE_BYTES", "HTTP_TIMEOUT", "cloud_kind", "gdal_env", "gdal_options", "named_reads",
           "named_text", "read_error", "shown_name"]
