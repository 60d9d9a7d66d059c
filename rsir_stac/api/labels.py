"""``POST /api/labels``: check a label FeatureCollection against the index and return it with the
stored footprints filled in (the same file the CLI's ``--labels`` reads and the page saves).

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

from typing import Any

from rsir_stac.api import bodies


def labels_router(svc: Any):
    """An ``APIRouter`` with ``POST /api/labels`` over ``svc`` (a :class:`~rsir_stac.api.service.Service`)."""
    from fastapi import APIRouter, Body

    from rsir_stac.apierrors import error_responses

    router = APIRouter(dependencies=svc.dependencies, tags=["analysis"], responses=error_responses(400, 404, 413, 429))

    @router.post("/api/labels", summary="Check a label set and fill in stored footprints")
    def api_labels(req: bodies.LabelsRequest = Body(...)) -> dict:
        """Validates ids, labels and model against the index; returns the label FeatureCollection with each
        tile's stored footprint, item and collection, and the index's model id; for a set made with another
        model, ``model_match`` says how its labels were matched to this index's tiles (:func:`model_match`);
        ``notes``, when the set had rows it left out, says which."""
        from rsir_stac.labels import Label, LabelSet, footprint_geometry

        given = bodies.labels(req.labels)
        with svc.querying(), svc.lock:   # a set of another model's ids is matched by scanning the index
            labels = svc.index.labels_here(given)  # a set made before a reindex gets this index's ids
            stored = {h.id: h for h in svc.index.store.retrieve([lb.point_id for lb in labels.labels])}
        out = []
        for lb in labels.labels:
            p = stored[lb.point_id].payload
            props = {**lb.properties, **{k: p[k] for k in ("item_id", "collection", "datetime") if p.get(k)}}
            out.append(Label(lb.point_id, lb.label, footprint_geometry(p), lb.note, props))
        doc = LabelSet(tuple(out), svc.index.bundle.model_id).to_geojson()
        match = model_match(given, labels, {i: h.payload for i, h in stored.items()}, svc.index.bundle.model_id)
        if match:
            doc["model_match"] = match
        if given.notes:  # what the set left out (unlabelled result rows, repeats), as the CLI warns
            doc["notes"] = list(given.notes)
        return doc

    return router


def model_match(given: Any, here: Any, payloads: dict, model_id: str) -> dict | None:
    """How the labels of a set made with another model than ``model_id`` (its ``rsir:model_id``, else
    its features' ``model_id``) were read on this index, or None for a set of this index's model:
    ``{"model_ids": [the set's models], "model_id": this index's, "by_id": n, "by_item": n,
    "by_footprint": n}``, and ``"same_tile": {"labels": n, "tiles": n}`` when labels of the set name one
    tile.  ``given`` is the set as sent, ``here`` the same set with this index's ids
    (:meth:`rsir_stac.search.Index.labels_here`, its ``matched`` ids) and ``payloads`` their stored payloads by id.

    Each label of the set is counted once (the counts add up to its labels): ``by_id``: its id is a tile
    of this index, taken as it is; the others were matched to the tile of the same item, asset and grid
    window (:mod:`rsir_stac.label_transfer`), found through the label's ``item_id`` (``by_item``: it names
    the stored tile's item) or else its footprint (``by_footprint``).  ``same_tile``: the labels that name
    a tile another label names too (by this index's id and by the other model's), and how many tiles
    those are: each is kept once."""
    models = {given.model_id} if given.model_id else {
        m for m in (lb.properties.get("model_id") for lb in given.labels) if isinstance(m, str) and m}
    others = sorted(m for m in models if m != model_id)
    if not others:
        return None
    new = dict(here.matched)
    counts = {"by_id": 0, "by_item": 0, "by_footprint": 0}
    tiles: dict[str, int] = {}
    for lb in given.labels:
        pid = new.get(lb.point_id, lb.point_id)
        tiles[pid] = tiles.get(pid, 0) + 1
        if pid == lb.point_id:
            counts["by_id"] += 1
        elif lb.properties.get("item_id") == (payloads.get(pid) or {}).get("item_id"):
            counts["by_item"] += 1   # the item pass scans every tile of the item it names: found there
        else:
            counts["by_footprint"] += 1
    shared = [n for n in tiles.values() if n > 1]
    same = {"same_tile": {"labels": sum(shared), "tiles": len(shared)}} if shared else {}
    return {"model_ids": others, "model_id": model_id, **counts, **same}


__all__ = ["labels_router", "model_match"]
