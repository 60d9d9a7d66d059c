"""Records and the abstract vector-store interface shared by the Edge and server back-ends.

Scores are Euclidean distances (smaller is closer).  Hits are sorted by
ascending distance and ties are broken by point id, so two engines holding the
same points return the same ranking.
"""

from __future__ import annotations

import abc
import json
import logging
import math
import re
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError, PointNotFoundError, StoreError
from rsir_stac.store.envelope import EnvelopePlan, envelope_plan
from rsir_stac.store.filters import SearchFilter, haversine_m

log = logging.getLogger(__name__)

#: HNSW search width (``ef``) of every graph search, Edge and server alike (the
#: engine's default is 100).  At 1M points a collection filter matching a third of
#: them (too many for the exact scan, so searched through the graph) found 0.913 of
#: the true top 10 at ef 100, some queries none, and 0.995 (each query >= 0.9) at
#: 200, for 1.6 -> 2.4 ms p50; plain queries 0.992 -> 0.999 (benchmarks/RESULTS.md
#: section 13.5).  Geo filters on that index were answered by exact scans; where
#: tiles are dense they go through the graph too (see ACORN below).
HNSW_EF = 200

#: Filtered graph searches use ACORN (Patel et al., SIGMOD 2024; Qdrant's
#: ``AcornSearchParams``): when a neighbour fails the filter, the search looks at its
#: neighbours instead of stopping there.  The engine answers a filter by an exact scan
#: of the matching points while they are few in a segment (its ``full_scan_threshold``,
#: 10 MB of vectors: ~80,000 points at 32-d), and through the graph above that, which
#: happens where tiles are dense: many dates of one area, or a segment holding one
#: scene, as ingest writes them.  There, on 1M points in 4 scenes (each as dense as 10M
#: points in the benchmark's 40), ef 200 without ACORN found 0.85 (bbox) and 0.64 (6 km
#: radius) of the true top 10, some queries none; with ACORN at every selectivity 1.0 and
#: 0.999, at 1.3 and 2.9 ms p50 (RESULTS section 13.9).  The engine's own default (ACORN
#: only below 0.4 selectivity) did not engage there.  Set to 0 to switch ACORN off.
ACORN_MAX_SELECTIVITY = 1.0


def acorn_selectivity(flt: SearchFilter | None) -> float | None:
    """The ACORN ``max_selectivity`` a graph search with ``flt`` should send, or None for
    none: a filter with no condition (ids excluded from a plain search are no filter
    here) or ACORN switched off (:data:`ACORN_MAX_SELECTIVITY` <= 0)."""
    if flt is None or flt.is_empty or ACORN_MAX_SELECTIVITY <= 0:
        return None
    return ACORN_MAX_SELECTIVITY

#: Payload indexes created on every collection: field -> kind.  These are the
#: fields the search filters use, and the only ones stored as separate engine
#: fields (see :func:`pack_payload`).  ``item_id`` is a *tenant* keyword: the
#: engine stores each item's points together when it builds a segment, so a geo
#: filter (whose matches mostly come from a few scenes) reads contiguous vectors
#: however the points were written; filtered search is ~2x faster for it.
PAYLOAD_INDEXES: dict[str, str] = {
    "item_id": "tenant",
    "collection": "keyword",
    "location": "geo",
    "datetime_epoch": "float",
    "datetime_end_epoch": "float",
}

#: Engine field holding the rest of a tile's payload as one compact JSON string.
PACKED = "packed"

#: Largest tile half-diagonal :meth:`Store.point_at` looks for, in metres, and the
#: radii it widens through (a 256 px tile at 500 m GSD has a ~90 km half-diagonal).
POINT_AT_RADII_M = (250.0, 2_500.0, 25_000.0, 250_000.0, 2_500_000.0, 20_100_000.0)
#: Radii beyond this (tiles of coarse products) are checked with a count first.
POINT_AT_FINE_M = 250_000.0
#: Most tiles a :meth:`Store.point_at` radius beyond 250 km is scanned for (coarse products
#: hold few tiles; a fine-resolution catalogue around an uncovered location is not read through).
POINT_AT_WIDE_MAX = 100_000
#: Covering tiles whose centroids lie within this share of the nearest tile's width (and
#: at least POINT_AT_TIE_M metres) of the nearest count as the same place in
#: :meth:`Store.point_at` (a time series on grids a few metres apart), so the date decides.
POINT_AT_TIE_SHARE = 0.05
POINT_AT_TIE_M = 1.0

