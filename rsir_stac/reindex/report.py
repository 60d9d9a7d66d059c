"""What a reindex did: :class:`ReindexReport` (points written, kept, failed; sources and
tiles that could not be read) and the :class:`ReindexEvent` s progress is shown with."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)


#: Tile error messages kept in the report (the count is always exact).
MAX_TILE_ERRORS = 100


@dataclass
class ReindexReport:
    """What a reindex did. ``complete``: every point of the old index is in the new one. ``ok``: the
    run did what it was asked, i.e. complete, or (``skip_missing``) every source that could not be read
    left out, no tile failed and some point is in the new index; the CLI's exit status is 0 exactly
    when ``ok``."""

    source: str = ""
    target: str = ""
    model_from: str = ""
    model_to: str = ""
    points_total: int = 0
    points_written: int = 0
    points_existing: int = 0
    tiles_failed: int = 0
    tile_errors: list[str] = field(default_factory=list)
    #: points whose tiles this version leaves out as no place on the Earth (wholly past a curved projection
    #: edge, space beyond a geostationary disk), one line a source in ``left_out``: not a failure
    points_left_out: int = 0
    left_out: list[str] = field(default_factory=list)
    sources_failed: list[dict[str, Any]] = field(default_factory=list)
    relocate_unmatched: list[str] = field(default_factory=list)
    tiling_kept: str = ""
    #: the run was asked to leave out sources that cannot be read (``reindex --skip-missing``)
    skip_missing: bool = False
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every point of the old index is in the new one (or left out as no place on the Earth)."""
        return not self.sources_failed and not self.tiles_failed

    @property
    def ok(self) -> bool:
        """The run did what it was asked: :attr:`complete`, or with ``skip_missing`` only whole sources
        failed (no tile of a readable source) and the new index holds some point."""
        if self.complete:
            return True
        return (self.skip_missing and not self.tiles_failed
                and bool(self.points_written or self.points_existing))

    @property
    def points_failed(self) -> int:
        """Points not written: unreadable tiles plus every tile of the sources that failed
        (written + existing + failed + left out = total)."""
        return self.tiles_failed + sum(int(e.get("tiles", 0)) for e in self.sources_failed)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["points_failed"] = self.points_failed
        d["complete"] = self.complete
        d["ok"] = self.ok
        return d


@dataclass(frozen=True)
class ReindexEvent:
    """Progress: ``total`` points to do, ``points`` done (written, existing or
    failed), a ``source_failed`` (its ``href``)."""

    kind: str
    n: int = 0
    href: str = ""


def _tile_failed(report: ReindexReport, message: str) -> None:
    report.tiles_failed += 1
    if len(report.tile_errors) < MAX_TILE_ERRORS:
        report.tile_errors.append(message)
    log.info("tile failed: %s", message)
