"""Adapting a bundle to unlabelled tiles: real rasters, real training steps, real ingest."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import DatasetError, InputError
from rsir_stac.model.adapt import AdaptConfig, adapt
from rsir_stac.model.criteria import neighbour_agreement, positive_retrieval
from rsir_stac.model.pairs import find_positives, negative_mask, triplet_loss
from rsir_stac.model.unlabelled import collect_tiles, ecef
from tests.conftest import make_geotiff, make_image_folder

FAST = dict(steps=2, eval_every=1, p=3, k=2, heldout_max=12, min_tiles=16)


@pytest.fixture()
def series(tmp_path):
    """The same ground at two dates, and a scene 100 km away (1 m, 256×192 px)."""
    d = tmp_path / "scenes"
    d.mkdir()
    make_geotiff(d / "here_2019.tif", seed=1, datetime_tag="2019:06:01 10:00:00")
    make_geotiff(d / "here_2021.tif", seed=1, datetime_tag="2021:06:01 10:00:00")
    make_geotiff(d / "there.tif", seed=2, origin=(600000.0, 3300000.0), datetime_tag="2020:06:01 10:00:00")
    return d


def _one_line_error(result):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_positives_and_negatives_follow_the_ground():
    # three tiles 32 m apart in a row (scene 0), the first again at another date (scene 1), one far away
    lon0, lat0 = -93.0, 30.0
    dlon = 32 / (111320 * np.cos(np.radians(lat0)))
    lon = np.array([lon0, lon0 + dlon, lon0 + 2 * dlon, lon0, lon0 + 1.0])
    lat = np.full(5, lat0)
    pos = ecef(lon, lat)
    scene = np.array([0, 0, 0, 1, 2])
    time = np.array([0.0, 0.0, 0.0, 1e8, 0.0])
    side = np.full(5, 64.0)
    pp = find_positives(pos, scene, time, side)
    assert sorted(pp.spatial[0].tolist()) == [1, 2]  # 32 and 64 m away: overlapping / adjacent
    assert pp.time[0].tolist() == [3] and pp.time[3].tolist() == [0]
    assert pp.spatial[4].tolist() == [] and pp.time[4].tolist() == []
    neg = negative_mask(pos, np.arange(5), np.arange(5), side)
    assert neg[0].tolist() == [False, False, False, False, True]  # only the tile > 2 sides away
    img = negative_mask(np.full((3, 3), np.nan), np.array([7, 7, 8]), np.arange(3), np.full(3, np.nan))
    assert img[0].tolist() == [False, False, True]  # another view of the same image is never a negative


def test_triplet_loss_and_criteria():
    group = np.array([0, 0, 1, 1])
    neg = group[:, None] != group[None, :]
    near = torch.tensor([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    loss, used = triplet_loss(near, group, neg, 0.2, np.random.default_rng(0))
    assert float(loss) == 0.0 and len(used) == 4
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.01], [0.01, 1.0]], requires_grad=True)
    loss, _ = triplet_loss(mixed, group, neg, 0.2, np.random.default_rng(0))
    assert float(loss.detach()) > 0.2  # a random violating negative per pair
    hard, _ = triplet_loss(mixed, group, neg, 0.2, np.random.default_rng(0), miner="batch-hard")
    assert float(hard.detach()) == pytest.approx(np.sqrt(2) - np.sqrt(2) * 0.01 + 0.2, abs=0.01)
    loss.backward()
    assert mixed.grad.abs().sum() > 0
    Z = near.numpy()
    assert neighbour_agreement(Z, Z, k=2) == 1.0
    queries = [("augment", 1, 0, 0), ("augment", 0, 1, 1), ("augment", 2, 0, 0)]
    r = positive_retrieval(Z, queries, neg, margin=0.2)
    assert r["accuracy"]["augment"] == pytest.approx(2 / 3)
    assert r["loss"]["augment"] == pytest.approx((np.sqrt(2) + 0.2) / 3, abs=1e-6)  # the miss: d_t=√2, d_n=0


def test_adapt_on_a_time_series_then_ingest(tmp_path, series, tiny_bundle):
    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index

    events = []
    out = tmp_path / "run"
    b = adapt(AdaptConfig(sources=(str(series),), out=str(out), start=str(tiny_bundle.path), **{**FAST, "p": 5, "clusters": 2}),
              events.append)  # p 5: a group of each kind in every batch; 2 clusters (the default rule makes none)
    a = b.meta["training"]["adaptation"]
    assert a["from_model"] == tiny_bundle.model_id and b.model_id != tiny_bundle.model_id
    assert a["triplet_kinds"] == ["spatial", "time", "augment", "neighbour", "cluster"] and a["near_k"] >= 5
    assert a["clusters"] == 2
    assert all(a["triplets"][k] > 0 for k in a["triplet_kinds"])
    assert a["n_tiles"] == 3 * 7 * 5 and a["n_train"] + a["n_heldout"] == a["n_tiles"]  # stride 32 on 256×192
    assert a["gsd"] == pytest.approx(1.0) and b.gsd == pytest.approx(1.0)
    # a network kept on a handful of held-out tiles is said to need a look (adaptation trial)
    assert ("warning" in a) == (a["best_step"] > 0 and a["n_heldout"] < 100)
    if "warning" in a:
        assert f"kept on {a['n_heldout']} held-out tiles, too few" in a["warning"]
    assert b.meta["reducer"]["kind"] == "pca" and b.dim == tiny_bundle.dim
    assert [e.step for e in events if e.kind == "eval"] == [0, 1, 2]
    assert json.loads((out / "adapt.json").read_text())["model_id"] == b.model_id
    assert not [p for p in out.iterdir() if p.name.startswith(".bundle.partial")]
    # the adapted bundle is a bundle like any other: ingest and its index record it
    rep = ingest([str(series / "there.tif")], index=str(tmp_path / "idx"), model=str(b.path),
                 options=IngestOptions())
    assert rep.ok and rep.points_written == 12  # 256×192 px at 1 m: 4×3 tiles of 64 px
    with Index.open(str(tmp_path / "idx"), model=str(b.path)) as idx:
        hits = idx.search(pixels=np.zeros((64, 64, 3), np.uint8), k=5).hits
        assert len(hits) == 5 and {h.payload["model_id"] for h in hits} == {b.model_id}


def test_reclustering_refreshes_the_cluster_positives(tmp_path, series, tiny_bundle, monkeypatch):
    """With recluster_every, the clusters are re-made from the adapted network during training."""
    from rsir_stac.model import adapt as adapt_mod

    seen = []
    real = adapt_mod._recluster

    def spy(net, tr, tr_pos, sampler, k, seed, embed_args):
        before = [c.copy() for c in tr_pos.cluster]
        labels = real(net, tr, tr_pos, sampler, k, seed, embed_args)
        seen.append((before, tr_pos.cluster, labels, sampler._anchors["cluster"]))
        return labels

    monkeypatch.setattr(adapt_mod, "_recluster", spy)
    b = adapt(AdaptConfig(sources=(str(series),), out=str(tmp_path / "run"), start=str(tiny_bundle.path),
                          **{**FAST, "p": 5, "clusters": 2, "recluster_every": 1}))
    a = b.meta["training"]["adaptation"]
    assert a["reclustered_at"] == [1] and a["clusters"] == 2 and a["triplets"]["cluster"] > 0
    (before, after, labels, anchors) = seen[0]
    assert len(set(labels.tolist())) == 2 and len(after) == len(labels) == a["n_train"]
    # the positives are the new clusters: each tile's mates share its new label
    for i, mates in enumerate(after):
        assert (labels[mates] == labels[i]).all() and i not in mates.tolist()
    assert sorted(anchors.tolist()) == [i for i in range(len(after)) if len(after[i])]


def test_cli_adapts_an_image_folder_without_labels(tmp_path, tiny_bundle):
    data = make_image_folder(tmp_path / "imgs", classes=3, per_class=22, size=48)
    r = CliRunner().invoke(main, ["train", "--unlabelled", str(data), "--from", str(tiny_bundle.path),
                                  "--out", str(tmp_path / "run"), "--steps", "2", "--p", "3", "--k", "2"])
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "run" / "adapt.json").read_text())
    assert a["triplet_kinds"][0] == "augment" and set(a["triplet_kinds"]) <= {"augment", "neighbour", "cluster"}
    assert a["triplets"]["augment"] > 0
    assert a["n_tiles"] == 66 and a["sources"][0]["kind"] == "images"
    assert "bundle written to" in r.output
    # evaluating it on the images it adapted on says so (adaptation trial: trained_on 0, no warning, and
    # a transductive gain read as a held-out one); another folder is not counted
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "run" / "bundle"), "--split",
                                  "all", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["protocol"]["adapted_on"] == 66
    assert any("were in the catalogue model" in w and "transductive" in w for w in res["warnings"]), res["warnings"]
    # an adaptation catalogue made of links to the images (re-check: adapted_on was 0)
    links = tmp_path / "links"
    links.mkdir()
    for f in sorted(p for p in data.rglob("*") if p.is_file()):
        (links / f"{f.parent.name}_{f.name}").symlink_to(f)
    r = CliRunner().invoke(main, ["train", "--unlabelled", str(links), "--from", str(tiny_bundle.path),
                                  "--out", str(tmp_path / "runl"), "--steps", "1", "--p", "3", "--k", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "runl" / "bundle"), "--split",
                                  "all", "--json"])
    assert json.loads(r.stdout.strip().splitlines()[-1])["protocol"]["adapted_on"] == 66
    other = make_image_folder(tmp_path / "other", classes=3, per_class=4, size=48, seed=5)
    r = CliRunner().invoke(main, ["evaluate", str(other), "--model", str(tmp_path / "run" / "bundle"), "--split",
                                  "all", "--json"])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["protocol"]["adapted_on"] == 0 and not [w for w in res["warnings"] if "transductive" in w]


def test_bad_input_is_refused_before_anything_is_written(tmp_path, series, tiny_bundle):
    runner = CliRunner()
    start = ["--from", str(tiny_bundle.path)]
    out = tmp_path / "out"
    # no tiles
    (tmp_path / "empty").mkdir()
    msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(tmp_path / "empty"), *start,
                                               "--out", str(out)]))
    assert "empty" in msg
    # a folder whose only raster is broken: skipped like ingest skips it, then no tiles
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "text.tif").write_text("not a raster")
    msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(tmp_path / "broken"), *start,
                                               "--out", str(out)]))
    assert "hold no tiles (1 failed" in msg and "text.tif" in msg
    # too few tiles
    few = make_image_folder(tmp_path / "few", classes=2, per_class=3)
    msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(few), *start, "--out", str(out)]))
    assert "6 tiles" in msg and "at least" in msg
    # spatial triplets from one scene
    msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(series / "there.tif"), *start,
                                               "--triplets", "spatial", "--out", str(out)]))
    assert "2 scenes" in msg and "--triplets augment" in msg
    # more clusters than the tiles can make, and cluster settings that contradict --triplets
    msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(series), *start, "--triplets",
                                               "augment,cluster", "--clusters", "80", "--out", str(out)]))
    assert "--clusters 80" in msg and "give --clusters between 2 and" in msg
    for opts, want in ((["--clusters", "1"], "give 2 or more clusters, or 0"),
                       (["--triplets", "cluster", "--clusters", "0"], "drop cluster from --triplets"),
                       (["--triplets", "augment", "--clusters", "5"], "add cluster to --triplets or drop --clusters")):
        msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(series), *start, *opts,
                                                   "--out", str(out)]))
        assert want in msg, (opts, msg)
    msg = _one_line_error(runner.invoke(main, ["train", str(series), "--clusters", "5", "--out", str(out)]))
    assert "add --unlabelled, or drop --clusters" in msg
    # an unloadable start bundle
    msg = _one_line_error(runner.invoke(main, ["train", "--unlabelled", str(series), "--from",
                                               str(tmp_path / "nobundle"), "--out", str(out)]))
    assert "no model bundle" in msg and "pass --from" in msg
    assert not out.exists() or not any(out.iterdir())


def test_mixed_gsds_need_gsd(tmp_path, tiny_bundle):
    d = tmp_path / "mixed"
    d.mkdir()
    make_geotiff(d / "fine.tif", res=1.0, seed=1)
    make_geotiff(d / "coarse.tif", res=4.0, seed=2, origin=(700000.0, 3300000.0))
    with pytest.raises(InputError, match="--gsd"):
        collect_tiles([str(d)], tiny_bundle)
    tiles = collect_tiles([str(d)], tiny_bundle, gsd=2.0)
    assert tiles.gsd == 2.0 and len(tiles) > 0
    small = make_geotiff(tmp_path / "small.tif", width=128, height=96, res=100.0, seed=3)
    with pytest.raises(InputError, match="no triplet has a negative.*--gsd"):  # 6.4 km tiles on a 13 km scene
        adapt(AdaptConfig(sources=(str(small),), out=str(tmp_path / "o"), start=str(tiny_bundle.path)))
    with pytest.raises(DatasetError):
        adapt(AdaptConfig(sources=(str(d / "coarse.tif"),), out=str(tmp_path / "o"), start=str(tiny_bundle.path)))
    assert not (tmp_path / "o").exists()


def test_mutual_neighbours_and_near_negatives():
    """Two tight clusters: mutual neighbours stay inside a cluster, and a start-embedding neighbour is never a negative."""
    from rsir_stac.model.pairs import embedding_neighbours, mutual_neighbours

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.01, (6, 4)) + 1, rng.normal(0, 0.01, (6, 4)) - 1])
    near = embedding_neighbours(z, 5)
    assert near.shape == (12, 5) and not (near == np.arange(12)[:, None]).any()
    mutual = mutual_neighbours(near, 5)
    for i, m in enumerate(mutual):
        assert len(m) and ((m < 6) == (i < 6)).all()
        for j in m.tolist():
            assert i in near[j].tolist()
    pos = np.full((12, 3), np.nan)
    tiles = np.arange(12)
    plain = negative_mask(pos, tiles, tiles, np.full(12, np.nan))
    guarded = negative_mask(pos, tiles, tiles, np.full(12, np.nan), near=near)
    assert plain[0, 1] and not guarded[0, 1] and not guarded[1, 0]  # same cluster: no longer a negative
    assert guarded[0, 7] and guarded[7, 0]  # other cluster: still a negative


def test_cluster_positives_and_negatives():
    """k-means pseudo-classes: positives are the other members of a tile's cluster, never its negatives."""
    from rsir_stac.model.pairs import cluster_labels, cluster_positives, n_clusters

    assert (n_clusters(10), n_clusters(224), n_clusters(226), n_clusters(2100), n_clusters(10**6)) == (0, 0, 5, 42, 200)
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 0.05, (5, 3)) + 1, rng.normal(0, 0.05, (7, 3)) - 1])
    lab = cluster_labels(z, 2)
    assert len(set(lab[:5].tolist())) == 1 and len(set(lab[5:].tolist())) == 1 and lab[0] != lab[5]
    pos = cluster_positives(lab)
    assert sorted(pos[0].tolist()) == [1, 2, 3, 4] and sorted(pos[11].tolist()) == [5, 6, 7, 8, 9, 10]
    tiles = np.arange(12)
    none = np.full((12, 3), np.nan)
    plain = negative_mask(none, tiles, tiles, np.full(12, np.nan))
    guarded = negative_mask(none, tiles, tiles, np.full(12, np.nan), cluster=lab)
    assert plain[0, 1] and not guarded[0, 1] and guarded[0, 5] and guarded[5, 0]


