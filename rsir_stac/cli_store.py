"""``rsir-stac info``, ``migrate``, ``reindex``, ``check``, ``snapshot`` and ``restore``: the index commands."""

from __future__ import annotations

import logging
import os
import sys

import click

from rsir_stac.cli_common import _fail, echo_json as _echo_json, echo_text, handle_errors as _handle_errors
from rsir_stac.cli_common import lasting_qdrant_url, qdrant_collection_option, store_options as _store_options
from rsir_stac.cli_served import served_info, service_for

log = logging.getLogger("rsir_stac.cli")


# ---------------------------------------------------------------------------- info
@click.command()
@_store_options
@_handle_errors
def info(index, qdrant_url, api_key):
    """Summarise an index: points, vector size, model, collections and extent."""
    from dataclasses import asdict

    from rsir_stac.store import open_store

    svc = service_for(index, qdrant_url, "info")
    if svc is not None:  # a running serve holds the index: it answers (rsir_stac.cli_served)
        return served_info(svc)
    from rsir_stac.model.bundle import SHIPPED_ALIASES, shipped_name

    with open_store(index, qdrant_url=qdrant_url, api_key=api_key, read_only=True) as store:
        doc = asdict(store.info())
        # the shipped model the vectors are of, by name (upgrade trial: only the id was shown, so an index of
        # the default before was not told apart from one of today's)
        name = shipped_name(doc["model_id"]) if doc.get("model_id") else None
        _echo_json({**doc, "model": name}, indent=2)
        default = next(iter(SHIPPED_ALIASES))  # the default's version name (v7)
        if name and name != default:
            where = f"--qdrant-url {qdrant_url}" if qdrant_url else f"--index {index}"
            click.echo(f"note: its vectors are of the shipped model {name}, not the default ({default}): pass "
                       f"--model {name} to search it, or move it to the default with `rsir-stac reindex {where} "
                       "--to NEW`", err=True)
        if getattr(store, "foreign", None):  # search, export, classify and reindex refuse it
            click.echo(f"note: {store.describe()} was not made by rsir-stac (no rsir-stac metadata; it holds "
                       f"{store.foreign}): it cannot be searched as an index", err=True)


# ------------------------------------------------------------------------- migrate
@click.command()
@click.option("--index", "index", required=True, type=click.Path(file_okay=False, exists=True),
              help="Embedded index folder to copy from.")
@click.option("--qdrant-url", envvar="RSIR_QDRANT_URL", required=True, callback=lasting_qdrant_url,
              help="Qdrant server/cluster (or a qdrant-client local folder) to copy to [env RSIR_QDRANT_URL].")
@click.option("--api-key", envvar="RSIR_QDRANT_API_KEY", help="Qdrant API key [env RSIR_QDRANT_API_KEY].")
@qdrant_collection_option
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Points copied per request.")
@_handle_errors
def migrate(index, qdrant_url, api_key, batch_size):
    """Copy an embedded index (ids, vectors, payloads) to a Qdrant server or cluster."""
    from tqdm import tqdm

    from rsir_stac.store import open_store
    from rsir_stac.store.migrate import local_folder, migrate as run, remove_created_folder

    folder = local_folder(qdrant_url)
    made = folder is not None and not os.path.lexists(folder)  # a failed run removes a folder it created
    bar, done = None, 0

    def progress(n: int) -> None:  # the bar starts with the copy, after the checks that may refuse it
        nonlocal bar, done
        if bar is None:
            bar = tqdm(total=total, desc="points", unit="pt", file=sys.stderr, disable=None)
        bar.update(n)
        done += n

    try:
        with open_store(index, read_only=True) as src, open_store(qdrant_url=qdrant_url, api_key=api_key) as dst:
            total, already = src.count(), dst.count() if dst.meta() is not None else 0
            where = dst.describe()
            try:
                n = run(src, dst, batch_size=batch_size, progress=progress)
            except KeyboardInterrupt:
                try:  # what the target holds now (a batch may have landed after the last progress call)
                    held = f"it holds {dst.count()} of the {total} points"
                except Exception:  # noqa: BLE001 - only for the message
                    held = f"at least {done} of the {total} points were copied"
                _fail(f"interrupted while copying to {where}: {held}; re-run the same command to finish the copy "
                      "(points already there are written again, not doubled)", 130)
            finally:
                if bar is not None:
                    bar.close()
    except Exception:
        if made:
            remove_created_folder(folder)
        raise
    again = f" ({already} of them were there already: a re-run writes them again, not twice)" if already else ""
    click.echo(f"copied {n} points from {index} to {where}{again}")


