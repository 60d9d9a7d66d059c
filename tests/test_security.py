"""Security of ``rsir-stac serve`` (issue 16): uploads that cannot name another resource, bounded memory,
browser-side safety of a local service, a truthful API document, and small operational cases.

Everything runs against the real app on a real Qdrant Edge index (the one ``tests/test_serve.py`` builds),
with real files, real sockets and a real local HTTP server that records whether it was contacted.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from PIL import Image

from rsir_stac.search import Index
from rsir_stac.serve import create_app
from rsir_stac.upload import UploadLimits, UploadTooLarge, decode_upload, sniff_format
from tests.conftest import make_geotiff, write_raster
from tests.conftest import serve_folder, serve_in_thread
from tests.test_serve import build_test_index

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_bundle):
    path = build_test_index(tmp_path_factory.mktemp("security"), tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx:
        yield idx


@pytest.fixture(scope="module")
def client(index):
    app = create_app(index, max_upload_bytes=2_000_000, max_image_pixels=2048 * 2048,
                     max_decoded_bytes=4 * 1024 * 1024)
    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def points(index):
    return {p.id: p.payload for p in index.store.iter_points(with_vectors=False)}


@pytest.fixture()
def http_server(tmp_path):
    """A real HTTP server (``python -m http.server`` in its own process, so GDAL holding the GIL cannot stall
    it) serving a GeoTIFF as x.tif and probe.tif; yields (port, a function returning the request lines)."""
    root = tmp_path / "www"
    root.mkdir()
    tif = make_geotiff(root / "x.tif", width=64, height=64)
    (root / "probe.tif").write_bytes(tif.read_bytes())
    log = tmp_path / "requests.log"
    proc, port = serve_folder(root, log)
    try:
        def seen() -> list[str]:
            return [ln for ln in log.read_text().splitlines() if '"GET ' in ln or '"HEAD ' in ln]

        yield port, seen
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture()
def silent_port():
    """A port that accepts TCP connections (kernel backlog) but never answers; yields (port, listening socket)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    try:
        yield s.getsockname()[1], s
    finally:
        s.close()


def _vrt(source: str, *, raw: bool = False, size: int = 64) -> bytes:
    bands = []
    for b in (1, 2, 3):
        if raw:
            bands.append(f'<VRTRasterBand dataType="Byte" band="{b}" subClass="VRTRawRasterBand">'
                         f'<SourceFilename relativetoVRT="0">{source}</SourceFilename>'
                         f'<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset>'
                         f'</VRTRasterBand>')
        else:
            bands.append(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
                         f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>{b}</SourceBand>'
                         f'</SimpleSource></VRTRasterBand>')
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">' + "".join(bands) + "</VRTDataset>").encode()


def _wms(port: int) -> bytes:
    return (f"<GDAL_WMS><Service name=\"TMS\"><ServerUrl>http://127.0.0.1:{port}/${{z}}/${{x}}/${{y}}.png</ServerUrl>"
            "</Service><DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34</UpperLeftY>"
            "<LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY><TileLevel>1</TileLevel>"
            "<TileCountX>1</TileCountX><TileCountY>1</TileCountY><YOrigin>top</YOrigin></DataWindow>"
            "<Projection>EPSG:3857</Projection><BlockSizeX>64</BlockSizeX><BlockSizeY>64</BlockSizeY>"
            "<BandsCount>3</BandsCount></GDAL_WMS>").encode()


def _upload(client, data: bytes, name: str = "q.tif", **form):
    return client.post("/api/search/image", files={"file": (name, data, "image/tiff")}, data=form)


def _assert_refused(r, status=422):
    assert r.status_code == status, r.text
    doc = r.json()
    assert "\n" not in doc["detail"] and doc["error"]
    assert "/vsi" not in doc["detail"] and "BytesIO" not in doc["detail"]


