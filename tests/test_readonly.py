"""An index on read-only media (a read-only bind mount made here) can be
searched, inspected, checked and served; writing to it fails with one line.
Skipped where bind mounts are not permitted (root ignores permission bits, so
``chmod -R a-w`` would prove nothing)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from rsir_stac.store import open_store
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, native_gsd=True)


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.relpath(os.path.join(dirpath, f), root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture()
def ro_index(tmp_path, tiny_bundle):
    """(read-only mount of an index, the writable original); the original has no .lock file."""
    src = tmp_path / "src"
    scenes = [str(make_geotiff(tmp_path / f"s{i}.tif", seed=i + 1)) for i in range(2)]
    assert ingest(scenes, index=str(src), model=tiny_bundle, options=NATIVE).points_written == 24
    (src / ".lock").unlink()  # as an index baked into an image would be shipped
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({r.stderr.strip() or 'mount failed'}); the read-only tests need root")
    r = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True)
    try:
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only ({r.stderr.strip()})")
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")  # really read-only, even for root
        yield ro, src
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_search_info_check_on_read_only_index(ro_index, tiny_bundle):
    ro, src = ro_index
    before = _listing(src)
    r = CliRunner().invoke(main, ["info", "--index", str(ro)])
    assert r.exit_code == 0, r.output
    assert '"count": 24' in r.output
    with Index.open(str(ro), model=tiny_bundle) as idx:
        some = next(idx.store.iter_points())
        res = idx.search(point_id=some.id, k=5)
        assert len(res.hits) == 5
    r = CliRunner().invoke(main, ["check", "--index", str(ro)])
    assert r.exit_code == 0 and "24 points, 24 verified" in r.output, r.output
    # nothing was created or changed, no lock file in particular
    assert _listing(src) == before
    assert not (src / ".lock").exists()


def test_serve_read_only_index(ro_index, tiny_bundle):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    ro, src = ro_index
    before = _listing(src)
    idx = Index.open(str(ro), model=tiny_bundle, read_only=True)
    try:
        client = TestClient(create_app(idx), base_url="http://127.0.0.1:8000")
        info = client.get("/api/info")
        assert info.status_code == 200 and info.json()["count"] == 24
        # two readers at once: a read-only index takes no lock
        with open_store(str(ro), read_only=True) as other:
            assert other.count() == 24
    finally:
        idx.close()
    assert _listing(src) == before


def test_writing_to_read_only_index_is_one_line(ro_index, tiny_bundle, tmp_path):
    ro, _ = ro_index
    scene = str(make_geotiff(tmp_path / "new.tif", seed=9))
    r = CliRunner().invoke(main, ["ingest", scene, "--index", str(ro), "--model", str(tiny_bundle.path),
                                  "--tile-size", "64", "--native-gsd"])
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "writable --index" in last, r.output


def test_snapshot_of_read_only_index_then_restore(ro_index, tmp_path):
    """snapshot only reads: on read-only media it takes no lock (none can be created there) and
    checks a private copy; the archive restores to the same index."""
    from rsir_stac.store.integrity import check_index
    from rsir_stac.store.snapshot import restore

    ro, src = ro_index
    before = _listing(src)
    snap = tmp_path / "ro.tar.gz"
    r = CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(ro)])
    assert r.exit_code == 0, r.output
    assert "24 points" in r.output
    assert _listing(src) == before and not (src / ".lock").exists()
    rep = restore(snap, tmp_path / "back")
    assert rep.points == 24 and check_index(tmp_path / "back").ok


def test_errors_on_read_only_media_name_the_index_not_the_private_copy(ro_index, tmp_path, monkeypatch):
    """The engine's message about a damaged file quotes the index's own path, not the private copy
    (``$RSIR_TMPDIR/rsir-ro-.../rsir_tiles/edge_config.json``) it was loaded from."""
    ro, src = ro_index
    cfg = src / "rsir_tiles" / "edge_config.json"
    cfg.write_text(cfg.read_text()[:40])  # the mount shows the original's bytes
    private = tmp_path / "private"
    private.mkdir()
    monkeypatch.setenv("RSIR_TMPDIR", str(private))
    for args in (["info", "--index", str(ro)], ["snapshot", str(tmp_path / "x.tar.gz"), "--index", str(ro)]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, r.output
        line = r.output.strip().splitlines()[-1]
        assert str(private) not in line and "rsir-ro-" not in line, line
        # the file, relative to the index the line names (the engine's paths are shown that way)
        assert f"index {ro} " in line and " rsir_tiles/edge_config.json" in line, line


def test_an_output_on_read_only_media_is_called_read_only(ro_index, tiny_bundle):
    """Adaptation trial: export to a read-only mount said "permission denied", another cause."""
    ro, _ = ro_index
    from rsir_stac.atomic import check_output_dir, check_output_path
    from rsir_stac.errors import InputError

    for check, target in ((check_output_path, ro / "x.parquet"), (check_output_dir, ro / "out")):
        with pytest.raises(InputError, match=r"\(read-only file system\); choose a writable"):
            check(target)
