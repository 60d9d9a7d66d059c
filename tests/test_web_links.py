"""The map page's links, exports, labels and keys, in headless Chromium against `serve`.

Defects a new user's trial found: a link under a date filter reopening another query tile,
upload exports of another schema, "find all" scoring the screen, "Clear labels" with no way
back, find-all hits that cannot be looked at, unclear label-file messages, keys on the
result cards, and dates, ``near=`` and tiny uploads taken silently.  The browser, the served
three-scene index and the page helper are those of ``tests/test_web_e2e.py``; a second index
(one place at three dates, a time series) is built here.  Screenshots of the changed states go
to ``tests/artifacts/links_<flow>_<W>x<H>.png`` at 1366x768 and 390x844.
"""

from __future__ import annotations

import re

import csv
import io
import json
import uuid
from pathlib import Path

import pytest

from tests.test_web_e2e import (PLACE_QUERY, ARTIFACTS, KEY, Page, _result_ids, _scene_points, browser,  # noqa: F401
                                server)

SHOT_SIZES = ((1366, 768), (390, 844))
YEARS = ("2009", "2015", "2020")


def _shots(pg: Page, flow: str) -> None:
    """Screenshots of the current state at the two window sizes (back at the first at the end)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for w, h in SHOT_SIZES:
        pg.p.set_viewport_size({"width": w, "height": h})
        pg.p.evaluate("rsir.map.invalidateSize({animate: false})")
        pg.p.wait_for_timeout(400)
        pg.p.screenshot(path=str(ARTIFACTS / f"links_{flow}_{w}x{h}.png"))
    pg.p.set_viewport_size({"width": SHOT_SIZES[0][0], "height": SHOT_SIZES[0][1]})
    pg.p.evaluate("rsir.map.invalidateSize({animate: false})")


def _path(url: str) -> str:
    """The path and query of a page's address (for a fresh Page)."""
    return "/" + url.split("/", 3)[3]


def _api_errors(pg: Page) -> list:
    errs: list = []
    pg.p.on("response", lambda r: errs.append(f"{r.status} {r.url}") if "/api/" in r.url and r.status >= 400 else None)
    return errs


