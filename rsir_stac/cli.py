"""The ``rsir-stac`` command line: thin click wrappers over library functions.

Heavy libraries (torch, rasterio, qdrant) are imported inside each command so
that ``rsir-stac --help`` stays fast.  This module holds the group, ``ingest`` and
``search``; the model commands are in :mod:`rsir_stac.cli_model`, the index
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
import sys

import click

from rsir_stac import __version__
from rsir_stac.cli_analysis import _examples, _filter_options, _per_item, _search_filter, bar_pages, tqdm_bar
from rsir_stac.cli_common import _fail, echo_json as _echo_json, echo_text, handle_errors as _handle_errors
from rsir_stac.cli_common import parse_bands as _parse_bands
from rsir_stac.cli_common import store_options as _store_options
from rsir_stac.cli_results import _left_out, _print_search, _served_notes
from rsir_stac.cli_served import served_ingest, served_search, service_for
from rsir_stac.errors import RsirError


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

    def invoke(self, ctx):
        """Bad usage of a command (an option value out of range, an unknown option) is
        one line naming the command and its ``--help``, not click's usage block."""
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if e.ctx is None:
                raise
            path = e.ctx.command_path
            raise click.UsageError(f"{path}: {e.format_message()} (see '{path} --help')") from e


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


def _ingest_datetime(text: str | None):
    """``--datetime`` of ``ingest``: an instant or a closed START/END interval."""
    if not text:
        return None
    from rsir_stac.store.filter_parse import parse_acquisition_datetime

    return parse_acquisition_datetime(text)  # a plain date covers that day


# -------------------------------------------------------------------------- ingest
@main.command()
@click.argument("sources", nargs=-1, required=True)
@_store_options
@click.option("--model", "model", type=click.Path(),
              help="Model bundle folder (or a shipped name: v5, the default; v1-v4).")
@click.option("--asset", help="STAC asset key to tile, or three single-band asset keys R,G,B composed into one "
              "scene, e.g. --asset red,green,blue (default: first GeoTIFF with role visual, then single-band "
              "red/green/blue assets by common name, then the first with role data).")
@click.option("--bands", help="1-based R,G,B band numbers (default: from STAC eo:bands or colour interpretation).")
@click.option("--tile-size", type=int, help="Tile size in pixels at the target GSD (default: the model's).")
@click.option("--stride", type=int, help="Step between tiles in pixels (default: tile size).")
@click.option("--gsd", type=float, help="Target ground sample distance in metres (default: the model's).")
@click.option("--native-gsd", is_flag=True, help="Tile at each scene's own resolution, no resampling (pixels not square on the ground, "
                   "e.g. lon/lat away from the equator, are resampled to square ones of their longer side).")
@click.option("--edge", default="shift", show_default=True, type=click.Choice(["shift", "drop", "pad"]),
              help="Rule for the last row/column of tiles.")
@click.option("--min-valid", default=0.5, show_default=True, help="Skip tiles with less valid data than this fraction.")
@click.option("--nodata", type=float, help="Pixel value that marks no data in sources that declare none (no nodata, "
              "mask or alpha; e.g. 0 for black borders); a pixel is nodata where every band has it.")
