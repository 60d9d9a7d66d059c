"""Model bundles: a folder holding everything needed to reproduce an embedding.

Layout::

    model.json      backbone, input size, normalisation, tile size and GSD,
                    embedding and stored dimension, reducer, classes, training
                    data and split, metrics, library versions, file digests
    weights.pt      EmbeddingNet state dict (fp16 on disk, fp32 in memory)
    reducer.npz     reducer arrays (mean, components), absent for "none"
    mlm-item.json   a STAC Item with the MLM (Machine Learning Model) extension
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rsir_stac.errors import BundleError, BundleNotFoundError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META, WEIGHTS, REDUCER, MLM = "model.json", "weights.pt", "reducer.npz", "mlm-item.json"
MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"


def default_bundle_path() -> Path:
    """The model shipped inside the package (trained on the UCMD training split)."""
    return Path(__file__).resolve().parents[1] / "models" / "default"


#: Other names of shipped bundles: ``v7`` is the current default, so a user can pin it by version.
SHIPPED_ALIASES = {"v7": "default"}


def shipped_models() -> list[str]:
    """Names of the bundles shipped in the package (``default`` is the current model, also
    named by its version, :data:`SHIPPED_ALIASES`)."""
    root = default_bundle_path().parent
    names = {p.name for p in root.iterdir() if (p / META).is_file()}
    names |= {alias for alias, target in SHIPPED_ALIASES.items() if target in names}
    return sorted(names)


def _shipped_path(name: str) -> Path:
    root = default_bundle_path().parent
    return root / SHIPPED_ALIASES.get(name, name)


def shipped_name(model_id: str) -> str | None:
    """The shipped bundle name (``v4``, ...) whose model id is ``model_id``, or None.

    Used by model-mismatch errors, so an index built with an earlier default
    names the ``--model`` that opens it.  Prefers a versioned name to ``default``.
    """
    for name in sorted(shipped_models(), key=lambda n: n == "default"):
        try:
            if json.loads((_shipped_path(name) / META).read_text()).get("model_id") == model_id:
                return name
        except (OSError, ValueError):
            continue
    return None


def shipped_hint(model_id: str) -> str:
    """`` (shipped: --model v4, or RSIR_MODEL=v4 for every command)`` when ``model_id`` is a bundle shipped
    in the package, else ``""``."""
    name = shipped_name(model_id)
    return f" (shipped: --model {name}, or RSIR_MODEL={name} for every command)" if name else ""


def model_name(bundle) -> str:
    """How to name ``bundle`` to ``--model``: its shipped name (``v7``), else its folder."""
    return shipped_name(bundle.model_id) or str(bundle.path)


def library_versions() -> dict[str, str]:
    import sklearn
    import torch

    from rsir_stac import __version__

    return {"rsir_stac": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ModelBundle:
    """A loaded bundle.  The network is built lazily on first use."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta

    # -- metadata ---------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.meta["model_id"]

    @property
    def dim(self) -> int:
        """Dimension of the stored vectors (after the reducer)."""
        return int(self.meta["stored_dim"])

    @property
    def views(self) -> int:
        """Dihedral views averaged per tile at inference (1: none; 4 or 8, see ``reduce --views``)."""
        return int(self.meta.get("views", 1))

    @property
    def input_size(self) -> int:
        return int(self.meta["input_size"])

    @property
    def tile_size(self) -> int:
        return int(self.meta["tile_size"])

    @property
    def gsd(self) -> float | None:
        return self.meta.get("gsd_m")

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))

    # -- parts --------------------------------------------------------------
    @cached_property
    def net(self):
        import torch

        from rsir_stac.model.net import EmbeddingNet

        m = self.meta
        net = EmbeddingNet(m["backbone"], m["embedding_dim"], pooling=m.get("pooling", "avg"), pretrained=False,
                           hybrid=float(m.get("hybrid", 0.0)))
        try:
            state = torch.load(self.path / WEIGHTS, map_location="cpu", weights_only=True)
            net.load_state_dict({k: v.float() for k, v in state.items()})
        except Exception as exc:  # noqa: BLE001
            raise BundleError(f"model weights {self.path / WEIGHTS} cannot be loaded ({exc}); re-train or re-copy the bundle") from exc
        return net.eval()

    @cached_property
    def reducer(self):
        from rsir_stac.reduce import REDUCERS

        r = self.meta.get("reducer") or {"kind": "none"}
        if r["kind"] == "none":
            return None
        try:
            arrays = np.load(self.path / REDUCER)
            return REDUCERS[r["kind"]].from_arrays(arrays, n_components=r["dim"], normalize=r.get("normalize", True))
        except Exception as exc:  # noqa: BLE001 - truncated/garbled npz, unknown kind
            raise BundleError(f"reducer {self.path / REDUCER} cannot be loaded ({type(exc).__name__}: {exc}); "
                              "re-train or re-copy the bundle") from exc

    def embedder(self, *, device: str | None = None, bf16: bool | None = None, batch_size: int | None = None,
                 lanes: int | None = None, views: int | None = None, net=None):
        """An :class:`~rsir_stac.embed.Embedder` for this bundle (``None``: defaults for the device;
        ``views`` other than the bundle's, for fitting a reducer to them; ``net`` another network
        with this bundle's input, such as a copy with another hybrid weight)."""
        from rsir_stac.embed import Embedder

        mean, std = self.meta["normalisation"]["mean"], self.meta["normalisation"]["std"]
        return Embedder(self.net if net is None else net, self.reducer, input_size=self.input_size, mean=mean, std=std,
                        device=device, bf16=bf16, batch_size=batch_size, lanes=lanes,
                        views=self.views if views is None else views)

    def __repr__(self) -> str:
        return f"ModelBundle({self.model_id}, dim={self.dim}, path={self.path})"


