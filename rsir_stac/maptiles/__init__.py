"""Web-map tiles (XYZ, Web Mercator) of the indexed scenes, rendered from their rasters.

The map page shows the imagery under the search results.  The scenes are
those of the index: every stored tile records its source (``href``, or the
R, G, B files ``band_hrefs`` of a scene composed from three single-band
assets, drawn as one image from band 1 of each), its
STAC item, collection and date, the bands ingest chose and how it tiled
(``tiling``).  :func:`scenes_from_payloads` groups the tiles into scenes
(footprint = convex hull of the tiles' corners, or near a pole their union; tile count, date);
:class:`TileRenderer` renders a 256 x 256 px tile of the Web Mercator quad
tree (``z/x/y`` as in OpenStreetMap, Google and Leaflet) as a mosaic of the
scenes that cover it, with rio-tiler (``Reader.tile`` + ``mosaic_reader``,
first valid pixel wins, newest scene first).

Colours are the ones the model saw: the bands ingest read (``tiling.bands``)
and the same scaling (:func:`rsir_stac.tiling.compute_scale`: ``uint8``
passes through, other types get the scene's p2-p98 stretch, computed once
per scene).  Pixels outside every scene or masked as nodata are transparent.

Zoom limits per scene: from rio-tiler's ``minzoom`` (the scene fits one tile)
minus :data:`UNDERZOOM` to its ``maxzoom`` (native resolution) plus
:data:`OVERZOOM`; outside them the scene is not drawn (the footprint layer
still shows it).  ``z`` outside ``0..MAX_ZOOM`` or ``x``/``y`` outside the
``2**z`` grid is an :class:`InputError`.

Which scenes a tile draws, and in which order, can be chosen (:class:`SceneChoice`): only
scenes acquired within a date range (the page's date filter), only some collections, and
one STAC item first (the selected result's scene), so that where acquisitions overlap the
imagery shows the dates the page is about instead of always the newest.

A scene whose source file is missing or unreadable is left out of the
mosaic (logged once); a tile covered only by such scenes raises
:class:`SourceNotFoundError` naming the STAC item, never a server path.
Rendered PNGs are kept in a byte-bounded LRU (``cachetools``).  Each worker
thread keeps its last :data:`OPEN_PER_THREAD` opened rasters (reopened when
the file changes), and rio-tiler's per-tile bounds test is skipped because
:meth:`TileRenderer.covering` already chose the scenes that meet the tile.

Sources: rio-tiler (https://cogeotiff.github.io/rio-tiler/), morecantile's
WebMercatorQuad tile matrix set (OGC 17-083r4).

Layout: :mod:`~rsir_stac.maptiles.grid` (tile math), :mod:`~rsir_stac.maptiles.scenes`
(the scenes and which a tile draws) and :mod:`~rsir_stac.maptiles.render` (rendering).
"""

from __future__ import annotations

from rsir_stac.maptiles.grid import MAX_ZOOM, OVERZOOM, TILE_SIZE, UNDERZOOM, check_tile, tile_bounds, zoom_range
from rsir_stac.maptiles.render import CACHE_BYTES, OPEN_PER_THREAD, RETRY_S, TileRenderer
from rsir_stac.maptiles.scenes import POLAR_LAT, Scene, SceneChoice, scene_id, scenes_from_payloads

__all__ = ["CACHE_BYTES", "MAX_ZOOM", "OPEN_PER_THREAD", "OVERZOOM", "POLAR_LAT", "RETRY_S", "TILE_SIZE", "UNDERZOOM",
           "Scene", "SceneChoice", "TileRenderer", "check_tile", "scene_id", "scenes_from_payloads", "tile_bounds",
           "zoom_range"]