# ------------------------------------------------------------------------- reindex
@click.command()
@_store_options
@click.option("--to", "to", required=True,
              help="New index folder (with --qdrant-url: new collection name on the same Qdrant).")
@click.option("--collection", help="With --qdrant-url: the collection to read [default: --qdrant-collection, "
                                   "else rsir_tiles].")
@click.option("--model", "model", type=click.Path(),
              help="New model bundle folder (or a shipped name: v7, the default; v1-v6).")
@click.option("--batch-size", type=int, help="Tiles per forward pass (default: 16 on a CPU, 64 on a GPU).")
@click.option("--relocate", "relocate", multiple=True, metavar="OLD=NEW",
              help="Sources ingested from folder (or URL prefix) OLD are now under NEW; repeatable.")
@click.option("--skip-missing", is_flag=True,
              help="Sources that cannot be read are gone for good: leave their tiles out and mark the new index "
                   "finished (exit 0; they are still listed).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_handle_errors
def reindex(index, qdrant_url, api_key, to, collection, model, batch_size, relocate, skip_missing, as_json):
    """Re-embed every tile of an index with a new model into a new index (the old one is left as it is)."""
    from tqdm import tqdm

    from rsir_stac.store import chosen_collection

    named = chosen_collection()  # --qdrant-collection or RSIR_QDRANT_COLLECTION
    if collection and named and collection != named:
        raise click.UsageError(f"--collection {collection} and --qdrant-collection (or RSIR_QDRANT_COLLECTION) "
                               f"{named} both name the collection to read; pass one of them")

    from rsir_stac.reindex import reindex as run

    bar = None

    def progress(ev):
        nonlocal bar
        if ev.kind == "total":
            bar = tqdm(total=ev.n, desc="points", unit="pt", file=sys.stderr, disable=None)
        elif ev.kind == "points" and bar is not None:
            bar.update(ev.n)
        elif ev.kind == "source_failed":
            log.info("source %s cannot be read; its tiles are skipped", ev.href)

    try:
        report = run(index, to, qdrant_url=qdrant_url, api_key=api_key, collection=collection, model=model,
                     batch_size=batch_size, relocate=relocate, progress=progress, skip_missing=skip_missing)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        _echo_json(report.as_dict())
    else:
        click.echo(f"{report.points_total} points of {report.source} ({report.model_from}) -> {report.target} "
                   f"({report.model_to}): {report.points_written} written, {report.points_existing} already there, "
                   f"{sum(f['tiles'] for f in report.sources_failed) + report.tiles_failed} failed"
                   + (f", {report.points_left_out} left out (no place on the Earth)" if report.points_left_out else "")
                   + f"; {report.seconds:.1f} s")
        for msg in report.left_out:
            echo_text(f"  note: {msg}", err=True)
        if report.tiling_kept:
            echo_text(f"  note: {report.tiling_kept}", err=True)
        if qdrant_url and report.ok:
            from rsir_stac.model.bundle import shipped_name

            name = model or shipped_name(report.model_to) or report.model_to
            click.echo(f"  open it with --qdrant-url {qdrant_url} --qdrant-collection {to} --model {name} "
                       f"(or set RSIR_QDRANT_COLLECTION={to})", err=True)
        for f in report.sources_failed:
            stored = f.get("stored_href", f["href"])
            where = f" (stored in the index as {stored}, moved by --relocate)" if stored != f["href"] else ""
            echo_text(f"  failed source {f['href']}{where} ({_tiles(f['tiles'])}): {f['error']}; it was ingested "
                      f"with {f['ingest_options']}", err=True)
        for msg in report.tile_errors:
            echo_text(f"  failed tile: {msg}", err=True)
    if skip_missing and report.sources_failed and not report.tiles_failed:
        if not (report.points_written or report.points_existing):   # ingest's rule: nothing indexed is a failure
            _fail(f"nothing was reindexed: every source of the {report.points_total} points failed and was left out "
                  f"by --skip-missing, so no new index was made at {report.target}; put the files back, or pass "
                  "--relocate OLD=NEW for where they are now, and run the same command again", 1)
        click.echo(f"  {len(report.sources_failed)} source(s) left out by --skip-missing "
                   f"({_tiles(sum(f['tiles'] for f in report.sources_failed))}); the new index is marked finished",
                   err=True)
        return
    if not report.ok:
        n_src = len(report.sources_failed)
        parts = ([f"{n_src} source(s) could not be read"] if n_src else []) + (
            [f"{report.tiles_failed} tile(s) could not be read"] if report.tiles_failed else [])
        where = "sources_failed/tile_errors in the JSON" if as_json else "listed above"
        # OLD of --relocate is the folder the index stores (not where an earlier --relocate looked)
        gone = [f for f in report.sources_failed if "does not exist" in f.get("error", "")]
        hint = ""
        if gone:  # one rule per folder the missing files are stored under (OLD=NEW, or a file's own path)
            folders = sorted({os.path.dirname(f.get("stored_href", f["href"])) for f in gone})
            rules = " ".join(f"--relocate {d}=NEW_FOLDER" for d in folders[:3]) + (" ..." if len(folders) > 3 else "")
            read_at = sorted({os.path.dirname(f["href"]) for f in gone if f.get("stored_href", f["href"]) != f["href"]})
            instead = f" in place of the --relocate that read them from {', '.join(read_at)}" if read_at else ""
            hint = (f"if they moved, re-run the same command with {rules}{instead} (the same tiles, read from "
                    "there; a file that moved alone takes its own rule, --relocate OLD_FILE=NEW_FILE); ")
        _fail(f"{' and '.join(parts)} ({where}); their tiles are not in the new index: {hint}put the files back and "
              "re-run the same command, or ingest them again with the new model and the options listed for each "
              "(a moved raster is then a new item, and this command still lists the old one); if they are gone for "
              "good, re-run with --skip-missing to finish without them", 1)


# ------------------------------------------------------- check / snapshot / restore
def _embedded_only(command: str):
    """A hidden ``--qdrant-url`` for a command of embedded indexes only: refused in one line that
    says what to use for a Qdrant store instead (click's "No such option" named no way on)."""

    def refuse(ctx, param, value):
        if value is not None:
            raise click.UsageError(
                f"{command} works on embedded indexes (--index) only; for a Qdrant store use the server's own "
                "snapshots (deploy/README.md, 'Snapshots and backups'), or `rsir-stac export --qdrant-url URL "
                "--out tiles.parquet` for a copy of its tiles")
        return value

    return click.option("--qdrant-url", hidden=True, expose_value=False, callback=refuse, is_eager=True)


@click.command()
@_embedded_only("check")
@click.option("--index", "index", default="./rsir-index", show_default=True, type=click.Path(file_okay=False),
              help="Embedded index folder.")
@click.option("--repair", is_flag=True, help="Rebuild the index from the points that pass; drop the others.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_handle_errors
def check(index, repair, as_json):
    """Check an embedded index: files, counts, every vector and payload against its digest.

    Exit 0 when nothing is damaged, 1 when something is (each finding is one
    line on stderr).  --repair rebuilds it from the points that pass; re-run
    the ingest that built the index to restore the dropped ones.
    """
    from rsir_stac.store.integrity import check_index
    from rsir_stac.store.repair import remove_leftovers, repair_index

    report = check_index(index)
    fixed = repair_index(index) if repair and not report.ok else None
    if repair and report.leftovers:
        remove_leftovers(index)
    cleaned = [n for n in report.leftovers if repair and not os.path.lexists(os.path.join(report.index, n))]
    if as_json:
        _echo_json({**report.as_dict(), "repair": fixed.as_dict() if fixed else None})
    elif not report.loadable:
        kinds = {f.kind for f in report.findings}
        why = ("it was not loaded (a segment lost its version.info)" if "version" in kinds
               else "this user may not read it" if "permission" in kinds else "the engine cannot load its shard")
        click.echo(f"index {report.index}: {why}, so none of its points can be read; "
                   f"its digest ledger records {report.ledger_points} points")
    else:
        click.echo(f"index {report.index}: {report.points} points, {report.verified} verified against their "
                   f"digests, {report.unverified} without a digest (re-embedded by the next ingest)")
    for f in report.findings:
        sample = f" (e.g. {', '.join(f.ids[:3])})" if f.ids else ""
        echo_text(f"{'unreadable' if f.kind == 'permission' else 'damaged'}: {f.message}{sample}", err=True)
    for note in report.notes:
        echo_text(f"note: {note}", err=True)
    for name in report.leftovers:
        if name in cleaned:
            click.echo(f"removed: {name}, left by a killed process (the index did not use it)", err=True)
        elif not repair:
            click.echo(f"note: {report.index}/{name} was left by a process killed while it {_left_by(name)}; the "
                       f"index does not use it, and `rsir-stac check --index {index} --repair` or the next ingest "
                       "removes it", err=True)
    if fixed is not None and fixed.set_aside:
        click.echo(f"repaired: the shard the engine cannot load was moved to {fixed.set_aside} with the digests of "
                   f"its {fixed.dropped} recorded points (delete it when done); the index now holds no points: "
                   f"re-run the ingest that built {index} to index them again, or `rsir-stac restore SNAPSHOT "
                   f"--index {index} --force`", err=True)
    elif fixed is not None:
        click.echo(f"repaired: kept {fixed.kept} points, dropped {fixed.dropped}; re-run the ingest that built "
                   f"{index} to restore them" if fixed.dropped else f"repaired: kept all {fixed.kept} points", err=True)
    elif any(f.kind == "permission" for f in report.findings):
        _fail(f"index {report.index} cannot be read by this user (permission denied), which is not damage: nothing "
              f"was changed; give it read and write access to {index} and the files in it (e.g. as their owner, "
              f"`chmod -R u+rwX {index}`), or run as the user that owns it", 1)
    elif any(f.kind == "version" for f in report.findings):
        _fail(f"index {report.index} was not loaded, so nothing was changed; run `rsir-stac check --index {index} "
              "--repair` to write each missing version.info back and verify the segment's points", 1)
    elif not report.loadable:
        _fail(f"index {report.index} cannot be loaded, so its {report.ledger_points} recorded points cannot be "
              f"read; run `rsir-stac check --index {index} --repair` (it sets the shard aside) and then re-run the "
              f"ingest that built it, or `rsir-stac restore SNAPSHOT --index {index} --force` from a snapshot", 1)
    elif not report.ok:
        _fail(f"index {report.index} is damaged ({len(report.findings)} finding(s) above); re-run the ingest "
              f"that built it, or `rsir-stac check --index {index} --repair` then re-run it", 1)


def _left_by(name: str) -> str:
    if name.endswith(".repairing"):
        return "repaired the index (`check --repair`): a half-built shard"
    if name.endswith(".creating"):
        return "created the collection: a half-made shard"
    return "swapped in a repaired shard"


@click.command()
@_embedded_only("snapshot")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--index", "index", default="./rsir-index", show_default=True, type=click.Path(file_okay=False),
              help="Embedded index folder.")
@click.option("--force", is_flag=True, help="Replace OUT when it exists.")
@_handle_errors
def snapshot(out, index, force):
    """Write a verified snapshot of an embedded index to OUT (.tar.gz or .tgz)."""
    from rsir_stac.store.snapshot import snapshot as run

    r = run(index, out, force=force)
    click.echo(f"snapshot {r.snapshot}: {r.points} points, {r.files} files, {r.archive_bytes} bytes, verified")


@click.command()
@_embedded_only("restore")
@click.argument("snapshot_file", type=click.Path(dir_okay=False))
@click.option("--index", "index", required=True, type=click.Path(file_okay=False), help="Index folder to restore into.")
@click.option("--force", is_flag=True, help="Replace the collection already in --index.")
@_handle_errors
def restore(snapshot_file, index, force):
    """Restore SNAPSHOT_FILE into --index after verifying every file and point."""
    from rsir_stac.store.snapshot import restore as run

    r = run(snapshot_file, index, force=force)
    click.echo(f"restored {r.points} points into {r.index} (checksums and check passed)")


def _tiles(n: int) -> str:
    """``1 tile``, ``2 tiles``."""
    return f"{n} tile{'' if n == 1 else 's'}"
