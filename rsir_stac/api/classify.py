"""``POST /api/classify``: "find all": logistic regression on the labelled tiles' stored vectors,
applied to every tile in the filtered area; tiles (or dissolved areas) with probability >=
threshold, and precision/recall on held-out labels (:func:`rsir_stac.classify.classify`).

The scan holds the store lock for its whole pass.

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

from typing import Any

from rsir_stac.api import bodies
from rsir_stac.errors import InputError


def classify_router(svc: Any):
    """An ``APIRouter`` with ``POST /api/classify`` over ``svc`` (a :class:`~rsir_stac.api.service.Service`)."""
    from fastapi import APIRouter, Body

    from rsir_stac.api.schemas import CLASSIFY_ANSWER, answer
    from rsir_stac.apierrors import error_responses

    router = APIRouter(dependencies=svc.dependencies, tags=["analysis"], responses=error_responses(400, 404, 413, 429))

    @router.post("/api/classify", summary="Find all tiles like the positive labels",
                 responses=answer(CLASSIFY_ANSWER, "The tiles at or above the threshold (and your labelled "
                                                   "positives), most probable first, with the run's summary"))
    def api_classify(req: bodies.ClassifyRequest = Body(...)) -> dict:
        """Logistic regression on the labelled tiles' vectors, applied to every tile in the filtered area."""
        from rsir_stac.classify import classify
        from rsir_stac.dissolve import dissolve
        from rsir_stac.export import row_of
        from rsir_stac.store import SearchHit

        if isinstance(req.max_hits, bool) or not 1 <= req.max_hits <= bodies.MAX_HITS_API:
            raise InputError(f"max_hits={req.max_hits} must be within 1..{bodies.MAX_HITS_API}")
        labels = bodies.labels(req.labels)
        flt = bodies.search_filter(req)
        with svc.querying(), svc.lock:  # a scan of the index: at most svc.max_queries at a time (429 beyond)
            rep = classify(svc.index, labels, flt=flt, threshold=req.threshold, holdout=req.holdout,
                           max_hits=req.max_hits)
        # the analyst's own label (positive, or null) as a column of its own, as `rsir-stac classify` writes it
        rows = dissolve(rep.hits) if req.dissolve else svc.public_rows(
            [row_of(SearchHit(h.id, h.score, {k: v for k, v in h.payload.items() if k != "label"}), rank=n,
                    score_name="probability", extra={"label": h.payload.get("label")})
             for n, h in enumerate(rep.hits, 1)])
        feats = [{"type": "Feature", "id": r["id"], "geometry": r["geometry"],
                  "properties": {k: v for k, v in r.items() if k != "geometry"}} for r in rows]
        return {"type": "FeatureCollection", "features": feats, "summary": rep.summary(),
                "notes": list(labels.notes) + svc.filter_notes(flt) + rep.notes()
                + ([] if rep.holdout else [rep.holdout_text()])}  # why precision and recall are null

    return router


__all__ = ["classify_router"]
