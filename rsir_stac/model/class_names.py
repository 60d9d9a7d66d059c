"""Class names as a user types them (``--classes``, ``--leave-out``), matched to the class folders
of a labelled image folder.

A name matches the folder whose name it is, or, when no folder has that exact name, the one
folder whose name is the same after Unicode NFC normalisation (macOS writes folder names
decomposed, NFD: ``Château`` typed on Linux is NFC), or the same after stripping surrounding
spaces (a folder named `` forest ``).  An option value is first taken whole, so that a class
whose name holds a comma can be named; otherwise it is a comma-separated list, whose consecutive
entries are joined back where they form a class name (``Roads, paved,Harbor Port``).  The
folder's real names are returned: files are read under them.
"""

from __future__ import annotations

import logging
import shlex
import unicodedata
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def find_class(name: str, classes: Sequence[str]) -> str | None:
    """The class of ``classes`` that ``name`` names (see the module), or None when none or
    more than one folder does."""
    if name in classes:
        return name
    for key in (_nfc, lambda n: _nfc(n).strip()):
        hits = [c for c in classes if key(c) == key(name)]
        if len(hits) == 1:
            return hits[0]
    return None


def match_classes(values: Iterable[str], classes: Sequence[str],
                  option: str = "--classes") -> tuple[list[str], list[str]]:
    """``(found, unknown)``: the classes the option ``values`` name (folder names, in the order
    named, each once) and the entries that name none (stripped, as typed).  Each value is a class
    name, or a comma-separated list of them (empty entries are skipped).  A run of entries read as
    one class whose entries each name a class too (folders ``a``, ``b`` and ``a,b``) is warned
    about, naming the other reading and how to ask for it (``option`` once for each)."""
    found: list[str] = []
    unknown: list[str] = []
    for value in values:
        parts = str(value).split(",")
        i = 0
        while i < len(parts):
            for j in range(len(parts), i, -1):  # the longest run of entries that names a class
                hit = find_class(",".join(parts[i:j]), classes)
                if hit is not None:
                    if hit not in found:
                        found.append(hit)
                    _warn_if_ambiguous(hit, parts[i:j], classes, option)
                    i = j
                    break
            else:
                if parts[i].strip():
                    unknown.append(parts[i].strip())
                i += 1
    return found, unknown


def _warn_if_ambiguous(hit: str, parts: Sequence[str], classes: Sequence[str], option: str) -> None:
    """Warn when ``parts`` (two or more entries), read as the one class ``hit``, each name a class too."""
    if len(parts) < 2:
        return
    each = [find_class(p, classes) for p in parts]
    if any(c is None for c in each):
        return
    log.warning("%s %s is read as the one class %r; to name the classes %s instead, give each in a %s of its own: "
                "%s", option, shlex.quote(",".join(parts)), hit, quoted(each), option,
                " ".join(f"{option} {shlex.quote(c)}" for c in each))


def warn_lookalike_classes(root: object, classes: Sequence[str]) -> None:
    """Warn about class folders of ``root`` whose names differ only in Unicode form (NFC/NFD), letter
    case or surrounding spaces: they read as two classes, each other's images counting as wrong
    matches.  The names are shown with :func:`ascii`, as printed they look the same."""
    groups: dict[str, list[str]] = {}
    for c in classes:
        groups.setdefault(_nfc(c).strip().casefold(), []).append(c)
    for same in (g for g in groups.values() if len(g) > 1):
        log.warning("data folder %s: the class folders %s differ only in Unicode form, letter case or surrounding "
                    "spaces, so they are read as %d classes; if they are one class, move their images into one "
                    "folder", root, " and ".join(ascii(c) for c in same), len(same))


def quoted(names: Iterable[str]) -> str:
    """Class names for a message, each quoted (a name may hold commas or spaces)."""
    return ", ".join(repr(n) for n in names)


def listed(names: Sequence[str]) -> str:
    """Class names joined by commas, each quoted when one of them holds a comma or surrounding spaces
    (``Roads, paved`` would read as two classes)."""
    if any("," in n or n != n.strip() for n in names):
        return quoted(names)
    return ",".join(names)


def unknown_class_hint(classes: Sequence[str], option: str) -> str:
    """``"; ..."`` how to name a class whose name holds a comma, when the folder has one; else ``""``."""
    comma = [c for c in classes if "," in c]
    if not comma:
        return ""
    return (f"; a class whose name holds a comma is named in a {option} of its own, e.g. "
            f"{option} {shlex.quote(comma[0])}")


def names_no_class(values: Iterable[str]) -> bool:
    """Whether option ``values`` (such as ``","`` or ``""``) hold no name at all."""
    return not any(part.strip() for v in values for part in str(v).split(","))
