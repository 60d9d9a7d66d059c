"""Ingest jobs on a running ``serve``: ``POST /api/ingest/jobs`` and ``GET /api/ingest/jobs/{id}``.

While ``serve`` holds an embedded index, no other process can open it; the
command line sends its ``ingest`` here instead (:mod:`rsir_stac.served`).  A
job ingests files **the server can read, under the folders the operator
allowed** (``serve --ingest-root DIR``, repeatable; without it every job is
refused with 403), with the served model, one job at a time, into the served
index while searches go on (every store call of the job takes the app's store
lock, so a search waits at most for one batch).

What a client may name, and what it may not (the threat model is in the
security section of docs/RELIABILITY.md):

* ``sources``: local paths only.  A URL, a GDAL ``/vsi...`` path or any
  ``scheme:`` is refused (403), and so is a path whose real location
  (symlinks resolved) is not inside an ingest root (403): a client cannot make
  the server fetch a URL or read a file the operator did not offer.  A missing
  source is 404.  STAC documents under a root are the operator's data: their
  asset links are followed as a CLI ingest of them would.
* a source that is not a regular file or a folder (a named pipe, a device, a
  socket: reading one would hold the only job slot forever) is refused (400);
  inside a folder source such files are skipped, each with a reason in the
  job's ``skipped`` list.
* tiling options: bounded numbers (tile size and stride 8..4096 px, GSD > 0,
  ``min_valid`` 0..1), and at most :data:`MAX_JOB_TILES` tiles per job,
  estimated from each raster's size and GSD before anything is planned (413),
  ``edge``, ``asset``, ``bands``, ``collection`` (letters, digits, spaces and
  ``- _ . /`` only, as the refusal says),
  ``datetime``, ``fail_fast``, ``shard``.  No model path (a bundle is code:
  the served model is used; ``model_id``, when given, must be it, else 409)
  and no batch size (the server's default).
* answers (``report``, ``error``, ``skipped``) name files relative to their
  ingest root when the service hides paths (``serve --hide-paths``).
* the usual guards of every POST apply (``Host`` allow-list, cross-origin
  refusal, ``X-API-Key`` when the service has a key).

The request body and the options it becomes are in :mod:`rsir_stac.api.jobrequest`, the
job-size estimate and its 413 in :mod:`rsir_stac.api.jobsize`.

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

import logging
import os
import re
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from rsir_stac.api.jobsize import MAX_JOB_TILES, estimate_tiles  # re-exported (API)

log = logging.getLogger(__name__)

#: Finished jobs kept for ``GET`` (the oldest are forgotten first).
KEEP_JOBS = 32
MAX_SOURCES = 256
#: A collection name a job may give: what the refusal of other names promises.
COLLECTION_NAME = re.compile(r"^[\w .\-/]+$")


def check_roots(roots: Sequence[str]) -> tuple[Path, ...]:
    """The real paths of the ingest roots; InputError when one is not a folder."""
    from rsir_stac.errors import InputError

    out = []
    for r in roots:
        p = Path(r).expanduser()
        if not p.is_dir():
            raise InputError(f"--ingest-root {r} is not a folder; give a folder holding the sources ingest jobs "
                             "may read")
        out.append(Path(os.path.realpath(p)))
    return tuple(out)


def allowed_source(text: str, roots: Sequence[Path], skipped: list[str] | None = None) -> str:
    """The real local path of a job source when it lies under an ingest root.

    Raises HTTPException 403 (a URL, ``/vsi`` path, ``scheme:`` or a path outside
    every root), 400 (not a regular file or a folder: a named pipe, a device) or
    SourceNotFoundError (404).  Files a folder source holds that ingest would not read
    (not regular files) are added to ``skipped``, one line each."""
    from fastapi import HTTPException

    from rsir_stac.errors import SourceNotFoundError

    if not text or "\x00" in text or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) or "/vsi" in text:
        raise HTTPException(403, f"source {text[:200]!r} is not a local path; ingest jobs read only files under the "
                                 "service's ingest roots (serve --ingest-root)")
    p = Path(text)
    if not p.is_absolute():
        p = roots[0] / p
    real = Path(os.path.realpath(p))
    if not _under(real, roots):
        raise HTTPException(403, f"source {text[:200]} is (or links to a file) outside the service's ingest roots; put it under one of "
                                 "them or restart serve with another --ingest-root")
    try:
        exists = real.exists()
    except OSError as err:  # e.g. a name over the file system's 255 bytes
        raise HTTPException(400, f"source {text[:200]}... cannot be a path on the server ({err.strerror}); "
                                 "check the path") from None
    if not exists:
        raise SourceNotFoundError(f"{text[:400]} does not exist on the server; check the path")
    mode = os.stat(real).st_mode  # never opened: a named pipe would block the reader until a writer comes
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise HTTPException(400, f"source {text[:200]} is {_file_kind(mode)}, not a regular file; ingest jobs read "
                                 "GeoTIFF files and folders of them: replace it with the file itself")
    _check_contents(text, real, roots, skipped if skipped is not None else [])
    return str(real)


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words (:func:`rsir_stac.tiling.sources.file_kind`)."""
    from rsir_stac.tiling.sources import file_kind

    return file_kind(mode)


