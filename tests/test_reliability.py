"""Failure is safe and visible: bad inputs, failure policy, crash safety, index locking.

Every bad input goes through the real command line against (a) an index that
already holds points from a good ingest -- afterwards it holds exactly the
same points -- and (b) a fresh ``--index`` path -- afterwards no folder exists.
Each must end with one ``error: ...`` line naming the object and the fix, a
non-zero exit, and no traceback unless ``-v``.  docs/RELIABILITY.md lists the
same catalogue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rasterio.transform import from_origin

from rsir_stac.cli import main
from rsir_stac.errors import IndexInUseError, RasterError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.store import open_store
from tests.conftest import make_geotiff, write_raster

REPO = Path(__file__).resolve().parents[1]
NATIVE = ["--tile-size", "64", "--native-gsd"]

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


# --------------------------------------------------------------------------- helpers


def snapshot(index: Path) -> tuple[int, list[str], str]:
    """(count, sorted ids, metadata) of an index; opening must succeed."""
    with open_store(index, read_only=True) as store:
        ids = sorted(p.id for p in store.iter_points(with_vectors=False))
        count = store.count()
    meta = (index / "rsir_tiles.meta.json").read_text()
    return count, ids, meta


def cli(*args: object, env: dict | None = None):
    """Run the CLI in-process; returns the click Result (stdout/stderr separate)."""
    runner = CliRunner()
    return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def assert_one_line_error(result, code: int, pattern: str) -> str:
    """Exit ``code``, last stderr line ``error: ...`` matching ``pattern``, no traceback."""
    err = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert err and err[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert re.search(pattern, err[-1]), err[-1]
    return err[-1]


def re_search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def stac_item(item_id: str, href: str, **asset) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None, "bbox": None,
        "properties": {"datetime": "2021-06-01T10:00:00Z"}, "links": [],
        "assets": {"visual": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["visual"], **asset}},
    }


def corrupt_block(path: Path, block: int) -> None:
    """Overwrite the compressed bytes of one TIFF tile (tags 324/325: TileOffsets/TileByteCounts)."""
    from PIL import Image

    with Image.open(path) as im:
        offsets, counts = im.tag_v2[324], im.tag_v2[325]
    with open(path, "r+b") as fh:
        fh.seek(offsets[block])
        fh.write(b"\xff" * counts[block])


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        if "slow" in self.path:
            time.sleep(20)  # far beyond the timeout the test sets
        if self.path.endswith("/catalog-with-lazy-child.json"):
            body = json.dumps({
                "type": "Catalog", "stac_version": "1.0.0", "id": "remote", "description": "d",
                "links": [{"rel": "child", "href": "./slow/child.json", "type": "application/json"}],
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def http_base():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def good(tmp_path_factory, tiny_bundle):
    """Two good scenes (4 tiles each at 64 px) and an index holding their 8 points."""
    root = tmp_path_factory.mktemp("good")
    scenes = [make_geotiff(root / f"good{i}.tif", width=128, height=128, seed=10 + i) for i in range(2)]
    index = root / "index"
    report = ingest([str(s) for s in scenes], index=str(index), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, native_gsd=True))
    assert report.ok and report.points_written == 8
    return {"root": root, "scenes": scenes, "index": index, "snapshot": snapshot(index)}


@pytest.fixture()
def index(good, tmp_path) -> Path:
    """A private copy of the good index."""
    dst = tmp_path / "index"
    shutil.copytree(good["index"], dst)
    return dst


# --------------------------------------------------------------------------- bad inputs


def _bad_sources(root: Path, base: str) -> dict[str, tuple[list[str], list[str], int, str]]:
    """name -> (sources, extra args, exit code, message pattern)."""
    root.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(1, 255, size=(3, 128, 128)).astype("uint8")
    utm = from_origin(500000.0, 3300000.0, 1.0, 1.0)
    (root / "text.tif").write_text("not a raster at all\n")
    write_raster(root / "nocrs.tif", rgb, crs=None, transform=utm)
    write_raster(root / "notransform.tif", rgb, crs="EPSG:32615", transform=None)
    write_raster(root / "nodata.tif", np.zeros((3, 128, 128), "uint8"), transform=utm, nodata=0)
    make_geotiff(root / "two.tif", count=2, width=64, height=64)
    make_geotiff(root / "twelve.tif", count=12, width=64, height=64)
    (root / "broken.json").write_text('{"type": "Feature", "id": ')
    (root / "notstac.json").write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}))
    good_tif = make_geotiff(root / "fine.tif", width=64, height=64, seed=5)
    (root / "item.json").write_text(json.dumps(stac_item("item-a", str(good_tif))))
    (root / "item404.json").write_text(json.dumps(stac_item("item-404", f"{base}/missing.tif")))
    (root / "itemslow.json").write_text(json.dumps(stac_item("item-slow", f"{base}/slow.tif")))
    return {
        "missing file": ([str(root / "nope.tif")], [], 2, r"nope\.tif does not exist; check the path"),
        "not a raster": ([str(root / "text.tif")], [], 2, r"text\.tif is neither STAC JSON nor a raster; pass a"),
        "no CRS": ([str(root / "nocrs.tif")], [], 1,
            r"item nocrs-[0-9a-f]{12} failed: .*nocrs\.tif has no CRS; assign its true one, e\.g\. `rio edit-info --crs EPSG:32633 FILE`"),
        "no geotransform": ([str(root / "notransform.tif")], [], 1,
            r"item notransform-[0-9a-f]{12} failed: .*notransform\.tif has no geotransform; give it one, e\.g\. `rio edit-info --transform"),
        "all nodata": ([str(root / "nodata.tif")], [], 1,
                       r"nothing was indexed: all 4 windows of 1 scene\(s\) are nodata .*lower --min-valid"),
        "2 bands": ([str(root / "two.tif")], [], 1,
            r"item two-[0-9a-f]{12} failed: .*two\.tif has 2 bands and neither its colour interpretation nor its band names say which are red, green and blue; pass --bands R,G,B"),
        "12 bands": ([str(root / "twelve.tif")], [], 1,
            r"item twelve-[0-9a-f]{12} failed: .*twelve\.tif has 12 bands .*pass --bands R,G,B"),
        "invalid JSON": ([str(root / "broken.json")], [], 2, r"broken\.json is not valid JSON \(.*line 1.*\); fix the file"),
        "JSON not STAC": ([str(root / "notstac.json")], [], 2,
                          r"notstac\.json is JSON but not a STAC Item, Collection, Catalog or ItemCollection; pass"),
        "missing asset": ([str(root / "item.json")], ["--asset", "nir"], 1,
            r"item item-a failed: item item-a has no asset 'nir' \(assets: visual\); pass --asset with one of these"),
        "asset 404": ([str(root / "item404.json")], [], 1,
            r"item item-404 failed: http://127\.0\.0\.1:\d+/missing\.tif does not exist "
            r"\(HTTP response code: 404\); check the URL"),
        "asset timeout": ([str(root / "itemslow.json")], [], 1,
            r"item item-slow failed: http://127\.0\.0\.1:\d+/slow\.tif timed out \(.*\); check the server, "
            r"or allow more time with RSIR_HTTP_TIMEOUT"),
        "document 404": ([f"{base}/catalog.json"], [], 2, r"catalog\.json does not exist \(HTTP 404\); check the URL"),
        "linked child times out": ([f"{base}/catalog-with-lazy-child.json"], [], 1,
                                   r"item http://.*/slow/child\.json failed: child catalog linked from "
                                   r".*catalog-with-lazy-child\.json \(its items are not ingested\): "
                                   r".*/slow/child\.json timed out after 1 s; "
                                   r"check the server, or allow more time with RSIR_HTTP_TIMEOUT"),
        "bad --bands": ([str(root / "fine.tif")], ["--bands", "4,x,2"], 2, r"--bands '4,x,2' is invalid; give R,G,B"),
        "bad --shard": ([str(root / "fine.tif")], ["--shard", "3/2"], 2, r"shard '3/2' is invalid; use I/N"),
    }


#: lines printed before the error line
ITEM_LINES = {"all nodata": r"skipped item nodata-[0-9a-f]{12}: every window is nodata or less valid than --min-valid "
                            r"\(a scene that is mostly fill: lower --min-valid"}


BAD = ["missing file", "not a raster", "no CRS", "no geotransform", "all nodata", "2 bands", "12 bands",
       "invalid JSON", "JSON not STAC", "missing asset", "asset 404", "asset timeout", "document 404",
       "linked child times out",
       "bad --bands", "bad --shard"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_error_and_leaves_index_as_it_was(case, good, index, tmp_path, tiny_bundle, http_base):
    sources, extra, code, pattern = _bad_sources(tmp_path / "src", http_base)[case]
    env = {"RSIR_HTTP_TIMEOUT": "1"}
    t0 = time.time()
    r = cli("ingest", *sources, "--index", index, "--model", tiny_bundle.path, *NATIVE, *extra, env=env)
    assert_one_line_error(r, code, pattern)
    if case in ITEM_LINES:
        assert re.search(ITEM_LINES[case], r.stderr), r.stderr
    assert snapshot(index) == good["snapshot"]  # same count, ids and metadata
    if case == "asset timeout":
        assert time.time() - t0 < 30  # 1 s timeout, 2 retries: seconds, not minutes
    fresh = tmp_path / "fresh" / "index"
    r = cli("ingest", *sources, "--index", fresh, "--model", tiny_bundle.path, *NATIVE, *extra, env=env)
    assert_one_line_error(r, code, pattern)
    assert not fresh.exists() and not fresh.parent.exists()


def test_corrupt_tile_mid_scene_is_reported_and_the_rest_ingests(good, index, tmp_path, tiny_bundle):
    path = write_raster(tmp_path / "corrupt.tif",
                        np.random.default_rng(1).integers(1, 255, size=(3, 256, 256)).astype("uint8"),
                        transform=from_origin(600000.0, 3300000.0, 1.0, 1.0),
                        tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    corrupt_block(path, 5)  # row 1, col 1 of the 4x4 blocks: the window at col_off=64,row_off=64
    r = cli("ingest", path, "--index", index, "--model", tiny_bundle.path, *NATIVE, "--json")
    assert_one_line_error(r, 1, r"^error: window failed \(the scene's other tiles were indexed\): .*corrupt\.tif: "
                                r"window col_off=64,row_off=64,width=64,height=64 cannot be read")
    report = json.loads(r.stdout)
    assert report["points_written"] == 15 and len(report["tiles_failed"]) == 1 and report["items_done"] == 1
    assert "window col_off=64,row_off=64,width=64,height=64 cannot be read" in report["tiles_failed"][0]
    r = cli("ingest", path, "--index", tmp_path / "other", "--model", tiny_bundle.path, *NATIVE)
    line = assert_one_line_error(r, 1, r"^error: window failed \(the scene's other tiles were indexed\): .*corrupt\.tif: "
                                       r"window col_off=64,row_off=64,width=64,height=64 cannot be read \(.*\); "
                                       r"the file may be corrupt or cut short, re-download it \(ingest skips this window until then\)$")
    assert r.stderr.strip() == line
    count, ids, _ = snapshot(index)
    assert count == 8 + 15 and set(good["snapshot"][1]) <= set(ids)
    # re-run: the 15 are skipped, the bad window is tried again and reported again
    r = cli("ingest", path, "--index", index, "--model", tiny_bundle.path, *NATIVE, "--json")
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["tiles_existing"] == 15 and report["points_written"] == 0
    # --fail-fast stops at the bad window
    fresh = tmp_path / "ff"
    r = cli("ingest", path, "--index", fresh, "--model", tiny_bundle.path, *NATIVE, "--fail-fast")
    assert_one_line_error(r, 1, r"item corrupt-[0-9a-f]{12} failed and --fail-fast stopped the run: .*window col_off=64,row_off=64")


def test_model_with_other_vector_size_is_refused(good, index, tmp_path, tiny_bundle):
    from rsir_stac.model.bundle import load_bundle, save_bundle

    b = load_bundle(tiny_bundle.path)
    meta = json.loads(json.dumps(b.meta))
    meta["name"] = "other"
    other = save_bundle(tmp_path / "other", b.net, None, meta)  # no reducer: 16-d, not 2-d
    r = cli("ingest", good["scenes"][0], "--index", index, "--model", other.path, *NATIVE)
    assert_one_line_error(
        r, 2, rf"index .*index holds 2-d vectors of model '{tiny_bundle.model_id}', not 16-d vectors of model "
              rf"'{other.model_id}'; use the same model or a new --index, or move the index to this model with "
              rf"`rsir-stac reindex --index \S+index --to NEW --model BUNDLE` \(BUNDLE: the folder of model "
              rf"{other.model_id}\)")   # the index named, as search names it (second model trial)
    assert snapshot(index) == good["snapshot"]
    r = cli("search", "--image", good["scenes"][0], "--index", index, "--model", other.path)
    assert_one_line_error(r, 2, r"was built with model .* \(2-d\), not .* \(16-d\); pass --model with the bundle")


@pytest.mark.parametrize("damage", ["weights", "reducer", "meta"])
def test_truncated_bundle_is_refused(good, index, tmp_path, tiny_bundle, damage):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, bundle)
    name = {"weights": "weights.pt", "reducer": "reducer.npz", "meta": "model.json"}[damage]
    raw = (bundle / name).read_bytes()
    (bundle / name).write_bytes(raw[: len(raw) // 2])
    pattern = (r"model bundle .*model\.json is not valid JSON .*; re-train or re-copy the bundle" if damage == "meta"
               else rf"model bundle file .*{name} is truncated or modified \(checksum mismatch\); re-copy the bundle")
    r = cli("ingest", good["scenes"][0], "--index", index, "--model", bundle, *NATIVE)
    assert_one_line_error(r, 2, pattern)
    assert snapshot(index) == good["snapshot"]
    r = cli("search", "--image", good["scenes"][0], "--index", index, "--model", bundle)
    assert_one_line_error(r, 2, pattern)


@pytest.mark.parametrize("edit", [{"normalisation": {"mean": [0.9, 0.1, 0.5], "std": [0.1, 0.1, 0.1]}},
                                  {"gsd_m": 10.0}, {"tile_size": 32}, {"input_size": 96}])
def test_an_edited_model_json_is_refused_before_it_opens_the_index(good, index, tmp_path, tiny_bundle, edit):
    """Model trial: model.json's normalisation, GSD or tile size could be edited and the bundle kept
    its model id, so it opened the original's indexes and searched them with other vectors (exit 0).
    Fields that do not decide the vectors (the name, notes) may still be edited."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, bundle)
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["embedding_fields_sha256"]
    (bundle / "model.json").write_text(json.dumps({**meta, "created": "2020-01-01T00:00:00+00:00"}))
    r = cli("search", "--image", good["scenes"][0], "--index", index, "--model", bundle)
    assert r.exit_code == 0, r.output
    (bundle / "model.json").write_text(json.dumps({**meta, **edit}))
    r = cli("search", "--image", good["scenes"][0], "--index", index, "--model", bundle)
    assert_one_line_error(r, 2, r"model bundle .*model\.json was edited: the fields that decide its vectors .* "
                                r"\(checksum mismatch\).*re-copy the bundle")
    assert snapshot(index) == good["snapshot"]


