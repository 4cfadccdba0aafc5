"""Issue 17 figures: LinearHCL's speed, accuracy and memory against the authors' estimator and the old fit.

Usage::

    .venv/bin/python benchmarks/linear_speed.py                          # all tables (about 5 min)
    .venv/bin/python benchmarks/linear_speed.py --baseline e238148       # + the old L-BFGS fit, same run
    .venv/bin/python benchmarks/linear_speed.py --skip memory --ns 5000 10000 20000

Design (the paper's, as in ``benchmarks/recovery.py``): M = 3, dims (100, 500, 800), rank 3 for each of
the 7 structures, loadings' singular values in [0.5, 1.5], isotropic noise variance 1 or 6, ``ranks=3``.

Prints, per noise and n:

- fit time, split (inside the same fit) into the covariance pass (input checks and ``Moments`` over the
  rows) and the rest (``LinearHCL._solve``), which should not grow with n; wall and CPU seconds; the authors' times from issue 17's table; with ``--baseline REV`` the fit of ``hcl/linear.py``
  at git revision REV (the L-BFGS refinement) on the same data in the same run;
- mean block error (``hcl.metrics.gram_errors``) of the fit, of the baseline and of the all-zero estimate;
- the pipeline's set-up (``ranks="auto"``, ``max_rank=4``) on a demo-sized matrix, refinement off and on;
- the peak memory (tracemalloc) of a chunked 200k x 1,400 fit against the size of the dense array.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hcl.linear import LinearHCL  # noqa: E402
from hcl.metrics import gram_errors  # noqa: E402
from hcl.simulate import hierarchical  # noqa: E402

DIMS = {"a": 100, "b": 500, "c": 800}
#: issue 17's table: the authors' estimator, measured on 2 cores (seconds)
AUTHORS = {(1.0, 5000): 3.6, (1.0, 20000): 1.8, (6.0, 5000): 1.9, (6.0, 20000): 2.1}


def load_baseline(rev: str):
    """The ``LinearHCL`` class of ``hcl/linear.py`` at git revision ``rev`` (the pre-EM estimator)."""
    src = subprocess.run(
        ["git", "show", f"{rev}:hcl/linear.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "linear_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("linear_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["linear_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod.LinearHCL


class _SolveTimer:
    """Times ``LinearHCL._solve`` (everything after the statistics pass) inside a real ``fit``."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self._orig = LinearHCL._solve

    def __enter__(self):
        timer = self

        def solve(est, *a, **kw):
            t, c = time.perf_counter(), time.process_time()
            try:
                return timer._orig(est, *a, **kw)
            finally:
                timer.wall += time.perf_counter() - t
                timer.cpu += time.process_time() - c

        LinearHCL._solve = solve
        return self

    def __exit__(self, *exc):
        LinearHCL._solve = self._orig


def timed_fit(cls, X, cpu=False, **kw):
    """Fit ``cls(**kw)`` on ``X``; returns the estimator and its wall seconds (and CPU seconds)."""
    t, c = time.perf_counter(), time.process_time()
    est = cls(**kw).fit(X)
    if cpu:
        return est, time.perf_counter() - t, time.process_time() - c
    return est, time.perf_counter() - t


