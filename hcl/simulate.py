"""The hierarchical latent-variable simulator.

For modalities ``m = 1..M`` and structures ``S`` (non-empty subsets of modalities)::

    x_m = sum_{S containing m} A_{m,S} z_S + eps_m,   z_S ~ N(0, I_{r_S}),   eps_m ~ N(0, noise * I)

Each loading block ``A_{m,S}`` (d_m x r_S) is ``U diag(s) V^T`` with random orthonormal ``U``, ``V`` and
singular values ``s`` uniform in ``loading_scale``. Optionally the signal passes through ``tanh`` before
the noise is added, rows miss whole modalities, and an outcome is generated from chosen structures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hcl.exceptions import ValidationError
from hcl.structures import normalize_ranks, parse_structure

__all__ = ["Simulation", "hierarchical", "normalize_ranks"]


@dataclass(frozen=True)
class Simulation:
    """A simulated data set and its ground truth.

    Attributes
    ----------
    X : dict of str to ndarray (n, d_m)
        Observed data; rows missing a modality are NaN in that modality.
    mask : dict of str to ndarray of bool (n,)
        True where the row has the modality.
    loadings : dict of (str, str) to ndarray (d_m, r_S)
        True loading blocks ``A_{m,S}`` for every present structure ``S`` and every ``m`` in ``S``.
    z : dict of str to ndarray (n, r_S)
        True latent factors of every present structure.
    structure : dict of str to int
        Present structures and their ranks, in the order of :func:`hcl.structures.all_structures`.
    modalities : tuple of str
    noise : float
        Noise variance.
    y : ndarray (n,) or None
        Outcome (0/1 for ``kind="logistic"``, float for ``kind="linear"``).
    y_prob : ndarray (n,) or None
        True event probabilities for a logistic outcome.
    outcome_structures : tuple of str
        Structures that drive the outcome (empty without an outcome).
    outcome_coef : dict of str to ndarray (r_S,)
        Coefficients of each driving structure's factors in the linear predictor.
    signal : dict of str to ndarray (n, d_m)
        Noise-free data (after the nonlinearity, if any), NaN where missing.
    """

    X: dict
    mask: dict
    loadings: dict
    z: dict
    structure: dict
    modalities: tuple
    noise: float
    y: np.ndarray | None = None
    y_prob: np.ndarray | None = None
    outcome_structures: tuple = ()
    outcome_coef: dict = field(default_factory=dict)
    signal: dict = field(default_factory=dict, repr=False)

    def loading_matrix(self) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Return the full loading matrix W (sum d_m x sum r_S) and its column labels (structure, index)."""
        return assemble_W(self.loadings, self.modalities, self.structure, self._dims())

    def _dims(self) -> dict[str, int]:
        return {m: self.X[m].shape[1] for m in self.modalities}


