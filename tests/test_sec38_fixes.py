"""Fixes after the thirty-eighth session's security trial (/work/exp38/sec/REPORT.md):

* a catalogue read over http(s) cannot name this machine's files (asset hrefs, ``file:`` URLs,
  ``self`` links, child and item links), and a raster named by a URL is opened as an image format
  only, never as a VRT that names local files or internal URLs;
* every raster the service reads is held to the upload block limit, and map readers with large
  blocks are not kept open by their threads;
* ``/api/tiles`` is bounded (slots, a queue, 1,024 px) and refused to other sites;
* inputs that were 500s (a lone surrogate, a 5,000-digit ``per_item``, ``gsd`` 1e-300) are one-line
  4xx; a non-ASCII service key opens image URLs.

Real HTTP servers (``python -m http.server`` in its own process), real GeoTIFFs and VRTs, real Edge
indexes and the real app.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from rsir_stac.ingest import IngestOptions, ingest
from tests.conftest import make_geotiff, serve_folder

pytest.importorskip("fastapi")

GEOTIFF = "image/tiff; application=geotiff"
NATIVE = IngestOptions(tile_size=64, native_gsd=True)


@pytest.fixture()
def www(tmp_path):
    """A catalogue server (``www``) and an "internal" canary server; yields (base URL, www folder,
    canary port, canary's request lines)."""
    root, inner = tmp_path / "www", tmp_path / "inner"
    root.mkdir()
    inner.mkdir()
    procs = []
    try:
        proc, port = serve_folder(root, tmp_path / "www.log")
        procs.append(proc)
        cproc, cport = serve_folder(inner, tmp_path / "inner.log")
        procs.append(cproc)

        def canary() -> list[str]:
            return [ln for ln in (tmp_path / "inner.log").read_text().splitlines() if '"GET ' in ln or '"HEAD ' in ln]

        yield f"http://127.0.0.1:{port}", root, cport, canary
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def _item(item_id: str, href: str, **extra) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None,
            "properties": {"datetime": "2021-01-01T00:00:00Z"}, "links": extra.pop("links", []),
            "assets": {"image": {"href": href, "type": GEOTIFF, "roles": ["data"]}}, **extra}


def test_a_remote_catalogue_cannot_name_local_files(www, tmp_path, tiny_bundle):
    """Absolute paths, file: URLs and a local self link with a relative asset fail their items alone,
    naming why and the fix; the catalogue's own remote raster is ingested."""
    base, root, _, _ = www
    secret = make_geotiff(tmp_path / "private.tif", width=64, height=64, seed=3)
    make_geotiff(root / "good.tif", width=64, height=64, seed=4)
    docs = {
        "abs.json": _item("abs", str(secret)),
        "fileurl.json": _item("fileurl", secret.as_uri()),
        "vsi.json": _item("vsi", f"/vsicurl/{base}/good.tif"),
        "good.json": _item("good", "good.tif"),
    }
    for name, d in docs.items():
        (root / name).write_text(json.dumps(d))
    # a feature of a collection is read with its own self link: here a local file, beside private.tif
    selflink = _item("selflink", "private.tif", links=[{"rel": "self", "href": str(tmp_path / "selflink.json")}])
    fc = {"type": "FeatureCollection", "features": [selflink, docs["good.json"]]}
    (root / "fc.json").write_text(json.dumps(fc))
    idx = tmp_path / "idx"
    rep = ingest([f"{base}/{n}" for n in docs] + [f"{base}/fc.json"], index=str(idx), model=tiny_bundle,
                 options=NATIVE)
    failed = {f["item"]: f["error"] for f in rep.items_failed}
    assert set(failed) == {"abs", "fileurl", "vsi", "selflink"}, failed
    # an absolute path in a document read over http is that host's path (RFC 3986 5.2): a 404 there
    assert f"{base}{secret} does not exist" in failed.pop("abs")
    for item_id, err in failed.items():
        assert "may name only network locations" in err and "ingest the local copy" in err, err
        assert "\n" not in err
    assert rep.points_written == 1   # good.json (the collection repeats it: one item)
    from rsir_stac.search import Index

    with Index.open(str(idx), model=tiny_bundle) as index:
        hrefs = {p.payload["href"] for p in index.store.iter_points(with_vectors=False)}
    assert hrefs == {f"{base}/good.tif"}, hrefs


