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
        if (note && coords.z === this._tileZoom) undrawnNotice(note, coords.z);   // not a late tile of another zoom
        return r.blob();
      })
      .then((b) => { img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); }; img.src = URL.createObjectURL(b); })
      .catch((e) => done(e, img));
    return img;
  },
});

/** The service left a scene undrawn at this zoom (a fine raster without overviews seen zoomed out):
 *  say so over the map, once per zoom level, unless a problem is being told. */
let undrawnZoom = null;
// cleared when a zoom starts, before the new zoom's tiles are asked for: their notes (which may come
// back before the zoom animation ends) say it again where it still holds
map.on("zoomstart", () => {
  if (imageryProblem === "undrawn") { imageryProblem = null; mapNotice(""); }
  undrawnZoom = null;
});
function undrawnNotice(encoded, z) {
  let text = encoded;
  try { text = decodeURIComponent(encoded); } catch (e) { /* shown as sent */ }
  if (imageryProblem || undrawnZoom === z) return;
  undrawnZoom = z;
  imageryProblem = "undrawn";   // cleared by the next tile drawn without a note, like the other notices
  mapNotice(text.charAt(0).toUpperCase() + text.slice(1) + ".");
}

let imagery = null;
let imageryQuery = "";      // which scenes draw, and which first: the page's filters and selected result
let imageryProblem = null;  // "outage" | "refused": a notice the next loaded tile clears; "undrawn": the zoom change does
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
    // a drawn tile clears an outage or refusal notice; an undrawn-scene notice stays until the zoom changes
    if (imageryProblem && imageryProblem !== "undrawn") { imageryProblem = null; mapNotice(""); }
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
