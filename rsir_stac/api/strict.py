"""Operations take only the fields they name: a misspelt query parameter or form field
(``bbx=``, ``offest=``) is refused with 422, as an extra field of a JSON body is
(:class:`rsir_stac.api.bodies.StrictBody`), instead of filtering or paging nothing without
a word; so is a single-valued parameter given twice (``k=1&k=2``: which one was meant?).

No postponed annotations: FastAPI reads the dependency's annotations at definition time.
"""

import types
import typing
from typing import Any

#: Names every operation takes besides its own: the API key may come as a query parameter
#: (:func:`rsir_stac.serve._key_scheme`).
ALWAYS_ALLOWED = frozenset({"api_key"})


def lone_surrogate(data: Any, where: str = "body", depth: int = 0) -> str | None:
    """Where in a decoded JSON value a string holds a lone UTF-16 surrogate (``"\\ud800"`` is valid
    JSON but not text: it cannot be encoded, so the store and the logs fail on it), e.g.
    ``body.collection[1]``; None when there is none.  Depth is bounded by the JSON parser's own."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if depth > 64:
        return None
    if isinstance(data, dict):
        for key, value in data.items():
            found = lone_surrogate(key, f"{where} (a field name)", depth + 1) or \
                lone_surrogate(value, f"{where}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(data, (list, tuple)):
        for n, value in enumerate(data):
            found = lone_surrogate(value, f"{where}[{n}]", depth + 1)
            if found:
                return found
    return None


def refuse_lone_surrogates(data: Any) -> Any:
    """``data`` (a body before validation), or ValueError (422) naming the field whose text holds a
    lone surrogate (:func:`lone_surrogate`)."""
    found = lone_surrogate(data)
    if found:
        raise ValueError(f"{found} holds a lone UTF-16 surrogate (an escape like \\ud800 with no pair), which is "
                         "not text; send valid Unicode")
    return data


def _repeatable(annotation: Any) -> bool:
    """Whether a parameter of this annotation takes several values (``list[str] | None``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_repeatable(a) for a in typing.get_args(annotation))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)


def declared_fields(route: Any) -> tuple[frozenset, frozenset, frozenset, frozenset]:
    """``(query names, form names, names that may repeat, JSON body fields)`` of a FastAPI
    ``APIRoute``, its dependencies' included (their aliases, as a client spells them); the JSON body
    fields are those of a body model (``req: Model = Body(...)``), whose parameter is no field."""
    from fastapi import params

    query_params, body_params, todo = [], [], [route.dependant]
    while todo:  # the dependant and its sub-dependencies (FastAPI's Dependant tree)
        d = todo.pop()
        query_params += list(getattr(d, "query_params", ()))
        body_params += list(getattr(d, "body_params", ()))
        todo += list(getattr(d, "dependencies", ()))
    form = [p for p in body_params if isinstance(p.field_info, (params.Form, params.File))]
    json_fields = frozenset(f.alias or name for p in body_params if p not in form
                            for name, f in getattr(p.field_info.annotation, "model_fields", {}).items())
    many = frozenset(p.alias for p in query_params + body_params if _repeatable(p.field_info.annotation))
    return frozenset(p.alias for p in query_params), frozenset(p.alias for p in form), many, json_fields


def moved(names: frozenset, where: str, fix: str) -> dict[str, str]:
    """``{name: message}`` for fields of an operation sent in the wrong part of the request: each
    ``name`` "was sent in the {where}", and ``fix`` (``{name}`` filled in) says where it goes."""
    return {n: f"{n!r} was sent in the {where}; {fix.format(name=n)}" for n in names}


def unknown_fields(given: list[str], known: frozenset, many: frozenset,
                   moves: dict[str, str] | None = None) -> list[dict]:
    """FastAPI-style validation errors (``loc``, ``msg``, ``type``) for the names in ``given``
    (in order, repeats kept) that are not ``known``, and for a single-valued name given twice.
    ``moves``: the operation's fields of another part of the request (:func:`moved`), each named with
    where it goes when sent here."""
    moves = moves or {}
    errors, seen = [], set()
    for name in given:
        if name in moves and name not in known and name not in ALWAYS_ALLOWED:
            errors.append({"type": "extra_forbidden", "loc": ("query", name), "input": name, "msg": moves[name]})
        elif name not in known and name not in ALWAYS_ALLOWED:
            every = known | frozenset(moves)
            fields = (f"check its spelling (the fields are {', '.join(sorted(every))})" if every
                      else "this operation takes none here")
            errors.append({"type": "extra_forbidden", "loc": ("query", name), "input": name,
                           "msg": f"{name!r} is not a field of this operation; {fields}"})
        elif name in seen and name not in many:
            errors.append({"type": "extra_forbidden", "loc": ("query", name), "input": name,
                           "msg": f"{name!r} is given more than once; give it once"})
        seen.add(name)
    return errors


def strict_fields():
    """A FastAPI dependency refusing (422) query parameters and form fields the operation does
    not declare (:func:`unknown_fields`).  Bodies read by :func:`rsir_stac.api.bodies.read_query`
    check their own form fields (that reader sets the form's limits, so the form is not read here
    first); the form of an operation with ``Form``/``File`` parameters is already parsed, by
    FastAPI, when this runs."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError

    cache: dict[int, tuple[frozenset, frozenset, frozenset]] = {}

    async def check(request: Request) -> None:
        route = request.scope.get("route")
        if route is None or not hasattr(route, "dependant"):  # not an API route (older frameworks: no check)
            return
        if route.path.endswith(".png"):  # image URLs: map and web clients add their own (cache busters)
            return
        if id(route) not in cache:
            cache[id(route)] = declared_fields(route)
        query, form, many, body = cache[id(route)]
        in_url = {**moved(form, "URL", "this operation takes it in its multipart form: send it there (curl -F "
                                       "{name}=...)"),
                  **moved(body, "URL", "this operation takes it in its JSON body: send it there "
                                       "({{\"{name}\": ...}})")}
        errors = unknown_fields([k for k, _ in request.query_params.multi_items()], query, many, in_url)
        if form:
            fields = await request.form()  # the form FastAPI parsed (with its limits) for this operation
            in_form = moved(query, "form", "this operation takes it in its URL: send it there (...?{name}=...)")
            errors += [{**e, "loc": ("body", e["loc"][1])}
                       for e in unknown_fields([k for k, _ in fields.multi_items()], form, many, in_form)]
        if errors:
            raise RequestValidationError(errors)

    return check


__all__ = ["ALWAYS_ALLOWED", "declared_fields", "moved", "strict_fields", "unknown_fields"]
