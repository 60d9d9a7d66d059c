"""Recipe v2 (hybrid output, distillation, frozen prefix, multi-scale) and the
generality protocols (--scale, leave classes out, ImageNet baseline), with real
tiny training steps."""

import numpy as np
import pytest
import torch

from rsir_stac.errors import DatasetError, InputError
from rsir_stac.model.data import choose_held_out, scan_image_folder, without_classes


def test_hybrid_output_is_unit_and_keeps_pooled_features():
    from rsir_stac.model.net import EmbeddingNet

    torch.manual_seed(0)
    net = EmbeddingNet(embedding_dim=8, hybrid=1.0).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out, f = net(x), net.features(x)
    assert out.shape == (3, 8 + 1280) and net.out_dim == 8 + 1280
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    # the second block is the normalised pooled features, scaled by hybrid / sqrt(1 + hybrid^2)
    g = torch.nn.functional.normalize(f, dim=1) / np.sqrt(2)
    assert torch.allclose(out[:, 8:], g, atol=1e-5)
    assert EmbeddingNet(embedding_dim=8).eval()(x).shape == (3, 8)  # v1 unchanged


def test_prefix_suffix_equals_forward():
    from rsir_stac.model.backbones import build_backbone

    bb = build_backbone("efficientnet_lite0").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for n in (0, 3, bb.n_blocks):
            assert torch.allclose(bb.suffix(bb.prefix(x, n), n), bb(x), atol=1e-5)


def test_v2_training_step_freezes_prefix_and_distils(tmp_path, image_folder):
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.net import EmbeddingNet
    from rsir_stac.model.train import RECIPES, TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=3, k=2, max_steps_per_epoch=2, val_fraction=0.0, reducer="pca", reducer_dim=4,
                      **RECIPES["v2"])
    b = train(cfg)
    ref = EmbeddingNet(embedding_dim=8).backbone.state_dict()
    got = b.net.backbone.state_dict()
    frozen = [k for k in got if k.startswith(("net._conv_stem", "net._bn0", "net._blocks.0.", "net._blocks.4."))]
    moved = [k for k in got if k.startswith("net._blocks.10.") and got[k].is_floating_point()
             and "num_batches" not in k]
    bad = [k for k in frozen if not torch.allclose(got[k].float(), ref[k].float(), rtol=2e-3, atol=1e-3)]
    assert frozen and not bad  # (bundles store fp16: compare at fp16 precision)
    assert any(not torch.allclose(got[k].float(), ref[k].float(), atol=1e-3) for k in moved)
    again = load_bundle(b.path)
    assert again.meta["hybrid"] == 1.0 and again.meta["recipe"] == "v2"
    assert again.embedder(bf16=False).embed([np.zeros((48, 48, 3), np.uint8)], reduce=False).shape == (1, 8 + 1280)
    assert again.dim == 4


def test_downscale_is_antialiased_and_identity_at_one():
    from rsir_stac.model.transforms import downscale

    im = np.zeros((64, 64, 3), np.uint8)
    im[:, ::2] = 255  # one-pixel stripes alias to pure black/white without a low-pass filter
    small = downscale(im, 4)
    assert small.shape == (16, 16, 3)
    assert 100 < small.mean() < 155 and small.std() < 20
    assert downscale(im, 1.0) is im


def test_leave_out_choice_is_seeded_and_checked(image_folder):
    f = scan_image_folder(image_folder)
    a = choose_held_out(f.classes, n=1, seed=0)
    assert a == choose_held_out(f.classes, n=1, seed=0) and len(a) == 1 and a[0] in f.classes
    kept = without_classes(f, a)
    assert a[0] not in kept.classes and len(kept) == 12 and set(kept.labels.tolist()) == {0, 1}
    with pytest.raises(DatasetError, match="unknown class 'nope'"):
        choose_held_out(f.classes, names=["nope"])
    with pytest.raises(DatasetError, match="fewer than 2"):
        choose_held_out(f.classes, names=["class0", "class1"])
    with pytest.raises(ValueError, match="--leave-out-n from 1 to 1"):
        choose_held_out(f.classes, n=2)


def test_leave_classes_out_protocol(tmp_path, image_folder):
    from rsir_stac.evaluate import evaluate_folder
    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=2, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none",
                      leave_out=("class2",), test_fraction=0.34)  # 2 test images a class: queries with a match
    b = train(cfg)
    assert b.meta["training"]["held_out_classes"] == ["class2"]
    assert b.class_names == ["class0", "class1"]
    test = evaluate_folder(image_folder, b, split="test", bf16=False)
    assert test["n_queries"] == 4 and "class2" not in str(test["protocol"]["classes"])
    # one held-out class would rank its images only among themselves (mAP 1 whatever the model)
    with pytest.raises(DatasetError, match="one class 'class2'.*more held-out classes"):
        evaluate_folder(image_folder, b, split="all", classes="held-out", bf16=False)
    held = evaluate_folder(image_folder, b, split="all", classes=["class2", "class1"], bf16=False)
    assert held["n_queries"] == 12 and held["protocol"]["classes"] == ["class1", "class2"]
    base = evaluate_folder(image_folder, "imagenet", split="all", classes=["class2", "class0"], scale=2, bf16=False)
    assert base["dim"] == 1280 and base["n_queries"] == 12 and base["protocol"]["scale"] == 2.0
    with pytest.raises(InputError, match="below 1"):
        evaluate_folder(image_folder, b, scale=0.5)
    with pytest.raises(DatasetError, match="no held-out classes"):
        evaluate_folder(image_folder, "imagenet", classes="held-out")
    # a new reducer for the bundle is fitted on its own split: the held-out class stays out
    from rsir_stac.model.refit import refit_reducer

    r = refit_reducer(b, str(image_folder), "lda", 1, str(tmp_path / "lda"))  # refused before the fix
    assert r.meta["training"]["reducer_refit"]["n_train"] < 12  # the 2 training classes' split only
    assert r.meta["training"]["held_out_classes"] == ["class2"]
    assert evaluate_folder(image_folder, r, split="all", classes=["class2", "class0"], bf16=False)["n_queries"] == 12


