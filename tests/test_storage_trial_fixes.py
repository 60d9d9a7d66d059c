"""Defects a new-user storage trial found by damaging real indexes on disk (real Qdrant Edge
indexes built here by ingesting seeded GeoTIFFs, damaged as the trial damaged them):

1. a zeroed payload tracker: every payload read back empty, and search, export, migrate and
   ``--at`` went on silently (or blamed the location);
2. modified deleted flags / a deleted vector status file: vectors read back missing, export wrote
   empty embeddings, search and migrate blamed the model;
3. a damaged payload index found by ``check`` was not warned about afterwards, and ``check``'s first
   advice (re-run the ingest) did not fix it (nor an altered model id in the metadata);
4. an unreadable digest ledger was called an unloadable shard, and a ``.lock`` folder likewise;
5. output files on a full disk or over ``ulimit -f`` named the working folder, an "unexpected"
   GDAL error or a traceback; migrate into a full local folder said "check the server";
6. a re-run ingest after the ledger was lost warned of tiles "cut another way" that were its own;
7. ``ingest`` through a ``serve`` that was killed: no JSON report, and "does not answer" for a dead pid.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.ingest import ingest
from rsir_stac.store import Point, open_store
from rsir_stac.store.integrity import check_index
from tests.conftest import index_of_points, make_geotiff
from tests.test_integrity import (  # noqa: F401 - fixtures
    NATIVE,
    _assert_equal_to_clean,
    _migrate_into_new_collection_fails,
    _segment,
    built,
    idx,
)
from tests.test_space import _fill, tmpfs  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[1]


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[-1]


def _model(tiny_bundle) -> list[str]:
    return ["--model", str(tiny_bundle.path)]


# ----------------------------------------------------------------------------- 1. payloads read back empty


def _zero_payload_tracker(idx: Path) -> None:
    """As the trial did: the first 8 KB of ``payload_storage/tracker.dat`` zeroed (the engine then
    reads every payload back as ``{}``, without an error)."""
    with open(_segment(idx) / "payload_storage" / "tracker.dat", "r+b") as fh:
        fh.write(b"\0" * 8192)


def test_payloads_read_back_empty_are_named_damage_everywhere(idx, built, tmp_path, tiny_bundle, caplog):
    """search (--point-id and --at), export, info and migrate fail with one line naming the damage and
    `check --repair`; following that advice gives back the clean index."""
    scenes, _, clean = built
    _zero_payload_tracker(idx)
    pid = sorted(clean)[0]
    lon, lat = clean[pid][1]["location"]["lon"], clean[pid][1]["location"]["lat"]
    out = tmp_path / "all.csv"
    for args in (["search", "--index", idx, "--point-id", pid, "-k", "2", "--format", "json", *_model(tiny_bundle)],
                 ["search", "--index", idx, "--at", f"{lon},{lat}", "-k", "2", *_model(tiny_bundle)],
                 ["export", "--index", idx, "--out", out, *_model(tiny_bundle)],
                 ["info", "--index", idx]):
        r = _cli(*args)
        assert r.exit_code == 1, (args, r.output)
        line = _error_line(r)
        assert line.startswith(f"error: index {idx} is damaged: point ") and "reads back without its payload" in line
        assert f"rsir-stac check --index {idx} --repair" in line and "re-run the ingest" in line, line
        assert "no tile" not in line
    assert not out.exists() and not list(tmp_path.glob(".all*"))
    _migrate_into_new_collection_fails(idx, tmp_path, "without its payload")  # migrate copies no damage

    assert _cli("check", "--index", idx, "--repair").exit_code == 0
    assert ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE).points_written == len(clean)
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, clean)


def test_points_written_with_empty_or_other_payloads_are_no_false_alarm(tmp_path, shipped_bundle):
    """An empty payload is damage only when the point was written with one (its digest says so), and
    a field selection a point does not have reads back empty without being damage."""
    from rsir_stac.store import SearchFilter

    rng = np.random.default_rng(0)
    pts = [Point(f"00000000-0000-0000-0000-{i:012d}", rng.normal(size=shipped_bundle.dim).astype(np.float32),
                 {} if i % 2 else {"note": f"n{i}"}) for i in range(6)]
    idx = index_of_points(tmp_path / "idx", pts, shipped_bundle)
    with open_store(idx, read_only=True) as s:
        assert len(s.search(pts[0].vector, k=6)) == 6
        assert {h.id for h in s.retrieve([p.id for p in pts], with_vectors=True)} == {p.id for p in pts}
        assert sum(1 for _ in s._scan(None, fields=["collection"])) == 6  # no point has one
        assert s.count(SearchFilter(collections=("x",))) == 0


# ----------------------------------------------------------------------------- 2. vectors read back missing


def _lose_vectors(idx: Path, how: str) -> None:
    vs = _segment(idx) / "vector_storage"
    if how == "deleted flags":  # as the trial: 64 bytes of 0xff (every point's vector flagged deleted)
        with open(vs / "deleted" / "flags_a.dat", "r+b") as fh:
            fh.write(b"\xff" * 64)
    else:  # the trial's other way: the vectors' status file deleted
        (vs / "vectors" / "status.dat").unlink()


@pytest.mark.parametrize("how", ["deleted flags", "status file"])
def test_a_vector_read_back_missing_is_storage_damage_not_the_model(idx, built, tmp_path, tiny_bundle, caplog, how):
    """info warns at open; export writes nothing, search and migrate name the damage and `check --repair`
    (never "use the model that built the index"); the advised repair gives back the clean index."""
    import logging

    scenes, _, clean = built
    _lose_vectors(idx, how)
    caplog.set_level(logging.WARNING)
    assert _cli("info", "--index", idx).exit_code == 0
    assert "have no stored vector" in caplog.text and f"rsir-stac check --index {idx}" in caplog.text, caplog.text
    out = tmp_path / "all.parquet"
    pid = sorted(clean)[0]
    for args in (["export", "--index", idx, "--out", out, *_model(tiny_bundle)],
                 ["search", "--index", idx, "--point-id", pid, "-k", "3", *_model(tiny_bundle)]):
        r = _cli(*args)
        assert r.exit_code == 1, (args, r.output)
        line = _error_line(r)
        assert line.startswith(f"error: index {idx} is damaged: the stored vector of point ") and "is missing" in line
        assert f"rsir-stac check --index {idx} --repair" in line and "model" not in line, line
    assert not out.exists()
    _migrate_into_new_collection_fails(idx, tmp_path, "is missing")

    assert _cli("check", "--index", idx, "--repair").exit_code == 0
    assert ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE).points_written == len(clean)
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, clean)


# ----------------------------------------------------------------------------- 3. what check found, remembered


def _bbox_of(clean: dict) -> str:
    lons = [p["location"]["lon"] for _, p in clean.values()]
    lats = [p["location"]["lat"] for _, p in clean.values()]
    return f"{min(lons) - 0.01},{min(lats) - 0.01},{max(lons) + 0.01},{max(lats) + 0.01}"


def test_a_damaged_location_index_is_warned_about_and_fixed_by_the_advised_rerun(idx, built, tmp_path, tiny_bundle,
                                                                                 caplog):
    """As the trial did: 64 KB of the location index zeroed.  After `check` found it, search and export
    warn (the health record, read at open) until it is repaired; the check's advice -- re-run the
    ingest that built it -- repairs it (it did not: check still failed)."""
    import logging

    scenes, _, clean = built
    page = next(_segment(idx).glob("payload_index/*location-map/page_0.dat"))
    with open(page, "r+b") as fh:
        fh.write(b"\0" * 65536)
    bbox, pid = _bbox_of(clean), sorted(clean)[0]
    r = _cli("check", "--index", idx)
    assert r.exit_code == 1 and "location index misplaces" in r.stderr, r.output
    assert "re-run the ingest that built it" in _error_line(r)
    caplog.set_level(logging.WARNING)
    for args in (["search", "--index", idx, "--point-id", pid, "--bbox", bbox, "-k", "5", *_model(tiny_bundle)],
                 ["export", "--index", idx, "--bbox", bbox, "--out", tmp_path / "b.csv", *_model(tiny_bundle)]):
        caplog.clear()
        assert _cli(*args).exit_code == 0
        assert "the last `rsir-stac check`" in caplog.text and "location index misplaces" in caplog.text, caplog.text
        assert f"rsir-stac check --index {idx} --repair" in caplog.text

    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)  # the advice: re-run the ingest
    assert rep.ok and rep.points_written == 0
    assert check_index(idx).ok
    caplog.clear()
    r = _cli("search", "--index", idx, "--point-id", pid, "--bbox", bbox, "-k", "40", "--format", "json",
             *_model(tiny_bundle))
    assert r.exit_code == 0 and "the last `rsir-stac check`" not in caplog.text
    assert len(json.loads(r.stdout)["hits"]) == len(clean) - 1


def test_an_altered_model_id_in_the_metadata_is_fixed_by_the_advised_rerun(idx, built, tiny_bundle, caplog):
    """meta.json names another model than its points: search uses the points' model (with a warning),
    and the check's advice -- re-run the ingest -- writes it again (it was refused: model mismatch)."""
    scenes, _, clean = built
    meta = idx / "rsir_tiles.meta.json"
    meta.write_text(meta.read_text().replace(tiny_bundle.model_id, tiny_bundle.model_id + "x"))
    r = _cli("check", "--index", idx)
    assert r.exit_code == 1 and "re-run the ingest that built it" in _error_line(r)
    r = _cli("search", "--index", idx, "--point-id", sorted(clean)[0], "-k", "2", *_model(tiny_bundle))
    assert r.exit_code == 0, r.output
    assert "rsir_tiles.meta.json says" in caplog.text and "--repair" in caplog.text
    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == 0
    assert check_index(idx).ok and tiny_bundle.model_id + "x" not in meta.read_text()


