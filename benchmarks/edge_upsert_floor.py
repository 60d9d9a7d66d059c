"""How fast can Qdrant Edge take points through its Python binding at all?

Each variant writes ``--points`` points (``--dim``-d, 512 per update, as
``EdgeStore.upsert`` does) into a fresh shard with our payload indexes and
reports points/s and µs per point, split into building the binding's
``Point`` objects (Python → Rust conversion) and ``shard.update``:

* ``no_payload``: vector and id only,
* ``location_only``: plus the ``location`` geo point (the one field a geo
  filter needs),
* ``stored_layout``: the five stored values of a tile as written today
  (location, item_id, collection, datetime_epoch, packed), prepacked,
* ``store_upsert``: ``EdgeStore.upsert`` on full tile payloads: our checks
  and packing plus the above.

    python benchmarks/edge_upsert_floor.py [--points 100000]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from query import make_data, payload  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=32)
    args = ap.parse_args()

    import qdrant_edge as q

    from rsir_stac.store import Point, open_store
    from rsir_stac.store.base import pack_payload

    n, dim = args.points, args.dim
    vec, lon, lat, scene, epoch = make_data(n, dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    payloads = [payload(i, lon[i], lat[i], scene[i], epoch[i]) for i in range(n)]
    stored = [pack_payload(p) for p in payloads]
    vectors = vec.tolist()
    work = tempfile.TemporaryDirectory()

    def fresh(name: str):
        store = open_store(str(Path(work.name) / name))
        store.ensure_collection(dim, "bench")
        return store

    def engine(name: str, make) -> dict:
        store = fresh(name)
        build = update = 0.0
        for s in range(0, n, 512):
            t = time.perf_counter()
            pts = [make(i) for i in range(s, min(n, s + 512))]
            t1 = time.perf_counter()
            store._shard.update(q.UpdateOperation.upsert_points(pts))
            update += time.perf_counter() - t1
            build += t1 - t
        t = time.perf_counter()
        store.flush()
        update += time.perf_counter() - t
        store.close()
        return {"points_s": round(n / (build + update)), "build_us": round(build / n * 1e6, 1),
                "update_us": round(update / n * 1e6, 1)}

    out = {
        "no_payload": engine("a", lambda i: q.Point(id=ids[i], vector=vectors[i])),
        "location_only": engine("b", lambda i: q.Point(id=ids[i], vector=vectors[i],
                                                       payload={"location": stored[i]["location"]})),
        "stored_layout": engine("c", lambda i: q.Point(id=ids[i], vector=vectors[i], payload=stored[i])),
    }
    store = fresh("d")
    points = [Point(ids[i], vec[i], payloads[i]) for i in range(n)]
    t = time.perf_counter()
    for s in range(0, n, 5000):
        store.upsert(points[s:s + 5000])
    store.flush()
    dt = time.perf_counter() - t
    store.close()
    out["store_upsert"] = {"points_s": round(n / dt), "us": round(dt / n * 1e6, 1)}
    out.update(points=n, dim=dim)
    work.cleanup()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
