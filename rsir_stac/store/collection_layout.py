"""The vector layout of a Qdrant collection, and whether one rsir-stac did not make can become an index.

rsir-stac stores one unnamed dense vector per point, compared by Euclidean distance, and records its
metadata on the collection (:class:`~rsir_stac.store.records.CollectionMeta`).  A collection made by
another tool (in the dashboard, by a script, by another application) is taken over only when it is
empty and already has that layout; anything else is refused before a byte is written, in words that
say what it holds (:func:`refuse_foreign`).  Layouts follow qdrant-client's ``CollectionInfo``.
"""

from __future__ import annotations

from typing import Any

from rsir_stac.errors import IncompatibleIndexError


def loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (localhost, 127.0.0.0/8, ::1)."""
    from urllib.parse import urlparse

    from rsir_stac.allowed_hosts import is_loopback

    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        return False
    return is_loopback(host)


def layout_problem(info: Any) -> str | None:
    """Why a collection's vectors are not the one unnamed dense vector per point that rsir-stac
    stores (named vectors, multivectors, none), in words; None when they are."""
    named = named_vectors(info)
    if named:
        return f"it has named vectors ({', '.join(repr(n) for n in named)}); rsir-stac stores one unnamed vector"
    vec = info.config.params.vectors
    if vec is None or isinstance(vec, dict) and not vec:
        return "it has no dense vector"
    if isinstance(vec, dict):
        vec = vec.get("")
    if getattr(vec, "multivector_config", None) is not None:
        return "it holds multivectors; rsir-stac stores one vector per point"
    return None


def named_vectors(info: Any) -> list[str]:
    """Names of a collection's named dense vectors ([] for one unnamed vector)."""
    vec = info.config.params.vectors
    return sorted(str(k) for k in vec if k != "") if isinstance(vec, dict) else []


def vector_params(info: Any) -> tuple[int | None, str | None]:
    """(size, distance name) of the default dense vector of a collection."""
    vec = info.config.params.vectors
    if isinstance(vec, dict):
        vec = vec.get("") or next(iter(vec.values()), None)
    if vec is None:
        return None, None
    dist = getattr(vec.distance, "value", vec.distance)
    return int(vec.size), str(dist)


def foreign_layout(info: Any) -> str:
    """What a collection without rsir-stac metadata holds, in words: its points and its vectors
    (``"5 points, 64-d Cosine vectors"``, ``"0 points, named vectors 'img'"``)."""
    named = named_vectors(info)
    count = int(getattr(info, "points_count", None) or 0)
    points = f"{count} point{'' if count == 1 else 's'}"
    if named:
        return f"{points}, named vectors {', '.join(repr(n) for n in named)}"
    dim, distance = vector_params(info)
    return f"{points}, {dim}-d {distance} vectors" if dim is not None else f"{points}, no dense vector"


def refuse_foreign(info: Any, dim: int, where: str) -> None:
    """Raise IncompatibleIndexError (naming the collection as ``where``) unless a collection
    without rsir-stac metadata can become an rsir-stac index: empty, one unnamed ``dim``-d vector,
    Euclidean distance.  Nothing is written
    into another tool's collection, and a Cosine or named-vector layout is never searched as if
    it were Euclidean."""
    size, distance = vector_params(info)
    count = int(getattr(info, "points_count", None) or 0)
    why = layout_problem(info)
    if why is None and distance != "Euclid":
        why = f"it ranks by {distance} distance; rsir-stac ranks by Euclidean distance"
    elif why is None and size != dim:
        why = f"it holds {size}-d vectors, not the model's {dim}-d"
    elif why is None and count:
        why = f"it holds {count} point{'' if count == 1 else 's'} another tool wrote"
    if why:
        raise IncompatibleIndexError(
            f"{where} was not made by rsir-stac (no rsir-stac metadata) and cannot become an index: "
            f"{why}; pass another --qdrant-collection NAME (a new collection is created)")


__all__ = ["foreign_layout", "layout_problem", "loopback_url", "named_vectors", "refuse_foreign", "vector_params"]
