"""Relocated sources (``reindex --relocate OLD=NEW``): stored hrefs under a moved folder or URL
prefix, read from where they are now.

A local ``NEW`` is stored absolute, so an index never depends on the working directory of the
command that moved it; rules that match no stored href are reported with the folders the index
does store, so a mistyped ``OLD`` is not silent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rsir_stac.errors import InputError


def parse_relocation(text: str) -> tuple[str, str]:
    """``OLD=NEW`` (``--relocate``): sources stored under the folder or URL prefix ``OLD`` are
    read from ``NEW``.  A local ``NEW`` is made absolute (``~`` expanded, relative to the
    working directory), so the index does not depend on where a later command runs; a
    relative local ``OLD`` is resolved the same way (:class:`Relocations` also matches it as
    typed).  URLs are left as they are.  InputError when it is not ``OLD=NEW``."""
    old, sep, new = str(text).partition("=")
    old, new = old.strip(), new.strip()
    if not sep or not old.rstrip("/") or not new.rstrip("/"):
        raise InputError(f"--relocate {text!r} is not OLD=NEW; give the folder the sources were ingested from and "
                         "where they are now, e.g. --relocate /data/old=/data/new")
    return _local_abs(old), _local_abs(new)


def _is_url(text: str) -> bool:
    return "://" in text


def _local_abs(path: str) -> str:
    """A local path absolute (``~`` expanded, against the working directory), without a
    trailing slash; a URL as it is, without a trailing slash."""
    if _is_url(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def relocated(href: str, relocate: Sequence[tuple[str, str]]) -> str:
    """``href`` with the first matching ``(OLD, NEW)`` prefix replaced; a prefix matches the
    whole ``href`` or a leading run of whole path components (``/a/b`` not ``/a/bc``)."""
    for old, new in relocate:
        if _under(href, old):
            return _moved(href, old, new)
    return href


def _under(href: str, prefix: str) -> bool:
    return href == prefix or href.startswith(prefix.rstrip("/") + "/")


def _moved(href: str, old: str, new: str) -> str:
    return new.rstrip("/") + href[len(old.rstrip("/")):]


#: Folders of stored hrefs kept to name in the warning about a ``--relocate`` that matched nothing.
_STORED_FOLDERS = 5


class Relocations:
    """The ``--relocate`` rules of a run: each ``(OLD, NEW)`` with ``OLD`` absolute (and, when it
    was typed relative, also as typed, for hrefs stored relative by earlier versions), how many
    stored hrefs each matched, and a few folders of the stored hrefs (for :meth:`unmatched`)."""

    def __init__(self, rules: Sequence[tuple[str, str] | str]) -> None:
        self.rules: list[tuple[str, tuple[str, ...], str]] = []
        for r in rules:
            if isinstance(r, str):
                typed = r.partition("=")[0].strip()
                old, new = parse_relocation(r)
            else:
                typed, old, new = str(r[0]), _local_abs(str(r[0])), _local_abs(str(r[1]))
            typed = typed.rstrip("/") or typed
            olds = (old,) if typed in (old, "") or _is_url(typed) else (old, typed)
            self.rules.append((typed, olds, new))
        self.matched = [0] * len(self.rules)
        self.folders: dict[str, int] = {}
        self._found: dict[str, str] = {}  # moved href -> the href read (itself, or the stored one still there)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __call__(self, href: str) -> str:
        """``href`` moved by the first rule it falls under; a local file that is not at its new place
        but still at its stored one is read where it is (a rule for a folder of which only some
        files moved)."""
        for i, (_, olds, new) in enumerate(self.rules):
            for old in olds:
                if _under(href, old):
                    self.matched[i] += 1
                    return self._there(href, _moved(href, old, new))
        if self.rules:
            folder = href.rsplit("/", 1)[0] if "/" in href else href
            if folder in self.folders or len(self.folders) < _STORED_FOLDERS:
                self.folders[folder] = self.folders.get(folder, 0) + 1
        return href

    def _there(self, stored: str, moved: str) -> str:
        if _is_url(moved) or _is_url(stored):
            return moved
        found = self._found.get(moved)
        if found is None:
            found = self._found[moved] = (moved if os.path.exists(moved) or not os.path.exists(stored)
                                          else stored)
        return found

    def unmatched(self) -> list[str]:
        """One line per rule that matched no stored href, naming the folders the index stores."""
        folders = sorted(self.folders, key=lambda f: -self.folders[f])
        if folders:
            fix = (f"the index stores its other sources under {', '.join(folders[:3])}"
                   + (" ..." if len(folders) > 3 else "") + f"; give OLD as one of those folders, e.g. "
                   f"--relocate {folders[0]}=NEW")
        else:
            fix = "every source of the index matched another --relocate; drop this one"
        return [f"--relocate {typed}={new} matched no source of the index (none is stored under "
                f"{' or '.join(olds)}): {fix}" for (typed, olds, new), n in zip(self.rules, self.matched) if n == 0]


__all__ = ["Relocations", "parse_relocation", "relocated"]
