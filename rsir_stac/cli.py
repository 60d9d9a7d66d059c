"""The ``rsir-stac`` command line: thin click wrappers over library functions.

Heavy libraries (torch, rasterio, qdrant) are imported inside each command so
that ``rsir-stac --help`` stays fast.  This module holds the group and ``search``;
``ingest`` is in :mod:`rsir_stac.cli_ingest`, the model commands in :mod:`rsir_stac.cli_model`, the index
commands in :mod:`rsir_stac.cli_store`, ``classify``/``export`` in
:mod:`rsir_stac.cli_analysis` and the shared error handler in
:mod:`rsir_stac.cli_common`.

Errors: a library error (:class:`RsirError`) prints ``error: <message>`` on
stderr and exits with its ``exit_code`` (2: bad usage or input, refused before
any work; 1: the run failed or some items/windows failed).  Anything else is a
bug or an unwrapped library failure: one line naming the exception type and
exit 1.  ``-v`` adds the traceback to either; Ctrl-C exits 130.
"""

from __future__ import annotations

import logging
import re

import click

from rsir_stac import __version__
from rsir_stac.cli_analysis import _examples, _filter_options, _per_item, _search_filter, bar_pages, tqdm_bar
from rsir_stac.cli_common import echo_text, handle_errors as _handle_errors
from rsir_stac.cli_common import parse_bands as _parse_bands
from rsir_stac.cli_common import store_options as _store_options
from rsir_stac.cli_results import _left_out, _print_search, _served_notes
from rsir_stac.cli_served import served_search, service_for


log = logging.getLogger("rsir_stac.cli")  # not __main__ under `python -m`


class _Group(click.Group):
    """The command group; a command name users reach for that is an option of another
    command is answered with that command (bad usage, exit 2)."""

    HINTS = {"adapt": "rsir-stac train --unlabelled --from BUNDLE SOURCES... --out RUN (adaptation without labels)"}

    VERBOSE = re.compile(r"^(-v+|--verbose)$")

    def parse_args(self, ctx, args):
        """``-v``/``--verbose`` is the group's option but is welcome after the command name too
        (``rsir-stac ingest ... -v``, as users type it): such tokens move in front of the
        command, except after a ``--`` separator. No command has a ``-v`` of its own."""
        args = list(args)
        stop = args.index("--") if "--" in args else len(args)
        first = next((i for i, a in enumerate(args[:stop]) if not str(a).startswith("-")), stop)
        cmd = self.commands.get(str(args[first])) if first < stop else None
        # a "-v" that is the value of the command's option (--collection -v) stays where it is
        takes = {o for p in (cmd.params if cmd is not None else ()) if isinstance(p, click.Option)
                 and not p.is_flag and not p.count for o in p.opts}
        late = [i for i in range(first + 1, stop) if isinstance(args[i], str) and self.VERBOSE.match(args[i])
                and str(args[i - 1]) not in takes]
        moved = [args[i] for i in late]
        args = moved + [a for i, a in enumerate(args) if i not in set(late)]
        return super().parse_args(ctx, args)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self.HINTS:
            ctx.fail(f"No such command '{name}'; use {self.HINTS[name]}")
        return cmd

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta["rsir.command_args"] = list(rest)  # the command's arguments as typed, for invoke's errors
        ctx.meta["rsir.command"] = (name, cmd)
        return name, cmd, rest

    def invoke(self, ctx):
        """Bad usage of a command (an option value out of range, an unknown option) is
        one line naming the command and its ``--help``, not click's usage block; a command
        that prints JSON prints its ``{"ok": false}`` document for it too."""
        from rsir_stac.cli_common import new_command, usage_error_json

        new_command()
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if e.ctx is None and ctx.meta.get("rsir.command", (None, None))[1] is not None:
                # click's parser refuses an option missing its value (`--at` last) or a flag given one
                # (`--json=yes`) with no context: it is the command's usage all the same
                name, cmd = ctx.meta["rsir.command"]
                e.ctx = click.Context(cmd, info_name=name, parent=ctx)
            if e.ctx is None:
                raise
            path = e.ctx.command_path
            message = f"{path}: {e.format_message()} (see '{path} --help')"
            if e.ctx is not ctx:  # the command's usage, not an unknown command
                usage_error_json(e.ctx, ctx.meta.get("rsir.command_args", []), message)
            raise click.UsageError(message) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rsir-stac")
