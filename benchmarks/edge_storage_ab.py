"""Bytes per point of the embedded index against engine storage options (issue 18).

Builds the product index (``EdgeStore``: our payload indexes, packed payload,
digest ledger) of ``--points`` synthetic tiles (``query.make_data`` and
``query.payload``) once per variant, the shard config patched as in
``edge_hnsw_ab.py``, then reports allocated bytes per point (WAL, segments by
part, digests), upsert and optimize time, plain, bbox, date-range and collection p50 and recall@10
against the same shard's exact search, and the process's peak RSS so far:

* ``default``: what ``EdgeStore`` creates (float32 vectors, HNSW m=16);
* ``int8``: + scalar int8 quantisation (in RAM), searched with rescoring;
* ``m8``: HNSW m=8 (half the graph links);
* ``float16``: vectors stored as float16 (reads back rounded vectors);
* ``no_hnsw``: no graph (m=0): what optimize costs without it;
* ``payload_m0``: no extra payload-aware graph links (``payload_m=0``): the
  engine otherwise builds a sub-graph for every indexed payload value or range
  block larger than ``full_scan_threshold``;
* ``ef64``: ``ef_construct=64`` instead of 100 (a cheaper graph build);
* ``item_fields_out``: the item-level fields (href, asset, crs, gsd, model_id,
  datetime) left out of each tile's payload, as if kept once per scene.

    python benchmarks/edge_storage_ab.py [--points 100000] [--variants default,int8,...]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from query import index_bytes, make_data, payload, segment_bytes  # noqa: E402

ITEM_FIELDS = ("href", "asset", "crs", "gsd", "model_id", "datetime")


def query_filter(kind: str, lon: float, lat: float):
    """The filter of one query kind: none, a ~0.16° box around the query's tile, a
    date range holding ~20 % of the points (make_data: uniform 1.5e9-1.7e9 s), or
    one of the three collections (a third of the points)."""
    from rsir_stac.store import SearchFilter

    if kind == "bbox":
        return SearchFilter(bbox=(lon - 0.08, lat - 0.08, lon + 0.08, lat + 0.08))
    if kind == "time":
        return SearchFilter(start=datetime.fromtimestamp(1.5e9, timezone.utc),
                            end=datetime.fromtimestamp(1.54e9, timezone.utc))
    if kind == "collection":
        return SearchFilter(collections=("col-1",))
    return None


def config_for(q, name: str, dim: int):
    vp = {"size": dim, "distance": q.Distance.Euclid}
    kw = {}
    if name == "int8":
        kw["quantization_config"] = q.ScalarQuantizationConfig(type=q.ScalarType.Int8, always_ram=True)
    elif name == "m8":
        kw["hnsw_config"] = q.HnswIndexConfig(m=8, ef_construct=100, full_scan_threshold=10000)
    elif name == "payload_m0":
        kw["hnsw_config"] = q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10000, payload_m=0)
    elif name == "ef64":
        kw["hnsw_config"] = q.HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=10000)
    elif name == "no_hnsw":
        kw["hnsw_config"] = q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000)
    elif name == "float16":
        vp["datatype"] = q.VectorStorageDatatype.Float16
    return q.EdgeConfig(vectors=q.EdgeVectorParams(**vp), **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--variants", default="default,int8,m8,float16,no_hnsw,item_fields_out")
    args = ap.parse_args()

    import qdrant_edge as q

    from rsir_stac.store import Point, SearchFilter, open_store
    from rsir_stac.store.base import HNSW_EF
    from rsir_stac.store.edge import EdgeStore
    from rsir_stac.store.filters import to_edge_filter

    n, dim = args.points, args.dim
    vec, lon, lat, scene, epoch = make_data(n, dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    rng = np.random.default_rng(1)
    qi = rng.integers(0, n, args.queries)
    queries = vec[qi] + 0.05 * rng.normal(size=(args.queries, dim)).astype(np.float32)
    orig = EdgeStore._create_shard
    out = {}
    for name in args.variants.split(","):
        EdgeStore._create_shard = lambda self, cfg, name=name: orig(self, config_for(q, name, dim))
        work = Path(tempfile.mkdtemp(prefix="rsir-storage-"))
        store = open_store(str(work / "edge"))
        store.ensure_collection(dim, "bench")
        t = time.perf_counter()
        for s in range(0, n, 5000):
            pts = []
            for i in range(s, min(n, s + 5000)):
                p = payload(i, lon[i], lat[i], scene[i], epoch[i])
                if name == "item_fields_out":
                    p = {k: v for k, v in p.items() if k not in ITEM_FIELDS}
                pts.append(Point(ids[i], vec[i], p))
            store.upsert(pts)
        store.flush()
        up = time.perf_counter() - t
        t = time.perf_counter()
        store.optimize()
        store.flush()
        opt = time.perf_counter() - t
        parts = index_bytes(work / "edge")
        row = {"upsert_s": round(up, 1), "optimize_s": round(opt, 1),
               "bytes_per_point": round(parts["total"] / n, 1),
               "parts": {k: round(v / n, 1) for k, v in parts.items()},
               "segment": {k: round(v / n, 1) for k, v in segment_bytes(work / "edge").items()}}
        quant = q.QuantizationSearchParams(rescore=True) if name == "int8" else None
        params = q.SearchParams(hnsw_ef=HNSW_EF, quantization=quant)  # the product's search width
        row["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        for kind in ("plain", "bbox", "time", "collection"):
            ms, rec = [], []
            for j, v in enumerate(queries):
                flt = query_filter(kind, lon[qi[j]], lat[qi[j]])
                req = q.QueryRequest(limit=10, query=q.Query.Nearest(v.tolist()), params=params,
                                     filter=to_edge_filter(flt), with_payload=False, with_vector=False)
                t = time.perf_counter()
                got = store._shard.query(req)
                ms.append(time.perf_counter() - t)
                exact = {str(r.id) for r in store._shard.query(q.QueryRequest(
                    limit=10, query=q.Query.Nearest(v.tolist()), params=q.SearchParams(exact=True),
                    filter=to_edge_filter(flt), with_payload=False, with_vector=False))}
                rec.append(len({str(r.id) for r in got} & exact) / max(1, len(exact)))
            row[kind] = {"p50_ms": round(1000 * float(np.median(ms)), 3), "recall@10": round(float(np.mean(rec)), 4)}
        store.close()
        shutil.rmtree(work, ignore_errors=True)
        out[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    EdgeStore._create_shard = orig
    print(json.dumps({"points": n, "dim": dim, "variants": out}))


if __name__ == "__main__":
    main()
