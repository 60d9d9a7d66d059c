// Labels (positives/negatives), refine, "find all", and exports: the Labels tab.
import { printable } from "./text.js";
import { api, ApiError, apiUrl, friendly, postJson } from "./api.js";
import { clearHits, relabelHits } from "./hits.js";
import * as mapjs from "./map.js";
import { map } from "./map.js";
import { cardKeys, el, midShort, tileCard, tileDate } from "./results.js";
import { labelsGeoJSON, parseLabels, state } from "./state.js";

const $ = (id) => document.getElementById(id);
const labelLayer = L.layerGroup().addTo(map);   // every labelled tile, results or not

/** Every labelled tile's outline, results or not: outlines only, over the find-all hits, so the hits'
 *  purple fill shows the same under a green, red or plain outline (page trial: a positive's green fill
 *  over a time series' stacked hits read as no hits there); a labelled result's fill is its footprint's,
 *  under the hits (results.js). */
function drawLabels() {
  labelLayer.clearLayers();
  for (const [, l] of state.labels) {
    if (!l.geometry) continue;
    const colour = l.label === "positive" ? mapjs.COLOURS.positive : mapjs.COLOURS.negative;
    L.geoJSON(mapjs.nearView(l.geometry), { pane: "labels", interactive: false,
                            style: { color: colour, weight: 2.5, fill: false } }).addTo(labelLayer);
  }
}

/** Capabilities of the server: the analyst endpoints (/api/query, /api/classify, ...) or not. */
export const caps = { query: false, classify: false, export: false, labels: false };

export async function detectCaps() {
  try {
    const doc = await api("openapi.json");
    const paths = Object.keys(doc.paths || {});
    caps.query = paths.includes("/api/query");
    caps.classify = paths.includes("/api/classify");
    caps.export = paths.includes("/api/query/export");
    caps.labels = paths.includes("/api/labels");
  } catch (e) { /* an old server: client-side fallbacks */ }
}

export function setLabel(id, label, feature) {
  const cur = state.labels.get(id);
  if (cur && cur.label === label) state.labels.delete(id);   // pressing it again removes the label
  else {
    const p = (feature && feature.properties) || {};
    state.labels.set(id, { label: label, geometry: (feature && feature.geometry) || (cur && cur.geometry) || null,
                           note: (cur && cur.note) || "", item_id: p.item_id || (cur && cur.item_id),
                           datetime: p.datetime || (cur && cur.datetime),
                           end_datetime: p.end_datetime || (cur && cur.end_datetime) });
  }
  renderLabels();
}

export function renderLabels(onRemove) {
  if (onRemove) renderLabels.onRemove = onRemove;
  const list = $("label-list");
  list.innerHTML = "";
  let pos = 0, neg = 0;
  for (const [id, l] of state.labels) {
    if (l.label === "positive") pos++; else neg++;
    const li = el("li", l.label);
    li.appendChild(el("span", "tag", l.label === "positive" ? "✓" : "✗"));
    // the date (or "no date", as the cards say) and the tile on the first line, never cut: labels of one
    // place at several dates differ by the date, labels of one scene by the tile; the scene's whole name
    // below, wrapped (page trial: cut in the middle and again at its end, two scenes' names looked alike)
    const what = el("span", "what");
    what.appendChild(el("span", "whead", `${tileDate(l)} · tile ${id.slice(0, 8)}`));
    if (l.item_id) what.appendChild(el("span", "witem", printable(l.item_id)));
    what.title = printable([l.datetime ? tileDate(l) : "", l.item_id || "", id].filter(Boolean).join(" · "));
    li.appendChild(what);
    const rm = el("button", "small", "Remove");
    rm.type = "button";
    rm.setAttribute("aria-label", `Remove the ${l.label} label of ${l.item_id || id}`);
    rm.onclick = () => { state.labels.delete(id); renderLabels(); if (renderLabels.onRemove) renderLabels.onRemove(id); };
    li.appendChild(rm);
    list.appendChild(li);
  }
  $("label-count").textContent = `${pos} positive, ${neg} negative`;
  $("tab-labels").textContent = state.labels.size ? `Labels (${state.labels.size})` : "Labels";
  $("refine").disabled = pos === 0;
  $("classify").disabled = pos === 0;
  $("save-labels").disabled = state.labels.size === 0;
  $("clear-labels").disabled = state.labels.size === 0;
  drawLabels();
}

