"""Second geo-correctness trial (trial-geo, thirtieth session): tiles 180 degrees wide or more
(a coarse global grid) had the complement of their longitudes as bbox; coarse tiles in curved
projections were stored as four corners that cut their bowed edges by kilometres; a location
on the antimeridian was found or not depending on the sign of 180."""

from __future__ import annotations

import numpy as np
import pytest

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=256, native_gsd=True, min_valid=0.0)


def _payloads(index) -> list[dict]:
    from rsir_stac.store import open_store

    with open_store(str(index), read_only=True) as s:
        return [p.payload for p in s.iter_points(with_vectors=False)]


def _extent(index):
    from rsir_stac.store import open_store

    with open_store(str(index), read_only=True) as s:
        return tuple(s.info().extent)


def test_a_global_grid_tiled_in_256_degree_tiles_has_their_longitudes_as_bbox(tmp_path, tiny_bundle):
    """1 degree global grid (360 x 180 px), 256 px tiles: the bboxes were [76, -90, 180, 90] and
    [-180, -90, -76, 90] (the other side of the world) and every --at inside was refused."""
    tif = make_geotiff(tmp_path / "world.tif", width=360, height=180, crs="EPSG:4326", res=1.0,
                       origin=(-180.0, 90.0))
    idx = tmp_path / "idx"
    ingest([str(tif)], index=str(idx), model=tiny_bundle, options=NATIVE)
    boxes = sorted(tuple(p["bbox"]) for p in _payloads(idx))
    assert boxes == [(-180.0, -90.0, 76.0, 90.0), (-76.0, -90.0, 180.0, 90.0)]
    assert _extent(idx) == (-180.0, -90.0, 180.0, 90.0)
    with Index.open(str(idx), model=tiny_bundle) as index:
        for lon, lat in ((10.0, 60.0), (-170.0, -45.0), (170.0, 80.0)):
            hit = index.search(at=(lon, lat), k=1).query_payload
            w, s, e, n = hit["bbox"]
            assert w <= lon <= e and s <= lat <= n


def test_one_tile_round_the_world_spans_every_longitude():
    """A 2.5 degree grid in one 144 px tile: its bbox had zero width, [-180, -90, -180, 90]."""
    from rasterio.transform import from_origin

    from rsir_stac.tiling.footprints import tile_footprints

    _, _, b = tile_footprints(from_origin(-180.0, 90.0, 2.5, 2.5), "EPSG:4326", np.array([[0, 0, 144, 72]], float))
    assert b.tolist() == [[-180.0, -90.0, 180.0, 90.0]]
    _, _, b = tile_footprints(from_origin(0.0, 90.0, 1.40625, 1.40625), "EPSG:4326",
                              np.array([[0, 0, 128, 64], [128, 0, 128, 64]], float))   # a 0..360 grid
    assert b.tolist() == [[0.0, 0.0, 180.0, 90.0], [-180.0, 0.0, 0.0, 90.0]]


def _outline_ring(payload) -> list[tuple[float, float]]:
    from shapely.geometry import shape

    from rsir_stac.labels import footprint_geometry

    return shape(footprint_geometry(payload))


@pytest.mark.parametrize("crs, origin, res", [("EPSG:3978", (-2400000.0, 2900000.0), 1000.0),   # Canada Lambert
                                              ("EPSG:3035", (2800000.0, 4900000.0), 1000.0)])  # LAEA Europe, Iceland
