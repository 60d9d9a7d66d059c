"""What a new user's trial of labelled folders found (evaluate, train, reduce on dataset-shaped
folders): image formats skipped without a word, class names that could not be named, advice
``reduce`` cannot take, query expansion over the whole set, and the effective ``--scale``.

Real tiny folders (Pillow, rasterio), real decoding, the real CLI; nothing of rsir-stac is mocked.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rsir_stac.cli import main
from rsir_stac.errors import DatasetError
from rsir_stac.model.data import load_images, scan_image_folder
from tests.conftest import make_image_folder


def _json(result) -> dict:
    """The one JSON document an ``evaluate --json`` run printed on stdout."""
    return json.loads(result.stdout.strip().splitlines()[-1])


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# ----------------------------------------------------------------------------- F2: formats


def _pattern(seed: int, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _save_every_format(folder: Path, seed: int) -> dict[str, np.ndarray]:
    """One image per newly read format (and a PNG), with the pixels each should decode to
    (None where the format is lossy)."""
    import rasterio

    folder.mkdir(parents=True)
    want: dict[str, np.ndarray | None] = {}
    for i, (name, fmt, lossless) in enumerate([("a.png", "PNG", True), ("b.bmp", "BMP", True), ("c.gif", "GIF", False),
                                               ("d.jp2", "JPEG2000", True), ("e.j2k", "JPEG2000", True),
                                               ("f.jfif", "JPEG", False), ("g.jpe", "JPEG", False)]):
        pixels = _pattern(seed * 10 + i)
        Image.fromarray(pixels).save(folder / name, fmt, **({"irreversible": False} if fmt == "JPEG2000" else {}))
        want[name] = pixels if lossless else None
    # a Sentinel-2 style band: one 16-bit band in JPEG 2000 (Pillow says I;16, read through GDAL)
    band = np.random.default_rng(seed).integers(0, 10000, (1, 40, 40)).astype("uint16")
    with rasterio.open(folder / "h.jp2", "w", driver="JP2OpenJPEG", width=40, height=40, count=1,
                       dtype="uint16") as ds:
        ds.write(band)
    want["h.jp2"] = None
    return want


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")
def test_bmp_gif_jpeg2000_jfif_and_jpe_images_are_read(tmp_path, caplog):
    """Trial: .bmp, .gif, .jp2/.j2k, .jfif and .jpe images of a class folder were left out without
    a word (n 9 of 10 per class); the reader decodes each of them."""
    data = tmp_path / "data"
    wants = {c: _save_every_format(data / c, seed) for seed, c in enumerate(("beach", "forest"))}
    with caplog.at_level(logging.WARNING, logger="rsir_stac.model.data"):
        folder = scan_image_folder(data)
    assert caplog.records == []
    assert [p.relative_to(data).as_posix() for p in folder.paths] == [f"{c}/{n}" for c in wants for n in wants[c]]
    for path, image in zip(folder.paths, load_images(folder.paths)):
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8, path
        want = wants[path.parent.name][path.name]
        if want is not None:
            assert np.array_equal(image, want), path

    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", "imagenet", "--split", "all", "--json"])
    assert r.exit_code == 0, r.output
    assert {c: v["n"] for c, v in _json(r)["per_class"].items()} == {"beach": 8, "forest": 8}


def test_files_of_formats_not_read_are_named_in_one_warning_and_junk_is_not(tmp_path, caplog):
    """Files of a format the reader does not decode are counted and named in one warning (which
    evaluate --json carries); sidecars, notes and system files are not named."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    for name in ("photo.heic", "scan.psd", "other.heic"):
        (data / ("class0" if name != "scan.psd" else "class1") / name).write_bytes(b"not read")
    for junk in (".DS_Store", "Thumbs.db", "._img00.png", "README.txt", "img00.png.aux.xml", "meta.json",
                 "img00.pgw", "LICENSE"):
        (data / "class0" / junk).write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="rsir_stac.model.data"):
        folder = scan_image_folder(data)
    assert len(folder) == 6
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [f"data folder {data}: 3 file(s) in its class folders are not read (.heic: class0/other.heic, "
                    "class0/photo.heic; .psd: class1/scan.psd), as only TIFF, PNG, JPEG, WebP, BMP, GIF or JPEG 2000 "
                    "images are read; convert them to PNG or TIFF"]

    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", "imagenet", "--split", "all", "--json"])
    assert r.exit_code == 0, r.output
    assert msgs[0] in _json(r)["warnings"]


