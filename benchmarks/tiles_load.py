"""Web-map tile load test: ``GET /api/imagery/{z}/{x}/{y}.png`` against ``rsir-stac serve`` on loopback.

1. Builds an embedded (Qdrant Edge) index through the store API from the real
   GeoTIFFs in ``../shared/data/geotiff`` (or ``--data``): every 256 px tile
   window of each scene gets the payload ingest writes (``tile_payload``) and a
   random vector (no embedding: the imagery endpoint reads only payloads and
   the rasters).
2. Starts the service in a subprocess (uvicorn, one worker) twice: with the
   rendered-tile cache off (every request renders from the GeoTIFFs) and on.
3. The tile set: every Web Mercator tile meeting a scene's bbox from its
   native zoom - 2 to its native zoom (capped at ``--max-tiles``).
   * cold: each tile once, after only ``/api/scenes`` (first render of a scene
     also computes its stretch);
   * warm render (cache off): each tile again, one request at a time: p50/p99;
   * cached (cache on, tiles already rendered): ``--connections`` concurrent
     clients (Python asyncio + httpx) for ``--duration`` seconds: requests/s, p50/p99.
   * page load to first imagery: a fresh server, ``/api/info`` + ``/api/scenes``
     then the first imagery tile of the opening view (as the page does), wall time.

Prints the figures, ending with one JSON line.  Usage::

    python benchmarks/tiles_load.py [--data DIR] [--duration 10] [--connections 8] [--max-tiles 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from serve_load import free_port, stop_server, wait_ready  # noqa: E402


def build_index(path: Path, data: Path, bundle) -> int:
    import uuid
    import warnings

    from rsir_stac.ingest import tile_payload
    from rsir_stac.stac import iter_scenes
    from rsir_stac.store import open_store
    from rsir_stac.store.base import Point
    from rsir_stac.tiling import SceneReader

    rng = np.random.default_rng(0)
    points = []
    warnings.simplefilter("ignore")
    for scene in iter_scenes([str(p) for p in sorted(data.glob("*.tif"))]):
        try:
            with SceneReader.open(scene.href, tile_size=256) as reader:
                for ref in reader.windows():
                    pay = tile_payload(scene, ref, model_id=bundle.model_id, tile_size=256, stride=256, edge="shift",
                                       bands=reader.bands, gsd_param=None)
                    v = rng.normal(size=bundle.dim).astype(np.float32)
                    points.append(Point(id=str(uuid.uuid4()), vector=v / np.linalg.norm(v), payload=pay))
        except Exception as err:  # noqa: BLE001 - a scene the tiler refuses (odd bands): left out
            print(f"skipped {Path(scene.href).name}: {str(err).splitlines()[0][:100]}")
    with open_store(str(path)) as store:
        store.ensure_collection(bundle.dim, bundle.model_id)
        store.upsert(points)
        store.flush()
    return len(points)


def start(index: Path, model: Path, port: int, log: Path, cache_bytes: int) -> subprocess.Popen:
    code = ("import logging, uvicorn; logging.basicConfig(level=logging.WARNING)\n"
            "from rsir_stac.search import Index\nfrom rsir_stac.serve import create_app\n"
            f"idx = Index.open({str(index)!r}, model={str(model)!r}, read_only=True)\n"
            f"uvicorn.run(create_app(idx, tile_cache_bytes={cache_bytes}), host='127.0.0.1', port={port}, "
            "log_level='warning', workers=1)\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(REPO), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)


def tile_set(scenes: dict, max_tiles: int) -> list[tuple[int, int, int]]:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    out = []
    for f in scenes["features"]:
        p = f["properties"]
        native = p["maxzoom"] - 3
        w, s, e, n = p["bbox"]
        for z in range(max(0, native - 2), native + 1):
            out.extend((t.z, t.x, t.y) for t in tms.tiles(w, s, e, n, [z]))
    out = sorted(set(out))
    random.Random(0).shuffle(out)
    return out[:max_tiles]


def timed_gets(client, base, tiles) -> list[float]:
    ms = []
    for z, x, y in tiles:
        t0 = time.perf_counter()
        r = client.get(f"{base}/api/imagery/{z}/{x}/{y}.png")
        ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (r.status_code, r.text[:200])
    return ms


async def load(base: str, tiles, duration: float, connections: int) -> tuple[int, list[float]]:
    import httpx

    lat: list[float] = []
    stop = time.perf_counter() + duration
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections)) as client:
        async def worker(seed):
            rnd = random.Random(seed)
            while time.perf_counter() < stop:
                z, x, y = rnd.choice(tiles)
                t0 = time.perf_counter()
                r = await client.get(f"{base}/api/imagery/{z}/{x}/{y}.png")
                lat.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
        await asyncio.gather(*(worker(i) for i in range(connections)))
    return len(lat), lat


def pct(v, q):
    return round(float(np.percentile(v, q)), 2) if v else None


def main() -> None:
    import httpx

    from rsir_stac.model.bundle import load_bundle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "geotiff"))
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--max-tiles", type=int, default=300)
    ap.add_argument("--model", default=str(REPO / "rsir_stac" / "models" / "default"))
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"no GeoTIFF folder at {data}; pass --data DIR")
    bundle = load_bundle(args.model)
    work = Path(tempfile.mkdtemp(prefix="rsir-tiles-"))
    n = build_index(work / "idx", data, bundle)
    print(f"index: {n} tiles from {data}")
    res: dict = {"points": n, "connections": args.connections, "duration_s": args.duration}
    with httpx.Client(timeout=120) as client:
        # cache off: cold, then warm renders
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start(work / "idx", Path(args.model), port, work / "s1.log", 0)
        try:
            wait_ready(base, proc, work / "s1.log")
            t0 = time.perf_counter()
            scenes = client.get(f"{base}/api/scenes").json()
            res["scenes_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            tiles = tile_set(scenes, args.max_tiles)
            res["tiles"] = len(tiles)
            cold = timed_gets(client, base, tiles)
            warm = timed_gets(client, base, tiles)
            res.update(cold_p50_ms=pct(cold, 50), cold_p99_ms=pct(cold, 99),
                       render_p50_ms=pct(warm, 50), render_p99_ms=pct(warm, 99))
            print(f"{len(tiles)} tiles; cold p50 {res['cold_p50_ms']} ms, p99 {res['cold_p99_ms']} ms; "
                  f"warm render (no tile cache) p50 {res['render_p50_ms']} ms, p99 {res['render_p99_ms']} ms")
        finally:
            stop_server(proc)
        # cache on: page load to first imagery, then throughput of cached tiles
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start(work / "idx", Path(args.model), port, work / "s2.log", 256 * 1024 * 1024)
        try:
            wait_ready(base, proc, work / "s2.log")
            t0 = time.perf_counter()
            client.get(f"{base}/api/info")
            sc = client.get(f"{base}/api/scenes").json()
            first = tile_set({"features": sc["features"][:1]}, 1)[0]
            client.get(f"{base}/api/imagery/{first[0]}/{first[1]}/{first[2]}.png")
            res["first_imagery_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            timed_gets(client, base, tiles)   # fill the cache
            count, lat = asyncio.run(load(base, tiles, args.duration, args.connections))
            res.update(cached_rps=round(count / args.duration, 1), cached_p50_ms=pct(lat, 50),
                       cached_p99_ms=pct(lat, 99))
            print(f"first imagery after a cold start (info + scenes + 1 tile): {res['first_imagery_ms']} ms")
            print(f"cached: {res['cached_rps']} req/s at {args.connections} connections, "
                  f"p50 {res['cached_p50_ms']} ms, p99 {res['cached_p99_ms']} ms")
        finally:
            stop_server(proc)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
