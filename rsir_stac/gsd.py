"""The GSD and pixel grid a scene is tiled at: ingest's choice, also used by adaptation.

At the model's GSD (``--gsd``, else the bundle's) unless the scene is much coarser
(``max_upsample``; a 30 m scene is not blown up to 0.3 m: its own GSD, unless it is then
smaller than one tile and at most :data:`MAX_SMALL_SCENE_UPSAMPLE` times coarser) or, finer,
smaller than one tile at it so that no tile would be kept (the GSD at which it is one tile
across); at its
own GSD in square ground pixels (:func:`square_pixels`: a lon/lat raster away from the
equator has pixels taller than wide).  Per-band scenes (three files) open as one raster.
"""

from __future__ import annotations

import logging

from rsir_stac.errors import NotGeoreferencedError, RasterError

log = logging.getLogger(__name__)


#: A scene smaller than one tile at its own GSD is tiled at the model's instead when that
#: upsamples it at most this many times (the default recipe trains on images downscaled
#: 1-8x); coarser ones keep their own GSD and are padded, or left out as mostly empty.
MAX_SMALL_SCENE_UPSAMPLE = 8.0


#: The GSDs (metres per pixel) ``--gsd`` takes: 1 mm (close-range drone work) to 100 km (coarser than
#: any imaging sensor).  A value outside is a unit slip (degrees for metres, centimetres) and would
#: plan a grid of 10**300 tiles or one pixel per scene.
MIN_GSD_M = 0.001
MAX_GSD_M = 100_000.0


#: Pixels whose ground width and height differ by more than this share (EPSG:4326 with
#: square degrees: 1/cos(latitude), 5 % from ~18 degrees N or S) are not tiled as they are at
#: a scene's own GSD: a square tile of them would be a stretched patch of ground (see
#: :func:`square_pixels`).  Below it, resampling would blur more than the stretch matters.
MAX_PIXEL_ANISOTROPY = 0.05


def reader_options(scene, options, tile_size, stride) -> dict:
    nodata = scene.nodata if scene.nodata is not None else getattr(options, "nodata", None)  # STAC's, else --nodata
    return dict(bands=scene.bands or options.bands, tile_size=tile_size, stride=stride, edge=options.edge,
                min_valid=options.min_valid, nodata=nodata, hrefs=scene.band_hrefs)


def open_reader(scene, gsd, kw):
    """``SceneReader.open`` of ``scene``; a composed scene whose files are on different grids
    fails naming the asset that differs and the fix; a raster without georeferencing whose STAC
    item gives it (``proj:`` fields) fails with the command that writes them into the file."""
    from rsir_stac.tiling import SceneReader
    from rsir_stac.tiling.stack import GRID_FIX, GridMismatchError

    try:
        return SceneReader.open(scene.href, target_gsd=gsd, **kw)
    except NotGeoreferencedError as err:
        from rsir_stac.stac.projection import georef_fix

        fix = georef_fix(scene.href, scene.item_id, getattr(scene, "proj", None), err.missing, err.shape)
        if fix is None:
            raise
        raise NotGeoreferencedError(fix, err.missing, err.shape) from err
    except GridMismatchError as err:
        keys = scene.asset_key.split(",")
        key = keys[err.index] if len(keys) == 3 else "?"
        raise RasterError(f"asset {key} ({scene.band_hrefs[err.index]}) is on another pixel grid than asset "
                          f"{keys[0]}: {key} is {err.detail}; {GRID_FIX}") from err


