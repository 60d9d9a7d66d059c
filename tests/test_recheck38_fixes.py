"""Fixes of the findings the thirty-eighth session's re-check left open (N2-N6 of its closing note):

* a VRT whose source exists but cannot be opened (a text or empty file, a missing ``/vsizip/``
  member, a URL answering 404) fails its item naming the source; GDAL returned zeros for that part
  after one failed read, so its tiles were indexed black with exit 0 (N4);
* degrees under a projected CRS with 0.001 or 0.01 degree pixels, which passed the pixel-size rule,
  are refused where the CRS's area of use (or lon/lat 0, 0) says the numbers cannot be metres; a
  site grid and a polar CRS at its pole are still read (N5);
* a JSON number of more than 4,300 digits is a one-line 4xx or error, not a 500 or a crash (N6);
* the service's block limit covers overviews in a SubIFD (tag 330) and a URL raster's internal
  mask (N2, N3);
* a server without HTTP ranges is named as the cause (N7); in a catalogue read over http a path or
  scheme-relative reference is a URL on that server (N9).

Then what two more re-checks of these fixes found (session 39, tests marked "second/third re-check"):
a catalogue fetched over http below a local root named local files; VRTs whose sources are GDAL
connection strings were refused; a ``<MaskBand>`` source went unchecked; the block limit missed a
VRT's sources, ``.ovr``/``.msk`` sidecars and a URL's SubIFD masks; deep JSON nesting crashed file
readers; the map answered 404 for a scene over the block limit.

Real GeoTIFFs (rasterio, tifffile), real VRTs, a real HTTP server, real Edge indexes and the real app.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import rasterio

from rsir_stac.ingest import IngestOptions, ingest
from tests.conftest import make_geotiff, serving

NATIVE = IngestOptions(tile_size=64, native_gsd=True)


def _vrt(path, sources, side=128):
    """A 3-band VRT placing each source (a path or GDAL name, 128 x 128 px) side by side."""
    bands = []
    for b in (1, 2, 3):
        srcs = "".join(f'<SimpleSource><SourceFilename relativeToVRT="{int(not f.startswith("/"))}">{f}'
                       f'</SourceFilename><SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{side}" '
                       f'ySize="{side}"/><DstRect xOff="{i * side}" yOff="0" xSize="{side}" ySize="{side}"/>'
                       '</SimpleSource>' for i, f in enumerate(sources))
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}">{srcs}</VRTRasterBand>')
    path.write_text(f'<VRTDataset rasterXSize="{side * len(sources)}" rasterYSize="{side}"><SRS>EPSG:32615</SRS>'
                    '<GeoTransform>500000, 1, 0, 3300000, 0, -1</GeoTransform>' + "".join(bands) + "</VRTDataset>")
    return path


def _fails_naming(vrt, source, tmp_path, bundle):
    idx = tmp_path / f"{vrt.stem}.idx"
    rep = ingest([str(vrt)], index=str(idx), model=bundle, options=NATIVE)
    (err,) = [f["error"] for f in rep.items_failed]
    assert f"is a VRT whose source {source} cannot be opened" in err and "gdalbuildvrt" in err, err
    assert "\n" not in err and rep.points_written == 0 and not idx.exists()


def test_a_vrt_whose_source_cannot_be_opened_fails_naming_it(tmp_path, tiny_bundle):
    a = make_geotiff(tmp_path / "a.tif", width=128, height=128, seed=1)
    (tmp_path / "text.tif").write_text("not a raster\n" * 20)
    (tmp_path / "empty.tif").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.write(a, "a.tif")
    zipped = f"/vsizip/{tmp_path / 'z.zip'}"
    ok = _vrt(tmp_path / "ok.vrt", ["a.tif", f"{zipped}/a.tif"])
    rep = ingest([str(ok)], index=str(tmp_path / "ok.idx"), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == 8, rep
    for name, source in (("text", "text.tif"), ("empty", "empty.tif"), ("member", f"{zipped}/gone.tif")):
        vrt = _vrt(tmp_path / f"{name}.vrt", ["a.tif", source])
        _fails_naming(vrt, source if source.startswith("/") else str(tmp_path / source), tmp_path, tiny_bundle)
    # one VRT deeper: the mosaic of mosaics names the inner VRT's unreadable source
    _vrt(tmp_path / "inner.vrt", ["a.tif", "text.tif"])
    outer = _vrt(tmp_path / "outer.vrt", ["a.tif", "inner.vrt"])
    _fails_naming(outer, str(tmp_path / "text.tif"), tmp_path, tiny_bundle)


def test_a_vrt_whose_source_url_answers_404_fails_naming_it(tmp_path, tiny_bundle):
    www = tmp_path / "www"
    www.mkdir()
    make_geotiff(www / "a.tif", width=128, height=128, seed=1)
    with serving(www, tmp_path / "www.log") as port:
        base = f"/vsicurl/http://127.0.0.1:{port}"
        ok = _vrt(tmp_path / "ok.vrt", [f"{base}/a.tif", f"{base}/a.tif"])
        assert ingest([str(ok)], index=str(tmp_path / "ok.idx"), model=tiny_bundle, options=NATIVE).ok
        _fails_naming(_vrt(tmp_path / "gone.vrt", [f"{base}/a.tif", f"{base}/gone.tif"]), f"{base}/gone.tif",
                      tmp_path, tiny_bundle)


@pytest.mark.parametrize("crs, corner, px, where", [
    ("EPSG:32633", (15.0, 45.0), 0.001, "outside where the CRS is used (lon 12..18"),
    ("EPSG:32633", (15.0, 45.0), 0.01, "outside where the CRS is used"),
    ("EPSG:3857", (15.0, 45.0), 0.01, "in the sea at lon/lat 0, 0"),
    ("EPSG:5070", (-100.0, 40.0), 0.01, "outside where the CRS is used"),
    # second re-check, B3: false origins inside their area of use, 0..360 longitudes, 1 degree pixels
    ("EPSG:27700", (-1.5, 52.0), 0.001, "while read as degrees it lies inside where the CRS is used"),
    ("EPSG:6677", (139.7, 35.7), 0.001, "while read as degrees it lies inside where the CRS is used"),
    ("EPSG:27700", (-1.5, 52.0), 0.05, "while read as degrees it lies inside where the CRS is used"),  # centre out
    ("EPSG:32633", (190.0, 45.0), 0.001, "outside where the CRS is used"),
    ("EPSG:3857", (-180.0, 90.0), 1.0, "in the sea at lon/lat 0, 0"),
])
def test_degree_pixels_under_a_projected_crs_are_refused(tmp_path, tiny_bundle, crs, corner, px, where):
    tif = make_geotiff(tmp_path / "s.tif", width=128, height=128, crs=crs, res=px, origin=corner)
    idx = tmp_path / "idx"
    rep = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=NATIVE)
    (err,) = [f["error"] for f in rep.items_failed]
    assert f"its corner ({corner[0]:g}, {corner[1]:g}) looks like a longitude and latitude" in err, err
    assert where in err and "rio edit-info --crs EPSG:4326" in err and "\n" not in err, err
    assert not idx.exists()


@pytest.mark.parametrize("crs, corner, px, warns", [
    ("+proj=tmerc +lat_0=45 +lon_0=10 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m", (-20.0, 30.0), 0.02, True),  # site
    ("EPSG:3031", (-50.0, 50.0), 0.05, True),            # a polar stereographic raster at the South Pole
    ("EPSG:32633", (480000.0, 5000000.0), 0.01, False),  # 1 cm drone pixels at a real UTM position
    ("+proj=tmerc +lat_0=45 +lon_0=10 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m", (-0.05, 0.05), 0.0008, True),
    # third re-check: 50 m from Japan CS IX's origin (Tokyo) as metres, the Atlantic as degrees: a survey
    ("EPSG:6677", (-50.0, 40.0), 0.01, False),
])
def test_fine_pixels_near_a_crs_origin_that_is_real_ground_are_read(tmp_path, tiny_bundle, caplog, crs, corner, px,
                                                                   warns):
    """Read; where nothing tells degrees from a survey near a CRS's origin (no area of use, a polar cap),
    with a warning that says how to tell and what to do."""
    tif = make_geotiff(tmp_path / "s.tif", width=128, height=128, crs=crs, res=px, origin=corner)
    with caplog.at_level("WARNING", logger="rsir_stac"):
        rep = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == 4, rep
    warned = [r.getMessage() for r in caplog.records if "looks like a longitude and latitude" in r.getMessage()]
    assert bool(warned) == warns, warned
    assert all("rio edit-info --crs EPSG:4326" in w and "if it is a survey near that origin" in w for w in warned)


BIG = "9" * 5000


def test_a_json_number_of_5000_digits_is_a_one_line_error(tmp_path, tiny_bundle):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    tif = make_geotiff(tmp_path / "s.tif", width=128, height=128)
    idx = tmp_path / "idx"
    assert ingest([str(tif)], index=str(idx), model=tiny_bundle, options=NATIVE).ok
    with Index.open(str(idx), model=tiny_bundle) as index:
        pid = next(iter(index.store.iter_points(with_vectors=False))).id
        app = create_app(index)
        with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
            body = ('{"positives":[{"point_id":"%s"}],"k":%s}' % (pid, BIG)).encode()
            r = c.post("/api/query", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422 and "more than 4,300" in r.json()["detail"], r.text
            r = c.post("/api/query", files={"query": (None, body.decode())})
            assert r.status_code == 422 and "more than 4,300" in r.json()["detail"], r.text
            poly = '{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,%s],[0,0]]]}' % BIG
            r = c.get("/api/search", params={"point_id": pid, "polygon": poly})
            assert r.status_code == 400 and "polygon holds a number with more than 4,300 digits" in r.text, r.text

    labels = tmp_path / "labels.json"
    labels.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point",'
                      '"coordinates":[1,%s]},"properties":{"label":"positive"}}]}' % BIG)
    area = tmp_path / "area.json"
    area.write_text(poly)
    item = tmp_path / "item.json"
    item.write_text('{"type":"Feature","stac_version":"1.0.0","id":"x","geometry":null,"properties":{"datetime":'
                    '"2020-01-01T00:00:00Z","n":%s},"links":[],"assets":{}}' % BIG)
    cli = [sys.executable, "-m", "rsir_stac.cli"]
    for args, said in ((["search", "--index", str(idx), "--labels", str(labels)],
                        f"label file {labels} holds a number with more than 4,300 digits"),
                       (["search", "--index", str(idx), "--point-id", pid, "--within", str(area)],
                        f"polygon file {area} holds a number with more than 4,300 digits"),
                       (["ingest", str(item), "--index", str(tmp_path / "new")],
                        f"{item} holds a number with more than 4,300 digits")):
        out = subprocess.run(cli + args, capture_output=True, text=True, timeout=300)
        assert out.returncode != 0 and said in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "new").exists()


@pytest.fixture()
def one_mib_blocks():
    from rsir_stac.tiling.blocks import limit_block_bytes

    limit_block_bytes(1 << 20)
    yield
    limit_block_bytes(None)


def test_an_overview_in_a_subifd_is_held_to_the_block_limit(tmp_path, one_mib_blocks):
    """tifffile writes a 1,024 px single-strip overview as a SubIFD of the main image (3 MB decoded, over a
    1 MiB limit); GDAL reads it as overview 1.  The file and the upload check both refuse it."""
    tifffile = pytest.importorskip("tifffile")
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling.sources import open_dataset
    from rsir_stac.upload import tiff_blocks

    path = tmp_path / "sub.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((2048, 2048, 3), "uint8"), tile=(256, 256), compression="zlib", subifds=1, photometric="rgb")
        tw.write(np.full((1024, 1024, 3), 50, "uint8"), compression="zlib", subfiletype=1, photometric="rgb",
                 rowsperstrip=1024)
    with rasterio.open(path) as ds:
        assert ds.overviews(1) == [2]
    assert tiff_blocks(path.read_bytes()) == [(256, 256, 3, 1, 1), (1024, 1024, 3, 1, 2)]
    with pytest.raises(RasterError, match="image 2 in the file .* blocks of 1024x1024 px, 3,145,728 bytes"):
        open_dataset(str(path))


def _mask_tif(path, tifffile, subifd=False):
    """A tiled RGB image and an 8-bit internal mask (NewSubfileType 4, photometric 4) in one 2,048 px tile,
    the next image or (``subifd``) a SubIFD of the first: tifffile writes it as a plain image, its two tags
    are then set."""
    mask = np.full((2048, 2048), 255, "uint8")
    mask[:100] = 0
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((2048, 2048, 3), "uint8"), tile=(256, 256), compression="zlib", photometric="rgb",
                 subifds=1 if subifd else None)
        tw.write(mask, compression="zlib", subfiletype=1, photometric="minisblack", tile=(2048, 2048))
    with tifffile.TiffFile(path) as t:
        tags = (t.pages[0].pages[0] if subifd else t.pages[1]).tags
        spots = [(tags["PhotometricInterpretation"].valueoffset, struct.pack("<H", 4)),
                 (tags["NewSubfileType"].valueoffset, struct.pack("<I", 4))]
    with open(path, "r+b") as fh:
        for at, raw in spots:
            fh.seek(at)
            fh.write(raw)
    with rasterio.open(path) as ds:
        assert ds.read_masks(1)[50, 0] == 0 and ds.read_masks(1)[500, 0] == 255  # GDAL reads it as the mask
    return path


def test_a_url_rasters_internal_mask_is_held_to_the_block_limit(tmp_path, one_mib_blocks):
    tifffile = pytest.importorskip("tifffile")
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling.blocks import limit_block_bytes
    from rsir_stac.tiling.sources import gdal_env, open_dataset

    www = tmp_path / "www"
    www.mkdir()
    _mask_tif(www / "masked.tif", tifffile)
    _mask_tif(www / "sub.tif", tifffile, subifd=True)   # second re-check: a mask in a SubIFD
    with serving(www, tmp_path / "www.log") as port:
        for name in ("masked.tif", "sub.tif"):
            with gdal_env(), pytest.raises(RasterError, match="image 2 in the file .* blocks of 2048x2048 px"):
                open_dataset(f"http://127.0.0.1:{port}/{name}")
        url = f"http://127.0.0.1:{port}/masked.tif"
        limit_block_bytes(8 << 20)  # under a limit it keeps, the same URL opens
        with gdal_env():
            open_dataset(url).close()


def test_where_gdal_cannot_be_reached_for_tags_a_url_mask_is_weighed_as_gdal_opens_it(tmp_path, one_mib_blocks,
                                                                                       monkeypatch):
    """Without libgdal's virtual-file functions (no /proc/self/maps: macOS), each image of the main chain is
    opened as GTIFF_DIR:N, a mask included."""
    tifffile = pytest.importorskip("tifffile")
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling import vsi_bytes
    from rsir_stac.tiling.sources import gdal_env, open_dataset

    monkeypatch.setattr(vsi_bytes, "_libgdal", lambda: None)
    www = tmp_path / "www"
    www.mkdir()
    _mask_tif(www / "masked.tif", tifffile)
    with serving(www, tmp_path / "www.log") as port, gdal_env(), \
            pytest.raises(RasterError, match="image 2 in the file .* blocks of 2048x2048 px"):
        open_dataset(f"http://127.0.0.1:{port}/masked.tif")


def test_a_remote_catalogues_path_and_scheme_relative_references_are_urls(tmp_path, tiny_bundle):
    """RFC 3986 5.2: in a catalogue read over http, an asset ``/b.tif`` is that host's path and a link
    ``//host:port/item.json`` another host by the same scheme (pystac joined only its path to the
    catalogue's host).  Both were refused as local files; neither reads one."""
    import json

    from rsir_stac.search import Index

    a, b = tmp_path / "a", tmp_path / "b"
    (b / "data").mkdir(parents=True)
    a.mkdir()
    make_geotiff(b / "data" / "b.tif", width=64, height=64, seed=5)
    make_geotiff(tmp_path / "b.tif", width=64, height=64, seed=6)  # a local file of the same path: not read
    with serving(a, tmp_path / "a.log") as port_a, serving(b, tmp_path / "b.log") as port_b:
        item = {"type": "Feature", "stac_version": "1.0.0", "id": "far", "geometry": None,
                "properties": {"datetime": "2021-01-01T00:00:00Z"}, "links": [],
                "assets": {"image": {"href": "/data/b.tif", "type": "image/tiff; application=geotiff",
                                     "roles": ["data"]}}}
        (b / "data" / "item.json").write_text(json.dumps(item))
        cat = {"type": "Catalog", "stac_version": "1.0.0", "id": "cat", "description": "d",
               "links": [{"rel": "item", "href": f"//127.0.0.1:{port_b}/data/item.json",
                          "type": "application/json"}]}
        (a / "catalog.json").write_text(json.dumps(cat))
        idx = tmp_path / "idx"
        rep = ingest([f"http://127.0.0.1:{port_a}/catalog.json"], index=str(idx), model=tiny_bundle,
                     options=NATIVE)
        assert rep.ok and rep.points_written == 1, rep.items_failed
        with Index.open(str(idx), model=tiny_bundle) as index:
            hrefs = {p.payload["href"] for p in index.store.iter_points(with_vectors=False)}
        assert hrefs == {f"http://127.0.0.1:{port_b}/data/b.tif"}, hrefs


