"""The fewest bytes per point Qdrant Edge can hold a geo-filterable vector in (issue 18).

Issue 18 asks for <= 250 bytes per point at 1M with the full payload.  This builds
raw engine shards (no rsir-stac code on the write or search path, integer ids) of
the same synthetic points (``query.make_data``), each layout leaner than the last,
and reports allocated bytes per point on disk, split into the segment's parts, with
plain and bbox recall@10 against an exact numpy ranking of the float32 vectors:

* ``floor``: what ``query.py`` calls the floor (float32, HNSW m=16, ``location``
  geo index and the tenant ``item_id`` keyword index, WAL on);
* ``geo``: ``location`` and its geo index only;
* ``geo_lean``: ``geo`` with the most compact vector storage the engine offers
  (``--datatype``, default ``Turbo4``: 4 bits per dimension), HNSW m=8 and no WAL;
* ``float_lean``: ``geo_lean`` with the point as two float-indexed fields ``lon``
  and ``lat`` instead of a geo point (a bbox is then two ranges);
* ``bare``: ``geo_lean`` with no payload at all (vectors, graph and ids only: no
  filter is possible, the lower bound of any layout).

    python benchmarks/edge_floor_bytes.py [--points 200000] [--dim 32] [--variants floor,geo,...]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from query import make_data  # noqa: E402
from query_engines import allocated_bytes  # noqa: E402

VARIANTS = ("floor", "geo", "geo_lean", "float_lean", "bare")


def config(q, name: str, dim: int, datatype: str):
    """The shard config of a variant: lean ones get ``datatype`` vectors, m=8 and no WAL."""
    lean = name not in ("floor", "geo")
    vp = q.EdgeVectorParams(size=dim, distance=q.Distance.Euclid,
                            **({"datatype": getattr(q.VectorStorageDatatype, datatype)} if lean else {}))
    hnsw = q.HnswIndexConfig(m=8 if lean else 16, ef_construct=100, full_scan_threshold=10_000)
    # index every segment whatever its vector bytes: compact datatypes would stay under
    # the default indexing threshold (KB of vectors) and never get a graph
    opt = q.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1)
    return q.EdgeConfig(vectors=vp, hnsw_config=hnsw, optimizers=opt, wal_enabled=not lean)


def payload_of(name: str, i: int, lon, lat, scene) -> dict | None:
    if name == "bare":
        return None
    if name == "float_lean":
        return {"lon": float(lon[i]), "lat": float(lat[i])}
    p = {"location": {"lon": float(lon[i]), "lat": float(lat[i])}}
    if name == "floor":
        p["item_id"] = f"scene-{int(scene[i]):03d}"
    return p


def bbox_filter(q, name: str, box):
    w, s, e, n = box
    if name == "float_lean":
        return q.Filter(must=[q.FieldCondition(key="lon", range=q.RangeFloat(gte=w, lte=e)),
                              q.FieldCondition(key="lat", range=q.RangeFloat(gte=s, lte=n))])
    return q.Filter(must=[q.FieldCondition(key="location", geo_bounding_box=q.GeoBoundingBox(
        top_left=q.GeoPoint(lon=w, lat=n), bottom_right=q.GeoPoint(lon=e, lat=s)))])


def parts_of(shard: Path) -> dict:
    """Allocated bytes by part: WAL, then each part of every segment summed over segments."""
    out = {"wal": allocated_bytes(shard / "wal") if (shard / "wal").exists() else 0}
    for seg in (shard / "segments").glob("*"):
        if not seg.is_dir():
            continue
        for part in seg.iterdir():
            if part.name == "payload_index" and part.is_dir():
                for idx in part.iterdir():
                    key = "payload_index/" + idx.name.split("-", 1)[-1]
                    out[key] = out.get(key, 0) + allocated_bytes(idx)
            else:
                out[part.name] = out.get(part.name, 0) + allocated_bytes(part)
    out["total"] = allocated_bytes(shard)
    return out


def build(q, path: Path, name: str, vec, lon, lat, scene, datatype: str):
    sh = q.EdgeShard.create(str(path), config(q, name, vec.shape[1], datatype))
    if name in ("floor", "geo", "geo_lean"):
        sh.update(q.UpdateOperation.create_field_index("location", q.PayloadSchemaType.Geo))
    if name == "floor":
        sh.update(q.UpdateOperation.create_field_index("item_id", q.KeywordIndexParams(is_tenant=True)))
    if name == "float_lean":
        for key in ("lon", "lat"):
            sh.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Float))
    for s in range(0, len(vec), 1000):
        e = min(len(vec), s + 1000)
        rows = vec[s:e].tolist()
        sh.update(q.UpdateOperation.upsert_points([
            q.Point(id=i + 1, vector=rows[i - s], payload=payload_of(name, i, lon, lat, scene)) for i in range(s, e)]))
    sh.optimize()
    sh.flush()
    return sh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--datatype", default="Turbo4", help="vector storage of the lean variants (Turbo4, Turbo8, Uint8, Float16)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--workdir", default=None, help="where the shards are built (default: a temporary folder)")
    args = ap.parse_args()

    import qdrant_edge as q

    n, dim = args.points, args.dim
    vec, lon, lat, scene, _ = make_data(n, dim)
    rng = np.random.default_rng(1)
    qi = rng.integers(0, n, args.queries)
    queries = vec[qi] + 0.05 * rng.normal(size=(args.queries, dim)).astype(np.float32)
    boxes = [(lon[i] - 0.08, lat[i] - 0.08, lon[i] + 0.08, lat[i] + 0.08) for i in qi]

    def truth(v, box=None):
        d = ((vec - v) ** 2).sum(1)
        if box is not None:
            w, s, e, n_ = box
            d = np.where((lon >= w) & (lon <= e) & (lat >= s) & (lat <= n_), d, np.inf)
        top = np.argsort(d)[:10]
        return {int(i) + 1 for i in top if np.isfinite(d[i])}

    want_plain = [truth(v) for v in queries]
    want_box = [truth(v, b) for v, b in zip(queries, boxes)]
    root = Path(args.workdir or tempfile.mkdtemp(prefix="rsir-floor-"))
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"variant {name!r} is not one of {', '.join(VARIANTS)}")
        path = root / name
        shutil.rmtree(path, ignore_errors=True)
        t = time.perf_counter()
        sh = build(q, path, name, vec, lon, lat, scene, args.datatype)
        row = {"build_s": round(time.perf_counter() - t, 1)}
        parts = parts_of(path)
        row["bytes_per_point"] = round(parts.pop("total") / n, 1)
        row["parts"] = {k: round(v / n, 1) for k, v in sorted(parts.items()) if v}
        params = q.SearchParams(hnsw_ef=200)
        for kind, want in (("plain", want_plain), ("bbox", want_box)):
            if kind == "bbox" and name == "bare":
                continue
            rec, ms = [], []
            for j, v in enumerate(queries):
                flt = bbox_filter(q, name, boxes[j]) if kind == "bbox" else None
                t = time.perf_counter()
                got = sh.query(q.QueryRequest(limit=10, query=q.Query.Nearest(v.tolist()), filter=flt,
                                              with_payload=False, with_vector=False, params=params))
                ms.append(time.perf_counter() - t)
                rec.append(len({int(r.id) for r in got} & want[j]) / max(1, len(want[j])))
            row[kind] = {"p50_ms": round(1000 * float(np.median(ms)), 3), "recall@10": round(float(np.mean(rec)), 4)}
        sh.close()
        if args.workdir is None:
            shutil.rmtree(path, ignore_errors=True)
        out[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"points": n, "dim": dim, "datatype": args.datatype, "variants": out}))


if __name__ == "__main__":
    main()
