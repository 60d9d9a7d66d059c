"""Test-time dihedral views: ``reduce --views`` bundles embed each tile as the
mean over its rotations (and mirror images), so a rotated tile gets the same
stored vector."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rsir_stac.errors import BundleNotFoundError, InputError


def _tiles(n: int = 4, size: int = 64, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # asymmetric content: a bright corner block and noise, so rotations differ
    out = []
    for _ in range(n):
        im = rng.integers(0, 255, (size, size, 3)).astype(np.uint8)
        im[: size // 3, : size // 4] = 250
        out.append(im)
    return out


def test_dihedral_views_stack_the_group():
    import torch

    from rsir_stac.model.transforms import dihedral_views

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert dihedral_views(x, 1) is x
    v8 = dihedral_views(x, 8)
    assert v8.shape == (16, 3, 4, 4)
    views = {tuple(v8[i].flatten().tolist()) for i in range(0, 16, 2)}  # the first image's 8 views
    assert len(views) == 8  # all distinct
    # the group is closed: the 8 views of a rotated image are the same set
    rot = dihedral_views(torch.rot90(x, 1, dims=(2, 3)), 8)
    assert {tuple(rot[i].flatten().tolist()) for i in range(0, 16, 2)} == views
    with pytest.raises(ValueError, match="choose one of"):
        dihedral_views(x, 3)


def _reduce(tiny_bundle, out, *extra):
    from rsir_stac.cli import main

    data = tiny_bundle.path.parent.parent / "tiles"
    return CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", "pca",
                                     "--dim", "4", "--out", str(out), *extra])


def test_reduce_views_makes_rotation_invariant_vectors(tiny_bundle, tmp_path):
    from rsir_stac.model.bundle import load_bundle

    r = _reduce(tiny_bundle, tmp_path / "v8", "--views", "8")
    assert r.exit_code == 0, r.output
    assert "8 views per tile" in r.output
    b8 = load_bundle(tmp_path / "v8")
    assert b8.views == 8 and b8.meta["training"]["reducer_refit"]["views"] == 8
    r = _reduce(tiny_bundle, tmp_path / "v1", "--views", "1")
    assert r.exit_code == 0, r.output
    b1 = load_bundle(tmp_path / "v1")
    assert b1.views == 1 and "views" not in json.loads((tmp_path / "v1" / "model.json").read_text())
    assert b8.model_id != b1.model_id  # other vectors, other id

    tiles = _tiles()
    turned = [np.ascontiguousarray(np.rot90(t)) for t in tiles]
    mirrored = [np.ascontiguousarray(t[:, ::-1]) for t in tiles]
    e8, e1 = b8.embedder(bf16=False), b1.embedder(bf16=False)
    z = e8.embed(tiles)
    assert z.shape == (4, 4)
    np.testing.assert_allclose(e8.embed(turned), z, atol=1e-4)
    np.testing.assert_allclose(e8.embed(mirrored), z, atol=1e-4)
    # evaluate records and prints the views
    from rsir_stac.cli import main

    data = tiny_bundle.path.parent.parent / "tiles"
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "v8"), "--split", "all"])
    assert r.exit_code == 0 and "views 8" in r.output, r.output
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "v8"), "--split", "all", "--json"])
    assert json.loads(r.output)["protocol"]["views"] == 8
    # without views the network alone is not invariant (the test above can fail)
    assert np.abs(e1.embed(turned, reduce=False) - e1.embed(tiles, reduce=False)).max() > 1e-3


def test_reduce_refuses_an_existing_bundle_and_bad_views(tiny_bundle, tmp_path):
    r = _reduce(tiny_bundle, tmp_path / "b", "--views", "4")
    assert r.exit_code == 0, r.output
    before = (tmp_path / "b" / "model.json").read_text()
    r = _reduce(tiny_bundle, tmp_path / "b")
    assert r.exit_code == 2
    assert "already holds a model bundle" in r.output and "--out" in r.output
    assert (tmp_path / "b" / "model.json").read_text() == before
    r = _reduce(tiny_bundle, tmp_path / "c", "--views", "3")
    assert r.exit_code == 2 and "--views" in r.output
    assert not (tmp_path / "c").exists()



def test_reduce_refuses_reducer_sizes_before_embedding(tiny_bundle, tmp_path):
    from rsir_stac.cli import main

    data = tiny_bundle.path.parent.parent / "tiles"  # 3 classes
    for kind, dim, fix in (("lda", 5, "--dim 2"), ("pca", 10_000, "--dim "), ("pca", 0, "")):
        r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", kind,
                                      "--dim", str(dim), "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, r.output
        assert fix in r.output and "embedding training split:" not in r.output.split("error:")[-1]
        assert not (tmp_path / "o").exists()
    # following the fix works
    r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", "lda",
                                  "--dim", "2", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output


def test_reduce_lda_pca_writes_a_loadable_bundle(tiny_bundle, tmp_path):
    """``reduce --kind lda+pca``: the classes' LDA directions first, then PCA of the rest,
    recorded as its own kind, loaded back and used by evaluate; a size under 2 is refused."""
    from rsir_stac.cli import main
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.reduce import LDAPCAReducer

    data = tiny_bundle.path.parent.parent / "tiles"  # 3 classes: 2 LDA directions + 3 PCA
    r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", "lda+pca",
                                  "--dim", "5", "--out", str(tmp_path / "lp")])
    assert r.exit_code == 0, r.output
    b = load_bundle(tmp_path / "lp")
    assert b.meta["reducer"]["kind"] == "lda+pca" and b.dim == 5
    assert isinstance(b.reducer, LDAPCAReducer)
    z = b.embedder(bf16=False).embed(_tiles())
    assert z.shape == (4, 5) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tmp_path / "lp"), "--split", "all", "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", "lda+pca",
                                  "--dim", "1", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "--dim 2" in r.output, r.output
    assert not (tmp_path / "bad").exists()
    # --out may be a link to an empty folder: the bundle goes into the folder it names
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path), "--kind", "lda+pca",
                                  "--dim", "3", "--out", str(tmp_path / "link")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "target" / "model.json").is_file()
    # the run folder train wrote is named for what it is
    r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(tiny_bundle.path.parent), "--kind", "pca",
                                  "--dim", "2", "--out", str(tmp_path / "o2")])
    assert r.exit_code != 0 and "training run folder" in r.output and str(tiny_bundle.path) in r.output, r.output


def test_edited_views_do_not_pass_for_the_same_model(tiny_bundle, tmp_path):
    """The views are part of the model id: a model.json whose views were changed by hand is refused."""
    import shutil

    from rsir_stac.errors import BundleError
    from rsir_stac.model.bundle import load_bundle

    r = _reduce(tiny_bundle, tmp_path / "v4", "--views", "4")
    assert r.exit_code == 0, r.output
    for views in (None, 1, 8):
        dst = tmp_path / f"e{views}"
        shutil.copytree(tmp_path / "v4", dst)
        meta = json.loads((dst / "model.json").read_text())
        if views is None:
            del meta["views"]
        else:
            meta["views"] = views
        (dst / "model.json").write_text(json.dumps(meta))
        with pytest.raises(BundleError, match="does not match its files"):
            load_bundle(dst)
    load_bundle(tmp_path / "v4")  # the untouched one loads


def test_a_killed_reduce_leaves_nothing_behind_the_next_run(tiny_bundle, tmp_path):
    stale = tmp_path / ".b.partial-999999999"  # a run killed while writing (no such process)
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"half")
    r = _reduce(tiny_bundle, tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and (tmp_path / "b" / "model.json").is_file()


def _rotation_disagreement(bundle, images) -> float:
    """Mean cosine distance between a bundle's one-view output and its 4-view average."""
    import torch.nn.functional as F

    from rsir_stac.model.transforms import mean_over_views, to_input

    m, s = bundle.meta["normalisation"]["mean"], bundle.meta["normalisation"]["std"]
    x = to_input(images, bundle.input_size, m, s)
    net = bundle.net.eval()
    with torch.no_grad():
        return float((1 - F.cosine_similarity(net(x).float(), mean_over_views(net, x, 4), dim=1)).mean())


