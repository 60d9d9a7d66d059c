"""Unlabelled tiles of a user's catalogue, read the way ``ingest`` reads them.

Sources are what :func:`rsir_stac.ingest.ingest` takes (STAC documents,
GeoTIFF/COG files or URLs, folders of them) or *image folders* (PNG/JPEG/WebP
or TIFF files without georeferencing, any nesting; sub-folder names are never
read as labels).  Scenes go through the same code as ingest: the scene list
(:func:`rsir_stac.stac.iter_scenes`), the GSD rule (the model's GSD, or the
scene's own when that is more than ``max_upsample`` times coarser; ``gsd``
forces one) and :class:`rsir_stac.tiling.SceneReader` (bands, stretch, masks,
edges).  Every tile keeps where it lies on the ground (its centre as an
Earth-centred x, y, z in metres, so distances between tiles of different
scenes and CRSs are plain Euclidean chords), its scene and acquisition time,
which is all the triplet miners of :mod:`rsir_stac.model.pairs` need.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsir_stac.errors import DatasetError, InputError, RsirError

log = logging.getLogger(__name__)

#: Effective GSDs of one run may differ by at most this factor without ``gsd``.
GSD_TOLERANCE = 1.25
#: WGS84 semi-axes (metres), for the Earth-centred coordinates of tile centres.
_A, _B = 6378137.0, 6356752.314245


@dataclass
class UnlabelledTiles:
    """Tiles and where they are (arrays of length N, one row per tile).

    ``pos`` is N×3 Earth-centred metres (NaN for images without
    georeference); ``scene`` the index into ``scenes``; ``time`` epoch seconds
    (NaN when unknown); ``side_m`` the tile's side on the ground in metres
    (NaN for images); ``gsd`` the tiles' ground sample distance in metres
    (None for image folders only).
    """

    pixels: list[np.ndarray]
    pos: np.ndarray
    scene: np.ndarray
    time: np.ndarray
    side_m: np.ndarray
    scenes: list[str] = field(default_factory=list)
    gsd: float | None = None
    sources: list[dict] = field(default_factory=list)
    skipped: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def georeferenced(self) -> np.ndarray:
        """Boolean mask of the tiles that have a ground position."""
        return np.isfinite(self.pos).all(1)

    def subset(self, ix: np.ndarray) -> UnlabelledTiles:
        ix = np.asarray(ix, dtype=np.int64)
        return UnlabelledTiles([self.pixels[i] for i in ix.tolist()], self.pos[ix], self.scene[ix], self.time[ix],
                               self.side_m[ix], self.scenes, self.gsd, self.sources, self.skipped)


def ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """WGS84 lon/lat (degrees) on the ellipsoid → N×3 Earth-centred x, y, z (metres)."""
    lon, lat = np.radians(np.asarray(lon, float)), np.radians(np.asarray(lat, float))
    e2 = 1 - (_B / _A) ** 2
    n = _A / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    return np.stack([n * np.cos(lat) * np.cos(lon), n * np.cos(lat) * np.sin(lon), n * (1 - e2) * np.sin(lat)], 1)


# ------------------------------------------------------------------ source kinds


def _georeferenced(path: Path) -> bool:
    from rasterio.errors import NotGeoreferencedWarning

    from rsir_stac.tiling.sources import open_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_dataset(str(path)) as ds:  # with its sidecars (a world file, .aux.xml), as ingest reads it
                return ds.crs is not None and not ds.transform.is_identity
    except Exception:  # noqa: BLE001 - unreadable: let the scene reader report it
        return True


def image_files(source: str) -> list[Path] | None:
    """The image files of ``source`` when it is an image folder (or one plain
    image), else None (a STAC document, a georeferenced raster, a URL, or a
    folder holding a catalogue or georeferenced rasters)."""
    from rsir_stac.model.data import IMAGE_SUFFIXES

    if "://" in source:
        return None
    p = Path(source)
    rasters = (".tif", ".tiff", ".jp2", ".j2k")  # may be georeferenced scenes (Sentinel-2 ships JPEG 2000)
    if p.is_file():
        if p.suffix.lower() in IMAGE_SUFFIXES and p.suffix.lower() not in rasters:
            return [p]
        if p.suffix.lower() in rasters and not _georeferenced(p):
            return [p]
        return None
    if not p.is_dir() or any((p / n).is_file() for n in ("catalog.json", "collection.json")):
        return None
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(p).parts))
    tiffs = [f for f in files if f.suffix.lower() in rasters]
    if not files or (len(tiffs) == len(files) and _georeferenced(tiffs[0])):
        return None  # a folder of GeoTIFF scenes (or nothing usable): ingest's rules and errors
    from rsir_stac.stac import warn_linked_folders

    warn_linked_folders(p, what="train --unlabelled")
    return files


# --------------------------------------------------------------------- collect


@dataclass
class _SceneWindows:
    scene: object
    gsd_used: float | None
    gsd: float
    refs: list
    native_gsd: float = math.nan
    grid: tuple[int, int] = (0, 0)  # width and height in pixels at ``gsd``


#: A scene enlarged more than this many times (``--gsd`` much finer than its own GSD) is said:
#: its tiles are a few of its pixels blown up, and its windows crowd out the other scenes'.
#: The default recipe trains on images downscaled 1-8x (:data:`rsir_stac.gsd.MAX_SMALL_SCENE_UPSAMPLE`).
MAX_ENLARGEMENT = 8.0


def _list_windows(scenes, bundle, *, gsd, bands, stride, tile_size, min_valid, max_upsample, native_gsd,
                  failed: list[str]):
    """Open every scene (headers only) with ingest's GSD rule; list its windows.

    A scene that cannot be opened is skipped and its one-line error appended
    to ``failed`` (as ingest skips a failing item)."""
    from rsir_stac.gsd import open_scene
    from rsir_stac.ingest.options import IngestOptions

    opts = IngestOptions(bands=bands, gsd=gsd, min_valid=min_valid, max_upsample=max_upsample,
                         native_gsd=native_gsd)
    target = None if native_gsd else (gsd or bundle.gsd)
    out = []
    seen = _FirstOnly()
    ingest_log = logging.getLogger("rsir_stac.gsd")
    ingest_log.addFilter(seen)  # ingest's "tiling at the native GSD" warning: once, not once per scene
    try:
        for scene in scenes:
            try:
                # square pixels (no old tiling to keep); one GSD for all (no finer fallback for small scenes)
                reader, used, _ = open_scene(scene, opts, tile_size, stride, target, fine_fallback=False)
                with reader:
                    out.append(_SceneWindows(scene, used, reader.gsd, reader.windows(), reader.native_gsd,
                                             (reader.grid_width, reader.grid_height)))
            except RsirError as err:
                log.warning("skipping %s: %s", scene.item_id, err)
                failed.append(str(err))
    finally:
        ingest_log.removeFilter(seen)
    if seen.count > 1:
        log.warning("... and %d more scenes tiled at their native GSD", seen.count - 1)
    return out


class _FirstOnly(logging.Filter):
    """Passes the first warning about native GSD tiling, counts the others."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "native GSD" not in record.getMessage():
            return True
        self.count += 1
        return self.count == 1


