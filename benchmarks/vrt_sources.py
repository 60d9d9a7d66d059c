"""What checking a VRT's sources costs when it is opened (session 39): every source is opened once
(`tiling.sources.check_vrt_sources`), so a source GDAL cannot open fails the item instead of being
read as black.

    python benchmarks/vrt_sources.py [--sources 400] [--rounds 3]

Writes a mosaic of N small GeoTIFFs (64 px each) and its VRT in a temporary folder, then opens the
VRT alternately as rasterio does (``rasterio.open``) and as ingest does (``_open_raster``: the
checks, the source check included); rounds alternate so machine drift hits both.  Prints the
minimum of each, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np


def _mosaic(root: Path, n: int) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    side = math.ceil(math.sqrt(n))
    parts = []
    for k in range(n):
        i, j = divmod(k, side)
        p = root / f"t{k}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32633",
                           transform=from_origin(500000 + j * 64, 5000000 - i * 64, 1, 1)) as ds:
            ds.write(np.full((3, 64, 64), k % 250, np.uint8))
        parts.append((p.name, j * 64, i * 64))
    bands = []
    for b in (1, 2, 3):
        srcs = "".join(f'<SimpleSource><SourceFilename relativeToVRT="1">{f}</SourceFilename><SourceBand>{b}'
                       f'</SourceBand><SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/><DstRect xOff="{x}" '
                       f'yOff="{y}" xSize="64" ySize="64"/></SimpleSource>' for f, x, y in parts)
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}">{srcs}</VRTRasterBand>')
    rows = math.ceil(n / side)
    vrt = root / "mosaic.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="{side * 64}" rasterYSize="{rows * 64}"><SRS>EPSG:32633</SRS>'
                   '<GeoTransform>500000, 1, 0, 5000000, 0, -1</GeoTransform>' + "".join(bands) + "</VRTDataset>")
    return vrt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import rasterio

    from rsir_stac.tiling.sources import _open_raster

    with tempfile.TemporaryDirectory() as tmp:
        vrt = str(_mosaic(Path(tmp), args.sources))
        plain, checked = [], []
        for _ in range(args.rounds):
            for opener, times in ((rasterio.open, plain), (_open_raster, checked)):
                t = time.perf_counter()
                opener(vrt).close()
                times.append(time.perf_counter() - t)
    out = {"sources": args.sources, "rounds": args.rounds, "open_s": round(min(plain), 4),
           "open_and_check_s": round(min(checked), 4),
           "check_ms_per_source": round(1000 * (min(checked) - min(plain)) / args.sources, 3)}
    print(f"plain open {out['open_s']} s, open with the source check {out['open_and_check_s']} s "
          f"({out['check_ms_per_source']} ms a source)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
