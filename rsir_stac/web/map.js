// The Leaflet map: imagery of the indexed scenes, an optional online basemap, scene footprints,
// the area filter and its drawing tools, "find all" hits, framing a search, the legend and the
// cursor/scale readouts.
import { apiUrl, friendly, hasKey } from "./api.js";
import { polygonProblem, state } from "./state.js";

export const map = L.map("map", {
  boxZoom: false,          // shift-drag draws a filter box instead
  zoomSnap: 0.5,
  maxZoom: 22,
  worldCopyJump: false,
  attributionControl: true,
  doubleClickZoom: true,
});
map.attributionControl.setPrefix(false);

/**
 * The colours of what the map draws, one per meaning, from style.css (--map-*: the legend, the query
 * thumbnail and the cards use the same): query and negative labels differ, results are light.
 */
export const COLOURS = palette();

function palette() {
  const css = getComputedStyle(document.documentElement);
  const read = (name) => css.getPropertyValue("--map-" + name).trim() || "#888";
  const out = {};
  for (const name of ["query", "result", "selected", "positive", "negative", "hit", "area", "scene", "broken"]) {
    out[name] = read(name);
  }
  return out;
}

// "find all" hits over the results (a click there is the hit's), labelled tiles over those (tiles of
// other dates share their footprints and would hide them), the selected result over those, the query
// on top; the panes over the hits take no clicks, so a click on a labelled or selected outline goes to
// the footprint under it.  Zoomed out, the hits' dots lie over the rank badges (next to them).
for (const [name, z] of [["imagery", 200], ["scenes", 390], ["results", 410], ["hits", 411], ["labels", 412],
                         ["selected", 415], ["query", 420], ["badges", 640], ["hitdots", 650]]) {
  map.createPane(name);
  map.getPane(name).style.zIndex = z;
}
for (const name of ["imagery", "labels", "selected", "query", "badges"]) map.getPane(name).style.pointerEvents = "none";

// ------------------------------------------------------------------ imagery (our own XYZ tiles)
const AuthTiles = L.TileLayer.extend({
  // with a service key, fetch tiles with the X-API-Key header instead of putting the key in URLs
  createTile: function (coords, done) {
    const url = this.getTileUrl(coords);
    if (!hasKey()) {
      const tile = L.TileLayer.prototype.createTile.call(this, coords, done);
      tile.dataset.url = url;   // asked again when it fails (whyFailed)
      return tile;
    }
    const img = document.createElement("img");
    img.alt = "";
    img.dataset.url = url;
    fetch(url, { headers: { "X-API-Key": sessionStorage.getItem("rsir-key") || "" } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error("HTTP " + r.status))))
      .then((b) => { img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); }; img.src = URL.createObjectURL(b); })
      .catch((e) => done(e, img));
    return img;
  },
});

let imagery = null;
let imageryQuery = "";      // which scenes draw, and which first: the page's filters and selected result
let imageryProblem = null;  // "outage" | "refused": a notice the next loaded tile clears
let probing = false, toldMissing = false, redrawn = 0;
export const imageryStats = { loaded: 0, failed: 0 };

const imageryUrl = () => apiUrl("imagery/{z}/{x}/{y}.png") + (imageryQuery ? "?" + imageryQuery : "");
const keyHeaders = () => (hasKey() ? { "X-API-Key": sessionStorage.getItem("rsir-key") || "" } : {});

export function addImagery(extent, maxNativeZoom, onFail) {
  if (imagery) imagery.remove();
  const opts = { pane: "imagery", tileSize: 256, maxZoom: 22, maxNativeZoom: Math.min(22, maxNativeZoom || 18),
                 attribution: "imagery: indexed scenes", keepBuffer: 1 };
  if (extent) opts.bounds = L.latLngBounds([extent[1], extent[0]], [extent[3], extent[2]]).pad(0.02);
  imagery = new AuthTiles(imageryUrl(), opts);
  imagery.on("tileload", () => {
    imageryStats.loaded++;
    if (imageryProblem) { imageryProblem = null; mapNotice(""); }
  });
  imagery.on("tileerror", (ev) => {
    imageryStats.failed++;
    if (ev.tile && ev.tile.dataset.url) whyFailed(ev.tile.dataset.url, onFail);
  });
  imagery.addTo(map);
  return imagery;
}

/**
 * Draw the imagery of the scenes the page is about: acquired within `datetime`, of `collections`,
 * and the scenes of STAC item `item` (the selected result's) over the others.
 */
export function setImageryScenes({ datetime, collections, item }) {
  imageryChoice = sceneChoice(datetime, collections, item);
  const q = new URLSearchParams();
  if (datetime) q.set("datetime", datetime);
  for (const c of collections || []) q.append("collection", c);
  if (item) q.set("item", item);
  if (q.toString() === imageryQuery) return;
  imageryQuery = q.toString();
  if (imagery) { imagery.setUrl(imageryUrl(), true); reloadImagery(); }
}

