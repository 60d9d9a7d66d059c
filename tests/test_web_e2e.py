"""End to end: the map page in headless Chromium against `serve` on a real Edge index.

Needs the ``playwright`` Python package and a Chromium binary (Debian's
``chromium``; ``playwright install`` is not used).  Skipped with a reason when
either is missing.  Set ``RSIR_CHROMIUM`` to use another Chromium binary.
Every flow saves screenshots at 1600x1000, 1366x768 and 390x844 into
``tests/artifacts/web_<flow>_<W>x<H>.png``; the accessibility check runs
axe-core (vendored in ``tests/vendor/``) in the same browser.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("rio_tiler")
uvicorn = pytest.importorskip("uvicorn")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
KEY = "e2e-key"
SIZES = ((1600, 1000), (1366, 768), (390, 844))
GEOTIFF = "image/tiff; application=geotiff"
# 512 x 256 px at 1 m, 64 px tiles: 32 tiles per scene; a and b are STAC items, c a bare GeoTIFF (no date)
SCENES = {
    "scene-a": {"collection": "coll-a", "datetime": "2021-06-01T10:00:00Z", "origin": (500000.0, 3300000.0), "seed": 1},
    "scene-b": {"collection": "coll-b", "datetime": "2022-03-01T10:00:00Z", "origin": (500000.0, 3299500.0), "seed": 2},
    "scene-c": {"collection": None, "datetime": None, "origin": (500700.0, 3300000.0), "seed": 3},
}


def _chromium() -> str | None:
    for cand in (os.environ.get("RSIR_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# skip before any fixture (the session's tiny model is trained only when the test can run)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("the playwright Python package is not installed (pip install playwright)", allow_module_level=True)
if _chromium() is None:
    pytest.skip("no Chromium binary (apt-get install chromium, or set RSIR_CHROMIUM)", allow_module_level=True)


def build_web_index(root: Path, bundle) -> Path:
    from rsir_stac.ingest import IngestOptions, ingest
    from tests.conftest import make_geotiff

    root.mkdir(parents=True, exist_ok=True)
    sources = []
    for item_id, s in SCENES.items():
        tif = make_geotiff(root / f"{item_id}.tif", width=512, height=256, origin=s["origin"], seed=s["seed"])
        if s["datetime"] is None:
            sources.append(str(tif))
            continue
        item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": s["collection"],
                "geometry": None, "properties": {"datetime": s["datetime"]}, "links": [],
                "assets": {"image": {"href": tif.name, "type": GEOTIFF, "roles": ["data"]}}}
        p = root / f"{item_id}.json"
        p.write_text(json.dumps(item))
        sources.append(str(p))
    report = ingest(sources, index=str(root / "idx"), model=bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 96, report
    return root / "idx"


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - a broken browser install is an environment problem
            pytest.skip(f"Chromium at {exe} does not start under Playwright: {str(exc).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_bundle):
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app

    path = build_web_index(tmp_path_factory.mktemp("web"), tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx:
        port = _free_port()
        cfg = uvicorn.Config(create_app(idx, api_key=KEY), host="127.0.0.1", port=port, log_level="warning",
                             lifespan="off")
        srv = uvicorn.Server(cfg)
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        deadline = time.time() + 30
        while not srv.started:
            if time.time() > deadline or not t.is_alive():
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        points = {p.id: p.payload for p in idx.store.iter_points(with_vectors=False)}
        yield f"http://127.0.0.1:{port}", points
        srv.should_exit = True
        t.join(10)


#: The query card of a place search: its lon, lat (clicked, typed or restored by Back alike).
PLACE_QUERY = r"Query: the tile at (-?\d+\.\d{5}), (-?\d+\.\d{5})"


class Page:
    """A page on the service with error/foreign-request tracking and screenshot helpers."""

    def __init__(self, browser, base, size=(1600, 1000), path="/"):
        self.base = base
        self.errors, self.foreign = [], []
        # bypass_csp: wait_for_function evaluates string predicates, which the page's CSP forbids;
        # test_page_works_under_its_content_security_policy runs without the bypass
        self.ctx = browser.new_context(viewport={"width": size[0], "height": size[1]}, accept_downloads=True,
                                       bypass_csp=True)
        self.p = self.ctx.new_page()
        self.p.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.p.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else self.foreign.append(r.url))
        sep = "&" if "?" in path else "?"
        self.p.goto(f"{base}{path}{sep}key={KEY}")
        self.p.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def status(self) -> str:
        return self.p.inner_text("#status")

    def wait_status(self, text, timeout=30_000):
        self.p.wait_for_function(f"document.querySelector('#status').innerText.includes({json.dumps(text)})",
                                 timeout=timeout)

    def search_by_id(self, pid, n=None):
        """Search from a stored tile through the page's own code and wait for ``n`` results."""
        self.p.evaluate(f"rsir.searchById('{pid}')")
        self.wait_results(n)

    def wait_results(self, n=None, timeout=30_000):
        cond = "document.querySelectorAll('#gallery .card').length" + (f" === {n}" if n is not None else " > 0")
        self.p.wait_for_function(cond + " && !document.querySelector('#status').classList.contains('busy')",
                                 timeout=timeout)

    def lonlat_xy(self, lon, lat):
        x, y = self.p.evaluate(f"(() => {{ const p = rsir.map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()")
        box = self.p.locator("#map").bounding_box()
        return box["x"] + x, box["y"] + y

    def shots(self, flow):
        """Screenshots of the current state at the three window sizes (ends at the first size)."""
        ARTIFACTS.mkdir(exist_ok=True)
        for w, h in SIZES:
            self.p.set_viewport_size({"width": w, "height": h})
            self.p.evaluate("rsir.map.invalidateSize({animate: false})")
            self.p.wait_for_timeout(400)
            self.p.screenshot(path=str(ARTIFACTS / f"web_{flow}_{w}x{h}.png"))
        self.p.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
        self.p.evaluate("rsir.map.invalidateSize({animate: false})")

    def find_all(self, labels, threshold):
        """Label result cards (``[(card index, "Positive" or "Negative"), ...]``) through the details pane,
        then run Find all at ``threshold`` from the Labels tab and wait for its answer."""
        for i, lab in labels:
            self.p.locator("#gallery .card").nth(i).click()
            self.p.click(f"#details button:has-text('{lab}')")
        self.p.click("#tab-labels")
        self.p.fill("#threshold", str(threshold))
        self.p.click("#classify")
        self.wait_status("Find all:", timeout=120_000)

    def check_clean(self):
        assert not self.errors, self.errors
        assert not self.foreign, f"the page fetched outside the service: {self.foreign}"

    def close(self):
        self.ctx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _scene_points(points, item):
    return {i: p for i, p in points.items() if p["item_id"] == item}


def _wait_imagery(page, timeout=60_000):
    page.p.wait_for_function(
        "Array.from(document.querySelectorAll('.leaflet-imagery-pane img')).filter(i => i.complete && i.naturalWidth > 0).length > 0",
        timeout=timeout)
    page.p.wait_for_timeout(300)


def _opaque_fraction_of_imagery(page) -> float:
    """Share of opaque pixels over the loaded imagery tiles (drawn into a canvas: same origin)."""
    return page.p.evaluate("""(() => {
      const imgs = Array.from(document.querySelectorAll('.leaflet-imagery-pane img')).filter(i => i.complete && i.naturalWidth > 0);
      let opaque = 0, total = 0;
      const c = document.createElement('canvas'); c.width = 256; c.height = 256;
      const g = c.getContext('2d');
      for (const im of imgs) {
        g.clearRect(0, 0, 256, 256); g.drawImage(im, 0, 0, 256, 256);
        const d = g.getImageData(0, 0, 256, 256).data;
        for (let i = 3; i < d.length; i += 4) { total++; if (d[i] > 0) opaque++; }
      }
      return total ? opaque / total : 0;
    })()""")


# --------------------------------------------------------------------------- flows


