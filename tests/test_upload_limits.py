"""Costs of an upload that its size does not show (security review of ``rsir-stac serve``).

* a TIFF whose block (tile, or pixel-interleaved strip) is declared far larger than its image: the decoder
  fills a whole block at once (a 1.2 KB 256 x 256 TIFF with one 16384 x 16384 tile took 0.9 GB);
* a TIFF whose mask (or overview) image has such a block, or that chains thousands of images;
* a progressive JPEG whose last scan is repeated: one more pass over the image per scan (40 s of decoding);
* decoder errors said "Read failed. See previous exception for details.";
* an all-NaN float TIFF was accepted as a query, while an all-nodata one was refused.

The hostile files are built here, byte by byte where no writer would make them, and go through the real
decoding path (:func:`rsir_stac.upload.decode_upload`) and the real app (FastAPI's TestClient).
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from rsir_stac.errors import EmptyImageError, ImageReadError
from rsir_stac.upload import (
    MAX_JPEG_SCANS,
    UploadLimits,
    UploadTooLarge,
    count_jpeg_scans,
    decode_upload,
    tiff_blocks,
)
from tests.conftest import write_raster

BASE = "http://127.0.0.1:8000"

# --------------------------------------------------------------------------- hand-written files

_SHORT, _LONG, _LONG8 = 3, 4, 16


def _tiff(ifds: list[dict[int, tuple[int, list[int]]]], block: bytes, *, big: bool = False) -> bytes:
    """A little-endian TIFF (or BigTIFF) of the given IFDs (tag -> (type, values)), chained in order.
    Every StripOffsets/TileOffsets value points at the one ``block`` (its byte count: ``len(block)``)."""
    out = bytearray(b"II" + (struct.pack("<HHHQ", 43, 8, 0, 0) if big else struct.pack("<HI", 42, 0)))
    block_at = len(out)
    out += block
    next_slots: list[int] = []
    first = 0
    for tags in ifds:
        tags = dict(tags)
        nblocks = tags.pop("nblocks", (0, [1]))[1][0]  # type: ignore[call-overload]
        off_tag, cnt_tag = (324, 325) if 322 in tags else (273, 279)
        tags[off_tag] = (_LONG8 if big else _LONG, [block_at] * nblocks)
        tags[cnt_tag] = (_LONG8 if big else _LONG, [len(block)] * nblocks)
        inline = 8 if big else 4
        entries = []
        for tag in sorted(tags):
            typ, vals = tags[tag]
            raw = struct.pack("<%d%s" % (len(vals), {_SHORT: "H", _LONG: "I", _LONG8: "Q"}[typ]), *vals)
            if len(raw) <= inline:
                entries.append((tag, typ, len(vals), raw.ljust(inline, b"\0")))
            else:
                out += b"\0" * (len(out) % 2)
                entries.append((tag, typ, len(vals), struct.pack("<Q" if big else "<I", len(out))))
                out += raw
        out += b"\0" * (len(out) % 2)
        here = len(out)
        for slot in next_slots[-1:]:
            out[slot:slot + inline] = struct.pack("<Q" if big else "<I", here)
        first = first or here
        out += struct.pack("<Q" if big else "<H", len(entries))
        for tag, typ, n, val in entries:
            out += struct.pack("<HHQ" if big else "<HHI", tag, typ, n) + val
        next_slots.append(len(out))
        out += b"\0" * inline
    if big:
        out[8:16] = struct.pack("<Q", first)
    else:
        out[4:8] = struct.pack("<I", first)
    return bytes(out)


def _ifd(width: int, height: int, *, spp: int = 3, bps: int = 8, compression: int = 8,
         tile: tuple[int, int] | None = None, rows_per_strip: int | None = None, photometric: int | None = None,
         subfile: int = 0, sampleformat: int = 1) -> dict:
    tags = {254: (_LONG, [subfile]), 256: (_LONG, [width]), 257: (_LONG, [height]), 258: (_SHORT, [bps] * spp),
            259: (_SHORT, [compression]), 262: (_SHORT, [photometric if photometric is not None else
                                                       (2 if spp >= 3 else 1)]),
            277: (_SHORT, [spp]), 284: (_SHORT, [1]), 339: (_SHORT, [sampleformat] * spp)}
    if spp > 3 and (photometric is None or photometric == 2):
        tags[338] = (_SHORT, [0] * (spp - 3))  # extra samples: bands 1-3 stay red, green, blue
    if tile:
        tags[322], tags[323] = (_LONG, [tile[0]]), (_LONG, [tile[1]])
        n = -(-width // tile[0]) * -(-height // tile[1])
    else:
        rps = rows_per_strip or height
        tags[278] = (_LONG, [rps])
        n = -(-height // rps)
    tags["nblocks"] = (0, [n])  # type: ignore[index]
    return tags


def _zeros(n: int) -> bytes:
    return zlib.compress(b"\0" * n, 9)


def _progressive_jpeg(side: int, repeats: int) -> bytes:
    """A progressive grey JPEG whose smallest AC scan is repeated ``repeats`` more times before EOI
    (each copy tens of bytes, each a full pass over the image's blocks)."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True, quality=50)
    d = buf.getvalue()
    scans, i = [], 2
    while d[i + 1] != 0xD9:  # walk the segments; a scan runs on to the next marker that is not FF 00 / RST
        j = i + 2 + int.from_bytes(d[i + 2:i + 4], "big")
        if d[i + 1] == 0xDA:
            while not (d[j] == 0xFF and d[j + 1] != 0x00 and not 0xD0 <= d[j + 1] <= 0xD7):
                j += 1
            scans.append(d[i:j])
        i = j
    last = min(scans[1:], key=len)
    assert d.endswith(b"\xff\xd9")
    return d[:-2] + last * repeats + b"\xff\xd9"


def _one_line(msg: str) -> None:
    assert "\n" not in msg and "Read failed" not in msg and "previous exception" not in msg, msg
    assert "/vsimem/" not in msg and " at 0x" not in msg, msg


# --------------------------------------------------------------------------- the service


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_bundle):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from rsir_stac.search import Index
    from rsir_stac.serve import create_app
    from tests.test_serve import build_test_index

    path = build_test_index(tmp_path_factory.mktemp("upload_limits"), tiny_bundle)
    with Index.open(str(path), model=tiny_bundle) as idx:
        app = create_app(idx, max_upload_bytes=2_000_000, max_image_pixels=2048 * 2048,
                         max_decoded_bytes=4 * 1024 * 1024)
        with TestClient(app, base_url=BASE) as c:
            yield c


