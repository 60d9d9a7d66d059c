"""How a stored tile is read again: its payload (written by ``rsir-stac ingest``) gives the
new point id, the scene to open (:class:`_SourceKey`, the parameters of its ingest) and its
window in the target-GSD grid, with ``--relocate`` applied to the hrefs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from rsir_stac.relocate import relocated


class _Grid(NamedTuple):
    """A tile in the target-GSD pixel grid (the payload's ``grid``)."""

    col_off: int
    row_off: int
    width: int
    height: int

    def __str__(self) -> str:
        return f"col_off={self.col_off},row_off={self.row_off},width={self.width},height={self.height}"


class _SourceKey(NamedTuple):
    """How a tile's scene is opened: the parameters of its ingest."""

    href: str
    bands: tuple[int, ...] | None
    gsd: float | None
    tile_size: int
    stride: int
    edge: str
    nodata: float | tuple[float | None, ...] | None = None  # three (R, G, B files) for a composed scene
    band_hrefs: tuple[str, ...] | None = None  # the R, G, B files of a composed scene (href is the first)


class _Todo(NamedTuple):
    new_id: str
    key: _SourceKey
    grid: _Grid
    payload: dict
    stored_href: str = ""  # the href the old index stores (before --relocate)


def _plan(payload: dict, model_id: str, relocate: Callable[[str], str] | Sequence[tuple[str, str]] = ()
          ) -> tuple[str, _SourceKey, _Grid]:
    """New point id, scene key and grid of one stored tile (KeyError/TypeError/
    ValueError when the payload was not written by ``rsir-stac ingest``).  The id does not
    depend on the href, so a relocated source keeps its tiles' ids."""
    from rsir_stac.ingest.points import payload_point_id
    from rsir_stac.tiling.stack import payload_band_hrefs, payload_nodata

    t = payload["tiling"]
    g = payload["grid"]
    grid = _Grid(int(g["col_off"]), int(g["row_off"]), int(g["width"]), int(g["height"]))
    tile_size, stride, edge = int(t["tile_size"]), int(t["stride"]), str(t["edge"])
    gsd = None if t.get("gsd") is None else float(t["gsd"])
    bands = tuple(int(b) for b in t["bands"]) if t.get("bands") else None
    nodata = payload_nodata(t.get("nodata"))
    move = relocate if callable(relocate) else (lambda h: relocated(h, relocate))
    files = payload_band_hrefs(payload)  # None for a tile of one file
    band_hrefs = None if files is None else tuple(move(h) for h in files)
    key = _SourceKey(move(str(payload["href"])), bands, gsd, tile_size, stride, edge, nodata, band_hrefs)
    pid = payload_point_id(payload, model_id)
    return pid, key, grid


def _ingest_options(key: _SourceKey, payload: dict) -> str:
    """The ``rsir-stac ingest`` options that read the source as it was read (its tiling,
    and for a bare raster its collection and datetime), to ingest it again by hand."""
    opts = [f"--tile-size {key.tile_size}", f"--stride {key.stride}", f"--edge {key.edge}"]
    if key.gsd is not None:
        opts.append(f"--gsd {key.gsd:g}")
    if key.bands:
        opts.append("--bands " + ",".join(map(str, key.bands)))
    if payload.get("source", "stac") != "stac":
        if payload.get("collection"):
            opts.append(f"--collection {payload['collection']}")
        if payload.get("datetime"):
            opts.append(f"--datetime {payload['datetime']}")
    return " ".join(opts)
