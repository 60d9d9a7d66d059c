"""Reducer ablation on a trained v2 bundle: pooled-part weight w, PCA fit set, dimension, whitening.

Recombines the bundle network's two output parts (triplet head, distilled pooled
features) with weight w, fits PCA on the training split (at ×1, or "mixed": ×1, 2,
4, 8 stacked), optionally whitened, and scores UCMD test ×1/×8 and, for a bundle
trained with --leave-out, the held-out classes ×1/×8.  Each variant prints one
JSON line.

usage: python benchmarks/reducer_ablation.py BUNDLE [--data DIR]
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rsir_stac.model.bundle import load_bundle
from rsir_stac.model.data import load_images, scan_image_folder, stratified_split, without_classes, only_classes
from rsir_stac.model.transforms import downscale
from rsir_stac.evaluate import retrieval_metrics

b = load_bundle(sys.argv[1])
data = sys.argv[sys.argv.index("--data") + 1] if "--data" in sys.argv else os.environ.get("RSIR_DATA", "../shared/data") + "/ucmerced"
tr = b.meta["training"]; held = tr.get("held_out_classes") or []
folder = scan_image_folder(data)
fin = without_classes(folder, held) if held else folder
train_ix, test_ix = stratified_split(fin.labels, tr.get("test_fraction", .2), tr.get("split_seed", 0))
t = time.time()
emb = b.embedder(bf16=True)
def E(fold, ix, f):
    ims = load_images([fold.paths[i] for i in ix])
    if f > 1: ims = [downscale(im, f) for im in ims]
    return emb.embed(ims, reduce=False)
w0 = float(b.meta.get("hybrid", 1.0)); s = np.sqrt(1 + w0**2)
def parts(X): return X[:, :128] * s, X[:, 128:] * s / w0
tr1 = parts(E(fin, train_ix, 1)); trm = [tr1] + [parts(E(fin, train_ix, f)) for f in (2, 4, 8)]
sets = {"test_x1": (parts(E(fin, test_ix, 1)), fin.labels[test_ix]), "test_x8": (parts(E(fin, test_ix, 8)), fin.labels[test_ix])}
if held:
    ho = only_classes(folder, held); hix = np.arange(len(ho))
    sets["held_x1"] = (parts(E(ho, hix, 1)), ho.labels); sets["held_x8"] = (parts(E(ho, hix, 8)), ho.labels)
print("embedded in", round(time.time() - t), "s", flush=True)
def mix(p, w):
    z, g = p; X = np.concatenate([z, w * g], 1) / np.sqrt(1 + w * w); return X
def pca(X, d, whiten=False):
    mu = X.mean(0); U, S, Vt = np.linalg.svd(X - mu, full_matrices=False)
    P = Vt[:d].T
    if whiten: P = P / (S[:d] / np.sqrt(len(X)))[None]
    return lambda Y: (lambda Z: Z / np.linalg.norm(Z, axis=1, keepdims=True))((Y - mu) @ P)
rows = []
for w in (1.0, 1.5, 2.0):
    for fitset in ("x1", "mixed"):
        F = mix(tr1, w) if fitset == "x1" else np.concatenate([mix(p, w) for p in trm])
        for d, wh in ((64, False), (64, True), (32, False)):
            R = pca(F, d, wh)
            r = {"w": w, "fit": fitset, "dim": d, "whiten": wh}
            for k, (p, y) in sets.items():
                r[k] = round(retrieval_metrics(R(mix(p, w)), y)["mAP"], 4)
            rows.append(r); print(json.dumps(r), flush=True)
for w in (1.0,):
    r = {"w": w, "fit": "none", "dim": 1408}
    for k, (p, y) in sets.items():
        X = mix(p, w); r[k] = round(retrieval_metrics(X, y)["mAP"], 4)
    print(json.dumps(r), flush=True)
