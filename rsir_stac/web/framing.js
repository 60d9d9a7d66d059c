// Framing: the view the page opens at (the scenes), zooming to a search (the query and the bulk of
// its results, or every result) and the "N results outside the view · Show all" button.
import { map } from "./map.js";
import { resultFeatures } from "./results.js";

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

const MIN_FOOTPRINT_PX = 4; // a view where the largest footprint is smaller than this shows no tile at all
const PADDING = [30, 30];

/**
 * The part of the map a search is about: the query (its pane) and the results near it.  A result
 * far from the others (over FAR_MEDIANS times the results' median distance from the query and over
 * FAR_FOOTPRINTS footprints away: a scene in another state) is left out, so one far result does not
 * zoom the map out to a continent; the indicator at the top right says it is out of view.  When the
 * results are spread so far that no footprint would be seen (a few results beside a small query
 * scene, the rest a state away), the view is the best result's group instead (bestGroup).
 */
function searchBounds() {
  const query = paneBounds("query"), results = rankedBounds();
  if (!query.length && !results.length) return null;
  if (!results.length) return merged(query);
  const centre = query.length ? merged(query).getCenter()
    : L.latLng(median(results.map((b) => b.getCenter().lat)), median(results.map((b) => b.getCenter().lng)));
  const far = results.map((b) => map.distance(centre, b.getCenter()));
  const size = Math.max(...results.map((b) => map.distance(b.getSouthWest(), b.getNorthEast())));
  const limit = Math.max(FAR_MEDIANS * median(far), FAR_FOOTPRINTS * size);
  // the best result is never framed out (a link to a small far query scene drawn after the answer
  // centred on the bulk elsewhere and hid results 1-3), nor is every footprint left unseen
  if (far[0] > limit) return bestGroup(query, results, FAR_FOOTPRINTS * size);
  const bounds = merged(query.concat(results.filter((b, i) => far[i] <= limit)));
  return largestPx(bounds, results) >= MIN_FOOTPRINT_PX ? bounds : bestGroup(query, results, FAR_FOOTPRINTS * size);
}

/** The results' footprints in rank order (the map's layers are in no particular order). */
function rankedBounds() {
  const out = [];
  for (const f of resultFeatures()) {
    if (!f.geometry) continue;
    const b = L.geoJSON(f.geometry).getBounds();
    if (b.isValid()) out.push(b);
  }
  return out.length ? out : paneBounds("results");
}

/** The largest footprint's side in pixels once the map is fitted to `bounds`. */
function largestPx(bounds, footprints) {
  const z = map.getBoundsZoom(bounds, false, L.point(2 * PADDING[0], 2 * PADDING[1]));
  return Math.max(...footprints.map((b) => {
    const a = map.project(b.getSouthWest(), z), c = map.project(b.getNorthEast(), z);
    return Math.max(Math.abs(c.x - a.x), Math.abs(a.y - c.y));
  }));
}

/**
 * The best result (`results` in rank order) and every result linked to it by steps of at most
 * `step` metres, with the query when it lies within a step of them: the place the answer is about.
 */
function bestGroup(query, results, step) {
  const group = [results[0]], rest = results.slice(1);
  const near = (b) => group.some((g) => map.distance(g.getCenter(), b.getCenter()) <= step);
  for (let grew = true; grew;) {
    grew = false;
    for (let i = rest.length - 1; i >= 0; i--) if (near(rest[i])) { group.push(rest.splice(i, 1)[0]); grew = true; }
  }
  return merged(group.concat(query.filter(near)));
}

/** Zoom the map to the search (the query and the bulk of its results; `all`: every result). */
export function fitSearch(all) {
  const b = all ? allSearchBounds() : searchBounds();
  if (b && b.isValid()) map.fitBounds(b, { padding: PADDING, maxZoom: 18 });
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
