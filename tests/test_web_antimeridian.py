"""The map page over a scene across the antimeridian (re-check item: ``/api/scenes``' extent ran
past 180, and the page gave that extent to the imagery layer as its bounds, which Leaflet
compares with tile bounds wrapped into -180..180: the scene's imagery east of 180 was never
asked for)."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager

import pytest

pytest.importorskip("playwright")

from tests.test_web_e2e import KEY, PLACE_QUERY, Page, _free_port, _wait_imagery, browser  # noqa: F401,E402


@contextmanager
def served_scene(root, bundle, origin: tuple[float, float]):
    """One lon/lat scene of 256 x 128 px at 0.00125 degrees (0.32 x 0.16 degrees) from ``origin``
    (its north-west corner), ingested in 64 px tiles and served; yields the base URL."""
    import uvicorn

    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.conftest import make_geotiff

    tif = make_geotiff(root / "scene.tif", width=256, height=128, crs="EPSG:4326", res=0.32 / 256, origin=origin)
    report = ingest([str(tif)], index=str(root / "idx"), model=bundle,
                    options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok and report.points_written == 8, report
    with Index.open(str(root / "idx"), model=bundle) as idx:
        srv = uvicorn.Server(uvicorn.Config(create_app(idx, api_key=KEY), host="127.0.0.1", port=_free_port(),
                                            log_level="warning", lifespan="off"))
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        deadline = time.time() + 30
        while not srv.started:
            assert time.time() < deadline and t.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{srv.config.port}"
        srv.should_exit = True
        t.join(10)


@pytest.fixture(scope="module")
def across(tmp_path_factory, tiny_bundle):
    """One lon/lat scene from 179.84 E to 180.16 E (-179.84), served."""
    with served_scene(tmp_path_factory.mktemp("across"), tiny_bundle, (179.84, -16.0)) as base:
        yield base


def test_scenes_extent_is_the_stac_box_across_the_antimeridian(across):
    import httpx

    doc = httpx.get(f"{across}/api/scenes", headers={"X-API-Key": KEY}).json()
    w, s, e, n = doc["extent"]
    assert w == pytest.approx(179.84) and e == pytest.approx(-179.84) and -180 <= e < w <= 180
    info = httpx.get(f"{across}/api/info", headers={"X-API-Key": KEY}).json()
    assert doc["extent"] == pytest.approx(info["extent"])  # one convention for the index's extent


def test_the_imagery_east_of_180_is_drawn(browser, across):  # noqa: F811
    """The page opens on the scene; the map tiles on both sides of 180 are asked for and drawn."""
    pg = Page(browser, across, size=(1000, 700))
    asked = []
    pg.p.on("requestfinished", lambda r: asked.append(r.url) if "/api/imagery/" in r.url else None)
    try:
        pg.p.reload()
        pg.p.wait_for_selector("body[data-ready='1']", timeout=30_000)
        _wait_imagery(pg)
        pg.p.wait_for_timeout(1500)
        z_x = [tuple(int(v) for v in u.split("/api/imagery/")[1].split(".png")[0].split("/")[:2]) for u in asked]
        east = [x for z, x in z_x if x < (1 << z) // 2]   # tiles at -180..0 (wrapped from past 180)
        west = [x for z, x in z_x if x >= (1 << z) // 2]
        assert west and east, z_x
        pg.p.screenshot(path="tests/artifacts/antimeridian_scene.png")
        # drawn, not only asked for: opaque pixels in the loaded tiles on each side of 180
        opaque = pg.p.evaluate("""(() => {
          const out = {east: 0, west: 0};
          const c = document.createElement('canvas'); c.width = 256; c.height = 256;
          const g = c.getContext('2d');
          for (const im of document.querySelectorAll('.leaflet-imagery-pane img')) {
            if (!im.complete || !im.naturalWidth) continue;
            const [, z, x] = im.dataset.url.match(/imagery\/(\d+)\/(\d+)\//).map(Number);
            g.clearRect(0, 0, 256, 256); g.drawImage(im, 0, 0, 256, 256);
            const d = g.getImageData(0, 0, 256, 256).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            out[x < (1 << z) / 2 ? 'east' : 'west'] += n;
          }
          return out;
        })()""")
        assert opaque["east"] > 0 and opaque["west"] > 0, opaque
        assert opaque["east"] == pytest.approx(opaque["west"], rel=0.25)  # the scene is 0.16 degrees each side
        assert not pg.errors
    finally:
        pg.ctx.close()


def _in_map(pg, selector: str) -> tuple[int, int]:
    """(elements matching ``selector`` whose box lies inside the map, all of them)."""
    return tuple(pg.p.evaluate(f"""(() => {{
        const m = document.querySelector('#map').getBoundingClientRect();
        const els = Array.from(document.querySelectorAll({selector!r}));
        const inside = els.filter((e) => {{ const r = e.getBoundingClientRect();
          return r.width > 0 && r.left >= m.left - 1 && r.right <= m.right + 1 && r.top >= m.top - 1 && r.bottom <= m.bottom + 1; }});
        return [inside.length, els.length]; }})()"""))


def test_clicks_results_and_boxes_east_of_180(browser, across):  # noqa: F811
    """Page re-check: a click on the imagery east of 180 sent lon=180.33 and was refused; the results
    there had no outline and were counted "outside the view" over their own imagery, a tile across 180
    had its rank badge at longitude 0, and a box dragged across 180 was cut at 180."""
    with Page(browser, across, size=(1366, 768)) as pg:
        _wait_imagery(pg)
        pg.p.mouse.click(*pg.lonlat_xy(180.1, -16.08))  # the page's world copy: east of 180
        pg.wait_results()
        assert "out of range" not in pg.status()
        lon, lat = (float(v) for v in re.search(PLACE_QUERY, pg.p.inner_text("#query")).groups())
        assert (lon, lat) == (pytest.approx(-179.9, abs=1e-3), pytest.approx(-16.08, abs=1e-3))  # 180.1 is -179.9
        n = pg.p.locator("#gallery .card").count()
        assert _in_map(pg, ".leaflet-results-pane path") == (n, n)  # every outline on screen, beside the imagery
        assert _in_map(pg, ".leaflet-query-pane path")[0] >= 1
        assert _in_map(pg, ".rank-badge") == (n, n)  # (none at longitude 0, a world away)
        assert pg.p.locator(".offscreen").is_hidden()  # not "N results outside the view"
        # a box dragged from 179.9 to 180.12 (shift-drag): W > E, nothing cut at 180
        x0, y0 = pg.lonlat_xy(179.9, -16.02)
        x1, y1 = pg.lonlat_xy(180.12, -16.14)
        pg.p.keyboard.down("Shift")
        pg.p.mouse.move(x0, y0)
        pg.p.mouse.down()
        pg.p.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
        pg.p.mouse.move(x1, y1, steps=4)
        pg.p.mouse.up()
        pg.p.keyboard.up("Shift")
        pg.wait_results()
        w, s, e, n_ = (float(v) for v in pg.p.inner_text("#area-text").removeprefix("box ").split(","))
        assert w == pytest.approx(179.9, abs=0.01) and e == pytest.approx(-179.88, abs=0.01), (w, e)
        assert "out of range" not in pg.status() and pg.p.locator("#gallery .card").count() > 0
        pg.p.screenshot(path="tests/artifacts/antimeridian_results.png")
        pg.check_clean()
