"""Checks of an adaptation run's input, made before training, and its held-out slice.

Each check refuses (InputError) what adaptation cannot learn from, with the
fix, before a tile is read or a step is trained (:func:`rsir_stac.model.adapt.adapt`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rsir_stac.errors import InputError


def check_out(out: Path) -> Path:
    """``out``/bundle, refused (InputError) when it exists or ``out`` cannot be written."""
    target = out / "bundle"
    if target.exists():
        raise InputError(f"{target} already exists; choose another --out or remove it")
    parent = out if out.exists() else out.parent
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if not os.access(parent if parent.exists() else Path("."), os.W_OK):
        raise InputError(f"cannot write to {parent}; choose a writable --out")
    return target


def held_out_split(tiles, fraction: float, most: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) tile indices, about ``fraction`` of the tiles held out
    (at least 8, at most ``most``).

    Georeferenced tiles are held out by ground cell, so that a held-out
    tile's other dates (and, with larger cells, its neighbours) are held out
    with it: cells of 3 tile sides when whole cells fit the share, else of
    1.5, else of half a side (one place, all its dates).  Images are held out
    at random.
    """
    rng = np.random.default_rng([seed, 7])
    n = len(tiles)
    geo = tiles.georeferenced
    want = min(most, max(8, int(round(n * fraction))))
    held: list[int] = []
    gi = np.flatnonzero(geo)
    share = int(round(want * len(gi) / n)) if n else 0
    for sides in (3.0, 1.5, 0.5):
        if not len(gi) or not share:
            break
        cell = np.floor(tiles.pos[gi] / (sides * tiles.side_m[gi, None])).astype(np.int64)
        _, inv = np.unique(cell, axis=0, return_inverse=True)
        inv = inv.ravel()
        picked: list[int] = []
        for c in rng.permutation(inv.max() + 1).tolist():
            members = gi[inv == c]
            if len(picked) + len(members) <= share:
                picked.extend(members.tolist())
            if len(picked) >= 0.8 * share:
                break
        if len(picked) >= 0.5 * share:
            held = picked
            break
    ii = np.flatnonzero(~geo)
    if len(ii):
        held.extend(rng.choice(ii, size=min(len(ii), max(0, want - len(held))), replace=False).tolist())
    held_arr = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(np.arange(n), held_arr), held_arr


def check_negatives(tiles, neg_distance: float | None) -> None:
    """Refuse georeferenced tiles that all lie too close together for any negative.

    A negative must be more than ``neg_distance`` (default 2 tile sides) from
    its anchor; a catalogue narrower than that (e.g. one Landsat subset tiled
    at 30 m × 256 px = 23 km tiles) gives the triplet loss nothing to push away.
    """
    from scipy.spatial.distance import pdist

    from rsir_stac.model.pairs import NEG_SIDES

    if (~tiles.georeferenced).any() or len(tiles) < 2:
        return  # images are negatives of each other
    pos = tiles.pos[np.random.default_rng(0).permutation(len(tiles))[:2000]]
    need = neg_distance or NEG_SIDES * float(np.nanmax(tiles.side_m))
    span = float(pdist(pos).max())
    if span <= need:
        raise InputError(
            f"the tiles span {span / 1000:.3g} km, no more than the negative distance {need / 1000:.3g} km "
            f"({NEG_SIDES:g} tile sides of {np.nanmax(tiles.side_m) / 1000:.3g} km), so no triplet has a negative; "
            "pass --gsd with a finer GSD (smaller tiles on the ground) or add scenes of other places")


def check_clusters(cfg) -> None:
    """Refuse ``clusters`` settings that contradict ``triplets`` (before any tile is read)."""
    if cfg.recluster_every < 0:
        raise InputError(f"--recluster-every {cfg.recluster_every}: give a number of steps, or 0 to keep the "
                         "start model's clusters")
    if cfg.clusters is None:
        return
    if cfg.clusters < 0 or cfg.clusters == 1:
        raise InputError(f"--clusters {cfg.clusters}: give 2 or more clusters, or 0 to turn cluster triplets off")
    if cfg.clusters == 0 and "cluster" in cfg.triplets:
        raise InputError("--triplets cluster with --clusters 0 (off); drop cluster from --triplets or give "
                         "--clusters 2 or more")
    if cfg.clusters and cfg.triplets and "cluster" not in cfg.triplets:
        raise InputError(f"--clusters {cfg.clusters} is only used by cluster triplets, which --triplets "
                         f"{','.join(cfg.triplets)} leaves out; add cluster to --triplets or drop --clusters")
