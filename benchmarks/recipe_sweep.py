"""Training-recipe sweep for issue 12 (RESULTS §7, eighteenth session): several recipes in
parallel, each a chain of `rsir-stac train` (stage 1 from ImageNet, 25 epochs) -> `rsir-stac train
--from S1 --view-distill 4 --epochs 6 --lr 1e-4` (stage 2, the v5 recipe) -> evaluation, on all 21
classes (split seed 0) and on 16 classes (leave classes out, seed 0).  Writes summary.json, the
logs and histories, and the bundles of the best validation runs to OUT.

    python benchmarks/recipe_sweep.py DATA OUT DEADLINE_S          # every chain at once
    SWEEP_ONLY=base,dp25 python benchmarks/recipe_sweep.py ...      # some recipes
    SWEEP_TINY=1 ...                                                 # 1 step an epoch (smoke run)
    python benchmarks/recipe_sweep.py --reencode SRC DST [QUALITY]  # lossy WebP copy of a folder

It was run on a lent GPU machine (one H200, 16 cores; 14 chains at once, OMP_NUM_THREADS=1 each,
`export PYTHONPATH=$PWD:$PWD/.gpu/site`), whose 64 MiB transfer limit does not take UC Merced's
180 MB of lossless WebP: the images travelled re-encoded as WebP quality 90 (41 MB, RMS error
~3 grey levels; `--reencode`). On this 2-core CPU each chain takes ~50 min alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

EVAL = sys.argv[1] in ("--eval", "--reencode")
DATA = sys.argv[2] if EVAL else sys.argv[1]
OUT = Path("." if EVAL else sys.argv[2])
DEADLINE = 0.0 if EVAL else float(sys.argv[3])
TINY = os.environ.get("SWEEP_TINY") == "1"
ONLY = [c for c in os.environ.get("SWEEP_ONLY", "").split(",") if c]
RUNS = Path("runs_gpu")
T0 = time.time()

BASE = ["--recipe", "v3", "--distill", "0.5", "--reducer", "pca", "--reducer-dim", "64"]
CONFIGS = {
    "base": [],
    "pk21x6": ["--p", "21", "--k", "6"],
    "f8": ["--freeze-blocks", "8"],
    "f11": ["--freeze-blocks", "11"],
    "dp25": ["--downscale-prob", "0.25"],
    "dp25pk": ["--downscale-prob", "0.25", "--p", "21", "--k", "6"],
    "dp25f8": ["--downscale-prob", "0.25", "--freeze-blocks", "8"],
}
EPOCHS1, EPOCHS2 = ("1", "1") if TINY else ("25", "6")
TINY_ARGS = ["--max-steps-per-epoch", "1"] if TINY else []


def train(args, log):
    cmd = [sys.executable, "-c", "from rsir_stac.cli import main; main()", "train", DATA, *args, *TINY_ARGS]
    with open(log, "a") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        left = DEADLINE - (time.time() - T0)
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=max(left, 1)).returncode


def evaluate(bundle, lco):
    from rsir_stac.evaluate import evaluate_folder, resolve_model

    b = resolve_model(str(bundle))
    r = {"model_id": b.model_id}
    hist = json.loads((Path(bundle).parent / "history.json").read_text())
    r["val_best"] = max(h["val_mAP"] for h in hist)
    r["history"] = hist
    scales = (1, 8) if lco else (1, 2, 4, 8)
    for s in scales:
        m = evaluate_folder(DATA, b, split="test", scale=s)
        r[f"test_x{s}"] = m["mAP"]
        if s == 1:
            r["test_P@10"] = m["P@10"]
    if lco:
        for s in (1, 8):
            r[f"held_x{s}"] = evaluate_folder(DATA, b, split="all", classes="held-out", scale=s)["mAP"]
    return r


def chain(name, lco):
    tag = name + ("-lco" if lco else "")
    d = RUNS / tag
    d.mkdir(parents=True, exist_ok=True)
    log = d / "log.txt"
    extra = CONFIGS[name] + (["--leave-out-n", "5"] if lco else [])
    res = {"name": name, "lco": lco}
    t = time.time()
    try:
        rc = train(["--out", str(d / "s1"), *BASE, *extra, "--epochs", EPOCHS1], log)
        res["s1_rc"], res["s1_s"] = rc, round(time.time() - t, 1)
        if rc:
            return res
        t = time.time()
        rc = train(["--out", str(d / "s2"), *BASE, *extra, "--from", str(d / "s1" / "bundle"),
                    "--view-distill", "4", "--epochs", EPOCHS2, "--lr", "1e-4"], log)
        res["s2_rc"], res["s2_s"] = rc, round(time.time() - t, 1)
        if rc:
            return res
        t = time.time()
        for st in ("s1", "s2"):
            p = subprocess.run([sys.executable, __file__, "--eval", DATA, str(d / st / "bundle"), str(int(lco))],
                               capture_output=True, text=True, timeout=300)
            with open(log, "a") as fh:
                fh.write(p.stderr[-4000:])
            res[st] = json.loads(p.stdout.strip().splitlines()[-1])
        res["eval_s"] = round(time.time() - t, 1)
    except Exception as exc:  # noqa: BLE001
        res["error"] = repr(exc)
    return res


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = [(n, lco) for n in CONFIGS if not ONLY or n in ONLY for lco in (False, True)]
    with ThreadPoolExecutor(len(jobs)) as ex:
        results = list(ex.map(lambda j: chain(*j), jobs))
    summary = {"seconds": round(time.time() - T0, 1), "results": results}
    try:
        import torch
        summary["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        summary["torch"] = torch.__version__
    except Exception:  # noqa: BLE001
        pass
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    with tarfile.open(OUT / "logs.tar.gz", "w:gz") as tf:
        for p in RUNS.glob("*/log.txt"):
            tf.add(p, arcname=str(p))
        for p in RUNS.glob("*/s*/history.json"):
            tf.add(p, arcname=str(p))
    full = [r for r in results if not r["lco"] and "s2" in r]
    full.sort(key=lambda r: -r["s2"]["val_best"])
    pick = [r["name"] for r in full[:3]]
    if "base" not in pick:
        pick.append("base")
    send = [f"{n}/s2" for n in pick] + ([f"{full[0]['name']}-lco/s2"] if full else [])
    if full and full[0]["name"] != "base":
        send.append("base-lco/s2")
    for s in send[:6]:
        b = RUNS / s / "bundle"
        if b.is_dir():
            with tarfile.open(OUT / (s.replace("/", "_") + ".tar"), "w") as tf:
                tf.add(b, arcname=s.replace("/", "_"))
    for r in results:
        line = {k: r.get(k) for k in ("name", "lco", "s1_s", "s2_s")}
        for st in ("s1", "s2"):
            if st in r:
                line[st] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r[st].items()
                            if k != "history"}
        print(json.dumps(line))
    print("sent", send[:6], "total s", summary["seconds"])


def reencode(src: str, dst: str, quality: int = 90) -> None:
    """Copy an image folder tree as lossy WebP (same relative paths, so split digests agree)."""
    from PIL import Image

    for p in sorted(Path(src).rglob("*.webp")):
        q = Path(dst) / p.relative_to(src)
        q.parent.mkdir(parents=True, exist_ok=True)
        Image.open(p).convert("RGB").save(q, format="WEBP", quality=quality)


if __name__ == "__main__":
    if sys.argv[1] == "--reencode":
        reencode(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
    elif EVAL:
        print(json.dumps(evaluate(sys.argv[3], bool(int(sys.argv[4])))))
    else:
        main()