def _under(real: Path, roots: Sequence[Path]) -> bool:
    return any(real == r or r in real.parents for r in roots)


#: Why ingest jobs refuse STAC documents, and the way out (:func:`stac_refusal`).
STAC_FIX = ("ingest jobs take GeoTIFF/COG files and folders of them, not STAC documents (their links may name "
            "any file or URL); stop serve and run rsir-stac ingest for a STAC catalog")


def stac_refusal(text: str, real: Path) -> str | None:
    """The one-line refusal of the job source ``text`` (its real path ``real``, a regular file or a
    folder) when it is a STAC document an ingest job does not take: a JSON file, or a folder holding a
    STAC catalog; None otherwise.  The service asks it of sources under its roots; the command line
    asks it first of every source it sends (its user has the files), so that a STAC document outside
    the roots is told this reason, not to move it under a root (where it would be refused again)."""
    if real.is_file():
        with open(real, "rb") as fh:
            head = fh.read(64)
        if real.suffix.lower() == ".json" or head.lstrip()[:1] in (b"{", b"["):
            return f"source {text[:200]} is a JSON document; {STAC_FIX}"
        return None
    from rsir_stac.stac import catalogues_in

    for cat in catalogues_in(str(real)):  # ingest reads one in a sub-folder as STAC too
        return f"source {text[:200]} holds a STAC {os.path.relpath(cat, real)}; {STAC_FIX}"
    return None


def _check_contents(text: str, real: Path, roots: Sequence[Path], skipped: list[str]) -> None:
    """Refuse (403) a job source that would make ingest read outside the roots.

    STAC documents are refused (:func:`stac_refusal`): their links and asset hrefs
    may name any file or URL, which ingest would follow.  A folder is refused when
    it holds a STAC catalog, or a raster ingest would read (``*.tif``/``*.tiff``, as
    ingest walks it) whose real path, symlinks resolved, lies outside every
    root."""
    from fastapi import HTTPException

    refusal = stac_refusal(text, real)
    if refusal:
        raise HTTPException(403, refusal)
    if real.is_file():
        with open(real, "rb") as fh:
            _check_tiff(text[:200], fh.read(64))
        return
    for p in real.rglob("*"):
        if p.suffix.lower() not in (".tif", ".tiff"):
            continue
        target = Path(os.path.realpath(p))
        if not _under(target, roots):
            raise HTTPException(403, f"source {text[:200]} holds {p.relative_to(real)}, a link to a file outside the "
                                     "service's ingest roots; remove the link or copy the file under a root")
        try:
            mode = os.stat(target).st_mode
        except OSError as err:  # a dangling link, a loop: ingest cannot read it either
            skipped.append(f"{text[:200]}/{p.relative_to(real)} skipped: it cannot be read ({err.strerror})")
            continue
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):  # the folder walk of ingest reads regular files only
            skipped.append(f"{text[:200]}/{p.relative_to(real)} skipped: it is {_file_kind(mode)}, not a "
                           "regular file")
            continue
        with open(target, "rb") as fh:
            _check_tiff(f"{text[:200]}/{p.relative_to(real)}", fh.read(8))


