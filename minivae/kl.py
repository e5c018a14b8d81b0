r"""Kullback–Leibler divergences in closed form, with the gradients training needs.

Definition (the lecture's discrete formula, and its continuous twin)::

    KL(P ‖ Q) = Σ_x P(x) log( P(x) / Q(x) )            (probability vectors)
    KL(p ‖ q) = ∫ p(x) log( p(x) / q(x) ) dx = E_{x~p}[ log p(x) − log q(x) ]

**KL ≥ 0** (Gibbs' inequality).  log is concave, so by Jensen's inequality
−KL = E_p[ log(q/p) ] ≤ log E_p[ q/p ] = log Σ_{x: p(x)>0} q(x) ≤ log 1 = 0,
with equality only when q/p is constant on the support of p, i.e. q = p.
**KL is not symmetric**: KL(p ‖ q) weighs log(p/q) by p, KL(q ‖ p) by q.

The Gaussian closed form, from the densities
-------------------------------------------
For p = N(μ₁, Σ₁) and q = N(μ₂, Σ₂) on ℝ^d the log-density is::

    log N(x; μ, Σ) = −½ [ d log 2π + log|Σ| + (x − μ)ᵀ Σ⁻¹ (x − μ) ]

For x ~ p and any symmetric A, write x − m = u + (μ₁ − m) with u = x − μ₁,
E[u] = 0, E[u uᵀ] = Σ₁; the cross term averages to zero and E[uᵀAu] = tr(A Σ₁)::

    E_p[ (x − m)ᵀ A (x − m) ] = tr(A Σ₁) + (μ₁ − m)ᵀ A (μ₁ − m)

With A = Σ₁⁻¹, m = μ₁ this is tr(I) = d; with A = Σ₂⁻¹, m = μ₂ it is
tr(Σ₂⁻¹Σ₁) + (μ₂ − μ₁)ᵀΣ₂⁻¹(μ₂ − μ₁).  Subtracting E_p[log q] from E_p[log p]
(the d log 2π cancel) gives the lecture's formula::

    KL(p ‖ q) = ½ [ log |Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹ Σ₁) + (μ₂ − μ₁)ᵀ Σ₂⁻¹ (μ₂ − μ₁) ]

(the −d is p's own quadratic form, averaged under p).

Full covariances are evaluated through Cholesky factors in :mod:`minivae.kl_mvn`
(:func:`kl_mvn`, :func:`kl_mvn_tril` and its gradient); the functions are
re-exported here.  With Σ = C Cᵀ and C lower triangular, M = C₂⁻¹ C₁ and
a = C₂⁻¹ (μ₂ − μ₁), the formula reads KL = Σ_i log C₂,ii − Σ_i log C₁,ii
+ ½ (‖M‖²_F + ‖a‖² − d).

The special cases follow
------------------------
* **Diagonal vs diagonal** (:func:`kl_normal_diag`): Σ = diag σ² has C = diag σ,
  so M = diag(σ₁/σ₂), a_j = (μ₂ⱼ − μ₁ⱼ)/σ₂ⱼ and the sum separates into one term
  per coordinate (independent coordinates add their KLs)::

      KL = ½ Σ_j [ log σ₂ⱼ² − log σ₁ⱼ² − 1 + σ₁ⱼ²/σ₂ⱼ² + (μ₁ⱼ − μ₂ⱼ)²/σ₂ⱼ² ]

* **Against the prior N(0, I)** (:func:`kl_normal_std`, the VAE's KL): put
  μ₂ = 0, σ₂ = 1 above: KL = ½ Σ_j ( σ_j² + μ_j² − 1 − log σ_j² ).

Conventions: ``logvar`` is log σ² (not log σ), so σ² = exp(logvar) and
σ = exp(½·logvar).  Every function returns one value per example: the sum over
the event axis (the last axis; the last two for matrices), never a mean.
Leading axes are batch axes and broadcast against each other, so one prior can
be compared with a batch of posteriors.  Everything works on NumPy and CuPy
arrays alike and in the dtype of the inputs (use float64 for checks); given
host and device arrays together, a function computes on the device.

Inputs are checked: they must hold real numbers (integers are read as float64;
complex numbers, strings and objects raise ValueError, never a silently
dropped imaginary part) and be finite, and the error names the argument.
The finiteness check reads every element, which on a GPU means a transfer to
the host, so the functions take ``check=False`` for callers that have checked
already or must not wait: the VAE's training step calls them that way.
"""

from __future__ import annotations

from .backend import common_array_module
from .validation import checked_real_arrays as _checked

__all__ = ["kl_categorical", "kl_normal_std", "kl_normal_std_grad", "kl_normal_diag",
           "kl_normal_diag_grad", "kl_mvn", "kl_mvn_tril", "kl_mvn_tril_grad", "kl_mvn_tril_std",
           "kl_mvn_tril_std_grad"]


