"""What a new user's trial of the model side (train, evaluate, reduce) found.

Real tiny image folders and GeoTIFFs, real training steps at tiny scale, the real
bundles; nothing of rsir-stac is mocked.
"""

from __future__ import annotations

import json
import logging
import re
import shutil

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import ImageReadError, InputError
from rsir_stac.model.train import TrainConfig, train
from tests.conftest import make_geotiff, make_image_folder
from tests.test_space import tmpfs  # noqa: F401 - fixture


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def _cfg(data, out, **kw) -> TrainConfig:
    """A tiny run that draws from every random source: augmentation with downscaling, an EMA."""
    base = dict(input_size=48, tile_size=48, embedding_dim=8, epochs=3, p=3, k=2, max_steps_per_epoch=2,
                val_fraction=0.0, reducer="none", downscale_max=4.0, ema_epochs=0.5)
    return TrainConfig(str(data), str(out), **{**base, **kw})


class _Stop(Exception):
    """What a kill after an epoch leaves: the checkpoint of that epoch, no bundle."""


# ------------------------------------------------------------------ resume (items 5, 6, 10)


def test_a_run_stopped_after_an_epoch_and_resumed_equals_a_straight_run(tmp_path):
    """Trial: a run killed after epoch 1 and resumed gave another model (epoch-2 loss 0.7597 vs
    0.8054) than an uninterrupted one: the augmentation generator was re-seeded, and the torch /
    numpy / Python random states and the EMA's update count were not saved."""
    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=6)

    def stop_after_first_epoch(ev):
        if ev.kind == "epoch" and ev.epoch == 0:
            raise _Stop

    with pytest.raises(_Stop):
        train(_cfg(data, tmp_path / "resumed"), stop_after_first_epoch)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file() and not (tmp_path / "resumed" / "bundle").exists()
    resumed = train(_cfg(data, tmp_path / "resumed"))
    straight = train(_cfg(data, tmp_path / "straight"))
    losses = [[h["loss"] for h in b.meta["training"]["history"]] for b in (resumed, straight)]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    assert resumed.model_id == straight.model_id


def test_resuming_with_fewer_epochs_or_a_changed_folder_is_refused_naming_what_differs(tmp_path):
    """Trial: `--epochs 2` on a folder that finished 4 printed "after epoch 4 of 2", exited 0 and
    wrote "epochs": 2 beside a history of 4; a changed folder was refused with "8 test images
    then, 8 now"."""
    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=6)
    done = train(_cfg(data, tmp_path / "run", epochs=2))
    before = (done.path / "model.json").read_text()
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                                  "--input-size", "48", "--tile-size", "48", "--embedding-dim", "8", "--p", "3",
                                  "--k", "2", "--max-steps-per-epoch", "2", "--val-fraction", "0", "--reducer",
                                  "none", "--recipe", "v1", "--downscale-max", "4", "--ema", "0.5"])
    msg = _one_line_error(r)
    assert "has already run 2 epochs, more than --epochs 1" in msg and "pass --epochs 2 or more" in msg, msg
    assert "--no-resume" in msg and r.exit_code == 2
    assert (done.path / "model.json").read_text() == before  # nothing rewritten
    with pytest.raises(InputError, match="already run 2 epochs"):
        train(_cfg(data, tmp_path / "run", epochs=1))
    # an image added to class1 and one removed from class2: the refusal names them
    shutil.copy(data / "class1" / "img00.png", data / "class1" / "zz-new.png")
    (data / "class2" / "img05.png").unlink()
    with pytest.raises(InputError, match="another test split") as ei:
        train(_cfg(data, tmp_path / "run", epochs=3))
    msg = str(ei.value)
    assert "gained 1 image(s) (class1/zz-new.png)" in msg and "lost 1 (class2/img05.png)" in msg, msg
    assert "test images then" not in msg and "--no-resume" in msg


# ------------------------------------------------------------------ class folders (item 8)