def test_find_the_data_imagery_scenes_and_place_box(browser, server):
    base, points = server
    pg = Page(browser, base)
    try:
        assert f"{len(points)} tiles" in pg.p.inner_text("#info")
        assert "key=" not in pg.p.url   # the key is kept in sessionStorage, not in the address bar
        # the page opens zoomed to the data: every scene is in view and the view is not world-wide
        span = pg.p.evaluate("(() => { const b = rsir.map.getBounds(); return [b.getEast() - b.getWest(), b.getNorth() - b.getSouth()]; })()")
        assert span[0] < 0.1 and span[1] < 0.1, span
        for p in points.values():
            x, y = pg.lonlat_xy(p["location"]["lon"], p["location"]["lat"])
            box = pg.p.locator("#map").bounding_box()
            assert box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]
        # imagery under the footprints: non-blank tiles where the scenes are
        _wait_imagery(pg)
        assert _opaque_fraction_of_imagery(pg) > 0.2
        assert pg.p.locator(".leaflet-scenes-pane path").count() >= 3   # scene footprints
        # scene list: item, collection, date, tile count, zoom to
        pg.p.click("#tab-scenes")
        rows = pg.p.locator("#scene-list button.scene").all_inner_texts()
        assert len(rows) == 3
        assert rows[0].startswith("scene-b") and "coll-b" in rows[0] and "2022-03-01" in rows[0] and "32 tiles" in rows[0]
        assert "no date" in rows[2] and "no collection" in rows[2]
        pg.shots("scenes")
        pg.p.locator("#scene-list button.scene").nth(1).click()     # scene-a
        a = _scene_points(points, "scene-a")
        pg.p.wait_for_timeout(600)
        c = pg.p.evaluate("(() => { const c = rsir.map.getCenter(); return [c.lng, c.lat]; })()")
        lons = [p["location"]["lon"] for p in a.values()]
        lats = [p["location"]["lat"] for p in a.values()]
        assert min(lons) <= c[0] <= max(lons) and min(lats) <= c[1] <= max(lats)
        # the coordinate box: go to a place, and search there
        pb = next(iter(_scene_points(points, "scene-b").values()))
        pg.p.fill("#goto-text", f"{pb['location']['lon']}, {pb['location']['lat']}")
        pg.p.click("#goto-search")
        pg.wait_results()
        lon, lat = (float(v) for v in re.search(PLACE_QUERY, pg.p.inner_text("#query")).groups())
        assert (lon, lat) == (pytest.approx(pb["location"]["lon"], abs=1e-5), pytest.approx(pb["location"]["lat"], abs=1e-5))
        pg.p.fill("#goto-text", "200, 95")
        pg.p.click("#goto-go")
        assert "lon, lat in degrees" in pg.status()
        pg.p.fill("#goto-text", "47.02, -99.17")   # lat, lon as most web maps write it
        pg.p.click("#goto-go")
        assert "Latitude -99.17 is outside -90..90" in pg.status() and "did you mean -99.17, 47.02?" in pg.status()
        _wait_imagery(pg)
        pg.shots("imagery")
        pg.check_clean()
    finally:
        pg.close()


def test_results_select_details_badges_and_history(browser, server):
    base, points = server
    pg = Page(browser, base)
    try:
        pid, payload = next(iter(_scene_points(points, "scene-a").items()))
        pg.p.mouse.click(*pg.lonlat_xy(payload["location"]["lon"], payload["location"]["lat"]))
        pg.wait_results(10)
        assert re.search(PLACE_QUERY, pg.p.inner_text("#query"))
        url_first = pg.p.url
        assert "q=at:" in url_first
        # clicking a result selects it (highlight, zoom, details); it does not search
        card = pg.p.locator("#gallery .card").nth(2)
        rid = card.get_attribute("data-id")
        card.click()
        pg.p.wait_for_selector("#details:not([hidden])")
        assert "selected" in card.get_attribute("class")
        details = pg.p.inner_text("#details")
        assert "Result 3" in details and "Distance" in details and "smaller means more alike" in details
        assert points[rid]["item_id"] in details
        assert f"sel={rid}" in pg.p.url and pg.p.url.split("&sel")[0] == url_first.split("&v=")[0].split("&sel")[0]
        loc = points[rid]["location"]
        x, y = pg.lonlat_xy(loc["lon"], loc["lat"])
        box = pg.p.locator("#map").bounding_box()
        assert box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"]
        # the best rank's badge is on top wherever footprints stack: zoomed out, all merge into "1 +9"
        pg.p.add_style_tag(content=".rank-badge { pointer-events: auto !important; }")  # hit-testable for the check
        for z in (pg.p.evaluate("rsir.map.getZoom()"), 12):
            pg.p.evaluate(f"rsir.map.setZoom({z}, {{animate: false}})")
            pg.p.wait_for_timeout(300)
            badge = pg.p.locator(".rank-badge[data-rank='1']")
            assert badge.count() == 1
            b = badge.bounding_box()
            top = pg.p.evaluate(f"(() => {{ const e = document.elementFromPoint({b['x'] + b['width'] / 2}, "
                                f"{b['y'] + b['height'] / 2}); return e.dataset.rank || e.className; }})()")
            assert top == "1", top
        assert pg.p.inner_text(".rank-badge[data-rank='1']").startswith("1 +")
        pg.p.evaluate("rsir.select(document.querySelectorAll('#gallery .card')[2].dataset.id)")
        pg.shots("select")
        # an explicit action searches from the selected result; Back returns to the previous search
        pg.p.click("#details button.primary")
        pg.p.wait_for_function(f"document.querySelector('#query').innerText.includes('{rid}')", timeout=30_000)
        pg.wait_results()
        assert "Query: a stored tile" in pg.p.inner_text("#query")
        assert f"q=p:{rid}" in pg.p.url
        pg.p.go_back()
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('Query: the tile at ')", timeout=30_000)
        pg.wait_results(10)
        assert "q=at:" in pg.p.url
        pg.p.go_forward()
        pg.p.wait_for_function(f"document.querySelector('#query').innerText.includes('{rid}')", timeout=30_000)
        pg.check_clean()
    finally:
        pg.close()


def test_gallery_scrolls_at_k50_at_every_size(browser, server):
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, path=f"/?q=p:{pid}&k=50")
    try:
        pg.wait_results(50)
        pg.p.wait_for_function("Array.from(document.querySelectorAll('#gallery img')).filter(i => i.complete && i.naturalWidth > 0).length >= 6",
                               timeout=60_000)
        for w, h in SIZES:
            pg.p.set_viewport_size({"width": w, "height": h})
            pg.p.wait_for_timeout(300)
            cards = pg.p.evaluate("""Array.from(document.querySelectorAll('#gallery .card')).map(c => {
                const r = c.getBoundingClientRect(), cap = c.querySelector('.cap').getBoundingClientRect(),
                      im = c.querySelector('img').getBoundingClientRect();
                return [r.height, r.width, cap.height, im.height]; })""")
            assert len(cards) == 50
            for hgt, wid, cap, img in cards:
                assert hgt >= 120 and img >= 100 and cap >= 24, (w, h, hgt, wid, cap, img)
            # the results scroll (in the panel, or the whole panel on a phone) instead of squeezing
            scrolls = pg.p.evaluate("""(() => { const s = document.getElementById('scroll'), p = document.getElementById('panel');
                return s.scrollHeight > s.clientHeight + 50 || p.scrollHeight > p.clientHeight + 50; })()""")
            assert scrolls, (w, h)
            ARTIFACTS.mkdir(exist_ok=True)
            pg.p.screenshot(path=str(ARTIFACTS / f"web_gallery_k50_{w}x{h}.png"))
        pg.check_clean()
    finally:
        pg.close()


