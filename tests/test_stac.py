"""Tests for rsir_stac.stac: sources, asset choice, bands, datetimes, errors, sharding."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsir_stac.errors import AssetError, InputError, SourceNotFoundError, StacError
from rsir_stac.stac import SceneRef, iter_scenes, parse_shard, scene_shard, split_shard

GEOTIFF = "image/tiff; application=geotiff; profile=cloud-optimized"


def write_tif(path: Path, *, datetime_tag: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    with rasterio.open(
        path, "w", driver="GTiff", width=30, height=20, count=3, dtype="uint8",
        crs="EPSG:32615", transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 3300000.0),
    ) as dst:
        dst.write(rng.integers(0, 255, size=(3, 20, 30)).astype("uint8"))
        if datetime_tag:
            dst.update_tags(TIFFTAG_DATETIME=datetime_tag)
    return path


def item_dict(item_id: str, assets: dict, *, collection: str | None = None, **props) -> dict:
    d = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": {"type": "Point", "coordinates": [-93.0, 29.8]},
        "bbox": [-93.0, 29.8, -93.0, 29.8],
        "properties": {"datetime": "2020-05-01T10:00:00Z", **props},
        "links": [],
        "assets": assets,
    }
    if collection is not None:
        d["collection"] = collection
    return d


def write_json(path: Path, d: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return path


@pytest.fixture()
def catalog(tmp_path: Path) -> Path:
    """catalog.json -> collection "coll-a" -> item a1, a2 (a2 names its own collection); catalog -> item c1."""
    root = tmp_path / "cat"
    cat = {
        "type": "Catalog", "stac_version": "1.0.0", "id": "root", "description": "test",
        "links": [
            {"rel": "root", "href": "./catalog.json"},
            {"rel": "child", "href": "./coll-a/collection.json"},
            {"rel": "item", "href": "./c1/c1.json"},
        ],
    }
    coll = {
        "type": "Collection", "stac_version": "1.0.0", "id": "coll-a", "description": "test",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "links": [
            {"rel": "root", "href": "../catalog.json"},
            {"rel": "parent", "href": "../catalog.json"},
            {"rel": "item", "href": "./a1/a1.json"},
            {"rel": "item", "href": "./a2/a2.json"},
        ],
    }
    write_json(root / "catalog.json", cat)
    write_json(root / "coll-a" / "collection.json", coll)
    a1 = item_dict("a1", {"visual": {"href": "./a1.tif", "type": GEOTIFF, "roles": ["visual"]}})
    a2 = item_dict("a2", {"image": {"href": "../../shared/a2.tif", "type": GEOTIFF, "roles": ["data"]}}, collection="own")
    c1 = item_dict("c1", {"data": {"href": "c1.tif", "roles": ["data"]}})
    for d, sub in ((a1, "coll-a/a1/a1.json"), (a2, "coll-a/a2/a2.json"), (c1, "c1/c1.json")):
        d["links"] = [{"rel": "root", "href": os.path.relpath(root / "catalog.json", (root / sub).parent)}]
        write_json(root / sub, d)
    return root / "catalog.json"


# ------------------------------------------------------------------- catalogs


def test_catalog_walk(catalog: Path):
    scenes = list(iter_scenes([str(catalog)]))
    assert [s.item_id for s in scenes] == ["c1", "a1", "a2"]  # items of a node first, then children
    by_id = {s.item_id: s for s in scenes}
    assert by_id["c1"].collection is None
    assert by_id["a1"].collection == "coll-a"  # propagated from the parent collection
    assert by_id["a2"].collection == "own"  # the item's own field wins
    root = catalog.parent
    assert by_id["a1"].href == str(root / "coll-a" / "a1" / "a1.tif")
    assert by_id["a2"].href == str(root / "shared" / "a2.tif")
    assert by_id["c1"].href == str(root / "c1" / "c1.tif")
    assert by_id["a1"].asset_key == "visual" and by_id["a2"].asset_key == "image" and by_id["c1"].asset_key == "data"
    assert by_id["a1"].datetime == dt.datetime(2020, 5, 1, 10, tzinfo=dt.timezone.utc)
    assert list(iter_scenes([catalog])) == scenes  # deterministic, accepts Path
    # the collection alone is a valid source too
    assert [s.item_id for s in iter_scenes(str(root / "coll-a" / "collection.json"))] == ["a1", "a2"]


def test_catalog_broken_link(catalog: Path):
    (catalog.parent / "c1" / "c1.json").unlink()
    with pytest.raises(SourceNotFoundError, match="c1.json .*does not exist") as info:
        list(iter_scenes([str(catalog)]))
    assert "\n" not in str(info.value)


def test_one_broken_item_does_not_stop_a_catalogue(catalog: Path):
    """An item link that is missing, or an Item pystac refuses (datetime null with only a
    start), is that item's failure: the rest of the catalogue is listed (with ``on_error``,
    as ingest lists); without it the first failure is raised as before.  A child catalog
    that cannot be read fails alone too (trial-stac §4): named by its href and its parent."""
    root = catalog.parent
    (root / "c1" / "c1.json").unlink()
    a1 = json.loads((root / "coll-a" / "a1" / "a1.json").read_text())
    a1["properties"] = {"datetime": None, "start_datetime": "2020-01-01T00:00:00Z"}
    write_json(root / "coll-a" / "a1" / "a1.json", a1)
    errors: list = []
    scenes = list(iter_scenes([str(catalog)], on_error=errors.append))
    assert [s.item_id for s in scenes] == ["a2"]
    assert [e.item_id for e in errors] == ["c1", "a1"]
    assert "does not exist" in str(errors[0])
    assert "is not a valid STAC Item: datetime is null and there is no start_datetime/end_datetime; give it a " \
        "datetime, or both start_datetime and end_datetime" in str(errors[1])
    (root / "coll-a" / "collection.json").unlink()
    errors.clear()
    assert list(iter_scenes([str(catalog)], on_error=errors.append)) == []
    child = str(root / "coll-a" / "collection.json")
    assert [e.item_id for e in errors] == ["c1", child]
    assert isinstance(errors[1], SourceNotFoundError)
    assert str(errors[1]) == (f"child catalog {child} (linked from {catalog}) does not exist (its items are not "
                              "ingested); fix the link or the catalog")
    with pytest.raises(SourceNotFoundError, match="c1.json"):  # without on_error: the first failure
        list(iter_scenes([str(catalog)]))


def test_a_missing_child_catalog_fails_alone(catalog: Path):
    """trial-stac §4: one dead child link (a partial mirror) no longer stops the catalogue: its
    siblings and the parent's own items are listed, and the child is reported like a broken
    item link (a link to something that is not a catalog too)."""
    root = catalog.parent
    cat = json.loads(catalog.read_text())
    cat["links"].insert(1, {"rel": "child", "href": "./nosuch/catalog.json"})
    cat["links"].append({"rel": "child", "href": "./c1/c1.json"})  # an Item linked as a child
    write_json(catalog, cat)
    errors: list = []
    scenes = list(iter_scenes([str(catalog)], on_error=errors.append))
    assert [s.item_id for s in scenes] == ["c1", "a1", "a2"]
    assert [e.item_id for e in errors] == [str(root / "nosuch" / "catalog.json"), str(root / "c1" / "c1.json")]
    assert re.fullmatch(r"child catalog .*/nosuch/catalog\.json \(linked from .*/cat/catalog\.json\) does not "
                        r"exist \(its items are not ingested\); fix the link or the catalog", str(errors[0]))
    assert "c1.json (linked from" in str(errors[1]) and "is not a STAC Catalog" in str(errors[1])


def path_id(path) -> str:
    """The item id of a bare raster: stem + 12 hex digits of SHA-256 of its resolved path."""
    import hashlib

    real = os.path.realpath(path)
    return Path(path).stem + "-" + hashlib.sha256(real.encode()).hexdigest()[:12]


def test_folder_source(catalog: Path, tmp_path: Path):
    assert [s.item_id for s in iter_scenes([str(catalog.parent)])] == ["c1", "a1", "a2"]
    tiffs = tmp_path / "tiffs"
    (tiffs / "sub").mkdir(parents=True)
    write_tif(tiffs / "b.tif")
    write_tif(tiffs / "sub" / "a.TIFF")
    assert [s.item_id for s in iter_scenes([str(tiffs)])] == [path_id(tiffs / "b.tif"), path_id(tiffs / "sub" / "a.TIFF")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StacError, match="no catalog.json"):
        list(iter_scenes([str(empty)]))


def test_folder_with_a_catalogue_in_a_sub_folder(catalog: Path, tmp_path: Path):
    """A catalogue copied into a sub-folder of what is ingested (data/planet-disaster/collection.json)
    is read as STAC: its items with their dates and collection, not every .tif under it (masks
    included) as a loose raster with neither.  Loose rasters beside it are still ingested."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(catalog.parent, data / "cat")
    write_tif(data / "cat" / "c1" / "c1_udm.tif")  # an unlinked mask beside an item's asset
    write_tif(data / "loose.tif")
    scenes = list(iter_scenes([str(data)]))
    assert [s.item_id for s in scenes] == ["c1", "a1", "a2", path_id(data / "loose.tif")]
    assert [s.from_stac for s in scenes] == [True, True, True, False]
    assert {s.collection for s in scenes[:3]} == {None, "coll-a", "own"}


