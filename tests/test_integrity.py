"""Damage detection (`rsir-stac check`), repair by re-running the ingest, and
snapshots, on real Qdrant Edge indexes built here and damaged on disk."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import StoreError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from rsir_stac.store import open_store
from rsir_stac.store.files import copy_tree_sparse
from rsir_stac.store.integrity import check_index, inspect_files
from rsir_stac.store.snapshot import restore, snapshot, verify_snapshot
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, native_gsd=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bundle):
    """(scenes, clean index folder, {id: (vector, payload)}) -- never modified by tests."""
    root = tmp_path_factory.mktemp("integrity")
    scenes = [str(make_geotiff(root / f"s{i}.tif", seed=i + 1)) for i in range(3)]
    idx = root / "clean"
    r = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert r.ok and r.points_written == 36
    return scenes, idx, _contents(idx)


def _contents(idx: Path) -> dict:
    with open_store(str(idx), read_only=True) as s:
        return {p.id: (p.vector, p.payload) for p in s.iter_points()}


@pytest.fixture()
def idx(tmp_path, built):
    dst = tmp_path / "idx"
    copy_tree_sparse(built[1], dst)
    return dst


def _segment(idx: Path) -> Path:
    segs = [p for p in (idx / "rsir_tiles" / "segments").iterdir() if any(p.glob("vector_storage/*/chunk_*.mmap"))]
    assert len(segs) == 1
    return segs[0]


def _chunk(idx: Path) -> Path:
    return _segment(idx) / "vector_storage" / "vectors" / "chunk_0.mmap"


def _overwrite(path: Path, offset: int, n: int, seed: int = 7) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())


def _damage(idx: Path, kind: str) -> None:
    if kind == "truncated":
        os.truncate(_chunk(idx), 100)
    elif kind == "deleted":
        _chunk(idx).unlink()
    elif kind == "random":
        _overwrite(_chunk(idx), 0, 2000)
    elif kind == "idtracker":
        (_segment(idx) / "mutable_id_tracker.mappings").unlink()
    elif kind == "descriptor":  # the engine cannot load the shard at all
        (_segment(idx) / "segment.json").unlink()
    elif kind == "payload":
        _overwrite(_segment(idx) / "payload_storage" / "page_0.dat", 0, 2000)
    elif kind == "idflip":  # as the trial did: 12 bytes in the id tracker's mappings (engine: "Corrupted ID tracker")
        with open(_segment(idx) / "mutable_id_tracker.mappings", "r+b") as fh:
            fh.seek(40)
            fh.write(bytes(range(1, 13)))
    elif kind == "idabort":  # 20 bytes XOR-ed: the engine allocates ~100 GB and aborts the process (SIGABRT)
        path = _segment(idx) / "mutable_id_tracker.mappings"
        data = bytearray(path.read_bytes())
        data[10:30] = bytes(x ^ 0xFF for x in data[10:30])
        path.write_bytes(bytes(data))
    elif kind == "walheader":  # random bytes at the start of the WAL ("Can't init WAL: Illegal segment header")
        _overwrite(idx / "rsir_tiles" / "wal" / "open-1", 0, 64)
    elif kind == "edgeconfig":  # a shard config cut short ("Failed to deserialize ... edge_config.json")
        cfg = idx / "rsir_tiles" / "edge_config.json"
        cfg.write_text(cfg.read_text()[:40])
    else:  # pragma: no cover
        raise AssertionError(kind)


#: damage -> (finding kinds check must report, a phrase its messages must contain)
EXPECTED = {
    "truncated": ({"file", "unreadable"}, "chunk_0.mmap (vector data) is 100 bytes"),
    "deleted": ({"file", "unreadable"}, "chunk_0.mmap (vector data) is missing"),
    "random": ({"vector"}, "vectors that differ from their digests"),
    "idtracker": ({"tracker", "lost"}, "mutable_id_tracker.mappings (the id tracker) is missing"),
    "payload": ({"unreadable"}, "cannot be read back"),
    "descriptor": ({"file", "engine"}, "segment.json is missing"),
    "idflip": ({"engine"}, "Corrupted ID tracker mapping storage"),
    "walheader": ({"engine"}, "WAL"),
    "edgeconfig": ({"engine"}, "edge_config.json"),
}


def _assert_equal_to_clean(idx: Path, clean: dict) -> None:
    got = _contents(idx)
    assert set(got) == set(clean)
    for pid, (vec, payload) in clean.items():
        assert got[pid][1] == payload
        np.testing.assert_allclose(got[pid][0], vec, rtol=0, atol=1e-3)


def test_clean_index_passes(idx, built):
    r = check_index(idx)
    assert r.ok, r.findings
    assert r.points == 36 and r.verified == 36 and r.unverified == 0 and r.ledger_points == 36
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 0, out.output
    assert "36 points, 36 verified" in out.output


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_check_names_damage_and_rerun_ingest_repairs(idx, built, tiny_bundle, kind):
    scenes, _, clean = built
    _damage(idx, kind)
    r = check_index(idx)
    kinds, phrase = EXPECTED[kind]
    assert not r.ok
    assert {f.kind for f in r.findings} == kinds, r.findings
    assert any(phrase in f.message for f in r.findings), r.findings
    cli = CliRunner().invoke(main, ["check", "--index", str(idx)])
    # (a load rewrites a deleted id tracker file, so a second check may name only the lost points)
    assert cli.exit_code == 1 and "damaged:" in cli.output and "error: index" in cli.output

    # the documented recovery: re-run the same ingest
    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and (rep.points_written > 0 or kind == "walheader")  # a damaged WAL alone: segments kept
    assert rep.points_written + rep.tiles_existing == 36
    after = check_index(idx)
    assert after.ok and after.points == 36 and after.verified == 36, after.findings
    _assert_equal_to_clean(idx, clean)
    with Index.open(str(idx), model=tiny_bundle) as index:
        pid = next(iter(clean))
        assert len(index.search(point_id=pid, k=5).hits) == 5


@pytest.mark.parametrize("kind", ["idflip", "edgeconfig", "idabort"])
def test_unloadable_shard_check_repair_sets_it_aside_then_ingest_rebuilds(idx, built, tiny_bundle, kind):
    """A shard the engine cannot load: `check` says so (not "0 points, 0 verified") with the ledger's
    count; `check --repair` sets it aside under a new timestamped name (an earlier one is kept), names
    what was lost and the fixes; the re-run ingest then rebuilds the index."""
    scenes, _, clean = built
    earlier = idx / ".rsir_tiles.damaged"  # set aside by an earlier repair: never replaced
    earlier.mkdir()
    (earlier / "keep").write_text("old")
    _damage(idx, kind)
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 1, out.output
    assert "cannot load its shard" in out.stdout and "records 36 points" in out.stdout, out.stdout
    assert "0 points, 0 verified" not in out.output
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: index {idx} cannot be loaded, so its 36 recorded points cannot be read")
    assert "--repair" in last and "re-run the ingest" in last and "restore SNAPSHOT" in last and "--force" in last

    fixed = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert "repaired: the shard the engine cannot load was moved to" in fixed.stderr, fixed.stderr
    assert "36 recorded points" in fixed.stderr and "re-run the ingest" in fixed.stderr
    assert (earlier / "keep").read_text() == "old"
    aside = sorted(idx.glob(".rsir_tiles.damaged-*"))
    assert len(aside) == 1 and (aside[0] / "segments").is_dir() and (aside[0] / "rsir_tiles.digests.sqlite").is_file()
    assert str(aside[0]) in fixed.stderr
    gone = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert gone.exit_code == 2 and aside[0].name in gone.output and "re-run the ingest" in gone.output

    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == 36
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, clean)
    # a second set-aside gets its own name
    _damage(idx, kind)
    assert CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"]).exit_code == 0
    assert len(list(idx.glob(".rsir_tiles.damaged-*"))) == 2 and (earlier / "keep").is_file()


def test_a_damaged_wal_is_set_aside_and_the_segments_kept(idx, built, tiny_bundle):
    """Random bytes over the WAL's header: the engine refuses the whole shard, and `check --repair`
    set all of it aside (every tile to embed again).  Now only the WAL is set aside and the
    segments, which hold every flushed point, load: nothing is re-embedded."""
    scenes, _, clean = built
    _damage(idx, "walheader")
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 1 and "cannot load its shard" in out.stdout, out.output
    fixed = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert "kept all 36 points" in fixed.stderr, fixed.stderr
    assert len(list(idx.glob(".rsir_tiles.wal.damaged-*"))) == 1 and not list(idx.glob(".rsir_tiles.damaged-*"))
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, clean)
    # the re-run ingest (the other documented fix) also keeps the segments
    _damage(idx, "walheader")
    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == 0 and rep.tiles_existing == 36
    assert len(list(idx.glob(".rsir_tiles.wal.damaged-*"))) == 2
    _assert_equal_to_clean(idx, clean)


def test_commands_on_an_unloadable_shard_name_the_fixes(idx, built):
    _damage(idx, "idflip")
    for args in (["info", "--index", str(idx)], ["search", "--index", str(idx), "--point-id", next(iter(built[2]))]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, r.output
        line = r.output.strip().splitlines()[-1]
        assert line.startswith(f"error: index {idx} cannot be loaded"), line
        assert f"rsir-stac check --index {idx} --repair" in line and "re-run the ingest" in line


def _migrate_into_new_collection_fails(idx: Path, tmp_path: Path, phrase: str) -> None:
    """migrate of a damaged index fails naming the repair and leaves no collection it created."""
    from rsir_stac.store.migrate import migrate
    from rsir_stac.store.server import ServerStore

    dst = ServerStore(str(tmp_path / "q"))
    try:
        with open_store(str(idx), read_only=True) as src, pytest.raises(StoreError) as ei:
            migrate(src, dst, batch_size=7)
        assert phrase in str(ei.value) and f"rsir-stac check --index {idx} --repair" in str(ei.value), ei.value
        assert dst.meta() is None and not dst.client.collection_exists("rsir_tiles")
    finally:
        dst.close()


def test_nan_read_back_from_the_store_is_storage_damage(idx, built, tmp_path, tiny_bundle):
    """8 bytes of 0xff in a vector chunk read back as NaN: export, search and migrate call that storage
    damage and name `check --repair` then the re-ingest (not "check the model output"); export writes
    no file."""
    with open(_chunk(idx), "r+b") as fh:
        fh.write(b"\xff" * 8)
    bad = [f for f in check_index(idx).findings if f.kind == "vector"]
    assert bad and bad[0].ids
    out = tmp_path / "all.parquet"
    m = ["--model", str(tiny_bundle.path)]
    r = CliRunner().invoke(main, ["export", "--index", str(idx), "--out", str(out), *m])
    assert r.exit_code == 1, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"error: index {idx} is damaged: the stored vector of point"), line
    assert f"rsir-stac check --index {idx} --repair" in line and "re-run the ingest" in line
    assert not out.exists() and not list(tmp_path.glob(".all*"))
    r = CliRunner().invoke(main, ["search", "--index", str(idx), "--point-id", bad[0].ids[0], "-k", "3", *m])
    assert r.exit_code == 1, r.output
    assert "is damaged" in r.output and "check the model output" not in r.output and "--repair" in r.output
    _migrate_into_new_collection_fails(idx, tmp_path, "NaN or infinite")


def test_payload_storage_damage_names_the_repair(idx, built, tmp_path, tiny_bundle):
    """Random bytes in a payload page: info, export and search fail with one line naming check --repair and
    the re-ingest (not the engine's bare "Failed to decode value ...; check the directory")."""
    _damage(idx, "payload")
    pid, m = sorted(built[2])[0], ["--model", str(tiny_bundle.path)]
    for args in (["info", "--index", str(idx)], ["export", "--index", str(idx), "--out", str(tmp_path / "p.csv"), *m],
                 ["search", "--index", str(idx), "--point-id", pid, "-k", "40", *m]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, (args, r.output)
        line = r.output.strip().splitlines()[-1]
        assert line.startswith(f"error: index {idx} is damaged:"), (args, line)
        assert f"rsir-stac check --index {idx} --repair" in line and "re-run the ingest" in line, line
        assert "check the directory or rebuild" not in line
    assert not (tmp_path / "p.csv").exists()
    _migrate_into_new_collection_fails(idx, tmp_path, "is damaged")


def test_undamaged_rerun_skips_everything(idx, built, tiny_bundle):
    rep = ingest(built[0], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.points_written == 0 and rep.tiles_existing == 36


def test_check_repair_then_rerun(idx, built, tiny_bundle):
    _damage(idx, "random")
    r = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert r.exit_code == 0, r.output
    assert "repaired: kept" in r.output
    mid = check_index(idx)
    assert mid.ok and mid.points < 36  # the damaged points were dropped
    rep = ingest(built[0], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.points_written == 36 - mid.points
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, built[2])


def test_info_warns_about_lost_points(idx, built, caplog):
    _damage(idx, "idtracker")
    r = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert r.exit_code == 0
    assert "is damaged" in caplog.text and "recorded points are missing" in caplog.text


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_missing_or_emptied_digests_fail_check(idx, built, how):
    """A deleted or emptied digest ledger is reported (nothing can be verified), exit 1, with the fix."""
    ledger = idx / "rsir_tiles.digests.sqlite"
    if how == "deleted":
        ledger.unlink()
    else:
        import sqlite3

        with sqlite3.connect(ledger) as db:
            db.execute("DELETE FROM points")
    r = check_index(idx)
    assert not r.ok and r.unverified == 36 and r.verified == 0
    assert [f.kind for f in r.findings] == ["digests"]
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 1, out.output
    state = "is missing" if how == "deleted" else "is empty"
    assert f"damaged: rsir_tiles.digests.sqlite (the digest ledger) {state}, so none of the 36 points" in out.stderr
    assert "re-run the ingest" in out.stderr and "--repair" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: index {idx} is damaged (1 finding(s) above)")
    # --repair records digests of the points as they read now; check then passes
    fixed = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert fixed.exit_code == 0, fixed.output
    r = check_index(idx)
    assert r.ok and r.verified == 36, r.findings
    _assert_equal_to_clean(idx, built[2])


def test_truncated_payload_file_is_named(idx, built, tiny_bundle):
    page = _segment(idx) / "payload_storage" / "page_0.dat"
    os.truncate(page, 4096)
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 1, out.output
    rel = page.relative_to(idx).as_posix()
    assert f"damaged: {rel} (payload data) is 4096 bytes, not 33554432: truncated" in out.stderr, out.stderr
    rep = ingest(built[0], index=str(idx), model=tiny_bundle, options=NATIVE)  # the documented recovery
    assert rep.ok
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, built[2])


def test_index_without_digests_is_unverified_and_reingested(idx, built, tiny_bundle):
    (idx / "rsir_tiles.digests.sqlite").unlink()  # an index from before digests
    r = check_index(idx)
    assert not r.ok and r.unverified == 36 and r.verified == 0
    rep = ingest(built[0], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.points_written == 36  # not trusted: embedded again, now with digests
    assert check_index(idx).verified == 36


def test_killed_before_first_flush_and_before_first_ledger_commit(tmp_path, built):
    """A writer killed before its first flush leaves segments without id tracker
    files (the WAL holds the points) and maybe a ledger file with no table yet:
    neither is damage."""
    import signal
    import subprocess
    import sys

    idx = tmp_path / "killed"
    code = ("import os, signal, uuid, numpy as np\n"
            "from rsir_stac.store import open_store\nfrom rsir_stac.store.base import Point\n"
            f"s = open_store({str(idx)!r}); s.ensure_collection(8, 'm')\n"
            "rng = np.random.default_rng(0)\n"
            "s.upsert([Point(str(uuid.uuid4()), rng.normal(size=8).astype('f4'), {'a': float(j)}) for j in range(20)])\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert r.returncode == -signal.SIGKILL
    rep = check_index(idx)
    assert rep.ok and rep.points == 20 and rep.verified == 20, rep.findings  # the ledger's WAL is read
    ledger = idx / "rsir_tiles.digests.sqlite"
    for extra in idx.glob("rsir_tiles.digests.sqlite-*"):
        extra.unlink()
    ledger.write_bytes(b"")  # killed between creating the ledger file and its first commit
    rep = check_index(idx)
    # nothing can be verified: reported (not as damaged vectors), with the fix
    assert [f.kind for f in rep.findings] == ["digests"] and rep.points == 20 and rep.unverified == 20
    with open_store(str(idx), read_only=True) as s:
        assert s.count() == 20


def test_empty_collection_passes(tmp_path):
    with open_store(str(tmp_path / "empty")) as s:
        s.ensure_collection(4, "m")
    assert inspect_files(tmp_path / "empty" / "rsir_tiles") == []
    assert check_index(tmp_path / "empty").ok


# ----------------------------------------------------------------------------- snapshots


def test_snapshot_restore_roundtrip_replaces_damaged_index(idx, built, tmp_path):
    snap = tmp_path / "backup.tar.gz"
    r = CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(idx)])
    assert r.exit_code == 0, r.output
    assert "36 points" in r.output and "verified" in r.output
    assert verify_snapshot(snap)["points"] == 36
    _damage(idx, "truncated")
    assert not check_index(idx).ok
    refused = CliRunner().invoke(main, ["restore", str(snap), "--index", str(idx)])
    assert refused.exit_code == 2 and "--force" in refused.output  # refused before any work
    ok = CliRunner().invoke(main, ["restore", str(snap), "--index", str(idx), "--force"])
    assert ok.exit_code == 0, ok.output
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, built[2])
    fresh = tmp_path / "fresh"
    rep = restore(snap, fresh)
    assert rep.points == 36 and check_index(fresh).ok
    # holes are kept: the restored folder takes about what the original does, not the apparent size
    from rsir_stac.store.space import tree_bytes

    assert tree_bytes(fresh, allocated=True) < tree_bytes(fresh, allocated=False) / 4


@pytest.mark.parametrize("kind", ["random", "payload", "truncated"])
def test_snapshot_refuses_a_damaged_index(idx, tmp_path, kind):
    """snapshot runs the check restore runs: a damaged index is refused (exit 1, one line naming
    check --repair and the re-ingest) and no archive is written, instead of a "verified" snapshot
    that restore then refuses."""
    _damage(idx, kind)
    snap = tmp_path / "d.tar.gz"
    r = CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(idx)])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: index {idx} is damaged ("), r.output
    assert f"rsir-stac check --index {idx} --repair" in lines[0] and "re-run the ingest" in lines[0]
    assert "verified" not in r.output
    assert not snap.exists() and not list(tmp_path.glob(".d.tar.gz*"))
    # once repaired (and re-ingested), the snapshot is taken and restores
    assert CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"]).exit_code == 0
    ok = CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(idx)])
    assert ok.exit_code == 0, ok.output
    assert restore(snap, tmp_path / "back").points == check_index(idx).points


