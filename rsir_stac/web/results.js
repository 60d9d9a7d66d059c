// Results: footprints with rank badges on the map, the scrolling gallery, selection and details.
import { printable } from "./text.js";
import { setImage, tileUrl } from "./api.js";
import { toolsTakeClick } from "./drawing.js";
import { COLOURS, map, nearView, tileDate } from "./map.js";
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = printable(text);
  return e;
}
export const shortDate = (s) => (s ? String(s).slice(0, 10) : "");

export { tileDate } from "./map.js";   // the acquisition date or interval, as cards and the map name it

/** A long name cut in the middle to n characters ("opengeos_naip_m…20200831-b3278a42796e"): its
 *  start and its end (where item ids keep dates and versions) stay readable. */
export function midShort(s, n) {
  s = String(s || "");
  if (s.length <= n) return s;
  const head = Math.ceil((n - 1) * 0.4);
  return s.slice(0, head) + "…" + s.slice(s.length - (n - 1 - head));
}

const resultsLayer = L.featureGroup().addTo(map);
const badgeLayer = L.layerGroup().addTo(map);
const selectedLayer = L.layerGroup().addTo(map);   // the selected result's outline, over labelled outlines
export const queryLayer = L.featureGroup().addTo(map);   // its layers go in the "query" pane, over the results
const footprints = new Map();   // id -> layer
const cards = new Map();        // id -> card
let features = [];
let handlers = {};

/** What the keys do on a result card (its tooltip and the line over the gallery). */
export const CARD_KEYS = "Keys: arrows move between results · Enter: details · P: positive · N: negative " +
  "(again: remove the label)";
const KEY_SHORTCUTS = "ArrowLeft ArrowRight ArrowUp ArrowDown Home End Enter P N";

/** Arrow keys (a row or a column of the grid), Home and End move the focus from `card` to another
 *  card of its grid; returns whether the key was one of them. */
export function moveFocus(card, key) {
  const cards = [...card.parentElement.children].filter((c) => c.classList.contains("card"));
  const i = cards.indexOf(card);
  const cols = Math.max(1, cards.filter((c) => c.offsetTop === cards[0].offsetTop).length);
  const to = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + cols, ArrowUp: i - cols, Home: 0,
               End: cards.length - 1 }[key];
  if (to === undefined || i < 0) return false;
  const next = cards[Math.max(0, Math.min(cards.length - 1, to))];
  next.focus();
  next.scrollIntoView({ block: "nearest" });
  return true;
}

