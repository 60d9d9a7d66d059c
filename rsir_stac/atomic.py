"""Write files whole or not at all: to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rsir_stac.errors import InputError, RsirError

log = logging.getLogger(__name__)


class OutputError(RsirError, OSError):
    """An output file could not be written (a file-size limit, a file system that takes no file
    that large); nothing was left at its path."""

    exit_code = 1


class ReplaceError(OutputError):
    """An existing output file cannot be replaced (an immutable file, a read-only bind mount): the user
    must make it writable or choose another path, so it exits 2 as a folder that cannot be written in
    does, whether it is found before any work (:func:`check_output_path`) or only when the output is
    renamed into place."""

    exit_code = 2


#: Linux's ioctl that reads a file's attribute flags (``lsattr``), and its immutable and append-only flags.
_FS_IOC_GETFLAGS, _FS_FIXED_FLAGS = 0x80086601, 0x00000010 | 0x00000020


def _fixed_file(target: Path) -> bool:
    """Whether the existing regular file ``target`` is marked immutable or append-only (``chattr +i``/``+a``;
    BSD and macOS ``chflags uchg``), so no rename can replace it; False when that cannot be told."""
    import stat

    try:
        st = os.stat(target)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    flags = getattr(st, "st_flags", None)  # BSD, macOS
    if flags is not None:
        fixed = (getattr(stat, n, 0) for n in ("UF_IMMUTABLE", "SF_IMMUTABLE", "UF_APPEND", "SF_APPEND"))
        return bool(flags & sum(fixed))
    try:
        import fcntl

        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        try:
            buf = bytearray(8)
            fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
        finally:
            os.close(fd)
    except (OSError, ImportError):  # not Linux, a file system without flags, an unreadable file
        return False
    return bool(int.from_bytes(buf[:4], sys.byteorder) & _FS_FIXED_FLAGS)


#: Free bytes below which a failed write of an output file is taken for a full disk, whatever the
#: writer's error says (GDAL's FlatGeobuf driver reports "Unexpected I/O failure").
FULL_BELOW = 1 << 20


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` (``.NAME.partial-PID``); on success it is
    renamed onto ``path`` (absent or an empty folder), on any error removed, so ``path`` is
    never a half-written folder.  Partial folders of dead processes are removed first.

    Raises InputError when ``path`` is a folder that is not empty.
    """
    import shutil

    target = Path(path).expanduser()
    if target.is_symlink() and target.is_dir():  # a link to a folder: write the folder it names
        target = target.resolve()
    if target.is_dir() and any(target.iterdir()):
        raise InputError(f"{target} is a folder that is not empty; choose another path or empty it")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):  # left by a killed run
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        if target.is_dir():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _missing_folder(folder: Path, name: str) -> InputError:
    """The error for an output folder that is not a folder: a file (or under one), or missing."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return InputError((f"output folder {folder} is a file, not a folder" if probe == folder else
                           f"output folder {folder} cannot be made: {probe} is a file, not a folder")
                          + f"; choose another path for {name}")
    return InputError(f"output folder {folder} does not exist; create it or choose another path for {name}")


def _not_writable(folder: Path) -> str:
    """Why ``folder``, which ``os.access`` refuses for writing, is not writable: a read-only file
    system (access(2) answers the same for it as for missing permission), else permission."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def check_output_path(path: str | Path, what: str | None = None) -> Path:
    """Refuse, before any work, an output whose folder is missing or not writable (InputError
    naming ``what`` or the file); returns the path.  :func:`atomic_output` checks the same."""
    target = Path(path).expanduser()
    folder = target.parent if str(target.parent) else Path(".")
    name = f"{what} {target}" if what else target.name
    if not folder.is_dir():
        raise _missing_folder(folder, name)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in {folder} ({_not_writable(folder)}); choose a writable path for {name}")
    try:  # os.access says yes to root everywhere: /proc, /sys and read-only mounts take no new file
        fd, probe = tempfile.mkstemp(prefix=".rsir-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = "no file can be created there" if exc.errno == errno.ENOENT else (exc.strerror or exc)
        raise InputError(f"cannot write in {folder} ({why}); choose a writable path for {name}") from None
    if _fixed_file(target):
        raise ReplaceError(f"{target} cannot be replaced (it is marked immutable or append-only); nothing was "
                           f"written: make it writable (e.g. chattr -i {target}) or choose another path for {name}")
    return target


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: the same resolved path, or (both existing) the same inode (a hard
    link, a bind mount)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: What each input option's file is, in a refusal to write over it ("your --within area file").
_INPUT_FILES = {"--labels": "--labels label file", "--within": "--within area file", "--image": "--image example image",
                "--not-image": "--not-image example image"}


def _input_file(option: str) -> str:
    """The file an input ``option`` names, as a refusal says it: ``--within area file``, else ``OPTION file``."""
    return _INPUT_FILES.get(option, f"{option} file")


def check_distinct_outputs(outputs: list[tuple[str, str | Path | None]],
                           inputs: list[tuple[str, str | Path | None]] = ()) -> None:
    """Refuse, before any work, an output that is another output or one of the run's inputs (InputError,
    exit 2): ``--labels hits.geojson --out hits.geojson`` would replace the analyst's labels with the
    results, and ``--stac`` on ``--out`` the export with its own description.  ``outputs`` and ``inputs``
    are ``(option, path)`` pairs (``None`` paths skipped); paths are compared resolved (symbolic links,
    ``..``) and by inode, so a hard link to an input counts as the input."""
    outs = [(what, Path(p).expanduser()) for what, p in outputs if p]
    ins = [(what, Path(p).expanduser()) for what, p in inputs if p]
    for i, (what, path) in enumerate(outs):
        for other, theirs in outs[:i]:
            if _same_file(path, theirs):
                raise InputError(f"{what} {path} is the file {other} writes too, so one would replace the other; "
                                 f"give {what} another path")
        for other, theirs in ins:
            if _same_file(path, theirs):
                raise InputError(f"{what} {path} is the file read as {other}, so writing it would replace your "
                                 f"{_input_file(other)}; give {what} another path")


def check_output_dir(path: str | Path, what: str | None = None) -> Path:
    """Refuse, before any work, an output folder that cannot be made or written (InputError
    naming ``what`` or the folder): one that is a file, or under a file, or whose nearest
    existing folder is not writable, or takes no new entry when tried (``/proc``, ``/sys``, a read-only
    mount, where ``os.access`` says yes to root).  Leaves nothing behind; returns the path."""
    target = Path(path).expanduser()
    name = f"{what} {target}" if what else str(target)
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == target:
            raise InputError(f"{name} is a file, not a folder; choose a folder path (or remove the file)")
        raise InputError(f"output folder {target} cannot be made: {probe} is a file, not a folder; "
                         f"choose another path for {name}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in {probe} ({_not_writable(probe)}); choose a writable path for {name}")
    try:  # os.access says yes to root everywhere: /proc, /sys and read-only mounts take no new entry
        os.rmdir(tempfile.mkdtemp(prefix=".rsir-probe-", dir=probe))
    except OSError as exc:
        why = "no file can be created there" if exc.errno == errno.ENOENT else (exc.strerror or exc)
        raise InputError(f"cannot write in {probe} ({why}); choose a writable folder for {name}") from None
    return target


def _remove_dead_partials(folder: Path, target: Path) -> None:
    """Remove the temporary files of ``target`` (``.<stem>.<pid>.<random>.tmp<suffix>``, regular files
    only) whose writer process is gone: what a write killed with SIGKILL left (its own clean-up never
    ran).  A writer still alive, or one of another user, is left alone; so are files of other names."""
    import glob
    import re
    import stat

    pat = re.compile(rf"\.{re.escape(target.stem)}\.(\d+)\.[^/]*\.tmp{re.escape(target.suffix)}")
    for name in glob.glob(glob.escape(str(folder / f".{target.stem}.")) + f"*.tmp{glob.escape(target.suffix)}"):
        m = pat.fullmatch(os.path.basename(name))
        if m is None:
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another user's: PermissionError below)
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, OSError):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(name).st_mode):
                os.unlink(name)
                log.info("removed %s, left by a write that was killed (process %d is gone)", name, pid)


