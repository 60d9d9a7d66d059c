"""Batch inference for a model bundle: device choice, bf16 autocast,
channels-last, ``inference_mode``, and CPU *lanes*.  Takes decoded arrays;
never reads files.

On a CPU the embedder runs 16-tile batches on several lanes: worker threads
that each run whole batches with a share of the cores.  On this 2-core Zen 4
one single-threaded lane per core embeds ~1.3x as many tiles per second as
one lane using both cores (``benchmarks/embed_lanes_ab.py``), and work done
beside the model (reading tiles, writing points) no longer stalls every core
at each OpenMP barrier.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from rsir_stac.malloc import tune_allocator

log = logging.getLogger(__name__)

#: Tiles per forward pass on a CPU (best of 8-32 on 2 lanes, benchmarks/embed_lanes_ab.py).
CPU_BATCH = 16
#: Tiles per forward pass on a GPU.
CUDA_BATCH = 64
#: Most CPU lanes; each gets ``cores // lanes`` intra-op threads.
MAX_LANES = 8


def cpu_supports_bf16() -> bool:
    """True when this CPU runs bf16 matmuls natively (AVX512-BF16 / AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - older torch builds
        return False


def default_lanes(device_type: str, threads: int, lanes: int | None = None) -> tuple[int, int]:
    """``(lanes, threads per lane)``: ``lanes`` when given; else one lane per
    core (at most :data:`MAX_LANES`, or ``RSIR_EMBED_LANES``) on a CPU, and one
    lane with the caller's threads on a GPU."""
    if lanes is None:
        if device_type != "cpu":
            return 1, threads
        env = os.environ.get("RSIR_EMBED_LANES", "").strip()
        if env and not (env.isdigit() and int(env) > 0):
            log.warning("RSIR_EMBED_LANES=%r is not a whole number of lanes >= 1; using the default, %d (unset it "
                        "or give e.g. 1)", env, min(threads, MAX_LANES))
        lanes = int(env) if env.isdigit() and int(env) > 0 else min(threads, MAX_LANES)
        lanes = min(lanes, threads)
    lanes = max(1, int(lanes))
    return lanes, max(1, threads // lanes)


class Embedder:
    """Turns H×W×3 uint8 tiles into stored vectors with one model bundle.

    ``bf16=None`` picks bf16 autocast where the hardware supports it (CUDA, or
    a CPU with native bf16); the output is always float32.  The network runs as
    a fused inference copy (batch norm folded into convolutions, see
    :mod:`rsir_stac.model.fuse`).

    ``views`` > 1 (4 or 8) averages the network's unreduced outputs over the
    tile's rotations (and mirror images) before the reducer
    (:func:`rsir_stac.model.transforms.dihedral_views`); it costs that many
    forward passes per tile.  A bundle records it (``views`` in model.json).

    ``batch_size`` / ``lanes`` default to :data:`CPU_BATCH` and one lane per
    core on a CPU, :data:`CUDA_BATCH` and one lane on a GPU.  :meth:`submit`
    queues one batch on the lanes and returns a future; :meth:`embed` spreads
    a list of images over them (a single batch runs in the calling thread).
    The lane threads start on first use; :meth:`close` stops them.
    """

    def __init__(self, net, reducer, *, input_size: int, mean, std, device: str | None = None,
                 bf16: bool | None = None, batch_size: int | None = None, lanes: int | None = None,
                 views: int = 1) -> None:
        import torch

        from rsir_stac.model.transforms import VIEW_SETS

        if views not in VIEW_SETS:
            raise ValueError(f"views={views!r}: choose one of {sorted(VIEW_SETS)}")
        self.views = int(views)

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if bf16 is None:
            bf16 = self.device.type == "cuda" or cpu_supports_bf16()
        self.bf16 = bf16
        from rsir_stac.model.fuse import fuse_for_inference

        self.net = fuse_for_inference(net.eval()).to(self.device).to(memory_format=torch.channels_last)
        self.reducer = reducer
        self.input_size, self.mean, self.std = input_size, tuple(mean), tuple(std)
        cpu = self.device.type == "cpu"
        if cpu:
            tune_allocator()  # best called at process start (the CLI does); here for library users
        self.batch_size = int(batch_size or (CPU_BATCH if cpu else CUDA_BATCH))
        self.lanes, self._lane_threads = default_lanes(self.device.type, torch.get_num_threads(), lanes)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.reducer.n_components_ if self.reducer is not None else self.net.out_dim

    def embed_tensor(self, x) -> np.ndarray:
        """Embed an already normalised N×3×H×W tensor; returns unreduced float32
        vectors, N×D (averaged over the dihedral views when ``views`` > 1)."""
        import torch

        from rsir_stac.model.transforms import mean_over_views

        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            z = mean_over_views(self.net, x.to(self.device, non_blocking=True), self.views)
        return z.cpu().numpy()

    def reduce(self, z: np.ndarray) -> np.ndarray:
        return z if self.reducer is None else self.reducer.transform(z).astype(np.float32)

    def _batch(self, images: Sequence[np.ndarray], reduce: bool) -> np.ndarray:
        from rsir_stac.model.transforms import to_input

        z = self.embed_tensor(to_input(images, self.input_size, self.mean, self.std))
        return self.reduce(z) if reduce else z

    def _lanes(self) -> ThreadPoolExecutor:
        """Start the lane threads, each with its own intra-op thread count."""
        with self._pool_lock:
            if self._pool is None:
                import torch

                caller = torch.get_num_threads()
                started = threading.Barrier(self.lanes + 1)
                per_lane = self._lane_threads

                def init() -> None:
                    torch.get_num_threads()  # initialise this thread's OpenMP state first, so that
                    torch.set_num_threads(per_lane)  # this setting sticks to the lane thread
                    started.wait()

                pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="rsir-embed", initializer=init)
                for _ in range(self.lanes):  # every submit starts a thread while none is idle
                    pool.submit(int)
                started.wait()
                torch.set_num_threads(caller)  # set_num_threads is also the default of new threads: restore it
                self._pool = pool
                log.debug("embedding on %d lane(s) of %d thread(s), batch %d", self.lanes, per_lane,
                          self.batch_size)
            return self._pool

    def submit(self, images: Sequence[np.ndarray], *, reduce: bool = True) -> Future:
        """Queue one batch (any size; it is not split) on the lanes."""
        return self._lanes().submit(self._batch, list(images), reduce)

    def submit_tensor(self, x) -> Future:
        """Queue one normalised N×3×H×W tensor on the lanes (unreduced vectors)."""
        return self._lanes().submit(self.embed_tensor, x)

    def embed(self, images: Sequence[np.ndarray], *, reduce: bool = True,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed uint8 arrays (any size; each is resized to the model's input)."""
        chunks = [images[s : s + self.batch_size] for s in range(0, len(images), self.batch_size)]
        if not chunks:
            return np.zeros((0, self.dim if reduce else self.net.out_dim), np.float32)
        if len(chunks) == 1 or self.lanes == 1:
            jobs = [None] * len(chunks)
        else:
            jobs = [self.submit(c, reduce=reduce) for c in chunks]
        out = []
        try:
            for chunk, job in zip(chunks, jobs):
                out.append(self._batch(chunk, reduce) if job is None else job.result())
                if progress:
                    progress(len(chunk))
        finally:
            for job in jobs:
                if job is not None:
                    job.cancel()
        return np.concatenate(out)

    def close(self) -> None:
        """Stop the lane threads (they restart on the next use)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
