"""What an ingest did: :class:`IngestReport` (counts, failed and empty items, why nothing was
indexed) and the :class:`IngestEvent` s the CLI shows progress with."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from rsir_stac.ingest.options import IngestOptions


@dataclass
class IngestReport:
    """What an ingest did; ``ok`` is False when any item or window failed."""

    items: int = 0
    items_done: int = 0
    items_failed: list[dict[str, str]] = field(default_factory=list)
    tiles_total: int = 0
    tiles_read: int = 0
    tiles_existing: int = 0
    tiles_relabelled: int = 0
    tiles_empty: int = 0
    #: Windows left out as no place on the Earth as the scene's CRS maps it (a geostationary disk's
    #: space, wholly past a curved projection's edge): not in ``tiles_total``, which counts the rest.
    tiles_off_earth: int = 0
    tiles_failed: list[str] = field(default_factory=list)
    items_empty: list[str] = field(default_factory=list)
    #: The empty items that are smaller than one tile at the GSD they were read at (why they are empty):
    #: ``{"item", "width", "height", "gsd", "hint"}`` (pixels at that GSD, metres, what to do).
    items_small: list[dict] = field(default_factory=list)
    #: Items whose STAC geometry does not overlap their asset's raster (the stored footprints follow
    #: the raster): ``{"item", "asset", "distance_km", "item_bbox", "raster_bbox"}``.
    items_misplaced: list[dict] = field(default_factory=list)
    #: Items whose corners are 0 in every band while the file marks no nodata (a black border read as
    #: pixels; :mod:`rsir_stac.ingest.fill`): their ids.
    items_unmasked_fill: list[str] = field(default_factory=list)
    #: Items whose local file changed (size or modification time) since their tiles were indexed: their
    #: tiles were embedded again (same ids, new vectors and payloads).
    items_changed: list[str] = field(default_factory=list)
    #: Items a forced ``--gsd`` enlarged beyond what the model was trained on (> 8x their own pixels):
    #: ``{"item", "native_gsd", "gsd", "factor"}`` (metres per pixel; their tiles are interpolated pixels).
    items_enlarged: list[dict] = field(default_factory=list)
    nothing_indexed: str = ""
    #: The warnings the run logged (``rsir_stac`` loggers; :func:`collect_warnings`), as
    #: ``{"logger", "message"}``: a GSD far from the model's, fill the file does not mark, ...  A run
    #: on the command line prints them as it goes; one a running ``serve`` made, from here.
    warnings: list[dict[str, str]] = field(default_factory=list)
    points_written: int = 0
    seconds: float = 0.0
    model_id: str = ""

    @property
    def ok(self) -> bool:
        """No item and no window failed (``nothing_indexed`` is reported separately)."""
        return not self.items_failed and not self.tiles_failed

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


#: The most warnings a report keeps (a folder of a thousand coarse scenes warns once each); a last
#: entry counts the rest.
MAX_WARNINGS = 1000


class _Run:
    """The run a thread works for: its report, and how many warnings it held no room for."""

    def __init__(self, report: IngestReport) -> None:
        self.report, self.more = report, 0


#: The run this thread (or a thread started for it, with its context) works for.
_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("rsir_ingest_run", default=None)


class _RunWarnings(logging.Handler):
    """Adds what the ``rsir_stac`` loggers warn to the report of the run in whose context it is logged
    (:func:`collect_warnings`); one, on the ``rsir_stac`` logger, for every run of the process."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if logging.lastResort is not None and not self._others_handle(record):
            logging.lastResort.handle(record)  # as Python prints it when no other handler takes it
        run = _RUN.get()
        if run is None:  # logged outside a run (or in a thread not started for one)
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call is no reason to stop a run
            return
        if len(run.report.warnings) < MAX_WARNINGS:
            run.report.warnings.append({"logger": record.name, "message": message})
        else:
            run.more += 1

    def _others_handle(self, record: logging.LogRecord) -> bool:
        """Whether another handler receives ``record`` (as ``Logger.callHandlers`` looks for them)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


_HANDLER = _RunWarnings()
_INSTALL = threading.Lock()


@contextlib.contextmanager
def collect_warnings(report: IngestReport) -> Iterator[None]:
    """Record in ``report.warnings`` what the ``rsir_stac`` loggers warn while the block runs, in this
    thread and in threads started with its context (``contextvars.copy_context().run``); they are
    logged as ever too (printed as Python prints them where logging is not set up)."""
    logger = logging.getLogger("rsir_stac")
    with _INSTALL:
        if _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)
    run = _Run(report)
    token = _RUN.set(run)
    try:
        yield
    finally:
        _RUN.reset(token)
        if run.more:
            report.warnings.append({"logger": "rsir_stac.ingest", "message": f"... and {run.more} more warnings, "
                                    "left out of this report"})


@dataclass(frozen=True)
class IngestEvent:
    """Progress for the CLI: ``items`` known, an item ``start``/``end``, ``tiles`` done."""

    kind: str
    item_id: str = ""
    n: int = 0
    total: int = 0


def small_scene_hint(width: int, height: int, tile: int, gsd: float, edge: str, min_valid: float = 0.5) -> str:
    """Why a scene of ``width`` x ``height`` px (at ``gsd`` m) gave no tile, and what to do: the share
    of its padded tiles that is the scene, and the ``--min-valid`` that would keep them."""
    narrow = width >= tile or height >= tile   # a strip: a row of padded tiles, not one
    what = f"{width}x{height} px at {gsd:.3g} m is {'narrower' if narrow else 'smaller'} than one {tile} px tile"
    if edge == "drop":
        return f"{what} and --edge drop keeps no partial tile; use --edge pad, --native-gsd or a finer --gsd"
    share = min(1.0, width / tile) * min(1.0, height / tile)
    step = 10.0 ** (math.floor(math.log10(share)) - 1) if share > 0 else 1.0
    keep = math.floor(share / step) * step if share > 0 else 0.0   # two digits, never above the share
    tiles = "padded tiles are" if narrow else "one padded tile is"
    return (f"{what}, so its {tiles} {share * 100:.2g}% scene, under --min-valid {min_valid:g}; read it with more pixels (a "
            "finer --gsd, without --native-gsd), give a smaller --tile-size, or pass "
            f"--min-valid {keep:.2g} to keep {'them' if narrow else 'the padded tile'}")


def _nothing_reason(report: IngestReport, scenes: list, options: IngestOptions) -> str:
    """Why a run without failures indexed no tile (empty string when that is expected)."""
    if not scenes:
        if options.shard is not None:
            return ""  # this worker's share of a small catalogue may be empty
        return "the sources hold no STAC items or rasters; check the catalogue's item links"
    if report.items_small and len(report.items_small) == len(report.items_empty):
        first = report.items_small[0]
        return f"the {len(report.items_small)} scene(s) are smaller than one tile (e.g. {first['hint']})"
    if not report.tiles_total:
        return (f"the {len(scenes)} scene(s) are smaller than one tile and --edge {options.edge} "
                "keeps no partial tiles; use --edge pad, --native-gsd or a finer --gsd")
    return (f"all {report.tiles_total} windows of {len(scenes)} scene(s) are nodata or less than "
            f"{options.min_valid:g} valid; check the nodata value/mask and --bands, or lower --min-valid")