/** Fill in the footprint, scene and date of labels that lack them (labels from a link): the
 *  server's label check returns them. */
export async function fillInLabels() {
  const bare = [...state.labels].filter(([, l]) => !l.geometry || !l.item_id);
  if (!caps.labels || !bare.length) return;
  const doc = { type: "FeatureCollection", features: bare.map(([id, l]) => (
    { type: "Feature", id: id, geometry: null, properties: { point_id: id, label: l.label } })) };
  let checked;
  try { checked = parseLabels(await postJson(apiUrl("labels"), { labels: doc })); } catch (e) { return; }
  for (const [id, got] of checked) {
    const cur = state.labels.get(id);
    if (!cur || cur.label !== got.label) continue;   // changed meanwhile
    state.labels.set(id, Object.assign({}, got, { note: cur.note || got.note }));
  }
  renderLabels();
}

/**
 * A download's file name: what it holds and when (the browser's local time), so that several runs do not
 * pile up as results (1).csv, results (2).csv… (page trial): rsir-hits-find-all-20261206-1530.geojson.
 * `what` is made of letters, digits, "-", "_" and "." (the export endpoint's `name` takes it too).
 */
export function fileName(what, ext, when) {
  const d = when instanceof Date ? when : new Date();
  const p = (n) => String(n).padStart(2, "0");
  return `rsir-${what}-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}.${ext}`;
}

export function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

export async function saveLabels(modelId) {
  let doc = labelsGeoJSON(modelId);
  if (caps.labels && doc.features.some((f) => !f.geometry)) {
    try { doc = await postJson(apiUrl("labels"), { labels: doc }); } catch (e) { /* keep what we have */ }
    delete doc.model_match;   // the check's answer about this request, not part of a label file
    delete doc.notes;
  }
  download(fileName("labels", "geojson"), new Blob([JSON.stringify(doc, null, 1)], { type: "application/geo+json" }));
}

export async function loadLabels(file) {
  let doc;
  try { doc = JSON.parse(await file.text()); } catch (e) {
    throw new Error(`${file.name} is not JSON; load a GeoJSON label file (Save labels writes one).`);
  }
  const labels = parseLabels(doc, file.name);
  if (!labels.size) {   // an empty FeatureCollection: nothing to load, the labels there are stay
    throw new Error(`${file.name} holds no labels (its FeatureCollection has no features), so nothing was loaded` +
                    (state.labels.size ? `; the current ${state.labels.size === 1 ? "label is" : "labels are"} kept.` : "."));
  }
  if (caps.labels) {
    // the server checks the ids against the index and fills in footprints
    let checked;
    try { checked = await postJson(apiUrl("labels"), { labels: doc }); } catch (err) {
      // "label set: point X is not in the index; ...": name the file the user chose
      throw new ApiError(friendly(err.message, err.status).replace(/^label set: /, `${file.name}: `), err.status);
    }
    state.labels = parseLabels(checked, file.name);
    renderLabels();
    // what the file held that is not a label (a results file's unlabelled rows, repeats), in the service's words
    const left = (Array.isArray(checked.notes) ? checked.notes : []).map((n) => `${String(n).replace(/^labels: /, `${file.name}: `)}.`);
    return { count: state.labels.size, note: [matchNote(checked.model_match, file.name), ...left].filter(Boolean).join(" ") };
  }
  state.labels = labels;
  renderLabels();
  return { count: state.labels.size, note: "" };
}

/**
 * What the service did with a label file made with another model (its answer's `model_match`, made
 * only then: {model_ids, model_id, by_id, by_item, by_footprint, same_tile?}), in words ("" for none):
 * labels whose ids are this index's tiles were kept, the others matched to the same tile here by item_id
 * or by footprint (a file made before `rsir-stac reindex`: README, label_transfer.py), and labels that
 * name one tile (by this index's id and by the other model's) kept once: the counts add up to the file's.
 */