def _temp_beside(target: Path) -> Path:
    """A free temporary name in ``target``'s folder (``.STEM.PID.xxxx.tmp.EXT``: a later write of the same
    file removes what a killed writer left, :func:`_remove_dead_partials`); no file is left there.  Raises
    InputError when the folder is missing or takes no new file."""
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise _missing_folder(folder, target.name)
    _remove_dead_partials(folder, target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}.", suffix=f".tmp{target.suffix}", dir=folder)
    except OSError as exc:
        # ENOENT for a folder that exists: a pseudo file system (/proc, /sys) where no file can be made
        why = "no file can be created there" if exc.errno == errno.ENOENT else exc.strerror
        raise InputError(f"cannot write in {folder} ({why}); choose a writable path for {target.name}") from None
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL, Parquet) create the file themselves
    return Path(tmp)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is fsynced and
    renamed onto ``path``, on any error removed (``path`` is never half-written).

    Raises InputError when the folder does not exist or is not writable.
    """
    target = Path(path).expanduser()
    tmp_path = _temp_beside(target)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        try:
            os.replace(tmp_path, target)
        except OSError as exc:   # the error names the temporary file: name the target, and what to do
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise ReplaceError(f"{target} cannot be replaced ({exc.strerror or exc}); it is as it was: make it "
                              "writable (an immutable or read-only mounted file cannot be), or give another "
                              "path") from None
    except BaseException as exc:
        err = output_error(exc, target, tmp_path) if isinstance(exc, Exception) else None
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if err is not None:
            raise err from exc
        raise


class OutputSet:
    """Several output files written as one: each is written to a temporary file beside it
    (:meth:`stage`), and only when every one is written are they renamed onto their paths
    (:meth:`commit`); a failure anywhere, a target that cannot be replaced included, removes every
    temporary file and leaves every target as it was.  Use as a context manager: the ``with`` block
    writes, a clean exit commits.  The staged files' folders must be on one file system each with
    their targets (they are: a staged file lies beside its target)."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, path: str | Path) -> Path:
        """A temporary path beside ``path`` (in its folder, named as :func:`atomic_output` names them)
        to write ``path``'s content to.  Raises InputError when the folder is missing or not writable."""
        target = Path(path).expanduser()
        if target.is_dir():
            raise InputError(f"{target} is a folder; give a file path for {target.name}")
        tmp = _temp_beside(target)
        self._staged.append((target, tmp))
        return tmp

    def staged_path(self, path: str | Path) -> Path:
        """The temporary file staged for ``path`` (to read back what was written); KeyError if none."""
        target = Path(path).expanduser()
        for t, tmp in self._staged:
            if t == target:
                return tmp
        raise KeyError(str(path))

    def commit(self) -> None:
        """fsync every staged file, move the targets that exist aside (a target that cannot be moved, an
        immutable or read-only mounted file, fails here, before any target changed), rename each staged
        file onto its target and remove the old ones; on a failure the old targets are put back.  Raises
        OutputError naming the target that could not be replaced (no output of the set is then written)."""
        staged, self._staged = self._staged, []
        moved: list[tuple[Path, Path]] = []     # (target, where its old file is)
        placed: list[Path] = []
        try:
            for _, tmp in staged:
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            for target, tmp in staged:
                if os.path.lexists(target):
                    aside = tmp.with_name(tmp.name + ".old")
                    try:
                        os.replace(target, aside)
                    except OSError as exc:
                        raise ReplaceError(f"{target} cannot be replaced ({exc.strerror or exc}); nothing of this run "
                                          "was written: make it writable (an immutable or read-only mounted file "
                                          "cannot be), or give another path") from None
                    moved.append((target, aside))
            for target, tmp in staged:
                os.replace(tmp, target)
                placed.append(target)
        except BaseException:
            for target in placed:
                with contextlib.suppress(OSError):
                    target.unlink()
            for target, aside in moved:
                with contextlib.suppress(OSError):
                    os.replace(aside, target)
            for _, tmp in staged:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise
        for _, aside in moved:
            with contextlib.suppress(OSError):
                aside.unlink()

    def discard(self) -> None:
        """Remove every staged temporary file (the targets are left as they were)."""
        for _, tmp in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.commit()
            return
        partial = self._staged[-1] if self._staged else None
        self.discard()
        if isinstance(exc, Exception) and partial is not None:
            err = output_error(exc, partial[0], None)
            if err is not None:
                raise err from exc