def _rewrite_member(src: Path, dst: Path, name_part: str) -> None:
    """Copy a snapshot, flipping bytes in the first member whose name contains name_part."""
    import io

    with tarfile.open(src, "r:gz") as ti, tarfile.open(dst, "w:gz") as to:
        done = False
        for m in ti:
            data = ti.extractfile(m).read()
            if not done and name_part in m.name and len(data) > 16:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                done = True
            to.addfile(m, io.BytesIO(data))
        assert done


def test_restore_refuses_damaged_or_truncated_snapshot(idx, tmp_path):
    snap = tmp_path / "s.tar.gz"
    snapshot(idx, snap)
    bad = tmp_path / "bad.tar.gz"
    _rewrite_member(snap, bad, "mutable_id_tracker.mappings")
    with pytest.raises(StoreError, match="does not match its checksum"):
        restore(bad, tmp_path / "r1")
    assert not (tmp_path / "r1").exists() and not (tmp_path / ".r1.restoring").exists()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(snap.read_bytes()[: snap.stat().st_size // 2])
    r = CliRunner().invoke(main, ["restore", str(cut), "--index", str(tmp_path / "r2")])
    assert r.exit_code == 2 and "use another copy" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "r2").exists()


def test_snapshot_of_index_in_use_is_refused(idx, tmp_path):
    from rsir_stac.errors import IndexInUseError
    import subprocess
    import sys

    code = ("import sys,time; from rsir_stac.store import open_store\n"
            f"s=open_store({str(idx)!r}); print('ready', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(IndexInUseError):
            snapshot(idx, tmp_path / "s.tar.gz")
        assert not (tmp_path / "s.tar.gz").exists()
    finally:
        p.kill()
        p.wait()



def test_snapshot_refuses_unknown_extension_and_existing_archive(idx, tmp_path):
    r = CliRunner().invoke(main, ["snapshot", str(tmp_path / "backup.zip"), "--index", str(idx)])
    assert r.exit_code == 2 and not (tmp_path / "backup.zip").exists()
    assert r.output.strip() == (f"error: snapshot path {tmp_path / 'backup.zip'} has no known extension; name it "
                                "backup.tar.gz (a snapshot is a gzip-compressed tar)")
    snap = tmp_path / "backup.tgz"
    assert CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(idx)]).exit_code == 0
    before = snap.read_bytes()
    r = CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(idx)])
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    assert len(r.output.strip().splitlines()) == 1 and snap.read_bytes() == before
    r = CliRunner().invoke(main, ["snapshot", str(snap), "--index", str(idx), "--force"])
    assert r.exit_code == 0, r.output
    assert verify_snapshot(snap)["points"] == 36


