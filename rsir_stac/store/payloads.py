"""The stored form of points: payloads packed for the engine and read back.

Only the filtered fields (:data:`PAYLOAD_INDEXES`) are separate engine fields; the
rest of a tile's payload is one compact JSON string (:data:`PACKED`).  Here too:
points validated into engine rows (:func:`check_points`) and engine records made
into :class:`~rsir_stac.store.records.SearchHit` (:func:`hit_from_record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError
from rsir_stac.store.records import Point, SearchHit, normalize_id

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

#: Degrees from a pole at which a ``location`` nearer that pole is stored (about 2 cm): Qdrant's
#: geo index finds a point at latitude exactly 90 by no geo condition, and a plain latitude
#: range (not indexed) makes the engine read every payload of the index for an area at a pole.
#: Stored this far off, a tile centred on a pole is found by the indexed boxes that
#: :mod:`rsir_stac.store.engine_filters` sends for any area reaching that pole.
POLE_OFFSET = 2e-7


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
            if k == "location":
                top[k] = _off_pole(top[k])
        else:
            rest[k if type(k) is str else str(k)] = v
    if rest:
        top[PACKED] = _ENCODER.encode(rest)
    return top


def _off_pole(loc: Any) -> Any:
    """``loc`` (``{"lon", "lat"}``, degrees) with a latitude nearer a pole than
    :data:`POLE_OFFSET` moved out to it; anything else unchanged."""
    if isinstance(loc, dict):
        lat = loc.get("lat")
        if type(lat) in (int, float) and abs(lat) > 90.0 - POLE_OFFSET and abs(lat) <= 90.0:
            return {**loc, "lat": math.copysign(90.0 - POLE_OFFSET, lat)}
    return loc


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


def hit_from_record(rec: Any, with_vectors: bool, score: float | None = None) -> SearchHit:
    """An engine record (Edge or qdrant-client; scored or not) as a SearchHit."""
    return SearchHit(id=str(rec.id), score=float(rec.score) if score is None else score,
                     payload=unpack_payload(rec.payload), vector=_vector_of(rec.vector) if with_vectors else None)


__all__ = ["PACKED", "PAYLOAD_INDEXES", "check_points", "hit_from_record", "pack_payload", "to_jsonable",
           "unpack_payload"]
