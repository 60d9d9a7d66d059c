"""Render stored tiles back from their source rasters, and a contact sheet."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.terminal import printable

log = logging.getLogger(__name__)


def read_tile(payload: dict) -> np.ndarray:
    """Re-read a stored tile's pixels (RGB uint8) from its source raster (or, for a scene
    composed from three single-band assets, its ``band_hrefs``)."""
    got = read_tiles([payload])[0]
    if isinstance(got, Exception):
        raise got
    return got


def _scene_options(payload: dict) -> dict:
    """How ingest read a stored tile's scene (:meth:`rsir_stac.tiling.SceneReader.open`'s options)."""
    from rsir_stac.tiling.stack import payload_band_hrefs, payload_nodata

    t = payload.get("tiling") or {}
    return dict(bands=t.get("bands"), target_gsd=t.get("gsd"), tile_size=t.get("tile_size", payload["grid"]["width"]),
                stride=t.get("stride"), edge=t.get("edge", "shift"), min_valid=0.0,
                nodata=payload_nodata(t.get("nodata")), hrefs=payload_band_hrefs(payload))


def read_tiles(payloads: list[dict]) -> list[np.ndarray | Exception]:
    """:func:`read_tile` of each payload, each scene opened once for all its tiles (so what opening it
    warns of, e.g. a CRS whose area of use is far from the scene, is said once per scene, not once per
    tile); in place of a tile that cannot be read, the RsirError saying why."""
    from rsir_stac.errors import PointNotFoundError, RsirError
    from rsir_stac.tiling import SceneReader

    scenes: dict[str, list[int]] = {}
    for i, p in enumerate(payloads):
        scenes.setdefault(repr((p["href"], sorted(_scene_options(p).items()))), []).append(i)
    out: list[np.ndarray | Exception | None] = [None] * len(payloads)
    for members in scenes.values():
        first = payloads[members[0]]
        try:
            with SceneReader.open(first["href"], **_scene_options(first)) as reader:
                refs = {(r.grid.col_off, r.grid.row_off, r.grid.width, r.grid.height): r for r in reader.windows()}
                for i in members:
                    g = payloads[i]["grid"]
                    ref = refs.get((g["col_off"], g["row_off"], g["width"], g["height"]))
                    try:
                        tile = reader.read(ref) if ref is not None else None
                    except RsirError as err:  # this window only
                        out[i] = err
                        continue
                    out[i] = tile.pixels if tile is not None else PointNotFoundError(
                        f"tile {g} of {payloads[i]['href']} is not in the raster any more; re-ingest the item")
        except RsirError as err:  # the scene cannot be opened: each of its tiles says why
            for i in members:
                out[i] = err if out[i] is None else out[i]
    return out


def _fit(pixels: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))


#: Outline colours of the examples on a contact sheet: positive (the query) red, negative blue.
EXAMPLE_OUTLINES = {True: (220, 0, 0), False: (0, 90, 220)}


def contact_sheet(query: np.ndarray | None, tiles: list[np.ndarray], labels: list[str], *, size: int = 160,
                  columns: int = 6, query_label: str = "query",
                  examples: Sequence[tuple[str, np.ndarray, bool]] = ()) -> np.ndarray:
    """Query tile (outlined red), then the search's other examples (``examples``: caption, pixels and
    whether positive; outlined red or blue), then the results in a grid, each labelled (two lines at most)."""
    from PIL import Image, ImageDraw

    shown = ([(query_label, query, True)] if query is not None else []) + list(examples)
    cells = [(label, px) for label, px, _ in shown] + list(zip(labels, tiles))
    columns = max(1, min(columns, len(cells)))
    rows = (len(cells) + columns - 1) // columns
    pad, text_h = 6, 26  # two caption lines
    sheet = Image.new("RGB", (columns * (size + pad) + pad, rows * (size + pad + text_h) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = caption_font()
    for i, (label, px) in enumerate(cells):
        x = pad + (i % columns) * (size + pad)
        y = pad + (i // columns) * (size + pad + text_h)
        sheet.paste(Image.fromarray(_fit(px, size)), (x, y))
        if i < len(shown):
            draw.rectangle([x - 3, y - 3, x + size + 2, y + size + 2], outline=EXAMPLE_OUTLINES[shown[i][2]], width=3)
        for n, line in enumerate(label.split("\n")[:2]):
            draw.text((x, y + size + 1 + 12 * n), _middle(line, 28), fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


#: TrueType fonts with wide Unicode coverage, first found wins (``$RSIR_CAPTION_FONT`` first):
#: Pillow's own default font draws letters beyond ASCII (an item named São Paulo, Zürich) as boxes.
CAPTION_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",  # Debian/Ubuntu fonts-dejavu
    "/usr/share/fonts/dejavu/DejaVuSansCondensed.ttf",  # Fedora, Alpine
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",  # macOS
    "C:/Windows/Fonts/arial.ttf",
)


def caption_font(size: int = 10):
    """The contact sheets' caption font: ``$RSIR_CAPTION_FONT`` or the first of
    :data:`CAPTION_FONTS` that exists, else Pillow's default (ASCII only)."""
    from PIL import ImageFont

    for path in (os.environ.get("RSIR_CAPTION_FONT"), *CAPTION_FONTS):
        if path and os.path.isfile(path):
            try:
                return ImageFont.truetype(path, size)
            except OSError:  # not a font Pillow reads: try the next
                continue
    return ImageFont.load_default()


