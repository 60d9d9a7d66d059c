// The imagery of the indexed scenes (the service's own XYZ tiles: which scenes draw follows the
// page's dates, collections and selected result; why tiles fail, told over the map) and the
// optional online basemap under it.
import { apiUrl, friendly, hasKey } from "./api.js";
import { dateRange, withinRange } from "./dates.js";
import { map, mapNotice } from "./map.js";

// ------------------------------------------------------------------ imagery (our own XYZ tiles)
const AuthTiles = L.TileLayer.extend({
  // tiles are fetched (not <img src>): with a service key the X-API-Key header goes with them instead of
  // the key in URLs, and the service's X-Imagery-Note (a scene it leaves undrawn at this zoom) is read
  createTile: function (coords, done) {
    const url = this.getTileUrl(coords);
    const img = document.createElement("img");
    img.alt = "";
    img.dataset.url = url;   // asked again when it fails (whyFailed)
    fetch(url, { headers: keyHeaders() })
      .then((r) => {
        if (!r.ok) return Promise.reject(new Error("HTTP " + r.status));
        const note = r.headers.get("X-Imagery-Note");
        const key = this._tileCoordsToKey(coords), mine = this._tiles[key];
        if (note && mine && mine.el === img) undrawnNote(coords, note);   // not a tile gone since (a filter changed)
        return r.blob();
      })
      .then((b) => { img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); }; img.src = URL.createObjectURL(b); })
      .catch((e) => done(e, img));
    return img;
  },
});

/**
 * The service leaves a scene undrawn at a zoom (a fine raster without overviews seen zoomed out) and
 * says so in the tile's X-Imagery-Note: the map's notice says it while a tile of the view's zoom with
 * such a note lies in the view, unless a problem is being told.  Re-evaluated when the map has moved
 * (page re-check: the notice stayed over an empty map after the scene was panned out of view) and when
 * a note comes; it names the view's zoom, not the tiles' (v=17.5 said "zoom 18").
 */
const undrawn = new Map();   // tile key -> {coords, note}: the notes of the imagery tiles on the map
let zooming = false;         // between zoomstart and zoomend the view's bounds and zoom are not the new ones
const tileKey = (c) => `${c.x}:${c.y}:${c.z}`;
map.on("zoomstart", () => {
  zooming = true;
  if (imageryProblem === "undrawn") { imageryProblem = null; mapNotice(""); }
});
map.on("zoomend", () => { zooming = false; });
map.on("moveend", () => showUndrawn());   // after zoomend too

function undrawnNote(coords, encoded) {
  let text = encoded;
  try { text = decodeURIComponent(encoded); } catch (e) { /* shown as sent */ }
  undrawn.set(tileKey(coords), { coords: coords, note: text });
  showUndrawn();
}

/** The view's zoom as the user reads it: 17.5, 17 (the link's v= has it so). */
const viewZoom = () => String(Math.round(map.getZoom() * 10) / 10);

/** The note of a tile of the imagery's zoom now that overlaps the view (not only touches it), or null. */
function undrawnInView() {
  if (!imagery || !imagery._map) return null;
  const z = imagery._tileZoom, size = imagery.getTileSize();
  const view = map.getPixelBounds();
  for (const { coords, note } of undrawn.values()) {
    if (coords.z !== z) continue;
    const k = map.getZoomScale(map.getZoom(), z);
    const x0 = coords.x * size.x * k, y0 = coords.y * size.y * k, x1 = x0 + size.x * k, y1 = y0 + size.y * k;
    if (x0 < view.max.x && x1 > view.min.x && y0 < view.max.y && y1 > view.min.y) return { note: note, z: z };
  }
  return null;
}

let sceneFeatures = () => [];
/** indexinfo.js: where the listed scenes (/api/scenes features) are read from. */
export function knowScenes(get) { sceneFeatures = get; }

/** The listed scenes in the view whose imagery the page's date or collection filter leaves out. */
function filteredInView() {
  const view = map.getBounds();
  return sceneFeatures().filter((f) => {
    const p = f.properties || {}, b = p.bbox;
    return Array.isArray(b) && b.length === 4 && !imageryChoice.matches(p) &&
      view.intersects(L.latLngBounds([b[1], b[0]], [b[3], b[2]]));
  });
}

/** The view's imagery notice, redone as the map moves: a scene undrawn at this zoom, else scenes here
 *  the filters hide (page re-check: a date filter emptied the map of undated imagery without a word). */
function showUndrawn() {
  if (zooming || (imageryProblem && imageryProblem !== "undrawn")) return;
  const hit = undrawnInView();
  if (!hit) {
    const hidden = filteredInView();
    if (hidden.length) {
      const n = hidden.length, undated = hidden.filter((f) => !f.properties.datetime).length;
      imageryProblem = "undrawn";
      mapNotice(`The Dates or Collections filter hides the imagery of ${n} scene${n > 1 ? "s" : ""} here` +
                (undated ? ` (${undated === n ? (n > 1 ? "all" : "it is") : undated} undated)` : "") +
                "; clear the filter to see it.");
    } else if (imageryProblem === "undrawn") { imageryProblem = null; mapNotice(""); }
    return;
  }
  const text = hit.note.replace(new RegExp(`\\bat zoom ${hit.z}\\b`), `at zoom ${viewZoom()}`);
  imageryProblem = "undrawn";
  mapNotice(text.charAt(0).toUpperCase() + text.slice(1) + ".");
}

let imagery = null;
let imageryQuery = "";      // which scenes draw, and which first: the page's filters and selected result
let imageryProblem = null;  // "outage" | "refused": a notice the next loaded tile clears; "undrawn": showUndrawn's
let probing = false, toldMissing = false, redrawn = 0;
export const imageryStats = { loaded: 0, failed: 0 };

const imageryUrl = () => apiUrl("imagery/{z}/{x}/{y}.png") + (imageryQuery ? "?" + imageryQuery : "");
const keyHeaders = () => (hasKey() ? { "X-API-Key": sessionStorage.getItem("rsir-key") || "" } : {});

export function addImagery(extent, maxNativeZoom, onFail) {
  if (imagery) imagery.remove();
  const opts = { pane: "imagery", tileSize: 256, maxZoom: 22, maxNativeZoom: Math.min(22, maxNativeZoom || 18),
                 attribution: "imagery: indexed scenes", keepBuffer: 1 };
  // Leaflet compares these bounds with tile bounds wrapped into -180..180, so data across the
  // antimeridian (W > E) gets none: a box past 180 would leave its imagery east of 180 unasked for
  if (extent && extent[0] <= extent[2]) {
    opts.bounds = L.latLngBounds([extent[1], extent[0]], [extent[3], extent[2]]).pad(0.02);
  }
  imagery = new AuthTiles(imageryUrl(), opts);
  imagery.on("tileunload", (ev) => { undrawn.delete(tileKey(ev.coords)); });
  imagery.on("tileload", () => {
    imageryStats.loaded++;
    // a drawn tile clears an outage or refusal notice (then an undrawn scene in view is told again); an
    // undrawn-scene notice stays while such a scene is in view (showUndrawn)
    if (imageryProblem && imageryProblem !== "undrawn") { imageryProblem = null; mapNotice(""); showUndrawn(); }
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
  showUndrawn();
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
    matches: (p) => (!cols.length || cols.includes(p.collection)) && (!range || withinRange(p.datetime, range, p.end_datetime)),
  };
}
export let imageryChoice = sceneChoice("", [], null);   // read by scenes.js (the hover names)

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
    if (imageryProblem === "outage") { imageryProblem = null; mapNotice(""); showUndrawn(); }
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
