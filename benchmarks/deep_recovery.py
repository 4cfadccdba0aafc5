"""Deep HCL recovery on a nonlinear (tanh) simulation, against SharedPrivate and CLIP.

Prints, for every method, the held-out R^2 table block x true factor (linear regression of the true z_T
on the block), the *exclusive* R^2 of each partially shared factor (best over the method's blocks of
R^2 to z_S minus that block's largest R^2 to another shared factor), and the same for HCL with 30% of
rows missing modality "a".

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_recovery.py [--n 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

from hcl import metrics


def r2_table(blocks, sim):
    """Held-out R² of every true factor from every block (see :func:`hcl.metrics.r2_table`)."""
    return metrics.r2_table(blocks, sim.z)


def exclusive_r2(table, sim, factor):
    shared = [t for t in sim.z if "+" in t]
    blocks = sorted({b for b, _t in table})
    return max(table[(b, factor)] - max(table[(b, t)] for t in shared if t != factor) for b in blocks)


def simulate(n, seed, missing=None):
    from hcl.simulate import hierarchical

    return hierarchical(
        n,
        {"a": 30, "b": 30, "c": 30},
        2,
        noise=0.1,
        random_state=seed,
        loading_scale=(1.5, 2.5),
        nonlinearity="tanh",
        missing=missing,
    )


def run(n=3000, seed=0, n_threads=1):
    """Fit HCL, SharedPrivate, CLIP (full data) and HCL (30% missing a); return tables and timings."""
    from hcl.baselines import CLIP, SharedPrivate
    from hcl.deep import HCL

    sim = simulate(n, seed)
    sim_miss = simulate(n, seed, missing={"a": 0.3})
    out = {}
    kw = dict(random_state=seed, verbose=False, n_threads=n_threads)
    for name, model, data in [
        ("HCL", HCL(**kw), sim),
        ("SharedPrivate", SharedPrivate(**kw), sim),
        ("CLIP", CLIP(**kw), sim),
        ("HCL, 30% missing a", HCL(**kw), sim_miss),
    ]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(data.X)
        secs = time.perf_counter() - t0
        names = list(getattr(model, "candidates_", model.structure_))
        table = r2_table(model.transform(data.X, structures=names), data)
        out[name] = dict(table=table, seconds=secs, epochs=model.n_epochs_, sim=data, model=model)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = run(args.n, args.seed)
    for name, r in res.items():
        sim, table = r["sim"], r["table"]
        factors = list(sim.z)
        print(f"\n== {name}: fit {r['seconds']:.1f} s, {r['epochs']} epochs; R^2 block x true factor")
        print("block".ljust(10) + "".join(f.rjust(8) for f in factors))
        for b in dict.fromkeys(b for b, _t in table):
            print(b.ljust(10) + "".join(f"{table[(b, f)]:8.2f}" for f in factors))
    print("\n== exclusive R^2 of the partially shared factors (best block: own R^2 minus max other shared)")
    partial = [t for t in res["HCL"]["sim"].z if "+" in t and t.count("+") == 1]
    print("method".ljust(22) + "".join(p.rjust(8) for p in partial))
    for name, r in res.items():
        print(name.ljust(22) + "".join(f"{exclusive_r2(r['table'], r['sim'], p):8.2f}" for p in partial))
    full, miss = res["HCL"]["table"], res["HCL, 30% missing a"]["table"]
    print("\n== HCL own R^2, 30% missing a / full data")
    for s in [t for t in res["HCL"]["sim"].z if "+" in t]:
        print(
            f"{s:10s} full {full[(s, s)]:.3f}  missing {miss[(s, s)]:.3f}  ratio {miss[(s, s)] / full[(s, s)]:.3f}"
        )


if __name__ == "__main__":
    main()