def test_a_server_without_http_ranges_is_named_as_the_cause(tmp_path, tiny_bundle):
    """``python -m http.server`` answers a range request with the whole file; GDAL then reads nothing past
    its first chunk and said only "not recognized", which was reported as "not a GeoTIFF/COG, JPEG 2000..."."""
    www = tmp_path / "www"
    www.mkdir()
    make_geotiff(www / "s.tif", width=256, height=256, seed=7)
    assert (www / "s.tif").stat().st_size > 64_000   # past GDAL's first 16 KB chunk
    with serving(www, tmp_path / "www.log") as port:
        idx = tmp_path / "idx"
        rep = ingest([f"http://127.0.0.1:{port}/s.tif"], index=str(idx), model=tiny_bundle, options=NATIVE)
        (err,) = [f["error"] for f in rep.items_failed]
        assert "its server does not answer HTTP range requests" in err and "ingest the local copy" in err, err
        assert "not a GeoTIFF" not in err and not idx.exists()


def test_a_catalogue_fetched_below_a_local_root_names_no_local_file(tmp_path, tiny_bundle):
    """Second re-check, B1: the network rule followed the top document only, so a local root catalogue
    linking to one served over http let that one's item links and assets name local files (read and
    indexed).  A served catalogue whose own "root" link is a local file stopped the whole ingest."""
    import json

    www, local = tmp_path / "www", tmp_path / "local"
    www.mkdir()
    local.mkdir()
    secret = make_geotiff(local / "secret.tif", width=64, height=64, seed=8)
    make_geotiff(www / "ok.tif", width=64, height=64, seed=9)

    def item(item_id, href):
        return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None,
                "properties": {"datetime": "2021-01-01T00:00:00Z"}, "links": [],
                "assets": {"image": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}}}

    (local / "secret_item.json").write_text(json.dumps(item("local_item", "secret.tif")))
    (www / "file_asset.json").write_text(json.dumps(item("file_asset", secret.as_uri())))
    (www / "ok.json").write_text(json.dumps(item("ok", "ok.tif")))
    with serving(www, tmp_path / "www.log") as port:
        base = f"http://127.0.0.1:{port}"
        (www / "child.json").write_text(json.dumps({
            "type": "Catalog", "stac_version": "1.0.0", "id": "child", "description": "d",
            "links": [{"rel": "root", "href": (local / "secret_item.json").as_uri()},
                      {"rel": "item", "href": "file_asset.json"}, {"rel": "item", "href": "ok.json"},
                      {"rel": "item", "href": (local / "secret_item.json").as_uri()}]}))
        (local / "catalog.json").write_text(json.dumps({
            "type": "Catalog", "stac_version": "1.0.0", "id": "root", "description": "d",
            "links": [{"rel": "child", "href": f"{base}/child.json"}]}))
        for src in (str(local / "catalog.json"), f"{base}/child.json"):
            idx = tmp_path / f"idx{len(src)}"
            rep = ingest([src], index=str(idx), model=tiny_bundle, options=NATIVE)
            failed = {f["item"]: f["error"] for f in rep.items_failed}
            assert set(failed) == {"file_asset", "secret_item"}, failed
            assert all("may name only network locations" in e for e in failed.values()), failed
            from rsir_stac.search import Index

            with Index.open(str(idx), model=tiny_bundle) as index:
                hrefs = {p.payload["href"] for p in index.store.iter_points(with_vectors=False)}
            assert hrefs == {f"{base}/ok.tif"}, hrefs