@click.option("-v", "--verbose", count=True,
              help="-v: progress logs and tracebacks on errors; -vv: debug logs.")
def main(verbose: int) -> None:
    """Content-based retrieval of remote sensing image tiles over STAC and Qdrant."""
    from rsir_stac.cli_common import terminate_as_interrupt

    terminate_as_interrupt()  # `kill` cleans up as Ctrl-C does (temporary files, one line, exit 143)
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    from rsir_stac.cli_common import PrintableFormatter

    for handler in logging.getLogger().handlers:  # a STAC id in a log line cannot drive the terminal
        if type(handler) is logging.StreamHandler and type(handler.formatter) is logging.Formatter:
            handler.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().setLevel(max(level, logging.DEBUG))
    # GDAL's HTTP retry notices ("Retrying again in 1.0 secs") are noise unless asked for
    logging.getLogger("rasterio._env").setLevel(logging.NOTSET if verbose else logging.ERROR)
    # Pillow's "More samples per pixel than can be decoded" before rasterio reads the file instead
    logging.getLogger("PIL").setLevel(logging.NOTSET if verbose > 1 else logging.CRITICAL)
    from rsir_stac.malloc import tune_allocator

    tune_allocator()  # before any thread allocates: see rsir_stac.malloc


def _chosen_bands_png(paths, bands, folder: str) -> tuple[str, ...]:
    """Each image's chosen ``bands`` (read as ingest reads them) written as an RGB PNG of the same
    name stem in ``folder``, for a service that decodes uploads with their own bands."""
    import os

    from PIL import Image

    from rsir_stac.tiling import read_image

    out = []
    for n, path in enumerate(paths):
        target = os.path.join(folder, f"{n}-{os.path.splitext(os.path.basename(path))[0]}.png")
        Image.fromarray(read_image(path, bands=bands)).save(target)
        out.append(target)
    return tuple(out)


# -------------------------------------------------------------------------- search
@main.command()
@click.option("--image", multiple=True, type=click.Path(dir_okay=False),
              help="Positive example: an image file or raster tile (repeatable).")
@click.option("--point-id", multiple=True, help="Positive example: a stored tile's id (repeatable).")
@click.option("--at", "at", multiple=True, help="Positive example: the stored tile covering LON,LAT (repeatable).")
@click.option("--not-image", multiple=True, type=click.Path(dir_okay=False), help="Negative example image (repeatable).")
@click.option("--not-point-id", multiple=True, help="Negative example: a stored tile's id (repeatable).")
@click.option("--not-at", multiple=True, help="Negative example: the stored tile covering LON,LAT (repeatable).")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Label file (GeoJSON FeatureCollection of positive/negative tiles) adding examples.")
@click.option("--strategy", default="auto", show_default=True,
              type=click.Choice(["auto", "average", "best_score", "sum_scores", "discover", "context", "feedback"]),
              help="How the engine combines several examples (Qdrant recommend/discovery/context/feedback query); "
                   "auto: best_score with negative examples (it ranked better), else average.")
@click.option("--mmr", type=float, help="Diversify with maximal marginal relevance (diversity 0-1, e.g. 0.5).")
@click.option("--per-item", default="auto", show_default=True,
              help="At most N hits per scene; 0: no cap; auto: other scenes first (3 per scene), then the rest.")
@click.option("--exclude-within", type=float, help="Drop tiles within this many metres of the examples' footprints.")
@click.option("--expand", default=0, show_default=True, type=click.IntRange(0, 100),
              help="Query expansion: average the examples with their N nearest tiles and search again (e.g. 5).")
@_store_options
@click.option("--model", "model", type=click.Path(), envvar="RSIR_MODEL",
              help="Model bundle that built the index (or a shipped name: v7, the default; v1-v6) [env RSIR_MODEL].")
@_filter_options
@click.option("--limit", "-k", default=10, show_default=True, help="Number of results (offset + limit <= 10,000).")
@click.option("--offset", default=0, show_default=True, help="Skip this many results (paging).")
@click.option("--include-query", is_flag=True, help="Keep the example tiles themselves in the results.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json", "geojson"]))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the hits to a file: .geojson, .csv, .fgb or .parquet (GeoParquet), streamed page by page.")
@click.option("--with-vectors", is_flag=True, help="With --out: include the stored vectors.")
@click.option("--thumbnails", type=click.Path(file_okay=False), help="Write result tiles as PNG and a contact sheet here.")
@click.option("--bands", help="1-based R,G,B bands of the --image/--not-image files (multi-band chips, e.g. 4,3,2 "
                              "for Sentinel-2; default: as ingest chooses them).")
