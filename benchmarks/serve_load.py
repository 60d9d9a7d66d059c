"""Load test of ``rsir-stac serve``: searches by point id against a 100,000-point Edge index.

1. Builds an embedded (Qdrant Edge) index directly through the store API:
   random unit vectors at the model's stored dimension with realistic tile
   payloads (100 scenes of 40 x 25 tiles, 256 px at 0.3 m, in UTM 15N,
   three collections, acquisition dates over three years); no embedding.
   The model is ``--model`` if given, else the shipped bundle
   (``rsir_stac/models/default``) if present, else a tiny bundle trained on
   the spot (a few steps on synthetic textures, 20-d, reducer none).
2. Starts the service (:func:`rsir_stac.serve.run`) with uvicorn in a
   subprocess on a free port.
3. Runs ``GET /api/search?point_id=<random id>&k=10`` for ``--duration``
   seconds with ``wrk`` (a Lua script picks random ids) when it is installed,
   else with a Python asyncio + httpx client holding ``--connections``
   concurrent connections.

Prints requests/s and p50/p99 latency, ending with one JSON line::

    {"rps": ..., "p50_ms": ..., "p99_ms": ..., "points": 100000, "tool": "wrk", ...}

Usage::

    python benchmarks/serve_load.py [--points 100000] [--duration 20] [--connections 16]
                                    [--tool auto|wrk|python] [--model BUNDLE] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TILE, GSD = 256, 0.3
COLS, ROWS = 40, 25  # tiles per scene
COLLECTIONS = ("naip-houston", "maxar-open-data", "planet-disaster")

WRK_LUA = r"""
local ids = {}
local counter = 0
init = function(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  counter = 0
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003))
end
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/search?point_id=" .. id .. "&k=" .. (os.getenv("RSIR_K") or "10"))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RSIR_JSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p90_us\": %d, " ..
    "\"p99_us\": %d, \"max_us\": %d, \"non2xx\": %d, \"socket_errors\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


# --------------------------------------------------------------------------- model


def resolve_bundle(model: str | None, workdir: Path):
    from rsir_stac.model.bundle import default_bundle_path, load_bundle

    if model:
        return load_bundle(model)
    if (default_bundle_path() / "model.json").is_file():
        return load_bundle(None)
    return tiny_bundle(workdir / "tiny")


def tiny_bundle(root: Path):
    """A real bundle from a few training steps on synthetic textures (no shipped model yet)."""
    from PIL import Image

    from rsir_stac.model.train import TrainConfig, train

    rng = np.random.default_rng(0)
    size = 48
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = [(yy // 4) % 2, (xx // 4) % 2, ((yy // 6) + (xx // 6)) % 2]
    for c, pat in enumerate(patterns):
        d = root / "tiles" / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            img = pat[..., None] * rng.uniform(60, 200, 3) + rng.normal(0, 12, (size, size, 3)) + 30
            Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(d / f"img{i}.png")
    cfg = TrainConfig(str(root / "tiles"), str(root / "run"), input_size=64, tile_size=64, embedding_dim=20,
                      epochs=1, p=3, k=2, max_steps_per_epoch=2, val_fraction=0.0, reducer="none")
    return train(cfg)


# --------------------------------------------------------------------------- index


def make_points(n: int, dim: int, model_id: str, seed: int = 0):
    """``n`` points: random unit vectors and tile payloads shaped like ``ingest.tile_payload``."""
    from pyproj import Transformer

    from rsir_stac.store import Point

    rng = np.random.default_rng(seed)
    to_ll = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True)
    per_scene = COLS * ROWS
    n_scenes = math.ceil(n / per_scene)
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    side = TILE * GSD
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = []
    for s in range(n_scenes):
        ox, oy = 200_000 + rng.uniform(0, 400_000), 3_200_000 + rng.uniform(0, 300_000)
        item = f"scene-{s:04d}"
        coll = COLLECTIONS[s % len(COLLECTIONS)]
        when = t0 + timedelta(days=float(rng.uniform(0, 3 * 365)))
        dt_text = when.isoformat().replace("+00:00", "Z")
        r, c = np.divmod(np.arange(per_scene), COLS)
        x0, y0 = ox + c * side, oy - r * side
        cx = np.stack([x0, x0 + side, x0 + side, x0])
        cy = np.stack([y0, y0, y0 - side, y0 - side])
        lon, lat = to_ll.transform(cx.ravel(), cy.ravel())
        lon, lat = np.asarray(lon).reshape(4, -1), np.asarray(lat).reshape(4, -1)
        clon, clat = to_ll.transform(x0 + side / 2, y0 - side / 2)
        for j in range(per_scene):
            i = s * per_scene + j
            if i >= n:
                break
            col_off, row_off = int(c[j]) * TILE, int(r[j]) * TILE
            win = {"col_off": col_off, "row_off": row_off, "width": TILE, "height": TILE}
            payload = {
                "item_id": item, "collection": coll, "asset": "visual",
                "href": f"/data/scenes/{item}.tif", "window": win, "grid": dict(win), "crs": "EPSG:32615",
                "bbox": [float(lon[:, j].min()), float(lat[:, j].min()), float(lon[:, j].max()), float(lat[:, j].max())],
                "location": {"lon": float(clon[j]), "lat": float(clat[j])},
                "corners": [{"lon": float(lon[k, j]), "lat": float(lat[k, j])} for k in range(4)],
                "datetime": dt_text, "datetime_epoch": when.timestamp(), "gsd": GSD,
                "tiling": {"tile_size": TILE, "stride": TILE, "edge": "shift", "gsd": GSD, "bands": [1, 2, 3]},
                "model_id": model_id,
            }
            pid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            points.append(Point(id=pid, vector=vectors[i], payload=payload))
    return points


def build_index(path: Path, bundle, n: int, batch: int = 2000) -> tuple[list[str], float]:
    from rsir_stac.store import open_store

    t0 = time.perf_counter()
    points = make_points(n, bundle.dim, bundle.model_id)
    with open_store(str(path)) as store:
        store.ensure_collection(bundle.dim, bundle.model_id)
        for i in range(0, len(points), batch):
            store.upsert(points[i:i + batch])
        store.flush()
        store.optimize()
        count = store.count()
    assert count == n, f"index holds {count} points, expected {n}"
    return [p.id for p in points], time.perf_counter() - t0


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, model_path: Path, port: int, log: Path) -> subprocess.Popen:
    code = ("import logging; logging.basicConfig(level=logging.WARNING); from rsir_stac.serve import run; "
            f"run(index={str(index)!r}, model={str(model_path)!r}, host='127.0.0.1', port={port}, "
            "log_level='warning')")
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(REPO), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> dict:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{base}/api/info", timeout=60)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- load


