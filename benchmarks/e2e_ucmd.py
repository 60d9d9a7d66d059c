"""End-to-end proof: UCMD test split → georeferenced mosaic → ingest → search.

1. Builds a GeoTIFF mosaic (EPSG:32615, 0.3 m) of the UCMD test split
   recorded in the model bundle, one 256×256 cell per image (smaller images
   are padded with black at the bottom/right; 0 is nodata, so the unused
   cells at the end of the grid are skipped as empty).
2. Ingests it into a fresh embedded (Qdrant Edge) index with tiles aligned to
   the cells (tile = stride = 256 px at 0.3 m).
3. Queries every cell by its stored point id through the search path, ranks
   all other cells, and computes mAP from the cells' class labels.  This must
   match ``rsir-stac evaluate --split test`` on the same images within 0.005.
4. Runs bbox, radius and polygon filtered searches and checks that every hit
   lies inside the filter (``filter_violations``) and that the filtered hits
   equal a brute-force numpy search over the same stored points
   (``filtered_mismatches``).

Ends by printing one JSON line.  Usage::

    python benchmarks/e2e_ucmd.py [--data ../shared/data/ucmerced] [--model BUNDLE] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CELL = 256
GSD = 0.3
ORIGIN = (500000.0, 3300000.0)  # UTM 15N, easting/northing of the mosaic's top-left corner


def build_mosaic(paths, path: Path) -> tuple[int, int]:
    import rasterio
    from rasterio.transform import from_origin

    from rsir_stac.model.data import load_rgb

    n = len(paths)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    profile = dict(driver="GTiff", width=cols * CELL, height=rows * CELL, count=3, dtype="uint8",
                   crs="EPSG:32615", transform=from_origin(ORIGIN[0], ORIGIN[1], GSD, GSD),
                   tiled=True, blockxsize=CELL, blockysize=CELL, compress="deflate", nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        for i, p in enumerate(paths):
            im = load_rgb(p)[:CELL, :CELL]
            cell = np.zeros((CELL, CELL, 3), np.uint8)
            cell[: im.shape[0], : im.shape[1]] = im
            r, c = divmod(i, cols)
            dst.write(cell.transpose(2, 0, 1), window=rasterio.windows.Window(c * CELL, r * CELL, CELL, CELL))
    return cols, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("RSIR_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--data", default=str(Path(default) / "ucmerced"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N test images (quick runs).")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from rsir_stac.evaluate import average_precision, evaluate_folder, retrieval_metrics
    from rsir_stac.ingest import IngestOptions, ingest
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.data import scan_image_folder, stratified_split
    from rsir_stac.search import Index
    from rsir_stac.store import SearchFilter
    from rsir_stac.store.filters import matches

    if not Path(args.data).is_dir():
        sys.exit(f"UCMD folder {args.data} not found; pass --data or set RSIR_DATA")
    bundle = load_bundle(args.model)
    folder = scan_image_folder(args.data)
    tr = bundle.meta["training"]
    _, test_ix = stratified_split(folder.labels, tr.get("test_fraction", 0.2), tr.get("split_seed", 0))
    if args.limit:
        test_ix = test_ix[: args.limit]
    paths = [folder.paths[i] for i in test_ix]
    labels = folder.labels[test_ix]

    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsir-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    mosaic, index = work / "ucmd_test_mosaic.tif", work / "index"
    t0 = time.time()
    cols, rows = build_mosaic(paths, mosaic)
    t_mosaic = time.time() - t0
    t0 = time.time()
    report = ingest([str(mosaic)], index=str(index), model=bundle,
                    options=IngestOptions(tile_size=CELL, stride=CELL, gsd=GSD, edge="drop"))
    t_ingest = time.time() - t0

    with Index.open(str(index), model=bundle) as idx:
        pts = list(idx.store.iter_points(with_vectors=True))
        cell_of = {}
        for p in pts:
            g = p.payload["grid"]
            cell_of[p.id] = (g["row_off"] // CELL) * cols + g["col_off"] // CELL
        ids = [p.id for p in pts if cell_of[p.id] < len(paths)]
        label_of = {i: int(labels[cell_of[i]]) for i in ids}
        n = len(ids)
        # 1. mAP through the search path: every cell queries all other cells
        t0 = time.time()
        aps, lat = [], []
        for qid in ids:
            s = time.perf_counter()
            res = idx.search(point_id=qid, k=len(pts) - 1)  # the full ranking
            lat.append(time.perf_counter() - s)
            rel = np.array([label_of.get(h.id, -1) == label_of[qid] for h in res.hits])
            aps.append(average_precision(rel))
        map_search = float(np.mean(aps))
        t_search = time.time() - t0
        # stored vectors scored directly (isolates mosaic padding from the search path)
        vecs = np.stack([p.vector for p in pts if p.id in label_of])
        map_vectors = retrieval_metrics(vecs, [label_of[p.id] for p in pts if p.id in label_of])["mAP"]

        # 2. filters: results inside the filter, and equal to brute force
        rng = np.random.default_rng(0)
        lons = np.array([p.payload["location"]["lon"] for p in pts])
        lats = np.array([p.payload["location"]["lat"] for p in pts])
        allvec = np.stack([p.vector for p in pts])
        allids = [p.id for p in pts]
        filters = []
        for _ in range(10):
            a, b = sorted(rng.uniform(lons.min(), lons.max(), 2))
            c, d = sorted(rng.uniform(lats.min(), lats.max(), 2))
            filters.append(SearchFilter(bbox=(a, c, b, d)))
            j = rng.integers(len(pts))
            filters.append(SearchFilter(near=(float(lons[j]), float(lats[j]), float(rng.uniform(100, 600)))))
            cx, cy = rng.uniform(lons.min(), lons.max()), rng.uniform(lats.min(), lats.max())
            r = rng.uniform(0.002, 0.006)
            ring = tuple((cx + r * math.cos(t), cy + 0.8 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 7)[:-1])
            filters.append(SearchFilter(polygon=ring + ring[:1]))
        violations = mismatches = checked = 0
        for flt in filters:
            q = int(rng.integers(len(pts)))
            hits = idx.store.search(allvec[q], k=10, flt=flt)
            violations += sum(not matches(h.payload, flt) for h in hits)
            ok = np.array([matches(p.payload, flt) for p in pts])
            d = np.linalg.norm(allvec - allvec[q], axis=1)
            order = sorted((float(d[i]), allids[i]) for i in np.flatnonzero(ok))[:10]
            want = [i for _, i in order]
            got = [h.id for h in hits]
            mismatches += int(want != got)
            checked += 1

    t0 = time.time()
    ev = evaluate_folder(args.data, bundle, split="test") if not args.limit else None
    t_eval = time.time() - t0
    out = {
        "map_search": round(map_search, 5),
        "map_evaluate": round(ev["mAP"], 5) if ev else None,
        "map_stored_vectors": round(map_vectors, 5),
        "filter_violations": int(violations),
        "filtered_mismatches": int(mismatches),
        "filtered_queries": checked,
        "cells": n,
        "tiles_written": report.points_written,
        "search_p50_ms": round(1000 * float(np.median(lat)), 2),
        "seconds": {"mosaic": round(t_mosaic, 1), "ingest": round(t_ingest, 1), "search": round(t_search, 1),
                    "evaluate": round(t_eval, 1)},
        "model_id": bundle.model_id,
    }
    if ev:
        out["abs_diff"] = round(abs(map_search - ev["mAP"]), 5)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
