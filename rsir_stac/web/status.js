// The panel around the results: the status line (with an action button, e.g. Undo) and the tabs
// (Results, Scenes, Labels), which the keyboard moves between as WAI-ARIA tabs.
import { printable } from "./text.js";
import { el } from "./results.js";

export const $ = (id) => document.getElementById(id);

/** The status line; `action` ({label, run}) adds a button after the text (e.g. Undo). */
export function setStatus(text, kind, action) {
  const s = $("status");
  s.textContent = printable(text);
  s.className = kind || "";
  if (action) {
    const b = el("button", "small", action.label);
    b.type = "button";
    if (action.undo) b.dataset.undo = "1";
    b.onclick = action.run;
    s.append(" ", b);
  }
}

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
