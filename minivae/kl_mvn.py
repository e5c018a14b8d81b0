r"""KL divergences between full-covariance Gaussians, evaluated through Cholesky factors.

The closed form (derived in :mod:`minivae.kl`)::

    KL(N(μ₁, Σ₁) ‖ N(μ₂, Σ₂)) = ½ [ log |Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹ Σ₁) + (μ₂ − μ₁)ᵀ Σ₂⁻¹ (μ₂ − μ₁) ]

Evaluated through Cholesky factors
----------------------------------
Write Σ = C Cᵀ with C lower triangular (positive diagonal for a covariance).
Then |Σ| = Π_i C_ii², so log|Σ| = 2 Σ_i log C_ii, and with

    M = C₂⁻¹ C₁,    a = C₂⁻¹ (μ₂ − μ₁)      (triangular solves, see _solve_lower)

tr(Σ₂⁻¹Σ₁) = tr(C₂⁻ᵀ C₂⁻¹ C₁ C₁ᵀ) = tr(Mᵀ M) = ‖M‖²_F and the quadratic form is
aᵀ a = ‖a‖², so::

    KL = Σ_i log C₂,ii − Σ_i log C₁,ii + ½ ( ‖M‖²_F + ‖a‖² − d )

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

def _solve_lower(C, B):
    r"""X with C X = B, for lower-triangular C (..., d, d) and B (..., d, k): forward substitution.

    Row i of C X = B reads Σ_{j≤i} C_ij X_j = B_i, so, top to bottom::

        X_i = ( B_i − Σ_{j<i} C_ij X_j ) / C_ii

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
    xp = array_module(C)
    d = C.shape[-1]
    batch = np.broadcast_shapes(C.shape[:-2], B.shape[:-2])
    X = xp.empty(batch + B.shape[-2:], dtype=xp.result_type(C, B))
    for i in range(d):
        rhs = B[..., i, :]
        if i:
            rhs = rhs - (C[..., i:i + 1, :i] @ X[..., :i, :])[..., 0, :]
        X[..., i, :] = rhs / C[..., i, i:i + 1]
    return X


def _solve_lower_transposed(C, B):
    r"""X with Cᵀ X = B, for lower-triangular C: back substitution.

    Cᵀ is upper triangular with (Cᵀ)_ij = C_ji, so row i reads
    C_ii X_i + Σ_{j>i} C_ji X_j = B_i and, bottom to top::

        X_i = ( B_i − Σ_{j>i} C_ji X_j ) / C_ii

    Same cost and reasoning as :func:`_solve_lower`.
    """
    xp = array_module(C)
    d = C.shape[-1]
    batch = np.broadcast_shapes(C.shape[:-2], B.shape[:-2])
    X = xp.empty(batch + B.shape[-2:], dtype=xp.result_type(C, B))
    for i in reversed(range(d)):
        rhs = B[..., i, :]
        if i < d - 1:
            col = xp.swapaxes(C[..., i + 1:, i:i + 1], -1, -2)       # (..., 1, d−i−1): C_ji, j > i
            rhs = rhs - (col @ X[..., i + 1:, :])[..., 0, :]
        X[..., i, :] = rhs / C[..., i, i:i + 1]
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
    if d == 0:
        raise ValueError(f"{m1} has shape {mu1.shape}: a Gaussian needs at least one "
                         f"dimension (d ≥ 1)")
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


def _check_tril(name, C, xp):
    """Lower triangular with a non-zero diagonal (finiteness is checked before, by _checked)."""
    if bool((_tril(C) != C).any()):
        raise ValueError(f"{name} must be lower triangular (a Cholesky factor); it has "
                         "non-zero entries above the diagonal (pass a covariance to kl_mvn instead)")
    if bool((_diagonal(C) == 0).any()):
        raise ValueError(f"{name} has a zero on its diagonal: C Cᵀ is singular")


def _checked_factors(mu1, C1, mu2, C2, xp):
    """The four arguments of :func:`kl_mvn_tril`, real, finite, checked and broadcast."""
    names = ("mu1", "C1", "mu2", "C2")
    mu1, C1, mu2, C2 = _checked(names, (mu1, C1, mu2, C2), xp)
    mu1, C1, mu2, C2 = _broadcast_mvn(mu1, C1, mu2, C2, names)
    _check_tril("C1", C1, xp)
    _check_tril("C2", C2, xp)
    return mu1, C1, mu2, C2


