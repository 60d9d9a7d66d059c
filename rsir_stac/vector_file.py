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
    """Whether ``path`` is to be read as JSON text: anything but a binary file (NUL bytes in its
    first 4 KiB: GeoPackage, Shapefile, FlatGeobuf...) or XML (KML, GML); raises OSError when it
    cannot be read."""
    with path.open("rb") as f:
        head = f.read(4096)
    return b"\x00" not in head and head.lstrip(_LEAD)[:1] != b"<"


def read_vector_file(path: Path, what: str, fix: str) -> dict[str, Any]:
    """The features of ``path`` (a vector file GDAL reads, first layer) as a GeoJSON
    FeatureCollection in lon/lat: reprojected from the layer's CRS; a layer without a CRS
    is taken as lon/lat when its coordinates fit, else refused.

    Raises InputError naming ``what`` (e.g. ``"label file /a/b.gpkg"``) with ``fix`` when GDAL
    cannot read it or its coordinates cannot be placed on Earth."""
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
        gdf = pyogrio.read_dataframe(path)
    except Exception as exc:  # noqa: BLE001  (GDAL's own errors name what it could not read)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "not recognized as being in a supported file format" in why:
            why = "GDAL does not recognise its format"
        why = why.replace(str(path), path.name)
        raise InputError(f"{what} is neither GeoJSON text nor a vector file GDAL reads ({why}); {fix}") from None
    if len(layers) > 1:
        log.warning("%s has %d layers; reading the first, %s", what, len(layers), layers[0][0])
    if gdf.crs is None:
        w, s, e, n = gdf.total_bounds if len(gdf) else (0.0, 0.0, 0.0, 0.0)
        if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
            raise InputError(f"{what} has no CRS and its coordinates are not lon/lat degrees; save it with its CRS "
                             "(or in EPSG:4326)")
    elif not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    for col in gdf.columns:  # dates GDAL typed (a GeoPackage's DateTime fields) back to ISO 8601 text
        if col != gdf.geometry.name and str(gdf[col].dtype).startswith("datetime64"):
            gdf[col] = gdf[col].map(lambda t: None if t is None or t != t else t.isoformat().replace("+00:00", "Z"))
    return json.loads(gdf.to_json(drop_id=True, to_wgs84=False))


__all__ = ["is_json_text", "read_vector_file"]
