// Searching: the query and the filters as the API takes them, running a search (a clicked place, a
// stored tile, an uploaded image or the labels) and showing its answer (the query box, the results,
// the status line), or nothing when it failed.  Nothing is searched while the Dates box is refused.
import { printable } from "./text.js";
import { api, apiUrl, friendly, setImage, tileUrl } from "./api.js";
import { datesRefused } from "./dates.js";
import { fitSearch } from "./framing.js";
import { setImageryScenes } from "./imagery.js";
import { scenesDoc } from "./indexinfo.js";
import * as labels from "./labels.js";
import { COLOURS, lngNearView, nearView, sceneCovers } from "./map.js";
import { clearResults, el, queryLayer, resultById, select, shortDate, showResults, tileDate } from "./results.js";
import { saveUrl, stampUpload, stampUploading, state } from "./state.js";
import { $, setStatus, showTab } from "./status.js";
import { uploadUrl } from "./uploads.js";

let seq = 0;
// the search on its way (its query and filters; null once answered), so that "Search again" right after
// a filter change (whose "change" event, fired as the click leaves the field, already ran it) is not
// sent twice
let inFlight = null;
export let lastDoc = null;   // the answer on screen (null: none)
let refusedArea = "";    // why a link's polygon was left out (a note with the next results)
let linkNotes = [];      // what else a link held that was left out (told with the next results)
let afterLabel = () => {};

/** What a label set on a result's card sets off too (labelstab.js's labelsChanged, handed over by
 *  app.js: that module runs searches, so this one does not import it). */
export function whenLabelled(fn) { afterLabel = fn; }

// the page is being left (reload, navigation): an upload search it aborts keeps its "still running"
// mark, so the reloaded page says the upload was not kept (the abort's catch ran first at times)
let leaving = false;
window.addEventListener("beforeunload", () => { leaving = true; });
window.addEventListener("pagehide", () => { leaving = true; });
window.addEventListener("pageshow", () => { leaving = false; });

/** What a link held that was left out: said with the next results (refused: why its polygon was). */
export function noteLeftOut(refused, notes) { refusedArea = refused; linkNotes = notes; }

/** A new area was drawn or cleared: the link's refused polygon is no longer worth a note. */
export function forgetRefusedArea() { refusedArea = ""; }

const NO_POSITIVES = "Refining needs at least one positive label: select a result and press ✓ Positive (or P on " +
  "its card), or load a label file in the Labels tab.";

/** No results on screen (a failed search, or a query that is gone): nothing left that looks current. */
export function showNothing() {
  lastDoc = null;
  $("pager").hidden = true;
  clearResults();
  queryLayer.clearLayers();
  $("query").innerHTML = "";
  $("query").hidden = true;
  $("fit").disabled = true;
  for (const b of document.querySelectorAll(".export")) b.disabled = true;
}

// ------------------------------------------------------------------ filters
export function filters() {
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
  if (state.offset) q.set("offset", String(state.offset));
  if (state.expand) q.set("expand", String(state.expand));
  if (state.datetime) q.set("datetime", state.datetime);
  for (const c of state.collections) q.append("collection", c);
  if (state.area && state.area.bbox) q.set("bbox", state.area.bbox.join(","));
  if (state.area && state.area.polygon) q.set("polygon", state.area.polygon.map((p) => p.join(",")).join(";"));
  return q;
}

/** Notes on what the filters leave out that people do not expect (undated / uncollected tiles): the
 *  answer's own (`doc.filter_notes`: those the other filters let through), else the index's counts. */
