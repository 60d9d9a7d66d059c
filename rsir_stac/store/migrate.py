"""Copy every point (id, vector, payload) of one store into another.

Used to move an embedded index to a Qdrant server or cluster when a user
outgrows one machine.  Ids are kept, so re-running a migration is idempotent
and the copy can be resumed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from rsir_stac.errors import IncompatibleIndexError, StoreError

log = logging.getLogger(__name__)


def migrate(src, dst, *, batch_size: int = 1000, progress: Callable[[int], None] | None = None) -> int:
    """Copy all points of ``src`` into ``dst``; returns the number copied.

    The destination collection is created with the source's vector size and
    model id (or checked against them, refusing an incompatible one).
    """
    meta = src.meta()
    if meta is None:
        raise StoreError(f"{src.describe()} holds no collection; nothing to migrate (check --index)")
    refuse_damaged(src, "migrating")
    dst_meta = dst.meta()
    adopted = getattr(dst, "foreign", None) is not None  # another tool's: ensure_collection takes it only if empty
    if dst_meta is not None and not adopted and (dst_meta.model_id != meta.model_id or dst_meta.dim != meta.dim):
        from rsir_stac.model.bundle import shipped_name

        bundle = shipped_name(dst_meta.model_id) or "BUNDLE"
        raise IncompatibleIndexError(
            f"{dst.describe()} already holds {dst_meta.dim}-d vectors of model {dst_meta.model_id}, and "
            f"{src.describe()} holds model {meta.model_id}; migrate into another --qdrant-url (an empty server or "
            "folder), or first move the index to that model with `rsir-stac reindex --index "
            f"{src.location} --to NEW --model {bundle}` and migrate NEW")
    created = dst_meta is None
    if meta.unfinished:  # a copy of part of its source: the target is no more whole than it
        from rsir_stac.store.base import unfinished_note

        log.warning("%s; the copy stays marked unfinished until that one is finished and migrate is run again",
                    unfinished_note(src, meta))
    dst.ensure_collection(meta.dim, meta.model_id)
    if created or adopted:  # readers warn until the copy is whole (a killed run leaves part of the source)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        dst.mark_unfinished(f"a migrate of {src.describe()}, started {since}")
    try:
        copied = _copy(src, dst, batch_size, progress)
    except Exception:
        # a collection this run created holds only part of the source (or nothing): remove it, so a
        # failed migrate leaves the target as it found it.  One that existed keeps what it had, and
        # Ctrl-C keeps what was copied: the same command resumes
        drop = getattr(dst, "drop_collection", None)
        if created and drop is not None:
            log.warning("migrate failed; removing %s, which it created", dst.describe())
            drop()
        raise
    n_src, n_dst = src.count(), dst.count()  # after the copy: an index read as it was copied
    if n_dst < n_src:
        raise StoreError(f"{dst.describe()} has {n_dst} points after copying {n_src}; re-run migrate to resume")
    meta_now = dst.meta()
    if meta.unfinished and created:
        dst.mark_unfinished(f"a migrate of {src.describe()}, itself unfinished ({meta.unfinished})")
    elif meta_now is not None and meta_now.unfinished and not meta.unfinished:
        dst.mark_unfinished("")
    log.info("migrated %d points from %s to %s", copied, src.describe(), dst.describe())
    return copied


def refuse_damaged(store, action: str) -> None:
    """StoreError when opening ``store`` found it damaged (:attr:`Store.damage_at_open`): ``action``
    (migrating, exporting) would copy only the part that still reads, and exit as if it were whole."""
    what = getattr(store, "damage_at_open", None)
    if what:
        raise StoreError(f"{store.describe()} is damaged ({what}); {action} it would copy only what still reads: "
                         f"run `rsir-stac check --index {store.location} --repair`, re-run the ingest that built "
                         "it, then run this command again")


def local_folder(url: str) -> str | None:
    """The folder a ``--qdrant-url`` names for qdrant-client's local mode, else None (a server,
    ``:memory:``, or a URL refused later)."""
    from rsir_stac.errors import InputError
    from rsir_stac.store.server import _local_or_server

    try:
        target = _local_or_server(str(url))
    except InputError:
        return None
    return None if target.startswith(("http://", "https://")) or target == ":memory:" else target


def remove_created_folder(folder: str) -> None:
    """Remove a qdrant-client local folder a failed migrate created, once it holds no collection
    (``migrate`` dropped the one it made): its ``.lock``, ``meta.json`` and empty ``collection/``."""
    import shutil
    from pathlib import Path

    path = Path(folder)
    if not path.is_dir() or path.is_symlink():
        return
    cols = path / "collection"
    if cols.is_dir() and any(cols.iterdir()):
        return  # a collection is still there (Ctrl-C keeps what was copied): keep it
    if {p.name for p in path.iterdir()} - {".lock", "meta.json", "collection"}:
        return  # something that is not qdrant-client's: not ours to remove
    shutil.rmtree(path, ignore_errors=True)
    log.info("migrate failed; removed %s, which it created", path)


def _copy(src, dst, batch_size: int, progress: Callable[[int], None] | None) -> int:
    batch, copied = [], 0
    for point in src.iter_points(batch=batch_size, with_vectors=True):
        batch.append(point)
        if len(batch) >= batch_size:
            dst.upsert(batch)
            copied += len(batch)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        dst.upsert(batch)
        copied += len(batch)
        if progress:
            progress(len(batch))
    dst.flush()
    return copied
