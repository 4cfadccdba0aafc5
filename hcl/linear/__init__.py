"""LinearHCL: the covariance-based hierarchical factor estimator, with structure discovery.

Model (per modality ``m``, structures ``S`` = non-empty sets of modalities)::

    x_m = mu_m + sum_{S containing m} A_{m,S} z_S + eps_m,   z_S ~ N(0, I),   eps_m ~ N(0, sigma_m^2 I)

so the covariance is ``Sigma = W W^T + Psi`` with ``W`` zero in block (m, S) whenever m is not in S.

Fitting works from the means and the sample covariance only, gathered in one streaming pass over the
rows (:mod:`hcl.linear.moments`); nothing after that pass depends on the number of rows:

1. **Noise level** of each modality from the median eigenvalue of its covariance block, matched to the
   Marchenko-Pastur median (robust to the few signal eigenvalues; :mod:`hcl.linear.stats`).
2. **Peeling** (:mod:`hcl.linear.peeling`): on the signal covariance ``S - Psi``, structures are estimated
   from the smallest to the largest. For structure S with outside modalities O, the part of the S-block not
   explained by O is the Schur complement ``R_SS - R_SO R_OO^+ R_OS`` (``R_OO^+`` a rank-truncated
   pseudo-inverse whose eigenvalues are replaced by their spiked-model shrunk values, which cancels the
   finite-sample leak of shared signal into the complement); its top eigenpairs give ``A_{.,S}``, which is
   then subtracted. With ``ranks="auto"`` the rank of each step is the number of eigenvalues above the
   random-matrix (Marchenko-Pastur / BBP) edge of noise in ``d_S`` dims.
3. **Refinement** (:mod:`hcl.linear.em`): maximum likelihood under the structural zero pattern, started
   from the peeling estimate, by closed-form EM steps (one p x p by p x k product and k x k solves each)
   accelerated with SQUAREM; or (``refine="ls"``) the masked least-squares fit
   ``1/2 ||V V^T - (S - Psi)||_F^2``.
4. **Shrinkage**: each structure's components are de-biased and shrunk with the spiked-covariance formulas
   (population spike from the sample spike, times the squared cosine of the sample eigenvector). Components
   below the detection limit (squared loading norm below about ``sigma^2 sqrt(d_S / n)``) become zero and
   are flagged in :attr:`LinearHCL.summary`.
"""

from hcl.linear.estimator import LinearHCL
from hcl.linear.stats import mp_median, spike_shrinkage

__all__ = ["LinearHCL", "mp_median", "spike_shrinkage"]
