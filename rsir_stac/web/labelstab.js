// The Labels tab's actions: Refine, Clear and Load labels (each undone by Undo or Back), Save
// labels, Find all (its hits on the map and listed, Download hits) and the results' downloads.
// After any label change the cards, outlines, details, hits and address follow (labelsChanged).
import { friendly } from "./api.js";
import { datesRefused } from "./dates.js";
import { drawHits } from "./hits.js";
import { info } from "./indexinfo.js";
import * as labels from "./labels.js";
import { refreshDetails, restyleAll, resultById, resultFeatures } from "./results.js";
import { filters, lastDoc, refuseDates, render, run, showNothing } from "./search.js";
import { saveUrl, shownHits, stampHits, state } from "./state.js";
import { $, setStatus, showTab } from "./status.js";

let lastFindAll = null;  // the last "Find all" answer, for Download hits
let undoLabels = null;   // what the last "Clear labels" or "Load labels" replaced, for Undo and Back

$("refine").onclick = () => run({ kind: "labels" }, { fit: true, focusResults: true });
/** After any label change: cards, outlines, details, hits and the address.  A change by the user
 *  (`byUser`) while Undo is offered says what that Undo will do now (the labels changed since). */
export function labelsChanged(byUser = true) {
  restyleAll(); refreshDetails(); labels.restyleHits(); saveUrl(false);
  if (byUser && undoLabels && $("status").querySelector("button[data-undo]")) offerUndo();
}

// counts with thousands separators, as the header's "1,037 tiles" (toLocaleString)
const plural = (n, one, many) => `${typeof n === "number" ? n.toLocaleString() : n} ${n === 1 ? one : many || one + "s"}`;

/** The label changes made since `u` (a Clear or a Load): tiles labelled, or labelled otherwise, after it. */
function changedSince(u) {
  const out = new Map();
  for (const [id, l] of state.labels) if (u.after.get(id) !== l.label) out.set(id, l);
  return out;
}

/** The status line of the last Clear or Load (undoLabels) with its Undo button: what Undo brings back,
 *  and the label changes made since, which Undo keeps. */
function offerUndo() {
  const u = undoLabels, n = u.before.size, them = n === 1 ? "it" : "them";
  const head = u.what === "clear"
    ? `Cleared ${plural(n, "label")}${u.refined ? " and the results refined from them" : ""}` +
      `${u.hits ? (u.refined ? "," : " and") + " the find-all hits" : ""}`
    : `Loaded ${plural(u.loaded, "label")} from ${u.file}, replacing ${plural(n, "label")}`;
  const k = changedSince(u).size;
  const tail = !k ? `Undo (or Back) brings ${them} back.`
    : `${plural(k, "label")} changed since; Undo brings the ${plural(n, u.what === "clear" ? "cleared label" : "replaced label")} ` +
      `back and keeps ${k === 1 ? "that change" : "those changes"}.`;
  // a file made with another model: how its labels were matched (labels.matchNote)
  setStatus(`${head}. ${u.note ? u.note + " " : ""}${tail}`, "", { label: "Undo", run: undoLabelChange, undo: true });
}

// Clear labels: a new history entry (Back brings them back) and an Undo button; results refined
// from the labels and the find-all hits go with them (a link to them would open with no labels),
// and Undo brings those back too
$("clear-labels").onclick = () => {
  const n = state.labels.size;
  if (!n) return;
  const refined = !!state.query && state.query.kind === "labels";
  undoLabels = { what: "clear", before: state.labels, after: new Map(), query: state.query, doc: lastDoc,
                 selected: state.selected, refined: refined, hits: lastFindAll };
  state.labels = new Map();
  labels.renderLabels();
  clearFindAll();
  if (refined) { state.query = null; state.selected = null; showNothing(); }
  restyleAll(); refreshDetails();
  saveUrl(true);
  offerUndo();
  // Clear labels is disabled now (no labels): the keyboard goes on from the Undo that brings them back
  const undo = $("status").querySelector("button[data-undo]");
  if (undo) undo.focus();
};

/** Undo the last Clear or Load: its labels back, with the label changes made since kept; after a
 *  Clear, the refined results and the find-all hits it removed too. */
