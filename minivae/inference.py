r"""Approximate inference made visible: the true posterior p(z|x) of a 2-D latent, on a grid.

The lecture's problem of approximate inference: by Bayes' theorem

    p(z|x) = p(x|z) p(z) / p(x),        p(x) = ∫ p(x|z) p(z) dz

and the integral has no closed form once p(x|z) is a neural network, so the VAE
approximates p(z|x) by q(z|x) = N(μ(x), diag σ²(x)).  With a 2-D latent the
integral *can* be done by brute force on a grid, and everything the lecture talks
about becomes a number and a picture.

The identity behind it
----------------------
For every z, Bayes' theorem says log p(x) = log p(x, z) − log p(z|x).  Add and
subtract log q(z) and average over z ~ q (the left side does not depend on z)::

    log p(x) = E_q[ log p(x, z) − log q(z) ]  +  E_q[ log q(z) − log p(z|x) ]
             =            ELBO(q)             +      KL( q(z) ‖ p(z|x) )

and splitting log p(x, z) = log p(x|z) + log p(z) gives the VAE's form of the ELBO,
E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)).  Because KL ≥ 0, ELBO ≤ log p(x); the gap is
exactly how far q is from the true posterior, so raising the ELBO over the encoder
is the same as pulling q towards p(z|x).

On the grid (midpoint rule)
---------------------------
Cells of sides h₁ × h₂ (area A) with centres z_g on a box; ∫ f(z) dz ≈ A Σ_g f(z_g).
Two grids: one on a box that holds the true posterior (for log p(x) and p(z|x)),
one on q's box μ ± 8σ (for expectations under q); a posterior much narrower than
q, or far from it, would otherwise need an impossibly fine single grid::

    log p(x)          ≈ log A + logsumexp_g [ log p(x|z_g) + log p(z_g) ]       (posterior's grid)
    log p(z_g|x)      = log p(x|z_g) + log p(z_g) − log p(x)
    E_q[ log p(x|z) ] ≈ A Σ_g q(z_g) log p(x|z_g)                              (q's grid)
    ELBO              = E_q[ log p(x|z) ] − KL(q ‖ N(0, I))    (closed form, kl_normal_std)
    KL(q ‖ p(z|x))    ≈ A Σ_g q(z_g) [ log q(z_g) − log p(x, z_g) + log p(x) ]   (q's grid)

Put together, ELBO + KL − log p(x) = [A Σ_g q_g (log q_g − log p(z_g)) − KL_closed]
+ (A Σ_g q_g − 1) log p(x): the grid's error on integrals of the Gaussian q alone.
For a Gaussian the midpoint rule converges exponentially fast (the error of a cell
width h is about 2·exp(−2π²σ²/h²): 5e-9 at h = σ, 1e-34 at h = σ/2), once the box
holds q's ±8σ (mass outside ≈ 1e-15), so the identity must hold to about 1e-9.
It does not test log p(x) itself, whose error depends on the decoder (a ReLU
network makes log p(x|z) piecewise smooth, and the midpoint rule O(h²) at the
kinks): :class:`PosteriorGrid` reports the posterior mass in the outer ring of
cells, and the tests compare two resolutions and Monte Carlo estimates.

The posterior's box is found in three passes: a coarse grid over the prior's bulk
[−6, 6]² (widened to hold q's box) locates the posterior's mass, and two zooms
onto the bounding box of that mass sharpen it.

Arrays: the decoder runs on the model's backend, in chunks of grid points; the
n × n tables come back to the host as float64 NumPy arrays, indexed [i₂, i₁]
(rows along z₂), so ``plt.contour(z1, z2, table)`` draws them the right way up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .kl import kl_mvn_tril_std, kl_normal_std
from .numerics import LOG_2PI, log_normal_diag, log_sum_exp


@dataclass
class Table:
    """log p(x|z) and log p(z) on one midpoint grid: axes ``z1``, ``z2`` (n,), tables (n, n)."""

    z1: np.ndarray
    z2: np.ndarray
    log_lik: np.ndarray
    log_prior: np.ndarray

    @property
    def cell_area(self) -> float:
        return float((self.z1[1] - self.z1[0]) * (self.z2[1] - self.z2[0]))

    @property
    def box(self):
        h1, h2 = self.z1[1] - self.z1[0], self.z2[1] - self.z2[0]
        return ((float(self.z1[0] - h1 / 2), float(self.z1[-1] + h1 / 2)),
                (float(self.z2[0] - h2 / 2), float(self.z2[-1] + h2 / 2)))

    def points(self):
        return np.stack([a.ravel() for a in np.meshgrid(self.z1, self.z2)], axis=1)

    @property
    def log_joint(self):
        """log p(x, z) = log p(x|z) + log p(z)."""
        return self.log_lik + self.log_prior

    def log_integral(self) -> float:
        """log ∫ p(x, z) dz over the box ≈ log A + logsumexp of the table."""
        return math.log(self.cell_area) + float(log_sum_exp(self.log_joint, axis=None))


@dataclass
class PosteriorGrid:
    r"""p(z|x) and q(z|x) for one x, each on the grid that resolves it.

    ``post`` is a :class:`Table` on a box that holds the true posterior (found by a
    coarse search, then zoomed); it gives log p(x) and the posterior density.
    ``qgrid`` is a :class:`Table` on q's own box μ ± 8σ; it gives the expectations
    under q.  Two grids, because a posterior much narrower than q (or far from it)
    would need an impossibly fine single grid over both.  The quantities of the
    module docstring are properties.
    """

    post: Table
    qgrid: Table
    mu_q: np.ndarray
    logvar_q: np.ndarray
    info: dict = field(default_factory=dict)
    tril_q: float = 0.0          # q's C = [[σ₁, 0], [t, σ₂]]: t, 0 for the diagonal q

    @property
    def scale_q(self) -> np.ndarray:
        """q's Cholesky factor C (2, 2): q(z|x) = N(μ, C Cᵀ)."""
        s = np.exp(0.5 * self.logvar_q)
        return np.array([[s[0], 0.0], [self.tril_q, s[1]]])

    @property
    def log_px(self) -> float:
        """log p(x) = log ∫ p(x|z) p(z) dz, on the posterior's grid."""
        return self.post.log_integral()

    @property
    def log_posterior(self):
        """log p(z|x) = log p(x, z) − log p(x), a density, tabulated on ``post``."""
        return self.post.log_joint - self.log_px

    def log_q_on(self, Z):
        """log q(z|x) at the points Z (..., 2).

        Full q: with u = C⁻¹(z − μ) (u₁ = d₁/σ₁, u₂ = (d₂ − t u₁)/σ₂),
        log q = −log 2π − ½ Σ logvar − ½ ‖u‖²; for t = 0 it is log N(z; μ, diag σ²).
        """
        if self.tril_q == 0.0:
            return log_normal_diag(Z, self.mu_q, self.logvar_q)
        s = np.exp(0.5 * self.logvar_q)
        u1 = (Z[..., 0] - self.mu_q[0]) / s[0]
        u2 = (Z[..., 1] - self.mu_q[1] - self.tril_q * u1) / s[1]
        return -LOG_2PI - 0.5 * self.logvar_q.sum() - 0.5 * (u1 * u1 + u2 * u2)

    @property
    def q_weights(self):
        """A·q(z_g) on q's grid: the quadrature weights of an expectation under q."""
        return self.qgrid.cell_area * np.exp(self.log_q_on(self.qgrid.points())).reshape(
            self.qgrid.log_lik.shape)

    @property
    def expected_log_lik(self) -> float:
        """E_q[log p(x|z)] ≈ A Σ_g q(z_g) log p(x|z_g)."""
        return float((self.q_weights * self.qgrid.log_lik).sum())

    @property
    def kl_q_prior(self) -> float:
        """KL(q(z|x) ‖ p(z)) in closed form."""
        if self.tril_q == 0.0:
            return float(kl_normal_std(self.mu_q, self.logvar_q))
        return float(kl_mvn_tril_std(self.mu_q, self.scale_q))

    @property
    def elbo(self) -> float:
        """E_q[log p(x|z)] − KL(q ‖ p(z))."""
        return self.expected_log_lik - self.kl_q_prior

    @property
    def kl_q_posterior(self) -> float:
        """KL(q ‖ p(z|x)) = ∫ q [log q − log p(x, z) + log p(x)]
                         ≈ A Σ_g q_g [log q_g − log p(x, z_g) + log p(x)]   (q's grid)."""
        log_q = self.log_q_on(self.qgrid.points()).reshape(self.qgrid.log_lik.shape)
        return float((self.q_weights * (log_q - self.qgrid.log_joint + self.log_px)).sum())

    @property
    def q_mass(self) -> float:
        """A Σ_g q(z_g): 1 up to the grid's error on q."""
        return float(self.q_weights.sum())

    @property
    def posterior_edge_mass(self) -> float:
        """Posterior mass in the outer ring of cells of ``post``: near 0 when its box holds p(z|x)."""
        p = np.exp(self.log_posterior) * self.post.cell_area
        return float(p.sum() - p[1:-1, 1:-1].sum())

    def summary(self) -> dict:
        """The numbers, as Python floats (for printing and JSON)."""
        sd_q = np.sqrt((self.scale_q ** 2).sum(axis=1))        # q's marginal deviations
        h_q = np.array([self.qgrid.z1[1] - self.qgrid.z1[0], self.qgrid.z2[1] - self.qgrid.z2[0]])
        return {"log_px": self.log_px, "elbo": self.elbo, "kl_q_posterior": self.kl_q_posterior,
                "identity_residual": self.elbo + self.kl_q_posterior - self.log_px,
                "expected_log_lik": self.expected_log_lik, "kl_q_prior": self.kl_q_prior,
                "q_mass": self.q_mass, "posterior_edge_mass": self.posterior_edge_mass,
                "mu_q": [float(v) for v in self.mu_q], "sigma_q": [float(v) for v in sd_q],
                "tril_q": float(self.tril_q),
                "posterior_grid": {"n": len(self.post.z1), "box": self.post.box},
                "q_grid": {"n": len(self.qgrid.z1), "box": self.qgrid.box,
                           "cells_per_sigma_q": float((sd_q / h_q).min())},
                **self.info}


