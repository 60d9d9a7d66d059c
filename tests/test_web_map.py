"""The map of the map page (rsir_stac/web/map.js, style.css) in headless Chromium against `serve`.

Reuses test_web_e2e's browser, its 3-scene index (``server``) and its ``Page``; ``stack_server``
serves a place imaged on three dates (as NAIP 2009/2015/2020) and one small scene ~400 km away.
Asserts on what is drawn: pixels of screenshots, element boxes, computed styles and the map's state.
"""

from __future__ import annotations

import re

import colorsys
import io
import json
import math
from pathlib import Path

import pytest

from tests.test_web_e2e import GEOTIFF, KEY, PLACE_QUERY, Page, _scene_points, browser, server  # noqa: F401 (fixtures)

STACK = {"2009-08-18": 1, "2015-09-26": 2, "2020-08-31": 3}   # date -> seed
STACK_ID = "naip_m_4709963_se_14_1_{}-b3278a42796e"           # long ids, as NAIP's
FAR_ORIGIN = (500000.0, 3700000.0)                              # ~400 km north of the stack


def _stack_item(root: Path, item_id: str, date: str, tif: Path) -> str:
    item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "naip", "geometry": None,
            "properties": {"datetime": f"{date}T00:00:00Z"}, "links": [],
            "assets": {"image": {"href": tif.name, "type": GEOTIFF, "roles": ["data"]}}}
    path = root / f"{item_id}.json"
    path.write_text(json.dumps(item))
    return str(path)


def build_stack_index(root: Path, bundle) -> Path:
    """Three dates of one 256 m square (16 tiles each) and a one-tile scene far away (49 tiles)."""
    from rsir_stac.ingest import IngestOptions, ingest
    from tests.conftest import make_geotiff

    root.mkdir(parents=True, exist_ok=True)
    sources = []
    for date, seed in STACK.items():
        item_id = STACK_ID.format(date.replace("-", ""))
        tif = make_geotiff(root / f"{item_id}.tif", width=256, height=256, seed=seed)
        sources.append(_stack_item(root, item_id, date, tif))
    far = make_geotiff(root / "far.tif", width=64, height=64, origin=FAR_ORIGIN, seed=9)
    sources.append(_stack_item(root, "far-scene", "2020-08-31", far))
    report = ingest(sources, index=str(root / "idx"), model=bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 49, report
    return root / "idx"


@pytest.fixture(scope="module")
def stack_server(tmp_path_factory, tiny_bundle):
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import serve_in_thread

    path = build_stack_index(tmp_path_factory.mktemp("stack"), tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx:
        points = {p.id: p.payload for p in idx.store.iter_points(with_vectors=False)}
        with serve_in_thread(create_app(idx, api_key=KEY)) as base:
            yield base, points


class _Touch:
    """The browser, its new contexts with a touch screen (as a phone's)."""

    def __init__(self, browser):
        self.browser = browser

    def new_context(self, **kw):
        return self.browser.new_context(has_touch=True, is_mobile=True, **kw)


# --------------------------------------------------------------------------- helpers


def _map_box(pg):
    return pg.p.locator("#map").bounding_box()


def _centre(pg):
    return pg.p.evaluate("(() => { const c = rsir.map.getCenter(); return [c.lng, c.lat]; })()")


def _latlng_at(pg, x, y):
    """The lon/lat under page point (x, y)."""
    box = _map_box(pg)
    return pg.p.evaluate(f"(() => {{ const l = rsir.map.containerPointToLatLng([{x - box['x']}, {y - box['y']}]); "
                         "return [l.lng, l.lat]; })()")


def _touch_drag(cdp, x0, y0, x1, y1, steps=10):
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for i in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
            {"x": x0 + (x1 - x0) * i / steps, "y": y0 + (y1 - y0) * i / steps}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _shot(pg):
    from PIL import Image

    return Image.open(io.BytesIO(pg.p.screenshot())).convert("RGB")


def _hue(rgb):
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    return h * 360, s, v


def _rgb(css: str):
    """'rgb(1, 2, 3)' or '#010203' as a tuple."""
    css = css.strip()
    if css.startswith("#"):
        return tuple(int(css[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(float(v)) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def _tip_lines(pg):
    pg.p.wait_for_selector(".leaflet-tooltip", timeout=5_000)
    return pg.p.locator(".leaflet-tooltip").last.inner_text().split("\n")


def _stack_ids(points, date):
    return [i for i, p in points.items() if p["item_id"] == STACK_ID.format(date.replace("-", ""))]


def _stack_centre(points):
    locs = [p["location"] for i, p in points.items() if p["item_id"] != "far-scene"]
    return (sum(q["lon"] for q in locs) / len(locs), sum(q["lat"] for q in locs) / len(locs))


def _inside(inner, outer, slack=0.5):
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


def _into_popup_view(loc):
    """Scroll the popup's own list (it scrolls when taller than the map) so that `loc` is seen."""
    loc.evaluate("""e => { const c = e.closest('.leaflet-popup-content');
      const r = e.getBoundingClientRect(), cr = c.getBoundingClientRect();
      if (r.bottom > cr.bottom) c.scrollTop += r.bottom - cr.bottom;
      if (r.top < cr.top) c.scrollTop -= cr.top - r.top; }""")


MAP_MODULE = "const m = await import('/static/map.js');"


# --------------------------------------------------------------------------- drawing with a finger


def test_touch_drag_draws_a_box_and_pans_in_search_mode(browser, server):
    """On a touch screen, Draw box then a finger drag sets the box (the map stays still); in Search
    mode the same drag pans the map and sets no area."""
    base, _ = server
    pg = Page(_Touch(browser), base, size=(390, 844))
    try:
        cdp = pg.ctx.new_cdp_session(pg.p)
        box = _map_box(pg)
        x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.35
        x1, y1 = box["x"] + box["width"] * 0.65, box["y"] + box["height"] * 0.7
        want = _latlng_at(pg, x0, y0) + _latlng_at(pg, x1, y1)
        before = _centre(pg)
        pg.p.tap("#mode-box")
        _touch_drag(cdp, x0, y0, x1, y1)
        pg.p.wait_for_function("document.querySelector('#area-text').innerText.startsWith('box ')", timeout=10_000)
        assert _centre(pg) == before, "the map moved under the finger drawing the box"
        got = [float(v) for v in pg.p.inner_text("#area-text")[4:].split(",")]
        w, s, e, n = min(want[0], want[2]), min(want[1], want[3]), max(want[0], want[2]), max(want[1], want[3])
        assert got == pytest.approx([w, s, e, n], abs=5e-5), (got, want)
        assert "bbox=" in pg.p.url
        assert pg.p.get_attribute("#mode-search", "aria-pressed") == "true"   # back to Search once drawn
        # Search mode: the same drag pans the map, and the area stays
        area = pg.p.inner_text("#area-text")
        before = _centre(pg)
        _touch_drag(cdp, x0, y0, x1, y1)
        pg.p.wait_for_timeout(500)
        assert _centre(pg) != before, "a finger drag in Search mode did not pan the map"
        assert pg.p.inner_text("#area-text") == area
        pg.shots("map_touch_box")
        pg.check_clean()
    finally:
        pg.close()


def test_mouse_shift_drag_draws_a_box_and_letting_go_outside_draws_none(browser, server):
    """With the box on pointer events the mouse keeps its ways: shift-drag in Search mode draws a
    box; a Draw box drag let go outside the map draws none."""
    base, _ = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        box = _map_box(pg)
        x0, y0 = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4
        pg.p.click("#mode-box")
        pg.p.mouse.move(x0, y0)
        pg.p.mouse.down()
        pg.p.mouse.move(box["x"] + box["width"] + 150, y0 + 40, steps=6)   # over the panel
        pg.p.mouse.up()
        pg.p.wait_for_timeout(300)
        assert pg.p.inner_text("#area-text") == "anywhere"
        assert pg.p.locator(".leaflet-overlay-pane path").count() == 0     # the rubber band is gone
        pg.p.click("#mode-search")
        before = _centre(pg)
        pg.p.keyboard.down("Shift")
        pg.p.mouse.move(x0, y0)
        pg.p.mouse.down()
        pg.p.mouse.move(x0 + 80, y0 + 60, steps=6)
        pg.p.mouse.up()
        pg.p.keyboard.up("Shift")
        pg.p.wait_for_function("document.querySelector('#area-text').innerText.startsWith('box ')", timeout=10_000)
        assert _centre(pg) == before
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- the hover label


def test_hover_names_the_scene_drawn_and_the_dates_under_it(browser, stack_server):
    """Over three dates of one place the label names the scene the imagery draws and a click
    searches (the newest, or the newest the Dates filter keeps) and says how many dates lie under it."""
    base, points = stack_server
    lon, lat = _stack_centre(points)
    pg = Page(browser, base, size=(1366, 768))
    try:
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}})")
        x, y = pg.lonlat_xy(lon + 0.0003, lat + 0.0002)   # between tile centres, on the scenes only
        pg.p.mouse.move(x, y)
        lines = _tip_lines(pg)
        assert lines[0] == f"{STACK_ID.format('20200831')} · 2020-08-31 · 16 tiles", lines
        assert lines[1] == "2 other dates under it: 2015-09-26, 2009-08-18", lines
        pg.shots("map_hover_stack")   # ends at another window size: the place is found again
        x, y = pg.lonlat_xy(lon + 0.0003, lat + 0.0002)
        # with a Dates filter the imagery and a click take 2015: so does the label
        pg.p.fill("#datetime", "2015")
        pg.p.press("#datetime", "Enter")
        pg.p.mouse.move(x + 40, y + 30)
        pg.p.mouse.move(x, y)
        lines = _tip_lines(pg)
        assert lines[0] == f"{STACK_ID.format('20150926')} · 2015-09-26 · 16 tiles", lines
        assert lines[1] == "2 more left out by the dates or collections", lines
        pg.p.mouse.click(x, y)   # the scene a click searches is the one named
        pg.wait_results()
        assert STACK_ID.format("20150926") in pg.p.inner_text("#query")
        pg.check_clean()
    finally:
        pg.close()


def test_enter_on_the_focused_map_searches_at_the_centre_of_the_view(browser, stack_server):
    """Re-check: the map is focusable and says "click a place to search", but Enter and Space on
    it did nothing; a keyboard user had to type a place.  Now Enter (or Space) searches at the
    centre of the view, after the arrow keys have moved it there."""
    base, points = stack_server
    pg = Page(browser, base, size=(1366, 768))
    try:
        lon, lat = _stack_centre(points)
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}})")
        pg.p.focus("#map")
        assert "press Enter to search" in pg.p.get_attribute("#map", "aria-label")
        pg.p.keyboard.press("Enter")
        pg.wait_results()
        assert re.search(PLACE_QUERY, pg.p.inner_text("#query"))
        query_id = pg.p.evaluate("document.querySelector('#query .id').textContent")
        loc = points[query_id]["location"]
        assert abs(loc["lon"] - lon) < 0.002 and abs(loc["lat"] - lat) < 0.002, (loc, lon, lat)
        first = pg.p.url
        assert "at:" in first, first
        pg.p.focus("#map")
        pg.p.keyboard.press("ArrowRight")   # Leaflet pans; Space then searches at the new centre
        pg.p.wait_for_timeout(400)
        centre = pg.p.evaluate("(() => { const c = rsir.map.getCenter(); return [c.lng, c.lat]; })()")
        assert centre[0] > lon
        pg.p.keyboard.press(" ")
        pg.p.wait_for_function(f"location.href !== {json.dumps(first)}", timeout=30_000)
        pg.wait_results()
        at = pg.p.url.split("at:", 1)[1].split("&", 1)[0].replace("%2C", ",").split(",")
        assert abs(float(at[0]) - centre[0]) < 1e-4 and abs(float(at[1]) - centre[1]) < 1e-4, (at, centre)
        pg.check_clean()
    finally:
        pg.close()


