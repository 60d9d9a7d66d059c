// The panel around the results: the status line (with an action button, e.g. Undo) and the tabs
// (Results, Scenes, Labels), which the keyboard moves between as WAI-ARIA tabs.
import { printable } from "./text.js";
import { el } from "./results.js";

export const $ = (id) => document.getElementById(id);

/** The status line; `action` ({label, run}) adds a button after the text (e.g. Undo).  A long one is
 *  folded to its first lines (foldStatus). */
let shown = { text: "", kind: "", action: false };

/** What the status line says: {text, kind, action: whether it has an action button (e.g. Undo)}. */
export function statusShown() { return Object.assign({}, shown); }

export function setStatus(text, kind, action) {
  shown = { text: String(text), kind: kind || "", action: !!action };
  const s = $("status");
  s.textContent = "";
  s.className = kind || "";
  s.appendChild(el("span", "stext", printable(text)));
  if (action) {
    const b = el("button", "small", action.label);
    b.type = "button";
    if (action.undo) b.dataset.undo = "1";
    b.onclick = action.run;
    s.append(" ", b);
  }
  foldStatus(false);
}

/** Lines of a status shown before its More button (an error is never folded: all of it is the remedy). */
const STATUS_LINES = 2;

/**
 * A status longer than STATUS_LINES lines (Find all's: the hits, the held-out check and the service's
 * notes, 7 or 8 lines) shows its first lines and a More button that unfolds the rest: it pushed the
 * tabs down the panel, off a phone's screen (page trial).  The whole text stays in the element (read
 * out, and found by the browser's search).  `keepOpen`: an unfolded one stays unfolded (a resize).
 */
function foldStatus(keepOpen) {
  const s = $("status"), t = s.querySelector(".stext");
  const open = keepOpen && s.classList.contains("unfolded");
  s.classList.remove("folded", "unfolded");
  const old = s.querySelector("button.fold");
  if (old) old.remove();
  if (!t || s.classList.contains("error") || t.getClientRects().length <= STATUS_LINES) return;
  s.classList.add("folded");
  const b = el("button", "small fold");
  b.type = "button";
  b.setAttribute("aria-controls", "status");
  const show = (on) => {
    s.classList.toggle("unfolded", on);
    b.textContent = on ? "Less" : "More";
    b.setAttribute("aria-expanded", String(on));
    b.title = on ? "Show only the first lines of the status" : "Show the whole status";
  };
  b.onclick = () => show(!s.classList.contains("unfolded"));
  show(open);
  s.appendChild(b);   // after an action button (Undo), which stays the first
}
let refold = 0;
window.addEventListener("resize", () => {   // a phone turned, a window narrowed: the lines change
  cancelAnimationFrame(refold);
  refold = requestAnimationFrame(() => foldStatus(true));
});

// tabs
const TABS = ["results", "scenes", "labels"];
export function showTab(name) {
  for (const t of TABS) {
    const on = t === name;
    $("tab-" + t).setAttribute("aria-selected", on ? "true" : "false");
    $("tab-" + t).tabIndex = on ? 0 : -1;
    $("pane-" + t).hidden = !on;
  }
}
for (const t of TABS) $("tab-" + t).onclick = () => showTab(t);
// WAI-ARIA tabs: one tab stop (roving tabindex); arrows, Home and End move to a tab and show it
document.querySelector(".tabs[role=tablist]").addEventListener("keydown", (ev) => {
  const i = TABS.findIndex((t) => $("tab-" + t) === document.activeElement);
  if (i < 0) return;
  const to = { ArrowRight: (i + 1) % TABS.length, ArrowLeft: (i + TABS.length - 1) % TABS.length,
               Home: 0, End: TABS.length - 1 }[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  showTab(TABS[to]);
  $("tab-" + TABS[to]).focus();
});
