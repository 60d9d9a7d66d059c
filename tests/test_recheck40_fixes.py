"""Fixes from the fortieth session's new-user trials (the analyst's loop, the map page).

Analyst trial:

* ``search``/``classify --within`` a 4-corner box saved in UTM was refused whenever ``serve`` held
  the index ("polygon has 1425 vertices; simplify it"): reprojecting densified every edge into
  ~1,400 vertices, over the service's 1,000.  Vertices left on straight lon/lat runs are now taken
  out again, and a file that is still over the limit is named with a fix that works.
* The API dropped a results file's unlabelled rows (used as labels) without the note the CLI gives,
  and the served CLI printed its warning twice and lost the query tile's item and date.
* A label FeatureCollection sent as the whole body, and a form field sent in the URL, got 422s with
  no fix; ``-k 10000 --offset 1`` was told to ask for 10000; an unlabelled CSV hits file was told
  to set ``properties.label``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import InputError
from tests.test_served_trial_fixes import served  # noqa: F401 - the fixture


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _on(served, command: str, *args):  # noqa: F811
    """``command`` on the served fixture's index (sent to its service), with its model."""
    return _run(command, "--index", served[0], "--model", served[2], *args)


def _utm_box(path, crs="EPSG:32615", bounds=(500000.0, 3299872.0, 500064.0, 3300000.0)):
    """A one-polygon GeoPackage of the box ``bounds`` (metres) in ``crs``: the west half of the
    served fixture's scenes (their tile centres at x = 500032 lie inside, x = 500096 outside)."""
    import geopandas as gpd
    from shapely.geometry import box

    gpd.GeoDataFrame({"name": ["west"]}, geometry=[box(*bounds)], crs=crs).to_file(path, driver="GPKG")
    return path


def test_a_small_projected_box_is_a_few_vertices_and_the_same_area(tmp_path):
    import pyproj
    import shapely
    from shapely.geometry import Point, shape

    from rsir_stac.api.params import polygon_vertices
    from rsir_stac.store.filter_parse import polygon_document

    doc = polygon_document(_utm_box(tmp_path / "box.gpkg"))
    assert polygon_vertices(doc) <= 24, polygon_vertices(doc)  # was 1,426
    poly = shape(doc["features"][0]["geometry"])
    # the same area: points 5 cm inside and outside each edge of the UTM box fall on the right side
    fwd = pyproj.Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    for t in (0.1, 0.37, 0.5, 0.81):
        for x, y, dx, dy in ((500000.0, 3299872 + 128 * t, 1, 0), (500064.0, 3299872 + 128 * t, -1, 0),
                             (500000 + 64 * t, 3299872.0, 0, 1), (500000 + 64 * t, 3300000.0, 0, -1)):
            inside = Point(fwd.transform(x + 0.05 * dx, y + 0.05 * dy))
            outside = Point(fwd.transform(x - 0.05 * dx, y - 0.05 * dy))
            assert poly.covers(inside) and not poly.covers(outside), (x, y)
    assert shapely.is_valid(poly)


def test_a_served_search_and_classify_within_a_projected_box_answer(served, tmp_path):  # noqa: F811
    from rsir_stac.store.filter_parse import polygon_document

    idx = served[0]
    area = _utm_box(tmp_path / "box.gpkg")
    every = _on(served, "search", "--at", "-92.9993,29.8299", "-k", "20", "--per-item", "0", "--format", "json")
    assert every.exit_code == 0, every.output
    first = json.loads(every.stdout)["hits"][0]["id"]
    r = _on(served, "search", "--point-id", first, "--within", area, "-k", "20", "--per-item", "0",
             "--include-query", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "sending the search" in r.stderr, r.stderr
    from shapely.geometry import Point, shape

    poly = shape(polygon_document(area)["features"][0]["geometry"])
    hits = json.loads(r.stdout)["hits"]
    assert len(hits) == 4, hits  # the west column of 2 scenes x 2 rows of 64 px tiles
    assert all(poly.covers(Point(h["location"]["lon"], h["location"]["lat"])) for h in hits), hits
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": hits[0]["id"], "geometry": None, "properties": {"label": "positive"}},
        {"type": "Feature", "id": hits[1]["id"], "geometry": None, "properties": {"label": "negative"}}]}))
    c = _on(served, "classify", "--labels", labels, "--within", area, "--out", tmp_path / "c.geojson",
             "--threshold", "0.0")
    assert c.exit_code == 0, c.output
    assert "scored 4 tiles" in c.stdout, c.stdout


