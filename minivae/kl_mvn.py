r"""KL divergences between full-covariance Gaussians, evaluated through Cholesky factors.

The closed form (derived in :mod:`minivae.kl`)::

    KL(N(μ₁, Σ₁) ‖ N(μ₂, Σ₂)) = ½ [ log |Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹ Σ₁) + (μ₂ − μ₁)ᵀ Σ₂⁻¹ (μ₂ − μ₁) ]

Evaluated through Cholesky factors
----------------------------------
Write Σ = L Lᵀ with L lower triangular (positive diagonal for a covariance).
Then |Σ| = Π_i L_ii², so log|Σ| = 2 Σ_i log L_ii, and with

    M = L₂⁻¹ L₁,    a = L₂⁻¹ (μ₂ − μ₁)      (triangular solves, see _solve_lower)

tr(Σ₂⁻¹Σ₁) = tr(L₂⁻ᵀ L₂⁻¹ L₁ L₁ᵀ) = tr(Mᵀ M) = ‖M‖²_F and the quadratic form is
aᵀ a = ‖a‖², so::

    KL = Σ_i log L₂,ii − Σ_i log L₁,ii + ½ ( ‖M‖²_F + ‖a‖² − d )

No inverse and no determinant is ever formed: the log-determinants are sums of
logs of diagonals, the trace and the quadratic form are sums of squares.

Conventions as in :mod:`minivae.kl`: one value per example (the sum over the
event axes), leading axes broadcast, NumPy or CuPy in the inputs' dtype, and
inputs checked to be real and finite, the error naming the argument.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .backend import array_module, common_array_module
from .validation import checked_real_arrays as _checked

__all__ = ["kl_mvn", "kl_mvn_tril", "kl_mvn_tril_grad", "kl_mvn_tril_std", "kl_mvn_tril_std_grad"]


# --------------------------------------------------------------------------
# Full-covariance Gaussians, through Cholesky factors
# --------------------------------------------------------------------------

def _solve_lower(L, B):
    r"""X with L X = B, for lower-triangular L (..., d, d) and B (..., d, k): forward substitution.

    Row i of L X = B reads Σ_{j≤i} L_ij X_j = B_i, so, top to bottom::

        X_i = ( B_i − Σ_{j<i} L_ij X_j ) / L_ii

    Why written out here: NumPy has no triangular solve at all,
    ``scipy.linalg.solve_triangular`` accepts stacks of matrices only from SciPy
    1.15 (minivae supports 1.10) and runs on the CPU only, and ``xp.linalg.solve``
    would run a general LU factorisation (O(d³), pivoting) that ignores the triangle.  This loop runs
    over the d rows only, each step one small batched matrix product over all
    batch elements and right-hand sides at once, so it costs O(d² k) per
    example, is the same code on NumPy and CuPy, and is backward stable like
    LAPACK's own substitution.  d is a latent dimension (2 to a few dozen), so
    the Python loop is short.
    """
    xp = array_module(L)
    d = L.shape[-1]
    batch = np.broadcast_shapes(L.shape[:-2], B.shape[:-2])
    X = xp.empty(batch + B.shape[-2:], dtype=xp.result_type(L, B))
    for i in range(d):
        rhs = B[..., i, :]
        if i:
            rhs = rhs - (L[..., i:i + 1, :i] @ X[..., :i, :])[..., 0, :]
        X[..., i, :] = rhs / L[..., i, i:i + 1]
    return X


def _solve_lower_transposed(L, B):
    r"""X with Lᵀ X = B, for lower-triangular L: back substitution.

    Lᵀ is upper triangular with (Lᵀ)_ij = L_ji, so row i reads
    L_ii X_i + Σ_{j>i} L_ji X_j = B_i and, bottom to top::

        X_i = ( B_i − Σ_{j>i} L_ji X_j ) / L_ii

    Same cost and reasoning as :func:`_solve_lower`.
    """
    xp = array_module(L)
    d = L.shape[-1]
    batch = np.broadcast_shapes(L.shape[:-2], B.shape[:-2])
    X = xp.empty(batch + B.shape[-2:], dtype=xp.result_type(L, B))
    for i in reversed(range(d)):
        rhs = B[..., i, :]
        if i < d - 1:
            col = xp.swapaxes(L[..., i + 1:, i:i + 1], -1, -2)       # (..., 1, d−i−1): L_ji, j > i
            rhs = rhs - (col @ X[..., i + 1:, :])[..., 0, :]
        X[..., i, :] = rhs / L[..., i, i:i + 1]
    return X


def _diagonal(A):
    return A.diagonal(axis1=-2, axis2=-1)


def _tril(A):
    """The lower triangle (diagonal included) of each matrix in a stack, zeros above."""
    xp = array_module(A)
    d = A.shape[-1]
    return xp.where(xp.tri(d, d, dtype=bool), A, 0)


def _broadcast_mvn(mu1, A1, mu2, A2, names):
    """Check shapes (mu: (..., d), A: (..., d, d), one d) and broadcast the batch axes."""
    xp = array_module(mu1)
    m1, a1, m2, a2 = names
    for n, mu in ((m1, mu1), (m2, mu2)):
        if mu.ndim < 1:
            raise ValueError(f"{n} must have shape (..., d), got {mu.shape}")
    d = mu1.shape[-1]
    for n, a in ((a1, A1), (a2, A2)):
        if a.ndim < 2 or a.shape[-1] != d or a.shape[-2] != d:
            raise ValueError(f"{n} must have shape (..., {d}, {d}) to match {m1} of shape "
                             f"{mu1.shape}, got {a.shape}")
    if mu2.shape[-1] != d:
        raise ValueError(f"{m2} must have last axis {d} to match {m1}, got shape {mu2.shape}")
    try:
        batch = np.broadcast_shapes(mu1.shape[:-1], A1.shape[:-2], mu2.shape[:-1], A2.shape[:-2])
    except ValueError:
        raise ValueError(f"the batch axes of {', '.join(names)} do not broadcast: shapes "
                         f"{mu1.shape}, {A1.shape}, {mu2.shape}, {A2.shape}") from None
    return (xp.broadcast_to(mu1, batch + (d,)), xp.broadcast_to(A1, batch + (d, d)),
            xp.broadcast_to(mu2, batch + (d,)), xp.broadcast_to(A2, batch + (d, d)))


def _check_tril(name, L, xp):
    """Lower triangular with a non-zero diagonal (finiteness is checked before, by _checked)."""
    if bool((_tril(L) != L).any()):
        raise ValueError(f"{name} must be lower triangular (a Cholesky factor); it has "
                         "non-zero entries above the diagonal (pass a covariance to kl_mvn instead)")
    if bool((_diagonal(L) == 0).any()):
        raise ValueError(f"{name} has a zero on its diagonal: L Lᵀ is singular")


def _checked_factors(mu1, L1, mu2, L2, xp):
    """The four arguments of :func:`kl_mvn_tril`, real, finite, checked and broadcast."""
    names = ("mu1", "L1", "mu2", "L2")
    mu1, L1, mu2, L2 = _checked(names, (mu1, L1, mu2, L2), xp)
    mu1, L1, mu2, L2 = _broadcast_mvn(mu1, L1, mu2, L2, names)
    _check_tril("L1", L1, xp)
    _check_tril("L2", L2, xp)
    return mu1, L1, mu2, L2


def _kl_from_factors(mu1, L1, mu2, L2):
    """The Cholesky form of the module docstring; inputs already checked and broadcast."""
    xp = array_module(mu1)
    d = mu1.shape[-1]
    M = _solve_lower(L2, L1)                                      # L₂⁻¹ L₁
    a = _solve_lower(L2, (mu2 - mu1)[..., None])[..., 0]          # L₂⁻¹ (μ₂ − μ₁)
    log_det2 = 2 * xp.log(xp.abs(_diagonal(L2))).sum(axis=-1)      # log|Σ₂|
    log_det1 = 2 * xp.log(xp.abs(_diagonal(L1))).sum(axis=-1)      # log|Σ₁|
    trace = (M * M).sum(axis=(-2, -1))                             # tr(Σ₂⁻¹ Σ₁)
    quad = (a * a).sum(axis=-1)                                    # (μ₂−μ₁)ᵀ Σ₂⁻¹ (μ₂−μ₁)
    return 0.5 * (log_det2 - log_det1 - d + trace + quad)


def kl_mvn_tril(mu1, L1, mu2, L2):
    r"""KL(N(μ₁, L₁L₁ᵀ) ‖ N(μ₂, L₂L₂ᵀ)) per example, from Cholesky factors.

    ``mu`` has shape (..., d) and ``L`` (..., d, d), lower triangular with a
    non-zero diagonal (the sign of a diagonal entry does not change L Lᵀ, so
    log|Σ| = 2 Σ_i log|L_ii|).  Batch axes broadcast.  The formula, derived in
    the module docstring::

        KL = Σ_i log|L₂,ii| − Σ_i log|L₁,ii| + ½ ( ‖L₂⁻¹L₁‖²_F + ‖L₂⁻¹(μ₂ − μ₁)‖² − d )

    This is the form a full-covariance posterior q = N(μ, L Lᵀ) trains through:
    the network outputs L directly, so nothing needs factorising.  Non-zero
    entries above the diagonal raise ValueError (a covariance passed by mistake
    would otherwise be silently misread).  Gradients: :func:`kl_mvn_tril_grad`.
    """
    xp = common_array_module(mu1, L1, mu2, L2)
    mu1, L1, mu2, L2 = _checked_factors(mu1, L1, mu2, L2, xp)
    return _kl_from_factors(mu1, L1, mu2, L2)


def kl_mvn_tril_grad(mu1, L1, mu2, L2):
    r"""Gradients of :func:`kl_mvn_tril` per example: ``(∂/∂μ1, ∂/∂L1, ∂/∂μ2, ∂/∂L2)``.

    The L gradients are w.r.t. the lower-triangular entries (the free
    parameters); entries above the diagonal are returned as 0.
    With δ = μ₁ − μ₂, a = L₂⁻¹δ, M = L₂⁻¹L₁ and Σ₂⁻¹ = L₂⁻ᵀL₂⁻¹, take the terms of
    KL = Σ log|L₂,ii| − Σ log|L₁,ii| + ½‖M‖²_F + ½‖a‖² − ½d one at a time.

    **μ**: ½‖a‖² = ½ δᵀΣ₂⁻¹δ, so ∂/∂μ₁ = Σ₂⁻¹δ = L₂⁻ᵀ a and ∂/∂μ₂ = −∂/∂μ₁.

    **L₁**: ½‖M‖²_F = ½ tr(L₁ᵀ Σ₂⁻¹ L₁) has differential tr(L₁ᵀ Σ₂⁻¹ dL₁),
    i.e. gradient Σ₂⁻¹L₁ = L₂⁻ᵀM; −Σ log|L₁,ii| has gradient −1/L₁,ii on the
    diagonal.  Keeping the lower triangle::

        ∂KL/∂L₁ = tril(L₂⁻ᵀ M) − diag(1/L₁,ii)  =  tril(Σ₂⁻¹L₁ − L₁⁻ᵀ)

    (L₁⁻ᵀ is upper triangular with diagonal 1/L₁,ii, so its lower triangle is
    that diagonal.)  At L₁ = L₂, μ₁ = μ₂ it vanishes: tril(L₂⁻ᵀ) = diag(1/L₂,ii).

    **L₂**: with d(L₂⁻¹) = −L₂⁻¹ dL₂ L₂⁻¹, dM = −L₂⁻¹ dL₂ M and da = −L₂⁻¹ dL₂ a, so
    d(½‖M‖²_F) = tr(Mᵀ dM) = −tr(M Mᵀ L₂⁻¹ dL₂) = −⟨L₂⁻ᵀ M Mᵀ, dL₂⟩ (⟨A, B⟩ = tr(AᵀB)),
    the same for a, and Σ log|L₂,ii| adds 1/L₂,ii on the diagonal::

        ∂KL/∂L₂ = diag(1/L₂,ii) − tril( L₂⁻ᵀ (M Mᵀ + a aᵀ) )

    Every Σ₂⁻¹ is applied as two triangular solves.  Each gradient has the full
    broadcast batch shape; sum over axes along which an argument was shared.
    """
    xp = common_array_module(mu1, L1, mu2, L2)
    mu1, L1, mu2, L2 = _checked_factors(mu1, L1, mu2, L2, xp)
    a = _solve_lower(L2, (mu1 - mu2)[..., None])                  # (..., d, 1)  L₂⁻¹δ
    M = _solve_lower(L2, L1)                                      # L₂⁻¹ L₁
    dmu1 = _solve_lower_transposed(L2, a)[..., 0]                 # Σ₂⁻¹ δ
    eye = xp.eye(mu1.shape[-1], dtype=L1.dtype)
    dL1 = _tril(_solve_lower_transposed(L2, M)) - eye / _diagonal(L1)[..., None]
    MMt_aat = M @ xp.swapaxes(M, -1, -2) + a @ xp.swapaxes(a, -1, -2)
    dL2 = eye / _diagonal(L2)[..., None] - _tril(_solve_lower_transposed(L2, MMt_aat))
    return dmu1, dL1, -dmu1, dL2


def _linalg_raises(xp):
    """A context in which CuPy's linear algebra raises LinAlgError as NumPy's does."""
    if xp is np:
        return contextlib.nullcontext()
    import cupyx
    return cupyx.errstate(linalg="raise")


def _cholesky(name, cov, xp):
    r"""The lower Cholesky factor of ``cov``, or ValueError naming ``name``.

    ``cov`` must be finite, symmetric within √ε of its dtype relative to its
    largest entry (1.5e-8 in float64, 3.5e-4 in float32: what one rounding of
    A Aᵀ leaves), and positive definite.  Only the lower triangle is read.
    NumPy's Cholesky raises on a matrix that is not positive definite; CuPy's
    does not by default (it leaves NaN in the factor), so on CuPy it runs under
    ``cupyx.errstate(linalg="raise")``, and the factor is checked as well.
    """
    if not bool(xp.isfinite(cov).all()):
        raise ValueError(f"{name} must be a symmetric positive definite covariance; it "
                         "contains NaN or Inf")
    tol = float(np.sqrt(np.finfo(cov.dtype).eps))
    scale = xp.abs(cov).max(axis=(-2, -1))
    asym = xp.abs(cov - xp.swapaxes(cov, -1, -2)).max(axis=(-2, -1))
    if bool((asym > tol * scale).any()):
        worst = float((asym / xp.where(scale > 0, scale, 1)).max())
        raise ValueError(f"{name} must be symmetric (within {tol:.2g} relative to its largest "
                         f"entry); the worst relative asymmetry is {worst:.3g}")
    reason = None
    try:
        with _linalg_raises(xp):
            L = xp.linalg.cholesky(cov)
    except (np.linalg.LinAlgError, getattr(xp.linalg, "LinAlgError", np.linalg.LinAlgError)):
        L, reason = None, "its Cholesky factorisation failed"
    if L is not None and not bool((xp.isfinite(L).all()) & (_diagonal(L) > 0).all()):
        reason = "its Cholesky factor has NaN or a non-positive diagonal"
    if reason is not None:
        smallest = float(xp.linalg.eigvalsh(cov).min())
        raise ValueError(f"{name} must be positive definite; {reason} (smallest eigenvalue "
                         f"{smallest:.3g})")
    return L


def _std_factor(mu, L, xp, check: bool):
    """The arguments of :func:`kl_mvn_tril_std`: real; mu (..., d) and L (..., d, d) of one d;
    with ``check`` also finite with a non-zero diagonal.  Returns (mu, the lower triangle of L)."""
    mu, L = _checked(("mu", "L"), (mu, L), xp, check)
    if mu.ndim < 1 or L.ndim < 2 or L.shape[-2:] != (mu.shape[-1],) * 2:
        raise ValueError(f"mu must be (..., d) and L (..., d, d) with the same d, got shapes "
                         f"{mu.shape} and {L.shape}")
    if check and bool((_diagonal(L) == 0).any()):
        raise ValueError("L has a zero on its diagonal: L Lᵀ is singular")
    return mu, _tril(L)


def kl_mvn_tril_std(mu, L, check: bool = True):
    r"""KL( N(μ, L Lᵀ) ‖ N(0, I) ) per example: :func:`kl_mvn_tril` with μ₂ = 0 and L₂ = I.

    With L₂ = I the solves are the identity: M = L, a = −μ, log|L₂,ii| = 0, so::

        KL = ½ ( ‖L‖²_F + ‖μ‖² − d ) − Σ_i log |L_ii|

    The VAE with a full-covariance posterior uses it (``check=False`` in its
    training step).  ``L`` (..., d, d) is lower triangular; its upper triangle
    is not read.
    """
    xp = common_array_module(mu, L)
    mu, L = _std_factor(mu, L, xp, check)
    d = L.shape[-1]
    return (0.5 * ((L * L).sum(axis=(-2, -1)) + (mu * mu).sum(axis=-1) - d)
            - xp.log(xp.abs(_diagonal(L))).sum(axis=-1))


def kl_mvn_tril_std_grad(mu, L, check: bool = True):
    r"""``(∂KL/∂μ, ∂KL/∂L)`` of :func:`kl_mvn_tril_std`, per example.

    From KL = ½‖L‖²_F + ½‖μ‖² − ½d − Σ_i log|L_ii| term by term::

        ∂KL/∂μ = μ,      ∂KL/∂L_ij = L_ij − [i = j] / L_ii      (i ≥ j; 0 above)

    the same as :func:`kl_mvn_tril_grad` at Σ₂ = I: tril(Σ₂⁻¹L − L⁻ᵀ) = tril(L) − diag(1/L_ii).
    """
    xp = common_array_module(mu, L)
    mu, L = _std_factor(mu, L, xp, check)
    d = L.shape[-1]
    return mu, L - xp.eye(d, dtype=L.dtype) / _diagonal(L)[..., None, :]


def kl_mvn(mu1, cov1, mu2, cov2):
    r"""KL(N(μ₁, Σ₁) ‖ N(μ₂, Σ₂)) per example, the lecture's formula::

        KL = ½ [ log |Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹ Σ₁) + (μ₂ − μ₁)ᵀ Σ₂⁻¹ (μ₂ − μ₁) ]

    ``mu`` has shape (..., d), ``cov`` (..., d, d); batch axes broadcast.  Each
    covariance is factorised, Σ = L Lᵀ, and the formula is evaluated through the
    factors as derived in the module docstring (:func:`kl_mvn_tril`): two
    triangular solves, logs of the diagonals; no inverse, no determinant.
    A covariance that is not symmetric (within √ε relative) or not positive
    definite raises ValueError naming ``cov1`` or ``cov2``.

    With diagonal covariances it equals :func:`kl_normal_diag`; with
    μ₂ = 0, Σ₂ = I it equals :func:`kl_normal_std`.
    """
    xp = common_array_module(mu1, cov1, mu2, cov2)
    mu1, mu2 = _checked(("mu1", "mu2"), (mu1, mu2), xp)
    cov1, cov2 = _checked(("cov1", "cov2"), (cov1, cov2), xp, check=False)  # _cholesky checks
    _broadcast_mvn(mu1, cov1, mu2, cov2, ("mu1", "cov1", "mu2", "cov2"))   # shape checks
    L1 = _cholesky("cov1", cov1, xp)        # factorise before broadcasting: a shared
    L2 = _cholesky("cov2", cov2, xp)        # prior covariance is factorised once
    return _kl_from_factors(*_broadcast_mvn(mu1, L1, mu2, L2, ("mu1", "cov1", "mu2", "cov2")))