def test_next_and_previous_pages_and_details_come_into_view(browser, server):
    """Page trial 3 and 4: results beyond the first page (the API pages with offset; the page had no
    control for it), and a clicked result's details (Search from this, Positive, Negative) opened
    above the gallery out of view."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    first_visit = Page(browser, base)
    try:  # no query, no pages: the pager is not shown (a flex row overrode its hidden attribute)
        first_visit.wait_status("Click the imagery")
        assert not first_visit.p.is_visible("#pager")
    finally:
        first_visit.close()
    pg = Page(browser, base, path=f"/?q=p:{pid}&k=5")
    try:
        pg.wait_results(5)
        assert pg.p.is_visible("#pager") and pg.p.inner_text("#page-text") == "Results 1–5"
        assert pg.p.is_disabled("#page-prev") and not pg.p.is_disabled("#page-next")
        first = pg.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)")
        pg.p.click("#page-next")
        pg.p.wait_for_function("document.querySelector('#page-text').innerText === 'Results 6–10'", timeout=30_000)
        pg.wait_results(5)
        second = pg.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)")
        assert not set(first) & set(second)
        assert pg.p.inner_text("#gallery .card .rank") == "6" and "o=5" in pg.p.url
        pg.shots("pager")
        pg.p.reload()  # the page is in the link
        pg.p.wait_for_function("document.querySelector('#page-text') && document.querySelector('#page-text').innerText === 'Results 6–10'",
                               timeout=30_000)
        pg.p.click("#page-prev")
        pg.p.wait_for_function("document.querySelector('#page-text').innerText === 'Results 1–5'", timeout=30_000)
        assert pg.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)") == first
        # a new query starts at its first page
        pg.p.click("#page-next")
        pg.p.wait_for_function("document.querySelector('#page-text').innerText === 'Results 6–10'", timeout=30_000)
        pg.search_by_id(first[0], 5)
        pg.p.wait_for_function("document.querySelector('#page-text').innerText === 'Results 1–5'", timeout=30_000)
        assert "o=" not in pg.p.url
        # a result far down the gallery: its details come into view
        pg.p.set_viewport_size({"width": 1366, "height": 768})
        pg.p.select_option("#k", "50")
        pg.wait_results(50)
        card = pg.p.locator("#gallery .card").nth(30)
        card.scroll_into_view_if_needed()
        card.click()
        pg.p.wait_for_selector("#details:not([hidden])")
        pg.p.wait_for_timeout(300)
        b = pg.p.locator("#details button.primary").bounding_box()
        assert b is not None and 0 <= b["y"] and b["y"] + b["height"] <= 768, b
        # the query tile itself can be labelled (page trial 5: refining from labels left it out)
        pg.p.click("#query button.pos")
        assert pg.p.get_attribute("#query button.pos", "aria-pressed") == "true"
        assert "Labels (1)" in pg.p.inner_text("#tab-labels")
        pg.p.click("#tab-labels")
        pg.p.click("#refine")
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('your labels')", timeout=30_000)
        assert "1 positive, 0 negative" in pg.p.inner_text("#query")
        pg.check_clean()
    finally:
        pg.close()


def test_query_expansion_control_and_link(browser, server):
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, path=f"/?q=p:{pid}&qe=3")
    try:
        pg.wait_results(10)
        assert pg.p.input_value("#expand") == "3"
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('Expanded with its 3 nearest tiles')",
                               timeout=30_000)
        shown = _result_ids(pg)
        get = "(u) => fetch(u, {headers: {'X-API-Key': '%s'}}).then(r => r.json())" % KEY
        api = pg.p.evaluate(get, f"/api/search?point_id={pid}&k=10&expand=3")
        assert shown == [f["id"] for f in api["features"]] and len(api["query"]["expanded"]) == 3
        pg.shots("expand")
        # switching it off searches again without expansion and drops it from the link
        pg.p.select_option("#expand", "0")
        pg.p.wait_for_function("!document.querySelector('#query').innerText.includes('Expanded')", timeout=30_000)
        pg.wait_results(10)
        assert "qe=" not in pg.p.url
        plain = pg.p.evaluate(get, f"/api/search?point_id={pid}&k=10")
        assert _result_ids(pg) == \
            [f["id"] for f in plain["features"]]
        pg.check_clean()
    finally:
        pg.close()


def test_labels_refine_save_load_export_and_share(browser, server, tmp_path):
    base, points = server
    pg = Page(browser, base)
    try:
        pid = next(iter(_scene_points(points, "scene-b")))
        pg.search_by_id(pid, 10)
        ids = _result_ids(pg)
        for i, lab in ((0, "Positive"), (1, "Positive"), (5, "Negative")):
            pg.p.locator("#gallery .card").nth(i).click()
            pg.p.click(f"#details button:has-text('{lab}')")
        assert "pos" in pg.p.locator("#gallery .card").nth(0).get_attribute("class")
        assert "neg" in pg.p.locator("#gallery .card").nth(5).get_attribute("class")
        pg.p.click("#tab-labels")
        assert pg.p.inner_text("#label-count") == "2 positive, 1 negative"
        assert f"pos={ids[0]},{ids[1]}" in pg.p.url and f"neg={ids[5]}" in pg.p.url
        # save the label file: the analyst's GeoJSON (one Feature per tile, footprint, label)
        with pg.p.expect_download() as dl:
            pg.p.click("#save-labels")
        saved = tmp_path / "labels.geojson"
        dl.value.save_as(saved)
        doc = json.loads(saved.read_text())
        assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
        by = {f["properties"]["point_id"]: f for f in doc["features"]}
        assert by[ids[0]]["properties"]["label"] == "positive" and by[ids[5]]["properties"]["label"] == "negative"
        assert all(f["geometry"]["type"] == "Polygon" for f in doc["features"])
        pg.shots("labels")
        # refine from the labels: labelled tiles are not results again
        pg.p.click("#refine")
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('your labels')", timeout=30_000)
        pg.wait_results()
        got = _result_ids(pg)
        assert got and not ({ids[0], ids[1], ids[5]} & set(got))
        assert "q=labels" in pg.p.url
        # the query card shows the positives (not one tile and its id as if it were the query)
        mosaic = pg.p.locator("#query .qmosaic")
        assert mosaic.get_attribute("aria-label") == "Query: 2 positive labels"
        shown = mosaic.locator("img").evaluate_all("els => els.map((e) => [e.dataset.id, e.naturalWidth])")
        assert sorted(i for i, _ in shown) == sorted([ids[0], ids[1]]), shown
        pg.p.wait_for_function("Array.from(document.querySelectorAll('#query .qmosaic img')).every(i => i.naturalWidth > 0)",
                               timeout=10_000)   # the tiles' images load (through the API key)
        assert pg.p.locator("#query .id").count() == 0 and ids[0] not in pg.p.inner_text("#query")
        box = mosaic.bounding_box()
        assert box and 60 <= box["width"] <= 76 and 60 <= box["height"] <= 76, box
        pg.shots("labels_query")
        # exports of the results
        pg.p.click("#tab-labels")
        with pg.p.expect_download() as dl:
            pg.p.click(".export[data-format='geojson']")
        gj = json.loads(Path(dl.value.path()).read_text())
        assert [f["id"] for f in gj["features"]] == got
        with pg.p.expect_download() as dl:
            pg.p.click(".export[data-format='csv']")
        rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
        assert [r["id"] for r in rows] == got
        # the link reproduces the search: labels, query and k in a fresh page
        link = pg.p.url
        pg2 = Page(browser, base, path="/" + link.split("/", 3)[3])
        try:
            pg2.wait_results()
            pg2.p.click("#tab-labels")
            assert pg2.p.inner_text("#label-count") == "2 positive, 1 negative"
            got2 = pg2.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)")
            assert got2 == got
        finally:
            pg2.close()
        # load the saved label file into a fresh page
        pg3 = Page(browser, base)
        try:
            pg3.p.click("#tab-labels")
            pg3.p.set_input_files("#load-labels", str(saved))
            pg3.wait_status("Loaded 3 labels")
            assert pg3.p.inner_text("#label-count") == "2 positive, 1 negative"
            bad = tmp_path / "bad.geojson"
            bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"label": "maybe", "point_id": "x"}}]}')
            pg3.p.set_input_files("#load-labels", str(bad))
            pg3.wait_status('use "positive" or "negative"')
        finally:
            pg3.close()
        pg.check_clean()
    finally:
        pg.close()


def test_errors_for_people_and_filter_notes(browser, server):
    base, points = server
    pg = Page(browser, base)
    try:
        # a click outside every scene: a message for people, no server path
        ext = pg.p.evaluate("rsir.map.getBounds().toBBoxString()").split(",")
        pg.p.evaluate(f"rsir.searchAt({float(ext[0]) + 1e-6}, {float(ext[3]) - 1e-6})")
        pg.wait_status("No indexed tile here")
        text = pg.status()
        assert "/" not in text.replace("Click inside", "") and "tmp" not in text and "index " not in text
        # a date filter leaves out the undated scene: the status says so
        pid = next(iter(_scene_points(points, "scene-a")))
        pg.p.fill("#datetime", "2021-01-01/..")
        pg.p.press("#datetime", "Enter")
        pg.p.evaluate(f"rsir.searchById('{pid}')")
        pg.wait_status("filtered by dates")
        n_c = sum(1 for p in points.values() if not p.get("datetime"))   # the bare GeoTIFF's tiles
        assert f"{n_c} tiles in the searched area have no date, so the datetime filter leaves them out" in pg.status()
        items = pg.p.locator("#gallery .card .item").all_inner_texts()
        assert items and all(t.startswith(("scene-a", "scene-b")) for t in items)
        # a place on the undated scene: its tile is one the dates leave out, and its imagery is hidden
        bare = next(p for p in points.values() if not p.get("datetime"))["location"]
        pg.p.evaluate(f"rsir.searchAt({bare['lon']}, {bare['lat']})")
        pg.wait_status("which the filters leave out (so the map page hides its imagery)")
        # a bad date is refused with a message that names the field
        pg.p.fill("#datetime", "not-a-date")
        pg.p.press("#datetime", "Enter")
        pg.p.wait_for_function("document.querySelector('#status').className === 'error'", timeout=20_000)
        assert "tmp" not in pg.status() and "Traceback" not in pg.status()
        pg.shots("errors")
        pg.check_clean()
    finally:
        pg.close()


def test_accessibility_axe(browser, server):
    base, points = server
    if not AXE.is_file():
        pytest.skip(f"axe-core is not vendored at {AXE}")
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, path=f"/?q=p:{pid}&k=20")
    try:
        pg.wait_results(20)
        pg.p.locator("#gallery .card").first.click()
        pg.p.add_script_tag(path=str(AXE))
        for tab in ("results", "scenes", "labels"):
            pg.p.click(f"#tab-{tab}")
            res = pg.p.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => [v.id, v.impact, v.nodes.length, v.nodes.slice(0, 2).map(n => n.target.join(' '))]))")
            serious = [v for v in res if v[1] in ("serious", "critical")]
            assert not serious, (tab, serious)
    finally:
        pg.close()


def test_polygon_and_upload(browser, server):
    from PIL import Image

    from rsir_stac.thumbnails import read_tile

    base, points = server
    pg = Page(browser, base)
    try:
        b = [p["location"] for p in _scene_points(points, "scene-b").values()]
        w, e = min(q["lon"] for q in b) - 1e-4, max(q["lon"] for q in b) + 1e-4
        s, n = min(q["lat"] for q in b) - 1e-4, max(q["lat"] for q in b) + 1e-4
        pg.p.click("#mode-polygon")
        for lon, lat in ((w, s), (e, s), (e, n)):
            pg.p.mouse.click(*pg.lonlat_xy(lon, lat))
        pg.p.mouse.dblclick(*pg.lonlat_xy(w, n))
        assert pg.p.inner_text("#area-text") == "polygon of 4 corners"
        assert "active" in pg.p.get_attribute("#mode-search", "class")
        assert "poly=" in pg.p.url
        # upload a scene-a tile as the example: results are limited to the polygon over scene-b
        pid, payload = next(iter(_scene_points(points, "scene-a").items()))
        buf = io.BytesIO()
        Image.fromarray(read_tile(payload)).save(buf, format="PNG")
        pg.p.set_input_files("#upload", files=[{"name": "example.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
        pg.wait_status("filtered by polygon")
        assert "Query: uploaded image" in pg.p.inner_text("#query")
        assert "example.png" in pg.p.inner_text("#query")
        items = pg.p.locator("#gallery .card .item").all_inner_texts()
        assert len(items) == 10 and all(t.startswith("scene-b") for t in items)
        # clearing the area re-runs the same upload without the filter: the tile itself comes first
        pg.p.click("#clear-area")
        pg.p.wait_for_function("!document.querySelector('#status').innerText.includes('filtered')", timeout=30_000)
        pg.wait_results(10)
        assert pg.p.locator("#gallery .card").first.get_attribute("data-id") == pid
        # new dates, then Search again at once: the field's change event (as the click leaves it) already
        # searched; the click must not send the image a second time (analyst trial: it was sent twice)
        sent = []
        pg.p.on("request", lambda r: sent.append(r.url) if "/api/search/image" in r.url else None)
        pg.p.fill("#datetime", "2020")
        pg.p.click("#rerun")
        pg.wait_status("filtered by dates")
        pg.p.wait_for_timeout(1500)
        assert len(sent) == 1, sent
        pg.p.click("#rerun")   # once answered, Search again searches again
        pg.p.wait_for_timeout(1500)
        assert len(sent) == 2, sent
        pg.check_clean()
    finally:
        pg.close()


def test_page_works_under_its_content_security_policy(browser, server):
    """No bypass here: the page loads, draws imagery, searches and shows tiles, and /docs renders,
    with no CSP violation.  Waits poll with ``page.evaluate`` (the CSP forbids ``wait_for_function``'s
    string predicates)."""
    base, points = server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    violations, errors = [], []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def until(js: str, seconds: float = 60.0):
        deadline = time.time() + seconds
        while not page.evaluate(js):
            if time.time() > deadline:
                pytest.fail(f"page never reached: {js}")
            time.sleep(0.1)

    try:
        page.goto(f"{base}/?key={KEY}")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        until("Array.from(document.querySelectorAll('.leaflet-imagery-pane img')).some(i => i.complete && i.naturalWidth > 0)")
        pid = next(iter(points))
        page.evaluate(f"rsir.searchById('{pid}')")
        until("Array.from(document.querySelectorAll('#gallery img')).some(i => i.complete && i.naturalWidth > 0)")
        assert page.locator("#gallery .card").count() == 10
        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert not violations, violations
        assert not errors, errors
    finally:
        page.close()


def test_docs_render_offline(browser, server):
    base, _ = server
    page = browser.new_page(bypass_csp=True)
    foreign = []
    page.on("request", lambda req: None if req.url.startswith((base, "data:", "blob:")) else foreign.append(req.url))
    try:
        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        text = page.inner_text("body")
        for path in ("/api/info", "/api/search", "/api/search/image", "/api/tiles/{point_id}.png", "/api/scenes",
                     "/api/imagery/{z}/{x}/{y}.png"):
            assert path in text
        assert not foreign, f"/docs fetched outside the service: {foreign}"
    finally:
        page.close()


def test_find_all_and_server_exports(browser, server, tmp_path):
    """The analyst endpoints through the page: labelled query, "find all" with progress, GeoParquet export."""
    import httpx

    base, points = server
    paths = httpx.get(f"{base}/openapi.json", timeout=30).json()["paths"]
    if "/api/classify" not in paths or "/api/query/export" not in paths:
        pytest.skip("this service has no /api/classify or /api/query/export")
    pg = Page(browser, base)
    try:
        pid = next(iter(_scene_points(points, "scene-a")))
        pg.search_by_id(pid, 10)
        for i, lab in ((0, "Positive"), (1, "Positive"), (2, "Positive"), (8, "Negative"), (9, "Negative")):
            pg.p.locator("#gallery .card").nth(i).click()
            pg.p.click(f"#details button:has-text('{lab}')")
        pg.p.click("#tab-labels")
        pg.p.click("#refine")
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('your labels')", timeout=30_000)
        pg.wait_results()
        assert "merged from one search per example" not in pg.status()   # the engine's labelled query
        pg.p.click("#tab-labels")
        pg.p.click("#classify")
        pg.wait_status("Find all:", timeout=120_000)
        assert pg.p.locator("#progress").is_hidden()
        assert " scored" in pg.status()
        # 5 labels hold none out: the status says why there is no held-out precision/recall (page trial 2)
        assert "too few labels to hold any out" in pg.status() and "Held-out check" not in pg.status()
        pg.shots("findall")
        # zoomed out past the whole world (Leaflet's view then runs beyond -180..180): the view's
        # box sent with "find all" is wrapped and clamped, so every tile is scored
        pg.p.evaluate("rsir.map.setView([0, 0], 0, {animate: false})")
        pg.p.click("#classify")
        pg.p.wait_for_function("document.querySelector('#status').innerText.includes('Find all:') && "
                               "document.querySelector('#status').innerText.includes('(" + str(len(points)) +
                               " tiles scored)')", timeout=120_000)
        pg.shots("findall_world")
        # threshold 0 is 0 (it was sent as 0.5): every scored tile is a hit but the 2 labelled negative (the
        # analyst's labels win, and the status says so), and Download hits saves them all
        pg.p.fill("#threshold", "0")
        pg.p.click("#classify")
        pg.p.wait_for_function("document.querySelector('#status').innerText.includes('at or above probability 0 ')",
                               timeout=120_000)
        assert f"Find all: {len(points) - 2} tiles" in pg.status() and "you labelled negative" in pg.status()
        got = []
        pg.p.on("download", lambda d: got.append(d))
        pg.p.click("#findall-export")
        for _ in range(50):  # the download event arrives after the click returns
            if got:
                break
            pg.p.wait_for_timeout(100)
        assert len(got) == 1 and re.fullmatch(r"rsir-hits-find-all-20\d{6}-\d{4}\.geojson", got[0].suggested_filename), got
        hits = json.loads(open(got[0].path()).read())
        assert len(hits["features"]) == len(points) - 2
        # a reload keeps the labels but not the hits: the page says so (analyst trial: they were just gone)
        pg.p.reload()
        pg.p.wait_for_selector("body[data-ready='1']", timeout=30_000)
        pg.wait_status("Find all hits shown before the page was reloaded are not kept", timeout=30_000)
        assert pg.p.locator("#findall-export").is_disabled() or not pg.p.locator("#findall-export").is_visible()
        pg.p.click("#tab-labels")
        pg.p.fill("#threshold", "")
        pg.p.click("#classify")
        pg.wait_status("must be a probability from 0 to 1")
        pg.p.fill("#threshold", "0.5")
        with pg.p.expect_download() as dl:
            pg.p.click(".export[data-format='parquet']")
        out = tmp_path / "results.parquet"
        dl.value.save_as(out)
        assert out.read_bytes()[:4] == b"PAR1"
        pg.p.click("#clear-labels")  # the overlay and its download go with the labels
        assert pg.p.locator("#findall-export").is_hidden()
        pg.check_clean()
    finally:
        pg.close()


def _result_ids(page):
    return page.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)")


def _on_result(page, x, y) -> bool:
    """Whether page point (x, y) is on a result footprint (hit-tested as the browser does)."""
    return page.p.evaluate(f"(() => {{ const e = document.elementFromPoint({x}, {y}); "
                           "return !!e && !!e.closest('.leaflet-results-pane'); })()")


def test_tabs_keyboard_arrows_home_end(browser, server):
    """WAI-ARIA tabs: one tab stop; arrows (wrapping), Home and End move focus and show the tab."""
    base, _ = server
    pg = Page(browser, base)
    try:
        pg.p.focus("#tab-results")
        state = ("(() => { const a = document.activeElement; return [a.id, "
                 "Array.from(document.querySelectorAll('[role=tab]')).filter(t => t.tabIndex === 0).map(t => t.id), "
                 "Array.from(document.querySelectorAll('[role=tabpanel]')).filter(p => !p.hidden).map(p => p.id), "
                 "a.getAttribute('aria-selected')]; })()")
        for key, name in (("ArrowRight", "scenes"), ("ArrowRight", "labels"), ("ArrowRight", "results"),
                          ("ArrowLeft", "labels"), ("Home", "results"), ("End", "labels"), ("ArrowLeft", "scenes")):
            pg.p.keyboard.press(key)
            assert pg.p.evaluate(state) == [f"tab-{name}", [f"tab-{name}"], [f"pane-{name}"], "true"], key
        pg.check_clean()
    finally:
        pg.close()


def test_polygon_and_box_drawn_over_results(browser, server):
    """In a drawing mode clicks on result footprints draw (corners, box), they do not select;
    a double-click on the first corner closes the ring without extra corners and ends the hint."""
    from shapely.geometry import MultiPoint

    base, points = server
    pg = Page(browser, base)
    try:
        pid = next(iter(_scene_points(points, "scene-b")))
        pg.search_by_id(pid, 10)
        pg.p.evaluate("rsir.map.setZoom(rsir.map.getZoom(), {animate: false})")
        hull = MultiPoint([(points[i]["location"]["lon"], points[i]["location"]["lat"]) for i in _result_ids(pg)]).convex_hull
        corners = list(hull.exterior.coords)[:-1]
        assert len(corners) >= 3
        xy = [pg.lonlat_xy(lon, lat) for lon, lat in corners]
        assert all(_on_result(pg, x, y) for x, y in xy)   # every corner is clicked on a result
        pg.p.click("#mode-polygon")
        for x, y in xy:
            pg.p.mouse.click(x, y)
            pg.p.wait_for_timeout(350)   # single clicks, not a double-click
        pg.p.mouse.dblclick(*xy[0])      # close on the first corner
        pg.wait_results()
        assert pg.p.inner_text("#area-text") == f"polygon of {len(corners)} corners"
        ring = pg.p.url.split("poly=")[1].split("&")[0].split(";")
        assert len(ring) == len(corners) + 1 and ring[0] == ring[-1] and len(set(ring)) == len(corners)
        assert "sel=" not in pg.p.url and pg.p.locator("#details").is_hidden()
        assert "double-click to close" not in pg.status()
        # a box dragged inside one result footprint sets the box; it selects nothing
        x, y = xy[1]
        pg.p.click("#mode-box")
        pg.p.mouse.move(x - 15, y - 15)
        pg.p.mouse.down()
        pg.p.mouse.move(x + 15, y + 15, steps=5)
        pg.p.mouse.up()
        pg.p.wait_for_function("document.querySelector('#area-text').innerText.startsWith('box ')", timeout=10_000)
        pg.wait_results()
        assert "bbox=" in pg.p.url and "sel=" not in pg.p.url
        assert "Drag a box" not in pg.status()
        # in search mode a click on a result still selects it
        loc = points[_result_ids(pg)[0]]["location"]
        pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
        pg.p.wait_for_selector("#details:not([hidden])")
        assert "sel=" in pg.p.url
        pg.check_clean()
    finally:
        pg.close()


def test_dates_first_in_captions_labels_and_alt_text(browser, server):
    """Results and labels of one place at several dates differ by their date: it comes first in the
    gallery, the Labels list (also on a phone, from a link) and the image alt text."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, path=f"/?q=p:{pid}")
    try:
        pg.wait_results(10)
        ids = _result_ids(pg)
        for n, rid in enumerate(ids):
            p = points[rid]
            date = p["datetime"][:10] if p.get("datetime") else "no date"
            card = pg.p.locator("#gallery .card").nth(n)
            assert card.locator(".cap .date").inner_text() == date
            item = card.locator(".cap .item")
            text, full = item.inner_text(), p["item_id"]
            assert item.get_attribute("title") == full
            assert text == full if len(full) <= 18 else (     # long ids are cut in the middle
                len(text) == 18 and "…" in text and full.startswith(text.split("…")[0])
                and full.endswith(text.split("…")[1]))
            assert card.locator("img").get_attribute("alt") == f"Result {n + 1}: {date}, {p['item_id']}"
        dated = [i for i in ids if points[i].get("datetime")][:2]
        link = f"/?q=p:{pid}&pos={dated[0]}&neg={dated[1]}"
    finally:
        pg.close()
    pg = Page(browser, base, size=(390, 844), path=link)
    try:
        pg.wait_results(10)
        pg.p.click("#tab-labels")
        pg.p.wait_for_function("document.querySelector('#label-list .what').innerText.includes('·')", timeout=20_000)
        rows = pg.p.locator("#label-list .what").evaluate_all(
            "els => els.map(e => [e.querySelector('.whead').textContent, e.querySelector('.witem').textContent])")
        for rid, (head, item) in zip(dated, rows):
            assert (head, item) == (f"{points[rid]['datetime'][:10]} · tile {rid[:8]}", points[rid]["item_id"])
        # what the phone shows of the row starts with the date
        box = pg.p.locator("#label-list .what").first.bounding_box()
        assert box["width"] > 80
        pg.check_clean()
    finally:
        pg.close()


