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
