"""STAC items whose bands are separate single-band GeoTIFF assets (USGS Landsat Collection 2
L2 ``coastal``/``blue``/``green``/``red``/``nir08``, Sentinel-2 L2A ``B02``/``B03``/``B04``
without ``visual``) are tiled in colour from their red, green and blue files, not in grey
from the first data asset.

The oracle is the same pixels written as one 3-band GeoTIFF (R, G, B, nodata 0 declared in
the file) and read through the one-file path: every stored tile of the composed scene (ingest,
thumbnails, ``/api/tiles``, ``/api/imagery``, reindex) must equal it.  Each band has its own
seeded texture and value range, so a swapped channel or a grey tile cannot pass.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image
from rasterio.transform import from_origin

from rsir_stac.cli import main
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.stac import iter_scenes
from rsir_stac.store import open_store

NATIVE = IngestOptions(tile_size=64, gsd=None, native_gsd=True)
CRS, RES, ORIGIN = "EPSG:32615", 30.0, (500000.0, 3300000.0)
W, H, COLLAR = 192, 128, 16  # 3 x 2 tiles of 64 px; the left 16 columns are nodata (0) in every band
SR = {"scale": 2.75e-05, "offset": -0.2, "nodata": 0, "data_type": "uint16"}
# key, file, common name, seed, DN offset (distinct ranges: a swapped channel stretches differently)
BANDS = [("coastal", "SR_B1", "coastal", 11, 7000), ("blue", "SR_B2", "blue", 12, 8000),
         ("green", "SR_B3", "green", 13, 12000), ("red", "SR_B4", "red", 14, 16000),
         ("nir08", "SR_B5", "nir08", 15, 24000)]
TMS = morecantile.tms.get("WebMercatorQuad")


def _band(seed: int, base: int, width: int = W, height: int = H) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 4000, size=(height // 8 + 1, width // 8 + 1))
    data = np.kron(blocks, np.ones((8, 8)))[:height, :width] + rng.normal(0, 50, size=(height, width)) + base
    out = np.clip(data, 1, 65535).astype(np.uint16)
    out[:, : COLLAR * width // W] = 0
    return out


def _write(path: Path, arrays: list[np.ndarray], *, res: float = RES, nodata: float | None = None) -> Path:
    h, w = arrays[0].shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=len(arrays), dtype="uint16", crs=CRS,
                       transform=from_origin(*ORIGIN, res, res), nodata=nodata) as dst:
        for i, a in enumerate(arrays, 1):
            dst.write(a, i)
    return path


def make_item(folder: Path, *, common_names: bool = True, coarse_blue: bool = False, item_id: str = "LC08_TEST") -> Path:
    """A Landsat C2 L2-like item: one single-band GeoTIFF asset per band (files declare no nodata;
    ``raster:bands`` says 0), plus the reference ``stack.tif`` (R, G, B; nodata 0 in the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    assets = {}
    for key, name, cn, seed, base in BANDS:
        arr = _band(seed, base)
        data[cn] = arr
        if coarse_blue and cn == "blue":  # 60 m, half the size: another grid
            _write(folder / f"{name}.TIF", [_band(seed, base, W // 2, H // 2)], res=2 * RES)
        else:
            _write(folder / f"{name}.TIF", [arr])
        eo = [{"name": name, **({"common_name": cn} if common_names else {})}]
        assets[key] = {"href": f"./{name}.TIF", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data", "reflectance"], "eo:bands": eo, "raster:bands": [dict(SR)]}
    assets["thumbnail"] = {"href": "./thumb.jpeg", "type": "image/jpeg", "roles": ["thumbnail"]}
    _write(folder / "stack.tif", [data["red"], data["green"], data["blue"]], nodata=0)
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "landsat-c2l2-test",
           "geometry": None, "properties": {"datetime": "2021-03-29T08:05:12Z", "platform": "landsat-8"},
           "links": [], "assets": assets}
    path = folder / "item.json"
    path.write_text(json.dumps(doc))
    return path


class _Grid:
    def __init__(self, col_off: int, row_off: int, width: int, height: int) -> None:
        self.col_off, self.row_off, self.width, self.height = col_off, row_off, width, height


def _points(index: Path) -> list:
    with open_store(str(index), read_only=True) as store:
        return list(store.iter_points(with_vectors=True))


def _reference(folder: Path, payload: dict) -> np.ndarray:
    """The tile of ``payload`` read from the 3-band reference file by the one-file path."""
    from rsir_stac.tiling import SceneReader

    t = payload["tiling"]
    g = payload["grid"]
    with SceneReader.open(str(folder / "stack.tif"), target_gsd=t["gsd"], tile_size=t["tile_size"],
                          stride=t["stride"], edge=t["edge"], min_valid=0.0) as reader:
        (ref,) = [r for r in reader.windows() if (r.grid.col_off, r.grid.row_off, r.grid.width, r.grid.height)
                  == (g["col_off"], g["row_off"], g["width"], g["height"])]
        return reader.read(ref).pixels


@pytest.fixture(scope="module")
def composed(tmp_path_factory, tiny_bundle):
    """The item ingested (default asset choice) into a real Edge index, and the reference
    3-band file ingested as a bare raster into another."""
    root = tmp_path_factory.mktemp("bandassets")
    item = make_item(root / "scene")
    report = ingest([str(item)], index=str(root / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written == 6, report
    ref = ingest([str(root / "scene" / "stack.tif")], index=str(root / "ref"), model=tiny_bundle, options=NATIVE)
    assert ref.ok and ref.points_written == 6, ref
    return root


def test_the_default_composes_red_green_blue_and_tiles_equal_the_rgb_file(composed, tiny_bundle):
    from rsir_stac.thumbnails import read_tile

    folder = composed / "scene"
    points = _points(composed / "idx")
    assert len(points) == 6
    with tiny_bundle.embedder(batch_size=8) as emb:
        for p in points:
            pl = p.payload
            assert pl["asset"] == "red,green,blue" and pl["href"] == str(folder / "SR_B4.TIF")
            assert pl["band_hrefs"] == ["SR_B4.TIF", "SR_B3.TIF", "SR_B2.TIF"]  # relative to href: no folders
            assert pl["tiling"]["bands"] == [1, 2, 3] and pl["tiling"]["nodata"] == [0.0, 0.0, 0.0]
            px = read_tile(pl)
            ref = _reference(folder, pl)
            assert np.array_equal(px, ref)  # R, G, B from the right files, stretched and masked as one file
            assert not (np.array_equal(px[..., 0], px[..., 1]) or np.array_equal(px[..., 1], px[..., 2]))  # not grey
            # the vector is the reference tile's: ingest read exactly these pixels
            np.testing.assert_allclose(p.vector, emb.embed([ref])[0], rtol=1e-4, atol=1e-5)
        left = next(p.payload for p in points if p.payload["grid"]["col_off"] == 0)
        assert (read_tile(left)[:, :COLLAR] == 0).all()  # raster:bands nodata 0 honoured (the files declare none)


def test_reingest_is_idempotent_and_ids_are_deterministic(composed, tiny_bundle, tmp_path):
    from rsir_stac.ingest import point_id, tiling_key

    idx = tmp_path / "idx"
    shutil.copytree(composed / "idx", idx)
    points = _points(idx)
    before = {p.id for p in points}
    # the ids of the composed scene: its asset key is the three keys, R,G,B
    assert before == {point_id("landsat-c2l2-test", "LC08_TEST", "red,green,blue", _Grid(**p.payload["grid"]),
                               tiling_key(64, p.payload["tiling"]["stride"], None, "shift"), tiny_bundle.model_id)
                      for p in points}
    again = ingest([str(composed / "scene" / "item.json")], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert again.ok and again.points_written == 0 and again.tiles_existing == 6
    assert {p.id for p in _points(idx)} == before
    fresh = tmp_path / "fresh"
    ingest([str(composed / "scene" / "item.json")], index=str(fresh), model=tiny_bundle, options=NATIVE)
    assert {p.id for p in _points(fresh)} == before


def test_search_thumbnails_and_stored_tile_png_read_the_three_files(composed, tiny_bundle, tmp_path):
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    folder = composed / "scene"
    points = {p.id: p.payload for p in _points(composed / "idx")}
    pid = sorted(points)[0]
    out = tmp_path / "thumbs"
    r = CliRunner().invoke(main, ["search", "--index", str(composed / "idx"), "--model", str(tiny_bundle.path),
                                  "--point-id", pid, "--limit", "3", "--thumbnails", str(out)])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(out / "00_query.png")), _reference(folder, points[pid]))
    hits = sorted(out.glob("0[1-9]_*.png"))
    assert len(hits) == 3
    for h in hits:
        (hid,) = [i for i in points if i.startswith(h.stem.split("_", 1)[1])]
        assert np.array_equal(np.asarray(Image.open(h)), _reference(folder, points[hid]))
    with Index.open(str(composed / "idx"), model=tiny_bundle) as index, \
            TestClient(create_app(index, allowed_hosts=("testserver",), hide_paths=True)) as c:
        resp = c.get(f"/api/tiles/{pid}.png")
        assert resp.status_code == 200, resp.text
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB")),
                              _reference(folder, points[pid]))


def _imagery(index: Path, bundle, z: int | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    with Index.open(str(index), model=bundle) as idx, \
            TestClient(create_app(idx, allowed_hosts=("testserver",))) as c:
        (f,) = c.get("/api/scenes").json()["features"]
        w, s, e, n = f["properties"]["bbox"]
        t = TMS.tile((w + e) / 2, (s + n) / 2, z if z is not None else f["properties"]["maxzoom"])
        resp = c.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png")
        assert resp.status_code == 200, resp.text
        return np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA")), (t.z, t.x, t.y)


def test_map_imagery_draws_the_three_files_as_the_rgb_file(composed, tiny_bundle):
    got, where = _imagery(composed / "idx", tiny_bundle, 12)
    want, where2 = _imagery(composed / "ref", tiny_bundle, 12)
    assert where == where2
    drawn = got[..., 3] > 0
    assert drawn.mean() > 0.005 and not np.array_equal(got[..., 0][drawn], got[..., 1][drawn])
    assert np.array_equal(got, want)


def test_reindex_rereads_the_three_files_also_relocated(composed, tiny_bundle, tmp_path):
    from rsir_stac.model.bundle import save_bundle
    from rsir_stac.reduce import make_reducer
    from rsir_stac.reindex import reindex
    from rsir_stac.thumbnails import read_tile

    rng = np.random.default_rng(0)
    images = [np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(12)]
    with tiny_bundle.embedder(batch_size=4) as emb:
        z = emb.embed(images, reduce=False)
    meta = json.loads(json.dumps(tiny_bundle.meta))
    meta["name"] = "rsir-bandassets-v2"
    other = save_bundle(tmp_path / "bundle", tiny_bundle.net, make_reducer("pca", 4).fit(z), meta)
    moved = tmp_path / "moved"
    shutil.copytree(composed / "scene", moved)
    report = reindex(str(composed / "idx"), str(tmp_path / "new"), model=other,
                     relocate=[(str(composed / "scene"), str(moved))])
    assert report.ok and report.points_written == 6, report
    new = _points(tmp_path / "new")
    with other.embedder(batch_size=8) as emb:
        for p in new:
            assert p.payload["href"] == str(moved / "SR_B4.TIF")
            assert p.payload["band_hrefs"] == ["SR_B4.TIF", "SR_B3.TIF", "SR_B2.TIF"]
            ref = _reference(moved, p.payload)
            assert np.array_equal(read_tile(p.payload), ref)
            np.testing.assert_allclose(p.vector, emb.embed([ref])[0], rtol=1e-4, atol=1e-5)


def test_asset_option_takes_three_keys_on_the_cli(tmp_path, tiny_bundle, caplog):
    """Without common names nothing says which file is red: the default falls back to one band
    in grey and says so, naming the keys; ``--asset red,green,blue`` composes them."""
    item = make_item(tmp_path / "scene", common_names=False)
    with caplog.at_level(logging.WARNING, logger="rsir_stac.asset"):
        (grey,) = iter_scenes([str(item)])
    assert grey.asset_key == "coastal" and grey.band_hrefs is None
    msg = [r.getMessage() for r in caplog.records if "grey" in r.getMessage()]
    assert len(msg) == 1 and "LC08_TEST" in msg[0] and "'coastal'" in msg[0] and "--asset red,green,blue" in msg[0]
    idx = tmp_path / "idx"
    r = CliRunner().invoke(main, ["ingest", str(item), "--index", str(idx), "--model", str(tiny_bundle.path),
                                  "--asset", "red,green,blue", "--tile-size", "64", "--native-gsd"])
    assert r.exit_code == 0, r.output
    points = _points(idx)
    assert len(points) == 6
    for p in points:
        assert p.payload["asset"] == "red,green,blue"
        assert np.array_equal(_reference(tmp_path / "scene", p.payload),
                              __import__("rsir_stac.thumbnails", fromlist=["read_tile"]).read_tile(p.payload))
    r = CliRunner().invoke(main, ["ingest", "--help"])
    assert "red,green,blue" in " ".join(r.output.split())
    bad = CliRunner().invoke(main, ["ingest", str(item), "--index", str(tmp_path / "bad"), "--model",
                                    str(tiny_bundle.path), "--asset", "red,green"])
    assert bad.exit_code == 2 and "--asset 'red,green' is invalid" in bad.output
    assert not (tmp_path / "bad").exists()


def test_files_on_different_grids_fail_in_one_line_and_write_nothing(tmp_path, tiny_bundle):
    item = make_item(tmp_path / "scene", coarse_blue=True)
    idx = tmp_path / "idx"
    r = CliRunner().invoke(main, ["ingest", str(item), "--index", str(idx), "--model", str(tiny_bundle.path),
                                  "--tile-size", "64", "--native-gsd"])
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if "another pixel grid" in ln]
    assert len(lines) == 1, r.output
    line = lines[0]
    assert "item LC08_TEST" in line and "asset blue" in line and "SR_B2.TIF" in line and "60 x 60" in line
    assert "--asset R,G,B with three single-band assets on one pixel grid" in line
    assert not idx.exists()


@pytest.mark.parametrize("dx, same", [(1e-7, True), (1e-4, True), (0.5, False), (3.0, False)])
def test_band_files_one_float_noise_apart_are_one_grid(tmp_path, dx, same):
    """Origins 1e-7 or 1e-4 px apart (a tool rewriting the geotransform) are one grid; half a pixel or more
    is refused, the message giving both origins and the offset in pixels (geo trial of session 38)."""
    from rsir_stac.tiling.stack import BandStack, GridMismatchError
    from tests.conftest import make_geotiff

    files = [make_geotiff(tmp_path / f"b{i}.tif", width=64, height=64, count=1, seed=i,
                          origin=(500000.0 + (dx if i == 1 else 0.0), 3300000.0)) for i in range(3)]
    if same:
        stack = BandStack.open([str(f) for f in files])
        assert stack.read().shape == (3, 64, 64)
        stack.close()
        return
    with pytest.raises(GridMismatchError) as err:
        BandStack.open([str(f) for f in files])
    text = str(err.value)
    assert f"origin ({500000 + dx:.10g}, 3300000)" in text and "origin (500000, 3300000)" in text, text
    assert f"up to {dx:.3g} px off" in text and "\n" not in text, text


def test_per_band_sentinel2_assets_are_composed_by_common_name(tmp_path):
    """Sentinel-2 L2A without TCI (asset keys B02..B11, STAC 1.1 ``bands`` with
    ``eo:common_name``): B04, B03, B02, whatever the asset order."""
    assets = {}
    for key, cn in [("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"), ("B11", "swir16")]:
        assets[key] = {"href": f"./{key}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                       "bands": [{"name": key, "eo:common_name": cn, "nodata": 0}]}
    doc = {"type": "Feature", "stac_version": "1.1.0", "id": "S2_TEST", "geometry": None,
           "properties": {"datetime": "2023-07-14T09:50:21Z"}, "links": [], "assets": assets}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(doc))
    (scene,) = iter_scenes([str(path)])
    assert scene.asset_key == "B04,B03,B02" and scene.bands == (1, 2, 3)
    assert scene.band_hrefs == tuple(str(tmp_path / f"{k}.tif") for k in ("B04", "B03", "B02"))
    assert scene.href == str(tmp_path / "B04.tif") and scene.nodata == (0.0, 0.0, 0.0)
    (one,) = iter_scenes([str(path)], asset="B08")  # one key: that asset alone, as before
    assert one.asset_key == "B08" and one.band_hrefs is None
    (nir,) = iter_scenes([str(path)], asset="B08,B04,B03")  # a false-colour composite by hand
    assert nir.band_hrefs == tuple(str(tmp_path / f"{k}.tif") for k in ("B08", "B04", "B03"))


def test_single_band_fallback_warns_with_keys_that_would_work(tmp_path, caplog):
    assets = {k: {"href": f"./{k}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                  "raster:bands": [{"nodata": 0}]} for k in ("B01", "B02", "B03", "B04")}
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "S2_NONAMES", "geometry": None,
           "properties": {"datetime": "2023-07-14T09:50:21Z"}, "links": [], "assets": assets}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="rsir_stac.asset"):
        (scene,) = iter_scenes([str(path)])
    assert scene.asset_key == "B01"
    (msg,) = [r.getMessage() for r in caplog.records if "grey" in r.getMessage()]
    assert "S2_NONAMES" in msg and "--asset B04,B03,B02" in msg


@pytest.mark.parametrize("keys, hint", [
    (("nbart_blue", "nbart_green", "nbart_red", "nbart_nir_1"), "--asset nbart_red,nbart_green,nbart_blue"),
    (("b1", "b2", "b3"), "--asset KEY_R,KEY_G,KEY_B: three of its single-band asset keys"),
])
def test_the_grey_fallback_names_keys_that_say_their_colour(tmp_path, caplog, keys, hint):
    """Docs trial: a DEA Landsat item (nbart_red, nbart_green, nbart_blue; no common names) got the
    advice `--asset R,G,B: ... red, green, blue`, which read as keys and failed ("has no asset 'red'")."""
    assets = {k: {"href": f"./{k}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                  "raster:bands": [{"nodata": 0}]} for k in keys}
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "DEA", "geometry": None,
           "properties": {"datetime": "2020-05-25T00:00:00Z"}, "links": [], "assets": assets}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="rsir_stac.asset"):
        list(iter_scenes([str(path)]))
    (msg,) = [r.getMessage() for r in caplog.records if "grey" in r.getMessage()]
    assert hint in msg, msg
    if "nbart" in hint:  # and following it composes the three
        (scene,) = iter_scenes([str(path)], asset="nbart_red,nbart_green,nbart_blue")
        assert scene.band_hrefs == tuple(str(tmp_path / f"nbart_{c}.tif") for c in ("red", "green", "blue"))


def test_band_files_get_the_checks_of_a_served_ingest_root(tmp_path):
    """Under ``serve --ingest-root`` every band file is read as GeoTIFF only and a link out of
    the roots is refused, exactly as for a one-file scene."""
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling import SceneReader
    from rsir_stac.tiling.sources import restrict_to_geotiff

    root = tmp_path / "root"
    make_item(root)
    outside = _write(tmp_path / "secret.tif", [_band(1, 100)])
    files = [str(root / f) for f in ("SR_B4.TIF", "SR_B3.TIF", "SR_B2.TIF")]
    (root / "link.TIF").symlink_to(outside)
    (root / "evil.TIF").write_text(
        f'<VRTDataset rasterXSize="{W}" rasterYSize="{H}"><SRS>{CRS}</SRS>'
        f'<GeoTransform>{ORIGIN[0]}, {RES}, 0, {ORIGIN[1]}, 0, -{RES}</GeoTransform>'
        f'<VRTRasterBand dataType="UInt16" band="1"><SimpleSource><SourceFilename relativeToVRT="0">{outside}'
        '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    with SceneReader.open(files[0], hrefs=[files[0], str(root / "evil.TIF"), files[2]]) as reader:
        assert reader.count == 3  # no restriction: GDAL follows the VRT, as for any file
    restrict_to_geotiff([root])
    try:
        with SceneReader.open(files[0], hrefs=files, tile_size=64) as reader:
            assert reader.count == 3 and reader.windows()
        with pytest.raises(RasterError, match="link to a file outside"):
            SceneReader.open(files[0], hrefs=[files[0], str(root / "link.TIF"), files[2]])
        with pytest.raises(RasterError, match="is not a GeoTIFF"):
            SceneReader.open(files[0], hrefs=[files[0], files[1], str(root / "evil.TIF")])
    finally:
        restrict_to_geotiff(())


def test_old_payloads_without_band_hrefs_read_one_file(tmp_path):
    """A payload written before composed scenes (no ``band_hrefs``) is one file, as before."""
    from rsir_stac.maptiles import scenes_from_payloads
    from rsir_stac.tiling.stack import payload_band_hrefs, payload_nodata

    pl = {"href": "/data/a.tif", "item_id": "a", "tiling": {"bands": [1, 2, 3], "nodata": 0}}
    assert payload_band_hrefs(pl) is None and payload_nodata(0) == 0.0 and payload_nodata(None) is None
    (sc,) = scenes_from_payloads([pl])
    assert sc.files == ("/data/a.tif",) and sc.nodata == 0.0 and sc.band_hrefs is None
    both = dict(pl, band_hrefs=["a.tif", "../g/b.tif", "https://x/c.tif"])
    assert payload_band_hrefs(both) == ("/data/a.tif", "/g/b.tif", "https://x/c.tif")
    assert payload_band_hrefs(both, href="/new/place/a.tif")[:2] == ("/new/place/a.tif", "/new/g/b.tif")


@pytest.mark.parametrize("gsd,edge", [(None, "shift"), (13.0, "shift"), (7.0, "pad")])
def test_uint8_band_files_read_as_one_rgb_file_at_any_gsd(tmp_path, gsd, edge):
    """uint8 files without masks take the direct read (straight into the tile's memory);
    resampled and padded windows too: the same pixels as one 3-band file."""
    from rsir_stac.tiling import SceneReader

    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 255, (100, 130)).astype(np.uint8) for _ in range(3)]
    names = []
    for i, a in enumerate(arrays):
        with rasterio.open(tmp_path / f"b{i}.tif", "w", driver="GTiff", width=130, height=100, count=1, dtype="uint8",
                           crs=CRS, transform=from_origin(0, 1000, 10, 10)) as dst:
            dst.write(a, 1)
        names.append(str(tmp_path / f"b{i}.tif"))
    with rasterio.open(tmp_path / "rgb.tif", "w", driver="GTiff", width=130, height=100, count=3, dtype="uint8",
                       crs=CRS, transform=from_origin(0, 1000, 10, 10)) as dst:
        dst.write(np.stack(arrays))
    kw = dict(tile_size=32, target_gsd=gsd, edge=edge)
    with SceneReader.open(names[0], hrefs=names, **kw) as got, SceneReader.open(str(tmp_path / "rgb.tif"), **kw) as want:
        assert got.plan.direct == want.plan.direct
        refs = got.windows()
        assert refs == want.windows()
        for ref in refs:
            a, b = got.read(ref), want.read(ref)
            assert (a is None) == (b is None)
            if a is not None:
                assert np.array_equal(a.pixels, b.pixels)
