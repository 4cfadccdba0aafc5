"""Deep HCL training throughput (samples/second) and its ratio to the CLIP baseline.

Same data (the nonlinear recovery design), same backbone, same batch size and a fixed number of epochs
(early stopping off), ``n_threads`` torch threads (2 = the cores of the reference machine). Target: the
HCL / CLIP time ratio <= 3.

    .venv/bin/python benchmarks/train_speed.py [--n 3000] [--epochs 20] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
import warnings


def measure(cls, X, epochs, threads, **kw) -> float:
    model = cls(max_epochs=epochs, patience=None, verbose=False, random_state=0, n_threads=threads, **kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from hcl.baselines import CLIP
    from hcl.deep import HCL
    from hcl.simulate import hierarchical

    sim = hierarchical(
        args.n,
        {"a": 30, "b": 30, "c": 30},
        2,
        noise=0.1,
        random_state=0,
        loading_scale=(1.5, 2.5),
        nonlinearity="tanh",
    )
    n_train = args.n - round(0.1 * args.n)
    rows = []
    for name, cls, kw in [
        ("HCL spectral", HCL, {}),
        ("HCL infonce", HCL, {"loss": "infonce"}),
        ("CLIP", CLIP, {}),
    ]:
        best = min(measure(cls, sim.X, args.epochs, args.threads, **kw) for _ in range(args.repeats))
        rows.append((name, best, n_train * args.epochs / best))
    clip = rows[-1][1]
    print(
        f"n={args.n} (train {n_train}), dims 30/30/30, 7 structures, {args.epochs} epochs, "
        f"{args.threads} threads, best of {args.repeats}"
    )
    for name, secs, sps in rows:
        print(f"{name:14s} {secs:7.2f} s  {sps:10.0f} samples/s  time ratio to CLIP {secs / clip:5.2f}")


if __name__ == "__main__":
    main()
