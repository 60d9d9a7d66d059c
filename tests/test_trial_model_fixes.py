"""What a new user's trial of the model side (train, evaluate, reduce) found.

Real tiny image folders and GeoTIFFs, real training steps at tiny scale, the real
bundles; nothing of rsir-stac is mocked.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import ImageReadError, InputError
from rsir_stac.model.train import TrainConfig, train
from tests.conftest import make_geotiff, make_image_folder


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