def test_nested_and_empty_class_folders_are_named_with_their_own_advice(tmp_path, caplog):
    """Trial: `urban/beach`, `urban/forest` were dropped with "move them up into their class
    folder" (read as: into urban/), never naming beach or forest; empty folders got the same text."""
    from rsir_stac.model.data import scan_image_folder

    data = make_image_folder(tmp_path / "tiles", classes=4, per_class=3)
    (data / "urban").mkdir()
    (data / "class2").rename(data / "urban" / "beach")
    (data / "class3").rename(data / "urban" / "forest")
    (data / "river").mkdir()
    (data / "runway").mkdir()
    (data / "runway" / "notes.txt").write_text("not an image")
    with caplog.at_level("WARNING", logger="rsir_stac.model.data"):
        assert scan_image_folder(data).classes == ("class0", "class1")
    nested, empty = (r.getMessage() for r in caplog.records)
    assert "are not classes (urban)" in nested and "urban/beach, urban/forest" in nested
    assert f"mv {data / 'urban' / 'beach'} {data / 'beach'}" in nested
    assert f"to make urban one class, move the images directly into {data / 'urban'}" in nested
    assert "river" not in nested and "move them up" not in nested
    assert "hold no" in empty and "(river, runway)" in empty and "put images in them, or remove them" in empty
    assert "deeper" not in empty and "urban" not in empty


# ------------------------------------------------------------------ unreadable images (item 10)


def _corrupt(path):
    path.write_bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 garbage that is not a picture")
    return path


def test_unreadable_images_read_cleanly_and_advise_the_same_in_both_trainings(tmp_path, tiny_bundle):
    """Trial: two corrupt images gave "2 images cannot be decoded (…forest05.webp besides
    …beach03.webp cannot be decoded as an image (…))"; adaptation advised "give a PNG/JPEG/WebP/
    GeoTIFF image" where labelled training says to remove or replace the file."""
    from rsir_stac.model.data import load_images, scan_image_folder
    from rsir_stac.model.unlabelled import collect_tiles

    data = make_image_folder(tmp_path / "tiles", classes=2, per_class=4)
    a, b = _corrupt(data / "class0" / "a.webp"), _corrupt(data / "class1" / "b.webp")
    with pytest.raises(ImageReadError) as ei:
        load_images(scan_image_folder(data).paths)
    msg = str(ei.value)
    # one cause is said once after the files it holds for; different causes each after their file
    assert re.fullmatch(rf"2 images cannot be decoded: ({re.escape(str(a))}, {re.escape(str(b))} \([^()]+\)|"
                        rf"{re.escape(str(a))} \([^()]+\), {re.escape(str(b))} \([^()]+\)); remove or replace them",
                        msg), msg
    assert "besides" not in msg
    b.unlink()
    with pytest.raises(ImageReadError) as one:
        load_images(scan_image_folder(data).paths)
    with pytest.raises(ImageReadError) as adapting:
        collect_tiles([str(data)], tiny_bundle)
    for err in (one.value, adapting.value):
        assert re.fullmatch(rf"image {re.escape(str(a))} cannot be decoded \([^()]+\); remove or replace the file",
                            str(err)), str(err)


# ------------------------------------------------------------------ model paths, reduce (item 10)


def test_a_model_path_that_does_not_exist_is_said(tmp_path, tiny_bundle):
    data = tiny_bundle.path.parents[1] / "tiles"
    msg = _one_line_error(CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "nonexist")]))
    assert "the path does not exist, and it is not a shipped model name" in msg and "model.json missing" not in msg
    (tmp_path / "empty").mkdir()
    msg = _one_line_error(CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "empty")]))
    assert "the folder has no model.json" in msg
    msg = _one_line_error(CliRunner().invoke(main, ["train", "--unlabelled", str(data), "--from",
                                                    str(tmp_path / "nonexist"), "--out", str(tmp_path / "o")]))
    assert "the path does not exist" in msg and "pass --from" in msg


