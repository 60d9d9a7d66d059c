"""Self-supervised triplets for unlabelled tiles: space, time and augmentation.

Three kinds of positive pair, each a small *group* of views that should embed
close together (the "class" of a P×K batch):

``spatial``
    an anchor tile and tiles of the same scene whose centres lie within
    :data:`SPATIAL_RADIUS` tile sides (overlapping or adjacent on the ground:
    Tile2Vec, Jean et al. 2019).
``time``
    the same ground in another scene taken at another date: centres within
    :data:`SAME_GROUND` tile sides (the NAIP and Landsat series of a
    catalogue).
``augment``
    views of one tile under random crops, flips, 90° rotations, scale and
    colour changes (the only kind for image folders; also the fallback).
``neighbour``
    a tile and its *mutual* nearest neighbours in the start model's embedding
    (each is among the other's :data:`MUTUAL_K` nearest): the start model's
    most confident similarities, tightened on the user's own tiles
    (nearest-neighbour positives as in NNCLR, Dwibedi et al. 2021; mutual
    k-NN as in unsupervised re-identification).
``cluster``
    tiles of one cluster of the start model's embedding (k-means, about
    :data:`CLUSTER_SIZE` tiles a cluster): pseudo-classes, so a group pulls a
    whole kind of ground together instead of one pair; tiles of one cluster
    are never each other's negatives (clustering pseudo-labels for
    unsupervised domain adaptation of metric embeddings: Fan et al. 2018,
    "Unsupervised person re-identification: clustering and fine-tuning";
    Caron et al. 2018, DeepCluster).

A *negative* of a view is any view of another group whose tile centre lies
more than ``neg_distance`` metres away (default :data:`NEG_SIDES` tile
sides: neither overlapping nor adjacent), or, for images without
georeference, any other image.  The loss is the triplet margin loss over
every positive pair of a batch, each with one negative drawn at random among
the valid ones that violate the margin (random, not hardest: without labels
the hardest "negative" is most often the same kind of ground elsewhere, a
false negative).  For the same reason a view among the anchor's
:data:`NEAR_K` nearest tiles in the start model's embedding is never its
negative (false-negative elimination, Huynh et al. 2022): without it,
instance-level triplets push apart tiles of one kind of ground and undo the
start model's grouping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from rsir_stac.errors import InputError

log = logging.getLogger(__name__)

KINDS = ("spatial", "time", "augment", "neighbour", "cluster")
#: Neighbour positives: mutual k nearest neighbours in the start embedding.
MUTUAL_K = 5
#: Never a negative: the anchor's this many nearest tiles in the start embedding
#: (at most 2 % of the tiles).
NEAR_K = 20
#: Cluster positives: about this many tiles a k-means cluster of the start embedding.
CLUSTER_SIZE = 50
#: ... at least this many (fewer tiles: no cluster triplets unless --clusters asks) ...
MIN_CLUSTERS = 5
#: ... and at most this many clusters.
MAX_CLUSTERS = 200
#: Spatial positives: centres within this many tile sides (adjacent incl. diagonal).
SPATIAL_RADIUS = 1.5
#: Time positives: centres within this many tile sides (the same ground).
SAME_GROUND = 0.25
#: Default negative distance, in tile sides.
NEG_SIDES = 2.0


@dataclass
class Positives:
    """Per tile (of a subset), the indices of its positives of each kind."""

    spatial: list[np.ndarray]
    time: list[np.ndarray]
    neighbour: list[np.ndarray] = field(default_factory=list)
    cluster: list[np.ndarray] = field(default_factory=list)

    def _lists(self, kind: str) -> list[np.ndarray]:
        return {"spatial": self.spatial, "time": self.time, "neighbour": self.neighbour,
                "cluster": self.cluster}[kind]

    def anchors(self, kind: str, n: int) -> np.ndarray:
        if kind == "augment":
            return np.arange(n)
        return np.flatnonzero([len(x) > 0 for x in self._lists(kind)])

    def has(self, kind: str, n: int) -> bool:
        """Can ``kind`` be mined from these ``n`` tiles (augment always; others: some tile has a positive)?"""
        return kind == "augment" or (bool(self._lists(kind)) and len(self.anchors(kind, n)) > 0)

    def of(self, kind: str, i: int) -> np.ndarray:
        return self._lists(kind)[i]


def embedding_neighbours(z: np.ndarray, k: int) -> np.ndarray:
    """N×k indices of each row's k nearest other rows of ``z`` (N×D, Euclidean), nearest first."""
    from scipy.spatial import cKDTree

    k = max(0, min(int(k), len(z) - 1))
    if not k:
        return np.zeros((len(z), 0), np.int64)
    _, ix = cKDTree(np.asarray(z, np.float64)).query(z, k=k + 1)
    ix = np.asarray(ix, np.int64).reshape(len(z), k + 1)
    out = np.empty((len(z), k), np.int64)
    for i, row in enumerate(ix):  # drop the row itself (not always first when duplicates tie)
        out[i] = row[row != i][:k]
    return out


