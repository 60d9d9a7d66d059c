"""HTTP search service and map page: ``rsir-stac serve``.

One process opens the index once (the embedded Qdrant Edge index is locked
exclusively by its owner) and every request shares that :class:`Index`;
two ``threading.Lock`` objects serialise store access and model forward
passes because FastAPI runs the synchronous endpoints in a thread pool.
Run it with one worker process.

Endpoints (JSON; OpenAPI at ``/docs`` and ``/openapi.json``), one router module each in
:mod:`rsir_stac.api`, sharing one :class:`rsir_stac.api.service.Service`:

* ``api/stored``    ``GET /api/info`` (summary), ``GET /api/tiles/{point_id}.png`` (a stored tile)
* ``api/search``    ``GET``/``POST /api/search`` (point id or lon/lat), ``POST /api/search/image`` (upload)
* ``api/tiles``     ``GET /api/scenes``, ``GET /api/imagery/{z}/{x}/{y}.png`` (the web map)
* ``api/query``     ``POST /api/query`` (several examples, JSON or multipart with images)
* ``api/export``    ``POST /api/query/export`` (the same query as a file)
* ``api/labels``    ``POST /api/labels``; ``api/classify``: ``POST /api/classify``
* ``api/jobs``      ``POST /api/ingest/jobs``: ingest files under ``--ingest-root``
* ``GET /``         the map page (``rsir_stac/web/``), ``/docs``, ``/static/``

:func:`create_app` only sets the app up (error handlers, routers, page, middleware).
No endpoint takes a filesystem path: tiles are addressed by point id and
uploads are decoded from memory, only as PNG/JPEG/WebP/TIFF, within pixel,
decoded-byte and concurrency limits (:mod:`rsir_stac.upload`).  Host
allow-list, origin check, security headers, the API key (``X-API-Key``
header, given once, or ``?api_key=`` for tile images; ``api_key=``, ``key=`` and any parameter named
like a key, token, secret or password redacted from the access log by decoded name, logged URLs cut
to 512 characters), ``--allow-origin`` values (normalised once; ``null`` and ``*`` refused) and
the body limit are enforced by :class:`rsir_stac.httpguard.Guard`; every
error is one JSON schema (:mod:`rsir_stac.apierrors`).  See the security
section of docs/RELIABILITY.md.

FastAPI, uvicorn and Pillow are imported only when an app is built, so
importing this module (for the ``serve`` click command) stays cheap.  This
module deliberately does not use postponed annotations: FastAPI resolves the
endpoint annotations at definition time, inside :func:`create_app`.
"""

import logging
from pathlib import Path
from typing import Sequence

import click

from rsir_stac.api.params import MAX_K, UUID_PATTERN, build_filter, check_k, parse_polygon  # noqa: F401 (API)
from rsir_stac.api.jobs import MAX_JOB_TILES
from rsir_stac.api.service import INFO_TTL_S, MAX_QUERIES, THUMB_CACHE_BYTES  # noqa: F401 (API)
from rsir_stac.errors import InputError, RsirError

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
#: Extra body bytes allowed on top of ``max_upload_bytes`` for multipart framing and form fields.
FORM_OVERHEAD_BYTES = 64 * 1024


def http_status(exc: BaseException) -> int:
    """HTTP status for a library error (see :mod:`rsir_stac.apierrors`)."""
    from rsir_stac.apierrors import http_status as status

    return status(exc)


# --------------------------------------------------------------------------- app


