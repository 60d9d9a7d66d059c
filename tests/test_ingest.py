"""Ingest and search on the real Qdrant Edge engine, with real rasters."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import IncompatibleIndexError, PointNotFoundError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index, to_geojson
from rsir_stac.store import SearchFilter, open_store
from rsir_stac.store.filters import matches
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, native_gsd=True)


@pytest.fixture()
def scenes(tmp_path):
    return [
        make_geotiff(tmp_path / "utm.tif", seed=1, datetime_tag="2021:06:01 10:00:00"),
        # degrees as long east-west as north-south on the ground at 29.8 N (square pixels)
        make_geotiff(tmp_path / "wgs84.tif", crs="EPSG:4326", res=(1e-5 / 0.8705, 1e-5), origin=(-95.4, 29.8), seed=2),
        make_geotiff(tmp_path / "merc.tif", crs="EPSG:3857", res=1.0, origin=(-10620000.0, 3480000.0), seed=3),
    ]


def test_ingest_is_idempotent_and_searchable(tmp_path, scenes, tiny_bundle):
    idx = tmp_path / "idx"
    r1 = ingest([str(s) for s in scenes], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert r1.ok and r1.items_done == 3
    # 256x192 at tile 64 -> 4x3 = 12 tiles per scene
    assert r1.points_written == 36 and r1.tiles_total == 36
    r2 = ingest([str(s) for s in scenes], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert r2.points_written == 0 and r2.tiles_existing == 36
    with Index.open(str(idx), model=tiny_bundle) as index:
        assert index.store.count() == 36
        pts = list(index.store.iter_points())
        p = pts[0]
        for key in ("item_id", "collection", "asset", "href", "window", "crs", "bbox", "location", "corners",
                    "datetime", "datetime_epoch", "gsd", "model_id"):
            assert key in p.payload
        assert p.payload["model_id"] == tiny_bundle.model_id
        res = index.search(point_id=p.id, k=5)
        assert len(res.hits) == 5 and p.id not in [h.id for h in res.hits]
        # the default soft per-scene cap ranks a scene's 4th+ hit as if FILL_PENALTY times farther,
        # so raw distances may step back; the ranking key is monotonic, and without the cap the distance is
        from rsir_stac.search import AUTO_PER_ITEM
        from rsir_stac.store.query import FILL_PENALTY

        seen: dict = {}
        keys = []
        for h in res.hits:
            seen[h.payload["item_id"]] = seen.get(h.payload["item_id"], 0) + 1
            keys.append(h.score * (FILL_PENALTY if seen[h.payload["item_id"]] > AUTO_PER_ITEM else 1.0))
        assert keys == sorted(keys)
        plain = index.search(point_id=p.id, k=5, per_item=None)
        assert [h.score for h in plain.hits] == sorted(h.score for h in plain.hits)
        res_in = index.search(point_id=p.id, k=5, include_query=True)
        assert res_in.hits[0].id == p.id and res_in.hits[0].score == pytest.approx(0, abs=1e-4)


def test_reingest_with_other_bands_is_refused_not_skipped(tmp_path, scenes, tiny_bundle):
    """Point ids do not depend on the bands: a re-run with other --bands found every tile
    "already indexed" and kept the old bands silently; now the item fails with the fix."""
    from dataclasses import replace

    idx = tmp_path / "idx"
    assert ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=NATIVE).points_written == 12
    r = ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=replace(NATIVE, bands=(3, 2, 1)))
    assert not r.ok and r.points_written == 0 and len(r.items_failed) == 1
    err = r.items_failed[0]["error"]
    assert "with bands 1,2,3, not 3,2,1" in err and "another --index" in err
    again = ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=replace(NATIVE, bands=(1, 2, 3)))
    assert again.ok and again.tiles_existing == 12  # the same bands, given explicitly: already indexed
    other = ingest([str(scenes[0])], index=str(tmp_path / "idx2"), model=tiny_bundle,
                   options=replace(NATIVE, bands=(3, 2, 1)))
    assert other.points_written == 12  # the fix works: another index takes the other bands
    with Index.open(str(idx), model=tiny_bundle) as index:
        assert {tuple(p.payload["tiling"]["bands"]) for p in index.store.iter_points(with_vectors=False)} == {(1, 2, 3)}


def test_footprints_match_source_crs(tmp_path, scenes, tiny_bundle):
    from pyproj import Transformer

    idx = tmp_path / "idx"
    ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    tr = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    with open_store(str(idx), read_only=True) as store:
        for p in store.iter_points(with_vectors=False):
            w = p.payload["window"]
            x0, y0 = 500000.0 + w["col_off"], 3300000.0 - w["row_off"]
            lon, lat = tr.transform(x0, y0)
            ul = p.payload["corners"][0]
            assert ul["lon"] == pytest.approx(lon, abs=1e-9) and ul["lat"] == pytest.approx(lat, abs=1e-9)
            assert p.payload["datetime"].startswith("2021-06-01T10:00:00")


def test_incompatible_model_refused_and_index_untouched(tmp_path, scenes, tiny_bundle):
    import shutil

    from rsir_stac.model.bundle import load_bundle, save_bundle

    idx = tmp_path / "idx"
    ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    other_dir = tmp_path / "other"
    b = load_bundle(tiny_bundle.path)
    meta = json.loads(json.dumps(b.meta))
    meta["name"] = "other"
    other = save_bundle(other_dir, b.net, None, meta)  # no reducer: 16-d vectors
    with pytest.raises(IncompatibleIndexError, match="same model or a new --index"):
        ingest([str(scenes[1])], index=str(idx), model=other, options=NATIVE)
    with open_store(str(idx), read_only=True) as store:
        assert store.count() == 12
    shutil.rmtree(other_dir)


def test_missing_source_writes_nothing(tmp_path, scenes, tiny_bundle):
    from rsir_stac.errors import SourceNotFoundError

    idx = tmp_path / "idx"
    with pytest.raises(SourceNotFoundError):
        ingest([str(scenes[0]), str(tmp_path / "missing.tif")], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert not idx.exists()


def test_cli_ingest_search_formats(tmp_path, scenes, tiny_bundle):
    runner = CliRunner()
    idx = str(tmp_path / "idx")
    model = str(tiny_bundle.path)
    r = runner.invoke(main, ["ingest", *map(str, scenes), "--index", idx, "--model", model,
                             "--tile-size", "64", "--native-gsd", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["points_written"] == 36
    with open_store(idx, read_only=True) as store:
        pts = list(store.iter_points(with_vectors=False))
    lon, lat = pts[5].payload["location"]["lon"], pts[5].payload["location"]["lat"]
    r = runner.invoke(main, ["search", "--at", f"{lon},{lat}", "--index", idx, "--model", model,
                             "--format", "geojson", "-k", "7"])
    assert r.exit_code == 0, r.output
    fc = json.loads(r.stdout)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 7
    ring = fc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    # bbox filter around one scene: every hit inside
    b = pts[0].payload["bbox"]
    bbox = f"{b[0] - 0.001},{b[1] - 0.001},{b[2] + 0.01},{b[3] + 0.01}"
    r = runner.invoke(main, ["search", "--point-id", pts[5].id, "--index", idx, "--model", model,
                             "--bbox", bbox, "--format", "json"])
    assert r.exit_code == 0, r.output
    flt = SearchFilter(bbox=tuple(float(v) for v in bbox.split(",")))
    hits = json.loads(r.stdout)["hits"]
    assert hits and all(matches(h, flt) for h in hits)
    # image query + thumbnails + contact sheet
    from PIL import Image

    q = tmp_path / "q.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(q)
    r = runner.invoke(main, ["search", "--image", str(q), "--index", idx, "--model", model,
                             "--thumbnails", str(tmp_path / "th"), "-k", "3"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "th" / "contact_sheet.png").is_file()
    assert len(list((tmp_path / "th").glob("0*_*.png"))) == 4  # query + 3
    # errors: one line, non-zero exit
    r = runner.invoke(main, ["search", "--at", "10,95", "--index", idx, "--model", model])
    assert r.exit_code != 0 and "error:" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(main, ["search", "--point-id", "0c5b7d5e-0000-4000-8000-000000000000", "--index", idx,
                             "--model", model])
    assert r.exit_code != 0 and "not in index" in r.output


def test_edge_and_qdrant_client_give_same_answers(tmp_path, scenes, tiny_bundle):
    """The qdrant-client path (local mode standing in for a server) equals the Edge store."""
    from rsir_stac.store.server import ServerStore

    server = ServerStore(":memory:")
    ingest([str(s) for s in scenes], store=server, model=tiny_bundle, options=NATIVE)
    idx = tmp_path / "idx"
    ingest([str(s) for s in scenes], index=str(idx), model=tiny_bundle, options=NATIVE)
    with open_store(str(idx), read_only=True) as edge:
        pts = sorted(edge.iter_points(), key=lambda p: p.id)
        spts = sorted(server.iter_points(), key=lambda p: p.id)
        assert [p.id for p in pts] == [p.id for p in spts]
        lons = [p.payload["location"]["lon"] for p in pts]
        lats = [p.payload["location"]["lat"] for p in pts]
        mid = (float(np.median(lons)), float(np.median(lats)))
        filters = [None, SearchFilter(bbox=(min(lons), min(lats), mid[0], max(lats))),
                   SearchFilter(near=(mid[0], mid[1], 3000.0)),
                   SearchFilter(polygon=((min(lons), min(lats)), (mid[0], min(lats)), (mid[0], max(lats)),
                                         (min(lons), min(lats))))]
        for q in pts[::7]:
            for flt in filters:
                a = edge.search(q.vector, k=8, flt=flt)
                b = server.search(q.vector, k=8, flt=flt)
                assert [h.id for h in a] == [h.id for h in b]
                assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
    server.close()


def test_shards_partition_the_items(tmp_path, scenes, tiny_bundle):
    from rsir_stac.store.server import ServerStore

    full = ServerStore(":memory:")
    ingest([str(s) for s in scenes], store=full, model=tiny_bundle, options=NATIVE)
    union = ServerStore(":memory:")
    per_shard = []
    for i in range(3):
        r = ingest([str(s) for s in scenes], store=union, model=tiny_bundle,
                   options=IngestOptions(tile_size=64, native_gsd=True, shard=(i, 3)))
        per_shard.append(r.points_written)
    assert sum(per_shard) == full.count() == union.count() == 36
    assert {p.id for p in union.iter_points()} == {p.id for p in full.iter_points()}


def test_at_outside_index(tmp_path, scenes, tiny_bundle):
    idx = tmp_path / "idx"
    ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    with Index.open(str(idx), model=tiny_bundle) as index, pytest.raises(PointNotFoundError):
        index.search(at=(10.0, 10.0))
    with Index.open(str(idx), model=tiny_bundle) as index:
        res = index.search(at=(index.store.info().extent[0] + 1e-4, index.store.info().extent[3] - 1e-4), k=3)
        fc = to_geojson(res)
        assert res.query_kind == "location" and len(fc["features"]) == 3


def test_migrate_edge_to_server_keeps_ids_and_answers(tmp_path, scenes, tiny_bundle):
    from rsir_stac.store.migrate import migrate
    from rsir_stac.store.server import ServerStore

    idx = tmp_path / "idx"
    ingest([str(s) for s in scenes[:2]], index=str(idx), model=tiny_bundle, options=NATIVE)
    dst = ServerStore(":memory:")
    with open_store(str(idx), read_only=True) as src:
        assert migrate(src, dst, batch_size=7) == 24
        assert migrate(src, dst, batch_size=7) == 24  # idempotent re-run
        assert dst.count() == 24
        assert dst.meta().model_id == tiny_bundle.model_id
        q = next(src.iter_points())
        assert [h.id for h in src.search(q.vector, k=6)] == [h.id for h in dst.search(q.vector, k=6)]
    dst.close()
    other = ServerStore(str(tmp_path / "q"))  # a local folder holding another model
    other.ensure_collection(tiny_bundle.dim, "another-model")
    with open_store(str(idx), read_only=True) as src, pytest.raises(IncompatibleIndexError) as ei:
        migrate(src, other)
    # the fix names what migrate can do (it has no --model or --collection option)
    assert "another --qdrant-url" in str(ei.value) and "rsir-stac reindex --index" in str(ei.value)
    assert "--model default" not in str(ei.value) and other.count() == 0
    other.close()


def test_an_interrupted_migrate_leaves_a_target_that_says_it_is_unfinished(tmp_path, scenes, tiny_bundle, caplog):
    """Ctrl-C keeps what was copied (the same command resumes); until it does, every reader of the
    target is told it holds part of the source, and `info` says so."""
    from rsir_stac.store.migrate import migrate
    from rsir_stac.store.server import ServerStore

    idx, url = tmp_path / "idx", str(tmp_path / "q")
    ingest([str(s) for s in scenes[:2]], index=str(idx), model=tiny_bundle, options=NATIVE)

    def stop(n):
        if n >= 7:
            raise KeyboardInterrupt

    with open_store(str(idx), read_only=True) as src, ServerStore(url) as dst, pytest.raises(KeyboardInterrupt):
        migrate(src, dst, batch_size=7, progress=stop)
    with ServerStore(url) as dst:
        assert dst.meta().unfinished.startswith("a migrate of index ") and 0 < dst.count() < 24
    with caplog.at_level("WARNING", logger="rsir_stac.search"), Index.open(qdrant_url=url, model=tiny_bundle):
        pass
    assert "re-run the same `rsir-stac migrate` command to finish it" in caplog.text
    res = CliRunner().invoke(main, ["info", "--qdrant-url", url])
    assert res.exit_code == 0 and json.loads(res.stdout)["unfinished"].startswith("a migrate of"), res.output
    with open_store(str(idx), read_only=True) as src, ServerStore(url) as dst:
        assert migrate(src, dst, batch_size=7) == 24
        assert dst.meta().unfinished == "" and dst.count() == 24


def test_ingested_vectors_are_their_tiles_embeddings(tmp_path, scenes, tiny_bundle):
    """Batches go out to the embedding lanes and come back in order: every
    stored vector is the embedding of the tile its payload names."""
    import gc

    from rsir_stac.tiling import SceneReader, gdal_env

    freeze_counts = []
    opts = IngestOptions(tile_size=64, native_gsd=True, batch_size=3)
    r = ingest([str(scenes[0])], index=str(tmp_path / "idx"), model=tiny_bundle, options=opts,
               progress=lambda e: freeze_counts.append(gc.get_freeze_count()))
    assert r.points_written == 12
    # objects alive before the run are left out of the GC during it, and handed back after
    assert max(freeze_counts) > 0 and gc.get_freeze_count() == 0
    with SceneReader.open(str(scenes[0]), target_gsd=None, tile_size=64) as reader, gdal_env():
        tiles = [reader.read(ref) for ref in reader.windows()]
    with tiny_bundle.embedder(batch_size=3) as emb:
        want = emb.embed([t.pixels for t in tiles])
    by_window = {(t.ref.window.col_off, t.ref.window.row_off): v for t, v in zip(tiles, want)}
    store = open_store(str(tmp_path / "idx"))
    try:
        got = {(p.payload["window"]["col_off"], p.payload["window"]["row_off"]): p.vector
               for p in store.iter_points(with_vectors=True)}
    finally:
        store.close()
    assert got.keys() == by_window.keys()
    for key, v in got.items():
        assert np.allclose(v, by_window[key], atol=1e-5), key


def test_ingest_leaves_an_applications_gc_freeze_alone(tmp_path, scenes, tiny_bundle):
    import gc

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        ingest([str(scenes[1])], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
        # neither unfrozen (count 0) nor frozen again (count would grow by the objects ingest made);
        # frozen objects that die during the run (module caches) may lower it a little
        assert frozen * 0.9 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("edge", ["shift", "drop"])
def test_scene_smaller_than_one_tile_is_named_as_such(tmp_path, tiny_bundle, edge):
    """A scene smaller than one tile is not blamed on nodata: the report says its size and what to change."""
    small = make_geotiff(tmp_path / "small.tif", width=40, height=30, seed=4)
    opts = IngestOptions(tile_size=64, native_gsd=True, edge=edge)
    rep = ingest([str(small)], index=str(tmp_path / "idx"), model=tiny_bundle, options=opts)
    assert rep.ok and rep.points_written == 0 and len(rep.items_empty) == 1
    (info,) = rep.items_small
    assert (info["width"], info["height"]) == (40, 30) and info["item"] == rep.items_empty[0]
    assert "smaller than one 64 px tile" in info["hint"]
    assert ("--native-gsd" if edge == "drop" else "smaller --tile-size") in info["hint"]
    assert "smaller than one tile" in rep.nothing_indexed and "nodata" not in rep.nothing_indexed
    assert ("--edge pad" in rep.nothing_indexed) == (edge == "drop")


def test_sizes_that_cannot_be_meant_are_refused_up_front(tmp_path):
    """Zero or negative pixels, a tile outside 8..4096 px, --gsd with --native-gsd: refused
    before any work; a --gsd that would cut a scene into billions of tiles (degrees taken for
    metres) fails that scene with the estimate, instead of exhausting memory."""
    from rsir_stac.errors import InputError

    scene = make_geotiff(tmp_path / "s.tif", width=128, height=128)
    idx = tmp_path / "idx"
    for opts, phrase in ((IngestOptions(tile_size=0), "--tile-size 0"), (IngestOptions(stride=0), "--stride 0"),
                         (IngestOptions(tile_size=3), "outside 8..4096"),
                         (IngestOptions(tile_size=100_000), "outside 8..4096"),
                         (IngestOptions(gsd=0.0), "--gsd 0.0"), (IngestOptions(gsd=float("nan")), "--gsd nan"),
                         (IngestOptions(gsd=1e-300), "--gsd 1e-300 is outside 0.001..100000 metres"),
                         (IngestOptions(gsd=2e5), "--gsd 200000.0 is outside 0.001..100000 metres"),
                         (IngestOptions(gsd=1.0, native_gsd=True), "--native-gsd")):
        with pytest.raises(InputError, match=phrase.replace(".", r"\.")):
            ingest([str(scene)], index=str(idx), options=opts)
        assert not idx.exists()
    wide = make_geotiff(tmp_path / "wide.tif", width=128, height=128, res=200.0)   # 25.6 km at 1 mm: 6e10 px a side
    rep = ingest([str(wide)], index=str(idx), options=IngestOptions(gsd=0.001))
    assert not rep.ok and rep.points_written == 0
    assert "tiles of 256 px: over the 4,000,000 one scene may hold" in rep.items_failed[0]["error"]


def test_asset_for_a_bare_raster_is_said_to_be_ignored(tmp_path, caplog):
    scene = make_geotiff(tmp_path / "s.tif", width=64, height=64)
    with caplog.at_level("WARNING", logger="rsir_stac.ingest"):
        rep = ingest([str(scene)], index=str(tmp_path / "idx"),
                     options=IngestOptions(asset="nope", tile_size=64, native_gsd=True))
    assert rep.ok and rep.points_written == 1
    assert any("--asset nope applies to STAC items only" in r.getMessage() for r in caplog.records)


def test_a_scene_too_small_at_its_own_gsd_is_tiled_at_the_models(tmp_path):
    """0.62 m, 175 x 143 px: just over twice the model's 0.3 m, so it would be tiled at its own GSD,
    where it holds no 256 px tile and was skipped; at 0.3 m it holds one."""
    scene = make_geotiff(tmp_path / "small.tif", width=175, height=143, res=0.62)
    rep = ingest([str(scene)], index=str(tmp_path / "idx"))
    assert rep.ok and rep.points_written >= 1 and not rep.items_empty
    with open_store(str(tmp_path / "idx"), read_only=True) as s:
        assert {round(p.payload["gsd"], 3) for p in s.iter_points(with_vectors=False)} == {0.3}


def test_a_fine_scene_smaller_than_one_tile_at_the_models_gsd_is_tiled_at_the_coarsest_that_holds_one(tmp_path):
    """Adaptation trial: with a bundle adapted at 30 m, a 0.35 m drone mosaic was shrunk to 8x9 px and
    skipped ("nothing was indexed"). A scene finer than the model's GSD and smaller than one tile at it
    is tiled at the GSD where it is one tile across (here: a 5 cm mosaic, 50 x 40 m, for 0.3 m): exactly
    one tile high, not 257-258 px that the shift edge would cut into near-copies a pixel apart (re-check)."""
    scene = make_geotiff(tmp_path / "drone.tif", width=1000, height=800, res=0.05)
    rep = ingest([str(scene)], index=str(tmp_path / "idx"))
    assert rep.ok and rep.points_written >= 1 and not rep.items_empty, rep
    with open_store(str(tmp_path / "idx"), read_only=True) as s:
        pts = list(s.iter_points(with_vectors=False))
    gsd = {p.payload["gsd"] for p in pts}
    # 50 x 40 m: one padded tile, its longer side 256 px (80 % valid), not 257-258 px cut into near-copies
    assert len(gsd) == 1 and gsd.pop() == pytest.approx(50 / 256, rel=1e-5), {p.payload["gsd"] for p in pts}
    assert len(pts) == 1 and pts[0].payload["grid"]["width"] == 256, [p.payload["grid"] for p in pts]
    again = ingest([str(scene)], index=str(tmp_path / "idx"))  # the same GSD again: the same point ids
    assert again.ok and again.points_written == 0 and again.tiles_existing == len(pts)
    # a long strip: its shorter side one tile across, a row of tiles
    strip = make_geotiff(tmp_path / "strip.tif", width=1200, height=300, res=0.05)
    rep = ingest([str(strip)], index=str(tmp_path / "idx4"))
    with open_store(str(tmp_path / "idx4"), read_only=True) as s:
        got = list(s.iter_points(with_vectors=False))
    gsds = {p.payload["gsd"] for p in got}
    assert rep.ok and len(gsds) == 1 and gsds.pop() == pytest.approx(15 / 256, rel=1e-5) and len(got) == 4, got
    # smaller than one tile at its own GSD: enlarged at most 8x, as a coarse small scene is (re-check:
    # a 0.6 m scene of 266x204 px was dropped with a 30 m model, though a 0.3 m one enlarges it)
    small = make_geotiff(tmp_path / "small.tif", width=300, height=150, res=0.05)
    rep = ingest([str(small)], index=str(tmp_path / "idx2"))
    assert rep.ok and rep.points_written >= 1, rep
    tiny = make_geotiff(tmp_path / "tiny.tif", width=20, height=10, res=0.05)  # 1 m x 0.5 m: 12.8x needed
    rep = ingest([str(tiny)], index=str(tmp_path / "idx3"))
    assert rep.points_written == 0 and rep.items_small


def test_a_small_scene_is_not_blown_up_past_the_models_scale_range(tmp_path):
    """A 30 m strip smaller than one tile at its own GSD was tiled at 0.3 m: 100x enlarged
    pixels in ~1,900 tiles.  Beyond 8x it keeps its own GSD (one padded tile, here mostly
    empty) and the refusal says what to change."""
    scene = make_geotiff(tmp_path / "strip.tif", width=600, height=20, res=30.0)
    rep = ingest([str(scene)], index=str(tmp_path / "idx"))
    assert rep.points_written == 0 and rep.tiles_total <= 3
    assert "smaller --tile-size" in rep.items_small[0]["hint"]
    kept = ingest([str(scene)], index=str(tmp_path / "idx2"), options=IngestOptions(min_valid=0.05))
    with open_store(str(tmp_path / "idx2"), read_only=True) as s:
        assert kept.points_written >= 1
        assert {round(p.payload["gsd"], 1) for p in s.iter_points(with_vectors=False)} == {30.0}


def test_sidecar_masks_nodata_and_georeferencing_are_read(tmp_path, tiny_bundle):
    """A local raster's sidecars are part of it (GDAL lists the folder to find them): an
    external ``.msk`` mask and a nodata value kept only in ``.aux.xml`` leave their masked
    tiles out, and a PNG georeferenced by its ``.aux.xml`` ingests; with the folder listing
    off (as for remote files) all three were read as if the sidecars did not exist."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(3)
    data = rng.integers(20, 230, (3, 64, 64), dtype=np.uint8)
    prof = dict(driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32633",
                transform=from_origin(600000, 5200000, 10, 10))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False):
        with rasterio.open(tmp_path / "extmask.tif", "w", **prof) as d:
            d.write(data)
            m = np.full((64, 64), 255, np.uint8)
            m[:, :36] = 0
            d.write_mask(m)
    assert (tmp_path / "extmask.tif.msk").exists()
    zeros = data.copy()
    zeros[:, :, :36] = 0
    with rasterio.open(tmp_path / "pam.tif", "w", **prof) as d:
        d.write(zeros)
    (tmp_path / "pam.tif.aux.xml").write_text("<PAMDataset>" + "".join(
        f'<PAMRasterBand band="{b}"><NoDataValue>0</NoDataValue></PAMRasterBand>' for b in (1, 2, 3)) + "</PAMDataset>")
    with rasterio.open(tmp_path / "geo.png", "w", **{**prof, "driver": "PNG"}) as d:
        d.write(data)
    assert (tmp_path / "geo.png.aux.xml").exists()  # GDAL keeps a PNG's CRS and transform there
    opts = IngestOptions(tile_size=32, native_gsd=True)
    for name, want in (("extmask.tif", 2), ("pam.tif", 2), ("geo.png", 4)):
        r = ingest([str(tmp_path / name)], index=str(tmp_path / f"idx-{name}"), model=tiny_bundle, options=opts)
        assert r.ok and r.points_written == want, (name, r.as_dict())