def test_hover_label_stays_inside_the_map_on_a_phone(browser, stack_server):
    """A long scene name wraps, and the label is moved inside the map near each of its edges."""
    base, points = stack_server
    lon, lat = _stack_centre(points)
    pg = Page(browser, base, size=(390, 844))
    try:
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 19, {{animate: false}})")   # the scene fills the map
        box = _map_box(pg)
        for fx, fy in ((0.45, 0.5), (0.55, 0.5), (0.5, 0.04), (0.5, 0.85), (0.03, 0.3), (0.97, 0.6)):
            pg.p.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            pg.p.wait_for_selector(".leaflet-tooltip", timeout=5_000)
            tip = pg.p.locator(".leaflet-tooltip").last.bounding_box()
            assert _inside(tip, box), ((fx, fy), tip, box)
        pg.p.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
        pg.shots("map_hover_phone")
        pg.check_clean()
    finally:
        pg.close()


def test_leaving_a_drawing_mode_gives_back_the_status_it_replaced(browser, stack_server):
    """The status went blank after Draw box then Search: the search's summary was lost to the hint."""
    base, points = stack_server
    lon, lat = _stack_centre(points)
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=at:{lon},{lat}")
    try:
        pg.wait_results()
        before = pg.status()
        assert before
        pg.p.click("#mode-box")
        pg.wait_status("Drag a box on the map")
        pg.p.click("#mode-search")
        assert pg.status() == before, (pg.status(), before)
        pg.check_clean()
    finally:
        pg.close()


def test_a_scene_label_a_tap_opened_does_not_stay_over_the_map(browser, stack_server):
    """Analyst trial: on a phone, the scene label a tap opened stayed over the middle of the map,
    covering the query tile and the rank badges, until something else was tapped."""
    base, points = stack_server
    lon, lat = _stack_centre(points)
    pg = Page(_Touch(browser), base, size=(390, 844))
    try:
        assert pg.p.evaluate("matchMedia('(hover: none)').matches")
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}})")
        x, y = pg.lonlat_xy(lon + 0.0003, lat + 0.0002)
        pg.p.touchscreen.tap(x, y)
        pg.wait_results()
        pg.p.wait_for_function("!document.querySelector('.leaflet-tooltip.scene-tip')", timeout=8_000)
        pg.check_clean()
    finally:
        pg.close()


# --------------------------------------------------------------------------- readouts and colours