function filterNotes(doc) {
  const notes = [];
  if (refusedArea) notes.push(`the link's polygon was left out: ${refusedArea}; draw the area again`);
  notes.push(...linkNotes);
  if (doc && Array.isArray(doc.filter_notes)) return notes.concat(doc.filter_notes.map((n) => String(n)));
  if (!scenesDoc) return notes;
  if (state.datetime && scenesDoc.undated_tiles) {
    notes.push(`${scenesDoc.undated_tiles.toLocaleString()} tiles without a date are left out by the date filter`);
  }
  if (state.collections.length && scenesDoc.uncollected_tiles) {
    notes.push(`${scenesDoc.uncollected_tiles.toLocaleString()} tiles without a collection are left out by the collection filter`);
  }
  return notes;
}

/** Where the per-scene cap put closer tiles after farther ones: a note saying so, or "" when the
 *  results are in distance (or score) order. */
function capNote(doc, scored) {
  const v = (doc.features || []).map((f) => f.properties[scored ? "score" : "distance"]);
  // doc.per_scene: the service's soft cap (rsir_stac.search.AUTO_PER_ITEM); none, no cap to explain
  if (!doc.per_scene || v.length < 2 || v.some((x) => typeof x !== "number")) return "";
  let worst = v[0], from = -1;
  for (let i = 1; i < v.length && from < 0; i++) {
    if (scored ? v[i] > worst + 1e-9 : v[i] < worst - 1e-9) from = i;
    worst = scored ? Math.min(worst, v[i]) : Math.max(worst, v[i]);
  }
  if (from < 0) return "";
  // the rank shown on the card (on page 2 the first card is rank 11, not 1: page trial)
  const rank = Number((doc.features[from].properties || {}).rank) || from + 1;
  // doc.per_scene_penalty: a distance beyond the cap ranks as if that many times larger (FILL_PENALTY)
  if (!scored && doc.per_scene_penalty) {
    return `from rank ${rank} on, the results are not in distance order: beyond ${doc.per_scene} tiles of one ` +
      `scene a tile ranks as if ${Math.round((doc.per_scene_penalty - 1) * 100)} % farther, so nearly as near tiles ` +
      "of other scenes come first";
  }
  return `from rank ${rank} on, the results are not in ${scored ? "score" : "distance"} order: at most ` +
    `${doc.per_scene} tiles per scene come first while other scenes have results, so more ${scored ? "alike" : "similar"} ` +
    "tiles of the same scenes follow farther ones, or come on later pages (Next)";
}

/** The imagery follows the filters and shows the selected result's own scene over the others. */
export function syncImagery() {
  const f = state.selected && resultById(state.selected);
  setImageryScenes({ datetime: state.datetime, collections: state.collections,
                     item: f ? f.properties.item_id : null });
}

// ------------------------------------------------------------------ searching
/** The results still shown, for a message that a search was not run ("" with none). */
export function stillShown() {
  // the dates quoted ("2019-01-01/..", an open end) so the sentence's full stop does not run into them, with
  // the straight quotes of the refusal before it (state.js's dateProblem: page re-check)
  return state.query && lastDoc ? ` The results shown are still those of ${state.datetime ? `dates "${state.datetime}"`
    : "all dates"}.` : "";
}

/** Say that `what` (a search, Find all) was not run because of the Dates box's refused text `why`. */
export function refuseDates(why, what, then) {
  setStatus(`${why}. ${what} was not run: correct the dates or empty the Dates box first${then || ""}.` + stillShown(),
            "error");
}

