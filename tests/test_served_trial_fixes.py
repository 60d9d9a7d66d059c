"""Fixes from the thirty-seventh session's new-user trial: commands sent to a running ``serve``
said less, or other things, than the same commands run directly.

* An ingest job named a file it read under the ingest roots by ``/proc/self/fd/N`` (the descriptor
  the read is pinned to), not by its path, in every message of the read path.
* ``search --image X --bands ...`` named the query by the temporary PNG of the chosen bands.
* A STAC document outside the ingest roots was told to move under a root, where it is refused
  again (jobs take no STAC documents): that reason now comes first, told by the command line.
* ``search --out`` said "wrote the hits to FILE (N bytes)", not "wrote N hits to FILE", and an
  ``ingest`` printed none of the warnings (GSD, unmasked fill) a direct one prints.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from tests.conftest import make_geotiff
from tests.test_served import REPO, _env, _free_port, _stop, _wait_served


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bundle):
    """A real ``serve`` (subprocess) holding a small index, taking ingest jobs under ``src``:
    ``(index, src, bundle path)``; the CLI commands of the tests go through it."""
    from rsir_stac.ingest import IngestOptions, ingest

    base = tmp_path_factory.mktemp("served")
    src = base / "src"
    src.mkdir()
    scenes = [make_geotiff(src / f"s{i}.tif", width=128, height=128, seed=i + 3) for i in range(2)]
    idx = base / "idx"
    assert ingest([str(s) for s in scenes], index=str(idx), model=tiny_bundle,
                  options=IngestOptions(tile_size=64, native_gsd=True)).points_written == 8
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                             str(tiny_bundle.path), "--port", str(port), "--ingest-root", str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        _wait_served(proc, idx, port)
        yield str(idx), src, str(tiny_bundle.path)
    finally:
        _stop(proc)


def _run(*args: str):
    r = CliRunner().invoke(main, list(args))
    assert "sending the" in r.stderr, r.output  # it went through the service
    return r


def _cut_tiled(path: Path, count: int = 3) -> Path:
    """A tiled, compressed GeoTIFF cut short: it opens, and its last blocks cannot be read."""
    import rasterio

    make_geotiff(path.with_suffix(".full.tif"), width=256, height=256, count=count, seed=5)
    with rasterio.open(path.with_suffix(".full.tif")) as src:
        data, profile = src.read(), src.profile
    profile.update(tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    path.with_suffix(".full.tif").unlink()
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) * 2 // 3])
    return path


def _failed_window(reader) -> str:
    for ref in reader.windows():
        try:
            reader.read(ref)
        except Exception as err:  # noqa: BLE001 - the first window that cannot be read
            return str(err)
    raise AssertionError("every window was read")


def test_messages_of_a_read_under_the_ingest_roots_name_the_file_not_its_descriptor(tmp_path, caplog):
    """Trial finding 1: through serve, a 6-band file failed with "/proc/self/fd/14 has 6 bands ...";
    a read under the roots opens the file by descriptor (kept), and every message of that read
    path names the path given, as a direct run does: band choice, nodata, a window GDAL cannot
    read (GDAL's own text too), and which of a composed scene's three files failed."""
    from rsir_stac.errors import BandsError
    from rsir_stac.tiling.scene import SceneReader
    from rsir_stac.tiling.sources import restrict_to_geotiff

    root = tmp_path / "root"
    root.mkdir()
    six = make_geotiff(root / "six.tif", width=64, height=64, count=6, seed=1)
    cut = _cut_tiled(root / "cut.tif")
    red, blue = (make_geotiff(root / f"{c}.tif", width=256, height=256, count=1, seed=n) for n, c in
                 ((2, "red"), (3, "blue")))
    green = _cut_tiled(root / "green.tif", count=1)

    def messages() -> list[str]:
        out = []
        for bands in (None, (9, 2, 1)):
            with pytest.raises(BandsError) as err:
                SceneReader.open(str(six), bands=bands)
            out.append(str(err.value))
        with SceneReader.open(str(cut), tile_size=64) as reader:
            out.append(_failed_window(reader))
        with SceneReader.open(str(red), hrefs=[str(red), str(green), str(blue)], tile_size=64) as reader:
            out.append(_failed_window(reader))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rsir_stac.tiling"):
            with SceneReader.open(str(red), nodata=300, tile_size=64) as reader:
                reader.plan  # noqa: B018 - the nodata value a uint8 file cannot hold is warned about here
        out.append(caplog.text.strip())
        return out

    direct = messages()
    restrict_to_geotiff([root])
    try:
        served = messages()
    finally:
        restrict_to_geotiff(())
    assert not any("/proc/self/fd" in m for m in served), served
    assert served == direct  # word for word what a direct run says
    bands, bad_band, window, stacked, nodata = served
    assert bands.startswith(f"{six} has 6 bands and neither") and bad_band.startswith(f"{six} has 6 bands, so")
    assert window.startswith(f"{cut}: window") and "(cut.tif, band 1: IReadBlock failed" in window, window
    assert "(green.tif, band 1: IReadBlock failed" in stacked, stacked  # the file that failed, not the scene's first
    assert f"{red}: the nodata value 300" in nodata, nodata


def test_an_ingest_jobs_failed_item_names_the_file(tmp_path, tiny_bundle):
    """The same through the service's ingest job: ``items_failed[].error`` (what ``ingest`` prints
    and ``--json`` reports) names the file under the root, not /proc/self/fd/N."""
    from fastapi.testclient import TestClient

    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from rsir_stac.tiling.sources import restrict_to_geotiff

    root = tmp_path / "root"
    root.mkdir()
    ok = make_geotiff(root / "ok.tif", width=64, height=64, seed=3)
    six = make_geotiff(root / "six.tif", width=64, height=64, count=6, seed=1)
    idx = tmp_path / "idx"
    assert ingest([str(ok)], index=str(idx), model=tiny_bundle, options=IngestOptions(tile_size=64, native_gsd=True)).ok
    h = {"X-API-Key": "k"}
    try:
        with Index.open(str(idx), model=tiny_bundle) as index, \
                TestClient(create_app(index, ingest_roots=[str(root)], api_key="k"),
                           base_url="http://127.0.0.1:8000") as c:
            r = c.post("/api/ingest/jobs", json={"sources": [str(six)], "tile_size": 64, "native_gsd": True},
                       headers=h)
            assert r.status_code == 202, r.text
            while (doc := c.get(f"/api/ingest/jobs/{r.json()['id']}", headers=h).json())["state"] in ("queued",
                                                                                                  "running"):
                time.sleep(0.1)
    finally:
        restrict_to_geotiff(())
    error = doc["report"]["items_failed"][0]["error"]
    assert error.startswith(f"{six} has 6 bands and neither") and "pass --bands R,G,B" in error, error


def test_a_served_image_search_with_bands_names_the_image_as_given(served, tmp_path):
    """Trial finding 2: through serve, ``search --image X.tif --bands 3,2,1`` printed ``query: image
    /tmp/rsir-bands-.../0-X.png`` and put that temporary file in ``query.positives``; the README
    promises the path as given, as a direct run prints it (table, JSON and GeoJSON alike)."""
    idx, _src, bundle = served
    six = make_geotiff(tmp_path / "six.tif", width=64, height=64, count=6, seed=4)
    other = make_geotiff(tmp_path / "other.tif", width=64, height=64, count=6, seed=5)
    base = ["search", "--index", idx, "--model", bundle, "--image", str(six), "--bands", "3,2,1", "-k", "2"]
    r = _run(*base)
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == f"query: image {six}", r.output
    r = _run(*base, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["query"]["positives"] == [str(six)], r.output
    r = _run(*base, "--format", "geojson")
    assert r.exit_code == 0 and json.loads(r.stdout)["query"]["positives"] == [str(six)], r.output
    r = _run(*base, "--not-image", str(other), "--format", "json")  # several images: one multipart query
    q = json.loads(r.stdout)["query"]
    assert r.exit_code == 0 and (q["positives"], q["negatives"]) == ([str(six)], [str(other)]), r.output
    assert "rsir-bands-" not in r.output


def test_a_stac_document_outside_the_ingest_roots_is_told_the_real_reason_first(served, tmp_path):
    """Trial finding 3: ``ingest collection.json`` outside the roots said to put it under a root or
    restart serve with another --ingest-root; after doing so the real reason came: ingest jobs take
    no STAC documents.  That reason comes first now, whatever the root.  The command line tells it
    (it reads the file it was given); the service still says nothing about files outside its
    roots beyond that they are outside."""
    import httpx

    idx, src, bundle = served
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"type": "Feature", "stac_version": "1.0.0", "id": "x", "assets": {}}))
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "c", "stac_version": "1.0.0",
                                                     "description": "d", "links": []}))
    (src / "inside.json").write_text(item.read_text())
    for source, what in ((str(item), "is a JSON document"), (str(folder), "holds a STAC catalog.json"),
                         (str(src / "inside.json"), "is a JSON document")):
        r = _run("ingest", source, "--index", idx, "--model", bundle)
        last = r.stderr.strip().splitlines()[-1]
        assert r.exit_code == 2 and f"source {source} {what}; ingest jobs take GeoTIFF/COG files" in last, last
        assert last.endswith("stop serve and run rsir-stac ingest for a STAC catalog") and "ingest roots" not in last
    outside = make_geotiff(tmp_path / "outside.tif", width=64, height=64, seed=9)  # a raster: the root's reason
    r = _run("ingest", str(outside), "--index", idx, "--model", bundle)
    assert r.exit_code == 2 and "outside the service's ingest roots" in r.stderr, r.output
    url = json.loads((Path(idx) / ".serve.json").read_text())["url"]
    for source in (str(item), str(tmp_path / "missing.json")):  # the service tells nothing of what is outside
        answer = httpx.post(f"{url}/api/ingest/jobs", json={"sources": [source]}, trust_env=False)
        assert answer.status_code == 403 and "outside the service's ingest roots" in answer.json()["detail"]
        assert "JSON" not in answer.text


def test_a_served_search_out_says_how_many_hits_it_wrote(served, tmp_path):
    """Trial finding 9: through serve, ``search --out res.parquet`` said ``wrote the hits to
    res.parquet (8367 bytes)`` where a direct run says ``wrote 3 hits to res.parquet``; the service's
    export says how many hits its file holds (``X-Hit-Count``), with example images too."""
    import pyarrow.parquet as pq

    idx, src, bundle = served
    for fmt, k, extra in (("parquet", "3", ()), ("csv", "2", ("--image", str(src / "s0.tif")))):
        out = tmp_path / f"res.{fmt}"
        at = [] if extra else ["--at", "-92.9995,29.8300"]
        r = _run("search", "--index", idx, "--model", bundle, *at, *extra, "-k", k, "--out", str(out))
        assert r.exit_code == 0, r.output
        assert f"wrote {k} hits to {out}" in r.stderr.splitlines(), r.stderr
        rows = pq.read_table(out).num_rows if fmt == "parquet" else len(out.read_text().strip().splitlines()) - 1
        assert rows == int(k)


def _bordered(path: Path) -> Path:
    """A scene inside a border of zeros the file does not mark as nodata (a rotated scene's fill)."""
    import rasterio

    make_geotiff(path, width=128, height=128, seed=8)
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, :12, :] = data[:, -12:, :] = data[:, :, :12] = data[:, :, -12:] = 0
        ds.write(data)
    return path


