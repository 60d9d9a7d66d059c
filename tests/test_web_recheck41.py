"""Map-page items left open by the fortieth session's trials, each checked in Chromium."""

from __future__ import annotations

from tests.test_web_e2e import Page, browser, server  # noqa: F401


def test_the_scale_bar_holds_its_label_at_every_zoom(browser, server):  # noqa: F811
    """Page trial 11: "1000 km" was wider than its bar (Leaflet draws the bar between half and all of
    its maxWidth, and the label does not shrink with it)."""
    base, _ = server
    for size in ((1600, 1000), (390, 844)):
        with Page(browser, base, size=size) as pg:
            spilled = []
            for lat, z in [(lat, z / 4) for lat in (0, 35, 60) for z in range(4, 73, 3)] + [(85, 22), (89, 22)]:
                pg.p.evaluate(f"rsir.map.setView([{lat}, 0], {z}, {{animate: false}})")
                pg.p.wait_for_timeout(50)
                # the label's own width (a Range: scrollWidth does not count text spilling out) in the box
                box = pg.p.evaluate("""(() => { const el = document.querySelector('.leaflet-control-scale-line');
                    const r = document.createRange(); r.selectNodeContents(el);
                    const text = r.getBoundingClientRect(), outer = el.getBoundingClientRect();
                    return [el.textContent, text.right, outer.right, outer.width]; })()""")
                if box[1] > box[2] or box[3] > 130 + 2:  # (the bar's metres vary with the zoom and latitude)
                    spilled.append((lat, z, *box))
            assert not spilled, (size, spilled)


def test_the_pager_lines_up_with_the_cards(browser, server):  # noqa: F811
    """Page trial 12: "◀ Previous" sat flush with the sidebar's edge while the cards are indented."""
    base, points = server
    for size in ((1600, 1000), (390, 844)):
        with Page(browser, base, size=size) as pg:
            pg.search_by_id(next(iter(points)), 10)
            pg.p.wait_for_selector("#pager:not([hidden])")
            card = pg.p.locator("#gallery .card").first.bounding_box()
            prev = pg.p.locator("#page-prev").bounding_box()
            assert abs(prev["x"] - card["x"]) <= 1, (size, prev, card)
            pg.check_clean()


def test_an_undated_label_says_no_date_as_its_card_does(browser, server):  # noqa: F811
    """Page trial 12: dated labels showed their date and undated ones nothing, where cards say "no date"."""
    base, points = server
    undated = next(i for i, p in points.items() if not p.get("datetime"))
    dated = next(i for i, p in points.items() if p.get("datetime"))
    with Page(browser, base, size=(1366, 768), path=f"/?q=p:{dated}&pos={undated}") as pg:
        pg.wait_results()
        pg.p.click("#tab-labels")
        pg.p.wait_for_function("(document.querySelector('#label-list .witem') || {}).textContent", timeout=20_000)
        assert pg.p.inner_text("#label-list .whead") == f"no date · tile {undated[:8]}"
        assert pg.p.inner_text("#label-list .witem") == points[undated]["item_id"]
        pg.p.screenshot(path="tests/artifacts/web_labels_tab_1366x768.png")
        pg.check_clean()



def test_a_place_query_says_its_coordinates_after_back_and_go_hints_a_swapped_place(browser, tmp_path,  # noqa: F811
                                                                                    tiny_bundle):
    """Re-check: Back to a search started by typing a place said "the tile at the clicked place"; Go with
    lat, lon typed the other way round (both in range) moved to an empty place without the hint that
    Search here gives."""
    from tests.test_web_antimeridian import served_scene

    with served_scene(tmp_path, tiny_bundle, (-74.52, -8.40)) as base, Page(browser, base, size=(1366, 768)) as pg:
        pg.p.fill("#goto-text", "-74.45, -8.45")
        pg.p.click("#goto-search")
        pg.wait_results()
        want = "Query: the tile at -74.45000, -8.45000"
        assert want in pg.p.inner_text("#query")
        pg.p.evaluate("rsir.searchById(document.querySelectorAll('#gallery .card')[0].dataset.id)")
        pg.p.wait_for_function("document.querySelector('#query').innerText.includes('a stored tile')")
        pg.p.go_back()
        pg.p.wait_for_function(f"document.querySelector('#query').innerText.includes('{want}')", timeout=30_000)
        pg.p.fill("#goto-text", "-8.45, -74.45")  # lat, lon: valid both ways, no scene at lon -8.45
        pg.p.click("#goto-go")
        assert "Moved to -8.45, -74.45. Did you mean -74.45, -8.45? A scene lies there" in pg.status()
        pg.p.fill("#goto-text", "-74.45, -8.45")
        pg.p.click("#goto-go")
        assert pg.status() == "Moved to -74.45, -8.45."
        pg.check_clean()


