"""The HTTP client the command line uses to send work to a running ``rsir-stac serve``.

When ``search``, ``info``, ``ingest``, ``classify`` or ``export`` find the index held by a
live, verified ``serve`` (:func:`rsir_stac.served.find_service`), they send the work to it
through :class:`ServiceClient` instead of failing with "in use".  Requests go through
``httpx`` (already installed with ``qdrant-client``), JSON bodies or multipart forms for
image files; an error answer becomes the matching :class:`~rsir_stac.errors.RsirError`
carrying the service's one-line ``detail``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from rsir_stac.errors import InputError, PointNotFoundError, RsirError, SourceNotFoundError
from rsir_stac.served import ADDRESS_NAME, HIT_COUNT_HEADER, KEY_ENV, ServiceAddress, ServiceError, _lock_held

#: Seconds between polls of an ingest job.
POLL_S = 0.5
#: Seconds a request to the service may take (an image search embeds on the server).
TIMEOUT_S = 120.0
#: The upload limit assumed for a service whose ``/api/info`` does not give ``limits.max_upload_bytes``
#: (``serve``'s own: :func:`rsir_stac.serve.create_app`'s default).
DEFAULT_MAX_UPLOAD_BYTES = 10_000_000

#: A form: its text fields (a list or tuple value is sent once per item, None is left out)
#: and its files as ``(field name, bytes, file name)``.
Form = tuple[dict, list[tuple[str, bytes, str]]]


class ServiceClient:
    """JSON over HTTP to the ``serve`` at ``address`` (``httpx``)."""

    def __init__(self, address: ServiceAddress, *, key: str | None = None, timeout: float = TIMEOUT_S) -> None:
        self.address, self.timeout = address, timeout
        self._upload_limit: int | None = None
        self.key = key if key is not None else os.environ.get(KEY_ENV) or None
        if address.key_required and not self.key:
            raise ServiceError(f"index {address.index} is held by {address.describe()}, which needs its service "
                               f"key; set {KEY_ENV} to it and re-run, or stop that service")

    def request(self, method: str, path: str, body: Any = None, *, form: Form | None = None,
                raw: bool = False) -> Any:
        """Send one request; returns the decoded JSON answer (bytes with ``raw``).

        Raises the matching :class:`RsirError` for an error answer (its one-line ``detail``),
        and :class:`ServiceError` when the service does not answer or has stopped."""
        resp = self._send(method, path, body, form)
        return resp.content if raw else json.loads(resp.content or b"null")

    def _send(self, method: str, path: str, body: Any = None, form: Form | None = None) -> Any:
        """The ``httpx`` response of one request (:meth:`request`), its errors raised."""
        import httpx

        headers = {"Accept": "application/json"}
        if self.key:
            headers["X-API-Key"] = self.key
        kwargs: dict[str, Any] = {}
        if form is not None:
            fields, files = form
            kwargs["data"] = {name: ([str(v) for v in value if v is not None] if isinstance(value, (list, tuple))
                                     else str(value)) for name, value in fields.items() if value is not None}
            kwargs["files"] = [(name, (_safe_name(filename), blob, "application/octet-stream"))
                               for name, blob, filename in files]
        elif body is not None:
            kwargs["content"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            resp = httpx.request(method, self.address.url + path, headers=headers, timeout=self.timeout,
                                 trust_env=False, **kwargs)
        except httpx.HTTPError as exc:
            gone = self.stopped()
            if gone is not None:
                raise ServiceError(gone) from None
            raise ServiceError(f"index {self.address.index} is held by {self.address.describe()}, which does not "
                               f"answer ({exc or type(exc).__name__}); wait for it or stop it") from None
        if resp.status_code >= 400:
            raise self._error(resp.status_code, resp.content)
        return resp

    def stopped(self) -> str | None:
        """When the ``serve`` this client talks to has died (its pid is gone, or nothing holds the
        index lock any more: killed, crashed), the one-line error saying so; its stale address file
        is removed (the next command would ignore it anyway).  None while it still runs."""
        from rsir_stac.atomic import pid_alive

        addr, index = self.address, Path(self.address.index)
        if pid_alive(addr.pid) and _lock_held(index):
            return None
        try:  # only the file of that dead service (a new serve may have written its own meanwhile)
            path = index / ADDRESS_NAME
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == addr.pid and not _lock_held(index):
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass
        return (f"index {addr.index} was held by {addr.describe()}, which has stopped (pid {addr.pid} is no longer "
                f"running; an ingest job it ran keeps what it wrote); re-run the same command: it opens the index "
                f"itself now (the stale {ADDRESS_NAME} is ignored)")

    def _error(self, status: int, payload: bytes) -> RsirError:
        try:
            doc = json.loads(payload)
            detail, name = str(doc.get("detail")), str(doc.get("error"))
        except (ValueError, AttributeError):
            detail, name = payload[:200].decode("utf-8", "replace"), ""
        where = f"{self.address.describe()}: {detail}"
        if status == 401:
            return ServiceError(f"{self.address.describe()} refused the service key; set {KEY_ENV} to the key it "
                                "was started with")
        if status == 404 and name == "SourceNotFoundError":
            return SourceNotFoundError(where)
        if status == 404:
            return PointNotFoundError(where)
        if status in (400, 403, 413, 422):  # 403: a source outside the ingest roots, a URL
            return InputError(where)
        return ServiceError(where)

    # -- the operations the CLI sends ---------------------------------------

    def info(self) -> dict:
        """``GET /api/info``."""
        return self.request("GET", "/api/info")

    def query(self, body: dict) -> dict:
        """``POST /api/query`` with a JSON body."""
        return self.request("POST", "/api/query", body)

    def upload_limit(self) -> int:
        """The most bytes one uploaded image may have on this service (``limits.max_upload_bytes``
        of ``GET /api/info``; :data:`DEFAULT_MAX_UPLOAD_BYTES` when the service does not say)."""
        if self._upload_limit is None:
            limits = (self.info() or {}).get("limits") or {}
            value = limits.get("max_upload_bytes")
            self._upload_limit = value if isinstance(value, int) and value > 0 else DEFAULT_MAX_UPLOAD_BYTES
        return self._upload_limit

    def read_upload(self, path: str) -> bytes:
        """The bytes of the image file ``path``, to send: a regular file only (a named pipe or a
        device such as ``/dev/zero`` is refused unread: opened without blocking, checked with
        ``fstat``), at most :meth:`upload_limit` bytes (a larger file is refused before it is
        read into memory, with both numbers; the read itself is bounded too)."""
        import stat

        from rsir_stac.errors import ImageReadError
        from rsir_stac.tiling.sources import file_kind

        limit = self.upload_limit()

        def too_large(size: str) -> InputError:
            return InputError(f"{path} is {size} bytes, over the {limit} byte upload limit of "
                              f"{self.address.describe()}; give a smaller image (crop or re-encode it, e.g. as "
                              "JPEG or a DEFLATE GeoTIFF), or stop the service and search the index directly")

        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise ImageReadError(f"{path} cannot be read ({exc.strerror}); check the path and its permissions") \
                from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ImageReadError(f"{path} is {file_kind(st.st_mode)}, not a regular file; query images are "
                                     "read from regular files only: save the image to a file and give that")
            if st.st_size > limit:
                raise too_large(str(st.st_size))
            data = fh.read(limit + 1)
        if len(data) > limit:  # it grew while being read
            raise too_large(f"over {limit}")
        return data

    def search_image(self, image: str, fields: dict) -> dict:
        """``POST /api/search/image``: the image file ``image`` and the form ``fields``."""
        return self.request("POST", "/api/search/image", form=(fields, [("file", self.read_upload(image),
                                                                          Path(image).name)]))

    def query_images(self, path: str, body: dict, positives: list[str], negatives: list[str], *,
                     raw: bool = False) -> Any:
        """``POST path`` (``/api/query`` or its export) as multipart: the JSON ``body`` in the
        ``query`` field, image files as ``positive_image`` / ``negative_image`` (each read by
        :meth:`read_upload`: regular files within the service's upload limit)."""
        return self.request("POST", path, form=self._image_form(body, positives, negatives), raw=raw)

    def _image_form(self, body: dict, positives: list[str], negatives: list[str]) -> Form:
        files = [(name, self.read_upload(p), Path(p).name)
                 for name, paths in (("positive_image", positives), ("negative_image", negatives)) for p in paths]
        return {"query": json.dumps(body)}, files

    def export(self, body: dict, positives: list[str], negatives: list[str]) -> tuple[bytes, int | None]:
        """``POST /api/query/export`` (multipart with example images, as :meth:`query_images`, when
        there are any): the file's bytes and how many hits it holds (its ``X-Hit-Count`` header; None
        from a service that does not send it)."""
        form = self._image_form(body, positives, negatives) if positives or negatives else None
        resp = self._send("POST", "/api/query/export", None if form else body, form)
        count = resp.headers.get(HIT_COUNT_HEADER, "")
        return resp.content, int(count) if count.isdigit() else None

    def ingest(self, body: dict, on_progress: Callable[[dict], None] | None = None) -> dict:
        """Create an ingest job and wait for it; returns the finished job document."""
        job = self.request("POST", "/api/ingest/jobs", body)
        try:
            while job.get("state") in ("queued", "running"):
                if on_progress is not None:
                    on_progress(job)
                time.sleep(POLL_S)
                job = self.request("GET", f"/api/ingest/jobs/{job['id']}")
        except KeyboardInterrupt:  # Ctrl-C stops the job too, as it stops a local ingest
            try:
                self.request("DELETE", f"/api/ingest/jobs/{job['id']}")
            except Exception:  # noqa: BLE001 - the job ended meanwhile, or the service is gone
                pass
            raise
        if on_progress is not None:
            on_progress(job)
        return job


def _safe_name(filename: str) -> str:
    """The file name sent in the form: letters, digits and ``._-`` only (the service never uses it as a path)."""
    return "".join(c for c in filename if c.isalnum() or c in "._-") or "image"


__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "POLL_S", "TIMEOUT_S", "ServiceClient"]