def test_coarse_tiles_in_curved_projections_store_their_bowed_edges(tmp_path, tiny_bundle, crs, origin, res):
    """1 km grids, 256 px tiles: their edges bow 2.5-3.5 px in lon/lat, and the four corners made
    a footprint that gave points near an edge to the neighbouring tile.  The stored footprint now
    follows the true outline to a small fraction of a pixel."""
    import rasterio
    from pyproj import Transformer
    from shapely.geometry import Polygon

    tif = make_geotiff(tmp_path / "grid.tif", width=512, height=512, crs=crs, res=res, origin=origin)
    idx = tmp_path / "idx"
    ingest([str(tif)], index=str(idx), model=tiny_bundle, options=NATIVE)
    with rasterio.open(tif) as ds:
        t = ds.transform
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    for p in _payloads(idx):
        w = p["window"]
        c0, r0, c1, r1 = w["col_off"], w["row_off"], w["col_off"] + w["width"], w["row_off"] + w["height"]
        u = np.linspace(0, 1, 101)
        cols = np.concatenate([c0 + (c1 - c0) * u, np.full(101, c1), c1 + (c0 - c1) * u, np.full(101, c0)])
        rows = np.concatenate([np.full(101, r0), r0 + (r1 - r0) * u, np.full(101, r1), r1 + (r0 - r1) * u])
        truth = Polygon(zip(*to_ll.transform(*(t * (cols, rows)))))
        stored = _outline_ring(p)
        deg_per_px = res / 111_000.0
        assert truth.hausdorff_distance(stored) < 0.1 * deg_per_px / np.cos(np.radians(truth.centroid.y))
    # a place 1.5 px inside the west edge of the east tiles is theirs, not their western neighbour's
    with Index.open(str(idx), model=tiny_bundle) as index:
        for row in (60.5, 300.5):
            lon, lat = to_ll.transform(*(t * (256 + 1.5, row)))
            hit = index.search(at=(lon, lat), k=1).query_payload
            assert hit["window"]["col_off"] == 256, (row, hit["window"])


def test_a_location_on_the_antimeridian_is_found_as_180_and_as_minus_180(tmp_path, tiny_bundle):
    """1 degree tiles on either side of 180 (Copernicus DEM N05E179 and N05W180): each was found at
    one sign of 180 only; with both indexed, --at 180 took a tile whose centre is far away."""
    east = make_geotiff(tmp_path / "e179.tif", width=64, height=64, crs="EPSG:4326", res=1 / 64, origin=(179.0, 6.0))
    west = make_geotiff(tmp_path / "w180.tif", width=64, height=64, crs="EPSG:4326", res=1 / 64,
                        origin=(-180.0, 6.0), seed=1)
    opts = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)
    for tif in (east, west):
        ingest([str(tif)], index=str(tmp_path / tif.stem), model=tiny_bundle, options=opts)
        with Index.open(str(tmp_path / tif.stem), model=tiny_bundle) as index:
            for lon in (180.0, -180.0):
                assert index.search(at=(lon, 5.5), k=1).query_payload["item_id"].startswith(tif.stem)


