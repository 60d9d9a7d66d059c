"""Head-level proxy of adaptation without labels: which triplet kinds move held-out classes.

Fast screen before a full ``benchmarks/adapt.py`` run (minutes instead of an
hour on 2 cores).  Pooled backbone features of every UCMD image (one clean
view and 4 augmented views, cached in ``--cache``) are computed once with the
start bundle; a residual MLP adapter on those features plus the bundle's
embedding head is trained with the same triplet kinds as ``adapt``
(``augment``: views of one image, ``neighbour``: mutual 5 nearest neighbours,
``cluster``: k-means pseudo-classes of the start embedding) and distillation
to the start output.  Scored with labels only: mAP of the held-out classes of
a leave-classes-out bundle, and of the other classes, after a PCA-64 refit on
all images, every 100 steps.  Not the shipped loop (the backbone's last blocks
do not train here): a screen, confirmed by ``benchmarks/adapt.py``.
Last line: one JSON object.
"""
import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cache_features(bundle_path: str, data: str, out: Path, views: int = 5) -> None:
    import torch

    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.data import load_rgb, scan_image_folder
    from rsir_stac.model.transforms import OverheadAugment, to_input

    b = load_bundle(bundle_path)
    net = b.net.eval()
    folder = scan_image_folder(data)
    mean, std = b.meta["normalisation"]["mean"], b.meta["normalisation"]["std"]
    aug = OverheadAugment(b.input_size, scale=(0.4, 1.0), jitter=0.2, seed=0, downscale_max=2.0, downscale_prob=0.3)
    ims = [load_rgb(p) for p in folder.paths]
    F = np.zeros((views, len(ims), net.backbone.out_channels), np.float32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for v in range(views):
            for s in range(0, len(ims), 64):
                batch = ims[s:s + 64] if v == 0 else [aug(im) for im in ims[s:s + 64]]
                F[v, s:s + 64] = net.features(to_input(batch, b.input_size, mean, std)).float().numpy()
            print(f"cached view {v + 1}/{views}", flush=True)
    np.savez(out, F=F, labels=folder.labels, classes=np.array(folder.classes))


def main() -> None:
    import torch

    from rsir_stac.evaluate import retrieval_metrics
    from rsir_stac.model.bundle import load_bundle
    from rsir_stac.model.pairs import cluster_labels, embedding_neighbours, mutual_neighbours, n_clusters
    from rsir_stac.reduce import make_reducer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="a leave-classes-out bundle (train --leave-out-n 5)")
    ap.add_argument("--data", default="../shared/data/ucmerced")
    ap.add_argument("--cache", default="/tmp/rsir-adapt-proxy.npz")
    ap.add_argument("--kinds", default="augment,neighbour,cluster")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--distill", type=float, default=1.0)
    ap.add_argument("--clusters", type=int, default=0, help="0: adapt's rule (about 50 images a cluster)")
    ap.add_argument("--recluster", type=int, default=0, help="re-cluster the adapted embedding every N steps")
    ap.add_argument("--p", type=int, default=16)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cache = Path(a.cache)
    if not cache.exists():
        cache_features(a.bundle, a.data, cache)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    d = np.load(cache)
    F, labels, classes = torch.tensor(d["F"]), d["labels"], list(d["classes"])
    b = load_bundle(a.bundle)
    teacher = b.net.eval()
    held = b.meta["training"].get("held_out_classes") or []
    hmask = np.isin(np.array(classes)[labels], held)
    V, N, C = F.shape

    class Adapter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = torch.nn.Linear(C, 512), torch.nn.Linear(512, C)
            torch.nn.init.zeros_(self.l2.weight)
            torch.nn.init.zeros_(self.l2.bias)

        def forward(self, f):
            return torch.relu(f + self.l2(torch.nn.functional.gelu(self.l1(f))))

    adapter, student = Adapter(), copy.deepcopy(teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(list(adapter.parameters()) + list(student.head.parameters()), lr=a.lr,
                            weight_decay=1e-4)

    def out(f):
        return student.embed_features(adapter(f))

    def score(Z):
        X = make_reducer("pca", 64).fit(Z).transform(Z)
        return (round(retrieval_metrics(X[hmask], labels[hmask])["mAP"], 4),
                round(retrieval_metrics(X[~hmask], labels[~hmask])["mAP"], 4))

    def mine(Z):
        nn = embedding_neighbours(Z, 20)
        return nn, mutual_neighbours(nn, 5), cluster_labels(Z, a.clusters or n_clusters(N), a.seed)

    with torch.no_grad():
        Z0 = teacher.embed_features(F[0]).numpy()
    near, mut, clab = mine(Z0)
    kinds = a.kinds.split(",")
    has_mut = np.flatnonzero([len(m) for m in mut])
    history = [{"step": 0, "held_out_mAP": score(Z0)[0], "seen_mAP": score(Z0)[1]}]
    print(history[-1], flush=True)
    for step in range(1, a.steps + 1):
        if a.recluster and step % a.recluster == 0:
            with torch.no_grad():
                near, mut, clab = mine(out(F[0]).numpy())
            has_mut = np.flatnonzero([len(m) for m in mut])
        tiles, groups = [], []
        for g in range(a.p):
            kind = kinds[g % len(kinds)]
            if kind == "augment":
                m = [int(rng.integers(N))] * a.k
            elif kind == "neighbour":
                i = int(rng.choice(has_mut))
                m = [i] + rng.choice(mut[i], a.k - 1).tolist()
            else:
                i = int(rng.integers(N))
                m = [i] + rng.choice(np.flatnonzero(clab == clab[i]), a.k - 1).tolist()
            tiles += m
            groups += [g] * a.k
        tiles, groups = np.array(tiles), np.array(groups)
        f = F[rng.integers(0, V, len(tiles)), tiles]
        z = out(f)
        with torch.no_grad():
            zt = teacher.embed_features(f)
        neg = (groups[:, None] != groups[None]) & (tiles[:, None] != tiles[None])
        nm = (near[tiles][:, None, :] == tiles[None, :, None]).any(2)
        neg &= ~(nm | nm.T)
        if "cluster" in kinds:
            neg &= clab[tiles][:, None] != clab[tiles][None]
        dd = torch.cdist(z, z)
        dn = dd.detach().numpy()
        same = (groups[:, None] == groups[None]) & ~np.eye(len(groups), dtype=bool)
        terms = []
        for x, y in zip(*np.nonzero(same)):
            c = np.flatnonzero(neg[x])
            if len(c):
                h = c[dn[x, c] < dn[x, y] + 0.2]
                n = rng.choice(h) if len(h) else c[np.argmin(dn[x, c])]
                terms.append(torch.relu(dd[x, y] - dd[x, n] + 0.2))
        loss = torch.stack(terms).mean() + a.distill * (1 - torch.nn.functional.cosine_similarity(z, zt)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            with torch.no_grad():
                h, s = score(out(F[0]).numpy())
            history.append({"step": step, "held_out_mAP": h, "seen_mAP": s})
            print(history[-1], flush=True)
    print(json.dumps({"bundle": a.bundle, "kinds": kinds, "distill": a.distill, "recluster": a.recluster,
                      "history": history}))


if __name__ == "__main__":
    main()