def test_a_scene_smaller_than_one_tile_is_named_as_such_not_as_nodata(tmp_path, series, tiny_bundle, caplog):
    """Adaptation trial: a 191x116 px scene at the model's GSD was said to give "tiles mostly empty
    (nodata)", with "raise --max-tiles" as the fix; ingest says it is smaller than one tile."""
    small = make_geotiff(series / "small.tif", width=40, height=30, seed=5, origin=(700000.0, 3300000.0))
    with caplog.at_level("WARNING", logger="rsir_stac.model.unlabelled"):
        collect_tiles([str(series)], tiny_bundle, gsd=1.0, min_valid=0.5)
    msg = next(r.getMessage() for r in caplog.records if "gave no tiles" in r.getMessage())
    assert "small" in msg and "40x30 px at 1 m is smaller than one 64 px tile" in msg, msg
    assert "a scene smaller than one tile teaches nothing" in msg and "nodata" not in msg, msg
    assert small.exists()


@pytest.mark.parametrize("fine_fallback, advice", [(True, "pass --native-gsd to keep its own"),
                                                   (False, "pass --gsd 1 to keep its own")])
def test_the_small_coarse_scene_warning_offers_a_flag_the_command_has(tmp_path, caplog, fine_fallback, advice):
    """Model trial: train --unlabelled warned '(pass --native-gsd to keep its own)', a flag only
    ingest has; adaptation (no fine fallback) keeps a scene's own GSD with --gsd."""
    from rsir_stac.gsd import open_scene
    from rsir_stac.ingest.options import IngestOptions
    from rsir_stac.stac.items import _raster_scene
    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "small.tif", width=40, height=40, res=1.0)   # 40 px of 1 m: < one 64 px tile
    with caplog.at_level("WARNING", logger="rsir_stac.gsd"):
        reader, used, _ = open_scene(_raster_scene(str(tif), None), IngestOptions(), 64, 32, 0.3,
                                     fine_fallback=fine_fallback)
        reader.close()
    assert used == 0.3 and advice in caplog.text, caplog.text


