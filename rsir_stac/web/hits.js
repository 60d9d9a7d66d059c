// The hits of "find all" on the map: light purple footprints over the results (a click there opens
// a popup naming the hits under it, with the page's buttons for them) and, zoomed out, purple dots
// that count them and zoom to them.
import { printable } from "./text.js";
import { toolsTakeClick } from "./drawing.js";
import { COLOURS, day, geometryCovers, map, nearView, tooSmall } from "./map.js";
import { state } from "./state.js";

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
    const g = nearView(f.geometry);   // beside the view across the antimeridian
    const layer = L.geoJSON(Object.assign({}, f, { geometry: g }), { style: () => HIT_STYLE, pane: "hits" });
    layer.on("click", (e) => {
      if (toolsTakeClick()) return;   // drawing: the click is a corner or the end of a box
      L.DomEvent.stopPropagation(e);
      openHits(e.latlng);
    });
    layer.addTo(hitsLayer);
    hits.push({ f: f, g: g, bounds: layer.getBounds() });
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
      if (toolsTakeClick()) return;
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
  const here = hits.filter((h) => h.bounds.contains(latlng) && geometryCovers(h.g, latlng.lng, latlng.lat))
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
  // never taller than the map (a phone's map is short): its list scrolls on its own; the room left
  // is the map less the pan padding, the popup's frame and its tip
  const popup = L.popup({ className: "hit-popup", maxWidth: 260, maxHeight: Math.max(100, map.getSize().y - 100),
                          autoPanPaddingTopLeft: [10, 40], autoPanPaddingBottomRight: [10, 10] });
  // the map panned to show the popup goes back where it was when it closes (unless zoomed or moved since)
  const before = { center: map.getCenter(), zoom: map.getZoom() };
  let panned = false;
  const onPan = () => { panned = true; };
  map.on("autopanstart", onPan);
  let moved = false;
  const onDrag = () => { moved = true; };
  map.on("dragstart", onDrag);
  popup.once("remove", () => {
    map.off("autopanstart", onPan);
    map.off("dragstart", onDrag);
    if (panned && !moved && map.getZoom() === before.zoom) map.panTo(before.center, { animate: false });
  });
  popup.setLatLng(latlng).setContent(div).openOn(map);
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
    if (h && row.firstChild) row.firstChild.textContent = printable(hitText(h.f));
  }
}

/** One hit in the popup: its probability, date and scene, and the actions' buttons. */
function hitRow(f) {
  const p = f.properties || {};
  const row = document.createElement("div");
  row.className = "hit-row";
  row.dataset.id = f.id;
  row.appendChild(document.createElement("div")).textContent = printable(hitText(f));
  for (const a of hitActions) {
    const b = row.appendChild(document.createElement("button"));
    b.type = "button";
    b.className = "small";
    b.textContent = a.label;
    b.onclick = () => { map.closePopup(); a.run(f); };
  }
  return row;
}