def test_a_folder_whose_images_are_all_of_formats_not_read_says_so(tmp_path):
    """Trial: a folder of class folders holding only images of a format not read was refused as
    having "0 class folder(s) with images", without saying that it holds images."""
    data = tmp_path / "data"
    for c in ("beach", "forest"):
        (data / c).mkdir(parents=True)
        for i in range(2):
            (data / c / f"{i}.heic").write_bytes(b"heic")
    with pytest.raises(DatasetError) as ei:
        scan_image_folder(data)
    assert str(ei.value) == (
        f"data folder {data} has 0 class folder(s) with images; it needs at least 2 sub-folders of TIFF, PNG, JPEG, "
        "WebP, BMP, GIF or JPEG 2000 images, one per class; 4 file(s) in its class folders are not read (.heic: "
        "beach/0.heic, beach/1.heic, forest/0.heic and 1 more): convert them to PNG or TIFF")
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", "imagenet"])
    assert "4 file(s) in its class folders are not read (.heic:" in _one_line_error(r)


# ------------------------------------------------------------------ F4, F5: class names

NFD_CHATEAU = unicodedata.normalize("NFD", "Château d'eau")   # as macOS writes a folder name
NFC_CHATEAU = unicodedata.normalize("NFC", "Château d'eau")   # as a Linux user types it


@pytest.fixture
def odd_names(tmp_path) -> Path:
    """Class folders named as macOS, spreadsheets and careless typing leave them."""
    assert NFD_CHATEAU != NFC_CHATEAU
    data = make_image_folder(tmp_path / "names", classes=4, per_class=3)
    for c, name in enumerate([NFD_CHATEAU, "Harbor Port", "Roads, paved", " forest "]):
        (data / f"class{c}").rename(data / name)
    assert sorted(p.name for p in data.iterdir()) == sorted([NFD_CHATEAU, "Harbor Port", "Roads, paved", " forest "])
    return data


def _classes_scored(data: Path, *options: str) -> list[str]:
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", "imagenet", "--split", "all", "--json", *options])
    assert r.exit_code == 0, r.output
    out = _json(r)
    assert out["n_queries"] == 3 * len(out["protocol"]["classes"])
    return out["protocol"]["classes"]


def test_classes_with_a_comma_another_unicode_form_or_spaces_can_be_named(odd_names):
    """Trial: `--classes "Roads, paved,Harbor Port"` named a class 'Roads'; an NFD folder name could
    not be selected with the NFC name a Linux user types; a folder ' forest ' could not be named."""
    assert _classes_scored(odd_names, "--classes", "Roads, paved,Harbor Port") == ["Harbor Port", "Roads, paved"]
    assert _classes_scored(odd_names, "--classes", "Roads, paved", "--classes", "Harbor Port") == \
        ["Harbor Port", "Roads, paved"]
    assert _classes_scored(odd_names, "--classes", f"{NFC_CHATEAU},forest") == [" forest ", NFD_CHATEAU]


def test_an_unknown_class_is_refused_with_every_folder_name_quoted(odd_names):
    r = CliRunner().invoke(main, ["evaluate", str(odd_names), "--model", "imagenet", "--classes", "Roads,Harbor Port"])
    assert _one_line_error(r) == (
        f"error: class 'Roads' is not in {odd_names}; its classes are ' forest ', {NFD_CHATEAU!r}, 'Harbor Port', "
        "'Roads, paved'; a class whose name holds a comma is named in a --classes of its own, e.g. --classes "
        "'Roads, paved'")
    r = CliRunner().invoke(main, ["train", str(odd_names), "--out", str(odd_names.parent / "run"),
                                  "--leave-out", "Roads,paved"])
    assert _one_line_error(r) == (
        f"error: --leave-out names unknown class 'Roads'; the data folder's classes are ' forest ', {NFD_CHATEAU!r}, "
        "'Harbor Port', 'Roads, paved'; a class whose name holds a comma is named in a --leave-out of its own, e.g. "
        "--leave-out 'Roads, paved'")
    assert not (odd_names.parent / "run").exists()


def test_leave_out_takes_such_names_and_held_out_evaluates_them(odd_names, tmp_path):
    """train --leave-out with a comma name and the NFC spelling of an NFD folder: the folder's own
    names are recorded, and evaluate --held-out scores those folders."""
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", str(odd_names), "--out", str(run), "--leave-out", "Roads, paved",
                                  "--leave-out", NFC_CHATEAU, "--epochs", "1", "--max-steps-per-epoch", "1",
                                  "--input-size", "48", "--tile-size", "48", "--embedding-dim", "8", "--p", "2",
                                  "--k", "2", "--val-fraction", "0", "--reducer", "none", "--recipe", "v1"])
    assert r.exit_code == 0, r.output
    meta = json.loads((run / "bundle" / "model.json").read_text())
    assert sorted(meta["training"]["held_out_classes"]) == sorted([NFD_CHATEAU, "Roads, paved"])
    r = CliRunner().invoke(main, ["evaluate", str(odd_names), "--model", str(run / "bundle"), "--held-out", "--json"])
    assert r.exit_code == 0, r.output
    assert _json(r)["protocol"]["classes"] == [NFD_CHATEAU, "Roads, paved"]


