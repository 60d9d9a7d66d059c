"""Issue 13, case 6: every refusal to read a raster names the real cause and a
fix that works: following the advice gets past that cause."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsir_stac.errors import RasterError, RsirError, SourceNotFoundError
from rsir_stac.tiling import SceneReader, read_image
from tests.conftest import make_geotiff, write_raster

pytestmark = [pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

CLOUD_ENV = [k for k in os.environ if k.startswith(("AWS_", "GS_", "GOOGLE_", "AZURE_", "CPL_AWS", "OSS_"))]


@pytest.fixture()
def no_credentials(monkeypatch, tmp_path):
    """No cloud credentials anywhere, a fast failing network."""
    for k in CLOUD_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, ~/.boto, ~/.azure
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setenv("CPL_GCE_CHECK_LOCAL_FILES", "NO")  # not on Google Compute Engine
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # nothing listens there: fail fast
    return monkeypatch


def _error(href) -> RsirError:
    with pytest.raises(RsirError) as ei:
        SceneReader.open(href)
    assert "\n" not in str(ei.value)
    return ei.value


@pytest.mark.parametrize("href,advice,fix", [
    ("s3://example-bucket/scene.tif", "AWS_NO_SIGN_REQUEST=YES", {"AWS_NO_SIGN_REQUEST": "YES"}),
    ("/vsis3/example-bucket/scene.tif", "AWS_NO_SIGN_REQUEST=YES", {"AWS_NO_SIGN_REQUEST": "YES"}),
    ("gs://example-bucket/scene.tif", "GS_NO_SIGN_REQUEST=YES", {"GS_NO_SIGN_REQUEST": "YES"}),
    ("az://container/scene.tif", "AZURE_NO_SIGN_REQUEST=YES",
     {"AZURE_STORAGE_ACCOUNT": "exampleaccount", "AZURE_NO_SIGN_REQUEST": "YES"}),
])
def test_cloud_href_without_credentials_names_them(no_credentials, href, advice, fix):
    err = _error(href)
    msg = str(err)
    assert isinstance(err, SourceNotFoundError)
    assert href in msg and "credentials" in msg.lower() or "AZURE_STORAGE_ACCOUNT" in msg
    assert advice in msg
    assert "give a GeoTIFF" not in msg  # the file type was never the problem
    for k, v in fix.items():  # follow the advice: the credential problem is gone, the network is next
        no_credentials.setenv(k, v)
    after = str(_error(href))
    assert advice not in after and "credentials" not in after.lower()
    assert "cannot be fetched" in after or "does not exist" in after or "timed out" in after


def test_stac_asset_on_s3_reports_credentials_not_file_type(no_credentials, tmp_path, tiny_bundle):
    from rsir_stac.ingest import IngestOptions, ingest

    item = {"type": "Feature", "stac_version": "1.0.0", "id": "s2", "geometry": None,
            "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [],
            "assets": {"visual": {"href": "s3://sentinel-cogs/sentinel-s2-l2a-cogs/x/TCI.tif",
                                  "type": "image/tiff; application=geotiff", "roles": ["visual"]}}}
    doc = tmp_path / "item.json"
    doc.write_text(json.dumps(item))
    report = ingest([str(doc)], index=str(tmp_path / "idx"), model=tiny_bundle, options=IngestOptions())
    (failed,) = report.items_failed
    assert "AWS_NO_SIGN_REQUEST=YES" in failed["error"] and "GeoTIFF" not in failed["error"]


def test_bare_s3_source_is_a_remote_raster_not_a_missing_path(no_credentials):
    from rsir_stac.stac import iter_scenes

    (scene,) = iter_scenes(["s3://example-bucket/T33TWL.tif"])
    assert scene.href == "s3://example-bucket/T33TWL.tif" and scene.item_id.startswith("T33TWL-")


def test_query_image_url_fetch_error_is_not_a_decoding_error(no_credentials):
    with pytest.raises(SourceNotFoundError, match="AWS_NO_SIGN_REQUEST=YES"):
        read_image("s3://example-bucket/query.tif")


def test_cut_short_tiff_says_re_download(tmp_path):
    good = make_geotiff(tmp_path / "good.tif", width=256, height=256)
    data = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 3])
    try:
        with SceneReader.open(str(cut), tile_size=64) as scene:
            for ref in scene.windows():
                scene.read(ref)
        pytest.skip("GDAL read the cut file without error")
    except RasterError as err:
        assert "re-download" in str(err) and "cut.tif" in str(err)
    # following the advice (a complete copy) reads
    with SceneReader.open(str(good), tile_size=64) as scene:
        assert all(scene.read(r) is not None for r in scene.windows())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_says_permissions(tmp_path):
    tif = make_geotiff(tmp_path / "locked.tif")
    tif.chmod(0)
    try:
        err = _error(str(tif))
        assert "permission denied" in str(err) and "chmod" in str(err)
        from rsir_stac.stac import iter_scenes

        with pytest.raises(RsirError, match="permission denied.*chmod"):
            list(iter_scenes([str(tif)]))
        with pytest.raises(RsirError, match="permission denied.*chmod"):
            read_image(tif)
    finally:
        tif.chmod(0o644)
    SceneReader.open(str(tif)).close()  # following the advice works


def _rio(*args):
    """rasterio's own command line (installed with rsir-stac), as the messages advise it."""
    import subprocess
    import sys
    from pathlib import Path

    subprocess.run([str(Path(sys.executable).with_name("rio")), *args], check=True, capture_output=True)


