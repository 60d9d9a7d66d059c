// The Leaflet map: imagery of the indexed scenes, an optional online basemap, scene footprints,
// the area filter and its drawing tools, and the cursor/scale readouts.
import { apiUrl, friendly, hasKey } from "./api.js";
import { polygonProblem } from "./state.js";

export const map = L.map("map", {
  boxZoom: false,          // shift-drag draws a filter box instead
  zoomSnap: 0.5,
  maxZoom: 22,
  worldCopyJump: false,
  attributionControl: true,
  doubleClickZoom: true,
});
map.attributionControl.setPrefix(false);

// labelled tiles over the results (tiles of other dates share their footprints and would hide them),
// the selected result over those, the query on top; the panes over the results take no clicks, so a
// click on a labelled or selected outline goes to the result footprint under it
for (const [name, z] of [["imagery", 200], ["scenes", 390], ["results", 410], ["labels", 412], ["selected", 415],
                         ["query", 420], ["badges", 640]]) {
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
  const q = new URLSearchParams();
  if (datetime) q.set("datetime", datetime);
  for (const c of collections || []) q.append("collection", c);
  if (item) q.set("item", item);
  if (q.toString() === imageryQuery) return;
  imageryQuery = q.toString();
  if (imagery) { imagery.setUrl(imageryUrl(), true); reloadImagery(); }
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

function sceneStyle(p) {
  return { pane: "scenes", color: p.imagery === false ? "#b3261e" : "#f5f5f5", weight: 1.5, dashArray: "5 4",
           fill: true, fillOpacity: 0, opacity: 0.9 };
}

const sceneDots = L.layerGroup().addTo(map);
let allDots = [];

/** Dots at the centres of scenes too small to see at this zoom (click one to zoom to it).  Only
 *  those are on the map: a hidden dot would take the clicks (a search) at a scene's centre. */
function updateDots() {
  if (!map._loaded) return;   // no view yet
  for (const m of allDots) {
    const b = m.options.sceneBounds;
    const a = map.latLngToContainerPoint(b.getNorthWest()), c = map.latLngToContainerPoint(b.getSouthEast());
    const small = Math.abs(c.x - a.x) < 14 && Math.abs(c.y - a.y) < 14;
    if (small && !sceneDots.hasLayer(m)) sceneDots.addLayer(m);
    else if (!small && sceneDots.hasLayer(m)) sceneDots.removeLayer(m);
  }
}
map.on("zoomend load", updateDots);

/** Out of the tab order: Chromium makes an outline with a tooltip (focus listeners) a tab stop with
 *  no name and nothing to do; the Scenes tab lists the scenes for the keyboard. */
function noTabStop(layer) {
  const e = layer.getElement && layer.getElement();
  if (e) e.setAttribute("tabindex", "-1");
}

/** Tooltip content as plain text: Leaflet puts a string in as HTML, and item ids and dates come from
 *  STAC catalogues (anyone's), so each tooltip gets an element holding the text. */
function textTip(text) {
  return () => {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  };
}

export function showScenes(doc) {
  scenesLayer.clearLayers();
  sceneDots.clearLayers();
  allDots = [];
  sceneLayers.clear();
  for (const f of doc.features || []) {
    if (!f.geometry) continue;
    const p = f.properties;
    const layer = L.geoJSON(f, { style: () => sceneStyle(p), pane: "scenes" });
    const label = `${p.item_id}${p.datetime ? " · " + String(p.datetime).slice(0, 10) : ""} · ${p.tiles} tiles`;
    layer.eachLayer((l) => {
      l.bindTooltip(textTip(label), { sticky: true, className: "scene-tip" });
      l.on("add", () => noTabStop(l));   // drawn once the map has a view
    });
    layer.addTo(scenesLayer);
    sceneLayers.set(f.id, layer);
    const [w, s, e, n] = p.bbox;
    const bounds = L.latLngBounds([s, w], [n, e]);
    const dot = L.circleMarker(bounds.getCenter(), { pane: "scenes", radius: 6, color: "#fff", weight: 2,
                                                    fillColor: p.imagery === false ? "#b3261e" : "#f28e2b", sceneBounds: bounds });
    dot.bindTooltip(textTip(label));
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
  l.setStyle({ color: "#f28e2b", weight: 3 });
  setTimeout(() => l.setStyle({ color: "#f5f5f5", weight: 1.5 }), 1500);
}

// ------------------------------------------------------------------ area filter and drawing
export const areaLayer = L.layerGroup().addTo(map);
const drawLayer = L.layerGroup().addTo(map);

export function drawArea(area) {
  areaLayer.clearLayers();
  const style = { color: "#f28e2b", weight: 2, fillOpacity: 0.06, interactive: false };
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

/** Box and polygon tools; calls onArea(area) when one is drawn, onClick(latlng) for a plain click. */
export function installTools({ getMode, setMode, onArea, onClick, onStatus }) {
  let box = null, poly = null, suppressClick = false;
  toolsClaim = () => getMode() !== "search" || suppressClick || !!box;

  function cancel() { drawLayer.clearLayers(); box = null; poly = null; }

  map.on("mousedown", (e) => {
    const ev = e.originalEvent;
    if (ev.button !== 0) return;
    if (getMode() === "box" || (getMode() === "search" && ev.shiftKey)) {
      box = { start: e.latlng, rect: L.rectangle(L.latLngBounds(e.latlng, e.latlng),
        { color: "#f28e2b", weight: 2, dashArray: "4 3", fillOpacity: 0.08, interactive: false }).addTo(drawLayer) };
      L.DomEvent.preventDefault(ev);
    }
  });
  map.on("mousemove", (e) => {
    coords.set(`${e.latlng.lng.toFixed(5)}, ${e.latlng.lat.toFixed(5)}`);
    if (box) box.rect.setBounds(L.latLngBounds(box.start, e.latlng));
    if (poly && poly.points.length) poly.line.setLatLngs(poly.points.concat([e.latlng]));
  });
  map.on("mouseup", (e) => {
    if (!box) return;
    const start = box.start, end = e.latlng;
    drawLayer.clearLayers();
    box = null;
    const a = map.latLngToContainerPoint(start), b = map.latLngToContainerPoint(end);
    if (Math.abs(a.x - b.x) < 4 || Math.abs(a.y - b.y) < 4) return;   // a click, not a box
    suppressClick = true;
    setTimeout(() => { suppressClick = false; }, 0);
    if (getMode() === "box") setMode("search");
    onArea({ bbox: [clampLng(Math.min(start.lng, end.lng)), clampLat(Math.min(start.lat, end.lat)),
                    clampLng(Math.max(start.lng, end.lng)), clampLat(Math.max(start.lat, end.lat))] });
  });
  document.addEventListener("mouseup", (ev) => {
    if (box && !document.getElementById("map").contains(ev.target)) { drawLayer.clearLayers(); box = null; }
  });
  map.on("click", (e) => {
    if (suppressClick) { suppressClick = false; return; }
    if (getMode() === "polygon") {
      if (!poly) poly = { points: [], line: L.polyline([], { color: "#f28e2b", weight: 2, dashArray: "4 3", interactive: false }).addTo(drawLayer) };
      const p = map.latLngToContainerPoint(e.latlng);
      const last = poly.points[poly.points.length - 1];
      if (!last || map.latLngToContainerPoint(last).distanceTo(p) > SAME_PX) {  // a double-click adds one corner
        poly.points.push(e.latlng);
        L.circleMarker(e.latlng, { radius: 3, color: "#f28e2b", interactive: false }).addTo(drawLayer);
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

// ------------------------------------------------------------------ readouts
const Coords = L.Control.extend({
  options: { position: "bottomright" },
  onAdd: function () { this._div = L.DomUtil.create("div", "coords"); this._div.textContent = " "; return this._div; },
  set: function (text) { this._div.textContent = text; },
});
const coords = new Coords().addTo(map);
L.control.scale({ imperial: false }).addTo(map);

/** A notice over the map (for example: the online basemap failed); returns its element. */
export function mapNotice(text) {
  const div = document.getElementById("map-notice");
  div.textContent = text;
  div.hidden = !text;
  return div;
}
