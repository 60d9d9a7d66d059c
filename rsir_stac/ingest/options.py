"""What an ingest is asked: :class:`IngestOptions` and the checks that refuse, before any
work, options that cannot be meant (sizes, GSD, collection names)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsir_stac.errors import InputError


@dataclass(frozen=True)
class IngestOptions:
    """How sources are tiled and written; ``None`` means "from the model bundle"."""

    asset: str | None = None
    bands: tuple[int, int, int] | None = None
    tile_size: int | None = None
    stride: int | None = None
    gsd: float | None = None
    native_gsd: bool = False
    max_upsample: float = 2.0
    edge: str = "shift"
    min_valid: float = 0.5
    batch_size: int | None = None  # tiles per forward pass; None: the embedder's default for the device
    queue_batches: int = 4
    fail_fast: bool = False
    shard: tuple[int, int] | None = None
    collection: str | None = None  # for bare rasters (STAC items keep their own)
    datetime: tuple[Any, Any] | None = None  # (start, end) for bare rasters; equal for an instant
    nodata: float | None = None  # a nodata value for sources that declare none (nor a mask or alpha)
    relabel: bool = True  # give indexed tiles of a bare raster this run's collection/datetime (HTTP jobs: opt-in)

    def __post_init__(self) -> None:
        if self.datetime is not None:
            object.__setattr__(self, "datetime", acquisition_time(self.datetime))


def acquisition_time(value: Any) -> tuple[Any, Any]:
    """``IngestOptions.datetime`` as ``(start, end)`` UTC datetimes: from the text ``ingest --datetime``
    takes (an instant, a date, a month or year, or ``START/END``), one ``datetime`` (an instant), or a
    ``(start, end)`` pair of either (a date as the end covers that day); a time without a zone is
    read as UTC.  Raises InputError for anything else, an open end, or an end before the start."""
    from datetime import datetime

    from rsir_stac.store.filter_parse import _as_utc, parse_acquisition_datetime

    if isinstance(value, str):
        return parse_acquisition_datetime(value, "datetime")
    if isinstance(value, datetime):
        return _as_utc(value), _as_utc(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (str, datetime)) for v in value):
        start = parse_acquisition_datetime(value[0], "datetime start")[0] if isinstance(value[0], str) \
            else _as_utc(value[0])
        end = parse_acquisition_datetime(value[1], "datetime end")[1] if isinstance(value[1], str) \
            else _as_utc(value[1])
        if end < start:
            raise InputError(f"datetime {value[0]}/{value[1]} ends before it starts; swap the two")
        return start, end
    raise InputError(f"datetime {value!r} is not an acquisition time; give a datetime, a (start, end) pair or the "
                     "text --datetime takes, e.g. '2020-06-01' or '2020-01-01/2020-12-31'")


def cli_flag(field: str) -> str:
    """An option's name on the command line: ``tile_size`` -> ``--tile-size``."""
    return "--" + field.replace("_", "-")


