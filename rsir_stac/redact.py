"""What the HTTP service writes where others can read it: server paths cut to
their last component in error details and asset hrefs, and credentials
redacted from the access log.

``serve`` shows error details and stored hrefs to clients who must not learn
the server's folder layout (:func:`redact_paths`, :func:`public_href`), and
logs request URLs that may carry the service key or a signed URL's token
(:func:`redact_secrets`; :class:`RedactKeyFilter` is set on uvicorn's access
log by ``serve``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: Absolute POSIX paths (a folder part, then a last component); URLs and API paths are left alone.
_PATH_RE = re.compile(r"(?<![\w:/.~-])(/(?:[^\s/'\"<>(),;]+/)+)([^\s/'\"<>(),;]*)")


def redact_paths(text: str) -> str:
    """``text`` with every absolute server path cut to its last component (``/srv/a/b.tif`` → ``b.tif``)."""
    def sub(m: re.Match) -> str:
        if m.group(1).startswith(("/api/", "/static/", "/docs")):
            return m.group(0)
        return m.group(2) or "(server folder)"
    return _PATH_RE.sub(sub, text)


def public_href(href: Any) -> Any:
    """A stored asset href safe to show to clients: URLs unchanged, a local path cut to its file name."""
    if not isinstance(href, str) or "://" in href:
        return href
    return href.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


#: Query parameters that carry the service key (``api_key`` on image URLs, the map page's ``key``),
#: by their decoded, lower-case name; any name like a key, token, secret or password is redacted too
#: (:data:`_SECRET_NAME`).
SECRET_PARAMS = ("api_key", "key")
#: A decoded, lower-case parameter name that looks like it carries a credential: ``apikey``, ``api-key``,
#: ``apiKey``, ``token``, ``access_token``, ``secret``, ``client_secret``, ``password``, ``passwd``, ``pwd``,
#: ``auth``, ``sig``/``signature`` (a signed URL), ``x-amz-credential``, ``jwt``, ``session``...  A word ending
#: in one of them (``monkey``) or made longer (``keys``) is not.
_SECRET_NAME = re.compile(
    r"(?:^|[^a-z0-9])(?:api|access|auth|bearer|client|id|private|refresh|secret|service|session|x)?[-_. ]?"
    r"(?:key|apikey|token|secret|password|passwd|pwd|passphrase|auth|authorization|credentials?|signature|sig"
    r"|jwt|session|sessionid)(?:$|[^a-z0-9])")
#: A ``name=value`` pair of a URL's query.  A value runs to the next ``&`` (the separator the service
#: splits on), so a key holding ``;`` is redacted whole (a secret pair after a ``;`` inside a value
#: redacts that value: :func:`_hides_secret`).
_QUERY_PAIR = re.compile(r"([?&;])([^=&;\s\"#?]*)=([^&\s\"#]*)")
#: Characters of a logged URL kept in the access log (the rest is counted, not written).
LOG_PATH_CHARS = 512


def _decoded_name(name: str) -> str:
    """A query parameter's name as a server reads it (``api%5Fkey``, ``%61pi_key``, ``API_KEY``, ``api+key``
    all decoded), lower case; decoded until it no longer changes (``%2561`` too)."""
    from urllib.parse import unquote_plus

    for _ in range(4):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower()


def is_secret_name(name: str) -> bool:
    """Whether a query parameter's name (as sent: it is decoded here) looks like it carries a credential:
    :data:`SECRET_PARAMS`, or a key, token, secret or password under any common spelling."""
    decoded = _decoded_name(name)
    return decoded in SECRET_PARAMS or bool(_SECRET_NAME.search(decoded))


def _hides_secret(value: str) -> bool:
    """Whether a parameter's value, decoded, holds a ``name=value`` pair with a secret name
    (``a=1%26api_key%3DKEY``: a key smuggled inside another parameter)."""
    decoded = _decoded_name(value)
    return "=" in decoded and any(is_secret_name(m.group(2)) for m in _QUERY_PAIR.finditer("?" + decoded))


def redact_secrets(text: str) -> str:
    """``text`` (a logged URL or log line) with the value of every query parameter whose decoded name looks
    like a key, token, secret or password (:func:`is_secret_name`) replaced by ``***``, however the name is
    spelt; so is a value that itself holds such a parameter, encoded."""
    if "=" not in text:
        return text

    def sub(m: re.Match) -> str:
        if is_secret_name(m.group(2)) or _hides_secret(m.group(3)):
            return f"{m.group(1)}{m.group(2)}=***"
        return m.group(0)

    return _QUERY_PAIR.sub(sub, text)


def shorten(text: str, limit: int = LOG_PATH_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters not logged]"


def log_safe(text: str) -> str:
    """A URL (or log line) as the access log writes it: secrets redacted (:func:`redact_secrets`, on the
    whole text, so no cut can leave part of a value), then cut to :data:`LOG_PATH_CHARS`."""
    return shorten(redact_secrets(text))


class RedactKeyFilter(logging.Filter):
    """Logging filter for uvicorn's access log (:func:`log_safe`): the value of every query parameter
    named like a key, token, secret or password (by decoded name: ``api%5Fkey=``, ``%61pi_key=``,
    ``apiKey=``, ``access_token=`` alike) becomes ``***``, and a logged URL is cut to
    :data:`LOG_PATH_CHARS` characters with a marker."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(log_safe(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
            if not record.args:
                record.msg = shorten(record.msg, 2 * LOG_PATH_CHARS)
        return True


__all__ = ["LOG_PATH_CHARS", "SECRET_PARAMS", "RedactKeyFilter", "is_secret_name", "log_safe", "public_href",
           "redact_paths", "redact_secrets", "shorten"]
