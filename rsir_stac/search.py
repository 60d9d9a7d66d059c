"""Search by example: query (image file | stored point id | lon/lat) → vector →
filtered nearest neighbours in the store → :class:`SearchHit` records.

>>> with Index.open("rsir-index") as idx:                        # doctest: +SKIP
...     result = idx.search(at=(-95.36, 29.75), flt=SearchFilter(bbox=(-96, 29, -95, 30)), k=10)
...     for hit in result.hits: print(hit.score, hit.payload["item_id"])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir_stac.errors import IncompatibleIndexError, InputError
from rsir_stac.store import SearchFilter, SearchHit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """The hits of one search and what the query was."""

    query_kind: str  # "image" | "point" | "location"
    query_id: str | None
    query_payload: dict | None
    hits: tuple[SearchHit, ...]
    query_pixels: np.ndarray | None = None


def parse_lonlat(text: str) -> tuple[float, float]:
    """Parse ``"LON,LAT"``; InputError when malformed or out of range."""
    try:
        lon, lat = (float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"location {text!r} is invalid; use LON,LAT in degrees, e.g. --at -95.36,29.75") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"location {text!r} is out of range; LON must be within ±180 and LAT within ±90")
    return lon, lat


class Index:
    """A store plus the model bundle that made its vectors."""

    def __init__(self, store, bundle) -> None:
        self.store, self.bundle = store, bundle
        self._embedder = None

    @classmethod
    def open(cls, index: str | None = None, *, qdrant_url: str | None = None, api_key: str | None = None,
             model=None, read_only: bool = True) -> Index:
        """Open an index read-only with the bundle (default: the shipped model)."""
        from rsir_stac.model.bundle import ModelBundle, load_bundle
        from rsir_stac.store import open_store

        bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
        store = open_store(index, qdrant_url=qdrant_url, api_key=api_key, read_only=read_only)
        try:
            meta = store.meta()
            if meta is None:
                from rsir_stac.errors import StoreError

                raise StoreError(f"{store.describe()} is empty or missing; run `rsir-stac ingest` into it first")
            if meta.model_id != bundle.model_id or meta.dim != bundle.dim:
                where = (f"--index {store.location}" if store.backend == "edge"
                         else f"--qdrant-url {store.location} --collection {store.collection}")
                raise IncompatibleIndexError(
                    f"{store.describe()} was built with model {meta.model_id} ({meta.dim}-d), not "
                    f"{bundle.model_id} ({bundle.dim}-d); pass --model with the bundle that built it, or move the "
                    f"index to this model with `rsir-stac reindex {where} --to NEW --model {bundle.path}`"
                )
        except BaseException:
            store.close()
            raise
        return cls(store, bundle)

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self.bundle.embedder()
        return self._embedder

    def embed_image(self, pixels: np.ndarray) -> np.ndarray:
        return self.embedder.embed([pixels])[0]

    def search(self, *, image: str | None = None, point_id: str | None = None,
               at: tuple[float, float] | None = None, pixels: np.ndarray | None = None,
               flt: SearchFilter | None = None, k: int = 10, include_query: bool = False) -> SearchResult:
        """Nearest stored tiles to one query; exactly one of image / point_id / at / pixels."""
        given = [x is not None for x in (image, point_id, at, pixels)]
        if sum(given) != 1:
            raise InputError("give exactly one query: --image FILE, --point-id ID or --at LON,LAT")
        qid, qpayload, qpixels = None, None, None
        if image is not None or pixels is not None:
            from rsir_stac.tiling import read_image

            qpixels = read_image(image) if image is not None else pixels
            vector, kind = self.embed_image(qpixels), "image"
        else:
            hit = (self.store.retrieve([point_id], with_vectors=True)[0] if point_id is not None
                   else self.store.point_at(*at, with_vectors=True))
            vector, qid, qpayload = hit.vector, hit.id, hit.payload
            kind = "point" if point_id is not None else "location"
        exclude = () if include_query or qid is None else (qid,)
        hits = self.store.search(vector, k=k, flt=flt, exclude_ids=exclude)
        return SearchResult(kind, qid, qpayload, tuple(hits), qpixels)


def excluded_notes(store, flt: SearchFilter | None) -> list[str]:
    """Lines saying how many stored tiles a date or collection filter leaves out
    because they have no date / no collection (bare rasters ingested without
    ``--datetime`` / ``--collection``); empty when none are."""
    from rsir_stac.store.filters import SearchFilter as Filter

    notes = []
    if flt is not None and (flt.start is not None or flt.end is not None):
        n = store.count(Filter(missing=("datetime",)))
        if n:
            notes.append(f"{n} tiles in the index have no date, so --datetime leaves them out; "
                         "give bare rasters a date with `rsir-stac ingest --datetime`")
    if flt is not None and flt.collections:
        n = store.count(Filter(missing=("collection",)))
        if n:
            notes.append(f"{n} tiles in the index have no collection, so --collection leaves them out; "
                         "give bare rasters one with `rsir-stac ingest --collection NAME`")
    return notes


def hit_record(hit: SearchHit) -> dict[str, Any]:
    """A flat JSON-friendly record of one hit."""
    return {"id": hit.id, "distance": hit.score, **hit.payload}


def to_geojson(result: SearchResult) -> dict[str, Any]:
    """A FeatureCollection of result footprints (polygons, lon/lat; MultiPolygons cut at
    the antimeridian) with rank, distance and payload."""
    from rsir_stac.tiling.footprints import footprint_geometry

    feats = []
    for rank, hit in enumerate(result.hits, 1):
        ring = [(c["lon"], c["lat"]) for c in hit.payload.get("corners", [])]
        geom = footprint_geometry(ring) if ring else None  # cut at the antimeridian (RFC 7946)
        props = {"rank": rank, "distance": hit.score, "id": hit.id}
        for key, value in hit.payload.items():
            if key in ("corners",):
                continue
            props[key] = value if not isinstance(value, (dict, list)) else _flat(value)
        feats.append({"type": "Feature", "id": hit.id, "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats,
            "query": {"kind": result.query_kind, "id": result.query_id}}


def _flat(value: Any) -> Any:
    # QGIS shows nested JSON as text; keep it compact
    import json

    return json.dumps(value, separators=(",", ":"))