def create_app(index, *, api_key: str | None = None, max_upload_bytes: int = 10_000_000,
               max_image_pixels: int = 4096 * 4096, max_decoded_bytes: int = 64 * 1024 * 1024,
               max_decodes: int = 2, allowed_hosts: Sequence[str] | None = None,
               allowed_origins: Sequence[str] = (), hide_paths: bool = False,
               csp_img_sources: Sequence[str] = (), thumb_cache_bytes: int = THUMB_CACHE_BYTES,
               basemap: str | None = None, tile_cache_bytes: int | None = None, ingest_roots: Sequence[str] = (),
               max_queries: int = MAX_QUERIES, max_job_tiles: int = MAX_JOB_TILES):
    """The FastAPI app serving ``index`` (an open :class:`rsir_stac.search.Index`).

    The caller owns ``index`` (and closes it after the server stops).
    Uploads are decoded by :func:`rsir_stac.upload.decode_upload` within
    ``max_upload_bytes`` (body), ``max_image_pixels`` and ``max_decoded_bytes``
    (413 beyond), at most ``max_decodes`` requests at a time (429 beyond).
    ``allowed_hosts`` (default: loopback names), ``allowed_origins`` and
    ``api_key`` are enforced by :class:`rsir_stac.httpguard.Guard`; ``allowed_origins``
    are checked and normalised once (:func:`rsir_stac.httpguard.check_origins`: ``null``,
    ``*`` and malformed values raise OriginSettingError) and the same values serve the
    origin check and CORS;
    ``hide_paths`` cuts server paths in hrefs and error messages to file names;
    ``csp_img_sources`` lets the page load images from more origins (CSP).
    ``basemap``: an optional XYZ tile URL template (``https://host/{z}/{x}/{y}.png``) the map
    page draws under the imagery (its origin is added to the page's image sources);
    ``tile_cache_bytes``: the budget of rendered web-map tiles kept in memory (default
    :data:`rsir_stac.maptiles.CACHE_BYTES`); ``ingest_roots``: folders ingest jobs may read
    (:mod:`rsir_stac.api.jobs`; none: jobs are refused), ``max_job_tiles`` the most tiles one job
    may make (413 beyond); ``max_queries``: multi-example queries, exports and classifications
    served at a time (429 beyond).  The routers live in :mod:`rsir_stac.api`,
    one module per thing served, each built from the shared :class:`rsir_stac.api.service.Service`.
    """
    from fastapi import Depends

    from rsir_stac.api.service import Service
    from rsir_stac.api.strict import strict_fields
    from rsir_stac.apierrors import document_errors, install_handlers
    from rsir_stac.httpguard import check_csp_sources, check_origins
    from rsir_stac.upload import UploadLimits

    allowed_origins = check_origins(allowed_origins)
    img_sources = check_csp_sources(tuple(csp_img_sources) + ((_origin(basemap),) if basemap else ()))

    # every operation refuses fields it does not take (a misspelt filter would filter nothing), but
    # image URLs (api.strict skips *.png): map clients add parameters of their own
    svc = Service(index, dependencies=_key_scheme(api_key) + [Depends(strict_fields())],
                  max_upload_bytes=max_upload_bytes,
                  limits=UploadLimits(max_pixels=max_image_pixels, max_decoded_bytes=max_decoded_bytes),
                  max_decodes=max_decodes, hide_paths=hide_paths, basemap=basemap,
                  thumb_cache_bytes=thumb_cache_bytes, tile_cache_bytes=tile_cache_bytes, max_queries=max_queries)
    app = _new_app(svc)
    install_handlers(app, hide_paths=hide_paths)
    _include_routers(app, svc, tile_cache_bytes=tile_cache_bytes, ingest_roots=ingest_roots,
                     hide_paths=hide_paths, max_job_tiles=max_job_tiles)
    _add_page(app)
    _add_middleware(app, api_key=api_key, max_body=max_upload_bytes + FORM_OVERHEAD_BYTES,
                    allowed_hosts=allowed_hosts, allowed_origins=allowed_origins,
                    img_sources=img_sources)
    # last: also documents operations of routers included above
    document_errors(app, (401, 403, 405, 422, 500) if api_key else (403, 405, 422, 500))
    return app


