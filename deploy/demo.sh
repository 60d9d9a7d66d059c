#!/bin/sh
# The main job on the embedded default index: ingest the sample scenes, then
# search "more tiles like this one" and write a contact sheet.
#   DATA   shared data folder (default ../shared/data, or $RSIR_DATA)
#   INDEX  embedded index folder (default ./rsir-index)
#   SOURCES  override what is ingested (paths or URLs of STAC documents / GeoTIFFs)
set -eu
BIN=${BIN:-.venv/bin}
DATA=${DATA:-${RSIR_DATA:-../shared/data}}
INDEX=${INDEX:-rsir-index}
OUT=${OUT:-out}
if [ -z "${SOURCES:-}" ]; then
  if [ ! -d "$DATA/geotiff" ]; then
    echo "No sample data at $DATA. Point the demo at your own scenes, e.g.:" >&2
    echo "  make demo SOURCES='path/to/catalog.json path/to/scene.tif'   (or set RSIR_DATA)" >&2
    exit 2
  fi
  SOURCES="$DATA/geotiff"
  [ -f "$DATA/stac/planet-disaster/collection.json" ] && SOURCES="$SOURCES $DATA/stac/planet-disaster/collection.json"
fi
echo "== model"
"$BIN/rsir-stac" model-info | "$BIN/python" -c "import json,sys; m=json.load(sys.stdin); print(m['model_id'], m['stored_dim'], 'dims; test mAP', m.get('metrics', {}).get('mAP'))"
echo "== ingest $SOURCES -> $INDEX"
# shellcheck disable=SC2086
"$BIN/rsir-stac" ingest $SOURCES --index "$INDEX" || echo "(some items were skipped; see above)"
"$BIN/rsir-stac" info --index "$INDEX"
# Query: the stored tile under a point of the sample aerial image.
AT=$("$BIN/python" - "$INDEX" <<'PY'
import sys
from rsir_stac.store import open_store
with open_store(sys.argv[1], read_only=True) as s:
    pts = sorted(s.iter_points(with_vectors=False), key=lambda p: (p.payload["item_id"], p.id))
    # a tile from the middle of the 0.6 m aerial COG (close to the model's 0.3 m), else any stored tile
    aerial = [p for p in pts if p.payload["item_id"].startswith("rasterio_cogeo-")]
    pick = aerial[len(aerial) // 2] if aerial else pts[len(pts) // 2]
    loc = pick.payload["location"]
    print(f"{loc['lon']:.6f},{loc['lat']:.6f}")
PY
)
echo "== search --at $AT"
"$BIN/rsir-stac" search --at "$AT" --index "$INDEX" --limit 12 --thumbnails "$OUT/search"
"$BIN/rsir-stac" search --at "$AT" --index "$INDEX" --limit 12 --format geojson > "$OUT/search/results.geojson"
echo "contact sheet: $OUT/search/contact_sheet.png; footprints: $OUT/search/results.geojson"
