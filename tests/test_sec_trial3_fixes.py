"""Fixes after the third security trial of ``serve`` (/work/exp31/sec-REPORT.md):

* F1: a label set made on "another model" with unknown ids and world-sized footprints made one
  full scan of the index per label, under the store lock (a 434 KB request held the service
  for 129 s).  Matching by footprint now visits at most about the index twice, and
  ``POST /api/labels`` takes a query slot (429 beyond).
* F2: a raster far finer than the grid read, without overviews (a 51 KB sparse GeoTIFF of
  40,000 x 40,000 px), took 6 GB per tile to ingest, to thumbnail and to draw on the map.  Such
  reads are now box-filtered nearest samples (ingest, thumbnails, queries), map tiles that would
  read past the budget are not drawn (said once), and an ingest job counts such tiles by the
  source pixels they read.
* F3: a service key holding ``;`` was half redacted in the access log.
* F4: API GETs from a page on another port of this host (``Sec-Fetch-Site: same-site``) ran.

Real Edge indexes of tiny GeoTIFFs, real sparse GeoTIFFs read by GDAL in a child process whose
peak memory is measured, the real app through TestClient.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from tests.conftest import make_geotiff

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc")


def _sparse_tif(path: Path, n: int, px: float) -> Path:
    """An ``n`` x ``n`` px, 3-band uint8 tiled GeoTIFF of ``px`` metre pixels, one block written
    (a few KB on disk; GDAL reads the rest as 0 without decoding anything)."""
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(500000, 4500000, px, px), tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", sparse_ok=True) as ds:
        ds.write(np.full((3, 512, 512), 120, "uint8"), window=((0, 512), (0, 512)))
    return path


def _peak_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh Python; (its peak resident memory in MB, its stdout)."""
    # VmHWM is this process's own peak: getrusage's ru_maxrss keeps the forking parent's (pytest's)
    wrapper = code + textwrap.dedent("""
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print("PEAK", int(hwm.split()[1]) / 1024.0)
    """)
    # GDAL's block cache (5 % of the RAM by default) is bounded on its own: kept small here so the
    # peak shows what a read holds beyond it
    env = {**os.environ, "GDAL_CACHEMAX": "64"}
    done = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = float(done.stdout.rsplit("PEAK", 1)[1])
    return peak, done.stdout


# --------------------------------------------------------------------------- F2: the read budget


@linux_only
def test_a_tile_of_a_raster_far_finer_than_the_grid_is_read_in_bounded_memory(tmp_path):
    """The window of 30,000 x 30,000 px (2.7 GB at full resolution, 3 bands) read into 4 px, as a
    tile at a GSD far coarser than the raster reads it: GDAL's bilinear read peaked at 1.6 GB (at
    1 px, 2.7 GB); the box-filtered read holds the samples (~160 MB in all here)."""
    tif = _sparse_tif(tmp_path / "sparse.tif", 30000, 0.001)
    peak, out = _peak_mb(textwrap.dedent(f"""
        import rasterio
        from rasterio.windows import Window
        from rsir_stac.tiling.pixels import pixel_plan, read_rgb
        with rasterio.open({str(tif)!r}) as ds:
            pixels, valid = read_rgb(ds, pixel_plan(ds), Window(0, 0, 30000, 30000), (4, 4))
        print("SHAPE", pixels.shape, int(pixels[0, 0, 0]), int(pixels[-1, -1, 0]))
    """))
    assert "SHAPE (4, 4, 3)" in out, out
    assert peak < 600, f"peak {peak:.0f} MB reading one tile (the full window is 2,700 MB)"


@linux_only
def test_ingest_and_thumbnail_of_such_a_raster_stay_bounded(tmp_path, tiny_bundle):
    """The whole ingest of that raster at 20 m (one tile, far larger than the raster: 5.7 GB
    before, from the command line), then the stored tile's pixels re-read for its thumbnail."""
    tif = _sparse_tif(tmp_path / "sparse.tif", 30000, 0.001)
    idx = tmp_path / "idx"
    peak, out = _peak_mb(textwrap.dedent(f"""
        from rsir_stac.ingest import IngestOptions, ingest
        from rsir_stac.model.bundle import load_bundle
        from rsir_stac.search import Index
        from rsir_stac.thumbnails import read_tile
        bundle = load_bundle({str(tiny_bundle.path)!r})
        r = ingest([{str(tif)!r}], index={str(idx)!r}, model=bundle, options=IngestOptions(gsd=20.0, min_valid=0.0))
        print("WRITTEN", r.points_written, r.ok)
        with Index.open({str(idx)!r}, model=bundle) as index:
            hit = next(iter(index.store.iter_points(with_vectors=False)))
            tile = read_tile(hit.payload)
        print("THUMB", tile.shape[-1] == 3)
    """))
    assert "WRITTEN" in out and "True" in out.split("WRITTEN", 1)[1].splitlines()[0], out
    assert "THUMB True" in out, out
    # the child imports torch and the model (~700 MB); the old read took the peak to 3.5 GB
    assert peak < 2000, f"peak {peak:.0f} MB (the raster at full resolution is 2,700 MB)"