/**
 * Which scenes the imagery draws, as the service picks them (maptiles.SceneChoice): those acquired
 * within `datetime` (START/END, '..' open; a year, month or day covers it; undated scenes are then
 * left out) and of `collections` (any when none); `item`'s scenes are drawn first.
 */
function sceneChoice(datetime, collections, item) {
  const range = dateRange(datetime);
  const cols = collections || [];
  return {
    item: item || null,
    matches: (p) => (!cols.length || cols.includes(p.collection)) && (!range || withinRange(p.datetime, range)),
  };
}
let imageryChoice = sceneChoice("", [], null);

/** [start, end] in ms (null: open) of a Dates text, or null for none (or one the page refuses). */
function dateRange(text) {
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

function withinRange(when, [start, end]) {
  const t = when ? Date.parse(when) : NaN;
  return !Number.isNaN(t) && (start === null || t >= start) && (end === null || t <= end);
}

/** Fetch the imagery tiles of the view again.  Not GridLayer.redraw: at a half zoom level
 *  (zoomSnap 0.5) it asks for tiles at that fractional zoom; adding the layer again rounds it. */
function reloadImagery() {
  if (imagery && imagery._map) { imagery.remove(); imagery.addTo(map); }
}

/**
 * Why an imagery tile failed, asked again with fetch: the service unreachable (an outage: not the
 * scenes' fault; retried until it answers, then redrawn), a request it refused (its message), or
 * a scene it cannot read (404: onFail, once).
 */
async function whyFailed(url, onFail) {
  if (probing) return;
  probing = true;
  let status = 0, detail = "";
  try {
    const r = await fetch(url, { headers: keyHeaders() });
    status = r.status;
    if (!r.ok) { try { detail = (await r.json()).detail; } catch (e) { detail = ""; } }
  } catch (e) { status = 0; }
  probing = false;
  if (status === 0) {
    imageryProblem = "outage";
    mapNotice("The service cannot be reached, so the imagery is not drawn; it is drawn again once the service answers.");
    retryWhenBack(url);
  } else if (status === 404) {
    if (!toldMissing && onFail) { toldMissing = true; onFail(); }
  } else if (status >= 400) {
    imageryProblem = "refused";
    mapNotice("Some imagery could not be drawn: " + friendly(typeof detail === "string" ? detail : "", status));
  } else if (Date.now() - redrawn > 10000) {   // it draws now (a passing failure): fetch the view's tiles again
    redrawn = Date.now();
    reloadImagery();
  }
}

function retryWhenBack(url) {
  setTimeout(async () => {
    try { await fetch(url, { headers: keyHeaders() }); } catch (e) { retryWhenBack(url); return; }
    if (imageryProblem === "outage") { imageryProblem = null; mapNotice(""); }
    reloadImagery();
  }, 2000);
}

// ------------------------------------------------------------------ optional online basemap
export function addBasemap(url, onFail) {
  let host = "";
  try { host = new URL(url.replace(/[{}]/g, ""), window.location.href).host; } catch (e) { host = "basemap"; }
  const layer = L.tileLayer(url, { maxZoom: 22, attribution: "basemap: " + host, crossOrigin: false });
  let ok = 0, bad = 0, told = false;
  layer.on("tileload", () => { ok++; });
  layer.on("tileerror", () => {
    bad++;
    if (!told && bad >= 3 && ok === 0) { told = true; onFail(host); }
  });
  layer.addTo(map);
  layer.bringToBack();
  return layer;
}

// ------------------------------------------------------------------ scene footprints
export const scenesLayer = L.featureGroup().addTo(map);
const sceneLayers = new Map();
let sceneFeatures = [];   // /api/scenes, newest first (undated last): the order the imagery draws them in

function sceneStyle(p) {
  return { pane: "scenes", color: p.imagery === false ? COLOURS.broken : COLOURS.scene, weight: 1.5, dashArray: "5 4",
           fill: true, fillOpacity: 0, opacity: 0.9 };
}

const sceneDots = L.layerGroup().addTo(map);
let allDots = [];

/** Dots at the centres of scenes too small to see at this zoom (click one to zoom to it).  Only
 *  those are on the map: a hidden dot would take the clicks (a search) at a scene's centre. */
function updateDots() {
  if (!map._loaded) return;   // no view yet
  for (const m of allDots) {
    const small = tooSmall(m.options.sceneBounds);
    if (small && !sceneDots.hasLayer(m)) sceneDots.addLayer(m);
    else if (!small && sceneDots.hasLayer(m)) sceneDots.removeLayer(m);
  }
}
map.on("zoomend load", updateDots);

/** Whether `bounds` is drawn smaller than `px` pixels both ways at this zoom. */
function tooSmall(bounds, px = 14) {
  const a = map.latLngToContainerPoint(bounds.getNorthWest()), c = map.latLngToContainerPoint(bounds.getSouthEast());
  return Math.abs(c.x - a.x) < px && Math.abs(c.y - a.y) < px;
}

/** Out of the tab order: Chromium makes an outline with a tooltip (focus listeners) a tab stop with
 *  no name and nothing to do; the Scenes tab lists the scenes for the keyboard. */
function noTabStop(layer) {
  const e = layer.getElement && layer.getElement();
  if (e) e.setAttribute("tabindex", "-1");
}

/** An element holding `lines` as text, one a line: Leaflet puts a string in as HTML, and item ids and
 *  dates come from STAC catalogues (anyone's). */
function textLines(lines) {
  const div = document.createElement("div");
  for (const line of lines) div.appendChild(document.createElement("div")).textContent = line;
  return div;
}

const day = (t) => (t ? String(t).slice(0, 10) : "");
const sceneName = (p) => `${p.item_id}${p.datetime ? " · " + day(p.datetime) : ""} · ${p.tiles} tiles`;

/** Whether lon/lat lies in scene feature `f` (its bbox, then its footprint polygon). */
function sceneCovers(f, ll) {
  const [w, s, e, n] = f.properties.bbox;
  const lng = wrapLng(ll.lng);
  if (ll.lat < s || ll.lat > n || (w <= e ? lng < w || lng > e : lng < w && lng > e)) return false;
  return w > e || geometryCovers(f.geometry, lng, ll.lat);   // across the antimeridian: the bbox
}

/** Whether a GeoJSON (Multi)Polygon's outer rings hold lon/lat x, y (true for other geometries). */
function geometryCovers(g, x, y) {
  const polys = !g ? null : g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : null;
  return !polys || polys.some((rings) => inRing(rings[0], x, y));
}

function inRing(ring, x, y) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i], [xj, yj] = ring[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * The scenes at `ll` as the imagery draws them: those of the page's dates and collections, the
 * selected result's scene first, then the newest (what a click there searches, with no result
 * selected); `hidden` are the others there (left out by the filters).
 */
