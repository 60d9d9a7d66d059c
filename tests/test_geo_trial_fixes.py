"""Geo-correctness trial (trial-geo): map imagery east of 180 for lon/lat rasters (D3), an
item geometry far from its raster (D7), one antimeridian convention in /api/scenes (D8),
and the nits (D10): an assumed TIFF time zone, a leap second, a Feature without geometry."""

from __future__ import annotations

import io
import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest

from rsir_stac.errors import InputError
from rsir_stac.ingest import IngestOptions, ingest
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)
WORLD_M = 2 * math.pi * 6378137.0  # Web Mercator's world width


def _merc_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    size = WORLD_M / 2 ** z
    o = WORLD_M / 2
    return (-o + x * size, o - (y + 1) * size, -o + (x + 1) * size, o - y * size)


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def _expected(path, x, y, z, turn: float) -> np.ndarray:
    """The tile as rasterio.warp.reproject draws it (nearest), the tile moved ``turn`` worlds
    east so that it meets the raster's own longitudes (past 180)."""
    import rasterio
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    w, s, e, n = _merc_bounds(x, y, z)
    w, e = w + turn * WORLD_M, e + turn * WORLD_M
    dst = np.zeros((3, 256, 256), np.uint8)
    with rasterio.open(path) as src:
        for i in range(3):
            reproject(rasterio.band(src, i + 1), dst[i], dst_transform=from_bounds(w, s, e, n, 256, 256),
                      dst_crs="EPSG:3857", resampling=Resampling.nearest)
    return np.moveaxis(dst, 0, -1)


@pytest.mark.parametrize("name, west", [("across", 179.85), ("past180", 180.1)])
def test_lonlat_raster_past_180_is_drawn_on_both_sides(tmp_path, tiny_bundle, name, west):
    """D3: an EPSG:4326 raster at 179.85..180.15 (or 180.1..180.4, a 0..360 grid): the map
    tile west of 180 (lon -180..) drew nothing; it now matches rasterio's reprojection, as the
    tile east of 180 did."""
    pytest.importorskip("rio_tiler")
    from fastapi.testclient import TestClient
    from PIL import Image

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    res = 0.3 / 192
    path = make_geotiff(tmp_path / f"{name}.tif", width=192, height=192, crs="EPSG:4326", res=res,
                        origin=(west, -16.4), seed=4)
    idx = tmp_path / "idx"
    assert ingest([str(path)], index=str(idx), model=tiny_bundle, options=NATIVE).points_written == 9
    lat = -16.4 - 0.15
    with Index.open(str(idx), model=tiny_bundle) as index, \
            TestClient(create_app(index), base_url="http://127.0.0.1:8000") as c:
        (f,) = c.get("/api/scenes").json()["features"]
        z = min(f["properties"]["maxzoom"], 12)
        checked = 0
        for lon in (west + 0.05, west + 0.25):  # either side of 180 where the raster holds both
            wrapped = (lon + 180.0) % 360.0 - 180.0
            x, y = _tile(wrapped, lat, z)
            r = c.get(f"/api/imagery/{z}/{x}/{y}.png")
            assert r.status_code == 200, r.text
            got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
            want = _expected(path, x, y, z, 1.0 if wrapped < 0 else 0.0)
            covered = want.sum(-1) > 0
            assert covered.mean() > 0.05, (lon, "the raster lies in this tile")
            drawn = got[..., 3] > 0
            assert abs(drawn.mean() - covered.mean()) < 0.02, (lon, drawn.mean(), covered.mean())
            both = drawn & covered
            assert np.abs(got[..., :3][both].astype(float) - want[both]).mean() < 8.0, lon
            checked += 1
        assert checked == 2
        if name == "across":  # D8: the documented convention, east edge past 180 (not west past -180)
            w, _, e, _ = f["properties"]["bbox"]
            assert -180.0 <= w < 180.0 < e, f["properties"]["bbox"]


def test_a_scene_across_180_has_its_east_edge_past_180_whichever_tile_comes_first():
    """D8: /api/scenes gave a lon/lat scene across 180 a west edge past -180 when its first tile
    lay west of 180 (-180.15..-179.85) but a UTM scene an east edge past 180: now always east."""
    from shapely.geometry import Point, shape

    from rsir_stac.maptiles import scenes_from_payloads

    def tile(w, s, e, n):
        return {"item_id": "i", "href": "/x.tif", "bbox": [w, s, e, n],
                "corners": [{"lon": w, "lat": n}, {"lon": e, "lat": n}, {"lon": e, "lat": s}, {"lon": w, "lat": s}]}

    pay = [tile(-179.95, -16.1, -179.85, -16.0), tile(179.95, -16.1, -179.95, -16.0), tile(179.90, -16.1, 179.95, -16.0)]
    for order in (pay, pay[::-1]):
        (sc,) = scenes_from_payloads(order)
        assert sc.bbox == pytest.approx((179.90, -16.1, 180.15, -16.0))
        assert shape(sc.footprint).contains(Point(180.1, -16.05))