def run_wrk(base: str, ids_file: Path, duration: int, connections: int, threads: int, k: int) -> dict:
    script = ids_file.with_suffix(".lua")
    script.write_text(WRK_LUA)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script),
           base, "--", str(ids_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RSIR_K": str(k)},
                         timeout=duration + 60, check=False)
    print(out.stdout.strip())
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RSIR_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    doc = json.loads(line[len("RSIR_JSON "):])
    secs = doc["duration_us"] / 1e6
    return {"requests": doc["requests"], "rps": doc["requests"] / secs, "p50_ms": doc["p50_us"] / 1000,
            "p90_ms": doc["p90_us"] / 1000, "p99_ms": doc["p99_us"] / 1000, "max_ms": doc["max_us"] / 1000,
            "errors": doc["non2xx"] + doc["socket_errors"], "tool": "wrk"}


def run_python(base: str, ids: list[str], duration: int, connections: int, k: int) -> dict:
    import httpx

    async def main() -> dict:
        rng = np.random.default_rng(1)
        lat: list[float] = []
        errors = 0
        stop = time.perf_counter() + duration
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop:
                    pid = ids[int(rng.integers(len(ids)))]
                    t0 = time.perf_counter()
                    try:
                        r = await client.get("/api/search", params={"point_id": pid, "k": k})
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    lat.append(time.perf_counter() - t0)
                    errors += not ok

            t_start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            secs = time.perf_counter() - t_start
        a = np.asarray(lat) * 1000
        return {"requests": len(a), "rps": len(a) / secs, "p50_ms": float(np.percentile(a, 50)),
                "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
                "max_ms": float(a.max()), "errors": errors, "tool": "python-httpx"}

    return asyncio.run(main())


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=20, help="Seconds of load.")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads.")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tool", default="auto", choices=["auto", "wrk", "python"])
    ap.add_argument("--model", help="Model bundle (default: shipped, else a tiny one trained here).")
    ap.add_argument("--workdir", help="Keep the index here (default: a temporary folder, removed).")
    args = ap.parse_args(argv)

    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="rsir-serve-load-")
        work = Path(tmp.name)
    proc = None
    try:
        bundle = resolve_bundle(args.model, work)
        print(f"model {bundle.model_id} ({bundle.dim}-d) at {bundle.path}", flush=True)
        index = work / "index"
        if index.exists():
            shutil.rmtree(index)
        ids, build_s = build_index(index, bundle, args.points)
        print(f"built a {len(ids)}-point Edge index in {build_s:.1f} s", flush=True)
        ids_file = work / "ids.txt"
        sample = np.random.default_rng(2).choice(len(ids), size=min(len(ids), 20_000), replace=False)
        ids_file.write_text("\n".join(ids[i] for i in sample) + "\n")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = work / "server.log"
        t0 = time.perf_counter()
        proc = start_server(index, Path(bundle.path), port, log)
        info = wait_ready(base, proc, log)
        print(f"server up in {time.perf_counter() - t0:.1f} s: {info['count']} points, {info['dim']}-d", flush=True)
        assert info["count"] == args.points

        import httpx

        for pid in ids[:20]:  # warm-up and a correctness check
            r = httpx.get(f"{base}/api/search", params={"point_id": pid, "k": args.k}, timeout=30)
            assert r.status_code == 200 and len(r.json()["features"]) == args.k, r.text[:300]

        use_wrk = args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk"))
        print(f"load: {args.duration} s, {args.connections} connections, "
              f"{'wrk' if use_wrk else 'python asyncio+httpx'} ...", flush=True)
        if use_wrk:
            res = run_wrk(base, ids_file, args.duration, args.connections, args.threads, args.k)
        else:
            res = run_python(base, ids, args.duration, args.connections, args.k)
        print(f"{res['requests']} requests, {res['rps']:.1f} req/s, p50 {res['p50_ms']:.2f} ms, "
              f"p90 {res['p90_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.1f} ms, "
              f"errors {res['errors']}")
        summary = {"rps": round(res["rps"], 1), "p50_ms": round(res["p50_ms"], 2), "p99_ms": round(res["p99_ms"], 2),
                   "points": args.points, "tool": res["tool"], "p90_ms": round(res["p90_ms"], 2),
                   "max_ms": round(res["max_ms"], 1), "requests": res["requests"], "errors": res["errors"],
                   "connections": args.connections, "duration_s": args.duration, "k": args.k, "dim": bundle.dim,
                   "model_id": bundle.model_id, "build_s": round(build_s, 1), "cpus": os.cpu_count()}
        print(json.dumps(summary))
        return 0 if res["errors"] == 0 else 1
    finally:
        if proc is not None:
            stop_server(proc)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
