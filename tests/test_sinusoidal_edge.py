"""A scene reaching past its projection's own edge (RELIABILITY, "a scene reaching off the Earth").

A MODIS sinusoidal tile at the grid's edge (h35v08, h09v02, h26v02) holds fill (declared nodata)
beyond the projection's curved edge x = R*pi*cos(lat).  PROJ maps that fill past 180 and wraps it to
the other side of the world, so its partly valid edge tiles had footprints, bboxes and even centres
there (this fixture: up to 10.3 degrees past 180).  Those tiles now keep the part of their footprint
on this side of the edge.  A Web Mercator or EASE-Grid 2.0 mosaic holds pixels past 180: its tiles
there keep their footprints past 180 (a map-back check, tried and reverted, dropped them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import Affine
from shapely.geometry import Point, shape

from rsir_stac.errors import PointNotFoundError, RasterError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.labels import footprint_geometry
from rsir_stac.store import SearchFilter, open_store
from rsir_stac.tiling import SceneReader
from rsir_stac.tiling.footprints import bbox_contains

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

SINU = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
R_MODIS = 6371007.181
OPTS = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)


def _raster(path, crs, transform, width, height, fill, nodata=0, value=0):
    """RGB ``uint8`` with blocky texture (20..234, ``nodata`` declared); ``value`` where ``fill(x, y)``
    holds at the pixel centre (CRS units)."""
    rng = np.random.default_rng(0)
    a = np.kron(rng.integers(20, 235, (3, height // 16 + 1, width // 16 + 1)), np.ones((16, 16)))
    a = a[:, :height, :width].astype(np.uint8)
    rows, cols = np.mgrid[0:height, 0:width]
    x, y = transform * (cols + 0.5, rows + 0.5)
    a[:, fill(x, y)] = value
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=crs,
                       transform=transform, nodata=nodata) as ds:
        ds.write(a)
    return path


def _modis_edge(path, side, nodata=0, value=0):
    """384 x 128 px of 7 km, latitude 30..38 N, across the sinusoidal grid's east (or, mirrored, west)
    edge: the edge runs from column 64 (38 N) to column 290 (30 N); fill ``value`` beyond it."""
    res, w, h = 7000.0, 384, 128
    x0 = 15.3e6 if side == "east" else -15.3e6 - w * res
    t = Affine(res, 0, x0, 0, -res, R_MODIS * math.radians(30) + h * res)
    return _raster(path, SINU, t, w, h, lambda x, y: np.abs(x) > R_MODIS * math.pi * np.cos(y / R_MODIS),
                   nodata=nodata, value=value)


def _payloads(index) -> list[dict]:
    with open_store(str(index), read_only=True) as s:
        return [p.payload for p in s.iter_points(with_vectors=False)]


def _lons(geom) -> np.ndarray:
    g = shape(geom)
    return np.array([c[0] for p in getattr(g, "geoms", [g]) for c in p.exterior.coords])


def _valid_pixels_covered(tif, payload, n=300):
    """Every sampled valid pixel centre of the tile (projected to lon/lat) is inside its stored
    footprint and bbox."""
    with rasterio.open(tif) as ds:
        w = payload["window"]
        win = rasterio.windows.Window(w["col_off"], w["row_off"], w["width"], w["height"])
        valid = ds.read_masks(1, window=win) > 0
        rows, cols = np.nonzero(valid)
        pick = np.random.default_rng(1).choice(len(rows), size=min(n, len(rows)), replace=False)
        x, y = ds.transform * (cols[pick] + w["col_off"] + 0.5, rows[pick] + w["row_off"] + 0.5)
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    poly = shape(footprint_geometry(payload))
    for a, b in zip(lon, lat):
        assert poly.distance(Point(a, b)) < 1e-9, (payload["window"], a, b)
        assert bbox_contains(payload["bbox"], a, b), (payload["window"], payload["bbox"], a, b)


@pytest.mark.parametrize("side", ["east", "west"])
def test_a_modis_tile_at_the_grids_edge_keeps_its_footprints_on_this_side_of_180(tmp_path, tiny_bundle, side):
    """Before: the partly valid edge tiles' footprints reached 0.6-10.3 degrees past 180 (bboxes
    across 180, two centres on the other side) and a search there found them.  A re-run finds the
    tiles held (their corners, which resume compares, are the window's as before)."""
    tif = _modis_edge(tmp_path / f"h35v05-{side}.tif", side)
    idx = tmp_path / "idx"
    report = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert not report.items_failed and report.points_written == 8
    sign = 1.0 if side == "east" else -1.0
    clipped = 0
    for p in _payloads(idx):
        lons = _lons(footprint_geometry(p))
        assert (sign * lons >= 150.0).all() and (np.abs(lons) <= 180.0).all(), (p["window"], lons.min(), lons.max())
        w, _, e, _ = p["bbox"]
        assert w <= e and sign * w >= 150.0 and sign * e >= 150.0, (p["window"], p["bbox"])  # not across 180
        assert sign * p["location"]["lon"] > 150.0
        _valid_pixels_covered(tif, p)
        clipped += (e == 180.0) if side == "east" else (w == -180.0)
    assert clipped == 5  # the five tiles the edge runs through end on it
    other = (-179.9, 30.0, -165.0, 38.0) if side == "east" else (165.0, 30.0, 179.9, 38.0)
    with open_store(str(idx), read_only=True) as s:
        assert s.count(SearchFilter(bbox=other)) == 0
        s.point_at(sign * 179.9, 30.2, with_vectors=False)  # the edge tile's ground near 180 is still found
        with pytest.raises(PointNotFoundError):  # the other side of 180: nothing of this scene
            s.point_at(-sign * 179.0, 30.5, with_vectors=False)
    again = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert not again.items_failed and again.points_written == 0


def _refs_and_tiles(tif):
    with SceneReader.open(str(tif), tile_size=64, target_gsd=None, min_valid=0.0) as r:
        refs = {ref.grid: ref for ref in r.windows()}
        return refs, [t.ref for t in r.iter_tiles()]


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:6933"])
def test_a_mosaic_with_pixels_past_180_keeps_its_footprints_there(tmp_path, tiny_bundle, crs):
    """Web Mercator and EASE-Grid 2.0 hold real pixels past x = pi*R (a Pacific mosaic): those
    tiles keep their footprints past 180 (stored as negative longitudes), every footprint is the one
    ``windows`` gives, and each covers its valid pixels."""
    edge_x = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(180.0, 0.0)[0]
    res = edge_x / 512
    tif = _raster(tmp_path / "pacific.tif", crs, Affine(res, 0, edge_x - 96 * res, 0, -res, res * 128), 192, 128,
                  lambda x, y: np.zeros(x.shape, dtype=bool))  # 146.25 E to 213.75 (= -146.25), nodata declared
    refs, tiles = _refs_and_tiles(tif)
    assert len(tiles) == 6 and all(t == refs[t.grid] for t in tiles)
    idx = tmp_path / "idx"
    ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    payloads = _payloads(idx)
    past = [p for p in payloads if p["bbox"][0] < 0 and p["bbox"][2] < 0]
    across = [p for p in payloads if p["bbox"][0] > p["bbox"][2]]
    assert len(past) == 2 and len(across) == 2, [p["bbox"] for p in payloads]
    for p in past:
        assert -160.0 < p["location"]["lon"] < -150.0 and (_lons(footprint_geometry(p)) < 0).all()
    for p in payloads:
        _valid_pixels_covered(tif, p)


def test_a_utm_zone_60_scene_with_fill_past_180_keeps_its_footprints(tmp_path):
    """UTM 60 (central meridian 177) reaches 180 far inside its own domain: a scene there with fill
    east of 180 is not past its projection's edge, and its tiles keep their footprints across 180."""
    to_xy = Transformer.from_crs("EPSG:4326", "EPSG:32760", always_xy=True)
    x, y = to_xy.transform(180.0, -16.5)
    to_ll = Transformer.from_crs("EPSG:32760", "EPSG:4326", always_xy=True)
    tif = _raster(tmp_path / "utm60.tif", "EPSG:32760", Affine(30.0, 0, x - 96 * 30.0, 0, -30.0, y + 64 * 30.0),
                  128, 128, lambda xs, ys: to_ll.transform(xs, ys)[0] < 0)
    refs, tiles = _refs_and_tiles(tif)
    assert len(tiles) == 4 and all(t == refs[t.grid] for t in tiles)
    assert sum(t.bbox[0] > t.bbox[2] for t in tiles) == 2


def test_tiles_away_from_the_edge_are_as_windows_gives_them(tmp_path):
    """Only the tiles the edge runs through change; the others are the very refs of ``windows``."""
    refs, tiles = _refs_and_tiles(_modis_edge(tmp_path / "modis.tif", "east"))
    same = [t for t in tiles if t == refs[t.grid]]
    changed = [t for t in tiles if t != refs[t.grid]]
    assert len(same) == 3 and len(changed) == 5
    for t in changed:
        r = refs[t.grid]
        assert (t.window, t.grid, t.corners, t.crs, t.gsd) == (r.window, r.grid, r.corners, r.crs, r.gsd)
        assert r.bbox[0] > r.bbox[2] and t.bbox[2] == 180.0 and t.outline is not None


@pytest.mark.parametrize("nodata, value", [(None, 0), (0, 255)], ids=["no-nodata", "fill-255-nodata-0"])
def test_fill_past_a_sinusoidal_edge_that_is_not_declared_nodata_is_no_place(tmp_path, tiny_bundle, caplog,
                                                                               nodata, value):
    """Before: the fill past the edge read as data, so the 4 tiles wholly past it were indexed wholly
    on the other side of 180 (a search there found 4 identical fill tiles) and the 5 edge tiles'
    footprints crossed 180, with no word.  Past a sinusoidal edge there is no place: those 4 tiles
    are left out, the edge tiles keep their part on this side, and one warning names ``--nodata``."""
    tif = _modis_edge(tmp_path / "h35v05.tif", "east", nodata=nodata, value=value)
    idx = tmp_path / "idx"
    with caplog.at_level("WARNING", logger="rsir_stac"):
        report = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert not report.items_failed and report.points_written == 8
    warned = [r.getMessage() for r in caplog.records if "past its CRS's edge" in r.getMessage()]
    assert len(warned) == 1 and "--nodata" in warned[0], warned
    assert ("declares none" if nodata is None else "declares 0") in warned[0]
    for p in _payloads(idx):
        lons = _lons(footprint_geometry(p))
        assert (lons >= 150.0).all() and (lons <= 180.0).all(), (p["window"], lons.min(), lons.max())
        assert p["bbox"][0] <= p["bbox"][2] and p["location"]["lon"] > 150.0
    with open_store(str(idx), read_only=True) as s:
        assert s.count(SearchFilter(bbox=(-179.9, 30.0, -165.0, 38.0))) == 0
    again = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert not again.items_failed and again.points_written == 0
    if nodata is None:  # the fix the warning gives
        assert "pass --nodata VALUE" in warned[0]
        opts = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0, nodata=value)
    else:
        assert f"rio edit-info --nodata VALUE {tif}" in warned[0]
        with rasterio.open(tif, "r+") as ds:
            ds.nodata = value
        opts = OPTS
    caplog.clear()
    with caplog.at_level("WARNING", logger="rsir_stac"):
        fixed = ingest([str(tif)], index=str(tmp_path / "fixed"), model=tiny_bundle, options=opts)
    assert fixed.points_written == 8 and not [r for r in caplog.records if "past its CRS's edge" in r.getMessage()]


