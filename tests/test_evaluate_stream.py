"""evaluate decodes and embeds a labelled folder a chunk at a time: memory stays flat with the
folder's size (AID's 10,000 images of 600 px would be 10.8 GB decoded at once), and every
unreadable file is still named in one error."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from rsir_stac.errors import ImageReadError


def _folder(root, classes=3, per_class=12, size=256):
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            base = rng.uniform(0, 255, size=(1, 1, 3)) * (c + 1) / classes
            img = np.clip(base + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(d / f"img{i:02d}.png")
    return root


def test_evaluate_holds_one_chunk_of_decoded_images_not_the_folder(tmp_path, tiny_bundle, monkeypatch):
    import rsir_stac.evaluate as ev

    data = _folder(tmp_path / "data")
    whole = 36 * 256 * 256 * 3                       # every image decoded: 7 MB
    monkeypatch.setattr(ev, "CHUNK_BATCHES", 1)      # chunks of one batch (4 images)
    full = ev.evaluate_folder(data, tiny_bundle, split="all", batch_size=4, bf16=False)
    tracemalloc.start()
    try:
        again = ev.evaluate_folder(data, tiny_bundle, split="all", batch_size=4, bf16=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole / 3, (peak, whole)           # numpy's image arrays are traced; torch's are not
    assert again["mAP"] == full["mAP"] and again["n_queries"] == 36
    monkeypatch.setattr(ev, "CHUNK_BATCHES", 1000)   # one chunk: the same scores
    assert ev.evaluate_folder(data, tiny_bundle, split="all", batch_size=4, bf16=False)["mAP"] == pytest.approx(
        full["mAP"], abs=1e-6)


def test_unreadable_files_in_several_chunks_are_named_together(tmp_path, tiny_bundle, monkeypatch):
    import rsir_stac.evaluate as ev

    data = _folder(tmp_path / "data", per_class=8)
    first, last = data / "class0" / "img00.png", data / "class2" / "img07.png"
    for path in (first, last):
        path.write_bytes(b"not a picture")
    monkeypatch.setattr(ev, "CHUNK_BATCHES", 1)
    with pytest.raises(ImageReadError) as ei:
        ev.evaluate_folder(data, tiny_bundle, split="all", batch_size=4, bf16=False)
    msg = str(ei.value)
    assert msg.startswith("2 images cannot be decoded: ") and str(first) in msg and str(last) in msg, msg
    assert msg.endswith("remove or replace them"), msg


def test_metrics_rank_a_batch_of_queries_at_a_time_with_the_same_figures():
    """The full N x N ranking (int64) of NWPU-RESISC45's 31,500 images is 8 GB: retrieval_metrics
    ranks a batch of queries at a time.  Same figures as ranking everything first."""
    from rsir_stac.evaluate import average_precision, precision_at_k, rank_all, retrieval_metrics

    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 300)
    X = rng.normal(size=(300, 8)) + y[:, None] * 0.3
    m = retrieval_metrics(X, y)
    rel = y[rank_all(X)] == y[:, None]
    assert m["mAP"] == pytest.approx(np.mean([average_precision(r) for r in rel]))
    assert m["P@10"] == pytest.approx(np.mean([precision_at_k(r, 10) for r in rel]))
    assert set(m["per_label"]) == set(range(7))
    assert m["per_label"][0]["mAP"] == pytest.approx(np.mean([average_precision(r) for r in rel[y == 0]]))

    n = 6000
    y = rng.integers(0, 45, n)
    X = rng.normal(size=(n, 16))
    tracemalloc.start()
    try:
        retrieval_metrics(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 * 0.6, peak   # the full ranking alone would be n * n * 8 bytes (288 MB)
