"""How ``rsir-stac search`` prints its hits and notes: the table (catalogue text escaped for the
terminal), JSON and GeoJSON, and what the default per-scene cap did to a page."""

from __future__ import annotations

import re

import click

from rsir_stac.cli_analysis import _per_item
from rsir_stac.cli_common import echo_json as _echo_json, echo_text
from rsir_stac.search_notes import cap_note, command_line_note, reordered
from rsir_stac.terminal import printable


def _left_out(result, plain) -> tuple[int, int]:
    """``(n, k)``: n of ``plain`` (the same search's k top hits without the per-scene cap) are not
    among the hits of ``result``."""
    shown = {h.id for h in result.hits}
    return sum(1 for h in plain if h.id not in shown), len(plain)


def _served_notes(result, doc: dict | None, per_item) -> list[str]:
    """The notes of a search a running serve answered, and what its per-scene cap did to the order."""
    notes = [n for n in (doc or {}).get("notes") or [] if isinstance(n, str)]
    note = cap_note(result.score_name)
    if (_per_item(per_item) == "auto" and reordered(result.hits, result.score_name) and note not in notes
            and not any(n.startswith("--mmr") for n in notes)):  # a service older than the note
        notes.append(note)
    return [command_line_note(n) for n in notes]


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle, so that ids differing at the end stay apart;
    a bare raster's item id (``name-<12 hex digits>``) keeps the end of its name (the date a file name
    usually ends with) and the first 6 digits of its path hash."""
    if len(text) <= width:
        return text
    m = re.fullmatch(r"(.+)-([0-9a-f]{12})", text)
    if m and width >= 16:
        return _fit(m.group(1), width - 7) + "-" + m.group(2)[:6]
    head = (width - 1) // 2
    return text[:head] + "…" + text[-(width - 1 - head):]


def _print_search(result, fmt: str, offset: int, notes: list, doc: dict | None = None, k: int | None = None) -> None:
    """Print search hits as a table, JSON or GeoJSON (``doc``: the service's GeoJSON, when it searched).
    JSON carries ``offset`` and ``next_offset`` (the ``--offset`` of the next page; null on the last),
    as the API's ``POST /api/query`` does."""
    from rsir_stac.search import hit_record, to_geojson
    from rsir_stac.store.query import MAX_K

    if fmt == "json":
        full = k is not None and len(result.hits) == k and offset + k < MAX_K
        _echo_json({"query": {"kind": result.query_kind, "id": result.query_id, "strategy": result.strategy,
                              "positives": [e.name for e in result.examples if e.positive],
                              "negatives": [e.name for e in result.examples if not e.positive],
                              **({"expanded": list(result.expanded)} if result.expanded else {})},
                    "offset": offset, "next_offset": offset + k if full else None,
                    "hits": [hit_record(h, result.score_name) for h in result.hits],
                    **({"notes": list(notes)} if notes else {})})
    elif fmt == "geojson":
        gj = doc if doc is not None else to_geojson(result)
        _echo_json({**gj, "notes": list(notes)} if notes else gj)   # a foreign member (RFC 7946 6.1)
    else:  # the table: catalogue text (item ids, dates) is printed with its control characters escaped
        first = result.query_id or next((e.source for e in result.examples[:1] if e.positive), None)
        if first:  # a stored tile's id, or the image file as it was given
            qp = (result.query_payload or {}) if result.query_id else {}
            when = qp.get("datetime")  # an acquisition interval as RFC 3339 START/END
            when = f"{when}/{qp['end_datetime']}" if when and qp.get("end_datetime") not in (None, when) else when
            about = ", ".join(str(v) for v in (qp.get("item_id"), when) if v)
            echo_text(f"query: {result.query_kind} {first}" + (f" ({about})" if about else "")
                      + (f" + {len(result.examples) - 1} more example{'s' if len(result.examples) > 2 else ''}"
                         if len(result.examples) > 1 else "")
                      + (f", expanded with {len(result.expanded)} nearest tiles" if result.expanded else ""))
        click.echo(f"{'#':>3} {result.score_name:>9}  {'id':36}  {'item':28} {'lon':>10} {'lat':>9}  datetime")
        for rank, h in enumerate(result.hits, offset + 1):
            loc = h.payload.get("location") or {}
            item = _fit(printable(h.payload.get("item_id")), 28)
            echo_text(f"{rank:>3} {h.score:9.4f}  {h.id:36}  {item:28} "
                      f"{loc.get('lon', float('nan')):10.5f} {loc.get('lat', float('nan')):9.5f}  "
                      f"{h.payload.get('datetime') or ''}")
        if not result.hits:
            click.echo(f"no results at --offset {offset} (fewer tiles match)" if offset else
                       "no results (the notes below say why)" if notes else "no results (loosen the filters?)")
    for note in notes:
        echo_text(f"note: {note}", err=True)


__all__ = ["_fit", "_left_out", "_print_search", "_served_notes"]