def _kl_from_factors(mu1, C1, mu2, C2):
    """The Cholesky form of the module docstring; inputs already checked and broadcast."""
    xp = array_module(mu1)
    d = mu1.shape[-1]
    M = _solve_lower(C2, C1)                                      # C₂⁻¹ C₁
    a = _solve_lower(C2, (mu2 - mu1)[..., None])[..., 0]          # C₂⁻¹ (μ₂ − μ₁)
    log_det2 = 2 * xp.log(xp.abs(_diagonal(C2))).sum(axis=-1)      # log|Σ₂|
    log_det1 = 2 * xp.log(xp.abs(_diagonal(C1))).sum(axis=-1)      # log|Σ₁|
    trace = (M * M).sum(axis=(-2, -1))                             # tr(Σ₂⁻¹ Σ₁)
    quad = (a * a).sum(axis=-1)                                    # (μ₂−μ₁)ᵀ Σ₂⁻¹ (μ₂−μ₁)
    return 0.5 * (log_det2 - log_det1 - d + trace + quad)


def kl_mvn_tril(mu1, C1, mu2, C2):
    r"""KL(N(μ₁, C₁C₁ᵀ) ‖ N(μ₂, C₂C₂ᵀ)) per example, from Cholesky factors.

    ``mu`` has shape (..., d) and ``C`` (..., d, d), lower triangular with a
    non-zero diagonal (the sign of a diagonal entry does not change C Cᵀ, so
    log|Σ| = 2 Σ_i log|C_ii|).  Batch axes broadcast.  The formula, derived in
    the module docstring::

        KL = Σ_i log|C₂,ii| − Σ_i log|C₁,ii| + ½ ( ‖C₂⁻¹C₁‖²_F + ‖C₂⁻¹(μ₂ − μ₁)‖² − d )

    This is the form a full-covariance posterior q = N(μ, C Cᵀ) trains through:
    the network outputs C directly, so nothing needs factorising.  Non-zero
    entries above the diagonal raise ValueError (a covariance passed by mistake
    would otherwise be silently misread).  Gradients: :func:`kl_mvn_tril_grad`.
    """
    xp = common_array_module(mu1, C1, mu2, C2)
    mu1, C1, mu2, C2 = _checked_factors(mu1, C1, mu2, C2, xp)
    return _kl_from_factors(mu1, C1, mu2, C2)


def kl_mvn_tril_grad(mu1, C1, mu2, C2):
    r"""Gradients of :func:`kl_mvn_tril` per example: ``(∂/∂μ1, ∂/∂C1, ∂/∂μ2, ∂/∂C2)``.

    The C gradients are w.r.t. the lower-triangular entries (the free
    parameters); entries above the diagonal are returned as 0.
    With δ = μ₁ − μ₂, a = C₂⁻¹δ, M = C₂⁻¹C₁ and Σ₂⁻¹ = C₂⁻ᵀC₂⁻¹, take the terms of
    KL = Σ log|C₂,ii| − Σ log|C₁,ii| + ½‖M‖²_F + ½‖a‖² − ½d one at a time.

    **μ**: ½‖a‖² = ½ δᵀΣ₂⁻¹δ, so ∂/∂μ₁ = Σ₂⁻¹δ = C₂⁻ᵀ a and ∂/∂μ₂ = −∂/∂μ₁.

    **C₁**: ½‖M‖²_F = ½ tr(C₁ᵀ Σ₂⁻¹ C₁) has differential tr(C₁ᵀ Σ₂⁻¹ dC₁),
    i.e. gradient Σ₂⁻¹C₁ = C₂⁻ᵀM; −Σ log|C₁,ii| has gradient −1/C₁,ii on the
    diagonal.  Keeping the lower triangle::

        ∂KL/∂C₁ = tril(C₂⁻ᵀ M) − diag(1/C₁,ii)  =  tril(Σ₂⁻¹C₁ − C₁⁻ᵀ)

    (C₁⁻ᵀ is upper triangular with diagonal 1/C₁,ii, so its lower triangle is
    that diagonal.)  At C₁ = C₂, μ₁ = μ₂ it vanishes: tril(C₂⁻ᵀ) = diag(1/C₂,ii).

    **C₂**: with d(C₂⁻¹) = −C₂⁻¹ dC₂ C₂⁻¹, dM = −C₂⁻¹ dC₂ M and da = −C₂⁻¹ dC₂ a, so
    d(½‖M‖²_F) = tr(Mᵀ dM) = −tr(M Mᵀ C₂⁻¹ dC₂) = −⟨C₂⁻ᵀ M Mᵀ, dC₂⟩ (⟨A, B⟩ = tr(AᵀB)),
    the same for a, and Σ log|C₂,ii| adds 1/C₂,ii on the diagonal::

        ∂KL/∂C₂ = diag(1/C₂,ii) − tril( C₂⁻ᵀ (M Mᵀ + a aᵀ) )

    Every Σ₂⁻¹ is applied as two triangular solves.  Each gradient has the full
    broadcast batch shape; sum over axes along which an argument was shared.
    """
    xp = common_array_module(mu1, C1, mu2, C2)
    mu1, C1, mu2, C2 = _checked_factors(mu1, C1, mu2, C2, xp)
    a = _solve_lower(C2, (mu1 - mu2)[..., None])                  # (..., d, 1)  C₂⁻¹δ
    M = _solve_lower(C2, C1)                                      # C₂⁻¹ C₁
    dmu1 = _solve_lower_transposed(C2, a)[..., 0]                 # Σ₂⁻¹ δ
    eye = xp.eye(mu1.shape[-1], dtype=C1.dtype)
    dL1 = _tril(_solve_lower_transposed(C2, M)) - eye / _diagonal(C1)[..., None]
    MMt_aat = M @ xp.swapaxes(M, -1, -2) + a @ xp.swapaxes(a, -1, -2)
    dL2 = eye / _diagonal(C2)[..., None] - _tril(_solve_lower_transposed(C2, MMt_aat))
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
            C = xp.linalg.cholesky(cov)
    except (np.linalg.LinAlgError, getattr(xp.linalg, "LinAlgError", np.linalg.LinAlgError)):
        C, reason = None, "its Cholesky factorisation failed"
    if C is not None and not bool((xp.isfinite(C).all()) & (_diagonal(C) > 0).all()):
        reason = "its Cholesky factor has NaN or a non-positive diagonal"
    if reason is not None:
        smallest = float(xp.linalg.eigvalsh(cov).min())
        raise ValueError(f"{name} must be positive definite; {reason} (smallest eigenvalue "
                         f"{smallest:.3g})")
    return C