def _middle(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters (item ids differ at both ends)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "~" + text[-(width - 1 - head):]


#: The names :func:`write_thumbnails` gives its files: an earlier run's set in a reused folder is removed.
OWN_FILES = re.compile(r"00_query\.png|\d{2,}_[0-9a-f]{8}\.png|contact_sheet\.png")


def clear_thumbnails(out_dir: str | Path) -> int:
    """Remove from ``out_dir`` the files an earlier :func:`write_thumbnails` wrote there (names
    matching :data:`OWN_FILES`, and links under such names: the link is removed, never what it
    points to; every other file stays); returns how many.  InputError when one cannot be removed."""
    from rsir_stac.errors import InputError

    out = Path(out_dir)
    n = 0
    for old in (sorted(out.iterdir()) if out.is_dir() else []):
        if OWN_FILES.fullmatch(old.name) and (old.is_symlink() or old.is_file()):
            try:
                old.unlink()
            except OSError as exc:
                raise InputError(f"cannot remove {old} of an earlier run ({exc.strerror}); "
                                 "choose another --thumbnails folder or empty this one") from None
            n += 1
    if n:
        log.info("removed %d thumbnails of an earlier run from %s", n, out)
    return n


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """Write ``pixels`` as the PNG ``path``: to a new temporary file in its folder (created with
    ``O_EXCL``), then renamed onto ``path``.  Whatever is at ``path`` -- a file, or a link another
    user planted in a shared folder -- is replaced, never written through; a failed write leaves
    nothing.  The file gets the usual mode (0666 less the umask)."""
    import tempfile

    from PIL import Image

    from rsir_stac.store.folder import FILE_MODE

    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # the umask read once: setting it per call is process-wide
            Image.fromarray(pixels).save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_thumbnails(result, out_dir: str | Path, *, size: int = 160) -> list[Path]:
    """Write each hit as ``NN_<id>.png`` plus ``contact_sheet.png`` (and the query tile as
    ``00_query.png``); returns the paths.  The files of an earlier run in the same folder are
    removed first (:func:`clear_thumbnails`), so the folder holds this result's set alone; each
    file is written whole and renamed into place (:func:`save_png`: a link planted under one of
    these names is replaced, not followed).  A folder that cannot be made or written (``/proc``,
    a read-only mount) is an InputError naming it, the cause and the fix; a full disk the
    error of :func:`rsir_stac.atomic.output_error`."""
    from rsir_stac.atomic import output_error
    from rsir_stac.errors import InputError

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        clear_thumbnails(out)
        return _write_set(result, out, size)
    except OSError as exc:
        names = [Path(f) for f in (exc.filename2, exc.filename) if isinstance(f, str)]
        if names and not any(p == out or out in p.parents or p in out.parents for p in names):
            raise  # not the output folder's fault (a source raster): the caller's handler names it
        target = names[0] if names else out
        err = output_error(exc, target)
        if err is not None:
            raise err from None
        raise InputError(f"cannot write the thumbnails in {out} ({exc.strerror or exc}"
                         + (f": {target}" if target != out else "") + "); choose a writable folder for "
                         "--thumbnails") from None


def caption(rank: int, hit, score_name: str = "distance") -> str:
    """A hit's two caption lines on the contact sheet: ``#rank d=0.412 date`` and its item.  ``d=`` a
    distance (smaller is closer); ``s=`` a score (the ``best_score``, ``sum_scores``, ``discover`` and
    ``context`` strategies: larger is better), as the table's column names it."""
    mark = "d" if score_name == "distance" else "s"
    when = str(hit.payload.get("datetime") or "")[:10]  # the date tells a time series' hits apart
    item = re.sub(r"-[0-9a-f]{12}$", "", str(hit.payload.get("item_id", "")))  # a bare raster's path hash
    item = printable(item)  # a catalogue's control characters: drawn escaped (raqm fails on some)
    return f"#{rank} {mark}={hit.score:.3f} {when}".rstrip() + f"\n{item}"


def _write_set(result, out: Path, size: int) -> list[Path]:
    from rsir_stac.errors import RsirError

    written, tiles, labels = [], [], []
    query = result.query_pixels
    ask_query = query is None and result.query_payload is not None
    others = list(getattr(result, "examples", ()))[1:]  # the first is the query itself
    stored = [r.payload for r in others if r.pixels is None and r.payload is not None]
    read = read_tiles(([result.query_payload] if ask_query else []) + stored + [hit.payload for hit in result.hits])
    if ask_query:
        query = read.pop(0)
        if isinstance(query, RsirError):
            log.warning("query tile not rendered: %s", query)
            query = None
    examples = _example_cells(others, read[:len(stored)], size)
    del read[:len(stored)]
    if query is not None:
        written.append(save_png(query, out / "00_query.png"))
    failed: dict[str, list[str]] = {}  # a scene that cannot be read: said once, its hits named
    for rank, (hit, px) in enumerate(zip(result.hits, read), 1):
        if isinstance(px, RsirError):
            failed.setdefault(str(px), []).append(hit.id)
            px = np.full((size, size, 3), 200, np.uint8)
        written.append(save_png(px, out / f"{rank:02d}_{hit.id[:8]}.png"))
        tiles.append(px)
        labels.append(caption(rank, hit, getattr(result, "score_name", "distance")))
    for err, ids in failed.items():
        log.warning("%s not rendered: %s", f"hit {ids[0]}" if len(ids) == 1 else
                    f"{len(ids)} hits ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})", err)
    qp = result.query_payload or {}
    qlabel = f"query {str(qp.get('datetime') or '')[:10]}".rstrip()
    if examples:
        qlabel += "\npositive 1"
    written.append(save_png(contact_sheet(query, tiles, labels, size=size, query_label=qlabel, examples=examples),
                            out / "contact_sheet.png"))
    return written


def _example_cells(others: Sequence[Any], read: list[Any], size: int) -> list[tuple[str, np.ndarray, bool]]:
    """The contact-sheet cells of a search's examples after the first: caption (``positive 2``,
    ``negative 1``), pixels (an image's own, else the stored tile as ``read`` gives it: grey when it
    could not be read) and whether positive."""
    from rsir_stac.errors import RsirError

    cells, tiles, counts = [], iter(read), {True: 1, False: 0}
    for r in others:
        px = r.pixels if r.pixels is not None else next(tiles) if r.payload is not None else None
        if px is None or isinstance(px, RsirError):
            px = np.full((size, size, 3), 200, np.uint8)
        counts[r.positive] += 1
        cells.append((f"{'positive' if r.positive else 'negative'} {counts[r.positive]}", px, r.positive))
    return cells