def mutual_neighbours(near: np.ndarray, k: int = MUTUAL_K) -> list[np.ndarray]:
    """Per row, its mutual k nearest neighbours from ``near`` (N×≥k, nearest first)."""
    top = near[:, :k]
    sets = [set(r.tolist()) for r in top]
    return [np.asarray([j for j in top[i].tolist() if i in sets[j]], np.int64) for i in range(len(top))]


def n_clusters(n: int) -> int:
    """Clusters for ``n`` tiles: about :data:`CLUSTER_SIZE` a cluster, :data:`MIN_CLUSTERS`..:data:`MAX_CLUSTERS`;
    0 (no cluster triplets) below ``MIN_CLUSTERS × CLUSTER_SIZE`` tiles, where a cluster would be a
    large share of the catalogue and its never-negative guard would remove that share of every
    anchor's negatives."""
    k = int(round(n / CLUSTER_SIZE))
    return 0 if k < MIN_CLUSTERS else min(MAX_CLUSTERS, k)


def cluster_labels(z: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means cluster of each row of ``z`` (N×D), N labels in 0..k-1 (scikit-learn ``KMeans``)."""
    from sklearn.cluster import KMeans

    k = max(1, min(int(k), len(z)))
    return KMeans(k, n_init=3, random_state=seed).fit(np.asarray(z, np.float64)).labels_.astype(np.int64)


def cluster_positives(labels: np.ndarray) -> list[np.ndarray]:
    """Per row, the other rows of its cluster (``labels`` N cluster ids); clusters share one array."""
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels).tolist()}
    return [members[c][members[c] != i] for i, c in enumerate(labels.tolist())]


def near_mask(near: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """B×B boolean: is view j's tile among view i's tile's ``near`` neighbours (N×M)?"""
    rows = near[tile]
    return (rows[:, None, :] == tile[None, :, None]).any(2)


def find_positives(pos: np.ndarray, scene: np.ndarray, time: np.ndarray, side_m: np.ndarray) -> Positives:
    """Spatial and time positives of every tile (a KD-tree over tile centres).

    ``pos`` is N×3 Earth-centred metres (NaN rows: no georeference, no
    positives); ``scene`` scene indices; ``time`` epoch seconds (NaN unknown);
    ``side_m`` tile sides in metres.
    """
    from scipy.spatial import cKDTree

    n = len(pos)
    spatial = [np.empty(0, np.int64) for _ in range(n)]
    same_time = [np.empty(0, np.int64) for _ in range(n)]
    geo = np.flatnonzero(np.isfinite(pos).all(1))
    if len(geo) < 2:
        return Positives(spatial, same_time)
    tree = cKDTree(pos[geo])
    radius = SPATIAL_RADIUS * float(np.nanmax(side_m[geo])) * 1.01
    for a, near in zip(geo.tolist(), tree.query_ball_point(pos[geo], r=radius)):
        cand = geo[np.asarray(near, dtype=np.int64)]
        cand = cand[cand != a]
        if not len(cand):
            continue
        d = np.linalg.norm(pos[cand] - pos[a], axis=1)
        side = side_m[a]
        sp = cand[(scene[cand] == scene[a]) & (d <= SPATIAL_RADIUS * side * 1.01) & (d > 0)]
        other_date = ~(np.isfinite(time[cand]) & np.isfinite(time[a]) & (time[cand] == time[a]))
        tm = cand[(scene[cand] != scene[a]) & other_date & (d <= SAME_GROUND * side)]
        spatial[a], same_time[a] = sp, tm
    return Positives(spatial, same_time)


def available_kinds(positives: Positives, n: int, requested: Sequence[str] | None, n_scenes: int) -> list[str]:
    """The kinds to mine: ``requested`` (checked), or every kind the tiles allow.

    Raises InputError when a requested kind cannot be mined (spatial triplets
    with fewer than two scenes, time triplets without the same ground at two
    dates) or is unknown.
    """
    if requested:
        unknown = [k for k in requested if k not in KINDS]
        if unknown:
            raise InputError(f"triplet kind {unknown[0]!r} is unknown; choose from {', '.join(KINDS)}")
        if "spatial" in requested and n_scenes < 2:
            raise InputError(f"spatial triplets need tiles from at least 2 scenes (negatives come from another "
                             f"scene or far away), the sources give {n_scenes}; add scenes or use "
                             "--triplets augment")
        for k in requested:
            if k in ("neighbour", "cluster") and not positives._lists(k):
                continue  # mined from the start embedding after the tiles are read
            if k != "augment" and not len(positives.anchors(k, n)):
                what = {"spatial": "overlapping or adjacent tiles (use a --stride below the tile size)",
                        "time": "tiles of the same ground at two dates",
                        "neighbour": "mutual nearest neighbours in the start embedding",
                        "cluster": "clusters of two or more tiles in the start embedding"}[k]
                raise InputError(f"{k} triplets asked for but the sources hold no {what}; "
                                 "drop it from --triplets or add such scenes")
        return list(dict.fromkeys(requested))
    kinds = [k for k in ("spatial", "time") if len(positives.anchors(k, n))]
    if "spatial" in kinds and n_scenes < 2:
        kinds.remove("spatial")
    kinds.append("augment")
    if positives.neighbour and len(positives.anchors("neighbour", n)):
        kinds.append("neighbour")
    return kinds


@dataclass
class TripletSampler:
    """P×K batches of (tile index, group, kind) views, deterministic per seed.

    Each batch holds ``p`` groups of ``k`` views; a group's kind cycles through
    ``kinds`` so every kind gets an equal share.  ``counts`` tallies the
    groups drawn per kind.
    """

    positives: Positives
    n: int
    kinds: list[str]
    p: int = 8
    k: int = 4
    seed: int = 0
    counts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._anchors = {kind: self.positives.anchors(kind, self.n) for kind in self.kinds}
        self._turn = 0
        self.counts = {kind: 0 for kind in self.kinds}

    def refresh(self, kind: str) -> None:
        """Re-read ``kind``'s anchors from :attr:`positives` (after its lists changed)."""
        if kind in self._anchors:
            self._anchors[kind] = self.positives.anchors(kind, self.n)

    def batch(self) -> list[tuple[int, int, str]]:
        rng, out = self.rng, []
        used: set[int] = set()
        for g in range(self.p):
            kind = self.kinds[self._turn % len(self.kinds)]
            self._turn += 1
            pool = self._anchors[kind]
            a = int(pool[rng.integers(len(pool))])
            for _ in range(4):  # prefer anchors not yet in the batch
                if a not in used:
                    break
                a = int(pool[rng.integers(len(pool))])
            used.add(a)
            members = [a]
            if kind == "augment":
                members += [a] * (self.k - 1)
            else:
                cand = self.positives.of(kind, a)
                members += rng.choice(cand, size=self.k - 1, replace=len(cand) < self.k - 1).tolist()
            out.extend((int(m), g, kind) for m in members)
            self.counts[kind] += 1
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int, str]]]:
        while True:
            yield self.batch()


