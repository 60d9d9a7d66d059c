"""The ``ingest`` command: its progress bars and the report it prints (:func:`rsir_stac.ingest.ingest`
does the work; a running ``serve`` that holds the index does it through :mod:`rsir_stac.cli_served`).

Exit codes: 0 when every item and window was indexed, 1 when any failed or nothing was indexed,
2 for bad input refused before any work, 130/143 when interrupted; ``--json`` prints the report
(with ``ok`` and ``exit_code``) whatever the exit code.
"""

from __future__ import annotations

import logging
import sys

import click

from rsir_stac.cli_common import _fail, echo_json as _echo_json, echo_text, handle_errors as _handle_errors
from rsir_stac.cli_common import parse_bands as _parse_bands
from rsir_stac.cli_common import store_options as _store_options
from rsir_stac.cli_served import served_ingest, service_for
from rsir_stac.errors import RsirError


log = logging.getLogger("rsir_stac.cli")  # the name of the command line's log lines, as before the split


def _ingest_datetime(text: str | None):
    """``--datetime`` of ``ingest``: an instant or a closed START/END interval."""
    if not text:
        return None
    from rsir_stac.store.filter_parse import parse_acquisition_datetime

    return parse_acquisition_datetime(text)  # a plain date covers that day


@click.command()
@click.argument("sources", nargs=-1, required=True)
@_store_options
@click.option("--model", "model", type=click.Path(), envvar="RSIR_MODEL",
              help="Model bundle folder (or a shipped name: v7, the default; v1-v6) [env RSIR_MODEL].")
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
    from rsir_stac.ingest import ingest as run
    from rsir_stac.ingest.options import IngestOptions
    from rsir_stac.stac.shard import parse_shard

    opts = IngestOptions(asset=asset, bands=_parse_bands(bands), tile_size=tile_size, stride=stride, gsd=gsd,
                         native_gsd=native_gsd, edge=edge, min_valid=min_valid, batch_size=batch_size,
                         fail_fast=fail_fast, shard=parse_shard(shard) if shard else None,
                         collection=collection, datetime=_ingest_datetime(datetime_), nodata=nodata)
    svc = service_for(index, qdrant_url, "ingest")
    if svc is not None:  # a running serve holds the index: it ingests (rsir_stac.cli_served)
        return _ingest_through_service(svc, sources, opts, as_json, model=model, asset=asset, tile_size=tile_size,
                                       stride=stride, gsd=gsd, native_gsd=native_gsd, edge=edge,
                                       min_valid=min_valid, shard=shard, fail_fast=fail_fast,
                                       collection=collection, datetime_=datetime_, nodata=nodata)
    bars = IngestBars()
    try:
        report = run(list(sources), index=index, qdrant_url=qdrant_url, api_key=api_key, model=model,
                     options=opts, progress=bars)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: --json still says how far the run got
        bars.close()
        _echo_interrupted_report(exc, as_json)
        raise
    except RsirError as exc:
        bars.close()
        _report_stopped_run(exc, as_json)
        raise
    finally:
        bars.close()
    _ingest_finish(report, as_json)


class IngestBars:
    """The ``progress`` callback of :func:`rsir_stac.ingest.ingest`: an items bar and a tiles bar on a
    terminal (none when stderr is not one); with ``-v``, log lines for unattended runs writing to a file."""

    def __init__(self) -> None:
        self.bars: dict = {}
        self.done = {"items": 0, "tiles": 0, "total": 0}

    def __call__(self, ev) -> None:
        from tqdm import tqdm

        bars, done = self.bars, self.done
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

    def close(self) -> None:
        """Close the bars (before a report is printed under them); safe to call again."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _ingest_through_service(svc, sources, opts, as_json: bool, **request) -> None:
    """``ingest`` run by the ``serve`` that holds the index (``request``: the command's options as
    :func:`rsir_stac.cli_served.served_ingest` takes them); prints its report as a local run does."""
    try:
        report, job = served_ingest(svc, sources, bands=opts.bands, **request)
    except RsirError as exc:  # the service failed (stopped, refused): --json still prints the report
        _echo_failed_report(exc, as_json)
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM here cancels the service's job: say so on stdout too
        _echo_interrupted_report(exc, as_json)
        raise
    _log_job_warnings(report)
    if job["state"] != "done":
        error, code = job.get("error") or "the service's ingest job failed", int(job.get("exit_code") or 1)
        if report is not None:
            _ingest_summary(report, as_json, list_failures=False)
        else:
            _echo_failed_report(error, as_json, code)
        _fail(error, code)
    _ingest_finish(report, as_json)


def _log_job_warnings(report) -> None:
    """Log the warnings a service's ingest job recorded (``report.warnings``) as a run on the command
    line logs them while it goes: the same logger, so the same line on stderr."""
    for w in (report.warnings if report is not None else None) or ():
        if not isinstance(w, dict) or not isinstance(w.get("message"), str):
            continue
        name = str(w.get("logger") or "")
        logging.getLogger(name if name.startswith("rsir_stac.") else "rsir_stac.ingest").warning("%s", w["message"])


def _report_stopped_run(exc: RsirError, as_json: bool) -> None:
    """Print what a local run that raised ``exc`` did: a run stopped as a whole (a full disk) prints
    what it wrote before it stopped, and the caller re-raises; an item that failed under
    ``--fail-fast`` prints the summary and exits 1 here with the item named."""
    partial = getattr(exc, "report", None)
    if partial is None or getattr(exc, "item_id", None) is None:  # the run stopped as a whole (a full disk)
        if partial is not None and not as_json:  # what it wrote before it stopped
            _ingest_summary(partial, False, list_failures=False)
        _echo_failed_report(exc, as_json)
        return
    _ingest_summary(partial, as_json, list_failures=False)  # the failure is the error line
    _fail(f"item {getattr(exc, 'item_id', '?')} failed and --fail-fast stopped the run: {exc}", 1)


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
        f"{report.tiles_empty} skipped (mostly empty), {len(report.tiles_failed)} failed"
        + (f"; {report.tiles_off_earth} more left out (no place on the Earth in their CRS: space beyond a "
           "geostationary disk, or past a projection's edge)" if report.tiles_off_earth else "")
        + f"; {report.seconds:.1f} s"
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
