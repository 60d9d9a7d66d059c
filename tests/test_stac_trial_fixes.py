"""STAC trial (trial-stac, §3-§6): an invalid feature of an ItemCollection and a dead child
catalog link fail alone (exit 1, the rest ingested) instead of stopping the run; an item whose
only asset is a PNG is told so (not sent to --asset); an impossible --datetime names the part
that does not exist; a --datetime without a time zone is said to be UTC."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import InputError
from rsir_stac.stac import iter_scenes
from tests.conftest import make_geotiff

NATIVE = ["--tile-size", "64", "--native-gsd"]
GEOTIFF = "image/tiff; application=geotiff"


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _item(item_id, href: str, **props) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None, "links": [],
            "properties": {"datetime": "2021-06-02T10:00:00Z", **props},
            "assets": {"visual": {"href": href, "type": GEOTIFF, "roles": ["visual"]}}}


@pytest.fixture()
def tif(tmp_path: Path) -> Path:
    return make_geotiff(tmp_path / "scene.tif", width=128, height=128)


def test_an_invalid_feature_of_an_itemcollection_fails_alone(tmp_path, tif):
    """§3: a feature with datetime null and no range took down the whole ItemCollection (exit 2,
    nothing listed) with a message naming no feature."""
    fc = {"type": "FeatureCollection", "features": [
        _item("ic-good", tif.name),
        _item("ic-null-dt", tif.name, datetime=None),
        _item("", tif.name),                                    # no usable id
        _item("ic-bad-day", tif.name, datetime="2021-06-31T00:00:00Z"),
        {"type": "Feature", "id": "plain", "geometry": None, "properties": {}},  # not a STAC Item
    ]}
    src = tmp_path / "ic.json"
    src.write_text(json.dumps(fc))
    errors: list = []
    assert [s.item_id for s in iter_scenes([str(src)], on_error=errors.append)] == ["ic-good"]
    assert [e.item_id for e in errors] == ["ic-null-dt", "feature 3 of 5", "ic-bad-day", "plain"]
    assert str(errors[0]) == (f"item ic-null-dt (feature 2 of 5 of {src}) is not a valid STAC Item: datetime is "
                              "null and there is no start_datetime/end_datetime; give it a datetime, or both "
                              "start_datetime and end_datetime")
    assert str(errors[1]) == f"feature 3 of 5 of {src} has no id; give each item a unique string id"
    assert "2021-06 has 30 days, no day 31" in str(errors[2])
    assert "is not a STAC Item (no 'assets')" in str(errors[3])
    assert all("\n" not in str(e) and "pass a STAC Item/Collection" not in str(e) for e in errors)


def _ingest_one_good(doc, idx, bundle):
    """``(result, report)`` of ``ingest DOC --json`` where one item ingests (4 tiles) and the others fail: exit 1."""
    r = cli("ingest", doc, "--index", idx, "--model", bundle.path, *NATIVE, "--json")
    assert r.exit_code == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["items_done"] == 1 and report["points_written"] == 4
    return r, report


def test_ingest_of_an_itemcollection_with_a_bad_feature_ingests_the_rest(tmp_path, tif, tiny_bundle):
    fc = {"type": "FeatureCollection", "features": [_item("ic-good", tif.name),
                                                    _item("ic-null-dt", tif.name, datetime=None)]}
    (tmp_path / "ic.json").write_text(json.dumps(fc))
    r, report = _ingest_one_good(tmp_path / "ic.json", tmp_path / "idx", tiny_bundle)
    (failed,) = report["items_failed"]
    assert failed["item"] == "ic-null-dt" and "feature 2 of 2" in failed["error"]
    assert r.stderr.strip().splitlines()[-1].startswith("error: item ic-null-dt failed: item ic-null-dt (feature 2")
    # a document that is no ItemCollection at all is refused as before
    (tmp_path / "plain.json").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": {}}]}))
    r = cli("ingest", tmp_path / "plain.json", "--index", tmp_path / "idx2", "--model", tiny_bundle.path, *NATIVE)
    assert r.exit_code == 2 and "is JSON but not a STAC Item, Collection, Catalog or ItemCollection" in r.stderr


def test_a_missing_child_catalog_fails_alone_in_an_ingest(tmp_path, tif, tiny_bundle):
    """§4: one dead child link stopped the catalogue (exit 2, 0 items ingested)."""
    (tmp_path / "good.json").write_text(json.dumps(_item("good-item", tif.name)))
    cat = {"type": "Catalog", "id": "broken-cat", "stac_version": "1.0.0", "description": "x", "links": [
        {"rel": "child", "href": "./nosuch/catalog.json"},
        {"rel": "item", "href": "./good.json"},
        {"rel": "item", "href": "./not-there.json"}]}
    (tmp_path / "catalog.json").write_text(json.dumps(cat))
    _, report = _ingest_one_good(tmp_path / "catalog.json", tmp_path / "idx", tiny_bundle)
    child = str(tmp_path / "nosuch" / "catalog.json")
    assert [f["item"] for f in report["items_failed"]] == ["not-there", child]
    assert report["items_failed"][1]["error"] == (
        f"child catalog {child} (linked from {tmp_path / 'catalog.json'}) does not exist (its items are not "
        "ingested); fix the link or the catalog")
    r = cli("ingest", tmp_path / "catalog.json", "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE)
    assert r.exit_code == 1
    assert re.search(r"  failed item .*/nosuch/catalog\.json: child catalog .*/nosuch/catalog\.json \(linked from "
                     r".*/catalog\.json\) does not exist", r.stderr)


def test_a_png_visual_asset_is_named_by_the_ingest(tmp_path, tiny_bundle):
    """§5: "has no GeoTIFF asset with role 'visual' ... pass --asset KEY", where --asset visual
    failed again (a PNG is not georeferenced)."""
    item = _item("png-only", "thumb.png")
    item["assets"]["visual"]["type"] = "image/png"
    (tmp_path / "png.json").write_text(json.dumps(item))
    r = cli("ingest", tmp_path / "png.json", "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE)
    assert r.exit_code == 1
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: item png-only failed: item png-only has no GeoTIFF/COG asset: asset 'visual' is "
                           "image/png, not a GeoTIFF/COG;")
    assert "--asset" not in line


@pytest.mark.parametrize("text, said", [
    ("2021-02-29", "2021-02 has 28 days, no day 29 (its last is 2021-02-28)"),
    ("2021-13", "there is no month 13"),
    ("2021-06-02T24:00:00Z", "there is no hour 24"),
    ("2021-01-01/2021-04-31", "in '2021-04-31', 2021-04 has 30 days, no day 31"),
])
def test_an_impossible_datetime_names_the_part_that_does_not_exist(text, said):
    """§6: an impossible date got the generic "must be START/END ..." message."""
    from rsir_stac.store.filter_parse import parse_acquisition_datetime, parse_datetime_range

    for parse in (parse_datetime_range, parse_acquisition_datetime):
        with pytest.raises(InputError) as info:
            parse(text)
        assert said in str(info.value) and "START/END" not in str(info.value)
    assert parse_datetime_range("2020-02-29")[0].day == 29  # a leap year has it


def test_ingest_datetime_messages_have_the_ingest_shape(tmp_path, tif, tiny_bundle):
    r = cli("ingest", tif, "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE,
            "--datetime", "2021-02-29")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines()[-1] == ("error: datetime '2021-02-29' names no real time: 2021-02 has 28 "
                                                 "days, no day 29 (its last is 2021-02-28); give a date or time that "
                                                 "exists")
    r = cli("ingest", tif, "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE, "--datetime", "June")
    assert r.exit_code == 2 and "must be an instant or START/END" in r.stderr
    assert not (tmp_path / "idx").exists()


def test_a_datetime_without_zone_is_said_to_be_utc(tmp_path, tif, tiny_bundle, caplog):
    """§6: --datetime 2021-06-02T04:30:00 was silently read as UTC: ingest logs a warning, search
    prints one note on stderr (stdout stays the JSON)."""
    from rsir_stac.store.filter_parse import naive_datetime_note, parse_acquisition_datetime

    with caplog.at_level(logging.WARNING):
        start, end = parse_acquisition_datetime("2021-06-02T04:30:00")
    assert start == end and start.hour == 4 and start.utcoffset().total_seconds() == 0
    (said,) = [r.getMessage() for r in caplog.records if "no time zone" in r.getMessage()]
    assert said == ("--datetime 2021-06-02T04:30:00 has no time zone, so it is read as UTC; add Z or an offset "
                    "(e.g. +02:00) to say otherwise")
    assert naive_datetime_note("2021-06-02") is None and naive_datetime_note("2021-06-02T04:30:00Z") is None
    assert naive_datetime_note("2021-06-01/2021-06-02T04:30:00+02:00") is None
    r = cli("ingest", tif, "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE,
            "--datetime", "2021-06-02T10:00:00Z")
    assert r.exit_code == 0, r.stderr
    r = cli("search", "--index", tmp_path / "idx", "--model", tiny_bundle.path, "--at", "-92.9993,29.8299",
            "--datetime", "2021-06-02T04:30:00/..", "--format", "json")
    assert r.exit_code == 0, r.stderr
    json.loads(r.stdout)
    notes = [ln for ln in r.stderr.splitlines() if "no time zone" in ln]
    assert notes == ["note: --datetime 2021-06-02T04:30:00 has no time zone, so it is read as UTC; add Z or an "
                     "offset (e.g. +02:00) to say otherwise"]


@pytest.mark.parametrize("text, why", [("2021-06-02T04:30:00+05:99", "no time zone offset +05:99"),
                                       ("2021-06-02T04:30:00-12:60", "no time zone offset -12:60")])
def test_an_offset_with_minutes_past_59_is_refused_not_shifted(text, why):
    """Re-check: Python's parser took +05:99 (stored 21:51Z the day before) and -12:60 (read as -13:00)."""
    import re

    from rsir_stac.errors import InputError
    from rsir_stac.store.filter_parse import parse_acquisition_datetime, parse_datetime_range

    for parse in (parse_datetime_range, parse_acquisition_datetime):
        with pytest.raises(InputError, match=re.escape(why)):
            parse(text)