def test_view_distillation_fine_tunes_a_bundle_towards_its_rotation_average(tiny_bundle, tmp_path):
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.train import TrainConfig, train

    data = tiny_bundle.meta["training"]["data_dir"]
    folder = next(p for p in tiny_bundle.path.parents if (p / data).is_dir()) / data

    def tune(name, weight):
        # embedding_dim and input_size here differ from the start bundle's: its architecture must win
        cfg = TrainConfig(str(folder), str(tmp_path / name), input_size=48, embedding_dim=32, epochs=1, p=3, k=2,
                          max_steps_per_epoch=6, val_fraction=0.0, reducer="pca", reducer_dim=4, lr=1e-3,
                          init_from=str(tiny_bundle.path), view_distill=weight, seed=1)
        return load_bundle(train(cfg).path)

    tuned, control = tune("vd", 50.0), tune("plain", 0.0)
    assert tuned.meta["embedding_dim"] == tiny_bundle.meta["embedding_dim"] == 16
    assert tuned.input_size == tiny_bundle.input_size == 64
    assert tuned.meta["pretrained_source"] == tiny_bundle.model_id
    assert tuned.meta["training"]["view_distill"] == 50.0 and "init_from" not in tuned.meta["training"]
    # resuming the control's run folder with other distillation settings would mislabel its weights
    with pytest.raises(InputError, match="--no-resume"):
        train(TrainConfig(str(folder), str(tmp_path / "plain"), epochs=1, p=3, k=2, max_steps_per_epoch=6,
                          val_fraction=0.0, reducer="pca", reducer_dim=4, lr=1e-3,
                          init_from=str(tiny_bundle.path), view_distill=50.0, seed=1))
    images = _tiles(8, 64, seed=11)
    start, after, plain = (_rotation_disagreement(b, images) for b in (tiny_bundle, tuned, control))
    assert after < 0.5 * start, (start, after)
    assert after < 0.5 * plain, (plain, after)