export function matchNote(m, name) {
  if (!m || !Array.isArray(m.model_ids) || !m.model_ids.length) return "";
  const n = (k) => Number(m[k]) || 0;
  const them = (k, one, many) => (n(k) === 1 ? one : many);
  const models = m.model_ids.map((x) => midShort(x, 40)).join(", ");
  const parts = [];
  if (n("by_id")) {
    parts.push(`${n("by_id")} ${them("by_id", "label names a tile", "labels name tiles")} of this index by id, so ` +
               `${them("by_id", "it was", "they were")} kept as ${them("by_id", "it is", "they are")}`);
  }
  const how = [n("by_item") ? `${n("by_item")} by item_id` : "", n("by_footprint") ? `${n("by_footprint")} by footprint` : ""]
    .filter(Boolean);
  if (how.length) {
    const moved = n("by_item") + n("by_footprint");
    parts.push(`${moved} ${moved === 1 ? "label was" : "labels were"} matched to the same ${moved === 1 ? "tile" : "tiles"} ` +
               `of this index (same item, asset and grid window), ${how.join(" and ")}`);
  }
  const same = m.same_tile || {}, shared = Number(same.labels) || 0, tiles = Number(same.tiles) || 0;
  if (shared && tiles) {   // one tile named by this index's id and by the other model's: one label of it
    parts.push(`${shared} labels name ${tiles === 1 ? "one tile" : `${tiles} tiles`}, ` +
               `so ${tiles === 1 ? "it was" : "each was"} kept once`);
  }
  return `${name} was made with another model (${models}; this index: ${midShort(m.model_id || "?", 40)}): ` +
    `${parts.join("; ") || "no label was matched"}.`;
}

/** The examples of the label set, as the analyst API takes them. */
export function examples() {
  const positives = [], negatives = [];
  for (const [id, l] of state.labels) (l.label === "positive" ? positives : negatives).push({ point_id: id });
  return { positives, negatives };
}

/**
 * Search from the label set.  With /api/query: the engine's recommend query over positives and
 * negatives.  Without it (older server): one search per positive, merged by best distance, labelled
 * tiles and tiles nearer a negative than any positive left out.
 */
export async function refineQuery(filters, k) {
  const ex = examples();
  if (caps.query) {
    return postJson(apiUrl("query"), Object.assign({ positives: ex.positives, negatives: ex.negatives, k: k }, filters));
  }
  const runs = async (list) => Promise.all(list.map((e) => api(apiUrl("search", Object.assign({}, filtersQuery(filters),
    { point_id: e.point_id, k: Math.min(100, k * 2) })))));
  const posDocs = await runs(ex.positives.slice(0, 10));
  const negDocs = await runs(ex.negatives.slice(0, 10));
  const best = new Map(), negBest = new Map();
  for (const d of posDocs) for (const f of d.features) {
    const cur = best.get(f.id);
    if (!cur || f.properties.distance < cur.properties.distance) best.set(f.id, f);
  }
  for (const d of negDocs) for (const f of d.features) {
    negBest.set(f.id, Math.min(negBest.get(f.id) ?? Infinity, f.properties.distance));
  }
  const feats = [...best.values()]
    .filter((f) => !state.labels.has(f.id) && !((negBest.get(f.id) ?? Infinity) < f.properties.distance))
    .sort((a, b) => a.properties.distance - b.properties.distance).slice(0, k);
  feats.forEach((f, i) => { f.properties.rank = i + 1; });
  return { type: "FeatureCollection", features: feats, query: { kind: "labels" }, k: k, merged: true };
}

function filtersQuery(filters) {
  const q = {};
  if (filters.datetime) q.datetime = filters.datetime;
  if (filters.bbox) q.bbox = filters.bbox.join(",");
  if (filters.polygon) q.polygon = JSON.stringify(filters.polygon);
  return q;
}

/** "Find all": the classifier over the current area; its answer (tiles above the threshold), which
 *  labelstab.js draws on the map (hits.js's drawHits) and lists (showHits). */
export async function findAll(filters, onProgress) {
  if (!caps.classify) {
    throw new Error("Find all needs a service with the classifier (rsir-stac serve of this version or later).");
  }
  const t0 = performance.now();
  const timer = setInterval(() => onProgress((performance.now() - t0) / 1000), 250);
  try {
    const box = $("threshold"), raw = box.value.trim();
    const threshold = raw === "" ? NaN : Number(raw);
    if (!(threshold >= 0 && threshold <= 1)) {
      // a number the box cannot hold (1e309, 400 digits) reads as "": say so, not quote an empty value
      throw new Error(raw === "" && box.validity && box.validity.badInput
        ? "the threshold box holds a number it cannot read; give a probability from 0 to 1, e.g. 0.5"
        : `threshold "${raw}" must be a probability from 0 to 1, e.g. 0.5`);
    }
    const made = runSignature(threshold);   // what the hits are of: these labels, this threshold
    const resp = await postJson(apiUrl("classify"), Object.assign({ labels: labelsGeoJSON(), threshold: threshold,
      max_hits: 2000 }, filters), { raw: true });
    const text = await resp.text();
    const doc = JSON.parse(text);
    answers.set(doc, text);
    madeWith.set(doc, made);
    madeAt.set(doc, new Date());
    return doc;
  } finally { clearInterval(timer); }
}

