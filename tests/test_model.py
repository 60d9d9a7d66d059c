"""Training, bundles and evaluation with real (tiny) training steps."""

import json
import shutil

import numpy as np
import pytest

from rsir_stac.errors import BundleError, BundleNotFoundError, DatasetError, ImageReadError
from rsir_stac.model.bundle import load_bundle
from rsir_stac.model.data import load_rgb, scan_image_folder, stratified_split


def test_scan_and_split(image_folder):
    f = scan_image_folder(image_folder)
    assert f.classes == ("class0", "class1", "class2") and len(f) == 18
    tr, te = stratified_split(f.labels, 0.34, seed=0)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 18
    assert np.bincount(f.labels[te]).tolist() == [2, 2, 2]
    assert np.array_equal(te, stratified_split(f.labels, 0.34, seed=0)[1])
    assert not np.array_equal(te, stratified_split(f.labels, 0.34, seed=1)[1])


def test_bad_folders(tmp_path, image_folder):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="at least 2"):
        scan_image_folder(tmp_path / "empty")
    one = image_folder / "lonely"
    one.mkdir()
    shutil.copy(next((image_folder / "class1").iterdir()), one / "a.png")
    with pytest.raises(DatasetError, match="lonely"):
        scan_image_folder(image_folder)


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.png"):
        load_rgb(bad)


def test_tiny_training_writes_usable_bundle(tiny_bundle):
    b = load_bundle(tiny_bundle.path)
    assert b.dim == 2 and b.meta["reducer"]["kind"] == "lda"
    assert b.model_id.startswith("rsir-efficientnet_lite0-2d-")
    for key in ("backbone", "input_size", "normalisation", "class_names", "training", "versions"):
        assert key in b.meta
    assert b.meta["training"]["history"]  # real optimisation steps happened
    mlm = json.loads((b.path / "mlm-item.json").read_text())
    assert mlm["properties"]["mlm:output"][0]["result"]["shape"] == [-1, 2]
    assert any("mlm" in e for e in mlm["stac_extensions"])
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    z = b.embedder(bf16=False).embed(tiles)
    assert z.shape == (3, 2) and z.dtype == np.float32
    assert np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    z_full = b.embedder(bf16=False).embed(tiles, reduce=False)
    assert z_full.shape == (3, 16)


def test_training_moves_weights_and_resumes(tmp_path, image_folder):
    import torch

    from rsir_stac.model.net import EmbeddingNet
    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none")
    b1 = train(cfg)
    ref = EmbeddingNet(embedding_dim=8)
    ref_state = ref.backbone.state_dict()
    changed = any(not torch.equal(ref_state[k], v.float()) for k, v in b1.net.backbone.state_dict().items()
                  if v.is_floating_point() and "num_batches" not in k)
    assert changed
    cfg.epochs = 2
    b2 = train(cfg)  # resumes at epoch 1 from the checkpoint
    assert [h["epoch"] for h in b2.meta["training"]["history"]] == [0, 1]


@pytest.mark.parametrize("change", [{"seed": 1}, {"leave_out": ("class2",)}, {"test_fraction": 0.34}, {"lr": 0.1},
                                    {"ema_epochs": 2.0}, {"downscale_prob": 0.25}, {"max_steps_per_epoch": 2},
                                    {"val_scales": (1.0, 2.0)}])
def test_resume_refuses_another_split(tmp_path, image_folder, change):
    """A checkpoint trained on another split (test images, held-out classes) is never resumed silently;
    nor with another learning rate, EMA, downscale share, validation scales or steps per epoch (model
    trial: those were taken, and the bundle recorded the last command's values as its recipe)."""
    from dataclasses import replace

    from rsir_stac.errors import InputError
    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none", test_fraction=0.5)
    train(cfg)
    before = (tmp_path / "run" / "bundle" / "model.json").read_bytes()
    key = {"ema_epochs": "ema"}.get(next(iter(change)), next(iter(change))).replace("_", "-")
    with pytest.raises(InputError, match=f"--{key} .*--no-resume"):
        train(replace(cfg, epochs=2, **change))
    assert (tmp_path / "run" / "bundle" / "model.json").read_bytes() == before  # the old bundle stands
    assert train(replace(cfg, epochs=1, resume=False, **change)).meta["training"]["n_test"] > 0


