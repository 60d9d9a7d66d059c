"""One embedded index shared by `serve` and the command line (issue 16, item 8):
while a real `rsir-stac serve` (uvicorn, subprocess, free loopback port) holds a
real Edge index, `info`, `search` and `ingest` on it go through the service;
while another process holds it, `serve` refuses with one line.  Also the
ingest-job endpoint's refusals (roots, URLs, origin, key)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.store import open_store
from rsir_stac.store.integrity import check_index
from tests.conftest import make_geotiff

REPO = Path(__file__).resolve().parents[1]
NATIVE = IngestOptions(tile_size=64, native_gsd=True)
NATIVE_ARGS = ["--tile-size", "64", "--native-gsd"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _wait_served(proc: subprocess.Popen, idx: Path, port: int) -> None:
    """Wait until the service answers (or fail with its stderr when it exits)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        if (idx / ".serve.json").is_file():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                return
            except OSError:
                pass
        time.sleep(0.2)
    raise AssertionError("serve did not start")


@pytest.fixture()
def setup(tmp_path, tiny_bundle):
    src = tmp_path / "src"
    src.mkdir()
    scenes = [make_geotiff(src / f"s{i}.tif", width=128, height=128, seed=i + 3) for i in range(2)]
    idx = tmp_path / "idx"
    r = ingest([str(scenes[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert r.ok and r.points_written == 4
    return src, scenes, idx


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # as docker stop / systemd do: a clean stop, exit 0
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_info_search_ingest_through_a_running_serve(setup, tiny_bundle, tmp_path, monkeypatch):
    src, scenes, idx = setup
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                             str(tiny_bundle.path), "--port", str(port), "--ingest-root", str(src),
                             "--service-key", "s3cret"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        _wait_served(proc, idx, port)
        doc = json.loads((idx / ".serve.json").read_text())
        assert doc["pid"] == proc.pid and doc["port"] == port and doc["key_required"] is True
        assert "s3cret" not in (idx / ".serve.json").read_text()  # never the key itself
        runner = CliRunner()
        # the service needs its key: without it, one line naming the variable
        monkeypatch.delenv("RSIR_SERVICE_KEY", raising=False)
        r = runner.invoke(main, ["info", "--index", str(idx)])
        assert r.exit_code == 1 and "set RSIR_SERVICE_KEY" in r.output, r.output
        monkeypatch.setenv("RSIR_SERVICE_KEY", "s3cret")

        r = runner.invoke(main, ["info", "--index", str(idx)])
        assert r.exit_code == 0, r.output
        assert f"in use by rsir-stac serve (pid {proc.pid})" in r.stderr and "sending the info" in r.stderr
        info = json.loads(r.stdout)
        assert info["count"] == 4 and info["model_id"] == tiny_bundle.model_id and info["location"] == str(idx)

        # a search by a stored tile's id, through the service
        ids = _ids_via_query(port)
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--point-id", ids[0], "--include-query", "--format", "json", "-k", "3"])
        assert r.exit_code == 0, r.output
        hits = json.loads(r.stdout)["hits"]
        assert hits[0]["id"] == ids[0] and hits[0]["distance"] == pytest.approx(0, abs=1e-3)
        assert len(hits) == 3 and all("item_id" in h for h in hits)
        assert "sending the search" in r.stderr
        # a per-scene cap, an area file and two examples go through as request fields
        area = tmp_path / "area.geojson"  # written with a byte order mark, as some Windows tools do
        area.write_bytes(b"\xef\xbb\xbf" + json.dumps({"type": "Polygon", "coordinates": [[
            [-180, -89], [180, -89], [180, 89], [-180, 89], [-180, -89]]]}).encode())
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--point-id",
                                 ids[0], "--point-id", ids[1], "--per-item", "1", "--within", str(area),
                                 "--format", "json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["query"]["positives"] == ids[:2] and doc["hits"]
        assert len({h["item_id"] for h in doc["hits"]}) == len(doc["hits"])  # at most one per scene
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--point-id", ids[0], "-k", "2"])  # the table
        assert r.exit_code == 0 and f"query: point {ids[0]}" in r.stdout and "(None)" not in r.stdout, r.output
        assert len([ln for ln in r.stdout.splitlines() if ln.strip()[:1].isdigit()]) == 2
        # -k named as typed as without a service (re-check N6), not as the request's field `k 0`
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--point-id", ids[0], "-k", "0"])
        assert r.exit_code == 2 and "error: -k 0 (API: k) must be a whole number >= 1" in r.stderr, r.output

        # an image query (uploaded by the CLI) and an export to a file, through the service
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--image", str(scenes[0]), "--format", "json", "-k", "2"])
        assert r.exit_code == 0 and len(json.loads(r.stdout)["hits"]) == 2, r.output
        # several images and a negative one: uploaded together (multipart /api/query), as without a service
        other = make_geotiff(tmp_path / "other.tif", width=128, height=128, seed=99)   # not one of the positives
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--image",
                                 str(scenes[0]), "--image", str(scenes[1]), "--not-image", str(other),
                                 "--point-id", ids[2], "--format", "json", "-k", "2", "--per-item", "0"])
        assert r.exit_code == 0 and len(json.loads(r.stdout)["hits"]) == 2, r.output
        q = json.loads(r.stdout)["query"]  # the uploads named by their paths, as without a service (trial K1)
        assert q["positives"] == [str(scenes[0]), str(scenes[1]), ids[2]] and q["negatives"] == [str(other)], q
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--image", str(tmp_path / "missing.png")])
        assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1].endswith("missing.png does not exist; "
                                                                                "check the path"), r.output
        import pyogrio

        fgb = tmp_path / "served_hits.fgb"  # the layer is named after the file, as without a service
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--point-id", ids[0], "-k", "2", "--out", str(fgb)])
        assert r.exit_code == 0 and [n for n, _ in pyogrio.list_layers(fgb)] == ["served_hits"], r.output
        out = tmp_path / "img-hits.geojson"
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--image",
                                 str(scenes[0]), "--image", str(scenes[1]), "-k", "3", "--out", str(out)])
        assert r.exit_code == 0 and len(json.loads(out.read_text())["features"]) == 3, r.output
        out = tmp_path / "hits.csv"
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--point-id", ids[0], "-k", "3", "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert len(out.read_text().strip().splitlines()) == 4  # header + 3 hits
        r = runner.invoke(main, ["search", "--index", str(idx), "--model", str(tiny_bundle.path),
                                 "--point-id", ids[0], "--out", str(tmp_path / "nodir" / "hits.parquet")])
        assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1].startswith("error: output folder"), r.output
        r = runner.invoke(main, ["search", "--index", str(idx), "--point-id", ids[0], "--thumbnails",
                                 str(tmp_path / "th"), "--model", str(tiny_bundle.path)])
        assert r.exit_code == 1 and "--thumbnails" in r.stderr.strip().splitlines()[-1], r.output

        # ingest a second scene: a job of the service
        r = runner.invoke(main, ["ingest", str(scenes[1]), "--index", str(idx), "--model", str(tiny_bundle.path),
                                 *NATIVE_ARGS, "--json"])
        assert r.exit_code == 0, r.output
        assert "sending the ingest" in r.stderr
        rep = json.loads(r.stdout)
        assert rep["points_written"] == 4 and rep["ok"]
        r = runner.invoke(main, ["info", "--index", str(idx)])
        assert json.loads(r.stdout)["count"] == 8  # the cached summary was dropped after the job
        # the same command again: everything already indexed
        r = runner.invoke(main, ["ingest", str(scenes[1]), "--index", str(idx), "--model", str(tiny_bundle.path),
                                 *NATIVE_ARGS, "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["tiles_existing"] == 4, r.output

        # refused: a file outside the ingest root, a URL, a missing file (exit 2, one error line)
        outside = make_geotiff(tmp_path / "outside.tif", width=64, height=64, seed=9)
        for source, phrase in ((str(outside), "outside the service's ingest roots"),
                               ("http://127.0.0.1:9/x.tif", "only local files"),
                               (str(src / "missing.tif"), "does not exist")):
            r = runner.invoke(main, ["ingest", source, "--index", str(idx), "--model", str(tiny_bundle.path),
                                     *NATIVE_ARGS])
            assert r.exit_code == 2, (source, r.output)
            last = r.stderr.strip().splitlines()[-1]
            assert last.startswith("error: ") and phrase in last, last
        # a model other than the served one: refused before any work
        from rsir_stac.model.bundle import save_bundle

        other = tmp_path / "other-bundle"  # the same network averaged over 4 views: another model id
        meta = json.loads((tiny_bundle.path / "model.json").read_text())
        for key in ("files", "model_id", "reducer", "stored_dim", "created", "versions"):
            meta.pop(key)
        save_bundle(other, tiny_bundle.net, tiny_bundle.reducer, {**meta, "views": 4})
        r = runner.invoke(main, ["ingest", str(scenes[1]), "--index", str(idx), "--model", str(other)])
        assert r.exit_code == 2 and "served with model" in r.output, r.output
        # commands that need the index itself name the service
        r = runner.invoke(main, ["check", "--index", str(idx)])
        assert r.exit_code == 1 and f"in use by rsir-stac serve (pid {proc.pid}) at http://127.0.0.1:{port}" \
            in r.output, r.output
    finally:
        _stop(proc)
    assert proc.returncode == 0, proc.stderr.read()
    assert not (idx / ".serve.json").exists()  # removed at exit
    rep = check_index(idx)
    assert rep.ok and rep.points == 8 and rep.verified == 8, rep.findings
    # with the service gone, the CLI opens the index itself again
    r = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert r.exit_code == 0 and "sending" not in r.stderr and json.loads(r.stdout)["count"] == 8


def _ids_via_query(port: int) -> list[str]:
    """Stored ids, from a location query at the centre of the index's extent."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/info", headers={"X-API-Key": "s3cret"})
    info = json.loads(urllib.request.urlopen(req, timeout=30).read())
    w, s, e, n = info["extent"]
    body = json.dumps({"positives": [{"lon": (w + e) / 2, "lat": (s + n) / 2}], "k": 4,
                       "include_query": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/query", data=body, method="POST",
                                 headers={"X-API-Key": "s3cret", "Content-Type": "application/json"})
    doc = json.loads(urllib.request.urlopen(req, timeout=60).read())
    return [f["id"] for f in doc["features"]]


def test_serve_refuses_an_index_another_process_holds(setup, tiny_bundle):
    """The other direction: a writer (as a CLI ingest) holds the index; `serve` stops at once with
    the one-line "in use" error and exit 1, releasing its port; `info` keeps the old message."""
    _src, _scenes, idx = setup
    holder = open_store(str(idx))  # this process is the writer
    port = _free_port()
    try:
        res = subprocess.run([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                              str(tiny_bundle.path), "--port", str(port)], capture_output=True, text=True,
                             timeout=300, env=_env(), cwd=REPO)
        assert res.returncode == 1, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert lines[-1] == (f"error: index {idx} is in use by another process (pid {os.getpid()}); "
                             "wait for it or use another --index"), res.stderr
        assert "Traceback" not in res.stderr and not (idx / ".serve.json").exists()
        with socket.socket() as s:  # the port was given back
            s.bind(("127.0.0.1", port))
        r = CliRunner().invoke(main, ["info", "--index", str(idx)])  # in this process, which holds it
        assert r.exit_code == 1 and "already open in this process" in r.output and "sending" not in r.output
    finally:
        holder.close()


def test_stale_address_file_is_ignored(setup):
    """A `.serve.json` left by a killed serve (its pid does not hold the lock) changes nothing."""
    _src, _scenes, idx = setup
    (idx / ".serve.json").write_text(json.dumps({"pid": 999999, "url": "http://127.0.0.1:9", "port": 9}))
    r = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert r.exit_code == 0 and "sending" not in r.stderr and json.loads(r.stdout)["count"] == 4


class _Recorder:
    """A loopback TCP listener in this process that records whatever a client sends it."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.got.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\n{}")
                except OSError:
                    pass

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("inspect", ["proc", "ps-lsof"])
def test_an_address_file_that_cannot_be_verified_gets_no_key(setup, monkeypatch, tmp_path, inspect):
    """Anyone who can write to the index folder can write `.serve.json` (the trial's fake serve:
    a process holding the lock, its pid in `.lock`, a `url` of its choosing).  The CLI sends the
    key only to a loopback address whose port the lock holder itself listens on, and only when
    that holder is an `rsir-stac serve` of this index; otherwise it warns once, naming the file
    and why, sends nothing and opens the index itself (here: in use by that process).  The same
    through `ps` and `lsof`, as on a system without `/proc` (macOS)."""
    _src, _scenes, idx = setup
    if inspect == "ps-lsof":
        _without_proc(monkeypatch, tmp_path)
    monkeypatch.setenv("RSIR_SERVICE_KEY", "victim-secret-key")
    holder = open_store(str(idx))  # the lock holder is this process (pid in .lock), as the attacker's was
    here = _Recorder()  # listened on by the lock holder, but the holder is not an rsir-stac serve
    other = subprocess.Popen([sys.executable, "-c", (
        "import socket,sys\n"
        "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(8); s.settimeout(60)\n"
        "print(s.getsockname()[1], flush=True)\n"
        "c,_=s.accept(); c.settimeout(5); sys.stderr.write(repr(c.recv(65536)))\n")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        other_port = int(other.stdout.readline())
        cases = [  # (url, port, why)
            (f"http://0.0.0.0:{here.port}", here.port, "not a loopback address"),  # 0.0.0.0 reaches this host
            (f"http://attacker.invalid:{here.port}", here.port, "not a loopback address"),
            (f"http://127.0.0.1:{here.port}@attacker.invalid", here.port, "not http://HOST:PORT"),
            (f"http://127.0.0.1:{other_port}", other_port, f"process {os.getpid()} does not listen on "
                                                            f"127.0.0.1:{other_port}"),
            (f"http://127.0.0.1:{here.port}", here.port, f"process {os.getpid()} is not an rsir-stac serve "
                                                          "of this index"),
            (f"http://localhost:{here.port}/", here.port, "is not an rsir-stac serve"),
        ]
        for url, port, why in cases:
            (idx / ".serve.json").write_text(json.dumps({"pid": os.getpid(), "host": "127.0.0.1", "port": port,
                                                         "url": url, "key_required": True, "ingest_jobs": True}))
            r = CliRunner().invoke(main, ["info", "--index", str(idx)])
            warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
            assert len(warnings) == 1 and warnings[0].startswith(f"warning: ignoring {idx / '.serve.json'}: "), \
                r.output
            assert why in warnings[0], (url, warnings)
            assert r.exit_code == 1 and "note:" not in r.output and "sending the info" not in r.output, r.output
            # the "in use" line (the holder is this test's own process) does not repeat the file's address
            # as the place work goes either
            assert r.output.splitlines()[-1].startswith(f"error: index {idx} is already open in this process"), r.output
            assert url not in r.output.splitlines()[-1], r.output
        assert here.got == [], here.got
    finally:
        here.close()
        other.kill()
        _out, err = other.communicate(timeout=30)
        holder.close()
    assert "victim-secret-key" not in err, err


def _without_proc(monkeypatch, tmp_path) -> None:
    """Point the address check at a missing /proc, as on macOS: it asks ps and lsof instead."""
    from rsir_stac import served

    if not (shutil.which("ps") and shutil.which("lsof")):
        pytest.skip("ps and lsof are needed to check an address without /proc")
    monkeypatch.setattr(served, "PROC_ROOT", tmp_path / "no-proc")


def test_a_running_serve_is_verified_without_proc(setup, tiny_bundle, tmp_path, monkeypatch):
    """Where there is no /proc (macOS, the BSDs), `ps` (owner, command line) and `lsof` (the
    listening socket; the folder a relative --index is resolved in) show that the lock holder is
    the `rsir-stac serve` of this index, and `info` sends its work (and the key) to it.  When a
    tool is missing, too slow or fails, the file is ignored with one line naming the tool."""
    from rsir_stac.served import UnverifiedServiceError, verify_address

    _src, _scenes, idx = setup
    _without_proc(monkeypatch, tmp_path)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", idx.name, "--model",
                             str(tiny_bundle.path), "--port", str(port), "--service-key", "s3cret"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=idx.parent)
    try:
        _wait_served(proc, idx, port)
        doc = json.loads((idx / ".serve.json").read_text())
        assert verify_address(idx, doc) == f"http://127.0.0.1:{port}"
        monkeypatch.setenv("RSIR_SERVICE_KEY", "s3cret")
        r = CliRunner().invoke(main, ["info", "--index", str(idx)])
        assert r.exit_code == 0 and "warning:" not in r.stderr, r.output
        assert f"in use by rsir-stac serve (pid {proc.pid})" in r.stderr and "sending the info" in r.stderr
        assert json.loads(r.stdout)["count"] == 4
        # another index beside it: the serve's relative --index, resolved in its folder, is not that one
        (tmp_path / "elsewhere").mkdir()
        with pytest.raises(UnverifiedServiceError, match="is not an rsir-stac serve of this index"):
            verify_address(tmp_path / "elsewhere" / idx.name, doc)

        def refused(why: str) -> None:
            r = CliRunner().invoke(main, ["info", "--index", str(idx)])
            warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
            assert len(warnings) == 1 and why in warnings[0], r.output
            assert r.exit_code == 1 and "sending the info" not in r.output, r.output
            assert r.output.splitlines()[-1].startswith(f"error: index {idx} is in use by another process")

        ps, sleep = shutil.which("ps"), shutil.which("sleep")
        bin_ = tmp_path / "bin"
        bin_.mkdir()
        (bin_ / "ps").symlink_to(ps)
        monkeypatch.setenv("PATH", str(bin_))  # ps alone: no lsof
        refused(f"lsof is not installed, so the process listening on 127.0.0.1:{port} cannot be checked")
        (bin_ / "ps").unlink()
        refused(f"ps is not installed, so the owner of process {proc.pid} cannot be checked")
        (bin_ / "ps").symlink_to(ps)
        for script, why in ((f"exec {sleep} 5", "lsof did not answer within 0.5 s"),
                            ("echo broken >&2; exit 2", "lsof failed (exit 2: broken)")):
            (bin_ / "lsof").unlink(missing_ok=True)
            (bin_ / "lsof").write_text(f"#!/bin/sh\n{script}\n")
            (bin_ / "lsof").chmod(0o755)
            monkeypatch.setattr("rsir_stac.served.TOOL_TIMEOUT_S", 0.5)
            refused(why)
    finally:
        _stop(proc)
    assert proc.returncode == 0, proc.stderr.read()
    assert not (idx / ".serve.json").exists()


@pytest.mark.parametrize("command, index", [
    ("/v/bin/python3 /v/bin/rsir-stac serve --index /data/idx --port 8000", "/data/idx"),
    ("/v/bin/python3 /v/bin/rsir-stac serve --index /My Data/idx --port 8000", "/My Data/idx"),  # a space
    ("/u/rsir-stac dev/.venv/bin/python -m rsir_stac.cli -v serve --port 1 --index=rel/idx", "rel/idx"),
    ("rsir-stac serve --port 8000", "./rsir-index"),
    ("/usr/bin/python3 -m pytest tests/test_served.py", None),
    ("python -c import sys; rsir-stac serve --index /data/idx", None),  # code, not the program
    ("rsir-stac search --query-text serve --index /data/idx", None),  # serve is not the command
    ("rsir-stac serve --index /data/idx --model m --index /other", ValueError),  # which one: cannot tell
    ("rsir-stac serve --port 1 --index", ValueError),
])
def test_the_index_of_a_serve_as_ps_shows_it(command, index):
    """Without /proc the command line comes from `ps`, its arguments joined with spaces: the
    --index is read only when it can be told; otherwise the address stays unverified."""
    from rsir_stac.served import _index_in_command

    if index is ValueError:
        with pytest.raises(ValueError):
            _index_in_command(command)
    else:
        assert _index_in_command(command) == index


# ----------------------------------------------------------------------------- the endpoint itself


def test_ingest_job_endpoint_refusals_and_progress(setup, tiny_bundle, tmp_path):
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    src, scenes, idx = setup
    outside = make_geotiff(tmp_path / "outside.tif", width=64, height=64, seed=9)
    (src / "link.tif").symlink_to(outside)
    (src / "sub").mkdir()  # a folder whose raster links outside: ingest would follow it
    (src / "sub" / "inner.tif").symlink_to(outside)
    (src / "stac").mkdir()  # STAC: links and asset hrefs may name any file or URL
    (src / "stac" / "catalog.json").write_text('{"type": "Catalog", "id": "c", "links": []}')
    (src / "nest" / "deep").mkdir(parents=True)  # a catalogue in a sub-folder: ingest reads it as STAC too
    (src / "nest" / "deep" / "collection.json").write_text('{"type": "Collection", "id": "c", "links": []}')
    (src / "item.json").write_text('{"type": "Feature", "assets": {"a": {"href": "/etc/passwd"}}}')
    base = "http://127.0.0.1:8000"
    with Index.open(str(idx), model=tiny_bundle) as index:
        with TestClient(create_app(index), base_url=base) as c:  # no --ingest-root: no jobs at all
            r = c.post("/api/ingest/jobs", json={"sources": [str(scenes[1])]})
            assert r.status_code == 403 and "--ingest-root" in r.json()["detail"]
        with TestClient(create_app(index, ingest_roots=[str(src)], api_key="k"), base_url=base) as c:
            h = {"X-API-Key": "k"}
            assert c.post("/api/ingest/jobs", json={"sources": [str(scenes[1])]}).status_code == 401
            for bad in ("/vsicurl/http://127.0.0.1:9/x.tif", "http://127.0.0.1:9/x.tif", "file:///etc/passwd",
                        str(outside), str(src / "link.tif"), str(src / ".." / "outside.tif"), "/etc/passwd",
                        str(src / "sub"), "sub", str(src / "stac"), str(src / "item.json"), str(src / "nest")):
                r = c.post("/api/ingest/jobs", json={"sources": [bad]}, headers=h)
                assert r.status_code == 403, (bad, r.text)
                assert r.json()["error"] == "Forbidden"
            r = c.post("/api/ingest/jobs", json={"sources": [str(src / "nope.tif")]}, headers=h)
            assert r.status_code == 404
            r = c.post("/api/ingest/jobs", json={"sources": [str(scenes[1])], "model": "/tmp/evil"}, headers=h)
            assert r.status_code == 422  # no model path (a bundle is code), no unknown fields
            r = c.post("/api/ingest/jobs", json={"sources": [str(scenes[1])], "tile_size": 10 ** 6}, headers=h)
            assert r.status_code == 422
            r = c.post("/api/ingest/jobs", json={"sources": [str(scenes[1])]},
                       headers={**h, "Origin": "https://evil.example"})
            assert r.status_code == 403  # a cross-site page cannot start a job
            r = c.post("/api/ingest/jobs", json={"sources": [str(scenes[1])], "model_id": "other"}, headers=h)
            assert r.status_code == 409
            r = c.post("/api/ingest/jobs", json={"sources": ["s1.tif"], "tile_size": 64, "native_gsd": True},
                       headers=h)  # relative to the root
            assert r.status_code == 202, r.text
            job = r.json()
            while job["state"] in ("queued", "running"):
                time.sleep(0.2)
                job = c.get(f"/api/ingest/jobs/{job['id']}", headers=h).json()
            assert job["state"] == "done" and job["exit_code"] == 0, job
            assert job["report"]["points_written"] == 4 and job["progress"]["tiles_done"] == 4
            assert c.get("/api/info", headers=h).json()["count"] == 8
            assert c.get("/api/ingest/jobs/" + "0" * 32, headers=h).status_code == 404
            assert "/api/ingest/jobs" in c.get("/openapi.json", headers=h).json()["paths"]
    assert check_index(idx).ok


def _vrt_of(target: Path, size: int) -> str:
    """A GDAL VRT whose three bands read ``target`` (any file GDAL opens, e.g. outside a root)."""
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">{target}'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>" for b in (1, 2, 3))
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32615</SRS>'
            f"<GeoTransform>500000, 1, 0, 3300000, 0, -1</GeoTransform>{bands}</VRTDataset>")