def test_coordinates_box_shows_only_while_the_pointer_is_on_the_map(browser, server):
    base, _ = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        coords = pg.p.locator(".leaflet-control-container .coords")
        assert coords.count() == 1 and not coords.is_visible(), "an empty coordinates box is drawn"
        box = _map_box(pg)
        pg.p.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert coords.is_visible()
        lon, lat = (float(v) for v in coords.inner_text().split(","))
        want = _latlng_at(pg, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert (lon, lat) == pytest.approx(want, abs=1e-5)
        pg.p.mouse.move(box["x"] + box["width"] + 50, box["y"] + 50)   # off the map, over the panel
        assert not coords.is_visible()
        pg.check_clean()
    finally:
        pg.close()


def test_scene_dots_are_drawn_orange_as_the_status_says(browser, server):
    """Zoomed out, scenes are dots the status line calls orange: their fill is opaque orange, not
    a see-through orange that reads dark brown on the dark map."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        pg.p.evaluate("rsir.map.setZoom(8, {animate: false})")
        pg.p.wait_for_function("document.querySelectorAll('.leaflet-scenes-pane path').length === 6", timeout=10_000)
        pg.p.wait_for_timeout(300)
        scenes = pg.p.evaluate("fetch('/api/scenes', {headers: {'X-API-Key': sessionStorage.getItem('rsir-key')}})"
                               ".then(r => r.json())")
        w, s, e, n = scenes["features"][0]["properties"]["bbox"]
        x, y = pg.lonlat_xy((w + e) / 2, (s + n) / 2)
        img = _shot(pg)
        rgb = img.getpixel((round(x), round(y)))
        h, sat, v = _hue(rgb)
        assert 20 <= h <= 40 and sat > 0.7 and v > 0.85, (rgb, "the dot is not orange")
        pg.check_clean()
    finally:
        pg.close()


def test_query_and_negative_colours_differ_and_the_legend_shows_what_is_drawn(browser, server):
    """The query is not the negatives' red; the legend's swatches are the map's colours (open on a
    wide map, a button on a phone); the query thumbnail has the query's colour."""
    base, points = server
    pg = Page(browser, base, size=(1366, 768))
    try:
        colours = pg.p.evaluate(f"(async () => {{ {MAP_MODULE} return m.COLOURS; }})()")
        hq, _, _ = _hue(_rgb(colours["query"]))
        hn, _, _ = _hue(_rgb(colours["negative"]))
        assert min(abs(hq - hn), 360 - abs(hq - hn)) > 40, colours
        for kind in ("query", "result", "selected", "positive", "negative", "hit"):
            others = [colours[k] for k in ("query", "result", "selected", "positive", "negative", "hit") if k != kind]
            assert colours[kind] not in others, (kind, colours)
        legend = pg.p.locator(".leaflet-control-container .map-legend")
        assert legend.count() == 1 and legend.get_attribute("open") is not None
        assert _inside(legend.bounding_box(), _map_box(pg))
        for kind in ("query", "result", "selected", "positive", "negative", "hit"):
            sw = legend.locator(f".sw.{kind}")
            assert sw.is_visible(), kind
            assert _rgb(sw.evaluate("e => getComputedStyle(e).borderTopColor")) == _rgb(colours[kind]), kind
        assert "Negative label" in legend.inner_text() and "Query tile" in legend.inner_text()
        pid = next(iter(_scene_points(points, "scene-a")))
        pg.search_by_id(pid, 10)
        border = pg.p.locator("#query img").evaluate("e => getComputedStyle(e).borderTopColor")
        assert _rgb(border) == _rgb(colours["query"])
        pg.shots("map_legend")
    finally:
        pg.close()
    pg = Page(browser, base, size=(390, 844))
    try:
        legend = pg.p.locator(".map-legend")
        assert legend.get_attribute("open") is None and not legend.locator("ul").is_visible()
        legend.locator("summary").click()
        assert legend.locator("ul").is_visible() and pg.p.inner_text("#area-text") == "anywhere"   # no search
        pg.check_clean()
    finally:
        pg.close()
    # a tablet's short map (700 x 900 window: a map under 480 px high): closed too (page trial: it covered a third
    # of the map and the best result's badge)
    pg = Page(browser, base, size=(700, 900))
    try:
        assert _map_box(pg)["height"] < 480, _map_box(pg)
        assert pg.p.locator(".map-legend").get_attribute("open") is None
    finally:
        pg.close()
    # a wide window made a phone's (the checklist's screenshots: it stayed open over most of the map): closed
    pg = Page(browser, base)
    try:
        assert pg.p.locator(".map-legend").get_attribute("open") is not None
        pg.p.set_viewport_size({"width": 390, "height": 844})
        pg.p.evaluate("rsir.map.invalidateSize({animate: false})")
        pg.p.wait_for_timeout(300)
        assert pg.p.locator(".map-legend").get_attribute("open") is None
    finally:
        pg.close()


# --------------------------------------------------------------------------- framing and hits