def test_item_collection(tmp_path: Path):
    fc = {
        "type": "FeatureCollection",
        "features": [
            item_dict("x1", {"visual": {"href": "imgs/x1.tif", "type": GEOTIFF, "roles": ["visual"]}}, collection="c"),
            item_dict("x2", {"visual": {"href": "https://example.com/x2.tif", "type": GEOTIFF, "roles": ["visual"]}}),
        ],
    }
    path = write_json(tmp_path / "search.geojson", fc)
    scenes = list(iter_scenes([str(path)]))
    assert [s.item_id for s in scenes] == ["x1", "x2"]
    assert scenes[0].href == str(tmp_path / "imgs" / "x1.tif")
    assert scenes[0].collection == "c" and scenes[1].collection is None
    assert scenes[1].href == "https://example.com/x2.tif"


# ---------------------------------------------------------------- asset choice


def _one(tmp_path: Path, assets: dict, **kwargs) -> SceneRef:
    path = write_json(tmp_path / "item.json", item_dict("it", assets))
    (scene,) = iter_scenes([str(path)], **kwargs)
    return scene


def test_asset_preference_order(tmp_path: Path):
    thumb = {"href": "t.png", "type": "image/png", "roles": ["thumbnail"]}
    data = {"href": "d.tif", "type": GEOTIFF, "roles": ["data"]}
    keyed = {"href": "v.tif", "type": GEOTIFF, "roles": ["data"]}
    visual = {"href": "vis.TIF", "roles": ["visual"]}  # GeoTIFF by extension
    assert _one(tmp_path, {"thumbnail": thumb, "d": data, "visual": keyed, "rgb": visual}).asset_key == "rgb"
    assert _one(tmp_path, {"thumbnail": thumb, "d": data, "visual": keyed}).asset_key == "visual"
    assert _one(tmp_path, {"thumbnail": thumb, "d": data}).asset_key == "d"
    old_type = {"href": "x", "type": "image/vnd.stac.geotiff; cloud-optimized=true", "roles": ["data"]}
    assert _one(tmp_path, {"thumbnail": thumb, "x": old_type}).asset_key == "x"
    assert _one(tmp_path, {"thumbnail": thumb, "d": data}, asset="thumbnail").asset_key == "thumbnail"


