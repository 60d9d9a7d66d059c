// The search form (Query and filters): the map tools (Search, Draw box, Draw polygon; Escape
// cancels one, or closes a result's details), the area filter, the Place box, the filters (Dates,
// Collections, Results, Expand), Search again and Fit results.
import { datesRefused } from "./dates.js";
import { drawArea, installTools } from "./drawing.js";
import { fitSearch } from "./framing.js";
import { lngNearView, map, wrapLng } from "./map.js";
import { queryLayer } from "./results.js";
import { forgetRefusedArea, inScene, rerun, run, scenesAt, stillShown, swappedHint, syncImagery } from "./search.js";
import { saveUrl, state } from "./state.js";
import { $, setStatus, statusShown } from "./status.js";

let mode = "search";

// ------------------------------------------------------------------ tools and controls
const HINTS = { box: "Drag a box on the map to limit results to it.",
                polygon: "Click the polygon's corners; double-click to close it (Esc cancels)." };

// what the status said before a drawing hint replaced it (a search's summary): said again when the
// hint goes with its mode, instead of a blank status
let beforeHint = null;

function setMode(m) {
  cancelDrawing();
  const now = statusShown();
  if (m === "search" && HINTS[mode] && now.text === HINTS[mode]) {   // no stale hint
    if (beforeHint) setStatus(beforeHint.text, beforeHint.kind === "busy" ? "" : beforeHint.kind);
    else setStatus("");
  }
  if (HINTS[m] && !HINTS[mode]) {   // (a status with a button, e.g. Undo, is not said again without it)
    beforeHint = now.action ? null : { text: now.text, kind: now.kind };
  }
  else if (!HINTS[m]) beforeHint = null;
  mode = m;
  for (const name of ["search", "box", "polygon"]) {
    $("mode-" + name).classList.toggle("active", name === m);
    $("mode-" + name).setAttribute("aria-pressed", name === m ? "true" : "false");
  }
  $("map").classList.toggle("drawing", m !== "search");
  if (m === "box") map.dragging.disable(); else map.dragging.enable();
  if (m === "polygon") map.doubleClickZoom.disable(); else map.doubleClickZoom.enable();
  if (HINTS[m]) setStatus(HINTS[m]);
}

function fmt(v) { return (Math.round(v * 1e6) / 1e6).toString(); }

export function setArea(a, quiet) {
  state.area = a;
  if (!quiet) forgetRefusedArea();
  drawArea(a);
  const t = $("area-text");
  if (!a) { t.textContent = "anywhere"; t.className = "muted"; }
  else if (a.bbox) { t.textContent = "box " + a.bbox.map(fmt).join(", "); t.className = ""; }
  else { t.textContent = `polygon of ${a.polygon.length - 1} corners`; t.className = ""; }
  t.title = t.textContent;
  if (!quiet) {
    if (state.query) run(state.query);
    else {
      saveUrl(false);
      setStatus(a ? `Area: ${t.textContent}. Click the imagery to search in it.` : "Area cleared.");
    }
  }
}

const cancelDrawing = installTools({
  getMode: () => mode,
  setMode: setMode,
  onArea: (a) => setArea(a),
  // a click in a world copy east of 180 (or west of -180) is the same place in -180..180
  onClick: (ll) => run({ kind: "location", lon: wrapLng(ll.lng), lat: ll.lat }),
  onStatus: setStatus,
});

document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Escape") return;
  if (mode !== "search") { setMode("search"); setStatus("Drawing cancelled."); return; }
  const d = $("details"), id = state.selected;
  if (d.hidden || !id) return;
  // Escape closes the details; the focus goes back to the result's card (not lost with the box)
  const hadFocus = d.contains(document.activeElement);
  d.querySelector("button.close").click();
  const c = [...document.querySelectorAll("#gallery .card")].find((x) => x.dataset.id === id);
  if (c && hadFocus) c.focus();
});
$("mode-search").onclick = () => setMode("search");
$("mode-box").onclick = () => setMode("box");
$("mode-polygon").onclick = () => setMode("polygon");
$("clear-area").onclick = () => { setMode("search"); setArea(null); };
$("rerun").onclick = () => rerun();
$("fit").onclick = () => fitSearch();
function filtersChanged() {
  const dates = $("datetime").value.trim().split("/").map((t) => t.trim()).join("/");   // "2020 / 2021": 2020/2021
  const why = datesRefused();
  if (why) {   // refused here: neither searched nor put in the address
    setStatus(why + "." + stillShown(), "error");
    return;
  }
  state.datetime = dates;
  $("datetime").value = dates;
  state.collections = Array.from($("collection").selectedOptions).map((o) => o.value);
  state.k = parseInt($("k").value, 10) || 10;
  state.offset = 0;   // other filters or count: the first page again
  state.expand = parseInt($("expand").value, 10) || 0;
  if (state.query) run(state.query);
  else { saveUrl(false); syncImagery(); }
}
$("datetime").addEventListener("change", filtersChanged);  // Enter fires it too (once)
$("collection").addEventListener("change", filtersChanged);
$("k").addEventListener("change", filtersChanged);
$("expand").addEventListener("change", filtersChanged);

$("goto").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = $("goto-text").value.trim().split(/[\s,;]+/).map(Number);
  if (v.length !== 2 || !v.every(Number.isFinite) || Math.abs(v[0]) > 180 || Math.abs(v[1]) > 90) {
    // lat, lon (the order of most web maps) fits the other way round: say so
    const swapped = v.length === 2 && v.every(Number.isFinite) && Math.abs(v[1]) <= 180 && Math.abs(v[0]) <= 90;
    const range = v.length === 2 && v.every(Number.isFinite) && !swapped
      ? (Math.abs(v[0]) > 180 ? `Longitude ${v[0]} is outside -180..180. ` : `Latitude ${v[1]} is outside -90..90. `) : "";
    setStatus(swapped ? `Latitude ${v[1]} is outside -90..90: the place is lon, lat; did you mean ${v[1]}, ${v[0]}?`
                      : range + "Give a place as lon, lat in degrees, for example -95.37, 29.76.", "error");
    return;
  }
  // the search first: it adds its history entry, which the move below then writes its view into (moved
  // first, the view went into the entry of the search before, and Back came to the new place)
  const searching = ev.submitter && ev.submitter.id === "goto-search";
  if (searching) run({ kind: "location", lon: v[0], lat: v[1], typed: true });
  // close in, but not past the finest zoom the scenes there are drawn at (page re-check: zoom 15 on a
  // 30 m Landsat scene, drawn to 14, showed an empty map)
  const finest = Math.max(0, ...scenesAt(v[0], v[1]).map((f) => f.properties.maxzoom).filter(Number.isFinite));
  const zoom = Math.max(map.getZoom(), 15);
  map.setView([v[1], lngNearView(v[0])], finest ? Math.min(zoom, finest) : zoom);
  L.circleMarker([v[1], lngNearView(v[0])], { radius: 6, color: "#f28e2b", weight: 2, interactive: false, pane: "query" }).addTo(queryLayer);
  // no scene here but one at the swapped place: lat, lon typed the other way round
  if (!searching) setStatus(`Moved to ${v[0]}, ${v[1]}.` + (inScene(v[0], v[1]) ? "" : swappedHint({ lon: v[0], lat: v[1] })));
});
