"""File-level damage of an Edge shard, and :class:`Finding`, the record that names damage.

The first pass of :func:`~rsir_stac.store.integrity.check_index`, and what a
writable open inspects before the engine loads anything: ``stat`` and small
JSON files only (segment descriptors, vector chunk and payload page sizes, id
trackers), safe before the engine maps a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One damaged thing: ``kind`` (file, unreadable, vector, payload, lost, engine),
    a one-line ``message`` naming it, and up to a few affected point ids."""

    kind: str
    message: str
    ids: tuple[str, ...] = ()


def inspect_files(shard_dir: Path) -> list[Finding]:
    """File-level damage of an Edge shard, from ``stat`` and small JSON files only
    (safe before the engine maps anything).  Empty when nothing is wrong.

    A missing id tracker is reported with kind ``tracker``: it is also the state
    of a segment whose process was killed before its first flush (the WAL then
    restores every point), so it is damage only when points are lost."""
    out: list[Finding] = []
    rel = lambda p: os.path.relpath(p, shard_dir.parent)  # noqa: E731
    seg_root = shard_dir / "segments"
    if not (shard_dir / "edge_config.json").is_file():
        out.append(Finding("file", f"{rel(shard_dir / 'edge_config.json')} is missing"))
    if not seg_root.is_dir():
        out.append(Finding("file", f"{rel(seg_root)}/ is missing"))
        return out
    for seg in sorted(p for p in seg_root.iterdir() if p.is_dir()):
        try:
            desc = json.loads((seg / "segment.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            out.append(Finding("file", f"{rel(seg / 'segment.json')} is missing or unreadable ({exc.__class__.__name__})"))
            continue
        vector_data = (desc.get("config") or {}).get("vector_data") or {}
        appendable = any((v or {}).get("storage_type") == "InRamChunkedMmap" for v in vector_data.values())
        # an appendable segment that never held a point has neither id tracker nor vector chunks
        written = any(seg.glob("mutable_id_tracker.*")) or any(seg.glob("vector_storage/*/chunk_*.mmap"))
        if not written:
            continue
        if appendable:
            for name in ("mutable_id_tracker.mappings", "mutable_id_tracker.versions"):
                if not (seg / name).is_file():  # also normal before the first flush: only evidence
                    out.append(Finding("tracker", f"{rel(seg / name)} (the id tracker) is missing"))
        vs = seg / "vector_storage"
        for cfg_path in sorted(vs.glob("*/config.json")) if vs.is_dir() else []:
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                out.append(Finding("file", f"{rel(cfg_path)} is unreadable"))
                continue
            size = cfg.get("chunk_size_bytes") if isinstance(cfg, dict) else None
            if not isinstance(size, int):
                continue
            chunks = sorted(cfg_path.parent.glob("chunk_*.mmap"))
            if not chunks:
                out.append(Finding("file", f"{rel(cfg_path.parent / 'chunk_0.mmap')} (vector data) is missing"))
            for ch in chunks:
                have = ch.stat().st_size
                if have != size:
                    out.append(Finding("file", f"{rel(ch)} (vector data) is {have} bytes, not {size}: truncated"))
        out.extend(_page_findings(seg, rel))
    return out


#: The segment format version qdrant-edge 0.9 writes in each segment's ``version.info`` (the
#: engine's marker that a segment was finished), written back by ``check --repair`` when no other
#: segment of the shard holds one to copy.
SEGMENT_VERSION = "0.6.0"


def versionless_segments(shard_dir: Path) -> list[Path]:
    """Segments of an Edge shard that hold points (a descriptor and an id tracker, vector chunks or
    a vector index) but no valid ``version.info`` (missing, empty or garbled).  The engine takes such a folder for one a crash left
    unfinished and deletes it when it loads the shard, points and all (a backup or sync tool
    that skipped the 5-byte file made a read-only ``info`` delete 197 of 209 points), so it must
    not load the shard before the file is back (:func:`restore_segment_versions`)."""
    seg_root = shard_dir / "segments"
    if not seg_root.is_dir():
        return []
    out = []
    for seg in sorted(p for p in seg_root.iterdir() if p.is_dir()):
        if seg.name.endswith(".deleted") or _valid_version(seg / "version.info") or not (seg / "segment.json").is_file():
            continue  # "*.deleted": a folder the engine itself was removing (its points are in another segment)
        # points: an id tracker (appendable "mutable_id_tracker.*" or optimised "id_tracker.*"), vector
        # chunks or a vector index; an appendable segment that never held a point has none of them
        if any(seg.glob("*id_tracker.*")) or any(seg.glob("vector_storage/*/chunk_*.mmap")) \
                or (seg / "vector_index").exists():
            out.append(seg)
    return out


def _valid_version(path: Path) -> bool:
    """Whether ``path`` (a segment's ``version.info``) holds a version such as ``0.6.0``: an empty or
    garbled file makes the engine refuse the whole shard, which is no better than a lost one."""
    try:
        text = path.read_text(encoding="ascii")
    except PermissionError:
        return True  # this user's access, not damage: the load's own error says so
    except (OSError, UnicodeDecodeError):
        return False
    # exactly the version, as the engine writes it: a trailing newline (`echo 0.6.0 >`) is refused by it
    return 0 < len(text) < 32 and all(c.isdigit() or c == "." for c in text) and text[0].isdigit()


def restore_segment_versions(segments: list[Path]) -> str:
    """Write ``version.info`` back into ``segments`` (:func:`versionless_segments`): the version
    another segment of the shard holds, else :data:`SEGMENT_VERSION`.  Returns the version written."""
    import tempfile

    version = SEGMENT_VERSION
    for other in sorted(segments[0].parent.glob("*/version.info")) if segments else []:
        if _valid_version(other):
            try:
                version = other.read_text(encoding="ascii")
            except OSError:
                continue
            break
    for seg in segments:
        target = seg / "version.info"
        if target.is_dir() and not target.is_symlink():  # a folder in its place: kept aside, never deleted
            os.replace(target, seg / f"version.info.damaged-{os.getpid()}")
        fd, tmp = tempfile.mkstemp(dir=seg, prefix=".version.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(version)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    return version


def _page_findings(seg: Path, rel: Any) -> list[Finding]:
    """Payload pages (``payload_storage/page_*.dat``) and payload-index pages of one
    segment that are missing or not the ``page_size_bytes`` their ``config.json``
    promises (a truncated page file)."""
    out: list[Finding] = []
    cfgs = [seg / "payload_storage" / "config.json"] + sorted(seg.glob("payload_index/*/config.json"))
    for cfg_path in cfgs:
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if cfg_path.parent.name == "payload_storage" and cfg_path.parent.is_dir():
                out.append(Finding("file", f"{rel(cfg_path)} (payload storage) is missing"))
            continue
        except (OSError, ValueError):
            out.append(Finding("file", f"{rel(cfg_path)} is unreadable"))
            continue
        size = cfg.get("page_size_bytes") if isinstance(cfg, dict) else None
        if not isinstance(size, int):
            continue
        what = "payload data" if cfg_path.parent.name == "payload_storage" else "payload index data"
        pages = sorted(cfg_path.parent.glob("page_*.dat"))
        if not pages and what == "payload data":
            out.append(Finding("file", f"{rel(cfg_path.parent / 'page_0.dat')} ({what}) is missing"))
        for pg in pages:
            have = pg.stat().st_size
            if have != size:
                out.append(Finding("file", f"{rel(pg)} ({what}) is {have} bytes, not {size}: truncated"))
    return out


__all__ = ["Finding", "SEGMENT_VERSION", "inspect_files", "restore_segment_versions", "versionless_segments"]
