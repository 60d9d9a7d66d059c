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
    return CliRunner().invoke(main, [str(a) for a in args])


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
