"""The ingest-job request: the JSON body of ``POST /api/ingest/jobs`` (:class:`IngestJobRequest`)
and the ingest options it becomes (:func:`job_options`), refused with 400 before any work when
they are not ones ``ingest`` takes.

What a job may name, and why the rest is left out (no model path, no batch size), is said in
:mod:`rsir_stac.api.jobs`, which imports this module only when it builds its router: pydantic
stays out of ``import rsir_stac.api.jobs``.

No postponed annotations: FastAPI reads the endpoint annotations at definition time.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rsir_stac.api.jobs import COLLECTION_NAME, MAX_SOURCES


class IngestJobRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")
    sources: list[str] = Field(..., min_length=1, max_length=MAX_SOURCES,
                               description="Local paths (files or folders) under the service's ingest roots; "
                                           "relative paths are taken from the first root.")
    model_id: str | None = Field(None, description="The model the client expects; 409 when it is not the "
                                                   "served model.")
    asset: str | None = Field(None, max_length=200)
    bands: list[int] | None = Field(None, min_length=3, max_length=3, description="1-based R,G,B band numbers.")
    tile_size: int | None = Field(None, ge=8, le=4096)
    stride: int | None = Field(None, ge=8, le=4096)
    gsd: float | None = Field(None, gt=0, le=100_000)
    native_gsd: bool = False
    edge: Literal["shift", "drop", "pad"] = "shift"
    min_valid: float = Field(0.5, ge=0, le=1)
    nodata: float | None = Field(None, description="Pixel value marking no data in sources that declare none.")
    relabel: bool = Field(False, description="Give tiles already indexed this job's collection and datetime "
                                             "(otherwise such an item fails and keeps its labels).")
    fail_fast: bool = False
    shard: str | None = Field(None, max_length=20, description="I/N: only this share of the items.")
    collection: str | None = Field(None, max_length=200)
    datetime: str | None = Field(None, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        """A lone surrogate in a path or name is refused (422), not a failure deep in the job."""
        from rsir_stac.api.strict import refuse_lone_surrogates

        return refuse_lone_surrogates(data)


def job_options(req: IngestJobRequest) -> Any:
    """The :class:`~rsir_stac.ingest.options.IngestOptions` of a job request; InputError (400, named as
    the job's fields) for band numbers under 1, a bad datetime or shard, options ingest refuses, or a
    collection name of other characters than letters, digits, spaces and ``- _ . /``."""
    from rsir_stac.errors import InputError
    from rsir_stac.ingest.options import IngestOptions, check_options
    from rsir_stac.stac.shard import parse_shard
    from rsir_stac.store.filter_parse import parse_acquisition_datetime

    if req.bands is not None and min(req.bands) < 1:
        raise InputError(f"bands {req.bands} are invalid; give R,G,B band numbers (1-based)")
    dt = parse_acquisition_datetime(req.datetime, "datetime") if req.datetime else None
    options = IngestOptions(asset=req.asset, bands=tuple(req.bands) if req.bands else None,
                            tile_size=req.tile_size, stride=req.stride, gsd=req.gsd, native_gsd=req.native_gsd,
                            edge=req.edge, min_valid=req.min_valid, fail_fast=req.fail_fast,
                            shard=parse_shard(req.shard) if req.shard else None, collection=req.collection,
                            datetime=dt, nodata=req.nodata, relabel=req.relabel)
    check_options(options, flag=str)  # refused with 400 now, not as a failed job; named as the job's fields
    if req.collection is not None and not COLLECTION_NAME.match(req.collection):
        bad = next((c for c in req.collection if not (c.isalnum() or c in " _.-/")), req.collection[:1])
        raise InputError(f"collection {req.collection[:60]!r} holds {bad!r}; give a plain name (letters, digits, "
                         "spaces, - _ . /), e.g. naip-2020")
    return options


__all__ = ["IngestJobRequest", "job_options"]