def test_one_far_result_is_left_out_of_the_view_and_indicated(browser, stack_server):
    """A result ~400 km away does not zoom the view out to it: fitSearch frames the query and the
    bulk of the results, and "1 result outside the view · Show all" brings it in."""
    base, points = stack_server
    far = next(i for i, p in points.items() if p["item_id"] == "far-scene")
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{q}&k=50")
    try:
        pg.wait_results(48)   # every other tile: the far one among them
        assert far in pg.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)")
        pg.p.evaluate("(async () => { const m = await import('/static/framing.js'); m.fitSearch(); })()")
        pg.p.wait_for_timeout(300)
        view = pg.p.evaluate("(() => { const b = rsir.map.getBounds(); return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
        assert view[2] - view[0] < 0.05 and view[3] - view[1] < 0.05, view   # the place, not the state
        for i, p in points.items():
            inside = view[0] <= p["location"]["lon"] <= view[2] and view[1] <= p["location"]["lat"] <= view[3]
            assert inside == (i != far), (i, p["item_id"])
        button = pg.p.locator(".leaflet-control-container button.offscreen")
        pg.p.wait_for_function("(() => { const b = document.querySelector('button.offscreen'); return b && !b.hidden; })()",
                               timeout=5_000)
        assert button.inner_text() == "1 result outside the view · Show all"
        assert _inside(button.bounding_box(), _map_box(pg))
        pg.shots("map_far_result")
        button.click()
        pg.p.wait_for_timeout(400)
        loc = points[far]["location"]
        assert pg.p.evaluate(f"rsir.map.getBounds().contains([{loc['lat']}, {loc['lon']}])")
        assert button.is_hidden()
        pg.check_clean()
    finally:
        pg.close()


def test_a_query_far_from_all_its_results_frames_the_results_not_a_blank_state(browser, stack_server):
    """Re-check: a search from a small scene far from its results framed the query and all the
    results together, a view ~400 km wide in which no footprint is a pixel (a blank map). Now the
    view is the best result's group, where the tiles can be seen."""
    base, points = stack_server
    far = next(i for i, p in points.items() if p["item_id"] == "far-scene")
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{far}&k=50")
    try:
        pg.wait_results(48)
        pg.p.evaluate("(async () => { const m = await import('/static/framing.js'); m.fitSearch(); })()")
        pg.p.wait_for_timeout(300)
        view = pg.p.evaluate("(() => { const b = rsir.map.getBounds(); return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
        assert view[2] - view[0] < 0.05 and view[3] - view[1] < 0.05, view   # the stack, not 400 km
        stack = [p["location"] for i, p in points.items() if i != far]
        assert all(view[0] <= c["lon"] <= view[2] and view[1] <= c["lat"] <= view[3] for c in stack)
        # a footprint is drawn at a visible size
        px = pg.p.evaluate("""(() => { let m = 0; rsir.map.eachLayer((l) => {
            if (l instanceof L.Polygon && l.options.pane === 'results') {
              const b = l.getBounds(), a = rsir.map.latLngToContainerPoint(b.getSouthWest()),
                    c = rsir.map.latLngToContainerPoint(b.getNorthEast());
              m = Math.max(m, Math.abs(c.x - a.x)); } }); return m; })()""")
        assert px >= 20, px
        pg.check_clean()
    finally:
        pg.close()


def test_the_best_result_is_never_framed_out(browser, stack_server):
    """Re-check: a link to a small far scene framed results 4-10 in the other place and hid the
    query and results 1-3: framing read the map's result layers as if in rank order, and they are
    drawn worst first.  Here the best result is the far tile, the other eleven are in the stack,
    and no query is drawn (as when a link's query tile arrives after its answer)."""
    base, points = stack_server
    far = next(i for i, p in points.items() if p["item_id"] == "far-scene")
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{q}&k=11")
    try:
        pg.wait_results(11)
        view = pg.p.evaluate("""(async (far) => {
            const api = await import('/static/api.js'), res = await import('/static/results.js');
            const framing = await import('/static/framing.js');
            const mine = await api.api(api.apiUrl('search', { point_id: far, k: 1, include_query: true }));
            const doc = { features: res.resultFeatures().map((f) => Object.assign({}, f,
                { properties: Object.assign({}, f.properties, { rank: f.properties.rank + 1 }) })) };
            doc.features.unshift(Object.assign({}, mine.features[0],
                { properties: Object.assign({}, mine.features[0].properties, { rank: 1 }) }));
            res.showResults(doc, { onSelect: () => {} });
            res.queryLayer.clearLayers();
            framing.fitSearch();
            await new Promise((r) => setTimeout(r, 300));
            const b = rsir.map.getBounds();
            return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
        })""", far)
        loc = points[far]["location"]
        assert view[0] <= loc["lon"] <= view[2] and view[1] <= loc["lat"] <= view[3], (view, loc)
        assert view[2] - view[0] < 0.05, view   # the far tile's place, not both places at once
    finally:
        pg.close()


def _hit_over_a_result(pg, hits):
    """A hit (id, page x, y) whose footprint there also lies over a result's (hit-tested with the
    hits' footprints out of the way)."""
    hide = "document.querySelectorAll('.leaflet-hits-pane path').forEach(p => p.style.display = '{}')"
    pg.p.evaluate(hide.format("none"))
    try:
        for hid, lon, lat in hits:
            x, y = pg.lonlat_xy(lon + 0.0001, lat + 0.0001)
            if pg.p.evaluate(f"!!document.elementFromPoint({x}, {y}).closest('.leaflet-results-pane')"):
                return hid, x, y
    finally:
        pg.p.evaluate(hide.format(""))
    raise AssertionError("no hit lies over a result footprint")


def _label_and_draw_hits(pg, actions_js: str) -> list:
    """Wait for the 10 results, label the first two positive and the last negative, close the
    details, and draw the classifier's hits at threshold 0 with the popup ``actions_js``:
    ``[id, lon, lat]`` of each hit."""
    pg.wait_results(10)
    for i, lab in ((0, "Positive"), (1, "Positive"), (9, "Negative")):
        pg.p.locator("#gallery .card").nth(i).click()
        pg.p.click(f"#details button:has-text('{lab}')")
    pg.p.locator("#details button.close").click()
    return pg.p.evaluate("""(async () => {
      const api = await import('/static/api.js'); const st = await import('/static/state.js');
      const m = await import('/static/hits.js');
      const doc = await api.postJson(api.apiUrl('classify'), {labels: st.labelsGeoJSON(), threshold: 0});
      m.drawHits(doc.features, %s);
      return doc.features.map(f => [f.id, f.properties.lon, f.properties.lat]);
    })()""" % actions_js)


def test_find_all_hits_drawn_at_any_zoom_and_take_the_click(browser, stack_server):
    """Hits zoomed out are purple labels with their count; zoomed in a click on a hit over a result
    opens the hit (probability, date) rather than selecting the result, and its action runs."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{q}&k=10")
    try:
        hits = _label_and_draw_hits(pg, "[{label: 'Search from this', run: (f) => rsir.searchById(f.id)}]")
        assert len(hits) == 48   # all but the one negative
        stacked = sum(points[h[0]]["item_id"] != "far-scene" for h in hits)
        lon, lat = _stack_centre(points)
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 7, {{animate: false}})")
        pg.p.wait_for_timeout(300)
        dots = pg.p.locator(".hit-dot")
        want = [f"{stacked} hits"] + (["hit"] if stacked < len(hits) else [])   # the stack, and the far tile
        assert sorted(dots.all_inner_texts()) == want
        stack_dot = dots.filter(has_text=f"{stacked} hits")
        b = stack_dot.bounding_box()
        img = _shot(pg)
        h, sat, v = _hue(img.getpixel((round(b["x"] + 4), round(b["y"] + b["height"] / 2))))
        assert 255 <= h <= 290 and sat > 0.3, "the hits' label is not purple"
        pg.shots("map_hits_zoomed_out")
        stack_dot.click()   # zooms to the hits
        pg.p.wait_for_timeout(400)
        assert pg.p.evaluate("rsir.map.getZoom()") >= 14
        # zoomed in: a hit on a result footprint takes the click
        results = set(pg.p.evaluate("Array.from(document.querySelectorAll('#gallery .card')).map(c => c.dataset.id)"))
        hid, x, y = _hit_over_a_result(pg, [h for h in hits if h[0] not in results])
        hit = next(h for h in hits if h[0] == hid)
        pg.p.mouse.click(x, y)
        popup = pg.p.locator(".leaflet-popup.hit-popup")
        popup.wait_for(timeout=5_000)
        assert "find-all hits here" in popup.locator(".hit-title").inner_text()   # dates stack: each is named
        row = popup.locator(f".hit-row[data-id='{hid}']")
        text = row.inner_text()
        assert text.startswith("p = ") and points[hid]["datetime"][:10] in text and points[hid]["item_id"] in text, text
        assert pg.p.locator("#details").is_hidden() and "sel=" not in pg.p.url
        # Leaflet pans the map to show an opened popup, animated: wait for the pan to end
        for _ in range(20):
            if _inside(popup.bounding_box(), _map_box(pg)):
                break
            pg.p.wait_for_timeout(100)
        assert _inside(popup.bounding_box(), _map_box(pg)), (popup.bounding_box(), _map_box(pg))
        pg.shots("map_hit_popup")
        # the result under the hits is one click away, as it was without them
        popup.locator("button:has-text('Select the result under it')").click()
        pg.p.wait_for_selector("#details:not([hidden])")
        popup.wait_for(state="detached", timeout=5_000)   # closed (it fades out)
        assert "sel=" in pg.p.url
        pg.p.locator("#details button.close").click()
        pg.p.mouse.click(*pg.lonlat_xy(hit[1] + 0.0001, hit[2] + 0.0001))
        popup.wait_for(timeout=5_000)
        popup.locator(f".hit-row[data-id='{hid}'] button:has-text('Search from this')").click()
        pg.p.wait_for_function(f"document.querySelector('#query').innerText.includes('{hid}')", timeout=30_000)
        # drawing: a click on a hit is a corner, not the hit
        pg.p.click("#mode-polygon")
        pg.p.mouse.click(*pg.lonlat_xy(hit[1] + 0.0001, hit[2] + 0.0001))
        pg.p.wait_for_timeout(400)   # more than the popup's fade
        assert popup.count() == 0
        pg.check_clean()
    finally:
        pg.close()


def test_hit_popup_on_a_phone_is_not_covered_by_the_legend_or_the_scale(browser, stack_server):
    """On a phone's small map a hit's popup near the bottom left lay under the legend and the scale
    bar (controls are drawn over popups): while it is open, the controls it lies under are hidden,
    so its text and buttons are readable and take the taps; closed, they are back."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(390, 844), path=f"/?q=p:{q}&k=10")
    try:
        hits = _label_and_draw_hits(pg, "[{label: '✓ Positive', run: () => {}}, {label: '✗ Negative', run: () => {}}]")
        legend = pg.p.locator(".map-legend")
        legend.locator("summary").click()
        assert legend.locator("ul").is_visible()
        hid, lon, lat = next(h for h in hits if points[h[0]]["item_id"] != "far-scene")
        box = _map_box(pg)
        # the hit left of the middle, just over the legend: the popup of its stacked dates is taller than
        # the room over it, so its auto-pan brings it down over the legend and the scale bar
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}}); "
                      f"rsir.map.panBy([{box['width'] * 0.12}, {box['height'] * 0.05}], {{animate: false}})")
        pg.p.wait_for_timeout(300)
        pg.p.mouse.click(*pg.lonlat_xy(lon + 0.00001, lat + 0.00001))
        popup = pg.p.locator(".leaflet-popup.hit-popup")
        popup.wait_for(timeout=5_000)
        pg.p.wait_for_timeout(600)   # its auto-pan
        pop = popup.bounding_box()
        shown = pg.p.evaluate("""(() => [...document.querySelectorAll('#map .leaflet-control')]
          .filter(c => getComputedStyle(c).visibility !== 'hidden' && c.getBoundingClientRect().width > 0)
          .map(c => { const r = c.getBoundingClientRect();
                      return {cls: c.className, x: r.x, y: r.y, width: r.width, height: r.height}; }))()""")
        for c in shown:
            apart = (c["x"] >= pop["x"] + pop["width"] or pop["x"] >= c["x"] + c["width"]
                     or c["y"] >= pop["y"] + pop["height"] or pop["y"] >= c["y"] + c["height"])
            assert apart, f"{c['cls']} covers the popup: {c} {pop}"
        for b in popup.locator("button").all() + popup.locator(".hit-row > div").all():
            _into_popup_view(b)   # a popup taller than the phone's map scrolls its list
            r = b.bounding_box()
            top = pg.p.evaluate(f"!!document.elementFromPoint({r['x'] + r['width'] / 2}, {r['y'] + r['height'] / 2})"
                                ".closest('.leaflet-popup')")
            assert top, f"{b.inner_text()!r} is covered"
        assert pg.p.locator(".leaflet-control.under-popup").count() >= 1   # the legend or the scale was there
        pg.p.screenshot(path=str(Path(__file__).resolve().parent / "artifacts" / "web_map_phone_hit_popup_390x844.png"))
        pg.p.keyboard.press("Escape")
        pg.p.evaluate("rsir.map.closePopup()")
        pg.p.wait_for_timeout(300)
        assert pg.p.locator(".leaflet-control.under-popup").count() == 0 and legend.is_visible()
        pg.check_clean()
    finally:
        pg.close()


