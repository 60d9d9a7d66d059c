/* rsir-stac map page: small ES modules over the /api/* endpoints (no build step).
 *
 *   api.js      API calls, the service key, errors for people
 *   state.js    page state <-> URL (links reproduce a search; Back/Forward step through searches)
 *   map.js      Leaflet map: imagery tiles of the indexed scenes, basemap, footprints, drawing tools
 *   results.js  result footprints, rank badges, gallery, selection and details
 *   labels.js   labels, refine, find all, exports
 *
 * URL parameters: see state.js; ?key=API_KEY is moved to sessionStorage.
 */
import { api, apiUrl, friendly, setImage, tileUrl } from "./api.js";
import { addBasemap, addImagery, COLOURS, drawArea, drawHits, fitSearch, flashScene, installTools, map, mapNotice,
  setImageryScenes, showScenes, startBounds } from "./map.js";
import * as labels from "./labels.js";
import { clearResults, el, queryLayer, refreshDetails, restyleAll, resultById, resultFeatures, select,
         shortDate, showResults } from "./results.js";
import { DATES_FORM, dateProblem, fromSearch, saveUrl, state } from "./state.js";

const $ = (id) => document.getElementById(id);
let mode = "search";
let seq = 0;
let info = null;
let scenesDoc = null;
let uploadUrl = null;
let lastDoc = null;
let lastFindAll = null;  // the last "Find all" answer, for Download hits
let refusedArea = "";    // why a link's polygon was left out (a note with the next results)
let linkNotes = [];      // what else a link held that was left out (told with the next results)
let undoLabels = null;   // what the last "Clear labels" or "Load labels" replaced, for Undo and Back

/** The status line; `action` ({label, run}) adds a button after the text (e.g. Undo). */
function setStatus(text, kind, action) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
  if (action) {
    const b = el("button", "small", action.label);
    b.type = "button";
    if (action.undo) b.dataset.undo = "1";
    b.onclick = action.run;
    s.append(" ", b);
  }
}

const NO_POSITIVES = "Refining needs at least one positive label: select a result and press ✓ Positive (or P on " +
  "its card), or load a label file in the Labels tab.";

/** No results on screen (a failed search, or a query that is gone): nothing left that looks current. */
function showNothing() {
  lastDoc = null;
  clearResults();
  queryLayer.clearLayers();
  $("query").innerHTML = "";
  $("query").hidden = true;
  $("fit").disabled = true;
  for (const b of document.querySelectorAll(".export")) b.disabled = true;
}

// ------------------------------------------------------------------ filters
function filters() {
  const f = {};
  if (state.datetime) f.datetime = state.datetime;
  if (state.collections.length) f.collection = state.collections.slice();
  if (state.area && state.area.bbox) f.bbox = state.area.bbox.slice();
  if (state.area && state.area.polygon) f.polygon = { type: "Polygon", coordinates: [state.area.polygon] };
  return f;
}

function filterParams(extra) {
  const q = new URLSearchParams(extra || {});
  q.set("k", String(state.k));
  if (state.expand) q.set("expand", String(state.expand));
  if (state.datetime) q.set("datetime", state.datetime);
  for (const c of state.collections) q.append("collection", c);
  if (state.area && state.area.bbox) q.set("bbox", state.area.bbox.join(","));
  if (state.area && state.area.polygon) q.set("polygon", state.area.polygon.map((p) => p.join(",")).join(";"));
  return q;
}

/** Notes on what the filters leave out that people do not expect (undated / uncollected tiles). */
function filterNotes() {
  const notes = [];
  if (refusedArea) notes.push(`the link's polygon was left out: ${refusedArea}; draw the area again`);
  notes.push(...linkNotes);
  if (!scenesDoc) return notes;
  if (state.datetime && scenesDoc.undated_tiles) {
    notes.push(`${scenesDoc.undated_tiles.toLocaleString()} tiles without a date are left out by the date filter`);
  }
  if (state.collections.length && scenesDoc.uncollected_tiles) {
    notes.push(`${scenesDoc.uncollected_tiles.toLocaleString()} tiles without a collection are left out by the collection filter`);
  }
  return notes;
}