function scenesAt(ll) {
  const here = sceneFeatures.filter((f) => f.properties.bbox && sceneCovers(f, ll));
  const drawn = here.filter((f) => imageryChoice.matches(f.properties));
  const item = imageryChoice.item;
  const shown = item ? drawn.filter((f) => f.properties.item_id === item).concat(drawn.filter((f) => f.properties.item_id !== item))
    : drawn;
  return { shown: shown, hidden: here.filter((f) => !drawn.includes(f)) };
}

/** What the hover label says at `ll`: the scene drawn on top there, then how many other dates lie
 *  under it (and how many the filters leave out). */
function sceneLabel(ll) {
  const { shown, hidden } = scenesAt(ll);
  if (!shown.length && !hidden.length) return [];
  if (!shown.length) {
    return [sceneName(hidden[0].properties), `not drawn: outside the page's dates or collections` +
            (hidden.length > 1 ? ` (${hidden.length} scenes here)` : "")];
  }
  const lines = [sceneName(shown[0].properties)];
  const under = shown.slice(1);
  if (under.length) {
    const dates = [...new Set(under.map((f) => day(f.properties.datetime) || "no date"))];
    const what = dates.length === under.length ? `${under.length} other date${under.length > 1 ? "s" : ""}`
      : `${under.length} other scene${under.length > 1 ? "s" : ""}`;
    lines.push(`${what} under it: ${dates.slice(0, 4).join(", ")}${dates.length > 4 ? ", …" : ""}`);
  }
  if (hidden.length) lines.push(`${hidden.length} more left out by the dates or collections`);
  return lines;
}

/** A scene outline's or dot's hover label: the scenes at the pointer, not only its own (where dates
 *  stack, the outline on top is not the scene drawn on top); kept inside the map. */
function bindSceneTip(layer, fallback, opts) {
  let shownText = "";
  const at = () => { const t = layer.getTooltip(); return (t && t.getLatLng()) || null; };
  const lines = () => { const ll = at(); const l = ll ? sceneLabel(ll) : []; return l.length ? l : [fallback]; };
  layer.bindTooltip(() => { const l = lines(); shownText = l.join("\n"); return textLines(l); },
                    Object.assign({ className: "scene-tip" }, opts));
  layer.on("tooltipopen", (e) => keepInside(e.tooltip));
  layer.on("mousemove", () => {
    const t = layer.getTooltip();
    if (!t || !t.isOpen()) return;
    if (lines().join("\n") !== shownText) t.update();
    keepInside(t);
  });
}

