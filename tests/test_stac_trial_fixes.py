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
