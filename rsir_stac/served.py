"""An embedded index held by a running ``rsir-stac serve``: its address file, and
whether that file can be trusted (the client that sends work there is
:mod:`rsir_stac.service_client`).

The Edge engine admits one process per index, so while ``serve`` runs, no
other process can open the index.  ``serve`` therefore records where it
listens in ``<index>/.serve.json`` (beside the ``.lock`` it holds)::

    {"pid": 12345, "host": "127.0.0.1", "port": 8000, "url": "http://127.0.0.1:8000",
     "key_required": false, "ingest_jobs": true, "model_id": "...", "started_at": "..."}

never the service key itself.  ``search``, ``info`` and ``ingest`` on that
index call :func:`find_service` first; when a live ``serve`` holds the lock
(the pid in the file is the lock holder's, and the lock is held), they send
the work to it (:class:`rsir_stac.service_client.ServiceClient`: ``GET /api/info``,
``POST /api/query``, ``POST /api/search/image``, ``POST/GET /api/ingest/jobs``)
instead of failing with "in use".  The key, when the service needs one, is
read from ``$RSIR_SERVICE_KEY`` (the variable ``serve --service-key`` reads).
A stale file (a killed ``serve``) is ignored: its pid no longer holds the lock.

Anyone who can write to the index folder can write this file, so it is never
trusted by itself (:func:`verify_address`): the work (and the key) goes only to
a loopback address (127.0.0.0/8, ``::1``, ``localhost``) whose port is listened
on by the very process that holds the lock, a process of the same user whose
command line is ``rsir-stac serve`` on this index (read from ``/proc`` on Linux;
where there is no ``/proc``, as on macOS and the BSDs, from ``ps`` and ``lsof``).
A file that fails a check is ignored with a one-line warning naming it and why,
and the command opens the index itself (which then says "in use" if another
process holds it).  Where neither can tell (Windows, or ``lsof`` not installed),
no file is trusted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rsir_stac.errors import StoreError

log = logging.getLogger(__name__)

ADDRESS_NAME = ".serve.json"
KEY_ENV = "RSIR_SERVICE_KEY"
#: The header of ``POST /api/query/export``'s file saying how many hits it holds (the command line
#: prints "wrote N hits to FILE" with it, as a direct run does).
HIT_COUNT_HEADER = "X-Hit-Count"
#: Where the process table is read (Linux).  Where it has no ``self/fd`` (macOS, the BSDs),
#: :func:`verify_address` asks ``ps`` and ``lsof`` instead.
PROC_ROOT = Path("/proc")
#: Seconds ``ps`` or ``lsof`` may take to answer before the address counts as unverified.
TOOL_TIMEOUT_S = 3.0
#: Program names an ``rsir-stac serve`` command line runs (the script, ``python -m rsir_stac.cli``).
_PROGRAMS = ("rsir-stac", "rsir_stac.cli", "rsir_stac")


class ServiceError(StoreError):
    """The running ``serve`` that holds the index cannot do what was asked (it
    does not answer, refuses the key, takes no ingest jobs, or the request has a
    part it cannot take)."""


class UnverifiedServiceError(ServiceError):
    """An address file names a service that cannot be shown to be the ``rsir-stac serve``
    holding the index (not loopback, another process's port, another user's or another
    program's process, or neither ``/proc`` nor ``ps`` and ``lsof`` to check): nothing is sent to it."""


@dataclass(frozen=True)
class ServiceAddress:
    """Where the ``serve`` holding ``index`` listens (from ``.serve.json``)."""

    index: str
    pid: int
    url: str
    key_required: bool
    ingest_jobs: bool
    model_id: str

    def describe(self) -> str:
        return f"rsir-stac serve (pid {self.pid}) at {self.url}"


# --------------------------------------------------------------------------- address file (serve side)


def connect_host(host: str) -> str:
    """The address a local client connects to for a service bound to ``host``
    (a wildcard address becomes the loopback address of its family)."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def publish(store: Any, host: str, port: int, *, key_required: bool, ingest_jobs: bool,
            model_id: str) -> Path | None:
    """Write ``<index>/.serve.json`` for an open embedded ``store`` that holds its
    lock; returns its path, or None (another back end, a read-only private copy,
    or a folder that cannot be written: the CLI then says "in use" as before)."""
    from datetime import datetime, timezone

    from rsir_stac.store.folder import _write_json_atomic

    lock = getattr(store, "_lock", None)
    if getattr(store, "backend", "") != "edge" or lock is None or getattr(lock, "fd", None) is None:
        return None
    h = connect_host(host)
    url = f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"
    doc = {"pid": os.getpid(), "host": h, "port": int(port), "url": url, "key_required": bool(key_required),
           "ingest_jobs": bool(ingest_jobs), "model_id": model_id,
           "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = Path(store.index) / ADDRESS_NAME
    try:
        _write_json_atomic(path, doc)
    except OSError as exc:
        log.warning("cannot record the service address in %s (%s); other commands will see the index as in use",
                    path, exc.strerror or exc)
        return None
    return path


def unpublish(path: Path | None) -> None:
    """Remove the address file written by :func:`publish` (if it is still ours)."""
    if path is None:
        return
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


@contextlib.contextmanager
def clean_stop() -> Iterator[None]:
    """Around uvicorn's ``Server.run``: Ctrl-C and SIGTERM (``docker stop``, systemd)
    end it cleanly.  uvicorn shuts down gracefully and then re-raises the signal; a
    SIGTERM with its default action would kill the process before ``serve`` closes
    the index and removes the address file, so here both end as a normal return."""
    import signal
    import threading

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        yield
    except KeyboardInterrupt:
        log.info("serve stopped by a signal")
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)


# --------------------------------------------------------------------------- finding it (CLI side)


def _lock_held(index: Path) -> bool:
    """Whether some process holds ``<index>/.lock`` (tested without keeping it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return True
    try:
        fd = os.open(index / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def find_service(index: str | os.PathLike | None, *,
                 warn: Callable[[str], None] | None = None) -> ServiceAddress | None:
    """The live ``serve`` holding the embedded index ``index`` (default
    ``./rsir-index``), or None when no ``serve`` holds it (no address file, a
    stale one, or another kind of holder).

    An address file whose pid holds the lock but that fails :func:`verify_address`
    is ignored too: ``warn`` (default: a logged warning) gets one line naming the
    file and why, and the caller opens the index itself."""
    from rsir_stac.store import DEFAULT_INDEX

    path = Path(index if index is not None else DEFAULT_INDEX).expanduser().absolute()
    try:
        doc = json.loads((path / ADDRESS_NAME).read_text(encoding="utf-8"))
        pid = int(doc["pid"])
        holder = (path / ".lock").read_text(encoding="ascii", errors="replace").strip()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if holder != str(pid) or not _lock_held(path):
        return None
    try:
        url = verify_address(path, doc)
    except UnverifiedServiceError as exc:
        (warn or log.warning)(f"ignoring {path / ADDRESS_NAME}: {exc}; opening the index directly instead")
        return None
    return ServiceAddress(str(path), pid, url, bool(doc.get("key_required")),
                          bool(doc.get("ingest_jobs")), str(doc.get("model_id") or ""))


def verify_address(index: Path, doc: dict) -> str:
    """The URL to send work to for the address file ``doc`` of ``index`` (rebuilt from the
    checked host and port, never the file's text), once it is shown to be the ``serve``
    holding the index: the URL is ``http://`` on a loopback address with the file's port
    and nothing else; the file's pid belongs to this user, listens on that address and
    port, and runs ``rsir-stac serve`` on this index.  Read from ``/proc`` (:data:`PROC_ROOT`), or
    where there is none (macOS, the BSDs) from ``ps`` and ``lsof`` (:func:`_verify_with_tools`).
    Raises UnverifiedServiceError (why)."""
    ip, port = _loopback_url(doc)
    pid = int(doc["pid"])
    if pid <= 0:
        raise UnverifiedServiceError(f"its pid {pid} is not a process id")
    if not (PROC_ROOT / "self" / "fd").is_dir():  # macOS, the BSDs: ask ps and lsof
        _verify_with_tools(index, pid, ip, port)
        return f"http://{_host_port(ip, port)}"
    try:
        owner = os.stat(PROC_ROOT / str(pid)).st_uid
    except OSError:
        raise UnverifiedServiceError(f"process {pid} cannot be inspected") from None
    _check_owner_and_port(pid, owner, lambda: _pid_listens(pid, ip, port), _host_port(ip, port))
    if not _is_serve_of(pid, index):
        raise UnverifiedServiceError(f"process {pid} is not an rsir-stac serve of this index")
    return f"http://{_host_port(ip, port)}"


def _host_port(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _loopback_url(doc: dict) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """The loopback IP and port of the file's ``url`` (``http://HOST:PORT``, HOST in
    127.0.0.0/8, ``::1`` or ``localhost``, PORT the file's ``port``); else UnverifiedServiceError."""
    from urllib.parse import urlsplit

    url, port = doc.get("url"), doc.get("port")
    if not isinstance(url, str) or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise UnverifiedServiceError("it names no http URL and port")
    try:
        parts = urlsplit(url.strip())
        url_port = parts.port
    except ValueError:
        raise UnverifiedServiceError(f"its url {url[:80]!r} is not a URL") from None
    if parts.scheme.lower() != "http" or parts.username is not None or parts.password is not None \
            or parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        raise UnverifiedServiceError(f"its url {url[:80]!r} is not http://HOST:PORT")
    host = parts.hostname.lower()
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise UnverifiedServiceError(f"its url {url[:80]!r} is not a loopback address (127.0.0.0/8, ::1, "
                                     "localhost), so nothing is sent there (if that is your own `rsir-stac serve`, "
                                     "start it with --host 127.0.0.1 or 0.0.0.0 so commands on this machine can use "
                                     "it)")
    if url_port != port:
        raise UnverifiedServiceError(f"its url {url[:80]!r} does not name its port {port}")
    return ip, port


def _listening_inodes(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> set[str]:
    """Socket inodes listening on ``port`` at ``ip`` or the wildcard address of its family
    (``/proc/net/tcp`` or ``tcp6``)."""
    table = "tcp" if ip.version == 4 else "tcp6"
    wildcard = ipaddress.ip_address("0.0.0.0" if ip.version == 4 else "::")
    found: set[str] = set()
    try:
        lines = (PROC_ROOT / "net" / table).read_text(encoding="ascii", errors="replace").splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        f = line.split()
        if len(f) < 10 or f[3] != "0A":  # 0A: LISTEN
            continue
        addr, _, hport = f[1].partition(":")
        try:
            raw = b"".join(struct.pack("<I", int(addr[i:i + 8], 16)) for i in range(0, len(addr), 8))
            local = ipaddress.ip_address(raw)
            lport = int(hport, 16)
        except ValueError:
            continue
        if lport == port and local in (ip, wildcard):
            found.add(f[9])
    return found


def _pid_listens(pid: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``ip``:``port``."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(ip, port)}
    if not inodes:
        return False
    fds = PROC_ROOT / str(pid) / "fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(fds / name) in inodes:
                return True
        except OSError:
            continue
    return False


def _is_serve_of(pid: int, index: Path) -> bool:
    """Whether the command line of ``pid`` is ``rsir-stac serve`` (the script, or
    ``python -m rsir_stac.cli``) whose ``--index`` (default ``./rsir-index``, relative to
    that process's folder) is ``index``."""
    from rsir_stac.store import DEFAULT_INDEX

    try:
        argv = [a.decode("utf-8", "surrogateescape")
                for a in (PROC_ROOT / str(pid) / "cmdline").read_bytes().split(b"\0")]
        cwd = os.readlink(PROC_ROOT / str(pid) / "cwd")
    except OSError:
        return False
    prog = next((i for i, a in enumerate(argv[:4])
                 if Path(a).name in _PROGRAMS), None)
    if prog is None or "serve" not in argv[prog + 1:]:
        return False
    rest = argv[argv.index("serve", prog + 1) + 1:]
    given = DEFAULT_INDEX
    for i, a in enumerate(rest):
        if a == "--index" and i + 1 < len(rest):
            given = rest[i + 1]
        elif a.startswith("--index="):
            given = a[len("--index="):]
    # ~ was expanded by the shell that started it, if at all
    theirs = os.path.realpath(os.path.join(cwd, given))
    return theirs == os.path.realpath(index)


# --------------------------------------------------------------------------- without /proc: ps and lsof


def _check_owner_and_port(pid: int, owner: int, listens, where: str) -> None:
    """UnverifiedServiceError unless process ``pid`` (owned by uid ``owner``) is this user's and
    ``listens()`` says it listens on ``where``: the checks both ways of :func:`verify_address` make."""
    if hasattr(os, "getuid") and owner != os.getuid():
        raise UnverifiedServiceError(f"process {pid} belongs to another user")
    if not listens():
        raise UnverifiedServiceError(f"process {pid} does not listen on {where}")


def _verify_with_tools(index: Path, pid: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       port: int) -> None:
    """The checks of :func:`verify_address` where there is no ``/proc`` (macOS, the BSDs), through
    ``ps`` (owner, command line) and ``lsof`` (listening socket, folder); any tool missing, failing,
    slow or answering something unreadable leaves the address unverified (UnverifiedServiceError)."""
    where = _host_port(ip, port)
    out = _tool("ps", ["-o", "uid=", "-p", str(pid)], f"the owner of process {pid}", gone=True, pid=pid)
    try:
        owner = int(out.strip())
    except ValueError:
        raise UnverifiedServiceError(f"ps names no owner for process {pid} ({out.strip()[:60]!r})") from None
    _check_owner_and_port(pid, owner, lambda: _tool_listens(pid, ip, port), where)
    command = _tool("ps", ["-ww", "-o", "command=", "-p", str(pid)], f"the command line of process {pid}",
                    gone=True, pid=pid).strip()
    try:
        given = _index_in_command(command)
    except ValueError as exc:
        raise UnverifiedServiceError(f"the --index of process {pid} cannot be read from its command line as ps "
                                     f"shows it ({exc}), so it cannot be compared with this index") from None
    if given is None:
        raise UnverifiedServiceError(f"process {pid} is not an rsir-stac serve of this index")
    if not os.path.isabs(given):  # relative to that process's folder (~ was expanded by its shell, if at all)
        out = _tool("lsof", ["-a", "-p", str(pid), "-d", "cwd", "-Fn"], f"the folder of process {pid}",
                    gone=True, pid=pid)
        cwd = next((ln[1:] for ln in out.splitlines() if ln.startswith("n")), "")
        if not os.path.isabs(cwd):
            raise UnverifiedServiceError(f"lsof does not show the folder of process {pid}, so its --index "
                                         f"{given!r} cannot be compared with this index")
        given = os.path.join(cwd, given)
    if os.path.realpath(given) != os.path.realpath(index):
        raise UnverifiedServiceError(f"process {pid} is not an rsir-stac serve of this index")


def _tool(name: str, args: list[str], what: str, *, gone: bool = False, pid: int = 0,
          nothing_ok: bool = False) -> str:
    """The standard output of ``name args`` (found on PATH, run without a shell, at most
    :data:`TOOL_TIMEOUT_S` seconds).  ``what`` names what it shows, for the one-line
    UnverifiedServiceError raised when it cannot: not installed, too slow, a failure.  With
    ``gone``, exit 1 with no output means process ``pid`` is not there; with ``nothing_ok``, exit 1
    with no output is an empty answer (``lsof`` found nothing)."""
    exe = shutil.which(name)
    if exe is None:
        raise UnverifiedServiceError(f"{name} is not installed, so {what} cannot be checked")
    try:
        res = subprocess.run([exe, *args], stdin=subprocess.DEVNULL, capture_output=True, check=False,
                             timeout=TOOL_TIMEOUT_S, env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise UnverifiedServiceError(f"{name} did not answer within {TOOL_TIMEOUT_S:g} s, so {what} cannot be "
                                     "checked") from None
    except OSError as exc:
        raise UnverifiedServiceError(f"{name} cannot be run ({exc.strerror or exc}), so {what} cannot be "
                                     "checked") from None
    out = res.stdout.decode("utf-8", "surrogateescape")
    if res.returncode == 1 and not out.strip() and (gone or nothing_ok):
        if nothing_ok:
            return ""
        raise UnverifiedServiceError(f"process {pid} cannot be inspected")
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UnverifiedServiceError(f"{name} failed (exit {res.returncode}{': ' + err[-1][:100] if err else ''}), "
                                     f"so {what} cannot be checked")
    return out


def _tool_listens(pid: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    """Whether ``lsof`` shows process ``pid`` listening on TCP ``ip``:``port`` or on the wildcard
    address of the same family (as :func:`_pid_listens` reads ``/proc``)."""
    out = _tool("lsof", ["-nP", "-a", "-p", str(pid), f"-iTCP:{port}", "-sTCP:LISTEN", "-Ftn"],
                f"the process listening on {_host_port(ip, port)}", nothing_ok=True)
    family = "IPv4" if ip.version == 4 else "IPv6"
    kind = ""
    for line in out.splitlines():
        tag, value = line[:1], line[1:]
        if tag in ("p", "f"):  # a new process or file: its type follows
            kind = ""
        elif tag == "t":
            kind = value
        elif tag == "n" and kind == family and "->" not in value:
            host, sep, lport = value.rpartition(":")
            if not sep or lport != str(port):
                continue
            host = host.strip("[]")
            if host == "*":
                return True
            try:
                if ipaddress.ip_address(host) in (ip, ipaddress.ip_address("0.0.0.0" if ip.version == 4 else "::")):
                    return True
            except ValueError:
                continue
    return False


def _index_in_command(command: str) -> str | None:
    """The ``--index`` of the ``rsir-stac serve`` whose command line ``ps`` shows as ``command``
    (``./rsir-index`` when it names none), or None when it is not an ``rsir-stac serve``.

    ``ps`` joins the arguments with spaces and quotes nothing, so the words are split at single
    spaces (not shell-parsed): the program (``rsir-stac``, ``python -m rsir_stac.cli``) within the
    first words, not after a ``-c``; ``serve`` its first word that is not an option (the group's
    options are flags); one ``--index`` after it, whose folder runs to the next word that starts
    an option (a folder with spaces spans several words).  Raises ValueError when ``--index`` is
    given twice or without a folder: what the process opened cannot be told then."""
    from rsir_stac.store import DEFAULT_INDEX

    words = command.split(" ")
    for prog, word in enumerate(words[:8]):
        if Path(word).name not in _PROGRAMS or "-c" in words[:prog]:
            continue
        after = words[prog + 1:]
        sub = next((i for i, w in enumerate(after) if not w.startswith("-")), None)
        if sub is not None and after[sub] == "serve":
            break
    else:
        return None
    rest = after[sub + 1:]
    at = [i for i, w in enumerate(rest) if w == "--index" or w.startswith("--index=")]
    if not at:
        return DEFAULT_INDEX
    if len(at) > 1:
        raise ValueError("--index is given more than once")
    first = rest[at[0]]
    value = ([first[len("--index="):]] if first != "--index" else []) + rest[at[0] + 1:]
    if first == "--index" and not value:
        raise ValueError("--index has no folder")
    end = next((k for k, w in enumerate(value) if k and w.startswith("-")), len(value))
    folder = " ".join(value[:end])
    if not folder:
        raise ValueError("--index has no folder")
    return folder


__all__ = ["ADDRESS_NAME", "HIT_COUNT_HEADER", "KEY_ENV", "ServiceAddress", "ServiceError", "UnverifiedServiceError",
           "clean_stop", "connect_host", "find_service", "publish", "unpublish", "verify_address"]
