"""A STAC Collection describing an exported index: the embeddings extension
(``emb:`` fields), an ``embeddings`` asset pointing at the GeoParquet file
(table extension row count), the exported tiles' lon/lat extent, collections, time span,
GSD range and chip layout (all of the rows written: a filtered export's, not the index's),
and a ``derived-from`` link to the model's STAC MLM Item.

Written by :func:`rsir_stac.export.export_index` with ``stac_collection``
(``rsir-stac export --stac``).  Spec: https://github.com/stac-extensions/embeddings
(v0.0.1) and https://github.com/stac-extensions/table (v1.2.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The STAC Embeddings extension (``emb:`` fields).
EMBEDDINGS_EXTENSION = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
#: The STAC Table extension (the asset's ``table:row_count``).
TABLE_EXTENSION = "https://stac-extensions.github.io/table/v1.2.0/schema.json"


def _time_interval(parquet: Path) -> list[str | None]:
    """[first start, last end] (RFC 3339, UTC) of the exported tiles' acquisition times;
    null at an end that no tile dates (an open interval, as STAC allows)."""
    from datetime import datetime, timezone

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = set(pq.read_schema(parquet).names)
    cols = [c for c in ("datetime_epoch", "datetime_end_epoch") if c in names]
    if not cols:
        return [None, None]
    table = pq.read_table(parquet, columns=cols)
    lo = pc.min(table["datetime_epoch"]).as_py() if "datetime_epoch" in cols else None
    hi = pc.max(table[cols[-1]]).as_py()

    def iso(t):
        return None if t is None else datetime.fromtimestamp(float(t), timezone.utc).isoformat().replace("+00:00", "Z")

    return [iso(lo), iso(hi)]


def _chip_layout(parquet: Path, bundle: Any) -> dict[str, Any]:
    """``tile_size_px`` and ``gsd_m`` of the exported tiles as they were read (each tile's
    ``tiling.tile_size`` and ``gsd``); a value the tiles do not share is left out (the
    Collection's ``summaries`` give the GSD range).  The model's own values where no tile has one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = set(pq.read_schema(parquet).names)

    def unique(col: str) -> list:
        return pc.unique(pq.read_table(parquet, columns=[col])[col].drop_null()).to_pylist() if col in names else []

    sizes = {json.loads(t).get("tile_size") for t in unique("tiling")} - {None}
    gsds = unique("gsd")
    out: dict[str, Any] = {}
    for key, vals, default in (("tile_size_px", sizes, bundle.tile_size), ("gsd_m", gsds, bundle.gsd)):
        if len(vals) == 1:
            out[key] = next(iter(vals))
        elif not vals:
            out[key] = default
    return out


def _gsd_summary(parquet: Path) -> dict[str, Any]:
    """``summaries.gsd`` (metres): the range of the exported tiles' ground sampling distances."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if "gsd" not in set(pq.read_schema(parquet).names):
        return {}
    mm = pc.min_max(pq.read_table(parquet, columns=["gsd"])["gsd"]).as_py()
    return {"gsd": {"minimum": mm["min"], "maximum": mm["max"]}} if mm["min"] is not None else {}


def _rows_extent(parquet: Path) -> tuple[list[float] | None, list[str]]:
    """``(bbox, collections)`` of the exported rows: the smallest lon/lat box ``[W, S, E, N]`` holding
    every row's ``bbox`` (antimeridian-aware, ``W > E`` across 180 as the index's own extent; None
    when no row has one) and the sorted STAC collections the rows name.  Read a row group at a time."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from rsir_stac.tiling.footprints import BoundsUnion

    pf = pq.ParquetFile(parquet)
    cols = [c for c in ("bbox", "collection") if c in set(pf.schema_arrow.names)]
    boxes = BoundsUnion()
    collections: set[str] = set()
    for batch in (pf.iter_batches(columns=cols) if cols else ()):
        if "collection" in cols:
            collections.update(c for c in pc.unique(batch.column("collection").drop_null()).to_pylist() if c)
        rows = []
        for text in (batch.column("bbox").drop_null().to_pylist() if "bbox" in cols else ()):
            b = json.loads(text) if isinstance(text, str) else text
            if isinstance(b, list) and len(b) == 4:
                rows.append([float(x) for x in b])
        boxes.add(rows)
    box = boxes.bounds()
    return (list(box) if box is not None else None), sorted(collections)