#: Metadata schema version written with every collection.
META_SCHEMA = 1


@dataclass(frozen=True)
class Point:
    """One stored tile: a UUID string id, its embedding and its payload."""

    id: str
    vector: np.ndarray
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """A search result; ``score`` is the Euclidean distance to the query (0 for lookups)."""

    id: str
    score: float
    payload: dict
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class IndexInfo:
    """Summary of an index: size, vector size, model, STAC collections and lon/lat extent.

    ``extent`` is ``(W, S, E, N)`` with ``W > E`` when the tiles lie on both
    sides of the antimeridian.  ``undated`` / ``no_collection`` count the points
    without a datetime / collection (a date / collection filter leaves them
    out); ``legacy_item_ids`` the points of bare rasters indexed under the old
    item id (the file name alone, before path-based ids), and ``notes`` says what to do
    about them.
    """

    count: int
    dim: int | None
    model_id: str | None
    collections: tuple[str, ...]
    extent: tuple[float, float, float, float] | None
    backend: str
    location: str
    undated: int = 0
    no_collection: int = 0
    legacy_item_ids: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CollectionMeta:
    """Durable facts about a collection, checked on every ``ensure_collection``."""

    dim: int
    model_id: str
    created_at: str
    rsir_stac_version: str
    distance: str = "Euclid"
    schema: int = META_SCHEMA

    @classmethod
    def new(cls, dim: int, model_id: str) -> CollectionMeta:
        from rsir_stac import __version__

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(dim=int(dim), model_id=str(model_id), created_at=now, rsir_stac_version=__version__)

    def to_dict(self) -> dict[str, Any]:
        return {"rsir_stac": asdict(self)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> CollectionMeta | None:
        """Parse what :meth:`to_dict` wrote; None when absent or unreadable."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rsir_stac"), Mapping):
            return None
        d = doc["rsir_stac"]
        try:
            return cls(
                dim=int(d["dim"]),
                model_id=str(d["model_id"]),
                created_at=str(d.get("created_at", "")),
                rsir_stac_version=str(d.get("rsir_stac_version", "")),
                distance=str(d.get("distance", "Euclid")),
                schema=int(d.get("schema", META_SCHEMA)),
            )
        except (KeyError, TypeError, ValueError):
            return None


# --------------------------------------------------------------------------- helpers


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize_id(point_id: Any) -> str:
    """Canonical lower-case hyphenated UUID string (the form Qdrant returns)."""
    if type(point_id) is str and _CANONICAL_UUID.fullmatch(point_id):
        return point_id  # already canonical (the common case): no parse
    if isinstance(point_id, uuid.UUID):
        return str(point_id)
    try:
        return str(uuid.UUID(str(point_id)))
    except (ValueError, AttributeError, TypeError):
        raise InputError(f"point id {point_id!r} is not a tile id (a UUID); copy one from search results or an "
                         "export (column or property id)") from None


_PLAIN = frozenset((str, int, float, bool, type(None)))


def to_jsonable(value: Any) -> Any:
    """Make a payload value JSON-safe: containers are walked, leaves converted
    by :func:`_json_default` (numpy scalars/arrays, datetimes); anything else
    raises TypeError.  Plain JSON values are returned as they are."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is dict or isinstance(value, Mapping):
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else to_jsonable(v)
                for k, v in value.items()}
    if t is list or t is tuple or isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN else to_jsonable(v) for v in value]
    return to_jsonable(_json_default(value))


def _covers(payload: dict, lon: float, lat: float) -> bool:
    """Whether a stored tile's footprint holds (lon, lat), edges included: its bbox first
    (cheap), then its footprint polygon where the payload has corners or an outline."""
    from rsir_stac.tiling.footprints import bbox_contains

    if not bbox_contains(payload["bbox"], lon, lat):
        return False
    if not payload.get("corners") and not payload.get("outline"):
        return True
    from shapely.geometry import Point as ShapelyPoint
    from shapely.geometry import shape

    from rsir_stac.labels import footprint_geometry

    geom = footprint_geometry(payload)
    return geom is None or shape(geom).distance(ShapelyPoint(lon, lat)) <= 1e-9


