// Text from STAC catalogues (item ids, collections, titles, file names) made safe to show.
//
// textContent already keeps such text from being read as HTML; this also shows the characters that
// change how the text around them reads as visible escapes, as the command line does
// (rsir_stac/terminal.py, the same set): bidi overrides, isolates and marks, which reorder what a
// line shows ("Trojan Source": an id ending in U+202E "fit.exe" shows as "exe.tif"), controls,
// line separators, zero-width and invisible characters (two different ids shown alike). Ids sent
// back to the service are never passed through this: only what is shown.
const CONTROL = /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;
const NAMED = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** `String(s)` with each character that reorders or hides text written as \uXXXX (\n, \r, \t, \xNN). */
export function printable(s) {
  const t = String(s);
  return t.replace(CONTROL, (c) => NAMED[c] ||
    (c.charCodeAt(0) < 0x100 ? "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0")
                             : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")));
}
