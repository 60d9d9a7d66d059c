"""The two indexes of a reindex: the old one opened read-only, the new one opened or created
on the first write, and what would mix models or overwrite the old index refused before
anything is read or written."""

from __future__ import annotations

import logging
import os

from rsir_stac.errors import IncompatibleIndexError, InputError, StoreError

log = logging.getLogger(__name__)


def _nested(a: str, b: str) -> bool:
    """Whether folders ``a`` and ``b`` are the same, or one holds the other (symlinks resolved)."""
    ra, rb = (os.path.realpath(os.path.expanduser(x)) for x in (a, b))
    return os.path.commonpath([ra, rb]) in (ra, rb)


def _open_stores(index, to, qdrant_url, api_key, collection):
    """``(source, target, opener)``: the old index read-only, and the new one
    (``None`` plus an ``opener`` when its folder does not exist yet)."""
    from rsir_stac.store import open_store

    if not to:
        raise InputError("no target given; pass --to NEW (a new index folder, or a collection name with --qdrant-url)")
    if qdrant_url:
        if index is not None:
            raise InputError(f"both --index {index} and --qdrant-url {qdrant_url} were given; pass only one of them")
        if to == collection:
            raise InputError(f"--to {to} is the collection being read on {qdrant_url}; "
                             "pass another collection name as --to")
        from rsir_stac.store import check_collection_name

        check_collection_name(to, "--to (with --qdrant-url, the new collection's name)")
        src = open_store(qdrant_url=qdrant_url, api_key=api_key, collection=collection, read_only=True)
        try:
            return src, src.sibling(to), None  # one client: qdrant-client's local mode locks its folder
        except BaseException:
            src.close()
            raise
    if index is None:
        from rsir_stac.store import DEFAULT_INDEX

        index = DEFAULT_INDEX
    if _nested(str(index), str(to)):
        raise InputError(f"--to {to} is the index being read (--index {index}) or a folder inside or around it; "
                         "pass a new folder beside it as --to")
    src = open_store(str(index), collection=collection, read_only=True)
    try:
        dst, opener = _open_or_defer(str(to), collection)
        return src, dst, opener
    except BaseException:
        src.close()
        raise


def _open_or_defer(to: str, collection: str):
    """``(store, None)``, or ``(None, opener)`` when folder ``to`` does not exist
    yet: it is then created on the first write, not before."""
    from rsir_stac.store import open_store

    path = os.path.abspath(os.path.expanduser(to))
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise InputError(f"--to {to} is a file, not an index folder; pass a new folder as --to")
        foreign = [n for n in os.listdir(path) if not n.startswith(".") and n.split(".")[0] != collection]
        if foreign and not os.path.isdir(os.path.join(path, collection)):
            raise InputError(f"--to {to} is a folder of other files, not an index; pass a new or empty folder "
                             "as --to (or an index made by an earlier reindex, to resume it)")
        return open_store(path, collection=collection), None
    from rsir_stac.store.folder import require_creatable

    require_creatable(path, "--to")
    return None, lambda: open_store(path, collection=collection)


def _check(src, dst, bundle, to, relocating: bool = False) -> None:
    """Refuse what would mix models, before anything is read or written.  The same model is
    refused unless ``relocating`` (``--relocate``: the new index points at where the sources are now)."""
    meta = src.meta()
    if meta is None:
        raise StoreError(f"{src.describe()} holds no points; nothing to reindex (check --index)")
    if getattr(src, "foreign", None):  # its points have no href and grid to re-read the tiles from
        raise IncompatibleIndexError(
            f"{src.describe()} was not made by rsir-stac (no rsir-stac metadata; it holds {src.foreign}), so its "
            "tiles cannot be re-read; pass --collection with a collection rsir-stac ingest or migrate wrote")
    if meta.model_id == bundle.model_id and meta.dim == bundle.dim and not relocating:
        raise InputError(f"{src.describe()} already holds vectors of model {bundle.model_id}; "
                         "pass --model with the new model bundle (or --relocate OLD=NEW to point a copy of the "
                         "index at sources that moved)")
    have = dst.meta() if dst is not None else None
    if have is not None and (have.model_id != bundle.model_id or have.dim != bundle.dim):
        raise IncompatibleIndexError(
            f"target {dst.describe()} already holds {have.dim}-d vectors of model {have.model_id or '(unknown)'}, "
            f"not {bundle.dim}-d vectors of {bundle.model_id}; pass another --to (a new one) or delete {to} first"
        )


def page_tilings(page: list) -> set[tuple[int, float | None]]:
    """The distinct ``(tile size in px, GSD in m or None)`` the points of ``page`` were cut at."""
    out = set()
    for p in page:
        t = p.payload.get("tiling") or {}
        if t.get("tile_size") is not None:
            out.add((int(t["tile_size"]), float(t["gsd"]) if t.get("gsd") is not None else None))
    return out


def _tiling_note(bundle, tilings: set[tuple[int, float | None]]) -> str:
    """A note when the index was cut otherwise than the new model would cut it; "" when it was not.

    ``tilings``: every ``(tile size, GSD)`` of the index (:func:`page_tilings`).  Ingest tiles a scene
    at the model's tile size and GSD unless the scene makes it choose (a coarse scene at its own GSD, one
    smaller than a tile at the GSD where it is one tile across: :mod:`rsir_stac.gsd`), and the new model
    would choose those the same.  So the index kept the new model's tiling when some of its tiles are
    at the new model's size and GSD and every tile is at its size (helper trial: the note came for every
    index holding a small raster, whose re-ingest with the new model gave the same ids); it does not when
    none is (the old model tiled at another GSD) or a tile size differs.
    """
    def same_gsd(g):
        return g is not None and bundle.gsd is not None and abs(g - float(bundle.gsd)) <= 1e-9

    sizes = {size for size, _ in tilings}
    if not tilings or (sizes == {bundle.tile_size} and any(same_gsd(g) for _, g in tilings)):
        return ""
    other = {(size, g) for size, g in tilings if size != bundle.tile_size or not same_gsd(g)}
    px = "/".join(str(v) for v in sorted({size for size, _ in other}))
    gsds = {g for _, g in other if g is not None}
    at = (f"{min(gsds):g} m" if len(gsds) == 1 else f"{min(gsds):g}–{max(gsds):g} m, each scene as it was ingested"
          if gsds else "native GSD")
    note = (f"the index keeps its tiling ({px} px at {at}) while {bundle.model_id} expects {bundle.tile_size} px "
            f"at {bundle.gsd} m; to tile it for the new model, ingest the catalogue with it into a new --index (into "
            "this one it would add a second, overlapping set of tiles; scenes more than twice as coarse are tiled at "
            "their own GSD either way)")
    log.info("%s", note)  # the report carries it; the CLI prints it once
    return note
