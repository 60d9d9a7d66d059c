"""Fixes from the twenty-ninth session's operator trial: a file replaced in place under the same name
is embedded again (its old vectors were kept as "already indexed"), and SIGTERM is handled as Ctrl-C
is (a terminated command left temporary files and no --json report, exit 143 without a word)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from tests.conftest import make_geotiff

REPO = Path(__file__).resolve().parents[1]
OPTS = IngestOptions(tile_size=64, gsd=None, native_gsd=True)


def _vectors(path: Path, bundle) -> dict[str, np.ndarray]:
    with Index.open(str(path), model=bundle) as idx:
        return {p.id: p.vector for p in idx.store.iter_points(with_vectors=True)}


def test_a_file_replaced_in_place_is_embedded_again(tmp_path, tiny_bundle):
    tif = make_geotiff(tmp_path / "scene.tif", width=128, height=128, seed=1)
    idx = tmp_path / "idx"
    first = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert first.points_written == 4
    before = _vectors(idx, tiny_bundle)
    again = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert again.points_written == 0 and again.tiles_existing == 4 and not again.items_changed  # idempotent
    make_geotiff(tmp_path / "new.tif", width=128, height=128, seed=9)  # same grid, other pixels
    os.replace(tmp_path / "new.tif", tif)
    changed = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert changed.points_written == 4 and changed.tiles_existing == 0, changed
    assert len(changed.items_changed) == 1
    after = _vectors(idx, tiny_bundle)
    assert set(after) == set(before)  # the same ids: no copies
    assert all(not np.allclose(after[i], before[i]) for i in before)  # the new pixels' vectors
    settled = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert settled.points_written == 0 and settled.tiles_existing == 4 and not settled.items_changed


def test_sigterm_is_handled_as_ctrl_c(tmp_path, tiny_bundle):
    tif = make_geotiff(tmp_path / "big.tif", width=2048, height=2048, seed=3)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "rsir_stac.cli", "-v", "ingest", str(tif), "--index", str(tmp_path / "idx"),
           "--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen = ""
    t0 = time.time()
    while "started" not in seen and time.time() - t0 < 120:  # the run is under way (tiles being embedded)
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("error: terminated (SIGTERM); re-run the same command"), err[-2000:]
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["exit_code"] == 143
    done = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                  options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))  # the re-run resumes
    assert done.ok and done.points_written + done.tiles_existing == 1024


def test_restore_force_onto_a_held_index_says_nothing_is_replaced(tmp_path, tiny_bundle, caplog):
    """Operator trial 3: the "points are replaced (no copy of them is kept)" warning came before the
    index lock was tried, so a refused restore claimed to destroy data it never touched."""
    import logging

    import pytest

    from rsir_stac.errors import IndexInUseError
    from rsir_stac.store import open_store
    from rsir_stac.store.snapshot import restore, snapshot

    tif = make_geotiff(tmp_path / "scene.tif", width=128, height=128, seed=1)
    ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=OPTS)
    snapshot(tmp_path / "idx", tmp_path / "s.tar.gz")
    with open_store(tmp_path / "idx"), caplog.at_level(logging.WARNING):  # held, as by an ingest
        with pytest.raises(IndexInUseError):
            restore(tmp_path / "s.tar.gz", tmp_path / "idx", force=True)
    assert not [r for r in caplog.records if "are replaced" in r.getMessage()], caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        restore(tmp_path / "s.tar.gz", tmp_path / "idx", force=True)
    assert [r for r in caplog.records if "are replaced by the snapshot's 4 points" in r.getMessage()], caplog.text


def test_check_notes_an_unfinished_index(tmp_path, tiny_bundle):
    """Operator trial 9: `check` called an interrupted reindex's target healthy without a word."""
    from rsir_stac.store import open_store
    from rsir_stac.store.integrity import check_index

    tif = make_geotiff(tmp_path / "scene.tif", width=128, height=128, seed=1)
    ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=OPTS)
    assert not [n for n in check_index(tmp_path / "idx").notes if "unfinished" in n]
    with open_store(tmp_path / "idx") as store:
        store.mark_unfinished("a reindex from /somewhere, started 2026-12-06")
    report = check_index(tmp_path / "idx")
    assert report.ok and any("is unfinished" in n and "rsir-stac reindex" in n for n in report.notes), report.notes