def _limb_raster(path, crs, transform, n, off):
    """An RGB raster whose pixels where ``off(x, y)`` holds are nodata 0 (space, or past 180)."""
    import rasterio

    rng = np.random.default_rng(0)
    a = np.kron(rng.integers(20, 235, (3, n // 16, n // 16)), np.ones((16, 16))).astype(np.uint8)
    rows, cols = np.mgrid[0:n, 0:n]
    x, y = transform.c + (cols + 0.5) * transform.a, transform.f + (rows + 0.5) * transform.e
    a[:, off(x, y)] = 0
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs=crs,
                       transform=transform, nodata=0) as ds:
        ds.write(a)
    return path


GEOS = "+proj=geos +lon_0=-75 +h=35786023 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +sweep=x +no_defs"


def test_a_scene_reaching_off_the_earth_keeps_its_tiles_on_it(tmp_path, tiny_bundle, caplog):
    """A geostationary scene over the disk's edge (every full-disk ABI/SEVIRI product) was refused
    whole ("the scene lies outside where its CRS maps the Earth ... rio edit-info --crs", with a
    kilobyte of WKT).  Its tiles reaching into space are now left out, said in one warning, and the
    rest are indexed.  A Web Mercator raster running past 180 is on the Earth throughout: all its
    tiles stay (a first version of this fix, checking that points map back, dropped half of them)."""
    import logging

    from pyproj import Transformer
    from rasterio.transform import Affine

    to_ll = Transformer.from_crs(GEOS, "EPSG:4326", always_xy=True)
    geos = _limb_raster(tmp_path / "limb.tif", GEOS, Affine(800000 / 256, 0, 4.9e6, 0, -800000 / 256, 4e5), 256,
                        lambda x, y: ~np.isfinite(to_ll.transform(x, y)[0]))
    opts = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)
    idx = tmp_path / "idx-limb"
    with caplog.at_level(logging.WARNING, logger="rsir_stac"):
        report = ingest([str(geos)], index=str(idx), model=tiny_bundle, options=opts)
    assert not report.items_failed and 0 < report.points_written < 16
    assert any("where its CRS +proj=geos" in m and "maps no place on the Earth" in m for m in caplog.messages)
    for p in _payloads(idx):
        assert all(np.isfinite([c["lon"], c["lat"]]).all() for c in p["corners"])
    world = 20037508.342789244
    merc = make_geotiff(tmp_path / "merc.tif", width=256, height=256, crs="EPSG:3857", res=world / 256,
                        origin=(world * 0.75, world * 0.5))   # 135 degrees E to 225 (= -135)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rsir_stac"):
        report = ingest([str(merc)], index=str(tmp_path / "idx-merc"), model=tiny_bundle, options=opts)
    assert report.points_written == 16 and not any("no place on the Earth" in m for m in caplog.messages)


def test_ingest_counts_the_tiles_it_leaves_out_in_space(tmp_path, tiny_bundle):
    """Re-check N4: `ingest --json` of a geostationary scene whose tiles were mostly in space said only
    `tiles_total: 10` (of 64); the count of those left out was in a stderr warning alone."""
    import json

    from click.testing import CliRunner
    from pyproj import Transformer
    from rasterio.transform import Affine

    from rsir_stac.cli import main

    to_ll = Transformer.from_crs(GEOS, "EPSG:4326", always_xy=True)
    n, size = 256, 64
    t = Affine(800000 / n, 0, 4.9e6, 0, -800000 / n, 4e5)
    tif = _limb_raster(tmp_path / "limb.tif", GEOS, t, n, lambda x, y: ~np.isfinite(to_ll.transform(x, y)[0]))
    rows, cols = np.mgrid[0:n, 0:n]
    on = np.isfinite(to_ll.transform(t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e)[0])
    in_space = sum(not on[r:r + size, c:c + size].any() for r in range(0, n, size) for c in range(0, n, size))
    assert 0 < in_space < 16
    args = ["ingest", str(tif), "--index", str(tmp_path / "idx"), "--model", str(tiny_bundle.path),
            "--tile-size", str(size), "--native-gsd", "--min-valid", "0"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["tiles_off_earth"], doc["tiles_total"]) == (in_space, 16 - in_space), doc
    r = CliRunner().invoke(main, args)  # again: all indexed, the text line counts them too
    assert r.exit_code == 0, r.output
    assert (f"tiles {16 - in_space}: 0 written, {16 - in_space} already indexed, 0 skipped (mostly empty), 0 failed; "
            f"{in_space} more left out (no place on the Earth in their CRS: space beyond a geostationary disk, or "
            "past a projection's edge); ") in r.stdout, r.stdout


def test_only_ingest_says_which_tiles_are_off_the_earth(tmp_path, tiny_bundle, caplog):
    """Re-check: the ingest warning "... tiles reach where its CRS maps no place on the Earth ..., so they
    are left out" came again on every `search --thumbnails` of such a scene (each thumbnail reads its
    tile through the scene's tiling), where "left out" reads as left out of the results.  Ingest says
    it once; a search and its thumbnails say nothing of it."""
    import logging

    from pyproj import Transformer
    from rasterio.transform import Affine

    to_ll = Transformer.from_crs(GEOS, "EPSG:4326", always_xy=True)
    n = 256
    t = Affine(800000 / n, 0, 4.9e6, 0, -800000 / n, 4e5)
    tif = _limb_raster(tmp_path / "limb.tif", GEOS, t, n, lambda x, y: ~np.isfinite(to_ll.transform(x, y)[0]))
    idx = tmp_path / "idx"
    said = lambda: [r for r in caplog.records if "maps no place on the Earth" in r.getMessage()  # noqa: E731
                    and r.levelno >= logging.WARNING]
    with caplog.at_level(logging.INFO, logger="rsir_stac"):
        ingest([str(tif)], index=str(idx), model=tiny_bundle,
               options=IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0))
        assert len(said()) == 1
        caplog.clear()
        from rsir_stac.thumbnails import read_tile

        with Index.open(str(idx), model=tiny_bundle) as index:
            payloads = [p.payload for p in index.store.iter_points(with_vectors=False)]
            for p in payloads[:4]:
                assert read_tile(p).ndim == 3
        assert said() == [], [r.getMessage() for r in said()]