def test_labelled_tiles_stay_drawn_and_query_on_top(browser, server):
    """Labelled tiles keep their green/red outlines after a refine (they are no longer results);
    the query's outline is drawn over the result footprints."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-b")))
    pg = Page(browser, base)
    try:
        pg.search_by_id(pid, 10)
        for i, lab in ((1, "Positive"), (2, "Positive"), (6, "Negative")):
            pg.p.locator("#gallery .card").nth(i).click()
            pg.p.click(f"#details button:has-text('{lab}')")
        pg.p.click("#tab-labels")
        pg.p.click("#refine")
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('your labels')", timeout=30_000)
        pg.wait_results()
        strokes = sorted(pg.p.evaluate("Array.from(document.querySelectorAll('.leaflet-labels-pane path'))"
                                       ".map(p => p.getAttribute('stroke'))"))
        assert strokes == ["#2ca02c", "#2ca02c", "#d62728"], strokes
        # a search from a tile: the labels stay drawn, the query's outline is above the results
        pg.p.evaluate(f"rsir.searchById('{pid}')")
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('a stored tile')", timeout=30_000)
        pg.wait_results(10)
        assert pg.p.locator(".leaflet-labels-pane path").count() == 3
        assert pg.p.locator(".leaflet-query-pane path").count() >= 1
        z = pg.p.evaluate("['results', 'query'].map(n => +getComputedStyle(rsir.map.getPane(n)).zIndex)")
        assert z[1] > z[0]
        pg.shots("labels_drawn")
        pg.check_clean()
    finally:
        pg.close()


def test_imagery_follows_the_date_filter_and_the_selected_result(browser, server):
    """The imagery tiles are asked for with the page's date and collection filters, and with the
    selected result's scene (drawn over the others where acquisitions overlap)."""
    from urllib.parse import parse_qs, urlsplit

    base, points = server
    pg = Page(browser, base)
    asked = []
    pg.p.on("request", lambda r: asked.append(r.url) if "/api/imagery/" in r.url else None)
    try:
        _wait_imagery(pg)
        pg.p.evaluate("rsir.map.setZoom(rsir.map.getZoom() - 1, {animate: false})")
        pg.p.wait_for_timeout(800)
        assert all("?" not in u for u in asked)   # no filter: every scene, newest on top
        pid = next(iter(_scene_points(points, "scene-b")))
        pg.p.fill("#datetime", "2022-01-01/..")
        pg.p.press("#datetime", "Enter")
        pg.p.evaluate(f"rsir.searchById('{pid}')")
        pg.wait_status("filtered by dates")
        card = pg.p.locator("#gallery .card").nth(1)
        rid = card.get_attribute("data-id")
        del asked[:]
        card.click()
        pg.p.wait_for_selector("#details:not([hidden])")
        pg.p.wait_for_timeout(800)
        want = {"datetime": ["2022-01-01/.."], "item": [points[rid]["item_id"]]}
        got = [parse_qs(urlsplit(u).query) for u in asked]
        assert got and all(q == want for q in got), got[:3]
        # whole zoom levels only (the map snaps to half levels; tiles exist at whole ones)
        assert all(urlsplit(u).path.split("/")[3].isdigit() for u in asked), asked[:3]
        # the drawn tiles are those of the current choice (the imagery pane holds no tile of another)
        _wait_imagery(pg)
        assert _opaque_fraction_of_imagery(pg) > 0
        # a collection filter goes with them
        del asked[:]
        pg.p.select_option("#collection", "coll-b")
        pg.wait_status("filtered by dates, collections")
        pg.p.evaluate("rsir.map.setZoom(rsir.map.getZoom() - 1, {animate: false})")
        pg.p.wait_for_timeout(800)
        got = [parse_qs(urlsplit(u).query) for u in asked]
        assert got and all(q.get("collection") == ["coll-b"] and q.get("datetime") == ["2022-01-01/.."]
                           for q in got), got[:3]
        pg.check_clean()
    finally:
        pg.close()


