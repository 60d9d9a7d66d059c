"""A/B of Qdrant Edge storage layout for geo-filtered search latency.

Three shards of the same ``--points`` (default 1,000,000) clustered 32-d
points over 40 scenes (``query.make_data``: 25,000 points each at 1M), with
the indexed payload fields only, built and optimised one after the other:

* ``interleaved``: points written in random scene order, ``item_id`` a plain
  keyword index (the layout before ``item_id`` became a tenant index);
* ``by_scene``: the same points (same ids) written scene after scene, as
  ``ingest`` writes (the optimiser orders points by id, so this alone does not
  group them);
* ``tenant``: random scene order again, ``item_id`` a tenant keyword index (what
  :class:`rsir_stac.store.edge.EdgeStore` creates).

Then p50 of engine-level bbox (0.16 deg) and radius (6 km) top-26 queries,
all three shards open in one process and queried in alternation.

    python benchmarks/edge_layout_ab.py [--points 1000000]

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


def build(path: Path, vec, lon, lat, scene, epoch, order, tenant: bool) -> float:
    import qdrant_edge as q

    sh = q.EdgeShard.create(str(path), q.EdgeConfig(vectors=q.EdgeVectorParams(size=vec.shape[1],
                                                                               distance=q.Distance.Euclid)))
    item = q.KeywordIndexParams(is_tenant=True) if tenant else q.PayloadSchemaType.Keyword
    for field, kind in (("item_id", item), ("location", q.PayloadSchemaType.Geo),
                        ("datetime_epoch", q.PayloadSchemaType.Float)):
        sh.update(q.UpdateOperation.create_field_index(field, kind))
    vl = vec.tolist()
    for s in range(0, len(order), 1000):
        sh.update(q.UpdateOperation.upsert_points([
            q.Point(id=int(i) + 1, vector=vl[i], payload={
                "item_id": f"scene-{scene[i]:03d}", "location": {"lon": float(lon[i]), "lat": float(lat[i])},
                "datetime_epoch": float(epoch[i])})
            for i in order[s:s + 1000]]))
    t = time.time()
    sh.optimize()
    sh.flush()
    sh.close()
    return time.time() - t


def main() -> None:
    import qdrant_edge as q

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    n, dim = args.points, 32
    vec, lon, lat, scene, epoch = make_data(n, dim)  # the data of query.py
    interleaved, by_scene = np.arange(n), np.argsort(scene, kind="stable")

    work = Path(tempfile.mkdtemp(prefix="rsir-layout-"))
    layouts = {"interleaved": (interleaved, False), "by_scene": (by_scene, False), "tenant": (interleaved, True)}
    optimize_s, shards = {}, {}
    try:
        for name, (order, tenant) in layouts.items():
            optimize_s[name] = round(build(work / name, vec, lon, lat, scene, epoch, order, tenant), 1)
            shards[name] = q.EdgeShard.load(str(work / name))
        qi = np.random.default_rng(1).integers(0, n, args.queries)

        def bbox(i):
            r = 0.08
            return q.Filter(must=[q.FieldCondition(key="location", geo_bounding_box=q.GeoBoundingBox(
                top_left=q.GeoPoint(lon=lon[i] - r, lat=lat[i] + r),
                bottom_right=q.GeoPoint(lon=lon[i] + r, lat=lat[i] - r)))])

        def radius(i):
            return q.Filter(must=[q.FieldCondition(key="location", geo_radius=q.GeoRadius(
                center=q.GeoPoint(lon=lon[i], lat=lat[i]), radius=6000.0))])

        times: dict[str, dict[str, list[float]]] = {k: {"bbox": [], "radius": []} for k in shards}
        for _ in range(2):  # alternate layouts so drift in machine speed hits all alike
            for kind, make in (("bbox", bbox), ("radius", radius)):
                for name, sh in shards.items():
                    for i in qi:
                        req = q.QueryRequest(limit=26, query=q.Query.Nearest(vec[i].tolist()), filter=make(i),
                                             with_payload=False, with_vector=False)
                        t = time.perf_counter()
                        sh.query(req)
                        times[name][kind].append(time.perf_counter() - t)
        p50 = {name: {kind: round(1000 * float(np.median(v)), 2) for kind, v in kinds.items()}
               for name, kinds in times.items()}
        for sh in shards.values():
            sh.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"points": n, "queries": args.queries, "p50_ms": p50, "optimize_s": optimize_s}))


if __name__ == "__main__":
    main()
