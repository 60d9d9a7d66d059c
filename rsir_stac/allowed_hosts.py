"""The Host allow-list (DNS rebinding protection): which ``Host`` header names a service answers to.

A page in the user's browser can make its own name resolve to 127.0.0.1 (DNS rebinding) and
then read a local service's answers as same-origin; it cannot make the browser send this
service's name in ``Host``.  So :class:`rsir_stac.httpguard.Guard` refuses (403) a request whose
``Host`` (:func:`host_name`) is not on the allow-list (:func:`host_allowed`): by default the
loopback names and the bound address (:func:`default_allowed_hosts`), for a wildcard bind also
the machine's names and whichever of its addresses a connection came in on
(:data:`LOCAL_ADDRESS`, :func:`is_local_address`); ``--allow-host`` adds names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

#: Names that always reach a service bound to the loopback interface.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """Host names a service bound to ``bind_host`` answers to by default.

    Loopback names always; the bound address itself; for a wildcard bind
    (``0.0.0.0``/``::``) also this machine's host name, fully qualified name
    and the addresses they resolve to, and (:data:`LOCAL_ADDRESS`) whichever
    address of the machine a connection came in on, given as an IP (a host
    name may resolve to loopback only).  Other names need ``--allow-host``.
    """
    hosts = list(LOCAL_HOSTS)
    h = bind_host.strip("[]")
    if h in ("0.0.0.0", "::", ""):
        hosts.append(LOCAL_ADDRESS)  # any address of this machine a client connected to, typed as an IP
        names = {socket.gethostname(), socket.getfqdn()}
        for name in list(names):
            try:
                names.update(ai[4][0] for ai in socket.getaddrinfo(name, None))
            except OSError:
                pass
        hosts += sorted(n for n in names if n)
    elif h not in hosts:
        hosts.append(h)
    return tuple(dict.fromkeys(x.lower() for x in hosts))


#: An allowed-hosts entry (never a host name: ``<`` cannot be in one) that admits an IP
#: literal equal to the address the connection came in on; :func:`default_allowed_hosts` adds it
#: for a wildcard bind.
LOCAL_ADDRESS = "<local address>"


def is_local_address(host: str, scope) -> bool:
    """True when ``host`` is the IP address the connection came in on (``scope["server"]``): a
    wildcard bind answers on every address of the machine, and a client that typed one of them
    is not a rebinding attack (which needs a name).  Names are never matched here."""
    server = scope.get("server")
    if not server:
        return False
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(str(server[0]).strip("[]"))
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host part of a ``Host`` header value (no port, no IPv6 brackets), lower case.  A value
    whose port is not digits (``127.0.0.1:8000@evil.com``) is returned whole, so no allowed name
    matches it (RFC 9110: ``Host = uri-host [ ":" port ]``)."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return v[1:]
        rest = v[end + 1:]
        return v[1:end] if not rest or (rest[0] == ":" and _port(rest[1:])) else v
    if v.count(":") == 1:
        name, port = v.split(":", 1)
        if not _port(port):
            return v
        v = name
    return v.rstrip(".")


def _port(text: str) -> bool:
    """Whether ``text`` is a port as a Host header writes it: ASCII digits (``str.isdigit`` takes ``²``)."""
    return text.isascii() and text.isdigit()


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """True when ``host`` (a name from :func:`host_name`) matches an allowed entry.

    Entries are names or addresses, ``*`` (anything), or ``.example.org``
    (the name and its subdomains).
    """
    for a in allowed:
        a = a.strip().lower().strip("[]")
        if a == LOCAL_ADDRESS:
            continue  # matched against the connection in the middleware, never by name
        if a == "*" or host == a or (a.startswith(".") and (host == a[1:] or host.endswith(a))):
            return True
    return False


__all__ = ["LOCAL_ADDRESS", "LOCAL_HOSTS", "default_allowed_hosts", "host_allowed", "host_name", "is_local_address",
           "is_loopback"]
