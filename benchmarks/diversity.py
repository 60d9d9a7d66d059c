"""Distinct scenes in the top 12 for queries from every scene of the demo index."""
import json, sys, collections
from rsir_stac.search import Index
idx = Index.open(sys.argv[1])
pts = list(idx.store.iter_points(with_vectors=False))
by_item = collections.defaultdict(list)
for p in pts: by_item[p.payload["item_id"]].append(p.id)
qs = [ids[len(ids)//2] for it, ids in sorted(by_item.items()) if len(ids) >= 4]
configs = {"plain": {}, "per_item=2": {"per_item": 2}, "per_item=3": {"per_item": 3}, "mmr=0.5": {"mmr": 0.5}, "mmr=0.7": {"mmr":0.7},
           "exclude_within=500m": {"exclude_within_m": 500.0}, "mmr=0.5+per_item=3": {"mmr":0.5,"per_item":3}}
out = {"points": len(pts), "scenes": len(by_item), "queries": len(qs)}
for name, kw in configs.items():
    d = [len({h.payload["item_id"] for h in idx.search(point_id=q, k=12, **kw).hits}) for q in qs]
    same = [sum(h.payload["item_id"] == idx.store.retrieve([q])[0].payload["item_id"] for h in idx.search(point_id=q, k=12, **kw).hits) for q in qs]
    out[name] = {"distinct_scenes_top12_mean": round(sum(d)/len(d), 2), "min": min(d), "same_scene_as_query_mean": round(sum(same)/len(same), 2)}
    print(name, out[name])
print(json.dumps(out))
