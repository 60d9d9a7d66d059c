// The scenes of the index on the map: their dashed outlines, dots where they are too small to see
// (click one to zoom to it), and the hover names that say which scene is drawn on top at the
// pointer (and the other dates under it); the Scenes tab's zoom flashes an outline.
import { printable } from "./text.js";
import { imageryChoice } from "./imagery.js";
import { COLOURS, day, map, sceneCovers, tileDate, tooSmall } from "./map.js";

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
  for (const line of lines) div.appendChild(document.createElement("div")).textContent = printable(line);
  return div;
}

const sceneName = (p) => `${p.item_id}${p.datetime ? " · " + tileDate(p) : ""} · ${p.tiles} tile${p.tiles === 1 ? "" : "s"}`;

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

/** How long a scene label a touch opened stays on a touch screen (ms): one a press held opened. */
const TOUCH_TIP_MS = 2500;
const touchOnly = () => !!(window.matchMedia && window.matchMedia("(hover: none)").matches);

/** Close every open scene label. */
function closeSceneTips() {
  map.eachLayer((l) => {
    const t = l.getTooltip && l.getTooltip();
    if (t && t.isOpen() && t.options.className === "scene-tip") l.closeTooltip();
  });
}
// a touch screen has no pointer to move away: the label a tap opened stayed over the answer's rank badges
// (page trial), so a tap (a search, a selection) closes it once the tap's handlers have run
map.getContainer().addEventListener("click", () => { if (touchOnly()) setTimeout(closeSceneTips, 0); }, true);

/** A scene outline's or dot's hover label: the scenes at the pointer, not only its own (where dates
 *  stack, the outline on top is not the scene drawn on top); kept inside the map. */
function bindSceneTip(layer, fallback, opts) {
  let shownText = "";
  const at = () => { const t = layer.getTooltip(); return (t && t.getLatLng()) || null; };
  const lines = () => { const ll = at(); const l = ll ? sceneLabel(ll) : []; return l.length ? l : [fallback]; };
  layer.bindTooltip(() => { const l = lines(); shownText = l.join("\n"); return textLines(l); },
                    Object.assign({ className: "scene-tip" }, opts));
  layer.on("tooltipopen", (e) => {
    keepInside(e.tooltip);
    // a touch screen has no pointer to move away: a label a press opened (no click) would stay over the map
    if (touchOnly()) setTimeout(() => layer.closeTooltip(), TOUCH_TIP_MS);
  });
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

export function flashScene(id) {
  const l = sceneLayers.get(id);
  if (!l) return;
  l.setStyle({ color: COLOURS.area, weight: 3 });
  setTimeout(() => l.setStyle({ color: COLOURS.scene, weight: 1.5 }), 1500);
}