def negative_mask(pos: np.ndarray, tile: np.ndarray, group: np.ndarray, side_m: np.ndarray,
                  neg_distance: float | None = None, near: np.ndarray | None = None,
                  cluster: np.ndarray | None = None) -> np.ndarray:
    """B×B boolean: may view j be a negative of view i?

    Different groups and: both georeferenced and centres farther apart than
    ``neg_distance`` metres (default :data:`NEG_SIDES` × the larger tile
    side), or either without georeference and a different tile; and, given
    ``near`` (N×M start-embedding neighbours of every tile, indexed by
    ``tile``), neither tile among the other's M nearest; given ``cluster``
    (N cluster ids of every tile), not of the same cluster.
    """
    geo = np.isfinite(pos).all(1)
    d = np.linalg.norm(np.nan_to_num(pos)[:, None] - np.nan_to_num(pos)[None], axis=2)
    if neg_distance is None:
        s = np.nan_to_num(side_m)
        far = d > NEG_SIDES * np.maximum(s[:, None], s[None, :])
    else:
        far = d > neg_distance
    both = geo[:, None] & geo[None, :]
    ok = np.where(both, far, tile[:, None] != tile[None, :])
    if near is not None and near.shape[1]:
        m = near_mask(near, tile)
        ok &= ~(m | m.T)
    if cluster is not None:
        c = cluster[tile]
        ok &= c[:, None] != c[None, :]
    return ok & (group[:, None] != group[None, :])


def triplet_loss(emb, group, neg, margin: float, rng: np.random.Generator, miner: str = "random"):
    """Mean triplet margin loss over every positive pair of the batch.

    ``emb`` is B×D (torch), ``group`` the group of each view (numpy), ``neg``
    the B×B :func:`negative_mask`.  ``miner="random"``: one negative per pair
    drawn among the valid ones with ``d(a,n) < d(a,p) + margin``;
    ``"batch-hard"``: the closest valid negative.  Returns (loss, anchors
    used as a numpy index array).
    """
    import torch

    from rsir_stac.model.losses import pairwise_distances

    with torch.no_grad():
        d = pairwise_distances(emb.float()).cpu().numpy()
    same = (group[:, None] == group[None, :]) & ~np.eye(len(group), dtype=bool)
    a, p = np.nonzero(same)
    keep = neg[a].any(1)
    a, p = a[keep], p[keep]
    if not len(a):
        return emb.sum() * 0.0, a
    n = np.empty(len(a), dtype=np.int64)
    for i, (ai, pi) in enumerate(zip(a.tolist(), p.tolist())):
        cand = np.flatnonzero(neg[ai])
        if miner == "batch-hard":
            n[i] = cand[np.argmin(d[ai, cand])]
            continue
        hard = cand[d[ai, cand] < d[ai, pi] + margin]
        n[i] = rng.choice(hard) if len(hard) else cand[np.argmin(d[ai, cand])]
    e = emb.float()
    ta, tp, tn = (torch.as_tensor(x, device=e.device) for x in (a, p, n))
    d_ap = (e[ta] - e[tp]).pow(2).sum(1).clamp(min=1e-12).sqrt()
    d_an = (e[ta] - e[tn]).pow(2).sum(1).clamp(min=1e-12).sqrt()
    return torch.relu(d_ap - d_an + margin).mean(), a