def _check_gsds(listed: list[_SceneWindows], gsd: float | None) -> float | None:
    if not listed:
        return None
    gsds = [w.gsd for w in listed]
    lo, hi = min(gsds), max(gsds)
    if gsd is None and hi > lo * GSD_TOLERANCE:
        a = next(w for w in listed if w.gsd == lo)
        b = next(w for w in listed if w.gsd == hi)
        raise InputError(
            f"the sources mix ground sample distances: {a.scene.item_id} is tiled at {lo:.3g} m and "
            f"{b.scene.item_id} at {hi:.3g} m; pass --gsd M to read every scene at one GSD, or adapt on "
            "each GSD separately")
    return float(np.median(gsds))


def collect_tiles(
    sources: Sequence[str],
    bundle,
    *,
    gsd: float | None = None,
    bands: tuple[int, int, int] | None = None,
    asset: str | None = None,
    stride: int | None = None,
    min_valid: float = 0.5,
    max_upsample: float = 2.0,
    native_gsd: bool = False,
    max_tiles: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> UnlabelledTiles:
    """Read the tiles of ``sources`` with the bundle's tile size and ingest's rules.

    ``stride`` is in target pixels (default: half the tile size, so neighbours
    overlap).  At most ``max_tiles`` tiles are read, drawn evenly at random
    (``seed``) over every window before any pixel is read.  ``progress(done,
    total)`` is called as tiles are read.

    Raises InputError for GSDs that differ by more than
    :data:`GSD_TOLERANCE` without ``gsd``, DatasetError when the sources
    hold no tiles, and the scene errors of ingest (SourceNotFoundError,
    StacError, RasterError) for bad sources.
    """
    from rsir_stac.model.data import load_images
    from rsir_stac.errors import StacError
    from rsir_stac.stac import iter_scenes

    if not sources:
        raise DatasetError("no sources given; pass STAC documents, GeoTIFF/COG files or an image folder")
    tile_size = bundle.tile_size
    stride = stride or max(1, tile_size // 2)
    raster_sources, images, described = _split_sources(sources)
    failed: list[str] = []

    def on_error(err: RsirError) -> None:
        failed.append(str(err))

    try:
        scenes = list(iter_scenes(raster_sources, asset=asset, bands=bands, on_error=on_error)) if raster_sources else []
    except StacError as err:  # a folder with nothing ingest reads: images are a source here too
        if "is a folder with no catalog.json" not in str(err):
            raise
        raise StacError(str(err).split("; pass a STAC", 1)[0].replace(
            "no catalog.json, collection.json or .tif files",
            "no images (PNG, JPEG, WebP, TIFF), catalog.json, collection.json or GeoTIFF scenes")
            + "; pass a folder of images, a STAC document or GeoTIFF/COG scenes") from None
    listed = _list_windows(scenes, bundle, gsd=gsd, bands=bands, stride=stride, tile_size=tile_size,
                           min_valid=min_valid, max_upsample=max_upsample, native_gsd=native_gsd, failed=failed)
    run_gsd = _check_gsds(listed, gsd)
    enlarged = _warn_enlarged(listed)
    slots, n_windows = _draw_slots(sources, listed, len(images), failed, max_tiles, seed)
    total = len(slots)
    read = _read_scene_tiles(listed, slots, bands=bands, tile_size=tile_size, stride=stride, min_valid=min_valid,
                             failed=failed, progress=progress)
    tileless = _warn_tileless(listed, read.by_scene, read.scene_ix, max_tiles, n_windows, enlarged)
    chosen = [i for s, i in slots if s < 0]
    # every unreadable image named at once, with the advice labelled training gives
    image_pixels = load_images([images[i][1] for i in chosen],
                               progress=None if progress is None else (lambda n: progress(read.done + n, total)))
    return _assemble(listed, read, image_pixels, [images[i][1].name for i in chosen], run_gsd=run_gsd,
                     described=described,
                     skipped={"empty_tiles": read.empty, "failed": failed[:20], "n_failed": len(failed),
                              "scenes_without_tiles": tileless, "enlarged_scenes": enlarged})


def _split_sources(sources: Sequence[str]) -> tuple[list[str], list[tuple[int, Path]], list[dict]]:
    """``(raster_sources, images, described)``: the sources read as scenes (STAC documents,
    georeferenced rasters), the image files of image sources as ``(source number, path)``,
    and one description per source (``{"source", "kind": "scenes"|"images"[, "images": n, "path": absolute]}``)."""
    images: list[tuple[int, Path]] = []
    raster_sources: list[str] = []
    described: list[dict] = []
    for s in sources:
        files = image_files(os.fspath(s))
        if files is None:
            raster_sources.append(os.fspath(s))
            described.append({"source": os.fspath(s), "kind": "scenes"})
        else:
            images.extend((len(described), f) for f in files)
            described.append({"source": os.fspath(s), "kind": "images", "images": len(files),
                              "path": os.path.abspath(os.fspath(s))})  # evaluate counts the images adapted on
    return raster_sources, images, described


def _draw_slots(sources: Sequence[str], listed: list[_SceneWindows], n_images: int, failed: list[str],
                max_tiles: int | None, seed: int) -> tuple[list[tuple[int, int]], int]:
    """``(slots, n_windows)``: the tiles to read, ``(scene, window)`` for scene windows and
    ``(-1, image)`` for images, drawn evenly at random (``seed``) down to ``max_tiles``, and how
    many there were before.  Raises DatasetError when the sources hold no window and no image."""
    slots = [(s, r) for s, w in enumerate(listed) for r in range(len(w.refs))] + [(-1, i) for i in range(n_images)]
    n_windows = len(slots)
    if not slots:
        why = f" ({len(failed)} failed, first: {failed[0]})" if failed else " (no raster items, no images)"
        raise DatasetError(f"the sources {', '.join(map(str, sources))} hold no tiles{why}; "
                           "pass STAC documents, GeoTIFF/COG files or a folder of images")
    rng = np.random.default_rng(seed)
    if max_tiles and len(slots) > max_tiles:
        keep = np.sort(rng.choice(len(slots), size=max_tiles, replace=False))
        slots = [slots[i] for i in keep.tolist()]
    return slots, n_windows


@dataclass(frozen=True)
class _SceneTiles:
    """The tiles read from scenes, one entry per tile: ``pixels``, centre ``lonlat`` (degrees),
    scene number, time (epoch seconds, NaN when undated) and side on the ground (metres); with
    the windows without a tile (``empty``), the drawn windows per scene (``by_scene``, images
    under -1) and how many windows were read (``done``)."""

    pixels: list[np.ndarray]
    lonlat: list
    scene_ix: list[int]
    times: list[float]
    sides: list[float]
    empty: int
    by_scene: dict[int, list[int]]
    done: int


def _read_scene_tiles(listed: list[_SceneWindows], slots: list[tuple[int, int]], *, bands, tile_size: int,
                      stride: int, min_valid: float, failed: list[str],
                      progress: Callable[[int, int], None] | None) -> _SceneTiles:
    """Read the drawn scene windows of ``slots``, each scene opened once; a window that cannot
    be read is appended to ``failed`` and counted empty.  ``progress(done, len(slots))``."""
    from rsir_stac.tiling import SceneReader, gdal_env

    pixels, lonlat, scene_ix, times, sides = [], [], [], [], []
    empty = 0
    total = len(slots)
    by_scene: dict[int, list[int]] = {}
    for s, r in slots:
        by_scene.setdefault(s, []).append(r)
    done = 0
    for s, rows in by_scene.items():
        if s < 0:
            continue
        w = listed[s]
        kw = dict(bands=w.scene.bands or bands, tile_size=tile_size, stride=stride, min_valid=min_valid)
        if w.scene.band_hrefs:  # a scene composed from three single-band assets
            kw.update(hrefs=w.scene.band_hrefs, nodata=w.scene.nodata)
        t = w.scene.datetime.timestamp() if w.scene.datetime else math.nan
        with SceneReader.open(w.scene.href, target_gsd=w.gsd_used, **kw) as reader, gdal_env():
            for r in rows:
                ref = w.refs[r]
                try:
                    tile = reader.read(ref)
                except RsirError as err:
                    failed.append(str(err))
                    tile = None
                done += 1
                if progress:
                    progress(done, total)
                if tile is None:
                    empty += 1
                    continue
                pixels.append(tile.pixels)
                lonlat.append(ref.centroid)
                scene_ix.append(s)
                times.append(t)
                sides.append(w.gsd * tile_size)
    return _SceneTiles(pixels, lonlat, scene_ix, times, sides, empty, by_scene, done)


def _assemble(listed: list[_SceneWindows], read: _SceneTiles, image_pixels: list[np.ndarray],
              image_names: list[str], *, run_gsd: float | None, described: list[dict],
              skipped: dict) -> UnlabelledTiles:
    """The scene tiles, then the images (each its own "scene", no position or time), as one
    :class:`UnlabelledTiles`."""
    pixels = read.pixels + list(image_pixels)
    n_geo = len(read.pixels)
    n_img = len(pixels) - n_geo
    pos = np.full((len(pixels), 3), np.nan)
    if n_geo:
        ll = np.asarray(read.lonlat, dtype=float)
        pos[:n_geo] = ecef(ll[:, 0], ll[:, 1])
    scene_arr = np.concatenate([np.asarray(read.scene_ix, dtype=np.int64),
                                len(listed) + np.arange(n_img, dtype=np.int64)])  # each image its own "scene"
    return UnlabelledTiles(
        pixels=pixels, pos=pos, scene=scene_arr,
        time=np.concatenate([np.asarray(read.times, dtype=float), np.full(n_img, np.nan)]),
        side_m=np.concatenate([np.asarray(read.sides, dtype=float), np.full(n_img, np.nan)]),
        scenes=[w.scene.item_id for w in listed] + image_names,
        gsd=run_gsd, sources=described, skipped=skipped,
    )


def _warn_enlarged(listed: list[_SceneWindows]) -> dict[str, float]:
    """Warn about scenes read at a GSD more than :data:`MAX_ENLARGEMENT` times finer than their
    own (``--gsd``); returns ``{scene: enlargement}``."""
    out = {w.scene.item_id: round(w.native_gsd / w.gsd, 1) for w in listed
           if w.gsd_used is not None and w.native_gsd > w.gsd * MAX_ENLARGEMENT}
    total = sum(len(w.refs) for w in listed)
    for w in listed:
        if w.scene.item_id in out:
            log.warning("%s: its native GSD %.3g m is read at %.3g m, enlarged %.0fx: its tiles are a few of its "
                        "pixels blown up, and its %d windows are %.3g%% of all sources' (the tiles drawn come mostly "
                        "from it); pass a --gsd nearer %.3g m, or adapt on it separately", w.scene.item_id,
                        w.native_gsd, w.gsd, w.native_gsd / w.gsd, len(w.refs), 100.0 * len(w.refs) / max(1, total),
                        w.native_gsd)
    return out


def _warn_tileless(listed: list[_SceneWindows], drawn: dict[int, list[int]], kept: list[int],
                   max_tiles: int | None, n_windows: int, enlarged: dict[str, float]) -> list[str]:
    """Warn, naming them, about scenes that gave no tile (none of their windows drawn under
    ``max_tiles``, or every one drawn mostly empty or unreadable); returns their names."""
    have = set(kept)
    why, small = [], []
    for s, w in enumerate(listed):
        if s in have:
            continue
        n = len(drawn.get(s, []))
        side = min(w.grid) if w.grid != (0, 0) else None
        tile = max((r.grid.width for r in w.refs), default=0) if w.refs else None
        if side is not None and tile and side < tile:  # its one padded window is mostly padding, not nodata
            small.append(w.scene.item_id)
            why.append((w.scene.item_id, f"{w.grid[0]}x{w.grid[1]} px at {w.gsd:.3g} m is smaller than one {tile} px "
                                         "tile, so its one padded tile is mostly empty"))
        elif not w.refs:
            why.append((w.scene.item_id, "no window of a whole tile fits in it"))
        elif n == 0:
            why.append((w.scene.item_id, f"none of its {len(w.refs)} windows was among the --max-tiles "
                                         f"{max_tiles} drawn from {n_windows}"))
        else:
            why.append((w.scene.item_id, f"its {n} tiles drawn are mostly empty (nodata) or unreadable"))
    if why:
        crowding = [n for n in enlarged if n not in {name for name, _ in why}]
        fix = (f"leave out {', '.join(crowding)} (enlarged, its windows crowd out the others) or pass a --gsd "
               "nearer its own, raise --max-tiles, or adapt on each GSD separately" if crowding else
               "raise --max-tiles, or check their nodata and --bands")
        if small:
            fix = ("a scene smaller than one tile teaches nothing: leave it out, or read it with more pixels (a finer "
                   "--gsd)" + ("" if len(small) == len(why) else f"; for the others: {fix}"))
        log.warning("%d of %d scenes gave no tiles, so adaptation does not see them: %s; %s", len(why), len(listed),
                    "; ".join(f"{name} ({reason})" for name, reason in why[:5])
                    + (f"; and {len(why) - 5} more" if len(why) > 5 else ""), fix)
    return [name for name, _ in why]
