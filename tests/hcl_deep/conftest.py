"""Small simulated data sets shared by the hcl_deep tests."""


import pytest

from hcl import metrics
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


def r2_table(blocks, sim):
    """Held-out R² of every true factor from every block (see :func:`hcl.metrics.r2_table`)."""
    return metrics.r2_table(blocks, sim.z)


@pytest.fixture(scope="session")
def small_sim():
    return simulate(n=400, seed=1)
