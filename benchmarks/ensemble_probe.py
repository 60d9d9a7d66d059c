"""Do ensembles of the shipped bundles beat the default on the UCMD test split? (issue 12)

Embeds the test split with each named bundle (stored 64-d vectors, and the unreduced output
with a PCA 64 fitted on the training split), then scores every combination: the
L2-normalised stored vectors concatenated, and the concatenated unreduced outputs through
one PCA 64.  A screen for distilling an ensemble into one network.

    python benchmarks/ensemble_probe.py v2,v3,v4,default
"""
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lda_pca_weight import bundle_split
from rsir_stac.model.data import load_images
from rsir_stac.evaluate import retrieval_metrics
from rsir_stac.reduce import PCAReducer
data = os.path.join(os.environ.get("RSIR_DATA", "../shared/data"), "ucmerced")
names=sys.argv[1].split(",")
b0, folder, held, fin, tr, te = bundle_split("default", data)
ims_te=load_images([fin.paths[i] for i in te]); ims_tr=load_images([fin.paths[i] for i in tr])
yte=fin.labels[te]
Z={}; U={}; rows=[]
for n in names:
    b,*_=bundle_split(n,data); e=b.embedder(bf16=True)
    Z[n]=e.embed(ims_te); U[n]=(e.embed(ims_tr,reduce=False), e.embed(ims_te,reduce=False))
    m=retrieval_metrics(Z[n],yte); print(n, b.model_id, round(m["mAP"],4), round(m["P@10"],4), flush=True)
    rows.append({"models": [n], "model_id": b.model_id, "mAP": round(m["mAP"], 4), "P@10": round(m["P@10"], 4)})
nz=lambda a: a/np.linalg.norm(a,axis=1,keepdims=True)
for r in range(2,len(names)+1):
    for c in itertools.combinations(names,r):
        cat=np.hstack([nz(Z[n]) for n in c]); m=retrieval_metrics(cat,yte)
        X=np.hstack([nz(U[n][0]) for n in c]); T=np.hstack([nz(U[n][1]) for n in c])
        p=PCAReducer(64).fit(X); m2=retrieval_metrics(p.transform(T),yte)
        print(c, "concat64s", round(m["mAP"],4), round(m["P@10"],4), "pca64", round(m2["mAP"],4), round(m2["P@10"],4), flush=True)
        rows.append({"models": list(c), "concat_mAP": round(m["mAP"], 4), "concat_P@10": round(m["P@10"], 4),
                     "pca64_mAP": round(m2["mAP"], 4), "pca64_P@10": round(m2["P@10"], 4)})
print(json.dumps({"rows": rows}))
