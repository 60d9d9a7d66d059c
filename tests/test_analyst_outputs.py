"""What a new analyst met in the loop: label files saved from a GIS, an unranked context
search, export schemas that drift with the rows, output folders checked late, stale
thumbnails, classify's edge values and silently ignored options.

A real Qdrant Edge index of synthetic tiles with the shipped model's id (3 scenes of 8×5
tiles, a block of "target" tiles in two of them), and a real index of tiny GeoTIFFs
embedded with a tiny trained bundle for the thumbnails.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import InputError
from rsir_stac.labels import LabelSet, make_labels, read_labels, write_labels
from rsir_stac.search import Index
from rsir_stac.store import Point, SearchFilter
from tests.conftest import index_of_points, make_geotiff

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

SCENES, COLS, ROWS, STEP = 3, 8, 5, 0.001
NOWHERE = "-10,-10,-9,-9"  # a box holding no tile


def _points(dim: int, model_id: str) -> tuple[list[Point], set[str]]:
    rng = np.random.default_rng(7)
    target = rng.normal(size=dim)
    target /= np.linalg.norm(target)
    pts, targets = [], set()
    for s in range(SCENES):
        for r in range(ROWS):
            for c in range(COLS):
                hit = s in (0, 2) and 2 <= c <= 5 and 1 <= r <= 3
                v = rng.normal(scale=0.3, size=dim) + (2.0 * target if hit else 0.0)
                w, so = 20.0 + s * 0.05 + c * STEP, 40.0 + r * STEP
                e, n = w + STEP, so + STEP
                pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"outputs/{s}/{r}/{c}"))
                pts.append(Point(pid, v.astype(np.float32), {
                    "item_id": f"scene-{s}", "collection": "demo", "asset": "visual", "href": f"/data/s{s}.tif",
                    "crs": "EPSG:4326", "bbox": [w, so, e, n], "location": {"lon": (w + e) / 2, "lat": (so + n) / 2},
                    "corners": [{"lon": w, "lat": n}, {"lon": e, "lat": n}, {"lon": e, "lat": so},
                                {"lon": w, "lat": so}],
                    "datetime": f"{2019 + s}-06-01T10:00:00Z", "datetime_epoch": 1559383200.0 + s * 31536000,
                    "gsd": 0.3, "model_id": model_id}))
                if hit:
                    targets.add(pid)
    return pts, targets


@pytest.fixture(scope="module")
def bundle(shipped_bundle):
    return shipped_bundle


@pytest.fixture(scope="module")
def world(bundle, tmp_path_factory):
    pts, targets = _points(bundle.dim, bundle.model_id)
    return index_of_points(tmp_path_factory.mktemp("outputs") / "index", pts, bundle), pts, targets


@pytest.fixture()
def index(world, bundle):
    with Index.open(str(world[0]), model=bundle) as idx:
        yield idx


def _labels_file(world, bundle, tmp_path):
    pts, targets = world[1], world[2]
    rec = lambda p: type("H", (), {"id": p.id, "payload": p.payload})  # noqa: E731 - a record with id+payload
    pos = make_labels([rec(p) for p in pts if p.id in targets][:8], "positive", model_id=bundle.model_id)
    neg = make_labels([rec(p) for p in pts if p.id not in targets][::11][:8], "negative", model_id=bundle.model_id)
    return write_labels(LabelSet(pos.labels + neg.labels, bundle.model_id), tmp_path / "labels.geojson")


def _one_line_error(r, *parts):
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in r.output, err
    for part in parts:
        assert part in err, err
    return err


# ------------------------------------------------------------------------ 1. labels from a GIS


def test_a_label_file_saved_by_a_gis_keeps_its_ids(world, tmp_path):
    """search --format geojson, edited in geopandas and saved with GDAL's GeoJSON driver:
    the tile id survives only as properties.id, and that file is read."""
    import geopandas as gpd

    targets = sorted(world[2])
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--point-id", targets[0], "-k", "6",
                                  "--per-item", "0", "--format", "geojson"])
    assert r.exit_code == 0, r.output
    (tmp_path / "hits.geojson").write_text(r.stdout)
    g = gpd.read_file(tmp_path / "hits.geojson")
    g["label"] = ["positive"] * 3 + ["negative"] * 3
    g.to_file(tmp_path / "saved.geojson", driver="GeoJSON")
    saved = json.loads((tmp_path / "saved.geojson").read_text())
    assert all("id" not in f for f in saved["features"])  # what GDAL wrote: the id in properties alone
    labels = read_labels(tmp_path / "saved.geojson")
    assert list(labels.positives + labels.negatives) == list(g["id"])
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--labels", str(tmp_path / "saved.geojson"),
                                  "-k", "3", "--format", "json"])
    assert r.exit_code == 0, r.output
    page = json.loads(r.stdout)  # paging as the API's: the next page's --offset (docs trial)
    assert len(page["hits"]) == 3 and page["offset"] == 0 and page["next_offset"] == 3
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--labels", str(tmp_path / "saved.geojson"),
                                  "-k", "3", "--offset", "3", "--format", "json"])
    nxt = json.loads(r.stdout)
    assert nxt["offset"] == 3 and not {h["id"] for h in nxt["hits"]} & {h["id"] for h in page["hits"]}
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--labels", str(tmp_path / "saved.geojson"),
                                  "-k", "10000", "--format", "json"])
    assert json.loads(r.stdout)["next_offset"] is None  # the last page

    # a Feature numbered by the GIS, the tile id in properties.id: the tile id wins
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": 7, "geometry": None, "properties": {"id": targets[1], "label": "positive"}}]}
    (tmp_path / "numbered.geojson").write_text(json.dumps(doc))
    assert read_labels(tmp_path / "numbered.geojson").positives == (targets[1],)

    # properties.id that is not a tile id is no point id: the message names the three places
    doc["features"][0] = {"type": "Feature", "geometry": None, "properties": {"id": 12, "label": "positive"}}
    (tmp_path / "none.geojson").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"has no point id.*properties\.point_id or in properties\.id"):
        read_labels(tmp_path / "none.geojson")


# ------------------------------------------------------------------ 2. context strategy ties


def test_context_search_that_cannot_rank_says_so(world, bundle):
    from rsir_stac.search import Example

    pts, targets = world[1], world[2]
    a, b = sorted(targets)[:2]
    far = next(p.id for p in pts if p.id not in targets)
    with Index.open(str(world[0]), model=bundle) as index:  # closed before the CLI opens it
        assert index.search(point_id=a, k=5).notes == ()
        res = index.search(positives=[Example("point", a), Example("point", b)],
                           negatives=[Example("point", far)], strategy="context", k=5, per_item=None)
    assert len(res.hits) == 5 and len({h.score for h in res.hits}) == 1  # every hit ties
    assert len(res.notes) == 1
    note = res.notes[0]
    assert "context strategy could not rank" in note and "negative" in note
    for other in ("average", "best_score", "sum_scores", "discover", "feedback"):
        assert other in note
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--point-id", a, "--point-id", b,
                                  "--not-point-id", far, "--strategy", "context", "-k", "5", "--per-item", "0",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "note: the context strategy could not rank these 5 hits" in r.stderr
    json.loads(r.stdout)  # stdout stays JSON
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    with Index.open(str(world[0]), model=bundle) as index, \
            TestClient(create_app(index), base_url="http://127.0.0.1:8000") as client:
        doc = client.post("/api/query", json={"positives": [{"point_id": a}, {"point_id": b}],
                                              "negatives": [{"point_id": far}], "strategy": "context", "k": 5,
                                              "per_item": None}).json()
    assert any("context strategy could not rank" in n for n in doc["notes"]), doc["notes"]


# ---------------------------------------------------------------- 3. schemas whatever the rows


def test_classify_geoparquet_types_label_and_dates_whatever_the_rows(world, bundle, tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = _labels_file(world, bundle, tmp_path)
    idx = str(world[0])
    for name, args in {"all": [], "none": ["--bbox", NOWHERE]}.items():
        r = CliRunner().invoke(main, ["classify", "--index", idx, "--labels", str(labels), *args,
                                      "--out", str(tmp_path / f"{name}.parquet")])
        assert r.exit_code == 0, r.output
    full, empty = pq.read_schema(tmp_path / "all.parquet"), pq.read_schema(tmp_path / "none.parquet")
    assert pq.read_metadata(tmp_path / "none.parquet").num_rows == 0
    assert full.field("label").type == empty.field("label").type == pa.string()
    assert full.field("datetime").type == empty.field("datetime").type == pa.timestamp("us", tz="UTC")
    assert full.remove_metadata() == empty.remove_metadata()
    both = pa.concat_tables([pq.read_table(tmp_path / "all.parquet"), pq.read_table(tmp_path / "none.parquet")])
    assert both.num_rows > 0
    years = duckdb.sql(f"select distinct year(datetime) from read_parquet('{tmp_path / 'all.parquet'}') "
                       "order by 1").fetchall()
    assert years and {y for (y,) in years} <= {2019, 2021}  # the target scenes' years
    # the dissolved areas too: an area-less file has the columns and types of one with areas
    for name, args in {"d_all": [], "d_none": ["--bbox", NOWHERE]}.items():
        r = CliRunner().invoke(main, ["classify", "--index", idx, "--labels", str(labels), "--dissolve", *args,
                                      "--out", str(tmp_path / f"{name}.parquet")])
        assert r.exit_code == 0, r.output
    a, b = pq.read_schema(tmp_path / "d_all.parquet"), pq.read_schema(tmp_path / "d_none.parquet")
    assert a.remove_metadata() == b.remove_metadata() and "max_probability" in b.names


@pytest.mark.parametrize("kind", ["search", "export"])
def test_an_empty_flatgeobuf_has_the_field_and_geometry_types_of_a_full_one(index, world, tmp_path, kind):
    import pyogrio

    from rsir_stac.export import export_index, write_search

    full, empty = tmp_path / "full.fgb", tmp_path / "empty.fgb"
    if kind == "search":
        write_search(index, index.search(point_id=world[1][0].id, k=5), full)
        none = index.search(point_id=world[1][0].id, k=5, flt=SearchFilter(bbox=(-10.0, -10.0, -9.0, -9.0)))
        assert write_search(index, none, empty) == 0
    else:  # with the vectors: an empty file has the embedding column too
        import pyarrow.parquet as pq

        nowhere = SearchFilter(bbox=(-10.0, -10.0, -9.0, -9.0))
        for ext in (".fgb", ".parquet"):
            export_index(index, full.with_suffix(ext), with_vectors=True)
            assert export_index(index, empty.with_suffix(ext), flt=nowhere, with_vectors=True)["rows"] == 0
        a, b = pq.read_schema(full.with_suffix(".parquet")), pq.read_schema(empty.with_suffix(".parquet"))
        assert a.remove_metadata() == b.remove_metadata() and "embedding" in b.names
    a, b = pyogrio.read_info(full), pyogrio.read_info(empty)
    assert b["features"] in (0, -1) and a["features"] > 0
    assert list(a["fields"]) == list(b["fields"]) and list(a["dtypes"]) == list(b["dtypes"])
    types = dict(zip(b["fields"], b["dtypes"]))
    assert types["id"] == "object" and types["lon"] == "float64" and types["datetime"].startswith("datetime64")
    assert a["geometry_type"] == b["geometry_type"] == "MultiPolygon"


def test_rank_is_int32_in_every_format_and_parquet_lists_the_geometry_types_of_its_rows(index, world, tmp_path):
    """Trial finding 16: rank was int64 in FlatGeobuf alone, and the GeoParquet metadata listed
    MultiPolygon where every row is a Polygon (QGIS may make a MultiPolygon layer of it)."""
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyogrio

    from rsir_stac.export import empty_row, search_pages, write_search, write_table

    res = index.search(point_id=world[1][0].id, k=8, per_item=None)
    for ext in (".fgb", ".geojson", ".parquet"):
        write_search(index, res, tmp_path / f"hits{ext}")
    for ext in (".fgb", ".geojson"):
        info = pyogrio.read_info(tmp_path / f"hits{ext}")
        assert dict(zip(info["fields"], info["dtypes"]))["rank"] == "int32", ext
    assert pq.read_schema(tmp_path / "hits.parquet").field("rank").type == pa.int32()

    def geometry_types(path):
        return json.loads(pq.read_schema(path).metadata[b"geo"])["columns"]["geometry"]["geometry_types"]

    assert geometry_types(tmp_path / "hits.parquet") == ["Polygon"]
    gdf = gpd.read_parquet(tmp_path / "hits.parquet")   # the columns' types read back as written
    assert list(gdf["id"]) == [h.id for h in res.hits] and set(gdf.geom_type) == {"Polygon"}
    assert isinstance(gdf["datetime"].dtype, pd.DatetimeTZDtype) and gdf["rank"].dtype == "int32"
    # a footprint across the antimeridian (a MultiPolygon) in a later page is listed too
    pages = list(search_pages(index, res, page=4))
    far = dict(pages[1][0], geometry={"type": "MultiPolygon", "coordinates": [
        [[[179.9, 0.0], [180.0, 0.0], [180.0, 0.1], [179.9, 0.1], [179.9, 0.0]]],
        [[[-180.0, 0.0], [-179.9, 0.0], [-179.9, 0.1], [-180.0, 0.1], [-180.0, 0.0]]]]})
    write_table([pages[0], [far] + pages[1][1:]], tmp_path / "both.parquet")
    assert geometry_types(tmp_path / "both.parquet") == ["MultiPolygon", "Polygon"]
    assert set(gpd.read_parquet(tmp_path / "both.parquet").geom_type) == {"Polygon", "MultiPolygon"}
    assert write_table([], tmp_path / "none.parquet", empty_row()) == 0   # no rows: footprints are polygons
    assert geometry_types(tmp_path / "none.parquet") == ["Polygon"]


def test_a_flatgeobuf_layer_is_multipolygon_whatever_the_rows(index, world, tmp_path):
    """Geo trial 3, finding 1: GDAL took the layer's geometry type from the rows, so a file with a
    footprint across 180 was a MultiPolygon layer and one without a Polygon layer (two schemas).
    Every FlatGeobuf is now a MultiPolygon layer, each row the same ground as its footprint."""
    import geopandas as gpd
    import pyogrio
    from shapely.geometry import shape

    from rsir_stac.export import search_pages, write_table

    res = index.search(point_id=world[1][0].id, k=8, per_item=None)
    pages = list(search_pages(index, res, page=4))
    far = dict(pages[1][0], geometry={"type": "MultiPolygon", "coordinates": [
        [[[179.9, 0.0], [180.0, 0.0], [180.0, 0.1], [179.9, 0.1], [179.9, 0.0]]],
        [[[-180.0, 0.0], [-179.9, 0.0], [-179.9, 0.1], [-180.0, 0.1], [-180.0, 0.0]]]]})
    write_table(pages, tmp_path / "plain.fgb")
    write_table([pages[0], [far] + pages[1][1:]], tmp_path / "across.fgb")
    for name in ("plain.fgb", "across.fgb"):
        assert pyogrio.read_info(tmp_path / name)["geometry_type"] == "MultiPolygon", name
    back = gpd.read_file(tmp_path / "plain.fgb").set_index("id")
    for row in (r for page in pages for r in page):
        assert back.loc[row["id"]].geometry.symmetric_difference(shape(row["geometry"])).area < 1e-12


def test_dates_are_timestamps_in_parquet_and_flatgeobuf_and_text_in_csv_and_geojson(index, world, tmp_path):
    import duckdb
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rsir_stac.export import write_search

    res = index.search(point_id=world[1][0].id, k=20, per_item=None)
    for ext in (".parquet", ".fgb", ".csv", ".geojson"):
        write_search(index, res, tmp_path / f"hits{ext}")
    want = {h.id: h.payload["datetime"] for h in res.hits}
    assert pq.read_schema(tmp_path / "hits.parquet").field("datetime").type == pa.timestamp("us", tz="UTC")
    got = duckdb.sql(f"select id, year(datetime), strftime(datetime at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ') "
                     f"from read_parquet('{tmp_path / 'hits.parquet'}')").fetchall()
    assert {i: s for i, _, s in got} == want and all(y == int(want[i][:4]) for i, y, _ in got)
    fgb = gpd.read_file(tmp_path / "hits.fgb")
    assert isinstance(fgb["datetime"].dtype, pd.DatetimeTZDtype)
    assert {i: t.strftime("%Y-%m-%dT%H:%M:%SZ") for i, t in zip(fgb["id"], fgb["datetime"].dt.tz_convert("UTC"))} \
        == want
    assert dict(zip(pd.read_csv(tmp_path / "hits.csv")["id"], pd.read_csv(tmp_path / "hits.csv")["datetime"])) == want
    feats = json.loads((tmp_path / "hits.geojson").read_text())["features"]
    assert {f["id"]: f["properties"]["datetime"] for f in feats} == want


# --------------------------------------------------------------- 4. output folders up front


def test_thumbnails_and_out_folders_are_checked_before_the_search(world, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    missing_index = str(tmp_path / "no-index")  # checked first: the index is never opened
    run = CliRunner()
    r = run.invoke(main, ["search", "--index", missing_index, "--at", "20.003,40.002", "--thumbnails",
                          str(afile / "sub")])
    _one_line_error(r, f"{afile} is a file, not a folder", "--thumbnails")
    r = run.invoke(main, ["search", "--index", missing_index, "--at", "20.003,40.002", "--out",
                          str(afile / "x.parquet")])
    err = _one_line_error(r, f"output folder {afile} is a file, not a folder", "--out")
    assert "does not exist" not in err and "create it" not in err
    r = run.invoke(main, ["classify", "--index", missing_index, "--labels", str(tmp_path / "l.geojson"),
                          "--out", str(afile / "deeper" / "x.csv")])
    _one_line_error(r, f"{afile} is a file, not a folder")
    # a folder nobody may write in (root ignores modes: the check is what is tested)
    ro = tmp_path / "ro"
    ro.mkdir()
    import rsir_stac.atomic as atomic

    real = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False if os.fspath(p) == str(ro) else real(p, mode))
    r = run.invoke(main, ["search", "--index", missing_index, "--at", "20.003,40.002", "--thumbnails",
                          str(ro / "thumbs")])
    _one_line_error(r, f"cannot write in {ro}", "--thumbnails")
    assert not (ro / "thumbs").exists()


# ------------------------------------------------------------------ 5. a reused thumbnails folder


def test_a_reused_thumbnails_folder_holds_this_runs_set_alone(tmp_path, tiny_bundle):
    from rsir_stac.ingest import IngestOptions, ingest

    tif = make_geotiff(tmp_path / "scene.tif", width=256, height=192, seed=4)
    idx = tmp_path / "idx"
    assert ingest([str(tif)], index=str(idx), model=tiny_bundle,
                  options=IngestOptions(tile_size=64, native_gsd=True)).ok
    with Index.open(str(idx), model=tiny_bundle) as index:
        pid = next(index.store.iter_points(with_vectors=False)).id
    th = tmp_path / "th"
    th.mkdir()
    (th / "my_notes.txt").write_text("mine")
    (th / "cover.png").write_bytes(b"not the tool's")
    base = ["search", "--index", str(idx), "--model", str(tiny_bundle.path), "--point-id", pid, "--per-item", "0",
            "--thumbnails", str(th)]
    r = CliRunner().invoke(main, base + ["-k", "8"])
    assert r.exit_code == 0, r.output
    assert len(list(th.glob("0[1-8]_*.png"))) == 8
    r = CliRunner().invoke(main, base + ["-k", "2"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in th.iterdir())
    hits = [n for n in names if n[:2].isdigit() and n != "00_query.png"]
    assert len(hits) == 2 and {n[:3] for n in hits} == {"01_", "02_"}
    assert {"00_query.png", "contact_sheet.png", "my_notes.txt", "cover.png"} <= set(names)
    assert len(names) == 6


# -------------------------------------------------------------------------- 6. classify edges


def test_classify_edge_values(world, bundle, tmp_path):
    from rsir_stac.classify import classify

    labels = _labels_file(world, bundle, tmp_path)
    idx = str(world[0])
    run = CliRunner()
    with Index.open(idx, model=bundle) as index:  # closed before the CLI opens it
        with pytest.raises(InputError, match=r"--max-hits 0 \(API: max_hits\) must be a whole number >= 1"):
            classify(index, read_labels(labels), max_hits=0)
        rep = classify(index, read_labels(labels), threshold=1.0)
    assert (rep.above_threshold, rep.positives_kept, len(rep.hits)) == (0, 8, 8)
    r = run.invoke(main, ["classify", "--index", idx, "--labels", str(labels), "--max-hits", "0",
                          "--out", str(tmp_path / "m0.csv")])
    _one_line_error(r, "--max-hits 0", ">= 1")
    assert not (tmp_path / "m0.csv").exists()

    r = run.invoke(main, ["classify", "--index", idx, "--labels", str(labels), "--threshold", "1.0",
                          "--out", str(tmp_path / "t1.csv")])
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()[-1]
    assert "; 0 at p >= 1.0 + 8 you labelled positive, kept below it ->" in line, line

    r = run.invoke(main, ["classify", "--index", idx, "--labels", str(labels), "--holdout", "0",
                          "--out", str(tmp_path / "h0.csv")])
    assert r.exit_code == 0, r.output
    assert "no labels held out (--holdout 0; API: holdout)" in r.stdout and "too few labels" not in r.stdout


# ---------------------------------------------------------------------------------- 7. minor


def test_format_with_out_and_a_malformed_point_id(world, tmp_path):
    pid = world[1][0].id
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--point-id", pid, "--format", "geojson",
                                  "--out", str(tmp_path / "hits.csv")])
    _one_line_error(r, "--format geojson", "--out")
    assert not (tmp_path / "hits.csv").exists()
    r = CliRunner().invoke(main, ["search", "--index", str(world[0]), "--point-id", "not-a-uuid"])
    err = _one_line_error(r, "'not-a-uuid'", "copy one from search results")
    assert "uuid4" not in err


# ------------------------------------------------------------------ captions beyond ASCII


def test_contact_sheet_captions_draw_letters_beyond_ascii():
    """Pillow's default font drew Ñ, ü and ã as the same empty box: captions use a Unicode
    TrueType font where the system has one (the missing-glyph box is what an unassigned
    code point draws)."""
    from PIL import Image, ImageDraw

    from rsir_stac.thumbnails import CAPTION_FONTS, caption_font, contact_sheet

    if not any(os.path.isfile(f) for f in CAPTION_FONTS):
        pytest.skip("no Unicode TrueType font on this system (install fonts-dejavu-core)")
    font = caption_font()

    def drawn(text):
        im = Image.new("L", (40, 16), 255)
        ImageDraw.Draw(im).text((2, 2), text, fill=0, font=font)
        return np.asarray(im)

    box = drawn("\U000F0001")  # a private-use code point: no font draws it
    for letter in "Ñüã":
        assert not np.array_equal(drawn(letter), box), letter
    tile = np.full((32, 32, 3), 128, np.uint8)
    sheet = contact_sheet(tile, [tile], ["1  d=0.1\nSão Paulo Ñandú"])
    assert sheet.shape[2] == 3


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a /proc file system")
def test_an_output_in_a_pseudo_file_system_names_the_real_cause():
    """Analyst trial: `export --out /proc/e.parquet` said 'cannot write in /proc (No such file or
    directory)' for a folder that exists."""
    from rsir_stac.atomic import atomic_output, check_output_path
    from rsir_stac.errors import InputError

    for attempt in (lambda: check_output_path("/proc/e.parquet", "--out"),
                    lambda: atomic_output("/proc/e.parquet").__enter__()):
        with pytest.raises(InputError, match=r"cannot write in /proc \(no file can be created there\)"):
            attempt()