/** The imagery follows the filters and shows the selected result's own scene over the others. */
function syncImagery() {
  const f = state.selected && resultById(state.selected);
  setImageryScenes({ datetime: state.datetime, collections: state.collections,
                     item: f ? f.properties.item_id : null });
}

// ------------------------------------------------------------------ searching
/**
 * Why the Dates box's text is refused, or "" (and the box marked invalid or not).  While it is
 * refused nothing is searched, whatever starts the search: the dates the user sees are the ones a
 * search would use, never the last good ones silently.
 */
function datesRefused() {
  const why = dateProblem($("datetime").value.trim()) || "";
  if (why) $("datetime").setAttribute("aria-invalid", "true"); else $("datetime").removeAttribute("aria-invalid");
  return why;
}

/** The results still shown, for a message that a search was not run ("" with none). */
function stillShown() {
  return state.query && lastDoc ? ` The results shown are still those of ${state.datetime ? "dates " + state.datetime
    : "all dates"}.` : "";
}

/** Say that `what` (a search, Find all) was not run because of the Dates box's refused text `why`. */
function refuseDates(why, what, then) {
  setStatus(`${why}. ${what} was not run: correct the dates or empty the Dates box first${then || ""}.` + stillShown(),
            "error");
}

async function run(query, opts) {
  opts = opts || {};
  const why = datesRefused();
  if (why) {   // not searched, nothing changed (the query, the address), until the dates are fixed
    refuseDates(why, query.kind === "image" ? `The search with ${query.file.name || "the image"}`
      : query.kind === "labels" ? "Refining" : "The search", query.kind === "image" ? ", then choose the image again" : "");
    return;
  }
  state.query = query;
  if (!opts.keepSelection) state.selected = null;
  $("rerun").disabled = false;
  if (opts.push !== false) saveUrl(true);
  const my = ++seq;
  if (query.kind === "labels" && !labels.examples().positives.length) {   // never the service's wording
    showNothing();
    setStatus(NO_POSITIVES, "error");
    return;
  }
  setStatus(query.kind === "labels" ? "Refining from the labels…" : "Searching…", "busy");
  try {
    let doc;
    if (query.kind === "image") {
      const form = new FormData();
      form.append("file", query.file, query.file.name || "query");
      for (const [k, v] of filterParams()) form.append(k, v);
      doc = await api(apiUrl("search/image"), { method: "POST", body: form });
    } else if (query.kind === "labels") {
      doc = await labels.refineQuery(Object.assign(filters(), state.expand ? { expand: state.expand } : {}), state.k);
    } else {
      // a clicked place keeps the tile it found as the example when filters change (a time series:
      // "where was this 2020 pattern in 2009?"); a new click finds the tile there again
      const extra = query.kind === "point" ? { point_id: query.id }
        : query.pinned ? { point_id: query.pinned } : { lon: query.lon, lat: query.lat };
      doc = await api("api/search?" + filterParams(extra));
    }
    if (my !== seq) return;
    render(doc, query, opts);
  } catch (err) {
    if (my !== seq) return;
    showNothing();   // the last results are not this query's: none is shown as if current
    setStatus(friendly(err.message), "error");
    if (query.kind === "location") {
      queryLayer.clearLayers();
      L.circleMarker([query.lat, query.lon], { radius: 5, color: COLOURS.query, weight: 2, interactive: false, pane: "query" }).addTo(queryLayer);
    }
  }
}

function rerun() { if (state.query) run(state.query, { push: false }); }

