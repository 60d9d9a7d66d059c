"""JSON decoder error messages: what is wrong with a JSON document in words its writer can act on,
for the exceptions :func:`json.loads` raises (``JSONDecodeError``, ``UnicodeDecodeError``, Python's
4,300-digit limit on integer text, ``RecursionError`` on deep nesting) rather than Python's own text
("use sys.set_int_max_str_digits() to increase the limit")."""

from __future__ import annotations

import json


def json_problem(exc: BaseException) -> str:
    """What ``exc`` (raised by :func:`json.loads`) says is wrong, one line: "not valid JSON (Expecting
    value at line 1 column 3)", "not UTF-8 text", "JSON nested too deeply", "JSON holding a number with
    more than 4,300 digits"."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, ValueError) and "digits" in str(exc):
        return "JSON holding a number with more than 4,300 digits"
    text = " ".join(str(exc).split())
    return f"not valid JSON ({text[:200]})"


__all__ = ["json_problem"]
