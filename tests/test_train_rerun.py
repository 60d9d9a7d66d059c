"""Re-running ``train`` into an existing ``--out``, and options that cannot train, with real
(tiny) training steps: what changed is named in one line, with the fix that works."""

import json
import logging
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import DatasetError, InputError
from rsir_stac.model.bundle import load_bundle
from rsir_stac.model.train import TrainConfig, train
from tests.conftest import make_image_folder


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(input_size=48, embedding_dim=8, epochs=1, p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0,
                reducer="none", test_fraction=0.5)
    return TrainConfig(str(data), str(out), **{**base, **kw})


def test_rerun_says_it_resumes_and_names_the_replaced_model_id(tmp_path, image_folder, caplog):
    cfg = _cfg(image_folder, tmp_path / "run")
    b1 = train(cfg)
    said = []
    with caplog.at_level(logging.WARNING, logger="rsir_stac.model.train"):
        # (the best epoch by training loss is kept: the resumed run's epoch 2 is worse, epoch 3 better)
        b2 = train(replace(cfg, epochs=3), lambda ev: said.append(ev.message))
    assert any(m.startswith("resuming ") and "epoch 1 of 3" in m for m in said)
    assert b1.model_id != b2.model_id
    warned = [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()]
    assert len(warned) == 1 and b1.model_id in warned[0] and b2.model_id in warned[0] and "reindex" in warned[0]
    said.clear()
    train(replace(cfg, epochs=1, resume=False), lambda ev: said.append(ev.message))
    assert any(m.startswith("starting over") for m in said)


@pytest.mark.parametrize("change", ["class added", "image added", "class removed"])
def test_rerun_on_other_classes_or_another_test_split_is_refused(tmp_path, image_folder, change):
    """The checkpoint was silently dropped (other classes) or resumed on a changed test split."""
    cfg = _cfg(image_folder, tmp_path / "run")
    train(cfg)
    before = (tmp_path / "run" / "bundle" / "model.json").read_bytes()
    data = tmp_path / "data2"
    shutil.copytree(image_folder, data)
    if change == "class added":
        make_image_folder(tmp_path / "more", classes=4)
        shutil.copytree(tmp_path / "more" / "class3", data / "class3")
        want = r"other classes .*\(class3 added\); pass --no-resume .* another --out"
    elif change == "image added":
        shutil.copy(data / "class1" / "img00.png", data / "class1" / "img99.png")
        want = r"another test split: since then .*data2 gained 1 image\(s\) \(class1/img99\.png\).*--no-resume"
    else:
        shutil.rmtree(data / "class2")
        make_image_folder(tmp_path / "more", classes=3)
        shutil.copytree(tmp_path / "more" / "class1", data / "class2b")
        want = r"other classes .*class2b added; class2 gone.*--no-resume"
    with pytest.raises(InputError, match=want) as ei:
        train(replace(cfg, data_dir=str(data), epochs=2))
    assert "\n" not in str(ei.value)
    assert (tmp_path / "run" / "bundle" / "model.json").read_bytes() == before  # the old bundle stands
    assert train(replace(cfg, data_dir=str(data), resume=False)).meta["training"]["n_test"] > 0  # the fix works


def test_resume_compares_held_out_classes_not_how_they_were_named(tmp_path):
    data = make_image_folder(tmp_path / "tiles", classes=4, per_class=4)
    cfg = _cfg(data, tmp_path / "run", leave_out=("class3", "class1"))
    train(cfg)
    b = train(replace(cfg, leave_out=("class1", "class3"), epochs=2))  # same classes, other order: resumes
    assert [h["epoch"] for h in b.meta["training"]["history"]] == [0, 1]
    with pytest.raises(InputError) as ei:
        train(replace(cfg, leave_out=(), leave_out_n=2, seed=0, epochs=3))
    msg = str(ei.value)
    assert "holding out class1,class3, not " in msg and "not ;" not in msg and "--no-resume" in msg
    with pytest.raises(InputError, match="holding out class1,class3, not no classes"):
        train(replace(cfg, leave_out=(), epochs=3))