@_handle_errors
def search(image, point_id, at, not_image, not_point_id, not_at, labels_path, strategy, mmr, per_item, exclude_within,
           expand, index, qdrant_url, api_key, model, bbox, near, within, datetime_, collection,
           limit, offset, include_query, fmt, out, with_vectors, thumbnails, bands):
    """Find the stored tiles most like the examples (and unlike the negative ones), filtered by place, time
    and collection."""
    from rsir_stac.search import Index
    from rsir_stac.store.filter_parse import naive_datetime_note

    flt = _search_filter(bbox, near, within, datetime_, collection)
    zone_note = naive_datetime_note(datetime_)
    if zone_note:  # once, before the results (whatever the --format)
        echo_text(f"note: {zone_note}", err=True)
    bands = _parse_bands(bands)
    if bands and not (image or not_image):
        raise click.UsageError("--bands chooses the bands of --image/--not-image files; give one, or leave "
                               "--bands out")
    pos, neg = _examples(image, point_id, at, bands), _examples(not_image, not_point_id, not_at, bands, negative=True)
    labels = None
    if labels_path:
        from rsir_stac.labels import read_labels

        labels = read_labels(labels_path)
    _check_search_outputs(fmt, out, with_vectors, thumbnails)
    from rsir_stac.store.query import check_k

    check_k(limit, offset)  # here too for a served index: named as typed (-k 0), not as the request's field (k 0)
    if out:
        from rsir_stac.atomic import check_distinct_outputs

        check_distinct_outputs([("--out", out)], [("--labels", labels_path), ("--within", within)]
                               + [("--image", p) for p in image] + [("--not-image", p) for p in not_image])
    svc = service_for(index, qdrant_url, "search")
    if svc is not None:  # a running serve holds the index: it searches (rsir_stac.cli_served)
        return _search_through_service(
            svc, bands, fmt, image=image, point_id=point_id, at=at, not_image=not_image, not_point_id=not_point_id,
            not_at=not_at, labels=labels, strategy=strategy, mmr=mmr, per_item=per_item,
            exclude_within=exclude_within, expand=expand, model=model, bbox=bbox, near=near, within=within,
            datetime_=datetime_, collection=collection, limit=limit, offset=offset, include_query=include_query,
            out=out, with_vectors=with_vectors, thumbnails=thumbnails)
    query = dict(positives=pos, negatives=neg, labels=labels, strategy=strategy, mmr=mmr,
                 exclude_within_m=exclude_within, flt=flt, k=limit, include_query=include_query, expand=expand)
    with Index.open(index, qdrant_url=qdrant_url, api_key=api_key, model=model) as idx:
        if labels is not None:  # this index's ids once (a file of another model is matched, and warned of, once)
            query["labels"] = idx.labels_here(labels if pos else labels.require_positive())
        result = idx.search(per_item=_per_item(per_item), offset=offset, with_payload=not out, **query)
        notes = _search_notes(idx, result, query, per_item, offset, mmr)
        if out:
            result = _write_hits(idx, result, out, with_vectors, notes, payloads=bool(thumbnails))
        if thumbnails:
            from rsir_stac.thumbnails import write_thumbnails

            paths = write_thumbnails(result, thumbnails)
            click.echo(f"wrote {len(paths)} images to {thumbnails} (contact sheet: {paths[-1]})", err=True)
        if out:
            return
    _print_search(result, fmt, offset, notes, k=limit)


def _check_search_outputs(fmt: str, out: str | None, with_vectors: bool, thumbnails: str | None) -> None:
    """Refuse ``search``'s output options that do not go together, an unknown ``--out`` extension and
    an unwritable ``--out`` or ``--thumbnails`` folder, before any work."""
    if out:
        from rsir_stac.atomic import check_output_path
        from rsir_stac.export import format_for

        if fmt != "table":
            raise click.UsageError(f"--format {fmt} prints the hits and --out writes them to a file (its format "
                                   "from the extension); give one of the two, e.g. --out hits.geojson alone")
        format_for(out)  # refuse an unknown extension, a missing or unwritable folder before any work
        check_output_path(out, "--out")
    elif with_vectors:
        raise click.UsageError("--with-vectors adds the vectors to an --out file; give --out FILE "
                               "(e.g. --out hits.parquet), or leave --with-vectors out")
    if thumbnails:
        from rsir_stac.atomic import check_output_dir

        check_output_dir(thumbnails, "--thumbnails")  # before the search, not after it


