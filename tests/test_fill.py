"""A rotated scene's black border that the file does not mark as nodata is named at ingest
(analyst trial: a SkySat scene's zero fill was indexed as tiles and drawn as an opaque frame)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.conftest import make_geotiff


def _diamond(path, nodata=None, fill_corners=True, fill=0):
    """A 128 px scene: textured data inside a diamond, ``fill`` outside (a scene rotated in its grid)."""
    import rasterio

    make_geotiff(path, width=128, height=128, seed=4, nodata=nodata)
    with rasterio.open(path, "r+") as ds:
        arr = ds.read()
        arr[arr <= fill] = fill + 1  # no fill value inside the image itself
        if fill_corners:
            yy, xx = np.mgrid[0:128, 0:128]
            arr[:, np.abs(yy - 63.5) + np.abs(xx - 63.5) > 64] = fill
        ds.write(arr)
    return path


@pytest.mark.parametrize("nodata, corners, warned", [(None, True, True), (0, True, False), (None, False, False)])
def test_an_unmarked_zero_border_is_named_with_the_flag_that_masks_it(tmp_path, tiny_bundle, caplog, nodata,
                                                                      corners, warned):
    from rsir_stac.ingest import IngestOptions, ingest

    tif = _diamond(tmp_path / "rotated.tif", nodata=nodata, fill_corners=corners)
    with caplog.at_level(logging.WARNING, logger="rsir_stac.ingest.fill"):
        report = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                        options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    assert report.ok, report
    said = [r.getMessage() for r in caplog.records if r.name == "rsir_stac.ingest.fill"]
    if warned:
        assert len(said) == 1 and "corners are 0 in every band" in said[0] and "--nodata 0" in said[0], said
        assert [i.split("-")[0] for i in report.items_unmasked_fill] == ["rotated"]   # in the report (ingest --json)
    else:
        assert not said and not report.items_unmasked_fill, said
    if warned:  # the advice, followed, masks the border: fewer tiles
        masked = ingest([str(tif)], index=str(tmp_path / "idx2"), model=tiny_bundle,
                        options=IngestOptions(tile_size=32, gsd=None, native_gsd=True, nodata=0.0))
        plain = ingest([str(tif)], index=str(tmp_path / "idx3"), model=tiny_bundle,
                       options=IngestOptions(tile_size=32, gsd=None, native_gsd=True))
        assert masked.points_written < plain.points_written


def test_a_fill_of_another_constant_is_named_with_its_value(tmp_path, tiny_bundle, caplog):
    """Adaptation trial: a uint16 mosaic whose fill is 1 (no nodata) became 45 % of an index, one
    identical vector, and searches answered tiles on another continent at distance 0."""
    from rsir_stac.ingest import IngestOptions, ingest

    tif = _diamond(tmp_path / "mosaic.tif", fill=1)
    with caplog.at_level(logging.WARNING, logger="rsir_stac.ingest.fill"):
        report = ingest([str(tif)], index=str(tmp_path / "idx"), model=tiny_bundle,
                        options=IngestOptions(tile_size=64, gsd=None, native_gsd=True))
    said = [r.getMessage() for r in caplog.records if r.name == "rsir_stac.ingest.fill"]
    assert len(said) == 1 and "corners are 1 in every band" in said[0] and "--nodata 1" in said[0], said
    assert report.items_unmasked_fill
    masked = ingest([str(tif)], index=str(tmp_path / "idx2"), model=tiny_bundle,
                    options=IngestOptions(tile_size=32, gsd=None, native_gsd=True, nodata=1.0))
    plain = ingest([str(tif)], index=str(tmp_path / "idx3"), model=tiny_bundle,
                   options=IngestOptions(tile_size=32, gsd=None, native_gsd=True))
    assert masked.points_written < plain.points_written