function undoLabelChange() {
  const u = undoLabels;
  undoLabels = null;
  if (!u) return;
  const kept = changedSince(u);
  const back = new Map(u.before);
  for (const [id, l] of kept) back.set(id, l);
  state.labels = back;
  labels.renderLabels();
  if (u.refined && !state.query && u.doc) {
    state.query = u.query;
    state.selected = u.selected;
    $("rerun").disabled = false;
    render(u.doc, u.query, {});
    showTab("labels");   // where the user cleared them
  }
  if (u.hits && !lastFindAll) showFindAll(u.hits);   // unless Find all ran again since
  labelsChanged(false);
  const n = u.before.size;
  const told = [`${plural(n, "label")}` +
                (u.what === "load" ? ` (the ${plural(u.loaded, "label")} loaded from ${u.file} ${u.loaded === 1 ? "is" : "are"} gone)`
                  : "")];
  if (u.refined && u.doc) told.push("the results refined from them");
  if (u.hits) told.push("the find-all hits");
  setStatus(`Restored ${told.length > 1 ? told.slice(0, -1).join(", ") + " and " + told[told.length - 1] : told[0]}` +
            (kept.size ? `; kept the ${plural(kept.size, "label")} changed since` : "") + ".");
  $(u.what === "clear" ? "clear-labels" : "load-labels").focus();   // the Undo button is gone with the message
}

/** Labels from an address (Back after Clear or Load): the ones Clear or Load replaced, when they are the same. */
export function labelsOf(fromUrl) {
  const u = undoLabels;
  if (!u || fromUrl.size !== u.before.size) return fromUrl;
  for (const [id, l] of fromUrl) if (!u.before.has(id) || u.before.get(id).label !== l.label) return fromUrl;
  undoLabels = null;
  return u.before;   // with their footprints, scenes, dates and notes
}

/** No find-all hits shown (the history entry current now is not changed: a Clear pushes a new one). */
function clearFindAll() {
  labels.clearFindAll(); lastFindAll = null; $("findall-export").hidden = true; shownHits.token = null;
}

const hitsByToken = new Map();   // history entries' find-all answers (state.js's shownHits), this page's life
let hitsSeq = 0;

/** Show a "find all" answer: its hits on the map and listed, Download hits; the current history
 *  entry holds them (Back and Forward bring back the hits of each entry). */
function showFindAll(doc) {
  let token = [...hitsByToken].find(([, d]) => d === doc)?.[0];
  if (!token) { token = `${Date.now().toString(36)}-${++hitsSeq}`; hitsByToken.set(token, doc); }
  lastFindAll = doc;
  drawHits(doc.features || [], HIT_ACTIONS);
  labels.showHits(doc, labelHit);
  $("findall-export").hidden = !(doc.features || []).length;
  shownHits.token = token;
  stampHits();
}

/** Back or Forward: the find-all hits of the history entry now current (none when it had none, or
 *  when they are of an earlier page load).  Returns the answer shown, or null. */
export function hitsOfEntry(token) {
  const doc = (token && hitsByToken.get(token)) || null;
  if (doc === lastFindAll) return doc;
  if (doc) showFindAll(doc); else clearFindAll();
  return doc;
}
$("save-labels").onclick = () => labels.saveLabels(info && info.model_id);
// Load labels: they replace the labels there were; a new history entry (Back: the state before the
// load, with no labels too) and an Undo button bring those back (as after Clear labels).  A file with
// no labels changes nothing.
$("load-labels").addEventListener("change", async (ev) => {
  const file = ev.target.files && ev.target.files[0];
  ev.target.value = "";
  if (!file) return;
  const before = state.labels;
  try {
    const { count: n, note } = await labels.loadLabels(file);
    const after = new Map([...state.labels].map(([id, l]) => [id, l.label]));
    undoLabels = before.size ? { what: "load", before: before, after: after, file: file.name, loaded: n, note: note } : null;
    saveUrl(true);   // with no labels before too (re-check: Back skipped the state the load left)
    labelsChanged(false);
    if (undoLabels) offerUndo();
    else setStatus(`Loaded ${plural(n, "label")} from ${file.name}.` + (note ? " " + note : ""));
  } catch (err) { setStatus(friendly(err.message), "error"); }
});
/** Label (or unlabel: the same label again) a find-all hit. */
function labelHit(id, label, f) { labels.setLabel(id, label, resultById(id) || f); labelsChanged(); }

/** A hit's buttons on the map. */
const HIT_ACTIONS = [
  { label: "✓ Positive", run: (f) => labelHit(f.id, "positive", f) },
  { label: "✗ Negative", run: (f) => labelHit(f.id, "negative", f) },
  { label: "In the list", run: (f) => {
    showTab("labels");
    if (!labels.focusHit(f.id)) setStatus("This hit is not among the ones listed (the most probable); Download hits saves all.");
  } },
];

/** Where "find all" scores, in words: the drawn area and the filters, or the whole index (never the
 *  map view: a link gives the same answer on every screen). */
function scoredWhere() {
  const parts = [];
  if (state.area) parts.push(state.area.bbox ? "in the drawn box" : "in the drawn polygon");
  if (state.datetime) parts.push(`dated ${state.datetime}`);
  if (state.collections.length) parts.push(`of collection${state.collections.length > 1 ? "s" : ""} ${state.collections.join(", ")}`);
  if (!state.area) parts.unshift("in the whole index");
  return parts.join(", ");
}