def test_box_read_matches_bilinear_where_both_fit(tmp_path, monkeypatch):
    """With the budget lowered, an ordinary decimated read goes the box-filtered way: the pixels
    stay within a few grey levels of GDAL's bilinear read, masks alike."""
    import rsir_stac.tiling.pixels as pixels_mod
    from rasterio.windows import Window

    yy, xx = np.mgrid[0:1024, 0:1024] / 1024.0   # ground that varies over tens of pixels, as imagery does
    field = np.stack([120 + 100 * np.sin(2 * np.pi * (k + 1) * xx) * np.cos(2 * np.pi * (k + 2) * yy)
                      for k in range(3)])
    tif = tmp_path / "smooth.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=1024, height=1024, count=3, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(500000, 4500000, 1, 1)) as ds:
        ds.write(np.clip(field, 0, 255).astype("uint8"))
    with rasterio.open(tif) as ds:
        plan = pixels_mod.pixel_plan(ds)
        ref, ref_valid = pixels_mod.read_rgb(ds, plan, Window(0, 0, 1024, 1024), (128, 128))
        monkeypatch.setattr(pixels_mod, "READ_BUDGET_BYTES", 1000)
        got, got_valid = pixels_mod.read_rgb(ds, plan, Window(0, 0, 1024, 1024), (128, 128))
    assert got.shape == ref.shape and got.dtype == ref.dtype
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert float(diff.mean()) < 3.0, float(diff.mean())
    def every(valid):
        return np.ones(ref.shape[:2], bool) if valid is None else valid

    assert (every(ref_valid) == every(got_valid)).all()


def test_box_read_averages_valid_samples_only(tmp_path):
    """Nodata samples do not darken the average; a block with no valid sample is 0 and invalid."""
    from rasterio.windows import Window

    from rsir_stac.tiling.readcost import box_read

    data = np.full((1, 64, 64), 200, "uint8")
    data[:, :, 32:] = 0   # right half nodata
    data[:, ::2, ::2] = 100  # a checkerboard of 100s in the valid half
    data[:, :, 32:] = 0
    path = tmp_path / "nd.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(0, 0, 1, 1), nodata=0) as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        out = box_read(ds, [1], Window(0, 0, 64, 64), (2, 2))
    assert out.shape == (1, 2, 2)
    assert 100 <= int(out[0, 0, 0]) <= 200 and int(out[0, 0, 1]) == 0, out


def _renderer_of(tif: Path, gsd: float, bundle):
    """(a map-tile renderer, its scenes) of an index of ``tif`` ingested at ``gsd`` metres."""
    from rsir_stac.maptiles.render import TileRenderer
    from rsir_stac.maptiles.scenes import scenes_from_payloads

    idx = tif.with_suffix(".idx")
    r = ingest([str(tif)], index=str(idx), model=bundle, options=IngestOptions(gsd=gsd, min_valid=0.0))
    assert r.ok, r
    with Index.open(str(idx), model=bundle) as index:
        scenes = scenes_from_payloads(p.payload for p in index.store.iter_points(with_vectors=False))
    return TileRenderer(scenes), scenes


