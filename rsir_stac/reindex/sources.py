"""Re-reading tiles from their source rasters: a few scenes kept open (least recently used
closed), a raster that is no longer the one ingested refused, and a source or tile that
cannot be read reported instead of stopping the run."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rsir_stac.errors import RasterError, RsirError, StoreError
from rsir_stac.reindex.plan import _Grid, _ingest_options, _SourceKey, _Todo
from rsir_stac.reindex.report import ReindexEvent, ReindexReport, _tile_failed
from rsir_stac.reindex.writer import _Writer

log = logging.getLogger(__name__)


#: Source rasters kept open between pages (least recently used are closed).
OPEN_SOURCES = 8


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


class _Sources:
    """Open scenes keyed by :class:`_SourceKey` (at most :data:`OPEN_SOURCES`),
    each with its grid -> tile reference map, and the sources that failed."""

    def __init__(self) -> None:
        self._open: OrderedDict[_SourceKey, tuple[Any, dict]] = OrderedDict()
        self.failed: dict[str, dict[str, Any]] = {}

    def get(self, key: _SourceKey) -> tuple[Any, dict]:
        """``(reader, {grid: TileRef})``; raises what opening the scene raises."""
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        from rsir_stac.tiling import SceneReader

        # the parameters of rsir_stac.thumbnails.read_tile: the tile as ingest read it
        reader = SceneReader.open(key.href, bands=key.bands, target_gsd=key.gsd, tile_size=key.tile_size,
                                  stride=key.stride, edge=key.edge, min_valid=0.0, nodata=key.nodata,
                                  hrefs=key.band_hrefs)
        try:
            refs = {_Grid(r.grid.col_off, r.grid.row_off, r.grid.width, r.grid.height): r for r in reader.windows()}
        except BaseException:
            reader.close()
            raise
        self._open[key] = (reader, refs)
        while len(self._open) > OPEN_SOURCES:
            _, (old, _) = self._open.popitem(last=False)
            old.close()
        return reader, refs

    def close(self) -> None:
        while self._open:
            _, (reader, _) = self._open.popitem()
            reader.close()


def _source_failed(key: _SourceKey, tiles: list[_Todo], err: BaseException, sources: _Sources,
                   report: ReindexReport, emit: Callable[[ReindexEvent], None]) -> None:
    entry = sources.failed.get(key.href)
    if entry is None:
        msg = str(err) if isinstance(err, RsirError) else (
            f"{key.href}: unexpected {type(err).__name__} while opening ({_one_line(err)}); "
            "run with -v for the traceback")
        entry = {"href": key.href, "stored_href": tiles[0].stored_href or key.href,
                 "item": tiles[0].payload.get("item_id", ""), "error": " ".join(msg.split()),
                 "tiles": 0, "ingest_options": _ingest_options(key, tiles[0].payload)}
        sources.failed[key.href] = entry
        report.sources_failed.append(entry)
        log.info("source %s cannot be read: %s (listed in the report)", key.href, entry["error"])
        emit(ReindexEvent("source_failed", href=key.href))
    entry["tiles"] += len(tiles)
    emit(ReindexEvent("points", n=len(tiles)))


def _changed_since_ingest(href: str, tiles: list[_Todo], refs: dict) -> str | None:
    """Why the raster now at ``href`` is not the one the tiles were ingested from (its CRS, or
    where a tile's grid window starts, differs from the stored payload), or None.  Compared on every tile of the group whose window still exists."""
    from rsir_stac.tiling.footprints import FOOTPRINT_TOLERANCE_DEG, corner_shift_deg

    for t in tiles:
        ref = refs.get(t.grid)
        if ref is None:
            continue
        crs = t.payload.get("crs")
        if crs and not _same_crs(ref.crs, crs):
            why = f"its CRS is {ref.crs}, the index says {crs}"
        else:
            off = corner_shift_deg(t.payload, ref)
            if off is None:  # no stored corners (a point written by another tool): its bbox
                bbox = t.payload.get("bbox")
                try:
                    off = max(abs(float(a) - float(b)) for a, b in zip(bbox, ref.bbox)) if bbox else 0.0
                except (TypeError, ValueError):
                    off = 0.0
            if not off > FOOTPRINT_TOLERANCE_DEG:
                continue
            why = f"tile {t.grid} lies {off:.2g} degrees from where it was ingested"
        return (f"{href} is not the raster that was ingested ({why}); nothing of it was reindexed: put the "
                "ingested file back and re-run the same command, or ingest the item again with the new model")
    return None


def _same_crs(a: Any, b: Any) -> bool:
    """Whether two CRS descriptions (EPSG codes, WKT, PROJ strings) name the same CRS
    (rasterio's equality when the spellings differ; unparseable ones count as the same)."""
    if str(a) == str(b):
        return True
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(str(a)) == CRS.from_user_input(str(b))
    except CRSError:
        return True


def _read_group(key: _SourceKey, tiles: list[_Todo], sources: _Sources, writer: _Writer, report: ReindexReport,
                emit: Callable[[ReindexEvent], None]) -> None:
    """Read the tiles of one scene and hand them to the writer."""
    from rsir_stac.tiling import gdal_env

    if key.href in sources.failed:
        _source_failed(key, tiles, RuntimeError(), sources, report, emit)
        return
    try:
        reader, refs = sources.get(key)
    except StoreError:
        raise
    except Exception as err:  # noqa: BLE001 - a moved or broken source must not stop the run
        if not isinstance(err, RsirError):
            log.info("traceback of %s", key.href, exc_info=err)
        _source_failed(key, tiles, err, sources, report, emit)
        return
    changed = _changed_since_ingest(key.href, tiles, refs)
    if changed is not None:  # another raster at the same path: nothing of it is written
        _source_failed(key, tiles, RasterError(changed), sources, report, emit)
        return
    off_earth = {_Grid(g.col_off, g.row_off, g.width, g.height) for g in reader.off_earth}
    left_out = 0
    with gdal_env():
        for t in tiles:
            ref = refs.get(t.grid)
            tile = None
            if ref is None and t.grid in off_earth:
                left_out += 1
            elif ref is None:
                _tile_failed(report, f"tile {t.grid} of {key.href} is not in the raster any more (the file "
                                     "changed since ingest); re-ingest the item with the new model")
            else:
                try:
                    tile = reader.read(ref)
                except Exception as err:  # noqa: BLE001 - one bad window must not stop the run
                    _tile_failed(report, str(err) if isinstance(err, RsirError) else
                                 f"{key.href}: tile {t.grid}: unexpected {type(err).__name__} "
                                 f"({_one_line(err)})")
                else:
                    if tile is None:
                        _tile_failed(report, f"tile {t.grid} of {key.href} has no valid pixels any more "
                                             "(the file changed since ingest); re-ingest the item")
            if tile is None:
                emit(ReindexEvent("points", n=1))
                continue
            writer.add(t.new_id, tile.pixels, with_footprint(t.payload, tile.ref))
    if left_out:
        report.points_left_out += left_out
        report.left_out.append(f"{key.href}: {left_out} tile(s) lie where its CRS maps no place on the Earth (wholly "
                               "past its projection's curved edge, or beyond a geostationary disk): this version does "
                               "not index them, so they are left out of the new index")


def with_footprint(payload: dict[str, Any], ref: Any) -> dict[str, Any]:
    """``payload`` with the footprint of ``ref`` (:class:`~rsir_stac.tiling.scene.TileRef`) as this
    version reads the tile: ``bbox``, ``location`` and ``outline`` (removed when it has none), so that a
    reindex also brings the footprints of an index written by an earlier version up to date (a MODIS
    sinusoidal edge tile's across 180, the thirty-third and thirty-fourth sessions); ``corners`` stay,
    as the window's."""
    out = {**payload, "bbox": list(ref.bbox), "location": {"lon": ref.centroid[0], "lat": ref.centroid[1]}}
    if ref.outline:
        out["outline"] = [[lon, lat] for lon, lat in ref.outline]
    else:
        out.pop("outline", None)
    return out