/** Move a tooltip (or popup) that would cross the map's edge back inside it. */
function keepInside(overlay) {
  const el = overlay && overlay.getElement && overlay.getElement();
  if (!el) return;
  el.style.translate = "";
  const m = map.getContainer().getBoundingClientRect(), r = el.getBoundingClientRect(), pad = 4;
  const shift = (lo, hi, min, max) => (hi > max - pad ? max - pad - hi : 0) || (lo < min + pad ? min + pad - lo : 0);
  const dx = shift(r.left, r.right, m.left, m.right), dy = shift(r.top, r.bottom, m.top, m.bottom);
  if (dx || dy) el.style.translate = `${Math.round(dx)}px ${Math.round(dy)}px`;
}

export function showScenes(doc) {
  scenesLayer.clearLayers();
  sceneDots.clearLayers();
  allDots = [];
  sceneLayers.clear();
  sceneFeatures = (doc.features || []).filter((f) => f.geometry && f.properties && f.properties.bbox);
  for (const f of sceneFeatures) {
    const p = f.properties;
    const layer = L.geoJSON(f, { style: () => sceneStyle(p), pane: "scenes" });
    layer.eachLayer((l) => {
      bindSceneTip(l, sceneName(p), { sticky: true });
      l.on("add", () => noTabStop(l));   // drawn once the map has a view
    });
    layer.addTo(scenesLayer);
    sceneLayers.set(f.id, layer);
    const [w, s, e, n] = p.bbox;
    const bounds = L.latLngBounds([s, w], [n, e]);
    // opaque: the status line calls them orange dots (a see-through fill is brown on the dark map)
    const dot = L.circleMarker(bounds.getCenter(), { pane: "scenes", radius: 6, color: "#fff", weight: 2, fillOpacity: 1,
                                                    fillColor: p.imagery === false ? COLOURS.broken : COLOURS.area,
                                                    sceneBounds: bounds });
    bindSceneTip(dot, sceneName(p), {});
    dot.on("add", () => noTabStop(dot));
    dot.on("click", (ev) => { L.DomEvent.stopPropagation(ev); map.fitBounds(bounds, { padding: [20, 20], maxZoom: 18 }); });
    allDots.push(dot);
  }
  updateDots();
}

/**
 * The bounds to open the page at: all the data when the scenes fill a fair part of their extent,
 * else (scenes scattered over the globe) the scene with the most tiles and those that overlap it.
 */
export function startBounds(doc) {
  const feats = (doc.features || []).filter((f) => f.properties.bbox);
  if (!feats.length) return null;
  const box = (f) => { const [w, s, e, n] = f.properties.bbox; return L.latLngBounds([s, w], [n, e]); };
  const area = (b) => Math.max(0, b.getEast() - b.getWest()) * Math.max(0, b.getNorth() - b.getSouth());
  const all = box(feats[0]);
  for (const f of feats) all.extend(box(f));
  if (feats.reduce((a, f) => a + area(box(f)), 0) >= 0.02 * area(all)) return all;
  const main = feats.reduce((a, b) => (b.properties.tiles > a.properties.tiles ? b : a));
  const out = box(main);
  for (const f of feats) if (box(f).intersects(box(main))) out.extend(box(f));
  return out;
}

export function flashScene(id) {
  const l = sceneLayers.get(id);
  if (!l) return;
  l.setStyle({ color: COLOURS.area, weight: 3 });
  setTimeout(() => l.setStyle({ color: COLOURS.scene, weight: 1.5 }), 1500);
}

// ------------------------------------------------------------------ area filter and drawing
export const areaLayer = L.layerGroup().addTo(map);
const drawLayer = L.layerGroup().addTo(map);
const DRAW_STYLE = { color: COLOURS.area, weight: 2, dashArray: "4 3", fillOpacity: 0.08, interactive: false };

export function drawArea(area) {
  areaLayer.clearLayers();
  const style = { color: COLOURS.area, weight: 2, fillOpacity: 0.06, interactive: false };
  if (area && area.bbox) {
    const [w, s, e, n] = area.bbox;
    L.rectangle([[s, w], [n, e]], style).addTo(areaLayer);
  } else if (area && area.polygon) {
    L.polygon(area.polygon.slice(0, -1).map(([x, y]) => [y, x]), style).addTo(areaLayer);
  }
}

const SAME_PX = 4;    // a click this close to the last corner adds none (the second click of a double-click)
const CLOSE_PX = 8;   // a closing double-click this close to the first corner ends the ring there
const clampLng = (v) => Math.max(-180, Math.min(180, v));
const clampLat = (v) => Math.max(-90, Math.min(90, v));
const wrapLng = (v) => ((((v + 180) % 360) + 360) % 360) - 180;

/**
 * The map view as a W,S,E,N box the API takes: longitudes wrapped into -180..180 (W > E when the
 * view straddles the antimeridian), latitudes clamped; a view wider than the world is the world.
 */
