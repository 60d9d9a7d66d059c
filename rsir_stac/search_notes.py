"""The notes a search returns beside its hits: what its strategy could not rank, what its
filters leave out (undated or uncollected tiles, an unknown collection), which filter left
nothing, a bbox read across the antimeridian, a place's example the filters leave out, the
order MMR or the per-scene cap gave the hits, and an empty page that the examples or the
exclusion around them left empty.  Each is one line for people; :meth:`rsir_stac.search.Index.search` and the CLI and API add them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rsir_stac.store import SearchFilter, SearchHit


def ranking_notes(strategy: str, hits: Sequence[SearchHit], positives: int, negatives: int,
                  mmr: float | None = None) -> list[str]:
    """A line when the ``context`` strategy gave every returned hit the same score: it
    could not rank them, and their order (by point id) says nothing; and a line when negative
    examples went into the ``average`` strategy, which searches from 2·mean(positives) −
    mean(negatives), a point beyond the positives: ``best_score`` ranked better with negatives
    in every setting measured (``benchmarks/strategy_quality.py``, RESULTS §10); with ``mmr``, which
    needs one query vector, the line says to leave MMR out for it."""
    from rsir_stac.store.query import STRATEGIES

    if strategy == "average" and negatives and hits:
        how = ("; MMR (--mmr) re-ranks one query vector, which best_score does not give: leave --mmr out to use it"
               if mmr is not None else "")
        return ["with negative examples the average strategy searches from a point beyond the positives "
                "(2 x their mean - the negatives' mean); --strategy best_score (API: strategy) ranked better with "
                f"negatives in every setting measured{how}"]
    if strategy != "context" or len(hits) < 2 or len({h.score for h in hits}) > 1:
        return []
    others = [s for s in STRATEGIES if s != "context"]
    why = (f" (each is nearer the positive than the negative of all {positives * negatives} positive/negative "
           "pairs)" if hits[0].score == 0 else "")
    return [f"the context strategy could not rank these {len(hits)} hits: all score {hits[0].score:g}{why}, so "
            "their order says nothing of likeness, and which of the tied tiles the engine returns is its own "
            "choice (pages of them may repeat or skip tiles); add negative examples (more pairs), or use another "
            f"strategy: {', '.join(others[:-1])} or {others[-1]}"]


def excluded_notes(store, flt: SearchFilter | None,
                   names: tuple[str, str] = ("--datetime", "--collection")) -> list[str]:
    """Lines saying how many stored tiles in the searched place a date or collection filter leaves
    out because they have no date / no collection (bare rasters ingested without ``--datetime`` /
    ``--collection``), each counting only those the other filter lets through, and, with both, one
    line for the tiles that have neither; empty when none are.  ``names``: how the date and the
    collection filter are called where the note is shown."""
    from dataclasses import replace

    notes = []
    dated = flt is not None and (flt.start is not None or flt.end is not None)
    if dated:
        # not the undated tiles of another collection than the filter's, which it leaves out anyway: counting
        # them sent users looking for tiles no date would bring back
        n = store.count(replace(flt, start=None, end=None, missing=("datetime",)))
        if n:
            notes.append(f"{n} tiles in the searched area have no date, so {names[0]} leaves them out; "
                         "give bare rasters a date with `rsir-stac ingest --datetime`")
    if flt is not None and flt.collections:
        n = store.count(replace(flt, collections=(), missing=("collection",)))  # those the date filter lets through
        if n:
            notes.append(f"{n} tiles in the searched area have no collection, so {names[1]} leaves them out; "
                         "give bare rasters one with `rsir-stac ingest --collection NAME`")
        both = store.count(replace(flt, start=None, end=None, collections=(), missing=("datetime", "collection"))) \
            if dated else 0
        if both:
            notes.append(f"{both} tiles in the searched area have neither a date nor a collection, so {names[0]} "
                         f"and {names[1]} leave them out; give bare rasters both with `rsir-stac ingest "
                         "--datetime ... --collection NAME`")
        unknown = unknown_collection_note(store, flt)
        if unknown:
            notes.append(unknown)
    return notes


def empty_filter_notes(store, flt: SearchFilter | None, names: dict[str, str] | None = None) -> list[str]:
    """Why a search with ``flt`` found nothing: the filters that alone match no stored tile (each
    counted through the indexes), or, when each matches some, that none matches them all together.
    Empty when ``flt`` is empty or matches tiles (the examples themselves may be what was left out).
    ``names``: how each filter is called where the note is shown (default: the CLI's options)."""
    if flt is None or flt.is_empty or store.count(flt):
        return []
    say = {"bbox": "--bbox", "near": "--near", "polygon": "--within", "datetime": "--datetime",
           "collections": "--collection", **(names or {})}
    alone = {"bbox": SearchFilter(bbox=flt.bbox), "near": SearchFilter(near=flt.near),
             "polygon": SearchFilter(polygon=flt.polygon), "datetime": SearchFilter(start=flt.start, end=flt.end),
             "collections": SearchFilter(collections=flt.collections)}
    parts = [(key, part) for key, part in alone.items() if not part.is_empty]  # each filter given, by itself
    dead = [key for key, part in parts if not store.count(part)]
    if key_lines := [_empty_part(key, flt, say[key]) for key in dead if key != "collections"]:
        return key_lines  # a misspelt collection has its own note (unknown_collection_note)
    if dead:
        return []
    if len(parts) > 1:
        return [f"each of {', '.join(say[k] for k, _ in parts)} matches tiles of the index, but no tile matches them "
                "all together; loosen one of them"]
    return []


def _empty_part(key: str, flt: SearchFilter, name: str) -> str:
    """The line for one filter that matches no stored tile."""
    if key == "bbox":
        w, s, e, n = flt.bbox
        return f"no tile's centre lies in {name} {w:g},{s:g},{e:g},{n:g}; check the box (W,S,E,N in degrees)"
    if key == "near":
        lon, lat, r = flt.near
        return f"no tile's centre lies within {r:g} m of {lon:g},{lat:g} ({name}); widen the radius or move it"
    if key == "polygon":
        crossing = getattr(flt.polygon, "crossing", None)
        if crossing is not None:   # drawn the long way round, read the short way (RFC 7946)
            a, b = crossing
            return (f"no tile's centre lies in the {name} area; its edge from longitude {a:g} to {b:g} spans more "
                    "than 180 degrees, so it is read as crossing the antimeridian (the short way round, RFC 7946); "
                    f"to go the other way, add a vertex on each edge that long (e.g. at longitude {(a + b) / 2:g})")
        return (f"no tile's centre lies in the {name} area; check that the area is where the tiles are (`rsir-stac "
                "info` gives their extent; a GeoJSON area is read as lon/lat, other formats from their CRS)")
    start = flt.start.isoformat().replace("+00:00", "Z") if flt.start else ".."
    end = flt.end.isoformat().replace("+00:00", "Z") if flt.end else ".."
    return f"no tile is dated within {name} {start}/{end}; widen the dates (undated tiles never match a date filter)"


def _when(dt: Any) -> str:
    """An acquisition time for a sentence: ``2017-08-31 17:24 UTC`` from ``2017-08-31T17:24:57.555491Z``
    (a date alone as it is)."""
    text = str(dt)
    if len(text) >= 16 and text[10] == "T":
        return f"{text[:10]} {text[11:16]}" + (" UTC" if text.endswith(("Z", "+00:00")) else "")
    return text


#: How :func:`outside_note` ends: what the filters leaving the example out means on the map page (the
#: API's wording), and on the command line (:func:`command_line_note`).
OUTSIDE_ON_THE_PAGE = "(so the map page hides its imagery)"
OUTSIDE_ON_THE_COMMAND_LINE = "(the search still starts from it, but it cannot be among the hits)"
#: How :func:`query_size_note` names the other kind of example, on the page and on the command line.
STORED_TILE_ON_THE_PAGE = "or by a stored tile (a result, or the tile at a place)"
STORED_TILE_ON_THE_COMMAND_LINE = "or by a stored tile (--point-id, --at)"


def command_line_note(note: str) -> str:
    """A library or service note worded for the command line: what :func:`outside_note` says of the map
    page, said of the search's hits; the stored-tile examples of :func:`query_size_note` by their options."""
    return note.replace(OUTSIDE_ON_THE_PAGE, OUTSIDE_ON_THE_COMMAND_LINE).replace(
        STORED_TILE_ON_THE_PAGE, STORED_TILE_ON_THE_COMMAND_LINE)


def outside_note(examples: Sequence[Any], flt: SearchFilter | None) -> str | None:
    """A line when an example tile (a stored point, or a place's tile: no tile there has the dates
    or collections, :meth:`Index._tile_at`) is one the dates or collections leave out, so the
    map's imagery, drawn through the same filters, hides it (:data:`OUTSIDE_ON_THE_PAGE`; the command
    line words it with :func:`command_line_note`)."""
    if flt is None or (flt.start is None and flt.end is None and not flt.collections):
        return None
    from rsir_stac.store.filters import matches

    when = SearchFilter(start=flt.start, end=flt.end, collections=flt.collections)
    for r in examples:
        if r.kind == "point" and r.payload is not None and not matches(r.payload, when):
            dt = r.payload.get("datetime")
            return (f"the example tile is {'from ' + _when(dt) if dt else 'without a date'} "
                    f"({r.payload.get('collection') or 'no collection'}), which the filters leave out "
                    f"{OUTSIDE_ON_THE_PAGE}")
        if r.kind == "location" and r.payload is not None and not matches(r.payload, when):
            dt = r.payload.get("datetime")
            return (f"no tile at the place has the searched dates or collections, so the example is the tile there "
                    f"{'from ' + _when(dt) if dt else 'with no date'} "
                    f"({r.payload.get('collection') or 'no collection'}), which the filters leave out "
                    f"{OUTSIDE_ON_THE_PAGE}")
    return None


#: A query image whose shorter side is under ``tile / QUERY_SIDE_RANGE[0]``, whose longer side is
#: over ``tile * QUERY_SIDE_RANGE[1]``, or whose sides differ more than ``QUERY_ASPECT_MAX`` times
#: is far from the tiles it is compared with (the thresholds of ``evaluate``'s size warning).
QUERY_SIDE_RANGE = (8, 4)
QUERY_ASPECT_MAX = 4.0


def query_size_note(examples: Sequence[Any], tile_size: int) -> str | None:
    """A line when an image example (``kind`` "image", with ``pixels`` H×W×3) is far from the size and
    shape of the index's tiles (``tile_size`` pixels a side): it is resized whole to one network input,
    so a 4 px icon is blown up, a whole scene shrunk to a tile's pixels and a strip squashed, and its
    vector says little about tiles of the index.  None when every image is tile-like."""
    odd = []
    for r in examples:
        shape = np.shape(r.pixels)[:2] if r.pixels is not None and np.ndim(r.pixels) >= 2 else r.size
        if r.kind != "image" or not shape:
            continue
        h, w = (int(v) for v in shape)
        how = resized_how(h, w, tile_size)
        if how:
            odd.append((f" {r.name}" if r.name else "", w, h, how))
    if not odd:
        return None
    name, w, h, how = odd[0]
    more = f" (and {len(odd) - 1} more example images)" if len(odd) > 1 else ""
    return image_size_note(name, h, w, tile_size, how, more)


def resized_how(h: int, w: int, tile_size: int) -> str | None:
    """How an image of ``h`` x ``w`` px far from a ``tile_size`` px tile is resized to the network input
    (blown up, squashed, shrunk), or None for a tile-like image (:data:`QUERY_SIDE_RANGE`)."""
    short, long = min(h, w), max(h, w)
    # a strip first: an 8000 x 10 px image is above all squashed (800:1), though blown up too
    return ("squashed" if long > QUERY_ASPECT_MAX * short else
            "blown up" if short * QUERY_SIDE_RANGE[0] < tile_size else
            "shrunk" if long > QUERY_SIDE_RANGE[1] * tile_size else None)


def image_size_note(name: str, h: int, w: int, tile_size: int, how: str | None = None, more: str = "") -> str | None:
    """The line of :func:`query_size_note` for one image of ``h`` x ``w`` px (``name``: `` PATH`` or ``""``),
    or None when it is tile-like."""
    how = how or resized_how(h, w, tile_size)
    if how is None:
        return None
    return (f"the query image{name} is {w} x {h} px and the index's tiles {tile_size} x {tile_size} px: it is "
            f"{how} whole into one network input{more}, so its vector may say little about tiles like these; "
            f"search by a chip of about one tile's size and ground resolution, {STORED_TILE_ON_THE_PAGE}")


def swapped_bbox_note(flt: SearchFilter | None) -> str | None:
    """A line when a bbox's west is east of its east and the box, read as crossing the
    antimeridian (RFC 7946), spans more than half the globe: most likely W and E swapped
    by mistake (a real antimeridian box, e.g. 170,-20,-170,-10, spans 20 degrees)."""
    if flt is None or flt.bbox is None:
        return None
    w, _, e, _ = flt.bbox
    span = 360.0 - (w - e)
    if w <= e or span <= 180.0:
        return None
    return (f"the bbox's west {w:g} is east of its east {e:g}, so it is read as crossing the antimeridian "
            f"and spans {span:.4g} degrees of longitude; if you meant {e:g} to {w:g}, swap west and east")


def unknown_collection_note(store, flt: SearchFilter | None) -> str | None:
    """A line naming the collections the index holds when no stored tile is in any collection
    ``flt`` asks for (a misspelt ``--collection``); None otherwise."""
    from rsir_stac.store.filters import SearchFilter as Filter

    if flt is None or not flt.collections or store.count(Filter(collections=flt.collections)):
        return None
    have = _some_collections(store)
    named = ", ".join(repr(c) for c in flt.collections)
    # "naip,coarse" is one name: a comma list of held names means the option was meant twice ("naip,": once)
    parts = {c: [p.strip() for p in c.split(",") if p.strip()] for c in flt.collections if "," in c}
    listed = [ps for ps in parts.values() if ps and all(p in have for p in ps)]
    repeat = ("; one --collection takes one name: repeat it for each, e.g. "
              + " ".join(f"--collection {p}" for p in listed[0])) if listed else ""
    return (f"no tile of the index is in collection {named}"
            + (f"; it holds {', '.join(repr(c) for c in have)}" if have else "; its tiles have no collection")
            + " (names are exact, case included)" + repeat)


def _some_collections(store, limit: int = 20_000, most: int = 12) -> list[str]:
    """Collection names among the first ``limit`` stored tiles (a cheap look, not `info`'s scan)."""
    seen: dict[str, None] = {}
    for n, (_, payload, _) in enumerate(store._scan(None, fields=["collection"])):
        c = payload.get("collection")
        if isinstance(c, str) and c:
            seen.setdefault(c)
        if n >= limit or len(seen) >= most:
            break
    return sorted(seen)


__all__ = ["command_line_note", "empty_filter_notes", "excluded_notes", "image_size_note", "outside_note",
           "query_size_note", "ranking_notes", "resized_how", "swapped_bbox_note", "unknown_collection_note"]


def cap_note(score_name: str, left: tuple[int, int] = (0, 0), mmr: bool = False) -> str:
    """What the default soft per-scene cap (``per_item="auto"``) did to a page of hits: their order,
    and ``left`` = (n, k): n of the k best-scoring tiles it left off the page (the command line
    counts them with a second search).  Under ``mmr`` (whose own order has its own note,
    :func:`mmr_note`) only what it left off, counted against MMR's own first k."""
    from rsir_stac.search import AUTO_PER_ITEM
    from rsir_stac.store.query import FILL_PENALTY

    if mmr:
        return (f"at most {AUTO_PER_ITEM} hits per scene come first (--per-item auto; API: per_item): {left[0]} of "
                f"the {left[1]} hits MMR ranks first without it are not on this page; pass --per-item 0 (API: "
                "per_item 0) for them")
    how = (f"hits beyond {AUTO_PER_ITEM} of one scene rank as if {round((FILL_PENALTY - 1) * 100)} % farther, so "
           "other scenes' nearly as near tiles come first" if score_name == "distance" else
           f"at most {AUTO_PER_ITEM} hits per scene come first while other scenes have hits")
    near = "nearest" if score_name == "distance" else "best-scoring"
    gone = (f"; {left[0]} of the {left[1]} {near} tiles {'is' if left[0] == 1 else 'are'} not on this page"
            if left[0] else "")
    return (f"{how} (--per-item auto; API: per_item): the order is not by {score_name} alone{gone}; pass "
            "--per-item 0 (API: per_item 0) for that")


def reordered(hits: Sequence[SearchHit], score_name: str) -> bool:
    """Whether ``hits`` are out of ``score_name`` order (a distance rising, a score falling, is in order)."""
    scores = [h.score if score_name == "distance" else -h.score for h in hits]
    return any(a > b for a, b in zip(scores, scores[1:]))


def mmr_note(mmr: float | None, hits: Sequence[SearchHit], score_name: str) -> str | None:
    """A line when maximal marginal relevance (``mmr``) put hits out of ``score_name`` order, else None:
    MMR trades likeness for diversity, so the order is not by distance alone (and no per-scene cap,
    which a note would otherwise be blamed on, undoes it)."""
    if mmr is None or len(hits) < 2:
        return None
    scores = [h.score if score_name == "distance" else -h.score for h in hits]
    if all(a <= b for a, b in zip(scores, scores[1:])):
        return None
    return (f"--mmr {mmr:g} (API: mmr) orders the hits for diversity as well as likeness, so the order is not by "
            f"{score_name} alone; leave it out for the nearest tiles in order")


def left_out_note(store, query, hits: Sequence[SearchHit], offset: int, flt: SearchFilter | None, ids: frozenset,
                  around: tuple, areas: tuple, exclude_within_m: float | None) -> str | None:
    """A line when what a search leaves out left its first page empty: the exclusion ``around``
    / ``areas`` of the examples' footprints (the same query without it finds tiles), or the
    examples themselves (``ids``: every tile that matches is one of them); else None."""
    excluded = (_exclusion_emptied(store, query, flt, ids, exclude_within_m)
                if not hits and offset == 0 and (around or areas) else None)
    if not hits and offset == 0 and ids and excluded is None and 0 < store.count(flt) <= len(ids):
        # (none matching at all is said by the filter's own note, e.g. no tile within --near)
        excluded = (f"every tile that matches is one of the {len(ids)} examples, which a search leaves out; "
                    "--include-query (API: include_query) lists them too")
    return excluded


def _exclusion_emptied(store, query, flt: SearchFilter | None, ids: frozenset,
                      exclude_within_m: float | None) -> str | None:
    """A line when the exclusion around the examples' footprints is what left a search empty:
    the same query without it finds tiles."""
    from rsir_stac.store.exclusion import Exclusion

    if not store.query(query, 1, flt=flt, exclude=Exclusion(ids), with_payload=False):
        return None
    d = (f"{exclude_within_m:.3g}" if exclude_within_m >= 1e9 else f"{round(exclude_within_m):,}"
         if exclude_within_m >= 1 else f"{exclude_within_m:g}")  # 1e30, not 31 digits
    return (f"every tile the search could return lies within {d} m of an example's footprint, "
            "so --exclude-within (API: exclude_within_m) left none; lower the distance or widen the filters")
