"""Label and area files in the vector formats a GIS saves: GeoJSON text is read by the caller as
it is; any other format GDAL reads (GeoPackage, Shapefile, FlatGeobuf, KML, ...) is read here
through pyogrio and handed over as a GeoJSON FeatureCollection in lon/lat (EPSG:4326).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rsir_stac.errors import InputError

log = logging.getLogger(__name__)

#: Bytes GeoJSON text may start with before its first ``{`` or ``[``: a UTF-8 BOM and white space.
_LEAD = b"\xef\xbb\xbf \t\r\n"


def is_json_text(path: Path) -> bool:
    """Whether ``path`` starts like JSON text (``{`` or ``[`` after a BOM and white space): read
    as GeoJSON; anything else (a GeoPackage, Shapefile, FlatGeobuf, KML, a CSV of ids and labels)
    goes through GDAL.  Raises OSError when it cannot be read."""
    with path.open("rb") as f:
        head = f.read(4096)
    return head.lstrip(_LEAD)[:1] in (b"{", b"[")


def read_vector_file(path: Path, what: str, fix: str) -> dict[str, Any]:
    """The features of ``path`` (a one-layer vector file GDAL reads) as a GeoJSON
    FeatureCollection in lon/lat: reprojected from the layer's CRS with densified edges and
    areas around a pole as polar caps (:func:`rsir_stac.reproject.geometries_to_lonlat`); a layer without a CRS
    is taken as lon/lat when its coordinates fit, else refused; a table without geometry
    (a CSV) gives features with a null geometry.

    Raises InputError naming ``what`` (e.g. ``"label file /a/b.gpkg"``) with ``fix`` when GDAL
    cannot read it, when it holds several layers (which one is meant is not guessed: a label
    file's "negatives" layer would be dropped unseen), or when its coordinates cannot be placed
    on Earth."""
    import warnings

    if path.stat().st_size <= 4096 and not path.read_bytes().strip(_LEAD):
        raise InputError(f"{what} is empty (no bytes, or white space only); {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyogrio's own warnings (e.g. a measured geometry) are not ours to show
            layers = [] if path.suffix.lower() in (".parquet", ".geoparquet") else _feature_layers(path)
            if len(layers) > 1:
                names = ", ".join(layers[:6]) + (", ..." if len(layers) > 6 else "")
                raise InputError(f"{what} holds {len(layers)} layers ({names}); save the one to use as a file of "
                                 "its own (QGIS: Export > Save Features As..., GeoJSON), so that no layer is read "
                                 "by mistake")
            gdf = _read_frame(path, layers)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001  (GDAL's own errors name what it could not read)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "not recognized as being in a supported file format" in why:
            why = "GDAL does not recognise its format"
        why = why.replace(str(path), path.name)
        raise InputError(f"{what} is not GeoJSON nor a vector file GDAL reads ({why}); {fix}") from None
    import geopandas

    gdf = gdf.drop(columns=[c for c in ("embedding",) if c in gdf.columns])   # an export's vectors: not read here
    # a table without geometry; a plain frame's "geometry" and "crs" would be its columns (an export's CSV has both)
    if not isinstance(gdf, geopandas.GeoDataFrame) or gdf.geometry.name not in gdf.columns:
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": None, "properties": _json_values(row)}
            for row in gdf.to_dict(orient="records")]}
    if gdf.crs is None:
        w, s, e, n = gdf.total_bounds if len(gdf) else (0.0, 0.0, 0.0, 0.0)
        if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
            raise InputError(f"{what} has no CRS and its coordinates are not lon/lat degrees; save it with its CRS "
                             "(or in EPSG:4326)")
    elif not gdf.crs.equals("EPSG:4326"):
        from rsir_stac.reproject import geometries_to_lonlat

        # densified edges and polar caps, not the corners alone (rsir_stac.reproject)
        gdf = gdf.set_geometry(geometries_to_lonlat(list(gdf.geometry), gdf.crs, what), crs="EPSG:4326")
    for col in gdf.columns:  # dates GDAL typed (a GeoPackage's DateTime fields) back to ISO 8601 text
        if col != gdf.geometry.name and str(gdf[col].dtype).startswith("datetime64"):
            gdf[col] = gdf[col].map(lambda t: None if t is None or t != t else t.isoformat().replace("+00:00", "Z"))
    return json.loads(gdf.to_json(drop_id=True, to_wgs84=False))


def _read_frame(path: Path, layers: list[str]):
    """``path``'s one layer as a (Geo)DataFrame: GeoParquet through pyarrow (GDAL is often built without
    its Parquet driver), a CSV with its WKT ``geometry`` column parsed (as rsir-stac's exports write it,
    in lon/lat), anything else through GDAL."""
    import pyogrio

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".geoparquet"):
        import geopandas

        try:
            return geopandas.read_parquet(path)
        except ValueError:   # a Parquet table without GeoParquet metadata: its rows, no geometry
            import pandas

            return pandas.read_parquet(path)
    if suffix == ".csv":
        return pyogrio.read_dataframe(path, GEOM_POSSIBLE_NAMES="geometry", KEEP_GEOM_COLUMNS="NO")
    return pyogrio.read_dataframe(path, layer=layers[0] if layers else None)


def _feature_layers(path: Path) -> list[str]:
    """The names of the layers of ``path`` that hold features: a GeoPackage's tables without
    geometry beside spatial ones (QGIS's ``layer_styles``) and empty layers are not counted; a
    table alone (a CSV) is its one layer."""
    import pyogrio

    layers = [(str(name), geom) for name, geom in pyogrio.list_layers(path)]
    spatial = [name for name, geom in layers if geom]
    names = spatial or [name for name, _ in layers]
    if len(names) > 1:
        names = [n for n in names if pyogrio.read_info(path, layer=n).get("features", 0) != 0] or names[:1]
    return names


def _json_values(row: dict) -> dict:
    """A table row's values as JSON takes them (NaN as null, numpy scalars as Python ones)."""
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        out[str(k)] = None if isinstance(v, float) and v != v else v
    return out


__all__ = ["is_json_text", "read_vector_file"]
