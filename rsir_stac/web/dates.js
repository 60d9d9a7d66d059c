// The Dates box: whether its text is refused (nothing is searched while it is), and the range of
// instants a Dates text means (which scenes the imagery draws).
import { dateProblem } from "./state.js";

/**
 * Why the Dates box's text is refused, or "" (and the box marked invalid or not).  While it is
 * refused nothing is searched, whatever starts the search: the dates the user sees are the ones a
 * search would use, never the last good ones silently.
 */
export function datesRefused() {
  const box = document.getElementById("datetime");
  const why = dateProblem(box.value.trim()) || "";
  if (why) box.setAttribute("aria-invalid", "true"); else box.removeAttribute("aria-invalid");
  return why;
}

/** [start, end] in ms (null: open) of a Dates text, or null for none (or one the page refuses). */
export function dateRange(text) {
  const parts = String(text || "").trim().split("/").map((t) => t.trim());
  if (!parts[0] && parts.length === 1) return null;
  const open = (t) => t === "" || t === "..";
  const [a, b] = parts.length === 1 ? [parts[0], parts[0]] : parts;
  const range = [open(a) ? null : instant(a, false), open(b) ? null : instant(b, true)];
  return range.some(Number.isNaN) ? null : range;
}

/** An RFC 3339 date or datetime, year or month as ms: its first moment, or its last (`end`). */
function instant(t, end) {
  const m = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$/.exec(t);
  if (!m) return Date.parse(/[Zz]|[+-]\d{2}:?\d{2}$/.test(t) ? t : t + "Z");   // naive times are UTC
  const y = +m[1], mo = m[2] ? +m[2] - 1 : 0, d = m[3] ? +m[3] : 1;
  if (!end) return Date.UTC(y, mo, d);
  return (m[3] ? Date.UTC(y, mo, d + 1) : m[2] ? Date.UTC(y, mo + 1, 1) : Date.UTC(y + 1, 0, 1)) - 1;
}

/** Whether an acquisition `when` .. `until` (RFC 3339; no `until`: the instant `when`) meets the
 *  range [start, end] (ms, null: open), inclusive: as the service tests a scene or a tile. */
export function withinRange(when, [start, end], until) {
  const t0 = when ? Date.parse(when) : NaN;
  const t1 = until ? Date.parse(until) : t0;
  return !Number.isNaN(t0) && (start === null || (Number.isNaN(t1) ? t0 : t1) >= start) && (end === null || t0 <= end);
}