export async function run(query, opts) {
  opts = opts || {};
  const why = datesRefused();
  if (why) {   // not searched, nothing changed (the query, the address), until the dates are fixed
    refuseDates(why, query.kind === "image" ? `The search with ${query.file.name || "the image"}`
      : query.kind === "labels" ? "Refining" : "The search",
    // a new upload is not kept: chosen again once the dates are fixed; the image already searched is (re-check:
    // told to choose it again, Search again ran it)
    query.kind === "image" && query !== state.query ? ", then choose the image again" : "");
    return;
  }
  // an uploaded image the service may refuse (not an image, too many pixels, transparent): the
  // results, query and address shown stay until it answers with results
  const upload = query.kind === "image";
  const before = { query: state.query, selected: state.selected, offset: state.offset };
  if (query !== state.query && !opts.keepOffset) state.offset = 0;   // a new query starts at its first page
  const turning = opts.turnedFrom !== undefined;   // a page turn: its address is pushed once the page came
  if (!upload) {
    state.query = query;
    if (!opts.keepSelection) state.selected = null;
    $("rerun").disabled = false;
    if (opts.push !== false && !turning) saveUrl(true);
  }
  const my = ++seq;
  if (query.kind === "labels" && !labels.examples().positives.length) {   // never the service's wording
    showNothing();
    setStatus(NO_POSITIVES, "error");
    return;
  }
  setStatus(query.kind === "labels" ? "Refining from the labels…" : "Searching…", "busy");
  const mine = inFlight = { query: query, filters: JSON.stringify(filters()) };
  if (upload) stampUploading(query.file.name || "query", my);   // a reload before the answer says it is lost
  try {
    let doc;
    if (query.kind === "image") {
      const form = new FormData();
      form.append("file", query.file, query.file.name || "query");
      for (const [k, v] of filterParams()) form.append(k, v);
      doc = await api(apiUrl("search/image"), { method: "POST", body: form });
    } else if (query.kind === "labels") {
      doc = await labels.refineQuery(Object.assign(filters(), state.expand ? { expand: state.expand } : {},
                                                   state.offset ? { offset: state.offset } : {}), state.k);
    } else {
      // a clicked place keeps the tile it found as the example when filters change (a time series:
      // "where was this 2020 pattern in 2009?"); a new click finds the tile there again
      const extra = query.kind === "point" ? { point_id: query.id }
        : query.pinned ? { point_id: query.pinned } : { lon: query.lon, lat: query.lat };
      doc = await api("api/search?" + filterParams(extra));
    }
    if (upload) stampUploading(null, my);
    if (my !== seq) return;
    if (turning && opts.push !== false) saveUrl(true);
    if (upload) {
      state.query = query;
      if (!opts.keepSelection) state.selected = null;
      $("rerun").disabled = false;
      if (opts.push !== false) saveUrl(true);
      stampUpload((query.file && query.file.name) || "query");
    }
    render(doc, query, opts);
  } catch (err) {
    if (upload && !leaving) stampUploading(null, my);   // a reload aborts the upload: its mark must stay
    if (my !== seq) return;
    if (upload) {   // refused: what was shown stays, and says so
      state.query = before.query;
      state.selected = before.selected;
      state.offset = before.offset;
      setStatus(`${query.file.name || "The image"} was not searched: ${friendly(err.message)}` +
                (/[.!?]$/.test(friendly(err.message)) ? "" : ".") + (before.query && lastDoc
        ? " The results shown are still those of the previous search." : ""), "error");
      return;
    }
    if (turning && lastDoc && query === state.query) {
      // a page turn that failed (the service down): the page shown stays, with its downloads, and so does
      // the address (page trial: it showed nothing and its link named the page not loaded)
      state.offset = opts.turnedFrom;
      showPager(lastDoc);
      setStatus(`${friendly(err.message)}${/[.!?]$/.test(friendly(err.message)) ? "" : "."} The page shown is still ` +
                `results ${(lastDoc.offset || 0) + 1}–${(lastDoc.offset || 0) + (lastDoc.features || []).length}; ` +
                "turn the page again once the service answers.", "error");
      return;
    }
    if (query.kind === "location" && query.typed && err.status === 404 && before.query && lastDoc) {
      // a typed place with no tile is a wrong input, as a refused upload is: what was shown stays, and the
      // history entry pushed for it names that search again (with the view the place moved the map to)
      state.query = before.query;
      state.selected = before.selected;
      state.offset = before.offset;
      saveUrl(false);
      setStatus(`${friendly(err.message)}${swappedHint(query)} The results shown are still those of the previous search.`,
                "error");
      return;
    }
    if (query.kind === "location" && query.pinned && err.status === 404) {
      // a link's tile (qid) gone from the index (ids change on a new ingest): the link's place still
      // holds, so search there, and say so
      const gone = query.pinned;
      delete query.pinned;
      linkNotes.push(`the tile the link named (qid=${gone}) is no longer in the index, so this is a search at the ` +
                     "link's place instead (the tile there now)");
      run(query, Object.assign({}, opts, { push: false }));
      return;
    }
    showNothing();   // the last results are not this query's: none is shown as if current
    // a labelled tile gone from the index (a link of an older index): "search again" would fail again
    setStatus(query.kind === "labels" && err.status === 404
      ? friendly(err.message).replace(/; search again\.$/, ": remove its label in the Labels tab, then refine again.")
      : friendly(err.message) + (query.kind === "location" && query.typed && err.status === 404 ? swappedHint(query) : ""),
              "error");
    if (query.kind === "location") {
      queryLayer.clearLayers();
      L.circleMarker([query.lat, lngNearView(query.lon)], { radius: 5, color: COLOURS.query, weight: 2, interactive: false, pane: "query" }).addTo(queryLayer);
    }
  } finally {
    if (inFlight === mine) inFlight = null;
  }
}

