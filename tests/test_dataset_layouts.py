"""Labelled folders as public datasets ship them (new-user trial with look-alikes of EuroSAT, AID,
RSI-CB and torchgeo splits): hidden and macOS files, layouts that are not one folder per class,
empty and very large images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsir_stac.errors import DatasetError, ImageReadError
from rsir_stac.model.data import load_images, scan_image_folder
from tests.conftest import make_image_folder


def test_hidden_files_and_macos_leftovers_are_not_images_of_a_class(tmp_path):
    """Trial: '._x.png' AppleDouble files (one per image of a zip made on a Mac) were refused as
    undecodable images, hidden images were trained on, and __MACOSX was advised to be moved in."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    (data / "class0" / "._img00.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    Image.new("RGB", (48, 48)).save(data / "class1" / ".hidden.png")
    mac = data / "__MACOSX" / "class0"
    mac.mkdir(parents=True)
    (mac / "._img00.png").write_bytes(b"\x00\x05\x16\x07")
    folder = scan_image_folder(data)
    assert folder.classes == ("class0", "class1") and len(folder) == 6
    assert not [p for p in folder.paths if p.name.startswith(".")]
    assert len(load_images(folder.paths)) == 6


def test_layouts_without_class_folders_say_which_folder_to_pass(tmp_path):
    split = tmp_path / "split"
    for part in ("train", "val", "test"):
        make_image_folder(split / part, classes=2, per_class=2)
    with pytest.raises(DatasetError) as ei:
        scan_image_folder(split)
    assert f"it is split into test, train, val folders of classes: pass one of them, e.g. `rsir-stac train " \
           f"{split / 'train'}` and `rsir-stac evaluate {split / 'test'} --split all`" in str(ei.value)

    nested = tmp_path / "rsicb"
    make_image_folder(nested / "agricultural land", classes=2, per_class=2)
    make_image_folder(nested / "transportation", classes=2, per_class=2)
    with pytest.raises(DatasetError, match=r"its classes lie one level down \(agricultural land/class0, "
                                           r"agricultural land/class1, transportation/class0 and 1 more\): pass one "
                                           r"group's folder"):
        scan_image_folder(nested)

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32)).save(flat / f"{i}.png")
    with pytest.raises(DatasetError, match=r"its 4 image\(s\) lie directly in it: put each class's images in a "
                                           r"sub-folder named after the class"):
        scan_image_folder(flat)