def test_imagery_outage_is_not_a_missing_scene_and_recovers(browser, server):
    """Imagery requests that fail because the service is down say so (not "a scene's source file is
    missing"), and the imagery is drawn again once the service answers."""
    base, _ = server
    pg = Page(browser, base)
    try:
        _wait_imagery(pg)
        pg.p.route("**/api/imagery/**", lambda route: route.abort("connectionrefused"))
        pg.p.evaluate("rsir.map.setZoom(rsir.map.getZoom() + 1, {animate: false})")   # tiles not yet loaded
        pg.p.wait_for_selector("#map-notice:not([hidden])", timeout=20_000)
        notice = pg.p.inner_text("#map-notice")
        assert "cannot be reached" in notice and "missing" not in notice, notice
        pg.p.unroute("**/api/imagery/**")
        pg.p.wait_for_selector("#map-notice", state="hidden", timeout=20_000)
        pg.p.wait_for_function(
            "Array.from(document.querySelectorAll('.leaflet-imagery-pane img')).filter(i => i.complete && "
            "i.naturalWidth > 0).length >= 4", timeout=30_000)
        # the rest of the zoom's tiles may still be drawing on a loaded machine: poll, do not sample once
        deadline, fraction = time.monotonic() + 30, 0.0
        while time.monotonic() < deadline and fraction <= 0.2:
            fraction = _opaque_fraction_of_imagery(pg)
            pg.p.wait_for_timeout(250)
        assert fraction > 0.2
        pg.check_clean()
    finally:
        pg.close()


