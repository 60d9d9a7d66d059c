// API access for the map page: the service key, JSON calls, images with the key, errors for people.

const params = new URLSearchParams(window.location.search);
let apiKey = params.get("key") || sessionStorage.getItem("rsir-key") || "";
if (params.has("key")) {
  // keep the key out of the address bar (and out of shared links)
  sessionStorage.setItem("rsir-key", apiKey);
  params.delete("key");
  const qs = params.toString();
  history.replaceState(history.state, "", window.location.pathname + (qs ? "?" + qs : "") + window.location.hash);
}

export function apiUrl(path, query) {
  const q = new URLSearchParams(query || {});
  return "api/" + path + (q.toString() ? "?" + q : "");
}

/** A message for people: no server paths, no program internals. */
export function friendly(text, status) {
  let t = String(text || "");
  if (/no tile in .* covers lon/i.test(t)) {
    return "No indexed tile here. Click inside a scene outline (dashed) or pick a scene in the Scenes tab.";
  }
  const gone = /point (\S+) is not in .*; check the id/i.exec(t);
  if (gone) return `Tile ${gone[1]} is no longer in the index; search again.`;
  if (/is not in .*; check the id/i.test(t)) return "That tile is no longer in the index; search again.";
  t = t.replace(/\bindex (?=(?:file:\/\/)?\/|[A-Za-z]:\\)/g, "")                 // "index /x/idx": one "the index"
       // POSIX paths: a space only inside a folder's name ("/home/A B/idx"), never after the last
       // part ("/x/idx holds model m": the words after the path are the message's)
       .replace(/(?:file:\/\/)?(?:\/[\w.\-@+~]+(?: [\w.\-@+~]+)*(?=\/))+\/[\w.\-@+~]+\/?/g, "the index")
       .replace(/[A-Za-z]:\\[^\s;,)]+/g, "the index")                    // Windows paths
       .replace(/<[^>]*object at 0x[0-9a-f]+>/gi, "the upload")         // Python reprs
       .replace(/\b(?:Traceback|File ".*", line \d+).*$/s, "");
  if (!t.trim()) t = status >= 500 ? "The service failed on this request; try again." : "The request was refused.";
  return t.trim();
}

function errorText(doc, status) {
  // the service's own words name the X-API-Key header, which a browser user cannot send
  if (status === 401) {
    return apiKey ? "The service refused the access key given: open the page as /?key=YOUR_KEY with the right key " +
                    "(or reload the page to be asked for it again)."
                  : "This service needs its access key: open the page as /?key=YOUR_KEY (or enter the key when asked).";
  }
  const d = doc && doc.detail;
  if (Array.isArray(d)) {
    return d.map((x) => ((x.loc || []).slice(1).join(".") || "request") + ": " + x.msg).join("; ");
  }
  if (d) return friendly(d, status);
  if (status === 413) return "The file is too large for this service; use a smaller image.";
  if (status === 429) return "The service is busy; try again in a moment.";
  return status >= 500 ? "The service failed on this request; try again." : "The request was refused (HTTP " + status + ").";
}

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

export async function api(path, opts, retried) {
  opts = opts || {};
  const headers = Object.assign({}, opts.headers || {});
  if (apiKey) headers["X-API-Key"] = apiKey;
  let resp;
  try {
    resp = await fetch(path, Object.assign({}, opts, { headers: headers }));
  } catch (err) {
    throw new ApiError("The service cannot be reached; check that rsir-stac serve is running.", 0);
  }
  if (resp.status === 401 && !retried) {
    // a key that was sent and refused is said to be wrong, not missing (page trial)
    const k = window.prompt(apiKey ? "The service refused this access key; enter the right one:"
                                   : "This service needs an access key:", "");
    if (k) {
      apiKey = k.trim();
      sessionStorage.setItem("rsir-key", apiKey);
      return api(path, opts, true);
    }
  }
  if (opts.raw && resp.ok) return resp;
  let doc = null;
  try { doc = await resp.json(); } catch (e) { doc = null; }
  if (!resp.ok) throw new ApiError(errorText(doc, resp.status), resp.status);
  return doc;
}

export function postJson(path, body, opts) {
  return api(path, Object.assign({ method: "POST", headers: { "Content-Type": "application/json" },
                                   body: JSON.stringify(body) }, opts || {}));
}

/** Set an <img> to an API image URL; with a key, fetch it with the header (no key in URLs or logs). */
export function setImage(img, url) {
  if (!apiKey) { img.src = url; return; }
  fetch(url, { headers: { "X-API-Key": apiKey } })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error("HTTP " + r.status))))
    .then((b) => {
      const u = URL.createObjectURL(b);
      img.addEventListener("load", () => URL.revokeObjectURL(u), { once: true });
      img.src = u;
    })
    .catch(() => { img.dispatchEvent(new Event("error")); });
}

export function tileUrl(id) { return apiUrl("tiles/" + encodeURIComponent(id) + ".png"); }

export function hasKey() { return !!apiKey; }