/** The held-out check of a find-all answer's summary in words ("" when none was held out: a note
 *  of the service says why). */
function heldOut(sm) {
  if (!sm.holdout) return "";
  const num = (v) => (typeof v === "number" ? v.toFixed(2) : "n/a");
  return ` Held-out check on ${plural(sm.holdout, "label")}: precision ${num(sm.precision)}, recall ${num(sm.recall)}` +
    (sm.precision === null ? " (none predicted positive: try a lower threshold)" : "") +
    (sm.holdout < 10 ? " (few labels: a rough figure, look at the hits too)." : ".");
}

$("classify").onclick = async () => {
  const why = datesRefused();
  if (why) { refuseDates(why, "Find all"); return; }
  const bar = $("progress");
  bar.hidden = false;
  $("classify").disabled = true;
  try {
    const where = scoredWhere();
    const doc = await labels.findAll(filters(), (s) => {
      $("progress-text").textContent = `Scoring every tile ${where}… ${s.toFixed(0)} s`;
    });
    const sm = doc.summary || {};
    showFindAll(doc);
    // the hits: the tiles at or above the threshold, and the labelled positives kept below it (at a
    // threshold of 1, only those: the hits are not "at or above probability 1")
    const nf = doc.features.length, kept = sm.positives_kept || 0;
    const above = typeof sm.above_threshold === "number" ? sm.above_threshold : nf - kept;
    // what was found first: a long status shows its first two lines (status.js), the rest behind More
    setStatus(`Find all: ${plural(nf, "tile")}` + (kept
      ? `, ${above ? above.toLocaleString() : "none"} at or above probability ${sm.threshold} and ${kept.toLocaleString()} you ` +
        "labelled positive, kept below it"
      : ` at or above probability ${sm.threshold}`) +
              (sm.scored !== undefined ? ` (${plural(sm.scored, "tile")} scored)` : "") + ` ${where}` +
              (nf ? "; purple on the map and listed in the Labels tab (Download hits saves them)." : ".") +
              heldOut(sm) + ((doc.notes || []).length ? " Note: " + doc.notes.join("; ") + "." : "") +
              (state.area ? "" : " To score only part of the index, draw a box or polygon first."));
  } catch (err) {
    setStatus(friendly(err.message), "error");
  } finally {
    bar.hidden = true;
    const had = document.activeElement === $("classify") || document.activeElement === document.body;
    $("classify").disabled = false;
    if (had) $("classify").focus();   // disabled while it ran, it lost the focus: the keyboard goes on from it
  }
};
$("findall-export").onclick = () => {
  if (!lastFindAll) return;
  // the service's numbers: 5.0 stays Real
  labels.download(labels.fileName("hits-find-all", "geojson", labels.findAllTime(lastFindAll)), labels.findAllFile(lastFindAll));
};
for (const b of document.querySelectorAll(".export")) {
  b.onclick = async () => {
    try {
      const q = state.query;
      await labels.exportResults(b.dataset.format, q ? exportBody() : null, resultFeatures(),
                                 q && q.kind === "image" ? q.file : null, resultsName());
    } catch (err) { setStatus(friendly(err.message), "error"); }
  };
}
/** What the results on screen are, for their downloads' names (labels.fileName): results-tile-c4e73bed,
 *  results-place, results-refined, results-image-NAME, with the ranks of a later page (-ranks11-20). */
function resultsName() {
  const q = state.query;
  const tile = q && (q.kind === "point" ? q.id : q.pinned);
  const image = q && q.kind === "image" && q.file && q.file.name
    ? (q.file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_-]+/g, "_").replace(/^[_-]+/, "").slice(0, 16) || "upload") : "";
  const what = !q ? "" : tile ? "tile-" + String(tile).slice(0, 8) : q.kind === "labels" ? "refined"
    : q.kind === "image" ? "image-" + image : "place";
  const n = resultFeatures().length;
  return "results" + (what ? "-" + what : "") + (state.offset && n ? `-ranks${state.offset + 1}-${state.offset + n}` : "");
}

/** The query on screen as /api/query/export takes it (an uploaded image goes beside it, as a file). */
function exportBody() {
  const q = state.query;
  const ex = q.kind === "labels" ? labels.examples()
    : q.kind === "image" ? { positives: [], negatives: [] }
      : q.kind === "point" || q.pinned ? { positives: [{ point_id: q.kind === "point" ? q.id : q.pinned }], negatives: [] }
        : { positives: [{ lon: q.lon, lat: q.lat }], negatives: [] };
  return Object.assign({ positives: ex.positives, negatives: ex.negatives, k: state.k }, filters(),
    state.expand ? { expand: state.expand } : {}, state.offset ? { offset: state.offset } : {});   // the page shown
}
