"""Qdrant server / cluster back-end through ``qdrant_client`` (also its local modes).

``url`` is an ``http(s)://`` address (with optional ``api_key``), ``":memory:"``
for qdrant-client's in-process mode (tests use it as a stand-in for a server),
or a directory path for qdrant-client's on-disk local mode.

Collection metadata (dim, model_id, created_at, rsir_stac version) lives in the
collection's own ``config.metadata``, or in a one-point ``<name>__meta`` collection
where a server drops it: :mod:`~rsir_stac.store.server_meta` reads and writes it.

Creation is race-safe: several workers may call ``ensure_collection`` at once;
the losers of the create race get "already exists", re-read the collection and
verify it.  Uploads use ``upload_points(wait=True)`` with retries, and
``parallel`` worker processes on real servers only (local mode has none).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import IndexNotFoundError, InputError, StoreError
from rsir_stac.store.base import HNSW_EF, Store, acorn_selectivity
from rsir_stac.store.collection_layout import loopback_url
from rsir_stac.store.engine_filters import to_qdrant_filter
from rsir_stac.store.filters import SearchFilter
from rsir_stac.store.payloads import PAYLOAD_INDEXES, _vector_of, check_points, hit_from_record, unpack_payload
from rsir_stac.store.records import CollectionMeta, Point, SearchHit, check_incompatible
from rsir_stac.store.server_meta import META_SUFFIX, ServerMetaMixin, _first_line, _is_conflict

log = logging.getLogger(__name__)


def cluster_settings(url: str) -> dict[str, int]:
    """Sharding / replication for a new collection from ``RSIR_QDRANT_SHARDS`` and
    ``RSIR_QDRANT_REPLICAS`` (server and cluster only; local mode ignores them)."""
    if not str(url).startswith(("http://", "https://")):
        return {}
    out: dict[str, int] = {}
    for env, key in (("RSIR_QDRANT_SHARDS", "shard_number"), ("RSIR_QDRANT_REPLICAS", "replication_factor")):
        raw = os.environ.get(env)
        if raw:
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise InputError(f"{env}={raw!r} is invalid; give a positive whole number")
            out[key] = value
    if "replication_factor" in out:
        out["write_consistency_factor"] = 1
    return out


def graph_params(flt: SearchFilter | None) -> Any:
    """The ``qdrant_client`` search params of a graph search, as the Edge back end's
    (:func:`rsir_stac.store.edge_read.graph_params`): width :data:`HNSW_EF`, ACORN for a filter
    when the client has it (qdrant-client >= 1.16, servers >= 1.16)."""
    from qdrant_client import models as m

    sel = acorn_selectivity(flt)
    acorn = getattr(m, "AcornSearchParams", None)
    if sel is None or acorn is None:
        return m.SearchParams(hnsw_ef=HNSW_EF)
    return m.SearchParams(hnsw_ef=HNSW_EF, acorn=acorn(enable=True, max_selectivity=sel))


def _local_or_server(url: str) -> str:
    """A ``--qdrant-url`` as qdrant-client takes it: ``http(s)://`` servers and ``:memory:``
    as they are, ``file:`` URLs as their path; anything else is a local folder.

    Raises InputError for another URL scheme or a bare HOST:PORT (which would otherwise
    become a local folder of that name)."""
    import re
    from urllib.parse import unquote, urlparse

    parts = url.split("://", 1)
    if len(parts) == 2 and parts[0].lower() in ("http", "https"):
        return parts[0].lower() + "://" + parts[1]
    if url == ":memory:":
        return url
    if url.lower().startswith("file:"):
        return unquote(urlparse(url).path) or url
    scheme = url.split("://", 1)[0] if "://" in url else None
    if scheme is not None:
        raise InputError(f"--qdrant-url {url}: scheme {scheme!r} is not supported; give http(s)://HOST:PORT for a "
                         "server (REST), or a folder path for qdrant-client's local mode")
    if re.fullmatch(r"[A-Za-z0-9._-]+:\d{1,5}", url):
        raise InputError(f"--qdrant-url {url} has no scheme; give http://{url} for a server, or ./{url} for a "
                         "local folder of that name")
    return os.path.expanduser(url)


class ServerStore(ServerMetaMixin, Store):
    """A :class:`Store` in a Qdrant collection reached through qdrant-client."""

    #: Creating the collection is what the caller asked for (reindex --to): no "beside" warning.
    _new_expected = False

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        collection: str = "rsir_tiles",
        read_only: bool = False,
        batch_size: int = 256,
        parallel: int = 1,
        max_retries: int = 3,
        timeout: int | None = None,
    ) -> None:
        from qdrant_client import QdrantClient

        self.url = _local_or_server(str(url))
        self._check_local_folder(read_only)
        self.collection = collection
        self.read_only = read_only
        self.batch_size = int(batch_size)
        self.parallel = max(1, int(parallel))
        self.max_retries = int(max_retries)
        self.remote = self.url.startswith(("http://", "https://"))
        self.backend = "qdrant" if self.remote else "qdrant-local"
        self.location = self.url
        self._meta: CollectionMeta | None = None
        #: For a collection without rsir-stac metadata (made by another tool): what it holds, in words.
        self.foreign: str | None = None
        self._closed = False
        if api_key and not self.remote:
            log.warning("the Qdrant API key (--api-key or RSIR_QDRANT_API_KEY) is not used by %s: a local store has "
                        "no authentication", self.describe())
        try:
            if self.remote:
                with warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always", UserWarning)
                    self.client = QdrantClient(url=self.url, api_key=api_key, timeout=timeout)
                if any("insecure" in str(w.message) for w in said) and not loopback_url(self.url):
                    log.warning("the Qdrant API key is sent in clear text to %s; use https:// (or a TLS proxy) for "
                                "a server other machines can reach", self.url)
            elif self.url == ":memory:":
                self.client = QdrantClient(location=":memory:")
            else:
                self.client = QdrantClient(path=self.url)
            self._exists = self.client.collection_exists(collection)
        except Exception as exc:  # noqa: BLE001 - connection, auth and lock errors all land here
            from rsir_stac.store.space import disk_full, is_disk_full

            if not self.remote and self.url != ":memory:" and is_disk_full(exc):
                raise disk_full(Path(self.url).absolute().parent, f"{self.describe()}: opening it",
                                intact="what was written there before is intact") from None
            if not self.remote and "already accessed by another instance" in str(exc):
                from rsir_stac.errors import IndexInUseError

                raise IndexInUseError(
                    f"qdrant-client local folder {self.url} is in use by another process (its local mode lets one "
                    "process open a folder at a time); wait for it or stop it (a running serve?), or use a Qdrant "
                    "server for concurrent use") from None
            raise StoreError(
                f"cannot open Qdrant at {self.url} ({_first_line(exc)}); check --qdrant-url, "
                "RSIR_QDRANT_API_KEY and that the server is running"
            ) from None
        if read_only and not self._exists:
            msg = self._missing_message()
            self.client.close()
            raise IndexNotFoundError(msg)
        if self._exists:
            self._meta = self._read_meta()
        log.debug("opened %r", self)

    # -- helpers -----------------------------------------------------------

    def _check_local_folder(self, read_only: bool) -> None:
        """Before qdrant-client opens a local folder: a read-only open needs one it wrote, and a
        folder of another store (an embedded index) is refused."""
        if read_only and not self.url.startswith(("http://", "https://")) and self.url != ":memory:" \
                and not Path(self.url).exists():
            raise IndexNotFoundError(f"qdrant-client local folder {self.url} does not exist; ingest into it first, "
                                     "or give the folder (or http://HOST:PORT of a server) that holds the index")
        if not self.url.startswith(("http://", "https://")) and self.url != ":memory:" and Path(self.url).is_dir():
            from rsir_stac.store.folder import refuse_other_store

            refuse_other_store(self.url, "local")  # before qdrant-client writes its meta.json into it
        if read_only and not self.url.startswith(("http://", "https://")) and self.url != ":memory:" \
                and Path(self.url).is_dir() and not (Path(self.url) / "meta.json").is_file():
            raise IndexNotFoundError(f"{self.url} holds no qdrant-client store (no meta.json); give the folder an "
                                     "ingest or migrate with --qdrant-url wrote, or an embedded index with --index")

    def describe(self) -> str:
        if self.remote:
            return f"Qdrant {self.url} collection {self.collection!r}"
        return f"qdrant-client local {'memory' if self.url == ':memory:' else 'folder ' + self.url} collection {self.collection!r}"

    def _other_collections(self) -> list[str]:
        """Names of the store's other collections ([] when they cannot be listed)."""
        try:
            names = [c.name for c in self.client.get_collections().collections]
        except Exception:  # noqa: BLE001 - only for a message
            return []
        return sorted(n for n in names if n != self.collection)

    def _missing_message(self) -> str:
        """The one line for a collection that does not exist, naming the ones that do."""
        others = self._other_collections()
        if not others:
            return f"{self.describe()} does not exist, nor any other; build it with ingest, or check --qdrant-url"
        held = ", ".join(repr(n) for n in others[:5]) + (" ..." if len(others) > 5 else "")
        return (f"{self.describe()} does not exist; the store holds {held}: pass one with --qdrant-collection NAME "
                "(or RSIR_QDRANT_COLLECTION), or build this one with ingest")

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreError(f"{self.describe()} is closed; open it again (rsir_stac.search.Index.open, or rsir_stac.store.open_store for the store alone)")
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, action) from None

    def _failure(self, exc: BaseException, action: str) -> StoreError:
        """The one-line error of a failed call: for a local folder (qdrant-client's local mode) a full
        disk names the folder and its free space, anything else the folder; for a server, the server."""
        if self.remote:
            return StoreError(f"{self.describe()}: {action} failed ({_first_line(exc)}); check the server")
        if self.url == ":memory:":
            return StoreError(f"{self.describe()}: {action} failed ({_first_line(exc)}); check the free memory")
        from rsir_stac.store.space import disk_full, is_disk_full

        if is_disk_full(exc):  # named by its parent, which stays when a failed migrate removes the folder
            return disk_full(Path(self.url).absolute().parent, f"{self.describe()}: {action}",
                             intact="what was written there before is intact")
        return StoreError(f"{self.describe()}: {action} failed ({_first_line(exc)}); check the folder {self.url} "
                          "(its free space and permissions)")

    def drop_collection(self) -> None:
        """Delete this collection (and its ``<name>__meta`` companion): ``migrate`` removes a
        target collection it created when the copy fails, so nothing partial is left."""
        for name in (self.collection, self.collection + META_SUFFIX):
            try:
                if self.client.collection_exists(name):
                    self.client.delete_collection(name)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: deleting collection %s failed (%s)", self.describe(), name, _first_line(exc))
        self._meta = None

    def _create_indexes(self) -> None:
        from qdrant_client import models as m

        kinds = {"keyword": m.PayloadSchemaType.KEYWORD, "geo": m.PayloadSchemaType.GEO, "float": m.PayloadSchemaType.FLOAT,
                 "tenant": m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode: "payload indexes have no effect"
            for name, kind in PAYLOAD_INDEXES.items():
                self._call(f"creating payload index {name}", self.client.create_payload_index,
                           self.collection, name, field_schema=kinds[kind], wait=True)

    # -- Store API ---------------------------------------------------------

    def meta(self) -> CollectionMeta | None:
        if self._closed:
            raise StoreError(f"{self.describe()} is closed; open it again (rsir_stac.search.Index.open, or rsir_stac.store.open_store for the store alone)")
        return self._meta

    def ensure_collection(self, dim: int, model_id: str) -> None:
        """Create (race-safe) or verify the collection; cluster settings from the environment."""
        from qdrant_client import models as m

        dim = int(dim)
        if dim < 1:
            raise StoreError(f"vector size {dim} for {self.describe()} must be positive; check the model")
        if self._meta is None:
            self._exists = self._call("checking the collection", self.client.collection_exists, self.collection)
            if self._exists:
                self._meta = self._read_meta()
        self._adopt_foreign(dim, model_id)
        if self._meta is None:
            self._require_writable()
            others = [] if self._new_expected else self._other_collections()
            if others:  # a mistyped --qdrant-collection would otherwise start a second index quietly
                log.warning("creating collection %r on %s beside %s; if you meant one of those, stop and pass it "
                            "with --qdrant-collection", self.collection, self.url,
                            ", ".join(repr(n) for n in others[:5]))
            meta = CollectionMeta.new(dim, model_id)
            try:
                self.client.create_collection(
                    self.collection,
                    vectors_config=m.VectorParams(size=dim, distance=m.Distance.EUCLID),
                    metadata=meta.to_dict(),
                    **cluster_settings(self.url),
                )
                created = True
            except Exception as exc:  # noqa: BLE001
                if not _is_conflict(exc):
                    raise self._failure(exc, "creating the collection") from None
                created = False  # another worker won the race: verify what it made
            if created:
                if CollectionMeta.from_dict(
                    getattr(self._call("reading the collection", self.client.get_collection, self.collection).config,
                            "metadata", None)) != meta:
                    self._write_meta(meta)
                self._meta = meta
                log.info("created %s (dim %d, model %s)", self.describe(), dim, model_id)
            else:
                self._meta = self._read_meta()
                self._adopt_foreign(dim, model_id)  # a winner whose server keeps metadata aside, not yet written
                if self._meta is None:
                    raise StoreError(f"{self.describe()} exists but cannot be read; check the server")
        check_incompatible(self._meta, dim, model_id, self.describe(), "another collection (--qdrant-collection NAME)")
        if not self.read_only:
            self._create_indexes()

    def upsert(self, points: Sequence[Point]) -> None:
        from qdrant_client import models as m

        self._require_writable()
        meta = self._require_meta()
        rows = check_points(points, meta.dim, self.describe())
        if not rows:
            return
        structs = [m.PointStruct(id=i, vector=v, payload=p) for i, v, p in rows]
        kwargs: dict[str, Any] = {"batch_size": self.batch_size, "max_retries": self.max_retries, "wait": True}
        if self.remote and self.parallel > 1 and len(structs) > self.batch_size:
            kwargs["parallel"] = self.parallel
        self._call("uploading points", self.client.upload_points, self.collection, structs, **kwargs)

    def delete(self, ids: Collection[str]) -> None:
        """Remove the points ``ids`` (qdrant-client ``delete`` by id list, waited for)."""
        from qdrant_client import models as m

        from rsir_stac.store.records import normalize_id

        self._require_writable()
        self._require_meta()
        keys = [normalize_id(i) for i in ids]
        if keys:
            self._call("deleting points", self.client.delete, self.collection,
                       points_selector=m.PointIdsList(points=keys), wait=True)

    def _search_raw(
        self,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None,
        exclude_ids: Collection[str],
        with_vectors: bool,
        exact: bool,
    ) -> list[tuple[float, str, Any]]:
        from qdrant_client import models as m

        kwargs: dict[str, Any] = {}
        if self.remote:  # local mode is always exact and warns about search_params
            kwargs["search_params"] = m.SearchParams(exact=True) if exact else graph_params(flt)
        res = self._call(
            "searching", self.client.query_points, self.collection,
            query=vector.tolist(), limit=limit,
            query_filter=to_qdrant_filter(flt, exclude_ids=exclude_ids),
            with_payload=True, with_vectors=with_vectors, **kwargs,
        )
        return [(p.score, str(p.id), p) for p in res.points]

    def _query_raw(self, query: Any, limit: int, flt: SearchFilter | None, excl: Any,
                   fields: Sequence[str] | None) -> list[SearchHit]:
        """Engine query for :func:`rsir_stac.store.query.run_query`: (id, score[, fields]) rows."""
        from rsir_stac.store.query import qdrant_filter, qdrant_query

        kwargs = {"search_params": graph_params(flt)} if self.remote else {}
        res = self._call("querying", self.client.query_points, self.collection,
                         query=qdrant_query(query, limit), limit=limit, query_filter=qdrant_filter(flt, excl),
                         with_payload=list(fields) if fields else False, with_vectors=False, **kwargs)
        return [hit_from_record(p, False) for p in res.points]

    def _ids_from(self, start: str | None, limit: int, flt: SearchFilter | None, excl: Any) -> list[str]:
        """Up to ``limit`` ids in id order from ``start`` (inclusive) among points matching ``flt``."""
        from rsir_stac.store.query import qdrant_filter

        recs, _ = self._call("scrolling points", self.client.scroll, self.collection,
                             scroll_filter=qdrant_filter(flt, excl), limit=max(1, int(limit)), offset=start,
                             with_payload=False, with_vectors=False)
        return [str(r.id) for r in recs]

    def _retrieve_raw(self, ids: Sequence[str], with_payload: bool, with_vectors: bool) -> list[SearchHit]:
        recs = self._call("retrieving points", self.client.retrieve, self.collection, list(ids),
                          with_payload=with_payload, with_vectors=with_vectors)
        return [hit_from_record(r, with_vectors, 0.0) for r in recs]

    def _scan(
        self,
        flt: SearchFilter | None,
        *,
        around: tuple[float, float, float] | None = None,
        fields: Sequence[str] | None = None,
        with_vectors: bool = False,
        batch: int = 1000,
    ) -> Iterator[tuple[str, dict, np.ndarray | None]]:
        if self._meta is None:
            return
        qfilter = to_qdrant_filter(flt, around=around)
        offset = None
        while True:
            recs, offset = self._call(
                "scrolling points", self.client.scroll, self.collection,
                scroll_filter=qfilter, limit=max(1, int(batch)), offset=offset,
                with_payload=list(fields) if fields is not None else True, with_vectors=with_vectors,
            )
            for r in recs:
                yield str(r.id), unpack_payload(r.payload), _vector_of(r.vector) if with_vectors else None
            if offset is None or not recs:
                return

    def count(self, flt: SearchFilter | None = None) -> int:
        return self._count(flt, True, "counting points")

    def estimate(self, flt: SearchFilter | None = None) -> int | None:
        """The server's estimate of how many points match ``flt`` (``count`` with
        ``exact=False``: its query planner's cardinality estimate)."""
        return self._count(flt, False, "estimating a count")

    def _count(self, flt: SearchFilter | None, exact: bool, action: str) -> int:
        if self.meta() is None:
            return 0
        res = self._call(action, self.client.count, self.collection, count_filter=to_qdrant_filter(flt), exact=exact)
        return int(res.count)

    def flush(self) -> None:
        """Nothing to do: every upload waits for the server to apply it."""

    def sibling(self, collection: str, *, read_only: bool = False) -> ServerStore:
        """Another collection of the same Qdrant through this store's client
        (qdrant-client's local mode lets one client open a folder).  Closing
        the sibling leaves the client open; close this store last."""
        other = copy.copy(self)
        other.collection, other.read_only, other._meta, other._closed = collection, read_only, None, False
        other._shares_client = True
        other._new_expected = True  # reindex --to names the collection it makes: no warning
        other._exists = other._call("checking the collection", self.client.collection_exists, collection)
        if read_only and not other._exists:
            raise IndexNotFoundError(other._missing_message())
        if other._exists:
            other._meta = other._read_meta()
        return other

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if getattr(self, "_shares_client", False):
            return
        try:
            self.client.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("closing %s: %s", self.describe(), _first_line(exc))


__all__ = ["ServerStore"]