def test_missing_index_and_snapshot_exit_2(tmp_path):
    """Bad input refused before any work exits 2 (the documented contract)."""
    import json

    nope = tmp_path / "nope"
    for args in (["info", "--index", str(nope)], ["check", "--index", str(nope)],
                 ["snapshot", str(tmp_path / "s.tar.gz"), "--index", str(nope)],
                 ["restore", str(tmp_path / "missing.tar.gz"), "--index", str(tmp_path / "r")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.output
        # stdout: nothing, or for a command whose output is always JSON (info) the failure as one document
        assert r.stdout == "" or json.loads(r.stdout)["ok"] is False and args[0] == "info", r.output
    assert not nope.exists() and not (tmp_path / "r").exists()


def test_index_in_use_exits_1(idx, tmp_path, built, tiny_bundle):
    """A run that cannot start because another process holds the index is a failure of the run (exit 1)."""
    import json

    with open_store(str(idx)):  # this process holds it (as an ingest would)
        for args in (["check", "--index", str(idx)], ["snapshot", str(tmp_path / "s.tar.gz"), "--index", str(idx)]):
            r = CliRunner().invoke(main, args)
            assert r.exit_code == 1 and "is already open in this process" in r.output, r.output
        # ingest --json prints its report on stdout whatever the exit code, the run's own failure included
        r = CliRunner().invoke(main, ["ingest", built[0][0], "--index", str(idx), "--model", str(tiny_bundle.path),
                                      "--tile-size", "64", "--native-gsd", "--json"])
        assert r.exit_code == 1, r.output
        doc = json.loads(r.stdout)
        assert doc["ok"] is False and "is already open in this process" in doc["error"] and doc["exit_code"] == 1
        assert doc["points_written"] == 0
        assert r.stderr.strip().splitlines()[-1].startswith("error: index")


def _location_index_values(idx: Path) -> np.memmap:
    """The engine's geo index values of the one segment (lon, lat float64 pairs)."""
    pages = list(_segment(idx).glob("payload_index/*-location-map/page_0.dat"))
    if not pages:
        pytest.skip("this engine version lays out its geo index differently")
    return np.memmap(pages[0], dtype=np.float64, mode="r+")


def _bbox_hits(idx: Path, bbox) -> set[str]:
    from rsir_stac.store import SearchFilter

    with open_store(str(idx), read_only=True) as s:
        return {h.id for h in s.search(np.zeros(s.meta().dim, np.float32), k=1000, flt=SearchFilter(bbox=bbox))}


def test_a_modified_geo_index_is_found_and_rebuilt(idx, built):
    """The engine's payload-index files carry no digests: check probes them with the verified
    payloads (a filter on each sampled point's own values must find it), and --repair rebuilds
    them.  Before, filtered searches answered wrongly and check passed."""
    payloads = built[2]
    lons = [p["location"]["lon"] for _, p in payloads.values()]
    lats = [p["location"]["lat"] for _, p in payloads.values()]
    area = (min(lons) - 0.01, min(lats) - 0.01, max(lons) + 0.01, max(lats) + 0.01)
    assert _bbox_hits(idx, area) == set(payloads)
    values = _location_index_values(idx)
    n = len(payloads)
    values[0:2 * n:2] += 20.0  # every longitude in the index moved 20 degrees east; payloads intact
    values.flush()
    del values
    assert _bbox_hits(idx, area) != set(payloads)  # the damage this test is about: wrong filtered results
    rep = check_index(idx)
    assert not rep.ok and any(f.kind == "payload_index" and "location index" in f.message for f in rep.findings)
    r = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert "repaired" in r.output, r.output
    assert check_index(idx).ok and _bbox_hits(idx, area) == set(payloads)


def test_an_unreadable_geo_index_is_one_line_and_repairable(idx, built):
    """A value the engine refuses (latitude 1000) made every command end in a Rust panic."""
    values = _location_index_values(idx)
    values[1] = 1000.0
    values.flush()
    del values
    r = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert r.exit_code != 0 and "check --index" in r.output.strip().splitlines()[-1] and "--repair" in r.output
    rep = check_index(idx)
    assert not rep.ok and "payload index files" in rep.findings[-1].message
    r = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert "repaired" in r.output, r.output
    rep = check_index(idx)
    assert rep.ok and rep.points == len(built[2]), rep.findings


@pytest.mark.parametrize("how", ["deleted", "cut short"])
def test_lost_metadata_is_read_back_from_the_points(idx, built, tiny_bundle, how):
    """rsir_tiles.meta.json deleted or cut short: search still knows the model (from the stored
    payloads, whose digests check verifies), check names it, and --repair writes it again.
    Before, check passed while search named an empty model, or no command could fix it."""
    meta = idx / "rsir_tiles.meta.json"
    if how == "deleted":
        meta.unlink()
    else:
        meta.write_text('{"rsir_stac": {"dim": 16, "mod')
    pid = next(iter(built[2]))
    r = CliRunner().invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--point-id", pid,
                                  "-k", "2", "--format", "json"])
    assert r.exit_code == 0, r.output
    rep = check_index(idx)
    assert [f.kind for f in rep.findings] == ["meta"] and "--repair" in rep.findings[0].message
    r = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert "repaired" in r.output, r.output
    assert check_index(idx).ok and tiny_bundle.model_id in meta.read_text()


