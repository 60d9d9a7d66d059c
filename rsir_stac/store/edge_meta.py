"""The collection metadata of an Edge index (``<collection>.meta.json``), and its recovery.

Read at open, checked against the shard's own vector size and the model id the
stored points carry, and written again from them where the file is missing,
unreadable or was modified (as ``check --repair`` does).  :class:`EdgeMetaMixin` is
part of :class:`~rsir_stac.store.edge.EdgeStore`, on its attributes.
"""

from __future__ import annotations

import json
import logging

from rsir_stac.errors import StoreError
from rsir_stac.store.folder import _write_json_atomic
from rsir_stac.store.payloads import unpack_payload
from rsir_stac.store.records import CollectionMeta

log = logging.getLogger("rsir_stac.store.edge")  # the name the index's messages have always carried


class EdgeMetaMixin:
    """The metadata of an :class:`~rsir_stac.store.edge.EdgeStore` read, checked against its
    shard and points, and recovered from them (a part of that class, on its attributes)."""

    def meta_disagrees(self) -> str | None:
        """Why ``rsir_tiles.meta.json`` disagrees with the shard (its vector size) or the stored
        points (their ``model_id``, the most common among up to 64), else None."""
        if self._meta is None or self._shard is None:
            return None
        dim, model = self._shard_dim(), self._points_model_id()
        if (dim is not None and dim != self._meta.dim) or (model is not None and model != self._meta.model_id):
            return (f"{self.meta_path.name} says {self._meta.dim}-d vectors of model {self._meta.model_id!r}, but the "
                    f"shard holds {dim}-d vectors and the points say model {model!r}")
        return None

    def _points_model_id(self, n: int = 64) -> str | None:
        """The ``model_id`` most of the first ``n`` stored points carry (None: no point has one)."""
        import qdrant_edge as q

        try:
            recs, _ = self._shard.scroll(q.ScrollRequest(limit=n, with_payload=True, with_vector=False))
        except Exception:  # noqa: BLE001
            return None
        ids = [unpack_payload(r.payload).get("model_id") for r in recs]
        ids = [m for m in ids if isinstance(m, str) and m]
        return max(set(ids), key=ids.count) if ids else None

    def _meta_from_points(self, dim: int, model_id: str) -> CollectionMeta | None:
        """When ``<collection>.meta.json`` names another model or size than a writer asks for, but the
        shard holds ``dim``-d vectors and the stored points say ``model_id`` (the file was modified, not
        the index built with another model): the metadata written again from them, as ``check
        --repair`` does (logged); else None (a real mismatch, refused by the caller)."""
        if self._shard_dim() != dim or self._points_model_id() != model_id:
            return None
        meta = CollectionMeta.new(dim, model_id)
        _write_json_atomic(self.meta_path, meta.to_dict())
        log.warning("index %s: %s said %d-d vectors of model %r, but the shard and its points hold %d-d vectors of "
                    "model %s; wrote it again from the stored points", self.index, self.meta_path.name,
                    self._meta.dim if self._meta else 0, self._meta.model_id if self._meta else "", dim, model_id)
        return meta

    def _recovered_meta(self, why: str) -> CollectionMeta | None:
        """The collection metadata read back from the shard (vector size) and the stored points'
        payloads (``model_id``, verified by the digest ledger on every check), written again
        when the index is writable; None for an empty shard or one without ``model_id``s."""
        dim, model_id = self._shard_dim(), self._points_model_id()
        if dim is None or model_id is None:
            return None
        meta = CollectionMeta.new(dim, model_id)
        self.meta_recovered = why
        if not self.read_only and not self._private:
            _write_json_atomic(self.meta_path, meta.to_dict())
            log.warning("index %s: %s; wrote it again from the stored points (model %s, %d-d)", self.index, why,
                        model_id, dim)
        else:
            log.warning("index %s: %s; read the model (%s, %d-d) from the stored points", self.index, why,
                        model_id, dim)
        return meta

    def _read_meta(self) -> CollectionMeta | None:
        try:
            doc = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"index metadata {self.meta_path} is unreadable ({exc}); restore it or rebuild the index") from None
        meta = CollectionMeta.from_dict(doc)
        if meta is None:
            raise StoreError(f"index metadata {self.meta_path} is not rsir-stac metadata; restore it or rebuild the index")
        return meta

    def _shard_dim(self) -> int | None:
        """Vector size from the shard's own edge_config.json (fallback when our metadata is lost)."""
        try:
            cfg = json.loads((self.shard_dir / "edge_config.json").read_text(encoding="utf-8"))
            return int(cfg["vectors"][""]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


__all__ = ["EdgeMetaMixin"]
