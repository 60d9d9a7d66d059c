// The area filter on the map and the tools that draw it: a box (a mouse, pen or finger drag;
// shift-drag in Search mode) and a polygon (click the corners, double-click to close); a plain
// click in Search mode is passed on (a search).  Also the map view as a box for the API.
import { COLOURS, lngNearView, map, nearView, wrapLng } from "./map.js";
import { polygonProblem } from "./state.js";

export const areaLayer = L.layerGroup().addTo(map);
const drawLayer = L.layerGroup().addTo(map);
const DRAW_STYLE = { color: COLOURS.area, weight: 2, dashArray: "4 3", fillOpacity: 0.08, interactive: false };

export function drawArea(area) {
  areaLayer.clearLayers();
  const style = { color: COLOURS.area, weight: 2, fillOpacity: 0.06, interactive: false };
  if (area && area.bbox) {
    const [w, s, e, n] = area.bbox;
    const west = lngNearView(w + ((w > e ? e + 360 : e) - w) / 2) - ((w > e ? e + 360 : e) - w) / 2;
    const east = west + ((w > e ? e + 360 : e) - w);   // W > E: across the antimeridian, drawn as one box
    L.rectangle([[s, west], [n, east]], style).addTo(areaLayer);
  } else if (area && area.polygon) {
    const g = nearView({ type: "Polygon", coordinates: [area.polygon] });
    L.polygon(g.coordinates[0].slice(0, -1).map(([x, y]) => [y, x]), style).addTo(areaLayer);
  }
}

const SAME_PX = 4;    // a click this close to the last corner adds none (the second click of a double-click)
const CLOSE_PX = 8;   // a closing double-click this close to the first corner ends the ring there
const clampLat = (v) => Math.max(-90, Math.min(90, v));

/** The W,S,E,N box the API takes for a box dragged between two map points: longitudes wrapped into
 *  -180..180, W > E when it crosses the antimeridian (page re-check: a box dragged across 180 was cut
 *  at 180), the world when it is wider than the world. */
function boxOf(a, b) {
  const w = Math.min(a.lng, b.lng), e = Math.max(a.lng, b.lng);
  const s = clampLat(Math.min(a.lat, b.lat)), n = clampLat(Math.max(a.lat, b.lat));
  if (e - w >= 360) return [-180, s, 180, n];
  let W = wrapLng(w), E = wrapLng(e);
  if (W === 180) W = -180;
  if (E === -180) E = 180;
  return [W, s, E, n];
}

/**
 * The map view as a W,S,E,N box the API takes: longitudes wrapped into -180..180 (W > E when the
 * view straddles the antimeridian), latitudes clamped; a view wider than the world is the world.
 */
export function viewBbox() {
  const b = map.getBounds();
  return boxOf(b.getSouthWest(), b.getNorthEast());
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
    onArea({ bbox: boxOf(start, end) });
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
  // the keyboard's click: Enter or Space on the focused map searches at the centre of the view
  // (the arrow keys and +/- move there first, as Leaflet's keyboard handler does)
  map.getContainer().addEventListener("keydown", (ev) => {
    if ((ev.key !== "Enter" && ev.key !== " ") || ev.target !== map.getContainer()) return;
    ev.preventDefault();
    if (getMode() !== "search") {
      onStatus("Box and polygon are drawn with the mouse or a finger; from the keyboard, type a place or press " +
               "Search to leave drawing, then Enter searches at the centre of the view.", "error");
      return;
    }
    onClick(map.getCenter());
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
    // drawn in one world copy: moved by whole turns into -180..180 when it fits there; one that crosses
    // the antimeridian is refused (its corners would be cut to 180) with a box, which may cross it, offered
    const lngs = pts.map((p) => p.lng), turn = 360 * Math.round(-(Math.min(...lngs) + Math.max(...lngs)) / 720);
    const across = Math.min(...lngs) + turn < -180 || Math.max(...lngs) + turn > 180;
    const ring = pts.map((p) => [p.lng + turn, clampLat(p.lat)]);
    ring.push(ring[0]);
    if (across) {
      cancel();
      onStatus("The polygon crosses the antimeridian (180°), which a drawn polygon cannot, so it was not used; " +
               "draw a box there instead (boxes may cross it), or a polygon on one side of it.", "error");
      return;
    }
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