export function viewBbox() {
  const b = map.getBounds(), w = b.getWest(), e = b.getEast();
  const s = clampLat(b.getSouth()), n = clampLat(b.getNorth());
  if (e - w >= 360) return [-180, s, 180, n];
  let W = wrapLng(w), E = wrapLng(e);
  if (W === 180) W = -180;
  if (E === -180) E = 180;
  return [W, s, E, n];
}

let toolsClaim = () => false;

/** True while a map click belongs to the drawing tools (a drawing mode, or the end of a box drag),
 *  so that layers under the pointer (result footprints) leave it to them. */
export function toolsTakeClick() { return toolsClaim(); }

/**
 * Box and polygon tools; calls onArea(area) when one is drawn, onClick(latlng) for a plain click.
 * The box follows pointer events, so a mouse, a pen and a finger all draw it (shift-drag with a
 * mouse in Search mode); the polygon takes clicks (taps).
 */
export function installTools({ getMode, setMode, onArea, onClick, onStatus }) {
  let box = null, poly = null, suppressClick = false;
  toolsClaim = () => getMode() !== "search" || suppressClick || !!box;
  const el = map.getContainer();

  function cancel() { drawLayer.clearLayers(); box = null; poly = null; }

  const startsBox = (ev) => getMode() === "box" || (getMode() === "search" && ev.shiftKey && ev.pointerType === "mouse");
  el.addEventListener("pointerdown", (ev) => {
    if (box && !ev.isPrimary) { cancel(); return; }   // a second finger: a pinch zoom, not a box
    if (!ev.isPrimary || ev.button !== 0 || !startsBox(ev) || ev.target.closest(".leaflet-control")) return;
    const start = map.mouseEventToLatLng(ev);
    box = { pointer: ev.pointerId, start: start, rect: L.rectangle(L.latLngBounds(start, start), DRAW_STYLE).addTo(drawLayer) };
    el.setPointerCapture(ev.pointerId);   // the drag is followed outside the map too
    ev.preventDefault();                  // no text selection, no emulated mouse events
  });
  el.addEventListener("pointermove", (ev) => {
    if (box && ev.pointerId === box.pointer) box.rect.setBounds(L.latLngBounds(box.start, map.mouseEventToLatLng(ev)));
  });
  el.addEventListener("pointerup", (ev) => { if (box && ev.pointerId === box.pointer) endBox(ev); });
  el.addEventListener("pointercancel", (ev) => { if (box && ev.pointerId === box.pointer) cancel(); });

  /** The box from the drag that ended with `ev`: none when let go outside the map or barely moved. */
  function endBox(ev) {
    const start = box.start, end = map.mouseEventToLatLng(ev);
    drawLayer.clearLayers();
    box = null;
    const r = el.getBoundingClientRect();
    if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) return;
    const a = map.latLngToContainerPoint(start), b = map.latLngToContainerPoint(end);
    if (Math.abs(a.x - b.x) < 4 || Math.abs(a.y - b.y) < 4) return;   // a click, not a box
    suppressClick = true;   // the click that ends a mouse drag
    setTimeout(() => { suppressClick = false; }, 0);
    if (getMode() === "box") setMode("search");
    onArea({ bbox: [clampLng(Math.min(start.lng, end.lng)), clampLat(Math.min(start.lat, end.lat)),
                    clampLng(Math.max(start.lng, end.lng)), clampLat(Math.max(start.lat, end.lat))] });
  }

  map.on("mousemove", (e) => {
    if (poly && poly.points.length) poly.line.setLatLngs(poly.points.concat([e.latlng]));
  });
  map.on("click", (e) => {
    if (suppressClick) { suppressClick = false; return; }
    if (getMode() === "polygon") {
      if (!poly) poly = { points: [], line: L.polyline([], Object.assign({}, DRAW_STYLE, { fill: false })).addTo(drawLayer) };
      const p = map.latLngToContainerPoint(e.latlng);
      const last = poly.points[poly.points.length - 1];
      if (!last || map.latLngToContainerPoint(last).distanceTo(p) > SAME_PX) {  // a double-click adds one corner
        poly.points.push(e.latlng);
        L.circleMarker(e.latlng, { radius: 3, color: COLOURS.area, interactive: false }).addTo(drawLayer);
      }
      poly.line.setLatLngs(poly.points);
      return;
    }
    if (getMode() === "search") onClick(e.latlng);
  });
  map.on("dblclick", () => {
    if (getMode() !== "polygon" || !poly) return;
    // a double-click on the first corner closes the ring there (its click added no new corner)
    const pts = poly.points.slice();
    const px = (ll) => map.latLngToContainerPoint(ll);
    if (pts.length > 1 && px(pts[pts.length - 1]).distanceTo(px(pts[0])) <= CLOSE_PX) pts.pop();
    if (pts.length < 3) {
      poly.points = pts;
      poly.line.setLatLngs(pts);
      onStatus("A polygon needs at least 3 corners; keep clicking, double-click to close.", "error");
      return;
    }
    const ring = pts.map((p) => [clampLng(p.lng), clampLat(p.lat)]);
    ring.push(ring[0]);
    const why = polygonProblem(ring);
    if (why) {   // the search would refuse it: nothing is kept, the tool stays on for another try
      cancel();
      onStatus(why[0].toUpperCase() + why.slice(1) + ", so it was not used. Click the corners in order " +
               "around the area, then double-click to close (Esc cancels).", "error");
      return;
    }
    cancel();
    setMode("search");
    onArea({ polygon: ring });
  });
  return cancel;
}

