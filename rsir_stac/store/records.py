"""Records of the store: points, hits, index summaries and collection metadata.

Small immutable records shared by every back end, with the point-id rule
(:func:`normalize_id`) and the check that a collection holds the vectors a
caller asks for (:func:`check_incompatible`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError

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
    unfinished: str = ""


@dataclass(frozen=True)
class CollectionMeta:
    """Durable facts about a collection, checked on every ``ensure_collection``."""

    dim: int
    model_id: str
    created_at: str
    rsir_stac_version: str
    distance: str = "Euclid"
    schema: int = META_SCHEMA
    #: While ``reindex`` or ``migrate`` writes the collection: what it copies from and since when
    #: (``""``: finished, or written by ingest, which any subset of a catalogue leaves valid).
    unfinished: str = ""

    @classmethod
    def new(cls, dim: int, model_id: str) -> CollectionMeta:
        from rsir_stac import __version__

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(dim=int(dim), model_id=str(model_id), created_at=now, rsir_stac_version=__version__)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["unfinished"]:
            del d["unfinished"]  # the file of a finished index is what earlier versions wrote
        return {"rsir_stac": d}

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
                unfinished=str(d.get("unfinished") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None


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


def check_incompatible(
    meta: CollectionMeta, dim: int, model_id: str, where: str, fresh: str = "a new --index"
) -> None:
    """Raise IncompatibleIndexError when ``meta`` differs from the requested dim/model."""
    if meta.dim != int(dim) or meta.model_id != str(model_id):
        from rsir_stac.model.bundle import shipped_hint, shipped_name

        old = f"--index {where[len('index '):]}" if where.startswith("index ") else "--index OLD"
        raise IncompatibleIndexError(
            f"{where} holds {meta.dim}-d vectors of model {meta.model_id!r}, not {int(dim)}-d vectors of "
            f"model {model_id!r}; use the same model{shipped_hint(meta.model_id)} or {fresh}, or move the index "
            f"to this model with `rsir-stac reindex {old} --to NEW --model {shipped_name(str(model_id)) or 'BUNDLE'}`"
            + ("" if shipped_name(str(model_id)) else f" (BUNDLE: the folder of model {model_id})")
        )
    if meta.distance != "Euclid":
        raise IncompatibleIndexError(f"{where} uses {meta.distance} distance, not Euclid; use {fresh}")


__all__ = ["CollectionMeta", "IndexInfo", "META_SCHEMA", "Point", "SearchHit", "check_incompatible", "normalize_id"]