/** The indexed scenes that hold (lon, lat) (map.sceneCovers). */
export function scenesAt(lon, lat) {
  return ((scenesDoc && scenesDoc.features) || []).filter((f) => {
    const b = f.properties && f.properties.bbox;
    return Array.isArray(b) && b.length === 4 && sceneCovers(f, { lng: lon, lat: lat });
  });
}

/** Whether (lon, lat) lies in an indexed scene's bbox. */
export const inScene = (lon, lat) => scenesAt(lon, lat).length > 0;

/** " Did you mean LAT, LON?" when the swapped place lies in a scene (lat, lon typed as lon, lat: both in
 *  range, so the box took them), else "": said when a typed place found no tile, or Go moved to no scene. */
export function swappedHint(query) {
  const [x, y] = [query.lat, query.lon];   // the swapped place: lon = the typed latitude
  if (Math.abs(y) > 90) return "";
  return inScene(x, y) ? ` Did you mean ${x}, ${y}? A scene lies there (the place is lon, lat).` : "";
}

export function rerun() {
  if (!state.query) return;
  if (inFlight && inFlight.query === state.query && inFlight.filters === JSON.stringify(filters())) return;
  run(state.query, { push: false });   // (the same search already on its way is not sent again)
}

/** Next and Previous under the gallery: shown when the answer has another page either way (not for a
 *  merged answer, which has no pages). */
function showPager(doc) {
  const n = (doc.features || []).length, off = doc.offset || 0;
  const more = doc.next_offset !== undefined && doc.next_offset !== null;
  $("pager").hidden = !!doc.merged || (!off && !more);
  $("page-text").textContent = n ? `Results ${off + 1}–${off + n}` : `No results from ${off + 1} on`;
  $("page-prev").disabled = !off;
  $("page-next").disabled = !more;
}

function turnPage(offset) {
  if (!state.query) return;
  const from = state.offset;
  state.offset = Math.max(0, offset);
  run(state.query, { keepOffset: true, focusResults: true, turnedFrom: from });
}
$("page-next").addEventListener("click", () => { if (lastDoc && lastDoc.next_offset) turnPage(lastDoc.next_offset); });
$("page-prev").addEventListener("click", () => turnPage(state.offset - state.k));