def test_a_map_tile_that_would_read_past_the_budget_is_not_drawn_and_said_once(tmp_path, tiny_bundle, caplog):
    """Zoomed out over the raster (300 m of 1 cm pixels, ingested at 1 m), one map tile would read
    its whole 30,000 px window (2.7 GB): not drawn (transparent), warned once naming overviews;
    zoomed in, where a tile reads ~3,000 px square, the same scene is drawn."""
    import logging

    from rsir_stac.maptiles.grid import _web_mercator

    renderer, scenes = _renderer_of(_sparse_tif(tmp_path / "sparse.tif", 30000, 0.01), 1.0, tiny_bundle)
    (sc,) = scenes
    tms = _web_mercator()
    empty = renderer.empty()
    with caplog.at_level(logging.WARNING, logger="rsir_stac.maptiles.render"):
        coarse = []
        for z in (14, 15):
            t = tms.tile(sc.bbox[0] + 1e-6, sc.bbox[3] - 1e-6, z)
            coarse.append(renderer.render(z, t.x, t.y))
    assert coarse == [empty, empty]
    said = [r.getMessage() for r in caplog.records if "not drawn" in r.getMessage()]
    assert len(said) == 1 and "overviews" in said[0] and "gdaladdo" in said[0], said
    # zoomed in to the written corner block, the scene draws (its pixels are 120)
    assert renderer.zooms(sc)[0] <= 15 and renderer.zooms(sc)[1] >= 20, renderer.zooms(sc)
    t = tms.tile(sc.bbox[0] + 1e-6, sc.bbox[3] - 1e-6, 20)
    fine = renderer.render(20, t.x, t.y)
    assert fine != empty


def test_the_service_says_which_scene_a_map_tile_leaves_undrawn_and_how_to_see_it(tmp_path, tiny_bundle):
    """The undrawn scene was only a server log line: the page showed empty map tiles with no reason.
    The tile now carries X-Imagery-Note (the scene, the zoom, the fix) and /api/scenes says from which
    zoom the scene is not drawn; a tile where it draws carries no note."""
    from urllib.parse import unquote

    from fastapi.testclient import TestClient

    from rsir_stac.maptiles.grid import _web_mercator
    from rsir_stac.serve import create_app

    tif = _sparse_tif(tmp_path / "sparse.tif", 30000, 0.01)
    idx = tmp_path / "sparse.idx"
    assert ingest([str(tif)], index=str(idx), model=tiny_bundle, options=IngestOptions(gsd=1.0, min_valid=0.0)).ok
    tms = _web_mercator()
    with Index.open(str(idx), model=tiny_bundle) as index:
        with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
            (feat,) = client.get("/api/scenes").json()["features"]
            assert "imagery_note" not in feat["properties"]   # nothing refused yet
            w, s, e, n = feat["properties"]["bbox"]
            t = tms.tile(w + 1e-6, n - 1e-6, 15)
            r = client.get(f"/api/imagery/15/{t.x}/{t.y}.png")
            assert r.status_code == 200, r.text
            note = unquote(r.headers["x-imagery-note"])
            assert note.startswith("the imagery of sparse") and "not drawn at zoom 15" in note, note
            assert "zoom in" in note and "gdaladdo" in note, note
            again = client.get(f"/api/imagery/15/{t.x}/{t.y}.png")   # the cached tile keeps its note
            assert unquote(again.headers["x-imagery-note"]) == note
            (feat,) = client.get("/api/scenes").json()["features"]
            assert feat["properties"]["imagery_note"].startswith("not drawn at zoom 15 and coarser"), feat
            t = tms.tile(w + 1e-6, n - 1e-6, 20)
            r = client.get(f"/api/imagery/20/{t.x}/{t.y}.png")
            assert r.status_code == 200 and "x-imagery-note" not in r.headers, dict(r.headers)


# --------------------------------------------------------------------------- F2: job size


def test_an_ingest_job_counts_tiles_by_the_source_pixels_they_read(tmp_path, tiny_bundle):
    """The sparse raster at 20 m was one tile under the job cap; it now counts by its source
    pixels per tile pixel and says why.  An ordinary decimation (8 x 8 or less) counts as before."""
    from rsir_stac.api.jobsize import DECIMATION_FREE, estimate_tiles

    sparse = _sparse_tif(tmp_path / "sparse.tif", 40000, 0.0005)
    opts = IngestOptions(gsd=20.0)
    n, why = estimate_tiles(str(sparse), opts, tiny_bundle)
    assert n > 1_000_000, (n, why)
    assert "gdaladdo" in why and "pixels of the file" in why, why
    plain = make_geotiff(tmp_path / "plain.tif", width=512, height=512, seed=1)
    with rasterio.open(plain) as ds:
        px = abs(ds.transform.a)
    base, _ = estimate_tiles(str(plain), IngestOptions(gsd=px), tiny_bundle)
    coarse, why2 = estimate_tiles(str(plain), IngestOptions(gsd=px * 8), tiny_bundle)
    assert base >= 1 and coarse >= 1 and "pixels of the file" not in why2, why2
    assert DECIMATION_FREE == 64