@click.option("--batch-size", type=int, help="Tiles per forward pass (default: 16 on a CPU, 64 on a GPU).")
@click.option("--shard", help="Only this worker's share I/N of the items (0 <= I < N).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing item or window instead of skipping it.")
@click.option("--collection", help="Collection name for bare rasters (not STAC items, which keep theirs).")
@click.option("--datetime", "datetime_",
              help="Acquisition time of bare rasters: an instant or START/END (RFC 3339 or dates); "
                   "default: the file's ACQUISITIONDATETIME / TIFFTAG_DATETIME when present.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_handle_errors
def ingest(sources, index, qdrant_url, api_key, model, asset, bands, tile_size, stride, gsd, native_gsd, edge,
           min_valid, nodata, batch_size, shard, fail_fast, collection, datetime_, as_json):
    """Tile, embed and index SOURCES: STAC Items/Collections/Catalogs/ItemCollections
    (files or URLs) and GeoTIFF/COG paths or URLs (also s3://, gs://, az://)."""
    from tqdm import tqdm

    from rsir_stac.ingest import ingest as run
    from rsir_stac.ingest.options import IngestOptions
    from rsir_stac.stac.shard import parse_shard

    opts = IngestOptions(asset=asset, bands=_parse_bands(bands), tile_size=tile_size, stride=stride, gsd=gsd,
                         native_gsd=native_gsd, edge=edge, min_valid=min_valid, batch_size=batch_size,
                         fail_fast=fail_fast, shard=parse_shard(shard) if shard else None,
                         collection=collection, datetime=_ingest_datetime(datetime_), nodata=nodata)
    svc = service_for(index, qdrant_url, "ingest")
    if svc is not None:  # a running serve holds the index: it ingests (rsir_stac.cli_served)
        try:
            report, job = served_ingest(svc, sources, model=model, asset=asset, bands=opts.bands, tile_size=tile_size,
                                        stride=stride, gsd=gsd, native_gsd=native_gsd, edge=edge,
                                        min_valid=min_valid, shard=shard, fail_fast=fail_fast, collection=collection,
                                        datetime_=datetime_, nodata=nodata)
        except RsirError as exc:  # the service failed (stopped, refused): --json still prints the report
            _echo_failed_report(exc, as_json)
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM here cancels the service's job: say so on stdout too
            _echo_interrupted_report(exc, as_json)
            raise
        if job["state"] != "done":
            error, code = job.get("error") or "the service's ingest job failed", int(job.get("exit_code") or 1)
            if report is not None:
                _ingest_summary(report, as_json, list_failures=False)
            else:
                _echo_failed_report(error, as_json, code)
            _fail(error, code)
        return _ingest_finish(report, as_json)
    bars: dict = {}
    done = {"items": 0, "tiles": 0, "total": 0}

    def progress(ev):
        # bars on a terminal; with -v, log lines (for unattended runs writing to a file)
        if ev.kind == "items":
            done["items_total"] = ev.total
            bars["items"] = tqdm(total=ev.total, desc="items", unit="item", position=0, file=sys.stderr, disable=None)
            bars["tiles"] = tqdm(total=0, desc="tiles", unit="tile", position=1, file=sys.stderr, disable=None)
        elif ev.kind == "total":
            done["total"] += ev.n
            bars["tiles"].total += ev.n
            bars["tiles"].refresh()
        elif ev.kind == "tiles":
            done["tiles"] += ev.n
            bars["tiles"].update(ev.n)
            log.debug("tiles %d/%d", done["tiles"], done["total"])
        elif ev.kind == "start":
            log.info("item %s: started", ev.item_id)
        elif ev.kind == "end":
            done["items"] += 1
            bars["items"].update(1)
            log.info("item %s: done (%d/%d items, %d/%d tiles)", ev.item_id, done["items"],
                     done.get("items_total", 0), done["tiles"], done["total"])

    try:
        report = run(list(sources), index=index, qdrant_url=qdrant_url, api_key=api_key, model=model,
                     options=opts, progress=progress)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: --json still says how far the run got
        for bar in bars.values():
            bar.close()
        bars.clear()
        _echo_interrupted_report(exc, as_json)
        raise
    except RsirError as exc:
        partial = getattr(exc, "report", None)
        if partial is None or getattr(exc, "item_id", None) is None:  # the run stopped as a whole (a full disk)
            for bar in bars.values():
                bar.close()
            bars.clear()
            if partial is not None and not as_json:  # what it wrote before it stopped
                _ingest_summary(partial, False, list_failures=False)
            _echo_failed_report(exc, as_json)
            raise
        for bar in bars.values():
            bar.close()
        bars.clear()
        _ingest_summary(partial, as_json, list_failures=False)  # the failure is the error line
        _fail(f"item {getattr(exc, 'item_id', '?')} failed and --fail-fast stopped the run: {exc}", 1)
    finally:
        for bar in bars.values():
            bar.close()
    _ingest_finish(report, as_json)


def _echo_interrupted_report(exc: KeyboardInterrupt, as_json: bool) -> None:
    """:func:`_echo_failed_report` of a run stopped by Ctrl-C (exit 130) or SIGTERM (143)."""
    from rsir_stac.cli_common import Terminated

    term = isinstance(exc, Terminated)
    _echo_failed_report(exc, as_json, 143 if term else 130, message="terminated (SIGTERM)" if term else "interrupted")


def _echo_failed_report(exc, as_json: bool, code: int | None = None, message: str | None = None) -> None:
    """With --json, the report of a run that failed as a whole (``ok`` false, the error line and exit
    code): what it did before it stopped (``exc.report``, e.g. the points a run stopped by a full disk
    wrote), else the empty report; printed whatever the exit code.  ``exc``: the error (or its message)."""
    if as_json:
        from rsir_stac.ingest.report import IngestReport

        done = getattr(exc, "report", None) or IngestReport()  # what a run that stopped did before it stopped
        _echo_json({**done.as_dict(), "ok": False, "error": " ".join(str(message or exc).split()),
                    "exit_code": code if code is not None else exc.exit_code})


def _ingest_finish(report, as_json: bool) -> None:
    """Print the summary of a finished ingest and exit 1 when anything failed or nothing was indexed."""
    n_items, n_tiles = len(report.items_failed), len(report.tiles_failed)
    single = n_items + n_tiles == 1
    _ingest_summary(report, as_json, list_failures=not single)
    if single:  # the one failure is the error line itself
        if n_items:
            f = report.items_failed[0]
            _fail(f"item {f['item'] or '?'} failed: {f['error']}", 1)
        rest = "the scene's other tiles were indexed" if report.points_written or report.tiles_existing \
            else "nothing else was indexed"
        _fail(f"window failed ({rest}): {report.tiles_failed[0]}", 1)
    if not report.ok:
        parts = ([f"{n_items} of {report.items} items failed"] if n_items else []) + (
            [f"{n_tiles} windows failed"] if n_tiles else [])
        where = "items_failed/tiles_failed in the JSON" if as_json else "listed above"
        _fail(f"{' and '.join(parts)} ({where}); fix them as each says and re-run "
             "(tiles already indexed are kept and skipped)", 1)
    if report.nothing_indexed:
        _fail(f"nothing was indexed: {report.nothing_indexed}", 1)


#: Failed windows listed per source file after an ingest (the rest are counted).
FAILED_WINDOWS_SHOWN = 3


def _ingest_summary(report, as_json: bool, list_failures: bool = True) -> None:
    if as_json:  # the exit code the run ends with (ingest's rule: any failure or nothing indexed is 1)
        _echo_json({**report.as_dict(), "exit_code": 0 if report.ok and not report.nothing_indexed else 1})
        return
    click.echo(
        f"items {report.items_done}/{report.items} done, {len(report.items_failed)} failed; "
        f"tiles {report.tiles_total}: {report.points_written} written, {report.tiles_existing} already indexed"
        + (f" ({report.tiles_relabelled} given the new collection/date)" if report.tiles_relabelled else "") + ", "
        f"{report.tiles_empty} skipped (mostly empty), {len(report.tiles_failed)} failed; {report.seconds:.1f} s"
        + (f"; {len(report.items_changed)} changed file{'s' if len(report.items_changed) > 1 else ''} embedded again"
           if report.items_changed else "")
    )
    for d in report.items_enlarged:  # also logged when read; here too for runs a service made
        echo_text(f"  enlarged item {d['item']}: --gsd {d['gsd']:g} m enlarges its {d['native_gsd']:g} m pixels "
                  f"{d['factor']:g}x (the model saw 1-8x): its tiles are interpolated pixels; leave --gsd out "
                  "or pass --native-gsd", err=True)
    small = {d["item"]: d["hint"] for d in report.items_small}
    for item in report.items_empty:
        echo_text(f"  skipped item {item}: "
                  + small.get(item, "every window is nodata or less valid than --min-valid (a scene that is "
                                    "mostly fill: lower --min-valid, e.g. 0.1, or read it with more pixels, a finer "
                                    "--gsd)"), err=True)
    if not list_failures:
        return
    for f in report.items_failed:
        echo_text(f"  failed item {f['item'] or '?'}: {f['error']}", err=True)
    per_source: dict[str, int] = {}
    for msg in report.tiles_failed:  # a damaged file fails many windows alike: the first few of each
        src = msg.split(": ", 1)[0]
        per_source[src] = per_source.get(src, 0) + 1
        if per_source[src] <= FAILED_WINDOWS_SHOWN:
            echo_text(f"  failed window: {msg}", err=True)
    for src, n in per_source.items():
        if n > FAILED_WINDOWS_SHOWN:
            echo_text(f"  ... and {n - FAILED_WINDOWS_SHOWN} more failed windows of {src} (all in --json)", err=True)


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
@click.option("--model", "model", type=click.Path(),
              help="Model bundle that built the index (or a shipped name: v5, the default; v1-v4).")
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
    from rsir_stac.search_notes import excluded_notes
    from rsir_stac.store.filter_parse import naive_datetime_note

    flt = _search_filter(bbox, near, within, datetime_, collection)
    zone_note = naive_datetime_note(datetime_)
    if zone_note:  # once, before the results (whatever the --format)
        echo_text(f"note: {zone_note}", err=True)
    bands = _parse_bands(bands)
    if bands and not (image or not_image):
        raise click.UsageError("--bands chooses the bands of --image/--not-image files; give one, or leave "
                               "--bands out")
    pos, neg = _examples(image, point_id, at, bands), _examples(not_image, not_point_id, not_at, bands)
    labels = None
    if labels_path:
        from rsir_stac.labels import read_labels

        labels = read_labels(labels_path)
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
    svc = service_for(index, qdrant_url, "search")
    if svc is not None and bands:  # the service reads uploads' own bands: send it the chosen ones as PNG
        import tempfile

        with tempfile.TemporaryDirectory(prefix="rsir-bands-") as tmp:
            image, not_image = (_chosen_bands_png(image, bands, tmp), _chosen_bands_png(not_image, bands, tmp))
            result, doc = served_search(svc, image=image, point_id=point_id, at=at, not_image=not_image,
                                        not_point_id=not_point_id, not_at=not_at, labels_path=labels_path,
                                        strategy=strategy, mmr=mmr, per_item=per_item,
                                        exclude_within=exclude_within, expand=expand, model=model, bbox=bbox,
                                        near=near, within=within, datetime_=datetime_, collection=collection,
                                        limit=limit, offset=offset, include_query=include_query, out=out,
                                        with_vectors=with_vectors, thumbnails=thumbnails)
        if result is not None:
            _print_search(result, fmt, offset, _served_notes(result, doc, per_item), doc, k=limit)
        return
    if svc is not None:  # a running serve holds the index: it searches (rsir_stac.cli_served)
        result, doc = served_search(svc, image=image, point_id=point_id, at=at, not_image=not_image,
                                    not_point_id=not_point_id, not_at=not_at, labels_path=labels_path,
                                    strategy=strategy, mmr=mmr, per_item=per_item, exclude_within=exclude_within,
                                    expand=expand, model=model, bbox=bbox, near=near, within=within, datetime_=datetime_,
                                    collection=collection, limit=limit, offset=offset, include_query=include_query,
                                    out=out, with_vectors=with_vectors, thumbnails=thumbnails)
        if result is not None:
            _print_search(result, fmt, offset, _served_notes(result, doc, per_item), doc, k=limit)
        return
    with Index.open(index, qdrant_url=qdrant_url, api_key=api_key, model=model) as idx:
        result = idx.search(positives=pos, negatives=neg, labels=labels, strategy=strategy, mmr=mmr,
                            per_item=_per_item(per_item), exclude_within_m=exclude_within, flt=flt, k=limit,
                            offset=offset, include_query=include_query, with_payload=not out, expand=expand)
        notes = list(result.notes) + excluded_notes(idx.store, flt)
        if not result.hits and not offset:  # which filter left nothing (analyst trial: "loosen the filters?")
            from rsir_stac.search_notes import empty_filter_notes

            notes += empty_filter_notes(idx.store, flt)
        if _per_item(per_item) == "auto" and result.hits:
            left = (0, 0)
            if not offset:  # the first page: the nearest tiles it left off (later pages hold them)
                plain = idx.search(positives=pos, negatives=neg, labels=labels, strategy=strategy, mmr=mmr,
                                   per_item=None, exclude_within_m=exclude_within, flt=flt, k=limit, offset=0,
                                   include_query=include_query, with_payload=False, expand=expand)
                left = _left_out(result, plain.hits)
            if left[0]:  # the library's note on the order, with the count only a second search gives
                from rsir_stac.search_notes import cap_note

                notes = [n for n in notes if n != cap_note(result.score_name)]
                notes.append(cap_note(result.score_name, left, mmr=mmr is not None))
        if out:
            from rsir_stac.export import empty_row, search_pages, write_table

            with tqdm_bar(len(result.hits), "rows") as bar:
                n = write_table((bar_pages(search_pages(idx, result, with_vectors=with_vectors), bar)), out,
                                empty_row(result.score_name, with_vectors=with_vectors))
            click.echo(f"wrote {n} hits to {out}", err=True)
            for note in notes:
                echo_text(f"note: {note}", err=True)
            if not thumbnails:
                return
            from dataclasses import replace

            from rsir_stac.store import SearchHit

            full = {h.id: h for h in idx.store.retrieve([h.id for h in result.hits])}  # the export read no payloads
            result = replace(result, hits=tuple(SearchHit(h.id, h.score, full[h.id].payload) for h in result.hits))
        if thumbnails:
            from rsir_stac.thumbnails import write_thumbnails

            paths = write_thumbnails(result, thumbnails)
            click.echo(f"wrote {len(paths)} images to {thumbnails} (contact sheet: {paths[-1]})", err=True)
        if out:
            return
    _print_search(result, fmt, offset, notes, k=limit)


from rsir_stac.serve import serve_command  # noqa: E402  (imports only click)
from rsir_stac.cli_analysis import register  # noqa: E402  (imports only click)
from rsir_stac.cli_model import evaluate, model_info, reduce, train  # noqa: E402  (imports only click)
from rsir_stac.cli_store import check, info, migrate, reindex, restore, snapshot  # noqa: E402

for _command in (train, reduce, evaluate, model_info, info, migrate, reindex, check, snapshot, restore):
    main.add_command(_command)
main.add_command(serve_command)
register(main, _handle_errors, _store_options)


if __name__ == "__main__":  # pragma: no cover
    main()