@pytest.mark.parametrize("crash_after", [1, 3, 4, 5])  # moves: 3 old files out, then the new ones in
def test_restore_killed_during_its_swap_leaves_one_whole_index(idx, built, tmp_path, tiny_bundle, monkeypatch,
                                                              crash_after):
    """restore --force swaps three files; a crash between the moves used to leave the old shard in
    a hidden folder and a half-new index.  The next open puts the index from before back."""
    import rsir_stac.store.snapshot as snapmod

    other = tmp_path / "other"
    r = ingest(built[0][:1], index=str(other), model=tiny_bundle, options=NATIVE)
    assert r.ok and r.points_written == 12
    snap = tmp_path / "other.tar.gz"
    snapshot(other, snap)
    moves = []
    real = os.replace

    def crashing(a, b):
        real(a, b)
        moves.append(b)
        if len(moves) == crash_after:
            raise KeyboardInterrupt("killed")  # what is on disk now is what a kill -9 leaves

    monkeypatch.setattr(snapmod.os, "replace", crashing)
    with pytest.raises(KeyboardInterrupt):
        restore(snap, idx, force=True)
    monkeypatch.setattr(snapmod.os, "replace", real)
    rep = check_index(idx)  # the open undoes the half-done swap
    assert rep.ok and rep.points == 36, rep.findings
    assert not (idx / ".rsir_tiles.replaced").exists()
    _assert_equal_to_clean(idx, built[2])
    restore(snap, idx, force=True)  # and the restore can simply be run again
    assert check_index(idx).points == 12