def _upload(client, data: bytes, name: str = "q.bin"):
    return client.post("/api/search/image", files={"file": (name, data, "application/octet-stream")},
                       data={"k": "2"})


def _refused(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    _one_line(detail)
    return detail


# --------------------------------------------------------------------------- 1. TIFF blocks


def test_tile_declared_larger_than_the_image_is_refused_before_decoding():
    """The review's file: 256 x 256 RGB, 1.2 KB, one deflate tile declared 16384 x 16384 (768 MB decoded)."""
    data = _tiff([_ifd(256, 256, tile=(16384, 16384))], _zeros(1 << 20))
    assert len(data) < 2_000
    for big in (False, True):
        blob = _tiff([_ifd(256, 256, tile=(16384, 16384))], _zeros(1 << 20), big=big)
        t0 = time.monotonic()
        with pytest.raises(UploadTooLarge, match=r"16384x16384 pixels x 3 sample\(s\) x 1 byte\(s\)") as ei:
            decode_upload(blob)
        assert time.monotonic() - t0 < 1.0
        _one_line(str(ei.value))
        assert "byte limit" in str(ei.value) and "re-export" in str(ei.value)


def test_tile_over_the_limit_is_413_and_a_tile_within_it_decodes(client):
    # 256 x 256 with one 2048 x 2048 tile: 12 MB decoded, over the app's 4 MB limit (the image is 192 KB)
    hostile = _tiff([_ifd(256, 256, tile=(2048, 2048))], _zeros(2048 * 2048 * 3))
    detail = _refused(_upload(client, hostile, "tile.tif"), 413)
    assert "2048x2048" in detail and str(4 * 1024 * 1024) in detail
    # the same image with ordinary 256 x 256 tiles is fine
    ok = _tiff([_ifd(256, 256, tile=(256, 256))], _zeros(256 * 256 * 3))
    assert _upload(client, ok, "ok.tif").status_code == 200


def test_pixel_interleaved_strip_counts_every_sample():
    """A strip (RowsPerStrip x width) of a pixel-interleaved TIFF is decoded with all its samples, even when
    only red, green and blue are read: 512 x 512 x 64 samples = 16 MB per strip for a 0.75 MB RGB image."""
    data = _tiff([_ifd(512, 512, spp=64, rows_per_strip=512)], _zeros(512 * 512 * 64))
    limits = UploadLimits(max_decoded_bytes=4 * 1024 * 1024)
    with pytest.raises(UploadTooLarge, match=r"512x512 pixels x 64 sample\(s\)") as ei:
        decode_upload(data, limits)
    _one_line(str(ei.value))
    # strips of 16 rows (512 x 16 x 64 = 0.5 MB) decode
    ok = _tiff([_ifd(512, 512, spp=64, rows_per_strip=16)], _zeros(512 * 16 * 64))
    assert decode_upload(ok, limits).shape == (512, 512, 3)


def test_a_hidden_mask_image_with_a_huge_tile_is_refused():
    """The block limit covers every image of the file, not only the one GDAL shows: an internal mask
    (NewSubfileType 4) is read by read_masks with its own tile size."""
    main = _ifd(256, 256, tile=(256, 256))
    mask = _ifd(256, 256, spp=1, bps=1, tile=(4096, 4096), photometric=4, subfile=4)
    data = _tiff([main, mask], _zeros(4096 * 4096))  # one deflate stream, long enough for either block
    assert [b[:4] for b in tiff_blocks(data)] == [(256, 256, 3, 1), (4096, 4096, 1, 1)]
    with pytest.raises(UploadTooLarge, match=r"image 2 in the file.*4096x4096") as ei:
        decode_upload(data, UploadLimits(max_decoded_bytes=4 * 1024 * 1024))
    _one_line(str(ei.value))


def test_a_tiff_chaining_thousands_of_images_is_refused():
    data = _tiff([_ifd(8, 8, compression=1)] * 1100, b"\0" * 8 * 8 * 3)
    assert decode_upload(_tiff([_ifd(8, 8, compression=1)] * 3, b"\0" * 8 * 8 * 3)).shape == (8, 8, 3)
    with pytest.raises(UploadTooLarge, match="more than 1024 images"):
        decode_upload(data)


def test_ordinary_geotiffs_keep_decoding(tmp_path):
    import rasterio

    px = np.random.default_rng(1).integers(0, 256, (3, 300, 200), dtype=np.uint8)
    p = tmp_path / "tiled.tif"
    with rasterio.open(p, "w", driver="GTiff", width=200, height=300, count=3, dtype="uint8", tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(px)
    assert [b[:4] for b in tiff_blocks(p.read_bytes())] == [(256, 256, 3, 1)]
    assert np.array_equal(decode_upload(p.read_bytes()), px.transpose(1, 2, 0))
    striped = write_raster(tmp_path / "striped.tif", px, crs=None)
    assert np.array_equal(decode_upload(striped.read_bytes()), px.transpose(1, 2, 0))


# --------------------------------------------------------------------------- 2. JPEG scans


def test_jpeg_of_repeated_scans_is_refused_before_decoding(client):
    """The review's file at 1/16 of its size: 1024 x 1024 progressive, the last scan repeated 5,000 times."""
    data = _progressive_jpeg(1024, 5_000)
    assert count_jpeg_scans(data) > 5_000
    t0 = time.monotonic()
    with pytest.raises(UploadTooLarge, match=f"more than {MAX_JPEG_SCANS} scans") as ei:
        decode_upload(data)
    assert time.monotonic() - t0 < 1.0
    _one_line(str(ei.value))
    detail = _refused(_upload(client, data, "scans.jpg"), 413)
    assert "scans" in detail
    # a smaller limit is honoured; the encoder's own file decodes
    with pytest.raises(UploadTooLarge):
        decode_upload(_progressive_jpeg(64, 20), UploadLimits(max_jpeg_scans=10))
    assert decode_upload(_progressive_jpeg(64, 20)).shape == (64, 64, 3)


def test_jpeg_scan_count_of_encoder_output():
    """Baseline: 1 scan; progressive: 10 (RGB) / 6 (grey); stuffed FF 00 bytes and restart markers in the
    entropy-coded data are not markers."""
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))

    def enc(img, **kw):
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        return buf.getvalue()

    baseline = enc(im, quality=95, restart_marker_blocks=1)
    assert b"\xff\x00" in baseline and b"\xff\xd0" in baseline
    assert count_jpeg_scans(baseline) == 1
    assert count_jpeg_scans(enc(im, progressive=True)) == 10
    assert count_jpeg_scans(enc(im.convert("L"), progressive=True)) == 6
    for data in (baseline, enc(im, progressive=True, restart_marker_rows=1)):
        assert decode_upload(data).shape == (300, 300, 3)
    # nothing after EOI counts
    assert count_jpeg_scans(enc(im) + enc(im)) == 1