# ----------------------------------------------------------------------------- 4. ledger, lock


def _damage_ledger(idx: Path, how: str) -> None:
    ledger = idx / "rsir_tiles.digests.sqlite"
    if how == "random bytes":
        ledger.write_bytes(np.random.default_rng(3).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    elif how == "cut short":
        os.truncate(ledger, 4096)
    else:
        ledger.write_bytes(b"\0" * ledger.stat().st_size)


@pytest.mark.parametrize("how", ["random bytes", "cut short", "zeroed"])
def test_an_unreadable_ledger_is_named_and_check_repair_fixes_it(idx, built, how):
    _damage_ledger(idx, how)
    r = _cli("check", "--index", idx)
    assert r.exit_code == 1, r.output
    assert "rsir_tiles.digests.sqlite (the digest ledger) is unreadable" in r.stderr, r.output
    assert "cannot load" not in r.output and f"{len(built[2])} points" in r.stdout
    fixed = _cli("check", "--index", idx, "--repair")
    assert fixed.exit_code == 0, fixed.output
    r = _cli("check", "--index", idx)
    assert r.exit_code == 0 and f"{len(built[2])} verified" in r.stdout, r.output
    assert list(idx.glob(".rsir_tiles.digests.damaged-*"))  # set aside, not deleted
    _assert_equal_to_clean(idx, built[2])


def test_an_unreadable_ledger_is_fixed_by_a_rerun_ingest_without_a_false_tiling_warning(idx, built, tiny_bundle,
                                                                                         caplog):
    """The other advice -- re-run the ingest -- works too, and (defect 6) re-embedding its own
    unverified points is not "tiles of this item cut another way"."""
    scenes, _, clean = built
    _damage_ledger(idx, "random bytes")
    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == len(clean)
    assert "cut another way" not in caplog.text
    assert check_index(idx).ok
    _assert_equal_to_clean(idx, clean)


def test_a_lock_that_is_a_folder_is_named_with_its_fix(idx, built):
    (idx / ".lock").unlink()
    (idx / ".lock").mkdir()
    for args in (["check", "--index", idx], ["info", "--index", idx]):
        r = _cli(*args)
        assert r.exit_code == 1, r.output
        line = _error_line(r)
        assert f"lock file {idx}/.lock is a folder" in line and f"rmdir {idx}/.lock" in line, line
        assert "cannot be loaded" not in r.output
    (idx / ".lock").rmdir()  # the advice
    assert _cli("check", "--index", idx).exit_code == 0


# ----------------------------------------------------------------------------- 5. output files


@pytest.mark.parametrize("ext", ["csv", "fgb", "parquet", "geojson"])
def test_an_export_onto_a_full_disk_names_the_outputs_folder(idx, built, tmpfs, tiny_bundle, ext):
    """One line naming the output's folder (not the working folder) and its real free space; no file."""
    fs = tmpfs("full", 1)
    _fill(fs, leave=4096)
    out = fs / f"t.{ext}"
    r = _cli("export", "--index", idx, "--out", out, *_model(tiny_bundle))
    assert r.exit_code == 1, r.output
    line = _error_line(r)
    assert line.startswith(f"error: disk full: {fs} has ") and f" free; writing t.{ext} failed" in line, line
    assert "unexpected" not in line and str(Path.cwd()) + " " not in line
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]
    (fs / "filler").unlink()  # the advice: free space there
    assert _cli("export", "--index", idx, "--out", out, *_model(tiny_bundle)).exit_code == 0 and out.is_file()


