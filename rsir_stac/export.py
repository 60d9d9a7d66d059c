"""Hits, classifier output and whole indexes as files people open: GeoJSON, CSV,
FlatGeobuf or GeoParquet, chosen by the file extension.

Every format holds the same table: one row per tile with its footprint polygon
(lon/lat, OGC:CRS84), the score column (``distance``, ``score`` or
``probability``), rank, the payload fields (nested ones as compact JSON text)
and optionally the stored vector (``embedding``, a list of float32).

* GeoJSON (``.geojson``, ``.json``) and CSV (``.csv``, geometry as WKT) are
  streamed row by row; GeoParquet (``.parquet``, ``.geoparquet``; GeoParquet
  1.1, WKB, written with pyarrow) page by page as row groups; FlatGeobuf
  (``.fgb``, GDAL through geopandas/pyogrio) is written from all rows at once
  (it builds a spatial index over them and stores features in that index's
  order: sort by ``rank``).
* CSV text cells a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``, tab, CR
  first) are written with a leading ``'`` (:func:`csv_cell`); the other formats hold every
  value exactly.
* Files are written to a temporary name and renamed when complete.

:func:`export_index` writes a whole index to GeoParquet with the vectors, plus
a STAC Collection using the embeddings extension (``emb:`` fields, an
``embeddings`` asset and a ``derived-from`` link to the model's MLM Item).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import InputError

log = logging.getLogger(__name__)

FORMATS = {".geojson": "geojson", ".json": "geojson", ".csv": "csv", ".fgb": "flatgeobuf",
           ".parquet": "geoparquet", ".geoparquet": "geoparquet"}

#: Payload fields written as their own typed columns; other payload fields go to ``extra`` (JSON text).
TEXT_FIELDS = ("item_id", "collection", "asset", "href", "datetime", "crs", "model_id")
NUMBER_FIELDS = ("datetime_epoch", "datetime_end_epoch", "gsd")
JSON_FIELDS = ("bbox", "window", "grid", "tiling")
#: Columns written as UTC timestamps in GeoParquet and FlatGeobuf (RFC 3339 text in CSV and GeoJSON).
DATETIME_COLUMNS = ("datetime", "start_datetime", "end_datetime")
#: Fixed column types, whatever the rows hold (a column of nulls included): the rest are text.
_INT_COLUMNS = {"rank": "int32", "tiles": "int64"}
_FLOAT_COLUMNS = NUMBER_FIELDS + ("lon", "lat", "distance", "score", "probability", "max_probability",
                                  "mean_probability")
#: First characters that make a spreadsheet (Excel, LibreOffice, Google Sheets) read a text cell as a
#: formula: such a cell is written with a leading ``'`` (:func:`csv_cell`; OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: The same after white space (spaces, line breaks, NBSP, BOM: a spreadsheet may trim them) or in
#: fullwidth form (＝ ＋ － ＠, which some spreadsheets take as the ASCII signs).
_FORMULA = re.compile(r"^[\s\u00a0\u3000\ufeff]*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r]")
#: A text that is a plain decimal number ("-12.5", "+3", "1e-3"): ASCII digits, one sign, one point,
#: an exponent; a spreadsheet reads it as that number, so it is written as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
GEOPARQUET_VERSION = "1.1.0"


def format_for(path: str | Path) -> str:
    """The format named by ``path``'s extension; InputError for an unknown one."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise InputError(f"export path {path} has no known format extension ({ext or 'none'}); "
                         f"use one of {', '.join(sorted(FORMATS))}")
    return FORMATS[ext]


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell holds it, safe to open in a spreadsheet: a text that begins with
    ``=``, ``+``, ``-``, ``@`` (after white space, or fullwidth), a tab or a carriage return (:data:`FORMULA_STARTS`, which a
    spreadsheet reads as the start of a formula: ``=HYPERLINK(...)`` in a STAC item id would
    be a live link leaking the sheet) gets a leading ``'``, which spreadsheets read as "text"
    (OWASP, CSV Injection).  Numbers, None and texts that are plain decimal numbers ("-12.5";
    a spreadsheet reads them as the number, and no formula fits in one) are returned as
    they are.  The one rule of every CSV this package writes; the map page's ``csvCell``
    (``web/labels.js``) mirrors it."""
    if isinstance(value, str) and _FORMULA.match(value) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def row_of(hit: Any, *, rank: int | None = None, score_name: str = "distance", score: float | None = None,
           with_vectors: bool = False, extra: dict | None = None) -> dict[str, Any]:
    """One table row from a :class:`~rsir_stac.store.SearchHit` (geometry as a GeoJSON dict)."""
    from rsir_stac.labels import footprint_geometry

    p = hit.payload
    loc = p.get("location") or {}
    row: dict[str, Any] = {"id": hit.id, "rank": rank, score_name: hit.score if score is None else score}
    for k in TEXT_FIELDS:
        v = p.get(k)
        row[k] = None if v is None else str(v)
    for k in NUMBER_FIELDS:
        row[k] = _real(p.get(k))
    row["lon"], row["lat"] = _real(loc.get("lon")), _real(loc.get("lat"))
    for k in JSON_FIELDS:
        row[k] = None if p.get(k) is None else json.dumps(p[k], separators=(",", ":"))
    known = set(TEXT_FIELDS) | set(NUMBER_FIELDS) | set(JSON_FIELDS) | {"location", "corners", "packed"}
    rest = {k: v for k, v in p.items() if k not in known}
    if extra:
        row.update(extra)
    row["extra"] = json.dumps(rest, separators=(",", ":")) if rest else None
    row["geometry"] = footprint_geometry(p)
    if with_vectors:
        row["embedding"] = None if hit.vector is None else np.asarray(hit.vector, np.float32).tolist()
    return row


def _real(v: Any) -> float | None:
    """A number as a float (JSON writes 5.0, not 5: GDAL types the field Real in every file), else None."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def empty_row(score_name: str | None = "distance", extra: dict | None = None,
              with_vectors: bool = False) -> dict[str, Any]:
    """The columns of a table with no rows: those :func:`row_of` writes, in its order (``score_name``
    None: no rank and score, as :func:`export_index` writes; ``extra``: the columns given to
    :func:`row_of` as ``extra``; ``with_vectors``: with the ``embedding`` column)."""
    from rsir_stac.store import SearchHit

    row = row_of(SearchHit("", 0.0, {}), rank=0, score_name=score_name or "score", extra=extra,
                 with_vectors=with_vectors)
    if score_name is None:
        row.pop("rank")
        row.pop("score")
    return row