def test_ingest_jobs_read_only_geotiffs_under_the_roots(setup, tiny_bundle, tmp_path, monkeypatch):
    """A VRT saved as ``.tif`` under a root (or as a scene's ``.ovr`` sidecar) names files outside
    it: a job refuses it up front, and every read under a root (a job's, the imagery's) is
    GeoTIFF-only without sidecars, so a file swapped in after the check reads nothing outside."""
    import rasterio
    from fastapi.testclient import TestClient

    from rsir_stac.errors import RasterError
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from rsir_stac.tiling.scene import SceneReader
    from rsir_stac.tiling.sources import restrict_to_geotiff

    src, scenes, idx = setup
    outside = make_geotiff(tmp_path / "secret.tif", width=64, height=64, seed=11)
    (src / "evil.tif").write_text(_vrt_of(outside, 64))
    (src / "drop").mkdir()
    (src / "drop" / "evil.tif").write_text(_vrt_of(outside, 64))
    with rasterio.open(src / "evil.tif") as ds:  # plain GDAL follows the VRT out of the root
        assert ds.driver == "VRT" and (ds.read() == rasterio.open(outside).read()).all()
    # a genuine GeoTIFF with a VRT sidecar: GDAL reads the "overview" from the outside file
    (src / "s1.tif.ovr").write_text(_vrt_of(outside, 64).replace('Size="64"', 'Size="32"'))
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "FALSE")  # an operator's setting: sidecars on
    base, h = "http://127.0.0.1:8000", {"X-API-Key": "k"}
    try:
        with Index.open(str(idx), model=tiny_bundle) as index, \
                TestClient(create_app(index, ingest_roots=[str(src)], api_key="k"), base_url=base) as c:
            for bad in ("evil.tif", str(src / "evil.tif"), "drop"):
                r = c.post("/api/ingest/jobs", json={"sources": [bad]}, headers=h)
                assert r.status_code == 403 and "not a GeoTIFF" in r.json()["detail"], (bad, r.text)
            r = c.post("/api/ingest/jobs", json={"sources": ["s1.tif"], "collection": "a\u202eb"}, headers=h)
            assert r.status_code == 400 and "U+202E" in r.json()["detail"], r.text  # refused, not a failed job
            assert r.json()["detail"].startswith("collection "), r.text  # the job's field, not the CLI's flag
            r = c.post("/api/ingest/jobs", json={"sources": ["s1.tif"], "gsd": 0.5, "native_gsd": True}, headers=h)
            assert r.status_code == 400 and r.json()["detail"].startswith("gsd and native_gsd were both"), r.text
            r = c.post("/api/ingest/jobs", json={"sources": ["a" * 300]}, headers=h)  # a name over 255 bytes
            assert r.status_code == 400 and "cannot be a path" in r.json()["detail"], r.text
            # what a job or the imagery reads once a file is swapped after the check
            with pytest.raises(RasterError, match="is not a GeoTIFF"):
                SceneReader.open(str(src / "evil.tif"))
            with SceneReader.open(str(src / "s1.tif")) as reader:  # the sidecar is not opened
                assert reader._ds.overviews(1) == []
            (src / "swapped.tif").symlink_to(outside)  # a link swapped in after ingest, to a file outside
            with pytest.raises(RasterError, match="link to a file outside"):
                SceneReader.open(str(src / "swapped.tif"))
        restrict_to_geotiff(())  # lifted: the same files are read as GDAL reads them anywhere else
        with SceneReader.open(str(src / "evil.tif")) as reader:
            assert reader._ds.driver == "VRT"
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"), rasterio.open(src / "s1.tif") as ds:
            assert ds.overviews(1) == [4]  # the 32-px "overview" of the 128-px scene: the outside file
    finally:
        restrict_to_geotiff(())