def test_search_out_onto_a_full_disk_names_the_outputs_folder(idx, built, tmpfs, tiny_bundle):
    fs = tmpfs("full", 1)
    _fill(fs, leave=4096)
    r = _cli("search", "--index", idx, "--point-id", sorted(built[2])[0], "-k", "30", "--with-vectors",
             "--out", fs / "hits.csv", *_model(tiny_bundle))
    assert r.exit_code == 1, r.output
    assert _error_line(r).startswith(f"error: disk full: {fs} has "), r.output
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]


@pytest.mark.parametrize("leave,when", [(4096, "opening it"), (49152, "uploading points")])
def test_a_migrate_into_a_full_local_folder_says_disk_full(idx, built, tmpfs, leave, when):
    """The trial's "uploading points failed (database or disk is full); check the server" for a local folder."""
    fs = tmpfs("full", 1)
    _fill(fs, leave=leave)
    r = _cli("migrate", "--index", idx, "--qdrant-url", fs / "qc")
    assert r.exit_code == 1, r.output
    line = _error_line(r)
    assert line.startswith(f"error: disk full: {fs} has ") and f"local folder {fs}/qc collection 'rsir_tiles': {when} failed" in line, line
    assert "check the server" not in line, line
    assert sorted(p.name for p in fs.iterdir()) == ["filler"]