# --------------------------------------------------------------------------- 3. decoder messages


@pytest.mark.parametrize("kind, words", [
    ("truncated", "truncated or cut short"),
    ("garbage", "corrupt"),
    ("codec", "compression"),
])
def test_decode_errors_name_the_upload_the_cause_and_a_fix(client, kind, words):
    if kind == "truncated":  # a 64 x 64 RGB uncompressed strip of 12,288 bytes, 100 of them in the file
        data = _tiff([_ifd(64, 64, compression=1)], b"\0" * 100)
        data = data.replace(struct.pack("<I", 100), struct.pack("<I", 64 * 64 * 3), 1)
    elif kind == "garbage":  # LZW strip of random bytes
        data = _tiff([_ifd(256, 64, compression=5)], np.random.default_rng(2).bytes(2000))
    else:  # a compression no decoder knows
        data = _tiff([_ifd(64, 64, compression=12345)], _zeros(64 * 64 * 3))
    with pytest.raises(ImageReadError) as ei:
        decode_upload(data)
    msg = str(ei.value)
    _one_line(msg)
    assert msg.startswith("the uploaded TIFF file cannot be decoded: ") and words in msg, msg
    assert "re-export it as PNG or GeoTIFF" in msg
    detail = _refused(_upload(client, data, "bad.tif"), 422)
    assert words in detail