def test_leave_out_choices_are_checked():
    from rsir_stac.errors import InputError
    from rsir_stac.model.data import choose_held_out

    classes = ("a", "b", "c", "d")
    assert len(choose_held_out(classes, n=2, seed=0)) == 2
    for n in (3, 9, -1):
        with pytest.raises(InputError, match="--leave-out-n from 1 to 2"):
            choose_held_out(classes, n=n)
    with pytest.raises(InputError, match="pass one of them"):
        choose_held_out(classes, ("a",), n=1)


def test_bundle_errors(tmp_path, tiny_bundle):
    with pytest.raises(BundleNotFoundError, match="no model bundle"):
        load_bundle(tmp_path / "missing")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle.path, copy)
    w = copy / "weights.pt"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(tiny_bundle.path, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["format_version"] = 99
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="format version 99"):
        load_bundle(copy)
    meta["format_version"], meta["views"] = json.loads((tiny_bundle.path / "model.json").read_text())[
        "format_version"], 3  # test-time views other than 1, 4, 8 (reduce --views)
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="3 views per tile"):
        load_bundle(copy)


def test_evaluate_folder_uses_recorded_split(tiny_bundle):
    from rsir_stac.evaluate import evaluate_folder

    data = tiny_bundle.path.parents[1] / "tiles"
    # round(20% of 6) = 1 test image per class: no query has a relevant image, so no score
    # (it was mAP 0 and ANMRR 0, "perfect"); the refusal names --split all
    with pytest.raises(DatasetError, match=r"test split .* at most one image per class \(3 images\).*--split all"):
        evaluate_folder(data, tiny_bundle.path, split="test", bf16=False)
    res_all = evaluate_folder(data, tiny_bundle.path, split="all", bf16=False)
    assert res_all["n_queries"] == 18
    assert 0.0 <= res_all["mAP"] <= 1.0


def test_fused_inference_net_matches_eval_net():
    import torch

    from rsir_stac.model.fuse import FusedLiteTrunk, fuse_for_inference
    from rsir_stac.model.net import EmbeddingNet

    torch.manual_seed(0)
    net = EmbeddingNet(embedding_dim=16).eval()
    # non-trivial BN statistics, so folding is really exercised
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fused = fuse_for_inference(net)
    assert isinstance(fused.backbone, FusedLiteTrunk)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(net(x), fused(x), atol=1e-5)
    assert not isinstance(net.backbone, FusedLiteTrunk)  # the original is untouched


def test_fused_inference_net_stays_on_the_networks_device():
    """A net on a GPU was fused with CPU bias tensors for bias-free convs ("Expected all
    tensors to be on the same device"); the meta device stands in for CUDA here."""
    import torch

    from rsir_stac.model.fuse import fuse_for_inference
    from rsir_stac.model.net import EmbeddingNet

    net = EmbeddingNet(embedding_dim=16, pretrained=False).to("meta").eval()
    fused = fuse_for_inference(net)
    assert {p.device.type for p in fused.parameters()} == {"meta"}


def test_resnet_backbone_from_local_weights(tmp_path):
    import torch
    import torchvision

    from rsir_stac.errors import InputError
    from rsir_stac.model.net import EmbeddingNet

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = EmbeddingNet("resnet18", 8, backbone_weights=str(tmp_path / "r18.pth")).eval()
    assert torch.equal(net.backbone.body[0].weight, ref.conv1.weight)
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 8)
    with pytest.raises(InputError, match="--backbone-weights"):
        EmbeddingNet("resnet18", 8)  # no silent random init
    EmbeddingNet("resnet18", 8, pretrained=False)  # explicit random init works