def test_a_vrt_whose_sources_are_gdal_connection_strings_is_read(tmp_path, tiny_bundle):
    """Second re-check, B4: sources named by a GDAL connection string (``GTIFF_DIR:1:path``,
    ``vrt://path?bands=``) were looked up as local files and the VRT refused as missing them."""
    a = make_geotiff(tmp_path / "a.tif", width=128, height=128, seed=1)
    ok = _vrt(tmp_path / "conn.vrt", ["a.tif", f"GTIFF_DIR:1:{a}", f"vrt://{a}?bands=1,2,3"])
    rep = ingest([str(ok)], index=str(tmp_path / "ok.idx"), model=tiny_bundle, options=NATIVE)
    assert rep.ok and rep.points_written == 12, rep.items_failed
    _fails_naming(_vrt(tmp_path / "dir7.vrt", ["a.tif", f"GTIFF_DIR:7:{a}"]), f"GTIFF_DIR:7:{a}", tmp_path,
                  tiny_bundle)


def test_json_files_nested_too_deeply_or_with_huge_numbers_are_one_line_errors(tmp_path, tiny_bundle):
    """Second re-check, B6: 100,000-deep nesting in a label, area or STAC file, and a 5,001-digit number in
    a bundle's model.json, were "unexpected RecursionError / ValueError"."""
    import shutil

    deep = "[" * 100_000 + "]" * 100_000
    tif = make_geotiff(tmp_path / "s.tif", width=128, height=128)
    idx = tmp_path / "idx"
    assert ingest([str(tif)], index=str(idx), model=tiny_bundle, options=NATIVE).ok
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "item.json").write_text('{"type":"Feature","x":%s}' % deep)
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, bundle)
    meta = (bundle / "model.json").read_text()
    (bundle / "model.json").write_text(meta.replace("{", '{"huge": %s, ' % BIG, 1))
    cli = [sys.executable, "-m", "rsir_stac.cli"]
    deep_file = tmp_path / "deep.json"
    for args, said in ((["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--labels", str(deep_file)],
                        "is JSON nested too deeply"),
                       (["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--at", "1,1", "--within",
                         str(deep_file)], "is JSON nested too deeply"),
                       (["ingest", str(tmp_path / "item.json"), "--index", str(tmp_path / "new")],
                        "is JSON nested too deeply for any STAC document"),
                       (["model-info", "--model", str(bundle)],
                        "model.json is JSON holding a number with more than 4,300 digits")):
        out = subprocess.run(cli + args, capture_output=True, text=True, timeout=300)
        assert out.returncode != 0 and said in out.stderr and "unexpected" not in out.stderr, out.stderr
    assert not (tmp_path / "new").exists()


