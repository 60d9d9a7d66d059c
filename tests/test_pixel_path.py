"""Issue 13, case 2: one pixel path for ingest, queries (file, upload) and thumbnails.

Every raster variant below is written as a one-tile scene; the tile ingest
stores, the same file given as a query image (GDAL and, where the format
allows, Pillow), as an HTTP upload, and the stored tile re-read for a
thumbnail must be the same pixels, and the stored vector the query's vector.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from rsir_stac.store import open_store
from rsir_stac.thumbnails import read_tile
from rsir_stac.tiling import SceneReader, read_image

pytestmark = [pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

T = 64  # the tiny bundle's tile size
UTM = Affine(0.3, 0.0, 500000.0, 0.0, -0.3, 3300000.0)
#: six land-cover classes, each a colour (RGBA), as in a classification map
CLASSES = {0: (0, 0, 0, 255), 1: (34, 139, 34, 255), 2: (30, 144, 255, 255), 3: (210, 180, 140, 255),
           4: (220, 20, 60, 255), 5: (255, 255, 0, 255)}


def _blocks(rng, count, size, lo, hi, dtype):
    b = rng.integers(lo, hi, size=(count, size // 8, size // 8))
    return np.kron(b, np.ones((8, 8), dtype=np.int64)).astype(dtype)


def _write(path, data, *, colorinterp=None, colormap=None, transform=UTM, **profile):
    count, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name,
                       crs="EPSG:32615", transform=transform, **profile) as dst:
        dst.write(data)
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return path


def make_variants(root, size=T):
    """Every raster variant the readers handle, one file each; returns name -> path."""
    rng = np.random.default_rng(13)
    out = {}
    rgb = _blocks(rng, 3, size, 0, 256, np.uint8)
    out["rgb"] = _write(root / "rgb.tif", rgb)
    out["rgb_band_interleaved"] = _write(root / "rgb_band.tif", rgb, interleave="band")
    out["rgb_tiled_deflate"] = _write(root / "rgb_tiled.tif", rgb, tiled=True, blockxsize=16, blockysize=16,
                                      compress="deflate")
    out["rgb_jpeg_ycbcr"] = _write(root / "rgb_jpeg.tif", rgb, compress="jpeg", photometric="ycbcr",
                                   tiled=True, blockxsize=16, blockysize=16)
    alpha = np.full((1, size, size), 255, np.uint8)
    alpha[:, :, : size // 4] = 0  # a quarter transparent
    out["rgba"] = _write(root / "rgba.tif", np.concatenate([rgb, alpha]),
                         colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    out["bgr"] = _write(root / "bgr.tif", rgb[::-1].copy(),
                        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red])
    out["grey"] = _write(root / "grey.tif", rgb[:1].copy())
    classes = _blocks(rng, 1, size, 0, 6, np.uint8)
    out["palette"] = _write(root / "palette.tif", classes, colormap=CLASSES, photometric="palette")
    out["uint16"] = _write(root / "uint16.tif", _blocks(rng, 3, size, 200, 4000, np.uint16))
    f = _blocks(rng, 3, size, 0, 1000, np.float32) / 7.0
    f[:, :8, :8] = np.nan
    out["float32_nan"] = _write(root / "float.tif", f, nodata=float("nan"))
    i16 = _blocks(rng, 3, size, -500, 3000, np.int16)
    i16[:, -8:, :] = -9999
    out["int16_nodata"] = _write(root / "int16.tif", i16, nodata=-9999)
    out["rgbn"] = _write(root / "rgbn.tif", np.concatenate([rgb, _blocks(rng, 1, size, 0, 256, np.uint8)]))
    # the same ground stored south-up, east-left, turned 180 degrees and transposed
    x0, y1, px, side = UTM.c, UTM.f, UTM.a, size * UTM.a
    out["south_up"] = _write(root / "south_up.tif", rgb[:, ::-1].copy(), transform=Affine(px, 0, x0, 0, px, y1 - side))
    out["east_left"] = _write(root / "east_left.tif", rgb[:, :, ::-1].copy(),
                              transform=Affine(-px, 0, x0 + side, 0, -px, y1))
    out["rotated_180"] = _write(root / "rot180.tif", rgb[:, ::-1, ::-1].copy(),
                                transform=Affine(-px, 0, x0 + side, 0, px, y1 - side))
    out["transposed"] = _write(root / "transposed.tif", rgb.transpose(0, 2, 1).copy(), transform=Affine(0, px, x0, -px, 0, y1))
    return out


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    return make_variants(tmp_path_factory.mktemp("variants"))


@pytest.fixture(scope="module")
def indexed(variants, tiny_bundle, tmp_path_factory):
    """Every variant ingested at its native GSD into one Edge index: name -> (point id, payload, vector)."""
    idx = tmp_path_factory.mktemp("pixidx") / "idx"
    report = ingest([str(p) for p in variants.values()], index=str(idx), model=tiny_bundle,
                    options=IngestOptions(tile_size=T, native_gsd=True, min_valid=0.0))
    assert report.ok and report.points_written == len(variants), report
    by_href = {str(p): name for name, p in variants.items()}
    with open_store(str(idx), read_only=True) as store:
        pts = {by_href[p.payload["href"]]: (p.id, p.payload, p.vector) for p in store.iter_points()}
    assert set(pts) == set(variants)
    return idx, pts


def _decode_upload(data: bytes) -> np.ndarray:
    """The HTTP API's decoder of uploaded bytes (``rsir_stac.upload`` where it exists)."""
    try:
        from rsir_stac.upload import decode_upload
    except ImportError:
        from rsir_stac.serve import decode_upload

        return decode_upload(data, max_image_pixels=10**7)
    return decode_upload(data)