function render(doc, query, opts) {
  lastDoc = doc;
  queryLayer.clearLayers();
  const q = doc.query || {};
  if (query.kind === "location" && q.id) query.pinned = q.id;   // in the link too (qid): the same tile reopens
  if (q.geometry) {
    L.geoJSON(q.geometry, { style: { color: COLOURS.query, weight: 2.5, fillOpacity: 0.05 }, interactive: false, pane: "query" }).addTo(queryLayer);
  }
  if (q.at) L.circleMarker([q.at[1], q.at[0]], { radius: 4, color: COLOURS.query, weight: 2, fillOpacity: 1, interactive: false, pane: "query" }).addTo(queryLayer);
  renderQuery(q, query);
  const scored = doc.score === "score" || ((doc.features || [])[0] && typeof doc.features[0].properties.distance !== "number");
  showResults(Object.assign({}, doc, { score_kind: scored ? "score" : "distance" }), {
    onSelect: (id, zoom) => { select(id, zoom); syncImagery(); saveUrl(false); },
    onSearchFrom: (id) => run({ kind: "point", id: id }),
    onLabel: (id, label) => { labels.setLabel(id, label, resultById(id)); labelsChanged(); },
  });
  if (state.selected) select(state.selected, false);
  syncImagery();
  $("fit").disabled = !(doc.features || []).length;
  for (const b of document.querySelectorAll(".export")) b.disabled = !(doc.features || []).length;
  const n = (doc.features || []).length;
  const filt = [];
  if (state.area) filt.push(state.area.bbox ? "box" : "polygon");
  if (state.datetime) filt.push("dates");
  if (state.collections.length) filt.push("collections");
  const notes = filterNotes();
  if (q.warning) notes.push(q.warning);
  refusedArea = "";   // told once
  linkNotes = [];
  setStatus(`${n} result${n === 1 ? "" : "s"}` + (filt.length ? ` (filtered by ${filt.join(", ")})` : "") +
            (doc.took_ms !== undefined ? ` · ${Math.round(doc.took_ms)} ms` : "") +
            (doc.merged ? " · merged from one search per example" : "") +
            (n ? " · click a result to look at it" : "") + (notes.length ? ". Note: " + notes.join("; ") + "." : ""));
  showTab("results");
  if (opts && opts.fit) fitSearch();
  saveUrl(false);   // what the answer pinned (the clicked place's tile) goes into the link
}

function renderQuery(q, query) {
  const qs = $("query");
  qs.innerHTML = "";
  qs.hidden = false;
  const img = el("img");
  // like the result cards: the date and the scene (tiles of one place differ by them)
  const lab = (q.id && state.labels.get(q.id)) || {};   // a labels query's tile: one of the labelled tiles
  const qItem = q.item_id || lab.item_id, qDate = q.datetime || lab.datetime;
  img.alt = query.kind === "image" && query.file ? `Query: uploaded image ${query.file.name}`
    : qItem ? `Query tile: ${qDate ? shortDate(qDate) : "no date"}, ${qItem}` : "Query tile";
  if (q.kind === "image" && uploadUrl) img.src = uploadUrl;
  else if (q.id) setImage(img, tileUrl(q.id));
  else img.classList.add("none");
  const meta = el("div", "meta");
  const title = { point: "Query: a stored tile", location: "Query: the tile at the clicked place", image: "Query: uploaded image",
                  labels: "Query: your labels" }[query.kind] || "Query";
  meta.appendChild(el("div", "qtitle", title));
  if (query.kind === "labels") {
    const ex = labels.examples();
    meta.appendChild(el("div", "muted", `${ex.positives.length} positive, ${ex.negatives.length} negative examples`));
  }
  if (q.item_id) meta.appendChild(el("div", "muted", q.item_id + (q.datetime ? " · " + shortDate(q.datetime) : "")));
  if (query.kind === "image" && query.file) {
    meta.appendChild(el("div", "muted", query.file.name + (q.size ? ` · ${q.size[0]}×${q.size[1]} px` : "")));
    if (q.warning) {   // e.g. an image much smaller than the model's input
      meta.appendChild(el("div", "warning", "⚠ " + q.warning[0].toUpperCase() + q.warning.slice(1) + "."));
    }
    meta.appendChild(el("div", "muted", "An uploaded image is not kept in links."));
  }
  if (q.expanded && q.expanded.length) {
    meta.appendChild(el("div", "muted expanded", `Expanded with its ${q.expanded.length} nearest tiles; distances are to the expanded query.`));
  }
  if (q.id) meta.appendChild(el("div", "muted id", q.id));
  qs.append(img, meta);
}