def test_no_crs_advice_works(tmp_path):
    data = np.full((3, 64, 64), 7, np.uint8)
    tif = write_raster(tmp_path / "nocrs.tif", data, crs=None, transform=Affine(1, 0, 500000, 0, -1, 3300000))
    err = _error(str(tif))
    assert "has no CRS" in str(err) and "rio edit-info --crs EPSG:32633 FILE" in str(err)
    _rio("edit-info", "--crs", "EPSG:32615", str(tif))
    SceneReader.open(str(tif)).close()


def test_no_geotransform_advice_works(tmp_path):
    data = np.full((3, 64, 64), 7, np.uint8)
    tif = write_raster(tmp_path / "notransform.tif", data, crs="EPSG:32615")
    err = _error(str(tif))
    assert "has no geotransform" in str(err) and "rio edit-info --transform" in str(err)
    _rio("edit-info", "--transform", "[1, 0, 500000, 0, -1, 3300000]", str(tif))
    SceneReader.open(str(tif)).close()


def test_neither_crs_nor_geotransform_is_one_message_naming_both(tmp_path):
    """A raster with neither was sent to assign a CRS, and then failed again for the
    geotransform: one message names both, and its one command fixes both."""
    tif = write_raster(tmp_path / "bare.tif", np.full((3, 64, 64), 7, np.uint8), crs=None)
    err = _error(str(tif))
    assert "no CRS and no geotransform" in str(err) and "--crs" in str(err) and "--transform" in str(err)
    _rio("edit-info", "--crs", "EPSG:32615", "--transform", "[1, 0, 500000, 0, -1, 3300000]", str(tif))
    SceneReader.open(str(tif)).close()


def test_impossible_georeferencing_is_refused_and_the_advice_works(tmp_path, tiny_bundle):
    """Geo trial: a lon/lat raster reaching latitude 100 and a geotransform with a zero pixel size
    were ingested (exit 0) into tiles with centres above 90 N or all at one point."""
    from rsir_stac.ingest import IngestOptions, ingest

    data = np.full((3, 64, 64), 90, np.uint8)
    polar = write_raster(tmp_path / "lat100.tif", data, crs="EPSG:4326", transform=Affine(0.4, 0, 10, 0, -0.4, 100))
    flat = write_raster(tmp_path / "flat.tif", data, crs="EPSG:32615", transform=Affine(0, 0, 500000, 0, 0, 3300000))
    east = write_raster(tmp_path / "lon500.tif", data, crs="EPSG:4326", transform=Affine(0.4, 0, 500, 0, -0.4, 40))
    for tif, phrase in ((polar, "reaches latitude 100, beyond ±90"), (flat, "a zero pixel size"),
                        (east, "reaches longitude 525.6, beyond both -180..180 and 0..360")):
        err = _error(str(tif))
        assert phrase in str(err) and "rio edit-info --transform" in str(err), str(err)
        rep = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                     options=IngestOptions(tile_size=8, native_gsd=True))
        assert not rep.ok and rep.points_written == 0 and phrase in rep.items_failed[0]["error"]
    _rio("edit-info", "--transform", "[0.4, 0, 10, 0, -0.4, 80]", str(polar))
    SceneReader.open(str(polar)).close()
    # a grid whose top edge is the pole (or half a pixel past it: pixel-centre registration) is fine
    edge = write_raster(tmp_path / "edge.tif", data, crs="EPSG:4326", transform=Affine(0.5, 0, 0, 0, -0.5, 90.25))
    SceneReader.open(str(edge)).close()


def test_a_named_pipe_is_refused_not_read(tmp_path):
    """A FIFO named .tif would block the reader (and a service's job slot) forever."""
    import os

    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    with pytest.raises(RasterError, match="not a regular file"):
        SceneReader.open(str(fifo))


def test_rpc_and_engineering_crs_advice(tmp_path):
    """RPC-only rasters are sent to orthorectification (not to gdal_edit, which then says "no
    geotransform"); a local engineering CRS is named in one short line."""
    from rasterio.rpc import RPC

    data = np.full((3, 64, 64), 7, np.uint8)
    rpc = RPC(height_off=0, height_scale=100, lat_off=45, lat_scale=0.01, line_den_coeff=[1] + [0] * 19,
              line_num_coeff=[0, 0, -1] + [0] * 17, line_off=32, line_scale=32, long_off=15, long_scale=0.01,
              samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=32, samp_scale=32)
    for crs in (None, "EPSG:4326"):
        tif = write_raster(tmp_path / f"rpc{crs is None}.tif", data, crs=crs, rpcs=rpc)
        err = _error(str(tif))
        assert "only by RPCs" in str(err) and "gdalwarp -rpc" in str(err)
    local = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    tif = write_raster(tmp_path / "local.tif", data, crs=local, transform=Affine(1, 0, 100, 0, -1, 200))
    err = _error(str(tif))
    assert "local (engineering) CRS, 'site grid'" in str(err) and "\n" not in str(err) and len(str(err)) < 400


def test_band_advice_works(tmp_path):
    tif = make_geotiff(tmp_path / "six.tif", count=6)
    err = _error(str(tif))
    assert "pass --bands R,G,B" in str(err)
    SceneReader.open(str(tif), bands=(4, 3, 2)).close()
    with pytest.raises(RasterError, match=r"band 7 does not exist; pass --bands within 1\.\.6"):
        SceneReader.open(str(tif), bands=(7, 3, 2))


def test_not_a_raster_and_folder(tmp_path):
    junk = tmp_path / "notes.tif"
    junk.write_text("not a tiff")
    msg = str(_error(str(junk)))
    assert "is not a raster GDAL can read" in msg and "re-download" in msg
    assert "is a folder" in str(_error(str(tmp_path)))
    assert isinstance(_error(str(tmp_path / "missing.tif")), SourceNotFoundError)
