"""Point identity and payload of one tile: deterministic ids (uuid5 of the tile's source,
grid window, tiling parameters and model id) and the stored payload (see README, "Point
payload"), and how many points are written at once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple


#: Namespace of point ids (uuid5).
POINT_NAMESPACE = uuid.UUID("6f1c3f2e-6a7b-5c1d-9e8f-2b3a4c5d6e7f")


def tiling_key(tile_size: int, stride: int, gsd: float | None, edge: str) -> str:
    """The tiling parameters as they enter point ids, e.g. ``t256s256g0.3eshift`` (``gnative``: each scene's GSD)."""
    return f"t{tile_size}s{stride}g{'native' if gsd is None else f'{gsd:.6g}'}e{edge}"


def point_id(collection: str | None, item_id: str, asset: str, grid: Any, tiling: str, model_id: str) -> str:
    """Deterministic point id of one tile."""
    key = "|".join([collection or "", item_id, asset,
                    f"{grid.col_off},{grid.row_off},{grid.width},{grid.height}", tiling, model_id])
    return str(uuid.uuid5(POINT_NAMESPACE, key))


def payload_point_id(payload: Any, model_id: str) -> str:
    """The id the tile of a stored ``payload`` (written by ``rsir-stac ingest``) has in an
    index of ``model_id``: ids do not depend on the href, so a relocated source keeps them.

    Raises KeyError, TypeError or ValueError when the payload was not written by ingest."""
    t = payload["tiling"]
    g = payload["grid"]
    grid = _GridKey(int(g["col_off"]), int(g["row_off"]), int(g["width"]), int(g["height"]))
    gsd = None if t.get("gsd") is None else float(t["gsd"])
    identity = payload.get("collection") if payload.get("source", "stac") == "stac" else None
    return point_id(identity, str(payload["item_id"]), str(payload["asset"]), grid,
                    tiling_key(int(t["tile_size"]), int(t["stride"]), gsd, str(t["edge"])), model_id)


class _GridKey(NamedTuple):
    col_off: int
    row_off: int
    width: int
    height: int


def file_stamp(scene) -> dict[str, int] | None:
    """``{"size", "mtime_ns"}`` of a scene's local file (bytes, nanoseconds; a scene composed of three
    files: their sizes summed, the latest time), stored in each tile's payload (``file_stamp``) so that
    a re-run sees a file replaced in place under the same name (new pixels, same grid) and embeds its
    tiles again instead of keeping the old vectors (make's and rsync's test: size and modification
    time).  None for a URL or a file that cannot be stat'ed."""
    from rsir_stac.tiling.sources import _is_url

    paths = list(getattr(scene, "band_hrefs", None) or [scene.href])
    if any(_is_url(p) for p in paths):
        return None
    try:
        stats = [os.stat(p) for p in paths]
    except OSError:
        return None
    return {"size": sum(s.st_size for s in stats), "mtime_ns": max(s.st_mtime_ns for s in stats)}


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def tile_payload(scene, ref, *, model_id: str, tile_size: int, stride: int, edge: str,
                 bands: Sequence[int], gsd_param: float | None, nodata: float | None = None,
                 stamp: dict[str, int] | None = None) -> dict[str, Any]:
    """The stored payload of one tile (see README, "Point payload"); ``nodata`` is a nodata
    value the reader took from outside the file (STAC ``raster:bands``), kept in ``tiling``
    so that thumbnails and map imagery mask the same pixels (for a scene composed from three
    single-band assets, its three assets' values, and its files in ``band_hrefs``)."""
    w = ref.window
    dt, end = scene.interval
    band_hrefs = getattr(scene, "band_hrefs", None)
    if band_hrefs:  # a scene composed from three files: each file's nodata, as the stack applies them
        from rsir_stac.tiling.stack import stored_band_hrefs

        nodata = list(scene.nodata) if isinstance(scene.nodata, tuple) else scene.nodata
    return {
        "item_id": scene.item_id,
        "collection": scene.collection,
        "source": "stac" if scene.from_stac else "raster",
        "asset": scene.asset_key,
        "href": scene.href,
        # the R, G, B files of a composed scene, relative to href (absent: href alone)
        **({"band_hrefs": stored_band_hrefs(scene.href, band_hrefs)} if band_hrefs else {}),
        "window": {"col_off": w.col_off, "row_off": w.row_off, "width": w.width, "height": w.height},
        "grid": {"col_off": ref.grid.col_off, "row_off": ref.grid.row_off,
                 "width": ref.grid.width, "height": ref.grid.height},
        "crs": ref.crs,
        "bbox": list(ref.bbox),
        "location": {"lon": ref.centroid[0], "lat": ref.centroid[1]},
        "corners": [{"lon": lon, "lat": lat} for lon, lat in ref.corners],
        **({"outline": [[lon, lat] for lon, lat in ref.outline]} if ref.outline else {}),
        # an interval item's own datetime (its nominal time) is what it shows; filters use the interval
        "datetime": _iso(getattr(scene, "nominal", None) or dt),
        "datetime_epoch": dt.timestamp() if dt else None,
        "datetime_end_epoch": end.timestamp() if end else None,
        **({"start_datetime": _iso(dt), "end_datetime": _iso(end)} if dt and end != dt else {}),
        "gsd": ref.gsd,
        "tiling": {"tile_size": tile_size, "stride": stride, "edge": edge,
                   "gsd": gsd_param, "bands": list(bands),
                   **({"nodata": nodata} if nodata is not None else {})},
        "model_id": model_id,
        **({"file_stamp": stamp} if stamp else {}),  # file_stamp(scene): a file replaced in place is seen
    }


#: Points per upsert: several embedding batches, written whole.
WRITE_BATCH = 64
