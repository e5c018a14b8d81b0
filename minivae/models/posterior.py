r"""The encoder's q(z|x): a diagonal or a full-covariance Gaussian, with the reparameterization.

Notation: d is the latent size, C the Cholesky factor of q's covariance (L is
kept for the loss alone).  Both families are q(z|x) = N(μ, C Cᵀ) with

    C = diag(σ) + T,     σ = exp(½ logvar)  (logvar = log σ², so C_jj = σ_j > 0),

T strictly lower triangular: zero for the **diagonal** posterior (Σ = diag σ²),
free for the **full** one, whose encoder has a third head for the d(d−1)/2
entries below the diagonal (``tril`` = :data:`TRIL_SCALE` times the head's
output, packed row by row as ``numpy.tril_indices(d, -1)`` lists them).  The
diagonal stays exp(½ logvar), so it is positive for any network output.

For the full posterior, σ_j² = C_jj² is *not* q's marginal variance of z_j:
that is Σ_jj = (C Cᵀ)_jj = σ_j² + Σ_{k<j} T_jk².  ``logvar`` is always
log C_jj², the log of the factor's squared diagonal.

Reparameterization, ε ~ N(0, I)::

    z = μ + C ε,     z_i = μ_i + σ_i ε_i + Σ_{j<i} T_ij ε_j

Because z − μ = C ε, the quadratic form of the density is εᵀε, whatever T is::

    (z − μ)ᵀ (C Cᵀ)⁻¹ (z − μ) = εᵀ Cᵀ C⁻ᵀ C⁻¹ C ε = εᵀ ε

and log|det C Cᵀ| = 2 Σ_j log C_jj = Σ_j logvar_j (C is triangular), so the
density of the sample is the same expression for both families::

    log q(z|x) = −½ [ d log 2π + log|det C Cᵀ| + (z − μ)ᵀ(C Cᵀ)⁻¹(z − μ) ]
               = −½ Σ_j [ ε_j² + log 2π + logvar_j ]

KL to the prior N(0, I): :func:`minivae.kl.kl_normal_std` for the diagonal q,
:func:`minivae.kl.kl_mvn_tril_std` (KL = ½(‖C‖²_F + ‖μ‖² − d) − Σ log C_jj) for the
full one; for T = 0 the two agree.

Backward.  Given ∂L/∂z (with ε held fixed), from z_i = μ_i + σ_i ε_i + Σ_{j<i} T_ij ε_j::

    ∂L/∂μ_i       = ∂L/∂z_i
    ∂L/∂logvar_i  = ∂L/∂z_i · ε_i · ∂σ_i/∂logvar_i = ∂L/∂z_i · ½ σ_i ε_i
    ∂L/∂T_ij      = ∂L/∂z_i · ε_j                       (i > j)

summed over the draws when several ε share one q (the IWAE's k).  The KL's own
gradient, by the chain rule through C_jj = σ_j (∂σ_j/∂logvar_j = ½σ_j), from
∂KL/∂C = tril(C) − diag(1/C_jj) (:func:`~minivae.kl.kl_mvn_tril_std_grad`)::

    ∂KL/∂μ = μ,   ∂KL/∂logvar_j = (σ_j − 1/σ_j) · ½ σ_j = ½ (σ_j² − 1),   ∂KL/∂T_ij = T_ij

— the diagonal's ½(σ² − 1) unchanged, plus T itself.
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import array_module
from ..fast import twin
from ..kl import kl_mvn_tril_std, kl_mvn_tril_std_grad, kl_normal_std, kl_normal_std_grad
from ..numerics import LOG_2PI

#: The posterior families of a VAE.
POSTERIORS = ("diagonal", "full")

#: T = TRIL_SCALE · (the tril head's output).  Adam moves every weight by about its
#: learning rate per step whatever the size of its gradient, and T's gradient, ∂L/∂z_i ε_j,
#: is mostly noise: at full scale T wanders and the shared encoder learns slower (30
#: epochs, 4 seeds: 4.7 nats of −ELBO behind the diagonal q).  Scaled by 0.1 the full q
#: matches the diagonal one, by 0.01 it is 0.5 nats ahead (2 seeds); 0.01 it is.
TRIL_SCALE = 0.01


@functools.lru_cache(maxsize=None)
def _below_diagonal(d: int):
    """(rows, cols) of the entries below the diagonal, in ``tril``'s packing order (computed once)."""
    return np.tril_indices(d, -1)


def tril_size(latent_dim: int) -> int:
    """The entries strictly below the diagonal of a latent_dim × latent_dim matrix."""
    return latent_dim * (latent_dim - 1) // 2