def test_an_empty_file_is_named_empty(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    (data / "class1" / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero\.jpg cannot be decoded \(an empty file, 0 bytes\)"):
        load_images(scan_image_folder(data).paths)


def test_a_very_large_image_in_a_class_folder_is_read_not_a_crash(tmp_path, monkeypatch):
    """Trial: a 196-megapixel JPEG (over Pillow's decompression-bomb limit) made evaluate and train
    fail with "unexpected DecompressionBombError", naming no file; search --image read it.  Pillow's
    limit is lowered here so that a small image stands for it."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)   # error above 10,000 px, warning above 5,000
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3, size=48)   # 2,304 px: read by Pillow
    Image.fromarray(np.full((150, 150, 3), 90, np.uint8)).save(data / "class0" / "huge.jpg")   # 22,500 px
    Image.fromarray(np.full((80, 80, 3), 90, np.uint8)).save(data / "class1" / "big.jpg")      # 6,400 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no DecompressionBombWarning printed either
        images = load_images(scan_image_folder(data).paths)
    assert sorted(im.shape for im in images)[-2:] == [(80, 80, 3), (150, 150, 3)]


def test_evaluate_on_small_images_says_when_a_scale_is_more_than_they_take(tmp_path):
    """Trial: on 64 px images --scale 16 and 32 gave the ×8 figures, said nowhere."""
    from rsir_stac.evaluate import evaluate_folder

    data = make_image_folder(tmp_path / "data", classes=2, per_class=3, size=64)
    at8 = evaluate_folder(data, "imagenet", split="all", scale=8, bf16=False)
    at16 = evaluate_folder(data, "imagenet", split="all", scale=16, bf16=False)
    assert not [w for w in at8["warnings"] if "--scale" in w]
    note = [w for w in at16["warnings"] if w.startswith("--scale 16: 6 of the 6 images")]
    assert note and "the largest factor every image takes is 8" in note[0], at16["warnings"]


def test_a_one_image_class_is_a_distractor_and_json_failures_print_an_object(tmp_path):
    """Trial: a 1-image class refused evaluate even when --classes left it out, and evaluate --json
    printed nothing on a refusal (ingest --json prints an error object)."""
    import json

    from click.testing import CliRunner

    from rsir_stac.cli import main

    data = make_image_folder(tmp_path / "data", classes=3, per_class=3)
    for f in sorted((data / "class2").iterdir())[1:]:
        f.unlink()
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", str(data), "--model", "imagenet", "--classes", "class0,class1", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["n_queries"] == 6, res.output
    res = runner.invoke(main, ["evaluate", str(data), "--model", "imagenet", "--json"])
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["n_queries"] == 7 and out["n_unscored"] == 1, res.output   # a distractor
    # the text table says how many of its queries are scored (trial, thirty-third session: "queries 7" only)
    res = runner.invoke(main, ["evaluate", str(data), "--model", "imagenet"])
    assert "queries 7 (6 scored, 1 one-image distractor)  dim" in res.output, res.output
    (data / "class0" / "img00.png").write_bytes(b"")
    res = runner.invoke(main, ["evaluate", str(data), "--model", "imagenet", "--json"])
    failed = json.loads(res.stdout)
    assert res.exit_code == 2 and failed["ok"] is False and failed["exit_code"] == 2
    assert "an empty file, 0 bytes" in failed["error"]


def test_training_on_images_far_from_the_tile_size_says_which_to_record(tmp_path, caplog):
    from rsir_stac.model.train import TrainConfig, train

    data = make_image_folder(tmp_path / "data", classes=2, per_class=4, size=64)
    cfg = TrainConfig(str(data), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1, p=2, k=2,
                      max_steps_per_epoch=1, val_fraction=0.0, reducer="none")
    with caplog.at_level("WARNING", logger="rsir_stac.model.train"):
        train(cfg)
    assert any("are about 64 px, but the bundle records --tile-size 256" in r.getMessage()
               and "pass --tile-size 64" in r.getMessage() for r in caplog.records)


def test_a_run_folder_inside_the_data_folder_is_not_advised_for_removal(tmp_path, caplog):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    (data / "run1" / "bundle").mkdir(parents=True)
    (data / "run1" / "checkpoint.pt").write_bytes(b"x")
    (data / "notes").mkdir()
    with caplog.at_level("WARNING", logger="rsir_stac.model.data"):
        assert scan_image_folder(data).classes == ("class0", "class1")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "are training runs, not classes (run1)" in text and "(notes); put images in them, or remove them" in text
    assert "(run1); put images" not in text
    Image.new("RGB", (16, 16)).save(data / "stray.png")
    caplog.clear()
    with caplog.at_level("WARNING", logger="rsir_stac.model.data"):
        assert len(scan_image_folder(data)) == 6
    assert "1 image(s) lie directly in it (stray.png) and are not read" in caplog.text


def test_system_folders_strips_and_split_folders_are_not_classes(tmp_path, caplog):
    """Re-check: Synology's @eaDir and $RECYCLE.BIN were scored as classes (and @eaDir inside a class
    advised to be moved up into it); a 1 x 2,000,000 px PNG took 2 GB; train/test folders beside
    a class folder were advised to be moved onto it (mv test/forest forest nests forest/forest)."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    for junk in ("@eaDir", "$RECYCLE.BIN", "class0/@eaDir"):
        (data / junk).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16)).save(data / junk / f"thumb{i}.jpg")
    with caplog.at_level("WARNING", logger="rsir_stac.model.data"):
        folder = scan_image_folder(data)
    assert folder.classes == ("class0", "class1") and len(folder) == 6
    assert "@eaDir" not in caplog.text
    Image.new("RGB", (1, 5000)).save(data / "class1" / "strip.png")
    with pytest.raises(ImageReadError, match=r"strip\.png cannot be decoded \(it is 1 × 5000 px, one side over 32 "
                                             r"times the other: not a scene image\)"):
        load_images(scan_image_folder(data).paths)

    split = tmp_path / "halfsplit"
    make_image_folder(split / "train", classes=2, per_class=2)
    make_image_folder(split / "test", classes=2, per_class=2)
    make_image_folder(split, classes=1, per_class=2)   # a loose class0 beside them
    caplog.clear()
    with caplog.at_level("WARNING", logger="rsir_stac.model.data"), pytest.raises(DatasetError) as ei:
        scan_image_folder(split)
    assert "test, train are a split of classes, not classes" in caplog.text and " mv " not in caplog.text
    assert "it is split into test, train folders of classes: pass one of them" in str(ei.value)