def _include_routers(app, svc, *, tile_cache_bytes: int | None, ingest_roots: Sequence[str], hide_paths: bool,
                     max_job_tiles: int) -> None:
    """Include the routers of :mod:`rsir_stac.api`, each built from ``svc`` (the shared
    :class:`rsir_stac.api.service.Service`), the ingest jobs' last: ``ingest_roots`` are checked
    (:func:`rsir_stac.api.jobs.check_roots`: InputError for one that is not a folder) and the
    rasters under them are read as GeoTIFF only from then on; every raster this process reads
    from then on is held to the upload's block limit
    (:func:`rsir_stac.tiling.blocks.limit_block_bytes`)."""
    from rsir_stac.api.classify import classify_router
    from rsir_stac.api.export import export_router
    from rsir_stac.api.jobs import check_roots, jobs_router
    from rsir_stac.tiling.blocks import limit_block_bytes
    from rsir_stac.tiling.sources import restrict_to_geotiff
    from rsir_stac.upload import MAX_DECODED_BYTES
    from rsir_stac.api.labels import labels_router
    from rsir_stac.api.query import query_router
    from rsir_stac.api.search import search_router
    from rsir_stac.api.stored import stored_router
    from rsir_stac.api.tiles import tiles_router

    app.include_router(stored_router(svc))
    app.include_router(search_router(svc))
    app.include_router(tiles_router(svc.index, lock=svc.lock, dependencies=svc.dependencies,
                                    cache_bytes=tile_cache_bytes))
    app.include_router(query_router(svc))
    app.include_router(export_router(svc))
    app.include_router(labels_router(svc))
    app.include_router(classify_router(svc))
    roots = check_roots(ingest_roots)
    # a client who can write under a root must not reach other files through what it writes there:
    # rasters under the roots are read as GeoTIFF only, without sidecars, by jobs and imagery alike
    restrict_to_geotiff(roots)
    # a raster's blocks are decoded whole and kept with the open dataset: every raster the service
    # reads (jobs, imagery, stored tiles) is held to the block limit of uploads
    limit_block_bytes(MAX_DECODED_BYTES)
    app.include_router(jobs_router(svc.index, lock=svc.lock, dependencies=svc.dependencies,
                                   roots=roots, on_change=svc.clear_cached, hide_paths=hide_paths,
                                   max_tiles=max_job_tiles))


def _key_scheme(api_key: str | None) -> list:
    """Dependencies declaring the API key (enforced by Guard; declared so /docs shows "Authorize")."""
    if not api_key:
        return []
    from fastapi import Security
    from fastapi.security import APIKeyHeader, APIKeyQuery

    return [Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
            Security(APIKeyQuery(name="api_key", auto_error=False))]


def _new_app(svc):
    """The bare FastAPI app (no routes yet), its ``state`` holding the index, thumbnail cache and decode slots."""
    from fastapi import FastAPI

    from rsir_stac import __version__

    app = FastAPI(
        docs_url=None,   # served by _add_page from the vendored Swagger UI: no CDN at run time
        redoc_url=None,
        title="rsir-stac search",
        version=__version__,
        description="Content-based retrieval of remote sensing image tiles: find stored tiles like a query "
                    "tile (by point id, by location or by an uploaded image), filtered by place, time and "
                    "STAC collection. Distances are Euclidean (smaller is closer).",
    )
    app.state.service = svc
    app.state.index = svc.index
    app.state.thumbs = svc.thumbs
    app.state.decode_slots = svc.decode_slots
    return app


