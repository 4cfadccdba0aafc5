"""Streaming sufficient statistics of LinearHCL: per-modality means and the covariance, in one pass.

Rows arrive in chunks (mappings ``{modality: (n_chunk, d_m) array}``); a row that is all NaN in a modality
does not have it. The statistics are exactly those of the whole array:

- the mean of each modality over the rows that have it;
- the covariance block of modalities ``a`` and ``b`` over the rows that have both, centred at those means
  and divided by the number of such rows (pairwise-complete; the plain sample covariance when no row
  misses a modality).

Sums run in float64 on values shifted by the first chunk's mean of each modality, which keeps the
cancellation of ``sum x x^T - n mean mean^T`` small whatever the data's offset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hcl.exceptions import ValidationError

__all__ = ["Moments"]

#: rows per block when a chunk is centred and multiplied (bounds the temporary copy)
BLOCK_ROWS = 4096


class Moments:
    """Accumulator of means and (pairwise-complete) cross-products of multi-modality rows.

    Parameters
    ----------
    modalities : sequence of str
        Modality names, in the column order of the covariance.
    dims : mapping of str to int
        Features per modality.

    Attributes
    ----------
    n_rows : int
        Rows seen.
    """

    def __init__(self, modalities: Sequence[str], dims: Mapping[str, int]):
        self.modalities = tuple(modalities)
        self.dims = {m: int(dims[m]) for m in self.modalities}
        offs = np.cumsum([0] + [self.dims[m] for m in self.modalities])
        self.slices = {m: slice(int(offs[i]), int(offs[i + 1])) for i, m in enumerate(self.modalities)}
        self.p = int(offs[-1])
        self.n_rows = 0
        self.shift: dict[str, np.ndarray | None] = {m: None for m in self.modalities}
        self.cross = np.zeros((self.p, self.p))
        # observation pattern (tuple of bool per modality) -> [row count, sum of shifted values (p,)]
        self.patterns: dict[tuple[bool, ...], list] = {}

    def update(self, X: Mapping[str, np.ndarray]) -> None:
        """Add the rows of one validated chunk (float64 arrays, whole-row NaN for a missing modality)."""
        mods = self.modalities
        n = next(iter(X.values())).shape[0]
        if n == 0:
            return
        obs = np.column_stack([~np.isnan(X[m][:, 0]) for m in mods])
        for i, m in enumerate(mods):
            if self.shift[m] is None and obs[:, i].any():
                self.shift[m] = X[m].mean(axis=0) if obs[:, i].all() else X[m][obs[:, i]].mean(axis=0)
        code = obs @ (1 << np.arange(len(mods)))  # one integer per observation pattern
        uniq, inv = np.unique(code, return_inverse=True)
        for pi, c in enumerate(uniq):
            rows = np.flatnonzero(inv == pi) if len(uniq) > 1 else None
            self._add_pattern(X, tuple(bool(c >> i & 1) for i in range(len(mods))), rows)
        self.n_rows += n

    def _add_pattern(self, X, pat: tuple[bool, ...], rows: np.ndarray | None) -> None:
        """Cross-products and sums of the rows ``rows`` (all rows if None), which share pattern ``pat``."""
        use = [m for m, o in zip(self.modalities, pat, strict=True) if o]
        if not use:
            return
        n = next(iter(X.values())).shape[0] if rows is None else len(rows)
        width = sum(self.dims[m] for m in use)
        offs = np.cumsum([0] + [self.dims[m] for m in use])
        count, total = self.patterns.get(pat, (0, np.zeros(self.p)))
        G = np.zeros((width, width))
        buf = np.empty((min(n, BLOCK_ROWS), width))
        for start in range(0, n, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, n)
            Y = buf[: stop - start]
            sel = slice(start, stop) if rows is None else rows[start:stop]
            for j, m in enumerate(use):
                np.subtract(X[m][sel], self.shift[m], out=Y[:, offs[j] : offs[j + 1]])
            G += Y.T @ Y
            for j, m in enumerate(use):
                total[self.slices[m]] += Y[:, offs[j] : offs[j + 1]].sum(axis=0)
        for i, a in enumerate(use):  # only the blocks finalize reads (a before b in modality order)
            for j, b in enumerate(use[i:], start=i):
                self.cross[self.slices[a], self.slices[b]] += G[offs[i] : offs[i + 1], offs[j] : offs[j + 1]]
        self.patterns[pat] = [count + n, total]

    def counts(self) -> dict[str, int]:
        """Rows that have each modality."""
        return {
            m: sum(c for pat, (c, _) in self.patterns.items() if pat[i])
            for i, m in enumerate(self.modalities)
        }

    def finalize(self) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
        """Return the covariance (p, p), the mean of each modality and its number of observed rows.

        Raises
        ------
        ValidationError
            A modality is observed in fewer than 3 rows, or two modalities together in fewer than 2.
        """
        mods = self.modalities
        n_obs = self.counts()
        for m in mods:
            if n_obs[m] < 3:
                raise ValidationError(
                    f"modality {m!r} (shape {self.n_rows}x{self.dims[m]}) is observed in only {n_obs[m]} rows; "
                    "at least 3 are needed"
                )
        sl = self.slices
        mean_y = {}
        for i, m in enumerate(mods):
            mean_y[m] = sum(t[sl[m]] for pat, (_, t) in self.patterns.items() if pat[i]) / n_obs[m]
        S = np.empty((self.p, self.p))
        for i, a in enumerate(mods):
            for j in range(i, len(mods)):
                b = mods[j]
                both = [(c, t) for pat, (c, t) in self.patterns.items() if pat[i] and pat[j]]
                n_ab = sum(c for c, _ in both)
                if n_ab < 2:
                    raise ValidationError(
                        f"modalities {a!r} and {b!r} are observed together in only {n_ab} rows; "
                        "their covariance cannot be estimated"
                    )
                s_a = sum(t[sl[a]] for _, t in both)
                s_b = sum(t[sl[b]] for _, t in both)
                blk = self.cross[sl[a], sl[b]] - np.outer(s_a, mean_y[b]) - np.outer(mean_y[a], s_b)
                blk += n_ab * np.outer(mean_y[a], mean_y[b])
                blk /= n_ab
                if i == j:
                    blk = (blk + blk.T) / 2
                S[sl[a], sl[b]] = blk
                S[sl[b], sl[a]] = blk.T
        mean = {m: self.shift[m] + mean_y[m] for m in mods}
        return S, mean, n_obs
