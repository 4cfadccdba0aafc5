"""Small simulated data sets shared by the hcl_deep tests."""

import numpy as np
import pytest

from hcl.simulate import hierarchical

DIMS = {"a": 20, "b": 20, "c": 20}


def simulate(n=1500, missing=None, seed=0, dims=DIMS, ranks=2):
    return hierarchical(
        n,
        dims,
        ranks,
        noise=0.1,
        random_state=seed,
        loading_scale=(1.5, 2.5),
        nonlinearity="tanh",
        missing=missing,
    )


def r2(block, z, train, test):
    """Held-out R^2 of a least-squares regression of ``z`` on ``block`` (with intercept)."""
    b1 = np.c_[block, np.ones(len(block))]
    coef, *_ = np.linalg.lstsq(b1[train], z[train], rcond=None)
    resid = z[test] - b1[test] @ coef
    return 1 - (resid**2).sum() / ((z[test] - z[test].mean(0)) ** 2).sum()


def r2_table(blocks, sim):
    n = len(next(iter(sim.z.values())))
    train, test = np.arange(n // 2), np.arange(n // 2, n)
    return {(s, t): r2(B, sim.z[t], train, test) for s, B in blocks.items() for t in sim.z}


@pytest.fixture(scope="session")
def small_sim():
    return simulate(n=400, seed=1)
