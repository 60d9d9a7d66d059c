"""Multi-band images: colour bands told from band names, and labelled folders of multi-band
images (EuroSAT-style 13-band Sentinel-2 GeoTIFFs) through evaluate, train and reduce with --bands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from rsir_stac.errors import BandsError, ImageReadError


def _write(path: Path, data: np.ndarray, descriptions=None) -> Path:
    """An ungeoreferenced TIFF like the labelled datasets ship (no CRS), every band 'undefined'."""
    import warnings

    count = data.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", count=count, width=data.shape[2], height=data.shape[1],
                           dtype=data.dtype.name, photometric="MINISBLACK") as ds:
            ds.write(data)
            ds.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (count - 1)
            for i, text in enumerate(descriptions or (), start=1):
                if text:
                    ds.set_band_description(i, text)
    return path


@pytest.mark.parametrize("names, expected", [
    (["Blue", "Green", "Red", "NIR"], (3, 2, 1)),                   # PlanetScope-style BGRN
    (["band 1: red", "band 2: green", "band 3: blue"], (1, 2, 3)),
    (["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"], (4, 3, 2)),
    (["Coastal Blue", "Blue", "Green", "Yellow", "Red", "Red Edge", "NIR1", "NIR2"], (5, 3, 2)),  # WorldView-3
    (["sur_refl_b01", "sur_refl_b02", "sur_refl_b03", "sur_refl_b04"], None),  # MODIS: b04 is green
    (["B2", "B3", "B4", "B5"], None),                                # Landsat 4-7 or 8-9: not told
    (["red", "red", "green", "blue"], None),                         # two reds
    (["Red Edge", "Green", "Blue"], None),
    ([None, None, None], None),
])
def test_colour_bands_are_told_from_band_names_only_when_unambiguous(names, expected):
    from rsir_stac.tiling.bands import bands_from_descriptions

    assert bands_from_descriptions(names) == expected


def test_a_bgrn_raster_with_band_names_reads_red_from_its_red_band(tmp_path):
    """Before: a 4-band Blue/Green/Red/NIR raster without colour interpretation read bands 1,2,3
    (blue as red); now the band names say which is which, and the pixels follow."""
    from rsir_stac.tiling import read_image

    yy, xx = np.mgrid[0:32, 0:32]
    data = np.stack([xx * 4, yy * 4, (xx + yy) * 2, np.full_like(xx, 200)]).astype("uint8")
    path = _write(tmp_path / "bgrn.tif", data, ["Blue", "Green", "Red", "NIR"])
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(path) as ds:
        from rsir_stac.tiling.bands import select_bands

        assert select_bands(ds) == (3, 2, 1)
    rgb = read_image(path)
    # read_image stretches each band alike; what matters is which band lands in which channel
    for channel, band in ((0, 2), (1, 1), (2, 0)):
        assert np.corrcoef(rgb[..., channel].ravel(), data[band].ravel())[0, 1] > 0.99
    without = _write(tmp_path / "plain.tif", data)  # no names: the old rule (1,2,3) stays
    assert np.corrcoef(read_image(without)[..., 0].ravel(), data[0].ravel())[0, 1] > 0.99


def _eurosat_like(root: Path, per_class: int = 5) -> Path:
    """Two classes whose difference is in bands 2-4 only (stripes against checks); the other
    nine of 13 uint16 bands are the same noise for both."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    patterns = {"Forest": (yy // 4) % 2, "River": ((yy // 8) + (xx // 8)) % 2}
    for name, pattern in patterns.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            bands = rng.normal(1500, 400, size=(13, 64, 64))
            for b in (1, 2, 3):  # B02, B03, B04 (0-based 1..3)
                bands[b] = 500 + 2000 * pattern + rng.normal(0, 60, size=(64, 64))
            _write(root / name / f"{name}_{i}.tif", np.clip(bands, 0, 10000).astype("uint16"))
    return root