@pytest.mark.parametrize("crs, curved", [(SINU, True), ("ESRI:54009", True), ("ESRI:54030", True), ("EPSG:3857", False),
                                         ("EPSG:6933", False), ("EPSG:32662", False), ("EPSG:3413", False),
                                         ("EPSG:3031", False), ("EPSG:32760", False)])
def test_only_a_pseudo_cylindrical_edge_is_curved(crs, curved):
    """Sinusoidal, Mollweide, Robinson: the meridian lon_0 + 180 bows, nothing lies past it.  Cylindrical
    (Web Mercator, EASE-Grid 2.0, plate carree): past it is the other side, one turn on.  Polar
    stereographic and UTM: no such edge to test (no change)."""
    from rsir_stac.tiling.domain import projection_edge

    edge = projection_edge(rasterio.crs.CRS.from_user_input(crs))
    assert (edge is not None and edge.curved) == curved


def test_a_scene_wholly_past_a_sinusoidal_edge_is_refused(tmp_path):
    """A scene whose every tile lies past the edge is off the Earth: a one-line error, as for a scene
    its CRS cannot map."""
    t = Affine(7000.0, 0, 19.2e6, 0, -7000.0, R_MODIS * math.radians(30) + 128 * 7000.0)
    tif = _raster(tmp_path / "off.tif", SINU, t, 128, 128, lambda x, y: np.zeros(x.shape, dtype=bool))
    with pytest.raises(RasterError, match=r"off.tif lies wholly past the edge of its CRS .*, 180 degrees from its "
                       r"central meridian 0, where it maps no place on the Earth; its geotransform or CRS is wrong"), \
            SceneReader.open(str(tif), tile_size=64, min_valid=0.0) as r:
        r.windows()