def test_reingest_after_a_georeferencing_fix_is_refused_not_skipped(tmp_path, tiny_bundle):
    """Fixing a raster's CRS in place and re-running ingest found every tile "already indexed"
    (ids do not depend on the georeferencing) and kept footprints 555 km off; now the item
    fails naming the move and the fix, and a new index takes the file where it is now."""
    import rasterio

    path = make_geotiff(tmp_path / "fixme.tif", width=128, height=128, crs="EPSG:32756", origin=(300000.0, 6250000.0))
    idx = tmp_path / "idx"
    assert ingest([str(path)], index=str(idx), model=tiny_bundle, options=NATIVE).points_written == 4
    again = ingest([str(path)], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert again.ok and again.tiles_existing == 4  # unchanged file: already indexed, as before
    with rasterio.open(path, "r+") as ds:
        ds.crs = "EPSG:32755"  # the zone was wrong
    r = ingest([str(path)], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert not r.ok and r.points_written == 0
    assert "has moved on the ground" in r.items_failed[0]["error"] and "new --index" in r.items_failed[0]["error"]
    fresh = ingest([str(path)], index=str(tmp_path / "idx2"), model=tiny_bundle, options=NATIVE)
    assert fresh.points_written == 4
    with rasterio.open(path, "r+") as ds:  # a shift of half a pixel is a move too
        t = ds.transform
        ds.transform = rasterio.Affine(t.a, t.b, t.c + 0.5 * t.a, t.d, t.e, t.f)
    half = ingest([str(path)], index=str(tmp_path / "idx2"), model=tiny_bundle, options=NATIVE)
    assert not half.ok and "has moved on the ground" in half.items_failed[0]["error"]


def test_stac_raster_bands_nodata_masks_a_file_without_its_own(tmp_path, tiny_bundle):
    """An asset's ``raster:bands`` nodata marks invalid pixels the file does not declare
    (the raster extension): the all-zero left tiles are left out, and a stored tile read
    back (thumbnails, the pixel path) is masked the same way.  The file's own nodata wins."""
    import json

    import rasterio
    from rasterio.transform import from_origin

    from rsir_stac.thumbnails import read_tile

    rng = np.random.default_rng(4)
    data = rng.integers(20, 230, (3, 64, 64), dtype=np.uint8)
    data[:, :, :36] = 0
    prof = dict(driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32633",
                transform=from_origin(600000, 5200000, 10, 10))
    with rasterio.open(tmp_path / "scene.tif", "w", **prof) as d:
        d.write(data)
    with rasterio.open(tmp_path / "own.tif", "w", nodata=7, **prof) as d:  # declares its own (other) nodata
        d.write(data)

    def item(name):
        doc = {"type": "Feature", "stac_version": "1.0.0", "id": name, "bbox": [0, 0, 1, 1],
               "geometry": {"type": "Point", "coordinates": [0, 0]},
               "properties": {"datetime": "2021-01-01T00:00:00Z"}, "links": [],
               "assets": {"data": {"href": f"./{name}.tif", "type": "image/tiff; application=geotiff",
                                   "roles": ["data"], "raster:bands": [{"nodata": 0}] * 3}}}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        return str(path)

    opts = IngestOptions(tile_size=32, native_gsd=True)
    r = ingest([item("scene")], index=str(tmp_path / "idx"), model=tiny_bundle, options=opts)
    assert r.ok and r.points_written == 2 and r.tiles_empty == 2
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as index:
        pts = list(index.store.iter_points(with_vectors=False))
    assert {p.payload["tiling"]["nodata"] for p in pts} == {0.0}
    for p in pts:
        px = read_tile(p.payload)
        assert px.shape == (32, 32, 3) and px.any()
    own = ingest([item("own")], index=str(tmp_path / "idx2"), model=tiny_bundle, options=opts)
    assert own.points_written == 4  # the file's nodata (7) wins: its zeros are data


def test_search_out_with_thumbnails_writes_both_and_notes_the_scene_cap(tmp_path, scenes, tiny_bundle):
    """``--out F --thumbnails D`` wrote F and silently no thumbnails; an export ranked with the
    default per-scene cap is not in distance order, which a note now says."""
    import pandas as pd

    idx = tmp_path / "idx"
    assert ingest([str(s) for s in scenes], index=str(idx), model=tiny_bundle, options=NATIVE).ok
    with Index.open(str(idx), model=tiny_bundle) as index:
        pid = next(index.store.iter_points(with_vectors=False)).id
    out, th = tmp_path / "hits.csv", tmp_path / "th"
    r = CliRunner().invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--point-id", pid,
                                  "-k", "30", "--out", str(out), "--thumbnails", str(th)])
    assert r.exit_code == 0, r.output
    rows = pd.read_csv(out)
    assert len(rows) == 30 and len(list(th.glob("*.png"))) >= 30
    d = rows.sort_values("rank")["distance"].tolist()
    assert ("--per-item 0" in r.output) == any(a > b for a, b in zip(d, d[1:]))
    r0 = CliRunner().invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--point-id", pid,
                                   "-k", "30", "--per-item", "0", "--out", str(tmp_path / "plain.csv")])
    d0 = pd.read_csv(tmp_path / "plain.csv").sort_values("rank")["distance"].tolist()
    assert d0 == sorted(d0) and "--per-item 0" not in r0.output