def test_go_stops_at_the_scenes_finest_zoom_and_typed_searches_hint_a_swap(browser, tmp_path,  # noqa: F811
                                                                          tiny_bundle):
    """Page re-check: Go and Search here zoomed to 15 past a coarse scene's finest zoom (an empty map);
    Search here with lat, lon swapped said no "Did you mean" unless results were shown; the query card of an
    undated tile showed no date where the cards say "no date"."""
    import httpx

    from tests.test_web_antimeridian import served_scene
    from tests.test_web_e2e import KEY

    with served_scene(tmp_path, tiny_bundle, (-74.52, -8.40)) as base, Page(browser, base, size=(1366, 768)) as pg:
        finest = httpx.get(f"{base}/api/scenes", headers={"X-API-Key": KEY}).json()["features"][0]["properties"]["maxzoom"]
        assert finest < 15  # 0.00125-degree pixels (about 140 m)
        pg.p.fill("#goto-text", "-8.45, -74.45")
        pg.p.click("#goto-search")
        pg.wait_status("Did you mean -74.45, -8.45? A scene lies there")
        pg.p.fill("#goto-text", "-74.45, -8.45")
        pg.p.click("#goto-go")
        assert pg.p.evaluate("rsir.map.getZoom()") == finest
        pg.p.click("#goto-search")
        pg.wait_results()
        assert pg.p.inner_text("#query .muted").endswith(" · no date")
        pg.check_clean()


def test_a_date_filter_says_on_the_map_which_imagery_it_hides(browser, server):  # noqa: F811
    """Page re-check: with Dates set, the imagery of undated scenes (and of scenes outside the dates)
    vanished from the map with nothing on the map saying why."""
    base, _ = server
    with Page(browser, base, size=(1366, 768)) as pg:
        pg.p.evaluate("rsir.map.fitBounds(L.latLngBounds([29.80, -93.00], [29.81, -92.99]).pad(2), {animate: false})")
        pg.p.fill("#datetime", "2021-01-01/2021-12-31")
        pg.p.press("#datetime", "Enter")
        pg.p.wait_for_selector("#map-notice:not([hidden])", timeout=20_000)
        notice = pg.p.inner_text("#map-notice")
        # scene-b (2022) and scene-c (undated) are hidden; scene-a (2021) is drawn
        assert notice == "The Dates or Collections filter hides the imagery of 2 scenes here (1 undated); clear the " \
                         "filter to see it.", notice
        pg.p.fill("#datetime", "")
        pg.p.press("#datetime", "Enter")
        pg.p.wait_for_selector("#map-notice", state="hidden", timeout=20_000)
        pg.check_clean()


def test_bad_dates_with_the_searched_image_do_not_ask_to_choose_it_again(browser, server):  # noqa: F811
    """Page re-check: an invalid date while an uploaded image was the query said "then choose the image
    again", though Search again ran the same image once the dates were fixed. A new upload is still told."""
    from tests.test_web_links import _upload_png

    base, points = server
    with Page(browser, base, size=(1366, 768)) as pg:
        png = _upload_png(points, "scene-a")
        pg.p.set_input_files("#upload", files=[{"name": "field.png", "mimeType": "image/png", "buffer": png}])
        pg.wait_results()
        pg.p.fill("#datetime", "2021-02-30")
        pg.p.press("#datetime", "Enter")
        pg.p.click("#rerun")
        pg.wait_status("The search with field.png was not run")
        assert "choose the image again" not in pg.status()
        pg.p.set_input_files("#upload", files=[{"name": "other.png", "mimeType": "image/png", "buffer": png}])
        pg.wait_status("The search with other.png was not run")
        assert "then choose the image again" in pg.status()
        pg.p.fill("#datetime", "")
        pg.p.press("#datetime", "Enter")
        pg.p.click("#rerun")
        pg.wait_results()
        assert "field.png" in pg.p.inner_text("#query")
        pg.check_clean()
