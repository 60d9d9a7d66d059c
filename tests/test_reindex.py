"""`rsir-stac reindex`: an index moved to a new model equals a fresh ingest with it.

Real GeoTIFFs made here, ingested with the shipped model into the real Qdrant
Edge engine (and qdrant-client's local mode), reindexed with a second real
bundle: the shipped network saved with another reducer (PCA, 8-d).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import IncompatibleIndexError, InputError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.reindex import reindex
from rsir_stac.store import open_store
from tests.conftest import make_geotiff

# 512x256 px at 0.3 m: two 256 px tiles per scene at the shipped model's GSD
OPTS = IngestOptions()


@pytest.fixture(scope="module")
def shipped():
    from rsir_stac.model.bundle import load_bundle

    return load_bundle(None)


@pytest.fixture(scope="module")
def new_bundle(shipped, tmp_path_factory):
    """The shipped network with a PCA reducer (8-d) fitted on textures: another model id."""
    from rsir_stac.model.bundle import save_bundle
    from rsir_stac.reduce import make_reducer

    rng = np.random.default_rng(0)
    images = [np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(12)]
    with shipped.embedder(batch_size=4) as emb:
        z = emb.embed(images, reduce=False)
    meta = json.loads(json.dumps(shipped.meta))
    meta["name"] = "rsir-v2test"
    b = save_bundle(tmp_path_factory.mktemp("v2") / "bundle", shipped.net, make_reducer("pca", 8).fit(z), meta)
    assert b.model_id != shipped.model_id and b.dim == 8
    return b


@pytest.fixture()
def scenes(tmp_path):
    d = tmp_path / "scenes"
    d.mkdir()
    return [
        make_geotiff(d / "a.tif", width=512, height=256, res=0.3, seed=1, datetime_tag="2021:06:01 10:00:00"),
        make_geotiff(d / "b.tif", width=512, height=256, res=0.3, seed=2, origin=(501000.0, 3300000.0)),
        make_geotiff(d / "c.tif", width=512, height=256, crs="EPSG:3857", res=0.3,
                     origin=(-10620000.0, 3480000.0), seed=3),
    ]


@pytest.fixture()
def old_index(tmp_path, scenes, shipped):
    idx = tmp_path / "old"
    r = ingest([str(s) for s in scenes], index=str(idx), model=shipped, options=OPTS)
    assert r.ok and r.points_written == 6
    return idx


def _points(location, **kw) -> dict:
    with open_store(None if location is None else str(location), read_only=True, **kw) as store:
        return {p.id: p for p in store.iter_points(with_vectors=True)}


def _tree_digest(folder) -> dict:
    """Every file of an index folder (the advisory .lock aside) and its sha256."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            if f != ".lock":
                p = os.path.join(root, f)
                out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def _rounded(value, digits: int = 9):
    """Floats to ``digits`` significant digits, in any nesting (a server's geo field keeps ~15)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _assert_same_index(got: dict, want: dict, exact: bool = True) -> None:
    assert got.keys() == want.keys()
    for pid, p in got.items():
        if exact:
            assert p.payload == want[pid].payload
        else:
            assert _rounded(p.payload) == _rounded(want[pid].payload)
        assert np.allclose(p.vector, want[pid].vector, atol=1e-3), (pid, np.abs(p.vector - want[pid].vector).max())


@pytest.fixture()
def fresh(tmp_path, scenes, new_bundle):
    """The same files ingested from scratch with the new model."""
    idx = tmp_path / "fresh"
    assert ingest([str(s) for s in scenes], index=str(idx), model=new_bundle, options=OPTS).points_written == 6
    return _points(idx)


def test_reindex_equals_ingest_with_new_model_and_leaves_old_index(tmp_path, scenes, old_index, new_bundle, fresh,
                                                                   shipped):
    # (the engine folds its journals into the segments on the first open after a write, read-only or not)
    old_points = _points(old_index)
    before = _tree_digest(old_index)
    events = []
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle, page_size=4, batch_size=3,
                progress=events.append)
    assert r.ok and r.points_total == 6 and r.points_written == 6 and r.points_existing == 0
    assert r.model_from == shipped.model_id and r.model_to == new_bundle.model_id and not r.tiling_kept
    assert sum(e.n for e in events if e.kind == "points") == 6
    new = _points(tmp_path / "new")
    _assert_same_index(new, fresh)
    assert {p.payload["model_id"] for p in new.values()} == {new_bundle.model_id}
    # the old index is untouched: files, ids, vectors
    assert _tree_digest(old_index) == before
    old_after = _points(old_index)
    assert old_after.keys() == old_points.keys()
    assert all(np.array_equal(old_after[i].vector, old_points[i].vector) for i in old_points)
    with open_store(str(tmp_path / "new"), read_only=True) as store:
        assert store.meta().model_id == new_bundle.model_id and store.meta().dim == 8
    # idempotent: a re-run finds everything there and changes nothing
    r2 = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle)
    assert r2.ok and r2.points_written == 0 and r2.points_existing == 6
    _assert_same_index(_points(tmp_path / "new"), fresh)
    # and the catalogue's ingest with the new model goes on from the reindexed index
    r3 = ingest([str(s) for s in scenes], index=str(tmp_path / "new"), model=new_bundle, options=OPTS)
    assert r3.ok and r3.points_written == 0 and r3.tiles_existing == 6


class _Stop(Exception):
    pass


def test_interrupted_reindex_resumes_to_a_clean_result(tmp_path, old_index, new_bundle, fresh, shipped):
    def stop_after_first_write(ev):
        if ev.kind == "points" and ev.n:
            raise _Stop()

    with pytest.raises(_Stop):
        reindex(str(old_index), str(tmp_path / "new"), model=new_bundle, page_size=2, batch_size=1,
                progress=stop_after_first_write)
    partial = _points(tmp_path / "new")
    assert 0 < len(partial) < 6
    _assert_unfinished(tmp_path / "new", new_bundle, len(partial))
    # a reindex of the unfinished index is no more whole than it: it stays marked (re-check)
    again = reindex(str(tmp_path / "new"), str(tmp_path / "back"), model=shipped)
    assert again.ok and again.points_written == len(partial)
    with open_store(str(tmp_path / "back"), read_only=True) as store:
        assert store.meta().unfinished, "a copy of an unfinished index was marked finished"
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle, page_size=2)
    assert r.ok and r.points_existing == len(partial) and r.points_written == 6 - len(partial)
    _assert_same_index(_points(tmp_path / "new"), fresh)
    _assert_finished(tmp_path / "new", new_bundle)


def test_skip_missing_with_every_source_gone_is_a_failure_not_a_finished_index(tmp_path, scenes, old_index,
                                                                             new_bundle):
    """Model-side trial (thirty-third session): with every source gone, `reindex --skip-missing` said
    "the new index is marked finished" and exited 0, though no index was made."""
    moved = [p.rename(p.with_name(f"gone-{p.name}")) for p in scenes]
    try:
        res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "none"),
                                        "--model", str(new_bundle.path), "--skip-missing"])
    finally:
        for p, m in zip(scenes, moved):
            m.rename(p)
    assert res.exit_code == 1, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: nothing was reindexed") and "--relocate OLD=NEW" in last, res.stderr
    assert "marked finished" not in res.output and not (tmp_path / "none").exists()


def _assert_unfinished(location, bundle, n: int) -> None:
    """The index says it is an unfinished reindex: in its metadata, `info` and a warning on open."""
    import logging

    from rsir_stac.search import Index

    with open_store(str(location), read_only=True) as store:
        assert store.meta().unfinished.startswith("a reindex of index ") and bundle.model_id in store.meta().unfinished
        info = store.info()
    assert info.unfinished and "re-run the same `rsir-stac reindex` command" in info.notes[0]
    res = CliRunner().invoke(main, ["info", "--index", str(location)])
    assert res.exit_code == 0 and json.loads(res.stdout)["unfinished"] == info.unfinished, res.output
    logger = logging.getLogger("rsir_stac.search")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: seen.append(rec.getMessage())
    logger.addHandler(handler)
    try:
        with Index.open(str(location), model=bundle):
            pass
    finally:
        logger.removeHandler(handler)
    assert any(f"is unfinished (a reindex of index" in m and f"it holds {n:,} points" in m for m in seen), seen


def _assert_finished(location, bundle) -> None:
    with open_store(str(location), read_only=True) as store:
        assert store.meta().unfinished == "" and not store.info().unfinished
    meta_file = json.loads((location / "rsir_tiles.meta.json").read_text())
    assert "unfinished" not in meta_file["rsir_stac"]  # a finished index's file is what earlier versions wrote


def test_moved_source_is_reported_and_resumed(tmp_path, scenes, old_index, new_bundle, fresh):
    moved = scenes[1].with_name("moved.tif")
    scenes[1].rename(moved)
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle, page_size=1)
    assert not r.ok and r.points_written == 4 and r.tiles_failed == 0
    from rsir_stac.raster_source import raster_item_id

    assert [(f["href"], f["tiles"], f["item"]) for f in r.sources_failed] == [(str(scenes[1]), 2,
                                                                               raster_item_id(str(scenes[1])))]
    assert str(scenes[1]) in r.sources_failed[0]["error"]
    # the CLI lists it and exits 1 with one line naming the fix
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path), "--json"])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout.splitlines()[0])
    assert report["ok"] is False and report["complete"] is False
    assert report["points_existing"] == 4 and report["sources_failed"][0]["href"] == str(scenes[1])
    assert report["points_written"] + report["points_existing"] + report["points_failed"] == report["points_total"]
    assert report["sources_failed"][0]["ingest_options"].startswith("--tile-size 256 --stride 256 --edge ")
    assert res.stderr.strip().splitlines()[-1].startswith("error: 1 source(s) could not be read")
    _assert_unfinished(tmp_path / "new", new_bundle, 4)  # a source is missing: not whole yet
    assert "re-run with --skip-missing to finish without them" in res.stderr
    # gone for good: --skip-missing finishes a copy without it (re-check: it stayed unfinished forever)
    import shutil

    shutil.copytree(tmp_path / "new", tmp_path / "new-skip")
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new-skip"),
                                    "--model", str(new_bundle.path), "--skip-missing"])
    assert res.exit_code == 0 and "1 source(s) left out by --skip-missing (2 tiles)" in res.stderr, res.output
    _assert_finished(tmp_path / "new-skip", new_bundle)
    # its JSON agrees with the exit status: ok (done as asked), not complete (a source left out)
    shutil.copytree(tmp_path / "new", tmp_path / "new-skip-json")
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new-skip-json"),
                                    "--model", str(new_bundle.path), "--skip-missing", "--json"])
    doc = json.loads(res.stdout.splitlines()[0])
    assert res.exit_code == 0 and doc["ok"] is True and doc["complete"] is False, res.output
    assert doc["skip_missing"] is True and doc["sources_failed"][0]["tiles"] == 2
    moved.rename(scenes[1])
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle)
    assert r.ok and r.points_written == 2 and r.points_existing == 4
    _assert_same_index(_points(tmp_path / "new"), fresh)
    _assert_finished(tmp_path / "new", new_bundle)


def test_a_moved_folder_is_reindexed_with_relocate(tmp_path, scenes, old_index, new_bundle, fresh):
    """The sources' folder moved after ingest: reindex names --relocate OLD=NEW (following the
    other advice, a new ingest, gives the raster another item id, so reindex kept failing);
    with it the tiles are read from the new place, keep their ids and carry the new href."""
    folder = scenes[0].parent
    moved = folder.with_name("moved-scenes")
    folder.rename(moved)
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path)])
    assert res.exit_code == 1 and f"--relocate {folder}=NEW_FOLDER" in res.stderr.strip().splitlines()[-1], \
        res.output
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path), "--relocate", f"{folder}/={moved}", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.splitlines()[0])
    assert report["ok"] and report["points_written"] == 6 and report["points_total"] == 6
    got = _points(tmp_path / "new")
    assert got.keys() == fresh.keys()  # the ids of a fresh ingest with the new model: not a new item
    for pid, p in got.items():
        assert p.payload["href"] == str(moved / os.path.basename(fresh[pid].payload["href"]))
        assert np.allclose(p.vector, fresh[pid].vector, atol=1e-3)
    for bad in ("no-equals", "=b", "a="):
        res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "x"),
                                        "--relocate", bad])
        assert res.exit_code == 2 and "--relocate" in res.output and "OLD=NEW" in res.output, (bad, res.output)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("other", [{"crs": "EPSG:3857"}, {"origin": (500100.0, 3300000.0)}])
def test_a_replaced_source_is_refused_whole_and_resumed(tmp_path, scenes, old_index, new_bundle, fresh, other):
    """Another raster at the ingested path (another CRS, or shifted): none of its tiles is written
    from it, and putting the ingested file back then completes the same command."""
    kept = scenes[0].with_name("kept.tif")
    scenes[0].rename(kept)
    make_geotiff(scenes[0], width=512, height=256, res=0.3, seed=7, **other)
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle)
    assert not r.ok and r.points_written == 4 and r.tiles_failed == 0
    assert [(f["href"], f["tiles"]) for f in r.sources_failed] == [(str(scenes[0]), 2)]
    assert "is not the raster that was ingested" in r.sources_failed[0]["error"]
    kept.replace(scenes[0])
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle)
    assert r.ok and r.points_written == 2 and r.points_existing == 4
    _assert_same_index(_points(tmp_path / "new"), fresh)


def test_edge_footprints_of_earlier_versions_are_not_a_replaced_source(tmp_path, old_index, new_bundle):
    """Earlier versions stored the whole window of an edge tile, up to a pixel past the raster;
    footprints differing by that much at the edge are not "another raster at that path"."""
    from rsir_stac.store import Point

    with open_store(str(old_index)) as store:
        pts = list(store.iter_points(with_vectors=True))
        moved = []
        for p in pts:
            w, s_, e, n = p.payload["bbox"]
            corners = [p.payload["corners"][0]] + [{"lon": c["lon"] + 1.3e-6, "lat": c["lat"] - 1.3e-6}
                                                   for c in p.payload["corners"][1:]]
            moved.append(Point(p.id, p.vector, {**p.payload, "bbox": [w, s_ - 1.3e-6, e + 1.3e-6, n],
                                                "corners": corners}))
        store.upsert(moved)
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle)
    assert r.ok and r.points_written == 6 and not r.sources_failed


def test_a_target_of_other_files_is_refused(tmp_path, old_index, new_bundle):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    for to, why in ((tmp_path / "notes", "folder of other files"), (tmp_path / "afile", "is a file")):
        with pytest.raises(InputError, match=why):
            reindex(str(old_index), str(to), model=new_bundle)
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["notes.txt"]


def test_bad_targets_are_refused_before_anything_is_written(tmp_path, scenes, old_index, new_bundle, shipped):
    _points(old_index)  # the first open after a write folds the engine's journals
    before = _tree_digest(old_index)
    runner = CliRunner()
    # into the index it reads (also through another spelling of the path)
    os.symlink(old_index, tmp_path / "alias")
    for to in (old_index, tmp_path / "alias", str(old_index) + "/", old_index / "v2", tmp_path):
        with pytest.raises(InputError, match="is the index being read"):
            reindex(str(old_index), str(to), model=new_bundle)
        res = runner.invoke(main, ["reindex", "--index", str(old_index), "--to", str(to),
                                   "--model", str(new_bundle.path)])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "pass a new folder beside it as --to" in res.stderr
    # a target that holds another model
    other = tmp_path / "other"
    ingest([str(scenes[0])], index=str(other), model=shipped, options=OPTS)
    _points(other)
    other_before = _tree_digest(other)
    with pytest.raises(IncompatibleIndexError, match=f"target index {other} already holds .* pass another --to"):
        reindex(str(old_index), str(other), model=new_bundle)
    assert _tree_digest(other) == other_before
    # the index already holds the model asked for: nothing to do, no target made
    with pytest.raises(InputError, match="already holds vectors of model"):
        reindex(str(old_index), str(tmp_path / "same"), model=shipped)
    assert not (tmp_path / "same").exists()
    # a missing old index
    res = runner.invoke(main, ["reindex", "--index", str(tmp_path / "nope"), "--to", str(tmp_path / "x")])
    assert res.exit_code != 0 and "nope" in res.stderr and not (tmp_path / "x").exists()
    assert _tree_digest(old_index) == before


def test_model_mismatch_names_reindex(tmp_path, old_index, new_bundle):
    from rsir_stac.search import Index

    with pytest.raises(IncompatibleIndexError, match=f"rsir-stac reindex --index {old_index} --to NEW"):
        Index.open(str(old_index), model=new_bundle)
    with pytest.raises(IncompatibleIndexError, match="rsir-stac reindex"):
        ingest([], index=str(old_index), model=new_bundle)


def test_reindex_qdrant_collection(tmp_path, scenes, shipped, new_bundle, fresh):
    url = str(tmp_path / "qdrant")
    with open_store(qdrant_url=url) as store:
        ingest([str(s) for s in scenes], store=store, model=shipped, options=OPTS)
    res = CliRunner().invoke(main, ["reindex", "--qdrant-url", url, "--to", "tiles_v2",
                                    "--model", str(new_bundle.path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points_written"] == 6
    _assert_same_index(_points(None, qdrant_url=url, collection="tiles_v2"), fresh, exact=False)
    assert len(_points(None, qdrant_url=url)) == 6  # the old collection is still there
    with pytest.raises(InputError, match="is the collection being read"):
        reindex(qdrant_url=url, to="rsir_tiles", model=new_bundle)
    # the new collection is usable by every command: --qdrant-collection or $RSIR_QDRANT_COLLECTION
    # (trial: search, info, export, ingest and serve only opened rsir_tiles, and the model-mismatch
    # advice sent the user back to reindex)
    runner = CliRunner()
    res = runner.invoke(main, ["info", "--qdrant-url", url, "--qdrant-collection", "tiles_v2"])
    assert res.exit_code == 0 and json.loads(res.stdout)["model_id"] == new_bundle.model_id, res.output
    pid = next(iter(fresh))
    for extra, env in ((["--qdrant-collection", "tiles_v2"], {}), ([], {"RSIR_QDRANT_COLLECTION": "tiles_v2"})):
        res = runner.invoke(main, ["search", "--qdrant-url", url, "--model", str(new_bundle.path), "--point-id", pid,
                                   "--include-query", "--format", "json", "-k", "1", *extra], env=env)
        assert res.exit_code == 0 and json.loads(res.stdout)["hits"][0]["id"] == pid, res.output
    res = runner.invoke(main, ["search", "--qdrant-url", url, "--model", str(new_bundle.path), "--point-id", pid])
    assert res.exit_code == 2 and "and open NEW with --qdrant-collection NEW" in res.output, res.output
    res = runner.invoke(main, ["reindex", "--qdrant-url", url, "--to", "tiles_v2", "--model", str(new_bundle.path)])
    assert res.exit_code == 0 and "--qdrant-collection tiles_v2" in res.stderr, res.output   # how to open it


def test_a_relocate_rule_for_a_folder_reads_the_files_that_did_not_move_where_they_are(
        tmp_path, scenes, old_index, new_bundle, fresh):
    """Trial: with one of a folder's files moved, --relocate FOLDER=NEW also sent the files still
    in FOLDER to NEW, where they are not, and the advice then broke the moved one."""
    folder = scenes[0].parent
    moved = folder.with_name("part-moved")
    moved.mkdir()
    scenes[1].rename(moved / scenes[1].name)
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path), "--relocate", f"{folder}={moved}", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.splitlines()[0])
    assert report["ok"] and report["points_written"] == 6 and not report["sources_failed"], report
    got = _points(tmp_path / "new")
    assert got.keys() == fresh.keys()
    hrefs = {os.path.basename(p.payload["href"]): os.path.dirname(p.payload["href"]) for p in got.values()}
    assert hrefs == {"a.tif": str(folder), "b.tif": str(moved), "c.tif": str(folder)}, hrefs


def test_changed_tiles_and_foreign_points_are_reported(tmp_path, scenes, old_index, new_bundle):
    from rsir_stac.store import Point

    # c.tif shrinks to one tile: its second tile is no longer in the raster
    make_geotiff(scenes[2], width=256, height=256, crs="EPSG:3857", res=0.3, origin=(-10620000.0, 3480000.0), seed=3)
    with open_store(str(old_index)) as store:  # a point written by another tool, without the tile's payload
        store.upsert([Point("00000000-0000-4000-8000-000000000001", next(iter(_points_of(store))).vector,
                            {"item_id": "foreign"})])
    r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle)
    assert not r.ok and not r.sources_failed and r.points_total == 7
    assert r.points_written == 5 and r.tiles_failed == 2
    assert any(f"{scenes[2]} is not in the raster any more" in m and "row_off=0" in m and "col_off=0," not in m
               for m in r.tile_errors)
    assert any("00000000-0000-4000-8000-000000000001" in m and "no href" in m for m in r.tile_errors)
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path)])
    assert res.exit_code == 1 and "error: 2 tile(s) could not be read" in res.stderr
    assert "5 already there" in res.stdout


def _points_of(store):
    return [p for p in store.iter_points(with_vectors=True)]


def test_sigkill_mid_run_then_rerun_equals_clean_run(tmp_path, old_index, new_bundle, fresh):
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    new = tmp_path / "new"
    code = ("import sys\nfrom rsir_stac.reindex import reindex\n"
            "def progress(e):\n    print(e.kind, e.n, file=sys.stderr, flush=True)\n"
            f"reindex({str(old_index)!r}, {str(new)!r}, model={str(new_bundle.path)!r}, page_size=2, batch_size=1, "
            "progress=progress)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    killed = False
    try:
        for line in proc.stderr:
            if line.startswith("points ") and int(line.split()[1]) > 0:  # the first page was upserted
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        proc.wait(timeout=300)
        proc.stderr.close()
    assert killed and proc.returncode == -signal.SIGKILL
    partial = _points(new)  # opens cleanly: lock gone, WAL replayed
    assert 0 < len(partial) < 6 and set(partial) < set(fresh)
    r = reindex(str(old_index), str(new), model=new_bundle)
    assert r.ok and r.points_existing == len(partial) and r.points_written == 6 - len(partial)
    _assert_same_index(_points(new), fresh)


def test_relative_relocate_is_stored_absolute_and_the_advice_names_the_stored_folder(
        tmp_path, scenes, old_index, new_bundle, fresh, monkeypatch):
    """Trial: `--relocate scenes2=scenes2-moved` stored `scenes2-moved/...` as typed (thumbnails
    then depended on the working directory), and after a --relocate run the advice named the
    relocated folder, which changes nothing when followed."""
    from rsir_stac.thumbnails import read_tile

    folder = scenes[0].parent
    moved = tmp_path / "moved-scenes"
    folder.rename(moved)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path), "--relocate", "scenes=elsewhere"])
    last = res.stderr.strip().splitlines()[-1]
    assert res.exit_code == 1 and f"--relocate {folder}=NEW_FOLDER" in last and "elsewhere=" not in last, res.output
    assert f"in place of the --relocate that read them from {tmp_path / 'elsewhere'}" in last
    assert f"stored in the index as {folder}/" in res.stderr
    res = CliRunner().invoke(main, ["reindex", "--index", str(old_index), "--to", str(tmp_path / "new"),
                                    "--model", str(new_bundle.path), "--relocate", "scenes/=./moved-scenes/",
                                    "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["relocate_unmatched"] == []
    got = _points(tmp_path / "new")
    assert got.keys() == fresh.keys()
    (tmp_path / "elsewhere-cwd").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere-cwd")  # the stored hrefs do not depend on the working directory
    for pid, p in got.items():
        assert p.payload["href"] == str(moved / os.path.basename(fresh[pid].payload["href"]))
        assert read_tile(p.payload).std() > 0


def test_relocate_with_the_same_model_points_a_copy_at_the_moved_sources(tmp_path, scenes, old_index, shipped):
    """deploy/README: tiles ingested on the host name host paths a container cannot open; a copy of
    the index that points at where the sources are now needs no new model (it was refused: "already
    holds vectors of model ...; pass --model with the new model bundle")."""
    folder = scenes[0].parent
    moved = folder.with_name("data")
    folder.rename(moved)
    old = _points(old_index)
    r = reindex(str(old_index), str(tmp_path / "here"), model=shipped, relocate=[f"{folder}={moved}"])
    assert r.ok and r.points_written == 6
    got = _points(tmp_path / "here")
    assert got.keys() == old.keys()  # the same ids: the same model, grid and items
    for pid, p in got.items():
        assert p.payload["href"] == str(moved / os.path.basename(old[pid].payload["href"]))
        assert np.allclose(p.vector, old[pid].vector, atol=1e-3)
    with pytest.raises(InputError, match="already holds vectors of model .*--relocate"):
        reindex(str(old_index), str(tmp_path / "same"), model=shipped)
    assert not r.tiling_kept  # the same model keeps its own tiling: no note about "the new model"
    # re-check: an ingest of the moved folder (the container's `ingest /data`) wrote every tile again
    # under new item ids (a bare raster's id includes its path); it now finds them indexed
    again = ingest([str(p) for p in sorted(moved.glob("*.tif"))], index=str(tmp_path / "here"), model=shipped,
                   options=OPTS)
    assert again.ok and again.points_written == 0 and again.tiles_existing == 6, again
    assert _points(tmp_path / "here").keys() == old.keys()


def test_a_relocate_that_matches_no_stored_source_is_said(tmp_path, scenes, old_index, new_bundle, caplog):
    """Trial: a rule whose OLD matched no stored href was silent."""
    with caplog.at_level("WARNING", logger="rsir_stac.reindex"):
        r = reindex(str(old_index), str(tmp_path / "new"), model=new_bundle,
                    relocate=[f"{tmp_path / 'nowhere'}={tmp_path / 'moved'}", "https://a.example/x=https://b.example/x"])
    assert r.ok and r.points_written == 6  # the sources are where the index says: read from there
    assert len(r.relocate_unmatched) == 2
    first = r.relocate_unmatched[0]
    assert first.startswith(f"--relocate {tmp_path / 'nowhere'}={tmp_path / 'moved'} matched no source")
    assert f"under {scenes[0].parent}" in first and f"--relocate {scenes[0].parent}=NEW" in first
    assert r.relocate_unmatched[1].startswith("--relocate https://a.example/x=https://b.example/x matched no")
    assert first in caplog.text


def test_the_tiling_note_reads_past_tiles_cut_at_their_own_gsd():
    """Adaptation trial: an index whose first tiles were cut at their scene's own GSD (coarse scenes)
    and the rest at 0.3 m gave no note for a model expecting 30 m; every tile of every page counts."""
    from types import SimpleNamespace

    from rsir_stac.reindex.stores import _tiling_note, page_tilings
    from rsir_stac.store import Point

    def tile(gsd):
        return Point("x", np.zeros(2, np.float32), {"tiling": {"tile_size": 256, "gsd": gsd}})

    model = SimpleNamespace(tile_size=256, gsd=30.0, model_id="m30")
    assert "expects 256 px at 30.0 m" in _tiling_note(model, page_tilings([tile(None), tile(None), tile(0.3)]))
    assert _tiling_note(model, page_tilings([tile(None), tile(30.0)])) == ""


def test_the_tiling_note_describes_a_mixed_index_by_its_range():
    """Docs trial: a demo index of 0.3 m to 300 m scenes was described as "256 px at 0.224138 m",
    one small scene's GSD."""
    from types import SimpleNamespace

    from rsir_stac.reindex.stores import _tiling_note, page_tilings
    from rsir_stac.store import Point

    bundle = SimpleNamespace(tile_size=224, gsd=0.5, model_id="m2")
    page = [Point(f"{i}", np.zeros(2, np.float32), {"tiling": {"tile_size": 256, "gsd": g}})
            for i, g in enumerate((0.3, 0.224138, 30.0, 0.3))]
    note = _tiling_note(bundle, page_tilings(page))
    assert "(256 px at 0.224138–30 m, each scene as it was ingested)" in note and "224 px at 0.5 m" in note, note
    assert "(256 px at 0.3 m)" in _tiling_note(bundle, page_tilings(page[:1]))
    same = [Point("s", np.zeros(2, np.float32), {"tiling": {"tile_size": 224, "gsd": 0.5}})]
    assert _tiling_note(bundle, page_tilings(same)) == ""


def test_the_tiling_note_comes_only_when_the_new_model_would_tile_otherwise():
    """Helper trial: every reindex of an index holding a small raster (tiled finer, at the GSD where it is
    one tile across, by any model) said the index keeps a tiling the new model does not expect, and
    re-ingesting as told gave the same ids."""
    from types import SimpleNamespace

    from rsir_stac.reindex.stores import _tiling_note

    new = SimpleNamespace(model_id="m-new", tile_size=256, gsd=0.3)
    assert _tiling_note(new, {(256, 0.3), (256, 0.224138), (256, 300.0)}) == ""  # scene-chosen GSDs beside 0.3
    assert _tiling_note(new, set()) == ""
    note = _tiling_note(new, {(256, 0.6), (256, 30.0)})  # the old model tiled at 0.6 m
    assert note.startswith("the index keeps its tiling (256 px at 0.6–30 m, each scene as it was ingested) while "
                           "m-new expects 256 px at 0.3 m")
    assert "512 px" in _tiling_note(new, {(512, 0.3)})


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc (a folder nobody can create in)")
def test_a_target_that_cannot_be_made_is_refused_naming_to(tmp_path, old_index, new_bundle):
    """Helper trial: `reindex --to /proc/nope` passed the permission test (root) and failed at the first
    write, saying "choose a writable --index" (the index it reads)."""
    from rsir_stac.errors import StoreError

    with pytest.raises(StoreError, match=r"cannot create index directory /proc/nope \(.*\); pass a writable --to$"):
        reindex(str(old_index), "/proc/nope", model=new_bundle)


def test_info_names_the_shipped_model_and_says_when_it_is_not_the_default(tmp_path):
    """Upgrade trial: `info` showed only the model's hash, so an index of the default before (v6) was not
    told apart from one of today's, nor told how to move."""
    from rsir_stac.model.bundle import SHIPPED_ALIASES

    default = next(iter(SHIPPED_ALIASES))  # the default's version name
    tif = make_geotiff(tmp_path / "s.tif", width=128, height=128, seed=5)
    for model, name in (("v6", "v6"), ("default", default)):
        ingest([str(tif)], index=str(tmp_path / model), model=model, options=IngestOptions(tile_size=64, native_gsd=True))
        r = CliRunner().invoke(main, ["info", "--index", str(tmp_path / model)])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout[: r.stdout.rindex("}") + 1])["model"] == name
        note = (f"note: its vectors are of the shipped model v6, not the default ({default}): pass --model v6 to "
                f"search it, or move it to the default with `rsir-stac reindex --index {tmp_path / model} --to NEW`")
        assert (note in r.stderr) == (model == "v6"), r.stderr
    # searched as it is, without --model on every command: RSIR_MODEL, which the refusal names
    pid = next(iter(_points(tmp_path / "v6")))
    r = CliRunner().invoke(main, ["search", "--index", str(tmp_path / "v6"), "--point-id", pid, "-k", "2"])
    assert r.exit_code != 0 and "(shipped: --model v6, or RSIR_MODEL=v6 for every command)" in r.output, r.output
    r = CliRunner().invoke(main, ["search", "--index", str(tmp_path / "v6"), "--point-id", pid, "-k", "2"],
                           env={"RSIR_MODEL": "v6"})
    assert r.exit_code == 0, r.output