# --------------------------------------------------------------------------- F1: label transfer


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_bundle):
    """An Edge index of four scenes (64 tiles) and its points."""
    root = tmp_path_factory.mktemp("labels-dos")
    tifs = [make_geotiff(root / f"s{i}.tif", width=256, height=256, seed=20 + i) for i in range(4)]
    idx = root / "idx"
    r = ingest([str(t) for t in tifs], index=str(idx), model=tiny_bundle,
               options=IngestOptions(tile_size=64, native_gsd=True))
    assert r.ok and r.points_written == 64, r
    return idx


@contextlib.contextmanager
def counting_scans(store):
    """``[n]``: the points ``store``'s scans (every scroll label matching does) yield while inside."""
    visited = [0]
    real_scan = store._scan

    def counting_scan(*a, **kw):
        for point in real_scan(*a, **kw):
            visited[0] += 1
            yield point

    store._scan = counting_scan
    try:
        yield visited
    finally:
        del store._scan


WORLD = {"type": "Polygon", "coordinates": [[[-179, -85], [179, -85], [179, 85], [-179, 85], [-179, -85]]]}


def test_world_sized_footprints_of_another_model_scan_the_index_a_bounded_number_of_times(labelled, tiny_bundle):
    """300 labels of unknown ids under another model, each with a world-sized footprint: every
    label scanned the whole index (300 x 64 points); now at most about twice the index."""
    import uuid

    from rsir_stac.errors import PointNotFoundError
    from rsir_stac.label_transfer import labels_in_index
    from rsir_stac.labels import Label, LabelSet

    labels = LabelSet(tuple(Label(str(uuid.uuid4()), "positive", WORLD) for _ in range(300)), "some-other-model")
    with Index.open(str(labelled), model=tiny_bundle) as index:
        store = index.store
        with counting_scans(store) as visited:
            with pytest.raises(PointNotFoundError, match="300 of 300 labels"):
                labels_in_index(store, labels, tiny_bundle.model_id)
        total = store.count()
    assert visited[0] <= 2 * total + 1, (visited[0], total)


def test_labels_of_another_model_are_still_matched_after_the_budget_is_spent(labelled, tiny_bundle):
    """The same index labelled under another model's ids, footprints only (no item ids): the first
    labels' world footprints spend the per-label budget, and the one full scan still matches every
    later label to its own tile."""
    from rsir_stac.ingest.points import payload_point_id
    from rsir_stac.label_transfer import labels_in_index
    from rsir_stac.labels import Label, LabelSet, footprint_geometry

    with Index.open(str(labelled), model=tiny_bundle) as index:
        points = [(p.id, p.payload) for p in index.store.iter_points(with_vectors=False)]
        old = "an-older-model"
        chosen = points[:20]
        # the first three labels' footprints are the world (a GIS edit): they match their tiles by the
        # whole-index scan, and spend the per-label budget for the others
        labs = [Label(payload_point_id(p, old), "positive" if i % 2 else "negative",
                      WORLD if i < 3 else footprint_geometry(p)) for i, (pid, p) in enumerate(chosen)]
        got = labels_in_index(index.store, LabelSet(tuple(labs), old), tiny_bundle.model_id)
    assert [lb.point_id for lb in got.labels] == [pid for pid, _ in chosen]
    assert [lb.label for lb in got.labels] == [lb.label for lb in labs]