def check_incompatible(
    meta: CollectionMeta, dim: int, model_id: str, where: str, fresh: str = "a new --index"
) -> None:
    """Raise IncompatibleIndexError when ``meta`` differs from the requested dim/model."""
    if meta.dim != int(dim) or meta.model_id != str(model_id):
        from rsir_stac.model.bundle import shipped_hint

        raise IncompatibleIndexError(
            f"{where} holds {meta.dim}-d vectors of model {meta.model_id!r}, not {int(dim)}-d vectors of "
            f"model {model_id!r}; use the same model{shipped_hint(meta.model_id)} or {fresh} (to move an index "
            "to a new model: rsir-stac reindex --index OLD --to NEW --model BUNDLE)"
        )
    if meta.distance != "Euclid":
        raise IncompatibleIndexError(f"{where} uses {meta.distance} distance, not Euclid; use {fresh}")


def as_query_vector(vector: Any, dim: int | None, where: str) -> np.ndarray:
    """Validate one vector against the collection size; returns float32 1-D."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1:
        v = v.reshape(-1) if v.ndim == 2 and 1 in v.shape else v
    if v.ndim != 1:
        raise InputError(f"vector with shape {v.shape} for {where} must be 1-D; pass one embedding")
    if dim is not None and v.shape[0] != dim:
        raise IncompatibleIndexError(
            f"vector has {v.shape[0]} values but {where} holds {dim}-d vectors; use the model that built the index"
        )
    if not np.all(np.isfinite(v)):
        raise InputError(f"vector for {where} has NaN or infinite values; check the model output")
    return v


def check_points(points: Sequence[Point], dim: int, where: str) -> list[tuple[str, list[float], dict]]:
    """Validate points; returns (id, vector list, json payload) triples."""
    if not points:
        return []
    ids = [normalize_id(p.id) for p in points]
    for pid, p in zip(ids, points):
        size = np.size(p.vector)
        if size != dim:
            raise IncompatibleIndexError(
                f"point {pid} has a {size}-d vector but {where} holds {dim}-d vectors; "
                "use the model that built the index or a new --index"
            )
    vectors = np.asarray([np.asarray(p.vector, dtype=np.float32).reshape(-1) for p in points], dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = ids[int(np.flatnonzero(~finite)[0])]
        raise InputError(f"point {bad} has NaN or infinite vector values; check the model output")
    rows = []
    for pid, v, p in zip(ids, vectors.tolist(), points):
        try:
            rows.append((pid, v, pack_payload(p.payload or {})))
        except (TypeError, ValueError) as exc:
            raise InputError(f"payload of point {pid} cannot be stored as JSON ({exc}); "
                             "use str, numbers, lists and dicts") from None
    return rows


def _json_default(value: Any) -> Any:
    """One non-JSON leaf as JSON: the ``json`` encoder hook (called only for
    values JSON cannot encode itself, so plain payloads cost nothing extra) and
    the leaf rule of :func:`to_jsonable`."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} {value!r:.60} is not JSON serializable")


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def _decode_packed(raw: str) -> Any:
    """``json.loads`` of a packed payload, through orjson (~3x faster: decoding
    the hits' payloads is the largest part of a search's own work, RESULTS §13).
    Documents orjson refuses (``NaN`` literals, integers beyond 64 bits, which
    the standard encoder writes) fall back to :func:`json.loads`; raises
    ValueError on text that is not JSON."""
    try:
        return _orjson_loads(raw)
    except ValueError:
        return json.loads(raw)


try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - orjson is a dependency; an odd install still works
    _orjson_loads = json.loads


def pack_payload(payload: dict) -> dict:
    """The stored form of a payload: the filtered fields (:data:`PAYLOAD_INDEXES`)
    as engine fields, everything else as one compact JSON string under
    :data:`PACKED`.

    Qdrant Edge's Python binding spends ~2 us converting each payload value, so a
    full tile payload (~36 values) dominated upsert time; packed it is 8.
    """
    top: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for k, v in payload.items():
        if k in PAYLOAD_INDEXES:
            top[k] = v if type(v) in _PLAIN else to_jsonable(v)
        else:
            rest[k if type(k) is str else str(k)] = v
    if rest:
        top[PACKED] = _ENCODER.encode(rest)
    return top