/** A card's keys: Enter/Space open it, P/N label it, arrows/Home/End move to another card. */
export function cardKeys(card, open, label) {
  card.title = CARD_KEYS;
  card.setAttribute("aria-keyshortcuts", KEY_SHORTCUTS);
  card.onkeydown = (ev) => {
    if (ev.target !== card || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (k === "Enter" || k === " ") { ev.preventDefault(); open(); }
    else if (k === "p" || k === "n") { ev.preventDefault(); label(k === "p" ? "positive" : "negative"); }
    else if (moveFocus(card, ev.key)) ev.preventDefault();
  };
}

export const DISTANCE_HELP = "Distance between the two tiles' embeddings (Euclidean): 0 means the same " +
  "content, smaller means more alike. It ranks results of one query; it is not a probability and not metres. " +
  "Beyond 3 results of one scene, a tile ranks as if 30 % farther, so nearly as near tiles of other scenes come " +
  "first and closer tiles of a scene can follow farther ones.";
const SCORE_HELP = "Score of the labelled query (higher is more like the positives and less like the negatives).";

function footprintStyle(id) {
  const l = state.labels.get(id);
  const colour = l ? (l.label === "positive" ? COLOURS.positive : COLOURS.negative) : COLOURS.result;
  const sel = id === state.selected;
  return { pane: "results", color: sel ? COLOURS.selected : colour, weight: sel ? 3 : 1.5, fillColor: colour,
           fillOpacity: sel ? 0.15 : 0.04 };
}

function restyle(id) {
  const layer = footprints.get(id);
  if (layer) layer.setStyle(footprintStyle(id));
  const card = cards.get(id);
  if (card) {
    const l = state.labels.get(id);
    card.classList.toggle("selected", id === state.selected);
    card.classList.toggle("pos", !!l && l.label === "positive");
    card.classList.toggle("neg", !!l && l.label === "negative");
    card.setAttribute("aria-pressed", id === state.selected ? "true" : "false");
  }
}

export function restyleAll() { for (const id of footprints.keys()) restyle(id); drawBadges(); drawSelected(); }

/** The selected result's outline again in the "selected" pane (no clicks), over labelled tiles' outlines. */
function drawSelected() {
  selectedLayer.clearLayers();
  const layer = state.selected && footprints.get(state.selected);
  if (!layer) return;
  const st = footprintStyle(state.selected);
  L.geoJSON(layer.toGeoJSON(), { pane: "selected", interactive: false,
                                 style: { color: st.color, weight: st.weight, fill: false } }).addTo(selectedLayer);
}

/**
 * Rank badges that stay readable when footprints stack: badges closer than 24 px merge into
 * one showing the best (lowest) rank and how many more are under it ("1 +3").
 */
export function drawBadges() {
  badgeLayer.clearLayers();
  const groups = [];
  for (const f of features) {   // features are in rank order: the best claims a spot first
    const layer = footprints.get(f.id);
    if (!layer) continue;
    const c = layer.getBounds().getCenter();
    const p = map.latLngToLayerPoint(c);
    const g = groups.find((x) => x.p.distanceTo(p) < 24);
    if (g) g.n++;
    else groups.push({ p: p, c: c, f: f, n: 1 });
  }
  for (const g of groups.reverse()) {   // best ranks added last: drawn on top
    const rank = g.f.properties.rank;
    const lab = state.labels.get(g.f.id);
    const cls = "rank-badge" + (g.f.id === state.selected ? " sel" : "") + (lab ? " " + lab.label : "");
    const icon = L.divIcon({ className: cls, html: "", iconSize: null });
    const m = L.marker(g.c, { icon: icon, pane: "badges", interactive: false, keyboard: false,
                              zIndexOffset: 10000 - rank });
    m.addTo(badgeLayer);
    const node = m.getElement();
    node.textContent = g.n > 1 ? `${rank} +${g.n - 1}` : String(rank);
    node.dataset.rank = String(rank);
    node.title = g.n > 1 ? `rank ${rank} and ${g.n - 1} more here` : `rank ${rank}`;
  }
}
map.on("zoomend", drawBadges);

export function clearResults() {
  resultsLayer.clearLayers();
  badgeLayer.clearLayers();
  selectedLayer.clearLayers();
  footprints.clear();
  cards.clear();
  features = [];
  $("gallery").innerHTML = "";
  $("details").hidden = true;
  keysLine(false);
}

/** The line over the gallery saying what the keys do on a card (while there are cards). */
function keysLine(on) {
  let p = $("gallery-keys");
  if (!p) {
    p = el("p", "muted hint", CARD_KEYS);
    p.id = "gallery-keys";
    $("gallery").before(p);
  }
  p.hidden = !on;
}

export function resultFeatures() { return features; }
export function resultById(id) { return features.find((f) => f.id === id) || null; }

/** Show a FeatureCollection of results; h: {onSelect(id), onSearchFrom(id), onLabel(id, label)}. */
export function showResults(doc, h) {
  handlers = h;
  clearResults();
  features = (doc.features || []).slice().sort((a, b) => a.properties.rank - b.properties.rank);
  const scored = doc.score_kind === "score";
  // worst first, so the best footprints lie on top
  for (const f of features.slice().reverse()) {
    if (!f.geometry) continue;
    const layer = L.geoJSON(nearView(f.geometry), { style: () => footprintStyle(f.id), pane: "results" }).getLayers()[0];
    layer.on("click", (e) => {
      if (toolsTakeClick()) return;   // drawing: the click goes on to the map (a corner), not a selection
      L.DomEvent.stopPropagation(e);
      h.onSelect(f.id, true);
    });
    layer.on("mouseover", () => { const c = cards.get(f.id); if (c) c.classList.add("hover"); });
    layer.on("mouseout", () => { const c = cards.get(f.id); if (c) c.classList.remove("hover"); });
    resultsLayer.addLayer(layer);
    footprints.set(f.id, layer);
  }
  const g = $("gallery");
  keysLine(features.length > 0);
  if (!features.length) g.appendChild(el("div", "empty", doc.empty || "No results: loosen the filters or the area?"));
  for (const f of features) g.appendChild(card(f, scored));
  for (const f of features) restyle(f.id);   // each card as labelled: a card drawn plain read as unlabelled (page trial)
  g.scrollTop = 0;
  drawBadges();
}

/**
 * A gallery card of one tile (a result, or a "find all" hit): its thumbnail with `alt`, the rank
 * badge, and a caption of `figure` (distance, score or probability), date and scene.
 */
export function tileCard(f, alt, figure) {
  const p = f.properties;
  const c = el("div", "card");
  c.tabIndex = 0;
  c.setAttribute("role", "button");
  c.dataset.id = f.id;
  const img = el("img");
  img.alt = printable(alt);
  img.loading = "lazy";
  img.width = 256;
  img.height = 256;
  setImage(img, tileUrl(f.id));
  c.appendChild(img);
  c.appendChild(el("span", "rank", String(p.rank)));
  const cap = el("div", "cap");
  cap.appendChild(el("div", "dist", figure));
  // the date first: results of one place at several dates (a time series) differ by it
  cap.appendChild(el("div", "date", tileDate(p)));
  cap.appendChild(el("div", "item", midShort(p.item_id, 18))).title = printable(p.item_id || "");
  c.appendChild(cap);
  return c;
}

function card(f, scored) {
  const p = f.properties;
  const dist = typeof p.distance === "number" ? p.distance : p.score;
  const c = tileCard(f, `Result ${p.rank}: ${tileDate(p)}, ${p.item_id || "unknown scene"}`,
                     (scored ? "score " : "d = ") + (typeof dist === "number" ? dist.toFixed(3) : "?"));
  c.setAttribute("aria-pressed", "false");
  c.onclick = (ev) => {   // a click or a tap (detail > 0), not Enter (cardKeys): the details come into view
    byPointer = ev.detail > 0;
    try { handlers.onSelect(f.id, true); } finally { byPointer = false; }
  };
  cardKeys(c, () => handlers.onSelect(f.id, true), (label) => handlers.onLabel(f.id, label));
  c.onmouseenter = () => { const l = footprints.get(f.id); if (l) l.setStyle({ weight: 3.5 }); };
  c.onmouseleave = () => restyle(f.id);
  cards.set(f.id, c);
  return c;
}

/** The selection being made comes from a click or tap on a card (which focuses it, as Enter's does not). */
let byPointer = false;

/** Select a result: highlight footprint and card, optionally zoom, and show its details. */
export function select(id, zoom) {
  const prev = state.selected;
  state.selected = id;
  if (prev) restyle(prev);
  const f = resultById(id);
  if (!f) { $("details").hidden = true; drawBadges(); drawSelected(); return; }
  restyle(id);
  drawBadges();
  drawSelected();
  const layer = footprints.get(id);
  if (layer) {
    layer.bringToFront();
    if (zoom) {
      const b = layer.getBounds();
      // a tile framed, not filled: at its own size on screen the imagery would be pixels; never zoomed out
      // for it (a phone's small map framed the tile at a coarser zoom than the one shown: page trial)
      if (!map.getBounds().contains(b) || map.getZoom() < 14) {
        const fit = Math.min(16, map.getBoundsZoom(b.pad(1.5), false, L.point(120, 120)));
        if (fit >= map.getZoom()) map.fitBounds(b.pad(1.5), { padding: [60, 60], maxZoom: 16 });
        else if (!map.getBounds().contains(b)) map.panTo(b.getCenter());
      }
    }
  }
  const c = cards.get(id);
  const onCard = c && document.activeElement === c && !byPointer;
  if (c && !onCard) c.scrollIntoView({ block: "nearest" });
  showDetails(f);
  // from the card (the keyboard, whose P/N keys label it): the details open above the gallery and the
  // card stays in view; a click or a tap: the details (Search from this, Positive, Negative) come into
  // view, with the card below them where the panel has room
  if (onCard) c.scrollIntoView({ block: "nearest" });
  else {   // its heading at the top where it fits, else its buttons (the end) in view
    const d = $("details"), sc = $("scroll");
    d.scrollIntoView({ block: d.offsetHeight <= sc.clientHeight ? "start" : "end" });
  }
}

function row(dl, term, value, help) {
  const dt = el("dt", null, term);
  const dd = el("dd", null, value);
  if (help) dd.appendChild(el("div", "help", help));
  dl.appendChild(dt);
  dl.appendChild(dd);
}

function showDetails(f) {
  const p = f.properties;
  const d = $("details");
  // drawn again (a label changed): the focus stays on the button that had it, not the page's top
  const had = d.contains(document.activeElement) ? document.activeElement.className.split(" ")[0] : "";
  d.innerHTML = "";
  d.hidden = false;
  const head = el("div", "dhead");
  head.appendChild(el("h2", null, `Result ${p.rank}`));
  const close = el("button", "close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Close the details");
  close.onclick = () => { handlers.onSelect(null, false); };
  head.appendChild(close);
  d.appendChild(head);
  const body = el("div", "dbody");
  const img = el("img");
  img.alt = printable(`Result ${p.rank}: ${tileDate(p)}, ${p.item_id || "unknown scene"}`);
  setImage(img, tileUrl(f.id));
  body.appendChild(img);
  const dl = el("dl");
  row(dl, "Scene", (p.item_id || "?") + (p.collection ? ` (${p.collection})` : ""));
  row(dl, "Date", tileDate(p));
  if (typeof p.distance === "number") row(dl, "Distance", p.distance.toFixed(4), DISTANCE_HELP);
  else if (typeof p.score === "number") row(dl, "Score", p.score.toFixed(4), SCORE_HELP);
  const loc = typeof p.location === "string" ? safeJson(p.location) : p.location;
  if (loc && typeof loc.lon === "number") row(dl, "Centre", `${loc.lon.toFixed(5)}, ${loc.lat.toFixed(5)}`);
  row(dl, "Tile id", f.id);
  body.appendChild(dl);
  d.appendChild(body);
  const acts = el("div", "actions");
  const b1 = el("button", "primary", "Search from this");
  b1.type = "button";
  b1.onclick = () => handlers.onSearchFrom(f.id);
  const lab = state.labels.get(f.id);
  const b2 = el("button", "pos" + (lab && lab.label === "positive" ? " on" : ""), "✓ Positive");
  b2.type = "button";
  b2.setAttribute("aria-pressed", lab && lab.label === "positive" ? "true" : "false");
  b2.onclick = () => handlers.onLabel(f.id, "positive");
  const b3 = el("button", "neg" + (lab && lab.label === "negative" ? " on" : ""), "✗ Negative");
  b3.type = "button";
  b3.setAttribute("aria-pressed", lab && lab.label === "negative" ? "true" : "false");
  b3.onclick = () => handlers.onLabel(f.id, "negative");
  acts.append(b1, b2, b3);
  d.appendChild(acts);
  const again = had && d.querySelector("button." + had);
  if (again) again.focus();
}

function safeJson(t) { try { return JSON.parse(t); } catch (e) { return null; } }

export function refreshDetails() {
  const f = state.selected && resultById(state.selected);
  if (f) showDetails(f);
}