def _flat_tif(path, side, block=None, count=3):
    """A DEFLATE GeoTIFF of flat content (a few KB on disk) in ``block`` px tiles (None: one strip)."""
    kw = dict(tiled=True, blockxsize=block, blockysize=block) if block else dict(blockysize=side)
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=count, dtype="uint8",
                       crs="EPSG:32615", transform=rasterio.transform.from_origin(500000, 3300000, 1, 1),
                       compress="deflate", **kw) as ds:
        ds.write(np.full((count, side, side), 90, np.uint8))
    return path


def test_a_vrts_sources_and_a_rasters_sidecars_are_held_to_the_block_limit(tmp_path, one_mib_blocks):
    """Second re-check, B2: a plain VRT over a file of 2,048 px tiles, and a file of small tiles whose
    ``.msk`` sidecar is one 2,048 px tile, were read whole by the served map and tiles."""
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling.sources import open_dataset

    big = _flat_tif(tmp_path / "big.tif", 2048, 2048)
    vrt = tmp_path / "over.vrt"
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">'
                    f'big.tif</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
                    for b in (1, 2, 3))
    vrt.write_text('<VRTDataset rasterXSize="2048" rasterYSize="2048"><SRS>EPSG:32615</SRS><GeoTransform>500000, 1, '
                   f'0, 3300000, 0, -1</GeoTransform>{bands}</VRTDataset>')
    with pytest.raises(RasterError, match=f"reads {big}, which is stored in blocks of 2048x2048 px"):
        open_dataset(str(vrt))
    conn = tmp_path / "conn.vrt"   # third re-check: the source as a vrt:// connection string
    conn.write_text(vrt.read_text().replace('relativeToVRT="1">big.tif', f'relativeToVRT="0">vrt://{big}?bands=1,2,3'))
    with pytest.raises(RasterError, match=f"reads {big}, which is stored in blocks of 2048x2048 px"):
        open_dataset(str(conn))
    masked = _flat_tif(tmp_path / "masked.tif", 2048, 256)
    _flat_tif(tmp_path / "masked.tif.msk", 2048, 2048, count=1)
    with rasterio.open(masked) as ds:
        assert str(tmp_path / "masked.tif.msk") in ds.files   # GDAL uses the sidecar as the mask
    with pytest.raises(RasterError, match=r"image 1 in masked.tif.msk \(an overview or mask\) is stored in blocks of "
                                          r"2048x2048 px"):
        open_dataset(str(masked))
    open_dataset(str(_flat_tif(tmp_path / "plain.tif", 2048, 256))).close()