def written_to(path: str | Path, outputs: OutputSet | None = None):
    """The context a writer writes ``path`` in: alone, :func:`atomic_output`; as one file of ``outputs``,
    its staged temporary file (renamed with the others when the set commits)."""
    return atomic_output(path) if outputs is None else contextlib.nullcontext(outputs.stage(path))


def output_error(exc: BaseException, target: Path | None, partial: Path | None = None) -> RsirError | None:
    """The one-line error for a failed write of the output file ``target`` when the cause is its
    file system or this process's limits, else None: a full disk (``ENOSPC``/``EDQUOT``, or any
    writer error while fewer than :data:`FULL_BELOW` bytes are free there) names the output's
    folder and its free space after the partial file is removed; a file over the file-size limit
    (``EFBIG``, ``ulimit -f``) names the limit.  ``partial``: the temporary file being written
    (its size tells a file-size limit that a writer reported otherwise).  ``target`` None: a file
    that is not known (an OSError without a file name), told only by its errno."""
    import errno

    from rsir_stac.store.space import free_bytes, is_disk_full

    if isinstance(exc, RsirError):
        return None
    if target is None:
        if not (is_disk_full(exc) or isinstance(exc, OSError) and exc.errno == errno.EFBIG):
            return None
        return _unnamed_error(exc)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        size = partial.stat().st_size if partial is not None and partial.exists() else 0
    except OSError:
        size = 0
    limit = _file_size_limit()
    too_large = (isinstance(exc, OSError) and exc.errno == errno.EFBIG) or "File too large" in str(exc) \
        or (limit is not None and size >= limit)
    if too_large:
        from rsir_stac.store.space import human

        if limit is not None:
            return OutputError(f"{target}: writing it failed (File too large): this process may not write files over "
                               f"{human(limit)} (its file-size limit, `ulimit -f` {limit // 1024}); raise the limit "
                               "(`ulimit -f unlimited`) and re-run the same command (no partial file was left)")
        return OutputError(f"{target}: writing it failed (File too large): the file system under {folder} takes no "
                           "file that large; write it to another file system (no partial file was left)")
    try:
        full = is_disk_full(exc) or free_bytes(folder) < FULL_BELOW
    except OSError:
        full = is_disk_full(exc)
    if not full:
        return None
    from rsir_stac.store.space import disk_full

    if partial is not None:  # the free space the message quotes is the folder's without the partial file
        with contextlib.suppress(OSError):
            partial.unlink()
    return disk_full(folder, f"writing {target.name}", intact="no partial file was left")


def _unnamed_error(exc: BaseException) -> RsirError:
    """A full disk or a file-size limit hit while writing a file the error does not name."""
    from rsir_stac.errors import DiskFullError
    from rsir_stac.store.space import human

    why = getattr(exc, "strerror", None) or str(exc)
    limit = _file_size_limit()
    if getattr(exc, "errno", None) == 27:  # EFBIG
        if limit is not None:
            return OutputError(f"writing a file failed ({why}): this process may not write files over {human(limit)} "
                               f"(its file-size limit, `ulimit -f` {limit // 1024}); raise the limit (`ulimit -f "
                               "unlimited`) and re-run the same command")
        return OutputError(f"writing a file failed ({why}): its file system takes no file that large; write to "
                           "another file system and re-run the same command")
    return DiskFullError(f"disk full: writing a file failed ({why}); free space on the file system of the output "
                         "(or choose another location) and re-run the same command")


def _file_size_limit() -> int | None:
    """This process's file-size limit in bytes (``ulimit -f``), or None when there is none."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)