def _download(pg: Page, selector: str) -> Path:
    with pg.p.expect_download() as dl:
        pg.p.click(selector)
    return Path(dl.value.path())


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_bundle):
    """One place at three dates (NAIP-like 2009/2015/2020 items of different pixels over the same
    footprint), served: (base URL, {point id: payload})."""
    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import make_geotiff, serve_in_thread, stac_item_file

    root = tmp_path_factory.mktemp("stack")
    sources = []
    for n, year in enumerate(YEARS):
        tif = make_geotiff(root / f"m_{year}.tif", width=256, height=128, seed=10 + n)
        sources.append(stac_item_file(root / f"naip_{year}.json", f"naip_{year}", "naip", f"{year}-08-01T17:00:00Z", tif))
    report = ingest(sources, index=str(root / "idx"), model=tiny_bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 24, report
    with Index.open(str(root / "idx"), model=tiny_bundle) as idx:
        points = {p.id: p.payload for p in idx.store.iter_points(with_vectors=False)}
        with serve_in_thread(create_app(idx, api_key=KEY)) as base:
            yield base, points


# --------------------------------------------------------------------------- 1. links keep the query tile


def test_link_under_a_date_filter_reopens_the_clicked_query_tile(browser, stack):
    """Click a place of a time series, then filter to another year: the address (and so a reload or
    Copy link) holds the tile the click found, and reopens exactly that query and those results;
    the exports of the filtered search hold the same tiles."""
    base, points = stack
    one = next(iter(points.values()))["location"]
    pg = Page(browser, base, size=(1366, 768))
    try:
        pg.p.evaluate(f"rsir.searchAt({one['lon']}, {one['lat']})")
        pg.wait_results()
        qid = pg.p.inner_text("#query .id").strip()
        year = points[qid]["datetime"][:4]
        other = next(y for y in YEARS if y != year)
        pg.p.fill("#datetime", f"{other}-01-01/{other}-12-31")
        pg.p.press("#datetime", "Enter")
        pg.wait_status("filtered by dates")
        assert pg.p.inner_text("#query .id").strip() == qid   # the query stays the clicked tile
        live = _result_ids(pg)
        assert live and all(points[i]["datetime"].startswith(other) for i in live)
        assert f"qid={qid}" in pg.p.url and "q=at:" in pg.p.url
        gj = json.loads(_download_export(pg, "geojson").read_text())
        assert [f["id"] for f in gj["features"]] == live
        link = _path(pg.p.url)
    finally:
        pg.close()
    again = Page(browser, base, size=(1366, 768), path=link)
    try:
        again.wait_status("filtered by dates")
        assert again.p.inner_text("#query .id").strip() == qid
        assert re.search(PLACE_QUERY, again.p.inner_text("#query"))
        assert _result_ids(again) == live
        _shots(again, "date_link")
        again.check_clean()
    finally:
        again.close()


def _download_export(pg: Page, fmt: str) -> Path:
    pg.p.click("#tab-labels")
    path = _download(pg, f".export[data-format='{fmt}']")
    pg.p.click("#tab-results")
    return path


# --------------------------------------------------------------------------- 2. upload exports


def _upload_png(points, item, size=None) -> bytes:
    from PIL import Image

    from rsir_stac.thumbnails import read_tile

    payload = next(iter(_scene_points(points, item).values()))
    img = Image.fromarray(read_tile(payload))
    if size:
        img = img.resize((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_search_exports_have_the_schema_of_every_search(browser, server):
    """After an uploaded-image search every format comes from the service's export of that query:
    the rows shown, and the columns of a stored-tile search's export (GeoParquet too)."""
    import pyarrow.parquet as pq

    base, points = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        pid = next(iter(_scene_points(points, "scene-b")))
        pg.search_by_id(pid, 10)
        ref_csv = _download_export(pg, "csv").read_text()
        ref_gj = json.loads(_download_export(pg, "geojson").read_text())
        ref_pq = pq.read_schema(_download_export(pg, "parquet")).names

        png = _upload_png(points, "scene-a")
        pg.p.set_input_files("#upload", files=[{"name": "example.png", "mimeType": "image/png", "buffer": png}])
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('uploaded image')", timeout=30_000)
        pg.wait_results(10)
        shown = _result_ids(pg)
        rows = list(csv.DictReader(io.StringIO(_download_export(pg, "csv").read_text())))
        assert list(rows[0]) == next(csv.reader(io.StringIO(ref_csv)))   # same columns: geometry, extra, ...
        assert "geometry" in rows[0] and rows[0]["geometry"].startswith("POLYGON")
        assert [r["id"] for r in rows] == shown
        gj = json.loads(_download_export(pg, "geojson").read_text())
        assert [f["id"] for f in gj["features"]] == shown
        assert set(gj["features"][0]["properties"]) == set(ref_gj["features"][0]["properties"])
        path = _download_export(pg, "parquet")
        assert path.read_bytes()[:4] == b"PAR1" and pq.read_schema(path).names == ref_pq
        assert pq.read_table(path).column("id").to_pylist() == shown
        assert "error" not in (pg.p.get_attribute("#status", "class") or "")
        pg.check_clean()
    finally:
        pg.close()


def test_a_reload_says_an_uploaded_image_is_not_kept_even_while_it_is_searched(browser, server):
    """Uploads live in the page only. A reload after an upload's answer says so; a reload while the
    upload was still being searched said nothing (the query just fell back to the search before it).
    Either note is said once: the next reload shows what the link holds, quietly."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        pid = next(iter(_scene_points(points, "scene-b")))
        pg.search_by_id(pid, 10)
        png = _upload_png(points, "scene-a")
        held = []
        pg.p.route("**/api/search/image", lambda route: held.append(route))   # never answered
        pg.p.set_input_files("#upload", files=[{"name": "slow.png", "mimeType": "image/png", "buffer": png}])
        pg.p.wait_for_function("window.history.state && window.history.state.uploading === 'slow.png'",
                               timeout=30_000)
        assert held
        # the route stays until after the reload: unrouting first let Playwright fail or continue the held
        # request before the reload at times, which ended that search (and its mark) before the page left
        pg.p.reload()
        pg.p.wait_for_selector("body[data-ready='1']", timeout=30_000)
        pg.wait_status("search with the uploaded image slow.png was still running when the page was reloaded")
        pg.wait_results(10)
        pg.p.unroute("**/api/search/image")
        _shots(pg, "reload_while_uploading")
        assert _result_ids(pg)[0] != "" and "uploaded image" not in pg.p.inner_text("#query")
        pg.p.reload()
        pg.p.wait_for_selector("body[data-ready='1']", timeout=30_000)
        pg.wait_results(10)
        assert "slow.png" not in pg.status()
        # an answered upload, then a reload
        pg.p.set_input_files("#upload", files=[{"name": "fast.png", "mimeType": "image/png", "buffer": png}])
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('fast.png')", timeout=30_000)
        pg.wait_results(10)
        pg.p.reload()
        pg.p.wait_for_selector("body[data-ready='1']", timeout=30_000)
        pg.wait_status("uploaded image fast.png searched before the reload is not kept")
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- 4 and 6. find all


def _labels_link(points, n=3) -> str:
    a = list(_scene_points(points, "scene-a"))[:n]
    b = list(_scene_points(points, "scene-b"))[:n]
    return f"pos={','.join(a)}&neg={','.join(b)}"


def test_find_all_without_an_area_scores_the_whole_index_on_every_screen(browser, server):
    """No area drawn: "find all" scores the whole index, whatever the window size and view (the same
    link, the same answer), and says so; its hits are listed with their probabilities, most probable
    first; choosing one zooms the map to it and P labels it."""
    base, points = server
    a = next(iter(_scene_points(points, "scene-a").values()))["location"]
    link = f"/?{_labels_link(points)}&v=19/{a['lat']}/{a['lon']}"   # zoomed in on one tile
    answers = []
    for size in SHOT_SIZES:
        pg = Page(browser, base, size=size, path=link)
        try:
            pg.p.click("#tab-labels")
            pg.p.click("#classify")
            pg.wait_status("Find all:", timeout=120_000)
            status = pg.status()
            assert f"({len(points)} tiles scored) in the whole index" in status, status
            assert "outside the filters" not in status and "map view" not in status
            answers.append(status.split(" (")[0])
            hits = pg.p.locator("#hits .card")
            n = int(status.split("Find all: ")[1].split(" ")[0])
            assert hits.count() == min(n, 100) and n > 0
            probs = [float(t.split("= ")[1]) for t in pg.p.locator("#hits .card .dist").all_inner_texts()]
            labelled = pg.p.evaluate("[...rsir.state.labels.keys()]")
            unlabelled = [p for p, c in zip(probs, hits.all()) if c.get_attribute("data-id") not in labelled]
            assert probs == sorted(probs, reverse=True) and unlabelled and min(unlabelled) >= 0.5, probs
            assert f"Find all hits ({n})" in pg.p.inner_text("#hits")
            # choose a hit that is not labelled: the map zooms to it, P labels it positive
            card = next(c for c in hits.all() if c.get_attribute("data-id") not in labelled)
            hid = card.get_attribute("data-id")
            card.click()
            pg.p.wait_for_timeout(500)
            loc = points[hid]["location"]
            box = pg.p.locator("#map").bounding_box()
            x, y = pg.lonlat_xy(loc["lon"], loc["lat"])
            assert box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"]
            assert "selected" in card.get_attribute("class")
            if size == SHOT_SIZES[0]:
                _shots(pg, "findall_hits")
            card.press("p")
            assert "pos" in card.get_attribute("class").split() and hid in pg.p.url.split("pos=")[1].split("&")[0]
            assert pg.p.inner_text("#label-count") == "4 positive, 3 negative"
            # on the map: a click on the hit offers the same labels and the way to its card in the list
            pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
            row = pg.p.locator(f".hit-popup .hit-row[data-id='{hid}']")
            row.locator("button", has_text="Positive").click()   # again: the label goes
            assert pg.p.inner_text("#label-count") == "3 positive, 3 negative"
            assert "pos" not in card.get_attribute("class").split()
            pg.p.wait_for_function("!document.querySelector('.hit-popup')")   # it fades out first
            pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
            row.locator("button", has_text="In the list").click()
            assert pg.p.evaluate("document.activeElement.dataset.id") == hid
            pg.check_clean()
        finally:
            pg.close()
    assert answers[0] == answers[1], answers


# --------------------------------------------------------------------------- 5. clear labels


def test_clear_labels_can_be_undone_or_gone_back_and_a_labels_link_without_labels_says_why(browser, server):
    base, points = server
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=labels&{_labels_link(points)}")
    errs = _api_errors(pg)
    try:
        pg.wait_results()
        shown = _result_ids(pg)
        pg.p.click("#tab-labels")
        pg.p.click("#clear-labels")
        assert pg.p.inner_text("#label-count") == "0 positive, 0 negative"
        assert "Cleared 6 labels" in pg.status() and pg.p.locator("#status button").inner_text() == "Undo"
        assert "pos=" not in pg.p.url and "q=labels" not in pg.p.url   # reopening it opens what is shown
        assert pg.p.locator("#gallery .card").count() == 0
        _shots(pg, "cleared_labels")
        pg.p.click("#status button")
        assert pg.p.inner_text("#label-count") == "3 positive, 3 negative"
        assert "q=labels" in pg.p.url and "pos=" in pg.p.url and _result_ids(pg) == shown
        assert pg.p.evaluate("document.activeElement.id") == "clear-labels"
        # cleared again, Back brings them back (with their footprints: the outlines are drawn)
        pg.p.click("#clear-labels")
        pg.p.go_back()
        pg.wait_results()
        pg.p.click("#tab-labels")
        assert pg.p.inner_text("#label-count") == "3 positive, 3 negative"
        assert _result_ids(pg) == shown
        assert pg.p.locator(".leaflet-labels-pane path").count() == 6
        assert not errs, errs
        pg.check_clean()
    finally:
        pg.close()
    pg = Page(browser, base, size=(1366, 768), path="/?q=labels")
    errs = _api_errors(pg)
    try:
        pg.wait_status("at least one positive label")
        status = pg.status()
        assert "positives ({point_id}" not in status and "error" in pg.p.get_attribute("#status", "class")
        assert pg.p.locator("#gallery .card").count() == 0 and pg.p.inner_text("#query") == ""
        pg.p.wait_for_timeout(300)
        assert not errs, errs   # no request the service refuses
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- 9. label files


def test_label_file_messages_name_the_file_and_what_a_label_file_needs(browser, server, tmp_path):
    base, points = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        pg.search_by_id(next(iter(_scene_points(points, "scene-a"))), 10)
        results = tmp_path / "results.geojson"
        results.write_bytes(_download_export(pg, "geojson").read_bytes())
        pg.p.click("#tab-labels")
        pg.p.set_input_files("#load-labels", str(results))
        pg.wait_status("results.geojson holds search results")
        status = pg.status()
        assert "undefined" not in status and 'properties.label "positive" or "negative"' in status, status
        _shots(pg, "results_as_labels")
        other = tmp_path / "other-index.geojson"
        other.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "00000000-0000-0000-0000-000000000000", "geometry": None,
             "properties": {"label": "positive"}}]}))
        pg.p.set_input_files("#load-labels", str(other))
        pg.wait_status("other-index.geojson: point 00000000")
        status = pg.status()
        assert "index the index" not in status and "is not in the index" in status and "another index" in status, status
        assert pg.p.inner_text("#label-count") == "0 positive, 0 negative"
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- 10. keys on the cards


def test_card_keys_keep_the_focus_where_the_user_is(browser, server):
    """Enter on a card opens the details and the card stays in view with the focus; arrows move
    between cards, P/N label the focused card; Enter on the details' Positive keeps its focus."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}&k=20")
    try:
        pg.wait_results(20)
        # on a loaded machine an answer still on its way re-draws the gallery and its cards (the
        # focus with them) between two key presses: start when the page has settled
        pg.p.wait_for_load_state("networkidle")
        cards = pg.p.locator("#gallery .card")
        assert "P: positive" in cards.first.get_attribute("title")
        assert pg.p.locator("#gallery-keys").is_visible()
        cards.nth(2).focus()
        pg.p.keyboard.press("Enter")
        pg.p.wait_for_selector("#details:not([hidden])")
        active = "document.activeElement.dataset.id"
        assert pg.p.evaluate(active) == cards.nth(2).get_attribute("data-id")
        view = pg.p.locator("#scroll").bounding_box()
        box = cards.nth(2).bounding_box()
        assert view["y"] - 1 <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"] + 1, (view, box)
        _shots(pg, "card_enter")
        pg.p.keyboard.press("ArrowRight")
        assert pg.p.evaluate(active) == cards.nth(3).get_attribute("data-id")
        cols = pg.p.evaluate("(() => { const c = [...document.querySelectorAll('#gallery .card')]; "
                             "return c.filter(x => x.offsetTop === c[0].offsetTop).length; })()")
        pg.p.keyboard.press("ArrowDown")
        assert pg.p.evaluate(active) == cards.nth(3 + cols).get_attribute("data-id")
        pg.p.keyboard.press("ArrowUp")
        pg.p.keyboard.press("p")
        rid = cards.nth(3).get_attribute("data-id")
        assert "pos" in cards.nth(3).get_attribute("class").split() and f"pos={rid}" in pg.p.url
        pg.p.keyboard.press("n")
        assert "neg" in cards.nth(3).get_attribute("class").split() and f"neg={rid}" in pg.p.url
        pg.p.keyboard.press("n")   # again: the label goes (waited for: a loaded machine may draw it late)
        pg.p.wait_for_function("!window.location.search.includes('neg=')", timeout=10_000)
        assert pg.p.evaluate(active) == rid
        # the details' buttons keep the focus when a label redraws them
        pg.p.focus("#details button.pos")
        pg.p.keyboard.press("Enter")
        assert pg.p.evaluate("document.activeElement.className") == "pos on"
        pg.p.keyboard.press("Enter")
        assert pg.p.evaluate("document.activeElement.className") == "pos"
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- 12. dates, near=, tiny uploads


def test_bad_dates_and_near_are_refused_for_people_and_tiny_uploads_warned(browser, server):
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}")
    try:
        pg.wait_results(10)
        url = pg.p.url
        pg.p.fill("#datetime", "last summer")
        pg.p.press("#datetime", "Enter")
        pg.wait_status('Dates "last summer" is not a date range')
        assert "still those of all dates" in pg.status() and "error" in pg.p.get_attribute("#status", "class")
        assert _no_view(pg.p.url) == _no_view(url) and "dt=" not in pg.p.url  # the map may add its view (v=) late
        _shots(pg, "bad_dates")
        # an impossible date (month 13) is refused here too, before the address changes
        pg.p.fill("#datetime", "2021-13-01/..")
        pg.p.press("#datetime", "Enter")
        pg.wait_status('Dates "2021-13-01/.." holds an impossible date (there is no month 13)')
        assert _no_view(pg.p.url) == _no_view(url) and pg.p.locator("#gallery .card").count() == 10
        pg.check_clean()
    finally:
        pg.close()
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}&dt=last+summer&near=-95.36,29.75,800")
    try:
        pg.wait_results(10)
        pg.wait_status("near= filter was left out")
        status = pg.status()
        assert "dates \"last summer\" were left out" in status and "draw a box or polygon" in status, status
        assert "dt=" not in pg.p.url and "near=" not in pg.p.url and pg.p.input_value("#datetime") == ""
        pg.check_clean()
    finally:
        pg.close()
    pg = Page(browser, base, size=(1366, 768))
    try:
        png = _upload_png(points, "scene-a", size=8)
        pg.p.set_input_files("#upload", files=[{"name": "tiny.png", "mimeType": "image/png", "buffer": png}])
        pg.wait_results(10)
        q = pg.p.inner_text("#query")
        assert "8×8 px" in q and "much smaller than the model's 64×64 px input" in q, q
        assert "much smaller" in pg.status()
        _shots(pg, "tiny_upload")
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- re-check: dates, label undo, find-all wording


def _searches(pg: Page) -> list:
    """The search requests the page sends from now on (/api/search, /api/search/image, /api/query)."""
    sent: list = []
    pg.p.on("request", lambda r: sent.append(r.url) if "/api/search" in r.url or "/api/query" in r.url else None)
    return sent


def test_impossible_dates_are_refused_and_no_search_uses_the_last_good_dates(browser, server):
    """Month 13 and 30 February are refused in the page like other bad dates (nothing sent, the
    address kept, the box marked invalid), and the service refuses them too (400, one line).  While
    the Dates box holds a refused date, Search again, Search here, Search from this, an upload and
    Find all are not run (never silently with the last good dates); fixed, the search runs."""
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}")
    try:
        pg.wait_results(10)
        url = pg.p.url
        sent = _searches(pg)
        for bad, why in (("2020-13-01", "there is no month 13"), ("2021-02-30", "2021-02 has 28 days, no day 30"),
                         ("2019-12-01/2020-02-30T10:00", "2020-02 has 29 days, no day 30")):
            pg.p.fill("#datetime", bad)
            pg.p.press("#datetime", "Enter")
            pg.wait_status(f'Dates "{bad}" holds an impossible date ({why}')
            assert "still those of all dates" in pg.status() and "error" in pg.p.get_attribute("#status", "class")
            assert pg.p.get_attribute("#datetime", "aria-invalid") == "true"
            assert _no_view(pg.p.url) == _no_view(url) and not sent, sent
        # the service refuses it too: a 4xx with one line for people
        got = pg.p.evaluate("""(async () => { const r = await fetch('api/search?point_id=%s&datetime=2021-02-30',
                                 {headers: {'X-API-Key': '%s'}}); return [r.status, (await r.json()).detail]; })()"""
                            % (pid, KEY))
        assert 400 <= got[0] < 500 and "2021-02-30" in got[1] and "\n" not in got[1], got
        sent.clear()
        _shots(pg, "impossible_date")
        shown = _result_ids(pg)
        # every way to search waits for the dates to be fixed
        pg.p.click("#rerun")
        pg.wait_status("The search was not run: correct the dates or empty the Dates box first")
        loc = points[pid]["location"]
        pg.p.fill("#goto-text", f"{loc['lon']}, {loc['lat']}")
        pg.p.evaluate("document.querySelector('#status').textContent = ''")
        pg.p.click("#goto-search")
        pg.wait_status("The search was not run")
        pg.p.locator("#gallery .card").nth(2).click()
        pg.p.evaluate("document.querySelector('#status').textContent = ''")
        pg.p.click("#details button:has-text('Search from this')")
        pg.wait_status("The search was not run")
        png = _upload_png(points, "scene-a")
        pg.p.set_input_files("#upload", files=[{"name": "field.png", "mimeType": "image/png", "buffer": png}])
        pg.wait_status("The search with field.png was not run")
        assert "then choose the image again" in pg.status()
        pg.p.locator("#gallery .card").nth(3).press("p")
        pg.p.click("#tab-labels")
        pg.p.click("#classify")
        pg.wait_status("Find all was not run")
        assert "2020-02-30" in pg.status() and "error" in pg.p.get_attribute("#status", "class")
        pg.p.wait_for_timeout(300)
        assert not sent, sent
        assert _result_ids(pg) == shown and "dt=" not in pg.p.url and f"q=p:{pid}" in pg.p.url
        # fixed: the search runs with the dates in the box
        pg.p.fill("#datetime", "2021-02-28/..")
        pg.p.press("#datetime", "Enter")
        pg.wait_status("filtered by dates")
        assert sent and "datetime=2021-02-28" in sent[-1].replace("%2F", "/"), sent
        assert "dt=2021-02-28/.." in pg.p.url and pg.p.get_attribute("#datetime", "aria-invalid") is None
        pg.check_clean()
    finally:
        pg.close()
    # a link's impossible date, near= and radius=: each said once; no results, no "click a result"
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}&dt=2021-02-30&near=-95.36,29.75&radius=800")
    try:
        pg.wait_results(10)
        pg.wait_status("filters were left out")
        status = pg.status()
        assert 'the link\'s dates "2021-02-30" were left out: it holds an impossible date' in status, status
        assert status.count("no distance filter") == 1 and "near= and radius= filters were left out" in status, status
        pg.p.fill("#datetime", "2100-01-01/..")
        pg.p.press("#datetime", "Enter")
        pg.wait_status("0 results")
        assert "click a result" not in pg.status(), pg.status()
        _shots(pg, "zero_results")
        pg.check_clean()
    finally:
        pg.close()