def open_scene(scene, options, tile_size, stride, gsd, *, fine_fallback: bool = True):
    """``(reader, gsd, legacy)``: a scene opened at the target GSD, or at its own GSD when
    that would upsample more than ``options.max_upsample`` times (a 30 m scene is not blown
    up to 0.3 m), in square pixels (:func:`square_pixels`, which gives ``legacy``); with
    ``fine_fallback``, a finer scene smaller than one tile at ``gsd`` is opened at the coarsest
    GSD that holds one (:func:`_coarsest_holding_a_tile`; adaptation, which needs one GSD, not)."""
    from rsir_stac.tiling import SceneReader

    kw = reader_options(scene, options, tile_size, stride)
    reader = open_reader(scene, gsd, kw)
    if gsd is None:
        return square_pixels(scene, reader, kw)
    if options.gsd is None and reader.native_gsd > gsd * options.max_upsample:
        native_fits = min(reader.width, reader.height) >= tile_size
        factor = reader.native_gsd / gsd
        if not native_fits and not _keeps_no_tile(reader, tile_size, options) \
                and factor <= MAX_SMALL_SCENE_UPSAMPLE:
            # at its own GSD the scene holds no whole tile, at the model's it holds one (whole, or padded and
            # keeping --min-valid), and its pixels grow
            # no more than the model's training downscaled its images (1-8x): keep the model's
            # ingest has --native-gsd; adaptation (train --unlabelled, no fine fallback) takes --gsd
            keep = "--native-gsd" if fine_fallback else f"--gsd {reader.native_gsd:.3g}"
            log.warning("%s: native GSD %.3g m is %.2gx coarser than the model's %.3g m, but smaller than one "
                        "tile at it; tiling at %.3g m (pass %s to keep its own)",
                        scene.item_id, reader.native_gsd, factor, gsd, gsd, keep)
            return reader, gsd, None
        native = reader.native_gsd
        reader.close()
        opened = square_pixels(scene, SceneReader.open(scene.href, target_gsd=None, **kw), kw)
        own = opened[1] if opened[1] is not None else native  # square pixels of the longer side, if not square
        if abs(own - native) > 0.005 * native:  # pixels not square: say how the two figures relate
            log.warning("%s: native GSD %.3g m (the geometric mean of its pixel sides) is much coarser than the "
                        "model's %.3g m; tiling at its own GSD in square pixels of its longer side, %.3g m (pass "
                        "--gsd to force a resolution)", scene.item_id, native, gsd, own)
        else:
            log.warning("%s: native GSD %.3g m is much coarser than the model's %.3g m; tiling at its own GSD, "
                        "%.3g m (pass --gsd to force a resolution)", scene.item_id, native, gsd, own)
        return opened
    if options.gsd is not None and reader.native_gsd > gsd * MAX_SMALL_SCENE_UPSAMPLE:
        factor = reader.native_gsd / gsd  # a forced --gsd far finer than the scene: say what it makes
        log.warning("%s: --gsd %.3g m enlarges its %.3g m pixels %.0fx (%dx%d px become %dx%d), beyond the 1-%gx "
                    "the model was trained on: its tiles are interpolated pixels, near copies of each other; leave "
                    "--gsd out (or pass --native-gsd) to tile it at its own GSD", scene.item_id, gsd,
                    reader.native_gsd, factor, reader.width, reader.height, reader.grid_width, reader.grid_height,
                    MAX_SMALL_SCENE_UPSAMPLE)
    if options.gsd is None and fine_fallback and _keeps_no_tile(reader, tile_size, options):
        coarsest = _coarsest_holding_a_tile(reader, gsd, tile_size, options)
        if coarsest is not None:
            log.warning("%s: %dx%d px at the model's %.3g m is smaller than one %d px tile; tiling at %.4g m, where "
                        "it is one tile across (its own GSD is %.3g m; pass --gsd to force a resolution)",
                        scene.item_id, reader.grid_width, reader.grid_height, gsd, tile_size, coarsest,
                        reader.native_gsd)
            reader.close()
            return open_reader(scene, coarsest, kw), coarsest, None
    return reader, gsd, None


