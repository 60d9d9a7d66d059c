"""Defects a second storage trial found on real Qdrant Edge indexes (built here from seeded
GeoTIFFs, damaged as the trial damaged them)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rsir_stac.cli import main
from tests.test_space import tmpfs  # noqa: F401 - fixture
from tests.test_integrity import (  # noqa: F401 - fixtures
    _assert_equal_to_clean,
    _segment,
    built,
    idx,
)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_segment_that_lost_its_version_file_is_never_deleted(idx, built):
    """Finding 1: a segment without its 5-byte version.info was deleted, points and all, by the
    first command that opened the index -- ``info``, ``search`` and even ``check``.  Now every open
    refuses before the engine loads it, and ``check --repair`` writes the file back."""
    seg = _segment(idx)
    (seg / "version.info").unlink()
    files = sorted(p.relative_to(seg) for p in seg.rglob("*"))
    pid = next(iter(built[2]))
    for args in (["info", "--index", idx], ["search", "--point-id", pid, "--index", idx], ["check", "--index", idx]):
        r = _cli(*args)
        assert r.exit_code == 1, r.output
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and f"check --index {idx} --repair" in line, r.output
        assert "version.info" in r.output
        assert seg.is_dir() and sorted(p.relative_to(seg) for p in seg.rglob("*")) == files  # nothing deleted
    r = _cli("check", "--index", idx, "--repair")
    assert r.exit_code == 0, r.output
    segs = list((idx / "rsir_tiles" / "segments").iterdir())
    assert segs and all((s / "version.info").read_text() == "0.6.0" for s in segs)
    r = _cli("check", "--index", idx)
    assert r.exit_code == 0 and f"{len(built[2])} verified" in r.stdout, r.output
    _assert_equal_to_clean(idx, built[2])


def test_an_empty_stray_folder_in_segments_is_still_left_to_the_engine(idx, built):
    """A folder with no descriptor and no data is not a lost segment: opening goes on as before."""
    (idx / "rsir_tiles" / "segments" / "stray").mkdir()
    r = _cli("info", "--index", idx)
    assert r.exit_code == 0, r.output
    assert Path(idx / "rsir_tiles" / "segments").is_dir()


def test_a_snapshot_never_writes_through_a_planted_link(idx, built, tmp_path):
    """Finding 3: ``snapshot DIR/n.tar.gz`` wrote to the predictable ``DIR/.n.tar.gz.partial``,
    following a link another user planted there (a shared backup folder): the link's target was
    overwritten.  Now the archive goes to a new file of a random name, then is renamed."""
    import os
    import stat

    shared = tmp_path / "backups"
    shared.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (shared / ".n.tar.gz.partial").symlink_to(victim)
    r = _cli("snapshot", shared / "n.tar.gz", "--index", idx)
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious"
    out = shared / "n.tar.gz"
    assert out.is_file() and not out.is_symlink()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # the mode a plain open() gives
    assert sorted(p.name for p in shared.iterdir()) == [".n.tar.gz.partial", "n.tar.gz"]  # no temp file left
    # a partial archive a killed snapshot left (its process gone) goes with the next snapshot of that name;
    # another user's file of that pattern, or a link, stays
    dead = shared / ".n.tar.gz.999999999.abc.partial"
    dead.write_bytes(b"half")
    link = shared / ".n.tar.gz.999999998.abc.partial"
    link.symlink_to(victim)
    assert _cli("snapshot", shared / "n.tar.gz", "--index", idx, "--force").exit_code == 0
    assert not dead.exists() and link.is_symlink() and victim.read_text() == "precious"
    restored = tmp_path / "restored"
    assert _cli("restore", out, "--index", restored).exit_code == 0
    _assert_equal_to_clean(restored, built[2])


def test_a_changed_stored_vector_is_never_searched_from_or_copied(idx, built, tmp_path, tiny_bundle):
    """Finding 2: 4 bytes of one stored vector changed on disk (still finite): a search by that
    point found tiles of another scene at distance ~9 with exit 0, and migrate and export copied
    the vector; only check and snapshot noticed.  Each read of vectors now checks their digests."""
    import numpy as np

    from rsir_stac.store.integrity import check_index
    from tests.test_integrity import _chunk

    chunk = _chunk(idx)
    data = bytearray(chunk.read_bytes())
    first = next(i for i in range(0, len(data), 4) if any(data[i:i + 4]))  # the first stored float
    off = first + 4
    value = np.frombuffer(bytes(data[off:off + 4]), np.float32)[0]
    data[off:off + 4] = np.float32(value + 3.0).tobytes()  # finite, but not what was written
    chunk.write_bytes(bytes(data))
    bad = [f for f in check_index(idx).findings if f.ids]
    assert bad, "the damage is not where the test thought"
    pid = bad[0].ids[0]
    model = ["--model", tiny_bundle.path]
    r = _cli("search", "--point-id", pid, "--index", idx, *model)
    assert r.exit_code == 1 and "is not the one written" in r.output and pid in r.output, r.output
    target = tmp_path / "q"
    r = _cli("migrate", "--index", idx, "--qdrant-url", target)
    assert r.exit_code == 1 and "is not the one written" in r.output, r.output
    assert not target.exists() or not any((target / "collection").glob("*"))  # nothing left half-copied
    out = tmp_path / "all.parquet"
    r = _cli("export", "--index", idx, "--out", out, *model)
    assert r.exit_code == 1 and "is not the one written" in r.output and not out.exists(), r.output
    # the search from a point whose vector is intact still works, and an export without vectors too
    other = next(i for i in built[2] if i != pid)
    r = _cli("search", "--point-id", other, "--index", idx, "--per-item", "0", *model)
    assert r.exit_code == 0, r.output


def test_metadata_replaced_by_a_folder_is_fixed_by_the_advised_repair(idx, built, tiny_bundle):
    """Finding 4: with rsir_tiles.meta.json a folder, ``check`` advised ``--repair``, and both that
    and a re-run ingest ended in a traceback (the rename cannot replace a folder)."""
    from rsir_stac.ingest import ingest
    from tests.test_integrity import NATIVE

    meta = idx / "rsir_tiles.meta.json"
    meta.unlink()
    meta.mkdir()
    (meta / "x").write_text("kept")
    r = _cli("check", "--index", idx)
    assert r.exit_code == 1 and "--repair" in r.output, r.output
    r = _cli("check", "--index", idx, "--repair")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert meta.is_file() and [p.read_text() for p in idx.glob("rsir_tiles.meta.json.damaged-*/x")] == ["kept"]
    assert _cli("check", "--index", idx).exit_code == 0
    # the other advice, a re-run ingest, works too
    meta.unlink()
    meta.mkdir()
    rep = ingest(built[0], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and meta.is_file()
    _assert_equal_to_clean(idx, built[2])


def test_a_permission_problem_is_not_called_damage(idx, built, tmp_path):
    """Finding 6: a file this user may not read (chmod 000, run as another user) made plain
    ``check`` call the index damaged and advise ``--repair`` (which sets the shard aside)."""
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run check as another user")
    home = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own folders are closed to other users
    try:
        home.chmod(0o777)
        index = home / "idx"
        shutil.copytree(idx, index)
        subprocess.run(["chown", "-R", "65534:65534", str(index)], check=True)
        from tests.test_integrity import _chunk

        _chunk(index).chmod(0)
        rsir = Path(sys.executable).with_name("rsir-stac")

        def as_nobody(*args):
            return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(rsir), *args],
                                  capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "HOME": str(home), "TMPDIR": str(home)})

        r = as_nobody("check", "--index", str(index))
        assert r.returncode == 1, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert "permission denied" in last and "chmod -R u+rwX" in last and "--repair" not in last, r.stderr
        assert "damaged:" not in r.stderr, r.stderr
        # a folder this user cannot reach at all: one line, not a traceback
        home.chmod(0o700)
        r = as_nobody("info", "--index", str(index))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().startswith(f"error: permission denied: {index}"), r.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_file_where_the_shard_folder_belongs_gets_one_fix_that_works(idx, built, tiny_bundle):
    """Finding 7: with rsir_tiles/ replaced by a file, check said "not an rsir-stac index ... build
    one there with ingest" (exit 2), and ingest then said to move it away."""
    import shutil

    from rsir_stac.ingest import ingest
    from tests.test_integrity import NATIVE

    shard = idx / "rsir_tiles"
    shutil.rmtree(shard)
    shard.write_text("not a shard")
    for args in (["check", "--index", idx], ["info", "--index", idx]):
        r = _cli(*args)
        assert r.exit_code == 1, r.output  # damage, not bad input
        line = r.stderr.strip().splitlines()[-1]
        assert f"{shard} is a file, not the shard folder" in line and f"records {len(built[2])} points" in line, line
        assert f"mv {shard} {shard}.bad" in line and "re-run the ingest" in line, line
    shard.rename(shard.with_name("rsir_tiles.bad"))  # the advice
    rep = ingest(built[0], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok
    _assert_equal_to_clean(idx, built[2])


def test_a_run_stopped_by_a_full_disk_reports_what_it_wrote(tmpfs, tiny_bundle, tmp_path):  # noqa: F811
    """Finding 5: the disk filled during an ingest that had written 173 points; its --json report
    said 0 written (the empty report).  It now holds what the run did before it stopped."""
    import json
    import subprocess
    import sys

    from rsir_stac.store import space
    from tests.conftest import make_geotiff
    from tests.test_space import MiB, _fill

    scenes = [str(make_geotiff(tmp_path / f"s{i}.tif", width=512, height=512, seed=i + 1)) for i in range(6)]
    fs = tmpfs("mid2", 96)
    idx = fs / "idx"
    opts = ["--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd", "--batch-size", "8"]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "rsir_stac.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=600)

    assert run("ingest", scenes[0], "--index", idx, *opts).returncode == 0
    _fill(fs, leave=space.open_bytes(idx / "rsir_tiles") + 10 * MiB)
    r = run("ingest", *scenes[1:], "--index", idx, *opts, "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert not doc["ok"] and "disk full" in doc["error"] and doc["exit_code"] == 1
    (fs / "filler").unlink()
    c = run("check", "--index", idx, "--json")
    held = json.loads(c.stdout)["points"]
    # the counts of the run so far (the empty report said items 0, tiles 0), and what it wrote matches the index
    assert doc["items"] == 5 and doc["tiles_total"] > 0, doc
    assert doc["points_written"] == held - 64, (doc["points_written"], held)  # 64: the first scene's


def test_a_lost_point_is_damage_not_an_unknown_id(idx, built, tiny_bundle):
    """Finding 8: a point lost to damage (its digest still recorded) was answered "point X is not in
    index DIR; check the id or ingest it first" with exit 2, the bad-input code."""
    import qdrant_edge as q

    pid = sorted(built[2])[0]
    shard = q.EdgeShard.load(str(idx / "rsir_tiles"))  # behind rsir-stac's back: the ledger keeps its digest
    shard.update(q.UpdateOperation.delete_points([pid]))
    shard.flush()
    shard.close()
    r = _cli("search", "--point-id", pid, "--index", idx, "--model", tiny_bundle.path)
    assert r.exit_code == 1, r.output
    line = r.stderr.strip().splitlines()[-1]
    assert f"point {pid} was written to" in line and "is lost" in line and "--repair" in line, line
    r = _cli("search", "--point-id", "00000000-0000-5000-8000-000000000000", "--index", idx, "--model",
             tiny_bundle.path)
    assert r.exit_code == 2 and "check the id" in r.output, r.output  # an id never written: still bad input


def test_restore_names_a_planted_staging_link_and_says_what_force_replaces(idx, built, tmp_path, caplog):
    """Finding 8: a link at ``.NAME.restoring`` was refused as 'cannot restore into DIR (File exists)',
    not naming it; ``restore --force`` replaced an index without a word on what it held."""
    import logging

    snap = tmp_path / "s.tar.gz"
    assert _cli("snapshot", snap, "--index", idx).exit_code == 0
    target = tmp_path / "r"
    stage = tmp_path / ".r.restoring"
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    stage.symlink_to(victim)
    r = _cli("restore", snap, "--index", target)
    assert r.exit_code == 1 and f"{stage} is a link" in r.output and f"rm {stage}" in r.output, r.output
    stage.unlink()  # the advice
    assert _cli("restore", snap, "--index", target).exit_code == 0
    with caplog.at_level(logging.WARNING):
        r = _cli("restore", snap, "--index", target, "--force")
    assert r.exit_code == 0, r.output
    assert f"its {len(built[2])} recorded points are replaced" in caplog.text
    assert not any(victim.iterdir())


def test_a_tampered_archive_names_what_is_wrong_with_a_member(idx, built, tmp_path):
    """Finding 8: a member listed in the manifest but stored as a link, or twice, was refused as
    'is not in its manifest'."""
    import io
    import tarfile

    snap = tmp_path / "s.tar.gz"
    assert _cli("snapshot", snap, "--index", idx).exit_code == 0
    with tarfile.open(snap) as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf]
    target = next(m.name for m, _ in members if m.name.endswith("meta.json"))

    def rewrite(path, change):
        with tarfile.open(path, "w:gz") as out:
            for m, data in members:
                for mm, dd in change(m, data):
                    out.addfile(mm, io.BytesIO(dd) if dd is not None else None)

    def as_link(m, data):
        if m.name != target:
            return [(m, data)]
        link = tarfile.TarInfo(m.name)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return [(link, None)]

    bad = tmp_path / "link.tar.gz"
    rewrite(bad, as_link)
    r = _cli("restore", bad, "--index", tmp_path / "r1")
    assert r.exit_code == 2 and f"member {target!r} is a link" in r.output, r.output
    twice = tmp_path / "twice.tar.gz"
    rewrite(twice, lambda m, d: [(m, d), (m, d)] if m.name == target else [(m, d)])
    r = _cli("restore", twice, "--index", tmp_path / "r2")
    assert r.exit_code == 2 and f"member {target!r} appears twice" in r.output, r.output
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


# ------------------------------------------------------------------ the re-check round (recheck-storage)


def _optimised_index(root: Path) -> tuple[Path, Path, dict]:
    """``(index, segment, {id: (vector, payload)})``: a real Edge index of 400 points of 64 floats merged
    into one optimised segment (HNSW graph, immutable id tracker), as an index of ~10 MB of vectors
    gets by itself (the optimizer thresholds lowered here)."""
    import json

    import numpy as np

    from rsir_stac.store import Point
    from rsir_stac.store.edge import EdgeStore
    from tests.test_integrity import _contents

    rng = np.random.default_rng(0)
    pts = [Point(f"00000000-0000-5000-8000-{i:012d}", rng.normal(size=64).astype("f4"),
                 {"item_id": f"s{i // 50}", "location": {"lon": 10 + i * 1e-3, "lat": 45.0}}) for i in range(400)]
    index = root / "opt"
    root.mkdir(parents=True, exist_ok=True)
    with EdgeStore(index) as store:
        store.ensure_collection(64, "m")
        store.upsert(pts)
    cfg = index / "rsir_tiles" / "edge_config.json"
    doc = json.loads(cfg.read_text())
    doc["optimizers"].update(indexing_threshold=1, default_segment_number=1)
    cfg.write_text(json.dumps(doc))
    with EdgeStore(index) as store:
        store.optimize()
    (seg,) = [p for p in (index / "rsir_tiles" / "segments").iterdir() if (p / "vector_index").exists()]
    return index, seg, _contents(index)


def test_an_optimised_segment_that_lost_or_garbled_its_version_file_is_never_deleted(tmp_path):
    """Re-check N1/N5: the guard saw appendable segments only; an optimised one (id_tracker.*,
    vector_index/) that lost version.info was still deleted by check and info (197 of 209 points).
    An empty or garbled version.info made check --repair set the whole shard aside."""
    for n, damage in enumerate(("lost", "", "garbage!", "0.6.0\n", "dir")):
        idx, seg, clean = _optimised_index(tmp_path / str(n))
        if damage in ("lost", "dir"):  # lost, or a folder in its place
            (seg / "version.info").unlink()
            if damage == "dir":
                (seg / "version.info").mkdir()
        else:  # empty, garbage, or with the newline `echo 0.6.0 >` adds (the engine refuses that too)
            (seg / "version.info").write_text(damage)
        for args in (["info", "--index", idx], ["check", "--index", idx]):
            r = _cli(*args)
            assert r.exit_code == 1 and "version.info" in r.output, (damage, r.output)
            assert seg.is_dir() and (seg / "id_tracker.mappings").exists(), damage
        r = _cli("check", "--index", idx, "--repair")
        assert r.exit_code == 0 and "set aside" not in r.output and "Traceback" not in r.output, r.output
        r = _cli("check", "--index", idx)
        assert r.exit_code == 0 and f"{len(clean)} verified" in r.stdout, (damage, r.output)
        _assert_equal_to_clean(idx, clean)
        assert not list(idx.rglob(".version.*.tmp"))


def test_a_segment_the_engine_was_deleting_does_not_block_the_index(tmp_path):
    """Re-check N3: killed while the engine removed a merged segment (renamed ``*.deleted``, its
    version.info already gone, its points in the new segment), every read refused with a false
    'would delete it, points and all'.  Such a folder is the engine's to discard."""
    import shutil

    idx, seg, clean = _optimised_index(tmp_path)
    dying = seg.parent / f"{seg.name}abcdef.deleted"
    shutil.copytree(seg, dying)
    (dying / "version.info").unlink()
    r = _cli("info", "--index", idx)
    assert r.exit_code == 0, r.output
    r = _cli("check", "--index", idx)
    assert r.exit_code == 0 and f"{len(clean)} verified" in r.stdout, r.output
    assert not dying.exists()  # the engine discarded it


def test_a_link_planted_at_the_lock_file_is_never_written_through(idx, built, tmp_path):
    """Re-check N4: a .lock link planted in an index folder others may write made any command, even
    info, truncate the link's target."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (idx / ".lock").unlink()
    (idx / ".lock").symlink_to(victim)
    r = _cli("info", "--index", idx)
    assert r.exit_code == 1 and f"lock file {idx}/.lock is a link" in r.output and f"rm {idx}/.lock" in r.output, \
        r.output
    assert victim.read_text() == "precious"
    (idx / ".lock").unlink()  # the advice
    assert _cli("info", "--index", idx).exit_code == 0


def test_a_hard_link_planted_at_the_lock_file_is_never_truncated(idx, built, tmp_path):
    """A hard link at .lock shares its data with another file: O_NOFOLLOW does not stop it, and the
    lock's pid write truncated that file.  A FIFO there is refused too."""
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (idx / ".lock").unlink()
    os.link(victim, idx / ".lock")
    r = _cli("info", "--index", idx)
    assert r.exit_code == 1 and f"lock file {idx}/.lock is a hard link" in r.output and f"rm {idx}/.lock" in r.output, \
        r.output
    assert victim.read_text() == "precious"
    (idx / ".lock").unlink()  # the advice
    assert _cli("info", "--index", idx).exit_code == 0
    (idx / ".lock").unlink()
    os.mkfifo(idx / ".lock")
    r = _cli("info", "--index", idx)
    assert r.exit_code == 1 and "is not a regular file" in r.output, r.output
    (idx / ".lock").unlink()
    assert _cli("info", "--index", idx).exit_code == 0


def test_index_files_get_the_mode_open_gives_them(tmp_path, built, tiny_bundle):
    """Re-check N6: rsir_tiles.meta.json was always 0600 (mkstemp), so an index shared by a group was
    'damaged' for every other user."""
    import os
    import stat

    from rsir_stac.ingest import ingest
    from tests.test_integrity import NATIVE

    import json
    import subprocess
    import sys

    # the umask is read once at import: a fresh process under umask 002 (a group-shared index), not a
    # reload here, which would leave this process with two copies of the module's classes
    code = ("import os, sys, stat, pathlib; os.umask(0o002); import rsir_stac.store.folder as f; "
            "p = pathlib.Path(sys.argv[1]); f._write_json_atomic(p, {'a': 1}); "
            "print(f.FILE_MODE, stat.S_IMODE(p.stat().st_mode))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.json")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    file_mode, written = json.loads("[" + r.stdout.strip().replace(" ", ",") + "]")
    assert file_mode == 0o664
    assert written == 0o664
    old = os.umask(0o022)
    os.umask(old)
    idx = tmp_path / "idx"
    assert ingest(built[0][:1], index=str(idx), model=tiny_bundle, options=NATIVE).ok
    for name in ("rsir_tiles.meta.json", ".lock", "rsir_tiles.digests.sqlite"):  # all three were 0600 or 0644
        assert stat.S_IMODE((idx / name).stat().st_mode) == 0o666 & ~old, name


def test_a_ledger_this_user_may_not_read_is_never_set_aside(idx, built):
    """Re-check N2: a ledger unreadable only by chmod was 'damaged'; check --repair moved it aside and
    recorded the vectors as they read, so a changed vector then passed check."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    import pytest

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run check as another user")
    home = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        home.chmod(0o777)
        index = home / "idx"
        shutil.copytree(idx, index)
        subprocess.run(["chown", "-R", "65534:65534", str(index)], check=True)
        ledger = index / "rsir_tiles.digests.sqlite"
        ledger.chmod(0)
        rsir = Path(sys.executable).with_name("rsir-stac")
        env = {**os.environ, "HOME": str(home), "TMPDIR": str(home)}
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(rsir), "check",
                            "--index", str(index), "--repair"], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 1 and "cannot be used by this user" in r.stderr, r.stderr
        assert ledger.exists() and not list(index.glob(".rsir_tiles.digests.damaged-*"))
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(rsir), "check",
                            "--index", str(index)], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 1 and "damaged:" not in r.stderr and "permission denied" in r.stderr, r.stderr
        # readable but not writable (R5), a damaged vector to repair: the repair refuses before it changes anything
        from tests.test_integrity import _chunk

        chunk = _chunk(index)
        data = bytearray(chunk.read_bytes())
        first = next(i for i in range(0, len(data), 4) if any(data[i:i + 4]))
        data[first:first + 4] = bytes(b ^ 0x55 for b in data[first:first + 4])
        chunk.write_bytes(bytes(data))
        ledger.chmod(0o444)
        before = ledger.read_bytes()
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(rsir), "check",
                            "--index", str(index), "--repair"], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 1 and "may not read and write it" in r.stderr, r.stderr
        assert ledger.read_bytes() == before and not list(index.glob(".rsir_tiles*damaged*"))  # nothing set aside
    finally:
        shutil.rmtree(home, ignore_errors=True)