def _stac_item(root, tif, bbox):
    w, s, e, n = bbox
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "far-item", "bbox": [w, s, e, n],
           "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
           "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [],
           "assets": {"image": {"href": tif.name, "type": "image/tiff; application=geotiff", "roles": ["data"]}}}
    path = root / "item.json"
    path.write_text(json.dumps(doc))
    return path


def test_item_geometry_far_from_its_raster_is_warned_about(tmp_path, tiny_bundle, caplog):
    """D7: an item whose geometry is in Chad while its asset is a UTM 15N raster (Texas) was
    ingested without a word; now a warning names the item, the asset and the distance, the
    ingest report records it, the CLI shows it, and the footprints still follow the raster."""
    from rsir_stac.store import open_store

    tif = make_geotiff(tmp_path / "texas.tif", width=128, height=128, seed=5)  # EPSG:32615 at 29.8 N, -93 E
    item = _stac_item(tmp_path, tif, (10.0, 10.0, 11.0, 11.0))
    with caplog.at_level(logging.WARNING):
        report = ingest([str(item)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written > 0
    (m,) = report.items_misplaced
    assert m["item"] == "far-item" and m["asset"] == "image" and 9000 < m["distance_km"] < 12000
    assert "items_misplaced" in report.as_dict()
    (msg,) = [r.getMessage() for r in caplog.records if "does not overlap" in r.getMessage()]
    assert "far-item" in msg and "'image'" in msg and " km " in msg and "follow the raster" in msg
    with open_store(str(tmp_path / "idx"), read_only=True) as store:
        lons = [p.payload["location"]["lon"] for p in store.iter_points(with_vectors=False)]
    assert all(-93.5 < lon < -92.5 for lon in lons)  # the raster's place, not the item's
    # the CLI says it (a fresh index)
    r = subprocess.run([sys.executable, "-m", "rsir_stac.cli", "ingest", str(item), "--index", str(tmp_path / "idx2"),
                        "--model", str(tiny_bundle.path), "--tile-size", "64", "--native-gsd"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "does not overlap" in r.stderr and "far-item" in r.stderr
    # an item whose geometry covers its raster: nothing said
    caplog.clear()
    near = _stac_item(tmp_path, tif, (-94.0, 29.0, -92.0, 31.0))
    with caplog.at_level(logging.WARNING):
        report = ingest([str(near)], index=str(tmp_path / "idx3"), model=tiny_bundle, options=NATIVE)
    assert report.items_misplaced == [] and not [r for r in caplog.records if "does not overlap" in r.getMessage()]


def test_a_tiff_time_without_zone_is_said_to_be_taken_as_utc(tmp_path, tiny_bundle, caplog):
    """D10: TIFFTAG_DATETIME '2019:07:04 23:30:00' has no zone; it was silently stored as UTC."""
    tif = make_geotiff(tmp_path / "dated.tif", width=64, height=64, datetime_tag="2019:07:04 23:30:00")
    with caplog.at_level(logging.WARNING):
        report = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.ok
    said = [r.getMessage() for r in caplog.records if "no time zone" in r.getMessage()]
    assert len(said) == 1 and "2019:07:04 23:30:00" in said[0] and "UTC" in said[0] and "--datetime" in said[0]
    zoned = make_geotiff(tmp_path / "zoned.tif", width=64, height=64, datetime_tag="2019-07-04T23:30:00+02:00")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ingest([str(zoned)], index=str(tmp_path / "idx2"), model=tiny_bundle, options=NATIVE)
    assert not [r for r in caplog.records if "no time zone" in r.getMessage()]


def test_a_leap_second_in_a_time_filter_is_the_last_instant_of_its_minute():
    """D10: 2016-12-31T23:59:60Z (RFC 3339) was refused as malformed."""
    from datetime import datetime, timezone

    from rsir_stac.store.filters import parse_datetime_range

    last = datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert parse_datetime_range("2016-12-31T23:59:60Z") == (last, last)
    assert parse_datetime_range("2016-01-01/2016-12-31T23:59:60Z") == (datetime(2016, 1, 1, tzinfo=timezone.utc), last)
    assert parse_datetime_range("2017-01-01T01:59:60+02:00/..")[0] == last
    with pytest.raises(InputError, match="names no real time: there is no second 61"):
        parse_datetime_range("2016-12-31T23:59:61Z")
    for not_leap in ("2016-12-31T10:20:60Z", "2016-12-31T23:58:60Z", "2016-12-31T23:59:60+02:00"):
        with pytest.raises(InputError, match="second 60 is a leap second only at 23:59 UTC"):
            parse_datetime_range(not_leap)


def _leap_item(tmp_path, tif, item_id, when):
    item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None,
            "properties": {"datetime": when, "start_datetime": when, "end_datetime": when}, "links": [],
            "assets": {"image": {"href": str(tif), "type": "image/tiff; application=geotiff", "roles": ["data"]}}}
    path = tmp_path / f"{item_id}.json"
    path.write_text(json.dumps(item))
    return path, item


def test_a_stac_item_at_a_leap_second_is_read_and_found_by_the_same_time(tmp_path):
    """Re-check N2: an item with "datetime": "2016-12-31T23:59:60Z" (RFC 3339; STAC's own
    example catalogues hold such times) was refused as "not a valid STAC item (second must be in
    0..59)", alone and in a catalogue; a second 60 at another minute stays refused."""
    from rsir_stac.errors import StacError
    from rsir_stac.search import Index

    tif = make_geotiff(tmp_path / "leap.tif", width=128, height=128)
    item_path, _ = _leap_item(tmp_path, tif, "leap", "2016-12-31T23:59:60Z")
    cat = {"type": "Catalog", "stac_version": "1.0.0", "id": "cat", "description": "d",
           "links": [{"rel": "item", "href": "./inner.json", "type": "application/json"}]}
    inner, inner_doc = _leap_item(tmp_path, tif, "inner", "2017-01-01T05:29:60+05:30")
    (tmp_path / "catalog.json").write_text(json.dumps(cat))
    report = ingest([str(item_path), str(tmp_path / "catalog.json")], index=str(tmp_path / "idx"),
                    options=NATIVE)
    assert report.ok and report.items_done == 2, report
    with Index.open(str(tmp_path / "idx")) as idx:
        times = {p.payload["item_id"]: p.payload["datetime"] for p in idx.store.iter_points(with_vectors=False)}
        assert set(times.values()) == {"2016-12-31T23:59:59.999999Z"}, times
        from rsir_stac.store.filters import SearchFilter, parse_datetime_range

        start, end = parse_datetime_range("2016-12-31T23:59:60Z")
        hits = idx.search(pixels=np.zeros((64, 64, 3), np.uint8), k=50, per_item=None,
                          flt=SearchFilter(start=start, end=end)).hits
        assert {h.payload["item_id"] for h in hits} == {"leap", "inner"}
    bad, _ = _leap_item(tmp_path, tif, "bad", "2016-12-31T10:20:60Z")
    with pytest.raises(StacError, match="not a valid STAC Item: its datetime .* second 60 is a leap second only at "
                                        "23:59 UTC"):
        ingest([str(bad)], index=str(tmp_path / "idx2"), options=NATIVE)


def test_a_feature_without_geometry_is_named_as_such(tmp_path):
    """D10: --within on a Feature with "geometry": null said "is not a GeoJSON object"."""
    from rsir_stac.store.filters import load_polygon

    path = tmp_path / "nogeom.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": None}))
    with pytest.raises(InputError) as info:
        load_polygon(path)
    msg = str(info.value)
    assert "Feature with no geometry" in msg and "not a GeoJSON object" not in msg and "\n" not in msg


def test_a_coarse_scene_with_oblong_pixels_says_how_its_two_gsds_relate(tmp_path, tiny_bundle, caplog):
    """Trial: 'native GSD 67 m is much coarser ...; tiling at its own GSD, 97.7 m' (pixels 97.7 x
    45.9 m): two 'own GSD' figures in one sentence.  The first is now said to be the geometric mean."""
    tif = make_geotiff(tmp_path / "oblong.tif", width=256, height=256, res=(100.0, 25.0), seed=3)
    with caplog.at_level(logging.WARNING):
        report = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                        options=IngestOptions(tile_size=64, min_valid=0.0))
    assert report.ok
    (msg,) = [r.getMessage() for r in caplog.records if "much coarser" in r.getMessage()]
    assert "native GSD 50 m (the geometric mean of its pixel sides)" in msg, msg
    assert "square pixels of its longer side, 100 m" in msg, msg
