"""Label sets: tiles marked positive or negative, as a GeoJSON FeatureCollection.

One Feature per labelled tile, the same file whether it was made on the map
page, by the command line or by hand::

    {"type": "FeatureCollection",
     "rsir:model_id": "effnet-lite0-triplet-v1",          # optional: the model of the vectors
     "features": [
       {"type": "Feature", "id": "<point id>",
        "geometry": {"type": "Polygon", "coordinates": [[[lon, lat], ...]]},   # tile footprint
        "properties": {"point_id": "<point id>", "label": "positive", "note": "solar farm"}}]}

``point_id`` (or the Feature ``id``, or ``properties.id`` when it is a point id, as a GIS
saving the file keeps it) names a stored tile; ``label`` is
``positive`` or ``negative``; ``note`` and any other properties are kept.
The geometry is informative (the stored footprint is what counts) and may be null.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsir_stac.errors import InputError, SourceNotFoundError

log = logging.getLogger(__name__)

LABEL_VALUES = ("positive", "negative")
MODEL_KEY = "rsir:model_id"
#: Largest number of labels one set may hold.
MAX_LABELS = 10_000


@dataclass(frozen=True)
class Label:
    """One labelled tile: its point id, ``positive``/``negative``, footprint (GeoJSON geometry) and note;
    ``feature``: its Feature's number (from 1) in the file it was read from, for messages."""

    point_id: str
    label: str
    geometry: dict | None = None
    note: str | None = None
    properties: dict = field(default_factory=dict)
    feature: int | None = field(default=None, compare=False)

    @property
    def positive(self) -> bool:
        return self.label == "positive"


@dataclass(frozen=True)
class LabelSet:
    """Labels in file order (one per tile) and the model their tiles were embedded with (if known);
    ``source``: the file they were read from (as given), for messages; ``matched``: for a set read on an
    index of another model (:func:`rsir_stac.label_transfer.labels_in_index`), (the file's id, this
    index's id) of every label of the file, those that named a tile an earlier label named included."""

    labels: tuple[Label, ...]
    model_id: str | None = None
    source: str | None = field(default=None, compare=False)
    matched: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    #: What reading the file left out (unlabelled result rows, repeated tiles), as the warnings logged
    #: then: the HTTP API returns them in its answer's ``notes``.
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def positives(self) -> tuple[str, ...]:
        return tuple(lb.point_id for lb in self.labels if lb.positive)

    @property
    def negatives(self) -> tuple[str, ...]:
        return tuple(lb.point_id for lb in self.labels if not lb.positive)

    def __len__(self) -> int:
        return len(self.labels)

    def require_positive(self, what: str = "label set") -> LabelSet:
        """Raise InputError unless at least one label is positive."""
        if not self.positives:
            raise InputError(f"{what} has no positive label; mark at least one tile \"label\": \"positive\"")
        return self

    def to_geojson(self) -> dict[str, Any]:
        feats = []
        for lb in self.labels:
            props = {**lb.properties, "point_id": lb.point_id, "label": lb.label}
            if lb.note is not None:
                props["note"] = lb.note
            feats.append({"type": "Feature", "id": lb.point_id, "geometry": lb.geometry, "properties": props})
        doc: dict[str, Any] = {"type": "FeatureCollection"}
        if self.model_id:
            doc[MODEL_KEY] = self.model_id
        doc["features"] = feats
        return doc