def check_options(options: IngestOptions, flag: Callable[[str], str] = cli_flag) -> None:
    """Refuse, before any work, sizes that cannot be meant: zero or negative pixels, a GSD
    that is not a positive number of metres, a tile outside
    :data:`~rsir_stac.tiling.scene.MIN_TILE`..:data:`~rsir_stac.tiling.scene.MAX_TILE` px,
    ``--gsd`` together with ``--native-gsd``, an unknown ``--edge``, a ``--min-valid`` outside
    0..1 (InputError naming the option as ``flag`` spells
    it: the CLI's ``--tile-size``, or the HTTP job's ``tile_size``)."""
    from rsir_stac.tiling.scene import MAX_TILE, MIN_TILE

    for field in ("tile_size", "stride", "batch_size"):
        value = getattr(options, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{flag(field)} {value!r} is invalid; give a positive whole number (leave it out for "
                             "the default)")
    if options.nodata is not None and (isinstance(options.nodata, bool) or not math.isfinite(float(options.nodata))):
        raise InputError(f"{flag('nodata')} {options.nodata!r} is invalid; give the pixel value that marks no data, "
                         "e.g. 0")
    if options.tile_size is not None and not MIN_TILE <= options.tile_size <= MAX_TILE:
        raise InputError(f"{flag('tile_size')} {options.tile_size} is outside {MIN_TILE}..{MAX_TILE} pixels; the "
                         "network sees every tile at 224 px, so give e.g. 256")
    if options.gsd is not None and not (math.isfinite(float(options.gsd)) and float(options.gsd) > 0):
        raise InputError(f"{flag('gsd')} {options.gsd!r} is invalid; give a positive number of metres per pixel, "
                         "e.g. 0.6")
    from rsir_stac.gsd import MAX_GSD_M, MIN_GSD_M

    if options.gsd is not None and not MIN_GSD_M <= float(options.gsd) <= MAX_GSD_M:
        raise InputError(f"{flag('gsd')} {options.gsd!r} is outside {MIN_GSD_M:g}..{MAX_GSD_M:g} metres per pixel; "
                         "give the ground sample distance in metres, e.g. 0.6")
    if options.gsd is not None and options.native_gsd:
        raise InputError(f"{flag('gsd')} and {flag('native_gsd')} were both given; keep one (a GSD in metres, or "
                         "each scene's own)")
    if options.collection is not None:
        check_collection_name(options.collection, flag("collection"))
    from rsir_stac.tiling.grid import EDGE_MODES

    if options.edge not in EDGE_MODES:
        raise InputError(f"{flag('edge')} {options.edge!r} is invalid; use one of {', '.join(EDGE_MODES)}")
    try:
        valid_ok = 0.0 <= float(options.min_valid) <= 1.0 and not isinstance(options.min_valid, bool)
    except (TypeError, ValueError):
        valid_ok = False
    if not valid_ok:
        raise InputError(f"{flag('min_valid')} {options.min_valid!r} is invalid; give the fraction of a tile that "
                         "must hold data, between 0 and 1 (e.g. 0.5)")


def check_collection_name(name: str, option: str = "--collection") -> None:
    """Refuse (InputError) a collection name (``option``, as the caller spells it) that is empty,
    over 200 characters or holds control or invisible formatting characters (a NUL, a line break,
    a right-to-left override): the name is stored in every tile, shown on the map page and written
    into exports."""
    import unicodedata

    if not name.strip():
        raise InputError(f"{option} is empty; give a name, e.g. naip-2020 (or leave it out)")
    if len(name) > 200:
        raise InputError(f"{option} {name[:40]!r}... is {len(name)} characters; give at most 200")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise InputError(f"{option} {name[:60]!r} holds the control character U+{ord(bad):04X}; give the name "
                         "without it, e.g. naip-2020")
    _check_stray_ends(name, option)


def _check_stray_ends(name: str, option: str) -> None:
    """Refuse a name with a comma or white space at either end (``'naip,'``, ``' naip'``): it would
    make a collection of that exact name, which a search for ``naip`` never finds (search's
    ``--collection 'naip,'`` gets the "one --collection takes one name" hint)."""
    import shlex

    stray = " \t,"
    if name[0] not in stray and name[-1] not in stray:
        return
    fixed = name.strip(stray)
    if not fixed:
        raise InputError(f"{option} {name!r} is only commas and spaces; give a name, e.g. naip-2020")
    end, char = ("starts", name[0]) if name[0] in stray else ("ends", name[-1])
    cli = option.startswith("--")
    fix = (f"{option} {shlex.quote(fixed)} (one --collection takes one name)" if cli
           else f"{option} {fixed[:60]!r}")
    raise InputError(f"{option} {name[:60]!r} {end} with {'a comma' if char == ',' else 'a space'}: names are "
                     f"exact, so its tiles would be in a collection {name[:60]!r} that a search for {fixed[:60]!r} "
                     f"never finds; give {fix}")