def test_hit_popup_on_a_phone_fits_the_map_scrolls_and_closing_it_puts_the_map_back(browser, stack_server):
    """On a phone the popup of ten stacked hits was 553 px on a 354 px map: its last entries and
    "Select the result under it" ran under the panel and could not be reached, and closing it left
    the map panned to an empty area.  It is now no taller than the map, its list scrolls on its own,
    every entry can be reached, and the map goes back where it was when it closes."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(390, 844), path=f"/?q=p:{q}&k=10")
    try:
        pg.wait_results(10)
        # ten hits stacked on one tile (as dates and overlapping scenes stack), drawn by the page's own code
        hid, lon, lat = pg.p.evaluate(f"""(async () => {{
          const m = await import('/static/hits.js');
          const f = {{type: 'Feature', id: '{q}', geometry: null,
                     properties: {{probability: 0.9, item_id: 'scene', datetime: '2020-08-31T00:00:00Z'}}}};
          const r = document.querySelector('#gallery .card');
          const p = {json.dumps(points[q]["location"])};
          const res = await (await fetch('api/search?k=1&include_query=true&point_id={q}', {{headers: {{'X-API-Key': '{KEY}'}}}})).json();
          f.geometry = res.features[0].geometry;
          const many = [...Array(10).keys()].map(i => Object.assign({{}}, f, {{id: f.id.slice(0, -2) + String(10 + i),
            properties: Object.assign({{}}, f.properties, {{probability: 0.9 - i / 100}})}}));
          m.drawHits(many, [{{label: '✓ Positive', run: () => {{}}}}, {{label: '✗ Negative', run: () => {{}}}},
                            {{label: 'In the list', run: () => {{}}}}]);
          return [f.id, p.lon, p.lat];
        }})()""")
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}})")
        pg.p.wait_for_timeout(300)
        before = _centre(pg)
        # near the bottom of the map: the popup opens upwards and must pan the map to fit
        box = _map_box(pg)
        pg.p.evaluate(f"rsir.map.panBy([0, {-box['height'] * 0.3}], {{animate: false}})")
        pg.p.wait_for_timeout(300)
        before = _centre(pg)
        pg.p.mouse.click(*pg.lonlat_xy(lon + 0.00001, lat + 0.00001))
        popup = pg.p.locator(".leaflet-popup.hit-popup")
        popup.wait_for(timeout=5_000)
        pg.p.wait_for_timeout(600)   # its auto-pan
        pop, box = popup.bounding_box(), _map_box(pg)
        assert pop["height"] <= box["height"], (pop, box)
        assert pop["y"] >= box["y"] - 0.5 and pop["y"] + pop["height"] <= box["y"] + box["height"] + 0.5, (pop, box)
        assert "and 4 more here" in popup.inner_text()
        content = popup.locator(".leaflet-popup-content")
        assert content.evaluate("e => e.scrollHeight > e.clientHeight && getComputedStyle(e).overflowY === 'auto'")
        last = popup.locator("button").last
        _into_popup_view(last)
        r = last.bounding_box()
        assert pg.p.evaluate(f"!!document.elementFromPoint({r['x'] + r['width'] / 2}, {r['y'] + r['height'] / 2})"
                             ".closest('.leaflet-popup')"), "the popup's last button cannot be reached"
        pg.p.screenshot(path=str(Path(__file__).resolve().parent / "artifacts" / "web_map_phone_tall_hit_popup_390x844.png"))
        moved = _centre(pg)
        pg.p.evaluate("rsir.map.closePopup()")
        pg.p.wait_for_timeout(300)
        back = _centre(pg)
        assert moved != before, "the popup did not need the map to pan (the test sets it up to)"
        assert abs(back[0] - before[0]) < 1e-6 and abs(back[1] - before[1]) < 1e-6, (before, moved, back)
        pg.check_clean()
    finally:
        pg.close()


def test_the_map_says_why_a_scene_is_not_drawn_zoomed_out_and_draws_it_zoomed_in(tmp_path, browser, tiny_bundle):
    """A fine raster without overviews (300 m of 1 cm pixels, as a drone mosaic) is not drawn zoomed
    out, where one map tile would read too much of it: the map was left empty with no reason (the
    reason was a server log line).  The page now says which scene, why, and to zoom in or add
    overviews; zoomed in, the notice goes and the scene draws."""
    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import serve_in_thread
    from tests.test_sec_trial3_fixes import _sparse_tif

    tif = _sparse_tif(tmp_path / "drone-mosaic.tif", 30000, 0.01)
    idx = tmp_path / "idx"
    assert ingest([str(tif)], index=str(idx), model=tiny_bundle, options=IngestOptions(gsd=1.0, min_valid=0.0)).ok
    with Index.open(str(idx), model=tiny_bundle) as index, serve_in_thread(create_app(index, api_key=KEY)) as base:
        pg = Page(browser, base)
        try:
            from rasterio.warp import transform as warp

            (lon,), (lat,) = warp("EPSG:32618", "EPSG:4326", [500000.0 + 1.0], [4500000.0 - 1.0])
            corner = (lat, lon)   # in the written 512 px block (its pixels are 120), 1 m inside the NW corner
            pg.p.evaluate(f"rsir.map.setView([{corner[0]}, {corner[1]}], 15, {{animate: false}})")
            pg.p.wait_for_selector("#map-notice:not([hidden])", timeout=30_000)
            notice = pg.p.inner_text("#map-notice")
            assert notice.startswith("The imagery of drone-mosaic") and "not drawn at zoom 15" in notice, notice
            assert "zoom in" in notice and "gdaladdo" in notice, notice
            pg.p.screenshot(path=str(tmp_path / "undrawn.png"))
            pg.p.evaluate(f"rsir.map.setView([{corner[0]}, {corner[1]}], 20, {{animate: false}})")
            pg.p.wait_for_selector("#map-notice", state="hidden", timeout=30_000)
            pg.p.wait_for_timeout(1500)
            assert pg.p.locator("#map-notice").is_hidden()
            # the scene draws there: the map's centre is the scene's grey (120), not the empty map
            shot = _shot(pg)
            box = _map_box(pg)
            x, y = pg.lonlat_xy(corner[1], corner[0])
            r, g, b = shot.getpixel((int(x + 20), int(y + 20)))
            assert abs(r - 120) < 12 and abs(g - 120) < 12 and abs(b - 120) < 12, (r, g, b, box)
            # zoomed out again with an animated zoom (the - button, the wheel): the notice comes back (re-check:
            # the tiles' notes came before the animation's end, whose handler then hid it)
            # out with the - button, one step at a time (a new-user re-check: with an animated zoom the tiles'
            # notes came back before the animation's end, whose handler then hid the notice at every step)
            for z in (19, 18, 17):
                pg.p.click(".leaflet-control-zoom-out")
                pg.p.wait_for_timeout(1500)   # past the animation's end
                notice = pg.p.inner_text("#map-notice")
                assert pg.p.locator("#map-notice").is_visible() == (z < 19), (z, notice)
                assert z == 19 or f"not drawn at zoom {z}" in notice, (z, notice)
            pg.check_clean()
        finally:
            pg.close()


# --------------------------------------------------------------------------- leftover findings (page trial, re-check)


OLD_MODEL = "old-model-before-a-reindex-1234"


def _old_model_labels(points) -> tuple[dict, dict]:
    """A label file made with another model over the same tiles (as before `rsir-stac reindex`): the
    first 2009 tile under this index's id, the second under its old id with its item_id, the third
    under its old id with only its footprint; and {its ids: this index's ids}."""
    from rsir_stac.ingest.points import payload_point_id
    from rsir_stac.labels import footprint_geometry

    a, b, c = _stack_ids(points, "2009-08-18")[:3]
    old_b, old_c = payload_point_id(points[b], OLD_MODEL), payload_point_id(points[c], OLD_MODEL)
    feats = [
        {"type": "Feature", "id": a, "geometry": footprint_geometry(points[a]),
         "properties": {"point_id": a, "label": "positive", "item_id": points[a]["item_id"]}},
        {"type": "Feature", "id": old_b, "geometry": footprint_geometry(points[b]),
         "properties": {"point_id": old_b, "label": "positive", "item_id": points[b]["item_id"]}},
        {"type": "Feature", "id": old_c, "geometry": footprint_geometry(points[c]),
         "properties": {"point_id": old_c, "label": "negative"}},
    ]
    return {"type": "FeatureCollection", "rsir:model_id": OLD_MODEL, "features": feats}, {a: a, old_b: b, old_c: c}


def test_the_label_check_says_how_a_file_of_another_model_was_matched(stack_server):
    """POST /api/labels: a label file made with another model (its rsir:model_id) is read with this
    index's ids, and the answer's model_match says how: by id, by item_id or by footprint (page trial:
    the page could not tell the user, so such a file loaded without a word).  A file of this index's
    model has no model_match."""
    import httpx

    base, points = stack_server
    doc, ids = _old_model_labels(points)
    model = next(iter(points.values()))["model_id"]
    r = httpx.post(f"{base}/api/labels", json={"labels": doc}, headers={"X-API-Key": KEY}, timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["rsir:model_id"] == model
    assert [f["id"] for f in got["features"]] == list(ids.values())
    assert got["model_match"] == {"model_ids": [OLD_MODEL], "model_id": model, "by_id": 1, "by_item": 1,
                                  "by_footprint": 1}, got["model_match"]
    same = dict(got, **{"rsir:model_id": model})
    same.pop("model_match")
    r = httpx.post(f"{base}/api/labels", json={"labels": same}, headers={"X-API-Key": KEY}, timeout=60)
    assert r.status_code == 200 and "model_match" not in r.json(), r.text


def test_loading_labels_of_another_model_says_so_and_how_they_were_matched(browser, stack_server, tmp_path):
    """Page trial: a label file whose rsir:model_id names another model loaded with "Loaded 3 labels"
    and nothing more.  The status now says the file was made with another model and how its labels
    were read here: kept by id, or matched to the same tile by item_id or by footprint."""
    base, points = stack_server
    doc, ids = _old_model_labels(points)
    path = tmp_path / "old-model.geojson"
    path.write_text(json.dumps(doc))
    # the trial's file: this index's own tiles, the model named another
    trial = dict(doc, features=[dict(f, id=new, properties=dict(f["properties"], point_id=new))
                                for f, new in zip(doc["features"], ids.values())])
    trial_path = tmp_path / "named-another-model.geojson"
    trial_path.write_text(json.dumps(trial))
    pg = Page(browser, base)
    try:
        pg.p.click("#tab-labels")
        pg.p.set_input_files("#load-labels", str(path))
        pg.wait_status("Loaded 3 labels")
        status = pg.status()
        assert f"old-model.geojson was made with another model ({OLD_MODEL}; this index:" in status, status
        assert "1 label names a tile of this index by id, so it was kept as it is" in status, status
        assert "2 labels were matched to the same tiles of this index (same item, asset and grid window), " \
               "1 by item_id and 1 by footprint" in status, status
        assert sorted(pg.p.evaluate("[...rsir.state.labels.keys()]")) == sorted(ids.values())
        pg.p.set_input_files("#load-labels", str(trial_path))
        pg.wait_status("Loaded 3 labels from named-another-model.geojson, replacing 3 labels")
        status = pg.status()
        assert "3 labels name tiles of this index by id, so they were kept as they are" in status, status
        assert "Undo" in status
        pg.check_clean()
    finally:
        pg.close()


def test_loading_two_labels_of_one_tile_of_another_model_says_both(browser, stack_server, tmp_path):
    """Re-check P2: a file of another model naming one tile twice, by this index's id and by the other
    model's (one label), said "Loaded 1 label ... 1 label names a tile of this index by id" and not a word
    of the second feature (model_match counted by_id 1, by_item 0).  Every feature is told now: the counts
    add up to the file's 2, and the two are said to name one tile, kept once."""
    import httpx

    base, points = stack_server
    doc, ids = _old_model_labels(points)
    a, old_b = list(ids)[:2]
    b = ids[old_b]
    here = {"type": "Feature", "id": b, "geometry": doc["features"][1]["geometry"],
            "properties": dict(doc["features"][1]["properties"], point_id=b)}
    dup = dict(doc, features=[here, doc["features"][1]])   # tile b by this index's id, then by the old model's
    model = next(iter(points.values()))["model_id"]
    r = httpx.post(f"{base}/api/labels", json={"labels": dup}, headers={"X-API-Key": KEY}, timeout=60)
    assert r.status_code == 200, r.text
    assert [f["id"] for f in r.json()["features"]] == [b]
    assert r.json()["model_match"] == {"model_ids": [OLD_MODEL], "model_id": model, "by_id": 1, "by_item": 1,
                                       "by_footprint": 0, "same_tile": {"labels": 2, "tiles": 1}}, r.text
    path = tmp_path / "dup.geojson"
    path.write_text(json.dumps(dup))
    pg = Page(browser, base, size=(1366, 768))
    try:
        pg.p.click("#tab-labels")
        pg.p.set_input_files("#load-labels", str(path))
        pg.wait_status("Loaded 1 label from dup.geojson")
        status = pg.status()
        assert "1 label names a tile of this index by id, so it was kept as it is; 1 label was matched to the same " \
               "tile of this index (same item, asset and grid window), 1 by item_id; 2 labels name one tile, so it " \
               "was kept once." in status, status
        assert pg.p.evaluate("[...rsir.state.labels.keys()]") == [b]
        more = pg.p.locator("#status button", has_text="More")
        if more.count():
            more.click()
        pg.p.screenshot(path=str(tmp_path / "dup-loaded.png"))
        pg.check_clean()
    finally:
        pg.close()


def test_find_all_hits_fill_shows_the_same_under_a_labelled_or_query_outline(browser, stack_server):
    """Page trial: after Find all on a time series, a tile labelled positive showed no purple: the
    green fill of its label (drawn over the hits) hid the hit fill of every date stacked under it.
    Only outlines lie over the hits now: hiding the labels' and the query's panes changes no pixel
    inside a labelled tile, and the hits' purple is there."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{q}&k=10")
    try:
        hits = _label_and_draw_hits(pg, "[]")
        pos = pg.p.evaluate("[...rsir.state.labels].filter(([, l]) => l.label === 'positive').map(([id]) => id)")
        hit_ids = {h[0] for h in hits}
        tile = next(i for i in pos if i in hit_ids)
        lon, lat = points[tile]["location"]["lon"], points[tile]["location"]["lat"]
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 19, {{animate: false}})")
        pg.p.mouse.move(1, 1)   # no hover label
        pg.p.wait_for_timeout(600)
        for pane in ("labels", "query"):   # only outlines over the hits
            fills = pg.p.evaluate(f"[...document.querySelectorAll('.leaflet-{pane}-pane path')]"
                                  ".map(p => p.getAttribute('fill'))")
            assert all(f in (None, "none") for f in fills), (pane, fills)
        assert pg.p.locator(".leaflet-labels-pane path").count() >= 2
        x, y = pg.lonlat_xy(lon, lat)
        patch = (round(x + 20), round(y + 20), round(x + 50), round(y + 50))   # inside the tile, off its badge and outlines

        def mean(*hidden):
            """The patch's mean colour with `hidden` panes not drawn."""
            for p in hidden:
                pg.p.evaluate(f"document.querySelector('.leaflet-{p}-pane').style.display = 'none'")
            try:
                px = list(_shot(pg).crop(patch).getdata())
            finally:
                for p in hidden:
                    pg.p.evaluate(f"document.querySelector('.leaflet-{p}-pane').style.display = ''")
            return tuple(sum(c[i] for c in px) / len(px) for i in range(3))

        drawn, bare, no_hits = mean("badges"), mean("badges", "labels", "query"), mean("badges", "hits")
        assert max(abs(a - b) for a, b in zip(drawn, bare)) < 0.5, (drawn, bare)
        # the stacked hits' purple (#9467bd, 148 103 189): towards it from the imagery under them
        assert sum(abs(a - b) for a, b in zip(drawn, no_hits)) > 10, (drawn, no_hits)
        purple = (148, 103, 189)
        assert all(abs(p - d) <= abs(p - n) for p, d, n in zip(purple, drawn, no_hits)), (drawn, no_hits)
        pg.check_clean()
    finally:
        pg.close()


def test_a_tap_on_a_touch_screen_leaves_no_scene_label_over_the_answer(browser, stack_server):
    """Page trial: on a phone, after a tap on the map searched, the hover label of the scene stayed on
    for seconds over the answer's rank badges.  A tap closes it: none is shown once the search has
    answered, nor after a tap that selects a result."""
    base, points = stack_server
    lon, lat = _stack_centre(points)
    pg = Page(_Touch(browser), base, size=(390, 844))
    try:
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}})")
        x, y = pg.lonlat_xy(lon + 0.0003, lat + 0.0002)
        pg.p.touchscreen.tap(x, y)
        pg.wait_results()
        pg.p.wait_for_timeout(300)   # far less than the 2.5 s a held press's label stays
        assert pg.p.locator(".leaflet-tooltip.scene-tip").count() == 0
        first = pg.p.evaluate("document.querySelector('#gallery .card').dataset.id")
        loc = points[first]["location"]
        pg.p.evaluate(f"rsir.map.setView([{loc['lat']}, {loc['lon']}], 18, {{animate: false}})")
        pg.p.touchscreen.tap(*pg.lonlat_xy(loc["lon"] + 0.00005, loc["lat"] + 0.00005))   # its footprint: selects it
        pg.p.wait_for_selector("#details:not([hidden])", timeout=5_000)
        pg.p.wait_for_timeout(300)
        assert pg.p.locator(".leaflet-tooltip.scene-tip").count() == 0
        pg.check_clean()
    finally:
        pg.close()


