"""The sources of an ingest listed up front: every source resolved to scenes before any
pixel is read (errors here abort the run), duplicates kept once, this worker's shard kept."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from rsir_stac.errors import RsirError
from rsir_stac.ingest.options import IngestOptions
from rsir_stac.ingest.report import IngestReport

log = logging.getLogger(__name__)


def list_scenes(sources: Sequence[str], options: IngestOptions, report: IngestReport,
                on_item_error: Callable[[RsirError], None]) -> list:
    """Resolve every source to scenes up front (errors here abort the run).

    A scene listed twice (the same item and asset at the same href: a file
    named twice, a folder and a file in it) is kept once.  Two *different*
    scenes with the same identity (collection, item id, asset) would share
    point ids, so the second is reported as a failed item instead of silently
    overwriting the first.
    """
    from rsir_stac.errors import StacError
    from rsir_stac.stac import iter_scenes
    from rsir_stac.stac.shard import split_shard

    listed = iter_scenes(list(sources), asset=options.asset, bands=options.bands, on_error=on_item_error,
                         collection=options.collection, datetime=options.datetime)
    seen: dict[tuple, str] = {}
    scenes = []
    for scene in listed:
        key = (scene.collection, scene.item_id, scene.asset_key)
        first = seen.get(key)
        if first is None:
            seen[key] = scene.href
            scenes.append(scene)
        elif _same_source(first, scene.href):
            log.info("item %s is listed twice; ingesting it once", scene.item_id)
        else:
            where = f" of collection {scene.collection}" if scene.collection else ""
            err = StacError(
                f"item {scene.item_id}{where} is listed twice with different rasters ({first} and {scene.href}); "
                "item ids must be unique within a collection: fix the catalogue (only the first was ingested)")
            err.item_id = scene.item_id  # type: ignore[attr-defined]
            on_item_error(err)
    bare = [s.item_id for s in scenes if not s.from_stac]
    if options.asset and bare:  # a bare raster has one asset: the option cannot mean anything for it
        log.warning("--asset %s applies to STAC items only; %d bare raster(s) (e.g. %s) were read as they are",
                    options.asset, len(bare), bare[0])
    return list(split_shard(scenes, options.shard))


def _same_source(a: str, b: str) -> bool:
    """Two hrefs naming the same raster (equal, or local paths resolving to one file)."""
    if a == b:
        return True
    if "://" in a or "://" in b or a.startswith("/vsi") or b.startswith("/vsi"):
        return False
    return os.path.realpath(a) == os.path.realpath(b)