def test_every_json_command_prints_one_document_on_failure(tmp_path, tiny_bundle):
    """Operator trial 4: `check --json`, `reindex --json` and `search --format json` printed nothing on
    stdout when they failed (ingest and evaluate printed {"ok": false, ...}); a script got no document."""
    from click.testing import CliRunner

    from rsir_stac.cli import main

    missing = str(tmp_path / "nope")
    cases = [["check", "--index", missing, "--json"],
             ["reindex", "--index", missing, "--to", str(tmp_path / "to"), "--json"],
             ["search", "--index", missing, "--at", "1,2", "--format", "json"],
             ["classify", "--labels", str(tmp_path / "labels.geojson"), "--index", missing, "--out",
              str(tmp_path / "hits.geojson"), "--json"]]
    for args in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0, (args, r.output)
        doc = json.loads(r.stdout)
        assert doc["ok"] is False and doc["exit_code"] == r.exit_code and doc["error"], (args, r.stdout)
        assert r.stderr.startswith("error: "), (args, r.stderr)
    tif = make_geotiff(tmp_path / "scene.tif", width=128, height=128, seed=1)
    r = CliRunner().invoke(main, ["ingest", str(tif), "--index", str(tmp_path / "idx"), "--model", str(tiny_bundle.path),
                                  "--tile-size", "64", "--native-gsd", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["exit_code"] == 0, r.output
    r = CliRunner().invoke(main, ["check", "--index", str(tmp_path / "idx"), "--json"])
    assert r.exit_code == 0 and len(r.stdout.strip().splitlines()) == 1 and json.loads(r.stdout)["points"] == 4


def test_a_closed_stdout_ends_quietly_with_141(tmp_path, tiny_bundle):
    """Operator trial 5: `info | true` exited 1 (and printed Python's exception-ignored lines)."""
    tif = make_geotiff(tmp_path / "scene.tif", width=128, height=128, seed=1)
    ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=OPTS)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "info", "--index", str(tmp_path / "idx")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "error:" not in err, err


def test_a_moved_file_ingested_anew_is_warned_about(tmp_path, tiny_bundle, caplog):
    """Operator trial 7: a moved or renamed raster became a second copy of itself without a word."""
    import logging

    (tmp_path / "a").mkdir()
    tif = make_geotiff(tmp_path / "a" / "scene.tif", width=128, height=128, seed=1)
    ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=OPTS)
    (tmp_path / "b").mkdir()
    moved = tmp_path / "b" / "renamed.tif"
    os.replace(tif, moved)
    with caplog.at_level(logging.WARNING):
        report = ingest([str(moved)], index=str(tmp_path / "idx"), model=tiny_bundle, options=OPTS)
    assert report.points_written == 4  # documented: a new item (its id holds the path)
    warned = [r.getMessage() for r in caplog.records if "looks like" in r.getMessage()]
    assert len(warned) == 1 and str(tif) in warned[0] and "--relocate" in warned[0], caplog.text
    caplog.clear()
    other = make_geotiff(tmp_path / "b" / "other.tif", width=128, height=128, seed=2, origin=(600000.0, 3300000.0))
    with caplog.at_level(logging.WARNING):
        ingest([str(other)], index=str(tmp_path / "idx"), model=tiny_bundle, options=OPTS)
    assert not [r for r in caplog.records if "looks like" in r.getMessage()]  # elsewhere: nothing to say