def _tile(path):
    with SceneReader.open(str(path), tile_size=T, min_valid=0.0) as scene:
        (ref,) = scene.windows()
        return scene.read(ref).pixels


def test_palette_raster_is_read_through_its_colour_table(variants):
    """The right value: every pixel is its class's colour, in ingest and in the query reader."""
    with rasterio.open(variants["palette"]) as ds:
        classes = ds.read(1)
    lut = np.array([CLASSES[i][:3] for i in range(6)], np.uint8)
    want = lut[classes]
    np.testing.assert_array_equal(_tile(variants["palette"]), want)
    np.testing.assert_array_equal(read_image(variants["palette"]), want)


@pytest.mark.parametrize("name", ["rgb", "rgb_band_interleaved", "rgb_tiled_deflate", "rgb_jpeg_ycbcr", "rgba",
                                  "bgr", "grey", "palette", "uint16", "float32_nan", "int16_nodata", "rgbn",
                                  "south_up", "east_left", "rotated_180", "transposed"])
def test_tile_query_upload_and_thumbnail_are_the_same_pixels(variants, indexed, name):
    path = variants[name]
    tile = _tile(path)
    np.testing.assert_array_equal(read_image(path), tile)  # query by file
    upload = _decode_upload(path.read_bytes())  # query by upload
    np.testing.assert_array_equal(upload, tile)
    _, payload, _ = indexed[1][name]
    np.testing.assert_array_equal(read_tile(payload), tile)  # thumbnail of the stored tile


@pytest.mark.parametrize("name,mode", [("rgb", "RGB"), ("grey", "L"), ("palette", "P"), ("rgba", "RGBA")])
def test_the_same_pixels_as_png_are_read_alike(variants, tmp_path, name, mode):
    """A PNG (decoded by Pillow) of the same pixels gives the tile's pixels too."""
    from PIL import Image

    with rasterio.open(variants[name]) as ds:
        data = ds.read()
    if mode == "P":
        img = Image.fromarray(data[0], mode="L").convert("P")
        img.putpalette([c for i in range(6) for c in CLASSES[i][:3]])
        img.putdata(list(data[0].ravel()))
    else:
        arr = data[0] if mode == "L" else np.moveaxis(data, 0, 2)
        img = Image.fromarray(arr, mode=mode)
    png = tmp_path / f"{name}.png"
    img.save(png)
    np.testing.assert_array_equal(read_image(png), _tile(variants[name]))


