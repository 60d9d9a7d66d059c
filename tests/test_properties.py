"""Property-based tests (hypothesis): parsing, the tiling grid, tile footprints, junk input.

Complements the example-based tests in test_tiling.py / test_store.py (which
also hold a grid-count property and bbox/datetime round trips):

* every pixel is covered by exactly the tiles an independent reference grid
  predicts, for any raster shape, tile size, stride and edge rule;
* the lon/lat footprint of every tile, in any CRS (UTM zones, EPSG:4326,
  EPSG:3857, EPSG:3035) and any (rotated) geotransform, equals pyproj's
  transform of the window corners;
* bbox / polygon / datetime parsers accept exactly the valid inputs and answer
  everything else with a one-line InputError;
* junk bytes given as a source or a scene raise only RsirError.
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from affine import Affine
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rsir_stac.errors import InputError, RsirError
from rsir_stac.store.filters import (
    SearchFilter,
    _in_ring,
    load_polygon,
    matches,
    parse_bbox,
    parse_datetime_range,
    parse_near,
)
from rasterio.warp import transform_bounds

from rsir_stac.tiling import PixelWindow, SceneReader, grid_windows

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]

SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# =============================================================================== grid


def ref_offsets(length: int, tile: int, stride: int, edge: str) -> list[int]:
    """Tile offsets along one axis, straight from the rules in the tiling docstring."""
    if edge == "drop":  # whole tiles only
        return [k * stride for k in range(0, (length - tile) // stride + 1)] if length >= tile else []
    if length <= tile:  # one tile at 0, padded
        return [0]
    if edge == "shift":  # every stride, last one moved back to end at the edge
        n = (length - tile) // stride
        offs = [k * stride for k in range(n + 1)]
        return offs if offs[-1] == length - tile else offs + [length - tile]
    # pad: every stride until the raster is covered, or the next start would fall outside
    offs = [0]
    k = 1
    while offs[-1] + tile < length and k * stride < length:
        offs.append(k * stride)
        k += 1
    return offs


def axis_coverage(length: int, tile: int, offsets: list[int]) -> np.ndarray:
    cover = np.zeros(length, dtype=np.int64)
    for o in offsets:
        cover[o : o + tile] += 1
    return cover


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 400),
    height=st.integers(1, 400),
    tile=st.integers(1, 96),
    stride_factor=st.floats(0.05, 1.6),
    edge=st.sampled_from(["shift", "pad", "drop"]),
)
@example(width=256, height=192, tile=64, stride_factor=1.0, edge="shift")
@example(width=250, height=100, tile=100, stride_factor=1.0, edge="pad")
@example(width=1, height=1, tile=1, stride_factor=1.0, edge="drop")
def test_every_pixel_is_covered_by_exactly_the_expected_tiles(width, height, tile, stride_factor, edge):
    stride = max(1, round(tile * stride_factor))
    wins = grid_windows(width, height, tile, stride, edge)
    cols, rows = ref_offsets(width, tile, stride, edge), ref_offsets(height, tile, stride, edge)
    # the same windows as the reference, in row-major order
    assert wins == [PixelWindow(c, r, tile, tile) for r in rows for c in cols]
    # per-pixel coverage equals the product of the per-axis coverages
    covered = np.zeros((height, width), dtype=np.int64)
    for w in wins:
        covered[w.row_off : w.row_off + tile, w.col_off : w.col_off + tile] += 1
    expected = np.outer(axis_coverage(height, tile, rows), axis_coverage(width, tile, cols))
    assert np.array_equal(covered, expected)
    # and what that means for each rule
    if edge in ("shift", "pad") and stride <= tile:
        assert covered.min() >= 1  # nothing left out
    if stride == tile and edge != "drop" and width % tile == 0 and height % tile == 0:
        assert covered.max() == 1  # an exact fit is a partition
    if edge == "drop":
        assert all(w.col_off + tile <= width and w.row_off + tile <= height for w in wins)
        if stride == tile and wins:
            assert covered[: height - height % tile, : width - width % tile].min() == 1
            assert covered[height - height % tile :, :].sum() == 0 and covered[:, width - width % tile :].sum() == 0
    if edge == "shift":
        assert all(w.col_off + tile <= max(width, tile) and w.row_off + tile <= max(height, tile) for w in wins)
    # closed-form counts per axis
    for length, offs in ((width, cols), (height, rows)):
        if edge == "drop":
            assert len(offs) == (0 if length < tile else (length - tile) // stride + 1)
        elif stride <= tile:
            assert len(offs) == (1 if length <= tile else math.ceil((length - tile) / stride) + 1)


# ========================================================================= footprints

UTM = st.builds(lambda zone, south: f"EPSG:{327 if south else 326}{zone:02d}", st.integers(1, 60), st.booleans())
TOL = 1e-7  # degrees: about 1 cm
CRSS = st.one_of(UTM, st.sampled_from(["EPSG:4326", "EPSG:3857", "EPSG:3035"]))


def _area(crs: str) -> tuple[float, float, float, float]:
    """A lon/lat box well inside the CRS's area of use."""
    if crs.startswith("EPSG:326") or crs.startswith("EPSG:327"):
        zone = int(crs[-2:])
        west = -180 + 6 * (zone - 1)
        return (west + 0.5, 0.5, west + 5.5, 80.0) if crs.startswith("EPSG:326") else (west + 0.5, -79.0, west + 5.5, -0.5)
    if crs == "EPSG:3035":
        return (-10.0, 35.0, 30.0, 70.0)
    return (-179.0, -84.0, 178.0, 84.0)


