"""Text from catalogues (STAC ids, collections, titles, file names) made safe to print on a terminal.

A STAC item id may hold control characters: an OSC sequence (``ESC ] 0;title BEL``) sets the
terminal's title or, where OSC 52 is honoured, writes the clipboard; CR and LF print fake lines
such as ``error: ...``.  Human-readable output (tables, reports, error and note lines, log lines)
passes such text through :func:`printable`; JSON and GeoJSON output stays exact (``json`` escapes
control characters itself).
"""

from __future__ import annotations

import re

#: C0 controls (tab, CR and LF included), DEL, the C1 controls (U+0080-U+009F; U+009B is a CSI) and
#: the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069), which reorder what a line
#: shows ("Trojan Source", CVE-2021-42574).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``str(text)`` with every control character (C0, DEL, C1) replaced by a visible escape:
    ``\\n``, ``\\r``, ``\\t``, else ``\\xNN`` as Python writes it (so ``ESC ] 0;x BEL`` prints
    as ``\\x1b]0;x\\x07``).  Other text, Unicode letters included, is unchanged."""
    s = str(text)
    if not CONTROL.search(s):
        return s
    return CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                             else f"\\u{ord(m.group()):04x}"), s)


__all__ = ["CONTROL", "printable"]