def write_table(pages: Iterable[Sequence[dict[str, Any]]], path: str | Path,
                empty: dict[str, Any] | None = None, outputs: Any = None) -> int:
    """Write row pages (dicts from :func:`row_of`, all with the same keys) to ``path`` in
    the format its extension names; returns the number of rows.  Atomic: alone, or with the other
    files of ``outputs`` (an :class:`~rsir_stac.atomic.OutputSet`, which then renames it onto ``path``
    with them when every one is written).  With no rows the
    file still has the columns of ``empty`` (:func:`empty_row`), so its schema is the
    non-empty one's.

    Raises InputError for an unknown extension or an unwritable folder.
    """
    from rsir_stac.atomic import written_to

    if empty is not None:
        pages = _or_empty(pages, empty)
    fmt = format_for(path)
    writer = {"geojson": _write_geojson, "csv": _write_csv, "geoparquet": _write_geoparquet,
              "flatgeobuf": _write_fgb}[fmt]
    with written_to(path, outputs) as tmp:
        n = writer(iter(pages), tmp) if fmt != "flatgeobuf" else writer(iter(pages), tmp, Path(path).stem)
    log.info("wrote %d rows to %s (%s)", n, path, fmt)
    return n


_EMPTY = "__rsir_empty__"


def _or_empty(pages: Iterable[Sequence[dict]], empty: dict) -> Iterator[Sequence[dict]]:
    """The pages, or when they hold no row one page with ``empty`` marked as a template."""
    n = 0
    for page in pages:
        n += len(page)
        yield page
    if not n:
        yield [{**empty, _EMPTY: True}]


def _rows(page: Sequence[dict]) -> Sequence[dict]:
    return [] if page and page[0].get(_EMPTY) else page


def _write_geojson(pages: Iterator[Sequence[dict]], tmp: Path) -> int:
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type":"FeatureCollection","features":[\n')
        for page in pages:
            for row in _rows(page):
                props = {k: v for k, v in row.items() if k != "geometry"}
                feat = {"type": "Feature", "id": row["id"], "geometry": row["geometry"], "properties": props}
                fh.write(("," if n else "") + json.dumps(feat, separators=(",", ":")) + "\n")
                n += 1
        fh.write("]}\n")
    return n


