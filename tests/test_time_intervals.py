"""Issue 13, cases 4 and 7: time is an interval; bare rasters get a date and a collection."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import rasterio
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.stac import iter_scenes
from rsir_stac.store import SearchFilter, open_store
from rsir_stac.store.filters import parse_datetime_range
from tests.conftest import make_geotiff

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

NATIVE = IngestOptions(tile_size=64, native_gsd=True)
UTC = timezone.utc


def _epoch(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_bundle):
    """An annual composite (datetime null, start/end 2020) and a one-instant item, in both back ends."""
    root = tmp_path_factory.mktemp("time")
    docs = []
    for item_id, props, east in (
        ("composite-2020", {"datetime": None, "start_datetime": "2020-01-01T00:00:00Z",
                            "end_datetime": "2020-12-31T23:59:59Z"}, 500000.0),
        ("instant", {"datetime": "2020-03-15T10:00:00Z"}, 502000.0),
    ):
        tif = make_geotiff(root / f"{item_id}.tif", width=128, height=64, origin=(east, 3300000.0))
        item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "c", "geometry": None,
                "properties": props, "links": [],
                "assets": {"data": {"href": tif.name, "type": "image/tiff", "roles": ["data"]}}}
        (root / f"{item_id}.json").write_text(json.dumps(item))
        docs.append(str(root / f"{item_id}.json"))
    edge_path = root / "idx"
    assert ingest(docs, index=str(edge_path), model=tiny_bundle, options=NATIVE).points_written == 4
    mem = open_store(qdrant_url=":memory:")
    assert ingest(docs, store=mem, model=tiny_bundle, options=NATIVE).points_written == 4
    edge = open_store(str(edge_path))
    yield {"edge": edge, "qdrant-client": mem}
    edge.close()
    mem.close()


def test_interval_payload(stores):
    pts = {p.payload["item_id"]: p.payload for p in stores["edge"].iter_points(with_vectors=False)}
    comp, inst = pts["composite-2020"], pts["instant"]
    assert comp["datetime_epoch"] == _epoch(2020, 1, 1)
    assert comp["datetime_end_epoch"] == _epoch(2020, 12, 31, 23, 59, 59)
    assert (comp["start_datetime"], comp["end_datetime"]) == ("2020-01-01T00:00:00Z", "2020-12-31T23:59:59Z")
    assert inst["datetime_epoch"] == inst["datetime_end_epoch"] == _epoch(2020, 3, 15, 10)


@pytest.mark.parametrize("backend", ["edge", "qdrant-client"])
@pytest.mark.parametrize("text,want", [
    ("2020-06-01/2020-06-30", {"composite-2020"}),  # the case: inside the year, not at its start
    ("2020-03-15", {"composite-2020", "instant"}),
    ("2019-01-01/2019-12-31", set()),
    ("2021-01-01/..", set()),
    ("../2019-12-31", set()),
    ("2020-12-31T23:59:59Z/2021-06-01", {"composite-2020"}),  # touching the end counts (inclusive)
    ("2019-06-01/2020-01-01T00:00:00Z", {"composite-2020"}),  # touching the start counts
    ("2020-03-16/..", {"composite-2020"}),
])
def test_filter_on_overlap(stores, backend, text, want):
    start, end = parse_datetime_range(text)
    flt = SearchFilter(start=start, end=end)
    store = stores[backend]
    got = {h.payload["item_id"] for h in store.search([0.0] * store.meta().dim, k=50, flt=flt, exact=True)}
    assert got == want
    assert store.count(flt) == 2 * len(want)


def test_acquisition_datetime_is_read_before_tiff_datetime(tmp_path):
    tif = make_geotiff(tmp_path / "a.tif", datetime_tag="2001:01:01 00:00:00")
    with rasterio.open(tif, "r+") as ds:
        ds.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="2019-07-04T10:20:30Z")
    (scene,) = iter_scenes([str(tif)])
    assert scene.datetime == datetime(2019, 7, 4, 10, 20, 30, tzinfo=UTC)
    plain = make_geotiff(tmp_path / "b.tif", datetime_tag="2018:02:03 04:05:06")
    assert next(iter_scenes([str(plain)])).datetime == datetime(2018, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_ingest_collection_and_datetime_for_bare_rasters(tmp_path, tiny_bundle):
    a = make_geotiff(tmp_path / "a.tif", width=128, height=64, seed=1)
    b = make_geotiff(tmp_path / "b.tif", width=128, height=64, origin=(510000.0, 3300000.0), seed=2)
    idx = str(tmp_path / "idx")
    model = str(tiny_bundle.path)
    run = CliRunner()
    r = run.invoke(main, ["ingest", str(a), "--index", idx, "--model", model, "--tile-size", "64", "--native-gsd",
                          "--collection", "my-maps", "--datetime", "2020-01-01/2020-12-31"])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["ingest", str(b), "--index", idx, "--model", model, "--tile-size", "64", "--native-gsd"])
    assert r.exit_code == 0, r.output
    with open_store(idx, read_only=True) as store:
        pts = {p.payload["href"]: p.payload for p in store.iter_points(with_vectors=False)}
    pa = pts[str(a)]
    assert pa["collection"] == "my-maps"
    assert (pa["datetime_epoch"], pa["datetime_end_epoch"]) == (_epoch(2020, 1, 1),
                                                                 _epoch(2020, 12, 31, 23, 59, 59, 999999))
    assert pts[str(b)]["collection"] is None and pts[str(b)]["datetime_epoch"] is None
    info = json.loads(run.invoke(main, ["info", "--index", idx]).output)
    assert (info["count"], info["undated"], info["no_collection"]) == (4, 2, 2)
    assert any("no date" in n for n in info["notes"])
    # a date filter finds a's tiles and says that b's undated tiles were left out
    r = run.invoke(main, ["search", "--at", f"{pa['location']['lon']},{pa['location']['lat']}", "--index", idx,
                          "--model", model, "--datetime", "2020-06-01/2020-06-30", "--format", "json",
                          "--include-query"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert {h["href"] for h in hits} == {str(a)}
    assert "note: 2 tiles in the searched area have no date, so --datetime leaves them out" in r.stderr
    r = run.invoke(main, ["search", "--at", f"{pa['location']['lon']},{pa['location']['lat']}", "--index", idx,
                          "--model", model, "--collection", "my-maps", "--format", "json"])
    assert r.exit_code == 0 and "note: 2 tiles in the searched area have no collection" in r.stderr
    r = run.invoke(main, ["search", "--at", f"{pa['location']['lon']},{pa['location']['lat']}", "--index", idx,
                          "--model", model, "--collection", "My-Maps", "--format", "json"])  # a wrong name
    assert r.exit_code == 0 and "no tile of the index is in collection 'My-Maps'; it holds 'my-maps'" in r.stderr
    r = run.invoke(main, ["export", "--index", idx, "--model", model, "--collection", "My-Maps",
                          "--out", str(tmp_path / "none.parquet")])
    assert r.exit_code == 0 and "it holds 'my-maps'" in r.stderr  # an empty export says why
    far = "10,10,10.1,10.1"  # an area without the undated tiles: no note about them
    r = run.invoke(main, ["search", "--at", f"{pa['location']['lon']},{pa['location']['lat']}", "--index", idx,
                          "--model", model, "--datetime", "2020-06-01/2020-06-30", "--bbox", far, "--format", "json"])
    assert r.exit_code == 0 and "no date" not in r.stderr
    r = run.invoke(main, ["ingest", str(a), "--index", idx, "--model", model, "--datetime", "2020-01-01/.."])
    assert r.exit_code == 2 and "open end" in r.stderr


def test_a_year_or_a_month_is_a_period_as_pystac_client_reads_it():
    """``--datetime 2015`` (or ``2015-06``) was refused; it is the whole year (month), alone or
    as either end of a range, with leap years and the last month right."""
    from datetime import datetime, timezone

    from rsir_stac.errors import InputError
    from rsir_stac.store.filters import parse_datetime_range

    def utc(*a):
        return datetime(*a, tzinfo=timezone.utc)

    assert parse_datetime_range("2015") == (utc(2015, 1, 1), utc(2015, 12, 31, 23, 59, 59, 999999))
    assert parse_datetime_range("2016-02") == (utc(2016, 2, 1), utc(2016, 2, 29, 23, 59, 59, 999999))
    assert parse_datetime_range("2015-11/2016") == (utc(2015, 11, 1), utc(2016, 12, 31, 23, 59, 59, 999999))
    assert parse_datetime_range("../2015-12")[1] == utc(2015, 12, 31, 23, 59, 59, 999999)
    for bad in ("2015-13", "0000", "15", "2015-6"):
        with pytest.raises(InputError):
            parse_datetime_range(bad)


def test_an_interval_item_keeps_its_own_datetime_as_the_shown_date(tmp_path, tiny_bundle):
    """An Item with datetime 2020-06-15 and start/end 2020: the interval still filters, and the
    stored ``datetime`` (shown in tables, the query line, contact sheets) is its own 06-15,
    not the interval's start (which it lost)."""
    tif = make_geotiff(tmp_path / "n.tif", width=64, height=64)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "nominal", "collection": "c", "geometry": None,
            "properties": {"datetime": "2020-06-15T00:00:00Z", "start_datetime": "2020-01-01T00:00:00Z",
                           "end_datetime": "2020-12-31T23:59:59Z"}, "links": [],
            "assets": {"data": {"href": tif.name, "type": "image/tiff", "roles": ["data"]}}}
    (tmp_path / "n.json").write_text(json.dumps(item))
    store = open_store(qdrant_url=":memory:")
    assert ingest([str(tmp_path / "n.json")], store=store, model=tiny_bundle, options=NATIVE).points_written == 1
    (p,) = list(store.iter_points(with_vectors=False))
    assert p.payload["datetime"] == "2020-06-15T00:00:00Z"
    assert (p.payload["datetime_epoch"], p.payload["datetime_end_epoch"]) == (_epoch(2020, 1, 1),
                                                                              _epoch(2020, 12, 31, 23, 59, 59))
    assert store.count(SearchFilter(start=datetime(2020, 2, 1, tzinfo=UTC), end=datetime(2020, 2, 2, tzinfo=UTC))) == 1
    store.close()