def test_a_served_ingest_prints_the_warnings_a_direct_one_does(served, tmp_path, caplog):
    """Trial finding 9: an ingest through serve printed none of the warnings a direct one prints (a
    GSD far from the model's, a fill border the file does not mark): they went to the service's log
    only.  The report carries them now (``warnings``, in ``--json`` too), and the command line logs
    them as a direct run does: the same lines."""
    idx, src, bundle = served
    coarse = make_geotiff(src / "coarse.tif", width=128, height=128, res=30.0, seed=7)
    border = _bordered(src / "border.tif")
    args = [str(coarse), str(border), "--model", bundle, "--tile-size", "64"]

    def warnings_of(*cmd: str) -> tuple[list[tuple[str, str]], object]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rsir_stac"):
            r = CliRunner().invoke(main, list(cmd))
        assert r.exit_code == 0, r.output
        return [(rec.name, rec.getMessage()) for rec in caplog.records if rec.name.startswith("rsir_stac.")], r

    direct, _ = warnings_of("ingest", *args, "--index", str(tmp_path / "alone"))
    assert any("native GSD 30 m is much coarser than the model's" in m for _, m in direct), direct
    assert any("its corners are 0 in every band and the file marks no nodata" in m for _, m in direct), direct
    through, r = warnings_of("ingest", *args, "--index", idx, "--json")
    assert "sending the ingest" in r.stderr
    assert through == direct
    assert [(w["logger"], w["message"]) for w in json.loads(r.stdout)["warnings"]] == direct


def test_collect_warnings_keeps_what_its_run_warns():
    """The report's ``warnings`` hold what the run itself warns: in its thread and in threads started
    with its context (the tile reader), not another thread's, and at most MAX_WARNINGS of them."""
    import contextvars
    import threading

    from rsir_stac.ingest.report import MAX_WARNINGS, IngestReport, collect_warnings

    log = logging.getLogger("rsir_stac.gsd")
    report = IngestReport()
    with collect_warnings(report):
        log.warning("mine %d", 1)
        for t in (threading.Thread(target=log.warning, args=("not mine",)),  # another thread's
                  threading.Thread(target=contextvars.copy_context().run, args=(log.warning, "mine %d", 2))):
            t.start()
            t.join()
        log.info("not a warning")
    log.warning("after the run")
    assert report.warnings == [{"logger": "rsir_stac.gsd", "message": "mine 1"},
                               {"logger": "rsir_stac.gsd", "message": "mine 2"}]
    full = IngestReport()
    with collect_warnings(full):
        for n in range(MAX_WARNINGS + 5):
            log.warning("w%d", n)
    assert len(full.warnings) == MAX_WARNINGS + 1
    assert full.warnings[-1]["message"] == "... and 5 more warnings, left out of this report"
