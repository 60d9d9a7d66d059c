"""Ingest real scenes from ../shared/data (skipped when absent) and generated
rasters covering 1/3/4 bands, uint8/uint16, nodata and alpha."""

from collections import Counter

import pytest

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.store import open_store
from tests.conftest import make_geotiff

REAL = {
    "opengeos_naip_m_4709963_se_14_1_20200831.tif": "EPSG:26914",   # NAIP, UTM, 4 bands
    "opengeos_landsat_2020.tif": "EPSG:4326",                         # geographic, 4 bands
    "rasterio_cogeo.tif": "EPSG:3857",                                # web mercator COG
    "riotiler_scene_band1.tif": "EPSG:32629",                         # 1 band uint16, nodata
    "riotiler_mosaic_cog1.tif": "EPSG:32618",                         # 3 band uint16
    "riotiler_pix4d_alpha_nodata.tif": "EPSG:32750",                  # drone, alpha band
}


def _bounds_lonlat(path):
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as ds:
        return transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)


def test_ingest_real_geotiffs_and_stac_catalog(tmp_path, shared_data, tiny_bundle):
    files = [shared_data / "geotiff" / f for f in REAL]
    catalog = shared_data / "stac" / "planet-disaster" / "collection.json"
    idx = tmp_path / "idx"
    report = ingest([*map(str, files), str(catalog)], index=str(idx), model=tiny_bundle,
                    options=IngestOptions(tile_size=64))
    assert report.ok, report.as_dict()
    assert report.items_done == len(files) + 5  # the catalog holds 5 items
    with open_store(str(idx), read_only=True) as store:
        pts = list(store.iter_points(with_vectors=False))
        assert store.count() == report.points_written == len(pts) > 0
    # a bare raster's item id is "<stem>-<12 hex digits of its path digest>" (README, "Scene identity")
    def stem_of(payload):
        return payload["item_id"][:-13] if payload["collection"] is None else payload["item_id"]

    per_item = Counter(stem_of(p.payload) for p in pts)
    crs_of = {stem_of(p.payload): p.payload["crs"] for p in pts}
    for f, crs in REAL.items():
        stem = f.rsplit(".", 1)[0]
        assert per_item[stem] > 0, f"no tiles from {f}"
        assert crs_of[stem] == crs
        w, s, e, n = _bounds_lonlat(shared_data / "geotiff" / f)
        for p in pts:
            if stem_of(p.payload) == stem:
                lon, lat = p.payload["location"]["lon"], p.payload["location"]["lat"]
                assert w - 1e-6 <= lon <= e + 1e-6 and s - 1e-6 <= lat <= n + 1e-6
    stac_pts = [p for p in pts if p.payload["collection"]]
    assert stac_pts and all(p.payload["datetime"].startswith("2017-08-31") for p in stac_pts)
    assert {p.payload["collection"] for p in stac_pts} == {"planet-disaster-data"}


@pytest.mark.parametrize("kind", ["grey_uint16_nodata", "rgba_alpha", "rgb_uint16"])
def test_ingest_band_and_mask_variants(tmp_path, tiny_bundle, kind):
    import numpy as np

    if kind == "grey_uint16_nodata":
        path = make_geotiff(tmp_path / "g.tif", count=1, dtype="uint16", nodata=0, width=256, height=256)
        import rasterio

        with rasterio.open(path, "r+") as ds:  # top half nodata
            a = ds.read(1)
            a[:128] = 0
            ds.write(a, 1)
        expect = 8  # 4x4 tiles, the top 8 are empty
    elif kind == "rgba_alpha":
        path = make_geotiff(tmp_path / "a.tif", count=3, alpha=True, width=256, height=256)
        expect = 8  # left half transparent
    else:
        path = make_geotiff(tmp_path / "u.tif", count=3, dtype="uint16", width=256, height=256)
        expect = 16
    idx = tmp_path / "idx"
    r = ingest([str(path)], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=64, native_gsd=True))
    assert r.ok and r.points_written == expect and r.tiles_empty == 16 - expect
    with open_store(str(idx), read_only=True) as store:
        vecs = np.stack([p.vector for p in store.iter_points()])
    assert np.isfinite(vecs).all() and vecs.shape == (expect, tiny_bundle.dim)
