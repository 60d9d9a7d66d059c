"""Text from catalogues (STAC ids, collections, titles, file names) made safe to print on a terminal.

A STAC item id may hold control characters: an OSC sequence (``ESC ] 0;title BEL``) sets the
terminal's title or, where OSC 52 is honoured, writes the clipboard; CR and LF print fake lines
such as ``error: ...``.  Human-readable output (tables, reports, error and note lines, log lines)
passes such text through :func:`printable`; JSON and GeoJSON output stays exact (``json`` escapes
control characters itself).
"""

from __future__ import annotations

import re

#: C0 controls (tab, CR and LF included), DEL, the C1 controls (U+0080-U+009F; U+009B is a CSI),
#: the bidirectional overrides, isolates and marks (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F,
#: U+061C), which reorder what a line shows ("Trojan Source", CVE-2021-42574), the line and paragraph
#: separators (U+2028/U+2029, a line break in some terminals) and the invisible characters that make
#: two different ids print alike: zero-width space, (non-)joiners, word joiner and invisible operators
#: (U+200B-U+200D, U+2060-U+2064), the byte-order mark (U+FEFF).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``str(text)`` with every character of :data:`CONTROL` (controls, bidi and invisible ones)
    replaced by a visible escape:
    ``\\n``, ``\\r``, ``\\t``, else ``\\xNN`` as Python writes it (so ``ESC ] 0;x BEL`` prints
    as ``\\x1b]0;x\\x07``).  Other text, Unicode letters included, is unchanged."""
    s = str(text)
    if not CONTROL.search(s):
        return s
    return CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                             else f"\\u{ord(m.group()):04x}"), s)


__all__ = ["CONTROL", "printable"]
