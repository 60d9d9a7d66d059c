"""What the re-check of the analyst trial (R4, R6, R7) and the trial's small points left on the command
line: usage errors as JSON, where a contradicting example came from, option names in messages, the
``--datetime`` offsets, one CRS warning per scene, export's output messages, and the query line of an
image.  Real Qdrant Edge index, real files, the real CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from tests.test_analysis import _labels, bundle, index, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="rsir-stac")


# ------------------------------------------------------------------ R7: usage errors print the JSON document
@pytest.mark.parametrize("args", [
    ["info", "--index", "{file}"],  # a file where a folder is wanted
    ["export", "--index", "{tmp}"],  # --out missing
    ["export", "--index", "{tmp}", "--out", "{tmp}/x.parquet", "--bogus"],  # an unknown option
    ["model-info", "--bogus"],
    ["search", "--format", "json", "--at", "1,1", "--limit", "x"],  # a bad value
    ["search", "--format=json", "--at", "1,1", "--limit", "x"],
    ["classify", "--json", "--index", "{tmp}"],  # --labels missing
    ["ingest", "--json"],  # SOURCES missing
    ["search", "--format", "json", "--at", "1,1", "--out", "{tmp}/x.csv"],  # refused by the command's own check
])
def test_a_usage_error_of_a_json_command_prints_the_json_document(args, tmp_path):
    """Re-check R7: C7's {"ok": false} came for runtime errors only; click's usage errors left stdout empty."""
    (tmp_path / "labels.geojson").write_text("{}")
    r = _run(*[a.format(tmp=tmp_path, file=tmp_path / "labels.geojson") for a in args])
    assert r.exit_code == 2, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2, doc
    assert doc["error"] in r.stderr and r.stderr.startswith("Error: "), (doc, r.stderr)


@pytest.mark.parametrize("args,said", [
    (["search", "--format", "json", "--at"], "Option '--at' requires an argument."),
    (["classify", "--json", "--labels"], "Option '--labels' requires an argument."),
    (["export", "--index", "{tmp}", "--out"], "Option '--out' requires an argument."),  # export always prints JSON
    (["info", "--index"], "Option '--index' requires an argument."),
    (["model-info", "--model"], "Option '--model' requires an argument."),
    (["ingest", "--json", "x.tif", "--gsd"], "Option '--gsd' requires an argument."),
    (["ingest", "--json=yes", "x.tif"], "Option '--json' does not take a value."),
])
def test_an_option_missing_its_value_is_a_usage_error_of_its_command(args, said, tmp_path):
    """Re-check N1: click's parser raises these with no context, so they came as a bare
    `Error: Option '--at' requires an argument.`, without the command, its --help or the JSON document."""
    r = _run(*[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    line = f"rsir-stac {args[0]}: {said} (see 'rsir-stac {args[0]} --help')"
    assert r.stderr == f"Error: {line}\n", r.stderr
    assert json.loads(r.stdout) == {"ok": False, "error": line, "exit_code": 2}, r.stdout


def test_an_option_missing_its_value_without_json_asked_names_its_command():
    r = _run("search", "--at")
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr == "Error: rsir-stac search: Option '--at' requires an argument. (see 'rsir-stac search --help')\n"


@pytest.mark.parametrize("args", [["search", "--at", "1,1", "--limit", "x"], ["classify", "--index", "."],
                                  ["no-such-command", "--json"]])
def test_a_usage_error_without_json_asked_prints_nothing_on_stdout(args):
    r = _run(*args)
    assert r.exit_code == 2 and r.stdout == "" and "Error: " in r.stderr, r.output


# ------------------------------------------------------------------ R4: where each contradicting example came from
def test_a_label_file_example_against_a_command_line_one_names_where_each_came_from(world, bundle, tmp_path):  # noqa: F811
    """Re-check R4: "the positive example point X and the negative example point X are the same tile" read as if
    both ids were typed, when the positive was feature 1 of the label file."""
    from rsir_stac.labels import write_labels

    labels = _labels(world, bundle)
    path = write_labels(labels, tmp_path / "labels.geojson")
    pos, neg = labels.labels[0].point_id, labels.labels[-1].point_id
    n_neg = len(labels.labels)
    r = _run("search", "--index", world[0], "--model", bundle.path, "--labels", path, "--not-point-id", pos)
    assert r.exit_code == 2, r.output
    assert (f"{path} feature 1 labels point {pos} positive, and --not-point-id gives point {pos} as negative: "
            "they are the same tile; keep one of the two") in r.stderr, r.stderr
    r = _run("search", "--index", world[0], "--model", bundle.path, "--labels", path, "--point-id", neg)
    assert r.exit_code == 2, r.output
    assert (f"--point-id gives point {neg} as positive, and {path} feature {n_neg} labels point {neg} negative: "
            "they are the same tile") in r.stderr, r.stderr
    # typed on the command line both: named as given, as before
    r = _run("search", "--index", world[0], "--model", bundle.path, "--point-id", pos, "--not-point-id", pos)
    assert f"the positive example point {pos} and the negative example point {pos} are the same tile" in r.stderr


def test_a_label_file_contradicting_itself_names_both_features(tmp_path):
    """Re-check N5: "point X is labelled both positive and negative" named no feature, while the
    file-against-option message names the file's feature."""
    import uuid

    a, b = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": a, "properties": {"label": "positive"}},
        {"type": "Feature", "id": b, "properties": {"label": "negative"}},
        {"type": "Feature", "properties": {"point_id": a.upper(), "label": "Negative"}}]}))
    r = _run("search", "--index", tmp_path / "idx", "--labels", path)
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"error: label file {path}: feature 1 labels point {a} positive, and feature 3 labels it "
                        "negative: one tile cannot be both positive and negative; keep one of the two\n"), r.stderr


