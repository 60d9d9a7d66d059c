"""A full disk: every command ends with one `disk full` line (never SIGBUS),
the index stays intact, and the free-space estimates use real statvfs figures
of small tmpfs mounts made here (skipped where mounting is not permitted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rsir_stac.errors import DiskFullError
from rsir_stac.store import space
from tests.conftest import make_geotiff

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _mount_tmpfs(where: Path, size_mb: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}); "
                    "the disk-full tests need root and mount permission")


@pytest.fixture()
def tmpfs(tmp_path):
    """Factory: mount a tmpfs of SIZE MB under tmp_path; unmounted afterwards."""
    mounted: list[Path] = []

    def make(name: str, size_mb: int) -> Path:
        d = tmp_path / name
        _mount_tmpfs(d, size_mb)
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(fs: Path, leave: int = 0) -> Path:
    """Fill the file system, leaving about ``leave`` bytes free."""
    filler = fs / "filler"
    free = space.free_bytes(fs)
    with open(filler, "wb") as fh:
        left = max(0, free - leave)
        block = b"\xff" * MiB
        try:
            while left > 0:
                left -= fh.write(block[: min(MiB, left)])
        except OSError:
            pass
    return filler


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a child process: a SIGBUS must not take pytest down with it."""
    return subprocess.run([sys.executable, "-m", "rsir_stac.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


def _one_disk_full_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr)  # not 135 (SIGBUS) nor -7
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: disk full: "), r.stderr
    assert "Traceback" not in r.stderr
    line = lines[0]
    assert "needs about" in line and ("is intact" in line or "is untouched" in line
                                      or "nothing was written (no index was there yet)" in line)
    return line


# ----------------------------------------------------------------------------- estimates


def test_estimates_against_real_statvfs(tmpfs, tmp_path):
    fs = tmpfs("small", 8)
    st = os.statvfs(fs)
    assert space.free_bytes(fs) == st.f_bavail * st.f_frsize
    assert 7 * MiB < space.free_bytes(fs / "not" / "yet") <= 8 * MiB  # nearest existing parent
    assert space.fs_type(fs) == "tmpfs" and space.populates_mmaps(fs)
    # a collection on tmpfs needs more than 8 MB: refused with the figures in the message
    with pytest.raises(DiskFullError) as exc:
        space.require_free(fs, space.create_bytes(fs), "creating a collection")
    msg = str(exc.value)
    assert msg.startswith(f"disk full: {fs} has ") and "needs about 41.9 MB" in msg
    assert "nothing was written (no index was there yet)" in msg  # a folder without an index: none to be intact
    space.require_free(fs, 4 * MiB, "a small write")  # fits: no error
    _fill(fs, leave=1 * MiB)
    with pytest.raises(DiskFullError):
        space.require_free(fs, 4 * MiB, "a small write")
    # write estimates grow with points and dimension, and keep a chunk of headroom on tmpfs
    assert space.write_bytes(64, 32, 64_000) < space.write_bytes(64, 128, 64_000)
    assert space.write_bytes(64, 32, 64_000, memfs=True) - space.write_bytes(64, 32, 64_000) == space.CHUNK_BYTES


def test_is_disk_full_recognises_errno_and_engine_text():
    import errno

    assert space.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert space.is_disk_full(Exception("Service runtime error: IO Error: No space left on device (os error 28)"))
    assert not space.is_disk_full(OSError(errno.EACCES, "Permission denied"))


# ----------------------------------------------------------------------------- commands on a full disk


@pytest.fixture()
def rasters(tmp_path):
    return [str(make_geotiff(tmp_path / f"s{i}.tif", seed=i + 1)) for i in range(3)]


def test_commands_on_a_full_tmpfs_end_with_one_line(tmpfs, tiny_bundle, rasters, tmp_path):
    fs = tmpfs("disk", 128)
    idx = fs / "idx"
    model = str(tiny_bundle.path)
    opts = ["--model", model, "--tile-size", "64", "--native-gsd"]

    # a new index on a file system without room for a collection: refused before any work, nothing created
    filler = _fill(fs, leave=20 * MiB)
    r = _cli("ingest", rasters[0], "--index", str(idx), *opts)
    assert "creating a collection" in _one_disk_full_line(r)
    assert not idx.exists()  # not even the folder with its lock file

    # room for the first scene; then the disk fills up
    filler.unlink()
    r = _cli("ingest", rasters[0], "--index", str(idx), *opts)
    assert r.returncode == 0, r.stderr
    filler = _fill(fs, leave=0)
    r = _cli("ingest", rasters[1], "--index", str(idx), *opts)
    _one_disk_full_line(r)

    # read-only commands still work: the index is searched from a private copy in the system temp folder
    r = _cli("info", "--index", str(idx))
    assert r.returncode == 0 and '"count": 12' in r.stdout, r.stderr
    r = _cli("search", "--at", "-93,29.8", "--index", str(idx), "--model", model)
    assert r.returncode in (0, 2), r.stderr  # 2: no tile there (the location is arbitrary); never a crash
    # ...and when the temp folder is full too, they say so
    r = _cli("info", "--index", str(idx), env={"RSIR_TMPDIR": str(fs)})
    assert "private copy" in _one_disk_full_line(r)
    # a snapshot onto the full disk leaves no partial file
    r = _cli("snapshot", str(fs / "s.tar.gz"), "--index", str(idx))
    _one_disk_full_line(r)
    assert not list(fs.glob("*.tar.gz*")) and not list(fs.glob(".s.tar.gz*"))

    # the data is intact, and after freeing space the same command finishes the job
    r = _cli("check", "--index", str(idx))
    assert r.returncode == 0 and "12 points, 12 verified" in r.stdout, r.stderr
    filler.unlink()
    r = _cli("ingest", rasters[1], "--index", str(idx), *opts)
    assert r.returncode == 0, r.stderr
    r = _cli("check", "--index", str(idx))
    assert r.returncode == 0 and "24 points, 24 verified" in r.stdout, r.stderr


def test_ingest_stops_cleanly_when_the_disk_fills_mid_run(tmpfs, tiny_bundle, rasters):
    """Room to open and create, not for a chunk of vectors: the first write is refused."""
    fs = tmpfs("mid", 96)
    idx = fs / "idx"
    model = str(tiny_bundle.path)
    opts = ["--model", model, "--tile-size", "64", "--native-gsd"]
    r = _cli("ingest", rasters[0], "--index", str(idx), *opts)
    assert r.returncode == 0, r.stderr
    used = space.tree_bytes(idx)
    _fill(fs, leave=space.open_bytes(idx / "rsir_tiles") + 4 * MiB)
    r = _cli("ingest", *rasters, "--index", str(idx), *opts)
    line = _one_disk_full_line(r)
    assert "writing" in line or "opening" in line
    assert space.tree_bytes(idx) < used + 40 * MiB
    (fs / "filler").unlink()
    r = _cli("check", "--index", str(idx))
    assert r.returncode == 0, r.stderr + r.stdout


def test_a_new_index_refused_after_its_collection_was_created_leaves_nothing(tmpfs, tiny_bundle, rasters):
    """Room to create the collection but not to write the first batch: the disk-full refusal
    comes after the collection was created, and the run, which wrote nothing, leaves no folder."""
    fs = tmpfs("after", 96)
    idx = fs / "idx"
    opts = ["--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd"]
    _fill(fs, leave=space.create_bytes(fs) + 2 * MiB)
    r = _cli("ingest", rasters[0], "--index", str(idx), *opts)
    assert "writing" in _one_disk_full_line(r)
    assert not idx.exists(), sorted(p.name for p in idx.iterdir())


def test_an_ingest_that_cannot_create_the_shard_leaves_no_folder(tmp_path, tiny_bundle, rasters):
    """A file size limit (ulimit -f) makes the engine fail creating the WAL (FileTooLarge): the new
    index folder is removed again (no .lock, .rsir_tiles.creating or rsir_tiles.meta.json left);
    an existing folder is kept, only the half-made shard goes."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    idx = tmp_path / "new"
    args = [sys.executable, "-m", "rsir_stac.cli", "ingest", rasters[0], "--index", str(idx),
            "--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit)
    assert r.returncode == 1, (r.returncode, r.stderr)
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: index {idx}: creating the Edge shard failed (File too large)"), line
    # the real cause and the fix that works -- not `check`, which has no index to look at
    assert "file-size limit, `ulimit -f` 1024" in line and "ulimit -f unlimited" in line, line
    assert "rsir-stac check" not in line and "FileTooLarge" not in line
    assert not idx.exists(), sorted(p.name for p in idx.iterdir())

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    args[args.index(str(idx))] = str(kept)
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert (kept / "notes.txt").read_text() == "mine"
    assert not (kept / ".rsir_tiles.creating").exists() and not (kept / "rsir_tiles").exists()


def test_restore_onto_a_full_disk_says_disk_full_and_the_space_needed(tmpfs, tiny_bundle, rasters, tmp_path):
    """A restore that does not fit: one `disk full` line with the space it needs (not "cannot restore
    ... choose a writable --index"); nothing is left on the target file system."""
    idx = tmp_path / "idx"
    r = _cli("ingest", rasters[0], "--index", str(idx), "--model", str(tiny_bundle.path), "--tile-size", "64",
             "--native-gsd")
    assert r.returncode == 0, r.stderr
    snap = tmp_path / "s.tar.gz"
    assert _cli("snapshot", str(snap), "--index", str(idx)).returncode == 0
    fs = tmpfs("restore", 64)
    _fill(fs, leave=MiB)
    r = _cli("restore", str(snap), "--index", str(fs / "back"))
    line = _one_disk_full_line(r)
    assert f"restoring {snap} into {fs / 'back'} needs about" in line, line
    assert "choose a writable" not in line and "the index is untouched" in line
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]