def _write_csv(pages: Iterator[Sequence[dict]], tmp: Path) -> int:
    from shapely.geometry import shape

    n = 0
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        out = None
        for page in pages:
            if page and page[0].get(_EMPTY):  # no rows: the header alone
                csv.DictWriter(fh, fieldnames=[k for k in page[0] if k != _EMPTY]).writeheader()
                return 0
            for row in page:
                if out is None:
                    out = csv.DictWriter(fh, fieldnames=list(row))
                    out.writeheader()
                r = dict(row)
                r["geometry"] = shape(row["geometry"]).wkt if row["geometry"] else ""
                if "embedding" in r and r["embedding"] is not None:
                    r["embedding"] = json.dumps(r["embedding"])
                out.writerow({k: csv_cell(v) for k, v in r.items()})  # no formula from catalogue texts
                n += 1
        if out is None:
            fh.write("id,rank,geometry\n")
    return n


def _kind(name: str, values: Sequence[Any]) -> str:
    """``datetime``, ``int32``/``int64``, ``float`` or ``string``: a column's type in typed formats.
    Known columns have a fixed one; another column is a number when its values are, else text
    (a column of nulls too, so that files of one kind of table share a schema)."""
    if name in DATETIME_COLUMNS:
        return "datetime"
    if name in _INT_COLUMNS:
        return _INT_COLUMNS[name]
    if name in _FLOAT_COLUMNS:
        return "float"
    if name in TEXT_FIELDS + JSON_FIELDS + ("id", "extra", "label", "collection", "items"):
        return "string"
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "int64" if all(isinstance(v, int) for v in present) else "float"
    return "string"


def _utc_datetimes(values: Sequence[Any]) -> list:
    """RFC 3339 texts as timezone-aware UTC datetimes (None for a missing or unreadable one)."""
    from datetime import datetime, timezone

    out = []
    for v in values:
        if v is None or v == "":
            out.append(None)
            continue
        try:
            t = datetime.fromisoformat(str(v).strip().replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            log.warning("datetime %r is not RFC 3339; written as null", v)
            out.append(None)
            continue
        out.append((t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc))
    return out


def _arrow_table(rows: Sequence[dict], schema: Any | None = None) -> Any:
    import pyarrow as pa
    import shapely
    from shapely.geometry import shape

    types = {"datetime": pa.timestamp("us", tz="UTC"), "int32": pa.int32(), "int64": pa.int64(),
             "float": pa.float64(), "string": pa.string()}
    arrays = {}
    for k in rows[0]:
        if k in ("geometry", "embedding"):
            continue
        values = [r[k] for r in rows]
        kind = _kind(k, values)
        if kind == "datetime":
            values = _utc_datetimes(values)
        elif kind == "string":
            values = [None if v is None else v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list))
                      else str(v) for v in values]
        arrays[k] = pa.array(values, type=types[kind])
    geoms = [shape(r["geometry"]) if r["geometry"] else None for r in rows]
    arrays["geometry"] = pa.array(shapely.to_wkb(np.array(geoms, dtype=object)).tolist(), type=pa.binary())
    if "embedding" in rows[0]:
        arrays["embedding"] = pa.array([r["embedding"] for r in rows], type=pa.list_(pa.float32()))
    table = pa.table(arrays)
    if schema is not None:
        table = table.cast(schema)
    return table


def _geo_metadata(bbox: list[float] | None, types: Iterable[str] = ()) -> bytes:
    """The ``geo`` metadata; ``types``: the geometry types of the rows (Polygon for none: footprints
    are polygons, MultiPolygons only where one crosses the antimeridian)."""
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": sorted(set(types)) or ["Polygon"]}
    if bbox is not None:
        col["bbox"] = bbox
    return json.dumps({"version": GEOPARQUET_VERSION, "primary_column": "geometry",
                       "columns": {"geometry": col}}).encode()


def _write_geoparquet(pages: Iterator[Sequence[dict]], tmp: Path) -> int:
    """GeoParquet 1.1 (WKB, CRS84 by omission); one row group per page. The file-level
    bbox is left out; each row's bbox is in ``bbox``.  The ``geo`` metadata, in the footer, lists
    the geometry types the rows have (known at the end: no Arrow schema copy is stored, which
    would keep the first page's; the columns read back with the same types)."""
    import pyarrow.parquet as pq

    writer, schema, n, types = None, None, 0, set()
    try:
        for page in pages:
            if not page:
                continue
            empty = bool(page[0].get(_EMPTY))
            if empty:
                page = [{k: v for k, v in page[0].items() if k != _EMPTY}]
            table = _arrow_table(page, schema)
            if empty:
                table = table.slice(0, 0)
            else:
                types.update(r["geometry"]["type"] for r in page if r.get("geometry"))
            if writer is None:
                schema = table.schema.with_metadata({b"geo": _geo_metadata(None)})
                writer = pq.ParquetWriter(str(tmp), schema, compression="zstd", store_schema=False)
            writer.write_table(table.replace_schema_metadata(schema.metadata))
            n += len(table)
        if writer is None:  # no rows: an empty file with the geometry column
            import pyarrow as pa

            schema = pa.schema([("id", pa.string()), ("geometry", pa.binary())], metadata={b"geo": _geo_metadata(None)})
            writer = pq.ParquetWriter(str(tmp), schema, store_schema=False)
        writer.add_key_value_metadata({"geo": _geo_metadata(None, types).decode()})
    finally:
        if writer is not None:
            writer.close()
    return n


