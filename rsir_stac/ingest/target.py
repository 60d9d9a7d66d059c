"""The index an ingest writes to: opened up front, or created (folder and collection) only
when the first point is written, so that a run that writes nothing leaves no index behind."""

from __future__ import annotations

import os


def _open_or_defer(index, qdrant_url, api_key):
    """``(store, None)``, or ``(None, opener)`` when the embedded index folder does
    not exist yet: it is then created on the first write, not before."""
    from rsir_stac.store import DEFAULT_INDEX, ENV_URL, open_store

    def opener():
        return open_store(index, qdrant_url=qdrant_url, api_key=api_key)

    embedded = not qdrant_url and (index is not None or not os.environ.get(ENV_URL))
    if embedded:
        path = os.path.abspath(os.path.expanduser(str(index if index is not None else DEFAULT_INDEX)))
        if not os.path.lexists(path):
            from rsir_stac.store.folder import require_creatable

            require_creatable(path, "--index")
            return None, opener
    return opener(), None


class _LazyStore:
    """The store as the pipeline sees it.

    A missing collection is created (and a missing index folder opened) only
    when the first points are written; until then ``existing_ids`` is empty and
    ``flush`` does nothing.  An existing collection is checked against the model
    at once.
    """

    def __init__(self, store, opener, dim: int, model_id: str, *, own: bool, unfinished: str = "") -> None:
        self._store, self._opener, self._own = store, opener, own
        self._dim, self._model_id = dim, model_id
        self._unfinished = unfinished  # marked on a collection this run creates, until :meth:`finished`
        self._ready = False
        if store is not None:
            try:
                if store.meta() is not None:
                    store.ensure_collection(dim, model_id)  # IncompatibleIndexError before any read
                    self._ready = True
            except BaseException:
                if own:
                    store.close()
                raise

    def _writable(self):
        if self._store is None:
            self._store = self._opener()
        if not self._ready:
            self._store.ensure_collection(self._dim, self._model_id)
            self._ready = True
            if self._unfinished:
                self._store.mark_unfinished(self._unfinished)
        return self._store

    def finished(self) -> None:
        """Clear the collection's unfinished mark (:meth:`Store.mark_unfinished`), if it has one."""
        if self._ready:
            meta = self._store.meta()
            if meta is not None and meta.unfinished:
                self._store.mark_unfinished("")

    def existing_ids(self, ids):
        return self._store.existing_ids(ids) if self._ready else set()

    def retrieve(self, ids, with_vectors: bool = False):
        return self._store.retrieve(ids, with_vectors=with_vectors) if self._ready else []

    def count(self, flt=None) -> int:
        return self._store.count(flt) if self._ready else 0

    def upsert(self, points) -> None:
        self._writable().upsert(points)

    def flush(self) -> None:
        if self._ready:
            self._store.flush()

    def optimize(self) -> bool:
        return self._store.optimize() if self._ready else False

    def close(self) -> None:
        if self._own and self._store is not None:
            self._store.close()

    def __getattr__(self, name: str):
        return getattr(self._writable(), name)