def test_payload_index_probe_has_no_false_alarm(tmp_path):
    """Fractional epoch seconds (datetime keeps microseconds), antimeridian and polar centres,
    points without a date or collection: an intact index passes the probe."""
    import uuid

    from rsir_stac.store import Point
    from rsir_stac.store.integrity import index_findings

    rng = np.random.default_rng(2)
    pts = []
    for i in range(300):
        lon, lat = float(rng.uniform(-180, 180)), float(rng.uniform(-89.9, 89.9))
        if i % 50 == 0:
            lon = 179.9999999 if i % 100 == 0 else -180.0
        payload = {"location": {"lon": lon, "lat": lat}, "item_id": f"s{i % 7}", "model_id": "m"}
        if i % 3:
            payload.update(collection=f"c{i % 2}", datetime_epoch=1.6e9 + i + 0.123456789,
                           datetime_end_epoch=1.6e9 + i + 0.123456789)
        pts.append(Point(str(uuid.UUID(int=i + 1)), rng.normal(size=4).astype(np.float32), payload))
    with open_store(tmp_path / "idx") as s:
        s.ensure_collection(4, "m")
        s.upsert(pts)
        assert index_findings(s, sorted(p.id for p in pts), probes=300) == []


def test_metadata_that_disagrees_with_the_shard_is_found_and_rewritten(idx, built, tiny_bundle):
    meta = idx / "rsir_tiles.meta.json"
    meta.write_text(meta.read_text().replace(f'"dim": {tiny_bundle.dim}', '"dim": 3'))
    rep = check_index(idx)
    assert [f.kind for f in rep.findings] == ["meta"] and "3-d" in rep.findings[0].message
    r = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert "repaired: kept all 36 points" in r.output, r.output
    assert check_index(idx).ok and f'"dim": {tiny_bundle.dim}' in meta.read_text()


