"""Browser-side and request-level protection of the HTTP service (ASGI middleware, no web framework).

``rsir-stac serve`` usually runs on a laptop, bound to 127.0.0.1, while the
same user browses the web.  Any page the browser shows can send requests to
``http://127.0.0.1:8000/`` (cross-site POSTs, images) and, through DNS
rebinding, even read the answers under its own host name.  The usual
practice of local developer servers (Jupyter's ``allow_remote_access`` /
``local_hostnames`` and its origin check) is followed here:

* **Host allow-list.**  A request whose ``Host`` header is not an allowed
  name is refused with 403 (the page, the docs and the API alike).  The
  default is the loopback names plus the bound address; ``--allow-host``
  adds names, ``--allow-host '*'`` turns the check off (the names and their matching:
  :mod:`rsir_stac.allowed_hosts`).
* **Origin check.**  A request that is not ``GET``/``HEAD``/``OPTIONS``, or
  is an API ``GET``/``HEAD`` other than a map imagery tile (a page elsewhere could not
  read the answer, but could spend the service's CPU blind, or learn from a stored
  tile's 200 or 404 whether a public scene is indexed), and
  comes from another origin (``Origin`` header other than this service, or
  ``Sec-Fetch-Site: cross-site``) is refused with 403, unless the origin was
  allowed with ``--allow-origin`` (which also turns CORS on for it).  Allowed
  origins are checked and normalised once (:func:`check_origins`:
  ``scheme://host[:port]``, lower case, no path, default port dropped), and the
  same values serve the origin check and CORS; ``null`` (any sandboxed iframe or
  ``data:`` page sends it), ``*`` and anything that is not an http(s) origin are
  refused (:class:`OriginSettingError`).
* **Headers.**  Every response carries ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and a
  ``Content-Security-Policy`` (``frame-ancestors 'none'``; the page may load
  only its own scripts, styles, images and API).
* **API key.**  With a service key set, ``/api/*`` needs it in the
  ``X-API-Key`` header (given once: a repeated header is refused); image URLs (``GET /api/imagery/...png`` and
  ``/api/tiles/...png``) may carry it as one ``api_key`` query parameter
  instead, for clients that cannot set a header (a GIS XYZ layer); the access log
  replaces the value of every query parameter named like a key, token, secret or
  password with ``***`` and cuts logged URLs to
  :data:`rsir_stac.redact.LOG_PATH_CHARS` characters (:class:`rsir_stac.redact.RedactKeyFilter`), and ``Referrer-Policy: no-referrer`` keeps it out of
  other sites' logs.
* **Body limit.**  ``Content-Length`` over the limit is answered 413 before
  any byte of the body is read; a chunked body is cut off when it passes
  the limit.
* **Methods.**  ``OPTIONS`` lists every method of a path in ``Allow`` and a
  wrong method gets 405 with the full list.

Errors are JSON objects ``{"detail": one line, "error": name}``, the error
schema of the whole API.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable

from rsir_stac.allowed_hosts import (LOCAL_ADDRESS, LOCAL_HOSTS, default_allowed_hosts, host_allowed, host_name,
                                     is_local_address, is_loopback)
from rsir_stac.errors import InputError

log = logging.getLogger(__name__)

#: Methods that cannot change state (no origin check).
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Content-Security-Policy of the page and the static files.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Content-Security-Policy of API responses (JSON and PNG: nothing to run).
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


#: API paths whose images may carry the service key as ``?api_key=`` (imagery and stored tiles).
_IMAGE_PATH = re.compile(r"^/api/(imagery/\d+/\d+/\d+|tiles/[^/]+)\.png$")
#: The images other sites' maps may load (a web map on another origin showing this service's
#: imagery layer).  A stored tile (``/api/tiles/ID.png``) is not one of them: it is the page's own,
#: a read of a whole source tile, and its 200 or 404 would tell any site whether a public scene is
#: in this index (point ids are derived from public facts).
_OPEN_IMAGE_PATH = re.compile(r"^/api/imagery/\d+/\d+/\d+\.png$")


class OriginSettingError(InputError):
    """An ``--allow-origin`` value that is not one exact web origin (``null``, ``*``, no
    scheme, a path, another scheme than http/https)."""


#: The port a browser leaves out of an origin, by scheme.
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?$")
_ORIGIN_EXAMPLE = "https://app.example.org"


def normalise_origin(value: str) -> str:
    """``value`` as the one serialisation a browser sends in ``Origin``:
    ``scheme://host[:port]`` with scheme and host in lower case, the scheme's default
    port left out, no path or trailing slash; OriginSettingError (one line: the value,
    why, what to give instead) for ``null``, ``*`` and anything that is not an http(s)
    origin."""
    from urllib.parse import urlsplit

    v = str(value).strip()
    opt = f"--allow-origin {value!r}"
    if v.lower() == "null":
        raise OriginSettingError(f"{opt} is refused: every web page can send Origin: null (a sandboxed iframe, "
                                 f"a data: URL), so it would let any site drive this service; give the exact "
                                 f"origin of the site that may, e.g. {_ORIGIN_EXAMPLE}")
    if v == "*":
        raise OriginSettingError(f"{opt} is refused: it would let any web site drive this service and read its "
                                 f"answers; give the exact origin of each site that may (repeatable), e.g. "
                                 f"{_ORIGIN_EXAMPLE}")
    bad = (f"{opt} is not a web origin (http:// or https://, a host, an optional port, no path); give e.g. "
           f"{_ORIGIN_EXAMPLE}")
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        raise OriginSettingError(bad) from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "?" in v or "#" in v:
        raise OriginSettingError(bad)
    if ":" in host:  # an IPv6 literal
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise OriginSettingError(bad) from None
    else:
        try:
            host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
        except UnicodeError:
            raise OriginSettingError(bad) from None
        if not _HOST_NAME.match(host):
            raise OriginSettingError(bad)
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


#: Characters that end or split a CSP source expression (``;`` starts a new directive, ``,`` a new
#: policy, whitespace a new source) or quote one: never in a value that goes into the policy.
_CSP_BREAKERS = re.compile(r"[;,'\"\s\\]")
#: One CSP source as the page's policy takes it: ``scheme://host[:port]``, the host optionally ``*.``-prefixed.
_CSP_SOURCE = re.compile(r"^https?://(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])(?::\d{1,5})?$")


def check_csp_source(url: str, option: str, *, example: str) -> str:
    """The origin (``scheme://host[:port]``) of an operator's URL (or XYZ template, whose leading
    ``{s}.`` subdomain becomes ``*.``) that goes into the page's Content-Security-Policy;
    InputError naming ``option``, the reason and ``example`` when it is not one plain http(s)
    origin: a character that breaks a CSP source in its scheme, host or port (``;`` would add
    directives such as ``frame-ancestors *``; ``,``, quotes), whitespace anywhere, a user part, a wildcard or empty host, a
    port outside 1-65535."""
    from urllib.parse import urlsplit

    v = str(url)

    def bad(why: str) -> InputError:
        return InputError(f"{option} {v!r} {why}; give an http(s) URL of one host, e.g. {example}")

    head = v.split("/", 3)[:3]  # scheme:, "", host[:port]: what goes into the policy
    breaker = next((c for c in "/".join(head) if _CSP_BREAKERS.match(c)), None) \
        or next((c for c in v if c.isspace() or ord(c) < 32 or ord(c) == 127), None)
    if breaker is not None:
        raise bad(f"holds {breaker!r}, which would change the page's Content-Security-Policy")
    sub = v.split("://", 1)[-1].startswith("{s}.")
    try:
        parts = urlsplit(v.replace("://{s}.", "://sub.", 1) if sub else v)
        port = parts.port
    except ValueError:
        raise bad("has no valid port (1-65535)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise bad("is not an http(s) URL")
    host = parts.hostname or ""
    if "@" in parts.netloc:
        raise bad("has a user part (user@host)")
    if not host or "*" in host or "{" in host or "}" in host:
        raise bad("has no single host name (a wildcard or template in the host is not one)")
    if port is not None and not 1 <= port <= 65535 or (port is None and parts.netloc.endswith(":")):
        raise bad("has no valid port (1-65535)")
    netloc = parts.netloc.lower()
    if sub:
        netloc = "*." + netloc[len("sub."):]
    origin = f"{parts.scheme.lower()}://{netloc}"
    if not _CSP_SOURCE.match(origin):
        raise bad("has no valid host name")
    return origin


def check_csp_sources(values: Iterable[str]) -> tuple[str, ...]:
    """CSP image sources given to :class:`Guard` (``scheme://host[:port]``, ``*.`` subdomains allowed):
    each checked (InputError for anything else, such as ``;`` that would add directives)."""
    out = []
    for src in values:
        if not _CSP_SOURCE.match(str(src)):
            raise InputError(f"CSP image source {str(src)!r} is not scheme://host[:port] (http or https, one "
                             "host, no ';', ',', spaces or quotes); give e.g. https://tiles.example.org")
        out.append(str(src))
    return tuple(out)


def check_origins(values: Iterable[str]) -> tuple[str, ...]:
    """Each of ``values`` through :func:`normalise_origin` (duplicates dropped, order kept)."""
    return tuple(dict.fromkeys(normalise_origin(v) for v in values))


def _request_origin(value: str) -> str:
    """An ``Origin`` header as :func:`normalise_origin` writes it (``null`` and other values that are
    not an http(s) origin: lower case, as sent)."""
    try:
        return normalise_origin(value)
    except OriginSettingError:
        return value.strip().lower()


def script_hashes_csp(html: str) -> str:
    """:data:`PAGE_CSP` allowing exactly the inline scripts of ``html`` (by SHA-256), for generated pages."""
    import base64

    hashes = []
    for body in re.findall(r"<script>(.*?)</script>", html, flags=re.S):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return PAGE_CSP.replace("script-src 'self'", "script-src 'self' " + " ".join(hashes))


class Guard:
    """ASGI middleware applying the rules of this module, outermost on the app.

    ``allowed_hosts`` None means :data:`LOCAL_HOSTS`; ``allowed_origins``
    lists extra origins (``scheme://host[:port]``, checked and normalised by
    :func:`check_origins`) allowed to send state-changing requests; ``api_key``
    None turns the key check off;
    ``max_body`` is the request body limit in bytes for ``/api/*``;
    ``img_sources`` are CSP sources the page may load images from besides
    itself (e.g. the origin of an online basemap).
    """

    def __init__(self, app, *, api_key: str | None, max_body: int, allowed_hosts: Iterable[str] | None = None,
                 allowed_origins: Iterable[str] = (), img_sources: Iterable[str] = ()) -> None:
        self.app, self.max_body = app, max_body
        extra = " ".join(check_csp_sources(img_sources))
        self.page_csp = PAGE_CSP.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {extra}"
                                         ) if extra else PAGE_CSP
        self.api_key = api_key.encode() if api_key else None
        self.allowed_hosts = tuple(allowed_hosts) if allowed_hosts is not None else LOCAL_HOSTS
        self.allowed_origins = check_origins(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, method = scope["path"], scope["method"]
        send = self._with_headers(send, API_CSP if path.startswith("/api/") else self.page_csp)
        host = headers.get("host")
        if host is None and "*" not in self.allowed_hosts:
            # HTTP/1.0 without Host: the allow-list cannot be checked, so it cannot pass
            return await _error(scope, receive, send, 400, "MissingHost",
                                "the request has no Host header, which this service checks (DNS rebinding "
                                "protection); send one (HTTP/1.1 clients always do), e.g. Host: 127.0.0.1")
        if host is not None and not host_allowed(host_name(host), self.allowed_hosts) \
                and not (LOCAL_ADDRESS in self.allowed_hosts and is_local_address(host_name(host), scope)):
            return await _error(scope, receive, send, 403, "HostNotAllowed",
                                f"Host {host_name(host)!r} is not allowed (DNS rebinding protection); open the "
                                "service by an allowed name, or start serve with --allow-host NAME")
        if method not in SAFE_METHODS and not self._same_origin(scope, headers):
            origin = headers.get("origin") or headers.get("sec-fetch-site", "")
            return await _error(scope, receive, send, 403, "OriginNotAllowed",
                                f"cross-origin {method} from {origin!r} is refused; start serve with "
                                "--allow-origin ORIGIN to allow that site")
        if method in ("GET", "HEAD") and path.startswith("/api/") and not _OPEN_IMAGE_PATH.match(path) \
                and not self._same_origin(scope, headers):
            # another site's page cannot read the answer (no CORS), but could still spend the
            # service's CPU blind (<img src=/api/search?...>); the imagery stays open to other maps
            origin = headers.get("origin") or headers.get("sec-fetch-site", "")
            return await _error(scope, receive, send, 403, "OriginNotAllowed",
                                f"cross-origin {method} of {path} from {origin!r} is refused; start serve "
                                "with --allow-origin ORIGIN to allow that site")
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if not (preflight and self.allowed_origins):
            methods = _route_methods(scope)
            if methods and method == "OPTIONS":
                return await _plain(scope, receive, send, 204, {"Allow": ", ".join(methods)})
            if methods and method not in methods:
                return await _error(scope, receive, send, 405, "MethodNotAllowed",
                                    f"{method} is not allowed on {path}; use {', '.join(methods)}",
                                    {"Allow": ", ".join(methods)})
        if not path.startswith("/api/"):
            return await self.app(scope, receive, send)
        if self.api_key is not None and not preflight and _key_headers(scope) > 1:
            # a repeated header has no single value (the last would win here, the first elsewhere)
            return await _error(scope, receive, send, 401, "Unauthorized",
                                "the X-API-Key header is given more than once; send it once",
                                {"WWW-Authenticate": "X-API-Key"})
        if self.api_key is not None and not preflight and not self._authorised(scope, headers):
            return await _error(scope, receive, send, 401, "Unauthorized",
                                "missing or wrong API key; send it in the X-API-Key header",
                                {"WWW-Authenticate": "X-API-Key"})
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            # answered before the body is read; the connection is closed so the client stops sending
            return await _error(scope, receive, send, 413, "RequestTooLarge",
                                f"request body of {int(length)} bytes is over the {self.max_body} byte limit; "
                                "upload a smaller file", {"Connection": "close"})
        return await self.app(scope, self._limited(receive), send)

    def _limited(self, receive):
        received, limit = 0, self.max_body

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    from starlette.exceptions import HTTPException

                    raise HTTPException(413, f"request body is over the {limit} byte limit; upload a smaller file")
            return message

        return limited_receive

    def _same_origin(self, scope, headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            # no Origin: not a browser form/fetch, unless the browser says it is from another origin.
            # "same-site" is another origin too: a page on another port of this host (a notebook at
            # 127.0.0.1:8888) is same-site with the service, and could make it run API GETs blind
            return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
        origin = _request_origin(origin)
        if origin in self.allowed_origins:
            return True
        scheme = scope.get("scheme", "http")
        return origin == f"{scheme}://{headers.get('host', '').lower()}"

    def _authorised(self, scope, headers) -> bool:
        header = headers.get("x-api-key")
        given = None if header is None else header.encode("latin-1")  # the header's own bytes (a UTF-8 key's)
        if given is None and scope["method"] in ("GET", "HEAD") and _IMAGE_PATH.match(scope["path"]):
            # the query form is for images only (an <img> or a GIS client's XYZ layer cannot set a
            # header), so a key in a URL cannot reach the rest of the API; given twice, it is refused
            # only the literal name api_key: a spelling the access log might not recognise
            # (api%5Fkey, %61pi_key) never opens anything; given twice, it is refused
            from urllib.parse import unquote_to_bytes

            # percent-escapes decoded to bytes (a non-ASCII key is sent as its UTF-8 bytes, %D0%BA...)
            vals = [unquote_to_bytes(pair.partition(b"=")[2].replace(b"+", b" ")) for pair in
                    scope.get("query_string", b"").split(b"&") if pair.partition(b"=")[0] == b"api_key"]
            given = vals[0] if len(vals) == 1 else None
        return given is not None and hmac.compare_digest(given, self.api_key)

    @staticmethod
    def _with_headers(send, csp: str):
        extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                 (b"referrer-policy", b"no-referrer")]

        async def wrapped(message):
            if message["type"] == "http.response.start":
                hdrs = list(message.get("headers", []))
                names = {k.lower() for k, _ in hdrs}
                hdrs += [(k, v) for k, v in extra if k not in names]
                if b"content-security-policy" not in names:
                    hdrs.append((b"content-security-policy", csp.encode()))
                message = {**message, "headers": hdrs}
            await send(message)

        return wrapped


def _key_headers(scope) -> int:
    """How many ``X-API-Key`` headers the request carries."""
    return sum(1 for k, _ in scope.get("headers", []) if k.lower() == b"x-api-key")


def _route_methods(scope) -> list[str]:
    """Every method the app's routes accept on ``scope``'s path (sorted, with OPTIONS), or [] for no route."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    if not routes:
        return []
    from starlette.routing import Match

    methods: set[str] = set()
    if not _collect_methods(routes, {**scope, "method": "GET"}, methods, Match):
        return []  # a route whose methods cannot be known: let the app answer
    return sorted(methods | {"OPTIONS"}) if methods else []


def _collect_methods(routes, scope, methods: set[str], Match) -> bool:
    """Add the methods of every route matching ``scope``'s path; False when one cannot be known.

    Routers included with ``include_router`` appear in newer FastAPI versions as one
    wrapper route (``_IncludedRouter``) whose own routes carry the methods.
    """
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.NONE:
            continue
        route_methods = getattr(route, "methods", None)
        if route_methods:
            methods |= set(route_methods)
            continue
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        prefix = getattr(getattr(route, "include_context", None), "prefix", "")
        if inner is not None and not prefix:
            if not _collect_methods(inner, scope, methods, Match):
                return False
        elif inner is not None or hasattr(route, "routes"):
            return False  # a mount or prefixed router: its methods are its own business
        else:
            methods |= {"GET", "HEAD"}
    return True


async def _error(scope, receive, send, status: int, name: str, detail: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    resp = JSONResponse({"detail": detail, "error": name}, status_code=status, headers=headers)
    await resp(scope, receive, send)


async def _plain(scope, receive, send, status: int, headers: dict):
    from starlette.responses import Response

    await Response(status_code=status, headers=headers)(scope, receive, send)


__all__ = [
    "API_CSP",
    "Guard",
    "LOCAL_HOSTS",
    "OriginSettingError",
    "PAGE_CSP",
    "check_origins",
    "default_allowed_hosts",
    "host_allowed",
    "host_name",
    "is_loopback",
    "normalise_origin",
    "script_hashes_csp",
]
