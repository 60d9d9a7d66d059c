// The map's own controls: the pointer's lon/lat and the scale bar, the legend of its colours, and
// keeping them out from under an open popup.
import { map } from "./map.js";

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
// Leaflet draws the bar between half and all of maxWidth: 130 px keeps "5000 km" inside its box at half.
// Below 1 m (zoomed in near a pole) Leaflet rounds the bar up to 1 m, wider than maxWidth (page re-check:
// 304 px under the attribution): there it is rounded down to 1, 2, 3 or 5 tenths (hundredths ...) instead.
const roundNum = L.Control.Scale.prototype._getRoundNum;
L.Control.Scale.include({
  _getRoundNum(num) {
    if (num >= 1) return roundNum.call(this, num);
    const pow10 = Math.pow(10, Math.floor(Math.log10(num))), d = num / pow10;
    return Number((pow10 * (d >= 5 ? 5 : d >= 3 ? 3 : d >= 2 ? 2 : 1)).toPrecision(1));
  },
});
L.control.scale({ imperial: false, maxWidth: 130 }).addTo(map);

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
    // open where it covers little of the map: a wide and tall one (on a 700 x 378 px map it hid the best
    // result's badge: page trial)
    const roomy = () => m.getSize().x >= 600 && m.getSize().y >= 480;
    box.open = roomy();
    // a window made small (a phone turned, a desktop window narrowed) closes it; it is never opened for
    // the user, who may have closed it
    m.on("resize", () => { if (!roomy()) box.open = false; });
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