def test_a_time_index_that_holds_points_where_they_are_not_is_found(tmp_path):
    """Times moved later in the engine's date index: a filter just after a point's time found it
    (wrong hits) while every point was still found by its own time.  The probe looks beside too."""
    import uuid

    from rsir_stac.store import Point

    pts = [Point(str(uuid.UUID(int=i + 1)), np.full(4, i, np.float32),
                 {"location": {"lon": 10.0 + i * 0.01, "lat": 45.0}, "item_id": "s", "model_id": "m",
                  "datetime_epoch": 1.6e9 + i, "datetime_end_epoch": 1.6e9 + i}) for i in range(40)]
    idx = tmp_path / "idx"
    with open_store(idx) as s:
        s.ensure_collection(4, "m")
        s.upsert(pts)
    assert check_index(idx).ok
    seg = [p for p in (idx / "rsir_tiles" / "segments").iterdir() if any(p.glob("payload_index/*datetime-numeric"))]
    pages = [f for sg in seg for f in sg.glob("payload_index/*-datetime-numeric/page_0.dat")]
    if len(pages) != 2:
        pytest.skip("this engine version lays out its numeric indexes differently")
    for page in pages:
        values = np.memmap(page, dtype=np.float64, mode="r+")
        values[values != 0] += 3.15e8  # ten years later
        values.flush()
        del values
    rep = check_index(idx)
    assert any(f.kind == "payload_index" and "datetime_epoch" in f.message for f in rep.findings), rep.findings
    CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert check_index(idx).ok