def _mlm_copy(mlm_src: Path) -> dict[str, Any]:
    """The bundle's MLM Item (``mlm_src``) to be written elsewhere: its assets' relative hrefs
    (``./weights.pt``, ``./model.json``, ``./reducer.npz``, beside it in the bundle) made absolute paths
    of the bundle's files, and an asset whose file the bundle lacks left out.

    Absolute paths rather than no assets: the MLM extension asks for an asset of role ``mlm:model``,
    and the copy is written where the export runs, beside a Collection whose ``self`` link is already
    an absolute local path; a catalogue publishing both elsewhere rewrites them alike."""
    item = json.loads(mlm_src.read_text(encoding="utf-8"))
    folder = mlm_src.resolve().parent
    assets: dict[str, Any] = {}
    for key, asset in (item.get("assets") or {}).items():
        href = str(asset.get("href", ""))
        if "://" not in href and not Path(href).is_absolute():
            path = (folder / href).resolve()
            if not path.is_file():
                continue
            asset = {**asset, "href": str(path)}
        assets[key] = asset
    return {**item, "assets": assets}


def write_embeddings_collection(index: Any, parquet: Path, target: Path, rows: int, *, table: Path | None = None,
                                outputs: Any = None) -> Path:
    """A STAC Collection (embeddings extension) for an exported GeoParquet file ``parquet``, written to
    ``target`` with the model's MLM Item copied beside it: its extent and summaries are those of the
    rows written (a filtered export's, not the whole index's).  ``table``: where that file's rows are
    read from, when not yet at ``parquet`` (staged in ``outputs``, an :class:`~rsir_stac.atomic.OutputSet`
    that then writes the Collection and the item with it, all or none); alone, each file is atomic."""
    from rsir_stac.atomic import written_to
    from rsir_stac.model.bundle import MLM

    source = parquet if table is None else table

    bundle = index.bundle
    mlm_src = Path(bundle.path) / MLM
    mlm_name = f"{bundle.model_id}.mlm-item.json"
    links = [{"rel": "self", "href": str(target.resolve()), "type": "application/json"}]  # STAC: self is absolute
    if mlm_src.is_file():
        with written_to(target.parent / mlm_name, outputs) as tmp:
            tmp.write_text(json.dumps(_mlm_copy(mlm_src), indent=2) + "\n", encoding="utf-8")
        links.append({"rel": "derived-from", "href": f"./{mlm_name}", "type": "application/geo+json",
                      "title": f"Model {bundle.model_id} (STAC MLM Item)"})
    tiling = _chip_layout(source, bundle)
    rel = Path(parquet).resolve()
    try:
        href = "./" + str(rel.relative_to(target.resolve().parent))
    except ValueError:
        href = str(rel)
    interval = _time_interval(source)
    bbox, collections = _rows_extent(source)
    description = ("Image-tile embeddings made by rsir-stac for content-based retrieval: one row per tile with "
                   "its lon/lat footprint, source STAC item and asset, and a Euclidean-metric embedding.")
    if bbox is None:
        # STAC requires one bbox at least (no empty extent); the whole globe, with the open time span
        # [null, null] that _time_interval gives, is the conventional "unknown" that pystac validates and
        # reads, rather than the index's footprint, which the file does not hold.  The description says so.
        bbox = [-180.0, -90.0, 180.0, 90.0]
        description += ((" This file holds no tile (the export's filters matched none)" if rows == 0 else
                         " No row of this file has a lon/lat bbox")
                        + ": the whole-globe spatial extent is a placeholder STAC requires, not where data lies.")
    doc = {
        "type": "Collection", "stac_version": "1.1.0", "stac_extensions": [EMBEDDINGS_EXTENSION, TABLE_EXTENSION],
        "id": f"rsir-stac-embeddings-{bundle.model_id}",
        "title": f"rsir-stac tile embeddings ({bundle.model_id})",
        "description": description,
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]},
                   "temporal": {"interval": [interval]}},
        "emb:type": "patch",
        "emb:dimensions": int(bundle.dim),
        "emb:data_type": "float32",
        "emb:distance": "euclidean",
        "emb:chip_layout": {"layout_type": "regular_grid", **tiling},
        "emb:model": bundle.model_id,
        # a summary's set of values has one at least (STAC): none for rows without a collection
        "summaries": {**({"collection": collections} if collections else {}), **_gsd_summary(source)},
        "assets": {"embeddings": {
            "href": href, "type": "application/vnd.apache.parquet", "roles": ["embeddings", "data"],
            "title": "Tile footprints, metadata and embeddings (GeoParquet 1.1, column 'embedding')",
            "emb:dimensions": int(bundle.dim), "table:row_count": int(rows)}},
        "links": links,
    }
    with written_to(target, outputs) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return target


__all__ = ["EMBEDDINGS_EXTENSION", "TABLE_EXTENSION", "write_embeddings_collection"]