def grid_points(box, n: int):
    """Cell centres of an n × n midpoint grid on ``box = ((lo1, hi1), (lo2, hi2))``.

    Returns ``(z1, z2, Z)``: the two axes (n,) and all centres as (n·n, 2), row-major
    over [i₂, i₁] so that ``values.reshape(n, n)`` is indexed [i₂, i₁].
    """
    (lo1, hi1), (lo2, hi2) = box
    z1 = lo1 + (np.arange(n) + 0.5) * (hi1 - lo1) / n
    z2 = lo2 + (np.arange(n) + 0.5) * (hi2 - lo2) / n
    Z1, Z2 = np.meshgrid(z1, z2)                      # (n, n) each, indexed [i₂, i₁]
    return z1, z2, np.stack([Z1.ravel(), Z2.ravel()], axis=1)


def tabulate(log_lik_fn, box, n: int) -> Table:
    """Evaluate log p(x|z) (one call of ``log_lik_fn`` on all n² centres) and log p(z) on a grid."""
    z1, z2, Z = grid_points(box, n)
    log_lik = np.asarray(log_lik_fn(Z), dtype=np.float64).reshape(n, n)
    return Table(z1, z2, log_lik, log_normal_diag(Z, 0.0, 0.0).reshape(n, n))


def _mass_box(table: Table, threshold: float, pad: float):
    """Bounding box of the cells whose log p(x, z) is within ``threshold`` of the largest,
    padded by ``pad`` cells."""
    lj = table.log_joint
    rows, cols = np.nonzero(lj >= lj.max() - threshold)
    h1, h2 = table.z1[1] - table.z1[0], table.z2[1] - table.z2[0]
    return ((float(table.z1[cols.min()] - pad * h1), float(table.z1[cols.max()] + pad * h1)),
            (float(table.z2[rows.min()] - pad * h2), float(table.z2[rows.max()] + pad * h2)))


