"""``rsir-stac classify`` and ``rsir-stac export``: click wrappers over
:func:`rsir_stac.classify.classify` and :mod:`rsir_stac.export` (heavy imports inside), and the
options and helpers ``search`` shares with them."""

from __future__ import annotations

import sys

import click

from rsir_stac.cli_common import echo_json, echo_text, handle_errors, store_options


def _filter_options(fn):
    """--bbox / --near / --within / --datetime / --collection, shared by search, classify and export."""
    for opt in reversed([
        click.option("--bbox", help="Only tiles whose centre is in W,S,E,N (degrees)."),
        click.option("--near", help="Only tiles within LON,LAT,RADIUS_M."),
        click.option("--within", type=click.Path(dir_okay=False), help="Only tiles inside the polygon of an area file (GeoJSON, or GeoPackage / Shapefile, read through GDAL in its own CRS)."),
        click.option("--datetime", "datetime_", help="Only tiles acquired in START/END (RFC 3339; '..' for an open end)."),
        click.option("--collection", multiple=True, help="Only tiles of this STAC collection (repeatable)."),
    ]):
        fn = opt(fn)
    return fn


def _search_filter(bbox, near, within, datetime_, collection):
    from rsir_stac.store.filter_parse import load_polygon, parse_bbox, parse_datetime_range, parse_near
    from rsir_stac.store.filters import SearchFilter

    start, end = parse_datetime_range(datetime_) if datetime_ else (None, None)
    return SearchFilter(bbox=parse_bbox(bbox) if bbox else None, near=parse_near(near) if near else None,
                        polygon=load_polygon(within) if within else None, start=start, end=end,
                        collections=tuple(collection))


def tqdm_bar(total: int, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=None)


def bar_pages(pages, bar):
    for page in pages:
        yield page
        bar.update(len(page))


def _per_item(text):
    from rsir_stac.errors import InputError

    if str(text).lower() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"--per-item {text!r} is invalid; give a whole number of hits per scene, 0 (no cap) or auto")
    return n or None


def _examples(images, point_ids, ats, bands=None, negative: bool = False):
    """The examples of one side of ``search``'s command line, each naming its option (``--not-at``)."""
    from rsir_stac.search import Example, parse_lonlat

    no = "--not-" if negative else "--"
    return ([Example("image", i, bands, origin=f"{no}image") for i in images]
            + [Example("point", p, origin=f"{no}point-id") for p in point_ids]
            + [Example("location", parse_lonlat(a), origin=f"{no}at") for a in ats])


def _classify_line(report, threshold: float, out: str, rows: int, dissolve: bool) -> str:
    """The summary line of ``classify`` (a :class:`~rsir_stac.classify.ClassifyReport`: the tiles it put at
    or above the threshold in the area, whatever --max-hits wrote), with or without a service; a --max-hits
    that cut the hits is said (``written: the 5 most probable + 3 labelled positives``)."""
    above = report.above_threshold
    kept = f" + {report.positives_kept} you labelled positive, kept below it" if report.positives_kept else ""
    cut = f"; written: {report.cut_text()}" if report.cut_text() else ""
    return (f"scored {report.scored} tiles in {report.seconds:.1f} s; {above} at p >= {threshold}{kept}{cut} -> {out} "
            f"({rows} {('area' if dissolve else 'row') + ('' if rows == 1 else 's')}); {report.holdout_text()}")


@click.command("classify")
@click.option("--labels", "labels_path", required=True, type=click.Path(dir_okay=False),
              help="Label file: GeoJSON FeatureCollection of positive/negative tiles.")
@store_options
@click.option("--model", "model", type=click.Path(), envvar="RSIR_MODEL",
              help="Model bundle that built the index (or a shipped name: v7, the default; v1-v6) [env RSIR_MODEL].")