@twin("reparameterize")
def reparameterize(mu, logvar, eps):
    """(σ, z): σ = exp(½ logvar) and z = μ + σ ⊙ ε (fast twin: one fused kernel on CuPy)."""
    std = array_module(mu).exp(0.5 * logvar)
    return std, mu + std * eps


class Posterior:
    """q(z|x) for a batch: ``mu`` and ``logvar`` (B, d), and ``tril`` (B, d(d−1)/2) or None."""

    def __init__(self, mu, logvar, tril=None):
        self.mu, self.logvar, self.tril = mu, logvar, tril
        self.xp = array_module(mu)
        self._std = self._T = self._C = None

    @property
    def std(self):
        """σ = exp(½ logvar), (B, d)."""
        if self._std is None:
            self._std = self.xp.exp(0.5 * self.logvar)
        return self._std

    def mu_logvar(self):
        return self.mu, self.logvar

    @property
    def full(self) -> bool:
        return self.tril is not None

    def strict_lower(self):
        """T, (B, d, d): the packed ``tril`` entries below the diagonal, zeros elsewhere."""
        if self._T is None:
            B, d = self.mu.shape
            rows, cols = _below_diagonal(d)
            self._T = self.xp.zeros((B, d, d), dtype=self.mu.dtype)
            self._T[:, rows, cols] = self.tril
        return self._T

    def scale_tril(self):
        """C = diag(σ) + T, (B, d, d): q's covariance is C Cᵀ (built once, for KL and gradient)."""
        if self._C is None:
            C = self.strict_lower().copy() if self.full else \
                self.xp.zeros(self.mu.shape + self.mu.shape[-1:], dtype=self.mu.dtype)
            idx = np.arange(self.mu.shape[1])
            C[:, idx, idx] = self.std
            self._C = C
        return self._C

    def sample(self, eps):
        """z = μ + C ε for ε (B, d), or (B, k, d) for k draws per example."""
        if eps.ndim == 2:
            if self._std is None:
                self._std, z = reparameterize(self.mu, self.logvar, eps)
            else:
                z = self.mu + self.std * eps
            return z + (self.strict_lower() @ eps[:, :, None])[:, :, 0] if self.full else z
        z = self.mu[:, None, :] + self.std[:, None, :] * eps
        return z + eps @ self.strict_lower().transpose(0, 2, 1) if self.full else z

    def log_prob_of_eps(self, eps):
        """log q(z|x) of z = μ + Cε: −½ Σ_j (ε_j² + log 2π + logvar_j), over the last axis."""
        logvar = self.logvar if eps.ndim == 2 else self.logvar[:, None, :]
        return -0.5 * (eps * eps + logvar + LOG_2PI).sum(axis=-1)

    def kl(self):
        """KL(q(z|x) ‖ N(0, I)) per example (unchecked: it runs inside the training step)."""
        if not self.full:
            return kl_normal_std(self.mu, self.logvar, check=False)
        return kl_mvn_tril_std(self.mu, self.scale_tril(), check=False)

    def kl_grad(self):
        """(∂KL/∂μ, ∂KL/∂logvar, ∂KL/∂tril); the last is None for the diagonal q."""
        if not self.full:
            return (*kl_normal_std_grad(self.mu, self.logvar, check=False), None)
        dmu, dC = kl_mvn_tril_std_grad(self.mu, self.scale_tril(), check=False)
        d = self.mu.shape[1]
        rows, cols = _below_diagonal(d)
        idx = np.arange(d)
        return dmu, dC[:, idx, idx] * (0.5 * self.std), dC[:, rows, cols]

    def sample_backward(self, dz, eps):
        """(∂L/∂μ, ∂L/∂logvar, ∂L/∂tril) through z = μ + Cε, from ∂L/∂z (shaped like ε).

        With a draws axis, (B, k, d), the k draws' contributions are summed.
        """
        if eps.ndim == 2:
            dmu, dlogvar = dz, dz * (0.5 * self.std * eps)
        else:
            dmu, dlogvar = dz.sum(axis=1), (dz * eps).sum(axis=1) * (0.5 * self.std)
        if not self.full:
            return dmu, dlogvar, None
        rows, cols = _below_diagonal(self.mu.shape[1])
        if eps.ndim == 2:
            dtril = dz[:, rows] * eps[:, cols]
        else:
            dtril = (dz[:, :, rows] * eps[:, :, cols]).sum(axis=1)
        return dmu, dlogvar, dtril