def test_an_area_over_the_service_limit_is_sent_simplified_or_named_with_a_fix(served, tmp_path):  # noqa: F811
    import numpy as np

    a = np.linspace(0, 2 * np.pi, 1200)[:-1]
    centre = (-92.9993, 29.8299)
    for name, radius in (("round", np.full(len(a), 0.01)), ("star", np.where(np.arange(len(a)) % 2, 0.01, 0.005))):
        ring = [[centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)] for t, r in zip(a, radius)]
        path = tmp_path / f"{name}.geojson"
        path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring + ring[:1]]}))
        r = _on(served, "search", "--at", "-92.9993,29.8299", "--within", path)
        if name == "round":  # its 1,200 vertices follow a smooth curve: sent with fewer, within a stated distance
            assert r.exit_code == 0, r.output
            assert f"polygon file {path} has 1,200 vertices in lon/lat, more than the 1,000" in r.stderr, r.stderr
            assert "it was sent with" in r.stderr and " m of its edges" in r.stderr, r.stderr
            continue
        assert r.exit_code != 0, r.output  # a star's every vertex is a corner 500 m out: no fit within 11 m
        err = r.stderr.strip().splitlines()[-1]
        assert f"polygon file {path} has 1,200 vertices" in err and "at most 1,000" in err, err
        assert "simplify it" in err and "stop the service" in err, err


def test_projected_areas_across_the_antimeridian_and_around_a_pole_are_few_vertices(tmp_path):
    """Re-check: a 4-corner box in EPSG:3832 across 180 degrees, and in EPSG:3413 around the North Pole,
    were still ~1,450 vertices (the straight runs were kept whole for a ring with a jump or a pole)."""
    import geopandas as gpd
    from shapely.geometry import box

    from rsir_stac.api.params import polygon_vertices
    from rsir_stac.store.filter_parse import polygon_document, polygon_from_geojson

    path = tmp_path / "box_3832.gpkg"   # PDC Mercator: 150 E at x = 0, so 180 at x = 3.34e6 m
    gpd.GeoDataFrame({"n": [1]}, geometry=[box(3_300_000.0, -2_000_000.0, 3_400_000.0, -1_900_000.0)],
                     crs="EPSG:3832").to_file(path, driver="GPKG")
    doc = polygon_document(path)
    assert polygon_vertices(doc) <= 40, polygon_vertices(doc)
    lons = [x for x, _ in doc["features"][0]["geometry"]["coordinates"][0]]
    assert max(lons) > 179 and min(lons) < -179, lons   # across 180, as GeoArea cuts it
    area = polygon_from_geojson(doc, "box")
    assert area.contains(179.9, -17.5) and area.contains(-179.9, -17.5) and not area.contains(0.0, -17.5)


def test_a_served_search_within_a_box_around_the_pole_is_sent_simplified(served, tmp_path):  # noqa: F811
    import geopandas as gpd
    from shapely.geometry import box

    path = tmp_path / "pole.gpkg"   # 2 km around the North Pole: its edges curve in lon/lat, 1,460 vertices at 1 cm
    gpd.GeoDataFrame({"n": [1]}, geometry=[box(-1_000.0, -1_000.0, 1_000.0, 1_000.0)], crs="EPSG:3413").to_file(
        path, driver="GPKG")
    r = _on(served, "search", "--at", "-92.9993,29.8299", "--within", path, "--format", "json")
    assert r.exit_code == 0, r.output
    assert "it was sent with" in r.stderr and json.loads(r.stdout)["hits"] == [], r.stderr


def _post(url: str, body: dict | bytes, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _results_as_labels(served, tmp_path):  # noqa: F811
    """A ``search --out`` results file with its first row labelled positive (the others left as rows)."""
    r = _on(served, "search", "--at", "-92.9993,29.8299", "-k", "5", "--per-item", "0",
             "--out", tmp_path / "hits.geojson")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "hits.geojson").read_text())
    doc["features"][0]["properties"]["label"] = "positive"
    return doc


