"""Shared parts of the ``rsir-stac`` commands: the error handler (one line on stderr and
an exit code for every failure), JSON output and the index options."""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback

import click

from rsir_stac.errors import RsirError
from rsir_stac.terminal import printable


def _verbosity() -> int:
    ctx = click.get_current_context(silent=True)
    return int((ctx.find_root().params.get("verbose") or 0) if ctx is not None else 0)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


#: Whether this command has printed its JSON document (:func:`echo_json`): a failure after it prints no other.
_JSON = {"printed": False}


#: Commands whose output is always one JSON document (no ``--json``): a failure prints one too.
ALWAYS_JSON = frozenset({"export", "info", "model-info"})


def _wants_json(ctx: click.Context | None = None, args: list[str] | None = None) -> bool:
    """Whether the running command (``ctx``'s, else the current one) prints JSON on stdout: asked
    for (``--json``, ``--format json``), or always (:data:`ALWAYS_JSON`).  ``args``: the command's
    own arguments as typed, read when click refused them before its options were all parsed."""
    ctx = ctx or click.get_current_context(silent=True)
    params = ctx.params if ctx is not None else {}
    name = ctx.command.name if ctx is not None and ctx.command is not None else ""
    if bool(params.get("as_json")) or params.get("fmt") == "json" or name in ALWAYS_JSON:
        return True
    return bool(args) and ctx is not None and _asks_json(ctx.command, args)


def _asks_json(command: click.Command, args: list[str]) -> bool:
    """Whether ``args`` (a command's arguments as typed) hold its ``--json`` flag or ``--format json``."""
    args = [str(a) for a in args]
    args = args[:args.index("--")] if "--" in args else args
    for p in command.params:
        if not isinstance(p, click.Option):
            continue
        # `--json=yes` too: the flag was typed, only given a value it does not take
        if p.name == "as_json" and any(a in p.opts or a.startswith(tuple(f"{o}=" for o in p.opts)) for a in args):
            return True
        if p.name == "fmt" and any(a in p.opts and args[i + 1:i + 2] == ["json"] or
                                   any(a == f"{o}=json" for o in p.opts) for i, a in enumerate(args)):
            return True
    return False


def _typed_options(command: click.Command, args: list[str]) -> dict[str, tuple[str, str]]:
    """{an option's long name: (its name, its value) as typed last in ``args``} for ``command``'s options
    that take one value (``-k 0``, ``-k0``, ``--limit=0``, ``--holdout 1``); ``args`` are its arguments as
    typed (``ctx.meta["rsir.command_args"]``), read up to a ``--`` separator."""
    takes: dict[str, str] = {}
    for p in command.params:
        if isinstance(p, click.Option) and not p.is_flag and not p.count and p.nargs == 1:
            long = next((o for o in p.opts if o.startswith("--")), p.opts[0])
            takes.update({o: long for o in p.opts})
    out: dict[str, tuple[str, str]] = {}
    args = [str(a) for a in args]
    i = 0
    while i < len(args) and args[i] != "--":
        a = args[i]
        name, _, value = a.partition("=") if a.startswith("--") else (a[:2], "", a[2:])
        if a in takes and i + 1 < len(args):  # `-k 0`, `--limit 0`: the next argument is its value
            out[takes[a]] = (a, args[i + 1])
            i += 2
            continue
        if name in takes and value:  # `--limit=0`, `-k0`
            out[takes[name]] = (name, value)
        i += 1
    return out


def as_typed(message: str, ctx: click.Context | None = None) -> str:
    """``message`` (a library's, naming each option by its long name and its value as parsed: ``--limit 0``,
    ``--holdout 1.0``) with the running command's options named as the user typed them: ``-k 0``,
    ``--holdout 1``.  Only an option typed on the command line, with the value it was parsed to."""
    import re

    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None or ctx.command is None:
        return message
    typed = _typed_options(ctx.command, ctx.meta.get("rsir.command_args") or [])
    params = {next((o for o in p.opts if o.startswith("--")), p.opts[0]): p.name for p in ctx.command.params
              if isinstance(p, click.Option)}
    for long, (name, value) in typed.items():
        parsed = ctx.params.get(params.get(long, ""))
        if parsed is None or isinstance(parsed, (tuple, list)):
            continue
        said = {str(parsed), repr(parsed)}
        message = re.sub(rf"(?<![\w-]){re.escape(long)} ([^\s,;()]+)",
                         lambda m: f"{name} {value}" if m.group(1) in said else m.group(0), message)
    return message