def test_a_broken_index_link_is_named(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for args in (["info"], ["check"], ["search", "--at", "0,0"]):
        r = CliRunner().invoke(main, [*args, "--index", str(tmp_path / "a")])
        assert r.exit_code != 0 and "symbolic link" in r.output.strip().splitlines()[-1], r.output


# ----------------------------------------------------------------- re-check 20: leftovers, silent damage, records


def _half_repair(idx: Path) -> Path:
    """What `check --repair` killed while building its new shard leaves: a hidden `.rsir_tiles.repairing/`
    (edge_config.json, segments/, wal/, an engine `.atomicwrite` temp folder), never used by the index."""
    tmp = idx / ".rsir_tiles.repairing"
    copy_tree_sparse(idx / "rsir_tiles", tmp)
    (tmp / ".atomicwrite1234").mkdir()
    return tmp


def test_a_killed_repair_leaves_a_folder_that_check_names_and_writers_remove(idx, built, tiny_bundle):
    scenes = built[0]
    _damage(idx, "random")
    tmp = _half_repair(idx)
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 1
    assert f"note: {idx}/.rsir_tiles.repairing was left by a process killed while it repaired" in out.stderr, out.stderr
    assert tmp.is_dir()  # check only reads
    CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert tmp.is_dir()  # nor does info
    fixed = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert not tmp.exists() and "removed: .rsir_tiles.repairing" in fixed.stderr, fixed.stderr
    assert sorted(p.name for p in idx.iterdir() if p.name.startswith(".rsir")) == []

    # a clean index: check exits 0 with the note; the next ingest removes the folder
    tmp = _half_repair(idx)
    assert ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE).ok
    assert not tmp.exists()
    _half_repair(idx)
    out = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert out.exit_code == 0 and "note:" in out.stderr and ".rsir_tiles.repairing" in out.stderr, out.output
    fixed = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert fixed.exit_code == 0 and not tmp.exists() and "removed: .rsir_tiles.repairing" in fixed.stderr


