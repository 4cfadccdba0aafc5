"""Acceptance figures for the linear half of ``hcl`` (issue 6): recovery, discovery, selection, speed.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recovery.py            # full tables (about 15 min CPU)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recovery.py --quick    # small version (about 2 min)

Recovery design (the paper's): M = 3, dims (100, 500, 800), rank 3 for each of the 7 structures, loadings'
singular values uniform in [0.5, 1.5], isotropic noise variance 1 or 6. Metric: one orthogonal Procrustes
rotation of the whole estimate onto the truth, then per (modality, structure) block ||A A^T - Â Â^T||_F and
the overall ||W W^T - Ŵ Ŵ^T||_F. Methods: ``LinearHCL`` with the true ranks, its peeling-only and
variant, the naive baseline (top-21 eigenpairs of the raw sample covariance,
W = U diag(sqrt(lambda))) and the all-zero estimate.

Speed against the authors' estimator and the former L-BFGS fit, time against n, the share of the covariance
pass, the demo-sized fit and the memory of a chunked 200k x 1,400 fit: ``benchmarks/linear_speed.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcl.linear import LinearHCL  # noqa: E402
from hcl.metrics import gram_errors, structure_recovery  # noqa: E402
from hcl.selection import GroupLassoClassifier  # noqa: E402
from hcl.simulate import hierarchical  # noqa: E402

DIMS = {"a": 100, "b": 500, "c": 800}
M4_DIMS = {"a": 100, "b": 300, "c": 500, "d": 800}
DESIGNS = {
    "7-structure": (DIMS, 3),
    "2 absent (a+c, b)": (DIMS, {"a+b+c": 3, "a+b": 3, "b+c": 3, "a": 3, "c": 3}),
    "M=4 (rank 2 x 15)": (M4_DIMS, 2),
}


def naive(X: dict, k: int) -> np.ndarray:
    Xc = np.hstack([x - x.mean(axis=0) for x in X.values()])
    S = Xc.T @ Xc / Xc.shape[0]
    lam, U = np.linalg.eigh(S)
    return U[:, -k:] * np.sqrt(lam[-k:])


def recovery(ns, noises, seeds):
    methods = {
        "LinearHCL": dict(ranks=3),
        "peel only": dict(ranks=3, refine=False, shrink=False),
    }
    rows, fits = [], []
    for noise in noises:
        for n in ns:
            for seed in seeds:
                sim = hierarchical(n, DIMS, 3, noise=noise, random_state=seed)
                ests = {}
                for name, kw in methods.items():
                    t, c = time.perf_counter(), time.process_time()
                    est = LinearHCL(**kw).fit(sim.X)
                    dt, dc = time.perf_counter() - t, time.process_time() - c
                    ests[name] = est.loadings_
                    if name == "LinearHCL":
                        n_flag = int(est.summary["near_detection_limit"].sum())
                        n_zero = int((est.summary["rank"] - est.summary["rank_detectable"]).sum())
                        fits.append(
                            dict(
                                noise=noise,
                                n=n,
                                seed=seed,
                                seconds=dt,
                                cpu_seconds=dc,
                                n_iter=est.n_iter_,
                                objective=est.objective_,
                                converged=est.converged_,
                                flagged_structures=n_flag,
                                components_shrunk_to_0=n_zero,
                            )
                        )
                ests["naive top-21"] = naive(sim.X, 21)
                ests["all-zero"] = np.zeros((sum(DIMS.values()), 0))
                for name, est in ests.items():
                    e = gram_errors(sim.loadings, est, sim.modalities)
                    for _, b in e.blocks.iterrows():
                        rows.append(
                            dict(
                                noise=noise,
                                n=n,
                                seed=seed,
                                method=name,
                                block=f"{b.modality}|{b.structure}",
                                error=b.error,
                            )
                        )
                    rows.append(
                        dict(noise=noise, n=n, seed=seed, method=name, block="MEAN", error=e.mean_block)
                    )
                    rows.append(
                        dict(noise=noise, n=n, seed=seed, method=name, block="OVERALL", error=e.overall)
                    )
    return pd.DataFrame(rows), pd.DataFrame(fits)


def slope(ns, vals):
    return float(np.polyfit(np.log(ns), np.log(vals), 1)[0])


def report_recovery(df, fits, ns):
    pd.set_option("display.width", 200, "display.max_rows", 500, "display.max_columns", 50)
    for noise, d in df.groupby("noise"):
        print(f"\n=== Recovery, noise variance {noise:g}: mean over {d.seed.nunique()} seeds ===")
        tab = d.groupby(["block", "method", "n"]).error.mean().unstack("n")
        print(tab.round(3).to_string())
        mean = tab.xs("MEAN", level="block")
        overall = tab.xs("OVERALL", level="block")
        print("\nratios (LinearHCL / baseline) per n:")
        ratio = pd.DataFrame(
            {
                "mean block / naive": mean.loc["LinearHCL"] / mean.loc["naive top-21"],
                "mean block / zero": mean.loc["LinearHCL"] / mean.loc["all-zero"],
                "overall / naive": overall.loc["LinearHCL"] / overall.loc["naive top-21"],
                "overall / zero": overall.loc["LinearHCL"] / overall.loc["all-zero"],
            }
        ).T
        print(ratio.round(3).to_string())
        if len(ns) > 1:
            print("\nlog-log slope of error vs n:")
            for m in mean.index:
                print(
                    f"  {m:14s} mean block {slope(ns, mean.loc[m].values):+.3f}   "
                    f"overall {slope(ns, overall.loc[m].values):+.3f}"
                )
    print("\n=== LinearHCL fits (true ranks): wall time, refinement iterations, final objective ===")
    print(
        fits.groupby(["noise", "n"])
        .agg(
            wall_s=("seconds", "mean"),
            wall_s_max=("seconds", "max"),
            cpu_s=("cpu_seconds", "mean"),
            n_iter=("n_iter", "mean"),
            objective=("objective", "mean"),
            converged=("converged", "all"),
            flagged=("flagged_structures", "mean"),
            shrunk_to_0=("components_shrunk_to_0", "mean"),
        )
        .round(3)
        .to_string()
    )


def discovery(seeds, n=5000, designs=None):
    print(f"\n=== Discovery (ranks='auto'), n={n}, noise 1, loadings' singular values in [1, 2] ===")
    for i, (name, (dims, ranks)) in enumerate(DESIGNS.items()):
        if designs is not None and i not in designs:
            continue
        ok, times, fails = 0, [], []
        for seed in seeds:
            sim = hierarchical(n, dims, ranks, noise=1.0, loading_scale=(1, 2), random_state=seed)
            t = time.perf_counter()
            est = LinearHCL(ranks="auto").fit(sim.X)
            times.append(time.perf_counter() - t)
            rec = structure_recovery(sim.structure, est.structure_)
            ok += rec["exact"]
            if not rec["exact"]:
                fails.append((seed, rec["missed"], rec["spurious"], rec["rank_errors"]))
        print(
            f"  {name:22s} exact structure and ranks in {ok}/{len(seeds)} seeds "
            f"(mean fit {np.mean(times):.2f} s)"
        )
        for f in fails:
            print(f"      seed {f[0]}: missed {f[1]} spurious {f[2]} rank errors {f[3]}")


def selection(seeds, n=5000, n_lab=2000, strength=2.0):
    print(
        f"\n=== Selection: GroupLassoClassifier on LinearHCL(auto) blocks, {n_lab} labelled rows, "
        f"logistic outcome from a+b and c (strength {strength}) ==="
    )
    ok = 0
    for seed in seeds:
        sim = hierarchical(
            n,
            DIMS,
            3,
            noise=1.0,
            loading_scale=(1, 2),
            random_state=seed,
            outcome=dict(structures=["a+b", "c"], kind="logistic", strength=strength),
        )
        Z = LinearHCL(ranks="auto").fit(sim.X).transform(sim.X)
        clf = GroupLassoClassifier(random_state=seed).fit({s: z[:n_lab] for s, z in Z.items()}, sim.y[:n_lab])
        good = sorted(clf.selected_) == ["a+b", "c"]
        ok += good
        if not good:
            print(f"      seed {seed}: selected {clf.selected_}")
    print(f"  exactly the 2 true structures selected in {ok}/{len(seeds)} seeds")


def speed(n=30000):
    sim = hierarchical(n, DIMS, 3, noise=1.0, random_state=0)
    t, c = time.perf_counter(), time.process_time()
    est = LinearHCL(ranks=3).fit(sim.X)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(
        f"\n=== Speed: LinearHCL(ranks=3).fit at n={n}, dims (100, 500, 800), noise 1: {dt:.2f} s wall, "
        f"{dc:.2f} s CPU ({est.n_iter_} refinement iterations) ==="
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small version: 2 n, 1 seed, 3 discovery seeds")
    ap.add_argument("--seeds", type=int, default=None, help="recovery seeds per cell (default 2, quick 1)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["recovery", "discovery", "selection", "speed"])
    ap.add_argument("--designs", nargs="*", type=int, default=None, help="discovery designs to run (0, 1, 2)")
    ap.add_argument("--discovery-seeds", type=int, default=None, help="default 20 (quick 3)")
    args = ap.parse_args(argv)
    ns = [5000, 10000] if args.quick else [5000, 10000, 20000, 30000]
    rseeds = range(args.seeds if args.seeds else (1 if args.quick else 2))
    dseeds = range(args.discovery_seeds if args.discovery_seeds else (3 if args.quick else 20))
    t0 = time.perf_counter()
    if "speed" not in args.skip:
        speed()
    if "recovery" not in args.skip:
        df, fits = recovery(ns, [1.0, 6.0], rseeds)
        report_recovery(df, fits, ns)
    if "discovery" not in args.skip:
        discovery(dseeds, designs=args.designs)
    if "selection" not in args.skip:
        selection(dseeds)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