def test_truncated_file_without_digest_still_one_line(tmp_path, tiny_bundle):
    """Bundles whose model.json lists no digests fail on load with a BundleError, not a torch traceback."""
    from rsir_stac.errors import BundleError
    from rsir_stac.model.bundle import load_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, bundle)
    meta = json.loads((bundle / "model.json").read_text())
    meta.pop("files")
    (bundle / "model.json").write_text(json.dumps(meta))
    for name in ("weights.pt", "reducer.npz"):
        raw = (bundle / name).read_bytes()
        (bundle / name).write_bytes(raw[: len(raw) // 3])
    b = load_bundle(bundle)
    with pytest.raises(BundleError, match=r"weights\.pt cannot be loaded .*re-train or re-copy the bundle"):
        b.net  # noqa: B018
    with pytest.raises(BundleError, match=r"reducer\.npz cannot be loaded .*re-train or re-copy the bundle"):
        b.reducer  # noqa: B018


def _search_cases(root: Path) -> dict[str, tuple[list[str], str]]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "open.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}))
    (root / "bowtie.geojson").write_text(json.dumps(
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}))
    return {
        "unreadable query image": (["--image", str(root / "garbage.png")],
                                   r"garbage\.png cannot be decoded as an image \(.*\); give a PNG/JPEG/WebP/GeoTIFF image"),
        "missing query image": (["--image", str(root / "nope.png")], r"nope\.png does not exist; check the path"),
        "bbox longitude > 180": (["--at", "-93,29.83", "--bbox", "5,0,190,1"],
                                 r"bbox '5,0,190,1': longitude 190\.0 is outside -180\.\.180; give it as -170 \(a box across 180 "
                                 r"has W > E, e\.g\. --bbox=170,60,-170,70\)"),
        "bbox latitude > 90": (["--at", "-93,29.83", "--bbox", "0,0,5,91"],
                               r"bbox '0,0,5,91': latitude 91\.0 is outside -90\.\.90; give lon/lat in degrees"),
        "bbox latitude < -90": (["--at", "-93,29.83", "--bbox", "0,-95,5,1"],
                                r"latitude -95\.0 is outside -90\.\.90"),
        "polygon not closed": (["--at", "-93,29.83", "--within", str(root / "open.geojson")],
                               r"open\.geojson ring is not closed: .*; repeat the first position at the end"),
        "polygon self-intersects": (["--at", "-93,29.83", "--within", str(root / "bowtie.geojson")],
                                    r"bowtie\.geojson is not a valid polygon \(Self-intersection.*\); fix self-intersections"),
        "bad datetime": (["--at", "-93,29.83", "--datetime", "2021-13-01/2021-12-31"],
                         r"datetime '2021-13-01/2021-12-31' names no real time: in '2021-13-01', there is no "
                         r"month 13"),
        "reversed datetime": (["--at", "-93,29.83", "--datetime", "2022-01-01/2021-01-01"],
                              r"ends before it starts; swap START and END"),
        "--at off the globe": (["--at", "200,10"], r"location '200,10' is out of range"),
        "unknown point id": (["--point-id", "0c5b7d5e-0000-4000-8000-000000000000"],
                             r"point 0c5b7d5e-0000-4000-8000-000000000000 is not in index .*; check the id or "
                             r"ingest it first \(ids change with the model: .* search at its place with --at LON,LAT\)"),
    }


SEARCH_BAD = ["unreadable query image", "missing query image", "bbox longitude > 180", "bbox latitude > 90",
              "bbox latitude < -90", "polygon not closed", "polygon self-intersects", "bad datetime",
              "reversed datetime", "--at off the globe", "unknown point id"]


@pytest.mark.parametrize("case", SEARCH_BAD)
def test_bad_search_input_is_one_line_error(case, good, index, tmp_path, tiny_bundle):
    args, pattern = _search_cases(tmp_path / "q")[case]
    r = cli("search", *args, "--index", index, "--model", tiny_bundle.path)
    assert_one_line_error(r, 2, pattern)
    assert snapshot(index) == good["snapshot"]


def test_search_on_missing_index_creates_nothing(tmp_path, tiny_bundle):
    fresh = tmp_path / "nothing"
    r = cli("search", "--at", "0,0", "--index", fresh, "--model", tiny_bundle.path)
    assert_one_line_error(r, 2, r"no index at .*nothing \(no such folder\); check the --index path")
    assert not fresh.exists()


# --------------------------------------------------------------------------- error plumbing


def test_verbose_shows_traceback_and_keeps_exit_code(tmp_path, tiny_bundle):
    r = cli("-v", "ingest", tmp_path / "nope.tif", "--index", tmp_path / "i", "--model", tiny_bundle.path)
    assert r.exit_code == 2
    assert "Traceback (most recent call last)" in r.stderr and "SourceNotFoundError" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.tif'} does not exist; check the path"


@pytest.mark.parametrize("flag", ["-v", "--verbose", "-vv"])
def test_verbose_after_the_command_name_works_as_before_it(flag, tmp_path, tiny_bundle):
    """Users type the flag at the end of the line; it is the group's option, so it used to fail
    with "No such option: -v" (operator trial 11)."""
    r = cli("ingest", tmp_path / "nope.tif", "--index", tmp_path / "i", "--model", tiny_bundle.path, flag)
    assert r.exit_code == 2
    assert "Traceback (most recent call last)" in r.stderr and "SourceNotFoundError" in r.stderr
    # after a -- separator it is an argument, not the flag; as an option's value it is that value
    r = cli("ingest", "--index", tmp_path / "i", "--model", tiny_bundle.path, "--", flag)
    assert r.exit_code == 2 and "Traceback" not in r.stderr and f"{flag} does not exist" in r.stderr
    r = cli("ingest", tmp_path / "nope.tif", "--collection", flag, "--index", tmp_path / "i", "--model",
            tiny_bundle.path)
    assert r.exit_code == 2 and "Traceback" not in r.stderr and "nope.tif does not exist" in r.stderr


def test_unexpected_exception_is_one_line(monkeypatch, tmp_path, good, tiny_bundle):
    import rsir_stac.ingest

    def boom(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(rsir_stac.ingest, "ingest", boom)
    args = ("ingest", good["scenes"][0], "--index", tmp_path / "i", "--model", tiny_bundle.path)
    r = cli(*args)
    line = assert_one_line_error(r, 1, r"^error: unexpected ZeroDivisionError: division by zero second line; "
                                        r"run with -v for the traceback$")
    assert r.stderr.strip() == line
    r = cli("-v", *args)
    assert r.exit_code == 1 and "Traceback" in r.stderr and 'raise ZeroDivisionError' in r.stderr


def test_library_errors_are_wrapped_where_they_happen(tmp_path):
    """rasterio/PROJ failures from bad input surface as one-line RsirErrors from tiling itself."""
    from rsir_stac.tiling import SceneReader

    # a TIFF header with nothing behind it
    (tmp_path / "stub.tif").write_bytes(b"II*\x00" + b"\x00" * 60)
    with pytest.raises(RasterError, match=r"stub\.tif is not a raster GDAL can read \(.*\); give a GeoTIFF/COG"):
        SceneReader.open(tmp_path / "stub.tif")
    # an engineering (local) CRS that PROJ cannot take to lon/lat
    wkt = ('LOCAL_CS["site grid",LOCAL_DATUM["site",32767],UNIT["metre",1],'
           'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    path = write_raster(tmp_path / "local.tif", np.ones((3, 64, 64), "uint8"), crs=wkt,
                        transform=from_origin(0, 64, 1, 1))
    with pytest.raises(RasterError, match=r"local\.tif has a local \(engineering\) CRS, 'site grid'.*gdalwarp"):
        SceneReader.open(path, tile_size=32)


# --------------------------------------------------------------------------- failure policy


@pytest.fixture()
def catalogue(tmp_path, good) -> Path:
    """ItemCollection: good item, item whose asset has no CRS, good item."""
    nocrs = write_raster(tmp_path / "nocrs.tif", np.full((3, 128, 128), 9, "uint8"), crs=None,
                         transform=from_origin(500000.0, 3300000.0, 1.0, 1.0))
    a = make_geotiff(tmp_path / "a.tif", width=128, height=128, seed=21)
    c = make_geotiff(tmp_path / "c.tif", width=128, height=128, seed=23, origin=(501000.0, 3300000.0))
    doc = {"type": "FeatureCollection",
           "features": [stac_item("a", str(a)), stac_item("b-nocrs", str(nocrs)), stac_item("c", str(c))]}
    path = tmp_path / "items.json"
    path.write_text(json.dumps(doc))
    return path


def test_failing_item_is_skipped_reported_and_exit_is_nonzero(catalogue, tmp_path, tiny_bundle):
    idx = tmp_path / "idx"
    r = cli("ingest", catalogue, "--index", idx, "--model", tiny_bundle.path, *NATIVE, "--json")
    assert_one_line_error(r, 1, r"^error: item b-nocrs failed: .*nocrs\.tif has no CRS")
    report = json.loads(r.stdout)
    assert report["items_done"] == 2 and report["points_written"] == 8
    assert report["items_failed"] == [{"item": "b-nocrs", "error": report["items_failed"][0]["error"]}]
    assert "has no CRS" in report["items_failed"][0]["error"]
    with open_store(idx, read_only=True) as store:
        assert sorted({p.payload["item_id"] for p in store.iter_points(with_vectors=False)}) == ["a", "c"]


def test_several_failures_are_listed_then_counted(catalogue, tmp_path, tiny_bundle, good):
    two = make_geotiff(tmp_path / "two.tif", count=2, width=64, height=64)
    r = cli("ingest", catalogue, two, "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE)
    assert_one_line_error(r, 1, r"^error: 2 of 4 items failed \(listed above\); fix them as each says and re-run "
                                r"\(tiles already indexed are kept and skipped\)$")
    assert re_search(r"  failed item b-nocrs: .*nocrs\.tif has no CRS", r.stderr)
    assert re_search(r"  failed item two-[0-9a-f]{12}: .*two\.tif has 2 bands", r.stderr)
    assert r.stdout.startswith("items 2/4 done, 2 failed; tiles 8: 8 written")


def test_fail_fast_stops_at_the_first_failure(catalogue, tmp_path, tiny_bundle):
    idx = tmp_path / "idx"
    r = cli("ingest", catalogue, "--index", idx, "--model", tiny_bundle.path, *NATIVE, "--fail-fast", "--json")
    assert_one_line_error(r, 1, r"item b-nocrs failed and --fail-fast stopped the run: .*nocrs\.tif has no CRS")
    report = json.loads(r.stdout)
    assert report["items_done"] == 1 and report["items_failed"][0]["item"] == "b-nocrs"
    with open_store(idx, read_only=True) as store:
        assert {p.payload["item_id"] for p in store.iter_points(with_vectors=False)} == {"a"}
    # API: the original error type, with the item and the partial report attached
    with pytest.raises(RasterError, match="has no CRS") as info:
        ingest([str(catalogue)], index=str(tmp_path / "api"), model=tiny_bundle,
               options=IngestOptions(tile_size=64, native_gsd=True, fail_fast=True))
    assert info.value.item_id == "b-nocrs" and info.value.report.items_done == 1


def test_fail_fast_on_listing_error(tmp_path, tiny_bundle, good):
    doc = {"type": "FeatureCollection",
           "features": [stac_item("x", str(good["scenes"][0])), stac_item("y", str(good["scenes"][1]))]}
    doc["features"][1]["assets"] = {"thumb": {"href": "t.png", "type": "image/png", "roles": ["thumbnail"]}}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    r = cli("ingest", tmp_path / "c.json", "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE,
            "--fail-fast")
    assert_one_line_error(r, 1, r"item y failed and --fail-fast stopped the run: item y has no GeoTIFF/COG asset")
    assert not (tmp_path / "idx").exists()
    r = cli("ingest", tmp_path / "c.json", "--index", tmp_path / "idx", "--model", tiny_bundle.path, *NATIVE)
    assert_one_line_error(r, 1, r"^error: item y failed: item y has no GeoTIFF/COG asset: asset 'thumb' is "
                                r"image/png, not a GeoTIFF/COG; it cannot be tiled .*or ingest such a file directly$")


def test_empty_items_are_skipped_not_failed(tmp_path, tiny_bundle, good):
    nodata = write_raster(tmp_path / "blank.tif", np.zeros((3, 128, 128), "uint8"),
                          transform=from_origin(500000.0, 3300000.0, 1.0, 1.0), nodata=0)
    r = cli("ingest", good["scenes"][0], nodata, "--index", tmp_path / "i", "--model", tiny_bundle.path, *NATIVE,
            "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert [i[:-13] for i in report["items_empty"]] == ["blank"] and report["points_written"] == 4 and not report["nothing_indexed"]
    # an empty catalogue is not silently "ok"
    (tmp_path / "empty.json").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    r = cli("ingest", tmp_path / "empty.json", "--index", tmp_path / "j", "--model", tiny_bundle.path)
    assert_one_line_error(r, 1, r"nothing was indexed: the sources hold no STAC items or rasters")
    assert not (tmp_path / "j").exists()
    # a re-run that finds everything indexed already is fine
    r = cli("ingest", good["scenes"][0], "--index", tmp_path / "i", "--model", tiny_bundle.path, *NATIVE)
    assert r.exit_code == 0, r.stderr


def test_unexpected_error_in_one_item_skips_only_that_item(monkeypatch, catalogue, tmp_path, tiny_bundle):
    import rsir_stac.ingest.producer as mod

    real = mod.open_scene  # the name ingest's reader thread calls (rsir_stac.gsd.open_scene)

    def flaky(scene, *args):
        if scene.item_id == "a":
            raise KeyError("surprise")
        return real(scene, *args)

    monkeypatch.setattr(mod, "open_scene", flaky)
    report = ingest([str(catalogue)], index=str(tmp_path / "idx"), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, native_gsd=True))
    failed = {f["item"]: f["error"] for f in report.items_failed}
    assert set(failed) == {"a", "b-nocrs"} and report.items_done == 1 and report.points_written == 4
    assert "unexpected KeyError while tiling ('surprise')" in failed["a"] and "\n" not in failed["a"]


def test_nothing_written_creates_no_server_collection(tmp_path, tiny_bundle, catalogue):
    from rsir_stac.store.server import ServerStore

    store = ServerStore(":memory:")
    nocrs = str(tmp_path / "nocrs.tif")
    report = ingest([nocrs], store=store, model=tiny_bundle, options=IngestOptions(tile_size=64, native_gsd=True))
    assert not report.ok and store.meta() is None  # no empty collection left behind
    report = ingest([str(catalogue)], store=store, model=tiny_bundle,
                    options=IngestOptions(tile_size=64, native_gsd=True))
    assert report.points_written == 8 and store.meta().model_id == tiny_bundle.model_id
    store.close()


# --------------------------------------------------------------------------- two writers


def _child(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **kw.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "rsir_stac.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO, **kw)


def test_second_writer_gets_index_in_use(good, index, tiny_bundle):
    holder = open_store(index)  # this process is the first writer
    try:
        res = _child(["ingest", str(good["scenes"][0]), "--index", str(index), "--model", str(tiny_bundle.path),
                      *NATIVE])
        assert res.returncode == 1, res.stderr
        assert res.stderr.strip().splitlines()[-1] == (
            f"error: index {index} is in use by another process (pid {os.getpid()}); "
            "wait for it or use another --index")
        assert "Traceback" not in res.stderr
        with pytest.raises(IndexInUseError):
            open_store(index, read_only=True)
    finally:
        holder.close()
    assert snapshot(index) == good["snapshot"]


def test_two_ingest_processes_on_one_index(good, tmp_path, tiny_bundle):
    """Two real CLI writers started together: one wins, the other stops with 'in use'; nothing is corrupted."""
    idx = tmp_path / "idx"
    shutil.copytree(good["index"], idx)
    scenes = [make_geotiff(tmp_path / f"t{i}.tif", width=128, height=128, seed=40 + i) for i in range(4)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "rsir_stac.cli", "ingest", *map(str, scenes), "--index", str(idx),
           "--model", str(tiny_bundle.path), *NATIVE, "--batch-size", "2"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    in_use = [o[1] for p, o in zip(procs, outs) if p.returncode != 0]
    # usually one loses the race; if the first finished before the second opened, both succeed
    assert codes in ([0, 0], [0, 1]), outs
    for err in in_use:
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: index {idx} is in use by another process (pid "), err
        assert last.endswith("); wait for it or use another --index") and "Traceback" not in err
    count, ids, _ = snapshot(idx)
    assert count == 8 + 16 and len(set(ids)) == count


# --------------------------------------------------------------------------- crash safety


def _ingest_cmd(scenes: list[Path], idx: Path, bundle: Path, verbose: str = "-vv") -> list[str]:
    return [sys.executable, "-m", "rsir_stac.cli", verbose, "ingest", *map(str, scenes), "--index", str(idx),
            "--model", str(bundle), *NATIVE, "--batch-size", "2", "--json"]


def _run_and_kill(cmd: list[str], trigger) -> tuple[bool, list[str]]:
    """Start ``cmd``; SIGKILL it at the first stderr line where ``trigger(line, n_seen)`` is true.

    Returns (killed, lines seen)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    lines: list[str] = []
    killed = False
    try:
        for line in proc.stderr:
            lines.append(line)
            if trigger(line, lines):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        proc.wait(timeout=300)
        proc.stderr.close()
    return killed, lines


def _tile_lines(lines: list[str]) -> int:
    return sum(1 for ln in lines if "rsir_stac.cli: tiles " in ln)


def test_sigkill_at_several_points_then_rerun_equals_clean_run(tmp_path, tiny_bundle):
    scenes = [make_geotiff(tmp_path / f"k{i}.tif", width=128, height=128, seed=60 + i,
                           origin=(500000.0 + 200 * i, 3300000.0)) for i in range(5)]
    bundle = tiny_bundle.path
    clean = tmp_path / "clean"
    res = _child([*_ingest_cmd(scenes, clean, bundle, "-v")[3:]])
    assert res.returncode == 0, res.stderr
    _, clean_ids, _ = snapshot(clean)
    assert len(clean_ids) == 20

    idx = tmp_path / "crashy"
    triggers = [
        ("at the start, before any write", lambda ln, seen: re.search(r"item k0-[0-9a-f]{12}: started", ln) is not None),
        ("after the first batch", lambda ln, seen: _tile_lines(seen) >= 1),
        ("mid-item, after 3 batches", lambda ln, seen: _tile_lines(seen) >= 3),
        ("right after an item was written and flushed", lambda ln, seen: ": done (" in ln and _tile_lines(seen)),
        ("after 2 more batches", lambda ln, seen: _tile_lines(seen) >= 2),
        ("after the last item, while optimizing/closing", lambda ln, seen: f"({len(scenes)}/{len(scenes)} items" in ln),
    ]
    counts, kills = [], 0
    for name, trigger in triggers:
        killed, lines = _run_and_kill(_ingest_cmd(scenes, idx, bundle), trigger)
        kills += killed
        if idx.exists() and (idx / "rsir_tiles").exists():
            count, ids, _ = snapshot(idx)  # opens cleanly after SIGKILL: lock gone, WAL replayed
            assert count == len(ids) == len(set(ids)) and set(ids) <= set(clean_ids), name
            counts.append(count)
        else:
            counts.append(0)
        assert killed or "Traceback" not in "".join(lines), (name, "".join(lines)[-2000:])
    assert kills >= 4, counts
    assert counts[-1] > 0  # progress survived the kills
    assert counts == sorted(counts)  # never lost what was written
    res = _child([*_ingest_cmd(scenes, idx, bundle, "-v")[3:]])
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["tiles_existing"] == counts[-1]  # the re-run skipped what survived
    assert report["tiles_existing"] + report["points_written"] == 20
    count, ids, meta = snapshot(idx)
    assert ids == clean_ids and count == 20
    with open_store(idx) as store:  # and can still be written
        store.ensure_collection(tiny_bundle.dim, tiny_bundle.model_id)
        assert store.count() == 20
    # the payloads equal the clean run's (same ids -> same tiles)
    with open_store(idx, read_only=True) as a, open_store(clean, read_only=True) as b:
        pa = {p.id: p for p in a.iter_points()}
        pb = {p.id: p for p in b.iter_points()}
        for pid in clean_ids:
            assert pa[pid].payload == pb[pid].payload
            assert np.allclose(pa[pid].vector, pb[pid].vector, atol=1e-5)


def test_sigkill_while_creating_the_shard(tmp_path):
    """A process killed while the Edge shard is being created leaves no half-made shard."""
    code = (
        "import os, signal, sys\n"
        "from rsir_stac.store import open_store\n"
        "real = os.replace\n"
        "def replace(src, dst):  # die just before the shard is renamed into place\n"
        "    if str(dst).endswith('rsir_tiles'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(src, dst)\n"
        "os.replace = replace\n"
        "s = open_store(sys.argv[1]); s.ensure_collection(8, 'm')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert (tmp_path / "idx" / ".rsir_tiles.creating").is_dir() and not (tmp_path / "idx" / "rsir_tiles").exists()
    with open_store(tmp_path / "idx") as store:
        assert store.meta() is None and store.count() == 0
        store.ensure_collection(8, "m")
        store.upsert([__import__("rsir_stac.store", fromlist=["Point"]).Point(
            "0c5b7d5e-0000-4000-8000-000000000001", np.ones(8, np.float32), {})])
    assert not (tmp_path / "idx" / ".rsir_tiles.creating").exists()
    with open_store(tmp_path / "idx", read_only=True) as store:
        assert store.count() == 1


def test_a_copy_of_a_shipped_bundle_without_the_fields_checksum_is_held_to_the_shipped_fields(tmp_path):
    """Re-check N3: deleting embedding_fields_sha256 from model.json switched the check off, so a copy of
    the shipped model with another tile size kept its id and added tiles cut another way to its indexes."""
    from rsir_stac.errors import BundleError
    from rsir_stac.model.bundle import default_bundle_path, load_bundle

    copy = tmp_path / "v1"
    shutil.copytree(default_bundle_path().parent / "v1", copy)
    meta = json.loads((copy / "model.json").read_text())
    del meta["embedding_fields_sha256"]
    (copy / "model.json").write_text(json.dumps(meta))
    assert load_bundle(copy).model_id == meta["model_id"]   # an unedited copy still loads
    (copy / "model.json").write_text(json.dumps({**meta, "tile_size": 64}))
    with pytest.raises(BundleError, match="was edited: the fields that decide its vectors"):
        load_bundle(copy)