def test_reduce_refuses_a_used_out_and_a_too_large_dim_before_embedding(tmp_path, tiny_bundle):
    """Trial: a non-empty --out was refused only after every training image was embedded, and the
    embedding bar was drawn before a too large --dim was refused."""
    from rsir_stac.model.refit import refit_reducer

    data = tiny_bundle.path.parents[1] / "tiles"
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    embedded = []
    for out, why in ((tmp_path / "used", "is a folder that is not empty"), (tmp_path / "afile", "is a file")):
        with pytest.raises(InputError, match=why):
            refit_reducer(tiny_bundle, str(data), "pca", 2, str(out), progress=embedded.append)
    assert embedded == []  # refused before the first image was embedded
    for args, why in ((["--dim", "500", "--out", str(tmp_path / "new")], "--dim 500"),
                      (["--dim", "2", "--out", str(tmp_path / "used")], "not empty")):
        r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", "pca", *args])
        assert why in _one_line_error(r) and "embedding training split" not in r.output, r.output
    assert not (tmp_path / "new").exists() and [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------ adaptation GSDs (item 7)


def test_adaptation_names_an_enlarged_scene_and_the_scenes_that_gave_no_tiles(tmp_path, tiny_bundle, caplog):
    """Trial: `train --unlabelled scenes --gsd 5` on two 5 m scenes and a 300 m one read the 300 m
    scene enlarged 60x, whose windows crowded out the others (n_scenes 1 of 3), without a word."""
    from rsir_stac.model.unlabelled import collect_tiles

    d = tmp_path / "scenes"
    d.mkdir()
    make_geotiff(d / "fine_a.tif", res=1.0, seed=1)
    make_geotiff(d / "fine_b.tif", res=1.0, seed=2, origin=(520000.0, 3300000.0))
    make_geotiff(d / "coarse.tif", width=64, height=64, res=40.0, seed=3, origin=(600000.0, 3300000.0))
    with caplog.at_level("WARNING", logger="rsir_stac.model.unlabelled"):
        tiles = collect_tiles([str(d)], tiny_bundle, gsd=1.0, max_tiles=8, seed=0)
    coarse = next(n for n in tiles.skipped["enlarged_scenes"])
    assert coarse.startswith("coarse-") and tiles.skipped["enlarged_scenes"][coarse] == 40.0
    assert f"{coarse}: its native GSD 40 m is read at 1 m, enlarged 40x" in caplog.text
    gone = tiles.skipped["scenes_without_tiles"]
    assert sorted(n.split("-")[0] for n in gone) == ["fine_a", "fine_b"]  # every tile drawn is the coarse scene's
    assert set(tiles.scenes[i] for i in set(tiles.scene.tolist())) == {coarse}
    said = next(r.getMessage() for r in caplog.records if "gave no tiles" in r.getMessage())
    assert said.startswith("2 of 3 scenes gave no tiles") and all(n in said for n in gone)
    assert "--max-tiles 8" in said and f"leave out {coarse}" in said
    # read at their own GSD, nothing is enlarged or crowded out
    caplog.clear()
    with caplog.at_level("WARNING", logger="rsir_stac.model.unlabelled"):
        ok = collect_tiles([str(d / "fine_a.tif"), str(d / "fine_b.tif")], tiny_bundle, gsd=1.0, max_tiles=8)
    assert ok.skipped["scenes_without_tiles"] == [] and ok.skipped["enlarged_scenes"] == {}
    assert "enlarged" not in caplog.text and "gave no tiles" not in caplog.text


# ------------------------------------------------------------------ evaluate (items 4, 9)


@pytest.fixture(scope="module")
def split_bundle(tmp_path_factory):
    """A bundle trained on 3 classes of 10 images (2 test images a class), its folder beside it."""
    root = tmp_path_factory.mktemp("evalsplit")
    data = make_image_folder(root / "tiles", classes=3, per_class=10)
    return train(_cfg(data, root / "run", epochs=1, max_steps_per_epoch=1)), data


def _evaluate(*args):
    r = CliRunner().invoke(main, ["evaluate", *map(str, args), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1]), r.output


def test_evaluate_with_classes_scores_the_test_split_and_says_when_images_were_trained_on(split_bundle, caplog):
    """Trial: `evaluate DATA --classes beach,forest` defaulted to --split all and silently scored
    20 of 24 images the model was trained on."""
    bundle, data = split_bundle
    res, _ = _evaluate(data, "--model", bundle.path, "--classes", "class0,class2")
    p = res["protocol"]
    assert p["split"] == "test" and res["n_queries"] == 4 and p["trained_on"] == 0 and res["warnings"] == []
    assert p["split_matches_bundle"] is True and p["classes"] == ["class0", "class2"] and p["held_out"] is False
    with caplog.at_level("WARNING", logger="rsir_stac.evaluate"):
        res, _ = _evaluate(data, "--model", bundle.path, "--classes", "class0,class2", "--split", "all")
    assert res["n_queries"] == 20 and res["protocol"]["trained_on"] == 16
    assert res["warnings"] == [f"16 of the 20 images scored from {data} are in the training split of model "
                               f"{bundle.model_id} (it trained on them), so the scores are optimistic; pass "
                               "--split test to score only images it never trained on"]
    assert res["warnings"][0] in caplog.text


def test_evaluate_json_has_one_shape_and_records_the_folder_and_a_split_that_differs(split_bundle, tmp_path,
                                                                                      caplog):
    """Trial: --json was a flat object for one scale and {"model", "results"} for several; the
    protocol named neither the folder nor --held-out; a test split that differs from the
    bundle's was said on stderr only while the JSON said "split": "test"."""
    bundle, data = split_bundle
    one, _ = _evaluate(data, "--model", bundle.path)
    two, _ = _evaluate(data, "--model", bundle.path, "--scale", "1,2")
    for res, scales in ((one, [1.0]), (two, [1.0, 2.0])):
        assert res["model"] == bundle.model_id and [x["protocol"]["scale"] for x in res["results"]] == scales
        first = {k: v for k, v in res.items() if k not in ("model", "results")}
        assert first == res["results"][0]  # the first scale's keys at the top level, in both shapes
        assert res["protocol"]["data"] == str(data.resolve()) and res["protocol"]["held_out"] is False
        assert res["protocol"]["split_matches_bundle"] is True
        # second model trial: what else a figure depends on (bf16 and fp32 differ in the 4th decimal)
        p = res["protocol"]
        assert p["precision"] == "bf16" and p["bundle"] == str(bundle.path.resolve())
        assert p["scored_digest"] == p["bundle_test_digest"] == bundle.meta["training"]["test_digest"]
        assert set(p["versions"]) == {"rsir_stac", "torch"}
    fp32, _ = _evaluate(data, "--model", bundle.path, "--fp32")
    assert fp32["protocol"]["precision"] == "fp32"
    other = tmp_path / "other"
    for d in sorted(data.iterdir()):   # the same classes, images of other names: another dataset
        (other / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir()):
            shutil.copy(f, other / d.name / f"x{f.name}")
    for i in range(3):  # more images: another split than the bundle's
        shutil.copy(other / "class1" / "ximg00.png", other / "class1" / f"more{i}.png")
    # by default another dataset is scored whole (a random fifth of it is no test split of anything)
    res, _ = _evaluate(other, "--model", bundle.path)
    assert res["protocol"]["split"] == "all" and res["n_queries"] == 33, res["protocol"]  # every image
    assert len(res["warnings"]) == 2 and "is not the one model" in res["warnings"][0]
    assert "have the names of classes model" in res["warnings"][1]   # a copy of its training data, grown
    with caplog.at_level("WARNING", logger="rsir_stac.evaluate"):
        res, _ = _evaluate(other, "--model", bundle.path, "--split", "test")
    assert res["protocol"]["split"] == "test" and res["protocol"]["split_matches_bundle"] is False
    assert res["protocol"]["trained_on"] is None and len(res["warnings"]) == 1
    assert "differs from the one recorded in model" in res["warnings"][0] and "--split all" in res["warnings"][0]
    assert res["warnings"][0] in caplog.text


def test_evaluate_records_that_held_out_chose_the_classes(tmp_path):
    data = make_image_folder(tmp_path / "tiles", classes=4, per_class=4)
    b = train(_cfg(data, tmp_path / "run", epochs=1, max_steps_per_epoch=1, leave_out=("class2", "class3")))
    res, _ = _evaluate(data, "--model", b.path, "--held-out")
    p = res["protocol"]
    assert p["held_out"] is True and p["classes"] == ["class2", "class3"] and p["split"] == "all"
    assert res["n_queries"] == 8 and p["trained_on"] == 0 and res["warnings"] == []
    # second model trial (thirtieth session): classes held out of training are scored whole under
    # --split test too, which recorded "test" for what is every image of them
    res, _ = _evaluate(data, "--model", b.path, "--classes", "class2,class3")
    assert res["protocol"]["held_out"] is False and res["protocol"]["split"] == "all" and res["n_queries"] == 8
    res, _ = _evaluate(data, "--model", b.path, "--held-out", "--split", "test")
    assert res["protocol"]["split"] == "all" and res["n_queries"] == 8
    assert any("recorded as split all" in w for w in res["warnings"]), res["warnings"]   # and says why
    # a trained class and a held-out one: the test split of the one, all of the other, said
    res, out = _evaluate(data, "--model", b.path, "--classes", "class1,class2", "--split", "test")
    p = res["protocol"]
    assert p["split"] == "test" and res["per_class"]["class2"]["n"] == 4 and res["per_class"]["class1"]["n"] < 4
    assert any("class2) were held out of training: all their images are scored" in w for w in res["warnings"])
    assert p["scored_digest"] != p["bundle_test_digest"]


def _first_images(data, dest, n: int):
    """A copy of the first ``n`` images of each class folder of ``data`` in ``dest`` (a subset of a
    training folder, as another download or a curated copy would be)."""
    for d in sorted(data.iterdir()):
        (dest / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir())[:n]:
            shutil.copy(f, dest / d.name / f.name)
    return dest


def test_evaluate_split_all_on_a_copy_of_training_classes_warns_by_their_names(split_bundle, tmp_path, caplog):
    """Second model trial: `evaluate SUBSET --split all` of the very images a bundle trained on gave
    mAP 1.0 and no warning (without --split all the same folder was warned about)."""
    bundle, data = split_bundle
    subset = _first_images(data, tmp_path / "subset", 6)
    (subset / "class1").rename(subset / "Class1")   # another download's capitals are the same classes
    for f in [f for f in subset.rglob("*") if f.is_file()]:   # of other file names: the bundle's recorded
        f.rename(f.with_name(f"copy-{f.name}"))                 # split cannot tell them
    for args in ((), ("--split", "all")):
        res, _ = _evaluate(subset, "--model", bundle.path, *args)
        assert any("3 of the 3 classes" in w for w in res["warnings"]), res["warnings"]
        assert res["protocol"]["split"] == "all"
        assert any("have the names of classes model" in w for w in res["warnings"]), (args, res["warnings"])
    # the scored files' fingerprint is the run's, not the bundle's recorded split
    p = res["protocol"]
    assert p["scored_digest"] != p["bundle_test_digest"] == bundle.meta["training"]["test_digest"]
    # --classes: counted among the classes scored (trial, thirty-third session: "3 of the 3" for 2 scored)
    res, _ = _evaluate(subset, "--model", bundle.path, "--classes", "class0,class2")
    assert any("2 of the 2 classes scored from" in w for w in res["warnings"]), res["warnings"]


def test_train_on_a_full_or_read_only_disk_says_so_in_one_line(tmp_path, tmpfs):
    """Model trial: a full disk under train showed torch's 'unexpected RuntimeError: [enforce fail at
    inline_container.cc ...]' glued to the progress bar, and a read-only --out a 37-line traceback."""
    import subprocess

    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=6)
    args = ["train", str(data), "--recipe", "v1", "--random-init", "--input-size", "48", "--tile-size", "48",
            "--embedding-dim", "8", "--epochs", "1", "--p", "3", "--k", "2", "--max-steps-per-epoch", "1",
            "--val-fraction", "0", "--reducer", "none"]
    def last_line(result) -> str:  # the progress lines come first; the error is a line of its own
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert lines and lines[-1].startswith("error: "), result.output
        return lines[-1]

    full = tmpfs("full", 1)
    r = CliRunner().invoke(main, args + ["--out", str(full / "run")])
    line = last_line(r)
    assert r.exit_code == 1 and ("disk full" in line or "full disk" in line) and "re-run the same command" in line, line
    assert "batch/s" not in r.output  # no progress bar in a log that is not a terminal (as ingest, evaluate)
    ro = tmpfs("ro", 1)
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True, capture_output=True)
    r = CliRunner().invoke(main, args + ["--out", str(ro / "run")])
    line = last_line(r)
    assert r.exit_code == 1 and "read-only file system" in line and "writable disk" in line, line


