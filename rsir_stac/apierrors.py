"""The HTTP API's one error schema, its status codes, and the FastAPI handlers that produce them.

Every error response of ``rsir-stac serve`` -- refused by the middleware,
by request validation, by the library, or an unexpected failure -- is a JSON
object :class:`ErrorBody`: ``detail`` (one line: what is wrong and how to fix
it), ``error`` (a name such as ``InputError``, ``PointNotFoundError``,
``ValidationError``, ``UploadTooLarge``) and, for 422 validation errors
only, ``errors`` (one entry per field).  Every status an endpoint can return
is listed in the OpenAPI document with this schema (:func:`error_responses`).

Imported only when an app is built (it imports pydantic and FastAPI).
"""

from __future__ import annotations

import logging
import math
import re
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

from rsir_stac.errors import (
    ImageReadError,
    InputError,
    PointNotFoundError,
    RsirError,
    SourceNotFoundError,
    SourceUnreadableError,  # noqa: F401 - the 410 error, imported from here by the API
)

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait after a 429.
RETRY_AFTER_S = 1


class FieldError(BaseModel):
    """One field of the request that does not match the schema."""

    loc: list[str | int] = Field(description="Where: e.g. [\"body\", \"k\"] or [\"query\", \"lon\"].")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="Pydantic error type, e.g. int_parsing, finite_number, missing.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="One line: what is wrong and how to fix it.")
    error: str = Field(description="Error name, e.g. InputError, PointNotFoundError, ValidationError, "
                                   "UploadTooLarge, TooManyRequests, HostNotAllowed.")
    errors: list[FieldError] | None = Field(None, description="Per-field problems (422 validation errors only).")


class TooManyRequests(RsirError, RuntimeError):
    """The service is busy with as many uploads as it decodes at a time: HTTP 429 with Retry-After."""


DESCRIPTIONS = {
    400: "Bad query or filter value (the detail says which and how to fix it).",
    401: "Missing or wrong API key (X-API-Key header).",
    403: "Host name or cross-origin request not allowed (see serve --allow-host / --allow-origin).",
    404: "No such point, tile or location in the index.",
    405: "Method not allowed on this path (the Allow header lists the allowed ones).",
    410: "The stored tile's source raster is gone or not readable any more; re-ingest the item.",
    413: "Request body, upload, image pixels or decoded bytes over the service limits (see /api/info).",
    422: "The request does not match this schema, or the upload is not a decodable PNG/JPEG/WebP/GeoTIFF.",
    429: "Too many uploads are being decoded; retry after Retry-After seconds.",
    500: "Unexpected server failure (logged on the server).",
}


def error_responses(*codes: int) -> dict[int, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``codes``, all with :class:`ErrorBody`."""
    out: dict[int, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody, "description": DESCRIPTIONS[code]}
        if code == 429:
            entry["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
        if code == 405:
            entry["headers"] = {"Allow": {"description": "Allowed methods.", "schema": {"type": "string"}}}
        out[code] = entry
    return out


def document_errors(app, codes: tuple[int, ...]) -> None:
    """List ``codes`` (with :class:`ErrorBody`) on every ``/api/`` operation of ``app``'s OpenAPI document.

    Applied to the generated document, so operations of routers included by
    other modules carry the error statuses every API request can get (403
    from the host/origin check, 405, 422, 500...) without repeating them, and
    FastAPI's own 422 schema (``HTTPValidationError``, which our handler does
    not produce) is replaced by :class:`ErrorBody`.
    """
    import json

    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        for path, operations in doc.get("paths", {}).items():
            if not path.startswith("/api/"):
                continue
            for op in operations.values():
                responses = op.setdefault("responses", {})
                for code, entry in error_responses(*codes).items():
                    current = responses.get(str(code))
                    if current is None or "HTTPValidationError" in json.dumps(current):
                        responses[str(code)] = {k: v for k, v in entry.items() if k != "model"} | {"content": ref}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorBody" not in schemas:
            body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, schema in body.pop("$defs", {}).items():
                schemas.setdefault(name, schema)
            schemas["ErrorBody"] = body
        if "HTTPValidationError" in schemas and "HTTPValidationError" not in json.dumps(doc["paths"]):
            schemas.pop("HTTPValidationError")
            if "#/components/schemas/ValidationError" not in json.dumps(doc):
                schemas.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi


def http_status(exc: BaseException) -> int:
    """HTTP status for a library error."""
    from rsir_stac.upload import UploadTooLarge

    if isinstance(exc, TooManyRequests):
        return 429
    if isinstance(exc, UploadTooLarge):
        return 413
    if isinstance(exc, SourceUnreadableError):
        return 410
    if isinstance(exc, (PointNotFoundError, SourceNotFoundError)):
        return 404
    if isinstance(exc, ImageReadError):
        return 422
    if isinstance(exc, InputError):
        return 400
    return 500


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe(value: Any) -> Any:
    """A JSON-safe copy of a validation error location item."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (str, int)) else str(value)


def _where(loc: list) -> str:
    return ".".join(str(x) for x in loc[1:]) or (str(loc[0]) if loc else "request")