// ------------------------------------------------------------------ "find all" hits
const hitsLayer = L.featureGroup().addTo(map);   // footprints, in the "hits" pane over the results
const hitDots = L.layerGroup().addTo(map);       // dots where the footprints are too small to see
let hits = [];            // {f: feature, bounds}
let hitActions = [];
const HIT_STYLE = { pane: "hits", color: COLOURS.hit, weight: 1.5, opacity: 0.95, fillColor: COLOURS.hit, fillOpacity: 0.1 };
const HIT_DOT_PX = 10;    // a hit drawn smaller than this (zoomed out) is shown as a dot
const HIT_MERGE_PX = 20;  // dots closer than this merge into one with their count

/**
 * Draw the hits of "find all" (GeoJSON features with `probability`, `item_id`, `datetime`): light
 * purple footprints over the results, which take the click there (a popup names the hit, with a
 * button per action {label, run(feature)}); zoomed out, where footprints are too small to see,
 * purple labels ("12 hits": hits near each other merged into one) that zoom to their hits.
 */
export function drawHits(features, actions) {
  clearHits();
  hitActions = actions || [];
  for (const f of (features || []).filter((x) => x.geometry)) {
    const layer = L.geoJSON(f, { style: () => HIT_STYLE, pane: "hits" });
    layer.on("click", (e) => {
      if (toolsClaim()) return;   // drawing: the click is a corner or the end of a box
      L.DomEvent.stopPropagation(e);
      openHits(e.latlng);
    });
    layer.addTo(hitsLayer);
    hits.push({ f: f, bounds: layer.getBounds() });
  }
  drawHitDots();
}

export function clearHits() {
  hitsLayer.clearLayers();
  hitDots.clearLayers();
  map.closePopup();
  hits = [];
}

/** The hits at this zoom too small to see, as dots: one per group of nearby hits, with its count. */
function drawHitDots() {
  hitDots.clearLayers();
  if (!map._loaded) return;
  const groups = [];
  for (const { bounds: b } of hits) {
    if (!tooSmall(b, HIT_DOT_PX)) continue;
    const c = b.getCenter(), p = map.latLngToLayerPoint(c);
    const g = groups.find((x) => x.p.distanceTo(p) < HIT_MERGE_PX);
    if (g) { g.n++; g.bounds.extend(b); } else groups.push({ p: p, c: c, n: 1, bounds: L.latLngBounds(b.getSouthWest(), b.getNorthEast()) });
  }
  for (const g of groups) {
    const what = g.n > 1 ? `${g.n} find-all hits here` : "A find-all hit here";
    const m = L.marker(g.c, { icon: L.divIcon({ className: "hit-dot", html: "", iconSize: null }), pane: "hitdots",
                              keyboard: false, title: what + ": click to zoom to them", alt: what });
    m.on("click", (e) => {
      if (toolsClaim()) return;
      L.DomEvent.stopPropagation(e);
      map.fitBounds(g.bounds, { padding: [40, 40], maxZoom: 18 });
    });
    m.addTo(hitDots);
    m.getElement().textContent = g.n > 1 ? `${g.n} hits` : "hit";
  }
}
map.on("zoomend", drawHitDots);

const HITS_LISTED = 6;   // hits named in one popup (dates and neighbours stacked under a click)

/** A popup naming the hits under `latlng`, most probable first (probability, date, scene), each
 *  with the actions' buttons: where dates and overlapping tiles stack, the pick is the user's. */