def test_resume_with_another_recipe_names_the_recipe(tmp_path, image_folder):
    cfg = _cfg(image_folder, tmp_path / "run", extra={"recipe": "v1"})
    train(cfg)
    with pytest.raises(InputError, match=r"--recipe v1, not v3; pass --no-resume"):
        train(replace(cfg, pooling="gem", extra={"recipe": "v3"}, epochs=2))


def test_model_json_is_strict_json_and_old_nan_files_read(tmp_path, image_folder):
    b = train(_cfg(image_folder, tmp_path / "run"))  # no validation: val_mAP is NaN in the history

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in model.json"))

    meta = strict((b.path / "model.json").read_text())
    assert meta["training"]["history"][0]["val_mAP"] is None
    old = (b.path / "model.json").read_text().replace('"val_mAP": null', '"val_mAP": NaN')
    (b.path / "model.json").write_text(old)  # as earlier versions wrote it
    again = load_bundle(b.path)
    assert again.meta["training"]["history"][0]["val_mAP"] is None
    r = CliRunner().invoke(main, ["model-info", "--model", str(b.path)])
    assert r.exit_code == 0 and "NaN" not in r.output


def test_the_minimum_named_is_the_one_applied_when_validation_is_left_out(tmp_path, caplog):
    """Model trial: classes of 8, 8, 1, 2 and 3 images with --val-fraction 0.1 were refused naming
    the 1- and 2-image classes and 'each class needs at least 4', yet the 3-image class trained:
    the run had left validation out (too few images for one), so 3 were enough.  The refused run
    also warned first that it would keep 'the epoch with the lowest training loss' (a second trial:
    two messages at odds); that warning now comes only from a run that trains."""
    data = make_image_folder(tmp_path / "tiles", classes=5, per_class=8)
    for cls, keep in (("class2", 1), ("class3", 2), ("class4", 3)):
        for f in sorted((data / cls).iterdir())[keep:]:
            f.unlink()
    with caplog.at_level("WARNING"), pytest.raises(DatasetError) as ei:
        train(_cfg(data, tmp_path / "run", test_fraction=0.2, val_fraction=0.1))
    msg = str(ei.value)
    assert "class2 (1 image), class3 (2 images);" in msg and "class4" not in msg, msg
    assert "no validation split (the folder has too few images for one) each class needs at least 3" in msg, msg
    assert "lowest training loss" not in caplog.text
    for cls in ("class2", "class3"):
        shutil.rmtree(data / cls)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert train(_cfg(data, tmp_path / "run", test_fraction=0.2, val_fraction=0.1)).meta["training"]["n_train"] > 0
    assert caplog.text.count("lowest training loss") == 1