def _add_page(app) -> None:
    """The map page (``/``), the API docs (``/docs``, vendored Swagger UI) and the static files."""
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from rsir_stac.httpguard import script_hashes_csp

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: uptime checkers
    def page():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs():
        from fastapi.openapi.docs import get_swagger_ui_html

        ui = "static/vendor/swagger-ui/"
        page = get_swagger_ui_html(openapi_url="openapi.json", title="rsir-stac search API",
                                   swagger_js_url=ui + "swagger-ui-bundle.js", swagger_css_url=ui + "swagger-ui.css",
                                   swagger_favicon_url=ui + "favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})
        html = bytes(page.body).decode()
        # the page's one inline script is allowed by its hash, nothing else inline
        return HTMLResponse(html, headers={"Content-Security-Policy": script_hashes_csp(html)})

    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")


def _add_middleware(app, *, api_key: str | None, max_body: int, allowed_hosts: Sequence[str] | None,
                    allowed_origins: Sequence[str], img_sources: Sequence[str]) -> None:
    """CORS for allowed origins (when any), then :class:`rsir_stac.httpguard.Guard` outermost."""
    from rsir_stac.httpguard import Guard

    if allowed_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"])
    app.add_middleware(Guard, api_key=api_key, max_body=max_body, allowed_hosts=allowed_hosts,
                       allowed_origins=allowed_origins, img_sources=tuple(img_sources))


# --------------------------------------------------------------------------- run / CLI


class AddressInUseError(RsirError, OSError):
    """``serve`` cannot listen on the asked host and port (taken by another process, or not local)."""


def bind_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port`` (not listening yet), for uvicorn.

    Bound before anything else is opened, so a busy port is one line and
    exit 1 (:class:`AddressInUseError`) instead of uvicorn's own exit 3.
    """
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"port {port} on {host} is already in use (another serve?); stop that "
                                    "process or choose another port with --port") from None
        raise AddressInUseError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); give a local "
                                "address with --host and a free port with --port") from None
    sock.set_inheritable(True)
    return sock


def _log_config() -> dict:
    """uvicorn's logging set-up with the access log filtered by
    :class:`rsir_stac.redact.RedactKeyFilter`: the values of ``api_key=``, ``key=`` and every
    parameter named like a key, token, secret or password (however the name is percent-encoded)
    redacted, logged URLs cut to 512 characters."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["redact_key"] = {"()": "rsir_stac.redact.RedactKeyFilter"}
    cfg["handlers"]["access"].setdefault("filters", []).append("redact_key")
    return cfg


def run(index: str | None = None, qdrant_url: str | None = None, api_key_qdrant: str | None = None,
        model=None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
        log_level: str = "info", allow_hosts: Sequence[str] = (), allow_origins: Sequence[str] = (),
        hide_paths: bool | None = None, basemap: str | None = None, ingest_roots: Sequence[str] = ()) -> None:
    """Open the index once and serve it with uvicorn until interrupted (one worker: the index lock).

    The port is bound first (:class:`AddressInUseError` when taken).  Allowed
    hosts are :func:`rsir_stac.httpguard.default_allowed_hosts` of ``host``
    plus ``allow_hosts``; ``hide_paths`` None hides server paths unless
    ``host`` is a loopback address.  While it runs, ``<index>/.serve.json`` records
    where it listens (:func:`rsir_stac.served.publish`), so ``search``, ``info`` and
    ``ingest`` on the same index send their work here.
    """
    import uvicorn

    from rsir_stac.httpguard import check_origins, default_allowed_hosts, is_loopback
    from rsir_stac.api.jobs import check_roots
    from rsir_stac.search import Index
    from rsir_stac.served import clean_stop, publish, unpublish

    check_roots(ingest_roots)
    allow_origins = check_origins(allow_origins)  # before the port and the index: one line, exit 2
    if api_key_qdrant and not qdrant_url:
        from rsir_stac.errors import InputError

        raise InputError("--api-key is the Qdrant server's key and needs --qdrant-url; to require a key from the "
                         "clients of this service use --service-key")
    if "*" in allow_hosts:
        log.warning("--allow-host '*' accepts any Host header, which turns off the protection against DNS "
                    "rebinding (a web page in the user's browser reaching this service under its own name); list "
                    "the names clients use instead, e.g. --allow-host tiles.example.org")
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]  # --port 0: the free port the system chose (printed and published)
    try:
        idx = Index.open(index, qdrant_url=qdrant_url, api_key=api_key_qdrant, model=model, read_only=True)
    except BaseException:
        sock.close()
        raise
    if not is_loopback(host) and not api_key:  # said once it serves (not before a failed bind or open)
        log.warning("serving on %s without --service-key; anyone who can reach it can search", host)
    address = None
    try:
        hide = (not is_loopback(host)) if hide_paths is None else hide_paths
        app = create_app(idx, api_key=api_key, allowed_hosts=default_allowed_hosts(host) + tuple(allow_hosts),
                         allowed_origins=tuple(allow_origins), hide_paths=hide, basemap=basemap,
                         ingest_roots=ingest_roots)
        address = publish(idx.store, host, port, key_required=bool(api_key), ingest_jobs=bool(ingest_roots),
                          model_id=idx.bundle.model_id)
        shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL is bracketed (RFC 3986)
        click.echo(f"serving {idx.store.describe()} (model {idx.bundle.model_id}) on http://{shown}:{port}/", err=True)
        config = uvicorn.Config(app, log_level=log_level, log_config=_log_config(), workers=1)
        with clean_stop():  # Ctrl-C / SIGTERM: exit 0 after closing the index and the address file
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        unpublish(address)
        sock.close()
        idx.close()


