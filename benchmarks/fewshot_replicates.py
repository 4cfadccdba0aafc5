"""The k-shot label-efficiency protocol on generator seeds 0-4 (issue 14, point 8; targets (a), (b), (c)).

Per seed: the synthetic data (the repository's params.yaml with ``synth.seed`` changed), ingest, the
cohorts, the pretraining population and its features, every representation fitted once on it
(``ehr-hcl pretrain``), each cohort's embeddings, then ``ehr-hcl fewshot`` with the FULL protocol:
k in {1, 2, 4, 8, 16, 32, 64, 128, all}, 5 replicates, logistic / group lasso / HGB (the demo runs a
reduced one). predict and report are not run: nothing here needs them.

Prints per task, model and k: each representation's held_out AUROC, mean (min, max) over seeds x
replicates, and the paired differences (each HCL representation minus ``concat`` and minus the best
non-HCL representation, same draws), then the targets:

- (a) an HCL representation (deep or linear) beats ``concat`` by >= 0.03 AUROC at every k <= 32, both tasks;
- (b) deep HCL >= CLIP, shared-private, JIVE and PCA at every k;
- (c) at k = all, each HCL representation within 0.01 of the best baseline;

each as a mean over seeds x replicates with the same downstream model.

    .venv/bin/python benchmarks/fewshot_replicates.py [--seeds 0 1 2 3 4] [--workdir DIR] [--keep]
    .venv/bin/python benchmarks/fewshot_replicates.py --workdir DIR --report-only
    ... --ks 4 16 64 all --replicates 3          # a quicker, smaller protocol

Cost: about 8-10 minutes per seed on 2 cores (the few-shot stage with 7 representations is most of it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
FULL_KS = [1, 2, 4, 8, 16, 32, 64, 128, "all"]
HCL = ("hcl", "linear_hcl")
BASELINES_B = ("clip", "shared_private", "jive", "pca")


def _cli(ws: Path, params: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "pipeline", args[0], "--params", str(params), *args[1:], "--quiet"]
    subprocess.run(cmd, check=True, cwd=ws, stdout=subprocess.DEVNULL)


def run_seed(seed: int, workdir: Path, ks: list, replicates: int) -> None:
    """Run the pipeline up to the few-shot stage on generator seed ``seed`` in ``workdir/seed<seed>``."""
    ws = workdir / f"seed{seed}"
    ws.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"]["seed"] = seed
    params["fewshot"].update({"ks": ks, "replicates": replicates})
    params.setdefault("tracking", {})["tracking_uri"] = f"sqlite:///{(ws / 'mlflow.db').resolve()}"
    params["features"]["cache_dir"] = str(ROOT / "data" / "cache" / "notes")  # notes shared across seeds
    p = ws / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    cohorts = params["cohorts"]
    (ws / "cohorts").mkdir(exist_ok=True)
    for c in cohorts:
        shutil.copy(ROOT / "cohorts" / f"{c}.yaml", ws / "cohorts" / f"{c}.yaml")
    _cli(ws, p, "synth", "--output", "data/raw/synthetic")
    _cli(ws, p, "ingest", "--source", "mimic-iv", "--input", "data/raw/synthetic", "--output", "data/events")
    for c in cohorts:
        _cli(ws, p, "cohort", "--config", f"cohorts/{c}.yaml", "--events", "data/events", "--output", f"data/cohorts/{c}")
    _cli(ws, p, "population", "--events", "data/events", "--output", "data/pretraining")
    _cli(ws, p, "features", "--labels", "data/pretraining/population.parquet", "--output", "data/features/pretraining")
    _cli(ws, p, "pretrain")
    for c in cohorts:
        labels = f"data/cohorts/{c}/labels.parquet"
        _cli(ws, p, "features", "--labels", labels, "--fitted", "data/features/pretraining", "--output", f"data/features/{c}")
        _cli(ws, p, "embed", "--features", f"data/features/{c}", "--labels", labels, "--pretrained", "models/pretraining",
             "--output", f"data/embeddings/{c}", "--models", f"models/{c}")
        _cli(ws, p, "fewshot", "--cohort", c, "--labels", labels, "--embeddings", f"data/embeddings/{c}",
             "--metrics", f"metrics/fewshot/{c}.json", "--plots", f"plots/fewshot/{c}")


def read_seed(seed: int, workdir: Path) -> dict[str, dict]:
    """``{task: fewshot metrics JSON}`` of one seed's workspace."""
    folder = workdir / f"seed{seed}" / "metrics" / "fewshot"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _pooled(per_seed: list[dict], rep: str, model: str, k: str) -> np.ndarray:
    """AUROC of every seed x replicate of one cell."""
    return np.array(
        [r["auroc"] for m in per_seed for r in m["results"][rep][model][k]["replicates"] if r.get("auroc") is not None]
    )


