// The page state and its URL: a link holds the query, labels, filters, k, selection and map view.
//
//   ?q=p:<point id> | q=at:<lon>,<lat> | q=labels   the query (an uploaded image is not in links)
//   &qid=<point id>                                 with q=at: the tile found there (kept when filters change)
//   &k=20 &o=20 &qe=5 &dt=2020-01-01/.. &col=a,b    results (count, page offset, query expansion) and filters
//   &bbox=w,s,e,n | &poly=lon,lat;lon,lat;...       area filter
//   &pos=id,id &neg=id,id                           labels (point ids)
//   &sel=<id> &v=<zoom>/<lat>/<lon>                 selected result and map view
//
// A new search pushes a history entry (Back/Forward step through searches); view,
// selection and label changes replace the current one (clearing every label pushes one).
// A link's dates that are not a date range (or name an impossible day), and filters the page has no
// control for (near=, radius=), are left out and said so (fromSearch: refusedDates, unsupported).

export const state = {
  query: null,          // {kind: "point", id} | {kind: "location", lon, lat, pinned?} | {kind: "labels"} | {kind: "image", file}
  k: 10,
  offset: 0,            // the page of results: results offset+1 .. offset+k (Next and Previous)
  expand: 0,            // query expansion: nearest tiles averaged into the query (0: off)
  datetime: "",
  collections: [],
  area: null,           // null | {bbox: [w,s,e,n]} | {polygon: [[lon,lat],...closed]}
  labels: new Map(),    // point id -> {label: "positive"|"negative", geometry, note, item_id, datetime}
  selected: null,
  view: null,           // {z, lat, lon}
};

const r6 = (v) => String(Math.round(v * 1e6) / 1e6);

export function toSearch(s) {
  const q = new URLSearchParams();
  if (s.query) {
    if (s.query.kind === "point") q.set("q", "p:" + s.query.id);
    else if (s.query.kind === "location") {
      q.set("q", "at:" + r6(s.query.lon) + "," + r6(s.query.lat));
      // the tile the click found: a link under other filters reopens this query, not the tile there then
      if (s.query.pinned) q.set("qid", s.query.pinned);
    } else if (s.query.kind === "labels") q.set("q", "labels");
  }
  if (s.k !== 10) q.set("k", String(s.k));
  if (s.offset) q.set("o", String(s.offset));
  if (s.expand) q.set("qe", String(s.expand));
  if (s.datetime) q.set("dt", s.datetime);
  if (s.collections.length) q.set("col", s.collections.join(","));
  if (s.area && s.area.bbox) q.set("bbox", s.area.bbox.map(r6).join(","));
  if (s.area && s.area.polygon) q.set("poly", s.area.polygon.map((p) => r6(p[0]) + "," + r6(p[1])).join(";"));
  const pos = [], neg = [];
  for (const [id, l] of s.labels) (l.label === "positive" ? pos : neg).push(id);
  if (pos.length) q.set("pos", pos.join(","));
  if (neg.length) q.set("neg", neg.join(","));
  if (s.selected) q.set("sel", s.selected);
  if (s.view) q.set("v", `${Math.round(s.view.z * 100) / 100}/${r6(s.view.lat)}/${r6(s.view.lon)}`);
  const text = q.toString().replace(/%2C/g, ",").replace(/%2F/g, "/").replace(/%3A/g, ":").replace(/%3B/g, ";");
  return text ? "?" + text : "";
}

function nums(text, n) {
  const v = String(text || "").split(",").map(Number);
  return v.length === n && v.every(Number.isFinite) ? v : null;
}

const orient = (a, b, c) => Math.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]));
const within = (a, b, p) => Math.min(a[0], b[0]) <= p[0] && p[0] <= Math.max(a[0], b[0]) &&
  Math.min(a[1], b[1]) <= p[1] && p[1] <= Math.max(a[1], b[1]);

