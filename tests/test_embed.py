"""The inference path: lanes, batching, input normalisation, allocator tuning."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from rsir_stac.embed import default_lanes
from rsir_stac.model.transforms import to_input


def _tiles(n, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_to_input_equals_plain_normalisation():
    import torch
    import torch.nn.functional as F

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    images = _tiles(5, 80, seed=1) + _tiles(1, 56, seed=2) + [np.zeros((37, 41, 3), np.uint8) + 200]
    for batch, size in ((images, 56), (images[-1:], 29), (images[:3], 80)):
        got = to_input(batch, size, mean, std)
        ref = []
        for im in batch:
            t = torch.from_numpy(im).permute(2, 0, 1)[None]
            if im.shape[:2] != (size, size):
                t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            ref.append((t.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        ref = torch.cat(ref)
        assert got.shape == ref.shape and got.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(got, ref, atol=1e-5)


def test_lanes_give_the_same_vectors_in_order(tiny_bundle):
    tiles = _tiles(21)
    with tiny_bundle.embedder(bf16=False, batch_size=4, lanes=1) as one:
        ref = one.embed(tiles)
    seen = []
    with tiny_bundle.embedder(bf16=False, batch_size=4, lanes=2) as two:
        got = two.embed(tiles, progress=seen.append)
        assert two.lanes == 2 and two._pool is not None  # 6 batches really went to the lanes
        futures = [two.submit(tiles[i:i + 4]) for i in range(0, 21, 4)]
        by_future = np.concatenate([f.result() for f in futures])
    assert seen == [4, 4, 4, 4, 4, 1]
    assert np.allclose(got, ref, atol=1e-5) and np.allclose(by_future, ref, atol=1e-5)
    assert two._pool is None  # closed with the context; a later embed starts them again
    assert np.allclose(two.embed(tiles[:9]), ref[:9], atol=1e-5)
    two.close()


def test_lane_threads_leave_the_callers_thread_count_alone(tiny_bundle):
    import torch

    before = torch.get_num_threads()
    emb = tiny_bundle.embedder(bf16=False, batch_size=2, lanes=2)
    emb.embed(_tiles(4))
    seen = {}

    def fresh():  # torch.set_num_threads in a lane also sets the default of new threads
        seen["fresh"] = torch.get_num_threads()

    t = threading.Thread(target=fresh)
    t.start()
    t.join()
    emb.close()
    assert torch.get_num_threads() == before and seen["fresh"] == before


def test_default_lanes(monkeypatch):
    monkeypatch.delenv("RSIR_EMBED_LANES", raising=False)
    assert default_lanes("cpu", 2) == (2, 1)
    assert default_lanes("cpu", 32) == (8, 4)
    assert default_lanes("cuda", 16) == (1, 16)
    monkeypatch.setenv("RSIR_EMBED_LANES", "2")
    assert default_lanes("cpu", 16) == (2, 8)
    monkeypatch.setenv("RSIR_EMBED_LANES", "64")  # never more lanes than threads
    assert default_lanes("cpu", 4) == (4, 1)
    monkeypatch.setenv("RSIR_EMBED_LANES", "many")  # not a number: the default
    assert default_lanes("cpu", 2) == (2, 1)


_MMAPPED = """
import ctypes, numpy as np
from rsir_stac.malloc import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
print(tune_allocator())
a = np.ones(5 << 20)  # a 40 MB buffer, like a large activation
print(libc.mallinfo2().hblkhd)  # bytes held in separately mmap'd blocks
"""


@pytest.mark.skipif(sys.platform != "linux" or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc malloc tuning only")
def test_allocator_tuning_keeps_large_buffers_in_the_heap_and_respects_the_user():
    def run(**env):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        e.update(env)
        out = subprocess.run([sys.executable, "-c", _MMAPPED], capture_output=True, text=True, check=True, env=e)
        applied, mmapped = out.stdout.split()
        return applied == "True", int(mmapped)

    tuned, mmapped_tuned = run()
    plain, mmapped_plain = run(RSIR_TUNE_MALLOC="0")
    assert tuned and not plain
    # untuned, a buffer above glibc's 32 MB mmap ceiling is a fresh mapping that
    # the kernel zeroes page by page on every forward pass, and unmaps on free
    assert mmapped_plain >= 40 << 20 and mmapped_tuned < 40 << 20
    assert run(MALLOC_ARENA_MAX="2")[0] is False  # the user's own settings win


_TRIM = """
import numpy as np
from rsir_stac.malloc import _rss_bytes, release_free_memory, tune_allocator
assert tune_allocator()
release_free_memory()  # takes the mark and starts the clock
blocks = [np.ones(1 << 17) for _ in range(400)]  # 400 x 1 MB from the heap
pin = np.ones(1 << 17)  # a live block above them: the heap cannot shrink from the top
del blocks
before = _rss_bytes()
early = release_free_memory(100 << 20, interval=3600)  # grown, but too soon
trimmed = release_free_memory(100 << 20, interval=0)
print(early, trimmed, (before - _rss_bytes()) >> 20, release_free_memory(100 << 20, interval=0))
"""


@pytest.mark.skipif(sys.platform != "linux" or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc malloc tuning only")
def test_free_heap_memory_goes_back_once_the_resident_size_has_grown():
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RSIR_TUNE_MALLOC"}
    out = subprocess.run([sys.executable, "-c", _TRIM], capture_output=True, text=True, check=True, env=e)
    early, trimmed, released_mb, again = out.stdout.split()
    assert early == "False" and trimmed == "True" and int(released_mb) >= 300 and again == "False"