// ------------------------------------------------------------------ tools and controls
const HINTS = { box: "Drag a box on the map to limit results to it.",
                polygon: "Click the polygon's corners; double-click to close it (Esc cancels)." };

function setMode(m) {
  cancelDrawing();
  if (m === "search" && HINTS[mode] && $("status").textContent === HINTS[mode]) setStatus("");  // no stale hint
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

function setArea(a, quiet) {
  state.area = a;
  if (!quiet) refusedArea = "";
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
  onClick: (ll) => run({ kind: "location", lon: ll.lng, lat: ll.lat }),
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
    setStatus("Give a place as lon, lat in degrees, for example -95.37, 29.76.", "error");
    return;
  }
  map.setView([v[1], v[0]], Math.max(map.getZoom(), 15));
  L.circleMarker([v[1], v[0]], { radius: 6, color: "#f28e2b", weight: 2, interactive: false, pane: "query" }).addTo(queryLayer);
  if (ev.submitter && ev.submitter.id === "goto-search") run({ kind: "location", lon: v[0], lat: v[1] });
  else setStatus(`Moved to ${v[0]}, ${v[1]}.`);
});

$("upload").addEventListener("change", (ev) => {
  const file = ev.target.files && ev.target.files[0];
  if (!file) return;
  const limits = (info && info.limits) || {};
  if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {  // refused here, before any byte is sent
    setStatus(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the service's ` +
              `${(limits.max_upload_bytes / 1e6).toFixed(1)} MB upload limit; choose a smaller image or crop it`, "error");
    ev.target.value = "";
    return;
  }
  if (uploadUrl) URL.revokeObjectURL(uploadUrl);
  uploadUrl = /tiff?$/i.test(file.type) || /\.tiff?$/i.test(file.name) ? null : URL.createObjectURL(file);
  run({ kind: "image", file: file });
  ev.target.value = "";
});