@pytest.mark.parametrize("given", [",", " , ", ""])
def test_evaluate_classes_naming_no_class_is_refused(tmp_path, tiny_bundle, given):
    """Model trial: `evaluate --classes ,` scored every class without a word."""
    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=4)
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tiny_bundle.path), "--classes", given])
    assert r.exit_code == 2 and "names no class" in r.output, r.output


def test_evaluate_says_when_images_are_far_from_the_models_tile(tmp_path, tiny_bundle):
    """Model trial: whole 934 x 724 px scenes were squashed to the input and scored (mAP 0.894) without
    a word, while train warns about images far from its tile size."""
    big = make_image_folder(tmp_path / "big", classes=3, per_class=4, size=300)   # the tiny bundle cuts 64 px tiles
    res, _ = _evaluate(big, "--model", tiny_bundle.path, "--split", "all")
    assert any("about 300 px on a side, the model's tiles 64 px" in w and "shrunk" in w for w in res["warnings"]), \
        res["warnings"]
    near, _ = _evaluate(make_image_folder(tmp_path / "near", classes=3, per_class=4, size=48), "--model",
                        tiny_bundle.path, "--split", "all")
    assert not any("the model's tiles" in w for w in near["warnings"]), near["warnings"]


def test_large_images_are_embedded_fewer_at_a_time_with_the_same_vectors(tmp_path, tiny_bundle, monkeypatch):
    """Model trial: 15 JPEGs of 6000 x 6000 px held 3.9 GB, 16 batches of decoded images at a time.
    A chunk now also stops at CHUNK_BYTES of pixels; the vectors do not change."""
    import numpy as np

    import rsir_stac.evaluate as ev

    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=4, size=96)
    paths = sorted(data.rglob("*.png"))
    with tiny_bundle.embedder(bf16=False) as emb:
        whole = ev.embed_files(paths, emb)
        calls = []
        real = emb.embed
        monkeypatch.setattr(emb, "embed", lambda images, **kw: calls.append(len(images)) or real(images, **kw))
        monkeypatch.setattr(ev, "CHUNK_BYTES", 2 * 96 * 96 * 3)   # two images' pixels
        parts = ev.embed_files(paths, emb)
    assert sum(calls) == len(paths) and max(calls) == 2 and len(calls) >= len(paths) // 2
    np.testing.assert_allclose(parts, whole, atol=1e-5)


