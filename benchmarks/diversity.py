"""Distinct scenes in the top 12: what the diversity options do on a demo-like index.

Every scene (STAC item) with at least 4 tiles gives one query: its middle
stored tile (by scroll order).  For each configuration the script searches the
top 12 (the query tile itself excluded) and reports the mean and minimum
number of distinct scenes, the mean number of hits from the query's own
scene, the hits' mean distance, and how many hits lie beyond 1.5 times the
plain ranking's 12th distance (tiles a diversity rule promoted from far down).  Build the index first, e.g.::

    rsir-stac ingest ../shared/data/geotiff/*.tif --index /tmp/demo-index
    python benchmarks/diversity.py --index /tmp/demo-index

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json

CONFIGS = {
    "plain (no cap)": {"per_item": None},
    "default (soft cap 3 per scene)": {},
    "per_item=2": {"per_item": 2},
    "mmr=0.5 (no cap)": {"mmr": 0.5, "per_item": None},
    "mmr=0.5 + default cap": {"mmr": 0.5},
    "exclude_within=500 m (no cap)": {"exclude_within_m": 500.0, "per_item": None},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("-k", type=int, default=12)
    args = ap.parse_args()

    from rsir_stac.search import Index

    with Index.open(args.index) as idx:
        by_item = collections.defaultdict(list)
        for p in idx.store.iter_points(with_vectors=False):
            by_item[p.payload["item_id"]].append(p.id)
        queries = [(item, ids[len(ids) // 2]) for item, ids in sorted(by_item.items()) if len(ids) >= 4]
        out = {"points": sum(map(len, by_item.values())), "scenes": len(by_item), "queries": len(queries), "k": args.k}
        # the plain ranking's k-th distance per query: a hit farther than 1.5x it is one a
        # diversity rule promoted from far down the ranking
        kth = {pid: idx.search(point_id=pid, k=args.k, per_item=None).hits[-1].score for _, pid in queries}
        for name, kw in CONFIGS.items():
            distinct, own, dist, far = [], [], [], []
            for item, pid in queries:
                hits = idx.search(point_id=pid, k=args.k, **kw).hits
                distinct.append(len({h.payload["item_id"] for h in hits}))
                own.append(sum(h.payload["item_id"] == item for h in hits))
                dist.append(sum(h.score for h in hits) / len(hits))
                far.append(sum(h.score > 1.5 * kth[pid] for h in hits))
            out[name] = {"distinct_scenes_mean": round(sum(distinct) / len(distinct), 2), "distinct_scenes_min": min(distinct),
                         "own_scene_hits_mean": round(sum(own) / len(own), 2),
                         "mean_distance": round(sum(dist) / len(dist), 4),
                         "far_hits_mean": round(sum(far) / len(far), 2), "far_hits_max": max(far)}
            print(f"{name:34} distinct scenes in top {args.k}: mean {out[name]['distinct_scenes_mean']:5.2f} "
                  f"min {out[name]['distinct_scenes_min']:2d}; hits from the query's scene {out[name]['own_scene_hits_mean']:.2f}; "
                  f"mean distance {out[name]['mean_distance']:.3f}; hits beyond 1.5x the plain k-th distance: "
                  f"mean {out[name]['far_hits_mean']:.2f}, max {out[name]['far_hits_max']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