def _frame(rows: Sequence[dict], keys: Sequence[str]) -> Any:
    """The non-geometry columns of ``rows`` as a DataFrame with the dtypes of :func:`_kind`, so that
    GDAL writes the same field types whatever the rows (none included)."""
    import pandas as pd

    data = {}
    for k in keys:
        values = [r[k] for r in rows]
        if k == "embedding":  # FlatGeobuf has no list type
            values = [None if v is None else json.dumps(v) for v in values]
        kind = _kind(k, values)
        if kind == "datetime":
            data[k] = pd.Series(pd.to_datetime(_utc_datetimes(values), utc=True), dtype="datetime64[us, UTC]")
        elif kind in ("int32", "int64"):  # GDAL: Integer or Integer64, as the other formats type the column
            data[k] = pd.Series(values, dtype=kind if None not in values else kind.capitalize())
        elif kind == "float":
            data[k] = pd.Series([np.nan if v is None else v for v in values], dtype="float64")
        else:
            data[k] = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    return pd.DataFrame(data)


def _write_fgb(pages: Iterator[Sequence[dict]], tmp: Path, layer: str) -> int:
    import geopandas as gpd
    from shapely.geometry import shape

    pages = [p for p in pages if p]
    empty = len(pages) == 1 and bool(pages[0][0].get(_EMPTY))
    rows = [] if empty else [r for page in pages for r in page]
    template = pages[0][0] if pages else {"id": None, "geometry": None}
    keys = [k for k in template if k not in (_EMPTY, "geometry")]
    geoms = gpd.GeoSeries([shape(r["geometry"]) if r["geometry"] else None for r in rows], crs="OGC:CRS84")
    gdf = gpd.GeoDataFrame(_frame(rows, keys), geometry=geoms, crs="OGC:CRS84")
    # one geometry type per FlatGeobuf layer, whatever the rows: MultiPolygon, since a footprint
    # across 180 is one (GDAL took the type from the rows: Polygon, or MultiPolygon for every row
    # once one crossed, so files of several runs had different schemas)
    gdf.to_file(tmp, driver="FlatGeobuf", engine="pyogrio", layer=layer,  # named after the file
                geometry_type="MultiPolygon", promote_to_multi=True)
    return len(rows)


# --------------------------------------------------------------------------- search results


def search_pages(index: Any, result: Any, *, page: int = 1000, with_vectors: bool = False) -> Iterator[list[dict]]:
    """Rows of a search result, page by page.  ``result`` may hold bare hits (ids and
    scores, from ``Index.search(..., with_payload=False)``): payloads (and vectors) are
    then fetched one page at a time, so memory holds one page of payloads."""
    from rsir_stac.store import SearchHit

    hits = list(result.hits)
    for start in range(0, len(hits), page):
        part = hits[start:start + page]
        if part and not part[0].payload:
            got = {h.id: h for h in index.store._retrieve_raw([h.id for h in part], True, with_vectors)}
            part = [SearchHit(h.id, h.score, got[h.id].payload, got[h.id].vector) for h in part if h.id in got]
        yield [row_of(h, rank=result.offset + start + i + 1, score_name=result.score_name, with_vectors=with_vectors)
               for i, h in enumerate(part)]


def write_search(index: Any, result: Any, path: str | Path, *, with_vectors: bool = False) -> int:
    """Write a :class:`~rsir_stac.search.SearchResult` to ``path`` (format by extension)."""
    format_for(path)
    return write_table(search_pages(index, result, with_vectors=with_vectors), path,
                       empty_row(result.score_name, with_vectors=with_vectors))


# --------------------------------------------------------------------------- whole index