function openHits(latlng) {
  const here = hits.filter((h) => h.bounds.contains(latlng) && geometryCovers(h.f.geometry, latlng.lng, latlng.lat))
    .map((h) => h.f).sort((a, b) => (b.properties.probability || 0) - (a.properties.probability || 0));
  if (!here.length) return;
  const div = document.createElement("div");
  const title = div.appendChild(document.createElement("div"));
  title.className = "hit-title";
  title.textContent = here.length > 1 ? `${here.length} find-all hits here` : "Find-all hit";
  for (const f of here.slice(0, HITS_LISTED)) div.appendChild(hitRow(f));
  if (here.length > HITS_LISTED) div.appendChild(document.createTextNode(`and ${here.length - HITS_LISTED} more here`));
  const result = resultAt(latlng);
  if (result) div.appendChild(resultRow(result, latlng));
  const popup = L.popup({ className: "hit-popup", maxWidth: 260, autoPanPaddingTopLeft: [10, 40],
                          autoPanPaddingBottomRight: [10, 10] }).setLatLng(latlng).setContent(div).openOn(map);
  map.once("zoomstart", () => map.closePopup(popup));   // zoomed out, it would cover the map and cross its edge
}

/** The result footprint a click at `latlng` would select were no hit over it (the one on top). */
function resultAt(latlng) {
  let top = null;
  map.eachLayer((l) => {
    if (l instanceof L.Polygon && l.options.pane === "results" && l.getBounds().contains(latlng) &&
        geometryCovers(l.toGeoJSON().geometry, latlng.lng, latlng.lat)) top = l;   // drawn later: on top
  });
  return top;
}

/** The popup's way to the result under the hits: the click it would have had. */
function resultRow(layer, latlng) {
  const row = document.createElement("div");
  row.className = "hit-row";
  const b = row.appendChild(document.createElement("button"));
  b.type = "button";
  b.className = "small";
  b.textContent = "Select the result under it";
  b.onclick = () => { map.closePopup(); layer.fire("click", { latlng: latlng }); };
  return row;
}

/** A hit as the popup names it: probability, date, scene and its label now (not the label it had
 *  when Find all ran: the answer's `label`). */
function hitText(f) {
  const p = f.properties || {};
  const l = state.labels.get(f.id);
  return [typeof p.probability === "number" ? `p = ${p.probability.toFixed(3)}` : "",
          day(p.datetime) || "no date", p.item_id || "unknown scene"].filter(Boolean).join(" · ") +
         (l ? ` (labelled ${l.label})` : "");
}

/** Name the hits of an open popup again, after a label changed. */
export function relabelHits() {
  for (const row of document.querySelectorAll(".hit-popup .hit-row[data-id]")) {
    const h = hits.find((x) => x.f.id === row.dataset.id);
    if (h && row.firstChild) row.firstChild.textContent = hitText(h.f);
  }
}

/** One hit in the popup: its probability, date and scene, and the actions' buttons. */
function hitRow(f) {
  const p = f.properties || {};
  const row = document.createElement("div");
  row.className = "hit-row";
  row.dataset.id = f.id;
  row.appendChild(document.createElement("div")).textContent = hitText(f);
  for (const a of hitActions) {
    const b = row.appendChild(document.createElement("button"));
    b.type = "button";
    b.className = "small";
    b.textContent = a.label;
    b.onclick = () => { map.closePopup(); a.run(f); };
  }
  return row;
}

// ------------------------------------------------------------------ framing a search
/** The bounds of the shapes drawn in pane `name` (footprints; a marker's place). */
function paneBounds(name) {
  const out = [];
  map.eachLayer((l) => {
    if (!(l instanceof L.Path) || l.options.pane !== name) return;
    out.push(l instanceof L.CircleMarker ? L.latLngBounds([l.getLatLng(), l.getLatLng()]) : l.getBounds());
  });
  return out;
}

const merged = (list) => list.reduce((a, b) => a.extend(b), L.latLngBounds([list[0].getSouthWest(), list[0].getNorthEast()]));
const median = (xs) => { const v = xs.slice().sort((a, b) => a - b), h = v.length >> 1; return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2; };
const FAR_MEDIANS = 4;     // a result farther from the query than this many median distances ...
const FAR_FOOTPRINTS = 3;  // ... and than this many footprints is left out of the view a search opens at

/**
 * The part of the map a search is about: the query (its pane) and the results near it.  A result
 * far from the others (over FAR_MEDIANS times the results' median distance from the query and over
 * FAR_FOOTPRINTS footprints away: a scene in another state) is left out, so one far result does not
 * zoom the map out to a continent; the indicator at the top right says it is out of view.
 */
function searchBounds() {
  const query = paneBounds("query"), results = paneBounds("results");
  if (!query.length && !results.length) return null;
  if (!results.length) return merged(query);
  const centre = query.length ? merged(query).getCenter()
    : L.latLng(median(results.map((b) => b.getCenter().lat)), median(results.map((b) => b.getCenter().lng)));
  const far = results.map((b) => map.distance(centre, b.getCenter()));
  const size = Math.max(...results.map((b) => map.distance(b.getSouthWest(), b.getNorthEast())));
  const limit = Math.max(FAR_MEDIANS * median(far), FAR_FOOTPRINTS * size);
  return merged(query.concat(results.filter((b, i) => far[i] <= limit)));
}