def _encode(px: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


# --------------------------------------------------------------------------- 1. uploads name no other resource


def test_vrt_with_url_source_is_refused_and_fetches_nothing(client, http_server, tmp_path):
    port, seen = http_server
    r = _upload(client, _vrt(f"/vsicurl/http://127.0.0.1:{port}/x.tif"), "evil.vrt")
    _assert_refused(r)
    assert "never opened" in r.json()["detail"]
    # the same VRT behind a TIFF file name and type, and without /vsicurl/ (GDAL's plain URL form)
    _assert_refused(_upload(client, _vrt(f"http://127.0.0.1:{port}/y.tif"), "q.tif"))
    assert seen() == []
    # the payload is live: GDAL opening the same VRT from a file does fetch the URL (so this test can fail)
    import rasterio

    vrt = tmp_path / "evil.vrt"
    vrt.write_bytes(_vrt(f"/vsicurl/http://127.0.0.1:{port}/x.tif"))
    with rasterio.Env(GDAL_HTTP_TIMEOUT="10"), rasterio.open(vrt) as ds:
        assert ds.read(1).shape == (64, 64)
    assert any("/x.tif" in line for line in seen())



def test_vrt_raw_band_over_a_local_file_is_refused(client, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 16)
    _assert_refused(_upload(client, _vrt(str(secret), raw=True), "raw.vrt"))
    # a missing file gives the same answer: the response does not reveal which paths exist
    r1 = _upload(client, _vrt(str(tmp_path / "nope.bin"), raw=True), "raw.vrt")
    r2 = _upload(client, _vrt(str(secret), raw=True), "raw.vrt")
    assert r1.status_code == r2.status_code and r1.json() == r2.json()


def test_gdal_wms_xml_is_refused(client, http_server):
    port, seen = http_server
    _assert_refused(_upload(client, _wms(port), "wms.xml"))
    assert seen() == []


def test_vrt_to_a_silent_port_is_refused_without_connecting(client, silent_port):
    port, listener = silent_port
    _assert_refused(_upload(client, _vrt(f"/vsicurl/http://127.0.0.1:{port}/x.tif"), "slow.vrt"))
    with pytest.raises(BlockingIOError):  # nothing ever connected
        listener.accept()


def test_tiff_magic_in_front_of_xml_is_not_a_way_in(client, http_server):
    port, seen = http_server
    _assert_refused(_upload(client, b"II*\x00" + _vrt(f"/vsicurl/http://127.0.0.1:{port}/x.tif")))
    assert seen() == []


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "PPM"])
def test_formats_off_the_allow_list_are_refused(client, fmt):
    data = _encode(np.zeros((16, 16, 3), np.uint8), fmt)
    assert sniff_format(data) is None
    _assert_refused(_upload(client, data, f"q.{fmt.lower()}"))


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, b"II*\x00" + b"garbage" * 10,
                                  b"\xff\xd8\xff" + b"\0" * 40, b"RIFF\0\0\0\0WEBPVP8 "])
def test_broken_files_of_allowed_formats_say_so_without_internals(client, data):
    r = _upload(client, data)
    _assert_refused(r)
    detail = r.json()["detail"]
    assert "cannot be decoded" in detail and " at 0x" not in detail and ".tif:" not in detail


def test_allowed_formats_decode(client, index, tmp_path):
    from rsir_stac.thumbnails import read_tile

    payload = next(iter(p.payload for p in index.store.iter_points(with_vectors=False)))
    tile = read_tile(payload)
    tif = write_raster(tmp_path / "q.tif", tile.transpose(2, 0, 1).copy(), crs=None)
    blobs = {"PNG": _encode(tile, "PNG"), "JPEG": _encode(tile, "JPEG"), "WEBP": _encode(tile, "WEBP"),
             "TIFF": tif.read_bytes(), "GeoTIFF": Path(payload["href"]).read_bytes()}
    for fmt, data in blobs.items():
        assert sniff_format(data) == ("TIFF" if fmt == "GeoTIFF" else fmt)
        px = decode_upload(data)
        assert px.dtype == np.uint8 and px.ndim == 3 and px.shape[2] == 3, fmt
        r = _upload(client, data, f"q.{fmt.lower()}", k="2")
        assert r.status_code == 200, (fmt, r.text)
    # lossless formats give back the very pixels
    assert np.array_equal(decode_upload(blobs["PNG"]), tile)
    assert np.array_equal(decode_upload(blobs["TIFF"]), tile)


def test_palette_and_16bit_tiffs_decode(tmp_path):
    from rasterio.enums import ColorInterp

    grey16 = write_raster(tmp_path / "g16.tif", np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64), crs=None)
    px = decode_upload(grey16.read_bytes())
    assert px.shape == (64, 64, 3) and px.min() == 0 and px.max() == 255
    import rasterio

    pal = tmp_path / "pal.tif"
    with rasterio.open(pal, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.full((1, 8, 8), 7, np.uint8))
        dst.write_colormap(1, {7: (10, 20, 30, 255)})
        dst.colorinterp = [ColorInterp.palette]
    assert decode_upload(pal.read_bytes())[0, 0].tolist() == [10, 20, 30]


# --------------------------------------------------------------------------- 2. bounded memory


def test_decoded_bytes_are_bounded_before_decoding(client, tmp_path):
    # a sparse float64 TIFF: a few kB on the wire, 1024 x 1024 x 3 x 8 = 25 MB decoded
    import rasterio

    p = tmp_path / "sparse.tif"
    with rasterio.open(p, "w", driver="GTiff", width=1024, height=1024, count=3, dtype="float64",
                       compress="deflate", tiled=True, sparse_ok=True) as dst:
        dst.write(np.zeros((3, 16, 16)), window=((0, 16), (0, 16)))
    data = p.read_bytes()
    assert len(data) < 20_000
    r = _upload(client, data)
    _assert_refused(r, 413)
    assert "decoded" in r.json()["detail"] and "byte limit" in r.json()["detail"]
    with pytest.raises(UploadTooLarge, match="decoded"):
        decode_upload(data, UploadLimits(max_decoded_bytes=1024 * 1024))
    assert decode_upload(data, UploadLimits(max_decoded_bytes=32 * 1024 * 1024)).shape == (1024, 1024, 3)
    # a 16-bit PNG is counted at 2 bytes per sample
    big16 = Image.fromarray(np.zeros((1100, 1100), np.uint16))
    buf = io.BytesIO()
    big16.save(buf, format="PNG")
    with pytest.raises(UploadTooLarge, match="decoded"):
        decode_upload(buf.getvalue(), UploadLimits(max_decoded_bytes=4 * 1024 * 1024))