def test_a_vrt_mask_band_source_that_cannot_be_opened_fails_naming_it(tmp_path, tiny_bundle):
    """Second re-check: GDAL's file list leaves out a ``<MaskBand>``'s source, so a text file there was not
    checked and every good tile was reported "mostly empty"."""
    make_geotiff(tmp_path / "a.tif", width=128, height=128, seed=1)
    (tmp_path / "text.tif").write_text("not a raster\n" * 20)
    vrt = _vrt(tmp_path / "masked.vrt", ["a.tif"])
    mask = ('<MaskBand><VRTRasterBand dataType="Byte"><SimpleSource><SourceFilename relativeToVRT="1">text.tif'
            '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></MaskBand>')
    vrt.write_text(vrt.read_text().replace("</VRTDataset>", mask + "</VRTDataset>"))
    _fails_naming(vrt, str(tmp_path / "text.tif"), tmp_path, tiny_bundle)


def test_vsi_bytes_reads_slices_of_a_file_through_gdal(tmp_path):
    from rsir_stac.tiling.vsi_bytes import CHUNK_BYTES, ReadLimitError, VsiBytes

    raw = np.random.default_rng(0).integers(0, 256, 3 * CHUNK_BYTES + 123, dtype=np.uint8).tobytes()
    (tmp_path / "f.bin").write_bytes(raw)
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.write(tmp_path / "f.bin", "f.bin")
    for path in (str(tmp_path / "f.bin"), f"/vsizip/{tmp_path / 'z.zip'}/f.bin"):
        with VsiBytes(path) as data:
            assert len(data) == len(raw)
            for a, b in ((0, 4), (CHUNK_BYTES - 3, CHUNK_BYTES + 5), (len(raw) - 10, len(raw) + 50), (7, 7), (0, None)):
                assert data[a:b] == raw[a:b], (a, b)
    with VsiBytes(str(tmp_path / "f.bin"), max_bytes=CHUNK_BYTES) as data, pytest.raises(ReadLimitError):
        data[0:CHUNK_BYTES + 1]
    with pytest.raises(OSError, match="GDAL cannot open"):
        VsiBytes(str(tmp_path / "nope.bin"))