@st.composite
def scenes(draw):
    crs = draw(CRSS)
    w, s, e, n = _area(crs)
    lon = draw(st.floats(w, e))
    lat = draw(st.floats(s, n))
    geographic = crs == "EPSG:4326"
    px = draw(st.floats(1e-6, 2e-4)) if geographic else draw(st.floats(0.1, 60.0))
    py = px * draw(st.floats(0.5, 2.0))
    angle = draw(st.one_of(st.just(0.0), st.floats(-30.0, 30.0)))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    tile = draw(st.integers(1, 80))
    stride = draw(st.integers(1, tile))
    edge = draw(st.sampled_from(["shift", "pad", "drop"]))
    target = None
    if not geographic and crs != "EPSG:3857" and draw(st.booleans()):
        target = draw(st.floats(0.5, 4.0)) * math.sqrt(px * py)
    return dict(crs=crs, lon=lon, lat=lat, px=px, py=py, angle=angle, width=width, height=height, tile=tile,
                stride=stride, edge=edge, target=target)


def _open_memory_scene(p: dict):
    from pyproj import Transformer
    from rasterio.io import MemoryFile

    x0, y0 = Transformer.from_crs("EPSG:4326", p["crs"], always_xy=True).transform(p["lon"], p["lat"])
    transform = Affine.translation(x0, y0) * Affine.rotation(p["angle"]) * Affine.scale(p["px"], -p["py"])
    mem = MemoryFile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mem.open(driver="GTiff", width=p["width"], height=p["height"], count=3, dtype="uint8",
                      crs=p["crs"], transform=transform) as ds:
            ds.write(np.zeros((3, p["height"], p["width"]), np.uint8))
    return mem, transform


@SLOW
@given(scenes())
def test_tile_footprints_equal_pyproj_in_any_crs(p):
    from pyproj import Transformer

    mem, t = _open_memory_scene(p)
    to_lonlat = Transformer.from_crs(p["crs"], "EPSG:4326", always_xy=True)
    with mem, mem.open() as ds:
        reader = SceneReader(ds, "memory.tif", tile_size=p["tile"], stride=p["stride"], edge=p["edge"],
                             target_gsd=p["target"])
        refs = reader.windows()
        if p["target"] is None:
            sx = sy = 1.0
            assert reader.grid_width == p["width"] and reader.grid_height == p["height"]
        else:  # projected metres: the scale is target / pixel size per axis
            sx, sy = p["target"] / p["px"], p["target"] / p["py"]
            assert reader.grid_width == max(1, round(p["width"] / sx))
            assert reader.grid_height == max(1, round(p["height"] / sy))
        assert [r.grid for r in refs] == grid_windows(reader.grid_width, reader.grid_height, p["tile"],
                                                      p["stride"], p["edge"])
        for ref in refs[:: max(1, len(refs) // 25)]:  # a sample of windows
            g = ref.grid
            c0, r0 = g.col_off * sx, g.row_off * sy
            # the footprint is the part of the window on the raster (a padded or resampled edge
            # window may run past it)
            c1, r1 = min(c0 + g.width * sx, p["width"]), min(r0 + g.height * sy, p["height"])
            pix = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), ((c0 + c1) / 2, (r0 + r1) / 2)]
            xs, ys = zip(*(t * cr for cr in pix))
            lons, lats = to_lonlat.transform(xs, ys)
            want = list(zip(lons, lats))
            for got, exp in zip([*ref.corners, ref.centroid], want):
                # GDAL's and pyproj's PROJ builds agree to ~1e-12 deg, except ~1e-8 deg (1 mm) for LAEA
                assert got[0] == pytest.approx(exp[0], abs=TOL) and got[1] == pytest.approx(exp[1], abs=TOL)
            # the bbox holds the corners, and for north-up tiles is what transform_bounds gives
            w, s, e, n = ref.bbox
            assert w <= e  # no scene here reaches the antimeridian
            for lon, lat in ref.corners:
                assert w - 1e-12 <= lon <= e + 1e-12 and s - 1e-12 <= lat <= n + 1e-12
            if p["angle"] == 0.0:
                bounds = (t.c + c0 * t.a, t.f + r1 * t.e, t.c + c1 * t.a, t.f + r0 * t.e)
                want_bbox = transform_bounds(p["crs"], "EPSG:4326", *bounds, densify_pts=21)
                assert ref.bbox == pytest.approx(want_bbox, abs=TOL)
            assert ref.crs == ds.crs.to_string()
            w, h = round(g.width * sx), round(g.height * sy)
            if p["edge"] != "pad":  # the grid may end a fraction of a pixel past the raster: the window does not
                w, h = min(w, p["width"] - round(c0)), min(h, p["height"] - round(r0))
            assert ref.window == PixelWindow(round(c0), round(r0), w, h)
            assert p["edge"] == "pad" or (ref.window.col_off + ref.window.width <= p["width"]
                                          and ref.window.row_off + ref.window.height <= p["height"])
            if p["angle"] == 0.0:  # north-up: UL is west of UR and north of LL (UL against LR failed for a
                # 1 px tall, wide tile in UTM 18S at 73 S: the grid's convergence put LR 1 mm north of UL)
                assert ref.corners[0][0] < ref.corners[1][0] and ref.corners[0][1] > ref.corners[3][1]
        assert all(r.gsd == reader.gsd for r in refs)
        if p["target"] is not None:
            assert reader.gsd == pytest.approx(p["target"])