def unpack_payload(stored: Mapping[str, Any] | None) -> dict:
    """Inverse of :func:`pack_payload`; payloads stored unpacked (older indexes,
    or points written by other tools) pass through unchanged."""
    p = dict(stored or {})
    raw = p.get(PACKED)
    if isinstance(raw, str):
        try:
            rest = _decode_packed(raw)
        except ValueError:
            return p
        if isinstance(rest, dict):
            del p[PACKED]
            for k, v in rest.items():
                p.setdefault(k, v)
    return p


def _vector_of(raw: Any) -> np.ndarray | None:
    """Engine vector (list, or {'': list}) to float32 array."""
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        raw = raw.get("", next(iter(raw.values()), None))
        if raw is None:
            return None
    return np.asarray(raw, dtype=np.float32)


def _row_key(row: tuple[float, str, Any]) -> tuple[float, str]:
    return (row[0], row[1])  # by score, ties by id


def hit_from_record(rec: Any, with_vectors: bool, score: float | None = None) -> SearchHit:
    """An engine record (Edge or qdrant-client; scored or not) as a SearchHit."""
    return SearchHit(id=str(rec.id), score=float(rec.score) if score is None else score,
                     payload=unpack_payload(rec.payload), vector=_vector_of(rec.vector) if with_vectors else None)


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def is_legacy_item_id(payload: Mapping[str, Any]) -> bool:
    """Whether a point of a bare raster (no collection, asset ``data``) carries the
    old item id, the file name without extension (see README, "Scene identity")."""
    if payload.get("collection") or payload.get("asset") != "data":
        return False
    href, item = payload.get("href"), payload.get("item_id")
    if not isinstance(href, str) or not isinstance(item, str):
        return False
    import posixpath
    import urllib.parse

    path = urllib.parse.unquote(urllib.parse.urlsplit(href).path) if "://" in href else href
    stem = posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0]
    return item == stem


# --------------------------------------------------------------------------- interface


