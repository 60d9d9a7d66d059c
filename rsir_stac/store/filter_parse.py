"""Filter values from the outside: validation of lon/lat bounds and their parsing.

Boxes (``W,S,E,N``), radii (``LON,LAT,RADIUS_M``) and rings are checked here
(:class:`~rsir_stac.store.filters.SearchFilter` validates with the same rules),
and read from text: numbers (:func:`plain_float`), datetime ranges as STAC API
search and pystac-client read them (:func:`parse_datetime_range`), and GeoJSON
search areas (:func:`load_polygon`, :func:`polygon_from_geojson`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from rsir_stac.errors import InputError, RsirError, SourceNotFoundError
from rsir_stac.store.areas import GeoArea, Ring, check_ring

BBox = tuple[float, float, float, float]

log = logging.getLogger(__name__)


def _as_utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"datetime bound {value!r} is not a datetime; pass datetime objects")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


# --------------------------------------------------------------------------- validation


def _finite(values: Sequence[float], what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} {tuple(values)} has a non-finite number; give plain decimal degrees")


def _check_lonlat(lon: float, lat: float, what: str) -> None:
    if not -180.0 <= lon <= 180.0:
        if -540.0 <= lon <= 540.0:  # degrees, counted past 180
            raise InputError(f"{what}: longitude {lon} is outside -180..180; give it as {(lon + 180.0) % 360.0 - 180.0:g} "
                             "(a box across 180 has W > E, e.g. --bbox=170,60,-170,70)")
        raise InputError(f"{what}: longitude {lon} is outside -180..180; give lon/lat in degrees (EPSG:4326)")
    if not -90.0 <= lat <= 90.0:
        swapped = " (longitude comes first: are the two swapped?)" if -90.0 <= lon <= 90.0 and -180.0 <= lat <= 180.0 else ""
        raise InputError(f"{what}: latitude {lat} is outside -90..90; give lon/lat in degrees (EPSG:4326){swapped}")


def _check_bbox(b: tuple[float, ...], what: str) -> BBox:
    if len(b) != 4:
        raise InputError(f"{what} {b} must have 4 numbers W,S,E,N")
    _finite(b, what)
    w, s, e, n = b
    _check_lonlat(w, s, what)
    _check_lonlat(e, n, what)
    if s >= n:
        shown = what if "'" in what else f"{what} {w},{s},{e},{n}"  # parse_bbox's name quotes the values already
        raise InputError(f"{shown} has south {s} >= north {n}; give W,S,E,N with S < N")
    return (w, s, e, n)


def _check_near(v: tuple[float, ...], what: str) -> tuple[float, float, float]:
    if len(v) != 3:
        raise InputError(f"{what} {v} must have 3 numbers LON,LAT,RADIUS_M")
    _finite(v, what)
    lon, lat, radius = v
    _check_lonlat(lon, lat, what)
    if radius <= 0:
        raise InputError(f"{what} radius {radius} m is not positive; give LON,LAT,RADIUS_M with RADIUS_M > 0")
    return (lon, lat, radius)


def _check_ring(ring: Ring, what: str) -> Ring:
    """One closed, valid ring (see :func:`rsir_stac.store.areas.check_ring`)."""
    GeoArea.from_rings(ring, (), what)
    return check_ring(ring, what)


# --------------------------------------------------------------------------- parsers


def plain_float(text: str) -> float:
    """``float(text)``, less Python's digit separators: ``1_0`` is 10 to ``float()`` but a typo to
    anyone else (ValueError).  ``nan`` and ``inf`` parse, for the range checks to name them."""
    if "_" in text:
        raise ValueError(f"not a plain decimal number: {text!r}")
    return float(text)


def _numbers(text: str, n: int, what: str, form: str) -> tuple[float, ...]:
    parts = [p.strip() for p in str(text).strip().split(",")]
    if len(parts) != n:
        raise InputError(f"{what} {text!r} must be {form} ({n} comma-separated numbers)")
    try:
        return tuple(plain_float(p) for p in parts)
    except ValueError:
        raise InputError(f"{what} {text!r} must be {form} with plain decimal numbers; write each as digits "
                         "with an optional sign, point and exponent (no _)") from None


def parse_bbox(text: str) -> BBox:
    """Parse ``"W,S,E,N"`` (decimal degrees) into a validated tuple."""
    return _check_bbox(_numbers(text, 4, "bbox", "W,S,E,N"), f"bbox {text!r}")


def parse_near(text: str) -> tuple[float, float, float]:
    """Parse ``"LON,LAT,RADIUS_M"`` into a validated tuple."""
    return _check_near(_numbers(text, 3, "near", "LON,LAT,RADIUS_M"), f"near {text!r}")


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$"
)


def _parse_instant(text: str, *, end: bool) -> datetime:
    """Parse one RFC 3339 datetime or date, or a year (``2015``) or month (``2015-06``), as
    pystac-client reads them; a date, month or year as END means the end of that period."""
    period = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", text.strip())
    if period:
        year, month = int(period.group(1)), int(period.group(2) or 0)
        if not 1 <= year <= 9999 or (period.group(2) and not 1 <= month <= 12):
            raise ValueError(text)
        if not end:
            return datetime(year, month or 1, 1, tzinfo=timezone.utc)
        import calendar

        last = month or 12
        return datetime(year, last, calendar.monthrange(year, last)[1], 23, 59, 59, 999999, tzinfo=timezone.utc)
    m = _RFC3339.match(text)
    if not m or datetime_problem(text):  # Python takes some impossible ones (an offset of +05:99)
        raise ValueError(text)
    if m.group(4) is None:  # a plain date
        d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        dt = datetime.combine(d, time(0, 0), tzinfo=timezone.utc)
        return dt + timedelta(days=1, microseconds=-1) if end else dt
    iso = text[:10] + "T" + text[11:]
    if iso[-1] in "zZ":
        iso = iso[:-1] + "+00:00"
    frac = m.group(7)
    if m.group(6) == "60":  # an RFC 3339 leap second (23:59:60Z): the last instant of its minute
        leap = leap_second_as_last_instant(text)
        if leap is None:
            raise ValueError(text)
        return leap
    if frac and len(frac) > 7:  # keep microseconds; Python rejects longer fractions on 3.10
        iso = iso.replace(frac, frac[:7], 1)
    dt = datetime.fromisoformat(iso)
    return _as_utc(dt)


def leap_second_as_last_instant(text: str) -> datetime | None:
    """An RFC 3339 time with a leap second (``2016-12-31T23:59:60Z``, or the same instant in
    another offset: ``2017-01-01T05:29:60+05:30``) as the last microsecond of its minute, UTC,
    as Python's and dateutil's parsers cannot hold second 60; None when ``text`` is no such time.

    A second 60 is a leap second only at 23:59 UTC (RFC 3339 §5.7, ITU-R TF.460); at any other
    minute (``10:20:60Z``) it is an invalid time, and None says so.
    """
    m = _RFC3339.match(str(text).strip())
    if not m or m.group(6) != "60":
        return None
    t = str(text).strip()
    iso = t[:10] + "T" + t[11:17] + "59.999999" + t[19 + len(m.group(7) or ""):]
    if iso[-1] in "zZ":
        iso = iso[:-1] + "+00:00"
    try:
        dt = _as_utc(datetime.fromisoformat(iso))
    except ValueError:
        return None
    return dt if (dt.hour, dt.minute) == (23, 59) else None


#: The parts of one instant of a datetime text, for :func:`datetime_problem`.
_PARTS = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                    r"([Zz]|[+-](\d{2}):?(\d{2}))?)?)?)?$")


def datetime_problem(text: str) -> str | None:
    """Why one RFC 3339 datetime, date, month or year names no real moment (``there is no month
    13``, ``2021-02 has 28 days, no day 29``, hour 24, a second 60 that is no leap second), or
    None when it does or when ``text`` is not of that shape at all.  The web page's Dates box
    says the same (``rsir_stac/web/state.js``)."""
    import calendar

    m = _PARTS.match(str(text).strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, _frac, zone, oh, om = m.groups()
    if int(y) < 1:
        return "there is no year 0000"
    if mo and not 1 <= int(mo) <= 12:
        return f"there is no month {mo} (months are 01..12)"
    if d:
        days = calendar.monthrange(int(y), int(mo))[1]
        if not 1 <= int(d) <= days:
            return f"{y}-{mo} has {days} days, no day {d} (its last is {y}-{mo}-{days:02d})"
    if hh and int(hh) > 23:
        return f"there is no hour {hh} (hours are 00..23)"
    if mi and int(mi) > 59:
        return f"there is no minute {mi} (minutes are 00..59)"
    if oh and (int(oh) > 23 or int(om) > 59):
        return f"there is no time zone offset {zone}"
    if ss and int(ss) > 60:
        return f"there is no second {ss} (seconds are 00..59, 60 for a leap second)"
    if ss == "60" and leap_second_as_last_instant(text) is None:
        return "second 60 is a leap second only at 23:59 UTC (RFC 3339)"
    return None


#: A date, or a date and time, then a time zone RFC 3339 does not read (for :func:`datetime_zone_fix`):
#: an offset of hours only (``+05``, ``+5``), a zone name (`` UTC``, ``GMT``), a name with an offset
#: (``GMT+2``, ``UTC-03:30``), a zone abbreviation (``EST``, ``CET``), or a space before ``Z`` or the offset.
_ZONE_SLIP = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})(?P<time>[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
                        r"(?:(?P<hours>[+-]\d{1,2})"
                        r"|\s*(?:UTC|GMT)\s*(?P<named>[+-]\d{1,2}(?::?\d{2})?)"
                        r"|\s*(?P<name>UTC|GMT|Z)"
                        r"|\s+(?P<spaced>[+-]\d{2}:?\d{2})"
                        r"|\s*(?P<abbr>[A-Za-z]{2,5}))$",
                        re.IGNORECASE)


def _offset(text: str) -> str:
    """``+5``, ``+05``, ``+0530``, ``+5:30`` as RFC 3339 writes an offset: ``+05:00``, ``+05:30``."""
    sign, rest = text[0], text[1:]
    hours, _, minutes = rest.partition(":")
    if not minutes and len(hours) > 2:
        hours, minutes = hours[:-2], hours[-2:]
    return f"{sign}{int(hours):02d}:{minutes or '00'}"


def datetime_zone_fix(text: str) -> tuple[str, str | None] | None:
    """``(what is wrong, the text written right)`` for one datetime whose time zone RFC 3339 does not
    read: an offset without minutes or with one hour digit (``+05``, ``+5``: ``+05:00``), a zone name
    (``UTC``, ``GMT``: ``Z``, or nothing after a date alone, a whole UTC day), a name with an offset
    (``GMT+2``: ``+02:00``) or a space before the zone.  A zone abbreviation (``EST``) gets the
    reason and None for the text: its offset is not ours to guess.  None for any other text."""
    m = _ZONE_SLIP.match(str(text).strip())
    if not m:
        return None
    base = m.group("date") + (m.group("time") or "")
    if m.group("hours"):
        if not m.group("time"):
            return None  # 2020-01-05 is a date, not a date and an offset
        hours = m.group("hours")
        why = f"its offset {hours} has {'one hour digit and ' if len(hours) == 2 else ''}no minutes"
        return why, f"{base}{_offset(hours)}"
    if m.group("named"):
        name = m.group(0)[len(base):].strip()
        return f"{name!r} is not an RFC 3339 offset", (f"{base}{_offset(m.group('named'))}" if m.group("time") else base)
    if m.group("spaced"):
        return "it has a space before its offset", f"{base}{_offset(m.group('spaced'))}"
    if m.group("abbr"):
        if not m.group("time"):
            return None
        abbr = m.group("abbr")
        return (f"{abbr!r} is not an RFC 3339 time zone (a zone's name is not read); write the time with the "
                f"zone's offset from UTC, e.g. {base}+01:00 for one hour east of Greenwich, or {base}Z for UTC", None)
    name = m.group("name")
    if not m.group("time"):
        return f"a date takes no time zone ({name!r}: a date is a whole UTC day)", base
    if name.upper() == "Z":
        return "it has a space before its Z", f"{base}Z"
    return f"{name!r} is not an RFC 3339 time zone (Z is UTC)", f"{base}Z"


def _parses(text: str) -> bool:
    """Whether ``text`` is a datetime :func:`parse_datetime_range` reads."""
    try:
        _parse_range(text, RANGE_FORM)
    except InputError:
        return False
    return True


def naive_datetime_note(text: str | None, what: str = "--datetime") -> str | None:
    """A short note when a bound of the datetime ``text`` gives a time of day without a time zone
    (read as UTC), else None: a date, month or year alone is a whole UTC period and gets none."""
    if not text:
        return None
    for part in str(text).split("/"):
        m = _PARTS.match(part.strip())
        if m and m.group(4) is not None and m.group(8) is None:
            return (f"{what} {part.strip()} has no time zone, so it is read as UTC; add Z or an offset "
                    "(e.g. +02:00) to say otherwise")
    return None


#: The forms of a datetime filter, for messages.
RANGE_FORM = ("START/END with RFC 3339 datetimes, dates, months or years, e.g. 2020-01-01/2020-12-31T23:59:59Z or "
              "2015; '..' for an open end")
#: The forms of an acquisition time (ingest's ``--datetime``), for messages.
ACQUISITION_FORM = ("an instant or START/END with RFC 3339 datetimes or dates, e.g. 2020-06-01T10:30:00Z, "
                    "2020-06-01 or 2020-01-01/2020-12-31")


def _parse_range(text: str, form: str) -> tuple[datetime | None, datetime | None]:
    raw = str(text).strip()
    parts = raw.split("/")
    if len(parts) > 2 or not raw:
        raise InputError(f"datetime {text!r} must be {form}")
    try:
        if len(parts) == 1:
            start = _parse_instant(parts[0], end=False)
            end = _parse_instant(parts[0], end=True)
        else:
            a, b = (p.strip() for p in parts)
            start = None if a in ("", "..") else _parse_instant(a, end=False)
            end = None if b in ("", "..") else _parse_instant(b, end=True)
    except ValueError:
        fixes = [datetime_zone_fix(p) for p in parts]
        for part, fix in zip(parts, fixes):
            if fix and fix[1] is None:   # a zone abbreviation: the reason, no text to give
                where = f"in {part.strip()!r}, " if len(parts) > 1 else ""
                raise InputError(f"datetime {text!r} is not RFC 3339: {where}{fix[0]}") from None
            problem = datetime_problem(fix[1] if fix else part)
            if problem:
                where = f"in {part.strip()!r}, " if len(parts) > 1 else ""
                raise InputError(f"datetime {text!r} names no real time: {where}{problem}; give a date or "
                                 "time that exists") from None
        right = "/".join(f[1] if f else p.strip() for f, p in zip(fixes, parts))
        if any(fixes) and all(_parses(f[1]) for f in fixes if f):
            why = next(f[0] for f in fixes if f)
            raise InputError(f"datetime {text!r} is not RFC 3339: {why}; write {right} (offsets are +HH:MM, e.g. "
                             "+05:00, or Z for UTC)") from None
        raise InputError(f"datetime {text!r} must be {form}") from None
    if start is None and end is None:
        raise InputError(f"datetime {text!r} has no bound; give START, END or both")
    if start is not None and end is not None and start > end:
        raise InputError(f"datetime {text!r} ends before it starts; swap START and END")
    return start, end


def parse_datetime_range(text: str) -> tuple[datetime | None, datetime | None]:
    """Parse ``"START/END"``, ``"START/.."``, ``"../END"`` or a single instant.

    Bounds are RFC 3339 datetimes or dates, or a year or month (a date as START is
    00:00:00, as END 23:59:59.999999; a single date, month or year covers that period:
    ``2015`` is the whole year, as pystac-client reads it).  Naive times are UTC
    (:func:`naive_datetime_note` says so); a leap
    second (``23:59:60Z``, at 23:59 UTC only) is read as 23:59:59.999999
    (:func:`leap_second_as_last_instant`).  A date or time that does not exist (month 13,
    29 February 2021, hour 24) is refused naming the impossible part (:func:`datetime_problem`).
    Returned datetimes are timezone-aware UTC; ``None`` is an open end.
    """
    return _parse_range(text, RANGE_FORM)


def parse_acquisition_datetime(text: str, what: str = "--datetime") -> tuple[datetime, datetime]:
    """The acquisition time given to bare rasters (ingest's ``--datetime``): an instant or a
    closed ``START/END`` interval as :func:`parse_datetime_range` reads them (a date, month or
    year covers that period), as ``(start, end)``.  An open end is refused; a time of day without
    a time zone is read as UTC and logged as a warning once."""
    start, end = _parse_range(text, ACQUISITION_FORM)
    if start is None or end is None:
        raise InputError(f"{what} {text!r} has an open end; give an instant or START/END, "
                         "e.g. 2020-06-01T10:30:00Z or 2020-01-01/2020-12-31")
    note = naive_datetime_note(text, what)
    if note:
        log.warning("%s", note)
    return start, end


def load_polygon(path: str | Path) -> GeoArea:
    """Read the search area of a GeoJSON file (lon/lat, EPSG:4326; or any vector format GDAL reads,
    reprojected: :func:`rsir_stac.vector_file.read_vector_file`): a Polygon
    (holes allowed), MultiPolygon, Feature, FeatureCollection (the union of its
    features) or GeometryCollection of them; see :class:`GeoArea`."""
    doc = polygon_document(path)
    return polygon_from_geojson(doc, f"polygon file {Path(path)}", close=False)


def polygon_document(path: str | Path) -> Any:
    """The GeoJSON document of a polygon file (GeoJSON text, or another vector format read
    through GDAL and reprojected to lon/lat), not yet checked as an area (:func:`load_polygon`).
    Raises SourceNotFoundError (missing) and InputError (unreadable, not JSON, not a vector file)."""
    from rsir_stac.vector_file import is_json_text, read_vector_file

    p = Path(path)
    if not p.is_file():
        raise SourceNotFoundError(f"polygon file {p} does not exist; give a GeoJSON file path")
    try:
        if not is_json_text(p):  # a GeoPackage, Shapefile, KML... saved from a GIS
            doc = read_vector_file(p, f"polygon file {p}", "give a GeoJSON Polygon")
        else:
            doc = json.loads(p.read_text(encoding="utf-8-sig"))  # a BOM is allowed (RFC 8259 8.1)
    except UnicodeDecodeError as exc:
        raise InputError(f"polygon file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8 GeoJSON") from None
    except OSError as exc:
        raise InputError(f"polygon file {p} cannot be read ({exc.strerror or exc}); give a readable GeoJSON "
                         "file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"polygon file {p} is not valid JSON ({exc}); give a GeoJSON Polygon") from None
    except RsirError:
        raise  # read_vector_file's own one-line error (an InputError is a ValueError too)
    except ValueError:  # Python's 4,300-digit limit on an integer
        raise InputError(f"polygon file {p} holds a number with more than 4,300 digits; give a GeoJSON Polygon "
                         "in degrees") from None
    except RecursionError:
        raise InputError(f"polygon file {p} is JSON nested too deeply; give a GeoJSON Polygon") from None
    return doc


#: Names a legacy GeoJSON ``crs`` member may give for lon/lat (RFC 7946 dropped the member; its
#: coordinates are always WGS 84 lon/lat).
LONLAT_CRS_NAMES = ("urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "OGC:CRS84", "CRS84",
                    "EPSG:4326", "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG:4326")


def _check_geojson_crs(doc: Any, what: str) -> None:
    """Refuse a pre-RFC 7946 ``crs`` member naming another CRS (its coordinates are not lon/lat)."""
    name = _crs_name(doc)
    if name and name not in LONLAT_CRS_NAMES:
        raise InputError(f"{what} declares the CRS {name!r}; GeoJSON areas must be lon/lat (RFC 7946): reproject "
                         "it, e.g. `ogr2ogr -t_srs EPSG:4326 out.geojson in.geojson`")


def polygon_from_geojson(doc: Any, what: str = "polygon", *, close: bool = True) -> GeoArea:
    """The validated :class:`GeoArea` of a GeoJSON Polygon, MultiPolygon,
    Feature, FeatureCollection or GeometryCollection; with ``close``, rings that
    are not closed are closed (the first position repeated), else refused."""
    from rsir_stac.store.areas import _polygon_coords

    _check_geojson_crs(doc, what)
    polys = []
    crossing = None
    for coords, where in _polygon_coords(doc, what):
        if not isinstance(coords, list) or not coords or not all(isinstance(r, list) for r in coords):
            raise InputError(f"{where} has no coordinates; give a GeoJSON Polygon with rings of [lon, lat]")
        for ring in coords:
            for pos in ring:
                if (not isinstance(pos, list) or len(pos) < 2
                        or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pos[:2])):
                    raise InputError(f"{where} has a bad position {pos!r}; positions are [lon, lat]")
        try:
            one = GeoArea.from_rings(coords[0], coords[1:], where, close=close)
            polys.extend(one.polygons)
            crossing = crossing or one.crossing
        except InputError as err:
            named = _crs_name(doc)
            if named and "EPSG" in named and "latitude" in str(err) and "outside" in str(err):
                raise InputError(f"{err}; the file's crs member names {named}, whose axis order is latitude, "
                                 "longitude: GeoJSON (RFC 7946) is longitude, latitude, so swap them, e.g. "
                                 "`ogr2ogr -lco RFC7946=YES out.geojson in.geojson`") from None
            raise
    return GeoArea(tuple(polys), crossing)


def _crs_name(doc: Any) -> str | None:
    """The name of a legacy GeoJSON ``crs`` member, or None."""
    crs = doc.get("crs") if isinstance(doc, dict) else None
    props = crs.get("properties") if isinstance(crs, dict) else None
    name = props.get("name") if isinstance(props, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else None


__all__ = ["BBox", "LONLAT_CRS_NAMES", "datetime_problem", "load_polygon", "naive_datetime_note",
           "parse_acquisition_datetime", "parse_bbox", "parse_datetime_range", "parse_near", "plain_float",
           "polygon_from_geojson"]
