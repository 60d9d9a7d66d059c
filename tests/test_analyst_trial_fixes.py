"""What an analyst trial (twenty-fifth session) found in the analyst's loop: label and area files saved
from a GIS as GeoPackage or Shapefile, a label file with one stale tile, a rough held-out measure, and a
missing index named in the engine's words.  Real Qdrant Edge index, real GDAL files, the real CLI."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import InputError, PointNotFoundError
from rsir_stac.labels import read_labels, write_labels
from tests.test_analysis import _labels, bundle, index, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("driver,ext,crs", [("GPKG", ".gpkg", "EPSG:3857"), ("ESRI Shapefile", ".shp", "EPSG:4326")])
def test_label_files_saved_from_a_gis_are_read(world, bundle, tmp_path, driver, ext, crs):  # noqa: F811
    """A label file saved from QGIS as GeoPackage (in the project's CRS) or Shapefile was refused
    with "'utf-8' codec can't decode byte 0xa0"; it is read through GDAL, reprojected to lon/lat."""
    import geopandas as gpd

    labels = _labels(world, bundle)
    src = write_labels(labels, tmp_path / "labels.geojson")
    gdf = gpd.read_file(src).to_crs(crs)
    path = tmp_path / f"labels{ext}"
    gdf.to_file(path, driver=driver)
    got = read_labels(path)
    assert [(lb.point_id, lb.label) for lb in got.labels] == [(lb.point_id, lb.label) for lb in labels.labels]
    a = _run("search", "--index", world[0], "--model", bundle.path, "--labels", src, "--format", "json")
    b = _run("search", "--index", world[0], "--model", bundle.path, "--labels", path, "--format", "json")
    assert a.exit_code == b.exit_code == 0, b.output
    assert [h["id"] for h in json.loads(a.stdout)["hits"]] == [h["id"] for h in json.loads(b.stdout)["hits"]]


def test_an_area_file_saved_as_a_projected_geopackage_is_the_same_area(world, bundle, tmp_path):  # noqa: F811
    import geopandas as gpd
    from shapely.geometry import box

    area = box(10.05, 45.0, 10.06, 45.006)  # scene 1's tiles
    (tmp_path / "area.geojson").write_text(json.dumps({"type": "Polygon",
                                                       "coordinates": [list(map(list, area.exterior.coords))]}))
    gpd.GeoDataFrame({"name": ["area"]}, geometry=[area], crs="EPSG:4326").to_crs("EPSG:32632").to_file(
        tmp_path / "area.gpkg", driver="GPKG")
    pid = next(p.id for p in world[1] if p.payload["item_id"] == "scene-4")
    runs = [_run("search", "--index", world[0], "--model", bundle.path, "--point-id", pid, "--within", tmp_path / f,
                 "-k", "40", "--per-item", "0", "--format", "json") for f in ("area.geojson", "area.gpkg")]
    assert all(r.exit_code == 0 for r in runs), runs[1].output
    a, b = ([h["id"] for h in json.loads(r.stdout)["hits"]] for r in runs)
    assert a and set(a) == set(b)  # a projected polygon's edges are not lon/lat lines: the same tiles inside


def test_a_file_gdal_cannot_read_either_is_one_line_without_python_internals(world, bundle, tmp_path):  # noqa: F811
    junk = tmp_path / "labels.gpkg"
    junk.write_bytes(bytes(range(256)) * 4)
    for opt in ("--labels", "--within"):
        args = ["search", "--index", world[0], "--model", bundle.path, opt, junk]
        if opt == "--within":
            args += ["--at", "10.052,45.002"]
        r = _run(*args)
        assert r.exit_code == 2, r.output
        err = r.stderr.strip()
        assert "\n" not in err and "is not GeoJSON nor a vector file GDAL reads" in err, err
        assert "codec" not in err and "0x" not in err, err


def test_one_stale_tile_in_a_label_file_is_named_as_such(world, bundle, tmp_path, index):  # noqa: F811
    """16 of 17 labels were this index's, and the message said the labels come from another index."""
    doc = _labels(world, bundle).to_geojson()
    doc["features"][0]["id"] = doc["features"][0]["properties"]["point_id"] = str(uuid.UUID(int=0))
    path = tmp_path / "stale.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(PointNotFoundError) as err:
        index.search(labels=read_labels(path))
    msg = str(err.value)
    assert f"1 of {len(doc['features'])} labelled tiles are not in index" in msg, msg
    assert "remove that feature from the file" in msg and "another index" not in msg, msg


def test_a_rough_held_out_measure_says_so(world, bundle, tmp_path, index):  # noqa: F811
    from rsir_stac.classify import MIN_HOLDOUT, classify

    labels = _labels(world, bundle, npos=4, nneg=4)
    report = classify(index, labels, holdout=0.5, background=0)
    assert 0 < report.holdout < MIN_HOLDOUT
    assert f"only {report.holdout} held-out labels: a rough figure" in report.holdout_text()
    report = classify(index, _labels(world, bundle), holdout=0.9, background=0)
    assert "measured with a model fitted on" in report.holdout_text(), report.holdout_text()
    labels = _labels(world, bundle, npos=24, nneg=12)
    report = classify(index, labels, holdout=0.35, background=0)
    assert report.holdout >= MIN_HOLDOUT and "rough" not in report.holdout_text()


def test_a_missing_index_is_named_in_the_users_words(tmp_path, bundle, world):  # noqa: F811
    r = _run("search", "--at", "0,0", "--index", tmp_path / "nosuch", "--model", bundle.path)
    assert r.exit_code == 2 and "no index at" in r.stderr and "(no such folder)" in r.stderr, r.output
    (tmp_path / "empty").mkdir()
    r = _run("search", "--at", "0,0", "--index", tmp_path / "empty", "--model", bundle.path)
    assert r.exit_code == 2 and "is not an rsir-stac index" in r.stderr, r.output
    assert "rsir-stac ingest SOURCES --index" in r.stderr


def test_bad_label_files_stay_refused(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="is not GeoJSON"):
        read_labels(bad)
    latin = tmp_path / "latin.geojson"
    latin.write_bytes(b'{"type": "FeatureCollection", "features": [], "name": "caf\xe9"}')
    with pytest.raises(InputError, match="is not UTF-8 text"):
        read_labels(latin)


def test_a_place_on_undated_scenes_picks_the_same_tile_whatever_the_point_ids(tmp_path):
    """Adaptation trial: `--at` on an undated time series picked the 2005 tile on one index and the
    2000 tile on its reindexed copy (ties went to the smallest point id, and ids include the model)."""
    import numpy as np

    from rsir_stac.store import Point, open_store
    from tests.test_store import DIM, MODEL, make_points

    base = make_points(2)
    picks = []
    for n in range(4):  # four id draws: the choice must not follow them
        pts = []
        for item, p in zip(("scene-b", "scene-a"), base):
            payload = {**p.payload, "item_id": item, "datetime": None, "datetime_epoch": None,
                       "datetime_end_epoch": None}
            payload["bbox"], payload["location"] = base[0].payload["bbox"], base[0].payload["location"]
            payload["corners"] = base[0].payload["corners"]
            pts.append(Point(str(uuid.uuid4()), np.ones(DIM, np.float32) * n, payload))
        with open_store(tmp_path / f"idx{n}") as s:
            s.ensure_collection(DIM, MODEL)
            s.upsert(pts)
            loc = pts[0].payload["location"]
            picks.append(s.point_at(loc["lon"], loc["lat"]).payload["item_id"])
    assert picks == ["scene-a"] * 4, picks


def test_a_search_that_finds_nothing_names_the_filter_that_left_nothing(world, bundle):  # noqa: F811
    """Analyst trial: an empty box or date range said only "no results (loosen the filters?)"."""
    from datetime import datetime, timezone

    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.search_notes import empty_filter_notes
    from rsir_stac.serve import create_app
    from rsir_stac.store import SearchFilter

    pid = world[1][0].id
    base = ["search", "--index", world[0], "--model", bundle.path, "--point-id", pid]
    r = _run(*base, "--bbox", "0,0,1,1")
    assert r.exit_code == 0 and "no tile's centre lies in --bbox 0,0,1,1" in r.stderr, r.output
    r = _run(*base, "--datetime", "2030-01-01/2031-01-01")
    assert r.exit_code == 0 and "no tile is dated within --datetime 2030-01-01T00:00:00Z/" in r.stderr, r.output
    # each filter alone matches tiles (scene 0's box, the index's date), together nothing
    index = Index.open(str(world[0]), model=bundle)
    both = SearchFilter(bbox=(10.0, 45.0, 10.01, 45.01), start=datetime(2019, 1, 1, tzinfo=timezone.utc),
                        end=datetime(2019, 12, 31, tzinfo=timezone.utc))
    assert empty_filter_notes(index.store, both) == ["no tile is dated within --datetime 2019-01-01T00:00:00Z/"
                                                     "2019-12-31T00:00:00Z; widen the dates (undated tiles never "
                                                     "match a date filter)"]
    apart = SearchFilter(bbox=(10.0, 45.0, 10.01, 45.01), near=(10.3, 45.003, 200.0))
    assert "but no tile matches them all together" in empty_filter_notes(index.store, apart)[0]
    assert empty_filter_notes(index.store, SearchFilter(bbox=(10.0, 45.0, 10.01, 45.01))) == []
    with TestClient(create_app(index), base_url="http://127.0.0.1:8000") as c:
        doc = c.get("/api/search", params={"point_id": pid, "bbox": "0,0,1,1"}).json()
    index.close()
    assert doc["features"] == [] and any("no tile's centre lies in the bbox 0,0,1,1" in n for n in doc["notes"]), doc


def test_a_long_bare_raster_item_id_keeps_its_date_in_the_table():
    """Analyst trial: "opengeos_naip…1-b3278a42796e" kept the hash and cut the date the file name ends with."""
    from rsir_stac.cli_results import _fit

    got = _fit("opengeos_naip_m_4709963_se_14_1_20200831-b3278a42796e", 28)
    assert len(got) == 28 and "20200831" in got and got.endswith("-b3278a") and got.startswith("opengeos"), got
    assert _fit("short-b3278a42796e", 28) == "short-b3278a42796e"
    assert len(_fit("x" * 60, 28)) == 28


def test_a_geopackage_of_several_layers_is_refused_naming_them(world, bundle, tmp_path):  # noqa: F811
    """Re-check: labels kept as 'pos' and 'neg' layers lost the negatives unseen (only the first
    layer was read), and an area file searched the wrong layer."""
    import geopandas as gpd

    src = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    gdf = gpd.read_file(src)
    path = tmp_path / "two.gpkg"
    gdf[gdf["label"] == "positive"].to_file(path, layer="pos", driver="GPKG")
    gdf[gdf["label"] == "negative"].to_file(path, layer="neg", driver="GPKG")
    for opt in ("--labels", "--within"):
        r = _run("search", "--index", world[0], "--model", bundle.path, opt, path, "--at", "10.052,45.002")
        assert r.exit_code == 2, r.output
        assert "holds 2 layers (pos, neg); save the one to use as a file of its own" in r.stderr, r.stderr
        assert "Warning" not in r.stderr and "\n" not in r.stderr.strip(), r.stderr


def test_a_csv_of_ids_and_labels_is_a_label_file(world, bundle, tmp_path):  # noqa: F811
    """Re-check: an `id,label` CSV got "Expecting value at line 1" (read as JSON)."""
    labels = _labels(world, bundle)
    path = tmp_path / "labels.csv"
    path.write_text("id,label\n" + "".join(f"{lb.point_id},{lb.label}\n" for lb in labels.labels))
    got = read_labels(path)
    assert [(lb.point_id, lb.label) for lb in got.labels] == [(lb.point_id, lb.label) for lb in labels.labels]
    r = _run("search", "--index", world[0], "--model", bundle.path, "--labels", path, "--format", "json")
    assert r.exit_code == 0, r.output


def test_tiles_the_per_scene_cap_left_off_the_page_are_counted(world, bundle, tmp_path):  # noqa: F811
    """Re-check: on a time series the page looked sorted, yet three nearer tiles were left off it by
    the cap, with no note; --format geojson never carried notes.  Scene a holds the query and 11
    tiles at distance 0.80-0.90; 20 other scenes one tile each at 0.95-1.05: the page of 8 shows 3
    of scene a, then 5 others, in distance order, and 8 nearer tiles of scene a are left off it."""
    import numpy as np

    from rsir_stac.store import Point
    from tests.conftest import index_of_points

    base = world[1][0]
    pts = []
    for n in range(32):
        d = 0.0 if n == 0 else (0.79 + 0.01 * n if n < 12 else 0.95 + 0.005 * (n - 12))
        v = np.zeros(bundle.dim, np.float32)
        v[0] = d
        pts.append(Point(str(uuid.UUID(int=n + 1)), v, {**base.payload, "item_id": "scene-a" if n < 12 else f"o-{n}"}))
    idx = index_of_points(tmp_path / "index", pts, bundle)
    r = _run("search", "--index", idx, "--model", bundle.path, "--point-id", pts[0].id, "-k", "8", "--format", "geojson")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    dist = [f["properties"]["distance"] for f in doc["features"]]
    assert dist == sorted(dist) and [f["properties"]["item_id"] for f in doc["features"]][:3] == ["scene-a"] * 3
    want = "5 of the 8 nearest tiles are not on this page"  # scene a's 4th to 8th
    assert any(want in n for n in doc.get("notes", [])), doc.get("notes")
    assert want in r.stderr
    r = _run("search", "--index", idx, "--model", bundle.path, "--point-id", pts[0].id, "-k", "8", "--per-item", "0")
    assert "not on this page" not in r.stderr


def test_a_geopackage_with_a_qgis_style_table_or_an_empty_layer_is_one_layer(world, bundle, tmp_path):  # noqa: F811
    """Re-check: a GeoPackage holding QGIS's layer_styles table, or an empty second layer, was refused
    as "2 layers"."""
    import sqlite3

    import geopandas as gpd

    labels = _labels(world, bundle)
    gdf = gpd.read_file(write_labels(labels, tmp_path / "labels.geojson"))
    styled = tmp_path / "styled.gpkg"
    gdf.to_file(styled, layer="labels", driver="GPKG")
    with sqlite3.connect(styled) as db:  # what QGIS adds when a style is saved in the file
        db.execute("CREATE TABLE layer_styles (id INTEGER PRIMARY KEY, f_table_name TEXT, styleQML TEXT)")
        db.execute("INSERT INTO layer_styles (f_table_name, styleQML) VALUES ('labels', '<qgis/>')")
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier) VALUES "
                   "('layer_styles', 'attributes', 'layer_styles')")
    empty = tmp_path / "empty-second.gpkg"
    gdf.to_file(empty, layer="labels", driver="GPKG")
    gdf.iloc[:0].to_file(empty, layer="scratch", driver="GPKG")
    for path in (styled, empty):
        got = read_labels(path)
        assert [lb.point_id for lb in got.labels] == [lb.point_id for lb in labels.labels], path