# --------------------------------------------------------------------------
# Discrete
# --------------------------------------------------------------------------

def _check_distribution(name, a, axis, atol, xp):
    if not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} must be a probability vector; it contains NaN or Inf")
    if a.size and float(a.min()) < 0:
        raise ValueError(f"{name} must be a probability vector; it has a negative entry "
                         f"({float(a.min()):g})")
    sums = a.sum(axis=axis)
    worst = float(xp.abs(sums - 1).max()) if sums.size else 0.0
    if worst > atol:
        flat = sums.ravel()
        bad = float(flat[int(xp.argmax(xp.abs(flat - 1)))])
        raise ValueError(f"{name} must sum to 1 along axis {axis} (within {atol:g}); "
                         f"the worst sum is {bad!r}")


def kl_categorical(p, q, axis: int = -1, atol: float = 1e-6):
    r"""KL(P ‖ Q) = Σ_x P(x) log(P(x)/Q(x)) for probability vectors along ``axis``.

    The lecture's discrete formula, evaluated term by term with the two limits
    that make it well defined:

    * 0 · log(0/Q) = 0 for every Q ≥ 0 (the limit t log t → 0 as t → 0): an
      outcome P never produces contributes nothing, even where Q is 0 too;
    * P · log(P/0) = +∞ for P > 0: Q calls impossible something P produces,
      and the divergence is infinite.

    ``p`` and ``q`` broadcast against each other along the batch axes; the
    result has their broadcast shape without ``axis``.  Along ``axis`` (the
    outcomes) they must have the same length: a vector of 1 outcome is not
    stretched to 2.  Both are checked: real, finite, no negative entry, and
    each vector summing to 1 within ``atol`` (default 1e-6, loose enough for
    float32 vectors of a few thousand entries); otherwise ValueError names the
    argument and the worst sum.  Integer inputs (counts already normalised,
    one-hot vectors) are read as float64.

    No warning is raised for the limits: the logarithms are taken of P and Q
    with their zeros replaced by 1 (log Q = −∞ is put in with ``where``), and
    the terms with P = 0 are set to 0 with ``where``, so 0 · ∞ never happens.
    """
    xp = common_array_module(p, q)
    p, q = _checked(("p", "q"), (p, q), xp, check=False)   # finiteness: _check_distribution
    if p.ndim == 0 or q.ndim == 0:
        raise ValueError(f"p and q must be arrays of probability vectors, got shapes "
                         f"{p.shape} and {q.shape}")
    nd = max(p.ndim, q.ndim)
    if not -nd <= axis < nd:
        raise ValueError(f"axis {axis} is out of range for p of shape {p.shape} and q of "
                         f"shape {q.shape}")
    p_shape, q_shape = (1,) * (nd - p.ndim) + p.shape, (1,) * (nd - q.ndim) + q.shape
    if p_shape[axis] != q_shape[axis]:
        raise ValueError(f"p and q must have the same number of outcomes along axis {axis}, "
                         f"got {p_shape[axis]} and {q_shape[axis]} (shapes {p.shape} and "
                         f"{q.shape})")
    try:
        p, q = xp.broadcast_arrays(p, q)
    except ValueError:
        raise ValueError(f"p and q must have broadcastable shapes, got {p.shape} and "
                         f"{q.shape}") from None
    _check_distribution("p", p, axis, atol, xp)
    _check_distribution("q", q, axis, atol, xp)
    p_pos, q_pos = p > 0, q > 0
    p_safe = xp.where(p_pos, p, 1)                               # 1 where P = 0: no 0·∞ below
    log_q = xp.where(q_pos, xp.log(xp.where(q_pos, q, 1)), -xp.inf)
    terms = xp.where(p_pos, p_safe * (xp.log(p_safe) - log_q), 0)   # P log(P/0) = +∞
    return terms.sum(axis=axis)


# --------------------------------------------------------------------------
# Diagonal Gaussians
# --------------------------------------------------------------------------

def _std_args(mu, logvar, xp, check: bool):
    """The arguments of :func:`kl_normal_std` checked: real, of one shape, finite with ``check``."""
    mu, logvar = _checked(("mu", "logvar"), (mu, logvar), xp, check)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {mu.shape} and {logvar.shape}")
    return mu, logvar


def kl_normal_std(mu, logvar, check: bool = True):
    r"""KL(N(μ, diag σ²) ‖ N(0, I)) per example, summed over the last axis.

    ``logvar`` is log σ².  From the general formula with μ₂ = 0, Σ₂ = I::

        KL = ½ Σ_j ( exp(logvar_j) + μ_j² − 1 − logvar_j )

    It is ≥ 0 term by term (eᵗ ≥ 1 + t with t = logvar_j, and μ_j² ≥ 0) and
    0 exactly when μ = 0 and logvar = 0.  Gradients: :func:`kl_normal_std_grad`.
    ``check=False`` skips the finiteness check (see the module docstring).
    """
    xp = common_array_module(mu, logvar)
    mu, logvar = _std_args(mu, logvar, xp, check)
    return 0.5 * (xp.exp(logvar) + mu * mu - 1 - logvar).sum(axis=-1)


