"""The rsir-stac metadata of a Qdrant collection (server, cluster or qdrant-client's local modes).

The metadata (dim, model_id, created_at, rsir_stac version) lives in the
collection's own ``config.metadata`` (Qdrant >= 1.16, qdrant-client >= 1.16).
When a server drops it (older servers ignore the field), it is kept in a
second one-point collection ``<name>__meta`` instead.  A collection without it
(made by another tool) is read as *foreign*, and adopted only when
:func:`~rsir_stac.store.collection_layout.refuse_foreign` lets it.
:class:`ServerMetaMixin` is part of :class:`~rsir_stac.store.server.ServerStore`,
on its attributes; the two small readers of qdrant-client's errors below serve both.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

from rsir_stac.errors import IncompatibleIndexError
from rsir_stac.store.collection_layout import foreign_layout, layout_problem, refuse_foreign, vector_params
from rsir_stac.store.records import CollectionMeta

log = logging.getLogger("rsir_stac.store.server")  # the name the store's messages have always carried

META_SUFFIX = "__meta"
_META_POINT = str(uuid.uuid5(uuid.NAMESPACE_URL, "rsir-stac/collection-meta"))


def _is_conflict(exc: Exception) -> bool:
    status = getattr(exc, "status_code", None)
    return status == 409 or "already exists" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ServerMetaMixin:
    """The metadata of a :class:`~rsir_stac.store.server.ServerStore` read, written and adopted
    (a part of that class, on its attributes)."""

    def _read_meta(self) -> CollectionMeta | None:
        """Metadata from config.metadata, else from ``<name>__meta``; vector size checked.  A
        collection without rsir-stac metadata (made by another tool) gets a stand-in with an empty
        model id, and :attr:`foreign` says why it cannot be searched (or written, if not empty)."""
        info = self._call("reading the collection", self.client.get_collection, self.collection)
        dim, distance = vector_params(info)
        meta = CollectionMeta.from_dict(getattr(info.config, "metadata", None))
        if meta is None:
            meta = self._read_meta_collection()
        self.foreign = None
        if meta is None:
            self.foreign = foreign_layout(info)
        problem = layout_problem(info)
        if meta is not None and problem:  # rsir-stac's metadata on a layout it never writes: no upload could work
            raise IncompatibleIndexError(f"{self.describe()} carries rsir-stac metadata, but {problem}; pass another "
                                         "--qdrant-collection NAME (a new collection is created)")
        if meta is None and dim is not None:
            log.debug("%s has no rsir-stac metadata; model_id is unknown", self.describe())
            meta = CollectionMeta(dim=dim, model_id="", created_at="", rsir_stac_version="", distance=distance or "Euclid")
        if meta is not None and dim is not None and dim != meta.dim:
            raise IncompatibleIndexError(
                f"{self.describe()} stores {dim}-d vectors but its metadata says {meta.dim}-d; use a new --collection"
            )
        if meta is not None and distance and distance != "Euclid":
            meta = dataclasses.replace(meta, distance=distance)
        return meta

    def _adopt_foreign(self, dim: int, model_id: str) -> None:
        """Make a collection without rsir-stac metadata this index (writing its metadata) when
        :func:`~rsir_stac.store.collection_layout.refuse_foreign` lets it; nothing to do for an rsir-stac collection or a read-only store."""
        if self.foreign is None:
            return
        refuse_foreign(self._call("reading the collection", self.client.get_collection, self.collection), dim,
                       self.describe())
        if not self.read_only:
            meta = CollectionMeta.new(dim, model_id)
            self._write_meta(meta)
            self._meta, self.foreign = meta, None

    def _read_meta_collection(self) -> CollectionMeta | None:
        name = self.collection + META_SUFFIX
        try:
            if not self.client.collection_exists(name):
                return None
            recs = self.client.retrieve(name, [_META_POINT], with_payload=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read %s: %s", name, _first_line(exc))
            return None
        return CollectionMeta.from_dict(recs[0].payload) if recs else None

    def _write_meta(self, meta: CollectionMeta) -> None:
        """Store metadata in config.metadata; fall back to ``<name>__meta`` when the server drops it."""
        from qdrant_client import models as m

        try:
            self.client.update_collection(self.collection, metadata=meta.to_dict())
            info = self.client.get_collection(self.collection)
            if CollectionMeta.from_dict(getattr(info.config, "metadata", None)) == meta:
                return
        except Exception as exc:  # noqa: BLE001
            log.debug("collection metadata unsupported: %s", _first_line(exc))
        name = self.collection + META_SUFFIX
        try:
            self.client.create_collection(name, vectors_config=m.VectorParams(size=1, distance=m.Distance.EUCLID))
        except Exception as exc:  # noqa: BLE001
            if not _is_conflict(exc):
                raise self._failure(exc, f"writing {name}") from None
        self._call("writing metadata", self.client.upsert, name,
                   [m.PointStruct(id=_META_POINT, vector=[0.0], payload=meta.to_dict())], wait=True)

    def _store_meta(self, meta: CollectionMeta) -> None:
        self._write_meta(meta)
        self._meta = meta


__all__ = ["META_SUFFIX", "ServerMetaMixin"]