def test_the_api_notes_the_unlabelled_rows_of_a_results_file_used_as_labels(served, tmp_path):  # noqa: F811
    from rsir_stac.served import find_service

    url = find_service(served[0]).url
    doc = _results_as_labels(served, tmp_path)
    left = f"{len(doc['features']) - 1} result rows without a label were left out; 1 labelled tile is used"
    status, answer = _post(f"{url}/api/query", {"labels": doc, "k": 3})
    assert status == 200, answer
    assert any(left in n for n in answer["notes"]), answer["notes"]
    assert answer["query"]["item_id"], answer["query"]  # the first example tile's scene, as /api/search gives it
    status, answer = _post(f"{url}/api/labels", {"labels": doc})
    assert status == 200 and any(left in n for n in answer.get("notes", [])), answer
    status, answer = _post(f"{url}/api/classify", {"labels": doc})
    assert status == 200 and any(left in n for n in answer["notes"]), answer


def test_the_served_cli_warns_once_and_names_the_query_tile(served, tmp_path, caplog):  # noqa: F811
    path = tmp_path / "labelled_hits.geojson"
    path.write_text(json.dumps(_results_as_labels(served, tmp_path)))
    caplog.clear()
    r = _on(served, "search", "--labels", path, "-k", "2")
    assert r.exit_code == 0, r.output
    told = [m for m in caplog.messages if "result rows without a label were left out" in m]
    assert len(told) == 1, caplog.messages
    assert "result rows without a label" not in r.stderr, r.stderr  # the service was sent the labels alone
    line = next(x for x in r.stdout.splitlines() if x.startswith("query: "))
    assert " (s" in line and ") + " not in line.split(" (")[0], line  # "query: point ID (s0..., date) ..."


def test_a_label_collection_sent_as_the_whole_body_is_told_to_wrap_it(served, tmp_path):  # noqa: F811
    from rsir_stac.served import find_service

    url = find_service(served[0]).url
    doc = _results_as_labels(served, tmp_path)
    for op in ("labels", "classify", "query"):
        status, answer = _post(f"{url}/api/{op}", doc)
        assert status == 422, answer
        assert 'send it as the labels field: {"labels": <the FeatureCollection>' in answer["detail"], answer


def test_a_form_field_sent_in_the_url_is_told_where_it_goes(served, tmp_path):  # noqa: F811
    import io

    import numpy as np
    from PIL import Image

    from rsir_stac.served import find_service

    url = find_service(served[0]).url
    png = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(png, format="PNG")
    boundary = "rsirboundary40"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    status, answer = _post(f"{url}/api/search/image?k=5", body, f"multipart/form-data; boundary={boundary}")
    assert status == 422, answer
    assert "'k' was sent in the URL" in answer["detail"] and "curl -F k=" in answer["detail"], answer
    # a JSON body's field in the URL: told to put it in the body, never named by the handler's parameter ("req")
    status, answer = _post(f"{url}/api/classify?threshold=0.5", {"labels": {"type": "FeatureCollection",
                                                                           "features": []}})
    assert status == 422 and 'in its JSON body: send it there ({"threshold": ...})' in answer["detail"], answer
    assert "req" not in answer["detail"].replace("request", ""), answer
    # a query field sent as a form field of its own beside the multipart query
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n{{}}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n5\r\n--{boundary}--\r\n").encode()
    status, answer = _post(f"{url}/api/query", form, f"multipart/form-data; boundary={boundary}")
    assert status == 422 and "it is a field of the query JSON: put it in the query field" in answer["detail"], answer


def test_offset_and_k_over_the_limit_are_told_the_most_that_fits():
    from rsir_stac.store.query import check_k

    with pytest.raises(InputError, match=r"ask for at most 9999 with --offset 1$"):
        check_k(10000, 1)
    with pytest.raises(InputError, match=r"page with --offset below 10000"):
        check_k(5, 10000)


def test_an_unlabelled_csv_of_results_is_told_to_add_a_label_column(tmp_path):
    from rsir_stac.labels import read_labels

    path = tmp_path / "hits.csv"
    path.write_text("rank,id,distance\n1,07bb0a5a-27fb-50a8-82f1-23746d2fdcb4,0.1\n"
                    "2,0c857a0b-c672-5007-87f7-99d8212cbbb8,0.2\n")
    with pytest.raises(InputError, match="none is labelled; set a label column to"):
        read_labels(path)


# --------------------------------------------------------------------------- map page trial (server side)