def test_a_repair_killed_between_its_renames_is_finished_by_the_next_open(idx, built):
    """The rebuilt shard was complete (marker written) and the old one moved out, but the new one not yet
    moved in: the next command puts it in place and removes the old one."""
    clean = built[2]
    old = idx / ".rsir_tiles.damaged-20260101T000000Z"
    copy_tree_sparse(idx / "rsir_tiles", idx / ".rsir_tiles.repairing")
    os.replace(idx / "rsir_tiles", old)
    (idx / ".rsir_tiles.repair-swap").write_text(old.name + "\n")
    r = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert r.exit_code == 0, r.output
    assert not old.exists() and not (idx / ".rsir_tiles.repairing").exists()
    assert not (idx / ".rsir_tiles.repair-swap").exists()
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, clean)


def _nan_one_vector(idx: Path) -> None:
    with open(_chunk(idx), "r+b") as fh:  # as the re-check did: 8 bytes of 0xff (one 2-d vector) read as NaN
        fh.seek(40)
        fh.write(b"\xff" * 8)


def test_a_damaged_vector_is_not_silent_outside_check(idx, built, tiny_bundle, caplog):
    """A vector reading back as NaN: a search the engine answers short (it leaves such points out) warns;
    after a `check` found it, `info` warns that points fail their digests; after `check --repair` drops it,
    a later `check` and `info` say the point dropped by the repair is still missing until the ingest is
    re-run, and then they say nothing."""
    import logging

    scenes, _, clean = built
    _nan_one_vector(idx)
    bad = [f for f in check_index(idx).findings if f.kind == "vector"]
    assert bad and len(bad[0].ids) == 1
    good = next(p for p in sorted(clean) if p != bad[0].ids[0])
    caplog.set_level(logging.WARNING)
    with open_store(str(idx), read_only=True) as s:
        hits = s.search(np.asarray(clean[good][0], np.float32), k=36, exact=True)
    assert len(hits) == 35
    assert "the search returned 35 hits, but 36 points match" in caplog.text, caplog.text
    assert "rsir-stac check --index" in caplog.text

    caplog.clear()
    r = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert r.exit_code == 0
    assert "1 points failed their digests at the last `rsir-stac check`" in caplog.text, caplog.text
    assert "--repair" in caplog.text

    fixed = CliRunner().invoke(main, ["check", "--index", str(idx), "--repair"])
    assert fixed.exit_code == 0 and "dropped 1" in fixed.stderr, fixed.output
    later = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert later.exit_code == 0, later.output
    assert "note: 1 point(s) dropped by a repair on" in later.stderr and "re-run the ingest" in later.stderr
    caplog.clear()
    assert CliRunner().invoke(main, ["info", "--index", str(idx)]).exit_code == 0
    assert "1 point(s) dropped by a repair on" in caplog.text, caplog.text

    assert ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE).points_written == 1
    after = CliRunner().invoke(main, ["check", "--index", str(idx)])
    assert after.exit_code == 0 and "note:" not in after.stderr, after.output
    caplog.clear()
    assert CliRunner().invoke(main, ["info", "--index", str(idx)]).exit_code == 0
    assert "dropped by a repair" not in caplog.text and "failed their digests" not in caplog.text
    _assert_equal_to_clean(idx, clean)


def test_a_failed_migrate_into_a_new_folder_leaves_no_folder(idx, built, tmp_path, tiny_bundle):
    _nan_one_vector(idx)
    target = tmp_path / "newq"
    r = CliRunner().invoke(main, ["migrate", "--index", str(idx), "--qdrant-url", str(target)])
    assert r.exit_code == 1, r.output
    assert "is damaged" in r.output.strip().splitlines()[-1]
    assert not target.exists(), sorted(p.name for p in target.iterdir())
    kept = tmp_path / "kept"  # a folder that existed is left (only the collection migrate created goes)
    kept.mkdir()
    r = CliRunner().invoke(main, ["migrate", "--index", str(idx), "--qdrant-url", str(kept)])
    assert r.exit_code == 1 and kept.is_dir()
