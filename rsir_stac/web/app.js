/* rsir-stac map page: plain JS over the /api/* endpoints (no build step).
 *
 * URL parameters: ?key=API_KEY (kept in sessionStorage, removed from the address bar),
 *                 ?basemap=https://tile.example/{z}/{x}/{y}.png (optional XYZ basemap for online use).
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ state
  const params = new URLSearchParams(window.location.search);
  let apiKey = params.get("key") || sessionStorage.getItem("rsir-key") || "";
  if (params.has("key")) {
    sessionStorage.setItem("rsir-key", apiKey);
    params.delete("key");
    const qs = params.toString();
    history.replaceState(null, "", window.location.pathname + (qs ? "?" + qs : "") + window.location.hash);
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  let mode = "search";          // "search" | "box" | "polygon"
  let area = null;              // null | {bbox: [w,s,e,n]} | {polygon: [[lon,lat],...closed]}
  let lastQuery = null;         // {kind: "point"|"location"|"image", ...}
  let seq = 0;                  // drops stale responses
  let suppressClick = false;
  let queryObjectUrl = null;
  const featureLayers = new Map();  // id -> footprint layer
  const cards = new Map();          // id -> gallery card

  // ------------------------------------------------------------------ API
  function apiUrl(path, query) {
    const q = new URLSearchParams(query || {});
    return "api/" + path + (q.toString() ? "?" + q : "");
  }

  function tileUrl(id) {
    return apiUrl("tiles/" + encodeURIComponent(id) + ".png", apiKey ? { api_key: apiKey } : null);
  }

  function errorText(doc, status) {
    const d = doc && doc.detail;
    if (Array.isArray(d)) {
      return d.map((x) => ((x.loc || []).slice(1).join(".") || "request") + ": " + x.msg).join("; ");
    }
    return d ? String(d) : "HTTP " + status;
  }

  async function api(path, opts, retried) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    if (apiKey) headers["X-API-Key"] = apiKey;
    let resp;
    try {
      resp = await fetch(path, Object.assign({}, opts, { headers: headers }));
    } catch (err) {
      throw new Error("the service cannot be reached (" + err.message + ")");
    }
    if (resp.status === 401 && !retried) {
      const k = window.prompt("This service needs an API key:", "");
      if (k) {
        apiKey = k.trim();
        sessionStorage.setItem("rsir-key", apiKey);
        return api(path, opts, true);
      }
    }
    let doc = null;
    try { doc = await resp.json(); } catch (e) { doc = null; }
    if (!resp.ok) throw new Error(errorText(doc, resp.status));
    return doc;
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = kind || "";
  }

  // ------------------------------------------------------------------ map
  const map = L.map("map", {
    boxZoom: false,          // shift-drag draws a filter box instead
    zoomSnap: 0.25,
    worldCopyJump: false,
    attributionControl: !!params.get("basemap"),
    doubleClickZoom: true,
  });
  map.createPane("graticule");
  map.getPane("graticule").style.zIndex = 250;
  map.getPane("graticule").style.pointerEvents = "none";

  if (params.get("basemap")) {
    L.tileLayer(params.get("basemap"), { maxZoom: 22, attribution: "basemap: " + new URL(params.get("basemap"), window.location.href).host }).addTo(map);
  }

  const gratLayer = L.layerGroup().addTo(map);
  const extentLayer = L.layerGroup().addTo(map);
  const areaLayer = L.layerGroup().addTo(map);
  const resultsLayer = L.featureGroup().addTo(map);
  const queryLayer = L.featureGroup().addTo(map);
  const drawLayer = L.layerGroup().addTo(map);

  function niceStep(span) {
    const raw = span / 6;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }

  function fmtDeg(v, step) {
    const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step))));
    return v.toFixed(digits) + "°";
  }

  function drawGraticule() {
    gratLayer.clearLayers();
    const b = map.getBounds();
    const west = Math.max(-180, b.getWest()), east = Math.min(180, b.getEast());
    const south = Math.max(-85, b.getSouth()), north = Math.min(85, b.getNorth());
    if (!(east > west && north > south)) return;
    const step = niceStep(Math.max(east - west, north - south));
    const style = { pane: "graticule", color: "#9aa7b4", weight: 0.6, opacity: 0.7, interactive: false };
    const labelAt = (latlng, text, anchor) => L.marker(latlng, {
      pane: "graticule", interactive: false, keyboard: false,
      icon: L.divIcon({ className: "grat-label", html: text, iconSize: null, iconAnchor: anchor }),
    }).addTo(gratLayer);
    for (let x = Math.ceil(west / step) * step; x <= east; x += step) {
      L.polyline([[south, x], [north, x]], style).addTo(gratLayer);
      labelAt([south, x], fmtDeg(x, step), [-2, 14]);
    }
    for (let y = Math.ceil(south / step) * step; y <= north; y += step) {
      L.polyline([[y, west], [y, east]], style).addTo(gratLayer);
      labelAt([y, west], fmtDeg(y, step), [-3, 12]);
    }
  }
  map.on("moveend zoomend resize", drawGraticule);

  // cursor position readout
  const Coords = L.Control.extend({
    options: { position: "bottomright" },
    onAdd: function () { this._div = L.DomUtil.create("div", "coords"); this._div.textContent = " "; return this._div; },
    set: function (text) { this._div.textContent = text; },
  });
  const coords = new Coords().addTo(map);
  L.control.scale({ imperial: false }).addTo(map);

  // ------------------------------------------------------------------ index info
  let limits = {};  // the service's limits from /api/info
  let missing = { undated: 0, no_collection: 0 };  // tiles a date / collection filter leaves out

  async function loadInfo() {
    try {
      const info = await api(apiUrl("info"));
      missing = { undated: info.undated || 0, no_collection: info.no_collection || 0 };
      const cols = info.collections || [];
      $("info").textContent = `${info.count.toLocaleString()} tiles · ${info.dim}-d · model ${info.model_id || "?"}` +
        (cols.length ? ` · ${cols.length} collection${cols.length > 1 ? "s" : ""}` : "");
      const sel = $("collection");
      sel.innerHTML = "";
      for (const c of cols) sel.appendChild(new Option(c, c));
      sel.size = Math.min(4, Math.max(2, cols.length));
      sel.disabled = cols.length === 0;
      limits = info.limits || {};
      if (info.limits && info.limits.max_k) {
        for (const o of Array.from($("k").options)) if (+o.value > info.limits.max_k) o.remove();
      }
      if (info.extent) {
        const [w, s, e, n] = info.extent;
        // west > east: the extent crosses the antimeridian; draw it eastwards past 180
        const bounds = L.latLngBounds([s, w], [n, e < w ? e + 360 : e]);
        L.rectangle(bounds, { color: "#1f3a5f", weight: 1.5, dashArray: "6 4", fill: true, fillOpacity: 0.03,
                              interactive: false }).addTo(extentLayer);
        map.fitBounds(bounds, { padding: [30, 30] });
      } else {
        map.setView([0, 0], 2);
        setStatus("The index is empty: ingest some scenes first.", "error");
      }
      document.body.dataset.ready = "1";
    } catch (err) {
      map.setView([0, 0], 2);
      $("info").textContent = "index unavailable";
      setStatus("Cannot load the index summary: " + err.message, "error");
    }
  }

  // ------------------------------------------------------------------ tools
  function setMode(m) {
    cancelDrawing();
    mode = m;
    for (const name of ["search", "box", "polygon"]) $("mode-" + name).classList.toggle("active", name === m);
    $("map").classList.toggle("drawing", m !== "search");
    if (m === "box") map.dragging.disable(); else map.dragging.enable();
    if (m === "polygon") map.doubleClickZoom.disable(); else map.doubleClickZoom.enable();
    if (m === "box") setStatus("Drag a box on the map to limit results to it.");
    if (m === "polygon") setStatus("Click the polygon's corners; double-click to close it (Esc cancels).");
  }

  let box = null;       // {start, rect}
  let poly = null;      // {points: [LatLng], line}

  function cancelDrawing() {
    drawLayer.clearLayers();
    box = null;
    poly = null;
  }

  function fmt(v) { return (Math.round(v * 1e6) / 1e6).toString(); }

  function setArea(a) {
    area = a;
    areaLayer.clearLayers();
    const style = { color: "#f28e2b", weight: 2, fillOpacity: 0.06, interactive: false };
    if (!a) {
      $("area-text").textContent = "anywhere";
      $("area-text").className = "muted";
    } else if (a.bbox) {
      const [w, s, e, n] = a.bbox;
      L.rectangle([[s, w], [n, e]], style).addTo(areaLayer);
      $("area-text").textContent = "box " + a.bbox.map(fmt).join(", ");
      $("area-text").className = "";
    } else {
      L.polygon(a.polygon.slice(0, -1).map(([x, y]) => [y, x]), style).addTo(areaLayer);
      $("area-text").textContent = `polygon of ${a.polygon.length - 1} corners`;
      $("area-text").className = "";
    }
    $("area-text").title = $("area-text").textContent;
    if (lastQuery) rerun();
  }

  function clampLng(v) { return Math.max(-180, Math.min(180, v)); }
  function clampLat(v) { return Math.max(-90, Math.min(90, v)); }

  map.on("mousedown", (e) => {
    const ev = e.originalEvent;
    if (ev.button !== 0) return;
    if (mode === "box" || (mode === "search" && ev.shiftKey)) {
      box = { start: e.latlng, rect: L.rectangle(L.latLngBounds(e.latlng, e.latlng),
        { color: "#f28e2b", weight: 2, dashArray: "4 3", fillOpacity: 0.08, interactive: false }).addTo(drawLayer) };
      L.DomEvent.preventDefault(ev);
    }
  });

  map.on("mousemove", (e) => {
    coords.set(`${e.latlng.lng.toFixed(5)}, ${e.latlng.lat.toFixed(5)}`);
    if (box) box.rect.setBounds(L.latLngBounds(box.start, e.latlng));
    if (poly && poly.points.length) poly.line.setLatLngs(poly.points.concat([e.latlng]));
  });

  function finishBox(latlng) {
    if (!box) return;
    const start = box.start;
    drawLayer.clearLayers();
    box = null;
    const a = map.latLngToContainerPoint(start), b = map.latLngToContainerPoint(latlng);
    if (Math.abs(a.x - b.x) < 4 || Math.abs(a.y - b.y) < 4) return;   // a click, not a box
    suppressClick = true;
    setTimeout(() => { suppressClick = false; }, 0);
    const w = clampLng(Math.min(start.lng, latlng.lng)), e = clampLng(Math.max(start.lng, latlng.lng));
    const s = clampLat(Math.min(start.lat, latlng.lat)), n = clampLat(Math.max(start.lat, latlng.lat));
    if (mode === "box") setMode("search");
    setArea({ bbox: [w, s, e, n] });
  }
  map.on("mouseup", (e) => finishBox(e.latlng));
  document.addEventListener("mouseup", (ev) => {
    if (box && !$("map").contains(ev.target)) {   // released outside the map: drop the box
      drawLayer.clearLayers();
      box = null;
    }
  });

  map.on("click", (e) => {
    if (suppressClick) { suppressClick = false; return; }
    if (mode === "polygon") {
      if (!poly) {
        poly = { points: [], line: L.polyline([], { color: "#f28e2b", weight: 2, dashArray: "4 3", interactive: false }).addTo(drawLayer) };
      }
      const p = map.latLngToContainerPoint(e.latlng);
      const last = poly.points[poly.points.length - 1];
      if (!last || map.latLngToContainerPoint(last).distanceTo(p) > 3) poly.points.push(e.latlng);
      L.circleMarker(e.latlng, { radius: 3, color: "#f28e2b", interactive: false }).addTo(drawLayer);
      poly.line.setLatLngs(poly.points);
      return;
    }
    if (mode === "search") searchAt(e.latlng.lng, e.latlng.lat);
  });

  map.on("dblclick", () => {
    if (mode !== "polygon" || !poly) return;
    const pts = poly.points;
    if (pts.length < 3) {
      setStatus("A polygon needs at least 3 corners; keep clicking, double-click to close.", "error");
      return;
    }
    const ring = pts.map((p) => [clampLng(p.lng), clampLat(p.lat)]);
    ring.push(ring[0]);
    cancelDrawing();
    setMode("search");
    setArea({ polygon: ring });
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && mode !== "search") { setMode("search"); setStatus("Drawing cancelled."); }
  });

  $("mode-search").onclick = () => setMode("search");
  $("mode-box").onclick = () => setMode("box");
  $("mode-polygon").onclick = () => setMode("polygon");
  $("clear-area").onclick = () => { setMode("search"); setArea(null); };
  $("rerun").onclick = () => rerun();
  $("fit").onclick = () => fitResults();
  $("datetime").addEventListener("change", () => { if (lastQuery) rerun(); });
  $("datetime").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && lastQuery) rerun(); });
  $("collection").addEventListener("change", () => { if (lastQuery) rerun(); });
  $("k").addEventListener("change", () => { if (lastQuery) rerun(); });

  // ------------------------------------------------------------------ searching
  function filterFields() {
    const f = { k: $("k").value };
    const dt = $("datetime").value.trim();
    if (dt) f.datetime = dt;
    const cols = Array.from($("collection").selectedOptions).map((o) => o.value);
    if (area && area.bbox) f.bbox = area.bbox.join(",");
    if (area && area.polygon) f.polygon = area.polygon.map((p) => p.join(",")).join(";");
    return { fields: f, collections: cols };
  }

  function searchParams(extra) {
    const { fields, collections } = filterFields();
    const q = new URLSearchParams(Object.assign({}, extra, fields));
    for (const c of collections) q.append("collection", c);
    return q;
  }

  function searchAt(lon, lat) { run({ kind: "location", lon: lon, lat: lat }); }
  function searchById(id) { run({ kind: "point", id: id }); }

  function rerun() { if (lastQuery) run(lastQuery); }

  async function run(query) {
    lastQuery = query;
    $("rerun").disabled = false;
    const my = ++seq;
    setStatus("Searching…", "busy");
    try {
      let doc;
      if (query.kind === "image") {
        const form = new FormData();
        form.append("file", query.file, query.file.name || "query");
        const { fields, collections } = filterFields();
        for (const [k, v] of Object.entries(fields)) form.append(k, v);
        for (const c of collections) form.append("collection", c);
        doc = await api(apiUrl("search/image"), { method: "POST", body: form });
      } else {
        const extra = query.kind === "point" ? { point_id: query.id } : { lon: query.lon, lat: query.lat };
        doc = await api("api/search?" + searchParams(extra));
      }
      if (my !== seq) return;
      render(doc, query);
    } catch (err) {
      if (my !== seq) return;
      setStatus(err.message, "error");
      if (query.kind === "location") {
        queryLayer.clearLayers();
        L.circleMarker([query.lat, query.lon], { radius: 5, color: "#d7263d", weight: 2, interactive: false }).addTo(queryLayer);
      }
    }
  }

  function highlight(id, on) {
    const layer = featureLayers.get(id);
    if (layer) {
      layer.setStyle(on ? { color: "#f28e2b", weight: 3, fillOpacity: 0.25 } : footprintStyle());
      if (on) layer.bringToFront();
    }
    const card = cards.get(id);
    if (card) card.classList.toggle("hover", on);
  }

  function footprintStyle() { return { color: "#1f77b4", weight: 1.5, fillColor: "#1f77b4", fillOpacity: 0.12 }; }

  function shortDate(s) { return s ? String(s).slice(0, 10) : ""; }

  function render(doc, query) {
    resultsLayer.clearLayers();
    queryLayer.clearLayers();
    featureLayers.clear();
    cards.clear();
    const q = doc.query || {};
    const feats = doc.features || [];

    // the query on the map and in the panel
    if (q.geometry) {
      L.geoJSON(q.geometry, { style: { color: "#d7263d", weight: 2.5, fillOpacity: 0.08 }, interactive: false }).addTo(queryLayer);
    }
    if (q.at) {
      L.circleMarker([q.at[1], q.at[0]], { radius: 4, color: "#d7263d", weight: 2, fillOpacity: 1, interactive: false }).addTo(queryLayer);
    }
    const qs = $("query");
    qs.innerHTML = "";
    qs.hidden = false;
    const qimg = el("img");
    qimg.alt = "query tile";
    if (q.kind === "image" && queryObjectUrl) qimg.src = queryObjectUrl;
    else if (q.id) qimg.src = tileUrl(q.id);
    const meta = el("div", "meta");
    const title = { point: "Query: stored tile", location: "Query: the tile at the clicked place", image: "Query: uploaded image" }[q.kind] || "Query";
    meta.appendChild(el("div", null, title));
    if (q.item_id) meta.appendChild(el("div", "muted", q.item_id + (q.datetime ? " · " + shortDate(q.datetime) : "")));
    if (q.kind === "image" && query.file) meta.appendChild(el("div", "muted", query.file.name + (q.size ? ` · ${q.size[0]}×${q.size[1]} px` : "")));
    if (q.id) meta.appendChild(el("div", "muted", q.id));
    qs.appendChild(qimg);
    qs.appendChild(meta);

    // footprints with rank labels
    L.geoJSON({ type: "FeatureCollection", features: feats.filter((f) => f.geometry) }, {
      style: footprintStyle,
      onEachFeature: (f, layer) => {
        featureLayers.set(f.id, layer);
        layer.bindTooltip(String(f.properties.rank), { permanent: true, direction: "center", className: "rank-label", interactive: false });
        layer.on("click", (e) => {
          if (mode !== "search") return;   // let drawing tools get the click
          L.DomEvent.stopPropagation(e);
          searchById(f.id);
        });
        layer.on("mouseover", () => highlight(f.id, true));
        layer.on("mouseout", () => highlight(f.id, false));
      },
    }).eachLayer((l) => resultsLayer.addLayer(l));

    // gallery
    const g = $("gallery");
    g.innerHTML = "";
    if (!feats.length) g.appendChild(el("div", "empty", "No results: loosen the filters?"));
    for (const f of feats) {
      const p = f.properties;
      const card = el("div", "card");
      card.tabIndex = 0;
      card.title = `#${p.rank} · distance ${p.distance.toFixed(4)}\n${p.item_id || ""}${p.collection ? " (" + p.collection + ")" : ""}\n${p.datetime || ""}\n${f.id}\nclick: search with this tile`;
      const img = el("img");
      img.alt = `result ${p.rank}`;
      img.loading = "lazy";
      img.src = tileUrl(f.id);
      card.appendChild(img);
      card.appendChild(el("span", "rank", String(p.rank)));
      const cap = el("div", "cap");
      cap.appendChild(el("div", "dist", "d = " + p.distance.toFixed(3)));
      cap.appendChild(el("div", "item", (p.item_id || "") + (p.datetime ? " · " + shortDate(p.datetime) : "")));
      card.appendChild(cap);
      card.onclick = () => searchById(f.id);
      card.onkeydown = (ev) => { if (ev.key === "Enter") searchById(f.id); };
      card.onmouseenter = () => highlight(f.id, true);
      card.onmouseleave = () => highlight(f.id, false);
      cards.set(f.id, card);
      g.appendChild(card);
    }
    g.scrollTop = 0;
    $("fit").disabled = !feats.length;
    const filt = [];
    if (area) filt.push(area.bbox ? "box" : "polygon");
    if ($("datetime").value.trim()) filt.push("dates");
    if ($("collection").selectedOptions.length) filt.push("collections");
    const left = [];
    if ($("datetime").value.trim() && missing.undated) left.push(`${missing.undated.toLocaleString()} tiles without a date`);
    if ($("collection").selectedOptions.length && missing.no_collection) {
      left.push(`${missing.no_collection.toLocaleString()} tiles without a collection`);
    }
    setStatus(`${feats.length} result${feats.length === 1 ? "" : "s"}` + (filt.length ? ` (filtered by ${filt.join(", ")})` : "") +
              (left.length ? ` · the filter leaves out ${left.join(" and ")}` : "") +
              (doc.took_ms !== undefined ? ` · ${Math.round(doc.took_ms)} ms` : "") + " · click a result to search from it");
  }

  function fitResults() {
    const b = resultsLayer.getBounds();
    if (queryLayer.getLayers().length) b.extend(queryLayer.getBounds());
    if (b.isValid()) map.fitBounds(b, { padding: [30, 30], maxZoom: 18 });
  }

  // ------------------------------------------------------------------ upload
  $("upload").addEventListener("change", (ev) => {
    const file = ev.target.files && ev.target.files[0];
    if (!file) return;
    if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {  // refused here, before any byte is sent
      setStatus(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the service's ` +
                `${(limits.max_upload_bytes / 1e6).toFixed(1)} MB upload limit; choose a smaller image or crop it`, "error");
      ev.target.value = "";
      return;
    }
    if (queryObjectUrl) URL.revokeObjectURL(queryObjectUrl);
    queryObjectUrl = /tiff?$/i.test(file.type) || /\.tiff?$/i.test(file.name) ? null : URL.createObjectURL(file);
    run({ kind: "image", file: file });
    ev.target.value = "";
  });

  // test/automation hook: the current results
  window.rsir = { searchAt: searchAt, searchById: searchById, setArea: setArea, map: map };

  loadInfo();
})();