def test_the_labels_route_takes_a_query_slot(labelled, tiny_bundle):
    """``POST /api/labels`` is 429 while every query slot is held (it queued behind the lock)."""
    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    with Index.open(str(labelled), model=tiny_bundle) as index:
        app = create_app(index, max_queries=1)
        svc = app.state.service
        pid = next(iter(index.store.iter_points(with_vectors=False))).id
        body = {"labels": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": None, "properties": {"point_id": pid, "label": "positive"}}]}}
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            assert client.post("/api/labels", json=body).status_code == 200
            with svc.querying():
                busy = client.post("/api/labels", json=body)
            assert busy.status_code == 429, busy.text
            assert "retry" in busy.json()["detail"]


# --------------------------------------------------------------------------- F3, F4, F5


def test_a_host_whose_port_is_not_digits_is_not_an_allowed_name():
    from rsir_stac.httpguard import default_allowed_hosts, host_allowed, host_name

    allowed = default_allowed_hosts("127.0.0.1")
    for bad in ("127.0.0.1:8765@evil.com", "localhost:x", "[::1]:8000@evil.com", "[::1]x"):
        assert not host_allowed(host_name(bad), allowed), (bad, host_name(bad))
    for good in ("127.0.0.1:8765", "localhost", "[::1]:8000", "LOCALHOST.:80"):
        assert host_allowed(host_name(good), allowed), (good, host_name(good))


def test_a_key_holding_a_semicolon_is_redacted_whole():
    from rsir_stac.redact import log_safe, redact_secrets

    for url in ("/api/tiles/x.png?api_key=abc;TOPSECRET", "/api/imagery/4/4/6.png?api_key=abc;TOPSECRET&z=1",
                "/api/tiles/x.png?a=1;api_key=TOPSECRET"):
        assert "TOPSECRET" not in redact_secrets(url) and "TOPSECRET" not in log_safe(url), url
    assert redact_secrets("/?a=1;b=2&page=3") == "/?a=1;b=2&page=3"


def test_api_gets_from_another_port_of_this_host_are_refused(labelled, tiny_bundle):
    """``Sec-Fetch-Site: same-site`` is another origin (a page on another port); same-origin and
    a typed address (``none``) stay allowed, as do images for other maps."""
    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    with Index.open(str(labelled), model=tiny_bundle) as index:
        app = create_app(index)
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            assert client.get("/api/info", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
            assert client.get("/api/info", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
            assert client.get("/api/info", headers={"Sec-Fetch-Site": "none"}).status_code == 200
            assert client.get("/api/info").status_code == 200
            body = json.dumps({"positives": []})
            assert client.post("/api/query", content=body, headers={"Sec-Fetch-Site": "same-site",
                                                                     "Content-Type": "application/json"}
                               ).status_code == 403


# --------------------------------------------------------------------------- the re-check's findings
# (/work/exp31/recheck-REPORT.md: N1 a model per label, N2 a raster across 180, N3 large outputs,
# N5 label vertices, N7 a non-ASCII port)


def test_labels_of_many_models_share_one_scan_budget(labelled, tiny_bundle):
    """N1: each label naming its own model (no file model) made a budget, and a full scan, per
    model: 2,000 labels held the service 253 s.  Four models' labels now visit at most about twice
    the index in all; a fifth model is refused in one line."""
    import uuid

    from rsir_stac.errors import InputError, PointNotFoundError
    from rsir_stac.label_transfer import MAX_OTHER_MODELS, labels_in_index
    from rsir_stac.labels import Label, LabelSet

    def labels_of(models: int) -> LabelSet:
        return LabelSet(tuple(Label(str(uuid.uuid4()), "positive", WORLD, properties={"model_id": f"m{i % models}"})
                              for i in range(200)), None)

    with Index.open(str(labelled), model=tiny_bundle) as index:
        store = index.store
        with counting_scans(store) as visited:
            with pytest.raises(PointNotFoundError, match="200 of 200 labels"):
                labels_in_index(store, labels_of(MAX_OTHER_MODELS), tiny_bundle.model_id)
        assert visited[0] <= 2 * store.count() + 1, visited[0]
        with counting_scans(store) as visited:
            with pytest.raises(InputError, match=f"{MAX_OTHER_MODELS + 1} different models"):
                labels_in_index(store, labels_of(MAX_OTHER_MODELS + 1), tiny_bundle.model_id)
        assert visited[0] == 0


def test_a_label_geometry_over_the_vertex_limit_is_refused(labelled, tiny_bundle):
    """N5: a 400,000-vertex label polygon held the lock for seconds; a label's footprint has at
    most MAX_POLYGON_VERTICES."""
    from fastapi.testclient import TestClient

    from rsir_stac.api.bodies import MAX_POLYGON_VERTICES
    from rsir_stac.serve import create_app

    n = MAX_POLYGON_VERTICES + 1
    ring = [[-99.0 + 0.001 * np.cos(2 * np.pi * i / n), 47.0 + 0.001 * np.sin(2 * np.pi * i / n)] for i in range(n)]
    ring.append(ring[0])
    with Index.open(str(labelled), model=tiny_bundle) as index:
        pid = next(iter(index.store.iter_points(with_vectors=False))).id
        body = {"labels": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
             "properties": {"point_id": pid, "label": "positive"}}]}}
        with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
            r = client.post("/api/labels", json=body)
    assert r.status_code == 400 and f"{n + 1} vertices" in r.json()["detail"], r.text