def test_an_ingest_job_can_be_cancelled(setup, tiny_bundle, tmp_path):
    """``DELETE /api/ingest/jobs/{id}`` stops a queued or running job at its next progress step
    (state cancelled, exit code 130, what it wrote stays); an ended or unknown job is 409/404."""
    import threading

    from fastapi.testclient import TestClient

    from rsir_stac.api.jobs import Job, _run
    from rsir_stac.ingest import IngestOptions
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    src, scenes, idx = setup
    with Index.open(str(idx), model=tiny_bundle) as index:
        before = index.store.count()
        job = Job([str(scenes[1])], IngestOptions(tile_size=64, native_gsd=True))
        job.cancel.set()  # asked before it started: it stops at its first step, writing nothing
        _run(job, index, threading.Lock(), None)
        assert (job.state, job.exit_code, job.error_type) == ("cancelled", 130, "JobCancelledError")
        assert index.store.count() == before
        base, h = "http://127.0.0.1:8000", {"X-API-Key": "k"}
        with TestClient(create_app(index, ingest_roots=[str(src)], api_key="k"), base_url=base) as c:
            assert c.delete("/api/ingest/jobs/" + "0" * 32, headers=h).status_code == 404
            r = c.post("/api/ingest/jobs", json={"sources": ["s1.tif"], "tile_size": 64, "native_gsd": True},
                       headers=h)
            jid = r.json()["id"]
            first = c.delete(f"/api/ingest/jobs/{jid}", headers=h)
            while (doc := c.get(f"/api/ingest/jobs/{jid}", headers=h).json())["state"] in ("queued", "running"):
                time.sleep(0.1)
            if first.status_code == 202:  # caught while it ran
                assert first.json()["cancel_requested"] and doc["state"] == "cancelled" and doc["exit_code"] == 130
            else:  # it had already ended
                assert first.status_code == 409
            again = c.delete(f"/api/ingest/jobs/{jid}", headers=h)
            assert again.status_code == 409 and "has ended" in again.json()["detail"]
            assert c.delete(f"/api/ingest/jobs/{jid}", headers={**h, "Origin": "https://evil.example"}).status_code == 403