def test_reindex_brings_an_earlier_versions_edge_footprints_up_to_date(tmp_path, tiny_bundle, monkeypatch):
    """An index written before these fixes holds the edge tiles' footprints across 180 and the tiles
    wholly past the edge.  Re-ingesting skips them as already indexed; reindex re-reads every tile,
    so it now stores the footprint this version gives (it used to copy the old one) and leaves the
    tiles off the Earth out, as not a failure (it used to fail them as 'not in the raster any more
    (the file changed since ingest)')."""
    from rsir_stac.reindex import reindex

    tif = _modis_edge(tmp_path / "h35v05.tif", "east", nodata=None)
    old = tmp_path / "old"
    with monkeypatch.context() as m:  # the earlier versions: no projection edge known
        m.setattr("rsir_stac.tiling.scene.projection_edge", lambda crs: None)
        assert ingest([str(tif)], index=str(old), model=tiny_bundle, options=OPTS).points_written == 12
    before = _payloads(old)
    assert sum(p["bbox"][0] > p["bbox"][2] for p in before) == 5  # across 180
    assert sum(p["bbox"][0] <= p["bbox"][2] < 0 for p in before) == 4  # wholly on the other side
    report = reindex(str(old), str(tmp_path / "new"), model="v6")
    assert report.ok and (report.points_written, report.points_left_out, report.tiles_failed) == (8, 4, 0), report
    assert len(report.left_out) == 1 and "no place on the Earth" in report.left_out[0]
    after = _payloads(tmp_path / "new")
    assert len(after) == 8
    twin = _modis_edge(tmp_path / "twin.tif", "east")   # the same pixels with the fill declared: the ground
    for p in after:
        lons = _lons(footprint_geometry(p))
        assert (lons >= 150.0).all() and (lons <= 180.0).all() and p["bbox"][0] <= p["bbox"][2], p["bbox"]
        _valid_pixels_covered(twin, p)
    with open_store(str(tmp_path / "new"), read_only=True) as s:
        assert s.count(SearchFilter(bbox=(-179.9, 30.0, -165.0, 38.0))) == 0
    assert _payloads(old) == before  # the old index is left as it was