def _bare_scene(points) -> list:
    """The ids of the third scene's tiles (a bare GeoTIFF: no date, no collection)."""
    return [i for i, p in points.items() if p["item_id"] not in ("scene-a", "scene-b")]


def _no_view(url: str) -> str:
    """An address without its map view (v=: screenshots at other sizes move it)."""
    from urllib.parse import unquote

    return "&".join(p for p in unquote(url).split("&") if not p.startswith("v="))


def _label_file(path: Path, labels: dict) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": i, "geometry": None, "properties": {"point_id": i, "label": lab}}
        for i, lab in labels.items()]}))
    return path


def test_loading_labels_can_be_undone_and_an_empty_file_changes_nothing(browser, server, tmp_path):
    """A label file replaces the labels there were: Undo (or Back) brings those back, with the labels
    changed since kept; an empty FeatureCollection says it holds no labels and changes nothing."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768), path=f"/?{_labels_link(points, 2)}")
    try:
        pg.p.click("#tab-labels")
        assert pg.p.inner_text("#label-count") == "2 positive, 2 negative"
        url = pg.p.url
        pg.p.set_input_files("#load-labels", str(_label_file(tmp_path / "empty.geojson", {})))
        pg.wait_status("empty.geojson holds no labels")
        assert "nothing was loaded; the current labels are kept" in pg.status()
        assert pg.p.inner_text("#label-count") == "2 positive, 2 negative" and _no_view(pg.p.url) == _no_view(url)
        c = _bare_scene(points)
        pg.p.set_input_files("#load-labels", str(_label_file(tmp_path / "one.geojson", {c[0]: "positive"})))
        pg.wait_status("Loaded 1 label from one.geojson, replacing 4 labels")
        assert pg.p.inner_text("#label-count") == "1 positive, 0 negative" and f"pos={c[0]}" in pg.p.url
        assert pg.p.locator("#status button").inner_text() == "Undo"
        _shots(pg, "loaded_labels_undo")
        pg.p.click("#status button")
        pg.wait_status("Restored 4 labels (the 1 label loaded from one.geojson is gone)")
        assert pg.p.inner_text("#label-count") == "2 positive, 2 negative" and _no_view(pg.p.url) == _no_view(url)
        assert pg.p.locator(".leaflet-labels-pane path").count() == 4   # with their footprints
        # loaded again: Back goes to before the load (its labels with their footprints)
        pg.p.set_input_files("#load-labels", str(_label_file(tmp_path / "two.geojson", {c[1]: "negative"})))
        pg.wait_status("Loaded 1 label from two.geojson, replacing 4 labels")
        assert pg.p.inner_text("#label-count") == "0 positive, 1 negative"
        pg.p.go_back()
        pg.p.wait_for_function("document.querySelector('#label-count').innerText === '2 positive, 2 negative'")
        assert pg.p.locator(".leaflet-labels-pane path").count() == 4 and f"neg={c[1]}" not in pg.p.url
        pg.check_clean()
    finally:
        pg.close()


def test_loading_labels_when_there_are_none_pushes_a_history_entry(browser, server, tmp_path):
    """Re-check P5: with no labels, loading a label file replaced the history entry instead of pushing
    one (set Dates, clear them, load: history.length stayed, and Back skipped the state with no labels
    to the one with the dates).  Loading always pushes now: Back returns to the state before the load."""
    base, points = server
    pid = list(_scene_points(points, "scene-a"))[0]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}")
    try:
        pg.wait_results()
        for dates in ("2019-01-01/..", ""):   # the re-check's steps: a search with dates, then without
            pg.p.fill("#datetime", dates)
            pg.p.press("#datetime", "Enter")
            pg.p.wait_for_load_state("networkidle")
            pg.p.wait_for_timeout(500)
        before_url, n = pg.p.url, pg.p.evaluate("history.length")
        assert "dt=" not in before_url and "pos=" not in before_url, before_url
        pg.p.click("#tab-labels")
        c = _bare_scene(points)
        pg.p.set_input_files("#load-labels", str(_label_file(tmp_path / "one.geojson", {c[0]: "positive"})))
        pg.wait_status("Loaded 1 label from one.geojson")
        assert pg.p.evaluate("history.length") == n + 1 and f"pos={c[0]}" in pg.p.url, pg.p.url
        pg.p.go_back()
        pg.p.wait_for_function("document.querySelector('#label-count').innerText === '0 positive, 0 negative'")
        assert _no_view(pg.p.url) == _no_view(before_url) and pg.p.input_value("#datetime") == ""
        pg.p.go_forward()
        pg.p.wait_for_function("document.querySelector('#label-count').innerText === '1 positive, 0 negative'")
        pg.check_clean()
    finally:
        pg.close()


def _find_all(pg: Page, threshold: str = "0.5") -> dict:
    """Run Find all from the Labels tab; its answer."""
    pg.p.click("#tab-labels")
    pg.p.fill("#threshold", threshold)
    with pg.p.expect_response(lambda r: "/api/classify" in r.url, timeout=120_000) as resp:
        pg.p.click("#classify")
    pg.wait_status("Find all:", timeout=120_000)
    return resp.value.json()


def test_undo_of_clear_labels_brings_back_the_hits_and_keeps_labels_added_since(browser, server):
    """Clear labels removes the labels and the find-all hits made from them; a label added after it
    is said in the status line, and Undo brings back the labels and the hits and keeps the new label
    (as the status line says)."""
    base, points = server
    pid = _bare_scene(points)[3]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}&{_labels_link(points)}")
    try:
        pg.wait_results(10)
        doc = _find_all(pg)
        n = len(doc["features"])
        assert n and pg.p.locator("#hits .card").count() == min(n, 100)
        drawn = pg.p.locator(".leaflet-hits-pane path").count()
        assert drawn
        pg.p.click("#clear-labels")
        pg.wait_status("Cleared 6 labels and the find-all hits")
        assert pg.p.locator("#hits").is_hidden() and pg.p.locator(".leaflet-hits-pane path").count() == 0
        assert pg.p.locator("#findall-export").is_hidden()
        # a new label after the Clear: the status line says what Undo will do now
        pg.p.click("#tab-results")
        labelled = set(_labels_link(points).replace("pos=", "").replace("&neg=", ",").split(","))
        card = next(c for c in pg.p.locator("#gallery .card").all() if c.get_attribute("data-id") not in labelled)
        new = card.get_attribute("data-id")
        card.press("n")
        pg.wait_status("1 label changed since; Undo brings the 6 cleared labels back and keeps that change")
        _shots(pg, "cleared_then_labelled")
        pg.p.click("#status button")
        pg.wait_status("Restored 6 labels and the find-all hits; kept the 1 label changed since")
        pg.p.click("#tab-labels")
        assert pg.p.inner_text("#label-count") == "3 positive, 4 negative" and new in pg.p.url.split("neg=")[1]
        assert pg.p.locator("#hits .card").count() == min(n, 100)
        assert pg.p.locator(".leaflet-hits-pane path").count() == drawn and pg.p.locator("#findall-export").is_visible()
        pg.check_clean()
    finally:
        pg.close()


def test_hit_popup_names_the_label_the_hit_has_now(browser, server):
    """The find-all popup's "(labelled …)" follows the label: gone once the label is removed, the new
    label once it changes (the answer's label is the one it had when Find all ran)."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768), path=f"/?{_labels_link(points)}")
    try:
        doc = _find_all(pg, "0.05")
        pos = _labels_link(points).split("pos=")[1].split("&")[0].split(",")
        hit = next(f for f in doc["features"] if f["id"] in pos)
        hid, loc = hit["id"], points[hit["id"]]["location"]
        pg.p.evaluate(f"rsir.map.setView([{loc['lat']}, {loc['lon']}], 18, {{animate: false}})")
        row = pg.p.locator(f".hit-popup .hit-row[data-id='{hid}']")
        pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
        assert "(labelled positive)" in row.locator("div").first.inner_text()
        row.locator("button", has_text="Positive").click()   # again: the label goes
        pg.p.wait_for_function("!document.querySelector('.hit-popup')")
        pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
        assert "labelled" not in row.locator("div").first.inner_text()
        row.locator("button", has_text="Negative").click()
        pg.p.wait_for_function("!document.querySelector('.hit-popup')")
        pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
        assert "(labelled negative)" in row.locator("div").first.inner_text()
        # open, a label changed elsewhere (the hit's card: P) names the new label
        pg.p.evaluate(f"document.querySelector('#hits .card[data-id=\"{hid}\"]').dispatchEvent("
                      "new KeyboardEvent('keydown', {key: 'p', bubbles: true}))")
        assert "(labelled positive)" in row.locator("div").first.inner_text()
        _shots(pg, "hit_popup_label")
        pg.check_clean()
    finally:
        pg.close()


def test_find_all_messages_read_right_for_one_tile_and_at_threshold_one(browser, server):
    """One labelled tile outside the dates: "1 of the 3 labelled tiles lies outside" (not "lie"); at
    threshold 1 the status does not call the kept positives "at or above probability 1" and advises
    lowering the threshold rather than labelling more."""
    base, points = server
    a = list(_scene_points(points, "scene-a"))[:2]
    b = list(_scene_points(points, "scene-b"))[:1]
    pg = Page(browser, base, size=(1366, 768), path=f"/?pos={','.join(a)}&neg={b[0]}&dt=2021")
    try:
        _find_all(pg)
        status = pg.status()
        assert "1 of the 3 labelled tiles lies outside the filters: the classifier learns from it," in status, status
        pg.p.fill("#datetime", "")
        pg.p.press("#datetime", "Enter")
        doc = _find_all(pg, "1")
        sm = doc["summary"]
        status = pg.status()
        kept, above = sm["positives_kept"], sm["above_threshold"]
        assert kept, sm
        want = (f"Find all: {len(doc['features'])} tile{'s' if len(doc['features']) != 1 else ''}, "
                f"{above or 'none'} at or above probability 1 and {kept} you labelled positive, kept below it")
        assert status.startswith(want), status
        assert "label more tiles" not in status and "lower the threshold" in status, status
        assert "tile(s)" not in status
        _shots(pg, "findall_threshold_one")
        pg.check_clean()
    finally:
        pg.close()


def test_on_a_phone_the_page_does_not_scroll_past_the_app_to_a_blank_area(browser, server):
    """On a phone the panel scrolls on its own; the hidden Load labels input (placed far down the
    Labels tab) made the page itself taller than the screen, so the page scrolled to a blank area
    below the app (a full-page screenshot showed the panel blank under its tabs).  The page is the
    screen's height at every tab, and the Labels tab's last controls are reached in the panel."""
    base, points = server
    pg = Page(browser, base, size=(390, 844), path=f"/?{_labels_link(points)}")
    try:
        pg.p.click("#tab-labels")
        doc = _find_all(pg)
        assert doc["features"] and pg.p.locator("#hits .card").count()
        for tab in ("labels", "results", "scenes", "labels"):
            pg.p.click(f"#tab-{tab}")
            sizes = pg.p.evaluate("[document.documentElement.scrollHeight, innerHeight, document.documentElement.scrollWidth,"
                                  " innerWidth]")
            assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3], (tab, sizes)
        pg.p.evaluate("window.scrollTo(0, 5000)")
        assert pg.p.evaluate("window.scrollY") == 0
        pg.p.locator("#copy-link").scroll_into_view_if_needed()
        box, panel = pg.p.locator("#copy-link").bounding_box(), pg.p.locator("#panel").bounding_box()
        assert panel["y"] <= box["y"] and box["y"] + box["height"] <= panel["y"] + panel["height"] <= 844
        ARTIFACTS.mkdir(exist_ok=True)
        pg.p.screenshot(path=str(ARTIFACTS / "links_phone_labels_full_page_390x844.png"), full_page=True)
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- recheck: history, uploads, links, focus


