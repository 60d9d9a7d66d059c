"""migrate and export refuse what would copy only part of an index, and a store that keeps nothing
(new-user trial of the back ends: a damaged index was migrated and exported in part with exit 0,
`--qdrant-url :memory:` took an ingest whose points vanished)."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.ingest import IngestOptions, ingest
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)


@pytest.fixture()
def index(tmp_path, tiny_bundle):
    scenes = [make_geotiff(tmp_path / f"s{i}.tif", width=128, height=128, seed=i, origin=(500000.0 + 500 * i, 3300000.0))
              for i in range(3)]
    idx = tmp_path / "idx"
    r = ingest([str(s) for s in scenes], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert r.ok and r.points_written == 12
    return idx


def test_a_damaged_index_is_neither_migrated_nor_exported_in_part(tmp_path, index, tiny_bundle):
    """Its segments deleted, an index still opens with the points of its write-ahead log (here
    none or a few): migrate copied those and said "copied N points" (exit 0), export wrote them."""
    damaged = tmp_path / "damaged"
    shutil.copytree(index, damaged)
    for seg in (damaged / "rsir_tiles" / "segments").iterdir():
        shutil.rmtree(seg) if seg.is_dir() else seg.unlink()
    runner = CliRunner()
    target = tmp_path / "qc"
    res = runner.invoke(main, ["migrate", "--index", str(damaged), "--qdrant-url", str(target)])
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]
    assert "is damaged" in last and "recorded points are missing" in last and "check --index" in last, last
    assert not target.exists()   # the folder it would have created is not left behind
    out = tmp_path / "rows.csv"
    res = runner.invoke(main, ["export", "--index", str(damaged), "--model", str(tiny_bundle.path), "--out", str(out)])
    assert res.exit_code == 1 and "exporting it would copy only what still reads" in res.output, res.output
    assert not out.exists()
    # the whole index migrates, and a second run says the points were there already
    for again in (False, True):
        res = runner.invoke(main, ["migrate", "--index", str(index), "--qdrant-url", str(target)])
        assert res.exit_code == 0 and "copied 12 points" in res.stdout, res.output
        assert ("12 of them were there already" in res.stdout) is again


def test_qdrant_memory_mode_is_refused_by_commands(tmp_path, index):
    runner = CliRunner()
    for args in (["ingest", str(tmp_path / "s0.tif"), "--qdrant-url", ":memory:"],
                 ["migrate", "--index", str(index), "--qdrant-url", ":memory:"],
                 ["info", "--qdrant-url", ":memory:"]):
        res = runner.invoke(main, args)
        assert res.exit_code == 2 and ":memory: keeps nothing after the command ends" in res.output, (args, res.output)


def test_qdrant_collection_names_are_checked_and_missing_ones_name_what_is_there(tmp_path, index, tiny_bundle,
                                                                                caplog):
    """Re-check of the back ends: a mistyped --qdrant-collection made ingest start a second index
    quietly; a missing one said 'build it with ingest'; with --index it was ignored; '' and 'a/b'
    passed or failed late."""
    runner = CliRunner()
    url = str(tmp_path / "qc")
    assert runner.invoke(main, ["migrate", "--index", str(index), "--qdrant-url", url]).exit_code == 0
    res = runner.invoke(main, ["info", "--qdrant-url", url, "--qdrant-collection", "rsir_tile"])
    assert res.exit_code == 2 and "collection 'rsir_tile' does not exist; the store holds 'rsir_tiles': pass one " \
                                  "with --qdrant-collection NAME" in res.output, res.output
    with caplog.at_level("WARNING", logger="rsir_stac.store.server"):
        res = runner.invoke(main, ["ingest", str(tmp_path / "s0.tif"), "--qdrant-url", url, "--qdrant-collection",
                                   "rsir_tile", "--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd"])
    assert res.exit_code == 0, res.output
    assert "creating collection 'rsir_tile'" in caplog.text and "beside 'rsir_tiles'" in caplog.text
    for bad, msg in (("", "is not a collection name"), ("a/b", "is not a collection name")):
        res = runner.invoke(main, ["info", "--qdrant-url", url, "--qdrant-collection", bad])
        assert res.exit_code == 2 and msg in res.output, (bad, res.output)
    res = runner.invoke(main, ["info", "--index", str(index), "--qdrant-collection", "rsir_tiles"])
    assert res.exit_code == 2 and "an embedded --index holds one: drop --qdrant-collection" in res.output
    res = runner.invoke(main, ["reindex", "--qdrant-url", url, "--collection", "rsir_tiles", "--qdrant-collection",
                               "rsir_tile", "--to", "x"])
    assert res.exit_code == 2 and "both name the collection to read" in res.output


def test_an_index_a_repair_left_short_is_not_migrated_until_the_ingest_restores_it(tmp_path, index):
    """Re-check: after `check --repair` dropped the damaged points, migrate and export copied the
    12 of 98 left and exited 0 (the damage refusal, one step later)."""
    damaged = tmp_path / "damaged"
    shutil.copytree(index, damaged)
    for seg in (damaged / "rsir_tiles" / "segments").iterdir():
        shutil.rmtree(seg) if seg.is_dir() else seg.unlink()
    runner = CliRunner()
    assert runner.invoke(main, ["check", "--index", str(damaged), "--repair"]).exit_code in (0, 1)
    res = runner.invoke(main, ["migrate", "--index", str(damaged), "--qdrant-url", str(tmp_path / "qc")])
    assert res.exit_code == 1 and "are still missing from the index" in res.output, res.output
    assert not (tmp_path / "qc").exists()