#: Library messages name command-line options; an HTTP client sends request fields instead.
_REQUEST_TERMS = (
    ("--image FILE, --point-id ID, --at LON,LAT or a labels file",
     "positives ({point_id} or {lon, lat}), a positive_image upload or labels"),
    ("add --not-image, --not-point-id, --not-at or a negative label",
     "add negatives ({point_id} or {lon, lat}), a negative_image upload or a negative label"),
)
#: Search, query and classify options and the request field each one is.
_FIELDS = {"mmr": "mmr", "threshold": "threshold", "expand": "expand", "per-item": "per_item",
           "strategy": "strategy", "holdout": "holdout", "exclude-within": "exclude_within_m",
           "offset": "offset", "k": "k", "limit": "k", "within": "polygon", "not-image": "negative_image",
           "not-point-id": "negatives[].point_id", "not-at": "negatives[].lon/lat", "image": "positive_image",
           "point-id": "positives[].point_id", "at": "positives[].lon/lat"}
_OPTION = re.compile(r"(?<![\w-])--(" + "|".join(sorted(map(re.escape, _FIELDS), key=len, reverse=True)) + r")(?![\w-])")


def _unwrapped_labels(errors: list[dict]) -> str | None:
    """The fix when a label FeatureCollection was sent as the whole body of an operation that takes it
    in its ``labels`` field (the likeliest first try: the README says "give the label file"), else None."""
    body = [e for e in errors if len(e["loc"]) == 2 and e["loc"][0] == "body"]
    extra = {e["loc"][1] for e in body if e["type"] == "extra_forbidden"}
    if {"type", "features"} <= extra:   # /api/labels and /api/classify (labels required), /api/query...
        return ('the body is a GeoJSON FeatureCollection; send it as the labels field: {"labels": '
                '<the FeatureCollection>, ...}')
    return None


def in_request_terms(message: str) -> str:
    """``message`` with command-line options (``--mmr 0.5``) named as the request fields the
    HTTP API takes (``mmr 0.5``)."""
    for cli, api in _REQUEST_TERMS:
        message = message.replace(cli, api)
    return _OPTION.sub(lambda m: _FIELDS[m.group(1)], message)


def install_handlers(app, *, hide_paths: bool = False) -> None:
    """Register the handlers that turn every error into an :class:`ErrorBody` response on ``app``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from rsir_stac.redact import redact_paths

    def respond(status: int, name: str, detail: str, headers: dict | None = None, errors: list | None = None):
        detail = _one_line(redact_paths(detail) if hide_paths else detail)
        body: dict[str, Any] = {"detail": detail, "error": name}
        if errors is not None:
            body["errors"] = errors
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RsirError)
    async def _rsir_error(request, exc: RsirError):
        status = http_status(exc)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
        return respond(status, type(exc).__name__, in_request_terms(str(exc)), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        errors = []
        for e in exc.errors():
            loc = [_safe(x) for x in e.get("loc", ())]
            errors.append({"loc": loc, "msg": _one_line(e.get("msg", ""), 200), "type": str(e.get("type", ""))})
        parts = [f"{_where(err['loc'])}: {err['msg']}" for err in errors[:3]]
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        detail = "invalid request: " + (_unwrapped_labels(errors) or "; ".join(parts) + more) + \
            "; see /docs for the expected fields"
        return respond(422, "ValidationError", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        try:
            name = HTTPStatus(exc.status_code).phrase.title().replace(" ", "").replace("-", "")
        except ValueError:
            name = "HTTPError"
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"{request.url.path} does not exist; see /docs for the API"
        return respond(exc.status_code, name, detail, getattr(exc, "headers", None))

    def unexpected(request, exc: Exception):
        from starlette.requests import ClientDisconnect

        if isinstance(exc, ClientDisconnect):  # the client went away mid-body: its doing, not a server fault
            log.info("%s %s: the client disconnected before its request body was read whole", request.method,
                     request.url.path)
            return respond(400, "ClientDisconnect", "the request body ended early (the client disconnected); "
                                                    "send it again")
        if isinstance(exc, RecursionError):  # e.g. JSON nested thousands deep: the request's fault
            return respond(400, "InputError", "the request is nested too deeply (JSON arrays or objects inside "
                                              "each other); send a flat request, see /docs")
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        return respond(500, "InternalError", f"unexpected {type(exc).__name__} on the server; "
                                             "the server log has the details")

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        return unexpected(request, exc)

    app.add_middleware(_AnswerUnexpected, answer=unexpected)


class _AnswerUnexpected:
    """ASGI middleware: an unexpected exception from a route becomes its 500 (or 400) answer
    here, inside the app.  Starlette's outermost handler answers too but then re-raises, and
    the server drops the keep-alive connection, so a client's next request failed with a reset."""

    def __init__(self, app: Any, answer: Any) -> None:
        self.app, self.answer = app, answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - every unexpected error gets its JSON answer
            if started:
                raise
            from starlette.requests import Request

            await self.answer(Request(scope), exc)(scope, receive, send)


__all__ = [
    "DESCRIPTIONS",
    "ErrorBody",
    "FieldError",
    "SourceUnreadableError",
    "TooManyRequests",
    "document_errors",
    "error_responses",
    "http_status",
    "install_handlers",
]
