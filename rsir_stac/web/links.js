// The address: a link opens the search it was copied from (its query, labels, filters, selection
// and view; what it held that the page cannot use is said), Back and Forward step through
// searches, the map view is kept in it, and Copy link.
import { hasKey } from "./api.js";
import { setArea } from "./form.js";
import * as labels from "./labels.js";
import { hitsOfEntry, labelsOf } from "./labelstab.js";
import { map } from "./map.js";
import { restyleAll } from "./results.js";
import { noteLeftOut, run, showNothing, syncImagery } from "./search.js";
import { DATES_FORM, fromSearch, quotedDates, saveUrl, stampUploading, state } from "./state.js";
import { $, setStatus } from "./status.js";

/** What a link held that the page left out, for people (empty when nothing was). */
function leftOut(s) {
  const out = [];
  if (s.refusedDates) {
    // "Dates "X" is not a date range; give ..." -> "it is not a date range; give ..."
    const why = (s.refusedWhy || "").replace(/^Dates (".*?"|'.*?'|“.*?”) /s, "it ") ||
      `it is not a date range; give ${DATES_FORM}`;
    out.push(`the link's dates ${quotedDates(s.refusedDates)} were left out: ${why}`);
  }
  out.push(...(s.notes || []));
  const names = (s.unsupported || []).map((n) => n + "=");
  if (names.length) {   // one sentence for near= and radius= together
    out.push(`the link's ${names.join(" and ")} filter${names.length > 1 ? "s were" : " was"} left out: the map page ` +
             "has no distance filter; draw a box or polygon instead (the HTTP API takes near=LON,LAT,RADIUS_M)");
  }
  return out;
}

export function applyState(s, first) {
  state.query = s.query;   // before any map move: moveend writes the state to the URL
  state.view = s.view;
  state.k = s.k;
  state.offset = s.offset || 0;
  state.expand = s.expand;
  state.datetime = s.datetime;
  state.collections = s.collections;
  state.labels = s.labels.size || !first ? labelsOf(s.labels) : state.labels;
  state.selected = s.selected;
  $("datetime").value = s.datetime;
  if (![...$("k").options].some((o) => +o.value === s.k)) $("k").appendChild(new Option(String(s.k), String(s.k)));
  $("k").value = String(s.k);
  if (![...$("expand").options].some((o) => +o.value === s.expand)) $("expand").appendChild(new Option(String(s.expand), String(s.expand)));
  $("expand").value = String(s.expand);
  for (const o of $("collection").options) o.selected = s.collections.includes(o.value);
  const notes = leftOut(s);
  if (first && history.state && history.state.uploading) {   // reloaded while an upload was being searched
    notes.push(`the search with the uploaded image ${history.state.uploading} was still running when the page ` +
               "was reloaded and is not kept (reloads keep no uploads); upload it again to search with it");
    stampUploading(null, history.state.uploadingSeq);   // said once: a later reload shows what the entry holds
  } else if (first && !s.query && history.state && history.state.upload) {   // an upload lives in the page only
    notes.push(`the uploaded image ${history.state.upload} searched before the reload is not kept (links and ` +
               "reloads keep no uploads); upload it again to search with it");
  }
  // a reload keeps the history entry but not the find-all hits it showed (they live in the page)
  if (first && history.state && history.state.hits && !hitsOfEntry(history.state.hits)) {
    notes.push("the Find all hits shown before the page was reloaded are not kept; press Find all in the Labels tab to score the tiles again");
  }
  noteLeftOut(s.refused || "", notes);
  setArea(s.area, true);
  labels.renderLabels();
  labels.fillInLabels();   // a link's labels: their footprints, scenes and dates
  let snapped = false;
  if (s.view) {
    map.setView([s.view.lat, s.view.lon], s.view.z, { animate: false });
    // a zoom between the map's half steps (v=16.25), or past its deepest, is drawn at the one the map
    // takes (16.5), which the notices name: the address says that one (re-check: it kept v=16.25)
    if (map.getZoom() !== s.view.z) { state.view = Object.assign({}, s.view, { z: map.getZoom() }); snapped = true; }
  }
  if (s.query) run(s.query, { push: false, keepSelection: true, fit: !s.view, keepTab: !first });   // Back: the tab the user is on
  else { showNothing(); restyleAll(); syncImagery(); }
  $("rerun").disabled = !s.query;   // nothing to search again
  if (snapped && !(s.refused || notes.length)) saveUrl(false);   // in place: no new history entry
  if (s.refused || notes.length) {   // never kept in the address bar: the link is written again without them
    saveUrl(false);
    const told = (s.refused ? [`the link's polygon was left out: ${s.refused}; draw the area again`] : []).concat(notes);
    if (!s.query) setStatus(told.map((t) => t[0].toUpperCase() + t.slice(1)).join(". ") + ".", "error");
  }
  return !!(s.refused || notes.length);
}

// Back and Forward: the state of the entry, with the find-all hits shown while it was current
window.addEventListener("popstate", (ev) => {
  const s = fromSearch(window.location.search);
  const told = applyState(s, false);
  const hits = hitsOfEntry(ev.state && ev.state.hits);
  labels.restyleHits();   // the hits' cards name the labels of this entry
  if (!s.query && !told) {
    const n = hits ? (hits.features || []).length : 0;
    setStatus(hits ? `Find all hits shown: ${n} tile${n === 1 ? "" : "s"}, purple on the map and listed in the Labels tab.`
      : "Click the imagery to find tiles like the one there.");
  }
});
map.on("moveend", () => {
  if (!document.body.dataset.ready) return;
  const c = map.getCenter();
  state.view = { z: map.getZoom(), lat: c.lat, lon: c.lng };
  saveUrl(false);
});

$("copy-link").onclick = async () => {
  saveUrl(false);
  try { await navigator.clipboard.writeText(window.location.href); setStatus("Link copied: it opens this search, its labels, filters and view" +
    (hasKey() ? " (it holds no access key: who opens it is asked for the service's key)." : ".")); }
  catch (e) { setStatus("Copy this link from the address bar: it holds the search, labels, filters and view."); }
};