@_filter_options
@click.option("--threshold", default=0.5, show_default=True, help="Keep tiles with a probability at least this.")
@click.option("--holdout", default=0.25, show_default=True,
              help="Fraction of the labels held out for precision/recall (0: none, no precision/recall).")
@click.option("--max-hits", type=int, help="Keep only the N most probable tiles, and your labelled positives beyond them "
                   "(N >= 1; default: all).")
@click.option("--dissolve", is_flag=True, help="Merge touching hit footprints into polygons (written instead of tiles).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .geojson, .csv, .fgb or .parquet (GeoParquet).")
@click.option("--batch-size", default=4096, show_default=True, type=click.IntRange(min=1),
              help="Points scored per scrolled batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def classify_command(labels_path, index, qdrant_url, api_key, model, bbox, near, within, datetime_, collection,
                     threshold, holdout, max_hits, dissolve, out, batch_size, as_json):
    """Find every tile like the positive labels: fit a logistic regression on the labelled tiles' vectors and
    score all tiles in the filtered area."""
    from rsir_stac.atomic import check_distinct_outputs, check_output_path
    from rsir_stac.classify import classify
    from rsir_stac.export import format_for
    from rsir_stac.labels import read_labels
    from rsir_stac.search import Index

    format_for(out)
    check_output_path(out, "--out")  # before the scan, not after it
    check_distinct_outputs([("--out", out)], [("--labels", labels_path), ("--within", within)])
    labels = read_labels(labels_path)
    flt = _search_filter(bbox, near, within, datetime_, collection)
    from rsir_stac.cli_served import service_for

    svc = service_for(index, qdrant_url, "classify")
    if svc is not None:  # a running serve holds the index: its Find all scores the tiles
        from rsir_stac.classify import check_options

        check_options(threshold, holdout, max_hits)  # here: named as typed (--holdout 1), not as the request field
        _served_classify(svc, labels, model, bbox, near, within, datetime_, collection, threshold, holdout,
                         max_hits, dissolve, out, as_json)
        return
    with Index.open(index, qdrant_url=qdrant_url, api_key=api_key, model=model) as idx:
        with tqdm_bar(idx.store.count(flt), "pt") as bar:
            report = classify(idx, labels, flt=flt, threshold=threshold, holdout=holdout, max_hits=max_hits,
                              batch=batch_size, progress=lambda done, total: bar.update(done - bar.n))
        filter_notes = _filter_notes(idx.store, flt, report.scored == 0)
    rows = _hit_rows(report.hits, dissolve)
    _write_rows(rows, out, dissolve)
    notes = report.notes() + filter_notes
    summary = {**report.summary(), "out": out, "rows": len(rows), "notes": notes}
    if as_json:
        echo_json(summary)
        return
    for note in notes:
        echo_text(f"note: {note}", err=True)
    click.echo(_classify_line(report, threshold, out, len(rows), dissolve))


def _served_classify(svc, labels, model, bbox, near, within, datetime_, collection, threshold, holdout,
                     max_hits, dissolve, out, as_json):
    """``classify`` by the ``serve`` that holds the index (its Find all), written and summed up as a local run."""
    from rsir_stac.classify import ClassifyReport
    from rsir_stac.cli_served import served_classify

    rows, doc = served_classify(svc, labels=labels, model=model, bbox=bbox, near=near, within=within,
                                datetime_=datetime_, collection=collection, threshold=threshold,
                                holdout=holdout, max_hits=max_hits, dissolve=dissolve)
    _write_rows(rows, out, dissolve)
    sm, notes = doc.get("summary") or {}, list(doc.get("notes") or [])
    if as_json:
        echo_json({**sm, "out": out, "rows": len(rows), "notes": notes})
        return
    for note in notes:
        echo_text(f"note: {note}", err=True)
    # the service's summary as a report, so the line (and its holdout caveats) is the local one
    report = ClassifyReport(hits=(), scored=int(sm.get("scored") or 0), threshold=threshold,
                            positives=int(sm.get("positives") or 0), negatives=int(sm.get("negatives") or 0),
                            background=int(sm.get("background") or 0), precision=sm.get("precision"),
                            recall=sm.get("recall"), holdout=int(sm.get("holdout") or 0),
                            seconds=float(sm.get("seconds") or 0.0),
                            positives_kept=int(sm.get("positives_kept") or 0), holdout_fraction=holdout,
                            max_hits=sm.get("max_hits"), above=int(sm.get("above_threshold") or 0),
                            positives_past_max_hits=int(sm.get("positives_past_max_hits") or 0))
    click.echo(_classify_line(report, threshold, out, len(rows), dissolve))

