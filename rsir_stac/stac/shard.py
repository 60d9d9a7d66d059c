"""Sharding: the scenes of a run split into ``N`` stable shards (by item id and asset), so
that ``N`` workers ingest a catalogue side by side without overlap."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from rsir_stac.errors import InputError
from rsir_stac.stac.scene import SceneRef


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` into ``(I, N)`` with ``0 <= I < N``."""
    try:
        left, right = str(text).strip().split("/")
        index, total = int(left), int(right)
    except ValueError:
        index, total = -1, 0
    if total < 1 or not 0 <= index < total:
        raise InputError(f"shard {text!r} is invalid; use I/N with 0 <= I < N, e.g. --shard 0/4")
    return index, total


def scene_shard(scene: SceneRef, total: int) -> int:
    """The shard (0..total-1) of ``scene``: sha1 of ``item_id + "/" + asset_key`` mod ``total``."""
    digest = hashlib.sha1(f"{scene.item_id}/{scene.asset_key}".encode()).hexdigest()
    return int(digest, 16) % total


def split_shard(scenes: Iterable[SceneRef], shard: tuple[int, int] | None) -> Iterator[SceneRef]:
    """Keep the scenes of shard ``(I, N)`` (all of them when ``shard`` is None)."""
    if shard is None:
        return iter(scenes)
    index, total = shard
    if total < 1 or not 0 <= index < total:
        raise InputError(f"shard {index}/{total} is invalid; use I/N with 0 <= I < N, e.g. --shard 0/4")
    return (scene for scene in scenes if scene_shard(scene, total) == index)