def test_serve_on_ipv6_loopback_prints_a_valid_url_and_is_used(setup, tiny_bundle):
    """`serve --host ::1` printed `http://::1:PORT/`, not a URL (RFC 3986 brackets an IPv6
    address); the printed address opens, and the CLI on the same index still uses the service."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    _src, _scenes, idx = setup
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                             str(tiny_bundle.path), "--host", "::1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        assert line.rstrip().endswith(f" on http://[::1]:{port}/"), line
        url = line.rstrip().rsplit(" on ", 1)[1]
        for _ in range(200):
            try:
                assert urllib.request.urlopen(url, timeout=5).status == 200
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"{url} does not answer")
        r = CliRunner().invoke(main, ["info", "--index", str(idx)])
        assert r.exit_code == 0 and "sending the info" in r.stderr, r.output
    finally:
        _stop(proc)


def test_a_link_swapped_in_after_the_name_was_checked_reads_nothing_outside(tmp_path, monkeypatch):
    """Security trial: the ingest-root check resolved the name, then GDAL opened it by name
    again, so a folder under a root swapped for a link in between was followed out of the root.
    Now the file opened once is the one checked and the one GDAL reads.  The race is made
    certain by resolving names as they were before the swap."""
    import os

    import rasterio

    from rsir_stac.tiling.sources import open_dataset, restrict_to_geotiff

    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    make_geotiff(outside / "sub" / "x.tif", width=32, height=32, seed=3)
    (root / "ok").mkdir(parents=True)
    make_geotiff(root / "ok" / "y.tif", width=32, height=32, seed=4)
    (root / "sub").symlink_to(outside / "sub", target_is_directory=True)  # the swap: a folder became a link
    restrict_to_geotiff([root])
    try:
        with open_dataset(str(root / "ok" / "y.tif")) as ds:  # an ordinary file under the root reads
            assert ds.driver == "GTiff" and ds.read().shape == (3, 32, 32)
        monkeypatch.setattr(os.path, "realpath", os.path.abspath)  # names resolved before the swap
        with pytest.raises(rasterio.errors.RasterioIOError, match="out of the service's ingest roots"):
            open_dataset(str(root / "sub" / "x.tif"))
    finally:
        monkeypatch.undo()
        restrict_to_geotiff(())


def test_classify_goes_through_a_running_serve_and_writes_what_it_writes_alone(setup, tiny_bundle, tmp_path):
    """Analyst trial: with the map page open, `classify` was refused ('other commands need it
    stopped'), though the service finds all tiles itself.  It now sends the labels to the service's
    /api/classify (as search is sent) and writes the same rows a classify without the service writes."""
    import geopandas as gpd

    from rsir_stac.labels import LabelSet, make_labels, write_labels
    from rsir_stac.search import Index

    src, scenes, idx = setup
    with Index.open(str(idx), model=tiny_bundle) as ix:
        pts = sorted(ix.store.iter_points(with_vectors=False), key=lambda p: p.id)
    labels = LabelSet(make_labels(pts[:2], "positive", model_id=tiny_bundle.model_id).labels
                      + make_labels(pts[2:3], "negative", model_id=tiny_bundle.model_id).labels, tiny_bundle.model_id)
    write_labels(labels, tmp_path / "labels.geojson")
    args = ["classify", "--labels", str(tmp_path / "labels.geojson"), "--index", str(idx), "--model",
            str(tiny_bundle.path), "--threshold", "0", "--holdout", "0"]
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "alone.geojson")])
    assert r.exit_code == 0, r.output
    import re

    def line(out):  # the summary line, without its timing
        return re.sub(r" in [0-9.]+ s;", ";", out.strip().splitlines()[-1]).replace("served.geojson", "alone.geojson")

    alone_line = line(r.stdout)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rsir_stac.cli", "serve", "--index", str(idx), "--model",
                             str(tiny_bundle.path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        _wait_served(proc, idx, port)
        r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "served.geojson")])
        assert r.exit_code == 0, r.output
        assert "sending the classify" in r.stderr and "scored 4 tiles" in r.stdout, r.output
        assert line(r.stdout) == alone_line   # the same summary line, holdout caveats included
        r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "served.csv"), "--dissolve", "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["rows"] >= 1, r.output
        # options named as typed, as without a service (re-check of trial 37), not as the request's fields
        r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "bad.geojson"), "--holdout", "1"])
        assert r.exit_code == 2 and "error: --holdout 1 (API: holdout) must be a fraction" in r.stderr, r.output
        r = CliRunner().invoke(main, ["export", "--index", str(idx), "--out", str(tmp_path / "all.parquet")])
        assert r.exit_code == 1 and "need it stopped" in r.output, r.output  # no API for a whole-index export
    finally:
        _stop(proc)
    import numpy as np

    alone, served = (gpd.read_file(tmp_path / f) for f in ("alone.geojson", "served.geojson"))
    assert len(alone) == len(served) == 3  # the tile labelled negative is never a hit
    assert list(alone.columns) == list(served.columns)
    assert list(alone["id"]) == list(served["id"])
    assert np.allclose(alone["probability"], served["probability"])
    assert list(alone["label"].fillna("")) == list(served["label"].fillna(""))


def test_a_sidecar_the_ingest_roots_do_not_read_is_named(tmp_path, caplog):
    """Re-check N7: a job read a GeoTIFF under the roots without its .msk / .aux.xml (a hardening
    choice: a sidecar may name files outside them), so it indexed tiles a command-line ingest
    masks, and said nothing."""
    import logging

    from rsir_stac.tiling.sources import open_dataset, restrict_to_geotiff

    root = tmp_path / "root"
    root.mkdir()
    tif = make_geotiff(root / "a.tif", width=32, height=32, seed=2)
    (root / "a.tif.aux.xml").write_text("<PAMDataset></PAMDataset>")
    restrict_to_geotiff([root])
    try:
        with caplog.at_level(logging.WARNING, logger="rsir_stac.tiling.sources"):
            with open_dataset(str(tif)) as ds:
                assert ds.driver == "GTiff"
        assert "a.tif.aux.xml beside it, which the service does not read" in caplog.text, caplog.text
    finally:
        restrict_to_geotiff(())
