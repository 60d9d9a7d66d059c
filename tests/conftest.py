"""Shared pytest fixtures.

Real data lives beside the checkout in ``../shared/data`` (or wherever
``RSIR_DATA`` points).  Tests that need it use the ``shared_data`` fixture and
are skipped with a reason when it is absent.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Where the shared data folder is expected (``RSIR_DATA`` or ../shared/data)."""
    env = os.environ.get("RSIR_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} is absent; set RSIR_DATA to run this test")
    return root


def make_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 48, seed: int = 0) -> Path:
    """Tiny labelled folder: each class is a distinct texture (stripes, checks...)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = [
        (yy // 4) % 2,
        (xx // 4) % 2,
        ((yy // 6) + (xx // 6)) % 2,
        ((yy + xx) // 5) % 2,
        (np.hypot(yy - size / 2, xx - size / 2) // 5) % 2,
    ]
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        base = patterns[c % len(patterns)].astype(np.float32)
        for i in range(per_class):
            colour = rng.uniform(60, 200, size=3)
            img = base[..., None] * colour + rng.normal(0, 12, size=(size, size, 3)) + 30
            ext = ["png", "webp", "jpg"][i % 3] if c == 0 else "png"
            Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(d / f"img{i:02d}.{ext}", quality=95)
    return root


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "tiles")


@pytest.fixture(scope="session")
def shipped_bundle():
    """The shipped default bundle, loaded once."""
    from rsir_stac.model.bundle import load_bundle

    return load_bundle(None)


def index_of_points(path: Path, points, bundle) -> Path:
    """A real Qdrant Edge index at ``path`` holding ``points`` under ``bundle``'s dimension and model id."""
    from rsir_stac.store import open_store

    with open_store(path) as store:
        store.ensure_collection(bundle.dim, bundle.model_id)
        store.upsert(points)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A real bundle from a few real training steps on the tiny folder."""
    from rsir_stac.model.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tinytrain")
    data = make_image_folder(root / "tiles", classes=3, per_class=6)
    cfg = TrainConfig(str(data), str(root / "run"), input_size=64, tile_size=64, embedding_dim=16,
                      epochs=2, p=3, k=2, max_steps_per_epoch=2, val_fraction=0.0, reducer="lda", reducer_dim=2)
    return train(cfg)


def stac_item_file(path: Path, item_id: str, collection: str | None, datetime: str, tif: Path) -> str:
    """Write a minimal STAC Item at ``path`` whose one GeoTIFF asset (``image``, role data) is ``tif``
    (relative href); returns the path as a string, as ingest takes it."""
    import json

    item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
            "geometry": None, "properties": {"datetime": datetime}, "links": [],
            "assets": {"image": {"href": tif.name, "type": "image/tiff; application=geotiff", "roles": ["data"]}}}
    path.write_text(json.dumps(item))
    return str(path)


def make_geotiff(path: Path, *, width: int = 256, height: int = 192, count: int = 3, dtype: str = "uint8",
                 crs: str = "EPSG:32615", res: float | tuple[float, float] = 1.0, origin=(500000.0, 3300000.0),
                 nodata=None, alpha: bool = False, seed: int = 0, datetime_tag: str | None = None) -> Path:
    """A small georeferenced raster with blocky random texture (seeded); ``res`` is the
    pixel size in CRS units, one number or ``(x, y)``."""
    import numpy as np
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    blocks = rng.integers(20, 235, size=(count, height // 16 + 1, width // 16 + 1))
    data = np.kron(blocks, np.ones((16, 16)))[:, :height, :width]
    data = data + rng.normal(0, 8, size=data.shape)
    if dtype == "uint16":
        data = data * 40 + 1000
    data = np.clip(data, 1, np.iinfo(dtype).max if dtype != "float32" else 1e9).astype(dtype)
    bands = count + (1 if alpha else 0)
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype=dtype, crs=crs,
                   transform=from_origin(origin[0], origin[1], *((res, res) if np.isscalar(res) else res)),
                   nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, indexes=list(range(1, count + 1)))
        if alpha:
            a = np.full((height, width), np.iinfo(dtype).max, dtype)
            a[:, : width // 2] = 0  # left half transparent
            dst.write(a, count + 1)
            ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue][:count] + [ColorInterp.alpha]
            dst.colorinterp = ci
        if datetime_tag:
            dst.update_tags(TIFFTAG_DATETIME=datetime_tag)
    return path


def write_raster(path: Path, data, *, crs="EPSG:32615", transform=None, nodata=None, colorinterp=None, **extra) -> Path:
    """Write ``data`` (bands × rows × cols) as a GeoTIFF; CRS/transform optional."""
    import rasterio

    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=str(data.dtype), **extra)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return path


def serve_in_thread(app, wait_s: float = 30.0, *, access_log: bool = False):
    """Run an ASGI ``app`` under a real uvicorn server on a free loopback port, in a thread:
    a context manager yielding its base URL (keep-alive and connection handling as in
    production, which FastAPI's TestClient does not have).  ``access_log``: with ``serve``'s
    own log configuration at info level (its access log, secrets redacted), on a socket
    bound as ``serve`` binds it."""
    import contextlib
    import threading
    import time

    import uvicorn

    from rsir_stac.serve import _log_config, bind_socket

    @contextlib.contextmanager
    def running():
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        logs = dict(log_config=_log_config(), log_level="info") if access_log else dict(log_level="critical")
        server = uvicorn.Server(uvicorn.Config(app, **logs))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + wait_s
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    return running()


@contextlib.contextmanager
def serving(root: Path, log: Path):
    """The port of :func:`serve_folder` serving ``root`` while the block runs; the server stops after it."""
    proc, port = serve_folder(root, log)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def serve_folder(root: Path, log: Path):
    """``(process, port)`` of ``python -m http.server`` serving ``root`` on 127.0.0.1 in its own process (GDAL
    holding the GIL cannot stall it), once it accepts connections; its stderr (the request lines) goes to
    ``log``, emptied of the readiness probes.  Terminate the process when done."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    log.write_text("")  # forget the readiness probes (they send no request line)
    return proc, port