def test_no_usable_asset(tmp_path: Path):
    """No asset is a raster: the message says what each asset is and that the item cannot be tiled
    (--asset would only lead to another error, trial-stac §5)."""
    assets = {"thumbnail": {"href": "t.png", "type": "image/png", "roles": ["thumbnail"]},
              "meta": {"href": "m.xml", "type": "text/xml", "roles": ["metadata"]}}
    with pytest.raises(AssetError) as info:
        _one(tmp_path, assets)
    assert str(info.value) == (
        "item it has no GeoTIFF/COG asset: asset 'thumbnail' is image/png, asset 'meta' is text/xml, none a "
        "GeoTIFF/COG; it cannot be tiled (rsir-stac reads georeferenced rasters): add a GeoTIFF/COG asset to the "
        "item, or ingest such a file directly")
    assert info.value.item_id == "it"


def test_a_png_visual_asset_is_named_as_png_and_not_sent_to_asset(tmp_path: Path):
    """trial-stac §5: a `visual` asset that is a PNG was reported as "no asset with role
    'visual' ... pass --asset KEY", and --asset visual then failed differently.  Now the asset's
    type is named and --asset is advised only for assets that may be rasters (typed GeoTIFF or
    JPEG 2000, or untyped hrefs that are not pictures/metadata), with R,G,B keys when known."""
    png = {"visual": {"href": "v.png", "type": "image/png", "roles": ["visual"]}}
    with pytest.raises(AssetError) as info:
        _one(tmp_path, png)
    assert "asset 'visual' is image/png, not a GeoTIFF/COG" in str(info.value)
    assert "--asset" not in str(info.value) and "role 'visual'" not in str(info.value)
    untyped_jpg = {"browse": {"href": "b.JPG"}}
    with pytest.raises(AssetError, match=r"asset 'browse' is a \.JPG file with no media type, not a GeoTIFF/COG"):
        _one(tmp_path, untyped_jpg)
    # HLS-like: bands without type or roles (GeoTIFF by name), a JPEG and XML beside them
    hls = {k: {"href": f"https://h.example/T.{k}.tif"} for k in ("B02", "B03", "B04", "Fmask")}
    hls.update({"browse": {"href": "https://h.example/T.jpg", "type": "image/jpeg"},
                "metadata": {"href": "https://h.example/T.xml", "type": "application/xml"}})
    with pytest.raises(AssetError) as info:
        _one(tmp_path, hls)
    assert str(info.value) == (
        "item it has no GeoTIFF/COG asset with role 'visual' or 'data' (rasters: B02, B03, B04, Fmask; asset "
        "'browse' is image/jpeg, not a GeoTIFF/COG; asset 'metadata' is application/xml, not a GeoTIFF/COG); "
        "pass --asset KEY with one of the rasters (for colour: --asset B04,B03,B02, its R,G,B assets)")
    jp2 = {"B8": {"href": "x", "type": "image/jp2", "roles": ["reflectance"]},
           "thumb": {"href": "t.png", "type": "image/png"}}
    with pytest.raises(AssetError, match=r"\(rasters: B8; asset 'thumb' is image/png, not a GeoTIFF/COG\); pass "
                                         r"--asset KEY"):
        _one(tmp_path, jp2)