def load_bundle(path: str | Path | None = None) -> ModelBundle:
    """Open a bundle folder (default: the shipped model) and verify its files.

    A bare name that is not a local folder, such as ``v1``, names a model
    shipped in the package (``rsir_stac/models/<name>``; see :func:`shipped_models`).
    """
    path = Path(path) if path else default_bundle_path()
    shipped = _shipped_path(str(path))
    if not path.exists() and len(path.parts) == 1 and (shipped / META).is_file():
        path = shipped
    if path.is_file() and path.name == META:
        path = path.parent
    meta_path = path / META
    if not meta_path.is_file() and (path / "bundle" / META).is_file():  # a `train --out` run folder
        raise BundleNotFoundError(f"{path} is a training run folder, not a model bundle; pass {path / 'bundle'}")
    if not meta_path.is_file():
        why = ("the path does not exist, and it is not a shipped model name" if not path.exists() else
               "it is a file, not a bundle folder" if not path.is_dir() else f"the folder has no {META}")
        raise BundleNotFoundError(
            f"no model bundle at {path} ({why}); pass --model with a folder written by `rsir-stac train` "
            f"(RUN/bundle) or a shipped model name ({', '.join(shipped_models())})"
        )
    try:
        # NaN/Infinity (val_mAP of a run whose validation could not rank, before it was written as null)
        # is not JSON: read it as null, so model-info and the service print valid JSON
        meta = json.loads(meta_path.read_text(), parse_constant=lambda _: None)
    except (ValueError, RecursionError) as exc:  # not JSON or UTF-8, a 4,300-digit number, nested too deeply
        from rsir_stac.json_errors import json_problem

        raise BundleError(f"model bundle {meta_path} is {json_problem(exc)}; re-train or re-copy the bundle") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"model bundle {meta_path} is not a JSON object; re-train or re-copy the bundle")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path} has format version {version}, this rsir-stac reads {FORMAT_VERSION}; "
            "re-train it with this version or install the rsir-stac that wrote it"
        )
    missing = [k for k in ("model_id", "stored_dim", "input_size", "tile_size", "backbone", "embedding_dim",
                           "normalisation") if k not in meta]
    if missing:
        raise BundleError(f"model bundle {meta_path} lacks {', '.join(missing)}; re-train or re-copy the bundle")
    views = meta.get("views", 1)
    if isinstance(views, bool) or views not in (1, 4, 8):  # rsir_stac.model.transforms.VIEW_SETS
        raise BundleError(f"model bundle {meta_path} asks for {json.dumps(views)} views per tile; this rsir-stac "
                          "averages 1, 4 or 8: re-copy the bundle, or re-run `rsir-stac reduce --views 4` with "
                          "--model the bundle it was made from")
    for name, digest in meta.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"model bundle {path} lacks {name}; re-copy the whole bundle folder")
        if _sha256(f) != digest:
            raise BundleError(f"model bundle file {f} is truncated or modified (checksum mismatch); re-copy the bundle")
    if meta.get("files") and not str(meta["model_id"]).endswith("-" + _content_digest(meta["files"], int(views))):
        raise BundleError(f"model bundle {meta_path} does not match its files: its model id {meta['model_id']} was "
                          f"not made from them with {int(views)} view(s) per tile (was model.json edited?); "
                          "re-copy the bundle")
    recorded = meta.get("embedding_fields_sha256")  # absent in bundles written before it was recorded
    if recorded is None:  # a copy of a shipped bundle (its id) is held to the shipped fields
        name = shipped_name(str(meta["model_id"]))
        if name is not None and path.resolve() != _shipped_path(name).resolve():
            recorded = json.loads((_shipped_path(name) / META).read_text()).get("embedding_fields_sha256")
    if recorded is not None and recorded != embedding_fields_digest(meta):
        raise BundleError(f"model bundle {meta_path} was edited: the fields that decide its vectors "
                          f"({', '.join(k for k in EMBEDDING_FIELDS if k in meta)}) are not the ones it was written "
                          "with (checksum mismatch), so its model id no longer names what it makes; re-copy the "
                          "bundle, or re-train with the settings wanted")
    return ModelBundle(path, meta)


