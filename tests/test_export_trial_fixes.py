"""Export trial (exp35, B3/B4): a filtered ``export --stac`` describes the rows it wrote (spatial extent,
antimeridian-aware, and the collections summary), not the whole index, and says so when it wrote none;
the model's MLM Item copied beside the Collection links files that exist."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from rsir_stac.search import Index
from rsir_stac.store import Point, SearchFilter
from tests.conftest import index_of_points

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

STEP = 0.01  # degrees per tile


def _tile(n: int, w: float, s: float, collection: str, dim: int, model_id: str) -> Point:
    """One tile of ``STEP`` degrees at ``(w, s)``; its box crosses 180 when ``w + STEP`` passes it."""
    e = w + STEP
    e = e - 360.0 if e > 180.0 else e
    n_ = s + STEP
    payload = {
        "item_id": f"{collection}-scene", "collection": collection, "asset": "visual",
        "href": f"/data/{collection}.tif", "crs": "EPSG:4326",
        "window": {"col_off": n * 64, "row_off": 0, "width": 64, "height": 64},
        "bbox": [w, s, e, n_], "location": {"lon": w + STEP / 2 if w + STEP / 2 <= 180 else w + STEP / 2 - 360,
                                            "lat": s + STEP / 2},
        "corners": [{"lon": w, "lat": n_}, {"lon": e, "lat": n_}, {"lon": e, "lat": s}, {"lon": w, "lat": s}],
        "datetime": "2020-06-01T00:00:00Z", "datetime_epoch": 1590969600.0, "gsd": 0.3, "model_id": model_id,
    }
    vec = np.random.default_rng(n).normal(size=dim).astype(np.float32)
    return Point(str(uuid.uuid5(uuid.NAMESPACE_URL, f"x/{collection}/{n}")), vec, payload)


@pytest.fixture(scope="module")
def two_places(shipped_bundle, tmp_path_factory) -> Path:
    """Collection ``fiji``: 3 tiles either side of 180° (one crossing it); collection ``fields``: 4 tiles at 10°E."""
    b = shipped_bundle
    pts = [_tile(i, w, -16.5, "fiji", b.dim, b.model_id) for i, w in enumerate((179.975, 179.985, 179.995, -179.995))]
    pts += [_tile(10 + i, 10.0 + i * STEP, 45.0, "fields", b.dim, b.model_id) for i in range(4)]
    return index_of_points(tmp_path_factory.mktemp("exp") / "index", pts, b)


def _export(root: Path, bundle, out: Path, flt: SearchFilter | None) -> dict:
    from rsir_stac.export import export_index

    with Index.open(str(root), model=bundle) as idx:
        res = export_index(idx, out, flt=flt, stac_collection=out.with_suffix(".json"))
    return {**res, "doc": json.loads(out.with_suffix(".json").read_text())}


def _core_valid(doc: dict) -> None:
    """What STAC's core Collection schema asks of the extent and summaries (one bbox at least, of 4
    numbers; a summary is a non-empty set of values or a range), checked against the schema bundled with
    pystac where jsonschema is installed (no network: the extension schemas are left out), and pystac reads it."""
    import pystac

    boxes = doc["extent"]["spatial"]["bbox"]
    assert len(boxes) >= 1 and all(len(b) == 4 and all(isinstance(x, (int, float)) for x in b) for b in boxes)
    for name, value in doc["summaries"].items():
        assert (isinstance(value, list) and value) or {"minimum", "maximum"} <= set(value), name
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        pass
    else:
        from pystac.validation import validate_dict

        validate_dict({**doc, "stac_extensions": []}, pystac.STACObjectType.COLLECTION)
    pystac.Collection.from_dict(doc)


def test_filtered_export_collection_describes_the_rows_written(two_places, shipped_bundle, tmp_path):
    import pystac

    got = _export(two_places, shipped_bundle, tmp_path / "fields.parquet", SearchFilter(bbox=(9.0, 44.0, 11.0, 46.0)))
    doc = got["doc"]
    assert got["rows"] == 4
    w, s, e, n = doc["extent"]["spatial"]["bbox"][0]
    assert (w, s, e, n) == pytest.approx((10.0, 45.0, 10.04, 45.01))  # the 4 tiles, not the index (across 180)
    assert doc["summaries"]["collection"] == ["fields"]
    _core_valid(doc)
    # the rows across the antimeridian: a W > E box, as the index's own extent is
    got = _export(two_places, shipped_bundle, tmp_path / "fiji.parquet", SearchFilter(collections=("fiji",)))
    w, s, e, n = got["doc"]["extent"]["spatial"]["bbox"][0]
    assert got["rows"] == 4 and w > e and (w, s, e, n) == pytest.approx((179.975, -16.5, -179.985, -16.49))
    assert got["doc"]["summaries"]["collection"] == ["fiji"]
    _core_valid(got["doc"])
    # no row: a valid Collection that says it describes no tile, not one claiming the index's footprint
    got = _export(two_places, shipped_bundle, tmp_path / "none.parquet", SearchFilter(collections=("nothing",)))
    doc = got["doc"]
    assert got["rows"] == 0 and doc["assets"]["embeddings"]["table:row_count"] == 0
    assert doc["extent"]["spatial"]["bbox"] == [[-180.0, -90.0, 180.0, 90.0]]
    assert doc["extent"]["temporal"]["interval"] == [[None, None]]
    assert "collection" not in doc["summaries"] and "no tile" in doc["description"]
    _core_valid(doc)
    col = pystac.Collection.from_file(str(tmp_path / "none.json"))
    assert col.extent.spatial.bboxes == [[-180.0, -90.0, 180.0, 90.0]]


def test_model_item_copied_beside_the_collection_links_existing_files(two_places, shipped_bundle, tmp_path):
    """The MLM Item's assets were ./weights.pt, ./model.json, ./reducer.npz: none beside the copy."""
    import pystac

    from rsir_stac.model.bundle import MLM

    got = _export(two_places, shipped_bundle, tmp_path / "all.parquet", None)
    link = next(lk for lk in got["doc"]["links"] if lk["rel"] == "derived-from")
    copy = tmp_path / link["href"]
    item = pystac.Item.from_file(str(copy))
    assert {"weights", "metadata", "reducer"} <= set(item.assets)
    assert any("mlm:model" in (a.roles or []) for a in item.assets.values())  # the MLM extension asks for one
    for key, asset in item.assets.items():
        where = Path(asset.get_absolute_href())
        assert where.is_file() and where.parent == Path(shipped_bundle.path).resolve(), (key, where)
    assert json.loads((Path(shipped_bundle.path) / MLM).read_text())["assets"]["weights"]["href"] == "./weights.pt"