def _std_factor(mu, C, xp, check: bool):
    """The arguments of :func:`kl_mvn_tril_std`: real; mu (..., d) and C (..., d, d) of one d;
    with ``check`` also finite with a non-zero diagonal.  Returns (mu, the lower triangle of C)."""
    mu, C = _checked(("mu", "C"), (mu, C), xp, check)
    if mu.ndim < 1 or C.ndim < 2 or C.shape[-2:] != (mu.shape[-1],) * 2:
        raise ValueError(f"mu must be (..., d) and C (..., d, d) with the same d, got shapes "
                         f"{mu.shape} and {C.shape}")
    if mu.shape[-1] == 0:
        raise ValueError(f"mu has shape {mu.shape}: a Gaussian needs at least one dimension "
                         f"(d ≥ 1)")
    if check and bool((_diagonal(C) == 0).any()):
        raise ValueError("C has a zero on its diagonal: C Cᵀ is singular")
    return mu, _tril(C)


def kl_mvn_tril_std(mu, C, check: bool = True):
    r"""KL( N(μ, C Cᵀ) ‖ N(0, I) ) per example: :func:`kl_mvn_tril` with μ₂ = 0 and C₂ = I.

    With C₂ = I the solves are the identity: M = C, a = −μ, log|C₂,ii| = 0, so::

        KL = ½ ( ‖C‖²_F + ‖μ‖² − d ) − Σ_i log |C_ii|

    The VAE with a full-covariance posterior uses it (``check=False`` in its
    training step).  ``C`` (..., d, d) is lower triangular; its upper triangle
    is not read.
    """
    xp = common_array_module(mu, C)
    mu, C = _std_factor(mu, C, xp, check)
    d = C.shape[-1]
    return (0.5 * ((C * C).sum(axis=(-2, -1)) + (mu * mu).sum(axis=-1) - d)
            - xp.log(xp.abs(_diagonal(C))).sum(axis=-1))


def kl_mvn_tril_std_grad(mu, C, check: bool = True):
    r"""``(∂KL/∂μ, ∂KL/∂C)`` of :func:`kl_mvn_tril_std`, per example.

    From KL = ½‖C‖²_F + ½‖μ‖² − ½d − Σ_i log|C_ii| term by term::

        ∂KL/∂μ = μ,      ∂KL/∂C_ij = C_ij − [i = j] / C_ii      (i ≥ j; 0 above)

    the same as :func:`kl_mvn_tril_grad` at Σ₂ = I: tril(Σ₂⁻¹C − C⁻ᵀ) = tril(C) − diag(1/C_ii).
    """
    xp = common_array_module(mu, C)
    mu, C = _std_factor(mu, C, xp, check)
    d = C.shape[-1]
    return mu, C - xp.eye(d, dtype=C.dtype) / _diagonal(C)[..., None, :]


def kl_mvn(mu1, cov1, mu2, cov2):
    r"""KL(N(μ₁, Σ₁) ‖ N(μ₂, Σ₂)) per example, the lecture's formula::

        KL = ½ [ log |Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹ Σ₁) + (μ₂ − μ₁)ᵀ Σ₂⁻¹ (μ₂ − μ₁) ]

    ``mu`` has shape (..., d), ``cov`` (..., d, d); batch axes broadcast.  Each
    covariance is factorised, Σ = C Cᵀ, and the formula is evaluated through the
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
    C1 = _cholesky("cov1", cov1, xp)        # factorise before broadcasting: a shared
    C2 = _cholesky("cov2", cov2, xp)        # prior covariance is factorised once
    return _kl_from_factors(*_broadcast_mvn(mu1, C1, mu2, C2, ("mu1", "cov1", "mu2", "cov2")))