#: model.json fields that decide how tiles are cut and embedded (with the files and views, which the
#: model id covers): an edit to any of them changes every vector the bundle makes.
EMBEDDING_FIELDS = ("backbone", "embedding_dim", "pooling", "hybrid", "input_size", "normalisation", "tile_size",
                    "gsd_m", "bands", "reducer", "stored_dim", "distance")


def embedding_fields_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of :data:`EMBEDDING_FIELDS` of ``meta`` (canonical JSON; an absent field as null),
    recorded in model.json as ``embedding_fields_sha256`` and checked on load."""
    fields = {k: meta.get(k) for k in EMBEDDING_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _content_digest(files: dict[str, str], views: int) -> str:
    """The 12 hex digits of a model id: its files' checksums, and the views when not 1 (they change
    every vector; absent when 1, so older ids stay)."""
    text = "".join(files[k] for k in sorted(files)) + (f"views={views}" if views != 1 else "")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def save_bundle(path: str | Path, net, reducer, meta: dict[str, Any]) -> ModelBundle:
    """Write a bundle folder; fills in dimensions, versions, digests and model_id."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save(state, path / WEIGHTS)
    files = {WEIGHTS: _sha256(path / WEIGHTS)}
    if reducer is not None:
        np.savez(path / REDUCER, **reducer.to_arrays())
        files[REDUCER] = _sha256(path / REDUCER)
        meta["reducer"] = {"kind": reducer.kind, "dim": int(reducer.n_components_), "normalize": bool(reducer.normalize)}
    else:
        (path / REDUCER).unlink(missing_ok=True)
        meta["reducer"] = {"kind": "none", "dim": int(net.out_dim)}
    meta["stored_dim"] = meta["reducer"]["dim"]
    meta["embedding_dim"] = int(net.embedding_dim)
    meta["backbone"] = net.backbone_name
    meta["pooling"] = net.pooling
    meta["hybrid"] = float(getattr(net, "hybrid", 0.0))
    meta["distance"] = "euclid"
    meta["format_version"] = FORMAT_VERSION
    meta["files"] = files
    meta.setdefault("name", "rsir")
    views = int(meta.get("views", 1))
    if views == 1:
        meta.pop("views", None)
    digest = _content_digest(files, views)
    meta["model_id"] = f"{meta['name']}-{meta['backbone']}-{meta['stored_dim']}d-{digest}"
    meta["embedding_fields_sha256"] = embedding_fields_digest(meta)
    meta["versions"] = library_versions()
    meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (path / META).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    (path / MLM).write_text(json.dumps(mlm_item(meta, net), indent=2) + "\n")
    return ModelBundle(path, meta)