def _keeps_no_tile(reader, tile_size: int, options) -> bool:
    """Whether a scene read at its grid would give no tile at all: smaller than one tile and either
    its padded tile below ``--min-valid`` or partial tiles dropped (``--edge drop``).  Only such a
    scene is tiled at another GSD (an index that holds tiles of it keeps them: same ids)."""
    gw, gh = reader.grid_width, reader.grid_height
    if min(gw, gh) >= tile_size:
        return False
    if getattr(options, "edge", "shift") == "drop":
        return True
    return min(1.0, gw / tile_size) * min(1.0, gh / tile_size) < float(getattr(options, "min_valid", 0.5))


def _coarsest_holding_a_tile(reader, gsd: float, tile_size: int, options=None) -> float | None:
    """For a scene finer than the model's ``gsd`` (metres) that is smaller than one tile at it (a
    drone mosaic for a model adapted to 30 m Landsat): the GSD at which it is one tile: its longer
    side spans exactly ``tile_size`` pixels when its one padded tile then keeps ``--min-valid``
    (the shorter side is at least that share of the longer), else its shorter side does (a long
    strip: a row of tiles).  Exactly: not a tile and a pixel or two, which the ``shift`` edge
    would cut into near-copies; to 6 significant digits as point ids record it.  That GSD may
    enlarge the scene's pixels, at most :data:`MAX_SMALL_SCENE_UPSAMPLE` times (the range the
    model is trained on); else None (tiled at ``gsd`` as asked)."""
    if min(reader.grid_width, reader.grid_height) >= tile_size or reader.native_gsd >= gsd:
        return None
    px, py = reader.pixel_size_m
    short_m, long_m = sorted((reader.width * px, reader.height * py))
    one_padded = (getattr(options, "edge", "shift") != "drop"
                  and short_m / long_m >= float(getattr(options, "min_valid", 0.5)))
    side_m = long_m if one_padded else short_m
    fit = float(f"{side_m / tile_size:.6g}")
    if side_m / fit < tile_size - 0.5:  # rounded up past the side: one step of the 6th digit down
        fit = float(f"{fit * (1 - 1e-6):.6g}")
    if fit * MAX_SMALL_SCENE_UPSAMPLE < reader.native_gsd:  # the scene too small even enlarged 8x
        return None
    return fit


def square_pixels(scene, reader, kw):
    """``(reader, gsd, legacy)`` for a scene tiled at its own GSD: as it is when its pixels are
    square on the ground (within :data:`MAX_PIXEL_ANISOTROPY`), else resampled to square
    pixels of the pixel's longer side (metres; the shorter one is shrunk, no detail is made
    up by enlarging the other), as ``--gsd`` would: a lon/lat raster with square degrees at
    47 N has pixels 1.47x taller than wide, and its tiles were embedded squashed by that much.  The GSD chosen is
    recorded with the tiles (their tiling key), so they are re-read the same way.
    ``legacy``: the first tile's grid as the scene was tiled before (its own pixels as
    they are), for :func:`_legacy_tiling`; None when the pixels are square."""
    from rsir_stac.tiling import SceneReader
    from rsir_stac.tiling.grid import grid_windows

    px, py = reader.pixel_size_m
    if max(px, py) <= min(px, py) * (1 + MAX_PIXEL_ANISOTROPY):
        return reader, None, None
    square = float(f"{max(px, py):.4g}")
    log.info("%s: pixels are %.3g x %.3g m on the ground (%s); tiling at square %.4g m pixels",
             scene.item_id, px, py, reader.crs, square)
    # the first window of the old grid alone (no footprints: the scene may hold many tiles)
    try:
        first = next(iter(grid_windows(reader.grid_width, reader.grid_height, reader.tile_size, reader.stride,
                                       reader.edge)), None)
    finally:
        reader.close()
    return SceneReader.open(scene.href, target_gsd=square, **kw), square, first


__all__ = ["MAX_PIXEL_ANISOTROPY", "MAX_SMALL_SCENE_UPSAMPLE", "open_reader", "open_scene", "reader_options",
           "square_pixels"]