# ------------------------------------------------------------------ R6: --max-hits wording, option names
def test_max_hits_that_left_out_no_hit_says_so(world, bundle, tmp_path):  # noqa: F811
    """Re-check R6: with every hit a labelled positive below the threshold, the note read "kept the 5 most
    probable of 8 hits, and the 3 labelled positives beyond them" and the line "written: the 5 most probable +
    3 labelled positives", though --max-hits left nothing out."""
    from rsir_stac.labels import write_labels

    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    r = _run("classify", "--index", world[0], "--model", bundle.path, "--labels", labels, "--threshold", "1.0",
             "--max-hits", "5", "--out", tmp_path / "r6.csv")
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()[-1]
    assert "; 0 at p >= 1.0 + 8 you labelled positive, kept below it ->" in line and "written:" not in line, line
    assert "most probable" not in r.stderr, r.stderr
    assert ("--max-hits 5 (API: max_hits) left out no hit: all 8 are tiles you labelled positive, scored below 1 "
            "and kept (your labels win): 8 in all") in r.stderr, r.stderr
    # a cut that left tiles out still says so
    r = _run("classify", "--index", world[0], "--model", bundle.path, "--labels", labels, "--threshold", "0.5",
             "--max-hits", "1", "--out", tmp_path / "r6b.csv")
    assert r.exit_code == 0 and "--max-hits 1 (API: max_hits) kept the 1 most probable of" in r.stderr, r.output