# ============================================================================ parsing

finite = st.floats(-400, 400, allow_nan=False, allow_infinity=False)
anyfloat = st.one_of(finite, st.sampled_from([float("nan"), float("inf"), -float("inf"), 90.0, -90.0, 180.0, -180.0]))


def _valid_bbox(w, s, e, n) -> bool:
    """W > E is valid: a box across the antimeridian (RFC 7946)."""
    return (all(math.isfinite(v) for v in (w, s, e, n)) and -180 <= w <= 180 and -180 <= e <= 180
            and -90 <= s < n <= 90)


@settings(max_examples=400, deadline=None)
@given(anyfloat, anyfloat, anyfloat, anyfloat)
def test_bbox_accepts_exactly_the_valid_boxes(w, s, e, n):
    text = f"{w!r},{s!r},{e!r},{n!r}"
    if _valid_bbox(w, s, e, n):
        assert parse_bbox(text) == (w, s, e, n)
        assert SearchFilter(bbox=(w, s, e, n)).bbox == (w, s, e, n)
    else:
        with pytest.raises(InputError) as info:
            parse_bbox(text)
        msg = str(info.value)
        assert "\n" not in msg and "bbox" in msg and ";" in msg  # names the object, then the fix
        with pytest.raises(InputError):
            SearchFilter(bbox=(w, s, e, n))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
@example("1,2,3")
@example("a,b,c,d")
@example("1,2,3,4,5")
@example("")
def test_bbox_text_never_crashes(text):
    try:
        w, s, e, n = parse_bbox(text)
    except InputError as err:
        assert "\n" not in str(err)
    else:
        assert _valid_bbox(w, s, e, n)


@settings(max_examples=200, deadline=None)
@given(anyfloat, anyfloat, anyfloat)
def test_near_accepts_exactly_the_valid_circles(lon, lat, r):
    ok = all(math.isfinite(v) for v in (lon, lat, r)) and -180 <= lon <= 180 and -90 <= lat <= 90 and r > 0
    if ok:
        assert parse_near(f"{lon!r},{lat!r},{r!r}") == (lon, lat, r)
    else:
        with pytest.raises(InputError):
            parse_near(f"{lon!r},{lat!r},{r!r}")


@st.composite
def convex_rings(draw):
    """A convex polygon: 3-12 points on an ellipse at well-separated angles, closed."""
    n = draw(st.integers(3, 12))
    cx, cy = draw(st.floats(-170, 170)), draw(st.floats(-80, 80))
    rx, ry = draw(st.floats(0.01, 9.0)), draw(st.floats(0.01, 9.0))
    gaps = draw(st.lists(st.floats(1.0, 3.0), min_size=n, max_size=n))
    total = sum(gaps)
    angles = np.cumsum([0.0] + [g / total * 2 * math.pi for g in gaps[:-1]]) + draw(st.floats(0, 2 * math.pi))
    pts = [(round(cx + rx * math.cos(a), 9), round(cy + ry * math.sin(a), 9)) for a in angles]
    return tuple(pts + [pts[0]])


@settings(max_examples=200, deadline=None)
@given(convex_rings())
def test_convex_polygons_are_accepted_and_round_trip(ring):
    assert SearchFilter(polygon=ring).polygon.polygons == ((ring, ()),)