from rsir_stac.cli_common import lasting_qdrant_url, qdrant_collection_option  # noqa: E402  (click only)


@click.command("serve")
@click.option("--index", type=click.Path(file_okay=False), help="Embedded (Qdrant Edge) index folder.")
@click.option("--qdrant-url", callback=lasting_qdrant_url,
              help="Qdrant server URL instead of --index (env RSIR_QDRANT_URL).")
@click.option("--api-key", "api_key_qdrant", help="Qdrant API key (env RSIR_QDRANT_API_KEY).")
@qdrant_collection_option
@click.option("--model", type=click.Path(), envvar="RSIR_MODEL",
              help="Model bundle that built the index (or a shipped name: v7, the default; v1-v6) [env RSIR_MODEL].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (1-65535; 0: any free port, printed when it starts).")
@click.option("--service-key", envvar="RSIR_SERVICE_KEY", show_envvar=True,
              help="Require this key (X-API-Key header, or api_key= in tile URLs) on /api/*. Prefer setting "
                   "RSIR_SERVICE_KEY: a key on the command line is visible to every local user in ps.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this Host name (repeatable; '.example.org' with subdomains, "
                   "'*' any). Default: loopback names and the --host address.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Allow POSTs (and CORS) from this web origin, e.g. https://maps.example.org (repeatable; "
                   "http(s)://host[:port] only: 'null' and '*' are refused).")
@click.option("--hide-paths/--show-paths", default=None,
              help="Hide server file paths in hrefs and errors. Default: hidden unless --host is loopback.")
@click.option("--basemap", metavar="URL", help="Online XYZ basemap under the imagery, e.g. "
              "https://tile.openstreetmap.org/{z}/{x}/{y}.png (default: none, fully offline).")
@click.option("--ingest-root", "ingest_roots", multiple=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Accept ingest jobs (POST /api/ingest/jobs, used by `rsir-stac ingest` on this index) for "
                   "files under DIR (repeatable). Default: none accepted.")
def serve_command(index, qdrant_url, api_key_qdrant, model, host, port, service_key, allow_hosts, allow_origins,
                  hide_paths, basemap, ingest_roots):
    """Serve the search API and the map page over HTTP (open http://HOST:PORT/)."""
    import sys

    try:
        run(index=index, qdrant_url=qdrant_url, api_key_qdrant=api_key_qdrant, model=model, host=host,
            port=port, api_key=service_key, allow_hosts=allow_hosts, allow_origins=allow_origins,
            hide_paths=hide_paths, basemap=_check_basemap(basemap), ingest_roots=ingest_roots)
    except RsirError as exc:
        if logging.getLogger().level <= logging.DEBUG:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _check_basemap(url: str | None) -> str | None:
    """``url`` when it is an http(s) XYZ template with {z}, {x} and {y} whose origin is a plain
    CSP source (``scheme://host[:port]``, see :func:`rsir_stac.httpguard.check_csp_source`); else
    InputError naming ``--basemap`` and the fix."""
    if not url:
        return None
    from urllib.parse import urlsplit

    from rsir_stac.httpguard import check_csp_source

    if urlsplit(url).scheme not in ("http", "https") or not all(f"{{{c}}}" in url for c in "zxy"):
        raise InputError(f"--basemap {url!r} is not an XYZ tile URL; give https://host/path/{{z}}/{{x}}/{{y}}.png")
    check_csp_source(url, "--basemap", example="https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    return url


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL template (a CSP source); ``{s}`` subdomains become ``*.``;
    InputError for one that is not a plain origin (:func:`rsir_stac.httpguard.check_csp_source`)."""
    from rsir_stac.httpguard import check_csp_source

    return check_csp_source(url, "basemap", example="https://tile.openstreetmap.org/{z}/{x}/{y}.png")


__all__ = ["AddressInUseError", "bind_socket", "build_filter", "create_app", "parse_polygon", "run", "serve_command"]