/** Whether segments ab and cd share any point (crossing, touching or overlapping). */
function segmentsMeet(a, b, c, d) {
  const o1 = orient(a, b, c), o2 = orient(a, b, d), o3 = orient(c, d, a), o4 = orient(c, d, b);
  if (o1 !== o2 && o3 !== o4) return true;
  return (o1 === 0 && within(a, b, c)) || (o2 === 0 && within(a, b, d)) ||
    (o3 === 0 && within(c, d, a)) || (o4 === 0 && within(c, d, b));
}

/**
 * Why a ring of [lon, lat] corners (closed or not) is not a polygon the search takes, or null: its
 * edges cross or touch (a bow-tie, a corner on another edge, an edge doubling back), or it has no
 * area (its corners on one line).
 */
/** Most characters of a collection name (the service's api.params.MAX_COLLECTION_CHARS). */
const MAX_COLLECTION_CHARS = 200;

/** Why the service would refuse the box [w, s, e, n] (degrees; w > e crosses the antimeridian), or "". */
export function bboxProblem([w, s, e, n]) {
  if (Math.abs(s) > 90 || Math.abs(n) > 90) return "a latitude is beyond ±90";
  if (Math.abs(w) > 180 || Math.abs(e) > 180) return "a longitude is beyond ±180";
  if (s >= n) return `its south ${s} is not below its north ${n}`;
  return "";
}

export function polygonProblem(ring) {
  const pts = ring.slice();
  if (pts.length > 1 && pts[0][0] === pts[pts.length - 1][0] && pts[0][1] === pts[pts.length - 1][1]) pts.pop();
  const n = pts.length;
  if (n < 3) return "a polygon needs at least 3 corners";
  const edge = (i) => [pts[i], pts[(i + 1) % n]];
  for (let i = 0; i < n; i++) {
    const [a, b] = edge(i), [, c] = edge((i + 1) % n);
    // consecutive edges meet at b: they overlap when the second doubles back along the first
    if (orient(a, b, c) === 0 && (a[0] - b[0]) * (c[0] - b[0]) + (a[1] - b[1]) * (c[1] - b[1]) > 0) {
      return "the polygon's edges cross each other";
    }
    for (let j = i + 2; j < n; j++) {
      if (i === 0 && j === n - 1) continue;   // the last edge and the first meet at the first corner
      if (segmentsMeet(a, b, ...edge(j))) return "the polygon's edges cross each other";
    }
  }
  let area = 0;
  for (let i = 0; i < n; i++) { const [a, b] = edge(i); area += a[0] * b[1] - b[0] * a[1]; }
  if (area === 0) return "the polygon has no area (its corners lie on one line)";
  return null;
}

const INSTANT = /^\d{4}(?:-\d{2}(?:-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?)?)?$/;

/** The forms the Dates box takes, for messages. */
export const DATES_FORM = "START/END as dates, months or years, e.g. 2015-01-01/2015-12-31, 2015 or 2020-06/.. " +
  "('..' for an open end)";

const PARTS = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(?:[Zz]|[+-](\d{2}):?(\d{2}))?)?)?)?$/;

/** Why an instant of the Dates form names no real moment (month 13, 30 February, hour 24), or null;
 *  the service refuses those too. */
function impossible(p) {
  const m = PARTS.exec(p);
  if (!m) return null;
  const [, y, mo, d, hh, mi, ss, oh, om] = m;
  if (+y < 1) return "there is no year 0000";
  if (mo && !(+mo >= 1 && +mo <= 12)) return `there is no month ${mo}`;
  if (d) {
    const leap = +y % 4 === 0 && (+y % 100 !== 0 || +y % 400 === 0);
    const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][+mo - 1];
    if (!(+d >= 1 && +d <= days)) return `${y}-${mo} has ${days} days, no day ${d}`;
  }
  if (hh && +hh > 23) return `there is no hour ${hh}`;
  if (mi && +mi > 59) return `there is no minute ${mi}`;
  if (ss && +ss > 59) return `there is no second ${ss}`;
  if (oh && (+oh > 23 || +om > 59)) return `there is no time zone offset ${oh}:${om}`;
  return null;
}

/** A Dates text as a message quotes it: in "…", or in '…' when it holds a double quote itself
 *  (`"2020"` typed with its quotes showed as `""2020""`), or “…” when it holds both kinds. */
