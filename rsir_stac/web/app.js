/* rsir-stac map page: small ES modules over the /api/* endpoints (no build step).
 *
 *   api.js        API calls, the service key, errors for people
 *   state.js      page state <-> URL (links reproduce a search; Back/Forward step through searches)
 *   dates.js      the Dates box's check, and the range of instants a Dates text means
 *   map.js        the Leaflet map: panes, colours, a notice over it, shared geometry helpers
 *   imagery.js    imagery tiles of the indexed scenes (following the filters), the online basemap
 *   scenes.js     scene outlines, dots and hover names
 *   drawing.js    the area filter on the map and its box and polygon tools
 *   hits.js       "find all" hits on the map and their popup
 *   framing.js    the opening view, zooming to a search, "N results outside the view"
 *   controls.js   the map's legend, lon/lat readout and scale bar
 *   results.js    result footprints, rank badges, gallery, selection and details
 *   labels.js     labels, refine, find all, exports (the service side and the Labels tab's lists)
 *   status.js     the status line and the panel's tabs
 *   indexinfo.js  the index's summary and scenes (header, Collections, Scenes tab)
 *   uploads.js    the Example upload
 *   search.js     running a search with the filters and showing its answer
 *   form.js       the search form: map tools, area, Place, filters, Search again, Fit results
 *   labelstab.js  the Labels tab's actions: Clear/Load/Save labels with Undo, Find all, downloads
 *   links.js      the address: opening a link, Back/Forward, the view in the URL, Copy link
 *   app.js        this file: wires them together and opens the page
 *
 * URL parameters: see state.js; ?key=API_KEY is moved to sessionStorage.
 */
import { friendly } from "./api.js";
import { map } from "./map.js";
// the map's modules, before the page's: each adds its layers, controls and map listeners when it is
// first imported, in this order
import "./imagery.js";
import "./scenes.js";
import "./drawing.js";
import "./hits.js";
import { startBounds } from "./framing.js";
import "./controls.js";
import * as labels from "./labels.js";
import { select } from "./results.js";
import { fromSearch, saveUrl, state } from "./state.js";
import { $, setStatus } from "./status.js";
import { info, loadInfo, loadScenes, scenesDoc } from "./indexinfo.js";
import { installUpload } from "./uploads.js";
import { run, syncImagery, whenLabelled } from "./search.js";
import { setArea } from "./form.js";
import { labelsChanged } from "./labelstab.js";
import { applyState } from "./links.js";

installUpload((file) => run({ kind: "image", file: file }));
whenLabelled(() => labelsChanged());

async function start() {
  labels.renderLabels(() => labelsChanged());
  try {
    await Promise.all([loadInfo(), labels.detectCaps()]);
  } catch (err) {
    map.setView([0, 0], 2);
    $("info").textContent = "index unavailable";
    setStatus("Cannot load the index summary: " + friendly(err.message), "error");
    return;
  }
  try { await loadScenes(); } catch (err) {
    console.error(err);
    setStatus("Cannot list the scenes: " + friendly(err.message), "error");
  }
  const s = fromSearch(window.location.search);
  let elsewhere = 0;
  if (!s.view) {
    // open at the data: the largest scene and those overlapping it (the Scenes tab lists the others)
    const b = scenesDoc && startBounds(scenesDoc);
    const ext = info.extent;
    if (b) {
      map.fitBounds(b, { padding: [20, 20], animate: false, maxZoom: 18 });
      elsewhere = (scenesDoc.features || []).filter((f) => f.properties.bbox && !b.contains(
        L.latLngBounds([f.properties.bbox[1], f.properties.bbox[0]], [f.properties.bbox[3], f.properties.bbox[2]]))).length;
    } else if (ext) {  // W > E across the antimeridian: its east edge drawn past 180
      const east = ext[2] < ext[0] ? ext[2] + 360 : ext[2];
      map.fitBounds([[ext[1], ext[0]], [ext[3], east]], { padding: [20, 20], animate: false });
    }
    else { map.setView([0, 0], 2); setStatus("The index is empty: ingest some scenes first.", "error"); }
  }
  const told = applyState(s, true);
  if (!s.query && info.count && !told) {
    setStatus("Click the imagery to find tiles like the one there" + (elsewhere
      ? `; ${elsewhere} more scene${elsewhere > 1 ? "s are" : " is"} elsewhere (Scenes tab, or zoom out for the orange dots).`
      : ", or pick a scene in the Scenes tab."));
  }
  document.body.dataset.ready = "1";
}

// test/automation hook
window.rsir = {
  map: map, state: state,
  searchAt: (lon, lat) => run({ kind: "location", lon: lon, lat: lat }),
  searchById: (id) => run({ kind: "point", id: id }),
  setArea: (a) => setArea(a),
  select: (id) => { select(id, true); syncImagery(); saveUrl(false); },
};

start();