def _off_earth_filled(path, crs, transform, width, height):
    """Like the edge trial's scenes: texture where the pixel centre is a place (PROJ's inverse and
    forward give it back), 0 elsewhere, no nodata declared."""
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    def off(x, y):
        lon, lat = inv.transform(x, y)
        x2, y2 = fwd.transform(lon, lat)
        return ~np.isfinite(lon) | (np.abs(lat) > 90) | (np.hypot(np.asarray(x2) - x, np.asarray(y2) - y) > 1.0)

    return _raster(path, crs, transform, width, height, off, nodata=None)


def test_a_tile_touching_this_side_only_at_a_corner_is_left_out(tmp_path):
    """Edge trial: a grid aligned on the edge (a tile's corner at x = pi*R on the equator, as MODIS
    tiles are) kept that tile, its whole footprint and centre on the other side of 180."""
    pi_r = math.pi * R_MODIS
    tif = _off_earth_filled(tmp_path / "touch.tif", SINU, Affine(1000.0, 0, pi_r - 128_000.0, 0, -1000.0, 32_000.0),
                            256, 128)
    refs, tiles = _refs_and_tiles(tif)
    assert tiles and len(refs) == len(tiles) == 4, [t.grid for t in tiles]
    for t in tiles:
        assert 178.0 < t.centroid[0] <= 180.0 and t.bbox[0] <= t.bbox[2] <= 180.0, (t.grid, t.bbox, t.centroid)