def test_the_map_says_a_scene_over_the_block_limit_is_stored_in_blocks_too_large(tmp_path, tiny_bundle):
    """Third re-check: the imagery of a scene the block limit refuses answered 404 "restore the file or
    re-ingest", though the file is there; now 410 with the real cause and fix, in /api/scenes too."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rsir_stac.maptiles.grid import _web_mercator
    from rsir_stac.maptiles.render import BLOCKS_TOO_LARGE
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from rsir_stac.tiling.blocks import limit_block_bytes
    from rsir_stac.tiling.sources import restrict_to_geotiff

    big = _flat_tif(tmp_path / "big.tif", 5120, 5120)   # one 5,120 px tile: 78 MB decoded, over 64 MiB
    idx = tmp_path / "idx"
    assert ingest([str(big)], index=str(idx), model=tiny_bundle, options=IngestOptions(gsd=8.0)).ok
    try:
        with Index.open(str(idx), model=tiny_bundle) as index, \
                TestClient(create_app(index), base_url="http://127.0.0.1:8000") as c:
            (scene,) = c.get("/api/scenes").json()["features"]
            w, s, e, n = scene["properties"]["bbox"]
            t = _web_mercator().tile((w + e) / 2, (s + n) / 2, 14)
            r = c.get(f"/api/imagery/14/{t.x}/{t.y}.png")
            assert r.status_code == 410 and BLOCKS_TOO_LARGE in r.json()["detail"], r.text
            assert str(tmp_path) not in r.text
            (scene,) = c.get("/api/scenes").json()["features"]   # the scene list says so from then on
            assert scene["properties"]["imagery_problem"] == BLOCKS_TOO_LARGE, scene["properties"]
    finally:
        restrict_to_geotiff(())
        limit_block_bytes(None)