def test_names_that_read_two_ways_are_warned_about_with_the_other_reading(tmp_path, caplog):
    """Re-check: with folders 'a', 'b', 'a,b' and 'c', `--classes a,b,c` chose 'a,b' and 'c' without a
    word.  The choice stays (a value is first taken whole), and a warning names the other reading and
    the options that ask for it; those options then select exactly 'a', 'b' and 'c'."""
    data = make_image_folder(tmp_path / "amb", classes=4, per_class=3)
    for c, name in enumerate(["a", "b", "a,b", "c"]):
        (data / f"class{c}").rename(data / name)
    with caplog.at_level("WARNING"):
        assert _classes_scored(data, "--classes", "a,b,c") == ["a,b", "c"]
    warned = [r.getMessage() for r in caplog.records if "read as the one class" in r.getMessage()]
    assert warned == ["--classes a,b is read as the one class 'a,b'; to name the classes 'a', 'b' instead, give "
                      "each in a --classes of its own: --classes a --classes b"], warned
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _classes_scored(data, "--classes", "a", "--classes", "b", "--classes", "c") == ["a", "b", "c"]
        assert _classes_scored(data, "--classes", "a,c") == ["a", "c"]  # one reading only: no word
    assert "read as the one class" not in caplog.text


def test_class_folders_that_differ_only_in_form_case_or_spaces_are_warned_about(tmp_path, caplog):
    """Re-check: folders 'Château d'eau' in NFC and in NFD, or 'forest' and ' forest ', are two classes
    that print as one name; nothing said so.  One warning per look-alike group, the names shown
    with their code points; distinct names are not warned about."""
    from rsir_stac.model.data import scan_image_folder

    data = make_image_folder(tmp_path / "twins", classes=5, per_class=2)
    for c, name in enumerate([NFC_CHATEAU, NFD_CHATEAU, "forest", " forest ", "Harbor"]):
        (data / f"class{c}").rename(data / name)
    with caplog.at_level("WARNING"):
        assert len(scan_image_folder(data).classes) == 5
    warned = sorted(r.getMessage() for r in caplog.records if "differ only in" in r.getMessage())
    assert len(warned) == 2, warned
    assert '"Cha\\u0302teau d\'eau" and "Ch\\xe2teau d\'eau"' in warned[0], warned
    assert "read as 2 classes" in warned[0]
    assert "' forest '" in warned[1] and "'forest'" in warned[1]
    caplog.clear()
    with caplog.at_level("WARNING"):
        scan_image_folder(make_image_folder(tmp_path / "plain", classes=3, per_class=2))
    assert "differ only in" not in caplog.text


# ------------------------------------------------------------------ F6: reduce's advice


