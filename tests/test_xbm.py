"""Cross-batch memory (``train --xbm``): the loss against remembered embeddings, and a run that
keeps its memory through a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rsir_stac.model.losses import CrossBatchMemory, TripletMarginLoss  # noqa: E402


def _memory_hinge(x: np.ndarray, y: np.ndarray, m: np.ndarray, ml: np.ndarray, margin: float) -> float:
    """Each anchor's farthest remembered positive against its closest remembered negative, by loops."""
    terms = []
    for a in range(len(x)):
        d = np.sqrt(((m - x[a]) ** 2).sum(1))
        pos, neg = d[ml == y[a]], d[ml != y[a]]
        if len(pos) and len(neg):
            terms.append(max(0.0, pos.max() - neg.min() + margin))
    return float(np.mean(terms))


def test_the_memory_term_is_each_anchors_hardest_remembered_triplet():
    g = torch.Generator().manual_seed(0)
    base = TripletMarginLoss(0.4)
    xbm = CrossBatchMemory(TripletMarginLoss(0.4), size=10, start_after=1)
    first = torch.randn(8, 5, generator=g)
    first_y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # the first batch only fills the memory (start_after=1): the loss is the batch's own
    assert torch.allclose(xbm(first, first_y), base(first, first_y))
    x = torch.randn(6, 5, generator=g, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 4, 4])  # class 4 has no remembered positive: those anchors add nothing
    got = xbm(x, y)
    want = base(x, y).item() + _memory_hinge(x.detach().numpy()[:4], y.numpy()[:4], first.numpy(),
                                             first_y.numpy(), 0.4)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()  # the gradient reaches the batch, never the memory (it is detached)
    assert x.grad is not None and xbm.emb.grad is None and not xbm.emb.requires_grad
    # newest first, cut at the size
    assert len(xbm.emb) == 10 and torch.equal(xbm.emb[:6], x.detach()) and torch.equal(xbm.emb[6:], first[:4])


def test_memory_survives_a_checkpoint():
    xbm = CrossBatchMemory(TripletMarginLoss(0.2), size=4)
    xbm(torch.randn(3, 2), torch.tensor([0, 1, 1]))
    other = CrossBatchMemory(TripletMarginLoss(0.2), size=4)
    other.load_state(xbm.state())
    x, y = torch.randn(3, 2), torch.tensor([1, 0, 0])
    assert xbm(x, y).item() == other(x, y).item() and other.seen == 2


def test_a_stopped_xbm_run_resumes_exactly_as_one_never_stopped(tmp_path, image_folder):
    """The memory is in the checkpoint: without it the resumed epoch would start with an empty
    memory and train other weights than a run that was never stopped."""
    from dataclasses import replace

    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "straight"), input_size=48, embedding_dim=8, epochs=2,
                      p=3, k=2, max_steps_per_epoch=2, val_fraction=0.0, reducer="none", xbm=8, bf16=False)
    straight = train(cfg)
    stopped = replace(cfg, out=str(tmp_path / "stopped"), epochs=1)
    train(stopped)
    resumed = train(replace(stopped, epochs=2))
    assert resumed.meta["training"]["xbm"] == 8

    def last(run: str) -> dict:  # the weights after the last epoch (the bundle holds the best epoch's)
        return torch.load(tmp_path / run / "checkpoint.pt", weights_only=False)["net"]

    a, b = last("straight"), last("stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in straight.meta["training"]["history"]] == \
        [h["loss"] for h in resumed.meta["training"]["history"]]
    # the memory did change the training: the same run without it ends elsewhere
    train(replace(cfg, out=str(tmp_path / "plain"), xbm=0))
    plain = last("plain")
    assert any(not torch.equal(a[k], plain[k]) for k in a if a[k].is_floating_point())


def test_xbm_options_that_cannot_train_are_refused(tmp_path, image_folder):
    from click.testing import CliRunner

    from rsir_stac.cli import main

    r = CliRunner().invoke(main, ["train", str(image_folder), "--out", str(tmp_path / "run"), "--xbm", "-1"])
    assert r.exit_code == 2 and "--xbm -1: give 0 (off) or a memory of at least one batch" in r.output, r.output
    # 8: smaller than a batch (the folder's 3 classes x 4 images), it would hold one batch's first classes
    r = CliRunner().invoke(main, ["train", str(image_folder), "--out", str(tmp_path / "run"), "--xbm", "8"])
    assert r.exit_code == 2 and "--xbm 8: give 0 (off) or a memory of at least one batch, 12 embeddings here (3 " \
        "classes, fewer than --p 16, x --k 4), e.g. 512" in r.output, r.output
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(main, ["train", str(image_folder), "--out", str(tmp_path / "run"), "--unlabelled",
                                  "--xbm", "512"])
    assert r.exit_code == 2 and "--xbm 512 with --unlabelled" in r.output
    assert not (tmp_path / "run").exists()


def test_the_memory_holds_at_most_its_size_from_the_first_batch():
    """Helper trial: the first batch was kept whole, so --xbm 1 and --xbm 10^11 trained alike."""
    xbm = CrossBatchMemory(TripletMarginLoss(0.2), size=5)
    xbm(torch.randn(8, 3), torch.arange(8) % 4)
    assert len(xbm.emb) == len(xbm.labels) == 5


def test_without_validation_the_memory_term_does_not_decide_the_kept_epoch(tmp_path, image_folder):
    """Helper trial: with no validation split the epoch of lowest training loss is kept, and the memory's
    term (from the second epoch) made the first epoch always look best: the memory's training was dropped."""
    import json

    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "run"), input_size=48, embedding_dim=8, epochs=3,
                      p=3, k=2, max_steps_per_epoch=3, val_fraction=0.0, reducer="none", xbm=6, bf16=False,
                      lr=1e-3)
    train(cfg)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    hist = ck["history"]
    assert hist[0]["xbm_loss"] == 0 and all(h["xbm_loss"] > 0 for h in hist[1:])  # from the second epoch
    assert ck["best"] == pytest.approx(max(h["xbm_loss"] - h["loss"] for h in hist))
    assert json.loads((tmp_path / "run" / "bundle" / "model.json").read_text())["training"]["xbm"] == 6