@pytest.mark.parametrize("args,said", [
    (["classify", "--max-hits", "0"], "--max-hits 0 (API: max_hits) must be a whole number >= 1"),
    (["classify", "--holdout", "1"], "--holdout 1 (API: holdout) must be a fraction within 0 and 1"),
    (["classify", "--holdout=1"], "--holdout 1 (API: holdout) must be a fraction within 0 and 1"),
    (["classify", "--holdout", "1.00"], "--holdout 1.00 (API: holdout) must be a fraction within 0 and 1"),
    (["classify", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["search", "--limit", "0"], "--limit 0 (API: k) must be a whole number >= 1"),
    (["search", "-k", "0"], "-k 0 (API: k) must be a whole number >= 1"),
    (["search", "-k0"], "-k 0 (API: k) must be a whole number >= 1"),
    (["search", "--limit=0"], "--limit 0 (API: k) must be a whole number >= 1"),
    (["search", "--offset", "-1"], "--offset -1 (API: offset) must be a whole number >= 0"),
    (["search", "--offset", "9999"], "--offset 9999 + --limit 10 (API: offset + k) is above the limit of 10000"),
    (["search", "-k", "10", "--offset", "9999"], "--offset 9999 + -k 10 (API: offset + k) is above the limit of 10000"),
])
def test_numeric_options_are_named_as_typed(world, bundle, tmp_path, args, said):  # noqa: F811
    """Re-check R6: `--max-hits 0` said `max_hits=0 must be ...`, the Python name (so did --limit, --offset).
    Re-check N6: each option as typed, its name and value: `-k 0` said `--limit 0`, `--holdout 1` said
    `--holdout 1.0`."""
    from rsir_stac.labels import write_labels

    labels = write_labels(_labels(world, bundle), tmp_path / "labels.geojson")
    pid = world[1][0].id
    extra = (["--labels", labels, "--out", tmp_path / "x.csv"] if args[0] == "classify" else ["--point-id", pid])
    r = _run(args[0], "--index", world[0], "--model", bundle.path, *extra, *args[1:])
    assert r.exit_code == 2, r.output
    assert said in r.stderr and "=" not in r.stderr.split(said)[0], r.stderr


# ------------------------------------------------------------------ --datetime: an offset without minutes, a zone name
@pytest.mark.parametrize("given,why,right", [
    ("2020-01-01T00:00:00+05", "its offset +05 has no minutes", "2020-01-01T00:00:00+05:00"),
    ("2020-01-01T00:00:00+05/..", "its offset +05 has no minutes", "2020-01-01T00:00:00+05:00/.."),
    ("2020-01-01T00:00:00 UTC", "'UTC' is not an RFC 3339 time zone (Z is UTC)", "2020-01-01T00:00:00Z"),
    ("../2020-06-01T12:00:00GMT", "'GMT' is not an RFC 3339 time zone", "../2020-06-01T12:00:00Z"),
    ("2020-01-01 UTC", "a date takes no time zone", "2020-01-01"),
    ("2020-01-01T00:00:00 +05:00", "it has a space before its offset", "2020-01-01T00:00:00+05:00"),
])
def test_a_datetime_zone_rfc3339_does_not_read_is_named_with_its_fix(world, bundle, given, why, right):  # noqa: F811
    """Trial: `+05` and ` UTC` got the generic "must be START/END" message."""
    from rsir_stac.store.filter_parse import parse_datetime_range

    r = _run("search", "--index", world[0], "--model", bundle.path, "--point-id", world[1][0].id, "--datetime", given)
    assert r.exit_code == 2, r.output
    assert f"datetime {given!r} is not RFC 3339: {why}" in r.stderr and f"; write {right} (" in r.stderr, r.stderr
    parse_datetime_range(right)  # the fix it gives is read


@pytest.mark.parametrize("given, why, right", [
    ("2020-01-01T00:00:00+5", "its offset +5 has one hour digit and no minutes", "2020-01-01T00:00:00+05:00"),
    ("2020-01-01T00:00:00 GMT+2", "'GMT+2' is not an RFC 3339 offset", "2020-01-01T00:00:00+02:00"),
    ("2020-01-01T00:00:00UTC-03:30", "'UTC-03:30' is not an RFC 3339 offset", "2020-01-01T00:00:00-03:30"),
    ("2020-01-01T00:00:00 +0530/..", "it has a space before its offset", "2020-01-01T00:00:00+05:30/.."),
])
def test_more_time_zones_rfc3339_does_not_read_are_named_with_their_fix(given, why, right):
    """Re-check: `+5`, `GMT+2` and `EST` still got the generic "must be START/END" message."""
    from rsir_stac.errors import InputError
    from rsir_stac.store.filter_parse import parse_datetime_range

    with pytest.raises(InputError) as err:
        parse_datetime_range(given)
    assert f"is not RFC 3339: {why}; write {right} (" in str(err.value), str(err.value)
    parse_datetime_range(right)  # the fix it gives is read


def test_a_time_zone_abbreviation_is_named_without_a_guessed_offset():
    from rsir_stac.errors import InputError
    from rsir_stac.store.filter_parse import parse_datetime_range

    with pytest.raises(InputError, match=r"'EST' is not an RFC 3339 time zone \(a zone's name is not read\); write the "
                                         r"time with the zone's offset from UTC, e\.g\. 2020-01-01T10:00:00\+01:00"):
        parse_datetime_range("2020-01-01T10:00:00 EST")


def test_a_datetime_whose_zone_is_not_the_only_fault_names_the_other():
    from rsir_stac.errors import InputError
    from rsir_stac.store.filter_parse import parse_datetime_range

    with pytest.raises(InputError, match="no real time: there is no month 13"):
        parse_datetime_range("2020-13-01T00:00:00+05")
    with pytest.raises(InputError, match="must be START/END"):
        parse_datetime_range("2020-01-01-05")


# ------------------------------------------------------------------ a scene's warning once per command, not per tile
def _centre(tif) -> str:
    """``LON,LAT`` of a raster's centre, as --at takes it."""
    import rasterio
    from pyproj import Transformer

    with rasterio.open(tif) as ds:
        x, y = ds.xy(ds.height // 2, ds.width // 2)
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return f"{lon},{lat}"


def test_thumbnails_say_a_scenes_crs_warning_once(tmp_path, caplog):
    """Trial: the warning of a scene far from its CRS's area of use came once per result tile of the scene
    (each thumbnail re-opened it)."""
    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "far.tif", width=512, height=512, crs="EPSG:27700", origin=(400000.0, 3300000.0))
    idx = tmp_path / "idx"
    assert _run("ingest", tif, "--index", idx).exit_code == 0
    caplog.clear()
    r = _run("search", "--index", idx, "--at", _centre(tif), "--per-item", "0", "-k", "4", "--include-query",
             "--thumbnails", tmp_path / "th")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "th").glob("0[1-4]_*.png"))) == 4
    said = [rec for rec in caplog.records if "far outside where its CRS EPSG:27700 is used" in rec.getMessage()]
    assert len(said) == 1, [rec.getMessage() for rec in said]


