"""CLI behaviour: fast help without heavy imports, one-line errors for bad input."""

import json
import subprocess
import sys

from click.testing import CliRunner

from rsir_stac.cli import main


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from rsir_stac.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'rasterio', 'qdrant_client', 'qdrant_edge', 'pystac') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "ingest" in out.stdout and "search" in out.stdout and "evaluate" in out.stdout


def _one_line_error(result):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_evaluate_bad_folders(tmp_path):
    r = CliRunner().invoke(main, ["evaluate", str(tmp_path / "missing")])
    assert "does not exist" in _one_line_error(r)
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["evaluate", str(tmp_path / "empty"), "--model", str(tmp_path / "nobundle")])
    assert "no model bundle" in _one_line_error(r)


def test_train_rejects_folder_without_classes(tmp_path):
    (tmp_path / "flat").mkdir()
    r = CliRunner().invoke(main, ["train", str(tmp_path / "flat"), "--out", str(tmp_path / "run")])
    msg = _one_line_error(r)
    assert "flat" in msg and "class" in msg


def test_evaluate_json_with_tiny_bundle(tiny_bundle):
    data = tiny_bundle.path.parents[1] / "tiles"
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tiny_bundle.path), "--split", "all", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(res) >= {"mAP", "P@5", "P@10", "P@20", "P@50", "P@100", "ANMRR", "n_queries", "dim"}
    assert res["n_queries"] == 18 and res["dim"] == 2


def test_model_info_of_bundle(tiny_bundle):
    r = CliRunner().invoke(main, ["model-info", "--model", str(tiny_bundle.path)])
    assert r.exit_code == 0
    meta = json.loads(r.stdout)
    assert meta["model_id"] == tiny_bundle.model_id and "history" not in meta["training"]


def test_bad_usage_is_one_line_naming_the_command_and_its_help():
    """An option value out of range, an unknown option or a missing argument is one
    line (not click's usage block) naming the command and where its help is; exit 2."""
    runner = CliRunner()
    for args, cause in ((["evaluate", ".", "--batch-size", "-1"], "-1 is not in the range"),
                        (["search", "--no-such-option"], "No such option"),
                        (["evaluate"], "Missing argument")):
        r = runner.invoke(main, args, prog_name="rsir-stac")
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2, r.output
        assert len(lines) == 1, r.output
        assert cause in lines[0] and f"rsir-stac {args[0]} --help" in lines[0], r.output


def test_typed_index_wins_over_qdrant_url_from_the_environment(tmp_path, tiny_bundle):
    """RSIR_QDRANT_URL set once in the environment (a compose file, a shell profile) does not make
    every `--index` command fail with "both given": the option typed wins, with a note; typing both
    stays an error."""
    from rsir_stac.store import open_store

    idx = tmp_path / "idx"
    with open_store(idx) as store:
        store.ensure_collection(tiny_bundle.dim, tiny_bundle.model_id)
    env = {"RSIR_QDRANT_URL": "http://127.0.0.1:9", "RSIR_QDRANT_API_KEY": "k"}
    r = CliRunner().invoke(main, ["info", "--index", str(idx)], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 0
    assert "RSIR_QDRANT_URL" in r.stderr and "not used" in r.stderr
    r = CliRunner().invoke(main, ["info", "--index", str(idx), "--qdrant-url", "http://127.0.0.1:9"])
    assert r.exit_code != 0 and "pass only one of them" in r.output
    r = CliRunner().invoke(main, ["info", "--index", str(idx), "--qdrant-collection", "other"], env=env)
    assert r.exit_code == 2 and "drop --qdrant-collection" in r.output
    r = CliRunner().invoke(main, ["info", "--index", str(idx), "--api-key", "secret"])  # re-check: said nothing
    assert r.exit_code == 0 and "--api-key is for a Qdrant server" in r.stderr, r.output