@click.command("export")
@store_options
@click.option("--model", "model", type=click.Path(), envvar="RSIR_MODEL",
              help="Model bundle that built the index (or a shipped name: v7, the default; v1-v6) [env RSIR_MODEL].")
@_filter_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .parquet (GeoParquet), .geojson, .csv or .fgb.")
@click.option("--no-vectors", is_flag=True, help="Leave the embeddings out.")
@click.option("--stac", "stac_path", type=click.Path(dir_okay=False),
              help="Also write a STAC Collection (embeddings extension) describing the GeoParquet file here.")
@handle_errors
def export_command(index, qdrant_url, api_key, model, bbox, near, within, datetime_, collection, out, no_vectors,
                   stac_path):
    """Write every tile of the index (footprints, metadata, embeddings) to a file others can open."""
    from rsir_stac.export import export_index, format_for
    from rsir_stac.search import Index

    format_for(out)
    flt = _search_filter(bbox, near, within, datetime_, collection)
    with Index.open(index, qdrant_url=qdrant_url, api_key=api_key, model=model) as idx:
        with tqdm_bar(idx.store.count(flt), "pt") as bar:
            res = export_index(idx, out, flt=flt, with_vectors=not no_vectors, stac_collection=stac_path,
                               progress=bar.update, inputs=[("--within", within)])
        notes = _filter_notes(idx.store, flt, res["rows"] == 0)
    for note in notes:
        echo_text(f"note: {note}", err=True)
    echo_json(res)


def _filter_notes(store, flt, empty: bool) -> list[str]:
    """What the filters did, as search says it: a bbox whose west and east look swapped, a collection the
    index does not hold and, when nothing matched (``empty``), which filter matched no tile (an area read
    across the antimeridian among them)."""
    from rsir_stac.search_notes import empty_filter_notes, swapped_bbox_note, unknown_collection_note

    notes = [n for n in (swapped_bbox_note(flt), unknown_collection_note(store, flt)) if n]
    return notes + [n for n in (empty_filter_notes(store, flt) if empty else []) if n not in notes]


def _hit_rows(hits, dissolve: bool) -> list[dict]:
    """The rows ``classify`` writes: the hits' footprints merged into areas (``dissolve``), or one row a
    tile with the analyst's own label (positive, or empty) as a column of its own."""
    from rsir_stac.dissolve import dissolve as dissolve_hits
    from rsir_stac.export import row_of
    from rsir_stac.store import SearchHit

    if dissolve:
        return dissolve_hits(hits)
    return [row_of(SearchHit(h.id, h.score, {k: v for k, v in h.payload.items() if k != "label"}), rank=n,
                   score_name="probability", extra={"label": h.payload.get("label")})
            for n, h in enumerate(hits, 1)]


def _write_rows(rows: list[dict], out: str, dissolve: bool) -> None:
    """Write ``classify``'s rows to ``out`` (format from its extension; an empty file keeps the columns)."""
    from rsir_stac.dissolve import DISSOLVED_EMPTY_ROW
    from rsir_stac.export import empty_row, write_table

    write_table([rows], out, DISSOLVED_EMPTY_ROW if dissolve else empty_row("probability", {"label": None}))


__all__ = ["classify_command", "export_command"]