const answers = new WeakMap();   // a "find all" answer -> the service's own text of it
const madeWith = new WeakMap();  // a "find all" answer -> the labels and threshold it was run with (runSignature)
let shownHits = null;            // the answer whose hits are listed

/** The labels (tile and label) and threshold a "find all" runs with, as one comparable string. */
function runSignature(threshold) {
  return JSON.stringify([[...state.labels].map(([id, l]) => `${id}:${l.label}`).sort(), threshold]);
}

/** Say over the listed hits when the labels or the threshold changed since they were found (the map
 *  and Download hits still hold that run's answer, which names its own threshold and labels). */
function markStaleHits() {
  const box = $("hits");
  if (!box || box.hidden || !shownHits || !madeWith.has(shownHits)) return;
  const raw = $("threshold").value.trim();
  const stale = runSignature(raw === "" ? NaN : Number(raw)) !== madeWith.get(shownHits);
  let line = box.querySelector(".stale");
  if (!line) {
    line = el("p", "hint stale", "The labels or the threshold changed since these hits were found: press Find all again.");
    line.setAttribute("role", "status");
    box.insertBefore(line, box.children[1] || null);
  }
  line.hidden = !stale;
}
$("threshold").addEventListener("input", markStaleHits);
const madeAt = new WeakMap();    // a "find all" answer -> when it came (its download's name says it)

/** When a "find all" answer came (now for one not of this page's findAll). */
export function findAllTime(doc) { return madeAt.get(doc) || new Date(); }

/**
 * The hits of a "find all" answer as a GeoJSON file: the service's text as it came (a FeatureCollection
 * with its summary and notes beside the features), not the page's JSON.stringify of it, which writes
 * 5.0 as 5: GDAL would type gsd and the epochs Integer, where every export has them Real.
 */
export function findAllFile(doc) {
  const text = answers.get(doc) || JSON.stringify({ type: "FeatureCollection", features: doc.features || [] });
  return new Blob([text], { type: "application/geo+json" });
}

export function clearFindAll() {
  clearHits();
  focusLayer.clearLayers();
  const box = $("hits");
  if (box) { box.innerHTML = ""; box.hidden = true; }
}

// ------------------------------------------------------------------ the hits of "find all", listed
const HITS_SHOWN = 100;   // cards listed (Download hits saves them all)
const focusLayer = L.featureGroup().addTo(map);   // the outline of the hit looked at

/** The section listing the hits, after the label list (made once). */
function hitsBox() {
  let box = $("hits");
  if (!box) {
    box = el("section");
    box.id = "hits";
    box.setAttribute("aria-label", "Find all hits");
    $("progress").after(box);   // under the Find all button, over the label list
  }
  return box;
}

/** Zoom the map to a hit and outline it. */
function lookAt(f) {
  focusLayer.clearLayers();
  if (!f.geometry) return;
  const g = L.geoJSON(mapjs.nearView(f.geometry), { style: { color: mapjs.COLOURS.selected, weight: 3.5, fill: false }, interactive: false,
                                    pane: "selected" }).addTo(focusLayer);
  map.fitBounds(g.getBounds(), { padding: [60, 60], maxZoom: 18 });
}

/** Restyle the hit cards (and the hits named in an open popup) after a label changed. */
export function restyleHits() {
  relabelHits();
  markStaleHits();
  for (const c of document.querySelectorAll("#hits .card")) {
    const l = state.labels.get(c.dataset.id);
    c.classList.toggle("pos", !!l && l.label === "positive");
    c.classList.toggle("neg", !!l && l.label === "negative");
  }
}

function hitCard(f, onLabel) {
  const p = f.properties;
  const prob = typeof p.probability === "number" ? p.probability.toFixed(3) : "?";
  const c = tileCard(f, `Hit ${p.rank}: probability ${prob}, ${tileDate(p)}, ` +
    (p.item_id || "unknown scene"), `p = ${prob}`);
  const look = () => {
    lookAt(f);
    for (const o of document.querySelectorAll("#hits .card.selected")) o.classList.remove("selected");
    c.classList.add("selected");
  };
  c.onclick = look;
  cardKeys(c, look, (label) => onLabel(f.id, label, f));
  return c;
}