def _near(points, a, b, metres=64.0) -> bool:
    """Whether tiles a and b are side by side (centres one tile apart, east-west or north-south)."""
    import math

    pa, pb = points[a]["location"], points[b]["location"]
    dx = (pa["lon"] - pb["lon"]) * 111_320 * math.cos(math.radians(pa["lat"]))
    dy = (pa["lat"] - pb["lat"]) * 110_574
    return abs(math.hypot(dx, dy) - metres) < 6


def _pixel(page, x, y):
    from PIL import Image

    img = Image.open(io.BytesIO(page.p.screenshot())).convert("RGB")
    return img.getpixel((round(x), round(y)))


def test_labelled_outlines_drawn_over_results_and_clicks_pass_through(browser, server):
    """Tiles of other dates (and neighbours) drawn over a labelled tile's footprint must not hide
    its green/red outline: labelled outlines lie over the result footprints, take no clicks (a
    click there selects the result under it), and the query and, over it, the selection lie over them."""
    base, points = server
    q = next(iter(_scene_points(points, "scene-b")))
    pg = Page(browser, base, path=f"/?q=p:{q}&k=30")
    try:
        pg.wait_results(30)
        ids = _result_ids(pg)
        # a labelled result under a better-ranked neighbour (drawn after it), away from the query tile
        pick = next((a, n) for a in reversed(ids) if a != q and not _near(points, a, q)
                    for n in ids[:ids.index(a)] if n != q and _near(points, a, n))
        lab, nb = pick
        pg.p.locator(f"#gallery .card[data-id='{lab}']").click()
        pg.p.click("#details button:has-text('Positive')")
        pg.p.click("#rerun")   # drawn again in rank order, nothing selected (a selection comes to the front)
        pg.wait_results(30)
        assert pg.p.locator("#details").is_hidden()
        z = pg.p.evaluate("['results', 'labels', 'query', 'selected'].map(n => +getComputedStyle(rsir.map.getPane(n)).zIndex)")
        assert z == sorted(z) and len(set(z)) == 4, z
        # the edge the two tiles share: the labelled tile's green, not the neighbour's blue
        la, lb = points[lab]["location"], points[nb]["location"]
        x, y = pg.lonlat_xy((la["lon"] + lb["lon"]) / 2, (la["lat"] + lb["lat"]) / 2)
        r, g, b = _pixel(pg, x, y)
        assert g > r + 60 and g > b + 60, ((r, g, b), "the labelled outline is hidden under a result")
        # a click on the labelled outline reaches the result footprint under it
        assert _on_result(pg, x, y)
        pg.p.mouse.click(x, y)
        pg.p.wait_for_selector("#details:not([hidden])")
        assert "sel=" in pg.p.url
        # the selected result's outline is drawn over the labelled outlines
        pg.p.locator(f"#gallery .card[data-id='{lab}']").click()
        strokes = pg.p.evaluate("Array.from(document.querySelectorAll('.leaflet-selected-pane path')).map(p => p.getAttribute('stroke'))")
        assert strokes == ["#ffd400"], strokes
        pg.shots("labelled_over_results")
        pg.check_clean()
    finally:
        pg.close()


def test_click_at_a_scene_centre_searches(browser, server):
    """The dot of a scene too small to see is off the map when the scene is big enough: a click at
    the scene's centre searches there (a hidden dot took it and did nothing)."""
    base, points = server
    a = [p["location"] for p in _scene_points(points, "scene-a").values()]
    lon = (min(q["lon"] for q in a) + max(q["lon"] for q in a)) / 2
    lat = (min(q["lat"] for q in a) + max(q["lat"] for q in a)) / 2
    pg = Page(browser, base)
    try:
        assert pg.p.locator(".leaflet-scenes-pane path").count() == 3   # the outlines only, no dots
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 17, {{animate: false}})")
        x, y = pg.lonlat_xy(lon, lat)
        pg.p.mouse.click(x, y)
        pg.wait_results()
        assert re.search(PLACE_QUERY, pg.p.inner_text("#query"))
        # zoomed out, the scenes are dots; a dot zooms to its scene
        pg.p.evaluate("rsir.map.setZoom(8, {animate: false})")
        pg.p.wait_for_function("document.querySelectorAll('.leaflet-scenes-pane path').length === 6", timeout=10_000)
        pg.check_clean()
    finally:
        pg.close()


def test_self_crossing_polygon_is_refused_and_kept_out_of_links(browser, server):
    """A polygon whose edges cross is refused when the drawing closes (one message, the tool stays
    on), is never put into the address bar, and a link holding one opens without it."""
    base, points = server
    b = [p["location"] for p in _scene_points(points, "scene-b").values()]
    w, e = min(q["lon"] for q in b), max(q["lon"] for q in b)
    s, n = min(q["lat"] for q in b), max(q["lat"] for q in b)
    refused = []
    pg = Page(browser, base)
    pg.p.on("response", lambda r: refused.append(r.url) if "/api/" in r.url and r.status >= 400 else None)
    try:
        pg.p.click("#mode-polygon")
        for lon, lat in ((w, s), (e, n), (e, s)):   # a bow-tie: the first and third edges cross
            pg.p.mouse.click(*pg.lonlat_xy(lon, lat))
            pg.p.wait_for_timeout(350)
        pg.p.mouse.dblclick(*pg.lonlat_xy(w, n))
        pg.wait_status("cross")
        assert "error" in pg.p.get_attribute("#status", "class")
        assert "not used" in pg.status()
        assert pg.p.inner_text("#area-text") == "anywhere" and "poly=" not in pg.p.url
        assert "active" in pg.p.get_attribute("#mode-polygon", "class")   # draw again at once
        assert pg.p.locator(".leaflet-overlay-pane path").count() == 0      # the refused ring is gone
        for lon, lat in ((w, s), (e, s), (e, n)):
            pg.p.mouse.click(*pg.lonlat_xy(lon, lat))
            pg.p.wait_for_timeout(350)
        pg.p.mouse.dblclick(*pg.lonlat_xy(w, n))
        assert pg.p.inner_text("#area-text") == "polygon of 4 corners" and "poly=" in pg.p.url
        assert not refused, refused
    finally:
        pg.close()
    pid = next(iter(_scene_points(points, "scene-b")))
    bow = ";".join(f"{lon},{lat}" for lon, lat in ((w, s), (e, n), (e, s), (w, n), (w, s)))
    pg = Page(browser, base, path=f"/?q=p:{pid}&poly={bow}")
    pg.p.on("response", lambda r: refused.append(r.url) if "/api/" in r.url and r.status >= 400 else None)
    try:
        pg.wait_results(10)
        assert "poly=" not in pg.p.url and f"q=p:{pid}" in pg.p.url
        assert pg.p.inner_text("#area-text") == "anywhere"
        assert "polygon was left out" in pg.status() and "cross" in pg.status()
        assert not refused, refused
        pg.check_clean()
    finally:
        pg.close()


