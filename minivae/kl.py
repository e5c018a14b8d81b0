r"""Kullback–Leibler divergences in closed form, with the gradients training needs.

The lecture's general result, for two k-dimensional normals
p = N(μ₁, Σ₁) and q = N(μ₂, Σ₂)::

    KL(p ‖ q) = ½ [ log |Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹ Σ₁) + (μ₂ − μ₁)ᵀ Σ₂⁻¹ (μ₂ − μ₁) ]

The VAE needs its simplest special case, the encoder's diagonal Gaussian
q(z|x) = N(μ, diag σ²) against the prior p(z) = N(0, I): put μ₁ = μ,
Σ₁ = diag σ², μ₂ = 0, Σ₂ = I.  Then |Σ₂| = 1, |Σ₁| = Π_j σ_j², Σ₂⁻¹ = I,
tr(Σ₁) = Σ_j σ_j² and the quadratic form is Σ_j μ_j², so

    KL = ½ Σ_j ( σ_j² + μ_j² − 1 − log σ_j² ).

Convention: ``logvar`` is log σ² (not log σ), so σ² = exp(logvar) and
σ = exp(½·logvar).  Every function returns one value per example: the sum over
the latent dimensions (the last axis), never a mean over them.

The rest of the family (categorical, diagonal vs diagonal, full multivariate
normals through Cholesky factors) lives here too as it is added.
"""

from __future__ import annotations

from .backend import array_module


def kl_normal_std(mu, logvar):
    r"""KL(N(μ, diag σ²) ‖ N(0, I)) per example, summed over the last axis.

    ``logvar`` is log σ².  From the general formula with μ₂ = 0, Σ₂ = I::

        KL = ½ Σ_j ( exp(logvar_j) + μ_j² − 1 − logvar_j )

    It is ≥ 0 term by term (eᵗ ≥ 1 + t with t = logvar_j, and μ_j² ≥ 0) and
    0 exactly when μ = 0 and logvar = 0.  Gradients: :func:`kl_normal_std_grad`.
    """
    xp = array_module(mu)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {mu.shape} and {logvar.shape}")
    return 0.5 * (xp.exp(logvar) + mu * mu - 1 - logvar).sum(axis=-1)


def kl_normal_std_grad(mu, logvar):
    r"""Gradients of :func:`kl_normal_std` for each example: ``(∂KL/∂μ, ∂KL/∂logvar)``.

    Differentiating ½ (e^{logvar_j} + μ_j² − 1 − logvar_j) term by term::

        ∂KL/∂μ_j      = μ_j
        ∂KL/∂logvar_j = ½ (e^{logvar_j} − 1) = ½ (σ_j² − 1)
    """
    xp = array_module(mu)
    return mu, 0.5 * (xp.exp(logvar) - 1)