def test_thumbnails_of_a_scene_gone_say_so_once(tmp_path, caplog):
    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "gone.tif", width=512, height=512)
    idx = tmp_path / "idx"
    assert _run("ingest", tif, "--index", idx, "--gsd", "1").exit_code == 0
    at = _centre(tif)
    tif.unlink()
    caplog.clear()
    r = _run("search", "--index", idx, "--at", at, "--per-item", "0", "-k", "3", "--include-query",
             "--thumbnails", tmp_path / "th")
    assert r.exit_code == 0, r.output
    said = [rec.getMessage() for rec in caplog.records if "not rendered" in rec.getMessage()]
    assert len(said) == 2 and said[0].startswith("query tile not rendered: "), said  # the query, then the 3 hits
    assert said[1].startswith("3 hits (") and str(tif) in said[1], said


# ------------------------------------------------------------------ export's output messages and exit codes
def _chattr(flag: str, path) -> bool:
    import shutil
    import subprocess

    return bool(shutil.which("chattr")) and subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_export_names_its_out_option_as_the_other_commands_do(world, bundle, tmp_path):  # noqa: F811
    """Trial: `export` to a folder that takes no file said `choose a writable path for x.parquet`; search and
    classify say `for --out DIR/x.parquet`."""
    r = _run("export", "--index", world[0], "--model", bundle.path, "--out", "/proc/rsir-x.parquet")
    assert r.exit_code == 2, r.output
    assert "choose a writable path for --out /proc/rsir-x.parquet" in r.stderr, r.stderr
    assert json.loads(r.stdout)["exit_code"] == 2


def test_an_immutable_output_file_and_folder_exit_alike(world, bundle, tmp_path):  # noqa: F811
    """Trial: an immutable --out file exited 1 (after the export was made), an immutable folder 2 (before any
    work); both are the user's to change: 2, refused before any work, nothing written."""
    target, folder = tmp_path / "x.parquet", tmp_path / "ro"
    target.write_bytes(b"the previous export")
    folder.mkdir()
    if not (_chattr("+i", target) and _chattr("+i", folder)):
        pytest.skip("chattr +i is not allowed here (needs root and CAP_LINUX_IMMUTABLE)")
    try:
        for cmd in (["export"], ["search", "--point-id", world[1][0].id]):
            base = [*cmd, "--index", world[0], "--model", bundle.path]
            a = _run(*base, "--out", target)
            b = _run(*base, "--out", folder / "x.parquet")
            assert a.exit_code == b.exit_code == 2, (a.output, b.output)
            assert f"{target} cannot be replaced (it is marked immutable or append-only); nothing was written" \
                   in a.stderr and f"choose another path for --out {target}" in a.stderr, a.stderr
            assert f"choose a writable path for --out {folder / 'x.parquet'}" in b.stderr, b.stderr
        assert target.read_bytes() == b"the previous export"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "x.parquet"]
    finally:
        _chattr("-i", target)
        _chattr("-i", folder)


# ------------------------------------------------------------------ --collection 'naip,'
@pytest.mark.parametrize("given,hint", [("demo,", "--collection demo"), (",demo", "--collection demo"),
                                        ("demo, demo", "--collection demo --collection demo")])
