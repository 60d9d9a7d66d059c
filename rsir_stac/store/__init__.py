"""Vector store: tile embeddings plus geo-metadata in Qdrant Edge or a Qdrant server.

>>> with open_store("./rsir-index") as store:                    # doctest: +SKIP
...     store.ensure_collection(dim=128, model_id="effnet-lite0-triplet-v1")
...     store.upsert(points)
...     hits = store.search(vector, k=10, flt=SearchFilter(bbox=(5, 45, 10, 48)))

The engines (``qdrant_edge``, ``qdrant_client``) are imported only when a
store is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from rsir_stac.errors import InputError
from rsir_stac.store.base import Store
from rsir_stac.store.filters import SearchFilter
from rsir_stac.store.records import IndexInfo, Point, SearchHit

log = logging.getLogger(__name__)

DEFAULT_INDEX = "./rsir-index"
DEFAULT_COLLECTION = "rsir_tiles"
ENV_URL = "RSIR_QDRANT_URL"
ENV_API_KEY = "RSIR_QDRANT_API_KEY"
ENV_COLLECTION = "RSIR_QDRANT_COLLECTION"

_COLLECTION: ContextVar[str | None] = ContextVar("rsir_qdrant_collection", default=None)


def check_collection_name(name: str, what: str = "--qdrant-collection") -> str:
    """``name`` when it can name a Qdrant collection (letters, digits, ``_ - .``, 1..255 characters,
    not starting with ``-`` or ``.``); else InputError naming ``what`` and the rule."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}", str(name)):
        raise InputError(f"{what} {name!r} is not a collection name; use letters, digits, '_', '-' and '.' "
                         "(e.g. rsir_tiles_v2)")
    return str(name)


@contextmanager
def using_collection(name: str | None) -> Iterator[None]:
    """Within this block, :func:`open_store` opens the Qdrant collection ``name`` (a server's or
    qdrant-client folder's) when not given one; None changes nothing.  The CLI's
    ``--qdrant-collection`` option works through it."""
    token = _COLLECTION.set(name) if name else None
    try:
        yield
    finally:
        if token is not None:
            _COLLECTION.reset(token)


def chosen_collection() -> str | None:
    """The collection :func:`using_collection` or ``$RSIR_QDRANT_COLLECTION`` names, else None."""
    return _COLLECTION.get() or os.environ.get(ENV_COLLECTION) or None


def default_collection() -> str:
    """The Qdrant collection a ``--qdrant-url`` store opens: :func:`using_collection`'s, else
    ``$RSIR_QDRANT_COLLECTION``, else ``rsir_tiles``."""
    return chosen_collection() or DEFAULT_COLLECTION


def _upload_settings() -> dict[str, int]:
    """Upload tuning for the server path: ``RSIR_QDRANT_BATCH`` (points per request,
    default 256), ``RSIR_QDRANT_PARALLEL`` (upload processes, default 1) and
    ``RSIR_QDRANT_RETRIES`` (default 3)."""
    out = {}
    for env, key in (("RSIR_QDRANT_BATCH", "batch_size"), ("RSIR_QDRANT_PARALLEL", "parallel"),
                     ("RSIR_QDRANT_RETRIES", "max_retries")):
        raw = os.environ.get(env)
        if raw:
            try:
                out[key] = int(raw)
            except ValueError:
                raise InputError(f"{env}={raw!r} is invalid; give a whole number") from None
            if out[key] < (0 if key == "max_retries" else 1):
                raise InputError(f"{env}={raw!r} is invalid; give a positive whole number")
    return out


def open_store(
    index: str | Path | None = None,
    *,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str | None = None,
    read_only: bool = False,
) -> Store:
    """Open the vector store.

    Precedence: ``qdrant_url`` (a server, ``":memory:"`` for qdrant-client's
    in-process mode, or a path for its on-disk local mode) > ``index`` (an
    embedded Qdrant Edge index directory) > ``$RSIR_QDRANT_URL`` > ``./rsir-index``.
    ``api_key`` defaults to ``$RSIR_QDRANT_API_KEY``; ``collection``, with a Qdrant URL,
    to :func:`default_collection` (an embedded index holds one collection, ``rsir_tiles``).
    Giving both ``index`` and ``qdrant_url`` is an error.
    """
    if index is not None and qdrant_url:
        raise InputError(f"both --index {index} and --qdrant-url {qdrant_url} were given; pass only one of them")
    if index is None and not qdrant_url:
        qdrant_url = os.environ.get(ENV_URL) or None
    if qdrant_url:
        from rsir_stac.store.server import ServerStore

        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
        return ServerStore(qdrant_url, api_key=key, collection=collection or default_collection(),
                           read_only=read_only, **_upload_settings())
    from rsir_stac.store.edge import EdgeStore

    return EdgeStore(index if index is not None else DEFAULT_INDEX, collection=collection or DEFAULT_COLLECTION,
                     read_only=read_only)


__all__ = ["IndexInfo", "Point", "SearchFilter", "SearchHit", "Store", "chosen_collection", "default_collection", "open_store",
           "using_collection"]