def labels_from_geojson(doc: Any, what: str = "label set", *, tabular: bool = False) -> LabelSet:
    """Parse a label FeatureCollection (see the module docstring); ``tabular``: it was read from a
    vector file (CSV, GeoPackage...), whose labels are a column, for the messages.

    A row of search or classify output (it has a ``rank``) with no label is left out, with a warning:
    a hits file the analyst labelled some rows of is a label file.

    Raises InputError naming ``what`` for: not a FeatureCollection, a Feature
    without a point id or with a label other than positive/negative (an unlabelled Feature that is
    not a result row included), one tile labelled both ways, more than :data:`MAX_LABELS` labels,
    result rows none of which is labelled.
    """
    from rsir_stac.store.records import normalize_id

    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InputError(f"{what} is not a GeoJSON FeatureCollection; give {{\"type\": \"FeatureCollection\", "
                         "\"features\": [...]} with one Feature per labelled tile")
    feats = doc["features"]
    if len(feats) > MAX_LABELS:
        raise InputError(f"{what} has {len(feats)} labels; use at most {MAX_LABELS}")
    seen: dict[str, Label] = {}
    unlabelled: list[str] = []
    repeats: list[tuple[int, int, str]] = []  # (feature, the earlier feature, point id) of a tile labelled twice alike
    for n, feat in enumerate(feats, 1):
        props = feat.get("properties") if isinstance(feat, Mapping) else None
        props = dict(props) if isinstance(props, Mapping) else {}
        raw_id, key = _raw_point_id(feat, props)
        if raw_id is None or raw_id == "":
            raise InputError(f"{what}: feature {n} has no point id; give each Feature the stored tile's id as its "
                             "\"id\", in properties.point_id or in properties.id (as search --format geojson "
                             "writes them, and a GIS keeps them)")
        try:
            pid = normalize_id(raw_id)
        except InputError:
            raise InputError(f"{what}: feature {n} {key} {_quoted(raw_id)} is not a tile id (a UUID); "
                             "copy it from search results") from None
        raw_label = props.pop("label", None)
        label = str(raw_label or "").strip().lower()
        if not label and "rank" in props:   # a row of search or classify output the analyst left unlabelled
            unlabelled.append(pid)
            continue
        if raw_label is None:
            where = "row" if tabular else "feature"
            raise InputError(f"{what}: {where} {n} (point {pid}) has no label; set "
                             f"{'its label column' if tabular else 'properties.label'} to \"positive\" or "
                             f"\"negative\", or delete the {where}")
        if label not in LABEL_VALUES:
            raise InputError(f"{what}: feature {n} (point {pid}) has label {_quoted(raw_label)}; "
                             "use \"positive\" or \"negative\"")
        note = props.pop("note", None)
        geom = feat.get("geometry") if isinstance(feat.get("geometry"), Mapping) else None
        prev = seen.get(pid)
        if prev is not None and prev.label != label:
            raise InputError(f"{what}: feature {prev.feature} labels point {pid} {prev.label}, and feature {n} "
                             f"labels it {label}: one tile cannot be both positive and negative; keep one of the two")
        if prev is None:
            seen[pid] = Label(pid, label, dict(geom) if geom else None, None if note is None else str(note), props, n)
        else:
            repeats.append((n, prev.feature, pid))
    notes = []
    if repeats:  # the counts of a loaded file then add up to its features
        n, first, pid = repeats[0]
        many = "features repeat" if len(repeats) > 1 else "feature repeats"
        notes.append(f"{what}: {len(repeats)} {many} a tile an earlier feature labels the same way (feature {n} "
                     f"repeats feature {first}, point {pid}); each tile is kept once")
    if unlabelled:   # find all -> review -> refine: the hits file itself, some of its rows labelled
        if not seen:
            where = ("a label column" if tabular else "properties.label")
            raise InputError(f"{what} holds {len(unlabelled)} search or classify results and none is labelled; set "
                             f"{where} to \"positive\" or \"negative\" on the tiles to learn from (the "
                             "rows left unlabelled are then left out)")
        rows, used = len(unlabelled), len(seen)
        notes.append(f"{what}: {rows} result {'row' if rows == 1 else 'rows'} without a label "
                     f"{'was' if rows == 1 else 'were'} left out; {used} labelled {'tile is' if used == 1 else 'tiles are'} "
                     "used")
    for note in notes:
        log.warning("%s", note)
    model = doc.get(MODEL_KEY)
    return LabelSet(tuple(seen.values()), str(model) if model else None, notes=tuple(notes))