def test_a_remote_catalogue_cannot_link_to_a_local_catalogue(www, tmp_path, tiny_bundle):
    base, root, _, _ = www
    local = tmp_path / "local-cat"
    local.mkdir()
    make_geotiff(local / "a.tif", width=64, height=64, seed=5)
    (local / "a.json").write_text(json.dumps(_item("a", "a.tif")))
    (local / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "stac_version": "1.0.0", "id": "local", "description": "d",
        "links": [{"rel": "item", "href": "./a.json"}]}))
    (root / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "stac_version": "1.0.0", "id": "remote", "description": "d",
        "links": [{"rel": "child", "href": (local / "catalog.json").as_uri()},
                  {"rel": "item", "href": str(local / "a.json")}]}))
    rep = ingest([f"{base}/catalog.json"], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert rep.points_written == 0
    errs = sorted(f["error"] for f in rep.items_failed)
    assert len(errs) == 2, errs
    # the file: URL is refused unread; the absolute path is the catalogue host's path (RFC 3986 5.2): a 404 there
    assert "may name only network locations" in errs[0] and "its items are not ingested" in errs[0], errs
    assert f"{base}{local / 'a.json'} does not exist" in errs[1], errs


def _vrt_over(path: str, width: int = 64, height: int = 64) -> str:
    return (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
            + "".join(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">'
                      f'{path}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
                      for b in (1, 2, 3))
            + "</VRTDataset>")


def test_a_remote_vrt_is_not_followed_to_local_files_or_internal_urls(www, tmp_path, tiny_bundle):
    """A catalogue's asset that is a VRT over a local file, or over an internal URL, fails as not an image
    format; nothing is read from the internal server and no point is written."""
    base, root, cport, canary = www
    secret = make_geotiff(tmp_path / "private.tif", width=64, height=64, seed=3)
    make_geotiff(tmp_path / "inner" / "meta.tif", width=64, height=64, seed=6)
    (root / "raw.vrt").write_text(_vrt_over(str(secret)))
    (root / "ssrf.vrt").write_text(_vrt_over(f"/vsicurl/http://127.0.0.1:{cport}/meta.tif"))
    for name in ("raw", "ssrf"):
        (root / f"{name}.json").write_text(json.dumps(_item(name, f"{name}.vrt")))
    rep = ingest([f"{base}/raw.json", f"{base}/ssrf.json"], index=str(tmp_path / "idx"), model=tiny_bundle,
                 options=NATIVE)
    assert rep.points_written == 0
    errs = [f["error"] for f in rep.items_failed]
    assert len(errs) == 2 and all("is not a GeoTIFF/COG, JPEG 2000, PNG, JPEG or WebP" in e for e in errs), errs
    assert canary() == []


def test_a_url_raster_is_read_as_geotiff_jpeg2000_png_jpeg_or_webp(www, tmp_path):
    """open_url tries the image drivers in turn: a PNG served over http opens (as PNG), a VRT does not."""
    import rasterio

    from rsir_stac.tiling.sources import open_url

    base, root, _, _ = www
    with rasterio.open(root / "p.png", "w", driver="PNG", width=8, height=8, count=3, dtype="uint8") as ds:
        ds.write(np.full((3, 8, 8), 7, np.uint8))
    (root / "v.vrt").write_text(_vrt_over(str(root / "p.png"), 8, 8))
    with open_url(f"{base}/p.png") as ds:
        assert ds.driver == "PNG" and int(ds.read(1)[0, 0]) == 7
    with pytest.raises(rasterio.errors.RasterioIOError, match="not recognized"):
        open_url(f"{base}/v.vrt")


def _one_block_tif(path: Path, side: int, block: int) -> Path:
    """A 3-band DEFLATE GeoTIFF of ``side`` px in tiles of ``block`` px (small on disk: flat content)."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                       crs="EPSG:32615", transform=from_origin(500000, 3300000, 1, 1), tiled=True,
                       blockxsize=block, blockysize=block, compress="deflate") as ds:
        ds.write(np.full((3, side, side), 90, np.uint8))
    return path


@pytest.fixture()
def block_limit():
    from rsir_stac.tiling.blocks import limit_block_bytes
    from rsir_stac.upload import MAX_DECODED_BYTES

    limit_block_bytes(MAX_DECODED_BYTES)
    yield MAX_DECODED_BYTES
    limit_block_bytes(None)


def test_the_service_refuses_rasters_of_huge_blocks(tmp_path, tiny_bundle, block_limit):
    """Under the service's limit a GeoTIFF of one 5,120 px tile (78 MB decoded, a few KB on disk) fails its
    item naming the block and the fix; a tiled one of the same size is ingested; lifted, the same file is read."""
    from rsir_stac.tiling.blocks import limit_block_bytes

    big = _one_block_tif(tmp_path / "big.tif", 5120, 5120)
    assert big.stat().st_size < 2_000_000
    ok = _one_block_tif(tmp_path / "ok.tif", 1024, 256)
    rep = ingest([str(big), str(ok)], index=str(tmp_path / "idx"), model=tiny_bundle,
                 options=IngestOptions(tile_size=256, gsd=4.0))
    (err,) = [f["error"] for f in rep.items_failed]
    assert "blocks (tiles or strips) of 5120x5120 px, 78,643,200 bytes" in err and "gdal_translate -of COG" in err
    assert rep.points_written > 0
    limit_block_bytes(None)
    rep = ingest([str(big)], index=str(tmp_path / "idx2"), model=tiny_bundle,
                 options=IngestOptions(tile_size=256, gsd=4.0))
    assert rep.ok and rep.points_written > 0


def test_map_readers_of_large_blocks_are_closed_after_their_tile(tmp_path, tiny_bundle, block_limit):
    """A scene in 2,048 px tiles (12 MB a block, over KEEP_BLOCK_BYTES) is drawn, and no reader of it stays
    open in the thread; a scene in 256 px tiles is kept for the next map tile."""
    from rsir_stac.maptiles.grid import _web_mercator
    from rsir_stac.maptiles.render import KEEP_BLOCK_BYTES, TileRenderer
    from rsir_stac.maptiles.scenes import scenes_from_payloads
    from rsir_stac.search import Index

    assert 2048 * 2048 * 3 > KEEP_BLOCK_BYTES > 256 * 256 * 3
    tms = _web_mercator()
    kept = {}
    for name, block in (("large", 2048), ("small", 256)):
        tif = _one_block_tif(tmp_path / f"{name}.tif", 2048, block)
        idx = tmp_path / f"{name}.idx"
        assert ingest([str(tif)], index=str(idx), model=tiny_bundle, options=IngestOptions(gsd=8.0)).ok
        with Index.open(str(idx), model=tiny_bundle) as index:
            scenes = scenes_from_payloads(p.payload for p in index.store.iter_points(with_vectors=False))
        renderer = TileRenderer(scenes)
        (sc,) = scenes
        t = tms.tile((sc.bbox[0] + sc.bbox[2]) / 2, (sc.bbox[1] + sc.bbox[3]) / 2, 14)
        assert renderer.render(14, t.x, t.y) != renderer.empty()
        kept[name] = list(getattr(renderer._local, "readers", {}))
    assert kept == {"large": [], "small": [sc.id]}, kept


@pytest.fixture()
def served(tmp_path, tiny_bundle):
    """An app over an index of one scene in 2,048 px tiles, one scene of 64 px tiles, ingest root tmp/root."""
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from rsir_stac.tiling.blocks import limit_block_bytes
    from rsir_stac.tiling.sources import restrict_to_geotiff

    root = tmp_path / "root"
    root.mkdir()
    make_geotiff(root / "r.tif", width=128, height=128, seed=2)
    big = make_geotiff(tmp_path / "big.tif", width=2048, height=2048, seed=1)
    small = make_geotiff(tmp_path / "small.tif", width=128, height=128, seed=3)
    idx = tmp_path / "idx"
    assert ingest([str(big)], index=str(idx), model=tiny_bundle,
                  options=IngestOptions(tile_size=2048, native_gsd=True)).ok
    assert ingest([str(small)], index=str(idx), model=tiny_bundle, options=NATIVE).ok
    try:
        with Index.open(str(idx), model=tiny_bundle) as index:
            ids = {p.payload["tiling"]["tile_size"]: p.id for p in index.store.iter_points(with_vectors=False)}
            with TestClient(create_app(index, ingest_roots=[str(root)]), base_url="http://127.0.0.1:8000") as c:
                yield c, ids
    finally:
        restrict_to_geotiff(())
        limit_block_bytes(None)


def test_stored_tiles_are_shrunk_and_the_pages_own(served):
    """A 2,048 px stored tile comes back at 1,024 px; another site's request for a stored tile is
    refused (the imagery stays open to other maps); same-origin and header-less clients get it."""
    import io

    from PIL import Image

    c, ids = served
    r = c.get(f"/api/tiles/{ids[2048]}.png")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (1024, 1024)
    assert c.get(f"/api/tiles/{ids[64]}.png", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    r = c.get(f"/api/tiles/{ids[64]}.png", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and r.json()["error"] == "OriginNotAllowed"
    assert c.get("/api/imagery/3/1/1.png", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_a_full_tile_read_queue_is_429_at_once(tiny_bundle, tmp_path, monkeypatch):
    """With TILE_READ_QUEUE reads waiting, the next one is refused at once (429), and the slots return."""
    import threading

    import rsir_stac.api.service as service
    from rsir_stac.apierrors import TooManyRequests
    from rsir_stac.search import Index

    monkeypatch.setattr(service, "TILE_READ_QUEUE", 2)
    make_geotiff(tmp_path / "s.tif", width=64, height=64)
    assert ingest([str(tmp_path / "s.tif")], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE).ok
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as index:
        svc = service.Service(index)
        hold, entered = threading.Event(), threading.Barrier(3)

        def reader():
            with svc.reading_tile():
                entered.wait(10)
                hold.wait(10)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        entered.wait(10)
        with pytest.raises(TooManyRequests, match="2 stored tiles are being read or waiting"):
            with svc.reading_tile():
                pass
        hold.set()
        for t in threads:
            t.join(10)
        with svc.reading_tile():
            pass


def test_inputs_that_were_500s_are_one_line_4xx(served):
    c, ids = served
    pid = ids[64]
    r = c.post("/api/query", content=('{"positives":[{"point_id":"%s"}],"collection":"\\ud800"}' % pid).encode(),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "lone UTF-16 surrogate" in r.text and "collection" in r.text, r.text
    r = c.post("/api/search", content=('{"point_id":"%s","collection":["a","\\udfff"]}' % pid).encode(),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "collection[1]" in r.text, r.text
    r = c.post("/api/query", json={"positives": [{"point_id": pid}], "per_item": "9" * 5000})
    assert r.status_code == 400 and "per_item='99999" in r.text and len(r.json()["detail"]) < 300, r.text
    r = c.post("/api/ingest/jobs", json={"sources": ["r.tif"], "gsd": 1e-300})
    assert r.status_code == 400 and "gsd 1e-300 is outside 0.001..100000 metres" in r.text, r.text
    r = c.post("/api/ingest/jobs", content=b'{"sources":["\\ud800.tif"]}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "sources[0]" in r.text, r.text


def test_the_command_line_refuses_a_gsd_outside_its_range(tmp_path):
    tif = make_geotiff(tmp_path / "s.tif", width=64, height=64)
    out = subprocess.run([sys.executable, "-m", "rsir_stac.cli", "ingest", str(tif), "--index", str(tmp_path / "i"),
                          "--gsd", "1e-300"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--gsd 1e-300 is outside 0.001..100000 metres per pixel" in out.stderr
    assert not (tmp_path / "i").exists()


def test_a_non_ascii_service_key_opens_image_urls(tiny_bundle, tmp_path):
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    make_geotiff(tmp_path / "s.tif", width=64, height=64)
    assert ingest([str(tmp_path / "s.tif")], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE).ok
    key = "ключ-9"
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as index:
        (pid,) = [p.id for p in index.store.iter_points(with_vectors=False)]
        with TestClient(create_app(index, api_key=key), base_url="http://127.0.0.1:8000") as c:
            q = urllib.parse.quote(key)
            assert c.get(f"/api/tiles/{pid}.png?api_key={q}").status_code == 200
            assert c.get(f"/api/tiles/{pid}.png?api_key={urllib.parse.quote('????-9')}").status_code == 401
            assert c.get(f"/api/tiles/{pid}.png", headers={"X-API-Key": key.encode()}
                         ).status_code == 200
            assert c.get("/api/info", headers={"X-API-Key": "????-9"}).status_code == 401


def test_an_overview_of_huge_blocks_is_refused_too(tmp_path, tiny_bundle):
    """Re-check of session 38: a GeoTIFF whose image is in small tiles but whose overview is one big block
    passed the check (the map read it at the overview).  The limit covers every image of the file; here
    it is lowered to 1 MiB so a 1,024 px overview block (3 MB) stands for the 432 MB one."""
    import rasterio
    from rasterio.enums import Resampling

    from rsir_stac.tiling.blocks import limit_block_bytes

    path = _one_block_tif(tmp_path / "ovr.tif", 2048, 256)
    with rasterio.Env(GDAL_TIFF_OVR_BLOCKSIZE=1024), rasterio.open(path, "r+") as ds:
        ds.build_overviews([2], Resampling.average)
    with rasterio.open(path, overview_level=0) as ov:
        assert ov.block_shapes[0] == (1024, 1024)
    plain = _one_block_tif(tmp_path / "plain.tif", 2048, 256)
    limit_block_bytes(1024 * 1024)
    try:
        rep = ingest([str(path), str(plain)], index=str(tmp_path / "idx"), model=tiny_bundle,
                     options=IngestOptions(tile_size=256, gsd=4.0))
    finally:
        limit_block_bytes(None)
    (err,) = [f["error"] for f in rep.items_failed]
    assert "ovr.tif image 2 in the file (an overview or mask) is stored in blocks of 1024x1024 px, 3,145,728 bytes" in err, err
    assert rep.points_written > 0


def test_a_remote_catalogues_link_written_as_a_bare_path_is_not_read(www, tmp_path, tiny_bundle):
    """Re-check of session 38: pystac resolves a link written as an absolute path in a remote collection to
    that local file (the re-check's /dev/zero took the ingest to 3 GB); here a local item naming the
    catalogue's own remote raster was read and ingested.  Now no local document is read: the path is a URL
    on the catalogue's host."""
    base, root, _, _ = www
    make_geotiff(root / "good.tif", width=64, height=64, seed=4)
    local_item = tmp_path / "local-item.json"
    local_item.write_text(json.dumps(_item("sneaky", f"{base}/good.tif")))
    (root / "collection.json").write_text(json.dumps({
        "type": "Collection", "stac_version": "1.0.0", "id": "c", "description": "d", "license": "proprietary",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "links": [{"rel": "item", "href": str(local_item)}]}))
    rep = ingest([f"{base}/collection.json"], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert rep.points_written == 0, rep
    (err,) = [f["error"] for f in rep.items_failed]
    # the path is the catalogue host's (RFC 3986 5.2, second re-check of session 38): a 404 there, never the file
    assert f"{base}{local_item} does not exist" in err, err