def test_an_image_link_to_nothing_is_named(tmp_path, caplog):
    """Model trial: a dangling symlink in a class folder was skipped without a word."""
    from rsir_stac.model.data import scan_image_folder

    data = make_image_folder(tmp_path / "tiles", classes=2, per_class=3)
    (data / "class0" / "gone.png").symlink_to(tmp_path / "moved-away.png")
    with caplog.at_level("WARNING", logger="rsir_stac.model.data"):
        folder = scan_image_folder(data)
    assert len(folder.paths) == 6
    assert "1 image link(s) point at no file (class0/gone.png)" in caplog.text, caplog.text


def test_folder_problems_reach_the_json_and_a_dangling_class_link_is_named(split_bundle, tmp_path):
    """Second model trial: a class folder that is a link to nothing was dropped without a word (the
    class just went missing), and "images in its sub-folder are not read" was on stderr only, not in
    the --json warnings a script reads."""
    bundle, data = split_bundle
    folder = tmp_path / "folder"
    shutil.copytree(data, folder)
    (folder / "harbor").symlink_to(tmp_path / "moved-away")
    (folder / "class0" / "sub").mkdir()
    shutil.copy(folder / "class1" / "img00.png", folder / "class0" / "sub" / "img99.png")
    res, _ = _evaluate(folder, "--model", bundle.path, "--split", "all")
    joined = " | ".join(res["warnings"])
    assert "1 class folder link(s) point at no folder (harbor)" in joined, joined
    assert "sub-folder(s) sub are not read" in joined, joined