/** Zoom the map to the search (the query and the bulk of its results; `all`: every result). */
export function fitSearch(all) {
  const b = all ? allSearchBounds() : searchBounds();
  if (b && b.isValid()) map.fitBounds(b, { padding: [30, 30], maxZoom: 18 });
}

function allSearchBounds() {
  const list = paneBounds("query").concat(paneBounds("results"));
  return list.length ? merged(list) : null;
}

/** "N results outside the view · Show all": results of the search the view leaves out. */
const Offscreen = L.Control.extend({
  options: { position: "topright" },
  onAdd: function () {
    const b = L.DomUtil.create("button", "offscreen");
    b.type = "button";
    b.hidden = true;
    b.title = "Zoom out to show every result";
    b.onclick = () => fitSearch(true);
    L.DomEvent.disableClickPropagation(b);
    this._button = b;
    return b;
  },
  update: function () {
    const view = map.getBounds();
    const n = paneBounds("results").filter((r) => !view.intersects(r)).length;
    this._button.hidden = !n;
    this._button.textContent = `${n} result${n === 1 ? "" : "s"} outside the view · Show all`;
  },
});
const offscreen = new Offscreen().addTo(map);
let offscreenDue = false;
map.on("moveend layeradd layerremove", () => {
  if (offscreenDue || !map._loaded) return;
  offscreenDue = true;
  setTimeout(() => { offscreenDue = false; offscreen.update(); }, 0);   // once for a batch of layers
});

// ------------------------------------------------------------------ readouts
/** The pointer's lon/lat at the bottom right; empty (and hidden by style.css) off the map. */
const Coords = L.Control.extend({
  options: { position: "bottomright" },
  onAdd: function () { this._div = L.DomUtil.create("div", "coords"); return this._div; },
  set: function (text) { this._div.textContent = text; },
});
const coords = new Coords().addTo(map);
map.on("mousemove", (e) => coords.set(`${e.latlng.lng.toFixed(5)}, ${e.latlng.lat.toFixed(5)}`));
map.getContainer().addEventListener("mouseleave", () => coords.set(""));
L.control.scale({ imperial: false }).addTo(map);

/** A notice over the map (for example: the online basemap failed); returns its element. */
export function mapNotice(text) {
  const div = document.getElementById("map-notice");
  div.textContent = text;
  div.hidden = !text;
  return div;
}

// ------------------------------------------------------------------ legend
const LEGEND = [["query", "Query tile"], ["result", "Result"], ["selected", "Selected result"],
                ["positive", "Positive label"], ["negative", "Negative label"], ["hit", "Find-all hit"],
                ["area", "Area filter"], ["scene", "Scene outline"], ["dot", "Scene (zoomed out)"]];

/** What the colours on the map mean (style.css draws the swatches from the same --map-* colours);
 *  open on a wide map, a "Legend" button on a phone's. */
const Legend = L.Control.extend({
  options: { position: "bottomleft" },
  onAdd: function (m) {
    const box = L.DomUtil.create("details", "map-legend");
    box.open = m.getSize().x >= 600;
    box.appendChild(document.createElement("summary")).textContent = "Legend";
    const list = box.appendChild(document.createElement("ul"));
    for (const [kind, text] of LEGEND) {
      const li = list.appendChild(document.createElement("li"));
      li.appendChild(document.createElement("span")).className = "sw " + kind;
      li.appendChild(document.createTextNode(text));
    }
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.disableScrollPropagation(box);
    return box;
  },
});
new Legend().addTo(map);

// ------------------------------------------------------------------ popups over the controls
/** The map's controls (legend, scale, zoom, attribution, readouts) that an open popup lies under are
 *  hidden while it is open: on a phone's small map the legend and the scale bar would cover its
 *  text and buttons (the controls are drawn over the popups). */
function clearControlsOfPopup() {
  const pop = map.getContainer().querySelector(".leaflet-popup");
  const r = pop && pop.getBoundingClientRect();
  for (const c of map.getContainer().querySelectorAll(".leaflet-control")) {
    const b = c.getBoundingClientRect();
    const under = !!r && b.width > 0 && b.height > 0 && r.left < b.right && b.left < r.right && r.top < b.bottom &&
      b.top < r.bottom;
    c.classList.toggle("under-popup", under);
  }
}
let popupOpen = false;
map.on("popupopen", () => { popupOpen = true; clearControlsOfPopup(); });
map.on("popupclose", () => {
  popupOpen = false;
  for (const c of map.getContainer().querySelectorAll(".leaflet-control.under-popup")) c.classList.remove("under-popup");
});
map.on("moveend zoomend resize", () => { if (popupOpen) clearControlsOfPopup(); });   // after its auto-pan too