def test_selected_and_query_alt_text_and_label_rows_keep_the_tile(browser, server):
    """The selected result's image and the query's say the date and scene like the cards; with long
    scene names the Labels list shows the date and tile on a line of their own and the whole name below
    (labels of one scene differ by the tile; a name cut in the middle and at its end looked like another's)."""
    base, points = server
    long = "opengeos_naip_m_4709963_se_14_1_20140720-"

    def lengthen(route):
        resp = route.fetch()
        doc = resp.json()
        for f in doc.get("features", []):
            f["properties"]["item_id"] = long + str(f["properties"].get("item_id"))
        if (doc.get("query") or {}).get("item_id"):
            doc["query"]["item_id"] = long + doc["query"]["item_id"]
        route.fulfill(response=resp, json=doc)

    pid = next(iter(_scene_points(points, "scene-b")))
    pg = Page(browser, base, size=(1440, 900))
    try:
        pg.p.route("**/api/search?*", lengthen)
        pg.search_by_id(pid, 10)
        date = points[pid]["datetime"][:10]
        assert pg.p.get_attribute("#query img", "alt") == f"Query tile: {date}, {long}scene-b"
        ids = _result_ids(pg)
        same = [i for i in ids if points[i]["item_id"] == "scene-b"][1:3]
        for rid in same:
            n = ids.index(rid) + 1
            pg.p.locator(f"#gallery .card[data-id='{rid}']").click()
            assert pg.p.get_attribute("#details img", "alt") == f"Result {n}: {date}, {long}scene-b"
            pg.p.click("#details button:has-text('Positive')")
        pg.p.click("#tab-labels")
        rows = pg.p.locator("#label-list .what")
        assert rows.count() == 2
        seen = []
        for i in range(2):
            row, head = rows.nth(i).bounding_box(), rows.nth(i).locator(".whead").bounding_box()
            assert head["x"] >= row["x"] and head["x"] + head["width"] <= row["x"] + row["width"] + 0.5, (row, head)
            seen.append(rows.nth(i).locator(".whead").inner_text().strip())
            # the long name is shown whole, wrapped inside the row (it was cut in the middle, then at its end)
            item = rows.nth(i).locator(".witem")
            assert item.inner_text().replace("\n", "") == f"{long}scene-b"
            assert item.evaluate("e => e.scrollWidth <= e.clientWidth")
        assert seen == [f"{date} · tile {rid[:8]}" for rid in same] and seen[0] != seen[1]
        pg.check_clean()
    finally:
        pg.close()


