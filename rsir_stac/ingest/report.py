"""What an ingest did: :class:`IngestReport` (counts, failed and empty items, why nothing was
indexed) and the :class:`IngestEvent` s the CLI shows progress with."""

from __future__ import annotations

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


@dataclass(frozen=True)
class IngestEvent:
    """Progress for the CLI: ``items`` known, an item ``start``/``end``, ``tiles`` done."""

    kind: str
    item_id: str = ""
    n: int = 0
    total: int = 0


def small_scene_hint(width: int, height: int, tile: int, gsd: float, edge: str) -> str:
    """Why a scene of ``width`` x ``height`` px (at ``gsd`` m) gave no tile, and what to do."""
    what = f"{width}x{height} px at {gsd:.3g} m is smaller than one {tile} px tile"
    if edge == "drop":
        return f"{what} and --edge drop keeps no partial tile; use --edge pad, --native-gsd or a finer --gsd"
    return (f"{what}, so its one padded tile is mostly empty; read it with more pixels (a finer --gsd, "
            "without --native-gsd), give a smaller --tile-size, or lower --min-valid to keep the padded tile")


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