def _quoted(value: Any, most: int = 48) -> str:
    """``repr(value)``, cut to about ``most`` characters (a 20,000-character id filled the page's status
    and the API's 400-character detail before the message said what was wrong with it)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most - 12]}...{text[-8:]} ({len(str(value)):,} characters)"


def _is_point_id(value: Any) -> bool:
    from rsir_stac.store.records import normalize_id

    if not isinstance(value, str):
        return False
    try:
        normalize_id(value)
    except InputError:
        return False
    return True


def _raw_point_id(feat: Any, props: dict) -> tuple[Any, str]:
    """A Feature's point id and where it was found: ``properties.point_id``, else the Feature
    ``id``, else ``properties.id`` when that is a point id (a GIS saving the file, e.g. GDAL's
    GeoJSON driver, keeps the id only there and may number the Features itself)."""
    raw = props.pop("point_id", None)
    if raw is not None and raw != "":
        return raw, "point_id"
    fid = feat.get("id") if isinstance(feat, Mapping) else None
    if _is_point_id(fid):
        return fid, "id"
    if _is_point_id(props.get("id")):
        return props["id"], "properties.id"
    return fid, "id"


def read_labels(path: str | Path) -> LabelSet:
    """Read a label file: GeoJSON, or any vector format GDAL reads (a GeoPackage or Shapefile saved
    from a GIS, reprojected to lon/lat: :func:`rsir_stac.vector_file.read_vector_file`).
    SourceNotFoundError when missing, InputError when not a label FeatureCollection."""
    from rsir_stac.vector_file import is_json_text, read_vector_file

    p = Path(path).expanduser()
    try:
        if not is_json_text(p):  # a GeoPackage, Shapefile... saved from a GIS
            doc = read_vector_file(p, f"label file {p}", "give a GeoJSON file of labelled tiles")
            return _not_empty(labels_from_geojson(doc, f"label file {p}", tabular=True), p)
        text = p.read_text(encoding="utf-8-sig")  # a BOM is allowed (RFC 8259 8.1)
    except FileNotFoundError:
        raise SourceNotFoundError(f"label file {p} does not exist; check the path") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"label file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8 GeoJSON") from None
    except OSError as exc:
        raise InputError(f"label file {p} cannot be read ({exc.strerror or exc}); give a readable GeoJSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"label file {p} is not GeoJSON ({exc.msg} at line {exc.lineno}); "
                         "give a FeatureCollection of labelled tiles") from None
    except ValueError:  # Python's 4,300-digit limit on an integer
        raise InputError(f"label file {p} holds a number with more than 4,300 digits; give a FeatureCollection "
                         "of labelled tiles") from None
    except RecursionError:
        raise InputError(f"label file {p} is JSON nested too deeply; give a FeatureCollection of labelled "
                         "tiles") from None
    return _not_empty(labels_from_geojson(doc, f"label file {p}"), p)


def _read_from(labels: LabelSet, path: Path) -> LabelSet:
    """``labels`` that name ``path`` as their file (:attr:`LabelSet.source`)."""
    return dataclasses.replace(labels, source=str(path))


def _not_empty(labels: LabelSet, path: Path) -> LabelSet:
    """``labels`` (naming ``path`` as their file), or InputError naming the file when it holds no labelled
    tile (an empty FeatureCollection said only "label set has no positive label", naming neither the file
    nor the cause)."""
    labels = _read_from(labels, path)
    if not len(labels):
        raise InputError(f"label file {path} has no features, so no tile is labelled; add one Feature per "
                         "labelled tile (its point id and \"label\": \"positive\" or \"negative\"), e.g. from "
                         "search --format geojson, or the map page's Labels tab")
    return labels


def write_labels(labels: LabelSet, path: str | Path) -> Path:
    """Write ``labels`` as GeoJSON, atomically (temporary file, then rename)."""
    from rsir_stac.atomic import atomic_output

    target = Path(path).expanduser()
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(labels.to_geojson(), indent=1) + "\n", encoding="utf-8")
    return target


def footprint_geometry(payload: Mapping[str, Any]) -> dict | None:
    """A stored tile's footprint as GeoJSON (lon/lat): a Polygon, or a MultiPolygon cut at the
    antimeridian (RFC 7946), from its corners, else its bbox; None without either."""
    from rsir_stac.tiling.footprints import footprint_geometry as ring_geometry

    corners = payload.get("corners") or []
    try:
        ring = [(float(c["lon"]), float(c["lat"])) for c in corners]
    except (KeyError, TypeError, ValueError):
        ring = []
    outline = payload.get("outline")  # near a pole, very wide or bowed: the densified outline is the footprint
    if isinstance(outline, list) and len(outline) >= 3:  # a triangle: a corner the projection edge cuts off
        try:
            ring = [(float(p[0]), float(p[1])) for p in outline]
        except (TypeError, ValueError, IndexError):
            pass
    if len(ring) < 3:
        bbox = payload.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            return None
        w, s, e, n = (float(x) for x in bbox)
        ring = [(w, s), (e if e >= w else e + 360.0, s), (e if e >= w else e + 360.0, n), (w, n)]
        return ring_geometry(ring)
    return ring_geometry(ring, pole=_pole_of(payload.get("bbox")))


def _pole_of(bbox: Any) -> float | None:
    """90 / -90 when a stored bbox reaches that pole (the tile holds it, maybe on an edge), else None."""
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
        try:
            s, n = float(bbox[1]), float(bbox[3])
        except (TypeError, ValueError):
            return None
        if n >= 90.0:
            return 90.0
        if s <= -90.0:
            return -90.0
    return None


def make_labels(hits: Iterable[Any], label: str, *, model_id: str | None = None, note: str | None = None,
                keep: Sequence[str] = ("item_id", "collection", "datetime")) -> LabelSet:
    """A label set from stored points (:class:`~rsir_stac.store.SearchHit`), all with one label."""
    if label not in LABEL_VALUES:
        raise InputError(f"label {label!r} is unknown; use positive or negative")
    out = [Label(h.id, label, footprint_geometry(h.payload), note,
                 {k: h.payload[k] for k in keep if h.payload.get(k) is not None}) for h in hits]
    return LabelSet(tuple(out), model_id)


def merge(*sets: LabelSet) -> LabelSet:
    """Labels of several sets (a later label of the same tile replaces an earlier one)."""
    by_id: dict[str, Label] = {}
    model = None
    for s in sets:
        model = model or s.model_id
        if s.model_id and model and s.model_id != model:
            raise InputError(f"label sets of models {model} and {s.model_id} cannot be merged; use one model's labels")
        for lb in s.labels:
            by_id.pop(lb.point_id, None)
            by_id[lb.point_id] = lb
    return LabelSet(tuple(by_id.values()), model)


__all__ = ["Label", "LabelSet", "LABEL_VALUES", "MAX_LABELS", "footprint_geometry", "labels_from_geojson",
           "make_labels", "merge", "read_labels", "write_labels"]