def test_negatives_under_the_average_strategy_point_to_best_score(world, bundle, index):  # noqa: F811
    """Analyst trial: one negative made the default average strategy visibly worse (it searches from
    2 x mean(positives) - mean(negatives)); benchmarks/strategy_quality.py measured best_score ahead."""
    from rsir_stac.search import Example

    pts = world[1]
    pos, neg = [Example("point", pts[0].id)], [Example("point", pts[200].id)]
    res = index.search(positives=pos, negatives=neg, k=5, strategy="average")
    assert any("--strategy best_score" in n for n in res.notes), res.notes
    assert not [n for n in index.search(positives=pos, k=5).notes if "best_score" in n]
    # the default (auto) runs best_score with negatives, average without, and average under MMR
    auto = index.search(positives=pos, negatives=neg, k=5)
    best = index.search(positives=pos, negatives=neg, k=5, strategy="best_score")
    assert auto.strategy == "best_score" and auto.score_name == "score" and not auto.notes
    assert [(h.id, h.score) for h in auto.hits] == [(h.id, h.score) for h in best.hits]
    assert index.search(positives=pos, k=5).strategy == "average"
    assert index.search(positives=pos, negatives=neg, k=5, mmr=0.5).strategy == "average"
    with pytest.raises(InputError, match="unknown; use one of auto, average"):
        index.search(positives=pos, k=5, strategy="nearest")
    assert not [n for n in index.search(positives=pos, negatives=neg, k=5, strategy="best_score").notes
                if "beyond the positives" in n]