def test_a_map_tile_of_a_raster_across_180_is_costed_where_it_is_read(tmp_path, tiny_bundle, caplog):
    """N2: a lon/lat raster at 179.985..180.015 is read a turn west for a tile at -180..-179.9;
    the cost check looked at the raster where it lies and let that tile read 1.3 GB.  Both sides
    are now costed where they are read, and neither is drawn past the budget."""
    import logging

    from rsir_stac.maptiles.grid import _web_mercator
    from rsir_stac.tiling.readcost import READ_BUDGET_BYTES, read_bytes, source_window

    path = tmp_path / "across.tif"
    with rasterio.open(path, "w", driver="GTiff", width=60000, height=6000, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(179.985, 0.0, 5e-7, 5e-7), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True) as ds:
        ds.write(np.full((3, 512, 512), 120, "uint8"), window=((0, 512), (29744, 30256)))
    renderer, _ = _renderer_of(path, 20.0, tiny_bundle)
    tms = _web_mercator()
    west, east = tms.tile(-179.995, -0.0015, 12), tms.tile(179.995, -0.0015, 12)
    with rasterio.open(path) as ds:
        for t in (west, east):
            b = tms.xy_bounds(t)
            w, h = source_window(ds, (b.left, b.bottom, b.right, b.top), "EPSG:3857")
            assert read_bytes(ds, w, h, 256, 256, 3) > READ_BUDGET_BYTES, (t, w, h)
    empty = renderer.empty()
    with caplog.at_level(logging.WARNING, logger="rsir_stac.maptiles.render"):
        assert renderer.render(12, west.x, west.y) == empty
        assert renderer.render(12, east.x, east.y) == empty
    assert any("not drawn" in r.getMessage() for r in caplog.records)


@linux_only
def test_a_large_output_of_the_box_filtered_read_stays_bounded(tmp_path):
    """N3: the box filter held 16 float64 samples per output pixel at once: a 12,000 px raster
    read into 2,048 px took 2.8 GB (the bilinear read it replaced, ~1.2 GB).  It is read in strips."""
    tif = _sparse_tif(tmp_path / "q.tif", 12000, 0.05)
    peak, out = _peak_mb(textwrap.dedent(f"""
        import rasterio
        from rasterio.windows import Window
        from rsir_stac.tiling.pixels import pixel_plan, read_rgb
        with rasterio.open({str(tif)!r}) as ds:
            pixels, valid = read_rgb(ds, pixel_plan(ds), Window(0, 0, 12000, 12000), (2048, 2048))
        print("SHAPE", pixels.shape, int(pixels[0, 0, 0]))
    """))
    assert "SHAPE (2048, 2048, 3) 120" in out, out
    assert peak < 700, f"peak {peak:.0f} MB"


def test_a_port_of_non_ascii_digits_is_not_a_port():
    from rsir_stac.httpguard import default_allowed_hosts, host_allowed, host_name

    assert not host_allowed(host_name("127.0.0.1:8\u00b2"), default_allowed_hosts("127.0.0.1"))


# --------------------------------------------------------------------------- the second re-check
# (/work/exp31/recheck2-REPORT.md: N8 a burst of map tiles, N9 label vertices in collections)