export function quotedDates(text) {
  let t = String(text).trim();
  if (t.length > 60) t = `${t.slice(0, 40)}…${t.slice(-8)} (${t.length.toLocaleString()} characters)`;   // never a screenful
  return !t.includes('"') ? `"${t}"` : !t.includes("'") ? `'${t}'` : `“${t}”`;
}

/**
 * Why a Dates text is not a date range the search takes, or null: START/END, START/.., ../END or one
 * instant, each an RFC 3339 date or datetime, a year or a month (as the service reads them), naming
 * real days and times (no month 13, no 30 February).
 */
export function dateProblem(text) {
  const parts = String(text || "").trim().split("/").map((p) => p.trim());
  if (!parts[0] && parts.length === 1) return null;
  const open = (p) => p === "" || p === "..";
  if (parts.length > 2 || parts.some((p) => !open(p) && !INSTANT.test(p)) || (parts.length === 1 && open(parts[0]))) {
    return `Dates ${quotedDates(text)} is not a date range; give ${DATES_FORM}`;
  }
  for (const p of parts) {
    const why = open(p) ? null : impossible(p);
    if (why) return `Dates ${quotedDates(text)} holds an impossible date (${why}); give ${DATES_FORM}`;
  }
  if (parts.length === 2 && open(parts[0]) && open(parts[1])) {
    return `Dates ${quotedDates(text)} has no start or end; give ${DATES_FORM}`;
  }
  const day = (p, pad) => p.slice(0, 10) + pad.slice(Math.min(p.length, 10));   // 2015 as start: 2015-01-01
  if (parts.length === 2 && !open(parts[0]) && !open(parts[1]) && day(parts[0], "0000-01-01") > day(parts[1], "0000-12-31")) {
    return `Dates ${quotedDates(text)} ends before it starts; swap the start and the end`;
  }
  return null;
}

/** The most results a search gives (the service's MAX_K). */
export const MAX_K = 100;
/** The furthest a search pages: offset + k (the service's rsir_stac.store.query.MAX_K). */
export const MAX_PAGED = 10000;
const TILE_ID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
const shown = (v) => JSON.stringify(v.length > 60 ? v.slice(0, 57) + "…" : v);

/** Parse a location.search into a partial state.  Malformed or out-of-range values are left out (or
 *  clamped) and said in `notes` (with refusedDates, unsupported and refused: why a polygon was). */