def test_held_out_on_a_folder_without_those_classes_names_them_and_the_way_out(tmp_path):
    """Second model trial: `--held-out` on another folder said "class 'runway' is not in small3", a
    class the user never typed."""
    data = make_image_folder(tmp_path / "tiles", classes=4, per_class=4)
    b = train(_cfg(data, tmp_path / "run", epochs=1, max_steps_per_epoch=1, leave_out=("class2", "class3")))
    other = tmp_path / "other"
    shutil.copytree(data, other)
    shutil.rmtree(other / "class3")
    r = CliRunner().invoke(main, ["evaluate", str(other), "--model", str(b.path), "--held-out"])
    assert r.exit_code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "was trained without the classes class2, class3, and class3 is not in" in line, line


def test_evaluate_says_each_warning_once_whatever_the_number_of_scales(split_bundle, tmp_path, caplog):
    """Second model trial: `evaluate ev4 --scale 1,2,4` printed the same two warnings three times."""
    bundle, data = split_bundle
    subset = _first_images(data, tmp_path / "subset", 6)
    with caplog.at_level(logging.WARNING):
        r = CliRunner().invoke(main, ["evaluate", str(subset), "--model", str(bundle.path), "--scale", "1,2,4",
                                      "--split", "all"])
    assert r.exit_code == 0, r.output
    said = [m for m in caplog.text.splitlines() if "WARNING" in m]
    assert said and len(said) == len(set(said)), said
    # the subset's images are the bundle's by their recorded names: counted, and said once
    assert sum("are in the training split of model" in m for m in said) == 1, said