def _edges_m(corners):
    """Ground lengths (metres) of a footprint's four edges, UL -> UR -> LR -> LL."""
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    pts = [(c["lon"], c["lat"]) for c in corners]
    return [g.inv(*a, *b)[2] for a, b in zip(pts, pts[1:] + pts[:1])]


def test_lon_lat_pixels_are_tiled_square_on_the_ground(tmp_path, tiny_bundle):
    """Square degrees at 47 N are 1.47x taller than wide on the ground: at the scene's own
    GSD its tiles were cut in pixel space, a squashed patch of ground embedded as a square
    image.  They are now resampled to square pixels of the native GSD (as --gsd does), the
    GSD recorded so the tile is re-read the same way (thumbnails, reindex)."""
    from rsir_stac.thumbnails import read_tile

    scene = make_geotiff(tmp_path / "ll.tif", crs="EPSG:4326", res=5e-5, origin=(-99.2, 47.05), width=320, height=320)
    rep = ingest([str(scene)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written > 0
    with open_store(str(tmp_path / "idx"), read_only=True) as s:
        pts = list(s.iter_points(with_vectors=False))
    for p in pts:
        top, right, bottom, left = _edges_m(p.payload["corners"])
        assert max(top, left) / min(top, left) < 1.02, (top, left)
        assert p.payload["tiling"]["gsd"] == pytest.approx(p.payload["gsd"]) == pytest.approx(top / 64, rel=0.02)
    assert read_tile(pts[0].payload).shape == (64, 64, 3)
    with open_store(str(tmp_path / "idx"), read_only=True) as s, tiny_bundle.embedder() as emb:
        stored = {p.id: p.vector for p in s.iter_points(with_vectors=True)}
        for p in pts[:3]:  # a stored tile re-read and given as a query embeds to its stored vector
            assert np.allclose(emb.embed([read_tile(p.payload)])[0], stored[p.id], atol=1e-5)
    from rsir_stac.tiling import SceneReader

    with SceneReader.open(str(scene)) as reader:  # the longer side: the shorter is shrunk, nothing made up
        assert pts[0].payload["gsd"] == pytest.approx(max(reader.pixel_size_m), rel=1e-3)


def test_a_reingest_keeps_the_tiling_an_older_index_holds(tmp_path, tiny_bundle, monkeypatch, caplog):
    """An index built before square pixels (tiles cut from the lon/lat pixels as they are)
    stays idempotent: the same ingest again writes nothing, and says why it kept the tiling."""
    import rsir_stac.gsd as gsd_mod

    scene = make_geotiff(tmp_path / "ll.tif", crs="EPSG:4326", res=5e-5, origin=(-99.2, 47.05), width=320, height=320)
    monkeypatch.setattr(gsd_mod, "MAX_PIXEL_ANISOTROPY", 1e9)  # how earlier versions tiled it
    old = ingest([str(scene)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert old.points_written == 25  # 320 x 320 px in 64 px tiles
    monkeypatch.undo()
    again = ingest([str(scene)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert again.points_written == 0 and again.tiles_existing == 25
    assert "keeping that tiling" in caplog.text
    fresh = ingest([str(scene)], index=str(tmp_path / "idx2"), model=tiny_bundle, options=NATIVE)
    assert fresh.points_written != 25 and fresh.points_written > 0


def test_another_tiling_of_an_indexed_item_is_warned_about(tmp_path, tiny_bundle, caplog):
    """A second ingest of the same raster with another tile size adds overlapping tiles
    (ids include the tiling): said, while a re-run of the same tiling is quiet."""
    scene = make_geotiff(tmp_path / "a.tif", seed=4)
    idx = str(tmp_path / "idx")
    ingest([str(scene)], index=idx, model=tiny_bundle, options=NATIVE)
    caplog.clear()
    ingest([str(scene)], index=idx, model=tiny_bundle, options=NATIVE)
    assert "cut another way" not in caplog.text
    other = ingest([str(scene)], index=idx, model=tiny_bundle, options=IngestOptions(tile_size=32, native_gsd=True))
    assert other.points_written > 0
    assert "already holds 12 tiles of this item cut another way" in caplog.text


def test_a_bbox_with_west_and_east_swapped_gets_a_note(tmp_path, scenes, tiny_bundle):
    """W > E is a box across the antimeridian (RFC 7946); one spanning more than half the
    globe is almost surely a typo, and was answered silently with the tiles outside the strip
    meant.  A real antimeridian box gets no note."""
    runner = CliRunner()
    idx, model = str(tmp_path / "idx"), str(tiny_bundle.path)
    assert runner.invoke(main, ["ingest", str(scenes[0]), "--index", idx, "--model", model,
                                "--tile-size", "64", "--native-gsd"]).exit_code == 0
    with open_store(idx, read_only=True) as store:
        p = next(iter(store.iter_points(with_vectors=False)))
    lon, lat = p.payload["location"]["lon"], p.payload["location"]["lat"]
    for box, noted in ((f"{lon + 0.01},{lat - 1},{lon - 0.01},{lat + 1}", True), ("170,-20,-170,-10", False)):
        r = runner.invoke(main, ["search", "--point-id", p.id, "--index", idx, "--model", model, "--bbox", box])
        assert r.exit_code == 0, r.output
        assert ("swap west and east" in r.output) is noted, r.output
    # the library's answer and the HTTP API's carry it too
    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app
    from rsir_stac.store.filters import parse_bbox

    swapped = f"{lon + 0.01},{lat - 1},{lon - 0.01},{lat + 1}"
    with Index.open(idx, model=tiny_bundle) as index:
        res = index.search(point_id=p.id, flt=SearchFilter(bbox=parse_bbox(swapped)))
        assert any("swap west and east" in n for n in res.notes), res.notes
        with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
            doc = client.get("/api/search", params={"point_id": p.id, "bbox": swapped}).json()
    assert any("swap west and east" in n for n in doc["notes"]), doc


def test_large_tiles_are_queued_at_the_network_input_with_the_same_embedding(tmp_path, tiny_bundle, monkeypatch):
    """Tiles several times the network input are shrunk as they are read (256 queued 4096 px
    tiles held 12 GB): with the embedder's own resize, so every vector is what embedding the
    full tile gives, and what waits to be embedded is input-sized."""
    import rsir_stac.ingest as ingest_mod
    from rsir_stac.model.transforms import fit_to_input, to_input
    from rsir_stac.tiling import SceneReader, gdal_env

    size, tile = tiny_bundle.input_size, 3 * tiny_bundle.input_size
    img = np.random.default_rng(3).integers(0, 256, (tile, tile, 3), dtype=np.uint8)
    assert fit_to_input(img, size).shape == (size, size, 3)
    assert np.array_equal(to_input([fit_to_input(img, size)], size, (0.5,) * 3, (0.2,) * 3).numpy(),
                          to_input([img], size, (0.5,) * 3, (0.2,) * 3).numpy())
    scene = make_geotiff(tmp_path / "big.tif", width=2 * tile, height=2 * tile, seed=6)
    queued = []
    put = ingest_mod.queue.Queue.put

    def spy(self, item, *a, **kw):
        if item[0] == "tile":
            queued.append(item[1][1].shape)
        return put(self, item, *a, **kw)

    monkeypatch.setattr(ingest_mod.queue.Queue, "put", spy)
    r = ingest([str(scene)], index=str(tmp_path / "idx"), model=tiny_bundle,
               options=IngestOptions(tile_size=tile, native_gsd=True))
    assert r.points_written == 4 and set(queued) == {(size, size, 3)}
    with SceneReader.open(str(scene), target_gsd=None, tile_size=tile) as reader, gdal_env():
        tiles = [reader.read(ref) for ref in reader.windows()]
    with tiny_bundle.embedder() as emb:
        want = {(t.ref.window.col_off, t.ref.window.row_off): v for t, v in zip(tiles, emb.embed([t.pixels for t in tiles]))}
    with open_store(str(tmp_path / "idx"), read_only=True) as store:
        for p in store.iter_points(with_vectors=True):
            assert np.allclose(p.vector, want[(p.payload["window"]["col_off"], p.payload["window"]["row_off"])], atol=1e-5)


def test_nodata_option_masks_a_black_border_the_file_does_not_declare(tmp_path, tiny_bundle):
    """Adaptation trial: an ASTER crop, half zeros and no nodata declared, gave black tiles that ranked
    4th-5th for a drone query, and ingest had no --nodata. With it the zero tiles are left out, the
    value is stored with the tiles (thumbnails and reindex mask the same pixels), and a file's own
    nodata still wins."""
    import rasterio

    path = make_geotiff(tmp_path / "aster.tif", width=256, height=128, res=15.0, seed=6)
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, :, 128:] = 0  # the right half is black, undeclared
        ds.write(data)
    base = ["ingest", str(path), "--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd", "--json"]
    r = CliRunner().invoke(main, base + ["--index", str(tmp_path / "plain")])
    assert r.exit_code == 0 and json.loads(r.stdout)["points_written"] == 8, r.output
    r = CliRunner().invoke(main, base + ["--index", str(tmp_path / "masked"), "--nodata", "0"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["points_written"] == 4, r.output  # the black half is left out
    with open_store(str(tmp_path / "masked"), read_only=True) as s:
        pts = list(s.iter_points(with_vectors=False))
    assert {p.payload["tiling"].get("nodata") for p in pts} == {0.0}
    assert all(p.payload["window"]["col_off"] < 128 for p in pts)
    again = CliRunner().invoke(main, base + ["--index", str(tmp_path / "masked"), "--nodata", "0"])
    assert again.exit_code == 0 and json.loads(again.stdout)["points_written"] == 0, again.output
    declared = make_geotiff(tmp_path / "declared.tif", width=256, height=128, res=15.0, seed=6, nodata=255)
    r = CliRunner().invoke(main, ["ingest", str(declared), "--model", str(tiny_bundle.path), "--tile-size", "64",
                                  "--native-gsd", "--json", "--index", str(tmp_path / "decl"), "--nodata", "0"])
    assert r.exit_code == 0 and json.loads(r.stdout)["points_written"] == 8, r.output  # its own 255 wins: none is 0
    bad = CliRunner().invoke(main, base + ["--index", str(tmp_path / "bad"), "--nodata", "nan"])
    assert bad.exit_code == 2 and "--nodata nan is invalid" in bad.output and not (tmp_path / "bad").exists()


def test_nodata_that_cannot_apply_is_said(tmp_path, tiny_bundle, caplog):
    """Re-check: --nodata was silently ignored on tiles already indexed, on a file declaring its own
    nodata, and for a value its pixels cannot hold (300 on uint8)."""
    path = make_geotiff(tmp_path / "a.tif", width=128, height=128, seed=7)
    opts = dict(tile_size=64, native_gsd=True)
    assert ingest([str(path)], index=str(tmp_path / "i"), model=tiny_bundle, options=IngestOptions(**opts)).ok
    with caplog.at_level("WARNING"):
        rep = ingest([str(path)], index=str(tmp_path / "i"), model=tiny_bundle,
                     options=IngestOptions(**opts, nodata=0))
    assert rep.points_written == 0 and "ingested without --nodata 0 and are not read again" in caplog.text
    caplog.clear()
    declared = make_geotiff(tmp_path / "d.tif", width=128, height=128, seed=7, nodata=255)
    with caplog.at_level("WARNING"):
        ingest([str(declared)], index=str(tmp_path / "j"), model=tiny_bundle, options=IngestOptions(**opts, nodata=0))
    assert "declares its own nodata (255), which is used; the nodata value 0 given for it" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        ingest([str(path)], index=str(tmp_path / "k"), model=tiny_bundle, options=IngestOptions(**opts, nodata=300))
    assert "the nodata value 300 is not one its uint8 pixels can hold" in caplog.text


def test_a_scene_indexed_with_nodata_is_not_read_again_without_it(tmp_path, tiny_bundle):
    """Re-check: re-ingesting without --nodata into an index built with it silently added back the
    black tiles it had masked out."""
    import rasterio

    path = make_geotiff(tmp_path / "aster.tif", width=256, height=128, res=15.0, seed=6)
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, :, 128:] = 0
        ds.write(data)
    opts = dict(tile_size=64, native_gsd=True)
    first = ingest([str(path)], index=str(tmp_path / "i"), model=tiny_bundle, options=IngestOptions(**opts, nodata=0))
    assert first.points_written == 4
    again = ingest([str(path)], index=str(tmp_path / "i"), model=tiny_bundle, options=IngestOptions(**opts))
    assert again.points_written == 0 and not again.ok
    assert "read with --nodata 0 (its nodata windows left out)" in again.items_failed[0]["error"]
    same = ingest([str(path)], index=str(tmp_path / "i"), model=tiny_bundle, options=IngestOptions(**opts, nodata=0))
    assert same.ok and same.points_written == 0 and same.tiles_existing == 4