def index_pages(store: Any, flt: Any = None, *, batch: int = 2000, with_vectors: bool = True,
                progress: Callable[[int], None] | None = None) -> Iterator[list[dict]]:
    """Every stored point (matching ``flt``) as rows, ``batch`` at a time (scroll order)."""
    from rsir_stac.store import SearchHit

    rows: list[dict] = []
    for pid, payload, vec in store._scan(flt, with_vectors=with_vectors, batch=batch):
        rows.append(row_of(SearchHit(pid, 0.0, payload, vec), score_name="score", with_vectors=with_vectors))
        if len(rows) >= batch:
            yield [_drop_score(r) for r in rows]
            if progress:
                progress(len(rows))
            rows = []
    if rows:
        yield [_drop_score(r) for r in rows]
        if progress:
            progress(len(rows))


def _drop_score(row: dict) -> dict:
    row.pop("score", None)
    row.pop("rank", None)
    return row


def export_index(index: Any, path: str | Path, *, flt: Any = None, with_vectors: bool = True,
                 stac_collection: str | Path | None = None,
                 progress: Callable[[int], None] | None = None,
                 inputs: Sequence[tuple[str, str | Path | None]] = ()) -> dict[str, Any]:
    """Write every point of ``index`` (an :class:`~rsir_stac.search.Index`) to ``path``
    (any format; GeoParquet for reuse) and, when ``stac_collection`` is given, a STAC
    Collection describing the file with the embeddings extension; the model's MLM
    Item is copied beside it and linked.  Returns a summary dict (rows, paths).  Raises
    StoreError, writing nothing, for an index its opening found damaged
    (:func:`rsir_stac.store.migrate.refuse_damaged`), and InputError, writing nothing, when an output
    (the file, the Collection, the model item copy) is another of them or one of ``inputs``
    (``(option, path)`` pairs, e.g. the ``--within`` area file: :func:`rsir_stac.atomic.check_distinct_outputs`).
    """
    from rsir_stac.atomic import check_output_path
    from rsir_stac.store.migrate import refuse_damaged

    fmt = format_for(path)
    refuse_damaged(index.store, "exporting")
    if stac_collection is not None and fmt != "geoparquet":
        raise InputError(f"a STAC Collection describes a GeoParquet export; give --out with .parquet, not {path}")
    if stac_collection is not None and not with_vectors:
        raise InputError("--stac writes a Collection of the embeddings extension, which describes the file's "
                         "'embedding' column, and --no-vectors leaves that column out; drop one of them")
    from rsir_stac.atomic import check_distinct_outputs

    check_output_path(path, what="--out")
    check_distinct_outputs([("--out", path)], list(inputs))
    if stac_collection is not None:  # refused before the table is written, not after
        check_output_path(stac_collection, what="--stac")
        item = Path(stac_collection).expanduser().parent / f"{index.bundle.model_id}.mlm-item.json"
        # the copy's name is not the user's to choose: listed first, so a clash names the option to change
        for what, given in inputs:   # the copy's name is fixed: the way out is another --stac folder
            try:
                check_distinct_outputs([("the model item copy", item)], [(what, given)])
            except InputError:
                raise InputError(f"the model item copy {item}, which --stac writes beside the Collection, is the file "
                                 f"read as {what}; give --stac a path in another folder") from None
        check_distinct_outputs([("the model item copy", item), ("--out", path), ("--stac", stac_collection)],
                               list(inputs))
        if Path(stac_collection).suffix.lower() != ".json":
            raise InputError(f"--stac {stac_collection}: a STAC Collection is a JSON document; give the path a "
                             f".json name, e.g. --stac {Path(stac_collection).with_suffix('.json').name}")
    pages = index_pages(index.store, flt, with_vectors=with_vectors, progress=progress)
    if stac_collection is None:
        n = write_table(pages, path, empty_row(None, with_vectors=with_vectors))
        return {"rows": n, "path": str(path), "format": fmt}
    from rsir_stac.atomic import OutputSet
    from rsir_stac.stac.embeddings import write_embeddings_collection

    # the table, the Collection and the model item copy are written whole together or not at all
    with OutputSet() as outputs:
        n = write_table(pages, path, empty_row(None, with_vectors=with_vectors), outputs=outputs)
        table = outputs.staged_path(path)
        collection = write_embeddings_collection(index, Path(path), Path(stac_collection), n, table=table,
                                                 outputs=outputs)
    return {"rows": n, "path": str(path), "format": fmt, "stac_collection": str(collection)}


__all__ = ["FORMATS", "FORMULA_STARTS", "csv_cell", "empty_row", "export_index", "format_for", "row_of", "search_pages", "write_search",
           "write_table"]