def test_cli_bad_protocol_input(tmp_path, image_folder):
    from click.testing import CliRunner

    from rsir_stac.cli import main

    r = CliRunner().invoke(main, ["evaluate", str(image_folder), "--scale", "0.5"])
    assert r.exit_code == 2 and "--scale 0.5 is below 1" in r.output
    for bad, why in (("inf", "finite numbers"), ("nan", "finite numbers"), ("abc", "finite numbers"),
                     ("1,,2", "finite numbers"), ("1000", "at most 32")):
        r = CliRunner().invoke(main, ["evaluate", str(image_folder), "--scale", bad])
        assert r.exit_code == 2 and why in r.output and len(r.output.strip().splitlines()) == 1, (bad, r.output)
    r = CliRunner().invoke(main, ["evaluate", str(image_folder), "--held-out", "--classes", "class0,class1"])
    assert r.exit_code == 2 and "pass one of them" in r.output
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    for cmd in (["evaluate", str(afile)], ["reduce", str(afile), "--kind", "pca", "--dim", "4", "--out", str(tmp_path / "r")]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 2 and "is a file, not a folder" in r.output.strip().splitlines()[-1], r.output
    r = CliRunner().invoke(main, ["train", str(image_folder), "--out", str(tmp_path / "o"), "--leave-out", "nope"])
    assert r.exit_code != 0 and "unknown class 'nope'" in r.output
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_reducer_dim_is_checked_before_training(tmp_path, image_folder):
    from rsir_stac.model.train import TrainConfig, train

    for kind, dim in (("lda+pca", 1), ("pca", 0)):
        cfg = TrainConfig(str(image_folder), str(tmp_path / kind), input_size=48, embedding_dim=8, epochs=1,
                          reducer=kind, reducer_dim=dim)
        with pytest.raises(InputError, match=f"--reducer-dim {dim}: .* pass --reducer-dim"):
            train(cfg)
        assert not (tmp_path / kind).exists()  # refused before anything is written


def test_reduce_sets_another_hybrid_weight(tmp_path, image_folder, tiny_bundle):
    """`reduce --hybrid W` reweights the pooled part of the output, [z, W·g] / sqrt(1 + W²), with the
    network's weights kept; a v1 bundle (no pooled part) and a weight of 0 or below are refused."""
    from click.testing import CliRunner

    from rsir_stac.cli import main
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.refit import refit_reducer
    from rsir_stac.model.train import RECIPES, TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=1,
                      p=3, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="pca", reducer_dim=4,
                      **RECIPES["v3"])
    b = train(cfg)
    r = refit_reducer(b, str(image_folder), "pca", 4, str(tmp_path / "w3"), hybrid=3.0)
    assert r.meta["hybrid"] == 3.0 and r.meta["training"]["reducer_refit"]["hybrid"] == 3.0
    assert b.net.hybrid == 1.0 and load_bundle(b.path).meta["hybrid"] == 1.0  # the start bundle is unchanged
    assert r.model_id != b.model_id
    tiles = [np.random.default_rng(s).integers(0, 255, (48, 48, 3), dtype=np.uint8) for s in range(3)]
    old = b.embedder(bf16=False).embed(tiles, reduce=False)
    new = r.embedder(bf16=False).embed(tiles, reduce=False)
    z, g = old[:, :8] * np.sqrt(2.0), old[:, 8:] * np.sqrt(2.0)  # unit parts of the weight-1 output
    np.testing.assert_allclose(new, np.hstack([z, 3.0 * g]) / np.sqrt(10.0), atol=2e-3)
    assert r.embedder(bf16=False).embed(tiles).shape == (3, 4)
    runner = CliRunner()
    for bad, why in (("0", "above 0"), ("-1", "above 0"), ("nan", "above 0")):
        res = runner.invoke(main, ["reduce", str(image_folder), "--model", str(b.path), "--kind", "pca",
                                   "--dim", "4", "--hybrid", bad, "--out", str(tmp_path / f"bad{bad}")])
        assert res.exit_code == 2 and why in res.output and not (tmp_path / f"bad{bad}").exists(), res.output
    res = runner.invoke(main, ["reduce", str(image_folder), "--model", str(tiny_bundle.path), "--kind", "pca",
                               "--dim", "2", "--hybrid", "2", "--out", str(tmp_path / "v1")])
    assert tiny_bundle.meta["hybrid"] == 0.0  # the test bundle is recipe v1's shape
    assert res.exit_code == 2 and "no pooled backbone features" in res.output, res.output
