"""Issue 13, case 5: any GeoJSON area (holes, MultiPolygon, Feature, FeatureCollection)
as a search area, in both back ends, the CLI and the HTTP API."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from shapely.geometry import Point as ShapelyPoint
from shapely.geometry import shape

from rsir_stac.store import Point, SearchFilter, open_store
from rsir_stac.store.filters import load_polygon

DIM = 4
# a 21 x 21 lattice of tile centres over 10..12 E, 45..47 N (0.1 degree steps, off the rings' edges)
LONS = np.round(np.arange(10.0, 12.001, 0.1) + 0.003, 6)
LATS = np.round(np.arange(45.0, 47.001, 0.1) + 0.003, 6)

OUTER = [[10.25, 45.25], [11.75, 45.25], [11.75, 46.75], [10.25, 46.75], [10.25, 45.25]]
HOLE = [[10.75, 45.75], [11.25, 45.75], [11.25, 46.25], [10.75, 46.25], [10.75, 45.75]]
SECOND = [[10.05, 46.85], [10.45, 46.85], [10.45, 46.98], [10.05, 46.98], [10.05, 46.85]]
AREAS = {
    "polygon_with_hole": {"type": "Polygon", "coordinates": [OUTER, HOLE]},
    "multipolygon": {"type": "MultiPolygon", "coordinates": [[OUTER, HOLE], [SECOND]]},
    "feature": {"type": "Feature", "properties": {"name": "x"},
                "geometry": {"type": "Polygon", "coordinates": [OUTER, HOLE]}},
    "feature_collection": {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [OUTER, HOLE]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [SECOND]}}]},
}


def inside(doc, lon, lat) -> bool:
    """The right value, from shapely: inside the area and outside its holes."""
    geoms = [f["geometry"] for f in doc["features"]] if doc["type"] == "FeatureCollection" else \
        [doc["geometry"]] if doc["type"] == "Feature" else [doc]
    return any(shape(g).contains(ShapelyPoint(lon, lat)) for g in geoms)


@pytest.fixture(scope="module")
def lattice():
    rng = np.random.default_rng(0)
    pts = []
    for lon in LONS:
        for lat in LATS:
            pts.append(Point(str(uuid.uuid4()), rng.normal(size=DIM).astype(np.float32),
                             {"item_id": "i", "location": {"lon": float(lon), "lat": float(lat)},
                              "bbox": [lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01]}))
    return pts


@pytest.fixture(scope="module")
def stores(lattice, tmp_path_factory):
    edge = open_store(str(tmp_path_factory.mktemp("areas") / "idx"))
    mem = open_store(qdrant_url=":memory:")
    for s in (edge, mem):
        s.ensure_collection(DIM, "m")
        s.upsert(lattice)
    yield {"edge": edge, "qdrant-client": mem}
    edge.close()
    mem.close()


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
@pytest.mark.parametrize("name", list(AREAS))
def test_area_filters_exactly_the_centres_inside(stores, lattice, backend, name, tmp_path):
    doc = AREAS[name]
    want = {p.id for p in lattice if inside(doc, p.payload["location"]["lon"], p.payload["location"]["lat"])}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(doc))
    flt = SearchFilter(polygon=load_polygon(path))
    store = stores[backend]
    got = {h.id for h in store.search(np.zeros(DIM, np.float32), k=len(lattice), flt=flt, exact=True)}
    assert got == want and store.count(flt) == len(want)
    hole_centre = next(p.id for p in lattice if p.payload["location"] == {"lon": 11.003, "lat": 46.003})
    assert hole_centre not in got  # the tiles in the hole are not returned


def _index(tmp_path, bundle):
    from rsir_stac.ingest import IngestOptions, ingest
    from tests.conftest import make_geotiff

    dy = 0.0000695  # square on the ground at 46 N (0.0001 deg of longitude)
    tif = make_geotiff(tmp_path / "s.tif", width=320, height=320, crs="EPSG:4326", res=(0.0001, dy),
                       origin=(11.0, 46.0))
    idx = tmp_path / "idx"
    assert ingest([str(tif)], index=str(idx), model=bundle,
                  options=IngestOptions(tile_size=64, native_gsd=True)).points_written == 25
    with open_store(str(idx), read_only=True) as store:
        centres = {p.id: (p.payload["location"]["lon"], p.payload["location"]["lat"])
                   for p in store.iter_points(with_vectors=False)}
    # an area over the scene with a hole over its middle tile
    w, n, e, s = 11.0, 46.0, 11.032, 46.0 - 320 * dy
    mid = 46.0 - 160 * dy  # the middle tile's centre latitude
    area = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[w + 0.001, s + 0.001], [e - 0.001, s + 0.001], [e - 0.001, n - 0.001], [w + 0.001, n - 0.001],
         [w + 0.001, s + 0.001]],
        [[11.0145, mid - 0.0015], [11.0175, mid - 0.0015], [11.0175, mid + 0.0015], [11.0145, mid + 0.0015],
         [11.0145, mid - 0.0015]]]}}
    want = {i for i, (lon, lat) in centres.items() if inside(area, lon, lat)}
    assert 0 < len(want) < len(centres)
    return idx, centres, area, want


def test_cli_within_takes_holes(tmp_path, tiny_bundle):
    from click.testing import CliRunner

    from rsir_stac.cli import main

    idx, centres, area, want = _index(tmp_path, tiny_bundle)
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(area))
    r = CliRunner().invoke(main, ["search", "--at", "11.016,45.989", "--index", str(idx), "--model",
                                  str(tiny_bundle.path), "--within", str(path), "--format", "json", "-k", "50",
                                  "--include-query"])
    assert r.exit_code == 0, r.output
    assert {h["id"] for h in json.loads(r.stdout)["hits"]} == want


def test_http_api_takes_any_area(tmp_path, tiny_bundle):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    idx, centres, area, want = _index(tmp_path, tiny_bundle)
    fc = {"type": "FeatureCollection", "features": [area]}
    with Index.open(str(idx), model=tiny_bundle) as index, \
            TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
        for doc in (area, area["geometry"], fc, {"type": "MultiPolygon", "coordinates": [area["geometry"]["coordinates"]]}):
            r = client.post("/api/search", json={"lon": 11.016, "lat": 45.989, "k": 50, "include_query": True,
                                                 "polygon": doc})
            assert r.status_code == 200, r.text
            assert {f["id"] for f in r.json()["features"]} == want
        info = client.get("/api/info").json()  # the page says what a date/collection filter leaves out
        assert (info["undated"], info["no_collection"]) == (25, 25)
        r = client.get("/api/search", params={"lon": 11.016, "lat": 45.989, "k": 50, "include_query": True,
                                              "polygon": json.dumps(fc)})
        assert r.status_code == 200 and {f["id"] for f in r.json()["features"]} == want


# ----------------------------------------------------------------------------- world-sized areas

GLOBE = [(float(x), float(y)) for x in range(-175, 180, 10) for y in range(-85, 90, 10)] + \
    [(179.9, 0.5), (-179.9, 0.5), (0.5, 89.99), (0.5, -89.99)]
WORLD_BOXES = [(-180, -90, 180, 90), (-180, -80, 180, 80), (0, -90, 180, 90), (-179, -90, 179, 90),
               (170, -90, -170, 90), (-100, -89, -98, 90)]
WORLD_RINGS = {
    "world": [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]],
    "world_85": [[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]],
    "arctic_cap": [[-180, 80], [180, 80], [180, 90], [-180, 90], [-180, 80]],
    "antarctica_like": [[-180, -90], [180, -90], [180, -70], [0, -60], [-180, -70], [-180, -90]],
}


@pytest.fixture(scope="module")
def globe(tmp_path_factory):
    rng = np.random.default_rng(5)
    pts = [Point(str(uuid.UUID(int=i + 1)), rng.normal(size=DIM).astype(np.float32),
                 {"location": {"lon": lon, "lat": lat}, "item_id": f"s{i}"}) for i, (lon, lat) in enumerate(GLOBE)]
    made = {"edge": open_store(tmp_path_factory.mktemp("globe") / "idx"), "client": open_store(qdrant_url=":memory:")}
    for s in made.values():
        s.ensure_collection(DIM, "m")
        s.upsert(pts)
    yield made
    for s in made.values():
        s.close()


def _found(store, flt) -> set[tuple[float, float]]:
    return {(h.payload["location"]["lon"], h.payload["location"]["lat"])
            for h in store.search(np.zeros(DIM, np.float32), k=len(GLOBE), flt=flt)}


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_world_sized_boxes_find_every_point_inside(globe, backend):
    for w, s, e, n in WORLD_BOXES:  # closed boxes; W > E across 180
        want = {(x, y) for x, y in GLOBE if s <= y <= n and ((w <= x <= e) if w <= e else (x >= w or x <= e))}
        assert _found(globe[backend], SearchFilter(bbox=(w, s, e, n))) == want, (w, s, e, n)


@pytest.mark.parametrize("backend", ["edge", "client"])
@pytest.mark.parametrize("name", sorted(WORLD_RINGS))
def test_polygons_along_the_map_edge_are_read_as_drawn(globe, backend, name):
    from shapely.geometry import Polygon as ShapelyPolygon

    ring = WORLD_RINGS[name]
    doc = {"type": "Polygon", "coordinates": [ring]}
    want = {(x, y) for x, y in GLOBE if ShapelyPolygon(ring).covers(ShapelyPoint(x, y))}  # closed: edges inside
    assert len(want) > 10
    assert _found(globe[backend], SearchFilter(polygon=load_polygon_doc(doc))) == want


def load_polygon_doc(doc):
    from rsir_stac.store.filters import polygon_from_geojson

    return polygon_from_geojson(doc, "polygon")


# --------------------------------------------------------------------------- polygon through its envelope

L_SHAPE = [[10.25, 45.25], [11.75, 45.25], [11.75, 46.0], [11.0, 46.0], [11.0, 46.75], [10.25, 46.75], [10.25, 45.25]]


def _spy(store, monkeypatch):
    """Record the filter of every engine search the store makes (the real engine answers)."""
    calls, raw = [], store._search_raw

    def search_raw(v, limit, flt, *args):
        calls.append((limit, flt))
        return raw(v, limit, flt, *args)

    monkeypatch.setattr(store, "_search_raw", search_raw)
    return calls


@pytest.fixture(scope="module")
def geo_vectors(tmp_path_factory):
    """The lattice with vectors that are the centres' own positions: the nearest tiles in
    vector space are the nearest on the map, so a query can be aimed at a corner."""
    pts = [Point(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{lon},{lat}")),
                 np.array([lon - 11.0, lat - 46.0, 0.0, 0.0], np.float32) * 10,
                 {"item_id": "i", "location": {"lon": float(lon), "lat": float(lat)}})
           for lon in LONS for lat in LATS]
    edge = open_store(str(tmp_path_factory.mktemp("geo-vectors") / "idx"))
    mem = open_store(qdrant_url=":memory:")
    for s in (edge, mem):
        s.ensure_collection(DIM, "m")
        s.upsert(pts)
    yield pts, {"edge": edge, "qdrant-client": mem}
    edge.close()
    mem.close()


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
@pytest.mark.parametrize("name, aim, path", [
    ("polygon_with_hole", (11.021, 46.037), "polygon again"),  # at the hole: the envelope's nearest are in it
    ("polygon_with_hole", (10.433, 45.617), "envelope"),
    ("multipolygon", (10.311, 46.917), "envelope"),
    ("l_shape", (11.513, 46.529), "polygon again"),  # at the missing corner: the envelope's nearest are out
    ("l_shape", (10.517, 45.541), "envelope"),
])
def test_polygon_search_through_its_envelope_is_the_polygons_answer(geo_vectors, backend, name, aim, path,
                                                                   monkeypatch):
    """A polygon is searched through its envelope and refined (store.envelope); the hits are
    exactly the brute-force nearest inside the polygon (holes and edges as Qdrant's rule),
    and where too few of the envelope's nearest lie inside, the polygon is asked itself."""
    from rsir_stac.store.envelope import envelope_plan
    from rsir_stac.store.filters import GeoArea

    import rsir_stac.store.envelope as envelope

    monkeypatch.setattr(envelope, "GRAPH_SHARE", 0.0)  # as where the engine walks its graph (dense tiles)
    pts, stores = geo_vectors
    doc = {"type": "Polygon", "coordinates": [L_SHAPE]} if name == "l_shape" else AREAS[name]
    flt = SearchFilter(polygon=GeoArea.from_geojson(doc))
    query = np.array([aim[0] - 11.0, aim[1] - 46.0, 0.0, 0.0], np.float32) * 10
    inside_pts = [p for p in pts if inside(doc, p.payload["location"]["lon"], p.payload["location"]["lat"])]
    dist = {p.id: float(np.linalg.norm(p.vector.astype(np.float64) - query)) for p in inside_pts}
    store = stores[backend]
    calls = _spy(store, monkeypatch)
    hits = store.search(query, k=7, flt=flt)
    assert [h.id for h in hits] == sorted(dist, key=lambda i: (np.float32(dist[i]), i))[:7]
    assert envelope_plan(flt) is not None and calls[0][1].polygon is None and calls[0][1].bbox is not None
    assert [c[1].polygon is not None for c in calls] == ([False] if path == "envelope" else [False, True])


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
def test_few_matches_send_the_polygon_as_it_is(geo_vectors, backend, monkeypatch):
    """Where the engine's estimate says the polygon matches few tiles (exact scan: a polygon
    costs what a box does) the polygon goes to the engine as it is, in one call."""
    from rsir_stac.store.envelope import envelope_plan
    from rsir_stac.store.filters import GeoArea

    pts, stores = geo_vectors
    store = stores[backend]
    flt = SearchFilter(polygon=GeoArea.from_geojson(AREAS["polygon_with_hole"]))
    est = store.estimate(flt)
    assert est >= store.count(flt) > 0  # the estimate counts whole geohash cells: never below
    assert not envelope_plan(flt).worth_it(est, DIM) and envelope_plan(flt).worth_it(None, DIM)
    calls = _spy(store, monkeypatch)
    store.search(np.array([1.37, -2.11, 0.0, 0.0], np.float32), k=3, flt=flt)
    assert [c[1].polygon is not None for c in calls] == [True]


def test_thin_or_world_wide_areas_go_to_the_engine_as_they_are():
    """A diagonal strip fills little of its envelope, and an area either side of 180 has an
    envelope round the world: both are sent as polygons (no envelope plan)."""
    from rsir_stac.store.envelope import MIN_FILL, envelope_plan
    from rsir_stac.store.filters import GeoArea

    strip = GeoArea.from_rings([[0, 0], [1, 1], [1, 1.05], [0, 0.05], [0, 0]])
    assert envelope_plan(SearchFilter(polygon=strip)) is None
    square = GeoArea.from_rings([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])
    plan = envelope_plan(SearchFilter(polygon=square, collections=("c",)))
    assert plan is not None and plan.fill == pytest.approx(1.0) and plan.box_filter.collections == ("c",)
    assert plan.box_filter.bbox == pytest.approx((0.0, 0.0, 1.0, 1.0), abs=1e-8) and plan.wide(11) == 22
    assert plan.worth_it(20_000, 32) and not plan.worth_it(19_999, 32) and plan.worth_it(10_000, 64)
    octagon = GeoArea.from_rings([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 9)[:-1]], close=True)
    assert envelope_plan(SearchFilter(polygon=octagon)).fill == pytest.approx(np.sqrt(2) / 2, abs=1e-6)
    assert np.sqrt(2) / 2 > MIN_FILL
    across = GeoArea.from_rings([[179, -1], [-179, -1], [-179, 1], [179, 1], [179, -1]])
    assert len(across.polygons) == 2 and envelope_plan(SearchFilter(polygon=across)) is None
    assert envelope_plan(SearchFilter(polygon=square, bbox=(0, 0, 0.5, 0.5))) is None


@pytest.mark.parametrize("name, content", [("a.geojson", b""), ("a.gpkg", b" \r\n\t"), ("b.json", b"\xef\xbb\xbf\n")])
def test_an_empty_area_file_is_called_empty(tmp_path, name, content):
    """Analyst trial: a 0-byte --within file was 'not GeoJSON nor a vector file GDAL reads (GDAL does
    not recognise its format)'."""
    from rsir_stac.errors import InputError

    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"^polygon file .* is empty \(no bytes, or white space only\)"):
        load_polygon(path)