def test_view_distillation_input_errors(tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from rsir_stac.cli import main
    from rsir_stac.model.train import TrainConfig, train

    folder = tmp_path / "none"
    with pytest.raises(InputError, match="--view-distill needs --from"):
        train(TrainConfig(str(folder), str(tmp_path / "a"), view_distill=1.0))
    with pytest.raises(InputError, match="4 or 8"):
        train(TrainConfig(str(folder), str(tmp_path / "b"), view_distill=1.0, view_distill_views=1,
                          init_from=str(tiny_bundle.path)))
    for weight in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="finite number >= 0"):
            train(TrainConfig(str(folder), str(tmp_path / "d"), view_distill=weight, init_from=str(tiny_bundle.path)))
    with pytest.raises(InputError, match="--from is empty"):
        train(TrainConfig(str(folder), str(tmp_path / "e"), init_from=""))
    with pytest.raises(BundleNotFoundError, match=f"did you mean --from {tiny_bundle.path}"):
        train(TrainConfig(str(folder), str(tmp_path / "f"), init_from=str(tiny_bundle.path.parent)))
    r = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "c"), "--unlabelled",
                                  "--view-distill", "1"])
    assert r.exit_code != 0 and "--view-distill" in r.output
    r = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "g"), "--from",
                                  str(tiny_bundle.path), "--embedding-dim", "64"])
    assert r.exit_code != 0 and "--embedding-dim with --from" in r.output and "drop --embedding-dim" in r.output
    assert not any((tmp_path / n).exists() for n in "acdefg")
