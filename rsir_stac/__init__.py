"""rsir-stac: content-based retrieval of remote sensing image tiles.

A triplet-trained CNN embeds tiles of STAC / GeoTIFF scenes; the vectors and
their geo-metadata go into Qdrant (embedded Qdrant Edge by default, or a
server / cluster through qdrant-client).  Heavy dependencies (torch,
rasterio, qdrant) are imported lazily by the modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from rsir_stac.errors import RsirError

__all__ = ["RsirError", "__version__"]
