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


def test_an_area_over_the_service_limit_is_named_with_a_fix(served, tmp_path):  # noqa: F811
    import numpy as np

    ring = [[-93.0 + 0.01 * np.cos(a), 29.8 + 0.01 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 1200)[:-1]]
    path = tmp_path / "round.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring + ring[:1]]}))
    r = _on(served, "search", "--at", "-92.9993,29.8299", "--within", path)
    assert r.exit_code != 0, r.output
    err = r.stderr.strip().splitlines()[-1]
    assert f"polygon file {path} has 1,200 vertices" in err and "at most 1,000" in err, err
    assert "simplify it" in err and "stop the service" in err, err


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
    left = f"{len(doc['features']) - 1} result rows without a label were left out; 1 labelled tiles are used"
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
    for op in ("labels", "classify"):
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


def test_offset_and_k_over_the_limit_are_told_the_most_that_fits():
    from rsir_stac.store.query import check_k

    with pytest.raises(InputError, match=r"ask for at most 9999 with --offset 1,"):
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