@pytest.mark.data
def test_real_hls_items_still_point_to_asset(shared_data: Path):
    src = shared_data / "stac" / "pystac-examples" / "item-collection_sample-item-collection.json"
    errors: list = []
    assert list(iter_scenes([str(src)], on_error=errors.append)) == []
    assert errors and all("pass --asset KEY with one of the rasters" in str(e) and "B04" in str(e) for e in errors)


def test_missing_asset_key(tmp_path: Path):
    assets = {"visual": {"href": "v.tif", "type": GEOTIFF, "roles": ["visual"]}}
    with pytest.raises(AssetError, match=r"item it has no asset 'B04' \(assets: visual\)"):
        _one(tmp_path, assets, asset="B04")


def test_on_error_skips_items(tmp_path: Path):
    good = item_dict("good", {"v": {"href": "v.tif", "type": GEOTIFF, "roles": ["visual"]}})
    bad = item_dict("bad", {"t": {"href": "t.png", "type": "image/png"}})
    path = write_json(tmp_path / "fc.json", {"type": "FeatureCollection", "features": [bad, good]})
    errors: list = []
    scenes = list(iter_scenes([str(path)], on_error=errors.append))
    assert [s.item_id for s in scenes] == ["good"]
    assert len(errors) == 1 and isinstance(errors[0], AssetError)
    with pytest.raises(AssetError):
        list(iter_scenes([str(path)]))