export function render(doc, query, opts) {
  lastDoc = doc;
  showPager(doc);
  queryLayer.clearLayers();
  const q = doc.query || {};
  if (query.kind === "location" && q.id) query.pinned = q.id;   // in the link too (qid): the same tile reopens
  if (q.geometry) {
    // an outline only: it lies over the find-all hits, whose purple fill it would tint (as labels.js's)
    L.geoJSON(nearView(q.geometry), { style: { color: COLOURS.query, weight: 2.5, fill: false }, interactive: false, pane: "query" }).addTo(queryLayer);
  }
  if (q.at) L.circleMarker([q.at[1], lngNearView(q.at[0])], { radius: 4, color: COLOURS.query, weight: 2, fillOpacity: 1, interactive: false, pane: "query" }).addTo(queryLayer);
  const scored = doc.score === "score" || ((doc.features || [])[0] && typeof doc.features[0].properties.distance !== "number");
  renderQuery(q, query, scored);
  showResults(Object.assign({}, doc, { score_kind: scored ? "score" : "distance" }), {
    onSelect: (id, zoom) => { select(id, zoom); syncImagery(); saveUrl(false); },
    onSearchFrom: (id) => run({ kind: "point", id: id }, { focusResults: true }),
    onLabel: (id, label) => { labels.setLabel(id, label, resultById(id)); afterLabel(); },
  });
  let lostSelection = "";
  if (state.selected && !resultById(state.selected)) {   // a link's sel= not among these results: not kept
    lostSelection = state.selected;
    state.selected = null;
  }
  if (state.selected) select(state.selected, false);
  syncImagery();
  $("fit").disabled = !(doc.features || []).length;
  for (const b of document.querySelectorAll(".export")) b.disabled = !(doc.features || []).length;
  const n = (doc.features || []).length;
  const filt = [];
  if (state.area) filt.push(state.area.bbox ? "box" : "polygon");
  if (state.datetime) filt.push("dates");
  if (state.collections.length) filt.push("collections");
  const notes = filterNotes(doc);
  notes.push(...(doc.search_notes || []));   // e.g. the place's tile is one the filters leave out (its imagery hidden)
  if (q.warning) notes.push(q.warning);
  if (lostSelection && opts && opts.keepSelection) {
    notes.push(`the selected tile ${lostSelection} is not among these results, so none is selected`);
  }
  const capped = !doc.merged && capNote(doc, scored);   // merged searches have an order of their own
  if (capped) notes.push(capped);
  refusedArea = "";   // told once
  linkNotes = [];
  setStatus(`${n} result${n === 1 ? "" : "s"}` + (filt.length ? ` (filtered by ${filt.join(", ")})` : "") +
            (doc.took_ms !== undefined ? ` · ${Math.round(doc.took_ms)} ms` : "") +
            (doc.merged ? " · merged from one search per example" : "") +
            (n ? " · click a result to look at it" : "") + (notes.length ? ". Note: " + notes.join("; ") + "." : ""));
  if (!(opts && opts.keepTab)) showTab("results");
  if (opts && opts.fit) fitSearch();
  // the button pressed is gone with the details (Search from this) or its tab (Refine): the keyboard
  // goes on from the first result
  if (opts && opts.focusResults) {
    const c = document.querySelector("#gallery .card");
    if (c) c.focus({ preventScroll: false });
  }
  saveUrl(false);   // what the answer pinned (the clicked place's tile) goes into the link
}