def _limited(limit: int):
    def run() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return run


def test_an_export_over_the_file_size_limit_is_one_line(idx, built, tmp_path, tiny_bundle):
    """Under `ulimit -f` an export ended in a raw traceback (OSError: File too large)."""
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "big.csv"
    r = subprocess.run([sys.executable, "-m", "rsir_stac.cli", "export", "--index", str(idx), "--out", str(out),
                        *_model(tiny_bundle)], capture_output=True, text=True, preexec_fn=_limited(16384),
                       env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=folder)
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and line.startswith(f"error: {out}: writing it failed (File too large)"), r.stderr
    assert "`ulimit -f` 16" in line and "ulimit -f unlimited" in line
    assert sorted(p.name for p in folder.iterdir()) == []  # no partial file


# ----------------------------------------------------------------------------- 6. the tiling warning


def test_a_rerun_after_the_ledger_was_deleted_does_not_warn_of_another_tiling(idx, built, tiny_bundle, caplog):
    """As the trial did: the ledger deleted, the ingest re-run (it re-embeds the unverified points): the
    tiling is the same and the result equals the clean index, so nothing is "cut another way"."""
    scenes, _, clean = built
    (idx / "rsir_tiles.digests.sqlite").unlink()
    rep = ingest(scenes, index=str(idx), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == len(clean)
    assert "cut another way" not in caplog.text, caplog.text
    _assert_equal_to_clean(idx, clean)


def test_the_tiling_warning_still_names_another_tiling(idx, built, tiny_bundle, caplog):
    from rsir_stac.ingest import IngestOptions

    rep = ingest(built[0][:1], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=32, native_gsd=True))
    assert rep.ok and rep.points_written > 0
    assert "already holds 12 tiles of this item cut another way" in caplog.text, caplog.text


# ----------------------------------------------------------------------------- 7. a serve killed mid-job


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ingest_through_a_serve_killed_mid_job_says_so_and_prints_its_report(tmp_path, tiny_bundle):
    """`serve` killed (SIGKILL) while it runs a forwarded ingest job: the CLI prints its --json report
    with the error, names the dead service (not "does not answer; wait for it") and the fix (re-run:
    the index is opened directly), which works."""
    from tests.test_served import _env, _wait_served

    src = tmp_path / "src"
    src.mkdir()
    first = make_geotiff(src / "a.tif", width=128, height=128, seed=5)
    big = make_geotiff(src / "big.tif", width=512, height=512, seed=6)
    idx = tmp_path / "idx"
    assert ingest([str(first)], index=str(idx), model=tiny_bundle, options=NATIVE).ok
    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                              str(tiny_bundle.path), "--port", str(port), "--ingest-root", str(src)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_served(serve, idx, port)
        args = [sys.executable, "-m", "rsir_stac.cli", "ingest", str(big), "--index", str(idx), "--model",
                str(tiny_bundle.path), "--tile-size", "8", "--native-gsd", "--json"]
        cli = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        noted = threading.Event()
        err: list[str] = []

        def read() -> None:
            for line in cli.stderr:
                err.append(line)
                if "sending the ingest to it" in line:
                    noted.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert noted.wait(120), "".join(err)
        time.sleep(1.0)  # the job is running
        serve.send_signal(signal.SIGKILL)
        serve.wait(30)
        out = cli.stdout.read()   # stderr is the reader thread's alone (communicate() would race it for lines)
        cli.wait(120)
        reader.join(30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert cli.returncode == 1, "".join(err)
    report = json.loads(out)
    assert report["ok"] is False and report["exit_code"] == 1, report
    line = "".join(err).strip().splitlines()[-1]
    assert line.startswith(f"error: index {idx} was held by rsir-stac serve (pid {serve.pid})") and "has stopped" in line
    assert "re-run the same command" in line and "wait for it" not in line and report["error"] == line[len("error: "):]
    assert not (idx / ".serve.json").exists()
    again = subprocess.run(args, capture_output=True, text=True, env=_env())  # the advice
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ok"] and check_index(idx).ok
