"""Where sources are and what they hold: hrefs made absolute (local paths, ``file://``,
URLs, cloud-storage and GDAL virtual-file hrefs), documents fetched over HTTP with a timeout
and one-line errors, and content sniffed (TIFF magic bytes, JSON, anything GDAL opens)."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Any

import pystac
import pystac.stac_io

from rsir_stac.errors import InputError, SourceNotFoundError, StacError

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_URL_SCHEMES = ("http", "https")
_FIX = "pass a STAC Item/Collection/Catalog/ItemCollection JSON or a GeoTIFF/COG"


def _is_url(href: str) -> bool:
    return urllib.parse.urlsplit(href).scheme.lower() in _URL_SCHEMES


_CLOUD_PREFIXES = ("s3://", "gs://", "az://", "azure://", "oss://", "/vsi")


def _is_cloud(href: str) -> bool:
    """A cloud-storage or GDAL virtual-file href, read by GDAL only."""
    return href.lower().startswith(_CLOUD_PREFIXES)


#: The hrefs a catalogue read over the network may name (its links and its assets): network
#: locations.  A local path, a ``file:`` URL or a raw GDAL path (``/vsi...``) in a document someone
#: else serves would make this machine read its own files (a credentials file read as pixels,
#: stored and served as tiles).
NETWORK_SCHEMES = ("http", "https", "s3", "gs", "az", "azure", "oss")


def network_href(href: str) -> bool:
    """Whether ``href`` (absolute) names a network location (:data:`NETWORK_SCHEMES`), not a local
    file, a ``file:`` URL or a raw GDAL virtual path."""
    parts = urllib.parse.urlsplit(href)
    return parts.scheme.lower() in NETWORK_SCHEMES and bool(parts.netloc)  # "http:/x" is a relative path


#: The end of a refusal of a local href in a catalogue read over the network.
LOCAL_IN_REMOTE_FIX = ("a catalogue read over the network may name only network locations (http(s)://, s3://, "
                       "gs://, az://), not files on this machine; if you trust it, download the catalogue and "
                       "ingest the local copy")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _resolve(href: str, base: str | None) -> str:
    """``href`` made absolute against the document at ``base``."""
    if _is_cloud(href):
        return href
    parts = urllib.parse.urlsplit(href)
    if parts.scheme == "file":
        return os.path.normpath(urllib.parse.unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # URL (a 1-letter scheme is a drive)
        return href
    if base is not None and _is_url(base) and len(parts.scheme) == 1:
        return href  # a drive letter (C:/x) in a document read over the network: refused as local
    if base is not None and _is_url(base) and not parts.scheme:
        # a reference in a document read over the network is a URL reference (RFC 3986 5.2): "/x" is
        # the same host's path, "//host/x" another host by the same scheme; never a local file
        return urllib.parse.urljoin(base, href)
    if os.path.isabs(href):
        return _decoded_if_missing(os.path.normpath(href))
    if base is None:
        return _decoded_if_missing(os.path.abspath(href))
    base_path = _resolve(base, None)
    return _decoded_if_missing(os.path.normpath(os.path.join(os.path.dirname(base_path), href)))


def _decoded_if_missing(path: str) -> str:
    """``path``, or its percent-decoded form when only that exists: a STAC href is a URI
    reference (RFC 3986), so ``my%20scene.tif`` names ``my scene.tif``; a file really named
    with ``%20`` is kept."""
    if "%" not in path or os.path.exists(path):
        return path
    decoded = urllib.parse.unquote(path)
    return decoded if os.path.exists(decoded) else path


def http_timeout() -> float:
    """Seconds to wait on one HTTP request: ``$RSIR_HTTP_TIMEOUT`` or 30."""
    text = os.environ.get("RSIR_HTTP_TIMEOUT") or "30"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"RSIR_HTTP_TIMEOUT={text!r} is invalid; give a positive number of seconds")
    return value


def _fetch(url: str, limit: int | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "rsir-stac"})
    timeout = http_timeout()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user-given URL
            return response.read(limit) if limit else response.read()
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise SourceNotFoundError(f"{url} does not exist (HTTP {err.code}); check the URL") from err
        raise SourceNotFoundError(f"{url} cannot be fetched (HTTP {err.code}); check the URL and the server") from err
    except (TimeoutError, socket.timeout) as err:
        raise SourceNotFoundError(
            f"{url} timed out after {timeout:g} s; check the server, or allow more time with RSIR_HTTP_TIMEOUT=SECONDS"
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise SourceNotFoundError(
                f"{url} timed out after {timeout:g} s; check the server, or allow more time with RSIR_HTTP_TIMEOUT=SECONDS"
            ) from err
        raise SourceNotFoundError(f"{url} cannot be fetched ({_one_line(err)}); check the URL and the network") from err


class _StacIO(pystac.stac_io.DefaultStacIO):
    """pystac I/O whose HTTP reads time out and fail with one-line errors, and whose items may
    hold a leap second (:func:`rsir_stac.stac.leapseconds.read_leap_seconds`).  ``remote``: the
    catalogue was read over the network, so no document it links to is read from this machine
    (pystac resolves a link written as an absolute path, ``/dev/zero``, to that local file)."""

    def __init__(self, *args: Any, remote: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote = remote

    def stac_object_from_dict(self, d, href=None, root=None, preserve_dict=True):
        from rsir_stac.stac.leapseconds import read_leap_seconds

        return super().stac_object_from_dict(read_leap_seconds(d), href=href, root=root,
                                             preserve_dict=preserve_dict)

    def read_text_from_href(self, href: str) -> str:
        if self.remote and not _is_url(href):
            raise StacError(f"{href} is not read: {LOCAL_IN_REMOTE_FIX}")
        if _is_url(href):
            raw = _fetch(href)
            try:
                return raw.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                raise StacError(f"{href} is not UTF-8 text; {_FIX}") from err
        return super().read_text_from_href(href)


def _parse_json(raw: bytes, src: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise StacError(f"{src} is not UTF-8 text; {_FIX}") from err
    except json.JSONDecodeError as err:
        raise StacError(f"{src} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); fix the file or {_FIX}") from err
    except RecursionError as err:
        raise StacError(f"{src} is JSON nested too deeply for any STAC document; fix the file or {_FIX}") from err
    except ValueError as err:  # Python's 4,300-digit limit on an integer (CVE-2020-10735)
        raise StacError(f"{src} holds a number with more than 4,300 digits, which no STAC field has; fix the file "
                        f"or {_FIX}") from err


def _looks_like_json(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text[:1] in (b"{", b"[")


def _rasterio_opens(path: str) -> bool:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path):
                return True
    except RasterioError:
        return False