def test_label_vertices_are_counted_in_collections_and_in_all(labelled, tiny_bundle):
    """N9: a GeometryCollection escaped the per-label count (400,000 vertices held the lock 4 s),
    400 labels of 999 vertices each were 400,000 in all, and a nested collection or a polygon with
    an empty shell ended as 500."""
    from fastapi.testclient import TestClient

    from rsir_stac.api.bodies import MAX_LABEL_VERTICES_API, MAX_POLYGON_VERTICES
    from rsir_stac.serve import create_app

    def ring(n):
        pts = [[-99.0 + 0.001 * np.cos(2 * np.pi * i / n), 47.0 + 0.001 * np.sin(2 * np.pi * i / n)] for i in range(n)]
        return pts + [pts[0]]

    square = ring(4)
    with Index.open(str(labelled), model=tiny_bundle) as index:
        pids = [p.id for p in index.store.iter_points(with_vectors=False)]

        def body(geoms, model="another-model"):
            return {"labels": {"type": "FeatureCollection", "rsir:model_id": model, "features": [
                {"type": "Feature", "geometry": g, "properties": {"point_id": pids[i % len(pids)], "label": "positive"}}
                for i, g in enumerate(geoms)]}}

        big = ring(MAX_POLYGON_VERTICES + 10)
        in_collection = {"type": "GeometryCollection", "geometries": [{"type": "Polygon", "coordinates": [big]}]}
        many = [{"type": "Polygon", "coordinates": [ring(MAX_POLYGON_VERTICES - 1)]}] * (
            MAX_LABEL_VERTICES_API // MAX_POLYGON_VERTICES + 1)
        nested = {"type": "GeometryCollection", "geometries": [
            {"type": "GeometryCollection", "geometries": [{"type": "Polygon", "coordinates": [square]}]}]}
        empty_shell = {"type": "Polygon", "coordinates": [[], square]}
        with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
            r = client.post("/api/labels", json=body([in_collection]))
            assert r.status_code == 400 and "vertices" in r.json()["detail"], r.text
            r = client.post("/api/labels", json=body(many))
            assert r.status_code == 400 and f"over the {MAX_LABEL_VERTICES_API}" in r.json()["detail"], r.text
            for g in (nested, empty_shell):   # labels of another model with odd footprints: matched or not, never 500
                r = client.post("/api/labels", json=body([g], model=tiny_bundle.model_id))
                assert r.status_code == 200, r.text
                r = client.post("/api/labels", json={"labels": {"type": "FeatureCollection", "features": [
                    {"type": "Feature", "geometry": g, "properties": {"point_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                                                                     "label": "positive", "model_id": "m1"}}]}})
                assert r.status_code in (400, 404), r.text


def test_a_burst_of_map_tiles_beyond_the_queue_is_refused_at_once(tmp_path, tiny_bundle):
    """N8: every tile of a burst waited for a render slot, each holding one of the service's
    threads (225 tiles held the page and the API for 27 s).  Beyond RENDER_QUEUE running or
    waiting, a tile is 429 at once; the tiles in the queue are drawn."""
    import threading

    from rsir_stac.apierrors import TooManyRequests
    from rsir_stac.maptiles import render as render_mod
    from rsir_stac.maptiles.grid import _web_mercator

    tif = make_geotiff(tmp_path / "a.tif", width=512, height=512, seed=4)
    renderer, (sc,) = _renderer_of(tif, 1.0, tiny_bundle)
    z = renderer.zooms(sc)[1]
    t = _web_mercator().tile((sc.bbox[0] + sc.bbox[2]) / 2, (sc.bbox[1] + sc.bbox[3]) / 2, z)
    gate = threading.Event()
    real = renderer._render

    def slow(*a, **kw):   # the drawing itself, held until the burst has arrived
        gate.wait(30)
        return real(*a, **kw)

    renderer._render = slow
    answers: list = []

    def ask(i):
        try:
            answers.append(renderer.render(z, t.x, t.y + i % 2))
        except TooManyRequests as err:
            answers.append(err)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(render_mod.RENDER_QUEUE + 5)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 30
    while sum(isinstance(a, TooManyRequests) for a in answers) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    gate.set()
    for th in threads:
        th.join(60)
    refused = [a for a in answers if isinstance(a, TooManyRequests)]
    assert len(refused) == 5 and "retry" in str(refused[0]), answers
    assert all(isinstance(a, bytes) and a.startswith(b"\x89PNG") for a in answers if a not in refused)


def test_box_read_averages_wide_integers_exactly(tmp_path):
    """N10: int32 samples near 2e8 summed in float32 came out up to 32 off."""
    from rasterio.windows import Window

    from rsir_stac.tiling.readcost import box_read

    rows = np.arange(64)[:, None] // 4 % 2   # bands of 4 rows: the 4 x 4 samples meet both values equally
    data = np.broadcast_to(np.where(rows == 0, 200_000_003, 200_000_001), (1, 64, 64)).astype("int32")
    path = tmp_path / "i32.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="int32", crs="EPSG:32618",
                       transform=from_origin(0, 0, 1, 1)) as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        out = box_read(ds, [1], Window(0, 0, 64, 64), (4, 4), all_valid=True)
    assert (out == 200_000_002).all(), out
