"""What hostile uploads cost ``rsir-stac serve`` now (issue 16, items 1 and 2).

1. Memory: ``--parallel`` concurrent uploads of a sparse float64 GeoTIFF of
   4096 x 4096 x 3 (a few kB on the wire, 400 MB decoded), the case that took
   the server from 1.8 to 11.8 GB.  Reports the process's peak resident size
   (VmHWM) before and after, and the status codes.
2. Time: a 1 KB VRT whose source is ``/vsicurl/`` to a local port that
   accepts connections and never answers (it held a worker for 93 s).
   Reports the time to the answer, and whether the port saw a connection.
3. The worst accepted upload: a float64 3-band TIFF just under the 64 MiB
   decoded-byte limit, decoded twice at once (the default decode slots).

Both uploads are refused before the index is touched, so the app is built
around no index (``create_app(None)``); the requests go through the full
middleware and endpoint in-process (Starlette's TestClient).  Prints one
JSON line last.

Usage::

    python benchmarks/upload_safety.py [--parallel 6]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _hwm_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sparse_tiff(path: Path) -> bytes:
    import numpy as np
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=4096, height=4096, count=3, dtype="float64",
                       compress="deflate", tiled=True, sparse_ok=True) as dst:
        dst.write(np.zeros((3, 16, 16)), window=((0, 16), (0, 16)))
    return path.read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=6)
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from rsir_stac.serve import create_app

    with tempfile.TemporaryDirectory() as tmp:
        data = _sparse_tiff(Path(tmp) / "sparse.tif")
    client = TestClient(create_app(None), base_url="http://127.0.0.1:8000")
    hwm0 = _hwm_mb()

    def post(blob: bytes) -> int:
        return client.post("/api/search/image", files={"file": ("q.tif", blob, "image/tiff")}).status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as ex:
        codes = list(ex.map(post, [data] * args.parallel))
    bomb_s = time.perf_counter() - t0
    hwm1 = _hwm_mb()
    print(f"{args.parallel} sparse float64 4096x4096x3 TIFFs ({len(data)} B each): {sorted(set(codes))} "
          f"in {bomb_s * 1000:.0f} ms; peak RSS {hwm0:.0f} -> {hwm1:.0f} MB")

    # the worst upload that is accepted: float64, 3 bands, just under the 64 MiB decoded-byte limit, decoded
    # twice at once (the default number of decode slots)
    import numpy as np
    import rasterio

    from rsir_stac.upload import decode_upload

    side = int((64 * 1024 * 1024 / 24) ** 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "ok.tif"
        with rasterio.open(p, "w", driver="GTiff", width=side, height=side, count=3, dtype="float64",
                           compress="deflate", tiled=True) as dst:
            dst.write(np.random.default_rng(0).random((3, side, side)))
        ok = p.read_bytes()
    hwm2 = _hwm_mb()
    with ThreadPoolExecutor(2) as ex:
        shapes = [px.shape for px in ex.map(decode_upload, [ok, ok])]
    hwm3 = _hwm_mb()
    print(f"2 accepted float64 {side}x{side}x3 uploads decoded at once: {shapes[0]}; peak RSS {hwm2:.0f} -> "
          f"{hwm3:.0f} MB")

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    vrt = ('<VRTDataset rasterXSize="64" rasterYSize="64"><VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
           f'<SourceFilename>/vsicurl/http://127.0.0.1:{port}/x.tif</SourceFilename><SourceBand>1</SourceBand>'
           '</SimpleSource></VRTRasterBand></VRTDataset>').encode()
    t0 = time.perf_counter()
    vrt_code = post(vrt)
    vrt_ms = (time.perf_counter() - t0) * 1000
    try:
        listener.accept()
        contacted = True
    except BlockingIOError:
        contacted = False
    listener.close()
    print(f"VRT to a silent port: {vrt_code} in {vrt_ms:.1f} ms; port contacted: {contacted}")
    print(json.dumps({"parallel": args.parallel, "sparse_tiff_bytes": len(data), "sparse_codes": sorted(set(codes)),
                      "peak_rss_before_mb": round(hwm0), "peak_rss_after_mb": round(hwm1),
                      "sparse_total_ms": round(bomb_s * 1000), "vrt_code": vrt_code, "vrt_ms": round(vrt_ms, 1),
                      "vrt_port_contacted": contacted, "accepted_side": side,
                      "accepted_peak_rss_before_mb": round(hwm2), "accepted_peak_rss_after_mb": round(hwm3)}))


if __name__ == "__main__":
    main()
