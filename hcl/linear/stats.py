"""Random-matrix helpers of LinearHCL: Marchenko-Pastur noise levels and spiked-covariance shrinkage."""

from __future__ import annotations

import numpy as np

__all__ = ["edge", "mp_median", "noise_from_eigs", "spike_shrinkage"]

_MP_CACHE: dict[float, float] = {}


def mp_median(gamma: float) -> float:
    """Median of the Marchenko-Pastur law with ratio ``gamma = d / n <= 1`` and unit variance."""
    gamma = float(min(max(gamma, 1e-12), 1.0))
    key = round(gamma, 6)
    if key in _MP_CACHE:
        return _MP_CACHE[key]
    lo, hi = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    t = np.linspace(0, np.pi, 20001)
    x = (lo + hi) / 2 - (hi - lo) / 2 * np.cos(t)  # Chebyshev-like grid, dense at the edges
    dens = np.sqrt(np.maximum((hi - x) * (x - lo), 0)) / (2 * np.pi * gamma * np.maximum(x, 1e-300))
    dx = np.gradient(x)
    cdf = np.cumsum(dens * dx)
    cdf /= cdf[-1]
    med = float(np.interp(0.5, cdf, x))
    _MP_CACHE[key] = med
    return med


def noise_from_eigs(eigs: np.ndarray, n: int) -> float:
    """Noise variance from covariance eigenvalues of a d-dim block (Gavish-Donoho median rule)."""
    eigs = np.sort(eigs)
    # A modality whose features span fewer dimensions than it has columns (e.g. embeddings of a few
    # templated sentences) has a null space of exactly zero variance; its median eigenvalue is then 0
    # and every structure with it looks infinitely strong. Read the noise from the spanned part only.
    rank = int(np.sum(eigs > 1e-8 * max(float(eigs[-1]), 1e-300)))
    eigs = eigs[len(eigs) - max(rank, 1) :]
    d = len(eigs)
    if d <= n:
        return float(max(np.median(eigs), 1e-12) / mp_median(d / n))
    # d > n: only n nonzero eigenvalues, which follow MP with ratio n/d scaled by d/n
    nz = eigs[-n:]
    return float(max(np.median(nz), 1e-12) / ((d / n) * mp_median(n / d)))


def spike_shrinkage(ell_hat: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """De-bias and shrink spiked-covariance components.

    Parameters
    ----------
    ell_hat : ndarray (r,)
        Sample spike strengths in noise units (sample eigenvalue / noise - 1).
    gamma : float
        Dimension-to-sample ratio d / n of the space the components live in.

    Returns
    -------
    ell : ndarray (r,)
        Population spike estimates (0 below the detection edge ``(1 + sqrt(gamma))^2``).
    shrunk : ndarray (r,)
        ``ell * cos^2``: the Frobenius-optimal squared norm of the estimated component.
    """
    lam = 1.0 + np.asarray(ell_hat, dtype=float)
    upper = (1 + np.sqrt(gamma)) ** 2
    ell = np.zeros_like(lam)
    shrunk = np.zeros_like(lam)
    ok = lam > upper
    b = lam[ok] - 1 - gamma
    ell[ok] = (b + np.sqrt(np.maximum(b * b - 4 * gamma, 0))) / 2
    e = ell[ok]
    c2 = np.clip((1 - gamma / e**2) / (1 + gamma / e), 0, 1)
    shrunk[ok] = e * c2
    return ell, shrunk


def edge(gamma: float) -> float:
    """Excess of the Marchenko-Pastur upper edge over 1: (1 + sqrt(g))^2 - 1."""
    return 2 * np.sqrt(gamma) + gamma