function renderQuery(q, query, scored) {
  const qs = $("query");
  qs.innerHTML = "";
  qs.hidden = false;
  const img = el("img");
  // like the result cards: the date and the scene (tiles of one place differ by them)
  const lab = (q.id && state.labels.get(q.id)) || {};   // a labels query's tile: one of the labelled tiles
  const qItem = q.item_id || lab.item_id, qDate = q.datetime || lab.datetime;
  img.alt = printable(query.kind === "image" && query.file ? `Query: uploaded image ${query.file.name}`
    : qItem ? `Query tile: ${qDate ? shortDate(qDate) : "no date"}, ${qItem}` : "Query tile");
  let pic = img;
  if (q.kind === "image" && uploadUrl) img.src = uploadUrl;
  else if (query.kind === "labels") pic = labelsMosaic();
  else if (q.id) setImage(img, tileUrl(q.id));
  else img.classList.add("none");
  const meta = el("div", "meta");
  // a place by its coordinates: clicked, typed or restored by Back alike (Back from a typed place said
  // "the clicked place": a link does not keep how the place was given)
  const title = query.kind === "location" ? `Query: the tile at ${query.lon.toFixed(5)}, ${query.lat.toFixed(5)}`
    : { point: "Query: a stored tile", image: "Query: uploaded image",
        labels: "Query: your labels" }[query.kind] || "Query";
  meta.appendChild(el("div", "qtitle", title));
  if (query.kind === "labels") {
    const ex = labels.examples();
    meta.appendChild(el("div", "muted", `${ex.positives.length} positive, ${ex.negatives.length} negative examples`));
  }
  if (q.item_id) meta.appendChild(el("div", "muted", q.item_id + " · " + tileDate(q)));   // "no date", as cards say
  if (query.kind === "image" && query.file) {
    meta.appendChild(el("div", "muted", query.file.name + (q.size ? ` · ${q.size[0]}×${q.size[1]} px` : "")));
    if (q.warning) {   // e.g. an image much smaller than the model's input
      meta.appendChild(el("div", "warning", "⚠ " + q.warning[0].toUpperCase() + q.warning.slice(1) + "."));
    }
    meta.appendChild(el("div", "muted", "An uploaded image is not kept in links."));
  }
  if (q.expanded && q.expanded.length) {
    meta.appendChild(el("div", "muted expanded", `Expanded with its ${q.expanded.length === 1 ? "nearest tile" : q.expanded.length + " nearest tiles"}; ${scored ? "scores" : "distances"} are to the expanded query.`));
  }
  if (q.id && query.kind !== "labels") {
    meta.appendChild(el("div", "muted id", q.id));
    meta.appendChild(queryLabelButtons(q));
  }
  qs.append(pic, meta);
}

/** ✓ / ✗ for the query tile itself: a stored tile the analyst searched from is often the first
 *  positive (page trial: "Refine search from labels" left it out, and nothing could label it). */
function queryLabelButtons(q) {
  const row = el("div", "row qlabel");
  const feature = { id: q.id, geometry: q.geometry || null,
                    properties: { item_id: q.item_id, datetime: q.datetime, collection: q.collection } };
  const show = (b, label) => {
    const now = state.labels.get(q.id), on = !!now && now.label === label;
    b.classList.toggle("on", on);
    b.setAttribute("aria-pressed", String(on));
  };
  const buttons = [["positive", "pos", "✓ Positive"], ["negative", "neg", "✗ Negative"]].map(([label, cls, text]) => {
    const b = el("button", cls, text);
    b.type = "button";
    b.title = `Label the query tile ${label} (again: remove the label)`;
    b.onclick = () => {
      labels.setLabel(q.id, label, feature);
      afterLabel();
      buttons.forEach(([x, l]) => show(x, l));
    };
    row.appendChild(b);
    return [b, label];
  });
  buttons.forEach(([x, l]) => show(x, l));
  return row;
}

/** A labels query has no one query tile: up to four of the positives, side by side in the
 * query tile's square (the Labels tab lists them all). */
function labelsMosaic() {
  const ids = labels.examples().positives.map((e) => e.point_id);
  const box = el("div", "qmosaic");
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", `Query: ${ids.length} positive label${ids.length === 1 ? "" : "s"}`
    + (ids.length > 4 ? ", the first 4 shown" : ""));
  box.classList.toggle("one", ids.length === 1);
  box.classList.toggle("three", ids.length === 3);   // the first tile takes the left half
  for (const id of ids.slice(0, 4)) {
    const im = el("img");
    im.alt = "";
    im.dataset.id = id;
    setImage(im, tileUrl(id));
    box.appendChild(im);
  }
  if (ids.length > 4) box.appendChild(el("span", "more", `+${ids.length - 4}`));
  return box;
}