def posterior_grid(log_lik_fn, mu_q, logvar_q, n: int = 301, n_q: int = 201, box=None,
                   coarse_n: int = 121, prior_half_width: float = 6.0,
                   q_half_width: float = 8.0, threshold: float = 30.0,
                   tril_q: float = 0.0) -> PosteriorGrid:
    r"""Tabulate p(z|x) and q(z|x) for one x with a 2-D latent.

    Parameters
    ----------
    log_lik_fn : callable
        Maps an (m, 2) float64 array of latent points to log p(x|z) of shape (m,)
        for the one x under study (see :func:`vae_log_likelihood`).
    mu_q, logvar_q : array_like, shape (2,)
        q(z|x) = N(μ, diag σ²); ``logvar_q`` is log σ².
    tril_q : float
        A full q: N(μ, C Cᵀ) with C = [[σ₁, 0], [t, σ₂]], t = ``tril_q`` (0: diagonal).
    n, n_q : int
        Cells per axis of the posterior's grid and of q's grid (μ ± ``q_half_width``·σ).
    box : ((lo1, hi1), (lo2, hi2)), optional
        The posterior's box; given, the search is skipped (to compare resolutions).
    coarse_n, prior_half_width, threshold
        The search: a ``coarse_n``² grid over the prior's bulk [−w, w]²
        (w = ``prior_half_width``), widened to hold q's box; then two zooms, each onto
        the bounding box of the cells whose log posterior is within ``threshold``
        nats of the highest (density ratio e^{−30} ≈ 1e-13), padded by 1.5 cells.
    """
    mu_q = np.asarray(mu_q, dtype=np.float64).reshape(-1)
    logvar_q = np.asarray(logvar_q, dtype=np.float64).reshape(-1)
    if mu_q.shape != (2,) or logvar_q.shape != (2,):
        raise ValueError(f"the grid posterior needs a 2-D latent: mu_q and logvar_q must have "
                         f"shape (2,), got {mu_q.shape} and {logvar_q.shape}")
    for name, v in (("n", n), ("n_q", n_q), ("coarse_n", coarse_n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"{name} must be an integer ≥ 2, got {v!r}")
    s_q = np.exp(0.5 * logvar_q)
    sd_q = np.array([s_q[0], math.hypot(float(tril_q), s_q[1])])   # q's marginal deviations
    q_box = tuple((float(mu_q[j] - q_half_width * sd_q[j]), float(mu_q[j] + q_half_width * sd_q[j]))
                  for j in range(2))
    info = {}
    if box is None:
        w = prior_half_width
        coarse_box = tuple((min(-w, q_box[j][0]), max(w, q_box[j][1])) for j in range(2))
        coarse = tabulate(log_lik_fn, coarse_box, coarse_n)
        zoom = tabulate(log_lik_fn, _mass_box(coarse, threshold, 1.5), n)
        box = _mass_box(zoom, threshold, 1.5)
        info = {"search": {"coarse_box": coarse_box, "coarse_n": coarse_n,
                           "first_zoom_box": zoom.box}}
    post = tabulate(log_lik_fn, box, n)
    return PosteriorGrid(post, tabulate(log_lik_fn, q_box, n_q), mu_q, logvar_q, info,
                         float(tril_q))


# --------------------------------------------------------------------------
# A trained VAE
# --------------------------------------------------------------------------

def float64_copy(model):
    """The same VAE in float64 on the same backend (the model itself if it already is).

    Sums of 784 log-probabilities in float32 carry errors of ~1e-3 nats; the grid
    quantities are compared to ~1e-9, so they are computed in float64.
    """
    from .backend import get_backend

    if model.backend.dtype == np.float64:
        return model
    be = get_backend(model.backend.name, dtype="float64", seed=model.backend.seed)
    twin = type(model).from_config(model.config(), be)
    for k, p in twin.params.items():       # the same architecture: the same names and shapes
        p[...] = be.to_device(model.backend.to_numpy(model.params[k]), dtype=p.dtype)
    return twin


def vae_log_likelihood(model, x, chunk: int = 4096):
    """A function z (m, 2) ↦ log p(x|z) (m,) for one example ``x`` of ``model``.

    The decoder runs on the model's backend, ``chunk`` latent points at a time
    (vectorised: one batched forward pass per chunk, never a loop over points);
    results come back as host float64.
    """
    be = model.backend
    xd = model.check_input(np.asarray(be.to_numpy(x)).reshape(1, -1))   # (1, D), broadcasts

    def log_lik(Z):
        out = np.empty(len(Z))
        for s in range(0, len(Z), chunk):
            logits = model.decode(be.to_device(Z[s:s + chunk]))
            out[s:s + chunk] = be.to_numpy(model.likelihood.log_prob(xd, logits))
        return out

    return log_lik


def vae_posterior_grid(model, x, n: int = 301, **kwargs) -> PosteriorGrid:
    """:func:`posterior_grid` for one example ``x`` (shape (D,)) of a VAE with latent_dim 2.

    The model is evaluated in float64 (:func:`float64_copy`); q(z|x) is its encoder's
    N(μ(x), diag σ²(x)), or N(μ(x), C Cᵀ) for a full-covariance posterior.
    """
    if model.latent_dim != 2:
        raise ValueError(f"the grid posterior needs a VAE with latent_dim 2, got {model.latent_dim}")
    model = float64_copy(model)
    be = model.backend
    xd = model.check_input(np.asarray(be.to_numpy(x)).reshape(1, -1))
    q = model._posterior(xd)                      # (xd checked on the line above)
    tril = 0.0 if q.tril is None else float(be.to_numpy(q.tril)[0, 0])
    return posterior_grid(vae_log_likelihood(model, xd), be.to_numpy(q.mu)[0],
                          be.to_numpy(q.logvar)[0], n=n, tril_q=tril, **kwargs)
