"""Render stored tiles back from their source rasters, and a contact sheet."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def read_tile(payload: dict) -> np.ndarray:
    """Re-read a stored tile's pixels (RGB uint8) from its source raster."""
    from rsir_stac.errors import PointNotFoundError
    from rsir_stac.tiling import SceneReader

    t = payload.get("tiling") or {}
    grid = payload["grid"]
    with SceneReader.open(payload["href"], bands=t.get("bands"), target_gsd=t.get("gsd"),
                          tile_size=t.get("tile_size", grid["width"]), stride=t.get("stride"),
                          edge=t.get("edge", "shift"), min_valid=0.0, nodata=t.get("nodata")) as reader:
        for ref in reader.windows():
            g = ref.grid
            if (g.col_off, g.row_off, g.width, g.height) == (grid["col_off"], grid["row_off"], grid["width"], grid["height"]):
                tile = reader.read(ref)
                if tile is not None:
                    return tile.pixels
    raise PointNotFoundError(f"tile {grid} of {payload['href']} is not in the raster any more; re-ingest the item")


def _fit(pixels: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))


def contact_sheet(query: np.ndarray | None, tiles: list[np.ndarray], labels: list[str], *, size: int = 160,
                  columns: int = 6) -> np.ndarray:
    """Query tile (outlined red) followed by results in a grid, each labelled."""
    from PIL import Image, ImageDraw

    cells = ([("query", query)] if query is not None else []) + list(zip(labels, tiles))
    columns = max(1, min(columns, len(cells)))
    rows = (len(cells) + columns - 1) // columns
    pad, text_h = 6, 14
    sheet = Image.new("RGB", (columns * (size + pad) + pad, rows * (size + pad + text_h) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (label, px) in enumerate(cells):
        x = pad + (i % columns) * (size + pad)
        y = pad + (i // columns) * (size + pad + text_h)
        sheet.paste(Image.fromarray(_fit(px, size)), (x, y))
        if label == "query":
            draw.rectangle([x - 3, y - 3, x + size + 2, y + size + 2], outline=(220, 0, 0), width=3)
        draw.text((x, y + size + 1), label[:28], fill=(0, 0, 0))
    return np.asarray(sheet)


def write_thumbnails(result, out_dir: str | Path, *, size: int = 160) -> list[Path]:
    """Write each hit as ``NN_<id>.png`` plus ``contact_sheet.png``; returns the paths."""
    from PIL import Image

    from rsir_stac.errors import RsirError

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, tiles, labels = [], [], []
    query = result.query_pixels
    if query is None and result.query_payload is not None:
        try:
            query = read_tile(result.query_payload)
        except RsirError as err:
            log.warning("query tile not rendered: %s", err)
    if query is not None:
        p = out / "00_query.png"
        Image.fromarray(query).save(p)
        written.append(p)
    for rank, hit in enumerate(result.hits, 1):
        try:
            px = read_tile(hit.payload)
        except RsirError as err:
            log.warning("hit %s not rendered: %s", hit.id, err)
            px = np.full((size, size, 3), 200, np.uint8)
        p = out / f"{rank:02d}_{hit.id[:8]}.png"
        Image.fromarray(px).save(p)
        written.append(p)
        tiles.append(px)
        labels.append(f"#{rank} d={hit.score:.3f} {hit.payload.get('item_id', '')}")
    sheet = out / "contact_sheet.png"
    Image.fromarray(contact_sheet(query, tiles, labels, size=size)).save(sheet)
    written.append(sheet)
    return written