def _find_all_in_page(pg) -> None:
    """Label the first two results positive and the last negative, then Find all (threshold 0.5)."""
    pg.wait_results(10)
    for i, lab in ((0, "Positive"), (1, "Positive"), (9, "Negative")):
        pg.p.locator("#gallery .card").nth(i).click()
        pg.p.click(f"#details button:has-text('{lab}')")
    pg.p.locator("#details button.close").click()
    pg.p.click("#tab-labels")
    pg.p.click("#classify")
    pg.wait_status("Find all:", timeout=120_000)


@pytest.mark.parametrize("size", [(1600, 1000), (390, 844)], ids=["desktop", "phone"])
def test_a_long_find_all_status_shows_two_lines_and_unfolds_on_more(browser, stack_server, size):
    """Page trial: the find-all status was 7-8 lines (hits, area hint, the labels-win note, why no
    precision/recall) and pushed the tabs down, on a phone off the screen.  It shows two lines and a
    More button now; More shows the rest (Less folds it again); the whole text stays in the element."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(_Touch(browser) if size[0] < 500 else browser, base, size=size, path=f"/?q=p:{q}&k=10")
    try:
        _find_all_in_page(pg)
        status = pg.p.locator("#status")
        text = pg.status()
        assert "too few labels to hold any out" in text and "draw a box or polygon" in text, text
        line = float(pg.p.evaluate("getComputedStyle(document.querySelector('#status')).lineHeight")[:-2])
        assert status.bounding_box()["height"] <= 2 * line + 14, (status.bounding_box(), line)   # 2 lines and padding
        shown = pg.p.locator("#status .stext").bounding_box()["height"]
        assert shown <= 2 * line + 1, (shown, line)
        more = status.locator("button.fold")
        assert more.inner_text() == "More" and more.get_attribute("aria-expanded") == "false"
        tabs = pg.p.locator(".tabs").bounding_box()
        assert tabs["y"] + tabs["height"] <= size[1], tabs   # the tabs in the window (a phone's panel at its top)
        pg.p.evaluate("document.querySelector('#panel').scrollTop = 0")
        more.click()
        assert more.inner_text() == "Less" and more.get_attribute("aria-expanded") == "true"
        assert pg.p.locator("#status .stext").bounding_box()["height"] > 3 * line
        more.click()
        assert pg.p.locator("#status .stext").bounding_box()["height"] <= 2 * line + 1
        # a short status is not folded
        pg.p.click("#tab-results")
        pg.p.locator("#gallery .card").first.click()
        pg.p.evaluate(f"rsir.searchById('{q}')")
        pg.wait_status("10 results")
        assert status.locator("button.fold").count() == 0, pg.status()
        pg.check_clean()
    finally:
        pg.close()


def _results_page(browser, stack_server):
    """A page showing the 10 results of a 2020 tile of the stacked scenes."""
    base, points = stack_server
    pg = Page(browser, base, path=f"/?q=p:{_stack_ids(points, '2020-08-31')[5]}&k=10")
    pg.wait_results(10)
    return pg


def _enter_dates(pg, text, said):
    """Type ``text`` in the Dates box, press Enter and wait for a status holding ``said``."""
    pg.p.fill("#datetime", text)
    pg.p.press("#datetime", "Enter")
    pg.wait_status(said)


def test_a_refused_dates_message_quotes_the_dates_shown_with_straight_quotes(browser, stack_server):
    """Page re-check: the refusal quoted the box's text in straight quotes and the dates still shown
    in curly ones ("…dates “2019-01-01/..”.")."""
    pg = _results_page(browser, stack_server)
    try:
        _enter_dates(pg, "2009-01-01/..", "(filtered by dates)")
        _enter_dates(pg, "garbage", "is not a date range")
        status = pg.status()
        assert 'Dates "garbage" is not a date range' in status, status
        assert status.endswith('The results shown are still those of dates "2009-01-01/..".'), status
        assert "“" not in status and "”" not in status, status
        pg.check_clean()
    finally:
        pg.close()


def test_downloads_are_named_for_what_they_hold_and_when(browser, stack_server):
    """Page trial: every results download was results.geojson|csv|parquet (and the hits find-all.geojson,
    the labels labels.geojson), so runs piled up as results (1).csv...  Each is named for what it
    holds and when: rsir-results-tile-ID8[-ranksA-B]-YYYYMMDD-HHMM.csv, rsir-hits-find-all-...,
    rsir-labels-..."""
    import re

    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, path=f"/?q=p:{q}&k=10")
    stamp = r"-20\d{6}-\d{4}"
    try:
        _find_all_in_page(pg)

        def saved(selector):
            with pg.p.expect_download(timeout=60_000) as dl:
                pg.p.click(selector)
            return dl.value.suggested_filename

        for fmt in ("geojson", "csv", "parquet"):
            name = saved(f".export[data-format='{fmt}']")
            assert re.fullmatch(rf"rsir-results-tile-{q[:8]}{stamp}\.{fmt}", name), name
        assert re.fullmatch(rf"rsir-hits-find-all{stamp}\.geojson", saved("#findall-export"))
        assert re.fullmatch(rf"rsir-labels{stamp}\.geojson", saved("#save-labels"))
        pg.p.click("#tab-results")
        pg.p.click("#page-next")
        pg.p.wait_for_function("document.querySelector('#page-text').innerText.startsWith('Results 11')",
                               timeout=30_000)
        pg.p.click("#tab-labels")
        name = saved(".export[data-format='csv']")
        assert re.fullmatch(rf"rsir-results-tile-{q[:8]}-ranks11-20{stamp}\.csv", name), name
        pg.check_clean()
    finally:
        pg.close()


@pytest.fixture(scope="module")
def undrawn_server(tmp_path_factory, tiny_bundle):
    """A fine raster without overviews (300 m of 1 cm pixels, as a drone mosaic: not drawn zoomed out)
    served; (base URL, (lat, lon) 1 m inside its written NW block)."""
    from rasterio.warp import transform as warp

    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import serve_in_thread
    from tests.test_sec_trial3_fixes import _sparse_tif

    root = tmp_path_factory.mktemp("undrawn")
    tif = _sparse_tif(root / "drone-mosaic.tif", 30000, 0.01)
    assert ingest([str(tif)], index=str(root / "idx"), model=tiny_bundle,
                  options=IngestOptions(gsd=1.0, min_valid=0.0)).ok
    (lon,), (lat,) = warp("EPSG:32618", "EPSG:4326", [500000.0 + 1.0], [4500000.0 - 1.0])
    with Index.open(str(root / "idx"), model=tiny_bundle) as index, \
            serve_in_thread(create_app(index, api_key=KEY)) as base:
        yield base, (lat, lon)


def _notice(pg, timeout=30_000):
    pg.p.wait_for_selector("#map-notice:not([hidden])", timeout=timeout)
    return pg.p.inner_text("#map-notice")


def test_the_undrawn_scene_notice_goes_when_the_scene_is_panned_out_of_view(browser, undrawn_server):
    """Page re-check N3: the "not drawn at this zoom" notice stayed over an empty map after the scene
    was panned out of view (it went only at the next zoom).  It goes once no undrawn scene is in view,
    and comes back when the scene is panned into view again."""
    base, (lat, lon) = undrawn_server
    pg = Page(browser, base)
    try:
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 17, {{animate: false}})")
        assert "not drawn at zoom 17" in _notice(pg)
        pg.p.evaluate("rsir.map.panBy([3000, 0], {animate: false})")   # the 300 m scene is ~3.5 km away now
        pg.p.wait_for_selector("#map-notice", state="hidden", timeout=5_000)
        pg.p.wait_for_timeout(1000)
        assert pg.p.locator("#map-notice").is_hidden()
        pg.p.evaluate("rsir.map.panBy([-3000, 0], {animate: false})")
        assert "not drawn at zoom 17" in _notice(pg, 10_000)
        pg.check_clean()
    finally:
        pg.close()


def test_the_undrawn_scene_notice_names_the_zoom_the_view_is_at(browser, undrawn_server):
    """Page re-check: at a half zoom the notice named the tiles' zoom (v=17.5 said "zoom 18"); it names
    the view's now.  And from 17.5 to 18 (the same tiles) it stayed hidden: it is said again."""
    base, (lat, lon) = undrawn_server
    pg = Page(browser, base, path=f"/?v=17.5/{lat}/{lon}")
    try:
        text = _notice(pg)
        assert "not drawn at zoom 17.5:" in text and "zoom 18" not in text, text
        pg.p.evaluate(f"rsir.map.setView([{lat}, {lon}], 18, {{animate: false}})")
        pg.p.wait_for_timeout(1500)
        assert pg.p.locator("#map-notice").is_visible()
        assert "not drawn at zoom 18:" in pg.p.inner_text("#map-notice")
        pg.p.click(".leaflet-control-zoom-out")   # 17.5 -> 17 (animated): the tiles of zoom 17
        pg.p.wait_for_timeout(1500)
        assert "not drawn at zoom 17:" in _notice(pg)
        pg.check_clean()
    finally:
        pg.close()