def test_a_folder_of_13_band_images_asks_for_bands_and_evaluates_with_them(tmp_path):
    from click.testing import CliRunner

    from rsir_stac.cli import main
    from rsir_stac.model.data import load_images, scan_image_folder

    data = _eurosat_like(tmp_path / "eurosat")
    with pytest.raises(ImageReadError) as ei:
        load_images(scan_image_folder(data).paths)
    msg = str(ei.value)
    assert msg.startswith("10 images do not say which bands are red, green and blue: ") and \
        msg.count("has 13 bands") == 1, msg
    assert msg.endswith("pass --bands R,G,B (1-based band numbers)"), msg
    assert "remove or replace" not in msg

    runner = CliRunner()
    refused = runner.invoke(main, ["evaluate", str(data), "--split", "all"])
    assert refused.exit_code == 2 and "pass --bands R,G,B" in refused.output
    assert "More samples per pixel" not in refused.output  # Pillow's log line before rasterio reads it

    scores = {}
    for bands in ("4,3,2", "1,6,7"):
        r = runner.invoke(main, ["evaluate", str(data), "--split", "all", "--bands", bands, "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert out["protocol"]["bands"] == [int(b) for b in bands.split(",")]
        scores[bands] = out["mAP"]
    assert scores["4,3,2"] > 0.9 and scores["4,3,2"] > scores["1,6,7"] + 0.2, scores  # the bands are the ones read


def test_train_with_bands_records_them_and_reduce_reads_the_same_bands(tmp_path):
    from rsir_stac.model.refit import refit_reducer
    from rsir_stac.model.train import TrainConfig, train

    data = _eurosat_like(tmp_path / "eurosat", per_class=6)
    cfg = TrainConfig(str(data), str(tmp_path / "run"), input_size=48, tile_size=64, embedding_dim=8, epochs=1,
                      p=2, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="pca", reducer_dim=2)
    with pytest.raises(ImageReadError, match="pass --bands"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    from dataclasses import replace

    bundle = train(replace(cfg, bands=(4, 3, 2)))
    assert list(bundle.meta["training"]["bands"]) == [4, 3, 2]
    refit = refit_reducer(bundle, str(data), "pca", 3, str(tmp_path / "pca3"))  # decodes with the recorded bands
    assert list(refit.meta["training"]["bands"]) == [4, 3, 2] and refit.dim == 3
    with pytest.raises(Exception, match="--bands"):  # resuming with other bands is refused
        train(replace(cfg, bands=(1, 6, 7), epochs=2))


def test_the_band_error_of_ingest_is_a_bands_error_with_an_example(tmp_path):
    from rsir_stac.tiling.bands import select_bands

    path = _write(tmp_path / "s2.tif", np.zeros((13, 8, 8), "uint16"))
    with rasterio.open(path) as ds, pytest.raises(BandsError, match=r"pass --bands R,G,B \(1-based band numbers, "
                                                                      r"e\.g\. 4,3,2 for Sentinel-2"):
        select_bands(ds)


def _chip_of_a_stored_tile(idx_path: Path, tmp_path: Path, bundle) -> tuple[str, Path]:
    """A stored tile's pixels cut from its scene by the payload's window, saved as a 13-band chip
    whose bands 4,3,2 are the tile's R,G,B and the rest are noise."""
    from rsir_stac.search import Index

    with Index.open(str(idx_path), model=bundle) as idx:
        pid, payload = next((p.id, p.payload) for p in idx.store.iter_points(with_vectors=False))
    w = payload["window"]
    with rasterio.open(payload["href"]) as ds:
        rgb = ds.read([1, 2, 3], window=rasterio.windows.Window(w["col_off"], w["row_off"], w["width"], w["height"]))
    chip = np.random.default_rng(5).integers(0, 255, size=(13, *rgb.shape[1:]), dtype=np.uint8)
    chip[3], chip[2], chip[1] = rgb
    return pid, _write(tmp_path / "chip13.tif", chip)


def test_search_by_a_multi_band_chip_with_bands_finds_its_tile_locally_and_through_serve(tmp_path, tiny_bundle,
                                                                                        monkeypatch):
    """search --image of a 13-band chip said "pass --bands", an option search did not have."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from rsir_stac.cli import main
    from rsir_stac.ingest import IngestOptions, ingest
    from tests.conftest import make_geotiff
    from tests.test_served import REPO, _env, _free_port, _stop, _wait_served

    scene = make_geotiff(tmp_path / "scene.tif", width=128, height=128, seed=4)
    idx = tmp_path / "idx"
    assert ingest([str(scene)], index=str(idx), model=tiny_bundle,
                  options=IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)).ok
    pid, chip = _chip_of_a_stored_tile(idx, tmp_path, tiny_bundle)
    runner = CliRunner()
    base = ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--image", str(chip), "--include-query",
            "--per-item", "0", "--format", "json", "-k", "1"]
    refused = runner.invoke(main, base)
    assert refused.exit_code == 2 and "has 13 bands" in refused.output and "pass --bands" in refused.output
    r = runner.invoke(main, base + ["--bands", "4,3,2"])
    assert r.exit_code == 0, r.output
    hit = json.loads(r.stdout)["hits"][0]
    assert hit["id"] == pid and hit["distance"] == pytest.approx(0, abs=0.05), hit
    bad = runner.invoke(main, ["search", "--index", str(idx), "--point-id", pid, "--bands", "4,3,2"])
    assert bad.exit_code == 2 and "--bands chooses the bands of --image" in bad.output

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                             str(tiny_bundle.path), "--port", str(port), "--service-key", "k3y"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        _wait_served(proc, idx, port)
        monkeypatch.setenv("RSIR_SERVICE_KEY", "k3y")
        r = runner.invoke(main, base + ["--bands", "4,3,2"])
        assert r.exit_code == 0 and "sending the search" in r.stderr, r.output
        served = json.loads(r.stdout)["hits"][0]
        assert served["id"] == pid and served["distance"] == pytest.approx(hit["distance"], abs=0.02), served
    finally:
        _stop(proc)


def test_a_bundle_trained_on_chosen_bands_says_so_when_evaluated_without_them(tmp_path):
    """Trial: a bundle trained with --bands was scored on the bands the images' names chose,
    without a word.  (Applying the bundle's band numbers to every folder was the re-check's N2:
    another sensor's files have other numbers, and search reads images by their own bands.)"""
    from rsir_stac.evaluate import evaluate_folder
    from rsir_stac.model.train import TrainConfig, train

    data = _eurosat_like(tmp_path / "eurosat", per_class=6)
    bundle = train(TrainConfig(str(data), str(tmp_path / "run"), input_size=48, tile_size=64, embedding_dim=8,
                               epochs=1, p=2, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none",
                               bands=(4, 3, 2)))
    with pytest.raises(ImageReadError, match="pass --bands"):   # these images name no bands
        evaluate_folder(data, bundle.path, split="all", bf16=False)
    out = evaluate_folder(data, bundle.path, split="all", bf16=False, bands=(4, 3, 2))
    assert out["protocol"]["bands"] == [4, 3, 2] and not [w for w in out["warnings"] if "bands" in w]
    named = tmp_path / "named"   # the same pixels with Sentinel-2 band names: read as B04,B03,B02
    for f in scan_folder_paths(data):
        target = named / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(f) as ds:
            _write(target, ds.read(), ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                       "B11", "B12"])
    auto = evaluate_folder(named, bundle.path, split="all", bf16=False)
    assert auto["protocol"]["bands"] is None and auto["mAP"] == pytest.approx(out["mAP"], abs=1e-6)
    assert any("was trained on bands 4,3,2 of its images" in w and "pass --bands 4,3,2" in w
               for w in auto["warnings"]), auto["warnings"]


def scan_folder_paths(root: Path) -> list[Path]:
    from rsir_stac.model.data import scan_image_folder

    return list(scan_image_folder(root).paths)


def test_a_mixed_band_layout_is_named_without_gdal_paths(tmp_path):
    """Trial: --bands 4,3,2 on a folder of RGB JPEGs and 13-band TIFFs named /vsimem/<uuid>.tif and
    advised removing the valid JPEGs."""
    from PIL import Image

    from rsir_stac.model.data import load_images, scan_image_folder

    data = _eurosat_like(tmp_path / "mixed", per_class=2)
    for name in ("Forest", "River"):
        Image.new("RGB", (64, 64), (30, 120, 40)).save(data / name / "rgb.jpg")
    with pytest.raises(ImageReadError) as ei:
        load_images(scan_image_folder(data).paths, bands=(4, 3, 2))
    msg = str(ei.value)
    assert msg.startswith("2 images cannot be read with these --bands: ") and "vsimem" not in msg, msg
    assert "(has 3 bands, so band 4 does not exist)" in msg and "remove or replace" not in msg, msg
    assert msg.endswith("evaluate or train the images of one band layout at a time (a folder per sensor), with "
                        "--bands for that layout"), msg


def test_a_folder_rerun_reads_a_raster_with_the_bands_it_is_indexed_with(tmp_path, tiny_bundle):
    """Adaptation trial: --bands applies to every file of a run, so a folder holding one 6-band
    raster (indexed on its own with --bands 3,2,1) failed that item on every re-run of the folder:
    "re-run the same command" never reached exit 0."""
    from click.testing import CliRunner

    from rsir_stac.cli import main
    from tests.conftest import make_geotiff

    folder = tmp_path / "scenes"
    folder.mkdir()
    make_geotiff(folder / "rgb.tif", width=128, height=128, seed=1)
    six = make_geotiff(folder / "aster.tif", width=128, height=128, count=6, seed=2, origin=(501000.0, 3300000.0))
    with rasterio.open(six, "r+") as ds:
        ds.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * 5
    args = ["--index", str(tmp_path / "idx"), "--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd"]
    r = CliRunner().invoke(main, ["ingest", str(folder), *args])
    assert r.exit_code == 1 and "pass --bands R,G,B" in r.output, r.output
    # the fix says how to follow it in a run of several sources (trial 37: --bands on the whole run failed the rest)
    assert "--bands applies to every source of a run, so ingest this one in a run of its own" in r.output, r.output
    alone = CliRunner().invoke(main, ["ingest", str(six), "--index", str(tmp_path / "other"),
                                      *args[2:]])  # a run of one source: no such clause
    assert alone.exit_code == 1 and "pass --bands R,G,B" in alone.output, alone.output
    assert "every source of a run" not in alone.output, alone.output
    r = CliRunner().invoke(main, ["ingest", str(six), "--bands", "3,2,1", *args])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["ingest", str(folder), "--json", *args])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["points_written"] == 0 and rep["tiles_existing"] == 8 and not rep["items_failed"], rep