def test_a_class_too_small_to_train_is_named_with_the_real_minimum(tmp_path, caplog):
    data = make_image_folder(tmp_path / "tiles", classes=3, per_class=6)
    for f in sorted((data / "class2").iterdir())[2:]:
        f.unlink()
    with pytest.raises(DatasetError) as ei:
        train(_cfg(data, tmp_path / "run", test_fraction=0.2))
    assert re.fullmatch(rf"1 class\(es\) of {re.escape(str(data))} have too few images to train: class2 \(2 images\); "
                        r"with --test-fraction 0.2 and --val-fraction 0 each class needs at least 3 \(1 for the test "
                        r"split, 2 for a triplet's anchor and positive\): add images to them, or remove their folders",
                        str(ei.value)), str(ei.value)
    assert not (tmp_path / "run").exists()
    # 3 images: 1 test, 1 validation leaves 1: --val-fraction 0 is the fix, and it trains
    make_image_folder(tmp_path / "more", classes=3, per_class=3, seed=1)
    shutil.copy(tmp_path / "more" / "class2" / "img02.png", data / "class2" / "img02.png")
    cfg = _cfg(data, tmp_path / "run", test_fraction=0.2, val_fraction=0.5)
    with pytest.raises(DatasetError, match=r"class2 \(3 images\); with --test-fraction 0.2 and --val-fraction 0.5 "
                                           r"each class needs at least 5 \(1 for the test split, 2 for validation, 2 "
                                           r"for a triplet's anchor and positive\): add images to them, pass "
                                           r"--val-fraction 0 \(then 3 are enough\), or remove their folders"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    with caplog.at_level(logging.WARNING, logger="rsir_stac.model.train"):
        assert train(replace(cfg, val_fraction=0.0)).meta["training"]["n_train"] > 0
    # at the minimum the test split holds one image per class: evaluate would refuse it, so train says so
    assert any("at most one image per class" in r.getMessage() and "--split all" in r.getMessage()
               for r in caplog.records if r.name == "rsir_stac.model.train")


def test_resnet_with_the_default_recipe_names_the_recipe_and_the_fix_works(tmp_path, image_folder):
    out = tmp_path / "run"
    base = ["train", str(image_folder), "--out", str(out), "--backbone", "resnet18", "--input-size", "48",
            "--embedding-dim", "8", "--epochs", "1", "--p", "3", "--k", "2", "--max-steps-per-epoch", "1",
            "--val-fraction", "0", "--reducer", "none"]
    for extra in ([], ["--random-init"], ["--random-init", "--freeze-blocks", "0"]):
        r = CliRunner().invoke(main, base + extra)
        assert r.exit_code == 2, r.output
        assert "--recipe v3" in r.output and "pass --recipe v1" in r.output, r.output
        assert not out.exists()  # no empty --out left behind
    r = CliRunner().invoke(main, base)
    assert "pass --recipe v1 --random-init, or --recipe v1 --backbone-weights PATH" in r.output, r.output
    r = CliRunner().invoke(main, base + ["--recipe", "v1", "--random-init"])
    assert r.exit_code == 0, r.output
    assert load_bundle(out / "bundle").meta["backbone"] == "resnet18"
    # the other alternative works as given too (model trial: '--backbone-weights PATH' alone was refused again)
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    base[base.index(str(out))] = str(tmp_path / "run2")
    r = CliRunner().invoke(main, base + ["--recipe", "v1", "--backbone-weights", str(tmp_path / "r18.pth")])
    assert r.exit_code == 0, r.output


def test_a_failed_run_leaves_no_empty_out_folder(tmp_path, image_folder, monkeypatch):
    import rsir_stac.model.train as t

    def boom(*a, **k):
        raise InputError("network cannot be built")

    monkeypatch.setattr(t, "_make_net", boom)
    with pytest.raises(InputError):
        train(_cfg(image_folder, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_v7_names_the_shipped_default():
    from rsir_stac.model.bundle import shipped_models, shipped_name

    assert {"v5", "v6", "v7"} <= set(shipped_models())
    default = load_bundle("default")
    assert load_bundle("v7").model_id == default.model_id != load_bundle("v6").model_id
    assert shipped_name(default.model_id) == "v7"
    assert shipped_name(load_bundle("v6").model_id) == "v6"
    # what tells v7 from v6: the memory in its first stage, recorded with that stage
    start = default.meta["training"]["start"]
    assert start["xbm"] == 512 and start["model_id"] == default.meta["pretrained_source"]
    assert "xbm" not in load_bundle("v6").meta["training"].get("start", {})


@pytest.mark.parametrize("bad", ["-1", "0"])
def test_evaluate_batch_size_below_one_is_bad_usage(tmp_path, tiny_bundle, bad):
    data = tiny_bundle.path.parents[1] / "tiles"
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tiny_bundle.path), "--split", "all",
                                  "--batch-size", bad])
    assert r.exit_code == 2 and "--batch-size" in r.output and "unexpected" not in r.output


