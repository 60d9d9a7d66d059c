// The Leaflet map itself, which the other map modules draw on: the map object, its panes (what is
// drawn over what), the colours of what it draws, a notice over it, and small geometry helpers
// they share.  The rest of the map is in imagery.js (the scenes' tiles, the basemap), scenes.js
// (scene outlines, dots and hover names), drawing.js (the area filter and its tools), hits.js
// ("find all" hits), framing.js (zooming to a search) and controls.js (legend, readouts).
import { printable } from "./text.js";
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
// other dates share their footprints and would hide them), the query over those, the selected result on
// top (a result of another date shares the query tile's footprint: the query's outline hid which one was
// selected, page re-check); the panes over the hits take no clicks, so a click on a labelled, query or
// selected outline goes to the footprint under it.  Zoomed out, the hits' dots lie over the rank badges.
for (const [name, z] of [["imagery", 200], ["scenes", 390], ["results", 410], ["hits", 411], ["labels", 412],
                         ["query", 420], ["selected", 425], ["badges", 640], ["hitdots", 650]]) {
  map.createPane(name);
  map.getPane(name).style.zIndex = z;
}
for (const name of ["imagery", "labels", "selected", "query", "badges"]) map.getPane(name).style.pointerEvents = "none";

/** Whether `bounds` is drawn smaller than `px` pixels both ways at this zoom. */
export function tooSmall(bounds, px = 14) {
  const a = map.latLngToContainerPoint(bounds.getNorthWest()), c = map.latLngToContainerPoint(bounds.getSouthEast());
  return Math.abs(c.x - a.x) < px && Math.abs(c.y - a.y) < px;
}

/** A longitude wrapped into -180..180. */
export const wrapLng = (v) => ((((v + 180) % 360) + 360) % 360) - 180;

/** `lng` moved by whole turns to the world copy nearest the map's centre: Leaflet draws a longitude where
 *  it is, so a tile at -179.8 lay a world away from a view at 180.2 (page re-check: results east of 180
 *  had no outline and were counted "outside the view" over their own imagery). */
export function lngNearView(lng, ref = map.getCenter().lng) {
  return lng + 360 * Math.round((ref - lng) / 360);
}

/** A GeoJSON (Multi)Polygon (or Point) drawn in the world copy nearest the map's centre: each ring made
 *  continuous (no 360-degree jump between vertices) and each polygon moved by whole turns to the copy
 *  nearest the centre, so the two halves of a footprint split at the antimeridian draw side by side
 *  (its rank badge at their middle, not at longitude 0). Other geometries are returned as they are. */
export function nearView(g, ref = map.getCenter().lng) {
  if (!g) return g;
  const ring = (r) => {
    const out = [];
    for (const [x, y, ...rest] of r) {
      const prev = out.length ? out[out.length - 1][0] : x;
      out.push([x + 360 * Math.round((prev - x) / 360), y, ...rest]);
    }
    const mid = (Math.min(...out.map((c) => c[0])) + Math.max(...out.map((c) => c[0]))) / 2;
    const shift = lngNearView(mid, ref) - mid;
    return out.map(([x, y, ...rest]) => [x + shift, y, ...rest]);
  };
  const poly = (rings) => {   // holes follow their outer ring's shift
    const outer = ring(rings[0]), dx = outer[0][0] - rings[0][0][0];
    return [outer, ...rings.slice(1).map((r) => r.map(([x, y, ...rest]) => [x + dx, y, ...rest]))];
  };
  if (g.type === "Polygon") return { type: "Polygon", coordinates: poly(g.coordinates) };
  if (g.type === "MultiPolygon") return { type: "MultiPolygon", coordinates: g.coordinates.map(poly) };
  if (g.type === "Point") return { type: "Point", coordinates: [lngNearView(g.coordinates[0], ref), ...g.coordinates.slice(1)] };
  return g;
}

/** Whether lon/lat `ll` lies in scene feature `f` of /api/scenes: its bbox, then its footprint polygon.
 *  Across the antimeridian (a bbox whose east edge runs past 180, or W > E) the bbox alone decides, a
 *  longitude east of 180 matched as itself less 360 (the page's Go took no scene there for one). */
export function sceneCovers(f, ll) {
  const [w, s, e, n] = f.properties.bbox;
  if (ll.lat < s || ll.lat > n) return false;
  const east = w <= e ? e : e + 360;
  const lng = [wrapLng(ll.lng), wrapLng(ll.lng) + 360].find((x) => x >= w && x <= east);
  if (lng === undefined) return false;
  return east > 180 || geometryCovers(f.geometry, lng, ll.lat);
}

/** Whether a GeoJSON (Multi)Polygon's outer rings hold lon/lat x, y (true for other geometries). */
export function geometryCovers(g, x, y) {
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

/** The day of an RFC 3339 datetime ("" for none). */
export const day = (t) => (t ? String(t).slice(0, 10) : "");

/**
 * The date a tile or scene was acquired, from its `datetime` and, for an acquisition interval (a
 * scene ingested with `--datetime 2015`, a STAC item's start/end), its `end_datetime`: "2020-08-31",
 * a whole year "2015" or month "2015-06", else "2015-03-02 – 05-10"; `none` without a date.
 */
export function tileDate(p, none = "no date") {
  const a = day(p && p.datetime), b = day(p && p.end_datetime);
  if (!a) return none;
  if (!b || b === a) return a;
  const [y, m] = [a.slice(0, 4), a.slice(5, 7)];
  const last = (yy, mm) => new Date(Date.UTC(+yy, +mm, 0)).getUTCDate();   // the month's last day
  if (a.endsWith("-01-01") && b === `${y}-12-31`) return y;
  if (a.endsWith("-01") && b.slice(0, 7) === a.slice(0, 7) && +b.slice(8) === last(y, m)) return a.slice(0, 7);
  return `${a} – ${b.slice(0, 4) === y ? b.slice(5) : b}`;
}

/** A notice over the map (for example: the online basemap failed); returns its element. */
export function mapNotice(text) {
  const div = document.getElementById("map-notice");
  div.textContent = printable(text);
  div.hidden = !text;
  return div;
}
