"""Cut georeferenced rasters into fixed-size RGB ``uint8`` tiles with footprints.

A scene (local GeoTIFF/COG path or ``http(s)`` URL read through GDAL's
``/vsicurl``) is laid out as a grid of square tiles and every tile is read
on its own with a rasterio window, so a scene is never held in memory whole.

Rules
-----
Grid and edges (:func:`grid_windows`), tile size and stride in *target* pixels:

* ``"shift"`` (default): tiles start every ``stride`` pixels; when the last
  row/column would run past the raster it is shifted back so that it ends
  exactly at the edge (full-size tiles, a little extra overlap).  A raster
  smaller than one tile along an axis gets a single tile at offset 0 of full
  tile size; the part outside the raster is padded and masked as nodata.
* ``"drop"``: only tiles that lie wholly inside the raster; the remainder
  along the right/bottom edges is not covered.
* ``"pad"``: tiles start every ``stride`` pixels until the raster is covered;
  the last ones run past the edge and the outside part is padded (nodata).

With ``"shift"`` and ``"pad"`` every pixel is covered by at least one tile
when ``stride <= tile``.  Windows are ordered row-major (top row first, left
to right).

Scaling to ``uint8`` (:class:`ScaleRule`): ``uint8`` rasters pass through
unchanged.  Any other dtype (``uint16``, ``int16``, ``float32`` ...) is
stretched per band linearly between the 2nd and 98th percentiles of the valid
pixels and clipped to 0..255 (p2 -> 0, p98 -> 255).  The percentiles are
computed once per scene from a decimated read (longer side
:data:`STATS_SIZE` px; GDAL serves it from an overview when one exists), so
every tile of a scene uses the same stretch; :attr:`SceneReader.scale`
reports it.

Resampling: with ``target_gsd`` the scale factor per axis is
``s = target_gsd / native_gsd``; the grid is laid out over a virtual raster of
``W/s x H/s`` target pixels and every target window maps back to a
(fractional) source window that is read with ``out_shape=(bands, tile, tile)``
and **bilinear** resampling (GDAL uses overviews when they exist).  At the
native GSD windows are integral and read without resampling.

Native GSD: the pixel size in metres.  For projected CRSs it is the pixel size
in the CRS's linear unit converted to metres; for geographic CRSs (e.g.
EPSG:4326) and Mercator CRSs (e.g. EPSG:3857, whose "metres" are only true at
the equator) it is the geodesic length of one pixel at the scene centre.

Masks: validity comes from GDAL's masks for the selected bands (nodata value,
alpha band, internal/sidecar masks).  A pixel is valid when any selected band
is valid (GDAL's dataset-mask rule); invalid and padded pixels are set to 0.
A tile whose valid fraction (valid pixels / tile pixels) is below
``min_valid`` -- or is 0 -- is skipped and counted as empty.

Footprints: the four corners (UL, UR, LR, LL) of each tile's source window
and its centre go through the dataset transform into the dataset CRS and are
converted once per scene to lon/lat (EPSG:4326, x=lon, y=lat).  The bbox is
what ``rasterio.warp.transform_bounds`` gives for the tile (outline densified,
``W > E`` across the antimeridian); see :mod:`~rsir_stac.tiling.footprints`.

Palettes: a one-band raster with a colour table is expanded through it (see
:mod:`~rsir_stac.tiling.pixels`, the one pixel path of tiles and queries).

Remote rasters and failures: every GDAL call runs under :func:`gdal_env`,
which bounds HTTP waits (``GDAL_HTTP_TIMEOUT`` defaults to
``$RSIR_HTTP_TIMEOUT`` or 30 s, connect timeout 10 s, 2 retries on transient
HTTP errors); any ``GDAL_*``/``CPL_*`` environment variable of the same name
wins.  Whatever rasterio, GDAL or PROJ raise on bad input becomes a one-line
:class:`RasterError` (or :class:`SourceNotFoundError` for a missing file,
404 or unreachable URL) naming the file, and the window for a corrupt block.

Modules (pure functions and small frozen records where possible):

* :mod:`~rsir_stac.tiling.grid`: pixel windows of the tile grid;
* :mod:`~rsir_stac.tiling.footprints`: pixel size in metres, lon/lat footprints;
* :mod:`~rsir_stac.tiling.bands`: which bands become R, G, B;
* :mod:`~rsir_stac.tiling.scaling`: raw values to ``uint8``;
* :mod:`~rsir_stac.tiling.pixels`: the one pixel path (tiles, queries, thumbnails);
* :mod:`~rsir_stac.tiling.sources`: opening paths/URLs under GDAL, and their errors;
* :mod:`~rsir_stac.tiling.scene`: :class:`SceneReader`, tiles of one scene;
* :mod:`~rsir_stac.tiling.query`: query images.
"""

from rsir_stac.tiling.bands import select_bands
from rsir_stac.tiling.footprints import Corner, native_pixel_size
from rsir_stac.tiling.grid import EDGE_MODES, PixelWindow, grid_windows
from rsir_stac.tiling.pixels import PixelPlan, pixel_plan, read_rgb
from rsir_stac.tiling.query import MAX_QUERY_SIDE, pil_dataset, read_dataset_image, read_image
from rsir_stac.tiling.query import _read_with_pil, _read_with_rasterio  # noqa: F401 - used by serve.py
from rsir_stac.tiling.scaling import IDENTITY, PERCENTILES, STATS_SIZE, ScaleRule, compute_scale, percentile_rule
from rsir_stac.tiling.scene import SceneReader, Tile, TileRef, TileStats, open_scene
from rsir_stac.tiling.sources import GDAL_CACHE_BYTES, HTTP_TIMEOUT, gdal_env, gdal_options

__all__ = [
    "Corner",
    "EDGE_MODES",
    "GDAL_CACHE_BYTES",
    "HTTP_TIMEOUT",
    "IDENTITY",
    "MAX_QUERY_SIDE",
    "PERCENTILES",
    "STATS_SIZE",
    "PixelPlan",
    "PixelWindow",
    "ScaleRule",
    "SceneReader",
    "Tile",
    "TileRef",
    "TileStats",
    "compute_scale",
    "gdal_env",
    "gdal_options",
    "grid_windows",
    "native_pixel_size",
    "open_scene",
    "percentile_rule",
    "pil_dataset",
    "pixel_plan",
    "read_dataset_image",
    "read_image",
    "read_rgb",
    "select_bands",
]