def test_a_copy_of_the_training_classes_is_said_to_hold_training_images(tmp_path, tiny_bundle):
    """Re-check: a copy (or a subset) of the training folder was scored whole as another dataset,
    with no word that the model trained on most of its images."""
    from rsir_stac.evaluate import evaluate_folder

    data = make_image_folder(tmp_path / "copy", classes=3, per_class=6)   # the tiny bundle's classes ...
    make_image_folder(tmp_path / "more", classes=3, per_class=4, seed=7)   # ... with more images: another split
    for f in (tmp_path / "more").glob("*/*.png"):
        f.rename(data / f.parent.name / f"more_{f.name}")
    out = evaluate_folder(data, tiny_bundle, split=None, bf16=False)
    # thirty-third session: the bundle records its split's file names, so the grown training folder
    # is scored on the images the model never trained on (before: whole, with a warning by class names)
    assert out["protocol"]["split"] == "test" and out["protocol"]["trained_on"] == 0, out["protocol"]
    new = len(list(data.glob("*/more_*")))
    assert out["n_queries"] == 3 + new and f"gained {new} images" in out["warnings"][0], out["warnings"]
    every = evaluate_folder(data, tiny_bundle, split="all", bf16=False)
    assert every["protocol"]["trained_on"] == 15
    assert any(f"15 of the {18 + new} images scored" in w and "optimistic" in w
               for w in every["warnings"]), every["warnings"]
    other = make_image_folder(tmp_path / "other", classes=2, per_class=3)
    for i, c in enumerate(sorted(other.iterdir())):
        c.rename(other / f"Other{i}")
    warns = evaluate_folder(other, tiny_bundle, split=None, bf16=False)["warnings"]
    assert not [w for w in warns if "names of" in w]
    # adaptation trial: "pass --split test" on classes too small for a test fifth could not help
    assert any("every image is scored" in w for w in warns) and not [w for w in warns if "--split test" in w], warns
    assert any("--split test" in w for w in every["warnings"]), every["warnings"]


def test_the_training_dataset_in_another_image_format_is_still_its_training_dataset(tmp_path):
    """UC Merced ships as .tif; the shipped bundles were trained on a lossless WebP copy.  The same
    images in another format keep their test split (before: 'not the dataset', and every image,
    training images included, was scored)."""
    from rsir_stac.evaluate import evaluate_folder
    from rsir_stac.model.train import TrainConfig, train

    webp = tmp_path / "webp"
    rng = np.random.default_rng(0)
    for c in range(3):
        (webp / f"class{c}").mkdir(parents=True)
        for i in range(6):
            img = np.clip(rng.normal(60 + 60 * c, 20, size=(48, 48, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(webp / f"class{c}" / f"img{i:02d}.webp", lossless=True)
    bundle = train(TrainConfig(str(webp), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1, p=3, k=2,
                               max_steps_per_epoch=1, val_fraction=0.0, reducer="none", test_fraction=0.34))
    tif = tmp_path / "tif"
    for f in webp.glob("*/*.webp"):
        (tif / f.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(f).save(tif / f.parent.name / f"{f.stem}.tif")
    a = evaluate_folder(webp, bundle, split=None, bf16=False)
    b = evaluate_folder(tif, bundle, split=None, bf16=False)
    assert a["protocol"]["split"] == b["protocol"]["split"] == "test"
    assert b["protocol"]["split_matches_bundle"] is True and b["n_queries"] == a["n_queries"] == 6
    assert b["mAP"] == pytest.approx(a["mAP"], abs=1e-6) and not b["warnings"]