@pytest.mark.parametrize("bad", [0, -3])
def test_reindex_batch_size_below_one_is_refused_before_any_work(tmp_path, bad):
    from rsir_stac.evaluate import evaluate_folder
    from rsir_stac.reindex import reindex

    with pytest.raises(InputError, match=f"--batch-size {bad}"):
        reindex(str(tmp_path / "old"), str(tmp_path / "new"), batch_size=bad)
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match=f"--batch-size {bad}"):
        evaluate_folder(tmp_path, np.zeros(1), batch_size=bad)


@pytest.mark.parametrize("option", [["--backbone", "resnet18"], ["--epochs", "3"], ["--leave-out", "class1"],
                                    ["--recipe", "v1"]])
def test_unlabelled_refuses_labelled_only_options(tmp_path, image_folder, option):
    r = CliRunner().invoke(main, ["train", "--unlabelled", str(image_folder), "--out", str(tmp_path / "run")] + option)
    assert r.exit_code == 2 and f"{option[0]} with --unlabelled" in r.output and "drop" in r.output, r.output
    assert not (tmp_path / "run").exists()


def test_adapt_gsd_zero_and_the_adapt_command_are_answered(tmp_path, image_folder):
    from rsir_stac.model.adapt import AdaptConfig, adapt

    with pytest.raises(InputError, match="--gsd 0"):
        adapt(AdaptConfig(sources=(str(image_folder),), out=str(tmp_path / "run"), gsd=0.0))
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(main, ["adapt", str(image_folder)])
    assert r.exit_code == 2 and "train --unlabelled" in r.output


def test_images_in_a_class_sub_folder_are_said_not_read(tmp_path, image_folder, caplog):
    from rsir_stac.model.data import scan_image_folder

    (image_folder / "class1" / "extra").mkdir()
    shutil.copy(image_folder / "class1" / "img00.png", image_folder / "class1" / "extra" / "a.png")
    with caplog.at_level(logging.WARNING, logger="rsir_stac.model.data"):
        f = scan_image_folder(image_folder)
    assert len(f) == 18
    assert any("extra" in r.getMessage() and "not read" in r.getMessage() for r in caplog.records)


def test_time_triplets_without_two_dates_are_said_in_plain_words():
    from rsir_stac.model.pairs import Positives, available_kinds

    none = [np.zeros(0, dtype=np.int64)] * 4
    with pytest.raises(InputError, match="the sources hold no tiles of the same ground at two dates; drop it") as ei:
        available_kinds(Positives(list(none), list(none)), 4, ["time"], 2)
    assert "no the same" not in str(ei.value)


@pytest.mark.parametrize("option", [["--steps", "5"], ["--max-tiles", "100"], ["--stride", "128"]])
def test_labelled_training_refuses_adaptation_only_options(tmp_path, image_folder, option):
    """The reverse of the above: --steps (documented as --unlabelled only) ran a labelled
    training to its end, silently ignored."""
    r = CliRunner().invoke(main, ["train", str(image_folder), "--out", str(tmp_path / "run")] + option)
    assert r.exit_code == 2 and f"{option[0]} without --unlabelled" in r.output and "drop" in r.output, r.output
    assert not (tmp_path / "run").exists()


def test_a_bundle_given_as_out_is_refused_before_any_work(tmp_path, image_folder):
    """Model trial: `train --out RUN/bundle` (easily taken for --from) wrote checkpoint.pt, best.pt,
    history.json and bundle/ into the bundle folder, which became both a bundle and a run folder."""
    b = train(_cfg(image_folder, tmp_path / "run"))
    before = sorted(p.name for p in b.path.iterdir())
    with pytest.raises(InputError, match=r"--out .*bundle is a model bundle \(it holds model.json\).*--from "):
        train(_cfg(image_folder, b.path))
    assert sorted(p.name for p in b.path.iterdir()) == before