def _search_through_service(svc, bands, fmt: str, **request) -> None:
    """``search`` answered by the ``serve`` that holds the index (``request``: the command's options as
    :func:`rsir_stac.cli_served.served_search` takes them), printed as a local search is. The service
    reads uploads' own bands, so with ``--bands`` it is sent the chosen ones as PNG."""
    import contextlib

    given = {"image_names": request["image"], "not_image_names": request["not_image"]}  # named as given
    with contextlib.ExitStack() as stack:
        if bands:
            import tempfile

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="rsir-bands-"))
            request["image"] = _chosen_bands_png(request["image"], bands, tmp)
            request["not_image"] = _chosen_bands_png(request["not_image"], bands, tmp)
        result, doc = served_search(svc, **request, **given)
    if result is not None:
        notes = _served_notes(result, doc, request["per_item"])
        _print_search(result, fmt, request["offset"], notes, doc, k=request["limit"])


def _search_notes(idx, result, query: dict, per_item: str, offset: int, mmr: float | None) -> list[str]:
    """The notes printed under a local search's hits: the library's, the filters that excluded
    stored tiles, which filter left nothing, and (on the first page, with the per-scene cap) how many
    nearer tiles the cap left off, which only a second search without the cap can count."""
    from rsir_stac.search_notes import excluded_notes

    flt = query["flt"]
    notes = list(result.notes) + excluded_notes(idx.store, flt)
    if not result.hits and not offset:  # which filter left nothing (analyst trial: "loosen the filters?")
        from rsir_stac.search_notes import empty_filter_notes

        notes += empty_filter_notes(idx.store, flt)
    if _per_item(per_item) == "auto" and result.hits and not offset:
        # the first page: the nearest tiles it left off (later pages hold them)
        plain = idx.search(per_item=None, offset=0, with_payload=False, **query)
        left = _left_out(result, plain.hits)
        if left[0]:  # the library's note on the order, with the count only a second search gives
            from rsir_stac.search_notes import cap_note

            notes = [n for n in notes if n != cap_note(result.score_name)]
            notes.append(cap_note(result.score_name, left, mmr=mmr is not None))
    from rsir_stac.search_notes import command_line_note

    return [command_line_note(n) for n in notes]


def _write_hits(idx, result, out: str, with_vectors: bool, notes: list[str], payloads: bool):
    """Write ``result``'s hits to ``out`` (format from its extension), then the notes; returns the
    result with its payloads read back when ``payloads`` (the export read none; thumbnails need them)."""
    from rsir_stac.export import empty_row, search_pages, write_table

    with tqdm_bar(len(result.hits), "rows") as bar:
        n = write_table((bar_pages(search_pages(idx, result, with_vectors=with_vectors), bar)), out,
                        empty_row(result.score_name, with_vectors=with_vectors))
    click.echo(f"wrote {n} hits to {out}", err=True)
    for note in notes:
        echo_text(f"note: {note}", err=True)
    if not payloads:
        return result
    from dataclasses import replace

    from rsir_stac.store import SearchHit

    full = {h.id: h for h in idx.store.retrieve([h.id for h in result.hits])}  # the export read no payloads
    return replace(result, hits=tuple(SearchHit(h.id, h.score, full[h.id].payload) for h in result.hits))


from rsir_stac.serve import serve_command  # noqa: E402  (imports only click)
from rsir_stac.cli_analysis import classify_command, export_command  # noqa: E402  (imports only click)
from rsir_stac.cli_ingest import ingest  # noqa: E402  (imports only click)
from rsir_stac.cli_model import evaluate, model_info, reduce, train  # noqa: E402  (imports only click)
from rsir_stac.cli_store import check, info, migrate, reindex, restore, snapshot  # noqa: E402

for _command in (ingest, train, reduce, evaluate, model_info, info, migrate, reindex, check, snapshot, restore):
    main.add_command(_command)
main.add_command(serve_command)
main.add_command(classify_command)
main.add_command(export_command)


if __name__ == "__main__":  # pragma: no cover
    main()
