"""The map page after the fortieth session's new-user trial, in headless Chromium against ``serve``.

* A link with a box the service refuses (south above north) ran no search; it is now left out with
  a note, as the link's other bad parts are, and a collection name over 200 characters too.
* A 3,000-character Dates entry was quoted whole: the status grew to 1,288 px.
* "Search here" at a place with no tile threw the results away, and Back then came to that place:
  the results stay (as for a refused upload), and the entry before keeps its own view.
* Find-all hits stayed as if current after the labels or the threshold changed.

The browser and the served three-scene index are those of ``tests/test_web_e2e.py``.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.test_web_e2e import Page, _scene_points, browser, server  # noqa: F401


def test_a_link_with_a_refused_box_searches_without_it_and_says_so(browser, server):  # noqa: F811
    base, points = server
    pid = next(iter(_scene_points(points, "scene-a")))
    with Page(browser, base, path=f"/?q=p:{pid}&bbox=10,10,5,5&col={'x' * 300},coll-a") as pg:
        pg.wait_results()
        text = pg.status()
        assert "the link's box bbox=\"10,10,5,5\" was left out: its south 10 is not below its north 5" in text, text
        assert "a collection name has at most 200 characters" in text, text
        assert "filtered by collections" in text and "box" not in text.split("Note:")[0], text
        pg.check_clean()


def test_a_long_dates_entry_is_quoted_short(browser, server):  # noqa: F811
    base, points = server
    with Page(browser, base) as pg:
        pg.search_by_id(next(iter(_scene_points(points, "scene-a"))))
        pg.p.fill("#datetime", "2" * 3000)
        pg.p.press("#datetime", "Enter")
        pg.wait_status("is not a date range")
        text = pg.status()
        assert "(3,000 characters)" in text and len(text) < 500, len(text)
        assert pg.p.locator("#status").bounding_box()["height"] < 200
        pg.check_clean()


def test_search_here_at_an_empty_place_keeps_the_results_and_back_its_view(browser, server):  # noqa: F811
    base, points = server
    with Page(browser, base) as pg:
        pg.search_by_id(next(iter(_scene_points(points, "scene-a"))), 10)
        pg.p.wait_for_timeout(600)   # the search's own move has written its view
        before = pg.p.url
        pg.p.fill("#goto-text", "0, 0")
        pg.p.click("#goto-search")
        pg.wait_status("still those of the previous search")
        assert pg.p.locator("#gallery .card").count() == 10
        q = parse_qs(urlsplit(pg.p.url).query)
        assert q["q"] == parse_qs(urlsplit(before).query)["q"], pg.p.url   # the link names the results shown
        pg.p.go_back()
        pg.p.wait_for_timeout(800)
        # the search before, at its own place (the failed place's view had been written into its entry)
        assert parse_qs(urlsplit(pg.p.url).query)["q"] == parse_qs(urlsplit(before).query)["q"], pg.p.url
        lat, lon = pg.p.evaluate("[rsir.map.getCenter().lat, rsir.map.getCenter().lng]")
        assert abs(lat - 29.82) < 0.05 and abs(lon + 92.99) < 0.05, (lat, lon, pg.p.url)
        assert pg.p.locator("#gallery .card").count() == 10
        pg.check_clean()


def test_find_all_hits_say_when_the_labels_or_threshold_changed_since(browser, server):  # noqa: F811
    base, points = server
    with Page(browser, base) as pg:
        pg.search_by_id(next(iter(_scene_points(points, "scene-a"))), 10)
        pg.find_all(((0, "Positive"), (1, "Positive"), (8, "Negative"), (9, "Negative")), 0.3)
        stale = pg.p.locator("#hits .stale")
        assert stale.count() == 1 and stale.is_hidden()
        pg.p.fill("#threshold", "0.9")
        assert stale.is_visible() and "press Find all again" in stale.inner_text()
        pg.p.fill("#threshold", "0.3")
        assert stale.is_hidden()   # back to what the hits were found with
        pg.p.locator("#label-list li button:has-text('Remove')").first.click()
        assert stale.is_visible()
        pg.p.fill("#threshold", "1e309")   # a number the box cannot hold reads as ""
        pg.p.click("#classify")
        pg.wait_status("holds a number it cannot read")
        pg.check_clean()


def test_an_acquisition_interval_is_shown_as_one(browser, server):  # noqa: F811
    """A scene ingested with ``--datetime 2015`` showed "2015-01-01" everywhere, read as one day."""
    base, _ = server
    with Page(browser, base) as pg:
        got = pg.p.evaluate("""async () => { const r = await import('./static/results.js'); return [
            r.tileDate({datetime: '2015-01-01T00:00:00Z', end_datetime: '2015-12-31T23:59:59.999999Z'}),
            r.tileDate({datetime: '2015-06-01T00:00:00Z', end_datetime: '2015-06-30T23:59:59Z'}),
            r.tileDate({datetime: '2015-02-01T00:00:00Z', end_datetime: '2015-02-28T23:59:59Z'}),
            r.tileDate({datetime: '2020-08-31T00:00:00Z', end_datetime: '2020-08-31T23:59:59Z'}),
            r.tileDate({datetime: '2015-03-02T00:00:00Z', end_datetime: '2015-05-10T00:00:00Z'}),
            r.tileDate({datetime: '2015-12-20T00:00:00Z', end_datetime: '2016-01-10T00:00:00Z'}),
            r.tileDate({datetime: '2021-06-01T10:00:00Z'}), r.tileDate({})]; }""")
        assert got == ["2015", "2015-06", "2015-02", "2020-08-31", "2015-03-02 – 05-10", "2015-12-20 – 2016-01-10",
                       "2021-06-01", "no date"], got
        pg.check_clean()