def test_cli_query_image_errors_give_the_decoders_words(tmp_path):
    from rsir_stac.tiling import read_image

    p = tmp_path / "bad.tif"
    p.write_bytes(_tiff([_ifd(256, 64, compression=5)], np.random.default_rng(2).bytes(2000)))
    with pytest.raises(ImageReadError, match=r"bad\.tif cannot be decoded as an image \(.+\)") as ei:
        read_image(p)
    _one_line(str(ei.value))


# --------------------------------------------------------------------------- 4. NaN pixels


def test_all_nan_float_tiff_is_refused_as_an_all_nodata_one(client, tmp_path):
    from rsir_stac.tiling import read_image

    nan = write_raster(tmp_path / "nan.tif", np.full((1, 64, 64), np.nan, np.float32), crs=None)
    inf = write_raster(tmp_path / "inf.tif", np.full((3, 64, 64), np.inf, np.float32), crs=None)
    for p in (nan, inf):
        with pytest.raises(EmptyImageError, match="no valid pixels"):
            decode_upload(p.read_bytes())
        with pytest.raises(EmptyImageError):  # the tiles' pixel path (ingest, CLI queries) says the same
            read_image(p)
        detail = _refused(_upload(client, p.read_bytes(), p.name), 422)
        assert "no valid pixels" in detail
    # NaN pixels of a partly valid image are blanked, as nodata is
    half = np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)
    half[:, :, :32] = np.nan
    px = decode_upload(write_raster(tmp_path / "half.tif", half, crs=None).read_bytes())
    assert (px[:, :32] == 0).all() and px[:, 32:].any()
    half_tif = write_raster(tmp_path / "half2.tif", half, crs=None)
    assert _upload(client, half_tif.read_bytes(), "h.tif").status_code == 200
