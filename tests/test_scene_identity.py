"""Issue 13, case 3: a bare raster's identity is its resolved path, not its file name."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.store import Point, open_store
from tests.conftest import make_geotiff

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

NATIVE = IngestOptions(tile_size=64, native_gsd=True)


def path_id(path: Path) -> str:
    return f"{path.stem}-{hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:12]}"


@pytest.fixture()
def twins(tmp_path):
    """y2019/T33TWL.tif and y2020/T33TWL.tif: same name, different places and pixels, 2 tiles each."""
    out = []
    for year, east, seed in (("y2019", 500000.0, 1), ("y2020", 520000.0, 2)):
        (tmp_path / year).mkdir()
        out.append(make_geotiff(tmp_path / year / "T33TWL.tif", width=128, height=64, origin=(east, 3300000.0),
                                seed=seed))
    return out


def _items(index):
    with open_store(str(index), read_only=True) as store:
        return sorted(p.payload["item_id"] for p in store.iter_points(with_vectors=False)), store.count()


def test_two_files_with_one_name_in_one_run(tmp_path, twins, tiny_bundle):
    idx = tmp_path / "idx"
    report = ingest([str(p) for p in twins], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written == 4
    items, count = _items(idx)
    assert count == 4  # what the summary says is what is stored
    assert items == sorted([path_id(twins[0])] * 2 + [path_id(twins[1])] * 2)
    again = ingest([str(p) for p in twins], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert (again.points_written, again.tiles_existing) == (0, 4)  # still idempotent
    assert _items(idx)[1] == 4


def test_two_files_with_one_name_in_two_runs(tmp_path, twins, tiny_bundle):
    idx = tmp_path / "idx"
    first = ingest([str(twins[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    second = ingest([str(twins[1])], index=str(idx), model=tiny_bundle, options=NATIVE)
    assert (first.points_written, second.points_written, second.tiles_existing) == (2, 2, 0)
    assert _items(idx)[1] == 4


def test_a_file_listed_twice_is_ingested_once(tmp_path, twins, tiny_bundle):
    link = tmp_path / "link.tif"
    link.symlink_to(twins[0])  # the same file by another name: the same resolved path
    report = ingest([str(twins[0].parent), str(twins[0]), str(link)], index=str(tmp_path / "idx"),
                    model=tiny_bundle, options=NATIVE)
    assert report.ok and report.points_written == 2 and report.items_done == 1
    assert _items(tmp_path / "idx") == ([path_id(twins[0])] * 2, 2)


def test_two_stac_items_with_one_id_are_reported_not_merged(tmp_path, twins, tiny_bundle):
    docs = []
    for i, tif in enumerate(twins):
        item = {"type": "Feature", "stac_version": "1.0.0", "id": "scene", "collection": "c", "geometry": None,
                "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [],
                "assets": {"data": {"href": str(tif), "type": "image/tiff", "roles": ["data"]}}}
        docs.append(tmp_path / f"item{i}.json")
        docs[-1].write_text(json.dumps(item))
    report = ingest([str(d) for d in docs], index=str(tmp_path / "idx"), model=tiny_bundle, options=NATIVE)
    assert report.points_written == 2 and not report.ok
    (failed,) = report.items_failed
    assert failed["item"] == "scene" and str(twins[0]) in failed["error"] and str(twins[1]) in failed["error"]
    assert "item ids must be unique within a collection" in failed["error"]


def test_points_with_the_old_item_id_are_counted_in_info(tmp_path, twins, tiny_bundle):
    from rsir_stac.cli import main
    from click.testing import CliRunner

    idx = tmp_path / "idx"
    ingest([str(twins[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    with open_store(str(idx)) as store:
        p = next(store.iter_points())
        old = dict(p.payload, item_id="T33TWL")  # as written before path-based ids
        store.upsert([Point("0c5b7d5e-0000-4000-8000-000000000001", np.asarray(p.vector), old)])
        info = store.info()
    assert info.legacy_item_ids == 1 and info.count == 3
    assert any("file name alone" in n and "new --index" in n for n in info.notes)
    out = CliRunner().invoke(main, ["info", "--index", str(idx)])
    assert out.exit_code == 0 and json.loads(out.output)["legacy_item_ids"] == 1


def test_collection_and_date_added_later_relabel_instead_of_duplicating(tmp_path, twins, tiny_bundle):
    import dataclasses
    import datetime as dt

    idx = tmp_path / "idx"
    first = ingest([str(twins[0])], index=str(idx), model=tiny_bundle, options=NATIVE)
    with open_store(str(idx), read_only=True) as store:
        before = {p.id: p.vector for p in store.iter_points(with_vectors=True)}
    when = (dt.datetime(2019, 6, 1, tzinfo=dt.timezone.utc), dt.datetime(2019, 8, 31, tzinfo=dt.timezone.utc))
    labelled = dataclasses.replace(NATIVE, collection="naip", datetime=when)
    again = ingest([str(twins[0])], index=str(idx), model=tiny_bundle, options=labelled)
    assert (first.points_written, again.points_written, again.tiles_relabelled) == (2, 0, 2)
    with open_store(str(idx), read_only=True) as store:
        pts = list(store.iter_points(with_vectors=True))
    assert {p.id for p in pts} == set(before)  # same tiles, no duplicates
    for p in pts:
        assert p.payload["collection"] == "naip" and p.payload["start_datetime"].startswith("2019-06-01")
        assert p.payload["datetime_end_epoch"] == when[1].timestamp()
        assert np.array_equal(p.vector, before[p.id])  # vectors kept, nothing re-embedded
    third = ingest([str(twins[0])], index=str(idx), model=tiny_bundle, options=labelled)
    assert (third.points_written, third.tiles_relabelled, third.tiles_existing) == (0, 0, 2)