@pytest.mark.parametrize("name", ["palette", "rgb", "rgba", "uint16", "float32_nan", "south_up", "transposed"])
def test_stored_vector_equals_the_query_vector(variants, indexed, tiny_bundle, name):
    """The property of case 2: a tile's stored vector is the vector of the same
    pixels given as a query (within bf16 noise), and the query finds it first."""
    idx, pts = indexed
    pid, _, stored = pts[name]
    with Index.open(str(idx), model=tiny_bundle) as index:
        query = index.embed_image(read_image(variants[name]))
        res = index.search(image=str(variants[name]), k=len(variants))  # every variant of the same pixels ties
    scale = float(np.linalg.norm(stored)) or 1.0
    assert float(np.linalg.norm(query - stored)) <= 1e-2 * scale
    # at distance ~0, first or tied with the variants of the very same pixels (rgb, rgb_band_interleaved ...)
    near_zero = {h.id for h in res.hits if h.score <= 1e-2 * scale}
    assert res.hits[0].id in near_zero and pid in near_zero


def test_palette_crop_of_a_larger_scene_is_its_tile(tmp_path):
    """Windowed reads of a palette scene equal the same ground cut out as its own file."""
    rng = np.random.default_rng(5)
    classes = _blocks(rng, 1, 2 * T, 0, 6, np.uint8)
    scene = _write(tmp_path / "map.tif", classes, colormap=CLASSES, photometric="palette")
    with SceneReader.open(str(scene), tile_size=T) as reader:
        tiles = {(r.window.col_off, r.window.row_off): reader.read(r).pixels for r in reader.windows()}
    assert len(tiles) == 4
    for (col, row), pixels in tiles.items():
        crop = _write(tmp_path / f"crop_{col}_{row}.tif", classes[:, row:row + T, col:col + T].copy(),
                      colormap=CLASSES, photometric="palette",
                      transform=rasterio.windows.transform(Window(col, row, T, T), UTM))
        np.testing.assert_array_equal(read_image(crop), pixels)


def test_read_dataset_image_takes_an_open_dataset(variants):
    """The entry point for already-open datasets (e.g. uploads in a MemoryFile)."""
    from rasterio.io import MemoryFile

    from rsir_stac.tiling import read_dataset_image

    with MemoryFile(variants["palette"].read_bytes()) as mem, mem.open() as ds:
        np.testing.assert_array_equal(read_dataset_image(ds), _tile(variants["palette"]))


def test_an_image_without_valid_pixels_is_refused_not_searched(tmp_path):
    """A fully transparent PNG or an all-nodata GeoTIFF has nothing to search by: a one-line
    refusal naming the file (CLI) or the upload (HTTP), not confident matches."""
    from PIL import Image

    from rsir_stac.errors import EmptyImageError
    from rsir_stac.upload import decode_upload

    png = tmp_path / "clear.png"
    Image.new("RGBA", (64, 64), (120, 80, 40, 0)).save(png)
    tif = tmp_path / "nodata.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=32, height=32, count=3, dtype="float32", nodata=np.nan) as ds:
        ds.write(np.full((3, 32, 32), np.nan, np.float32))
    for path in (png, tif):
        with pytest.raises(EmptyImageError, match=f"{path.name}.* no valid pixels"):
            read_image(path)
        with pytest.raises(EmptyImageError):
            decode_upload(path.read_bytes())
    half = tmp_path / "half.png"  # partly transparent: still an image to search by
    img = Image.new("RGBA", (64, 64), (120, 80, 40, 255))
    img.paste((0, 0, 0, 0), (0, 0, 32, 64))
    img.save(half)
    assert read_image(half).shape == (64, 64, 3) and decode_upload(half.read_bytes()).shape == (64, 64, 3)