def test_one_epoch_with_a_memory_is_said_to_train_without_it(caplog):
    from rsir_stac.model.train import TrainConfig
    from rsir_stac.model.train_checks import check_options

    check_options(TrainConfig("d", "o", epochs=1, xbm=512))
    assert "--xbm 512 with --epochs 1: the memory joins the loss from the second epoch" in caplog.text


def test_a_stopped_no_resume_run_is_told_to_drop_the_flag_to_resume(tmp_path, image_folder):
    """Helper trial: an interrupted `train --no-resume` said "re-run the same command", which started over
    again; the advice now names the flag to drop, and following it resumes."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "rsir_stac.cli", "train", str(image_folder), "--out", str(tmp_path / "run"),
           "--input-size", "48", "--embedding-dim", "8", "--p", "3", "--k", "2", "--epochs", "50",
           "--val-fraction", "0", "--reducer", "none", "--xbm", "6", "--no-resume"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo,
                            env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"})
    seen = ""
    while "epoch 2/50" not in seen:  # a checkpoint is written: there is something to resume
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    assert "epoch 1/50: loss " in seen and " (of which the memory 0.0000)  val mAP" in seen  # said beside the loss
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert proc.returncode == 143 and last == ("error: terminated (SIGTERM); re-run the same command without "
                                               "--no-resume: train resumes from its last checkpoint"), err[-1500:]
    again = subprocess.run(cmd[:-1] + ["--epochs", "3"], capture_output=True, text=True, cwd=repo,
                           env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert again.returncode == 0 and "resum" in again.stderr, again.stderr[-1500:]


def test_a_fine_tuned_bundle_records_how_its_start_was_trained(tmp_path, image_folder):
    """Upgrade trial: v7's model.json said `xbm: 0` (its second stage's) and nothing told it from v6."""
    from dataclasses import replace

    from rsir_stac.model.train import TrainConfig, train

    cfg = TrainConfig(str(image_folder), str(tmp_path / "s1"), input_size=48, embedding_dim=8, epochs=2,
                      p=3, k=2, max_steps_per_epoch=2, val_fraction=0.0, reducer="none", xbm=6, margin=0.3)
    first = train(cfg)
    second = train(replace(cfg, out=str(tmp_path / "s2"), xbm=0, epochs=1, init_from=str(first.path)))
    start = second.meta["training"]["start"]
    assert start["model_id"] == first.model_id == second.meta["pretrained_source"]
    assert (start["xbm"], start["margin"], start["epochs"]) == (6, 0.3, 2) and second.meta["training"]["xbm"] == 0
    third = train(replace(cfg, out=str(tmp_path / "s3"), xbm=0, epochs=1, init_from=str(second.path)))
    assert third.meta["training"]["start"]["start"]["xbm"] == 6  # the whole chain
