"""A STAC item that georeferences an asset the file itself does not (``proj:`` fields): the
error gives the ``rio edit-info`` command that writes the item's values into the file, and
following it makes the ingest work with the footprints the item describes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from rsir_stac.errors import NotGeoreferencedError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.stac.projection import georef_fix, proj_crs, proj_transform

NATIVE = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)
T = [0.5, 0.0, 270000.0, 0.0, -0.5, 3290000.0]  # UTM 15N, 0.5 m pixels (Houston)


def _plain_tiff(path: Path, size: int = 128) -> Path:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    data = (np.random.default_rng(3).random((3, size, size)) * 255).astype("uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8") as dst:
            dst.write(data)
    return path


def _item(root: Path, tif: Path, item_props: dict, asset_props: dict | None = None) -> Path:
    w, s, e, n = -95.3765, 29.717, -95.3755, 29.718
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "pj-item", "bbox": [w, s, e, n],
           "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
           "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
           "properties": {"datetime": "2020-01-01T00:00:00Z", **item_props}, "links": [],
           "assets": {"visual": {"href": tif.name, "type": "image/tiff; application=geotiff", "roles": ["data"],
                                 **(asset_props or {})}}}
    path = root / "item.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_items_proj_fields_give_the_fix_and_following_it_works(tmp_path, tiny_bundle):
    import rasterio
    from pyproj import Transformer

    from rsir_stac.store import open_store

    tif = _plain_tiff(tmp_path / "plain.tif")
    item = _item(tmp_path, tif, {"proj:code": "EPSG:32615", "proj:transform": T, "proj:shape": [128, 128]})
    report = ingest([str(item)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert not report.ok and report.points_written == 0
    err = report.items_failed[0]["error"]
    assert "its STAC item pj-item gives it (proj:code, proj:transform)" in err, err
    cmd = re.search(r"`(rio edit-info [^`]+)`", err).group(1)
    assert "--crs EPSG:32615" in cmd and "'[0.5, 0, 270000, 0, -0.5, 3290000]'" in cmd and str(tif) in cmd
    # follow the fix as printed: rasterio's own rio, installed beside this Python
    rio = Path(sys.executable).with_name("rio")
    r = subprocess.run([str(rio)] + shlex.split(cmd)[1:], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 32615 and list(ds.transform)[:6] == T
    report = ingest([str(item)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written == 4
    to_lonlat = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    with open_store(str(tmp_path / "idx"), read_only=True) as store:
        for p in store.iter_points(with_vectors=False):
            w = p.payload["window"]
            lon, lat = to_lonlat.transform(270000.0 + 0.5 * w["col_off"], 3290000.0 - 0.5 * w["row_off"])
            ul = p.payload["corners"][0]
            assert ul["lon"] == pytest.approx(lon, abs=1e-9) and ul["lat"] == pytest.approx(lat, abs=1e-9)


def test_an_assets_proj_fields_win_and_a_grid_of_another_shape_gives_no_transform(tmp_path, tiny_bundle):
    tif = _plain_tiff(tmp_path / "plain.tif")
    # the asset's own fields override the item's (projection extension): v1 proj:epsg on the asset
    item = _item(tmp_path, tif, {"proj:code": "EPSG:4326", "proj:transform": [1, 0, 0, 0, -1, 0]},
                 {"proj:epsg": 32615, "proj:transform": T})
    err = ingest([str(item)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE).items_failed[0]["error"]
    assert "--crs EPSG:4326" not in err and "--crs EPSG:32615" in err and "270000" in err, err
    # proj:shape of another grid: its transform is not this file's, so the raster's own advice stands
    item = _item(tmp_path, tif, {"proj:epsg": 32615, "proj:transform": T, "proj:shape": [256, 256]})
    err = ingest([str(item)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE).items_failed[0]["error"]
    assert "gives it" not in err and "is not georeferenced (no CRS and no geotransform); give it both" in err, err
    # no proj fields at all: the raster's own advice
    item = _item(tmp_path, tif, {})
    err = ingest([str(item)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE).items_failed[0]["error"]
    assert "gives it" not in err and "rio edit-info --crs EPSG:32633" in err, err


def test_georef_fix_needs_what_is_missing():
    proj = {"proj:epsg": 32615}
    assert proj_crs(proj) == "EPSG:32615" and proj_transform(proj, (10, 10)) is None
    # only the CRS is missing: the CRS alone is enough
    fix = georef_fix("/d/a.tif", "i", proj, "crs", (10, 10))
    assert fix is not None and "`rio edit-info --crs EPSG:32615 /d/a.tif`" in fix and "has no CRS" in fix
    # both missing, no transform given: nothing to offer
    assert georef_fix("/d/a.tif", "i", proj, "both", (10, 10)) is None
    # a degenerate or non-numeric transform is not offered
    assert proj_transform({"proj:transform": [0, 0, 1, 0, 0, 2]}, None) is None
    assert proj_transform({"proj:transform": ["a", 0, 1, 0, -1, 2]}, None) is None
    assert proj_transform({"proj:transform": T + [0, 0, 1]}, (5, 5)) == T  # the 9-value form
    assert proj_crs({"proj:epsg": True}) is None and proj_crs({"proj:code": " "}) is None
    assert issubclass(NotGeoreferencedError, ValueError)


def test_proj_fields_naming_another_crs_than_the_file_are_warned_about(tmp_path, tiny_bundle, caplog):
    """A georeferenced file wins over its item's proj: fields, but a disagreement is said (the trial's
    item said EPSG:32633 for a 32614 file, which only the geometry-distance check caught)."""
    import logging

    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "utm15.tif", width=128, height=128, seed=2)  # EPSG:32615
    for code, warned in (("EPSG:32633", True), ("EPSG:32615", False)):
        caplog.clear()
        item = _item(tmp_path, tif, {"proj:code": code})
        with caplog.at_level(logging.WARNING):
            report = ingest([str(item)], index=str(tmp_path / f"idx{code[-2:]}"), model=tiny_bundle, options=NATIVE)
        assert report.ok
        msgs = [r.getMessage() for r in caplog.records if "projection metadata" in r.getMessage()]
        assert bool(msgs) == warned, msgs
        if warned:
            assert "EPSG:32633" in msgs[0] and "EPSG:32615" in msgs[0] and "pj-item" in msgs[0]


def test_a_proj_transform_that_is_not_the_files_geotransform_is_warned_about(tmp_path, tiny_bundle, caplog):
    """Re-check: a proj:transform placing the raster elsewhere than the file's geotransform passed without a
    word (only a proj:code mismatch was warned about)."""
    import logging

    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "utm15.tif", width=128, height=128, seed=2)  # 1 m pixels from (500000, 3300000)
    own = [1.0, 0.0, 500000.0, 0.0, -1.0, 3300000.0]
    cases = {"same": (own, False), "moved": ([1.0, 0.0, 500100.0, 0.0, -1.0, 3300000.0], True),
             "scaled": ([2.0, 0.0, 500000.0, 0.0, -2.0, 3300000.0], True),
             "half a pixel": ([1.0, 0.0, 500000.4, 0.0, -1.0, 3300000.0], False)}
    for name, (transform, warned) in cases.items():
        caplog.clear()
        item = _item(tmp_path, tif, {"proj:code": "EPSG:32615", "proj:transform": transform, "proj:shape": [128, 128]})
        with caplog.at_level(logging.WARNING):
            report = ingest([str(item)], index=str(tmp_path / f"idx-{name.replace(' ', '-')}"), model=tiny_bundle,
                            options=NATIVE)
        assert report.ok
        msgs = [r.getMessage() for r in caplog.records if "proj:transform" in r.getMessage()]
        assert bool(msgs) == warned, (name, msgs)


def test_a_proj_shape_that_is_not_the_files_is_warned_about(tmp_path, tiny_bundle, caplog):
    """Geo trial of session 38: a wrong or swapped proj:shape passed without a word while proj:code and
    proj:transform mismatches were warned about."""
    import logging

    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "wide.tif", width=192, height=64, seed=2)   # 64 rows, 192 columns
    for name, shape, phrase in (("same", [64, 192], None), ("swapped", [192, 64], "(columns, rows: swapped?)"),
                                ("other", [1000, 900], "is not the raster's [64, 192] (rows, columns) (asset")):
        caplog.clear()
        item = _item(tmp_path, tif, {"proj:code": "EPSG:32615", "proj:shape": shape})
        with caplog.at_level(logging.WARNING):
            report = ingest([str(item)], index=str(tmp_path / f"idx-{name}"), model=tiny_bundle, options=NATIVE)
        assert report.ok
        msgs = [r.getMessage() for r in caplog.records if "proj:shape" in r.getMessage()]
        assert bool(msgs) == (phrase is not None), (name, msgs)
        if phrase:
            assert phrase in msgs[0] and f"proj:shape {shape}" in msgs[0], msgs