def mlm_item(meta: dict[str, Any], net=None) -> dict[str, Any]:
    """A STAC Item (MLM extension v1.4) describing the bundle's model."""
    n_params = sum(p.numel() for p in net.parameters()) if net is not None else None
    size = meta["input_size"]
    norm = meta["normalisation"]
    props: dict[str, Any] = {
        "datetime": meta.get("created"),
        "description": "Triplet metric-learning embedding for remote sensing image retrieval (rsir-stac)",
        "mlm:name": meta["model_id"],
        "mlm:architecture": f"{meta['backbone']} + linear head + L2" + (f" + {meta['reducer']['kind'].upper()}" if meta["reducer"]["kind"] != "none" else ""),
        "mlm:tasks": ["similarity-search"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": meta.get("versions", {}).get("torch"),
        "mlm:pretrained": True,
        "mlm:pretrained_source": meta.get("pretrained_source", "ImageNet"),
        "mlm:batch_size_suggestion": 64,
        "mlm:accelerator": "amd64",
        "mlm:accelerator_constrained": False,
        "mlm:input": [{
            "name": "RGB tile",
            "bands": ["red", "green", "blue"],
            "input": {"shape": [-1, 3, size, size], "dim_order": ["batch", "channel", "height", "width"], "data_type": "float32"},
            "value_scaling": [{"type": "z-score", "mean": m * 255.0, "stddev": s * 255.0} for m, s in zip(norm["mean"], norm["std"])],
            "resize_type": "interpolation-linear",
        }],
        "mlm:output": [{
            "name": "embedding",
            "tasks": ["similarity-search"],
            "result": {"shape": [-1, meta["stored_dim"]], "dim_order": ["batch", "embedding"], "data_type": "float32"},
            "post_processing_function": None,
        }],
        "rsir:tile_size": meta.get("tile_size"),
        "rsir:gsd": meta.get("gsd_m"),
        "rsir:distance": "euclid",
    }
    if int(meta.get("views", 1)) > 1:  # test-time augmentation: outputs averaged over dihedral views
        props["rsir:views"] = int(meta["views"])  # 4: the rotations; 8: and their mirror images
    if n_params is not None:
        props["mlm:total_parameters"] = int(n_params)
    assets = {"weights": {"href": f"./{WEIGHTS}", "type": "application/octet-stream; application=pytorch",
                          "roles": ["mlm:model", "mlm:weights"], "mlm:artifact_type": "torch.save"},
              "metadata": {"href": f"./{META}", "type": "application/json", "roles": ["metadata"]}}
    if meta["reducer"]["kind"] != "none":
        assets["reducer"] = {"href": f"./{REDUCER}", "type": "application/octet-stream", "roles": ["mlm:weights"]}
    return {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [MLM_SCHEMA], "id": meta["model_id"],
            "geometry": None, "properties": props, "assets": assets, "links": []}