# ------------------------------------------------------------- bands, metadata


def test_bands_from_eo_bands_and_stac_1_1(tmp_path: Path):
    eo = [{"name": "B4", "common_name": "red"}, {"name": "B3", "common_name": "green"}, {"name": "B2", "common_name": "blue"}]
    scene = _one(tmp_path, {"visual": {"href": "v.tif", "type": GEOTIFF, "roles": ["visual"], "eo:bands": eo}})
    assert scene.bands == (1, 2, 3)
    bgrn = [{"name": "b", "eo:common_name": "blue"}, {"name": "g", "eo:common_name": "green"},
            {"name": "r", "eo:common_name": "red"}, {"name": "n", "eo:common_name": "nir"}]
    scene = _one(tmp_path, {"img": {"href": "i.tif", "type": GEOTIFF, "roles": ["data"], "bands": bgrn}})
    assert scene.bands == (3, 2, 1)
    single = _one(tmp_path, {"red": {"href": "r.tif", "type": GEOTIFF, "roles": ["data"], "eo:bands": eo[:1]}})
    assert single.bands is None
    override = _one(tmp_path, {"visual": {"href": "v.tif", "type": GEOTIFF, "roles": ["visual"], "eo:bands": eo}}, bands=[3, 2, 1])
    assert override.bands == (3, 2, 1)


def test_bands_from_the_items_eo_bands(tmp_path: Path):
    """eo:bands in the Item's properties (eo extension v1: "Item Properties or Asset") names
    the bands of its only GeoTIFF asset: a B,G,R,NIR file is read as 3,2,1 (it was read as
    1,2,3, red and blue swapped); with two GeoTIFF assets the list describes neither."""
    bgrn = [{"name": "b", "common_name": "blue"}, {"name": "g", "common_name": "green"},
            {"name": "r", "common_name": "red"}, {"name": "n", "common_name": "nir"}]
    one = {"img": {"href": "i.tif", "type": GEOTIFF, "roles": ["data"]}}
    path = write_json(tmp_path / "item.json", item_dict("it", one, **{"eo:bands": bgrn}))
    (scene,) = iter_scenes([str(path)])
    assert scene.bands == (3, 2, 1)
    two = {**one, "other": {"href": "o.tif", "type": GEOTIFF, "roles": ["data"]}}
    path = write_json(tmp_path / "item2.json", item_dict("it2", two, **{"eo:bands": bgrn}))
    (scene,) = iter_scenes([str(path)])
    assert scene.bands is None