def speed_accuracy(ns, noises, seeds, baseline=None, tol=None):
    rows = []
    for noise in noises:
        for n in ns:
            for seed in seeds:
                sim = hierarchical(n, DIMS, 3, noise=noise, random_state=seed)
                kw = dict(ranks=3) if tol is None else dict(ranks=3, tol=tol)
                with _SolveTimer() as solve:
                    est, fit_s, fit_cpu = timed_fit(LinearHCL, sim.X, cpu=True, **kw)
                cov_s, cov_cpu = fit_s - solve.wall, fit_cpu - solve.cpu
                e = gram_errors(sim.loadings, est.loadings_, sim.modalities)
                row = dict(
                    noise=noise,
                    n=n,
                    seed=seed,
                    fit_s=fit_s,
                    cov_pass_s=cov_s,
                    after_pass_s=fit_s - cov_s,
                    fit_cpu_s=fit_cpu,
                    cov_pass_cpu_s=cov_cpu,
                    n_iter=est.n_iter_,
                    objective=est.objective_,
                    block_err=e.mean_block,
                    zero_err=float(e.blocks["norm"].mean()),
                    authors_s=AUTHORS.get((noise, n), np.nan),
                )
                if baseline is not None:
                    old, old_s, old_cpu = timed_fit(baseline, sim.X, cpu=True, ranks=3)
                    row.update(
                        old_fit_s=old_s,
                        old_fit_cpu_s=old_cpu,
                        old_objective=old.objective_,
                        old_block_err=gram_errors(sim.loadings, old.loadings_, sim.modalities).mean_block,
                    )
                rows.append(row)
                print(
                    "  ", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True
                )
    return pd.DataFrame(rows)


def report(df: pd.DataFrame) -> None:
    pd.set_option("display.width", 220, "display.max_columns", 30)
    tab = df.groupby(["noise", "n"]).mean(numeric_only=True).drop(columns="seed")
    tab["share_cov_pass"] = tab["cov_pass_s"] / tab["fit_s"]
    tab["ok_pass+1s"] = tab["fit_s"] <= tab["cov_pass_s"] + 1.0
    tab["ok_pass+1s_cpu"] = tab["fit_cpu_s"] <= tab["cov_pass_cpu_s"] + 1.0
    tab["ok_authors"] = ~(tab["fit_s"] >= tab["authors_s"])  # NaN (no authors' figure) counts as ok
    if "old_fit_s" in tab:
        tab["speedup"] = tab["old_fit_s"] / tab["fit_s"]
        tab["speedup_cpu"] = tab["old_fit_cpu_s"] / tab["fit_cpu_s"]
        tab["err_ratio_new/old"] = tab["block_err"] / tab["old_block_err"]
        tab["obj_new-old"] = tab["objective"] - tab["old_objective"]
    tab["err/zero"] = tab["block_err"] / tab["zero_err"]
    print("\n=== LinearHCL(ranks=3).fit: seconds, mean block error (mean over seeds) ===")
    print(tab.round(4).to_string())
    for noise, d in tab.groupby(level="noise"):
        ns = d.index.get_level_values("n").to_numpy(float)
        if len(ns) > 1:
            sl_pass = np.polyfit(np.log(ns), np.log(d["cov_pass_s"]), 1)[0]
            sl_rest = np.polyfit(np.log(ns), np.log(d["after_pass_s"].clip(lower=1e-3)), 1)[0]
            print(
                f"noise {noise:g}: log-log slope vs n: covariance pass {sl_pass:+.2f}, the rest {sl_rest:+.2f}"
            )


def chunk_stream(n, chunk, dims, seed=0, noise=1.0):
    """Rows of the recovery design generated chunk by chunk with one fixed truth (never all in memory)."""
    sim = hierarchical(10, dims, 3, noise=noise, random_state=seed)
    rng = np.random.default_rng(seed + 1)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = {s: rng.standard_normal((m, r)) for s, r in sim.structure.items()}
        X = {}
        for mod, d in dims.items():
            x = np.sqrt(noise) * rng.standard_normal((m, d))
            for s in sim.structure:
                if (mod, s) in sim.loadings:
                    x += z[s] @ sim.loadings[(mod, s)].T
            X[mod] = x
        yield X