def test_a_corner_the_edge_cuts_off_is_exported_as_that_triangle(tmp_path, tiny_bundle):
    """Edge trial: the part on this side of a tile whose corner alone is on the Earth is a triangle;
    its three-point outline was ignored for the window's corners, so export, --at and --within
    took a footprint across the whole world at that latitude."""
    lat0 = 40.0
    x_edge = math.pi * R_MODIS * math.cos(math.radians(lat0))
    t = Affine(1000.0, 0, x_edge - 129_000.0, 0, -1000.0, R_MODIS * math.radians(lat0) + 64_000.0)
    tif = _off_earth_filled(tmp_path / "corner.tif", SINU, t, 256, 128)
    idx = tmp_path / "idx"
    ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    corner = [p for p in _payloads(idx) if (p["window"]["col_off"], p["window"]["row_off"]) == (128, 0)]
    assert len(corner) == 1 and len(corner[0]["outline"]) == 3, corner
    g = shape(footprint_geometry(corner[0]))
    assert g.geom_type == "Polygon" and g.area < 1e-3 and g.bounds[0] > 179.9 and g.bounds[2] == 180.0, g.bounds
    with open_store(str(idx), read_only=True) as s:
        with pytest.raises(PointNotFoundError):
            s.point_at(-178.5, 40.3, with_vectors=False)


def test_a_scene_past_the_pole_is_refused_and_latitudes_stop_at_90(tmp_path):
    """Edge trial: a sinusoidal scene wholly past the north pole was indexed at lat 90.6-91.8 (found
    by no search), and a plate carree grid with a margin stored a bbox south of -93.9."""
    t = Affine(1000.0, 0, 0.0, 0, -1000.0, math.pi * R_MODIS / 2 + 200_000.0)
    tif = _off_earth_filled(tmp_path / "beyond.tif", SINU, t, 128, 128)
    with pytest.raises(RasterError, match="no tile of the scene lies on the Earth"), \
            SceneReader.open(str(tif), tile_size=64, min_valid=0.0) as r:
        r.windows()
    eqc = "EPSG:32662"   # plate carree: 111,319.49 m a degree; rows to 4 degrees past the south pole
    deg = 111_319.490793
    pc = _raster(tmp_path / "pc.tif", eqc, Affine(deg / 16, 0, 0.0, 0, -deg / 16, -80 * deg), 128, 224,
                 lambda x, y: np.zeros(x.shape, dtype=bool))
    refs, _ = _refs_and_tiles(pc)
    assert min(r.bbox[1] for r in refs.values()) == -90.0 and all(-90.0 <= r.centroid[1] for r in refs.values())
    assert len(refs) == 6   # the row wholly past the pole (lat -92..-94) is left out