def _rgb_copy(data: Path, dest: Path) -> Path:
    """The same images as 3-band PNGs (same class folders and stems, so the same split)."""
    from rsir_stac.model.data import load_rgb

    for src in sorted(data.rglob("*.tif")):
        (dest / src.parent.name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(load_rgb(src, (4, 3, 2))).save(dest / src.parent.name / f"{src.stem}.png")
    return dest


def test_reduce_on_images_without_the_bundles_bands_gives_advice_reduce_can_take(tmp_path):
    """Trial: reduce on an RGB copy of a 13-band training folder advised "... with --bands for that
    layout"; reduce has no --bands (it reads the bundle's)."""
    from rsir_stac.model.train import TrainConfig, train
    from tests.test_multiband_folders import _eurosat_like

    data = _eurosat_like(tmp_path / "eurosat", per_class=6)
    cfg = TrainConfig(str(data), str(tmp_path / "run"), input_size=48, tile_size=64, embedding_dim=8, epochs=1,
                      p=2, k=2, max_steps_per_epoch=1, val_fraction=0.0, reducer="none", bands=(4, 3, 2))
    bundle = train(cfg)
    rgb = _rgb_copy(data, tmp_path / "rgb")
    r = CliRunner().invoke(main, ["reduce", str(rgb), "--model", str(bundle.path), "--kind", "pca", "--dim", "2",
                                  "--out", str(tmp_path / "r1")])
    line = _one_line_error(r)
    assert line.startswith(f"error: 10 image(s) of {rgb} cannot be read with bands 4,3,2, which model "
                           f"{bundle.model_id} was trained on and reduce reads: {rgb / 'Forest'}/Forest_"), line
    assert line.endswith(" and 7 more (has 3 bands, so band 4 does not exist); pass the folder the model was trained "
                         "on (reduce takes no --bands: it reads the bands its bundle records)"), line
    assert not (tmp_path / "r1").exists()
    # the advice works: the training folder itself is read with the recorded bands
    r = CliRunner().invoke(main, ["reduce", str(data), "--model", str(bundle.path), "--kind", "pca", "--dim", "2",
                                  "--out", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------ F8: --expand over every image


def test_expand_over_every_other_image_is_warned_about_in_the_log_and_the_json(tmp_path, caplog):
    """Trial: `evaluate --expand 100` on 75 images made every query the mean of all of them (P@5 =
    1/classes) without a word."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    runner = CliRunner()
    with caplog.at_level(logging.WARNING, logger="rsir_stac.evaluate"):
        r = runner.invoke(main, ["evaluate", str(data), "--model", "imagenet", "--split", "all", "--expand", "5",
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = _json(r)
    msg = (f"--expand 5 takes in all 5 other images of the 6 scored from {data}: every query becomes the mean of all "
           "the images, so every query is the same and the scores say nothing of the model; pass a smaller --expand, "
           "e.g. --expand 1")
    assert out["warnings"] == [msg] and msg in caplog.text
    assert out["P@5"] == pytest.approx(2 / 5)   # every query the same: each class's share of the others
    r = runner.invoke(main, ["evaluate", str(data), "--model", "imagenet", "--split", "all", "--expand", "4", "--json"])
    assert r.exit_code == 0 and _json(r)["warnings"] == [], r.output


# ------------------------------------------------------------------ F9: the scale said


def test_a_scale_more_than_small_images_take_records_and_labels_the_factor_used(tmp_path):
    """Trial: `--scale 16` on 64 px chips said x16 in the table and protocol.scale 16 for figures made
    at x8; the warning was in results[1].warnings only, not the top-level warnings."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3, size=64)
    runner = CliRunner()
    args = ["evaluate", str(data), "--model", "imagenet", "--split", "all", "--scale", "8,16"]
    r = runner.invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = _json(r)
    assert [(x["protocol"]["scale"], x["protocol"]["effective_scale"]) for x in out["results"]] == [(8, 8), (16, 8)]
    note = [w for w in out["results"][1]["warnings"] if w.startswith("--scale 16: 6 of the 6 images")]
    assert note and note[0] in out["warnings"], out["warnings"]
    assert out["results"][1]["mAP"] == out["results"][0]["mAP"]   # the same factor, the same figures
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("  x")]
    assert [ln.split("  ")[1] for ln in rows] == ["x8", "x16 (x8)"], r.stdout
    assert r.stdout.splitlines()[1].split() == ["scale", "mAP", "P@5", "P@10", "P@20", "ANMRR"], r.stdout


def test_a_scale_over_the_limit_is_refused_without_a_wrong_image_size(tmp_path):
    """Trial: `--scale 40` on 600 px images was refused as leaving "under 8 pixels of a 256-pixel image"."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=2)
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", "imagenet", "--scale", "1,40"])
    assert _one_line_error(r) == ("error: --scale 40 is over the largest factor evaluate takes (at most 32); give "
                                  "downsampling factors from 1 to 32, e.g. --scale 1,2,4,8")


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")
def test_a_16_bit_rgb_jpeg2000_reads_as_its_geotiff_twin(tmp_path):
    """Re-check (thirty-third session): a valid 16-bit 3-band JPEG 2000 stopped evaluate and train
    with "cannot be decoded (broken data stream)" (Pillow), while search --image read it through
    GDAL; JPEG 2000 is now read through GDAL only, with ingest's stretch, as its GeoTIFF twin."""
    import rasterio

    from rsir_stac.model.data import load_rgb

    pixels = np.random.default_rng(3).integers(200, 9000, (3, 48, 48)).astype("uint16")
    for name, driver, extra in (("x.jp2", "JP2OpenJPEG", {"QUALITY": "100", "REVERSIBLE": "YES"}),
                                ("x.tif", "GTiff", {})):
        with rasterio.open(tmp_path / name, "w", driver=driver, width=48, height=48, count=3, dtype="uint16",
                           **extra) as ds:
            ds.write(pixels)
    jp2, tif = load_rgb(tmp_path / "x.jp2"), load_rgb(tmp_path / "x.tif")
    assert jp2.shape == (48, 48, 3) and jp2.dtype == np.uint8
    assert np.array_equal(jp2, tif)
