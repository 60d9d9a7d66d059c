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
        tile's stored footprint, item and collection, and the index's model id."""
        from rsir_stac.labels import Label, LabelSet, footprint_geometry

        labels = bodies.labels(req.labels)
        with svc.querying(), svc.lock:   # a set of another model's ids is matched by scanning the index
            labels = svc.index.labels_here(labels)  # a set made before a reindex gets this index's ids
            stored = {h.id: h for h in svc.index.store.retrieve([lb.point_id for lb in labels.labels])}
        out = []
        for lb in labels.labels:
            p = stored[lb.point_id].payload
            props = {**lb.properties, **{k: p[k] for k in ("item_id", "collection", "datetime") if p.get(k)}}
            out.append(Label(lb.point_id, lb.label, footprint_geometry(p), lb.note, props))
        return LabelSet(tuple(out), svc.index.bundle.model_id).to_geojson()

    return router


__all__ = ["labels_router"]