def test_a_tile_ending_on_180_from_inside_has_its_east_on_180(tmp_path):
    """Edge trial: a tile whose corner PROJ puts at 180 + 5e-13 (on the sinusoidal edge at 85 N) got
    a bbox east of -179.9999999999995, across the antimeridian by a hair (W > E)."""
    lat = 85.0
    t = Affine(1000.0, 0, math.pi * R_MODIS * math.cos(math.radians(lat)) - 128_000.0, 0, -1000.0,
               R_MODIS * math.radians(lat) + 64_000.0)
    tif = _raster(tmp_path / "hi85.tif", SINU, t, 192, 128, lambda x, y: np.zeros(x.shape, dtype=bool))
    refs, _ = _refs_and_tiles(tif)
    touching = refs[next(g for g in refs if (g.col_off, g.row_off) == (64, 64))]
    assert touching.bbox[2] == 180.0 and touching.bbox[0] < touching.bbox[2], touching.bbox


@pytest.mark.parametrize("crs", ["ESRI:54009", "ESRI:54030"], ids=["mollweide", "robinson"])
def test_a_tile_reaching_past_a_mollweide_or_robinson_edge_keeps_its_part_on_the_earth(tmp_path, tiny_bundle, crs,
                                                                                      caplog):
    """Edge trial: PROJ gives no lon/lat past these projections' edges at all, so every tile reaching
    past the edge was left out whole (7 of 12 in a scene across the edge at 30 N, one of them 99.8 %
    on the Earth).  Now each tile with valid pixels is indexed with the footprint of its part on the
    Earth (cut at the edge), which covers them; tiles wholly past the edge stay out."""
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    xe, _ = fwd.transform(179.9999999, 30.0)
    _, y30 = fwd.transform(0.0, 30.0)
    src = _off_earth_filled(tmp_path / "raw.tif", crs, Affine(1000.0, 0, xe - 160_000.0, 0, -1000.0, y30 + 96_000.0),
                            256, 192)
    tif = tmp_path / "edge.tif"
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read()
    with rasterio.open(tif, "w", **{**profile, "nodata": 0}) as ds:   # the fill declared, as a product would
        ds.write(data)
    with rasterio.open(tif) as ds:
        valid = ds.read_masks(1) > 0
    with_valid = {(c, r) for r in range(0, 192, 64) for c in range(0, 256, 64) if valid[r:r + 64, c:c + 64].any()}
    idx = tmp_path / "idx"
    report = ingest([str(tif)], index=str(idx), model=tiny_bundle, options=OPTS)
    assert not report.items_failed
    payloads = _payloads(idx)
    assert {(p["window"]["col_off"], p["window"]["row_off"]) for p in payloads} == with_valid
    assert len(with_valid) > 5   # five tiles were indexed before: those wholly on the Earth
    for p in payloads:
        lons = _lons(footprint_geometry(p))
        assert (lons >= 150.0).all() and (lons <= 180.0).all() and p["bbox"][0] <= p["bbox"][2], p["bbox"]
        _valid_pixels_covered(tif, p)
    caplog.clear()   # the same pixels with the fill not declared: the same tiles, and one warning naming the fix
    with caplog.at_level("WARNING", logger="rsir_stac"):
        raw = ingest([str(src)], index=str(tmp_path / "raw"), model=tiny_bundle, options=OPTS)
    assert raw.points_written >= len(with_valid)
    warned = [r.getMessage() for r in caplog.records if "read as data" in r.getMessage()]
    assert len(warned) == 1 and "pass --nodata VALUE" in warned[0], warned
    assert {(p["window"]["col_off"], p["window"]["row_off"]) for p in _payloads(tmp_path / "raw")} >= with_valid