class Store(abc.ABC):
    """A collection of tile embeddings with geo-metadata.

    Concrete stores implement the engine primitives (``_search_raw``, ``_scan``,
    ``_retrieve_raw`` and the write/lifecycle methods); ranking, ``point_at``,
    ``existing_ids`` and ``info`` are shared here.
    """

    backend: str = "abstract"
    location: str = ""
    collection: str = "rsir_tiles"
    read_only: bool = False

    # -- engine primitives -------------------------------------------------

    @abc.abstractmethod
    def meta(self) -> CollectionMeta | None:
        """The collection metadata, or None when the collection does not exist."""

    @abc.abstractmethod
    def _search_raw(
        self,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None,
        exclude_ids: Collection[str],
        with_vectors: bool,
        exact: bool,
    ) -> list[tuple[float, str, Any]]:
        """Engine nearest-neighbour query with payloads: ``(score, id, record)`` rows,
        unsorted ties allowed; :meth:`search` makes hits of only the records it keeps."""

    @abc.abstractmethod
    def _retrieve_raw(self, ids: Sequence[str], with_payload: bool, with_vectors: bool) -> list[SearchHit]:
        """Engine lookup by canonical ids; missing ids are left out."""

    @abc.abstractmethod
    def _scan(
        self,
        flt: SearchFilter | None,
        *,
        around: tuple[float, float, float] | None = None,
        fields: Sequence[str] | None = None,
        with_vectors: bool = False,
        batch: int = 1000,
    ) -> Iterator[tuple[str, dict, np.ndarray | None]]:
        """Scroll (id, unpacked payload, vector) of matching points; ``fields`` limits
        the stored fields read (name :data:`PACKED` for any non-indexed field)."""

    def _vector_batches(self, flt: SearchFilter | None, batch: int = 4096) -> Iterator[tuple[Sequence[str], np.ndarray]]:
        """Scroll the vectors of points matching ``flt`` without their payloads, ``batch``
        at a time: (ids, float32 matrix of shape (len(ids), dim)) in scroll order.

        ``ids`` may convert lazily (index only the rows needed: converting every engine
        id costs as much as the scroll itself).  Engines override this with a bulk path.
        """
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        for pid, _, vec in self._scan(flt, fields=[], with_vectors=True, batch=batch):
            ids.append(pid)
            vecs.append(vec)
            if len(ids) >= batch:
                yield ids, np.stack(vecs).astype(np.float32, copy=False)
                ids, vecs = [], []
        if ids:
            yield ids, np.stack(vecs).astype(np.float32, copy=False)

    # -- public abstract API ----------------------------------------------

    @abc.abstractmethod
    def ensure_collection(self, dim: int, model_id: str) -> None:
        """Create the collection (Euclid, payload indexes) or check it matches dim and model_id."""

    @abc.abstractmethod
    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or replace points by id (idempotent)."""

    def estimate(self, flt: SearchFilter | None = None) -> int | None:
        """The engine's estimate of how many points match ``flt``, without reading them, or
        None where the back end gives none (then :meth:`count` is the only answer)."""
        return None

    @abc.abstractmethod
    def count(self, flt: SearchFilter | None = None) -> int:
        """Number of points matching ``flt`` (all points when None)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make all writes durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the engine (and any lock); idempotent."""

    # -- shared behaviour --------------------------------------------------

    def _require_meta(self) -> CollectionMeta:
        meta = self.meta()
        if meta is None:
            raise StoreError(
                f"{self.describe()} has no collection {self.collection!r} yet; ingest tiles into it first"
            )
        return meta

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.describe()} was opened read-only; open it with read_only=False to write")

    def describe(self) -> str:
        """Human name for messages, e.g. ``index /data/idx`` or ``Qdrant http://h:6333 collection c``."""
        return f"index {self.location}"

    def search(
        self,
        vector: Any,
        k: int = 10,
        flt: SearchFilter | None = None,
        exclude_ids: Collection[str] = (),
        with_vectors: bool = False,
        *,
        exact: bool = False,
    ) -> list[SearchHit]:
        """The ``k`` nearest points to ``vector`` matching ``flt``, minus ``exclude_ids``.

        ``exact=True`` forces a brute-force scan even where an HNSW graph exists.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k={k!r} must be a positive integer; ask for at least one result")
        meta = self._require_meta()
        v = as_query_vector(vector, meta.dim, self.describe())
        excl = {normalize_id(i) for i in exclude_ids} if exclude_ids else set()
        # one hit more than asked tells whether a tie group straddles the cut (the HNSW
        # search width does not depend on the limit: ef is max(hnsw_ef, limit), HNSW_EF)
        limit = k + 1
        plan = None if exact else envelope_plan(flt)
        if plan is not None and not plan.worth_it(self.estimate(flt), meta.dim):
            plan = None
        while True:
            rows = self._filtered_rows(v, limit, flt, excl, with_vectors, exact, plan)
            rows.sort(key=_row_key)
            # a tie group may straddle the cut: widen until the k-th score is settled
            if len(rows) < limit or rows[k - 1][0] < rows[-1][0]:
                break
            limit *= 4
        # payloads are fetched with the search (one engine call; RESULTS §13.12) and
        # decoded only for the k kept hits
        hits = [SearchHit(i, float(score), unpack_payload(rec.payload), _vector_of(rec.vector) if with_vectors else None)
                for score, i, rec in rows[:k]]
        self._verify_hits(hits, True, with_vectors)
        return hits

    def _verify_hits(self, hits: Sequence[SearchHit], payload: bool, vectors: bool) -> None:
        """Raise StoreError when hits read back lack what they were written with (storage damage the
        engine does not report); engines that can tell override this (Edge, with its digest ledger)."""

    def _filtered_rows(self, v: np.ndarray, limit: int, flt: SearchFilter | None, excl: Collection[str],
                       with_vectors: bool, exact: bool, plan: EnvelopePlan | None) -> list[tuple[float, str, Any]]:
        """:meth:`_search_raw`, a polygon through its envelope first where ``plan`` says so
        (:mod:`rsir_stac.store.envelope`): the ``plan.wide(limit)`` nearest in the envelope,
        those inside the polygon kept, unless fewer than ``limit`` remain of an envelope that
        held more; then the polygon itself."""
        if plan is not None and (wide := plan.wide(limit)) <= HNSW_EF:  # the walk's own width
            rows = self._search_raw(v, wide, plan.box_filter, excl, with_vectors, exact)
            keep = plan.inside([rec for _, _, rec in rows])
            kept = [row for row, ok in zip(rows, keep) if ok]
            if len(kept) >= limit or len(rows) < wide:
                return kept
        return self._search_raw(v, limit, flt, excl, with_vectors, exact)

    def query(self, query: Any, k: int = 10, **kwargs: Any) -> list[SearchHit]:
        """Hits of an :class:`~rsir_stac.store.query.ExampleQuery` (several positive and
        negative examples) through the engine's own query API; see
        :func:`rsir_stac.store.query.run_query` for ``offset``, ``flt``, ``exclude``,
        ``per_item``, ``fill`` and ``with_vectors``."""
        from rsir_stac.store.query import run_query

        return run_query(self, query, k, **kwargs)

    def retrieve(self, ids: Iterable[str], with_vectors: bool = False) -> list[SearchHit]:
        """Points by id, in the order asked (duplicates once); score 0.

        Raises PointNotFoundError naming the first id that is not stored.
        """
        want = list(dict.fromkeys(normalize_id(i) for i in ids))
        if not want:
            return []
        self._require_meta()
        found: dict[str, SearchHit] = {}
        for part in chunks(want, 1000):
            for h in self._retrieve_raw(part, True, with_vectors):
                found[h.id] = h
        missing = [i for i in want if i not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise PointNotFoundError(
                f"point {missing[0]}{more} is not in {self.describe()}; check the id or ingest it first"
            )
        return [found[i] for i in want]

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` already stored (canonical form), for resumable ingest (engines that
        verify what they store return only the intact ones)."""
        return self.present_ids(ids)

    def present_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` stored, intact or not (canonical form)."""
        want = list(dict.fromkeys(normalize_id(i) for i in ids))
        if not want or self.meta() is None:
            return set()
        out: set[str] = set()
        for part in chunks(want, 1000):
            out.update(h.id for h in self._retrieve_raw(part, False, False))
        return out

    def iter_points(self, batch: int = 1000, with_vectors: bool = True) -> Iterator[Point]:
        """Every stored point with payload (and vector), in scroll order; for migration."""
        if self.meta() is None:
            return
        for pid, payload, vec in self._scan(None, with_vectors=with_vectors, batch=batch):
            yield Point(id=pid, vector=vec if vec is not None else np.empty(0, np.float32), payload=payload)

    def point_at(
        self, lon: float, lat: float, flt: SearchFilter | None = None, *, with_vectors: bool = True
    ) -> SearchHit:
        """The stored tile covering (lon, lat): among tiles whose footprint covers the
        location, the one with the nearest centroid; score 0.  Centroids within 5 % of
        a tile's width of the nearest (:data:`POINT_AT_TIE_SHARE`) count as one place
        (a time series on grids metres apart): the newest of them wins, then the smallest id.

        Candidates come from the geo index: tiles whose centroid lies within a
        radius that widens through :data:`POINT_AT_RADII_M` until one covers the
        location (a nearer covering centroid would have been inside the radius); radii
        beyond 250 km (tiles of coarse products) are scanned only while they hold at most
        :data:`POINT_AT_WIDE_MAX` tiles.  A tile covers the location when its footprint
        (corners, or polar outline) does, edges included; a bbox with W > E crosses the
        antimeridian.
        """
        lon, lat = float(lon), float(lat)
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise InputError(f"location {lon},{lat} is not a lon/lat in degrees; give LON within ±180 and LAT within ±90")
        self._require_meta()
        found: list[tuple[float, float, str, Any]] = []  # (metres, epoch, id, bbox)
        fields = ["location", "bbox", "datetime_epoch", PACKED]
        for radius in POINT_AT_RADII_M:
            if radius > POINT_AT_FINE_M and not self._few_within(flt, lon, lat, radius):
                break
            for pid, payload, _ in self._scan(flt, around=(lon, lat, radius), fields=fields):
                try:
                    if not _covers(payload, lon, lat):
                        continue
                    loc = payload["location"]
                    d = float(haversine_m(lon, lat, float(loc["lon"]), float(loc["lat"])))
                except (KeyError, TypeError, ValueError):
                    continue
                epoch = payload.get("datetime_epoch")
                found.append((d, float(epoch) if isinstance(epoch, (int, float)) else -math.inf, pid,
                              payload["bbox"]))
            if found:
                break
        best = None
        if found:
            d0, _, _, (w, s_, e, n) = min(found, key=lambda f: f[0])
            width = float(haversine_m(w, (s_ + n) / 2, e if e >= w else e + 360.0, (s_ + n) / 2))
            near = d0 + max(POINT_AT_TIE_M, POINT_AT_TIE_SHARE * width)
            best = min(((-ep, pid) for d, ep, pid, _ in found if d <= near))
        if best is None:
            raise PointNotFoundError(
                f"no tile in {self.describe()} covers lon {lon}, lat {lat}"
                + (" with the given filter" if flt is not None and not flt.is_empty else "")
                + "; pick a location inside the ingested scenes"
            )
        return self.retrieve([best[1]], with_vectors=with_vectors)[0]

    def _few_within(self, flt: SearchFilter | None, lon: float, lat: float, radius: float) -> bool:
        """Whether at most :data:`POINT_AT_WIDE_MAX` tiles matching ``flt`` have their centre
        within ``radius`` metres (a wide :meth:`point_at` scan stays cheap)."""
        if flt is not None and flt.near is not None:
            return True
        near = replace(flt or SearchFilter(), near=(lon, lat, radius))
        n = self.count(near)
        if n > POINT_AT_WIDE_MAX:
            log.info("point_at: %d tiles within %.0f km of %s,%s; not scanned for tiles that wide", n,
                     radius / 1000, lon, lat)
        return n <= POINT_AT_WIDE_MAX

    def info(self) -> IndexInfo:
        """Count, vector size, model, STAC collections, lon/lat extent (antimeridian-aware)
        and the points without a date or collection (one scan)."""
        from rsir_stac.tiling.footprints import union_bounds

        meta = self.meta()
        if meta is None:
            return IndexInfo(0, None, None, (), None, self.backend, self.location)
        cols: set[str] = set()
        boxes: list[list[float]] = []
        n = undated = no_collection = legacy = 0
        fields = ["bbox", "collection", "item_id", "datetime_epoch", PACKED]
        for _, payload, _ in self._scan(None, fields=fields):
            n += 1
            c = payload.get("collection")
            if isinstance(c, str) and c:
                cols.add(c)
            else:
                no_collection += 1
            if payload.get("datetime_epoch") is None:
                undated += 1
            if is_legacy_item_id(payload):
                legacy += 1
            b = payload.get("bbox")
            if isinstance(b, list) and len(b) == 4:
                try:
                    boxes.append([float(x) for x in b])
                except (TypeError, ValueError):
                    continue
        notes = []
        if legacy:
            notes.append(
                f"{legacy} points of bare rasters were indexed under the file name alone as item id (before "
                "path-based ids; two files with the same name shared it); they are kept and searchable, but re-ingesting "
                "those files adds them again under the new path-based id: ingest into a new --index to avoid "
                "duplicates")
        if undated:
            notes.append(f"{undated} points have no date and are left out by any --datetime filter; give bare "
                         "rasters one with `ingest --datetime`")
        return IndexInfo(
            count=n,
            dim=meta.dim,
            model_id=meta.model_id or None,
            collections=tuple(sorted(cols)),
            extent=union_bounds(boxes) if boxes else None,
            backend=self.backend,
            location=self.location,
            undated=undated,
            no_collection=no_collection,
            legacy_item_ids=legacy,
            notes=tuple(notes),
        )

    def optimize(self) -> bool:
        """Build search indexes now where the engine needs it; True if anything changed."""
        return False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend} {self.location} collection={self.collection!r}>"


__all__ = [
    "CollectionMeta",
    "IndexInfo",
    "PACKED",
    "PAYLOAD_INDEXES",
    "Point",
    "SearchHit",
    "Store",
    "normalize_id",
    "pack_payload",
    "unpack_payload",
]
