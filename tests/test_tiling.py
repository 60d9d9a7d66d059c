"""Tests for rsir_stac.tiling: grid maths, band choice, masks, stretch, GSD, footprints."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from rsir_stac.errors import ImageReadError, InputError, RasterError, SourceNotFoundError
from tests.conftest import write_raster
from rsir_stac.tiling import (
    PERCENTILES,
    PixelWindow,
    SceneReader,
    gdal_env,
    grid_windows,
    percentile_rule,
    read_image,
    select_bands,
)

# Fixtures without a geotransform, and affine's `*` deprecation inside rasterio, warn.
pytestmark = [
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]

W, H = 300, 200
UTM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 3300000.0)
GEO = Affine(0.0001, 0.0, -96.0, 0.0, -0.0001, 30.0)
MERC = Affine(10.0, 0.0, -10700000.0, 0.0, -10.0, 3500000.0)


def apply(transform, col: float, row: float) -> tuple[float, float]:
    """Pixel (col, row) to CRS (x, y) through an affine transform."""
    return (transform.a * col + transform.b * row + transform.c, transform.d * col + transform.e * row + transform.f)


def make_raster(
    path: Path,
    data: np.ndarray | None = None,
    *,
    count: int = 3,
    dtype: str = "uint8",
    crs: str | None = "EPSG:32615",
    transform=UTM,
    nodata: float | None = None,
    colorinterp: list[ColorInterp] | None = None,
    seed: int = 0,
    **extra,
) -> Path:
    """Write a small GeoTIFF (random data from a fixed seed unless given)."""
    if data is None:
        rng = np.random.default_rng(seed)
        high = 255 if dtype == "uint8" else 5000
        data = rng.integers(1, high, size=(count, H, W)).astype(dtype)
    return write_raster(path, data, crs=crs, transform=transform, nodata=nodata, colorinterp=colorinterp, **extra)


@pytest.fixture()
def rgb_utm(tmp_path: Path) -> Path:
    return make_raster(tmp_path / "rgb_utm.tif")


# ------------------------------------------------------------------------- grid


def test_grid_exact_fit_no_overlap():
    wins = grid_windows(300, 200, 100)
    assert len(wins) == 6
    assert wins[0] == PixelWindow(0, 0, 100, 100)
    assert wins[1] == PixelWindow(100, 0, 100, 100)  # row-major
    assert wins[-1] == PixelWindow(200, 100, 100, 100)


def test_grid_edge_modes_on_one_axis():
    cols = lambda edge: [w.col_off for w in grid_windows(250, 100, 100, edge=edge)]  # noqa: E731
    assert cols("shift") == [0, 100, 150]
    assert cols("drop") == [0, 100]
    assert cols("pad") == [0, 100, 200]


def test_grid_small_raster_gives_one_padded_tile():
    assert grid_windows(50, 30, 100) == [PixelWindow(0, 0, 100, 100)]
    assert grid_windows(50, 30, 100, edge="pad") == [PixelWindow(0, 0, 100, 100)]
    assert grid_windows(50, 30, 100, edge="drop") == []


def test_grid_overlapping_stride():
    wins = grid_windows(200, 100, 100, stride=50)
    assert [w.col_off for w in wins] == [0, 50, 100]
    assert len(wins) == 3


@pytest.mark.parametrize(
    "args",
    [(0, 10, 5), (10, 10, 0), (10, 10, 5, 0), (10, 10, 5, 5, "wrap"), (10.5, 10, 5), (True, 10, 5)],
)
def test_grid_rejects_bad_arguments(args):
    with pytest.raises(InputError):
        grid_windows(*args)


def _expected_count(length: int, tile: int, stride: int, edge: str) -> int:
    if edge == "drop":
        return 0 if length < tile else (length - tile) // stride + 1
    return 1 if length <= tile else math.ceil((length - tile) / stride) + 1


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    tile=st.integers(1, 64),
    data=st.data(),
    edge=st.sampled_from(["shift", "pad", "drop"]),
)
def test_grid_property(width, height, tile, data, edge):
    stride = data.draw(st.integers(1, tile))
    wins = grid_windows(width, height, tile, stride, edge)
    n_cols = _expected_count(width, tile, stride, edge)
    n_rows = _expected_count(height, tile, stride, edge)
    assert len(wins) == n_cols * n_rows
    assert all(w.width == tile and w.height == tile for w in wins)
    assert len(set(wins)) == len(wins)
    assert wins == sorted(wins, key=lambda w: (w.row_off, w.col_off))  # row-major
    covered = np.zeros((height, width), dtype=np.int32)
    for w in wins:
        assert w.col_off >= 0 and w.row_off >= 0
        assert w.col_off < width and w.row_off < height
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
        if edge == "drop" or (edge == "shift" and width >= tile):
            assert w.col_off + w.width <= width
        if edge == "drop" or (edge == "shift" and height >= tile):
            assert w.row_off + w.height <= height
    if edge in ("shift", "pad"):
        assert covered.min() >= 1


# ------------------------------------------------------------------------ bands


def _bands_of(tmp_path: Path, count: int, colorinterp=None, bands=None, **extra):
    path = make_raster(tmp_path / f"b{count}.tif", count=count, colorinterp=colorinterp, **extra)
    with rasterio.open(path) as ds:
        return select_bands(ds, bands)


def test_band_rules(tmp_path: Path):
    CI = ColorInterp
    assert _bands_of(tmp_path, 1) == (1, 1, 1)
    assert _bands_of(tmp_path, 3) == (1, 2, 3)
    assert _bands_of(tmp_path, 4, photometric="rgb", alpha="yes") == (1, 2, 3)
    assert _bands_of(tmp_path, 4, [CI.gray, CI.undefined, CI.undefined, CI.undefined]) == (1, 2, 3)
    assert _bands_of(tmp_path, 3, [CI.blue, CI.green, CI.red]) == (3, 2, 1)
    assert _bands_of(tmp_path, 5, [CI.undefined, CI.blue, CI.green, CI.red, CI.undefined]) == (4, 3, 2)
    assert _bands_of(tmp_path, 2, photometric="minisblack", alpha="yes") == (1, 1, 1)
    assert _bands_of(tmp_path, 6, bands=[4, 3, 2]) == (4, 3, 2)
    assert _bands_of(tmp_path, 6, bands=[5]) == (5, 5, 5)


@pytest.mark.parametrize("count", [2, 5, 6])
def test_ambiguous_band_count_asks_for_bands(tmp_path: Path, count: int):
    colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (count - 1)
    with pytest.raises(RasterError, match="--bands R,G,B") as info:
        _bands_of(tmp_path, count, colorinterp)
    assert "\n" not in str(info.value)
    # the reader raises the same at open
    path = make_raster(tmp_path / "amb.tif", count=count, colorinterp=colorinterp)
    with pytest.raises(RasterError, match="--bands"):
        SceneReader.open(path)
    with SceneReader.open(path, bands=(1, 2, 1)) as scene:
        assert scene.bands == (1, 2, 1)


def test_explicit_bands_validated(tmp_path: Path):
    with pytest.raises(RasterError, match="band 7 does not exist"):
        _bands_of(tmp_path, 3, bands=[7, 2, 1])
    with pytest.raises(InputError):
        _bands_of(tmp_path, 3, bands=[1, 2])


# ---------------------------------------------------------------------- opening


def test_open_checks(tmp_path: Path):
    with pytest.raises(SourceNotFoundError, match="missing.tif does not exist"):
        SceneReader.open(tmp_path / "missing.tif")
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    with pytest.raises(RasterError, match="not a raster") as info:
        SceneReader.open(text)
    assert "\n" not in str(info.value)
    nocrs = make_raster(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(RasterError, match="has no CRS") as info:
        SceneReader.open(nocrs)
    assert "nocrs.tif" in str(info.value) and "\n" not in str(info.value)
    noxform = make_raster(tmp_path / "noxform.tif", transform=None)
    with pytest.raises(RasterError, match="no geotransform"):
        SceneReader.open(noxform)
    with pytest.raises(RasterError, match="folder"):
        SceneReader.open(tmp_path)


def test_open_validates_options(rgb_utm: Path):
    for kwargs in ({"tile_size": 0}, {"stride": -1}, {"edge": "bogus"}, {"min_valid": 1.5}, {"target_gsd": 0}):
        with pytest.raises(InputError):
            SceneReader.open(rgb_utm, **kwargs)


def test_properties_and_windows_are_cheap(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=100) as scene:
        assert (scene.width, scene.height, scene.count, scene.dtype) == (W, H, 3, "uint8")
        assert scene.crs == "EPSG:32615"
        assert scene.native_gsd == pytest.approx(10.0)
        assert scene.gsd == pytest.approx(10.0)
        refs = scene.windows()
        assert len(refs) == 6 and scene.stats.windows == 6
        assert scene.stats.read == 0
        w, s, e, n = scene.bounds_lonlat
        for ref in refs:
            assert ref.gsd == pytest.approx(10.0) and ref.crs == "EPSG:32615"
            assert w - 1e-9 <= ref.bbox[0] <= ref.bbox[2] <= e + 1e-9
            assert s - 1e-9 <= ref.bbox[1] <= ref.bbox[3] <= n + 1e-9


# ------------------------------------------------------------------- footprints


def test_utm_footprint_matches_pyproj(rgb_utm: Path):
    to_lonlat = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    with SceneReader.open(rgb_utm, tile_size=100) as scene:
        ref = scene.windows()[4]  # second row, middle column
    assert ref.window == PixelWindow(100, 100, 100, 100)
    px = [(100, 100), (200, 100), (200, 200), (100, 200)]  # UL, UR, LR, LL (col, row)
    expected = [to_lonlat.transform(*apply(UTM, *p)) for p in px]
    for got, want in zip(ref.corners, expected):
        assert got == pytest.approx(want, abs=1e-9)
    lons, lats = zip(*expected)
    assert ref.bbox == pytest.approx((min(lons), min(lats), max(lons), max(lats)), abs=1e-7)
    with rasterio.open(rgb_utm) as ds:  # the right value: transform_bounds of the tile
        want = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *rasterio.windows.bounds(
            ref.window.to_window(), ds.transform), densify_pts=21)
    assert ref.bbox == pytest.approx(want, abs=1e-9)
    assert ref.centroid == pytest.approx(to_lonlat.transform(*apply(UTM, 150, 150)), abs=1e-9)
    ul, ur, lr, ll = ref.corners
    assert ul[1] > ll[1] and ur[0] > ul[0]  # north-up: UL is north of LL, UR east of UL


def test_geographic_footprint_and_gsd(tmp_path: Path):
    path = make_raster(tmp_path / "geo.tif", crs="EPSG:4326", transform=GEO)
    with SceneReader.open(path, tile_size=100) as scene:
        ref = scene.windows()[0]
        assert ref.corners[0] == pytest.approx((-96.0, 30.0))
        assert ref.corners[2] == pytest.approx((-96.0 + 100 * 0.0001, 30.0 - 100 * 0.0001))
        geod = Geod(ellps="WGS84")
        lat = 30.0 - H / 2 * 0.0001
        dx = geod.inv(-96.0, lat, -96.0 + 0.0001, lat)[2]
        dy = geod.inv(-96.0, lat, -96.0, lat - 0.0001)[2]
        assert scene.native_gsd == pytest.approx(math.sqrt(dx * dy), rel=1e-3)
        assert 9.0 < scene.native_gsd < 11.5
        assert scene.crs == "EPSG:4326"


def test_web_mercator_gsd_is_ground_metres(tmp_path: Path):
    path = make_raster(tmp_path / "merc.tif", crs="EPSG:3857", transform=MERC)
    with SceneReader.open(path, tile_size=100) as scene:
        lat = scene.windows()[0].centroid[1]
        assert scene.native_gsd == pytest.approx(10.0 * math.cos(math.radians(lat)), rel=0.01)
        assert len(list(scene.iter_tiles())) == 6


# ------------------------------------------------------------------- pixel reads


def test_uint8_tiles_equal_direct_read(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=100) as scene, rasterio.open(rgb_utm) as ds:
        tiles = list(scene.iter_tiles())
        assert len(tiles) == 6 and scene.stats.read == 6
        assert str(scene.scale) == "uint8 passthrough"
        for tile in tiles:
            w = tile.ref.window
            direct = ds.read(window=Window(w.col_off, w.row_off, w.width, w.height))
            assert tile.pixels.dtype == np.uint8 and tile.pixels.shape == (100, 100, 3)
            assert tile.pixels.flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(tile.pixels, direct.transpose(1, 2, 0))
            assert tile.valid_fraction == 1.0


def test_shift_edge_tiles_are_full_size_and_match(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=128) as scene, rasterio.open(rgb_utm) as ds:
        refs = scene.windows()
        assert [r.window.col_off for r in refs[:3]] == [0, 128, W - 128]
        assert {r.window.row_off for r in refs} == {0, H - 128}
        last = scene.read(refs[-1])
        w = last.ref.window
        direct = ds.read(window=Window(w.col_off, w.row_off, w.width, w.height))
        np.testing.assert_array_equal(last.pixels, direct.transpose(1, 2, 0))


def test_single_band_is_grey_replicated(tmp_path: Path):
    path = make_raster(tmp_path / "grey.tif", count=1)
    with SceneReader.open(path, tile_size=100) as scene:
        tile = next(scene.iter_tiles())
    assert np.array_equal(tile.pixels[..., 0], tile.pixels[..., 1])
    assert np.array_equal(tile.pixels[..., 0], tile.pixels[..., 2])


def test_uint16_percentile_stretch(tmp_path: Path):
    rng = np.random.default_rng(1)
    data = rng.integers(100, 4000, size=(3, H, W)).astype("uint16")
    data[1] += 2000
    path = make_raster(tmp_path / "u16.tif", data)
    lo = np.percentile(data.reshape(3, -1).astype(float), PERCENTILES[0], axis=1)
    hi = np.percentile(data.reshape(3, -1).astype(float), PERCENTILES[1], axis=1)
    with SceneReader.open(path, tile_size=100) as scene, rasterio.open(path) as ds:
        rule = scene.scale
        assert rule.kind == "percentile"
        assert rule.low == pytest.approx(tuple(lo)) and rule.high == pytest.approx(tuple(hi))
        assert rule.as_dict()["percentiles"] == [2.0, 98.0]
        probe = np.array([[[lo[0], hi[0], 0, 65535]]] * 3, dtype=np.float64)
        probe[1, 0, :2] = lo[1], hi[1]
        probe[2, 0, :2] = lo[2], hi[2]
        out = rule.apply(probe)
        assert out[:, 0, 0].tolist() == [0, 0, 0]  # p2 -> 0
        assert out[:, 0, 1].tolist() == [255, 255, 255]  # p98 -> 255
        assert out[:, 0, 2].tolist() == [0, 0, 0] and out[:, 0, 3].tolist() == [255, 255, 255]  # clipped
        tiles = list(scene.iter_tiles())
        assert scene.scale is rule  # computed once per scene
        for tile in tiles:
            w = tile.ref.window
            raw = ds.read(window=Window(w.col_off, w.row_off, w.width, w.height)).astype(float)
            want = np.clip(np.rint((raw - lo[:, None, None]) * 255.0 / (hi - lo)[:, None, None]), 0, 255)
            diff = np.abs(tile.pixels.astype(int) - want.transpose(1, 2, 0).astype(int))
            assert diff.max() <= 1  # rounding at .5 may differ by one level
    all_pixels = np.concatenate([t.pixels.reshape(-1, 3) for t in tiles])
    assert all_pixels.min() == 0 and all_pixels.max() == 255


def test_float_with_nan_is_masked(tmp_path: Path):
    rng = np.random.default_rng(2)
    data = rng.normal(0.2, 0.05, size=(3, H, W)).astype("float32")
    data[:, :, :150] = np.nan
    path = make_raster(tmp_path / "f32.tif", data, nodata=float("nan"))
    with SceneReader.open(path, tile_size=100, min_valid=0.4) as scene:
        tiles = list(scene.iter_tiles())
        assert scene.stats.skipped_empty == 2 and len(tiles) == 4
        middle = [t for t in tiles if t.ref.window.col_off == 100][0]
        assert middle.valid_fraction == pytest.approx(0.5)
        assert (middle.pixels[:, :50] == 0).all()


def test_mostly_nodata_tiles_are_skipped(tmp_path: Path):
    rng = np.random.default_rng(3)
    data = rng.integers(1, 255, size=(3, H, W)).astype("uint8")
    data[:, :, :160] = 0  # first column of tiles empty, second 60 % empty
    path = make_raster(tmp_path / "nodata.tif", data, nodata=0)
    with SceneReader.open(path, tile_size=100) as scene:
        tiles = list(scene.iter_tiles())
        assert scene.stats.skipped_empty == 4 and scene.stats.read == 2
        assert {t.ref.window.col_off for t in tiles} == {200}
    with SceneReader.open(path, tile_size=100, min_valid=0.3) as scene:
        tiles = list(scene.iter_tiles())
        assert scene.stats.read == 4
        partial = [t for t in tiles if t.ref.window.col_off == 100][0]
        assert partial.valid_fraction == pytest.approx(0.4)
        assert (partial.pixels[:, :60] == 0).all()


def test_all_nodata_scene_only_skips(tmp_path: Path):
    path = make_raster(tmp_path / "empty.tif", np.zeros((3, H, W), dtype="uint16"), nodata=0)
    with SceneReader.open(path, tile_size=100) as scene:
        assert list(scene.iter_tiles()) == []
        assert scene.stats.skipped_empty == 6 and scene.stats.failed == 0


def test_alpha_band_is_respected(tmp_path: Path):
    rng = np.random.default_rng(4)
    data = rng.integers(1, 255, size=(4, H, W)).astype("uint8")
    data[3] = 255
    data[3, :130, :] = 0  # top row of tiles transparent, 30 % of the second row
    path = make_raster(tmp_path / "rgba.tif", data, photometric="rgb", alpha="yes")
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
    with SceneReader.open(path, tile_size=100) as scene:
        assert scene.bands == (1, 2, 3)
        tiles = list(scene.iter_tiles())
        assert scene.stats.skipped_empty == 3 and len(tiles) == 3
        for tile in tiles:
            assert tile.valid_fraction == pytest.approx(0.7)
            assert (tile.pixels[:30] == 0).all()
            np.testing.assert_array_equal(
                tile.pixels[30:], data[:3, 130:200, tile.ref.window.col_off : tile.ref.window.col_off + 100].transpose(1, 2, 0)
            )


def test_small_raster_single_padded_tile(tmp_path: Path):
    rng = np.random.default_rng(5)
    data = rng.integers(1, 255, size=(3, 60, 80)).astype("uint8")
    path = make_raster(tmp_path / "small.tif", data)
    with SceneReader.open(path, tile_size=100, min_valid=0.4) as scene:
        (ref,) = scene.windows()
        tile = scene.read(ref)
    assert tile is not None and tile.pixels.shape == (100, 100, 3)
    assert tile.valid_fraction == pytest.approx(0.48)
    np.testing.assert_array_equal(tile.pixels[:60, :80], data.transpose(1, 2, 0))
    assert (tile.pixels[60:] == 0).all() and (tile.pixels[:, 80:] == 0).all()
    with SceneReader.open(path, tile_size=100) as scene:  # default min_valid 0.5
        assert list(scene.iter_tiles()) == [] and scene.stats.skipped_empty == 1


def test_pad_edge_mode(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=128, edge="pad", min_valid=0.0) as scene, rasterio.open(rgb_utm) as ds:
        refs = scene.windows()
        assert [r.window.col_off for r in refs[:3]] == [0, 128, 256]
        corner = scene.read(refs[-1])  # cols 256..383, rows 128..255
        assert corner.valid_fraction == pytest.approx(44 * 72 / 128**2)
        np.testing.assert_array_equal(corner.pixels[:72, :44], ds.read(window=Window(256, 128, 44, 72)).transpose(1, 2, 0))
        assert (corner.pixels[72:] == 0).all() and (corner.pixels[:, 44:] == 0).all()


def test_drop_edge_mode(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=128, edge="drop") as scene:
        assert [r.window for r in scene.windows()] == [PixelWindow(0, 0, 128, 128), PixelWindow(128, 0, 128, 128)]


def test_target_gsd_halves_tile_count_per_axis(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=50) as native:
        assert len(native.windows()) == 6 * 4
    with SceneReader.open(rgb_utm, tile_size=50, target_gsd=20.0) as coarse:
        refs = coarse.windows()
        assert len(refs) == 3 * 2
        assert (coarse.grid_width, coarse.grid_height) == (150, 100)
        assert refs[1].window == PixelWindow(100, 0, 100, 100)  # source pixels
        assert refs[1].grid == PixelWindow(50, 0, 50, 50)  # target pixels
        assert refs[0].gsd == pytest.approx(20.0) and coarse.gsd == pytest.approx(20.0)
        tiles = list(coarse.iter_tiles())
        assert len(tiles) == 6 and all(t.pixels.shape == (50, 50, 3) for t in tiles)
    with SceneReader.open(rgb_utm, tile_size=100) as fine:  # same footprint as the 100 px source window
        for got, want in zip(refs[1].corners, fine.windows()[1].corners):
            assert got == pytest.approx(want, abs=1e-9)


def test_target_gsd_bilinear_on_smooth_raster(tmp_path: Path):
    cols = np.arange(W, dtype=float)[None, :].repeat(H, axis=0)
    rows = np.arange(H, dtype=float)[:, None].repeat(W, axis=1)
    data = np.stack([cols * 0.8, rows, (cols + rows) * 0.5]).astype("uint8")
    path = make_raster(tmp_path / "smooth.tif", data)
    with SceneReader.open(path, tile_size=50, target_gsd=20.0) as scene:
        tiles = list(scene.iter_tiles())
    for tile in tiles:
        w = tile.ref.window
        block = data[:, w.row_off : w.row_off + 100, w.col_off : w.col_off + 100].astype(float)
        block = block.reshape(3, 50, 2, 50, 2).mean(axis=(2, 4))
        assert np.abs(tile.pixels.transpose(2, 0, 1).astype(float) - block).max() <= 2.0


def test_target_gsd_finer_than_native(rgb_utm: Path):
    with SceneReader.open(rgb_utm, tile_size=100, target_gsd=5.0) as scene:
        assert len(scene.windows()) == 6 * 4
        assert scene.windows()[1].window == PixelWindow(50, 0, 50, 50)
        assert next(scene.iter_tiles()).pixels.shape == (100, 100, 3)


def test_corrupt_window_raises_and_is_counted(tmp_path: Path):
    from PIL import Image

    path = make_raster(tmp_path / "corrupt.tif", tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with Image.open(path) as im:
        offsets, counts = im.tag_v2[324], im.tag_v2[325]
    with open(path, "r+b") as fh:  # garble the block at rows 64..127, cols 0..63
        fh.seek(offsets[5])
        fh.write(b"\xff" * counts[5])
    with SceneReader.open(path, tile_size=100) as scene:
        refs = scene.windows()
        with pytest.raises(RasterError, match="window col_off=0,row_off=0,width=100,height=100") as info:
            scene.read(refs[0])
        assert "\n" not in str(info.value)
        assert scene.read(refs[1]) is not None
    with SceneReader.open(path, tile_size=100) as scene:
        tiles = list(scene.iter_tiles())
        assert len(tiles) == 4 and scene.stats.failed == 2 and len(scene.stats.failures) == 2
        assert scene.stats.as_dict()["read"] == 4


# --------------------------------------------------------------------- read_image


def test_read_image_png_jpeg_and_16bit(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 255, size=(40, 50, 3)).astype("uint8")
    Image.fromarray(rgb).save(tmp_path / "q.png")
    np.testing.assert_array_equal(read_image(tmp_path / "q.png"), rgb)
    Image.fromarray(rgb).convert("L").save(tmp_path / "g.jpg")
    grey = read_image(tmp_path / "g.jpg")
    assert grey.shape == (40, 50, 3) and grey.dtype == np.uint8
    deep = rng.integers(0, 60000, size=(40, 50)).astype("uint16")
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.shape == (40, 50, 3) and out.min() == 0 and out.max() == 255
    index = np.zeros((40, 50), dtype="uint8")
    index[:10] = 1
    pal = Image.fromarray(index, "P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(tmp_path / "pal.tif")  # palette TIFF: colour map applied, not grey indices
    out = read_image(tmp_path / "pal.tif")
    assert out[0, 0].tolist() == [255, 0, 0] and out[20, 0].tolist() == [0, 0, 0]


def test_read_image_geotiff_uses_band_rule_and_stretch(tmp_path: Path):
    rng = np.random.default_rng(7)
    data = rng.integers(100, 4000, size=(4, H, W)).astype("uint16")
    path = make_raster(tmp_path / "q16.tif", data)
    img = read_image(path)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    want = percentile_rule(data[:3].astype(float)).apply(data[:3]).transpose(1, 2, 0)
    np.testing.assert_array_equal(img, want)
    nocrs = make_raster(tmp_path / "plain.tif", crs=None, transform=None)  # no georeference is fine here
    assert read_image(nocrs).shape == (H, W, 3)


def test_read_image_errors(tmp_path: Path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match="give a PNG/JPEG/WebP/GeoTIFF image") as info:
        read_image(bad)
    assert "bad.png" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SourceNotFoundError):
        read_image(tmp_path / "nope.jpg")
    two = make_raster(tmp_path / "two.tif", count=2, colorinterp=[ColorInterp.gray, ColorInterp.undefined])
    with pytest.raises(RasterError, match="--bands"):
        read_image(two)


# ----------------------------------------------------------------------- real data


@pytest.mark.data
@pytest.mark.parametrize(
    "name, crs, target_gsd",
    [
        ("opengeos_naip_m_4709963_se_14_1_20090818.tif", "EPSG:26914", None),
        ("opengeos_landsat_1985.tif", "EPSG:4326", None),
        ("rasterio_cogeo.tif", "EPSG:3857", 1.0),
        ("riotiler_mosaic_cog1.tif", "EPSG:32618", None),
    ],
)
def test_real_geotiffs(shared_data: Path, name: str, crs: str, target_gsd: float | None):
    path = shared_data / "geotiff" / name
    with SceneReader.open(path, tile_size=128, target_gsd=target_gsd) as scene:
        assert scene.crs == crs
        assert scene.native_gsd > 0
        refs = scene.windows()
        assert refs
        w, s, e, n = scene.bounds_lonlat
        read = 0
        for ref in refs[:4]:
            tile = scene.read(ref)
            if tile is None:
                continue
            read += 1
            assert tile.pixels.shape == (128, 128, 3) and tile.pixels.dtype == np.uint8
            lon, lat = tile.ref.centroid
            assert w - 0.01 <= lon <= e + 0.01 and s - 0.01 <= lat <= n + 0.01
        assert read >= 1
        if scene.dtype == "uint16":
            assert scene.scale.kind == "percentile"
        if name.startswith("opengeos_landsat"):
            assert 60 < scene.native_gsd < 100  # 0.0008 degree at ~8 degrees south
        if name == "rasterio_cogeo.tif":
            assert scene.native_gsd < 0.597  # Web Mercator metres shrink with latitude
            assert refs[0].window.width > 128  # 1 m target > native ground GSD


@pytest.mark.data
def test_real_alpha_file(shared_data: Path):
    path = shared_data / "geotiff" / "riotiler_pix4d_alpha_nodata.tif"
    with SceneReader.open(path, tile_size=256) as scene:
        tiles = list(scene.iter_tiles())
        assert scene.stats.read + scene.stats.skipped_empty == scene.stats.windows
        assert all(t.valid_fraction >= 0.5 for t in tiles)


def test_gdal_block_cache_is_megabytes_not_bytes():
    """rasterio hands GDAL_CACHEMAX to GDALSetCacheMax64, which takes bytes: a
    value like 128 would disable GDAL's block cache and decode every 512 px
    block once per 256 px tile.  Checked on the GDAL library rasterio loaded."""
    import ctypes
    import glob

    libs = glob.glob(os.path.join(os.path.dirname(rasterio.__file__), os.pardir, "rasterio.libs", "libgdal*.so*"))
    if not libs:
        pytest.skip("rasterio's bundled libgdal not found (rasterio not from a manylinux wheel)")
    gdal = ctypes.CDLL(libs[0])
    gdal.GDALGetCacheMax64.restype = ctypes.c_int64
    if "GDAL_CACHEMAX" in os.environ:
        pytest.skip("GDAL_CACHEMAX is set in the environment")
    with gdal_env():
        assert gdal.GDALGetCacheMax64() >= 64 * 1024 * 1024
        with gdal_env():  # nested: the outer environment is reused
            assert gdal.GDALGetCacheMax64() >= 64 * 1024 * 1024


@pytest.mark.parametrize("target_gsd", [None, 0.75])
def test_unmasked_uint8_tiles_equal_rasterio_reads(tmp_path, target_gsd):
    """The direct path for mask-free uint8 RGB (read into pixel-interleaved
    memory, no mask read) returns exactly rasterio's own window read, at the
    native GSD and resampled; edge tiles (padded) go through the masked path."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(3, 300, 520), dtype=np.uint8)
    path = write_raster(tmp_path / "rgb.tif", data, crs="EPSG:32615",
                        transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000))
    with SceneReader.open(path, target_gsd=target_gsd, tile_size=128, edge="pad", min_valid=0.1) as scene, \
            rasterio.open(path) as ds:
        assert scene.plan.direct
        refs = scene.windows()
        def wholly_inside(r):
            x0, y0, w, h = scene._source_float(r.grid)
            return x0 >= 0 and y0 >= 0 and x0 + w <= ds.width and y0 + h <= ds.height

        inside = [r for r in refs if wholly_inside(r)]
        assert inside and len(inside) < len(refs)  # both paths are exercised
        for ref in refs:
            tile = scene.read(ref)
            x0, y0, w, h = scene._source_float(ref.grid)
            if ref in inside:
                want = ds.read(window=Window(x0, y0, w, h), out_shape=(3, ref.grid.height, ref.grid.width),
                               resampling=rasterio.enums.Resampling.nearest if target_gsd is None
                               else rasterio.enums.Resampling.bilinear)
                np.testing.assert_array_equal(tile.pixels, want.transpose(1, 2, 0))
                assert tile.valid_fraction == 1.0
            else:
                assert tile is None or tile.valid_fraction < 1.0


def test_a_geographic_crs_over_projected_coordinates_is_named(tmp_path):
    """EPSG:4326 on a raster whose coordinates are metres (500000, 5000000): the error says the
    CRS is probably wrong, not only that the pixel size cannot be computed."""
    from affine import Affine

    from conftest import write_raster
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling import open_scene

    data = np.zeros((3, 32, 32), np.uint8) + 50
    write_raster(tmp_path / "w.tif", data, crs="EPSG:4326", transform=Affine(10, 0, 500000, 0, -10, 5000000))
    with pytest.raises(RasterError, match="is not a longitude and latitude.*CRS is probably wrong"):
        with open_scene(str(tmp_path / "w.tif"), tile_size=16) as reader:
            reader.windows()