def kl_normal_std_grad(mu, logvar, check: bool = True):
    r"""Gradients of :func:`kl_normal_std` for each example: ``(∂KL/∂μ, ∂KL/∂logvar)``.

    Differentiating ½ (e^{logvar_j} + μ_j² − 1 − logvar_j) term by term::

        ∂KL/∂μ_j      = μ_j
        ∂KL/∂logvar_j = ½ (e^{logvar_j} − 1) = ½ (σ_j² − 1)
    """
    xp = common_array_module(mu, logvar)
    mu, logvar = _std_args(mu, logvar, xp, check)
    return mu, 0.5 * (xp.exp(logvar) - 1)


def _broadcast_diag(mu1, logvar1, mu2, logvar2):
    xp = common_array_module(mu1, logvar1, mu2, logvar2)
    mu1, logvar1, mu2, logvar2 = _checked(("mu1", "logvar1", "mu2", "logvar2"),
                                          (mu1, logvar1, mu2, logvar2), xp)
    try:
        return xp.broadcast_arrays(mu1, logvar1, mu2, logvar2)
    except ValueError:
        raise ValueError("mu1, logvar1, mu2, logvar2 must have broadcastable shapes, got "
                         f"{mu1.shape}, {logvar1.shape}, {mu2.shape}, {logvar2.shape}") from None


def kl_normal_diag(mu1, logvar1, mu2, logvar2):
    r"""KL(N(μ₁, diag σ₁²) ‖ N(μ₂, diag σ₂²)) per example, summed over the last axis.

    ``logvar`` is log σ².  The general formula with diagonal covariances (see
    the module docstring) separates over coordinates::

        KL = ½ Σ_j [ logvar2_j − logvar1_j − 1 + e^{logvar1_j − logvar2_j}
                      + (μ1_j − μ2_j)² e^{−logvar2_j} ]

    The ratio σ₁²/σ₂² is computed as one exponential of the difference of the
    log-variances, which neither overflows nor loses digits when both are large.
    With μ₂ = 0 and logvar2 = 0 this is :func:`kl_normal_std`.  The four
    arguments broadcast against each other.  Gradients: :func:`kl_normal_diag_grad`.
    """
    xp = common_array_module(mu1, logvar1, mu2, logvar2)
    mu1, logvar1, mu2, logvar2 = _broadcast_diag(mu1, logvar1, mu2, logvar2)
    diff = mu1 - mu2
    return 0.5 * (logvar2 - logvar1 - 1 + xp.exp(logvar1 - logvar2)
                  + diff * diff * xp.exp(-logvar2)).sum(axis=-1)


def kl_normal_diag_grad(mu1, logvar1, mu2, logvar2):
    r"""Gradients of :func:`kl_normal_diag` per example: ``(∂/∂μ1, ∂/∂logvar1, ∂/∂μ2, ∂/∂logvar2)``.

    With r_j = e^{logvar1_j − logvar2_j} = σ₁ⱼ²/σ₂ⱼ² and
    s_j = (μ1_j − μ2_j)² e^{−logvar2_j}, each term is ½ (logvar2 − logvar1 − 1 + r + s)::

        ∂KL/∂μ1_j      =  (μ1_j − μ2_j) e^{−logvar2_j}            (∂s/∂μ1 = 2(μ1 − μ2)e^{−logvar2})
        ∂KL/∂μ2_j      = −∂KL/∂μ1_j
        ∂KL/∂logvar1_j =  ½ (r_j − 1)                             (∂r/∂logvar1 = r)
        ∂KL/∂logvar2_j =  ½ (1 − r_j − s_j)                       (∂r/∂logvar2 = −r, ∂s/∂logvar2 = −s)

    Each returned array has the broadcast shape of the inputs; for an argument
    that was broadcast (a shared prior), sum its gradient over those axes.
    """
    xp = common_array_module(mu1, logvar1, mu2, logvar2)
    mu1, logvar1, mu2, logvar2 = _broadcast_diag(mu1, logvar1, mu2, logvar2)
    inv_var2 = xp.exp(-logvar2)
    diff = mu1 - mu2
    r = xp.exp(logvar1 - logvar2)
    s = diff * diff * inv_var2
    dmu1 = diff * inv_var2
    return dmu1, 0.5 * (r - 1), -dmu1, 0.5 * (1 - r - s)


from .kl_mvn import (kl_mvn, kl_mvn_tril, kl_mvn_tril_grad, kl_mvn_tril_std,  # noqa: E402
                     kl_mvn_tril_std_grad)                                # (re-exported)