@settings(max_examples=200, deadline=None)
@given(convex_rings())
def test_open_rings_are_rejected(ring):
    with pytest.raises(InputError, match="ring is not closed|needs at least 4"):
        SearchFilter(polygon=ring[:-1])


@settings(max_examples=200, deadline=None)
@given(convex_rings().filter(lambda r: len(r) >= 5), st.data())
def test_swapping_neighbours_makes_a_bowtie_that_is_rejected(ring, data):
    pts = list(ring[:-1])
    i = data.draw(st.integers(1, len(pts) - 2))
    pts[i], pts[i + 1] = pts[i + 1], pts[i]
    with pytest.raises(InputError, match=r"is not a valid polygon \(Self-intersection.*\); fix self-intersections"):
        SearchFilter(polygon=tuple(pts + [pts[0]]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(convex_rings(), st.lists(st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)), min_size=1, max_size=20))
def test_polygon_filter_matches_shapely_and_survives_a_file_round_trip(tmp_path_factory, ring, offsets):
    from shapely.geometry import Point, Polygon

    poly = Polygon(ring)
    path = tmp_path_factory.mktemp("poly") / "p.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {},
                                "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}))
    assert load_polygon(path).polygons == ((ring, ()),)
    flt = SearchFilter(polygon=ring)
    (minx, miny, maxx, maxy) = poly.bounds
    for fx, fy in offsets:
        lon = (minx + maxx) / 2 + fx * (maxx - minx) / 2
        lat = (miny + maxy) / 2 + fy * (maxy - miny) / 2
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            continue
        pt = Point(lon, lat)
        if poly.exterior.distance(pt) < 1e-8:
            continue  # at the boundary: inside (closed areas, within EDGE_TOL); shapely may say either
        inside = poly.contains(pt)
        assert _in_ring(lon, lat, ring) == inside
        assert matches({"location": {"lon": lon, "lat": lat}}, flt) == inside


instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31),
                        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=9)),
                                                   timezone(timedelta(hours=-3, minutes=-30))]))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-:/.TZz+ ", max_size=45))
@example("2021-02-30/2021-03-01")
@example("2021-01-01T25:00:00Z")
@example("../..")
@example("/")
def test_datetime_text_never_crashes(text):
    try:
        start, end = parse_datetime_range(text)
    except InputError as err:
        assert "\n" not in str(err) and "datetime" in str(err)
    else:
        assert start is not None or end is not None
        assert all(t is None or t.tzinfo == timezone.utc for t in (start, end))
        assert start is None or end is None or start <= end


@settings(max_examples=200, deadline=None)
@given(instants, instants)
def test_reversed_datetime_ranges_are_rejected(a, b):
    assume(a != b)
    early, late = sorted((a, b))
    with pytest.raises(InputError, match="ends before it starts; swap START and END"):
        parse_datetime_range(f"{late.isoformat()}/{early.isoformat()}")
    assert parse_datetime_range(late.isoformat()) == (late, late)


# ========================================================================= junk input

JUNK = st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=600).map(lambda b: b"II*\x00" + b),  # TIFF magic, garbage after
    st.binary(max_size=600).map(lambda b: b"MM\x00*" + b),
    st.text(max_size=300).map(lambda t: ("{" + t).encode()),  # looks like JSON
    st.sampled_from([b"[]", b"{}", b"null", b'{"type": "Feature"}', b'{"type": "FeatureCollection"}',
                     b'{"stac_version": "1.0.0", "type": "Catalog"}',
                     b'{"stac_version": "1.0.0", "type": "Feature", "id": 3, "assets": []}']),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JUNK, st.sampled_from(["junk.tif", "junk.json", "junk.bin"]))
def test_junk_sources_raise_only_rsir_errors(tmp_path_factory, raw, name):
    from rsir_stac.stac import iter_scenes

    path = tmp_path_factory.mktemp("junk") / name
    path.write_bytes(raw)
    try:
        scenes = list(iter_scenes([str(path)]))
    except RsirError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    for scene in scenes:  # it listed (e.g. TIFF magic): opening it must fail cleanly
        try:
            with SceneReader.open(scene.href, tile_size=16) as reader:
                reader.windows()
        except RsirError as err:
            assert "\n" not in str(err)


def test_reference_offsets_agree_with_hand_examples():
    assert ref_offsets(250, 100, 100, "shift") == [0, 100, 150]
    assert ref_offsets(250, 100, 100, "drop") == [0, 100]
    assert ref_offsets(250, 100, 100, "pad") == [0, 100, 200]
    assert ref_offsets(50, 100, 100, "shift") == [0] and ref_offsets(50, 100, 100, "drop") == []