def _check_tiff(name: str, head: bytes) -> None:
    """Refuse (403) a job source that is not a TIFF file: GDAL would open a VRT (or another
    format that names other files or URLs) whatever its name.  Reading under the roots is
    also GeoTIFF-only (:func:`rsir_stac.tiling.sources.restrict_to_geotiff`): this check
    gives the early, clear answer."""
    from fastapi import HTTPException

    from rsir_stac.upload import sniff_format  # the TIFF and BigTIFF signatures uploads are checked by

    if sniff_format(head) != "TIFF":
        raise HTTPException(403, f"source {name} is not a GeoTIFF (its first bytes are not a TIFF header); ingest "
                                 "jobs read GeoTIFF/COG files only (a VRT or another format may name files outside "
                                 "the ingest roots): convert it, e.g. gdal_translate -of COG in.vrt out.tif")


class _LockedStore:
    """The served store as an ingest job sees it: every call holds the app's store lock."""

    def __init__(self, store: Any, lock: threading.Lock) -> None:
        self._store, self._lock = store, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call

    def close(self) -> None:  # the service owns the store
        pass


class Job:
    """One ingest job: state, progress counters, and the report or error at the end."""

    def __init__(self, sources: list[str], options: Any, skipped: Sequence[str] = ()) -> None:
        self.id = uuid.uuid4().hex
        self.sources, self.options = sources, options
        self.skipped = list(skipped)
        self.state = "queued"
        self.created = time.time()
        self.progress = {"items_total": 0, "items_done": 0, "tiles_total": 0, "tiles_done": 0}
        self.report: dict | None = None
        self.error: str | None = None
        self.error_type: str | None = None
        self.exit_code = 0
        self.cancel = threading.Event()

    def on_event(self, ev: Any) -> None:
        if self.cancel.is_set():  # ingest calls this in the job's own thread: it stops there, cleanly
            from rsir_stac.errors import JobCancelledError

            raise JobCancelledError(f"ingest job {self.id} was cancelled; what it wrote stays (the same job "
                                    "again resumes it)")
        p = self.progress
        if ev.kind == "items":
            p["items_total"] = ev.total
        elif ev.kind == "total":
            p["tiles_total"] += ev.n
        elif ev.kind == "tiles":
            p["tiles_done"] += ev.n
        elif ev.kind == "end":
            p["items_done"] += 1

    def doc(self) -> dict:
        return {"id": self.id, "state": self.state, "sources": len(self.sources), "progress": dict(self.progress),
                "report": self.report, "error": self.error, "error_type": self.error_type,
                "exit_code": self.exit_code, "created": self.created,
                "cancel_requested": self.cancel.is_set(), "skipped": list(self.skipped)}


