"""The synthetic demo on several generator seeds: is a representation better than the baselines, or lucky?

One demo has 757 held_out admissions and about 90 deaths, so a held_out AUROC has a bootstrap standard
error of about 0.02 (its 95% CI is ±0.045). This runs the whole pipeline (`ehr-hcl run`, the repository's
params.yaml with only ``synth.seed`` changed) once per seed, each in its own workspace and MLflow
store, and prints per task:

- every seed's oracle and held_out AUROC per representation x model;
- per representation x model, the mean, min and max over seeds of (AUROC - best baseline AUROC) with
  the same model, how many seeds it is at least as good, and the mean gap to the oracle;
- on how many seeds deep HCL kept exactly the generator's structures, and the recall and precision of
  the outcome structures the group lasso kept.

    .venv/bin/python benchmarks/demo_replicates.py [--seeds 0 1 2 3 4] [--workdir DIR] [--keep]
    .venv/bin/python benchmarks/demo_replicates.py --workdir DIR --report-only   # tables again, no rerun

About 4 minutes per seed on 2 cores.
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
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_seed(seed: int, workdir: Path) -> None:
    """Run the pipeline on generator seed ``seed`` in ``workdir/seed<seed>``."""
    ws = workdir / f"seed{seed}"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"]["seed"] = seed
    params.setdefault("tracking", {})["tracking_uri"] = f"sqlite:///{(ws / 'mlflow.db').resolve()}"
    ws.mkdir(parents=True, exist_ok=True)
    params_file = ws / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, "-m", "pipeline", "run", "--params", str(params_file), "--source", "synthetic", "--workspace", str(ws), "-q"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def read_seed(seed: int, workdir: Path) -> dict[str, dict]:
    """``{task: metrics JSON}`` of a seed's workspace, each with ``deep_structures_exact``: whether deep
    HCL kept exactly the generator's structures (its summary.csv against truth/structure.json)."""
    ws = workdir / f"seed{seed}"
    truth = set(json.loads((ws / "data/raw/synthetic/truth/structure.json").read_text())["structures"])
    out = {}
    for p in sorted((ws / "metrics").glob("*.json")):
        m = json.loads(p.read_text())
        summary = ws / "models" / p.stem / "hcl" / "summary.csv"
        if summary.exists():
            kept = set(pd.read_csv(summary).query("kept")["structure"])
            m["deep_structures_exact"] = kept == truth
        out[p.stem] = m
    return out


def report(runs: dict[int, dict[str, dict]]) -> None:
    tasks = sorted({t for r in runs.values() for t in r})
    for task in tasks:
        per_seed = {s: r[task] for s, r in runs.items() if task in r}
        first = next(iter(per_seed.values()))
        reps, baselines = list(first["results"]), list(first["baselines"])
        MODELS = list(next(iter(first["results"].values())))  # noqa: N806 (params predict.models)
        print(f"\n{task}: held_out AUROC per seed ({' / '.join(MODELS)})")
        for seed, m in per_seed.items():
            cells = " | ".join(
                f"{rep} " + " ".join(f"{m['results'][rep][mod]['auroc']:.3f}" for mod in MODELS)
                for rep in reps
            )
            print(f"  seed {seed}: oracle {m['oracle']['auroc']:.3f} | {cells}")
        print(f"  {'representation':<12} {'model':<12} {'- best baseline: mean (min, max)':<34} {'>= baseline':<12} oracle gap")
        for rep in reps:
            if rep in baselines:
                continue
            for mod in MODELS:
                diffs, gaps = [], []
                for m in per_seed.values():
                    res = m["results"]
                    best = max(res[b][mod]["auroc"] for b in baselines)
                    diffs.append(res[rep][mod]["auroc"] - best)
                    gaps.append(m["oracle"]["auroc"] - res[rep][mod]["auroc"])
                d = np.array(diffs)
                print(
                    f"  {rep:<12} {mod:<12} {d.mean():+.3f} ({d.min():+.3f}, {d.max():+.3f}){'':<14} "
                    f"{int((d >= 0).sum())}/{len(d):<10} {np.mean(gaps):.3f}"
                )
        exact = [m["deep_structures_exact"] for m in per_seed.values() if "deep_structures_exact" in m]
        if exact:
            print(f"  deep HCL kept exactly the generator's structures on {sum(exact)}/{len(exact)} seeds")
        for rep in reps:
            sel = [m["results"][rep].get("group_lasso", {}) for m in per_seed.values()]
            pr = [(g["selection_precision"], g["selection_recall"]) for g in sel if g.get("selection_recall") is not None]
            if pr:
                prec, rec = np.array(pr).T
                print(
                    f"  group lasso on {rep}: outcome structures kept, recall {rec.mean():.2f} "
                    f"(min {rec.min():.2f}), precision {prec.mean():.2f} (min {prec.min():.2f})"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="synth.seed values")
    ap.add_argument("--workdir", type=Path, help="where the seed workspaces go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces (data, models, reports, mlflow.db per seed)")
    ap.add_argument(
        "--report-only", action="store_true", help="print the tables from the kept workspaces in --workdir; run nothing"
    )
    args = ap.parse_args()
    if args.report_only:
        if args.workdir is None:
            ap.error("--report-only reads the workspaces of an earlier --workdir DIR --keep run; pass --workdir")
        report({seed: read_seed(seed, args.workdir) for seed in args.seeds})
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ehr-hcl-replicates-"))
    try:
        for seed in args.seeds:
            t0 = time.perf_counter()
            run_seed(seed, workdir)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        report({seed: read_seed(seed, workdir) for seed in args.seeds})
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
