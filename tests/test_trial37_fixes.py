"""Findings of the thirty-seventh session's new-user trial (/work/exp37/trial/REPORT.md)."""

from __future__ import annotations

import warnings

import pytest

from rsir_stac.errors import InputError
from tests.conftest import make_geotiff


def test_a_raster_with_nodata_and_an_alpha_band_reads_without_rasterios_warning(tmp_path):
    """Trial 6: a chip with an alpha band that also declares nodata printed rasterio's raw
    NodataShadowWarning, naming our source line, on every search with it and every ingest."""
    from rasterio.errors import NodataShadowWarning

    from rsir_stac.tiling.query import read_image
    from rsir_stac.tiling.scene import SceneReader

    path = make_geotiff(tmp_path / "chip4.tif", width=128, height=128, alpha=True, nodata=0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with SceneReader.open(str(path), tile_size=64, target_gsd=None, min_valid=0.0) as r:
            tiles = list(r.iter_tiles())
        query = read_image(path)
    assert tiles and query.shape[-1] == 3, (len(tiles), query.shape)
    shadow = [w for w in said if issubclass(w.category, NodataShadowWarning)]
    assert not shadow, [str(w.message) for w in shadow]


def test_a_location_with_latitude_and_longitude_swapped_says_so():
    """Trial 10: `--at 47.02,-99.15` (lat,lon) only said the range; the fix is the swapped text."""
    from rsir_stac.search import parse_lonlat
    from rsir_stac.store.filter_parse import parse_bbox, parse_near

    with pytest.raises(InputError, match=r"LON comes first: if you meant latitude 47\.02, longitude -99\.15, "
                                         r"write -99\.15,47\.02\)$"):
        parse_lonlat("47.02,-99.15")
    with pytest.raises(InputError, match=r"are the two swapped\?\)$"):
        parse_near("47.02,-99.15,500")
    with pytest.raises(InputError, match=r"are the two swapped\?\)$"):
        parse_bbox("29,-95,30,-94")
    for text in ("200,10", "100,95,100"):  # out of range, not a swap: no such hint
        with pytest.raises(InputError) as ei:
            (parse_lonlat if text.count(",") == 1 else parse_near)(text)
        assert "swapped" not in str(ei.value) and "comes first" not in str(ei.value), ei.value
    assert parse_lonlat("-99.15,47.02") == (-99.15, 47.02)


def test_a_query_image_far_from_a_tile_gets_a_note(tmp_path, tiny_bundle):
    """Trial 5: a 4 x 4 px icon, a 4000 x 200 px strip and a whole scene were each resized into one
    network input and searched without a word; a tile-sized chip gets no note."""
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from rsir_stac.cli import main
    from rsir_stac.search import Index

    idx = _tiny_index(tmp_path, tiny_bundle)
    args = ["--index", str(idx), "--model", str(tiny_bundle.path)]
    tile = tiny_bundle.tile_size
    rng = np.random.default_rng(0)
    cases = {(4, 4): "blown up", (tile // 2, tile * 5): "squashed", (tile * 5, tile * 5): "shrunk",
             (tile, tile): None, (tile // 4, tile // 4): None, (tile * 3, tile): None}
    with Index.open(str(idx), model=str(tiny_bundle.path)) as index:
        for (h, w), how in cases.items():
            px = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            said = [n for n in index.search(pixels=px, k=2).notes if "network input" in n]
            if how is None:
                assert not said, ((h, w), said)
            else:
                assert len(said) == 1 and f"is {w} x {h} px and the index's tiles {tile} x {tile} px: it is {how}" \
                    in said[0] and said[0].endswith("or by a stored tile (a result, or the tile at a place)"), said
    Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "icon.png")
    r = CliRunner().invoke(main, ["search", "--image", str(tmp_path / "icon.png"), "-k", "1", *args])
    assert r.exit_code == 0, r.output
    assert f"note: the query image {tmp_path / 'icon.png'} is 4 x 4 px" in r.output, r.output
    assert "or by a stored tile (--point-id, --at)" in r.output, r.output


def test_a_label_file_naming_one_tile_twice_alike_says_so(caplog):
    """Re-check (helper 132): a label file with the same id twice and the same label was merged without a
    word, so 'Loaded 1 label' did not add up to the file's 2 features."""
    import logging

    from rsir_stac.labels import labels_from_geojson

    pid, other = "2f1c0d4e-0000-4000-8000-000000000001", "2f1c0d4e-0000-4000-8000-000000000002"
    feats = [{"type": "Feature", "id": i, "geometry": None, "properties": {"label": lab}}
             for i, lab in ((pid, "positive"), (other, "negative"), (pid, "positive"))]
    with caplog.at_level(logging.WARNING, logger="rsir_stac.labels"):
        ls = labels_from_geojson({"type": "FeatureCollection", "features": feats}, "labels.geojson")
    assert ls.positives == (pid,) and ls.negatives == (other,)
    said = [r.getMessage() for r in caplog.records if r.name == "rsir_stac.labels"]
    assert said == [f"labels.geojson: 1 feature repeats a tile an earlier feature labels the same way (feature 3 "
                    f"repeats feature 1, point {pid}); each tile is kept once"], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rsir_stac.labels"):
        labels_from_geojson({"type": "FeatureCollection", "features": feats[:2]}, "labels.geojson")
    assert not [r for r in caplog.records if r.name == "rsir_stac.labels"]



def _tiny_index(tmp_path, bundle):
    """An index of one ingested 192 px scene (nine 64 px tiles) under ``bundle``."""
    from click.testing import CliRunner

    from rsir_stac.cli import main

    make_geotiff(tmp_path / "scene.tif", width=192, height=192, seed=3)
    r = CliRunner().invoke(main, ["ingest", str(tmp_path / "scene.tif"), "--tile-size", "64", "--native-gsd",
                                  "--index", str(tmp_path / "idx"), "--model", str(bundle.path)])
    assert r.exit_code == 0, r.output
    return tmp_path / "idx"


def test_the_contact_sheet_shows_every_example(tmp_path, tiny_bundle):
    """Trial 10: with several examples the contact sheet showed the first alone as the query; now
    each positive is outlined red and each negative blue, before the hits."""
    import numpy as np
    from PIL import Image

    from rsir_stac.search import Example, Index
    from rsir_stac.thumbnails import EXAMPLE_OUTLINES, write_thumbnails

    idx = _tiny_index(tmp_path, tiny_bundle)
    with Index.open(str(idx), model=str(tiny_bundle.path)) as index:
        ids = [h.id for h in index.search(pixels=np.full((64, 64, 3), 90, np.uint8), k=3).hits]
        result = index.search(positives=[Example("point", ids[0]), Example("point", ids[1])],
                              negatives=[Example("point", ids[2])], k=2)
    paths = write_thumbnails(result, tmp_path / "th", size=40)
    sheet = np.asarray(Image.open(next(p for p in paths if p.name == "contact_sheet.png")).convert("RGB"))
    pad = 6
    tops = [tuple(int(v) for v in sheet[pad - 2, pad + i * (40 + pad) + 20]) for i in range(5)]
    assert tops[:3] == [EXAMPLE_OUTLINES[True], EXAMPLE_OUTLINES[True], EXAMPLE_OUTLINES[False]], tops
    assert tops[3] == tops[4] == (255, 255, 255), tops  # the hits: not outlined


def test_a_read_past_the_edge_of_a_file_under_the_ingest_roots_reads_that_file(tmp_path):
    """Helper 134's finding: a file under the ingest roots is opened through /proc/self/fd/N, and the
    descriptor was closed at once; rasterio reopens a dataset by that name for a read past its edges
    (boundless), so once N was reused the read went to whatever file held it (any driver, outside the
    roots too)."""
    import os

    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from rsir_stac.tiling import sources

    own = make_geotiff(tmp_path / "own.tif", width=64, height=64, seed=1)
    other = make_geotiff(tmp_path / "other.tif", width=64, height=64, seed=2)
    edge = Window(-8, -8, 32, 32)
    with rasterio.open(own) as ds:
        expected = ds.read(window=edge, boundless=True)
    sources.restrict_to_geotiff([tmp_path])
    try:
        ds = sources.open_under_roots(str(own))
        assert ds.name.startswith("/proc/self/fd/"), ds.name
        fd = os.open(other, os.O_RDONLY)  # the lowest free number: the dataset's, were it closed
        try:
            got = ds.read(window=edge, boundless=True)
        finally:
            os.close(fd)
        assert np.array_equal(got, expected)
        name = ds.name
        ds.close()
        del ds
        assert not os.path.exists(name) or os.path.realpath(name) != str(own.resolve())  # closed with it
    finally:
        sources.restrict_to_geotiff(())