@pytest.mark.parametrize("layout", ["south-up", "east-left", "rotated-180", "transposed"])
def test_mirrored_rasters_give_the_tiles_of_the_same_ground(tmp_path, layout):
    """A south-up (positive y pixel size), east-left, 180-degree-rotated or transposed raster
    of the same ground gives the same tile pixels as the north-up one: tiles are shown as on
    the map, not mirrored or turned."""
    from affine import Affine

    from conftest import write_raster
    from rsir_stac.tiling import open_scene

    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, (3, 64, 64), dtype=np.uint8)
    x0, y1, px = 500000.0, 5000000.0, 0.3
    write_raster(tmp_path / "n.tif", data, transform=Affine(px, 0, x0, 0, -px, y1))
    if layout == "south-up":
        flipped, t = data[:, ::-1], Affine(px, 0, x0, 0, px, y1 - 64 * px)
    elif layout == "east-left":
        flipped, t = data[:, :, ::-1], Affine(-px, 0, x0 + 64 * px, 0, -px, y1)
    elif layout == "rotated-180":
        flipped, t = data[:, ::-1, ::-1], Affine(-px, 0, x0 + 64 * px, 0, px, y1 - 64 * px)
    else:  # rows run east, columns run south
        flipped, t = data.transpose(0, 2, 1), Affine(0, px, x0, -px, 0, y1)
    write_raster(tmp_path / "m.tif", np.ascontiguousarray(flipped), transform=t)

    def tiles(name):
        with open_scene(str(tmp_path / name), tile_size=32, stride=32, target_gsd=px) as reader:
            return {tuple(round(v, 6) for v in ref.centroid): reader.read(ref).pixels
                    for ref in reader.windows()}

    north, mirror = tiles("n.tif"), tiles("m.tif")
    assert sorted(north) == sorted(mirror) and len(north) == 4
    for key, px_ in north.items():
        np.testing.assert_array_equal(mirror[key], px_)


def test_a_crs_counting_west_and_south_gives_the_tiles_of_the_same_ground(tmp_path):
    """EPSG:2053 (Hartebeesthoek94 / Lo29) counts westing and southing: a grid GDAL itself
    makes for it has columns running west and rows north.  Its tiles are the north-up
    transverse Mercator raster's of the same ground (they were turned 180 degrees)."""
    from affine import Affine

    from conftest import write_raster
    from rsir_stac.tiling import open_scene

    rng = np.random.default_rng(5)
    data = rng.integers(0, 255, (3, 64, 64), dtype=np.uint8)
    px, w0, s0 = 30.0, -50000.0, 3750000.0  # Lo29: westing of column 0, southing of row 0
    write_raster(tmp_path / "lo29.tif", data, crs="EPSG:2053", transform=Affine(px, 0, w0, 0, -px, s0))
    tm = "+proj=tmerc +lat_0=0 +lon_0=29 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    # the same ground north-up: easting = -westing, northing = -southing
    write_raster(tmp_path / "tm.tif", np.ascontiguousarray(data[:, ::-1, ::-1]), crs=tm,
                 transform=Affine(px, 0, -(w0 + 64 * px), 0, -px, -(s0 - 64 * px)))

    def tiles(name):
        with open_scene(str(tmp_path / name), tile_size=32, stride=32, target_gsd=None) as reader:
            return {tuple(round(v, 6) for v in ref.centroid): reader.read(ref).pixels for ref in reader.windows()}

    lo29, north = tiles("lo29.tif"), tiles("tm.tif")
    assert sorted(lo29) == sorted(north) and len(north) == 4
    for key, px_ in north.items():
        np.testing.assert_array_equal(lo29[key], px_)
