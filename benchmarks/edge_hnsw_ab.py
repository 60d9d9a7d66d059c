"""A/B of Qdrant Edge HNSW settings for geo-filtered search latency and recall.

200,000 clustered 32-d points over 8 scenes (so a bbox matches ~16k points,
as in the 1M benchmark); 100 queries per kind; recall@10 against the store's
exact search.  Patches the shard config (EdgeStore._create_shard) per run.

    python benchmarks/edge_hnsw_ab.py
"""
import sys, time, uuid, numpy as np, tempfile
sys.path.insert(0, __import__('os').path.dirname(__file__))
from query import payload
import qdrant_edge as q
from rsir_stac.store import open_store, Point, SearchFilter
from rsir_stac.store.edge import EdgeStore
n, dim = 200000, 32
rng = np.random.default_rng(0)
c = rng.normal(size=(60, dim)); lab = rng.integers(0, 60, n)
vec = c[lab] + 0.45*rng.normal(size=(n, dim)); vec = (vec/np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)
slon, slat = rng.uniform(-120, -75, 8), rng.uniform(30, 47, 8); sc = rng.integers(0, 8, n)
lon = slon[sc] + rng.uniform(0, 0.2, n); lat = slat[sc] + rng.uniform(0, 0.2, n); ep = rng.uniform(1.5e9, 1.7e9, n)
ids = [str(uuid.UUID(int=i+1)) for i in range(n)]
pts = [Point(ids[i], vec[i], payload(i, lon[i], lat[i], sc[i], ep[i])) for i in range(n)]
orig = EdgeStore._create_shard
def run(name, cfg_kw):
    def patched(self, config):
        return orig(self, q.EdgeConfig(vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Euclid), **cfg_kw))
    EdgeStore._create_shard = patched
    s = open_store(tempfile.mkdtemp()+'/e'); s.ensure_collection(dim, 'b')
    t = time.time()
    for a in range(0, n, 5000): s.upsert(pts[a:a+5000])
    up = time.time()-t; t = time.time(); s.optimize(); opt = time.time()-t
    qi = rng.integers(0, n, 100)
    res = {}
    for kind in ('plain', 'bbox', 'radius'):
        lat_ms, rec = [], []
        for i in qi:
            qv = vec[i] + 0.05*rng.normal(size=dim).astype(np.float32)
            flt = None if kind=='plain' else SearchFilter(bbox=(lon[i]-0.08, lat[i]-0.08, lon[i]+0.08, lat[i]+0.08)) if kind=='bbox' else SearchFilter(near=(float(lon[i]), float(lat[i]), 6000.0))
            t0 = time.perf_counter(); h = s.search(qv, k=10, flt=flt); lat_ms.append(time.perf_counter()-t0)
            ex = s.search(qv, k=10, flt=flt, exact=True)
            rec.append(len({x.id for x in h} & {x.id for x in ex})/max(1, len(ex)))
        res[kind] = (round(1000*np.median(lat_ms), 2), round(1000*np.percentile(lat_ms, 99), 2), round(float(np.mean(rec)), 3))
    print(name, f'upsert {up:.0f}s optimize {opt:.0f}s', res, flush=True)
    s.close()
run('default', {})
run('fst1000', {'hnsw_config': q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1000)})
run('fst1000 payload_m16', {'hnsw_config': q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1000, payload_m=16)})