def new_command() -> None:
    """A command starts: it has printed no JSON yet (several run in one process under tests)."""
    _JSON["printed"] = False


def usage_error_json(ctx: click.Context, args: list[str], message: str) -> None:
    """Click refused a command's usage (an unknown or missing option, a bad value; exit 2): a command
    that prints JSON (see :func:`_wants_json`) and has printed none prints ``{"ok": false, "error",
    "exit_code": 2}`` on stdout as :func:`_fail` does for a runtime error; click's message stays on stderr."""
    if _wants_json(ctx, args) and not _JSON["printed"]:
        echo_json({"ok": False, "error": _one_line(message), "exit_code": 2})


def _fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` (one line, control characters escaped) on stderr and exit with ``code``;
    an open progress bar is closed first, so the error starts a line of its own (``tail -1`` of a log).
    A command asked for JSON that has printed none gets ``{"ok": false, "error", "exit_code"}`` on
    stdout too, so a script reading stdout always gets one document."""
    if _wants_json() and not _JSON["printed"]:
        echo_json({"ok": False, "error": _one_line(message), "exit_code": code})
    tqdm = sys.modules.get("tqdm")
    bars = list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ())
    for bar in bars:
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - only tidying the terminal
            pass
    if bars:
        click.echo("", err=True)
    click.echo(f"error: {printable(_one_line(message))}", err=True)
    sys.exit(code)


#: What torch.save says when the disk fills under it (its zip writer), not an OSError.
_TORCH_WRITE_FAILED = ("inline_container.cc", "PytorchStreamWriter failed writing", "unexpected pos")


def echo_text(text: object, err: bool = False) -> None:
    """Print a human-readable line that may hold catalogue text (item ids, collections, hrefs,
    error messages quoting them): control characters are escaped (:func:`rsir_stac.terminal.printable`),
    so a STAC id cannot set the terminal's title or print fake lines.  JSON output uses :func:`echo_json`."""
    click.echo(printable(text), err=err)


class PrintableFormatter(logging.Formatter):
    """Log lines with the control characters of their message escaped (the traceback that ``-v``
    adds is left as it is)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop), raised where Ctrl-C's KeyboardInterrupt is, so a
    terminated command cleans up as an interrupted one does: temporary output files removed, the
    index left as a re-run resumes it, one line and exit 143 (128 + 15)."""


def terminate_as_interrupt() -> None:
    """Handle SIGTERM as :class:`Terminated` in this process (main thread only; left alone where a
    handler is set already, e.g. ``serve``'s web server sets its own while it runs)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def handler(signum, frame):  # noqa: ARG001 - signal's signature
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def _rerun_advice() -> str:
    """What re-running the interrupted command does: ingest, reindex and labelled train resume from what
    they wrote (train only without --no-resume, which the helper trial re-ran as told: it started over);
    the others start again."""
    ctx = click.get_current_context(silent=True)
    name, params = (ctx.info_name, ctx.params) if ctx is not None else ("", {})
    if name in ("ingest", "reindex"):
        return f"re-run the same command: {name} resumes from what it wrote"
    if name == "train" and not params.get("unlabelled"):
        if params.get("no_resume"):
            return "re-run the same command without --no-resume: train resumes from its last checkpoint"
        return "re-run the same command: train resumes from its last checkpoint"
    return "re-run the same command (it starts again; nothing half-written was left)"


def handle_errors(fn):
    """One line on stderr and a non-zero exit for every error; ``-v`` adds the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        new_command()
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit, SystemExit):
            raise
        except KeyboardInterrupt as exc:
            what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
            _fail(f"{what}; {_rerun_advice()}", code)
        except BrokenPipeError:  # `... | head -1`: the reader has what it wanted; end as Unix tools do
            import os

            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            except OSError:
                pass
            sys.exit(141)  # 128 + SIGPIPE, what `cat` or `grep` give in a pipe closed early
        except RsirError as exc:
            if _verbosity() >= 1:
                click.echo(traceback.format_exc().rstrip(), err=True)
            _fail(as_typed(str(exc)), exc.exit_code)  # `-k 0` named as typed, not the library's `--limit 0`
        except OSError as exc:
            import errno
            from pathlib import Path

            from rsir_stac.atomic import output_error
            from rsir_stac.store.space import is_disk_full

            if exc.errno in (errno.EACCES, errno.EPERM):  # not damage, not a bug: this user's access
                if _verbosity() >= 1:
                    click.echo(traceback.format_exc().rstrip(), err=True)
                what = f" {exc.filename}" if exc.filename else ""
                _fail(f"permission denied:{what}; this user may not {'reach or read' if exc.filename else 'do this'}"
                      " it: give it access (e.g. as the owner, `chmod -R u+rwX` the folder and `chmod a+x` the "
                      "folders above it), or run as the user that owns it", 1)
            if exc.errno == errno.EROFS:
                if _verbosity() >= 1:
                    click.echo(traceback.format_exc().rstrip(), err=True)
                what = f" {exc.filename}" if exc.filename else ""
                _fail(f"read-only file system:{what} cannot be written; choose an output folder on a writable disk", 1)
            if not (is_disk_full(exc) or exc.errno == errno.EFBIG):
                raise
            if _verbosity() >= 1:
                click.echo(traceback.format_exc().rstrip(), err=True)
            # the file the error names (its folder and free space), else no folder is guessed
            err = output_error(exc, Path(exc.filename) if isinstance(exc.filename, str) else None)
            _fail(str(err or exc), 1)
        except Exception as exc:  # noqa: BLE001 - last resort: no traceback unless -v
            if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_FAILED):
                if _verbosity() >= 1:
                    click.echo(traceback.format_exc().rstrip(), err=True)
                _fail("writing a model file (a checkpoint or a bundle's weights, torch.save) failed part way, which "
                      "is how a full disk shows there: free space where --out is (a checkpoint takes ~45 MB, a "
                      "bundle ~10 MB) and re-run the same command (train resumes from its last checkpoint)", 1)
            if _verbosity() >= 1:
                click.echo(traceback.format_exc().rstrip(), err=True)
                _fail(f"unexpected {type(exc).__name__}: {exc}", 1)
            _fail(f"unexpected {type(exc).__name__}: {_one_line(exc)[:300]}; run with -v for the traceback", 1)

    return wrapper


def echo_json(obj, indent: int | None = None) -> None:
    """Print the command's JSON document on stdout (one per run: :func:`_fail` adds none after it)."""
    _JSON["printed"] = True
    click.echo(json.dumps(obj, default=str, indent=indent))


def qdrant_collection_option(fn):
    """``--qdrant-collection NAME`` [env RSIR_QDRANT_COLLECTION]: the collection a ``--qdrant-url``
    store opens (e.g. one ``reindex --to`` wrote).  The command runs within
    :func:`rsir_stac.store.using_collection`, so every store it opens uses that name."""

    @functools.wraps(fn)
    def run(*args, qdrant_collection=None, **kwargs):
        from click.core import ParameterSource

        from rsir_stac.store import using_collection

        ctx = click.get_current_context()
        typed = ctx.get_parameter_source("qdrant_collection") == ParameterSource.COMMANDLINE
        if typed and kwargs.get("index") is not None and not kwargs.get("qdrant_url"):
            raise click.UsageError(f"--qdrant-collection {qdrant_collection} names a collection of a Qdrant store "
                                   "(--qdrant-url); an embedded --index holds one: drop --qdrant-collection")
        with using_collection(qdrant_collection):
            return fn(*args, **kwargs)

    return click.option("--qdrant-collection", envvar="RSIR_QDRANT_COLLECTION", metavar="NAME",
                        callback=_collection_name,
                        help="Qdrant collection with --qdrant-url [env RSIR_QDRANT_COLLECTION; default "
                             "rsir_tiles], e.g. one `rsir-stac reindex --to` wrote.")(run)


def _collection_name(ctx, param, value):
    """Click callback: a Qdrant collection name (letters, digits, ``_ - .``; 1..255 characters)."""
    from rsir_stac.errors import InputError
    from rsir_stac.store import check_collection_name

    if value is None:
        return None
    try:
        check_collection_name(value)
    except InputError:
        raise click.BadParameter(f"{value!r} is not a collection name; use letters, digits, '_', '-' and '.' "
                                 "(e.g. rsir_tiles)") from None
    return value


def lasting_qdrant_url(ctx, param, value):
    """Click callback of ``--qdrant-url``: refuse qdrant-client's ``:memory:``, which a command's
    points would not outlive (the library's ``open_store(qdrant_url=":memory:")`` stays for tests)."""
    if value and value.strip() == ":memory:":
        raise click.BadParameter(":memory: keeps nothing after the command ends; give a Qdrant server URL or a "
                                 "folder for qdrant-client's local mode (e.g. --qdrant-url ./qdrant-local)")
    return value


def typed_index_over_env_url(fn):
    """An ``--index`` typed on the command line wins over ``RSIR_QDRANT_URL`` from the environment
    (an option typed beats a variable set once for every command, as in
    :func:`rsir_stac.store.open_store` and ``serve``); a note on stderr says the variable was left unused.
    ``--index`` and ``--qdrant-url`` both typed stay an error."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from click.core import ParameterSource

        ctx = click.get_current_context()
        if kwargs.get("index") is not None and kwargs.get("qdrant_url") \
                and ctx.get_parameter_source("qdrant_url") == ParameterSource.ENVIRONMENT:
            click.echo(f"note: --index {kwargs['index']} given, so RSIR_QDRANT_URL={kwargs['qdrant_url']} from the "
                       "environment is not used", err=True)
            kwargs["qdrant_url"] = None
            if "api_key" in kwargs and ctx.get_parameter_source("api_key") == ParameterSource.ENVIRONMENT:
                kwargs["api_key"] = None
        if kwargs.get("api_key") and not kwargs.get("qdrant_url") \
                and ctx.get_parameter_source("api_key") == ParameterSource.COMMANDLINE:
            click.echo("note: --api-key is for a Qdrant server (--qdrant-url); an embedded index has no "
                       "authentication, so it is not used", err=True)
        return fn(*args, **kwargs)

    return run


def store_options(fn):
    """--index / --qdrant-url / --qdrant-collection / --api-key, shared by every command that opens an index."""
    fn = qdrant_collection_option(fn)
    fn = typed_index_over_env_url(fn)  # outside: the collection check sees the URL it drops
    fn = click.option("--api-key", envvar="RSIR_QDRANT_API_KEY", help="Qdrant API key [env RSIR_QDRANT_API_KEY].")(fn)
    fn = click.option("--qdrant-url", envvar="RSIR_QDRANT_URL", callback=lasting_qdrant_url,
                      help="Qdrant server/cluster URL instead of the embedded index [env RSIR_QDRANT_URL].")(fn)
    fn = click.option("--index", "index", type=click.Path(file_okay=False),
                      help="Embedded index folder (default ./rsir-index).")(fn)
    return fn


def parse_bands(text: str | None) -> tuple[int, int, int] | None:
    """``--bands R,G,B`` (or one band, for grey) as 1-based band numbers; None when not given."""
    if not text:
        return None
    from rsir_stac.errors import InputError

    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        bands = ()
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise InputError(f"--bands {text!r} is invalid; give R,G,B band numbers (1-based), e.g. --bands 4,3,2")
    return bands * 3 if len(bands) == 1 else bands