def _pooled_diff(per_seed: list[dict], a: str, b: str, model: str, k: str) -> np.ndarray:
    """AUROC of ``a`` minus ``b`` on the same draws, every seed x replicate."""
    out = []
    for m in per_seed:
        ra, rb = m["results"][a][model][k]["replicates"], m["results"][b][model][k]["replicates"]
        out += [x["auroc"] - y["auroc"] for x, y in zip(ra, rb, strict=True)
                if x.get("auroc") is not None and y.get("auroc") is not None]
    return np.array(out)


def _fmt(v: np.ndarray, signed: bool = False) -> str:
    if not len(v):
        return "–"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v.mean())} ({f.format(v.min())}, {f.format(v.max())})"


def report(runs: dict[int, dict[str, dict]]) -> dict:
    """Print the tables and the target checks; return the targets' verdicts."""
    verdicts: dict[str, list] = {"a": [], "b": [], "c": []}
    for task in sorted({t for r in runs.values() for t in r}):
        per_seed = [r[task] for r in runs.values() if task in r]
        first = per_seed[0]
        reps, ks = list(first["results"]), first["ks"]
        models = list(next(iter(first["results"].values())))
        print(f"\n## {task}: held_out AUROC, mean (min, max) over {len(per_seed)} seeds x replicates")
        for model in models:
            print(f"\n### {model}\n")
            print("| representation | " + " | ".join(f"k={k}" for k in ks) + " |")
            print("|---|" + "---|" * len(ks))
            for rep in reps:
                print(f"| {rep} | " + " | ".join(_fmt(_pooled(per_seed, rep, model, k)) for k in ks) + " |")
            others = [r for r in reps if r not in HCL]
            for rep in (r for r in HCL if r in reps):
                row_c = [_fmt(_pooled_diff(per_seed, rep, "concat", model, k), True) for k in ks]
                print(f"| {rep} − concat | " + " | ".join(row_c) + " |")
                best = []
                for k in ks:
                    means = {o: _pooled(per_seed, o, model, k).mean() for o in others if len(_pooled(per_seed, o, model, k))}
                    b = max(means, key=means.get) if means else None
                    best.append(f"{_fmt(_pooled_diff(per_seed, rep, b, model, k), True)} [{b}]" if b else "–")
                print(f"| {rep} − best non-HCL | " + " | ".join(best) + " |")
            _targets(per_seed, task, model, reps, ks, verdicts)
    print("\n## targets (means over seeds x replicates, same downstream model)")
    for name, rows in verdicts.items():
        bad = [r for r in rows if not r[-1]]
        print(f"({name}) {'MET' if rows and not bad else 'MISSED'}: {len(rows) - len(bad)}/{len(rows)} checks hold")
        for r in bad[:12]:
            print("    fails:", *r[:-1])
    return verdicts


def _targets(per_seed, task, model, reps, ks, verdicts) -> None:
    mean = {(r, k): _pooled(per_seed, r, model, k).mean() for r in reps for k in ks if len(_pooled(per_seed, r, model, k))}
    for k in ks:
        if k != "all" and int(k) <= 32 and ("concat", k) in mean:
            gains = {r: mean[(r, k)] - mean[("concat", k)] for r in HCL if (r, k) in mean}
            if gains:
                best = max(gains, key=gains.get)
                verdicts["a"].append((task, model, f"k={k}", f"best HCL {best} − concat {gains[best]:+.3f}", gains[best] >= 0.03))
        if ("hcl", k) in mean:
            for b in BASELINES_B:
                if (b, k) in mean:
                    d = mean[("hcl", k)] - mean[(b, k)]
                    verdicts["b"].append((task, model, f"k={k}", f"hcl − {b} {d:+.3f}", d >= 0))
    if "all" in ks:
        base = {r: mean[(r, "all")] for r in reps if r not in HCL and (r, "all") in mean}
        if base:
            b = max(base, key=base.get)
            for r in HCL:
                if (r, "all") in mean:
                    d = mean[(r, "all")] - base[b]
                    verdicts["c"].append((task, model, "k=all", f"{r} − {b} {d:+.3f}", d >= -0.01))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="synth.seed values")
    ap.add_argument("--ks", nargs="+", default=[str(k) for k in FULL_KS], help="shots per class (and 'all')")
    ap.add_argument("--replicates", type=int, default=5)
    ap.add_argument("--workdir", type=Path, help="where the seed workspaces go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces")
    ap.add_argument("--report-only", action="store_true", help="print the tables of a kept --workdir; run nothing")
    args = ap.parse_args()
    ks = [k if k == "all" else int(k) for k in args.ks]
    if args.report_only:
        if args.workdir is None:
            ap.error("--report-only reads the workspaces of an earlier --workdir DIR --keep run; pass --workdir")
        report({s: read_seed(s, args.workdir) for s in args.seeds})
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ehr-hcl-fewshot-"))
    try:
        for seed in args.seeds:
            t0 = time.perf_counter()
            run_seed(seed, workdir, ks, args.replicates)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        report({s: read_seed(s, workdir) for s in args.seeds})
    finally:
        if not args.keep:
            for seed in args.seeds:
                shutil.rmtree(workdir / f"seed{seed}", ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"workspaces kept in {workdir}")


if __name__ == "__main__":
    main()