export function fromSearch(search) {
  const q = new URLSearchParams(search);
  const out = { query: null, k: 10, offset: 0, expand: 0, datetime: "", collections: [], area: null, labels: new Map(), selected: null,
                view: null, notes: [] };
  const note = (t) => out.notes.push(t);
  const ids = (name) => {   // tile ids; others left out, said once per parameter
    const all = (q.get(name) || "").split(",").map((x) => x.trim()).filter(Boolean);
    const bad = all.filter((x) => !TILE_ID.test(x));
    if (bad.length) note(`the link's ${name}= value${bad.length > 1 ? "s" : ""} ${bad.map(shown).join(", ")} ` +
                         `${bad.length > 1 ? "are not tile ids and were" : "is not a tile id and was"} left out`);
    return all.filter((x) => TILE_ID.test(x));
  };
  const qq = q.get("q") || "";
  if (qq.startsWith("p:") && qq.length > 2) {
    if (TILE_ID.test(qq.slice(2))) out.query = { kind: "point", id: qq.slice(2) };
    else note(`the link's query q=${shown(qq)} does not name a tile id and was left out`);
  } else if (qq.startsWith("at:")) {
    const ll = nums(qq.slice(3), 2);
    if (ll && Math.abs(ll[1]) <= 90 && Math.abs(ll[0]) <= 360) out.query = { kind: "location", lon: ll[0], lat: ll[1] };
    else note(`the link's query q=${shown(qq)} is not a place (at:LON,LAT) and was left out`);
    const qid = out.query && ids("qid")[0];
    if (qid) out.query.pinned = qid;
  } else if (qq === "labels") out.query = { kind: "labels" };
  else if (qq) note(`the link's query q=${shown(qq)} is not one the page knows and was left out`);
  if (q.has("k")) {
    const raw = q.get("k").trim().slice(0, 20), k = Number(raw);
    if (Number.isInteger(k) && k >= 1 && k <= MAX_K) out.k = k;
    else if (Number.isInteger(k) && k > MAX_K) {
      out.k = MAX_K;
      note(`the link's k=${raw} is over the most results a search gives, so ${MAX_K} are shown`);
    } else note(`the link's k=${raw} is not a number of results from 1 to ${MAX_K}, so 10 are shown`);
  }
  if (q.has("o")) {
    const raw = q.get("o").trim().slice(0, 20), o = Number(raw);
    if (Number.isInteger(o) && o >= 0 && o + out.k <= MAX_PAGED) out.offset = o;
    else note(`the link's page offset o=${raw} is not a number of results from 0 to ${MAX_PAGED - out.k}, so the first page is shown`);
  }
  if (q.has("qe")) {
    const raw = q.get("qe").trim().slice(0, 20), qe = Number(raw);
    if (Number.isInteger(qe) && qe >= 0 && qe <= MAX_K) out.expand = qe;
    else note(`the link's query expansion qe=${raw} is not a number of tiles from 0 to ${MAX_K} and was left out`);
  }
  const dt = (q.get("dt") || "").trim();
  const why = dt && dateProblem(dt);
  if (why) { out.refusedDates = dt; out.refusedWhy = why; } else out.datetime = dt;
  out.unsupported = ["near", "radius"].filter((name) => q.has(name));
  out.collections = q.getAll("col").flatMap((v) => v.split(",")).filter(Boolean);   // col=a,b or col=a&col=b
  const long = out.collections.filter((c) => c.length > MAX_COLLECTION_CHARS);
  if (long.length) {   // the service refuses a name that long: the rest of the link still searches
    out.collections = out.collections.filter((c) => c.length <= MAX_COLLECTION_CHARS);
    note(`the link's collection ${shown(long[0])} was left out: a collection name has at most ${MAX_COLLECTION_CHARS} characters`);
  }
  if (q.get("bbox")) {
    const bb = nums(q.get("bbox"), 4);
    const why = bb ? bboxProblem(bb) : "it is not four numbers W,S,E,N";
    if (!why) out.area = { bbox: bb };
    else note(`the link's box bbox=${shown(q.get("bbox"))} was left out: ${why}; draw the area again`);
  }
  if (q.get("poly")) {
    const parts = q.get("poly").split(";");
    const poly = parts.map((p) => nums(p, 2)).filter(Boolean);
    if (poly.length === parts.length && poly.length >= 4) {   // a polygon the search would refuse is left out (refused: why)
      const why = polygonProblem(poly);
      if (why) out.refused = why; else out.area = { polygon: poly };
    } else {
      note(`the link's polygon poly=${shown(q.get("poly"))} was left out: it is not LON,LAT;LON,LAT;… with at least 3 ` +
           "corners, closed; draw the area again");
    }
  }
  for (const id of ids("pos")) out.labels.set(id, { label: "positive" });
  for (const id of ids("neg")) out.labels.set(id, { label: "negative" });
  out.selected = ids("sel")[0] || null;
  if (q.get("v")) {
    const v = q.get("v").split("/").map(Number);
    if (v.length === 3 && v.every(Number.isFinite) && v[0] >= 0 && v[0] <= 24 && Math.abs(v[1]) <= 90 && Math.abs(v[2]) <= 540) {
      out.view = { z: v[0], lat: v[1], lon: v[2] };
    } else {
      note(`the link's map view v=${shown(q.get("v"))} was left out: it is not ZOOM/LAT/LON with zoom 0–24 and a latitude ` +
           "within ±90; the map opens at the data");
    }
  }
  return out;
}

/** The find-all hits on screen, as the history entries hold them (their token; null: none).  Each
 *  entry keeps the hits shown while it was current, so Back and Forward bring back exactly those. */
export const shownHits = { token: null };