@pytest.mark.parametrize("change,option", [
    ({"epochs": 0}, "--epochs 0"), ({"k": 1}, "--k 1"), ({"lr": -1.0}, "--lr -1.0"),
    ({"test_fraction": 1.5}, "--test-fraction 1.5"), ({"gsd_m": 0.0}, "--gsd 0.0"), ({"margin": -1.0}, "--margin"),
    ({"embedding_dim": 0}, "--embedding-dim 0"), ({"input_size": 0}, "--input-size 0"),
    ({"val_fraction": 1.0}, "--val-fraction 1.0"), ({"max_steps_per_epoch": 0}, "--max-steps-per-epoch 0"),
    ({"hybrid": -1.0}, "--hybrid -1.0"), ({"val_scales": (0.0,)}, "--val-scales 0"),
    ({"test_fraction": 0.8}, "each class needs at least 8 "),
])
def test_training_options_that_cannot_train_are_refused_before_any_work(tmp_path, image_folder, change, option):
    from dataclasses import replace

    from rsir_stac.errors import DatasetError, InputError
    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none")
    with pytest.raises((InputError, DatasetError), match=option.replace(".", r"\.")) as ei:
        train(replace(cfg, **change))
    assert "\n" not in str(ei.value) and not (tmp_path / "run").exists()


def test_a_truncated_png_is_refused_not_read_in_part(tmp_path, image_folder):
    """PIL knew the file and found it cut short; it used to fall through to GDAL, which read
    what was there."""
    from PIL import Image

    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "half.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="half.png cannot be decoded"):
        load_rgb(cut)


@pytest.mark.parametrize("change,option", [({"steps": 0}, "--steps 0"), ({"lr": -1.0}, "--lr -1.0"),
                                           ({"margin": -1.0}, "--margin -1.0"), ({"max_tiles": 0}, "--max-tiles 0"),
                                           ({"stride": 0}, "--stride 0")])
def test_adaptation_options_that_cannot_train_are_refused_before_any_work(tmp_path, change, option):
    from rsir_stac.errors import InputError
    from rsir_stac.model.adapt import AdaptConfig, adapt

    with pytest.raises(InputError, match=option.replace(".", r"\.")):
        adapt(AdaptConfig(sources=(str(tmp_path / "nowhere"),), out=str(tmp_path / "run"), **change))
    assert not (tmp_path / "run").exists()


def test_every_unreadable_image_is_named_before_training_and_nothing_is_written(tmp_path, image_folder):
    """Test-split images are decoded too (a bad one used to pass train and break evaluate),
    and every bad file is named in one error."""
    from rsir_stac.model.train import TrainConfig, train

    for n, cls in enumerate(("class0", "class1", "class2")):
        (image_folder / cls / f"bad{n}.png").write_bytes(b"")
    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none")
    with pytest.raises(ImageReadError, match="3 images cannot be decoded") as ei:
        train(cfg)
    assert all(f"bad{n}.png" in str(ei.value) for n in range(3)) and "remove or replace" in str(ei.value)
    assert not (tmp_path / "run").exists()


def test_folders_without_images_and_a_validation_split_that_cannot_rank_are_said(tmp_path, image_folder, caplog):
    from rsir_stac.model.train import TrainConfig, train

    nested = image_folder / "class3" / "sub"
    nested.mkdir(parents=True)
    shutil.copy(next((image_folder / "class1").iterdir()), nested / "a.png")
    with caplog.at_level("WARNING"):
        assert scan_image_folder(image_folder).classes == ("class0", "class1", "class2")
        cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                          p=3, k=2, max_steps_per_epoch=1, val_fraction=0.1, reducer="none")
        b = train(cfg)
    assert "not classes (class3)" in caplog.text and "cannot rank anything" in caplog.text
    assert b.meta["training"]["n_val"] == 0  # selected by training loss, not by a 0.0 validation mAP