// tabs
const TABS = ["results", "scenes", "labels"];
function showTab(name) {
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

// labels tab
$("refine").onclick = () => run({ kind: "labels" }, { fit: true });
/** After any label change: cards, outlines, details, hits and the address.  A change by the user
 *  (`byUser`) while Undo is offered says what that Undo will do now (the labels changed since). */
function labelsChanged(byUser = true) {
  restyleAll(); refreshDetails(); labels.restyleHits(); saveUrl(false);
  if (byUser && undoLabels && $("status").querySelector("button[data-undo]")) offerUndo();
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;

/** The label changes made since `u` (a Clear or a Load): tiles labelled, or labelled otherwise, after it. */
function changedSince(u) {
  const out = new Map();
  for (const [id, l] of state.labels) if (u.after.get(id) !== l.label) out.set(id, l);
  return out;
}

/** The status line of the last Clear or Load (undoLabels) with its Undo button: what Undo brings back,
 *  and the label changes made since, which Undo keeps. */
function offerUndo() {
  const u = undoLabels, n = u.before.size, them = n === 1 ? "it" : "them";
  const head = u.what === "clear"
    ? `Cleared ${plural(n, "label")}${u.refined ? " and the results refined from them" : ""}` +
      `${u.hits ? (u.refined ? "," : " and") + " the find-all hits" : ""}`
    : `Loaded ${plural(u.loaded, "label")} from ${u.file}, replacing ${plural(n, "label")}`;
  const k = changedSince(u).size;
  const tail = !k ? `Undo (or Back) brings ${them} back.`
    : `${plural(k, "label")} changed since; Undo brings the ${plural(n, u.what === "clear" ? "cleared label" : "replaced label")} ` +
      `back and keeps ${k === 1 ? "that change" : "those changes"}.`;
  setStatus(`${head}. ${tail}`, "", { label: "Undo", run: undoLabelChange, undo: true });
}

// Clear labels: a new history entry (Back brings them back) and an Undo button; results refined
// from the labels and the find-all hits go with them (a link to them would open with no labels),
// and Undo brings those back too
$("clear-labels").onclick = () => {
  const n = state.labels.size;
  if (!n) return;
  const refined = !!state.query && state.query.kind === "labels";
  undoLabels = { what: "clear", before: state.labels, after: new Map(), query: state.query, doc: lastDoc,
                 selected: state.selected, refined: refined, hits: lastFindAll };
  state.labels = new Map();
  labels.renderLabels();
  clearFindAll();
  if (refined) { state.query = null; state.selected = null; showNothing(); }
  restyleAll(); refreshDetails();
  saveUrl(true);
  offerUndo();
};

/** Undo the last Clear or Load: its labels back, with the label changes made since kept; after a
 *  Clear, the refined results and the find-all hits it removed too. */
function undoLabelChange() {
  const u = undoLabels;
  undoLabels = null;
  if (!u) return;
  const kept = changedSince(u);
  const back = new Map(u.before);
  for (const [id, l] of kept) back.set(id, l);
  state.labels = back;
  labels.renderLabels();
  if (u.refined && !state.query && u.doc) {
    state.query = u.query;
    state.selected = u.selected;
    $("rerun").disabled = false;
    render(u.doc, u.query, {});
    showTab("labels");   // where the user cleared them
  }
  if (u.hits && !lastFindAll) showFindAll(u.hits);   // unless Find all ran again since
  labelsChanged(false);
  const n = u.before.size;
  setStatus(`Restored ${plural(n, "label")}` +
            (u.what === "load" ? ` (the ${plural(u.loaded, "label")} loaded from ${u.file} ${u.loaded === 1 ? "is" : "are"} gone)`
              : "") +
            (u.refined && u.doc ? ", the results refined from them" : "") + (u.hits ? ", the find-all hits" : "") +
            (kept.size ? `; kept the ${plural(kept.size, "label")} changed since` : "") + ".");
  $(u.what === "clear" ? "clear-labels" : "load-labels").focus();   // the Undo button is gone with the message
}

/** Labels from an address (Back after Clear or Load): the ones Clear or Load replaced, when they are the same. */
function labelsOf(fromUrl) {
  const u = undoLabels;
  if (!u || fromUrl.size !== u.before.size) return fromUrl;
  for (const [id, l] of fromUrl) if (!u.before.has(id) || u.before.get(id).label !== l.label) return fromUrl;
  undoLabels = null;
  return u.before;   // with their footprints, scenes, dates and notes
}

function clearFindAll() { labels.clearFindAll(); lastFindAll = null; $("findall-export").hidden = true; }
/** Show a "find all" answer: its hits on the map and listed, Download hits. */
function showFindAll(doc) {
  lastFindAll = doc;
  drawHits(doc.features || [], HIT_ACTIONS);
  labels.showHits(doc, labelHit);
  $("findall-export").hidden = !(doc.features || []).length;
}
$("save-labels").onclick = () => labels.saveLabels(info && info.model_id);
// Load labels: they replace the labels there were; a new history entry and an Undo button bring
// those back (as after Clear labels).  A file with no labels changes nothing.
$("load-labels").addEventListener("change", async (ev) => {
  const file = ev.target.files && ev.target.files[0];
  ev.target.value = "";
  if (!file) return;
  const before = state.labels;
  try {
    const n = await labels.loadLabels(file);
    const after = new Map([...state.labels].map(([id, l]) => [id, l.label]));
    undoLabels = before.size ? { what: "load", before: before, after: after, file: file.name, loaded: n } : null;
    saveUrl(!!before.size);
    labelsChanged(false);
    if (undoLabels) offerUndo();
    else setStatus(`Loaded ${plural(n, "label")} from ${file.name}.`);
  } catch (err) { setStatus(friendly(err.message), "error"); }
});
/** Label (or unlabel: the same label again) a find-all hit. */
function labelHit(id, label, f) { labels.setLabel(id, label, resultById(id) || f); labelsChanged(); }

/** A hit's buttons on the map. */
const HIT_ACTIONS = [
  { label: "✓ Positive", run: (f) => labelHit(f.id, "positive", f) },
  { label: "✗ Negative", run: (f) => labelHit(f.id, "negative", f) },
  { label: "In the list", run: (f) => {
    showTab("labels");
    if (!labels.focusHit(f.id)) setStatus("This hit is not among the ones listed (the most probable); Download hits saves all.");
  } },
];

/** Where "find all" scores, in words: the drawn area and the filters, or the whole index (never the
 *  map view: a link gives the same answer on every screen). */
function scoredWhere() {
  const parts = [];
  if (state.area) parts.push(state.area.bbox ? "in the drawn box" : "in the drawn polygon");
  if (state.datetime) parts.push(`dated ${state.datetime}`);
  if (state.collections.length) parts.push(`of collection${state.collections.length > 1 ? "s" : ""} ${state.collections.join(", ")}`);
  if (!state.area) parts.unshift("in the whole index" + (parts.length ? "" : " (draw a box or polygon to score only part of it)"));
  return parts.join(", ");
}

$("classify").onclick = async () => {
  const why = datesRefused();
  if (why) { refuseDates(why, "Find all"); return; }
  const bar = $("progress");
  bar.hidden = false;
  $("classify").disabled = true;
  try {
    const where = scoredWhere();
    const doc = await labels.findAll(filters(), (s) => {
      $("progress-text").textContent = `Scoring every tile ${where.split(" (")[0]}… ${s.toFixed(0)} s`;
    });
    const sm = doc.summary || {};
    showFindAll(doc);
    // the hits: the tiles at or above the threshold, and the labelled positives kept below it (at a
    // threshold of 1, only those: the hits are not "at or above probability 1")
    const nf = doc.features.length, kept = sm.positives_kept || 0;
    const above = typeof sm.above_threshold === "number" ? sm.above_threshold : nf - kept;
    setStatus(`Find all: ${plural(nf, "tile")}` + (kept
      ? `, ${above ? above : "none"} at or above probability ${sm.threshold} and ${kept} you labelled positive, kept below it`
      : ` at or above probability ${sm.threshold}`) +
              (sm.scored !== undefined ? ` (${plural(sm.scored, "tile")} scored)` : "") + ` ${where}` +
              (nf ? "; purple on the map and listed in the Labels tab (Download hits saves them)." : ".") +
              ((doc.notes || []).length ? " Note: " + doc.notes.join("; ") + "." : ""));
  } catch (err) {
    setStatus(friendly(err.message), "error");
  } finally {
    bar.hidden = true;
    $("classify").disabled = false;
  }
};
$("findall-export").onclick = () => {
  if (!lastFindAll) return;
  labels.download("find-all.geojson", new Blob([JSON.stringify({ type: "FeatureCollection", features: lastFindAll.features })],
                                               { type: "application/geo+json" }));
};
for (const b of document.querySelectorAll(".export")) {
  b.onclick = async () => {
    try {
      const q = state.query;
      await labels.exportResults(b.dataset.format, q ? exportBody() : null, resultFeatures(),
                                 q && q.kind === "image" ? q.file : null);
    } catch (err) { setStatus(friendly(err.message), "error"); }
  };
}
/** The query on screen as /api/query/export takes it (an uploaded image goes beside it, as a file). */
function exportBody() {
  const q = state.query;
  const ex = q.kind === "labels" ? labels.examples()
    : q.kind === "image" ? { positives: [], negatives: [] }
      : q.kind === "point" || q.pinned ? { positives: [{ point_id: q.kind === "point" ? q.id : q.pinned }], negatives: [] }
        : { positives: [{ lon: q.lon, lat: q.lat }], negatives: [] };
  return Object.assign({ positives: ex.positives, negatives: ex.negatives, k: state.k }, filters(),
    state.expand ? { expand: state.expand } : {});
}
$("copy-link").onclick = async () => {
  saveUrl(false);
  try { await navigator.clipboard.writeText(window.location.href); setStatus("Link copied: it opens this search, its labels, filters and view."); }
  catch (e) { setStatus("Copy this link from the address bar: it holds the search, labels, filters and view."); }
};

// ------------------------------------------------------------------ index, scenes, URL state
async function loadInfo() {
  info = await api(apiUrl("info"));
  const cols = info.collections || [];
  $("info").textContent = `${info.count.toLocaleString()} tiles · model ${info.model_id || "?"}` +
    (cols.length ? ` · ${cols.length} collection${cols.length > 1 ? "s" : ""}` : "");
  const sel = $("collection");
  sel.innerHTML = "";
  for (const c of cols) sel.appendChild(new Option(c, c));
  sel.size = Math.min(4, Math.max(2, cols.length));
  sel.disabled = cols.length === 0;
  if (info.limits && info.limits.max_k) {
    for (const o of Array.from($("k").options)) if (+o.value > info.limits.max_k) o.remove();
  }
  if (info.basemap) {
    addBasemap(info.basemap, (host) => mapNotice(`The online basemap (${host}) could not be loaded; ` +
                                                 "the imagery of the indexed scenes is still shown."));
  }
}

async function loadScenes() {
  scenesDoc = await api(apiUrl("scenes"));
  showScenes(scenesDoc);
  addImagery(scenesDoc.extent, scenesDoc.maxzoom, () => mapNotice(
    "Some imagery could not be drawn: a scene's source file is missing or unreadable on the server (see Scenes)."));
  const list = $("scene-list");
  list.innerHTML = "";
  const feats = scenesDoc.features || [];
  $("tab-scenes").textContent = `Scenes (${feats.length})`;
  const broken = feats.filter((f) => f.properties.imagery === false).length;
  if (broken) mapNotice(`The imagery of ${broken} scene${broken > 1 ? "s" : ""} cannot be drawn (see Scenes); their outlines are red.`);
  for (const f of feats) {
    const p = f.properties;
    const li = el("li");
    const b = el("button", "scene");
    b.type = "button";
    b.appendChild(el("span", "sitem", p.item_id));
    b.appendChild(el("span", "smeta", [p.collection || "no collection", p.datetime ? shortDate(p.datetime) : "no date",
                                       `${p.tiles} tiles`].join(" · ")));
    if (p.imagery === false) b.appendChild(el("span", "sbad", "imagery: " + p.imagery_problem));
    b.title = "Zoom to this scene";
    b.onclick = () => {
      const [w, s, e, n] = p.bbox;
      map.fitBounds([[s, w], [n, e]], { padding: [20, 20], maxZoom: 18 });
      flashScene(f.id);
    };
    li.appendChild(b);
    list.appendChild(li);
  }
}

/** What a link held that the page left out, for people (empty when nothing was). */
function leftOut(s) {
  const out = [];
  if (s.refusedDates) {
    // "Dates "X" is not a date range; give ..." -> "it is not a date range; give ..."
    const why = (s.refusedWhy || "").replace(/^Dates ".*?" /s, "it ") || `it is not a date range; give ${DATES_FORM}`;
    out.push(`the link's dates "${s.refusedDates}" were left out: ${why}`);
  }
  const names = (s.unsupported || []).map((n) => n + "=");
  if (names.length) {   // one sentence for near= and radius= together
    out.push(`the link's ${names.join(" and ")} filter${names.length > 1 ? "s were" : " was"} left out: the map page ` +
             "has no distance filter; draw a box or polygon instead (the HTTP API takes near=LON,LAT,RADIUS_M)");
  }
  return out;
}

function applyState(s, first) {
  state.query = s.query;   // before any map move: moveend writes the state to the URL
  state.view = s.view;
  state.k = s.k;
  state.expand = s.expand;
  state.datetime = s.datetime;
  state.collections = s.collections;
  state.labels = s.labels.size || !first ? labelsOf(s.labels) : state.labels;
  state.selected = s.selected;
  $("datetime").value = s.datetime;
  if (![...$("k").options].some((o) => +o.value === s.k)) $("k").appendChild(new Option(String(s.k), String(s.k)));
  $("k").value = String(s.k);
  if (![...$("expand").options].some((o) => +o.value === s.expand)) $("expand").appendChild(new Option(String(s.expand), String(s.expand)));
  $("expand").value = String(s.expand);
  for (const o of $("collection").options) o.selected = s.collections.includes(o.value);
  refusedArea = s.refused || "";
  linkNotes = leftOut(s);
  setArea(s.area, true);
  labels.renderLabels();
  labels.fillInLabels();   // a link's labels: their footprints, scenes and dates
  if (s.view) map.setView([s.view.lat, s.view.lon], s.view.z, { animate: false });
  if (s.query) run(s.query, { push: false, keepSelection: true, fit: !s.view });
  else { showNothing(); restyleAll(); syncImagery(); }
  if (s.refused || linkNotes.length) {   // never kept in the address bar: the link is written again without them
    saveUrl(false);
    const told = (s.refused ? [`the link's polygon was left out: ${s.refused}; draw the area again`] : []).concat(linkNotes);
    if (!s.query) setStatus(told.map((t) => t[0].toUpperCase() + t.slice(1)).join(". ") + ".", "error");
  }
  return !!(s.refused || linkNotes.length);
}

window.addEventListener("popstate", () => applyState(fromSearch(window.location.search), false));
map.on("moveend", () => {
  if (!document.body.dataset.ready) return;
  const c = map.getCenter();
  state.view = { z: map.getZoom(), lat: c.lat, lon: c.lng };
  saveUrl(false);
});

async function start() {
  labels.renderLabels(() => labelsChanged());
  try {
    await Promise.all([loadInfo(), labels.detectCaps()]);
  } catch (err) {
    map.setView([0, 0], 2);
    $("info").textContent = "index unavailable";
    setStatus("Cannot load the index summary: " + friendly(err.message), "error");
    return;
  }
  try { await loadScenes(); } catch (err) {
    console.error(err);
    setStatus("Cannot list the scenes: " + friendly(err.message), "error");
  }
  const s = fromSearch(window.location.search);
  let elsewhere = 0;
  if (!s.view) {
    // open at the data: the largest scene and those overlapping it (the Scenes tab lists the others)
    const b = scenesDoc && startBounds(scenesDoc);
    const ext = info.extent;
    if (b) {
      map.fitBounds(b, { padding: [20, 20], animate: false, maxZoom: 18 });
      elsewhere = (scenesDoc.features || []).filter((f) => f.properties.bbox && !b.contains(
        L.latLngBounds([f.properties.bbox[1], f.properties.bbox[0]], [f.properties.bbox[3], f.properties.bbox[2]]))).length;
    } else if (ext) map.fitBounds([[ext[1], ext[0]], [ext[3], ext[2]]], { padding: [20, 20], animate: false });
    else { map.setView([0, 0], 2); setStatus("The index is empty: ingest some scenes first.", "error"); }
  }
  const told = applyState(s, true);
  if (!s.query && info.count && !told) {
    setStatus("Click the imagery to find tiles like the one there" + (elsewhere
      ? `; ${elsewhere} more scene${elsewhere > 1 ? "s are" : " is"} elsewhere (Scenes tab, or zoom out for the orange dots).`
      : ", or pick a scene in the Scenes tab."));
  }
  document.body.dataset.ready = "1";
}

// test/automation hook
window.rsir = {
  map: map, state: state,
  searchAt: (lon, lat) => run({ kind: "location", lon: lon, lat: lat }),
  searchById: (id) => run({ kind: "point", id: id }),
  setArea: (a) => setArea(a),
  select: (id) => { select(id, true); syncImagery(); saveUrl(false); },
};

start();
