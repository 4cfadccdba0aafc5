"""Shared helpers for the linear-HCL tests (designs from issue 6)."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Two shared cores: oversubscribed BLAS threads make these small fits many times slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


RECOVERY_DIMS = {"a": 100, "b": 500, "c": 800}
SMALL_DIMS = {"a": 30, "b": 60, "c": 90}
M4_DIMS = {"a": 100, "b": 300, "c": 500, "d": 800}
SMALL_M4_DIMS = {"a": 100, "b": 150, "c": 200, "d": 250}
ABSENT_RANKS = {"a+b+c": 3, "a+b": 3, "b+c": 3, "a": 3, "c": 3}  # a+c (pairwise) and b (private) absent


def naive_loadings(X, k):
    """The naive baseline: top-k eigenpairs of the raw sample covariance, W = U diag(sqrt(lambda))."""
    Xc = np.hstack([x - x.mean(axis=0) for x in X.values()])
    S = Xc.T @ Xc / Xc.shape[0]
    lam, U = np.linalg.eigh(S)
    return U[:, -k:] * np.sqrt(lam[-k:])