def test_a_raster_of_another_planet_is_named_as_such(tmp_path, tiny_bundle):
    """A Mars raster (IAU_2015:49900) was refused with a PROJJSON dump as the cause; a projected one
    with "the scene lies outside where its CRS maps the Earth ... rio edit-info --crs"."""
    from rsir_stac.errors import RasterError
    from rsir_stac.tiling import SceneReader

    tif = make_geotiff(tmp_path / "mars.tif", width=64, height=64, crs="+proj=longlat +R=3396190 +no_defs",
                       res=0.01, origin=(10.0, 5.0))
    with pytest.raises(RasterError, match=r"mars\.tif is on another body, not the Earth \(its CRS \+proj=longlat"):
        SceneReader.open(tif)
    tif = make_geotiff(tmp_path / "mars_eqc.tif", width=64, height=64, crs="+proj=eqc +R=3396190 +units=m +no_defs",
                       res=200.0, origin=(100000.0, 300000.0))
    with pytest.raises(RasterError, match=r"mars_eqc\.tif is on another body, not the Earth"):
        with SceneReader.open(tif) as r:
            r.windows()


def test_search_areas_past_180_and_round_a_pole_say_how_to_draw_them():
    """A ring drawn with lon 190 (0..360, an unwrapped web map) was told to "give lon/lat in degrees"
    (it was); a ring round the pole got "Self-intersection[240 85]", a point not in the file.  The
    advice given is followed below and accepted."""
    from rsir_stac.errors import InputError
    from rsir_stac.store.areas import GeoArea

    with pytest.raises(InputError, match=r"longitude 190.0 is outside -180..180; give it as -170 \(an area across 180"):
        GeoArea.from_geojson({"type": "Polygon", "coordinates": [[[170, 60], [190, 60], [190, 70], [170, 70], [170, 60]]]})
    across = GeoArea.from_geojson({"type": "Polygon", "coordinates": [[[170, 60], [-170, 60], [-170, 70], [170, 70],
                                                                       [170, 60]]]})
    assert across.contains(180.0, 65.0) and across.contains(-175.0, 65.0) and not across.contains(0.0, 65.0)
    with pytest.raises(InputError, match=r"goes round the north pole .* e\.g\. \[\[-180, 85\], \[180, 85\], \[180, 90\]"):
        GeoArea.from_geojson({"type": "Polygon", "coordinates": [[[0, 85], [120, 85], [-120, 85], [0, 85]]]})
    cap = GeoArea.from_geojson({"type": "Polygon", "coordinates": [[[-180, 85], [180, 85], [180, 90], [-180, 90],
                                                                    [-180, 85]]]})
    assert cap.contains(60.0, 87.0) and not cap.contains(60.0, 80.0)
    with pytest.raises(InputError, match=r"goes round the south pole"):
        GeoArea.from_geojson({"type": "Polygon", "coordinates": [[[0, -70], [120, -70], [-120, -70], [0, -70]]]})


def test_a_projected_raster_far_from_where_its_crs_is_used_is_warned_about(tmp_path, caplog):
    """A UTM 33N raster with easting and northing swapped landed in the Indian Ocean without a word;
    one a zone's width or two from its own (Norway's whole country in UTM 33) is not warned about."""
    import logging

    from rsir_stac.tiling import SceneReader

    swapped = make_geotiff(tmp_path / "swapped.tif", width=64, height=64, crs="EPSG:32633", res=10.0,
                           origin=(5_000_000.0, 500_000.0))
    norway = make_geotiff(tmp_path / "finnmark.tif", width=64, height=64, crs="EPSG:32633", res=10.0,
                          origin=(1_000_000.0, 7_800_000.0))   # ~28 degrees E, 70 N: outside 12-18 E, used there
    with caplog.at_level(logging.WARNING, logger="rsir_stac"):
        SceneReader.open(norway).close()
        assert not [m for m in caplog.messages if "far outside" in m]
        SceneReader.open(swapped).close()
    msg = next(m for m in caplog.messages if "far outside" in m)
    assert "swapped.tif: its centre falls at lon 52." in msg and "EPSG:32633 is used (lon 12..18" in msg


def test_a_pole_is_found_whatever_longitude_is_given(tmp_path, tiny_bundle):
    """A lon/lat raster over 20..30 E reaching 90 N: `--at 25,90` found its top tile, `--at 0,90`
    and `--at -150,90` were refused, though the raster's whole top row is the pole."""
    tif = make_geotiff(tmp_path / "cap.tif", width=64, height=64, crs="EPSG:4326", res=(10 / 64, 5 / 64),
                       origin=(20.0, 90.0))
    ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
           options=IngestOptions(tile_size=32, native_gsd=True, min_valid=0.0))
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as index:
        ids = {index.search(at=(lon, 90.0), k=1).query_id for lon in (25.0, 0.0, -150.0, 180.0)}
        assert len(ids) == 1
        with pytest.raises(Exception, match="no tile"):
            index.search(at=(0.0, 86.0), k=1)   # off the pole the longitude matters