def _hits_drawn(pg: Page) -> int:
    return pg.p.locator(".leaflet-hits-pane path").count()


def test_back_and_forward_bring_back_exactly_the_hits_of_each_history_entry(browser, server):
    """Back to the page before any search took along the find-all hits of a later search (on the
    map, listed, in the status line, taking map clicks); Back after Clear labels brought back the
    labels but not the hits.  Each history entry now holds the hits shown while it was current:
    none before Find all, the same hits after Forward and after Back over a Clear; and Back leaves
    the panel on the tab the user is on."""
    base, points = server
    pid = _bare_scene(points)[3]
    pg = Page(browser, base, size=(1366, 768), path=f"/?{_labels_link(points)}")
    errs = _api_errors(pg)
    try:
        pg.search_by_id(pid, 10)
        doc = _find_all(pg)
        n = len(doc["features"])
        drawn = _hits_drawn(pg)
        assert n and drawn and pg.p.locator("#hits .card").count() == min(n, 100)
        # Back to before any search: no hits anywhere, nothing to search again, the tab kept
        pg.p.go_back()
        pg.p.wait_for_function("!location.search.includes('q=')")
        pg.p.wait_for_timeout(300)
        assert _hits_drawn(pg) == 0 and pg.p.locator("#hits").is_hidden(), "hits of a later entry are shown"
        assert "Find all" not in pg.status() and pg.p.locator("#findall-export").is_hidden()
        assert pg.p.get_attribute("#tab-labels", "aria-selected") == "true"   # where the user was
        assert pg.p.is_disabled("#rerun")
        _shots(pg, "back_before_find_all")
        pg.p.go_forward()   # the find-all search: its hits again
        pg.p.wait_for_function(f"location.search.includes('p:{pid}')")
        pg.wait_results(10)
        pg.p.wait_for_function(f"document.querySelectorAll('.leaflet-hits-pane path').length === {drawn}")
        assert pg.p.locator("#hits .card").count() == min(n, 100)
        # Clear labels, then Back: the labels and the hits, as the status line promises
        pg.p.click("#tab-labels")
        pg.p.click("#clear-labels")
        assert "Undo (or Back) brings them back" in pg.status() and _hits_drawn(pg) == 0
        pg.p.go_back()
        pg.p.wait_for_function("location.search.includes('pos=')")
        pg.p.wait_for_function(f"document.querySelectorAll('.leaflet-hits-pane path').length === {drawn}")
        assert pg.p.inner_text("#label-count") == "3 positive, 3 negative"
        assert pg.p.locator("#hits .card").count() == min(n, 100) and pg.p.locator("#findall-export").is_visible()
        assert pg.p.get_attribute("#tab-labels", "aria-selected") == "true"
        pg.p.go_forward()   # the Clear again: no hits
        pg.p.wait_for_function("!location.search.includes('pos=')")
        pg.p.wait_for_timeout(200)
        assert _hits_drawn(pg) == 0 and pg.p.locator("#hits").is_hidden()
        _shots(pg, "forward_to_clear")
        pg.p.go_back()
        pg.p.wait_for_function("location.search.includes('pos=')")
        pg.p.go_back()   # before any search again
        pg.p.wait_for_function("!location.search.includes('q=')")
        pg.p.wait_for_timeout(300)
        assert _hits_drawn(pg) == 0
        # a click on a hit's place searches (no stale popup)
        hit = next(f for f in doc["features"] if f["id"] in points)
        loc = points[hit["id"]]["location"]
        pg.p.evaluate(f"rsir.map.setView([{loc['lat']}, {loc['lon']}], 17, {{animate: false}})")
        pg.p.wait_for_timeout(200)
        pg.p.mouse.click(*pg.lonlat_xy(loc["lon"], loc["lat"]))
        pg.wait_results()
        assert pg.p.locator(".hit-popup").count() == 0 and _hits_drawn(pg) == 0
        assert not errs, errs
        pg.check_clean()
    finally:
        pg.close()