def memory(n=200_000, dims=None, chunk=10_000):
    dims = dims or {"a": 100, "b": 500, "c": 800}
    p = sum(dims.values())
    dense = n * p * 8
    tracemalloc.start()
    t = time.perf_counter()
    est = LinearHCL(ranks=3).fit(chunk_stream(n, chunk, dims))
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"\n=== Memory: LinearHCL(ranks=3).fit over {n // chunk} chunks of {chunk} rows, {n} x {p} ===\n"
        f"  peak traced memory {peak / 2**20:.0f} MiB; dense float64 array {dense / 2**20:.0f} MiB; "
        f"ratio {peak / dense:.3f} (< 0.25 required); fit {dt:.1f} s incl. generating the rows "
        f"(under tracemalloc), {est.n_iter_} EM steps"
    )
    return peak / dense


DEMO_DIMS = {"codes": 150, "labs": 60, "medications": 80, "notes": 64}
DEMO_MISSING = {"medications": 0.15, "notes": 0.3}


def _standardised_features(folder: Path) -> dict:
    """A ``features`` folder of the pipeline, each column standardised on its observed rows."""
    from hcl.preprocessing import column_scale

    mask = pd.read_parquet(folder / "mask.parquet")
    X = {}
    for m in mask.columns:
        v = pd.read_parquet(folder / f"{m}.parquet").to_numpy(dtype=np.float64, copy=True)
        obs = mask[m].to_numpy(dtype=bool)
        if v.shape[1] == 0 or obs.sum() < 10:
            continue
        mean, scale = column_scale(v[obs])
        v = (v - mean) / scale
        v[~obs] = np.nan
        X[m] = v
    return X


def demo(n=6000, baseline=None, features=None):
    """The pipeline's ``linear_hcl`` set-up (ranks auto, max_rank 4) on a demo-sized matrix."""
    if features is None:
        sim = hierarchical(n, DEMO_DIMS, 2, noise=1.0, random_state=0, missing=DEMO_MISSING)
        X, what = (
            sim.X,
            f"simulated {n} x {sum(DEMO_DIMS.values())} over 4 modalities, rank 2 x 15, missing rows",
        )
    else:
        X = _standardised_features(Path(features))
        n = next(iter(X.values())).shape[0]
        what = f"{features}: {n} x {sum(x.shape[1] for x in X.values())} over {list(X)}"
    print(f"\n=== Demo-sized fit (ranks='auto', max_rank=4): {what} ===")
    runs = [
        ("refine=False", LinearHCL, dict(refine=False)),
        ("refine=True (EM)", LinearHCL, dict(refine=True)),
    ]
    if baseline is not None:
        runs.append(("refine=True (old L-BFGS)", baseline, dict(refine=True)))
    for name, cls, kw in runs:
        est, dt = timed_fit(cls, X, ranks="auto", max_rank=4, **kw)
        print(f"  {name:26s} {dt:6.2f} s  {est.n_iter_:5d} iterations  structure {est.structure_}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", nargs="*", type=int, default=[5000, 10000, 20000, 100000])
    ap.add_argument("--noises", nargs="*", type=float, default=[1.0, 6.0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--baseline", default=None, help="git revision whose hcl/linear.py to time alongside")
    ap.add_argument("--baseline-max-n", type=int, default=20000, help="largest n for the baseline fit")
    ap.add_argument("--tol", type=float, default=None, help="LinearHCL tol (default: the estimator's)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["speed", "memory", "demo"])
    ap.add_argument("--features", default=None, help="a pipeline features folder for the demo-sized fit")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if "speed" not in args.skip:
        base = load_baseline(args.baseline) if args.baseline else None
        small = [n for n in args.ns if n <= args.baseline_max_n]
        large = [n for n in args.ns if n > args.baseline_max_n]
        parts = [speed_accuracy(small, args.noises, range(args.seeds), base, args.tol)]
        if large:
            parts.append(speed_accuracy(large, args.noises, range(args.seeds), None, args.tol))
        report(pd.concat(parts, ignore_index=True))
    if "demo" not in args.skip:
        demo(baseline=load_baseline(args.baseline) if args.baseline else None, features=args.features)
    if "memory" not in args.skip:
        memory()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