ORTHO = "+proj=ortho +lat_0=40 +lon_0=-100 +ellps=WGS84 +units=m +no_defs"


@pytest.mark.parametrize("crs, window, n, size", [
    (GEOS, (4.934e6, 4e5, 800000), 256, 64),        # the east limb, 3 km pixels
    (ORTHO, (5.878e6, 4e5, 800000), 256, 64),
    (GEOS, (-5.76e6, 5.76e6, 11.52e6), 256, 32),    # the whole disk, 45 km pixels: tile edges meet the limb
], ids=["geos-east", "ortho-east", "geos-disk"])
def test_a_tile_over_the_limb_gets_the_footprint_of_its_part_on_the_disk(tmp_path, tiny_bundle, crs, window, n, size):
    """A tile of a geostationary (or orthographic) scene that reaches over the limb, partly on the
    Earth and partly in space, was left out whole: the Earth's edge of every full-disk product went
    unindexed.  It now gets the footprint of its part on the disk (the tile cut at the limb), holding
    every on-disk pixel's place, and a search at such a place finds it; tiles wholly in space stay out.
    (The re-check found the first form of the cut leaving pixels at the limb 0.02-0.31 degree outside
    their tile: its outline ran along chords 13 m inside the limb, and a tile edge meeting the limb
    bends sharply in lon/lat, so a search at the pixel beside it found the neighbouring tile.)"""
    from pyproj import Transformer
    from rasterio.transform import Affine
    import shapely
    from shapely.geometry import Polygon

    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x0, y0, width = window
    t = Affine(width / n, 0, x0, 0, -width / n, y0)
    tif = _limb_raster(tmp_path / "limb.tif", crs, t, n, lambda x, y: ~np.isfinite(to_ll.transform(x, y)[0]))
    idx = tmp_path / "idx"
    report = ingest([str(tif)], index=str(idx), model=tiny_bundle,
                    options=IngestOptions(tile_size=size, native_gsd=True, min_valid=0.0))
    rows, cols = np.mgrid[0:n, 0:n]
    lon, lat = to_ll.transform(t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e)
    on = np.isfinite(lon)
    tiles_on = {(c, r) for r in range(0, n, size) for c in range(0, n, size) if on[r:r + size, c:c + size].any()}
    wholly_on = {(c, r) for c, r in tiles_on if on[r:r + size, c:c + size].all()}
    assert len(wholly_on) < len(tiles_on) < (n // size) ** 2   # tiles over the limb and wholly in space
    assert not report.items_failed and report.points_written == len(tiles_on)
    feet = {(p["window"]["col_off"], p["window"]["row_off"]):
            Polygon(p.get("outline") or [(c["lon"], c["lat"]) for c in p["corners"]]) for p in _payloads(idx)}
    assert set(feet) == tiles_on
    # the outermost pixels: on the disk, next to one that is not (the tester's misses were there, up to
    # 0.31 degree outside their tile while the outline ran along chords of the limb 13 m inside it)
    off = ~on
    rim = on & (np.roll(off, 1, 0) | np.roll(off, -1, 0) | np.roll(off, 1, 1) | np.roll(off, -1, 1))
    with Index.open(str(idx), model=tiny_bundle) as index:
        for c, r in sorted(tiles_on - wholly_on):
            foot = feet[(c, r)]
            x, y = lon[r:r + size, c:c + size][on[r:r + size, c:c + size]], lat[r:r + size, c:c + size][on[r:r + size, c:c + size]]
            assert shapely.contains_xy(foot, x, y).all(), ((c, r), int((~shapely.contains_xy(foot, x, y)).sum()))
            rr, cc = np.nonzero(rim[r:r + size, c:c + size])
            for j in np.linspace(0, len(rr) - 1, 5).astype(int):
                at = (float(lon[r + rr[j], c + cc[j]]), float(lat[r + rr[j], c + cc[j]]))
                w = index.search(at=at, k=1).query_payload["window"]
                assert (w["col_off"], w["row_off"]) == (c, r), (at, (c, r))