def test_train_says_n_a_for_a_validation_split_that_cannot_rank(tmp_path):
    """Model-side trial (thirty-third session): every epoch printed `val mAP nan` when there was no
    validation split to rank (the warning before it already says why)."""
    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=6)
    r = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "2",
                                  "--max-steps-per-epoch", "1", "--val-fraction", "0", "--input-size", "48",
                                  "--tile-size", "48", "--embedding-dim", "8", "--p", "3", "--k", "2",
                                  "--reducer", "none"])
    assert r.exit_code == 0, r.output
    epochs = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all(ln.endswith("val mAP n/a") for ln in epochs), epochs
    assert "nan" not in r.stderr


def test_a_subset_too_small_for_the_test_split_is_not_sent_there(split_bundle, tmp_path):
    """Helper trial: a few images of each class copied out of the training folder were scored with
    --split all, told "pass --split test", which refused them ("pass --split all"): round and round."""
    import shutil

    from rsir_stac.model.recorded_split import image_key

    bundle, data = split_bundle
    test = set(bundle.meta["training"]["split_files"]["test"])
    sub = tmp_path / "sub"
    for cls in ("class0", "class1", "class2"):
        files = sorted((data / cls).iterdir())
        trained = [f for f in files if image_key(f"{cls}/{f.name}") not in test][:3]
        kept_out = [f for f in files if image_key(f"{cls}/{f.name}") in test][:1]  # one a class: nothing to rank
        (sub / cls).mkdir(parents=True)
        for f in trained + kept_out:
            shutil.copy(f, sub / cls / f.name)
    res, _ = _evaluate(sub, "--model", bundle.path, "--split", "all")
    assert res["warnings"] == [f"9 of the 12 images scored from {sub} are in the training split of model "
                               f"{bundle.model_id} (it trained on them), so the scores are optimistic; the 3 it never "
                               "trained on are too few for --split test (no class has 2 of them); score it on a "
                               "folder of images it never trained on"]
