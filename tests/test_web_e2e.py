"""End to end: the map page in headless Chromium against `serve` on a real Edge index.

Needs the ``playwright`` Python package and a Chromium binary (Debian's
``chromium``; ``playwright install`` is not used).  Skipped with a reason when
either is missing.  Set ``RSIR_CHROMIUM`` to use another Chromium binary.
Writes a screenshot to ``tests/artifacts/web_e2e.png``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
KEY = "e2e-key"


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
    from tests.test_serve import build_test_index

    path = build_test_index(tmp_path_factory.mktemp("web"), tiny_bundle)
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


def _gallery_loaded(page) -> int:
    return page.evaluate(
        "Array.from(document.querySelectorAll('#gallery img')).filter(i => i.complete && i.naturalWidth > 0).length")


def test_click_map_shows_results(browser, server, tmp_path):
    base, points = server
    page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # wait_for_function evals
    errors, foreign = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: None if req.url.startswith((base, "data:", "blob:")) else foreign.append(req.url))
    try:
        page.goto(f"{base}/?key={KEY}")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        assert "16 tiles" in page.inner_text("#info")
        assert "key=" not in page.url  # the key is kept in sessionStorage, not in the address bar

        # click the map at a stored tile's centre (the page fitted the index extent)
        pid, payload = next((i, p) for i, p in points.items() if p["item_id"] == "scene-a")
        lon, lat = payload["location"]["lon"], payload["location"]["lat"]
        xy = page.evaluate(f"(() => {{ const p = rsir.map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()")
        box = page.locator("#map").bounding_box()
        assert 0 < xy[0] < box["width"] and 0 < xy[1] < box["height"], "the tile is outside the fitted view"
        page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])

        page.wait_for_function(
            "Array.from(document.querySelectorAll('#gallery img')).some(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000)
        assert page.locator("#gallery .card").count() == 10
        assert page.locator(".rank-label").count() == 10
        assert _gallery_loaded(page) >= 1
        assert "Query: the tile at the clicked place" in page.inner_text("#query")
        assert pid in page.inner_text("#query")
        page.wait_for_function("document.querySelector('#query img').naturalWidth > 0", timeout=10_000)

        shot = tmp_path / "web_e2e.png"
        page.screenshot(path=str(shot))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "web_e2e.png")

        # clicking a result searches from that point id
        first_id = page.evaluate("document.querySelector('#gallery .card').title.split('\\n')[3]")
        assert first_id in points
        page.locator("#gallery .card").first.click()
        page.wait_for_function(f"document.querySelector('#query').innerText.includes('{first_id}')", timeout=20_000)
        assert "Query: stored tile" in page.inner_text("#query")

        # a datetime filter re-runs the query: only scene-b (2022) is left
        page.fill("#datetime", "2022-01-01/..")
        page.press("#datetime", "Enter")
        page.locator("#k").select_option("20")
        page.wait_for_function("document.querySelector('#status').innerText.includes('filtered by dates')",
                               timeout=20_000)
        n_b = sum(1 for i, p in points.items() if p["item_id"] == "scene-b" and i != first_id)
        page.wait_for_function(f"document.querySelectorAll('#gallery .card').length === {n_b}", timeout=20_000)
        items = page.locator("#gallery .card .item").all_inner_texts()
        assert items and all(t.startswith("scene-b") for t in items)

        assert not errors, errors
        assert not foreign, f"the page fetched outside the service: {foreign}"
    finally:
        page.close()


def test_shift_drag_box_sets_filter(browser, server):
    base, points = server
    page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # wait_for_function evals
    try:
        page.goto(f"{base}/?key={KEY}")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        a = [p["location"] for p in points.values() if p["item_id"] == "scene-a"]
        w, e = min(q["lon"] for q in a), max(q["lon"] for q in a)
        s, n = min(q["lat"] for q in a), max(q["lat"] for q in a)
        corner = "(() => {{ const p = rsir.map.latLngToContainerPoint([{}, {}]); return [p.x, p.y]; }})()"
        x0, y0 = page.evaluate(corner.format(n + 1e-4, w - 1e-4))
        x1, y1 = page.evaluate(corner.format(s - 1e-4, e + 1e-4))
        box = page.locator("#map").bounding_box()
        page.keyboard.down("Shift")
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2, steps=4)
        page.mouse.move(box["x"] + x1, box["y"] + y1, steps=4)
        page.mouse.up()
        page.keyboard.up("Shift")
        assert page.inner_text("#area-text").startswith("box ")
        # search from a scene-b tile: results are limited to the box over scene-a
        pid = next(i for i, p in points.items() if p["item_id"] == "scene-b")
        page.evaluate(f"rsir.searchById('{pid}')")
        page.wait_for_function("document.querySelector('#status').innerText.includes('filtered by box')",
                               timeout=20_000)
        items = page.locator("#gallery .card .item").all_inner_texts()
        assert items and all(t.startswith("scene-a") for t in items)
    finally:
        page.close()


def test_docs_render_offline(browser, server):
    base, _ = server
    page = browser.new_page(bypass_csp=True)  # wait_for_selector only, but keep one rule
    foreign = []
    page.on("request", lambda req: None if req.url.startswith((base, "data:", "blob:")) else foreign.append(req.url))
    try:
        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        text = page.inner_text("body")
        for path in ("/api/info", "/api/search", "/api/search/image", "/api/tiles/{point_id}.png",
                     "/api/query", "/api/query/export", "/api/labels", "/api/classify"):
            assert path in text
        assert page.locator(".opblock").count() == 9
        assert not foreign, f"/docs fetched outside the service: {foreign}"
    finally:
        page.close()


def test_polygon_and_upload(browser, server):
    import io

    from PIL import Image

    from rsir_stac.thumbnails import read_tile

    base, points = server
    page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # wait_for_function evals
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{base}/?key={KEY}")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        b = [p["location"] for p in points.values() if p["item_id"] == "scene-b"]
        w, e = min(q["lon"] for q in b) - 1e-4, max(q["lon"] for q in b) + 1e-4
        s, n = min(q["lat"] for q in b) - 1e-4, max(q["lat"] for q in b) + 1e-4
        box = page.locator("#map").bounding_box()

        def at(lon, lat):
            x, y = page.evaluate(f"(() => {{ const p = rsir.map.latLngToContainerPoint([{lat}, {lon}]); "
                                 "return [p.x, p.y]; })()")
            return box["x"] + x, box["y"] + y

        page.click("#mode-polygon")
        for lon, lat in ((w, s), (e, s), (e, n)):
            page.mouse.click(*at(lon, lat))
        page.mouse.dblclick(*at(w, n))
        assert page.inner_text("#area-text") == "polygon of 4 corners"
        assert "active" in page.get_attribute("#mode-search", "class")

        # upload a scene-a tile as the example: results are limited to the polygon over scene-b
        pid, payload = next((i, p) for i, p in points.items() if p["item_id"] == "scene-a")
        buf = io.BytesIO()
        Image.fromarray(read_tile(payload)).save(buf, format="PNG")
        page.set_input_files("#upload", files=[{"name": "example.png", "mimeType": "image/png",
                                                "buffer": buf.getvalue()}])
        page.wait_for_function("document.querySelector('#status').innerText.includes('filtered by polygon')",
                               timeout=30_000)
        assert "Query: uploaded image" in page.inner_text("#query")
        assert "example.png" in page.inner_text("#query")
        items = page.locator("#gallery .card .item").all_inner_texts()
        assert len(items) == 8 and all(t.startswith("scene-b") for t in items)

        # clearing the area re-runs the same upload without the filter: the tile itself comes first
        page.click("#clear-area")
        page.wait_for_function("!document.querySelector('#status').innerText.includes('filtered')", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('#gallery .card').length === 10", timeout=30_000)
        first = page.evaluate("document.querySelector('#gallery .card').title.split('\\n')[3]")
        assert first == pid
        assert not errors, errors
    finally:
        page.close()


def test_page_and_docs_work_under_their_content_security_policy(browser, server):
    """No bypass here: the page loads, searches and shows tiles, and /docs renders, with no CSP violation.

    Waits poll with ``page.evaluate`` (not ``wait_for_function``, whose string predicates the CSP forbids).
    """
    base, points = server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    violations, errors = [], []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def until(js: str, seconds: float = 30.0):
        deadline = time.time() + seconds
        while not page.evaluate(js):
            if time.time() > deadline:
                pytest.fail(f"page never reached: {js}")
            time.sleep(0.1)

    try:
        page.goto(f"{base}/?key={KEY}")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
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
