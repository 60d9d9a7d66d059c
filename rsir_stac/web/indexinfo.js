// What the index holds: its summary (the header's tile count and model, the Collections list, the
// service's limits, its online basemap) and its scenes (their outlines and imagery on the map, the
// Scenes tab's list).
import { printable } from "./text.js";
import { api, apiUrl } from "./api.js";
import { addBasemap, addImagery, knowScenes } from "./imagery.js";
import { map, mapNotice } from "./map.js";
import { el, tileDate } from "./results.js";
import { flashScene, showScenes } from "./scenes.js";
import { $ } from "./status.js";

export let info = null;        // /api/info
export let scenesDoc = null;   // /api/scenes

export async function loadInfo() {
  info = await api(apiUrl("info"));
  const cols = info.collections || [];
  $("info").textContent = printable(`${info.count.toLocaleString()} tiles · model ${info.model_id || "?"}` +
    (cols.length ? ` · ${cols.length} collection${cols.length > 1 ? "s" : ""}` : ""));
  const sel = $("collection");
  sel.innerHTML = "";
  for (const c of cols) sel.appendChild(new Option(printable(c), c));   // the value stays exact: it is sent back
  sel.size = Math.min(4, Math.max(2, cols.length));
  sel.disabled = cols.length === 0;
  if (info.limits && info.limits.max_k) {
    for (const o of Array.from($("k").options)) if (+o.value > info.limits.max_k) o.remove();
  }
  if (info.basemap) {
    addBasemap(info.basemap, (host) => mapNotice(`The online basemap (${host}) could not be loaded; ` +
                                                 "the imagery of the indexed scenes is still shown."));
  }
}

export async function loadScenes() {
  scenesDoc = await api(apiUrl("scenes"));
  knowScenes(() => (scenesDoc && scenesDoc.features) || []);
  showScenes(scenesDoc);
  addImagery(scenesDoc.extent, scenesDoc.maxzoom, () => mapNotice(
    "Some imagery could not be drawn: a scene's source file is missing or unreadable on the server (see Scenes)."));
  const list = $("scene-list");
  list.innerHTML = "";
  const feats = scenesDoc.features || [];
  $("tab-scenes").textContent = `Scenes (${feats.length})`;
  const broken = feats.filter((f) => f.properties.imagery === false).length;
  if (broken) mapNotice(`The imagery of ${broken} scene${broken > 1 ? "s" : ""} cannot be drawn (see Scenes); their outlines are red.`);
  for (const f of feats) {
    const p = f.properties;
    const li = el("li");
    const b = el("button", "scene");
    b.type = "button";
    b.appendChild(el("span", "sitem", p.item_id));
    b.appendChild(el("span", "smeta", [p.collection || "no collection", tileDate(p),
                                       `${p.tiles} tile${p.tiles === 1 ? "" : "s"}`].join(" · ")));
    if (p.imagery === false) b.appendChild(el("span", "sbad", "imagery: " + p.imagery_problem));
    else if (p.imagery_note) b.appendChild(el("span", "snote", "imagery: " + p.imagery_note));
    b.title = "Zoom to this scene";
    b.onclick = () => {
      const [w, s, e, n] = p.bbox;
      map.fitBounds([[s, w], [n, e]], { padding: [20, 20], maxZoom: 18 });
      flashScene(f.id);
    };
    li.appendChild(b);
    list.appendChild(li);
  }
}