def test_a_changed_file_leaves_no_old_tile_behind(tmp_path, tiny_bundle):
    """Re-check 1 and 2: a killed re-embedding left old vectors that the next run took as indexed (only
    the first tile's stamp was compared), and a new file with fewer valid windows kept the old tiles
    of the now-empty part."""
    from rsir_stac.store import open_store
    from tests.conftest import write_raster

    tif = make_geotiff(tmp_path / "scene.tif", width=256, height=128, seed=1)
    idx = tmp_path / "idx"
    assert ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS).points_written == 8
    old = _vectors(idx, tiny_bundle)
    make_geotiff(tmp_path / "new.tif", width=256, height=128, seed=9)
    os.replace(tmp_path / "new.tif", tif)
    # a re-embedding killed after its first tiles: the first half of the windows carry the new stamp
    from rsir_stac.ingest.points import file_stamp
    from rsir_stac.stac.scene import SceneRef

    stamp = file_stamp(SceneRef("x", None, "data", str(tif)))
    with open_store(idx) as store:
        pts = sorted(store.iter_points(with_vectors=True), key=lambda p: (p.payload["grid"]["row_off"],
                                                                         p.payload["grid"]["col_off"]))
        from rsir_stac.store import Point

        store.upsert([Point(p.id, p.vector, {**p.payload, "file_stamp": stamp}) for p in pts[:4]])
    rerun = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert rerun.items_changed and rerun.points_written == 8, rerun
    new = _vectors(idx, tiny_bundle)
    assert set(new) == set(old) and all(not np.allclose(new[i], old[i]) for i in old)
    # a new file whose right half is nodata: its tiles there are gone, not kept from before
    data = np.full((3, 128, 256), 90, np.uint8)
    data[:, :, :128] = np.random.default_rng(4).integers(20, 235, (3, 128, 128))
    data[:, :, 128:] = 0
    from rasterio.transform import from_origin

    write_raster(tmp_path / "half.tif", data, nodata=0, transform=from_origin(500000.0, 3300000.0, 1.0, 1.0))
    os.replace(tmp_path / "half.tif", tif)
    half = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert half.items_changed and half.points_written == 4, half
    with open_store(idx, read_only=True) as store:
        assert store.count() == 4


def test_delete_in_both_back_ends(tmp_path):
    import uuid

    from rsir_stac.store import Point, open_store

    ids = [str(uuid.UUID(int=i + 1)) for i in range(3)]
    pts = [Point(i, np.full(4, n, np.float32), {"item_id": "x"}) for n, i in enumerate(ids)]
    for kw in ({"path": tmp_path / "edge"}, {"qdrant_url": ":memory:"}):
        with open_store(kw.get("path"), qdrant_url=kw.get("qdrant_url")) as store:
            store.ensure_collection(4, "m")
            store.upsert(pts)
            store.delete(ids[:2] + [str(uuid.UUID(int=99))])  # one never stored: ignored
            assert store.count() == 1 and [h.id for h in store.retrieve(ids[2:])] == ids[2:], kw
            assert store.existing_ids(ids) == set(ids[2:]), kw
    from rsir_stac.store.integrity import check_index

    assert check_index(tmp_path / "edge").ok  # the digests of deleted points went with them


def test_a_killed_writes_partial_file_goes_with_the_next_write(tmp_path):
    """Re-check (operator 2): after SIGKILL, `export` left `.out.XXXX.tmp.csv` (25 MB) that no later run removed."""
    from rsir_stac.atomic import atomic_output

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".out.{dead.pid}.k3j9.tmp.csv"
    left.write_text("partial")
    alive = tmp_path / f".out.{os.getppid()}.q1w2.tmp.csv"   # a writer still running: not ours to touch
    alive.write_text("in progress")
    other = tmp_path / f".other.{dead.pid}.zz.tmp.csv"       # another file's partial: left
    other.write_text("x")
    with atomic_output(tmp_path / "out.csv") as tmp:
        assert f".out.{os.getpid()}." in tmp.name
        tmp.write_text("a,b\n")
    assert (tmp_path / "out.csv").read_text() == "a,b\n"
    assert not left.exists() and alive.exists() and other.exists()