/** Focus hit `id`'s card in the list; false when it is not listed (past the first HITS_SHOWN). */
export function focusHit(id) {
  const c = [...document.querySelectorAll("#hits .card")].find((x) => x.dataset.id === id);
  if (!c) return false;
  for (const o of document.querySelectorAll("#hits .card.selected")) o.classList.remove("selected");
  c.classList.add("selected");
  c.focus();
  c.scrollIntoView({ block: "nearest" });
  return true;
}

/**
 * List the hits of "find all" (most probable first, with their probability) after the labels: a
 * card zooms the map to its tile, P/N label it.  onLabel(id, label, feature) sets the label.
 */
export function showHits(doc, onLabel) {
  const box = hitsBox();
  box.innerHTML = "";
  focusLayer.clearLayers();
  const feats = doc.features || [];
  box.hidden = !feats.length;
  shownHits = doc;
  if (!feats.length) return box;
  box.appendChild(el("h2", "sub", `Find all hits (${feats.length})`));
  box.appendChild(el("p", "muted hint", (feats.length > HITS_SHOWN
    ? `The ${HITS_SHOWN} most probable are listed; Download hits saves all ${feats.length}. ` : "Most probable first. ") +
    "Choose a hit to zoom to it; P or N labels it positive or negative."));
  const grid = el("div", "hit-grid");
  for (const f of feats.slice(0, HITS_SHOWN)) grid.appendChild(hitCard(f, onLabel));
  box.appendChild(grid);
  restyleHits();
  return box;
}

/**
 * A CSV cell safe to open in a spreadsheet, the rule of rsir_stac.export.csv_cell: a text that begins
 * with =, +, -, @, a tab or a carriage return (a formula to a spreadsheet: =HYPERLINK(...) in a STAC
 * item id) gets a leading ' (OWASP, CSV Injection); numbers, and texts that are plain decimal
 * numbers ("-12.5"), as they are.
 */
export function csvCell(v) {
  if (typeof v === "string" && /^[\s\u00a0\u3000\ufeff]*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r]/.test(v) &&
      !/^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/.test(v)) return "'" + v;
  return v;
}

/**
 * Export the current results: the service's export of the same query (every format, one schema),
 * an uploaded example sent along as a multipart positive_image; GeoJSON/CSV in the page only with a
 * service that has no export endpoint.
 */
export async function exportResults(format, body, features, image, what) {
  const ext = { geojson: "geojson", csv: "csv", parquet: "parquet", fgb: "fgb" }[format];
  const name = fileName(what || "results", ext);
  if (caps.export && body) {
    // the service's file name (Content-Disposition) the same as the page's
    const query = JSON.stringify(Object.assign({ format: format, name: name.slice(0, -ext.length - 1) }, body));
    let opts;
    if (image) {
      const form = new FormData();
      form.append("query", query);
      form.append("positive_image", image, image.name || "query");
      opts = { method: "POST", raw: true, body: form };
    } else opts = { method: "POST", raw: true, headers: { "Content-Type": "application/json" }, body: query };
    const resp = await api(apiUrl("query/export"), opts);
    download(name, await resp.blob());
    return;
  }
  if (format === "geojson") {
    download(name, new Blob([JSON.stringify({ type: "FeatureCollection", features: features })],
                                         { type: "application/geo+json" }));
  } else if (format === "csv") {
    const cols = ["rank", "id", "distance", "item_id", "collection", "datetime", "lon", "lat"];
    const esc = (v) => {
      if (v === undefined || v === null) return "";
      const t = String(csvCell(v));
      return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
    };
    const lines = [cols.join(",")];
    for (const f of features) {
      const p = f.properties;
      let loc = p.location;
      if (typeof loc === "string") { try { loc = JSON.parse(loc); } catch (e) { loc = null; } }
      lines.push([p.rank, f.id, p.distance ?? p.score, p.item_id, p.collection, p.datetime, loc && loc.lon, loc && loc.lat]
        .map(esc).join(","));
    }
    download(name, new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  } else {
    throw new Error("GeoParquet export needs a service with the export endpoint; use GeoJSON or CSV here.");
  }
}