/** Write the state to the address bar: push for a new search, replace otherwise. */
export function saveUrl(push) {
  const url = window.location.pathname + toSearch(state);
  if (url === window.location.pathname + window.location.search) return;
  if (push) history.pushState({ rsir: 1, hits: shownHits.token }, "", url);
  else history.replaceState({ rsir: 1, hits: shownHits.token }, "", url);
}

/** The current history entry holds the hits shown now (after Find all, or Undo bringing them back). */
export function stampHits() {
  history.replaceState(Object.assign({}, history.state || {}, { rsir: 1, hits: shownHits.token }), "", window.location.href);
}

/** The current history entry searched an uploaded image (its file name): a reload says it is not kept. */
export function stampUpload(name) {
  const st = Object.assign({}, history.state || {}, { rsir: 1, hits: shownHits.token, upload: name });
  delete st.uploading;
  history.replaceState(st, "", window.location.href);
}

/** An upload search ``seq`` is running (``name``: its file name): a reload before its answer says it
 *  is lost. ``name`` null ends that search's mark (refused or overtaken; a later upload's mark stays). */
export function stampUploading(name, seq) {
  const st = Object.assign({}, history.state || {}, { rsir: 1 });
  if (name !== null) Object.assign(st, { uploading: name, uploadingSeq: seq });
  else if (st.uploadingSeq === seq) { delete st.uploading; delete st.uploadingSeq; }
  else return;
  history.replaceState(st, "", window.location.href);
}

/** The labels as the GeoJSON label file of the analyst's loop (one Feature per tile). */
export function labelsGeoJSON(modelId) {
  const features = [];
  for (const [id, l] of state.labels) {
    const props = { point_id: id, label: l.label };
    if (l.note) props.note = l.note;
    if (l.item_id) props.item_id = l.item_id;
    if (l.datetime) props.datetime = l.datetime;
    features.push({ type: "Feature", id: id, geometry: l.geometry || null, properties: props });
  }
  const doc = { type: "FeatureCollection", features: features };
  if (modelId) doc["rsir:model_id"] = modelId;
  return doc;
}

/** Read a label file (GeoJSON FeatureCollection) named `name`; returns a Map or throws an Error for people. */
export function parseLabels(doc, name) {
  const what = name || "This file";
  const need = 'a label file has one Feature per tile with properties.point_id and properties.label ' +
    '"positive" or "negative" (Save labels writes one)';
  if (!doc || doc.type !== "FeatureCollection" || !Array.isArray(doc.features)) {
    throw new Error(`${what} is not a label file: expected a GeoJSON FeatureCollection; ${need}.`);
  }
  const feats = doc.features;
  if (feats.length && !feats.some((f) => f && f.properties && "label" in f.properties)) {
    // e.g. the page's own Results download: tiles with ranks and distances, none labelled
    const results = feats.some((f) => f && f.properties && "rank" in f.properties);
    throw new Error(`${what} ${results ? "holds search results" : "has no labels"}: none of its ${feats.length} features ` +
                    `has a label; ${need}.`);
  }
  const out = new Map();
  let unlabelled = 0;
  feats.forEach((f, i) => {
    const p = (f && f.properties) || {};
    if ((p.label === undefined || p.label === null || p.label === "") && "rank" in p) {
      unlabelled++;   // a row of search or classify results the analyst left unlabelled: not a label
      return;
    }
    const id = p.point_id || (f && f.id);
    if (!id) throw new Error(`Label ${i + 1} of ${what} has no point_id; each Feature needs properties.point_id.`);
    if (p.label !== "positive" && p.label !== "negative") {
      const said = p.label === undefined ? "missing" : JSON.stringify(p.label);   // a long value cut (page re-check)
      throw new Error(`Label ${i + 1} of ${what} has label ${said.length > 48 ? said.slice(0, 36) + "…" + said.slice(-8) : said}; ` +
                      'use "positive" or "negative".');
    }
    out.set(String(id), { label: p.label, geometry: f.geometry || null, note: p.note || "", item_id: p.item_id,
                          datetime: p.datetime });
  });
  if (unlabelled && !out.size) {
    throw new Error(`${what} holds ${unlabelled} search or classify results and none is labelled; ${need}.`);
  }
  return out;
}