def relative_paths(value: Any, roots: Sequence[Path]) -> Any:
    """``value`` (a job's answer: nested dicts, lists and strings) with every path under an ingest
    root written relative to it (``/srv/root/scenes/a.tif`` -> ``scenes/a.tif``) and any other
    absolute path cut to its last component (:func:`rsir_stac.redact.redact_paths`)."""
    from rsir_stac.redact import redact_paths

    if isinstance(value, dict):
        return {k: relative_paths(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_paths(v, roots) for v in value]
    if not isinstance(value, str):
        return value
    for root in sorted(roots, key=lambda r: len(str(r)), reverse=True):
        prefix = str(root).rstrip("/") + "/"
        value = re.sub(r"(?<![\w.~-])" + re.escape(prefix), "", value)
        value = re.sub(r"(?<![\w.~/-])" + re.escape(str(root).rstrip("/")) + r"(?![\w.~/-])", ".", value)
    return redact_paths(value)


def _run(job: Job, index: Any, lock: threading.Lock, on_change: Callable[[], None] | None) -> None:
    from rsir_stac.errors import JobCancelledError, RsirError
    from rsir_stac.ingest import ingest

    job.state = "running"
    try:
        with lock:
            index.store.make_writable()
        report = ingest(job.sources, store=_LockedStore(index.store, lock), model=index.bundle,
                        options=job.options, progress=job.on_event)
        job.report = report.as_dict()
        job.exit_code = 0 if report.ok and not report.nothing_indexed else 1
        job.state = "done"
    except JobCancelledError as exc:
        partial = getattr(exc, "report", None)
        job.report = partial.as_dict() if partial is not None else None
        job.error, job.error_type, job.exit_code, job.state = str(exc), type(exc).__name__, 130, "cancelled"
    except RsirError as exc:
        partial = getattr(exc, "report", None)
        job.report = partial.as_dict() if partial is not None else None
        msg = str(exc)
        if partial is not None and getattr(exc, "item_id", None) is not None:  # --fail-fast, as the CLI says it
            msg = f"item {exc.item_id} failed and --fail-fast stopped the run: {msg}"
        job.error, job.error_type = msg, type(exc).__name__
        job.exit_code = 1 if partial is not None else exc.exit_code
        job.state = "failed"
    except Exception as exc:  # noqa: BLE001 - the job thread must end with a state
        log.exception("ingest job %s failed unexpectedly", job.id)
        job.error, job.error_type, job.exit_code = f"unexpected {type(exc).__name__}: {exc}", "InternalError", 1
        job.state = "failed"
    finally:
        if on_change is not None:
            on_change()
        log.warning("ingest job %s %s: %s", job.id, job.state, job.error or
                    {k: v for k, v in (job.report or {}).items() if isinstance(v, int)})


def _check_service(index: Any, roots: Sequence[Path], model_id: str | None) -> None:
    """Refuse a job this service cannot run: 403 without ingest roots, 409 when ``model_id`` is not
    the served model or the served index cannot be written by the service."""
    from fastapi import HTTPException

    if not roots:
        raise HTTPException(403, "this service takes no ingest jobs; restart serve with --ingest-root DIR "
                                 "(a folder holding the sources), or stop it and ingest from the command line")
    if model_id and model_id != index.bundle.model_id:
        raise HTTPException(409, f"the service indexes with model {index.bundle.model_id}, not {model_id}; "
                                 "use the model that built the index")
    if getattr(index.store, "backend", "") != "edge" or getattr(index.store, "_use_private", False):
        raise HTTPException(409, "the served index cannot be written by the service (a Qdrant server, or an "
                                 "index on read-only media); ingest into it directly")


def _admit(jobs: dict[str, Job], guard: threading.Lock, sources: list[str], options: Any,
           skipped: Sequence[str]) -> Job:
    """A new :class:`Job` recorded in ``jobs`` (the oldest beyond :data:`KEEP_JOBS` forgotten), under
    ``guard``; HTTPException 409 while another job is queued or running."""
    from fastapi import HTTPException

    with guard:
        if any(j.state in ("queued", "running") for j in jobs.values()):
            raise HTTPException(409, "another ingest job is running on this service; wait for it "
                                     "(GET /api/ingest/jobs/{id}) and retry")
        job = Job(sources, options, skipped)
        jobs[job.id] = job
        for old in sorted(jobs.values(), key=lambda j: j.created)[:-KEEP_JOBS]:
            jobs.pop(old.id, None)
    return job


def jobs_router(index: Any, *, lock: threading.Lock, dependencies: list | None = None,
                roots: Sequence[Path] = (), on_change: Callable[[], None] | None = None,
                hide_paths: bool = False, max_tiles: int = MAX_JOB_TILES):
    """An ``APIRouter`` with the ingest-job endpoints for ``index`` (an open
    :class:`~rsir_stac.search.Index`); ``lock`` is the app's store lock, ``roots``
    the real paths of the folders jobs may read (none: every job is refused),
    ``on_change`` is called when a job ends (e.g. to drop cached summaries);
    ``hide_paths``: answers name files relative to their root (:func:`relative_paths`);
    ``max_tiles``: the most tiles one job may make (413 beyond, before any work)."""
    from fastapi import APIRouter, Body, HTTPException
    from fastapi import Path as PathParam

    from rsir_stac.api.jobrequest import IngestJobRequest, job_options
    from rsir_stac.api.jobsize import check_job_size
    from rsir_stac.apierrors import ErrorBody, error_responses

    jobs: dict[str, Job] = {}
    guard = threading.Lock()
    conflict = {409: {"model": ErrorBody, "description": "Another ingest job is running, the model differs, "
                                                         "or the served index cannot be written."}}
    router = APIRouter(dependencies=dependencies or [], tags=["ingest"])

    def _public(doc: dict) -> dict:
        return relative_paths(doc, roots) if hide_paths else doc

    @router.post("/api/ingest/jobs", status_code=202, summary="Start an ingest job into the served index",
                 responses={**error_responses(400, 404, 413), **conflict})
    def create_job(req: IngestJobRequest = Body(...)) -> dict:
        """Ingest local sources under the service's ingest roots with the served model; one job at a time.
        Poll ``GET /api/ingest/jobs/{id}`` for progress and the report."""
        _check_service(index, roots, req.model_id)
        skipped: list[str] = []
        sources = [allowed_source(s, roots, skipped) for s in req.sources]
        options = job_options(req)
        check_job_size(req.sources, sources, options, index.bundle, max_tiles)
        job = _admit(jobs, guard, sources, options, skipped)
        threading.Thread(target=_run, args=(job, index, lock, on_change), name=f"rsir-ingest-{job.id[:8]}",
                         daemon=True).start()
        return _public(job.doc())

    @router.get("/api/ingest/jobs/{job_id}", summary="Progress and result of an ingest job",
                responses=error_responses(404))
    def get_job(job_id: str = PathParam(..., pattern=r"^[0-9a-f]{32}$")) -> dict:
        """``state`` queued | running | done | failed, ``progress`` counters, and at the end the ingest
        ``report`` (as ``ingest --json``) or the ``error`` line with the ``exit_code`` the CLI would give."""
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"ingest job {job_id} is not known to this service (finished jobs are kept "
                                     f"until {KEEP_JOBS} newer ones exist)")
        return _public(job.doc())

    @router.delete("/api/ingest/jobs/{job_id}", status_code=202, summary="Cancel an ingest job",
                   responses={**error_responses(404), 409: {"model": ErrorBody, "description": "The job has ended."}})
    def cancel_job(job_id: str = PathParam(..., pattern=r"^[0-9a-f]{32}$")) -> dict:
        """Ask a queued or running job to stop: it ends at its next progress step (within one batch of
        tiles) with ``state`` cancelled and exit code 130; what it wrote stays, and the same job again
        resumes it.  Poll ``GET /api/ingest/jobs/{id}``."""
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"ingest job {job_id} is not known to this service")
        if job.state not in ("queued", "running"):
            raise HTTPException(409, f"ingest job {job_id} has ended ({job.state}); there is nothing to cancel")
        job.cancel.set()
        return _public(job.doc())

    return router


__all__ = ["COLLECTION_NAME", "Job", "MAX_JOB_TILES", "STAC_FIX", "allowed_source", "check_roots", "estimate_tiles",
           "jobs_router", "relative_paths", "stac_refusal"]