def test_too_few_tiles_keep_the_start_reducer(tmp_path, series, caplog):
    """Adaptation trial: 100 tiles of one UC Merced class refitted the 64-d PCA and took that class's
    mAP among the 21 from 0.888 to 0.085 (a PCA fitted on a few similar tiles keeps what they differ
    by and drops what tells them from the rest).  Below 10 tiles per stored dimension the start
    bundle's reducer is kept, and the record and a warning say so."""
    from rsir_stac.model.train import TrainConfig, train

    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=10)
    start = train(TrainConfig(str(data), str(tmp_path / "start"), input_size=64, tile_size=64, embedding_dim=16,
                              epochs=1, p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="pca",
                              reducer_dim=16))
    assert start.meta["reducer"] == {"kind": "pca", "dim": 16, "normalize": True}
    with caplog.at_level("WARNING", logger="rsir_stac.model.adapt"):
        b = adapt(AdaptConfig(sources=(str(series),), out=str(tmp_path / "run"), start=str(start.path), **FAST))
    a = b.meta["training"]["adaptation"]
    assert a["n_tiles"] == 105 < 160
    assert a["reducer"].startswith("kept the start bundle's pca reducer: 105 tiles are too few"), a["reducer"]
    assert any("too few to refit a 16-d one" in r.getMessage() for r in caplog.records)
    for key in ("mean", "components"):
        assert np.array_equal(b.reducer.to_arrays()[key], start.reducer.to_arrays()[key])
    # enough tiles per dimension (a 4-d PCA asked for): refitted on them, as before
    b4 = adapt(AdaptConfig(sources=(str(series),), out=str(tmp_path / "run4"), start=str(start.path),
                           reducer_dim=4, **FAST))
    assert b4.meta["training"]["adaptation"]["reducer"] == "refitted on the 105 tiles" and b4.dim == 4