def _raw_png(width: int, height: int, bit_depth: int, colour_type: int, row_bytes: int) -> bytes:
    """A PNG of zero rows written by hand (IHDR, one IDAT, IEND): any size and bit depth."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\0" * (1 + row_bytes)  # filter byte + samples
    idat = b"".join(z.compress(row * 1000) for _ in range(height // 1000)) + z.compress(row * (height % 1000))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat + z.flush()) + chunk(b"IEND", b"")


def test_tall_and_16bit_rgb_pngs_are_bounded_before_decoding(client):
    """A 1 x 1,000,000 PNG is 2 kB and under the pixel limit, but PNG decoding pays per row
    (a 1 x 16,000,000 one took 88 s and 11 GB); a 48-bit RGB PNG opens in Pillow as 8-bit RGB
    but is decoded at 16 bits.  Both are refused from the header, before decoding."""
    tall = _raw_png(1, 1_000_000, 8, 0, 1)
    assert len(tall) < 5_000
    r = _upload(client, tall)
    _assert_refused(r, 413)
    assert "a side over the 16384 pixel limit" in r.json()["detail"]
    ok = _raw_png(4, 16_384, 8, 0, 4)  # the longest side allowed still decodes
    assert decode_upload(ok).shape == (16_384, 4, 3)
    rgb48 = _raw_png(1100, 1100, 16, 2, 6 * 1100)  # 1100 x 1100 x 3 x 2 bytes = 7.3 MB decoded
    with pytest.raises(UploadTooLarge, match=r"x 3 band\(s\) x 2 byte"):
        decode_upload(rgb48, UploadLimits(max_decoded_bytes=4 * 1024 * 1024))
    assert decode_upload(rgb48, UploadLimits(max_decoded_bytes=8 * 1024 * 1024)).shape == (1100, 1100, 3)


def test_uploads_decoded_at_a_time_are_bounded(client):
    slots = client.app.state.decode_slots
    taken = 0
    while slots.acquire(blocking=False):  # take every slot, as concurrent uploads would
        taken += 1
    try:
        assert taken >= 1
        r = client.post("/api/search/image", files={"file": ("q.png", _encode(np.zeros((8, 8, 3), np.uint8), "PNG"))})
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == "1" and r.json()["error"] == "TooManyRequests"
    finally:
        for _ in range(taken):
            slots.release()
    r = client.post("/api/search/image", files={"file": ("q.png", _encode(np.zeros((8, 8, 3), np.uint8), "PNG"))})
    assert r.status_code == 200, r.text


def test_content_length_over_the_limit_is_refused_before_the_body_is_read(client):
    import asyncio

    app = client.app
    reads, sent = [], []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/search/image", "raw_path": b"/api/search/image", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", b"999999999"),
                         (b"content-type", b"multipart/form-data; boundary=x")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and reads == []
    assert dict(sent[0]["headers"])[b"connection"] == b"close"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert b'"error":"RequestTooLarge"' in body and b"999999999" in body


# --------------------------------------------------------------------------- 3. browser-side safety


def test_host_allow_list(index):
    app = create_app(index)
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "http://localhost"):
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/info").status_code == 200, base
    with TestClient(app, base_url="http://rebind.attacker.example:8000") as c:
        for path in ("/", "/api/info", "/docs", "/openapi.json"):
            r = c.get(path)
            assert r.status_code == 403, path
        assert r.json()["error"] == "HostNotAllowed" and "--allow-host" in r.json()["detail"]
    wide = create_app(index, allowed_hosts=("search.example.org", ".lan"))
    for base, ok in (("http://search.example.org", True), ("http://box.lan:8000", True), ("http://lan", True),
                     ("http://evil.org", False), ("http://127.0.0.1", False)):
        with TestClient(wide, base_url=base) as c:
            assert (c.get("/api/info").status_code == 200) is ok, base
    with TestClient(create_app(index, allowed_hosts=("*",)), base_url="http://anything.example") as c:
        assert c.get("/api/info").status_code == 200


def test_default_allowed_hosts_follow_the_bind_address():
    from rsir_stac.httpguard import default_allowed_hosts, host_allowed, host_name

    local = default_allowed_hosts("127.0.0.1")
    assert set(local) == {"localhost", "127.0.0.1", "::1"}
    assert "192.0.2.7" in default_allowed_hosts("192.0.2.7")
    assert host_name("[::1]:8000") == "::1" and host_name("LocalHost:80") == "localhost"
    assert host_allowed("localhost", local) and not host_allowed("localhost.attacker.example", local)


def asgi_get(app, *, path: str = "/api/info", headers=(), query: bytes = b"", server=("127.0.0.1", 8000),
             client=("198.51.100.20", 5), http_version: str = "1.1") -> tuple[int, bytes]:
    """``(status, body)`` of a GET sent straight to the ASGI app as uvicorn would: ``server``
    is the local address the connection came in on, ``headers`` what the client sent (a
    Host header only if given)."""
    import asyncio

    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": http_version, "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "client": client, "server": server, "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _get_status(app, path: str, host: str, server_ip: str, query: bytes = b"", headers=()) -> int:
    """Status of a GET whose Host header is ``host``, come in on ``server_ip`` (:func:`asgi_get`)."""
    return asgi_get(app, path=path, query=query, server=(server_ip, 8000),
                    headers=[(b"host", host.encode()), *headers])[0]


def test_a_wildcard_bind_answers_on_the_address_the_client_typed(index):
    """``serve --host 0.0.0.0``: the machine's host name may resolve to loopback only, so a
    client that typed the machine's LAN address was refused (403).  An IP equal to the
    address the connection came in on is allowed; names still need the allow-list."""
    from rsir_stac.httpguard import default_allowed_hosts

    wide = create_app(index, allowed_hosts=default_allowed_hosts("0.0.0.0"))
    assert _get_status(wide, "/api/info", "192.0.2.2:8000", "192.0.2.2") == 200
    assert _get_status(wide, "/api/info", "192.0.2.9:8000", "192.0.2.2") == 403  # not this connection's address
    assert _get_status(wide, "/api/info", "rebind.attacker.example", "192.0.2.2") == 403
    assert _get_status(wide, "/api/info", "<local address>", "192.0.2.2") == 403  # the entry is never a name
    loop = create_app(index, allowed_hosts=default_allowed_hosts("127.0.0.1"))
    assert _get_status(loop, "/api/info", "192.0.2.2:8000", "192.0.2.2") == 403  # only a wildcard bind


def test_the_key_in_a_url_opens_images_only(index, points):
    """``?api_key=`` is for image URLs (an ``<img>`` or a GIS XYZ layer cannot set a header);
    elsewhere the key must come as the X-API-Key header, and a repeated one is refused."""
    pid = next(iter(points))
    app = create_app(index, api_key="s3cret")
    q = b"api_key=s3cret"
    assert _get_status(app, f"/api/tiles/{pid}.png", "127.0.0.1", "127.0.0.1", q) == 200
    assert _get_status(app, "/api/imagery/0/0/0.png", "127.0.0.1", "127.0.0.1", q) in (200, 204, 404)
    assert _get_status(app, "/api/info", "127.0.0.1", "127.0.0.1", q) == 401
    assert _get_status(app, "/api/search", "127.0.0.1", "127.0.0.1", b"point_id=" + pid.encode() + b"&" + q) == 401
    assert _get_status(app, "/api/info", "127.0.0.1", "127.0.0.1", headers=[(b"x-api-key", b"s3cret")]) == 200
    for twice in (b"api_key=x&api_key=s3cret", b"api_key=s3cret&api_key=s3cret"):
        assert _get_status(app, f"/api/tiles/{pid}.png", "127.0.0.1", "127.0.0.1", twice) == 401


def test_cross_origin_posts_are_refused(client, points):
    pid = next(iter(points))
    body = {"point_id": pid, "k": 2}
    assert client.post("/api/search", json=body).status_code == 200  # no Origin: curl, scripts
    assert client.post("/api/search", json=body, headers={"Origin": BASE}).status_code == 200  # the page itself
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Origin": "http://127.0.0.1:9999"}, {"Sec-Fetch-Site": "cross-site"}):
        r = client.post("/api/search", json=body, headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "OriginNotAllowed", headers
        r = client.post("/api/search/image", headers=headers,
                        files={"file": ("q.png", _encode(np.zeros((8, 8, 3), np.uint8), "PNG"))})
        assert r.status_code == 403, headers
    # API GETs from another site are refused too: the browser would hide the answer (no CORS),
    # but an <img src=/api/search?...> on any page could still spend the service's CPU blind
    assert client.get("/api/search", params={"point_id": pid, "k": 2}).status_code == 200  # curl, scripts
    assert client.get("/api/search", params={"point_id": pid, "k": 2},
                      headers={"Sec-Fetch-Site": "same-origin", "Origin": BASE}).status_code == 200  # the page
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = client.get("/api/search", params={"point_id": pid, "k": 2}, headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "OriginNotAllowed", headers
        assert "access-control-allow-origin" not in r.headers
        assert client.head("/api/info", headers=headers).status_code == 403
    # map imagery stays open to other maps and GIS clients (an <img> or an XYZ layer elsewhere); a stored
    # tile is the page's own (its 200 or 404 would tell another site whether a public scene is indexed)
    r = client.get("/api/imagery/3/1/1.png", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code != 403, r.text
    r = client.get(f"/api/tiles/{pid}.png", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403, r.text


def test_allowed_origin_gets_cors(index, points):
    pid = next(iter(points))
    with TestClient(create_app(index, allowed_origins=["https://maps.example.org"]), base_url=BASE) as c:
        r = c.post("/api/search", json={"point_id": pid, "k": 2}, headers={"Origin": "https://maps.example.org"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://maps.example.org"
        pre = c.options("/api/search", headers={"Origin": "https://maps.example.org",
                                                "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type"})
        assert pre.status_code == 200 and "POST" in pre.headers["access-control-allow-methods"]
        r = c.post("/api/search", json={"point_id": pid}, headers={"Origin": "https://other.example.org"})
        assert r.status_code == 403


@pytest.mark.parametrize("value, why", [
    ("null", "every web page can send Origin: null"),  # a sandboxed iframe, a data: URL
    ("*", "it would let any web site drive this service"),
])
def test_allow_origin_null_and_star_are_refused_at_startup(index, points, value, why):
    """``--allow-origin null`` let any sandboxed iframe drive the service (200 with CORS), and ``*``
    any site at all: both are refused before the port or the index is opened, in one line naming
    the option, the value, why and what to give instead, exit 2."""
    from click.testing import CliRunner

    from rsir_stac.httpguard import OriginSettingError
    from rsir_stac.serve import serve_command

    r = CliRunner().invoke(serve_command, ["--index", "/nonexistent/idx", "--port", "0", "--allow-origin", value])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith(f"error: --allow-origin {value!r} is refused") and why in lines[0], lines[0]
    assert "https://app.example.org" in lines[0] and "Traceback" not in r.output
    with pytest.raises(OriginSettingError):  # the library refuses it too, so no app ever allows it
        create_app(index, allowed_origins=[value])


@pytest.mark.parametrize("value", ["evil.com", "file://", "https://evil.com/path", "ftp://maps.example.org",
                                   "https://user@maps.example.org", "https://maps.example.org:99999",
                                   "https://maps.example.org?x=1"])
def test_malformed_allow_origin_is_refused_in_one_line(value):
    from click.testing import CliRunner

    from rsir_stac.serve import serve_command

    r = CliRunner().invoke(serve_command, ["--index", "/nonexistent/idx", "--port", "0", "--allow-origin", value])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (f"error: --allow-origin {value!r} is not a web origin (http:// or https://, a host, an "
                        "optional port, no path); give e.g. https://app.example.org"), lines[0]


@pytest.mark.parametrize("configured", ["https://maps.example.org/", "HTTPS://Maps.Example.ORG",
                                        "https://maps.example.org:443", " https://maps.example.org "])
def test_allow_origin_is_normalised_once_for_the_check_and_cors(index, points, configured):
    """A trailing slash or capitals passed the origin check but not CORS: the POST ran (its side effects
    happened) with no access-control-allow-origin, and the preflight was 400.  One normalised value
    (scheme://host[:port], lower case, default port dropped) now serves both."""
    pid = next(iter(points))
    origin = {"Origin": "https://maps.example.org"}
    with TestClient(create_app(index, allowed_origins=[configured]), base_url=BASE) as c:
        r = c.post("/api/search", json={"point_id": pid, "k": 2}, headers=origin)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://maps.example.org"
        pre = c.options("/api/search", headers={**origin, "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://maps.example.org"
        r = c.post("/api/search", json={"point_id": pid}, headers={"Origin": "https://maps.example.org.evil.io"})
        assert r.status_code == 403
    from rsir_stac.httpguard import normalise_origin

    assert normalise_origin(configured) == "https://maps.example.org"
    assert normalise_origin("http://[::1]:80") == "http://[::1]" and normalise_origin("http://A.b:8080/") == \
        "http://a.b:8080"


def test_a_repeated_key_header_is_refused(index):
    """Two X-API-Key headers: the last one won (a wrong key, then the right one: 200).  A request with
    more than one is refused in one line, whatever their order, as a repeated ?api_key= is."""
    app = create_app(index, api_key="s3cret")
    ok = (b"x-api-key", b"s3cret")
    assert _get_status(app, "/api/info", "127.0.0.1", "127.0.0.1", headers=[ok]) == 200
    for twice in ([(b"x-api-key", b"nope"), ok], [ok, (b"x-api-key", b"nope")], [ok, ok],
                  [(b"X-API-Key", b"nope"), (b"x-api-key", b"s3cret")]):
        status, body = asgi_get(app, headers=[(b"host", b"127.0.0.1"), *twice])
        assert status == 401, twice
        assert b"X-API-Key header is given more than once; send it once" in body and b"\n" not in body


def test_security_headers(client, points):
    pid = next(iter(points))
    for path in ("/", "/static/app.js", "/api/info", f"/api/tiles/{pid}.png", "/docs", "/openapi.json",
                 "/api/nothing"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["referrer-policy"] == "no-referrer", path
    page = client.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in page and "object-src 'none'" in page
    assert client.get("/api/info").headers["content-security-policy"].startswith("default-src 'none'")
    docs = client.get("/docs")
    csp = docs.headers["content-security-policy"]
    assert "'sha256-" in csp and "script-src 'self' 'sha256-" in csp and "unsafe-inline' 'sha" not in csp


def test_api_key_redacted_from_the_access_log(index, points, capfd):
    """A real uvicorn server on a real socket: the key in a tile URL is not written to the access log."""
    import httpx

    pid = next(iter(points))
    with serve_in_thread(create_app(index, api_key="s3cret-key"), access_log=True) as url:
        assert httpx.get(f"{url}/api/tiles/{pid}.png", params={"api_key": "s3cret-key"}).status_code == 200
        assert httpx.get(f"{url}/api/info", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert httpx.get(f"{url}/api/info").status_code == 401
    out = capfd.readouterr()
    log = out.out + out.err
    assert f"/api/tiles/{pid}.png?api_key=***" in log
    assert "s3cret-key" not in log


def test_the_access_log_cuts_long_urls_and_hides_keys_under_any_name(index, points, capfd):
    """A 6 KB query string was written in full on every request (60 KB lines), and keys sent under
    other names (``apikey``, ``token``, ``access_token``, ``apiKey``, one smuggled encoded inside
    another parameter) were logged in clear although refused.  Logged URLs are cut to 512
    characters with a marker; values of parameters named like a key, token, secret or password
    become ``***``."""
    import httpx

    from rsir_stac.redact import LOG_PATH_CHARS, redact_secrets

    secret = "Zq9-very-secret-value"
    names = ("apikey", "token", "access_token", "apiKey", "X-Amz-Signature", "client_secret", "password",
             "api-key", "sig")
    pid = next(iter(points))
    with serve_in_thread(create_app(index, api_key="s3cret-key"), access_log=True) as url:
        for name in names:
            assert httpx.get(f"{url}/api/info?{name}={secret}").status_code == 401, name
        assert httpx.get(f"{url}/api/info?a=1%26api_key%3D{secret}").status_code == 401
        long = "x" * 6000
        assert httpx.get(f"{url}/api/tiles/{pid}.png?pad={long}&api_key=s3cret-key").status_code == 200
    out = capfd.readouterr()
    log = out.out + out.err
    assert secret not in log and "s3cret-key" not in log, log[-3000:]
    for name in names:
        assert f"/api/info?{name}=***" in log, name
    assert "/api/info?a=***" in log
    lines = [ln for ln in log.splitlines() if f"/api/tiles/{pid}.png" in ln]
    assert len(lines) == 1 and len(lines[0]) < LOG_PATH_CHARS + 200, len(lines[0])
    assert "more characters not logged]" in lines[0]
    # ordinary parameters are left alone
    assert redact_secrets("/?monkey=1&keys=2&page=3&tokens=4") == "/?monkey=1&keys=2&page=3&tokens=4"


# --------------------------------------------------------------------------- 4. the API tells the truth


@pytest.mark.parametrize("body", [
    '{"lon": NaN, "lat": 0}', '{"lon": Infinity, "lat": 0}', '{"lon": 1e400, "lat": 0}',
    '{"lon": 0, "lat": -Infinity}', '{"point_id": null, "k": NaN}', '{"bbox": [NaN, 0, 1, 1], "lon": 0, "lat": 0}',
    '{"k": 1e400}', '{"near": [0, 0, Infinity], "lon": 0, "lat": 0}', '[NaN]', 'NaN',
])
def test_non_finite_json_numbers_are_4xx(client, body):
    r = client.post("/api/search", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    doc = r.json()
    assert set(doc) <= {"detail", "error", "errors"} and doc["detail"] and doc["error"]


@pytest.mark.parametrize("params", [{"lon": "nan", "lat": "0"}, {"lon": "inf", "lat": "0"}, {"lon": "0", "lat": "1e400"},
                                    {"k": "nan", "lon": "0", "lat": "0"}])
def test_non_finite_query_numbers_are_4xx(client, params):
    r = client.get("/api/search", params=params)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]


def test_one_error_schema_everywhere(client, points):
    pid = next(iter(points))
    cases = [
        client.get("/api/search"),                                            # 400 InputError
        client.get("/api/search", params={"point_id": "00000000-0000-4000-8000-000000000000"}),  # 404
        client.get("/api/search", params={"point_id": pid, "k": 0}),          # 422 validation
        client.post("/api/search", content=b"{nope", headers={"content-type": "application/json"}),  # 422
        client.get("/api/nothing"),                                           # 404 no route
        client.delete("/api/search"),                                         # 405
        _upload(client, b"<VRTDataset/>"),                                    # 422 upload
    ]
    for r in cases:
        doc = r.json()
        assert set(doc) <= {"detail", "error", "errors"}, doc
        assert isinstance(doc["detail"], str) and "\n" not in doc["detail"] and doc["error"], doc
    assert [r.status_code for r in cases] == [400, 404, 422, 422, 404, 405, 422]
    assert cases[2].json()["errors"][0]["loc"] == ["query", "k"]


def test_options_and_405_list_every_method(client):
    r = client.options("/api/search")
    assert r.status_code == 204
    assert {"GET", "POST", "OPTIONS"} <= {m.strip() for m in r.headers["allow"].split(",")}
    r = client.put("/api/search", json={})
    assert r.status_code == 405 and "POST" in r.headers["allow"] and "GET" in r.headers["allow"]
    assert client.options("/api/search/image").headers["allow"].startswith("OPTIONS, POST")


def test_openapi_documents_errors_with_one_schema(client):
    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ref = "#/components/schemas/ErrorBody"
    expected = {("/api/search", "get"): {"400", "404", "422"}, ("/api/search", "post"): {"400", "404", "413", "422"},
                ("/api/search/image", "post"): {"400", "413", "422", "429"},
                ("/api/tiles/{point_id}.png", "get"): {"404", "410", "422"}, ("/api/info", "get"): set()}
    for (path, method), codes in expected.items():
        responses = doc["paths"][path][method]["responses"]
        assert codes | {"403", "405", "500"} <= set(responses), (path, method, set(responses))
        for code, entry in responses.items():
            if code.startswith(("4", "5")):
                assert entry["content"]["application/json"]["schema"]["$ref"] == ref, (path, code)
    assert "Retry-After" in doc["paths"]["/api/search/image"]["post"]["responses"]["429"]["headers"]


# --------------------------------------------------------------------------- 9. small operational cases


def test_busy_port_is_one_error_line_and_exit_1():
    from click.testing import CliRunner

    from rsir_stac.serve import AddressInUseError, bind_socket, serve_command

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(AddressInUseError, match=f"port {port} .* in use"):
            bind_socket("127.0.0.1", port)
        r = CliRunner().invoke(serve_command, ["--index", "/nonexistent/idx", "--port", str(port)])
        assert r.exit_code == AddressInUseError.exit_code == 1, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: port") and "--port" in lines[-1] and "Traceback" not in r.output
    finally:
        holder.close()


def test_serve_refuses_a_qdrant_key_without_a_qdrant_server(tmp_path):
    """--api-key is the Qdrant server's key: on an embedded index it would protect nothing."""
    from click.testing import CliRunner

    from rsir_stac.serve import serve_command

    r = CliRunner().invoke(serve_command, ["--index", str(tmp_path / "idx"), "--api-key", "secret", "--port", "0"])
    assert r.exit_code == 2, r.output
    last = [ln for ln in r.output.splitlines() if ln.strip()][-1]
    assert last.startswith("error: --api-key") and "--service-key" in last


def test_tile_whose_source_became_a_non_raster(tmp_path, tiny_bundle):
    path = build_test_index(tmp_path / "broken", tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx:
        pts = {p.id: p.payload for p in idx.store.iter_points(with_vectors=False)}
        pid, payload = next(iter(pts.items()))
        src = Path(payload["href"])
        src.write_text("this is not a raster any more\n")
        with TestClient(create_app(idx), base_url=BASE) as c:
            r = c.get(f"/api/tiles/{pid}.png")
            assert r.status_code == 410, r.text
            doc = r.json()
            assert doc["error"] == "SourceUnreadableError" and "\n" not in doc["detail"]
            assert "re-ingest" in doc["detail"] and str(src) in doc["detail"]
        with TestClient(create_app(idx, hide_paths=True), base_url=BASE) as c:
            r = c.get(f"/api/tiles/{pid}.png")
            assert r.status_code == 410 and str(src.parent) not in r.text and src.name in r.text
            # a missing source: 404, path hidden as well
            src.unlink()
            r = c.get(f"/api/tiles/{pid}.png")
            assert r.status_code == 404 and str(src.parent) not in r.text


def test_hide_paths_in_hrefs_and_errors(index, points):
    pid = next(iter(points))
    with TestClient(create_app(index, hide_paths=True), base_url=BASE) as c:
        r = c.get("/api/search", params={"point_id": pid, "k": 3})
        hrefs = [f["properties"]["href"] for f in r.json()["features"]]
        assert hrefs and all("/" not in h for h in hrefs)
        assert all(h.endswith(".tif") for h in hrefs)
        r = c.get("/api/search", params={"lon": 10, "lat": 10})
        assert r.status_code == 404
        assert str(Path(index.store.location)) not in r.text if hasattr(index.store, "location") else True
        assert "/tmp/" not in r.text and "/pytest-" not in r.text
    with TestClient(create_app(index), base_url=BASE) as c:  # the default of a library app shows them
        r = c.get("/api/search", params={"point_id": pid, "k": 3})
        assert all("/" in f["properties"]["href"] for f in r.json()["features"])


def test_redact_paths_and_public_href():
    from rsir_stac.redact import public_href, redact_paths

    assert redact_paths("no tile in index /srv/data/idx covers lon 1") == "no tile in index idx covers lon 1"
    assert redact_paths("(/a/b/c.tif is not a raster)") == "(c.tif is not a raster)"
    assert redact_paths("upload to /api/search/image or see /docs") == "upload to /api/search/image or see /docs"
    assert redact_paths("fetch https://host/x/y.tif failed") == "fetch https://host/x/y.tif failed"
    assert public_href("/srv/scenes/a.tif") == "a.tif" and public_href("https://h/x.tif") == "https://h/x.tif"


# --------------------------------------------------------------------------- schemathesis: the document is true

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

SCHEMATHESIS_CASES = 30  # per operation and mode: 9 x 2 x 30 = 540 requests at most


@pytest.fixture(scope="module")
def api_schema(index):
    app = create_app(index, max_upload_bytes=200_000, max_image_pixels=1024 * 1024, max_decoded_bytes=4 << 20,
                     allowed_hosts=("testserver", "localhost", "127.0.0.1"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


#: Operations without parameters: nothing for the negative run to break.
NO_INPUT = ("GET /api/info", "GET /api/scenes")

@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis(api_schema, mode):
    """Every response matches the OpenAPI document (no 5xx, documented status codes, content types and
    schemas) for schema-valid and schema-violating requests to every operation.

    Driven through hypothesis directly (schemathesis' pytest plugin does not load under this pytest).
    """
    from hypothesis import given
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    gen = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    ran = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if mode == "negative" and operation.label in NO_INPUT:
            continue  # no input to break

        @given(case=operation.as_strategy(generation_mode=gen))
        @settings(max_examples=SCHEMATHESIS_CASES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            # positive_data_acceptance is left out: rules across fields (point_id *or* lon/lat) and the
            # syntax of filter strings cannot be written in OpenAPI, so some schema-valid requests get 400
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
        ran.append(operation.label)
    every = [r.ok().label for r in api_schema.get_all_operations()]
    assert len(every) >= 9 and ran == [op for op in every if mode == "positive" or op not in NO_INPUT], ran


def test_extra_image_sources_and_routers_added_later_are_covered(index):
    from fastapi import APIRouter

    app = create_app(index, csp_img_sources=["https://tiles.example.org"])
    with TestClient(app, base_url=BASE) as c:
        page = c.get("/").headers["content-security-policy"]
        assert "img-src 'self' data: blob: https://tiles.example.org;" in page
        assert "tiles.example.org" not in c.get("/api/info").headers["content-security-policy"]
    # an operation from another module's router gets the common error statuses too
    router = APIRouter()

    @router.get("/api/extra")
    def extra() -> dict:
        return {}

    app.include_router(router)  # after create_app: its document still lists the common errors
    doc = app.openapi()
    assert {"403", "405", "422", "500"} <= set(doc["paths"]["/api/extra"]["get"]["responses"])


def test_odd_spellings_of_numbers_and_names_are_refused(client, points, tmp_path, tiny_bundle):
    """``float()`` reads ``1_0`` as 10 and ``nan``/``inf`` as numbers: a polygon or bbox given so
    was taken silently; examples are numbered from 0 as in the request; a collection name with
    a control character (NUL, RLO) is refused before it is stored in every tile."""
    from click.testing import CliRunner

    from rsir_stac.cli import main
    from rsir_stac.errors import InputError as RsirInputError
    from rsir_stac.store.filters import parse_bbox, plain_float

    assert plain_float(" -1.5e-3 ") == -0.0015 and plain_float("10") == 10.0 and plain_float(".5") == 0.5
    for bad in ("1_0", "1_000.5", "0x10", "1e", ""):
        with pytest.raises(ValueError):
            plain_float(bad)
    with pytest.raises(RsirInputError, match="non-finite|finite"):
        parse_bbox("nan,0,1,1")  # parsed, then named by the range checks
    with pytest.raises(RsirInputError, match="plain decimal"):
        parse_bbox("1_0,0,11,1")
    r = client.get("/api/search", params={"lon": 0, "lat": 0, "polygon": "1_0,0;11,0;11,1"})
    assert r.status_code == 400 and "polygon position" in r.json()["detail"], r.text
    pid = next(iter(points))
    r = client.post("/api/query", json={"positives": [{"point_id": pid, "lon": 1, "lat": 2}]})
    assert r.status_code == 400 and "positives[0] has both" in r.json()["detail"], r.text
    scene = make_geotiff(tmp_path / "s.tif", width=64, height=64)
    for name in ("a\u202eb", "a\nb", "  ", "x" * 201):
        res = CliRunner().invoke(main, ["ingest", str(scene), "--index", str(tmp_path / "idx"), "--collection", name,
                                        "--model", str(tiny_bundle.path), "--native-gsd", "--tile-size", "64"])
        assert res.exit_code == 2 and "--collection" in res.output, (name, res.output)
    assert not (tmp_path / "idx").exists()
