"""Deep HCL fit time on simulated data the shape of the demo's pretraining population.

7,759 rows; modalities codes 70, labs 210, medications 40, notes 384 columns (codes missing in 21% of
rows); the pipeline's settings (embedding_dim=8, hidden=(), decorrelation=3.0, prune_threshold=0.3).
Prints, for the current code:

- a fit of ``--epochs`` epochs with early stopping off: seconds per epoch (two fits when a triple is
  dropped: the main fit and the refit, as the pipeline runs them);
- the fusion models' seconds (covariance EM, :func:`hcl.deep.blocks.factor_analysis`) next to
  scikit-learn's ``FactorAnalysis(svd_method="lapack")`` (the previous implementation) on the same heads,
  and the largest difference between the two models;
- with ``--full``, one fit with the pipeline's ``max_epochs=300`` and early stopping: seconds, epochs.

    .venv/bin/python benchmarks/deep_speed.py [--epochs 8] [--threads 1] [--full] [--n 7759]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

DIMS = {"codes": 70, "labs": 210, "medications": 40, "notes": 384}
SETTINGS = {"embedding_dim": 8, "hidden": (), "decorrelation": 3.0, "prune_threshold": 0.3}


def simulated(n: int):
    from hcl.simulate import hierarchical

    return hierarchical(
        n,
        DIMS,
        2,
        noise=1.0,
        random_state=0,
        loading_scale=(0.5, 1.5),
        nonlinearity="tanh",
        missing={"codes": 0.21},
    ).X


def fit(X, threads, **kw):
    """Fit HCL; returns the model, seconds, and the seconds of each epoch (training + validation)."""
    from hcl.deep import HCL

    stamps: list[float] = []

    class Timed(HCL):
        def _epoch_end(self, epoch: int) -> None:
            stamps.append(time.perf_counter())

    est = Timed(**SETTINGS, random_state=0, verbose=False, n_threads=threads, **kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    secs = time.perf_counter() - t0
    return est, secs, np.diff(stamps)


def fusion_times(est, X) -> tuple[float, float, float]:
    """Seconds of the fusion models now and with scikit-learn's FactorAnalysis, and their largest gap.

    On the heads of every trained shared structure (the fit keeps only some of them).
    """
    from sklearn.decomposition import FactorAnalysis

    from hcl import deep
    from hcl.deep.blocks import factor_analysis
    from hcl.structures import parse_structure

    xs, mask = est._prepare(X)
    heads, observed = est._head_outputs(xs), mask.cpu().numpy()
    mods = est.modalities_
    ours = theirs = gap = 0.0
    for s, dim in est.candidates_.items():  # every trained shared structure, kept or not
        members = parse_structure(s, mods)
        if len(members) < 2:
            continue
        rows = observed[[mods.index(m) for m in members]].all(axis=0)
        H = np.hstack([heads[m][s][rows] for m in members])
        t0 = time.perf_counter()
        fa = factor_analysis(H, dim, deep._FUSION_MAX_ITER)
        ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = FactorAnalysis(
                dim, svd_method="lapack", random_state=0, max_iter=deep._FUSION_MAX_ITER
            ).fit(H)
        theirs += time.perf_counter() - t0
        gap = max(gap, float(np.abs(fa["loadings"] - ref.components_.T).max()))
        gap = max(gap, float(np.abs(fa["noise"] - ref.noise_variance_).max()))
    return ours, theirs, gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=7759)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--full", action="store_true", help="also one fit with max_epochs=300 and early stopping")
    args = ap.parse_args()

    X = simulated(args.n)
    print(f"n={args.n}, dims {DIMS}, {args.threads} torch thread(s)")
    fit(X, args.threads, max_epochs=1)  # warm-up: imports, first-call costs
    est, secs, epochs = fit(X, args.threads, max_epochs=args.epochs, patience=None)
    fits = 1 + bool(est.dropped_structures_)
    print(
        f"{args.epochs} epochs x {fits} fit(s), early stopping off: {secs:.1f} s; "
        f"median {np.median(epochs):.3f} s/epoch (training + validation)"
    )
    ours, theirs, gap = fusion_times(est, X)
    print(
        f"fusion: {ours:.2f} s (covariance EM); scikit-learn FactorAnalysis {theirs:.2f} s "
        f"({theirs / max(ours, 1e-9):.0f}x); largest loading/noise difference {gap:.1e}"
    )
    if args.full:
        est, secs, epochs = fit(X, args.threads, max_epochs=300)
        print(
            f"full fit (max_epochs=300, early stopping): {secs:.1f} s, {len(epochs) + 1} epochs in all "
            f"({np.median(epochs):.3f} s/epoch); "
            f"structures {sorted(est.structure_)}"
        )


if __name__ == "__main__":
    main()
