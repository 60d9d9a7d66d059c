"""``evaluate`` on a training folder that changed since training (model trial, thirty-third session).

A user adds one image to the folder a model was trained on and re-runs ``evaluate``: the test
split recomputed on the grown folder is no longer the recorded one, and ``evaluate`` used to score
every image (33 of 42 of them training images: mAP 0.786 → 0.938) while saying the folder "is not
the dataset" the model was trained on.  Bundles now record their split's file names
(``training.split_files``), so the images the model never trained on are still known.

Real tiny image folders, a real tiny training run and the real CLI; nothing of rsir-stac is mocked.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.evaluate import evaluate_folder
from rsir_stac.model.bundle import load_bundle
from rsir_stac.model.recorded_split import RecordedSplit, image_key
from rsir_stac.model.train import TrainConfig, train
from tests.conftest import make_image_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle trained on 3 classes of 10 images (2 test images a class), and its folder."""
    root = tmp_path_factory.mktemp("recorded")
    data = make_image_folder(root / "tiles", classes=3, per_class=10)
    cfg = TrainConfig(str(data), str(root / "run"), input_size=48, tile_size=48, embedding_dim=8, epochs=1, p=3,
                      k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none")
    return train(cfg), data


def _evaluate(*args):
    r = CliRunner().invoke(main, ["evaluate", *map(str, args), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def _recorded(bundle) -> RecordedSplit:
    rec = RecordedSplit.of(bundle.meta["training"])
    assert rec is not None
    return rec


def test_the_bundle_records_which_images_it_trained_on_and_kept_out(trained):
    bundle, data = trained
    rec = _recorded(load_bundle(bundle.path))   # as written to model.json
    files = {image_key(str(p.relative_to(data))) for p in data.rglob("*") if p.is_file()}
    assert len(rec.test) == 6 and len(rec.trained) == 24
    assert rec.test | rec.trained == files and not rec.test & rec.trained


def test_a_training_folder_that_gained_an_image_still_scores_only_images_never_trained_on(trained, tmp_path):
    bundle, data = trained
    base = _evaluate(data, "--model", bundle.path)
    assert base["protocol"]["split"] == "test" and base["n_queries"] == 6 and base["warnings"] == []
    grown = tmp_path / "grown"
    shutil.copytree(data, grown)
    shutil.copy(grown / "class1" / "img00.png", grown / "class1" / "extra.png")
    res = _evaluate(grown, "--model", bundle.path)
    p = res["protocol"]
    # the recorded test images and the new one: none the model trained on
    assert p["split"] == "test" and res["n_queries"] == 7 and p["trained_on"] == 0, (p, res["warnings"])
    assert p["split_matches_bundle"] is False
    assert len(res["warnings"]) == 1 and "changed since model" in res["warnings"][0]
    assert "gained 1 image (class1/extra.png)" in res["warnings"][0]
    assert "is not the" not in res["warnings"][0]
    # every image on request: the training images among them are counted, and said
    every = _evaluate(grown, "--model", bundle.path, "--split", "all")
    assert every["n_queries"] == 31 and every["protocol"]["trained_on"] == 24
    assert any("24 of the 31 images scored" in w for w in every["warnings"]), every["warnings"]


def test_a_training_folder_that_lost_images_and_was_re_saved_in_another_format(trained, tmp_path):
    """Another download of the same dataset: capitalised class folders, JPEG for PNG, some images gone."""
    from PIL import Image

    bundle, data = trained
    rec = _recorded(bundle)
    other = tmp_path / "other"
    for d in sorted(data.iterdir()):
        (other / d.name.capitalize()).mkdir(parents=True)
        for f in sorted(d.iterdir())[1:]:   # each class loses its first image
            Image.open(f).save(other / d.name.capitalize() / f"{f.stem}.jpg", quality=95)
    res = _evaluate(other, "--model", bundle.path)
    p = res["protocol"]
    kept_test = [k for k in rec.test if not k.endswith("/img00")]
    assert p["split"] == "test" and res["n_queries"] == len(kept_test) and p["trained_on"] == 0
    assert "lost 3 images" in res["warnings"][0], res["warnings"]


def test_a_bundle_of_an_earlier_version_keeps_the_old_protocol(trained, tmp_path):
    """No recorded file names: a changed folder cannot be told from another dataset, so it is
    scored whole, with the warning that says so (not "is not the dataset")."""
    bundle, data = trained
    old = load_bundle(bundle.path)
    del old.meta["training"]["split_files"]
    grown = tmp_path / "grown"
    shutil.copytree(data, grown)
    shutil.copy(grown / "class1" / "img00.png", grown / "class1" / "extra.png")
    res = evaluate_folder(grown, old, split=None)
    assert res["protocol"]["split"] == "all" and res["n_queries"] == 31 and res["protocol"]["trained_on"] is None
    assert "added, removed or renamed since training" in res["warnings"][0]


def test_reduce_on_the_changed_training_folder_fits_on_the_images_it_trained_on(trained, tmp_path, caplog):
    """Re-check (thirty-third session): `reduce` on the training folder after one image was added
    refused it as "not the dataset ... trained on", while evaluate named what changed."""
    bundle, data = trained
    grown = tmp_path / "grown"
    shutil.copytree(data, grown)
    shutil.copy(grown / "class1" / "img00.png", grown / "class1" / "extra.png")
    (grown / "class2" / "img03.png").unlink()
    lost_trained = int(_recorded(bundle).trained_on("class2/img03.png"))
    with caplog.at_level("WARNING"):
        r = CliRunner().invoke(main, ["reduce", str(grown), "--model", str(bundle.path), "--kind", "pca",
                                      "--dim", "4", "--out", str(tmp_path / "refit")])
    assert r.exit_code == 0, r.output
    assert "changed since model" in caplog.text and "gained 1 image (class1/extra.png)" in caplog.text
    refit = load_bundle(tmp_path / "refit")
    assert refit.meta["training"]["reducer_refit"]["n_train"] == 24 - lost_trained
    # another dataset (no recorded name in it) is still refused, in one line that says why
    other = tmp_path / "other"
    for d in sorted(data.iterdir()):
        (other / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir()):
            shutil.copy(f, other / d.name / f"x{f.name}")
    r = CliRunner().invoke(main, ["reduce", str(other), "--model", str(bundle.path), "--kind", "pca", "--dim", "4",
                                  "--out", str(tmp_path / "refit2")])
    assert r.exit_code == 2 and "is not the one model" in r.output and "--from" in r.output, r.output
    assert not (tmp_path / "refit2").exists()


def test_an_older_bundle_records_its_split_from_its_unchanged_training_folder(trained, tmp_path):
    from rsir_stac.errors import DatasetError
    from rsir_stac.model.recorded_split import record_split_files

    bundle, data = trained
    old = tmp_path / "old"
    shutil.copytree(bundle.path, old)
    meta = json.loads((old / "model.json").read_text())
    del meta["training"]["split_files"]
    (old / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    grown = tmp_path / "grown"
    shutil.copytree(data, grown)
    shutil.copy(grown / "class1" / "img00.png", grown / "class1" / "extra.png")
    with pytest.raises(DatasetError, match="is not the one model"):
        record_split_files(old, grown)   # a changed folder would call the wrong images unseen
    assert "split_files" not in json.loads((old / "model.json").read_text())["training"]
    assert record_split_files(old, data) == 30
    again = load_bundle(old)
    assert again.model_id == bundle.model_id and _recorded(again) == _recorded(bundle)


@pytest.mark.parametrize("name", ["default", "v1", "v2", "v3", "v4", "v5"])
def test_the_shipped_bundles_record_their_uc_merced_split(name, shared_data):
    """The shipped models were trained before bundles recorded file names; theirs were added from
    the UC Merced folder they were trained on (`record_split_files`), so a grown copy of it is
    scored on the images they never trained on."""
    from rsir_stac.model.data import scan_image_folder, stratified_split

    rec = _recorded(load_bundle(name))
    folder = scan_image_folder(shared_data / "ucmerced")
    tr = load_bundle(name).meta["training"]
    train_ix, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr.get("split_seed", 0))
    rel = folder.relpaths()
    assert rec.test == {image_key(rel[i]) for i in test_ix} and len(rec.test) == 420
    assert rec.trained == {image_key(rel[i]) for i in train_ix} and len(rec.trained) == 1680


def test_a_renamed_class_folder_is_still_the_images_the_model_trained_on(tmp_path):
    """Re-check N7: with `harbor` renamed `Harbour`, its 8 training images counted as never trained on
    (16 queries, 8 of them trained: an optimistic mAP), and `--split all` counted 25 trained images,
    not 33.  File names that only one recorded image has (UC Merced's `harbor07`, AID's `harbor_7`)
    still say which image it is; names every class repeats (`img00`) cannot, and stay new."""
    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=10)
    for d in data.iterdir():
        for f in d.iterdir():
            f.rename(d / f"{d.name}_{f.name}")   # unique file names, as most datasets have
    bundle = train(TrainConfig(str(data), str(tmp_path / "run"), input_size=48, tile_size=48, embedding_dim=8,
                               epochs=1, p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none"))
    (data / "class1").rename(data / "Harbour")
    res = _evaluate(data, "--model", bundle.path)
    p = res["protocol"]
    assert res["n_queries"] == 6 and p["trained_on"] == 0, (res["n_queries"], p, res["warnings"])
    assert "moved 10 images to another class folder (Harbour/class1_img00.png" in res["warnings"][0], res["warnings"]
    assert "gained" not in res["warnings"][0] and "lost" not in res["warnings"][0]
    every = _evaluate(data, "--model", bundle.path, "--split", "all")
    assert every["n_queries"] == 30 and every["protocol"]["trained_on"] == 24, every["protocol"]
    # a new image beside them is still new, and one whose name another class also has is not matched
    shutil.copy(data / "Harbour" / "class1_img00.png", data / "Harbour" / "new_harbour.png")
    res = _evaluate(data, "--model", bundle.path)
    assert res["n_queries"] == 7 and res["protocol"]["trained_on"] == 0
    assert "gained 1 image (Harbour/new_harbour.png)" in res["warnings"][0], res["warnings"]