def test_an_mmr_order_is_said_to_be_mmrs_not_the_per_scene_caps(world, bundle, index, tmp_path):  # noqa: F811
    """Docs trial: with --mmr the note blamed the per-scene cap and advised --per-item 0, which left the
    order as MMR made it and then said nothing at all."""
    from rsir_stac.search import Example

    pos = [Example("point", world[1][0].id)]
    for per_item in ("auto", None):
        res = index.search(positives=pos, k=12, mmr=0.9, per_item=per_item)
        dist = [h.score for h in res.hits]
        assert dist != sorted(dist), dist  # MMR moved hits out of distance order on this index
        assert any(n.startswith("--mmr 0.9") and "not by distance alone" in n for n in res.notes), res.notes
    from tests.conftest import index_of_points

    copy = index_of_points(tmp_path / "copy", world[1], bundle)  # the fixture's index is held open
    r = _run("search", "--index", copy, "--model", bundle.path, "--point-id", world[1][0].id,
             "-k", "12", "--mmr", "0.9")
    assert r.exit_code == 0, r.output
    assert "--mmr 0.9" in r.stderr and "(--per-item auto; API: per_item): the order is not" not in r.stderr, r.stderr
    assert "nearest tiles are not on this page" not in r.stderr  # MMR's first hits, not the nearest
    plain = index.search(positives=pos, k=12)
    assert not [n for n in plain.notes if n.startswith("--mmr")]