def test_escape_closes_details_and_map_outlines_are_no_tab_stops(browser, server):
    """Escape closes the details box (focus back on the result's card); the scene outlines (which
    have tooltips) and dots are not unnamed tab stops: Tab goes from the map to its controls."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, path=f"/?q=p:{pid}")
    try:
        pg.wait_results(10)
        card = pg.p.locator("#gallery .card").nth(2)
        rid = card.get_attribute("data-id")
        card.click()
        pg.p.focus("#details button.pos")
        pg.p.keyboard.press("Escape")
        pg.p.wait_for_selector("#details", state="hidden")
        assert "sel=" not in pg.p.url
        assert pg.p.evaluate("document.activeElement.dataset.id") == rid

        def tab_walk():
            pg.p.focus("#map")
            got = []
            for _ in range(12):
                pg.p.keyboard.press("Tab")
                got.append(pg.p.evaluate("(() => { const a = document.activeElement; return a.id || a.tagName; })()"))
                if got[-1] == "mode-search":
                    break
            return got

        walk = tab_walk()
        assert "path" not in [t.lower() for t in walk] and walk[-1] == "mode-search", walk
        pg.p.evaluate("rsir.map.setZoom(8, {animate: false})")   # scene dots
        pg.p.wait_for_function("document.querySelectorAll('.leaflet-scenes-pane path').length === 6", timeout=10_000)
        walk = tab_walk()
        assert "path" not in [t.lower() for t in walk] and walk[-1] == "mode-search", walk
        pg.check_clean()
    finally:
        pg.close()


def test_catalogue_strings_are_shown_as_text_never_as_html(browser, tmp_path, tiny_bundle):
    """Item ids come from STAC catalogues (anyone's): a scene whose id holds HTML is shown as those
    characters in its tooltips, and its markup never runs (the page's CSP is bypassed here, so only
    the escaping stands between the id and the page)."""
    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import make_geotiff

    evil = "<b>x</b><img src=x onerror=window.__pwned=1>"
    tif = make_geotiff(tmp_path / "evil.tif", width=128, height=128, seed=5)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": evil, "collection": "coll-a", "geometry": None,
            "properties": {"datetime": "2021-06-01T10:00:00Z"}, "links": [],
            "assets": {"image": {"href": tif.name, "type": GEOTIFF, "roles": ["data"]}}}
    (tmp_path / "evil.json").write_text(json.dumps(item))
    report = ingest([str(tmp_path / "evil.json")], index=str(tmp_path / "idx"), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 4, report
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as idx:
        port = _free_port()
        srv = uvicorn.Server(uvicorn.Config(create_app(idx, api_key=KEY), host="127.0.0.1", port=port,
                                            log_level="warning", lifespan="off"))
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        try:
            deadline = time.time() + 30
            while not srv.started:
                assert time.time() < deadline and t.is_alive(), "uvicorn did not start"
                time.sleep(0.05)
            pg = Page(browser, f"http://127.0.0.1:{port}")
            try:
                pg.p.wait_for_function("document.querySelectorAll('.leaflet-scenes-pane path').length > 0",
                                       timeout=10_000)
                for zoom in (None, 8):  # the outline's tooltip, then the scene dot's (zoomed out)
                    if zoom:
                        pg.p.evaluate(f"rsir.map.setZoom({zoom}, {{animate: false}})")
                        pg.p.wait_for_timeout(300)
                    pg.p.evaluate("rsir.map.eachLayer((l) => { if (l.getTooltip && l.getTooltip() && l.getLatLng) "
                                  "l.openTooltip(); else if (l.getTooltip && l.getTooltip() && l.getBounds) "
                                  "l.openTooltip(l.getBounds().getCenter()); })")
                    pg.p.wait_for_selector(".leaflet-tooltip", timeout=10_000)
                    tips = pg.p.locator(".leaflet-tooltip")
                    texts = tips.all_inner_texts()
                    assert any(evil in s for s in texts), texts
                    assert pg.p.locator(".leaflet-tooltip img, .leaflet-tooltip b").count() == 0
                pg.p.click("#tab-scenes")
                assert evil in pg.p.locator("#scene-list button.scene").first.inner_text()
                pg.p.wait_for_timeout(500)  # an injected <img src=x> would have failed to load by now
                assert pg.p.evaluate("typeof window.__pwned") == "undefined"
                assert pg.p.locator("img[src='x']").count() == 0
                pg.check_clean()
            finally:
                pg.close()
        finally:
            srv.should_exit = True
            t.join(10)


def test_page_csv_is_escaped_and_find_all_download_is_typed_as_the_cli(browser, tmp_path, tiny_bundle):
    """STAC ids and collections are anyone's: the Results CSV (the service's export, and the page's own
    for a service without it) writes a formula as text ('=...); and "Download hits" gives the fields the
    types `rsir-stac classify --out` gives them (gsd and the epochs Real, not Integer for whole numbers)."""
    import pyogrio
    from click.testing import CliRunner

    from rsir_stac.cli import main
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import serve_in_thread
    from tests.test_csv_injection import DDE, LINK, MINUS, NUMBER, build_hostile_index

    build_hostile_index(tmp_path, tiny_bundle)   # gsd 1.0: a whole number
    want = {("'" + LINK, "'" + DDE), (NUMBER, "'" + MINUS)}

    def drop_export(route):   # a service without /api/query/export: the page writes the CSV itself
        resp = route.fetch()
        doc = resp.json()
        doc["paths"].pop("/api/query/export", None)
        route.fulfill(response=resp, json=doc)

    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as idx:
        first = next(p.id for p in idx.store.iter_points(with_vectors=False) if p.payload["item_id"] == LINK)
        with serve_in_thread(create_app(idx)) as base:
            for own in (False, True):
                pg = Page(browser, base)
                try:
                    if own:
                        pg.p.route("**/openapi.json", drop_export)
                        pg.p.reload()
                        pg.p.wait_for_selector("body[data-ready='1']", timeout=30_000)
                    pg.search_by_id(first, 10)
                    pg.p.click("#tab-labels")
                    with pg.p.expect_download() as dl:
                        pg.p.click(".export[data-format='csv']")
                    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(), newline="")))
                    assert len(rows) == 10 and {(r["item_id"], r["collection"]) for r in rows} <= want, rows[:2]
                    assert len({r["item_id"] for r in rows}) == 2   # both scenes among the results
                    if own:
                        assert list(rows[0])[:3] == ["rank", "id", "distance"]   # the page's own columns
                        pg.check_clean()
                        continue
                    # find all, every tile a hit (threshold 0), downloaded; the labels saved for the CLI
                    pg.p.click("#tab-results")
                    pg.find_all(((0, "Positive"), (1, "Positive"), (2, "Positive"), (8, "Negative"), (9, "Negative")),
                                0)
                    with pg.p.expect_download() as dl:
                        pg.p.click("#findall-export")
                    dl.value.save_as(tmp_path / "page-hits.geojson")
                    with pg.p.expect_download() as dl:
                        pg.p.click("#save-labels")
                    dl.value.save_as(tmp_path / "labels.geojson")
                    pg.check_clean()
                finally:
                    pg.close()
    r = CliRunner().invoke(main, ["classify", "--labels", str(tmp_path / "labels.geojson"), "--index",
                                  str(tmp_path / "idx"), "--model", str(tiny_bundle.path), "--threshold", "0",
                                  "--out", str(tmp_path / "cli-hits.geojson")])
    assert r.exit_code == 0, r.output
    page, cli = (pyogrio.read_info(tmp_path / f) for f in ("page-hits.geojson", "cli-hits.geojson"))
    assert page["features"] == cli["features"] == 30
    types = dict(zip(page["fields"], page["dtypes"]))
    assert types == dict(zip(cli["fields"], cli["dtypes"]))
    assert all(types[k] == "float64" for k in ("gsd", "datetime_epoch", "lon", "lat", "probability")), types
    hits = json.loads((tmp_path / "page-hits.geojson").read_text())
    assert {f["properties"]["item_id"] for f in hits["features"]} == {LINK, NUMBER}   # GeoJSON: exact texts


def test_bidi_and_invisible_characters_of_catalogue_texts_are_shown_escaped(browser, tmp_path, tiny_bundle):
    """Security trial: an item id or collection holding U+202E (right-to-left override) reordered
    the text around it on the page ("…\u202efit.exe" read "exe.tif"), and a zero-width space made
    two ids look alike.  Shown texts now carry such characters as visible escapes, as the command
    line does; values sent back (the collection filter) stay exact."""
    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import make_geotiff, serve_in_thread, stac_item_file

    item, coll = "scene-\u202efit.exe", "naip\u200bx"
    tif = make_geotiff(tmp_path / "s.tif", width=128, height=128, seed=5)
    src = stac_item_file(tmp_path / "s.json", item, coll, "2021-06-01T10:00:00Z", tif)
    report = ingest([src], index=str(tmp_path / "idx"), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 4, report
    with Index.open(str(tmp_path / "idx"), model=tiny_bundle) as idx:
        pid = next(p.id for p in idx.store.iter_points(with_vectors=False))
        with serve_in_thread(create_app(idx)) as base:
            pg = Page(browser, base)
            try:
                pg.search_by_id(pid)
                text = pg.p.evaluate("document.body.innerText")
                titles = pg.p.evaluate("Array.from(document.querySelectorAll('[title], img[alt]'))"
                                       ".map((e) => (e.title || '') + (e.alt || '')).join('|')")
                for shown in (text, titles):
                    assert "\u202e" not in shown and "\u200b" not in shown
                assert "scene-\\u202efit.exe" in titles, titles   # the card's full item id
                option = pg.p.evaluate("(() => { const o = document.querySelector('#collection option');"
                                       " return [o.textContent, o.value]; })()")
                assert option == ["naip\\u200bx", coll], option
                pg.check_clean()
            finally:
                pg.close()


def test_a_new_search_shows_the_labels_on_its_cards_and_selecting_never_zooms_out(browser, server):
    """Page trial (thirty-fifth session): after a new search a labelled tile's card had no green/red border
    (the map and details showed the label), so P on it, 'again: remove the label', took the label off
    unseen; and selecting a result below zoom 14 on a small map zoomed out to frame it."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-b")))
    pg = Page(browser, base)
    try:
        pg.search_by_id(pid, 10)
        first = pg.p.locator("#gallery .card").nth(1)
        rid = first.get_attribute("data-id")
        first.click()
        pg.p.click("#details button:has-text('Positive')")
        assert "pos" in first.get_attribute("class")
        pg.p.evaluate(f"rsir.searchById('{pid}')")   # a new search: new cards
        pg.wait_results(10)
        card = pg.p.locator(f"#gallery .card[data-id='{rid}']")
        assert "pos" in card.get_attribute("class"), card.get_attribute("class")
        # selecting a result when zoomed out keeps the zoom or zooms in, never out
        pg.p.set_viewport_size({"width": 390, "height": 700})
        pg.p.evaluate("rsir.map.invalidateSize({animate: false})")
        for z in (13.5, 19):   # far out; and close in, the result off screen (it was framed at zoom ~17)
            pg.p.evaluate(f"rsir.map.setZoom({z}, {{animate: false}})")
            pg.p.evaluate("rsir.map.panBy([2000, 0], {animate: false})")   # the results off screen
            card = pg.p.locator("#gallery .card").nth(2)
            card.click()
            pg.p.wait_for_timeout(600)
            after = pg.p.evaluate("rsir.map.getZoom()")
            assert after >= z, (z, after)
            inside = pg.p.evaluate(f"rsir.map.getBounds().contains(L.latLng({points[card.get_attribute('data-id')]['location']['lat']}, "
                                   f"{points[card.get_attribute('data-id')]['location']['lon']}))")
            assert inside, z   # and brought into view
        pg.check_clean()
    finally:
        pg.close()


def test_a_page_turn_that_fails_keeps_the_page_shown_and_its_link(browser, server):
    """Page trial: with the service down, Next cleared the results shown and their downloads, and the
    address already named page 2, so "Search again" later opened a page never seen."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-b")))
    pg = Page(browser, base)
    try:
        pg.search_by_id(pid, 10)
        ids = [c.get_attribute("data-id") for c in pg.p.locator("#gallery .card").all()]
        url, depth = pg.p.url, pg.p.evaluate("history.length")
        pg.p.route("**/api/search**", lambda route: route.abort())   # the service cannot be reached
        pg.p.click("#page-next")
        pg.p.wait_for_function("document.querySelector('#status').classList.contains('error')", timeout=30_000)
        assert [c.get_attribute("data-id") for c in pg.p.locator("#gallery .card").all()] == ids
        assert "The page shown is still results 1–10" in pg.status(), pg.status()
        assert "o=10" not in pg.p.url and "offset" not in pg.p.url, (url, pg.p.url)
        assert pg.p.evaluate("history.length") == depth   # no entry for the page not loaded (Back stays useful)
        assert pg.p.inner_text("#page-text") == "Results 1–10"
        pg.p.unroute("**/api/search**")
        pg.p.click("#page-next")   # the service answers again: the next page
        pg.p.wait_for_function("document.querySelector('#page-text').innerText === 'Results 11–20'", timeout=30_000)
        assert "o=10" in pg.p.url and pg.p.evaluate("history.length") == depth + 1
        pg.check_clean()
    finally:
        pg.close()


def test_a_wrong_service_key_is_said_to_be_refused_not_missing(browser, server):
    """Page trial 7: a wrong key (/?key=wrong) got the prompt and the message of a missing one."""
    base, _ = server
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    try:
        p = ctx.new_page()
        p.on("dialog", answer)
        p.goto(f"{base}/?key=wrong")
        p.wait_for_function("document.querySelector('#status').innerText.includes('access key')", timeout=30_000)
        assert asked and asked[0] == "The service refused this access key; enter the right one:", asked
        assert "refused the access key given" in p.inner_text("#status"), p.inner_text("#status")
    finally:
        ctx.close()