@pytest.fixture(scope="module")
def year_scene(tmp_path_factory, tiny_bundle):
    """An index of one bare GeoTIFF ingested with ``--datetime 2015`` (the whole year, an interval) and
    ``--collection landsat``, and one undated GeoTIFF of another collection elsewhere."""
    from rsir_stac.ingest import IngestOptions, ingest
    from tests.conftest import make_geotiff

    root = tmp_path_factory.mktemp("year")
    a = make_geotiff(root / "y2015.tif", width=128, height=128, seed=4)
    b = make_geotiff(root / "undated.tif", width=128, height=128, seed=5, origin=(510000.0, 3300000.0))
    for src, opts in ((a, {"datetime": "2015", "collection": "landsat"}), (b, {"collection": "naip"})):
        assert ingest([str(src)], index=str(root / "idx"), model=tiny_bundle,
                      options=IngestOptions(tile_size=64, gsd=None, native_gsd=True, **opts)).ok
    return root / "idx"


@pytest.fixture()
def year_client(year_scene, tiny_bundle):
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    with Index.open(str(year_scene), model=tiny_bundle) as idx, \
            TestClient(create_app(idx, allowed_hosts=("testserver",))) as c:
        yield c


def test_the_imagery_of_a_scene_acquired_over_a_year_is_drawn_for_a_month_of_it(year_client):
    import io

    import morecantile
    import numpy as np
    from PIL import Image

    scenes = year_client.get("/api/scenes").json()["features"]
    year = next(f for f in scenes if f["properties"]["collection"] == "landsat")
    assert year["properties"]["datetime"].startswith("2015-01-01") and \
        year["properties"]["end_datetime"].startswith("2015-12-31"), year["properties"]
    w, s, e, n = year["properties"]["bbox"]
    t = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, 18)

    def opaque(dt: str) -> float:
        r = year_client.get(f"/api/imagery/{t.z}/{t.x}/{t.y}.png", params={"datetime": dt, "collection": "landsat"})
        assert r.status_code == 200, r.text
        return float((np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3] > 0).mean())

    assert opaque("2015") > 0.1
    assert opaque("2015-06") > 0.1 and opaque("2015-12-31T12:00:00Z") > 0.1  # inside the year: drawn (was empty)
    assert opaque("2016") == 0.0 and opaque("../2014-12-31") == 0.0          # outside it: not drawn


def test_the_undated_note_counts_only_tiles_the_other_filters_let_through(year_client):
    """The 4 undated tiles are of collection naip: a date filter with collection landsat leaves them out
    anyway, so no note says the date filter did (the page trial's "45 tiles ... left out" that were all
    of another collection); with no collection filter the note counts them."""
    scenes = year_client.get("/api/scenes").json()["features"]
    year = next(f for f in scenes if f["properties"]["collection"] == "landsat")
    w, s, e, n = year["properties"]["bbox"]
    at = {"lon": (w + e) / 2, "lat": (s + n) / 2, "k": 3}
    doc = year_client.get("/api/search", params={**at, "datetime": "2015"}).json()
    assert any(x.startswith("4 tiles in the searched area have no date") for x in doc["filter_notes"]), doc
    assert doc["filter_notes"] == [x for x in doc["notes"] if x in doc["filter_notes"]]
    doc = year_client.get("/api/search", params={**at, "datetime": "2015", "collection": "landsat"}).json()
    assert not any("have no date" in x for x in doc["notes"]), doc["notes"]
    assert doc["filter_notes"] == []
    doc = year_client.post("/api/query", json={"positives": [{"lon": at["lon"], "lat": at["lat"]}], "k": 3,
                                               "datetime": "2015", "collection": "landsat"}).json()
    assert doc["filter_notes"] == [] and not any("have no date" in x for x in doc["notes"]), doc


def test_a_strip_upload_is_told_it_is_squashed_not_small(year_client):
    """An 8000 x 10 px upload was told it is "much smaller than the model's input"; it is squashed 800:1."""
    import io

    import numpy as np
    from PIL import Image

    from rsir_stac.search_notes import resized_how

    png = io.BytesIO()
    Image.fromarray(np.full((10, 8000, 3), 90, np.uint8)).save(png, format="PNG")
    doc = year_client.post("/api/search/image", files={"file": ("strip.png", png.getvalue(), "image/png")},
                           data={"k": "2"}).json()
    assert "warning" not in doc["query"], doc["query"]
    said = [n for n in doc["notes"] if "network input" in n]
    assert len(said) == 1 and "8000 x 10 px" in said[0] and "squashed whole" in said[0], doc["notes"]
    assert resized_how(10, 8000, 256) == "squashed"