def test_percent_encoded_relative_hrefs_are_decoded(tmp_path: Path):
    """``../data/my%20scene.tif`` (a URI reference) names ``my scene.tif``, as a ``file://`` href did."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my scene.tif").write_bytes(b"II*\x00")
    (tmp_path / "items").mkdir()
    one = {"img": {"href": "../data/my%20scene.tif", "type": GEOTIFF, "roles": ["data"]}}
    path = write_json(tmp_path / "items" / "item.json", item_dict("it", one))
    (scene,) = iter_scenes([str(path)])
    assert scene.href == str(tmp_path / "data" / "my scene.tif")
    (tmp_path / "data" / "odd%20name.tif").write_bytes(b"II*\x00")  # a file really named so stays
    one = {"img": {"href": "../data/odd%20name.tif", "type": GEOTIFF, "roles": ["data"]}}
    path = write_json(tmp_path / "items" / "item2.json", item_dict("it2", one))
    (scene,) = iter_scenes([str(path)])
    assert scene.href == str(tmp_path / "data" / "odd%20name.tif")


def test_bad_band_override(tmp_path: Path):
    with pytest.raises(InputError):
        list(iter_scenes([str(tmp_path)], bands=[1, 2]))
    with pytest.raises(InputError):
        list(iter_scenes([str(tmp_path)], bands=[0, 1, 2]))


def test_datetime_and_properties(tmp_path: Path):
    d = item_dict("it", {"v": {"href": "v.tif", "type": GEOTIFF, "roles": ["visual"], "gsd": 0.5}}, gsd=3.0, platform="sat")
    d["properties"]["datetime"] = None
    d["properties"]["start_datetime"] = "2021-01-02T03:04:05+02:00"
    d["properties"]["end_datetime"] = "2021-01-03T00:00:00Z"
    (scene,) = iter_scenes([str(write_json(tmp_path / "i.json", d))])
    assert scene.datetime == dt.datetime(2021, 1, 2, 1, 4, 5, tzinfo=dt.timezone.utc)
    assert scene.datetime.tzinfo == dt.timezone.utc
    assert scene.properties["gsd"] == 0.5 and scene.properties["platform"] == "sat"
    hash(scene)  # frozen and hashable despite the properties mapping


# ---------------------------------------------------------------- raster sources


def test_geotiff_source(tmp_path: Path):
    path = write_tif(tmp_path / "scene_01.tif", datetime_tag="2019:07:04 12:30:00")
    (scene,) = iter_scenes([str(path)])
    assert scene == SceneRef(path_id(path), None, "data", str(path), None, dt.datetime(2019, 7, 4, 12, 30, tzinfo=dt.timezone.utc),
                             from_stac=False)
    assert scene.identity_collection is None  # a bare raster's collection is a label, not identity
    plain = write_tif(tmp_path / "plain.tif")
    assert next(iter_scenes([str(plain)]), None).datetime is None
    # decided by content, not extension
    renamed = tmp_path / "scene.bin"
    renamed.write_bytes(path.read_bytes())
    assert next(iter_scenes([str(renamed)])).asset_key == "data"
    item_txt = write_json(tmp_path / "item.txt", item_dict("fromtxt", {"v": {"href": "v.tif", "type": GEOTIFF, "roles": ["visual"]}}))
    assert next(iter_scenes([str(item_txt)])).item_id == "fromtxt"
    assert next(iter_scenes([str(path)], bands=[2])).bands == (2, 2, 2)


# ------------------------------------------------------------------------ errors


def test_source_errors(tmp_path: Path):
    with pytest.raises(SourceNotFoundError, match="nope.json does not exist"):
        list(iter_scenes([str(tmp_path / "nope.json")]))
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "Feature", "id": ')
    with pytest.raises(StacError, match="broken.json is not valid JSON") as info:
        list(iter_scenes([str(broken)]))
    assert "\n" not in str(info.value)
    other = write_json(tmp_path / "other.json", {"name": "not stac", "values": [1, 2]})
    with pytest.raises(StacError, match="other.json is JSON but not a STAC") as info:
        list(iter_scenes([str(other)]))
    assert "\n" not in str(info.value)
    array = tmp_path / "array.json"
    array.write_text("[1, 2, 3]")
    with pytest.raises(StacError, match="not a STAC"):
        list(iter_scenes([str(array)]))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(StacError, match="neither STAC JSON nor a raster"):
        list(iter_scenes([str(text)]))
    no_id = {"type": "Feature", "stac_version": "1.0.0", "properties": {}, "geometry": None, "links": [], "assets": {}}
    with pytest.raises(StacError, match="not a valid STAC Item: datetime is null"):
        list(iter_scenes([str(write_json(tmp_path / "noid.json", no_id))]))


# ----------------------------------------------------------------------- shards


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard(" 3/4 ") == (3, 4)
    for bad in ("4/4", "-1/4", "1/0", "a/b", "1", "1/2/3", ""):
        with pytest.raises(InputError, match="use I/N"):
            parse_shard(bad)


def test_split_shard_partitions():
    scenes = [SceneRef(f"item-{i}", None, "visual", f"/x/{i}.tif") for i in range(200)]
    parts = [list(split_shard(scenes, (i, 4))) for i in range(4)]
    assert sorted((s.item_id for p in parts for s in p), key=lambda x: int(x.split("-")[1])) == [s.item_id for s in scenes]
    assert all(len(p) > 20 for p in parts)
    assert list(split_shard(iter(scenes), (1, 4))) == parts[1]  # stable and lazy-friendly
    assert scene_shard(scenes[0], 4) == scene_shard(SceneRef("item-0", "other", "visual", "/elsewhere.tif"), 4)
    assert list(split_shard(scenes, None)) == scenes
    with pytest.raises(InputError):
        split_shard(scenes, (4, 4))


# --------------------------------------------------------------------- real data


@pytest.mark.data
def test_planet_disaster_catalog(shared_data: Path):
    scenes = list(iter_scenes([str(shared_data / "stac" / "planet-disaster" / "collection.json")]))
    assert len(scenes) == 5
    assert len({s.item_id for s in scenes}) == 5
    for s in scenes:
        assert s.collection == "planet-disaster-data"
        assert os.path.isabs(s.href) and os.path.isfile(s.href), s.href
        assert s.href.lower().endswith(".tif")
        assert s.datetime is not None and s.datetime.tzinfo == dt.timezone.utc
        assert s.datetime.date() == dt.date(2017, 8, 31)
        assert "gsd" in s.properties
    by_id = {s.item_id: s for s in scenes}
    assert by_id["20170831_172754_101c"].asset_key == "visual"  # role visual beats the uint16 analytic data asset
    assert by_id["Houston-East-20170831-103f-100d-0f4f-RGB"].asset_key == "mosaic"


@pytest.mark.data
def test_planet_disaster_scenes_open(shared_data: Path):
    from rsir_stac.tiling import SceneReader

    scene = next(iter_scenes([str(shared_data / "stac" / "planet-disaster" / "collection.json")]))
    with SceneReader.open(scene.href, bands=scene.bands, tile_size=128) as reader:
        tile = next(reader.iter_tiles())
        assert tile.pixels.shape == (128, 128, 3)


@pytest.mark.data
def test_odc_item_bands_from_eo(shared_data: Path):
    path = shared_data / "stac" / "odc-stac-items" / "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
    (scene,) = iter_scenes([str(path)])
    assert scene.asset_key == "visual" and scene.bands == (1, 2, 3)
    assert scene.collection == "sentinel-2-l2a"
    assert scene.href.startswith("https://") and scene.href.endswith("TCI_10m.tif")
    assert scene.datetime == dt.datetime(2019, 6, 29, 21, 25, 29, 24000, tzinfo=dt.timezone.utc)
    (red,) = iter_scenes([str(path)], asset="B04")
    assert red.bands is None and red.asset_key == "B04"
    with pytest.raises(AssetError, match="has no asset 'nope'"):
        list(iter_scenes([str(path)], asset="nope"))


@pytest.mark.data
def test_odc_item_relative_href(shared_data: Path):
    folder = shared_data / "stac" / "odc-stac-items"
    (scene,) = iter_scenes([str(folder / "LC08_L2SR_081119_20200101_20200823_02_T2.json")], asset="SR_B2.TIF")
    assert scene.href == str(folder / "tests" / "data-files" / "landsat" / "LC08_L2SR_081119_20200101_20200823_02_T2_SR_B2_small.TIF")


def test_messages_for_odd_inputs_name_the_real_cause(tmp_path: Path):
    """An item with no assets is not fixed by --asset; a feature with a null geometry is GeoJSON;
    a BOM is allowed before GeoJSON; a legacy crs naming EPSG:4326 (lat, lon order) with
    swapped coordinates says so."""
    from rsir_stac.store.filters import load_polygon, polygon_from_geojson

    with pytest.raises(AssetError, match="has no assets at all; fix the item"):
        _one(tmp_path, {})
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None, "properties": {}}]}
    with pytest.raises(InputError, match=r"feature 1 has no geometry \(null\)"):
        polygon_from_geojson(fc, "polygon file x")
    ring = [[10.0, 45.0], [11.0, 45.0], [11.0, 46.0], [10.0, 46.0], [10.0, 45.0]]
    (tmp_path / "bom.geojson").write_bytes(b"\xef\xbb\xbf" + json.dumps({"type": "Polygon", "coordinates": [ring]}).encode())
    assert load_polygon(tmp_path / "bom.geojson").polygons
    latlon = {"type": "Polygon", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4326"}},
              "coordinates": [[[-33.8, 151.1], [-33.8, 151.3], [-33.9, 151.3], [-33.8, 151.1]]]}
    with pytest.raises(InputError, match="axis order is latitude, longitude"):
        polygon_from_geojson(latlon, "polygon")


def test_linked_folders_are_named_not_skipped_without_a_word(tmp_path: Path, caplog):
    """Adaptation trial: a folder of links to folders of rasters was walked without them and the run
    exited 0 (or was refused as holding no .tif files, a cause that named no fix)."""
    import logging

    real = tmp_path / "real"
    real.mkdir()
    write_tif(real / "r.tif")
    top = tmp_path / "top"
    top.mkdir()
    (top / "b").symlink_to(real)
    with pytest.raises(StacError, match=r"linked folders are not followed: b; pass each as a source"):
        list(iter_scenes([str(top)]))
    write_tif(top / "here.tif")
    with caplog.at_level(logging.WARNING, logger="rsir_stac.stac"):
        scenes = list(iter_scenes([str(top)]))
    assert [s.item_id for s in scenes] == [path_id(top / "here.tif")]
    (msg,) = [r.getMessage() for r in caplog.records if "linked folder" in r.getMessage()]
    assert "1 linked folder not read (b)" in msg and f"ingest {top / 'b'}" in msg, msg
    assert [s.item_id for s in iter_scenes([str(top / "b")])] == [path_id(top / "b" / "r.tif")]  # the fix works


def test_a_sub_folder_catalogue_naming_rasters_beside_it_reads_them_once(tmp_path: Path):
    """Re-check: data/stac/collection.json whose item names ../rasters/x.tif (a catalogue folder
    beside a data folder) indexed x.tif twice, as the item and as a loose raster without date."""
    data = tmp_path / "data"
    (data / "rasters").mkdir(parents=True)
    write_tif(data / "rasters" / "x.tif")
    write_tif(data / "rasters" / "loose.tif")
    coll = {"type": "Collection", "stac_version": "1.0.0", "id": "c", "description": "t", "license": "CC-BY-4.0",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            "links": [{"rel": "item", "href": "./x/x.json"}]}
    write_json(data / "stac" / "collection.json", coll)
    write_json(data / "stac" / "x" / "x.json",
               item_dict("x", {"data": {"href": "../../rasters/x.tif", "type": GEOTIFF, "roles": ["data"]}}))
    scenes = list(iter_scenes([str(data)]))
    assert [(s.item_id, s.from_stac) for s in scenes] == [("x", True), (path_id(data / "rasters" / "loose.tif"), False)]
