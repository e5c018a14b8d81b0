r"""Fused elementwise kernels for CuPy: one GPU kernel where NumPy takes several passes.

On a GPU each elementwise expression such as ``x * out - xp.maximum(out, 0)`` is
a kernel launch of its own, reading and writing the whole array from device
memory.  ``cupy.fuse`` compiles a Python function of elementwise operations into
one kernel: every element is read once, the intermediate values stay in
registers, and the launch overhead is paid once.  These are the hot elementwise
expressions of a training step, each the same formula as its NumPy path (which
tests hold them to):

=====================  ==========================================================
kernel                 computes, per element
=====================  ==========================================================
``bernoulli_terms``    x ℓ − max(ℓ, 0) − log1p(e^{−|ℓ|})        (log p(x|ℓ), before the sum)
``bernoulli_grad``     w (x − ½ − ½ tanh(ℓ/2))                  (w ∂log p/∂ℓ, w = ∂L/∂log p)
``reparameterize``     σ = e^{½ logvar},  z = μ + σ ε            (both returned)
``adam``               m' = β₁ m + (1 − β₁) g,  v' = β₂ v + (1 − β₂) g²,
                       θ' = θ − s · m' / (√v' + e)               (s = η√c₂/c₁, e = ε√c₂)
=====================  ==========================================================

Each function is plain Python over the arrays it is given, so it also runs on
NumPy arrays (and on the test suite's NumPy-backed CuPy stand-in), which is how
the tests compare it with the reference formula.  :func:`fused` returns the
``cupy.fuse``-compiled version for CuPy arrays, the plain one otherwise.  Not
measured on a GPU yet: no GPU was available to this work.
"""

from __future__ import annotations

import functools

from .backend import array_module


def bernoulli_terms(x, logits, xp):
    """x ℓ − softplus(ℓ) per element, softplus(ℓ) = max(ℓ, 0) + log1p(e^{−|ℓ|})."""
    return x * logits - xp.maximum(logits, 0) - xp.log1p(xp.exp(-xp.abs(logits)))


def bernoulli_grad(x, logits, w, xp):
    """w (x − σ(ℓ)) per element, through σ(ℓ) = ½ + ½ tanh(ℓ/2); ``w`` broadcasts (B, 1)."""
    return w * (x - 0.5 - 0.5 * xp.tanh(0.5 * logits))


def reparameterize(mu, logvar, eps, xp):
    """(σ, z) with σ = exp(½ logvar) and z = μ + σ ε."""
    std = xp.exp(0.5 * logvar)
    return std, mu + std * eps


def adam(p, g, m, v, b1, b2, step_size, eps, xp):
    """One Adam step with the bias corrections folded in (see :class:`minivae.optim.Adam`).

    Returns the new ``(p, m, v)``; the caller writes them back.
    """
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - step_size * m / (xp.sqrt(v) + eps), m, v


#: The kernels :func:`fused` offers.
KERNELS = ("bernoulli_terms", "bernoulli_grad", "reparameterize", "adam")


@functools.lru_cache(maxsize=None)
def _compiled(name: str):
    """The cupy.fuse kernel of ``name``, compiled once (CuPy caches the binary too)."""
    import cupy

    def bernoulli_terms_k(x, logits):
        return bernoulli_terms(x, logits, cupy)

    def bernoulli_grad_k(x, logits, w):
        return bernoulli_grad(x, logits, w, cupy)

    def reparameterize_k(mu, logvar, eps):
        return reparameterize(mu, logvar, eps, cupy)

    def adam_k(p, g, m, v, b1, b2, step_size, eps):
        return adam(p, g, m, v, b1, b2, step_size, eps, cupy)

    kernels = {"bernoulli_terms": bernoulli_terms_k, "bernoulli_grad": bernoulli_grad_k,
               "reparameterize": reparameterize_k, "adam": adam_k}
    return cupy.fuse(kernel_name=f"minivae_{name}")(kernels[name])


def fused(name: str, like):
    """The kernel ``name`` for arrays like ``like``: cupy.fuse-compiled on CuPy, else plain.

    The returned function takes the arguments of the plain function without its
    last one, ``xp``.
    """
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; expected one of {KERNELS}")
    xp = array_module(like)
    if xp.__name__ == "cupy":
        return _compiled(name)
    return functools.partial(globals()[name], xp=xp)