def assemble_W(loadings, modalities, structure, dims) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Stack loading blocks into W (sum d_m x sum r_S); absent (m, S) blocks are zero."""
    offs = np.cumsum([0] + [dims[m] for m in modalities])
    cols = [(s, j) for s, r in structure.items() for j in range(r)]
    W = np.zeros((offs[-1], len(cols)))
    c = 0
    for s, r in structure.items():
        for i, m in enumerate(modalities):
            blk = loadings.get((m, s))
            if blk is not None:
                W[offs[i] : offs[i + 1], c : c + r] = blk
        c += r
    return W, cols


def _orthonormal(rng: np.random.Generator, d: int, r: int) -> np.ndarray:
    q, rr = np.linalg.qr(rng.standard_normal((d, r)))
    return q * np.sign(np.diag(rr))


def hierarchical(
    n: int,
    dims: Mapping[str, int],
    ranks,
    noise: float = 1.0,
    random_state=None,
    missing: Mapping[str, float] | None = None,
    loading_scale: tuple[float, float] = (0.5, 1.5),
    nonlinearity: str | None = None,
    outcome: Mapping | None = None,
) -> Simulation:
    """Simulate from the hierarchical latent-variable model.

    Parameters
    ----------
    n : int
        Number of rows.
    dims : mapping of str to int
        Modality name -> number of features d_m; its order is the modality order (M >= 2).
    ranks : int or mapping of str to int
        Rank of every structure (int) or per structure name (0 or absent = structure absent).
    noise : float, default 1.0
        Noise variance (isotropic, same in every modality).
    random_state : int, numpy Generator or None
    missing : mapping of str to float, optional
        Modality -> fraction of rows that miss it (set to NaN in ``X``). Every row keeps at least one
        modality.
    loading_scale : (float, float), default (0.5, 1.5)
        Range of the uniform distribution of each block's singular values.
    nonlinearity : {None, "tanh"}
        If "tanh", ``x_m = tanh(signal_m) + eps_m``.
    outcome : mapping, optional
        ``dict(structures=[names], kind="logistic"|"linear", strength=float)``. The linear predictor is
        ``strength * sum_S z_S b_S / sqrt(#structures)`` with random unit vectors ``b_S`` (variance
        ``strength**2``); logistic draws Bernoulli(sigmoid(.)), linear adds N(0, 1) noise.

    Returns
    -------
    Simulation
    """
    modalities = _check_args(n, dims, noise, loading_scale, nonlinearity)
    rk = normalize_ranks(ranks, modalities)
    structure = {s: r for s, r in rk.items() if r > 0}
    rng = np.random.default_rng(random_state)
    loadings, z = _draw_truth(rng, n, dims, structure, modalities, loading_scale)
    X, signal = _draw_data(rng, n, dims, structure, modalities, loadings, z, noise, nonlinearity)
    mask = _remove_modalities(rng, n, modalities, missing, X, signal)
    y = y_prob = None
    out_structs: tuple = ()
    coef: dict[str, np.ndarray] = {}
    if outcome is not None:
        y, y_prob, out_structs, coef = _draw_outcome(rng, n, outcome, structure, modalities, z)
    return Simulation(
        X=X,
        mask=mask,
        loadings=loadings,
        z=z,
        structure=structure,
        modalities=modalities,
        noise=float(noise),
        y=y,
        y_prob=y_prob,
        outcome_structures=out_structs,
        outcome_coef=coef,
        signal=signal,
    )


def _check_args(n, dims, noise, loading_scale, nonlinearity) -> tuple[str, ...]:
    """Validate the scalar arguments of :func:`hierarchical`; returns the modality order."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValidationError(f"n must be a positive int, got {n!r}")
    if not isinstance(dims, Mapping) or len(dims) < 2:
        raise ValidationError(f"dims must map at least 2 modality names to sizes, got {dims!r}")
    modalities = tuple(dims)
    for m, d in dims.items():
        if not isinstance(m, str) or "+" in m or not m:
            raise ValidationError(f"modality name {m!r} must be a non-empty string without '+'")
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValidationError(f"dims[{m!r}] must be a positive int, got {d!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValidationError(f"noise (a variance) must be >= 0, got {noise!r}")
    lo, hi = loading_scale
    if not (0 <= lo <= hi):
        raise ValidationError(
            f"loading_scale must be (low, high) with 0 <= low <= high, got {loading_scale!r}"
        )
    if nonlinearity not in (None, "tanh"):
        raise ValidationError(f"nonlinearity must be None or 'tanh', got {nonlinearity!r}")
    return modalities


def _draw_truth(rng, n, dims, structure, modalities, loading_scale):
    """Draw the loadings of every (modality, structure) block, then the factors of every structure."""
    lo, hi = loading_scale
    loadings: dict[tuple[str, str], np.ndarray] = {}
    z: dict[str, np.ndarray] = {}
    for s, r in structure.items():
        members = parse_structure(s, modalities)
        for m in members:
            d = int(dims[m])
            if r > d:
                raise ValidationError(
                    f"rank {r} of structure {s!r} exceeds the {d} features of modality {m!r}"
                )
            sv = rng.uniform(lo, hi, size=r)
            loadings[(m, s)] = (_orthonormal(rng, d, r) * sv) @ _orthonormal(rng, r, r).T
    # factors after all loadings, so one seed gives the same truth at every n
    for s, r in structure.items():
        z[s] = rng.standard_normal((n, r))
    return loadings, z


def _draw_data(rng, n, dims, structure, modalities, loadings, z, noise, nonlinearity):
    """Signal (optionally through tanh) and noisy observations of every modality."""
    X: dict[str, np.ndarray] = {}
    signal: dict[str, np.ndarray] = {}
    for m in modalities:
        sig = np.zeros((n, int(dims[m])))
        for s in structure:
            if (m, s) in loadings:
                sig += z[s] @ loadings[(m, s)].T
        if nonlinearity == "tanh":
            sig = np.tanh(sig)
        signal[m] = sig
        X[m] = sig + np.sqrt(noise) * rng.standard_normal(sig.shape)
    return X, signal


def _remove_modalities(rng, n, modalities, missing, X, signal) -> dict[str, np.ndarray]:
    """Blank (NaN) each modality on its ``missing`` fraction of rows, keeping one modality per row."""
    mask = {m: np.ones(n, dtype=bool) for m in modalities}
    if not missing:
        return mask
    for m, frac in missing.items():
        if m not in modalities:
            raise ValidationError(f"missing names unknown modality {m!r}; modalities are {list(modalities)}")
        if not (0 <= frac < 1):
            raise ValidationError(f"missing[{m!r}] must be a fraction in [0, 1), got {frac!r}")
        k = int(round(frac * n))
        if k == 0:
            continue
        n_obs = sum(mask[o].astype(int) for o in modalities)
        eligible = np.where(mask[m] & (n_obs >= 2))[0]
        if len(eligible) < k:
            raise ValidationError(
                f"cannot remove modality {m!r} from {k} rows while keeping one modality per row; "
                "lower the missing fractions"
            )
        rows = rng.choice(eligible, size=k, replace=False)
        mask[m][rows] = False
    for m in modalities:
        X[m][~mask[m]] = np.nan
        signal[m][~mask[m]] = np.nan
    return mask


def _draw_outcome(rng, n, outcome, structure, modalities, z):
    """Outcome ``y`` (and its probability, for a logistic one) from the named structures' factors."""
    if not isinstance(outcome, Mapping):
        raise ValidationError(f"outcome must be a dict(structures=..., kind=..., strength=...), got {outcome!r}")
    unknown = set(outcome) - {"structures", "kind", "strength"}
    if unknown:
        raise ValidationError(f"outcome has unknown keys {sorted(unknown)}; use structures, kind, strength")
    names = outcome.get("structures")
    if not names:
        raise ValidationError("outcome['structures'] must list at least one structure name")
    canon = ["+".join(parse_structure(s, modalities)) for s in names]
    absent = [s for s in canon if s not in structure]
    if absent:
        raise ValidationError(f"outcome structures {absent} are absent (rank 0) in this simulation")
    kind_ = outcome.get("kind", "logistic")
    if kind_ not in ("logistic", "linear"):
        raise ValidationError(f"outcome['kind'] must be 'logistic' or 'linear', got {kind_!r}")
    strength = float(outcome.get("strength", 1.0))
    coef: dict[str, np.ndarray] = {}
    eta = np.zeros(n)
    for s in canon:
        b = rng.standard_normal(structure[s])
        b /= np.linalg.norm(b)
        coef[s] = strength * b / np.sqrt(len(canon))
        eta += z[s] @ coef[s]
    y_prob = None
    if kind_ == "logistic":
        y_prob = 1.0 / (1.0 + np.exp(-eta))
        y = (rng.uniform(size=n) < y_prob).astype(np.int64)
    else:
        y = eta + rng.standard_normal(n)
    return y, y_prob, tuple(canon), coef
