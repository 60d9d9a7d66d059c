"""Fixes after the thirty-eighth session's geo-correctness trial (/work/exp38/geo/REPORT.md):

* a VRT mosaic whose source file is missing fails its item naming the file (GDAL returned zeros for
  the missing part after one failed read: its tiles were indexed black, exit 0);
* a projected raster whose geotransform is in degrees (pixels of 1e-5 "metres" near the false
  origin) is refused instead of being placed thousands of kilometres away;
* a geographic CRS in grads is range-checked in degrees (95 grads is 85.5 degrees north).

Real GeoTIFFs and VRTs written with rasterio, real ingest into Edge indexes.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index


def _tif(path, crs, transform, width=128, height=128, seed=0):
    rng = np.random.default_rng(seed)
    data = np.kron(rng.integers(20, 235, (3, height // 16, width // 16)), np.ones((16, 16))).astype("uint8")
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=crs,
                       transform=transform) as ds:
        ds.write(data)
    return path


def _mosaic_vrt(path, parts, width, height, crs, transform):
    """A VRT placing each ``(file, x offset px)`` of ``parts`` (128 x 128 px each) side by side."""
    bands = []
    for b in (1, 2, 3):
        srcs = "".join(f'<SimpleSource><SourceFilename relativeToVRT="1">{f}</SourceFilename><SourceBand>{b}'
                       f'</SourceBand><SrcRect xOff="0" yOff="0" xSize="128" ySize="128"/><DstRect xOff="{x}" '
                       f'yOff="0" xSize="128" ySize="128"/></SimpleSource>' for f, x in parts)
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}">{srcs}</VRTRasterBand>')
    path.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs}</SRS>'
                    f'<GeoTransform>{", ".join(str(v) for v in transform.to_gdal())}</GeoTransform>'
                    + "".join(bands) + "</VRTDataset>")
    return path


def test_a_vrt_mosaic_with_a_missing_source_fails_naming_it(tmp_path, tiny_bundle):
    t = from_origin(500000, 3300000, 1, 1)
    _tif(tmp_path / "a.tif", "EPSG:32633", t, seed=1)
    b = _tif(tmp_path / "b.tif", "EPSG:32633", from_origin(500128, 3300000, 1, 1), seed=2)
    vrt = _mosaic_vrt(tmp_path / "mosaic.vrt", [("a.tif", 0), ("b.tif", 128)], 256, 128, "EPSG:32633", t)
    whole = ingest([str(vrt)], index=str(tmp_path / "whole"), model=tiny_bundle,
                   options=IngestOptions(tile_size=64, native_gsd=True))
    assert whole.ok and whole.points_written == 8
    kept = b.read_bytes()
    b.unlink()
    idx = tmp_path / "idx"
    rep = ingest([str(vrt)], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=64, native_gsd=True))
    (err,) = [f["error"] for f in rep.items_failed]
    assert "is a VRT whose source file b.tif does not exist" in err and "gdalbuildvrt" in err, err
    assert rep.points_written == 0 and not idx.exists()
    b.write_bytes(kept)   # restored: the same run indexes the mosaic as the whole one
    rep = ingest([str(vrt)], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=64, native_gsd=True))
    assert rep.ok and rep.points_written == 8
    with Index.open(str(tmp_path / "whole"), model=tiny_bundle) as w, Index.open(str(idx), model=tiny_bundle) as i:
        a = {p.id: p.vector for p in w.store.iter_points(with_vectors=True)}
        c = {p.id: p.vector for p in i.store.iter_points(with_vectors=True)}
    assert a.keys() == c.keys() and all(np.allclose(a[k], c[k]) for k in a)


@pytest.mark.parametrize("crs, origin, px, phrase", [
    ("EPSG:32633", (15.0, 45.0), 1e-5, "looks like a longitude and latitude"),   # degrees under UTM
    ("EPSG:3857", (15.0, 45.0), 2e-4, "looks like a longitude and latitude"),    # 0.2 mm at Null Island
    ("EPSG:3857", (1_600_000.0, 5_600_000.0), 5e-5, "finer than any aerial or satellite image"),
])
def test_degrees_under_a_projected_crs_are_refused(tmp_path, tiny_bundle, crs, origin, px, phrase):
    tif = _tif(tmp_path / "s.tif", crs, from_origin(*origin, px, px))
    idx = tmp_path / "idx"
    rep = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=64, native_gsd=True))
    (err,) = [f["error"] for f in rep.items_failed]
    assert phrase in err and "rio edit-info --crs EPSG:4326" in err and "\n" not in err, err
    assert not idx.exists()


def test_fine_pixels_away_from_the_origin_are_still_read(tmp_path, tiny_bundle):
    """A 0.5 mm close-range raster at a real UTM position is not refused."""
    tif = _tif(tmp_path / "s.tif", "EPSG:32633", from_origin(480000, 5000000, 0.0005, 0.0005))
    rep = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                 options=IngestOptions(tile_size=64, native_gsd=True))
    assert rep.ok and rep.points_written == 4


def test_a_crs_in_grads_is_range_checked_in_degrees(tmp_path, tiny_bundle):
    """NTF (Paris) in grads: 95 gr is 85.5 degrees north and ingests there; 101 gr is past the pole."""
    tif = _tif(tmp_path / "g.tif", "EPSG:4807", from_origin(2.0, 95.0, 0.01, 0.01))
    idx = tmp_path / "idx"
    rep = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=64, gsd=100.0))
    assert rep.ok and rep.points_written > 0, rep
    with Index.open(str(idx), model=tiny_bundle) as index:
        lats = [p.payload["location"]["lat"] for p in index.store.iter_points(with_vectors=False)]
    assert lats and all(84.3 < lat < 85.5 for lat in lats), lats
    bad = _tif(tmp_path / "b.tif", "EPSG:4807", from_origin(2.0, 101.0, 0.01, 0.01))
    rep = ingest([str(bad)], index=str(tmp_path / "idx2"), model=tiny_bundle,
                 options=IngestOptions(tile_size=64, native_gsd=True))
    (err,) = [f["error"] for f in rep.items_failed]
    assert "reaches latitude 90.9" in err, err


def test_a_small_coarse_scene_is_tiled_at_the_models_gsd_where_its_padded_tile_keeps_min_valid(tmp_path):
    """40 x 30 px of 1 m with the shipped model (0.3 m, 256 px): at 1 m its padded tile is 1.8 % scene, at 0.3 m
    20 %.  With --min-valid 0.19 it is tiled at 0.3 m (it was tiled at 1 m and skipped); with the default the
    hint gives the share and a --min-valid that, passed, keeps the tile."""
    from tests.conftest import make_geotiff
    from rsir_stac.store import open_store

    scene = make_geotiff(tmp_path / "tiny.tif", width=40, height=30, res=1.0)
    rep = ingest([str(scene)], index=str(tmp_path / "idx"), options=IngestOptions(min_valid=0.19))
    assert rep.ok and rep.points_written == 1, rep
    with open_store(str(tmp_path / "idx"), read_only=True) as s:
        assert [round(p.payload["gsd"], 3) for p in s.iter_points(with_vectors=False)] == [0.3]
    rep = ingest([str(scene)], index=str(tmp_path / "idx2"))
    (small,) = rep.items_small
    assert "its one padded tile is 1.8% scene, under --min-valid 0.5" in small["hint"], small
    keep = float(small["hint"].split("pass --min-valid ")[1].split()[0])
    rep = ingest([str(scene)], index=str(tmp_path / "idx3"), options=IngestOptions(min_valid=keep))
    assert rep.ok and rep.points_written == 1, rep


def test_a_vrt_of_vrts_with_a_missing_source_fails_naming_it(tmp_path, tiny_bundle):
    """Re-check of session 38: the missing file one VRT deeper (a mosaic of mosaics) was still indexed black."""
    t = from_origin(500000, 3300000, 1, 1)
    _tif(tmp_path / "a.tif", "EPSG:32633", t, seed=1)
    _mosaic_vrt(tmp_path / "inner.vrt", [("a.tif", 0), ("b.tif", 128)], 256, 128, "EPSG:32633", t)
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">'
                    f'inner.vrt</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
                    for b in (1, 2, 3))
    outer = tmp_path / "outer.vrt"
    outer.write_text(f'<VRTDataset rasterXSize="256" rasterYSize="128"><SRS>EPSG:32633</SRS><GeoTransform>'
                     f'{", ".join(str(v) for v in t.to_gdal())}</GeoTransform>{bands}</VRTDataset>')
    rep = ingest([str(outer)], index=str(tmp_path / "idx"), model=tiny_bundle,
                 options=IngestOptions(tile_size=64, native_gsd=True))
    (err,) = [f["error"] for f in rep.items_failed]
    assert "outer.vrt is a VRT whose source file b.tif does not exist" in err, err
    assert rep.points_written == 0