def test_a_selected_result_s_outline_is_drawn_over_the_query_s(browser, stack_server):
    """Page re-check N4: a selected result of another date, sharing the query tile's footprint, was not
    marked on the map: the query's magenta outline lay over its yellow one.  The selected one is on top."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = Page(browser, base, size=(1366, 768), path=f"/?q=p:{q}&k=10")
    try:
        pg.wait_results(10)
        same = [c for c in pg.p.evaluate("[...document.querySelectorAll('#gallery .card')].map(c => c.dataset.id)")
                if points[c]["location"] == points[q]["location"]]
        assert same, "no result shares the query tile's footprint (the stack's other dates do)"
        pg.p.evaluate(f"rsir.select('{same[0]}')")
        loc = points[q]["location"]
        pg.p.evaluate(f"rsir.map.setView([{loc['lat']}, {loc['lon']}], 19, {{animate: false}})")
        pg.p.mouse.move(1, 1)
        pg.p.wait_for_timeout(500)
        z = pg.p.evaluate("['query', 'selected'].map(n => +getComputedStyle(rsir.map.getPane(n)).zIndex)")
        assert z[1] > z[0], z
        # the top edge of the footprint, half way along: yellow (#ffd400), not magenta (#ff3fd8)
        ring = pg.p.evaluate("(() => { const l = document.querySelector('.leaflet-selected-pane path');"
                             " const b = l.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; })()")
        x, y = round(ring[0] + ring[2] / 2), round(ring[1])   # the outline's middle (its box: the path's, no stroke)
        pg.p.evaluate("document.querySelector('.leaflet-badges-pane').style.display = 'none'")
        img = _shot(pg)
        colours = [img.getpixel((x, y + d)) for d in range(-3, 4)]
        hues = [_hue(c) for c in colours]
        assert any(40 <= h <= 60 and s > 0.6 for h, s, _ in hues), colours   # yellow on the edge
        assert not any(290 <= h <= 330 and s > 0.6 for h, s, _ in hues), colours   # no magenta over it
        pg.check_clean()
    finally:
        pg.close()


@pytest.fixture(scope="module")
def thousand_server(tmp_path_factory, tiny_bundle):
    """A real index of 1,040 tiles (vectors made up, two kinds: the first 40 alike), served: enough for
    a count with a thousands separator, without embedding a thousand tiles."""
    import uuid

    import numpy as np

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from rsir_stac.store import Point
    from tests.conftest import index_of_points, serve_in_thread

    rng = np.random.default_rng(5)
    kind = rng.normal(size=tiny_bundle.dim)
    pts, step = [], 0.001
    for n in range(1040):
        w, s = 10.0 + (n % 40) * step, 45.0 + (n // 40) * step
        pts.append(Point(str(uuid.uuid5(uuid.NAMESPACE_URL, f"k/{n}")),
                         (rng.normal(scale=0.3, size=tiny_bundle.dim) + (2 * kind if n < 40 else 0)).astype(np.float32),
                         {"item_id": f"scene-{n // 40}", "collection": "demo", "asset": "visual",
                          "href": f"/nowhere/scene-{n // 40}.tif", "crs": "EPSG:4326",
                          "window": {"col_off": (n % 40) * 256, "row_off": 0, "width": 256, "height": 256},
                          "bbox": [w, s, w + step, s + step], "location": {"lon": w + step / 2, "lat": s + step / 2},
                          "corners": [{"lon": w, "lat": s + step}, {"lon": w + step, "lat": s + step},
                                      {"lon": w + step, "lat": s}, {"lon": w, "lat": s}],
                          "datetime": "2020-06-01T00:00:00Z", "datetime_epoch": 1590969600.0, "gsd": 0.3,
                          "model_id": tiny_bundle.model_id}))
    path = index_of_points(tmp_path_factory.mktemp("thousand") / "index", pts, tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx, serve_in_thread(create_app(idx, api_key=KEY)) as base:
        yield base, [p.id for p in pts]


def test_find_all_counts_the_tiles_scored_as_the_header_counts_the_index(browser, thousand_server):
    """Page re-check N4: Find all said "(1037 tiles scored)" under a header saying "1,037 tiles"."""
    base, ids = thousand_server
    pos, neg = ids[:3], ids[500:503]
    pg = Page(browser, base, path=f"/?q=p:{ids[0]}&k=10&pos={','.join(pos)}&neg={','.join(neg)}")
    try:
        pg.wait_results(10)
        count = pg.p.inner_text("#info").split(" tiles")[0]
        assert count != "1040" and count.replace(",", "").replace(".", "").replace("\u202f", "") == "1040", count
        pg.p.click("#tab-labels")
        pg.p.click("#classify")
        pg.wait_status("Find all:", timeout=120_000)
        assert f"({count} tiles scored)" in pg.status(), pg.status()
    finally:
        pg.close()


def test_dates_typed_with_quotes_are_quoted_once(browser, stack_server):
    """Page re-check N4: `"2020"` typed with its quotes was said as `Dates ""2020"" is not a date range`."""
    base, points = stack_server
    q = _stack_ids(points, "2020-08-31")[5]
    pg = _results_page(browser, stack_server)
    try:
        _enter_dates(pg, '"2020"', "is not a date range")
        status = pg.status()
        assert status.startswith("""Dates '"2020"' is not a date range; give"""), status
        assert '""' not in status, status
        pg.check_clean()
    finally:
        pg.close()
    pg = Page(browser, base, path=f"/?q=p:{q}&k=10&dt=%222020%22")   # the same dates from a link
    try:
        pg.wait_status("were left out")
        status = pg.status()
        assert """the link's dates '"2020"' were left out: it is not a date range; give""" in status, status
        assert '""' not in status, status
    finally:
        pg.close()