def test_a_collection_with_a_stray_comma_gets_the_repeat_hint(world, bundle, given, hint):  # noqa: F811
    """Re-check: `--collection 'naip,'` got "no tile is in collection 'naip,'" without the hint `'naip,coarse'`
    gets."""
    r = _run("search", "--index", world[0], "--model", bundle.path, "--point-id", world[1][0].id,
             "--collection", given)
    assert r.exit_code == 0, r.output
    assert f"one --collection takes one name: repeat it for each, e.g. {hint}\n" in r.stderr, r.stderr


@pytest.mark.parametrize("given,said", [
    ("demo,", "--collection 'demo,' ends with a comma: names are exact, so its tiles would be in a collection "
              "'demo,' that a search for 'demo' never finds; give --collection demo (one --collection takes one name)"),
    (" demo", "--collection ' demo' starts with a space: names are exact, so its tiles would be in a collection "
              "' demo' that a search for 'demo' never finds; give --collection demo"),
    (",", "--collection ',' is only commas and spaces; give a name, e.g. naip-2020"),
])
def test_ingest_refuses_a_collection_with_a_stray_comma_or_space(tmp_path, given, said):
    """Re-check N3: `ingest --collection 'naip,'` made a collection named 'naip,' without a word (search then
    found nothing in 'naip' and hinted at the comma)."""
    from tests.conftest import make_geotiff

    tif = make_geotiff(tmp_path / "a.tif", width=64, height=64)
    r = _run("ingest", tif, "--index", tmp_path / "idx", "--collection", given, "--json")
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {said}") and r.stderr.count("\n") == 1, r.stderr
    assert json.loads(r.stdout)["ok"] is False
    assert not (tmp_path / "idx").exists()  # refused before any work


# ------------------------------------------------------------------ B1/B2 wording
def test_an_output_onto_an_input_names_the_input_by_its_option(world, bundle, tmp_path):  # noqa: F811
    """Re-check: B1/B2's refusals said "your within file"."""
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [[[10, 45], [10.5, 45], [10.5, 45.1], [10, 45]]]}))
    before = area.read_text()
    base = ["--index", world[0], "--model", bundle.path, "--within", area, "--out", area]
    for cmd in (["search", "--point-id", world[1][0].id], ["export"]):
        r = _run(*cmd, *base)
        assert r.exit_code == 2, r.output
        assert (f"--out {area} is the file read as --within, so writing it would replace your --within area file; "
                "give --out another path") in r.stderr, r.stderr
    assert area.read_text() == before


# ------------------------------------------------------------------ CLI notes say nothing of the map page
def test_an_example_the_filters_leave_out_is_said_in_command_line_words(world, bundle):  # noqa: F811
    """Trial: the CLI note ended "(so the map page hides its imagery)"; the API's (the page's) keeps it."""
    from rsir_stac.search import Example, Index
    from rsir_stac.store import SearchFilter

    pid = world[1][0].id
    r = _run("search", "--index", world[0], "--model", bundle.path, "--point-id", pid, "--datetime", "2021")
    assert r.exit_code == 0, r.output
    assert ("which the filters leave out (the search still starts from it, but it cannot be among the hits)"
            in r.stderr), r.stderr
    assert "map page" not in r.stderr, r.stderr
    r = _run("search", "--index", world[0], "--model", bundle.path, "--point-id", pid, "--datetime", "2021",
             "--format", "json")
    assert not any("map page" in n for n in json.loads(r.stdout)["notes"]), r.stdout
    with Index.open(str(world[0]), model=bundle) as index:  # the library's (and the API's) note names the page
        res = index.search(positives=[Example("point", pid)], flt=SearchFilter(collections=("other",)))
    assert any(n.endswith("which the filters leave out (so the map page hides its imagery)") for n in res.notes)


# ------------------------------------------------------------------ K1: an image example is named by its path
def test_an_image_example_is_named_by_its_path_in_the_query_line_and_json(world, bundle, tmp_path):  # noqa: F811
    """Trial K1: `search --image a.png --point-id X` printed no `query:` line, and `--format json` had null in
    query.positives for the image."""
    import numpy as np
    from PIL import Image

    png = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(png)
    pid, neg = world[1][0].id, world[1][30].id
    base = ["search", "--index", world[0], "--model", bundle.path, "--image", png, "--point-id", pid,
            "--not-point-id", neg, "-k", "2"]
    r = _run(*base)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"query: image {png} + 2 more examples", r.stdout
    for fmt in ("json", "geojson"):
        r = _run(*base, "--format", fmt)
        q = json.loads(r.stdout)["query"]
        assert q["positives"] == [str(png), pid] and q["negatives"] == [neg] and q["kind"] == "image", q