def test_a_refused_upload_keeps_the_results_and_the_address(browser, server):
    """An upload the service refuses (not an image) wiped the results and dropped q= from the
    address; now the refusal is said and what was shown stays (the same cards, the same link)."""
    base, points = server
    pid = _bare_scene(points)[2]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}")
    try:
        pg.wait_results(10)
        shown, url = _result_ids(pg), pg.p.url
        pg.p.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                                "buffer": b"this is not an image\n" * 20}])
        pg.wait_status("notes.png was not searched")
        assert "error" in pg.p.get_attribute("#status", "class")
        assert "The results shown are still those of the previous search" in pg.status()
        assert _result_ids(pg) == shown and _no_view(pg.p.url) == _no_view(url) and f"q=p:{pid}" in pg.p.url
        assert pid in pg.p.inner_text("#query")
        _shots(pg, "refused_upload")
        pg.check_clean()
    finally:
        pg.close()


def test_labels_of_another_model_keep_the_served_model_name_in_the_message(browser, server, tmp_path):
    """The page cut server paths with the words after them ("…but the index; label tiles…"): the
    model the index holds is the one fact needed, and it is said (by the API too, paths hidden)."""
    import requests

    from rsir_stac.redact import redact_paths

    base, points = server
    ids = [str(uuid.uuid4()) for _ in range(2)]  # tiles of an index of another model, not here
    doc = {"type": "FeatureCollection", "rsir:model_id": "some-other-model", "features": [
        {"type": "Feature", "id": i, "geometry": None, "properties": {"point_id": i, "label": "positive"}} for i in ids]}
    info = requests.get(f"{base}/api/info", headers={"X-API-Key": KEY}, timeout=30).json()
    model = info["model_id"]
    r = requests.post(f"{base}/api/labels", json={"labels": doc}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 404, r.text
    detail = r.json()["detail"]
    assert f"holds model {model}" in detail and f"holds model {model}" in redact_paths(detail), detail
    path = tmp_path / "other.geojson"
    path.write_text(json.dumps(doc))
    pg = Page(browser, base, size=(1366, 768))
    try:
        pg.p.click("#tab-labels")
        pg.p.set_input_files("#load-labels", str(path))
        pg.wait_status("some-other-model")
        status = pg.status()
        assert f"the index, which holds model {model}, has no tile" in status, status
        assert "open the index the labels came from" in status, status
        pg.check_clean()
    finally:
        pg.close()


def test_a_link_to_a_tile_no_longer_in_the_index_searches_at_its_place(browser, server):
    """A link's qid gone from the index (ids change on a new ingest) was a dead end, and Search again
    repeated it; the link's place (q=at:) still holds: the page searches there and says so."""
    base, points = server
    loc = points[_bare_scene(points)[4]]["location"]
    gone = "00000000-0000-0000-0000-000000000000"
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=at:{loc['lon']},{loc['lat']}&qid={gone}")
    try:
        pg.wait_results()
        pg.wait_status(f"the tile the link named (qid={gone}) is no longer in the index")
        assert gone not in pg.p.url and "qid=" in pg.p.url   # the tile found there now
        assert re.search(PLACE_QUERY, pg.p.inner_text("#query"))
        pg.p.click("#rerun")
        pg.wait_results()
        assert "error" not in (pg.p.get_attribute("#status", "class") or "")
        _shots(pg, "stale_qid")
        pg.check_clean()
    finally:
        pg.close()
    # a labels link naming a tile gone from the index: which one, and what to do (not "search again")
    real = next(iter(_scene_points(points, "scene-a")))
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=labels&pos={real},{gone}")
    try:
        pg.wait_status(f"Tile {gone} is no longer in the index: remove its label in the Labels tab, then refine again.")
        pg.check_clean()
    finally:
        pg.close()


def test_bad_link_values_are_clamped_or_refused_with_a_note_and_left_out_of_the_address(browser, server):
    """k=100000 went to the service as is (its raw 422 text), k=-5 became 10 without a word, a
    malformed box or polygon was dropped silently, pos=garbage stayed in the address and v=99/999/999
    opened a blank map.  Each is now clamped or left out with a note, and the address drops it."""
    base, points = server
    pid = _bare_scene(points)[1]
    stray = "00000000-0000-0000-0000-00000000abcd"
    errs = _api_errors(pg_ := Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}&k=100000&bbox=1,2,3&sel={stray}"))
    try:
        pg_.wait_results()
        status = pg_.status()
        assert "k=100000 is over the most results a search gives, so 100 are shown" in status, status
        assert 'bbox="1,2,3" was left out' in status and "less than or equal" not in status
        assert f"the selected tile {stray} is not among these results" in status, status
        assert "k=100&" in pg_.p.url + "&" and "bbox=" not in pg_.p.url and pg_.p.input_value("#k") == "100"
        assert "sel=" not in pg_.p.url
        assert not errs, errs
    finally:
        pg_.close()
    pg = Page(browser, base, size=(1366, 768), path="/?k=-5&poly=1,2;3,4&pos=garbage&v=99/999/999")
    try:
        status = pg.status()
        for part in ("k=-5 is not a number of results from 1 to 100, so 10 are shown", 'poly="1,2;3,4" was left out',
                     'pos= value "garbage" is not a tile id', 'map view v="99/999/999" was left out'):
            assert part in status, (part, status)
        assert "error" in pg.p.get_attribute("#status", "class")
        for gone in ("k=", "poly=", "pos=", "garbage", "v=99"):
            assert gone not in pg.p.url, pg.p.url
        assert 0 < pg.p.evaluate("rsir.map.getZoom()") <= 24 and pg.p.inner_text("#label-count") == "0 positive, 0 negative"
        _shots(pg, "bad_link_values")
        pg.check_clean()
    finally:
        pg.close()


def test_a_link_zoom_between_half_steps_is_written_as_the_zoom_shown(browser, server):
    """Re-check P3: v=ZOOM between the map's half steps (16.25) is drawn at the nearest one (16.5) and the
    notices name that one, but the address kept v=16.25.  It is rewritten to the zoom shown, in place
    (no new history entry); so is a zoom past the map's deepest (v=24)."""
    base, points = server
    loc = next(iter(points.values()))["location"]
    lengths = set()
    for given, shown in (("16.5", 16.5), ("16.25", 16.5), ("16.75", 17), ("24", 22)):
        pg = Page(browser, base, size=(1366, 768), path=f"/?v={given}/{loc['lat']}/{loc['lon']}")
        try:
            assert pg.p.evaluate("rsir.map.getZoom()") == shown
            pg.p.wait_for_function(f"decodeURIComponent(location.search).includes('v={shown:g}/')", timeout=5_000)
            assert pg.p.url.count("v=") == 1, pg.p.url
            lengths.add(pg.p.evaluate("history.length"))   # as many entries as a link of a half step gives
            pg.check_clean()
        finally:
            pg.close()
    assert len(lengths) == 1, lengths


def test_focus_stays_on_a_sensible_element_after_the_main_actions(browser, server):
    """Search from this, Refine, Find all and Clear labels left the keyboard focus on <body> (the next
    Tab started again at the top of the page)."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{_bare_scene(points)[0]}&{_labels_link(points)}")
    focus = "(document.activeElement && (document.activeElement.id || document.activeElement.className))"
    try:
        pg.wait_results(10)
        pg.p.locator("#gallery .card").nth(2).click()
        pg.p.locator("#details button", has_text="Search from this").focus()
        pg.p.keyboard.press("Enter")
        pg.p.wait_for_function("document.activeElement.matches('#gallery .card')")
        pg.p.click("#tab-labels")
        pg.p.focus("#refine")
        pg.p.keyboard.press("Enter")
        pg.p.wait_for_function("document.activeElement.matches('#gallery .card')")
        pg.p.click("#tab-labels")
        pg.p.fill("#threshold", "0.5")
        pg.p.focus("#classify")
        pg.p.keyboard.press("Enter")
        pg.wait_status("Find all:", timeout=120_000)
        assert pg.p.evaluate("document.activeElement.id") == "classify", pg.p.evaluate(focus)
        pg.p.focus("#clear-labels")
        pg.p.keyboard.press("Enter")
        pg.wait_status("Cleared 6 labels")
        assert pg.p.evaluate("document.activeElement.matches('#status button[data-undo]')"), pg.p.evaluate(focus)
        pg.p.keyboard.press("Enter")   # Undo, from the keyboard
        pg.wait_status("Restored 6 labels")
        assert pg.p.evaluate("document.activeElement.id") == "clear-labels"
        pg.check_clean()
    finally:
        pg.close()


def test_wording_after_undo_and_a_refused_dates_box_is_marked_where_it_is(browser, server):
    """ "Restored 6 labels, the find-all hits." lacked its "and"; a refused Dates box had
    aria-invalid but looked like any other (only the status line said it)."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768), path=f"/?{_labels_link(points)}")
    try:
        _find_all(pg)
        pg.p.click("#clear-labels")
        pg.p.click("#status button")
        pg.wait_status("Restored 6 labels and the find-all hits.")
        plain = pg.p.evaluate("getComputedStyle(document.querySelector('#datetime')).borderTopColor")
        pg.p.fill("#datetime", "2021-02-30")
        pg.p.press("#datetime", "Enter")
        pg.wait_status("no day 30")
        assert pg.p.get_attribute("#datetime", "aria-invalid") == "true"
        marked = pg.p.evaluate("getComputedStyle(document.querySelector('#datetime')).borderTopColor")
        assert marked != plain, (plain, marked)
        _shots(pg, "dates_marked")
        pg.p.fill("#datetime", "")
        pg.p.press("#datetime", "Enter")
        pg.p.wait_for_function("!document.querySelector('#datetime').hasAttribute('aria-invalid')")
        assert pg.p.evaluate("getComputedStyle(document.querySelector('#datetime')).borderTopColor") == plain
        pg.check_clean()
    finally:
        pg.close()


def test_results_out_of_distance_order_by_the_per_scene_cap_are_explained(browser, server):
    """The service's soft cap (at most 3 tiles per scene first while other scenes have results) put
    farther tiles of other scenes before closer ones of the same scene, with no word; the page now
    says from which rank the order is not by distance, and why (and nothing when it is)."""
    import requests

    base, points = server

    def distances(pid, k):
        r = requests.get(f"{base}/api/search", params={"point_id": pid, "k": k}, headers={"X-API-Key": KEY}, timeout=30)
        return [f["properties"]["distance"] for f in r.json()["features"]]

    def first_back(d):
        return next((i for i in range(1, len(d)) if d[i] < max(d[:i]) - 1e-9), None)

    pid, at = next((p, first_back(distances(p, 20))) for p in points if first_back(distances(p, 20)) is not None)
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{pid}&k=20")
    try:
        pg.wait_results(20)
        pg.wait_status(f"from rank {at + 1} on, the results are not in distance order: beyond 3 tiles of one scene a "
                       "tile ranks as if 30 % farther, so nearly as near tiles of other scenes come first")
        _shots(pg, "per_scene_cap")
        pg.p.select_option("#k", "5")
        pg.wait_results(5)
        assert first_back(distances(pid, 5)) is None   # the first ranks, one per scene: in order
        assert "not in distance order" not in pg.status(), pg.status()
        pg.check_clean()
    finally:
        pg.close()