def test_model_item_copy_leaves_out_an_asset_the_bundle_lacks(shipped_bundle, tmp_path):
    from rsir_stac.model.bundle import MLM
    from rsir_stac.stac.embeddings import _mlm_copy

    (tmp_path / MLM).write_text((Path(shipped_bundle.path) / MLM).read_text())
    (tmp_path / "weights.pt").write_bytes(b"w")
    assets = _mlm_copy(tmp_path / MLM)["assets"]
    assert assets == {"weights": {**assets["weights"], "href": str((tmp_path / "weights.pt").resolve())}}


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_export_whose_collection_cannot_be_replaced_writes_nothing(two_places, shipped_bundle, tmp_path,
                                                                      monkeypatch):
    """Trial B6: `export --stac` whose Collection could not be replaced (an immutable or read-only mounted
    file) failed after the GeoParquet and the model item were written, and named a hidden temporary file.
    The three files are now written together: the refusal names the --stac path, and every file is as before.
    The file system's refusal is the one a read-only bind-mounted file gives (EBUSY on rename)."""
    import errno
    import os

    from rsir_stac.atomic import OutputError
    from rsir_stac.export import export_index

    out, stac = tmp_path / "tiles.parquet", tmp_path / "tiles.json"
    out.write_bytes(b"the previous export")
    stac.write_text("the previous collection")
    before = _listing(tmp_path)
    real = os.replace

    def mounted(src, dst, *a, **kw):   # the file under --stac is a bind mount: it cannot be renamed or replaced
        if Path(src) == stac or Path(dst) == stac:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(src))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", mounted)
    with Index.open(str(two_places), model=shipped_bundle) as idx:
        with pytest.raises(OutputError, match=f"^{stac} cannot be replaced .*nothing of this run was written"):
            export_index(idx, out, stac_collection=stac)
    monkeypatch.undo()
    assert _listing(tmp_path) == before   # no parquet, no model item, no temporary file
    # and the same run with the Collection replaceable writes all three
    with Index.open(str(two_places), model=shipped_bundle) as idx:
        res = export_index(idx, out, stac_collection=stac)
    assert res["rows"] == 8 and json.loads(stac.read_text())["assets"]["embeddings"]["href"] == "./tiles.parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["tiles.parquet", "tiles.json", f"{shipped_bundle.model_id}.mlm-item.json"])


def test_an_export_to_an_immutable_collection_file_writes_nothing(two_places, shipped_bundle, tmp_path):
    """The same with a real immutable file (chattr +i; root with the capability only)."""
    import shutil
    import subprocess

    from rsir_stac.atomic import OutputError
    from rsir_stac.export import export_index

    stac = tmp_path / "tiles.json"
    stac.write_text("the previous collection")
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(stac)], capture_output=True).returncode:
        pytest.skip("chattr +i is not allowed here (needs root and CAP_LINUX_IMMUTABLE)")
    try:
        before = _listing(tmp_path)
        with Index.open(str(two_places), model=shipped_bundle) as idx:
            with pytest.raises(OutputError, match=f"^{stac} cannot be replaced"):
                export_index(idx, tmp_path / "tiles.parquet", stac_collection=stac)
        assert _listing(tmp_path) == before
    finally:
        subprocess.run(["chattr", "-i", str(stac)], capture_output=True)


def test_a_stac_collection_path_that_is_not_json_is_refused_before_any_write(two_places, shipped_bundle, tmp_path):
    """Trial K4: `--stac x.xml` wrote JSON under an .xml name."""
    from rsir_stac.errors import InputError
    from rsir_stac.export import export_index

    with Index.open(str(two_places), model=shipped_bundle) as idx:
        with pytest.raises(InputError, match=r"--stac .*x\.xml: a STAC Collection is a JSON document; .*--stac x\.json"):
            export_index(idx, tmp_path / "t.parquet", stac_collection=tmp_path / "x.xml")
    assert list(tmp_path.iterdir()) == []
