"""Decoder likelihoods p(x | z): the log-probability and its gradient.

The decoder maps z to an output array ``out`` of shape (B, D); a likelihood
turns ``out`` into a distribution over the D pixels and scores the data:

    log_prob(x, out)  →  log p(x | z) per example, shape (B,), summed over pixels

Like a layer, a likelihood caches in ``log_prob`` what its ``backward`` needs.
``backward(dlogp)`` takes ∂L/∂log p for each example (shape (B,); for the batch
mean of −log p it is −1/B everywhere), adds the gradient of any parameter it
owns into ``grads`` (writes it, under ``write_grads``: :mod:`minivae.layers`)
and returns ∂L/∂out of shape (B, D).
"""

from __future__ import annotations

import numpy as np

from .backend import Backend, array_module, get_backend
from .fast import twin
from .layers import Module, _need_cache, sigmoid
from .numerics import LOG_2PI



class Likelihood(Module):
    """Base class of the decoder's output distributions."""

    name = "likelihood"

    def log_prob(self, x, out):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, dlogp):  # pragma: no cover - interface
        raise NotImplementedError

    def mean(self, out):  # pragma: no cover - interface
        """E[x | z] as an image, for figures."""
        raise NotImplementedError

    def check_data(self, x) -> None:
        """Raise ValueError when ``x`` is outside this likelihood's support."""


@twin("bernoulli_log_prob")
def bernoulli_log_prob(x, logits):
    """log p(x|ℓ) = Σ_i x_i ℓ_i − softplus(ℓ_i) per row (see :class:`Bernoulli`), shape (B,).

    softplus(ℓ) = max(ℓ, 0) + log1p(e^{−|ℓ|}): both terms are finite for any ℓ
    (the same value as :func:`minivae.layers.softplus`).  Fast twin: one fused
    kernel on CuPy (:mod:`minivae.fast`).
    """
    xp = array_module(logits)
    return (x * logits - xp.maximum(logits, 0) - xp.log1p(xp.exp(-xp.abs(logits)))).sum(axis=1)


@twin("bernoulli_grad")
def bernoulli_grad(x, logits, dlogp):
    """∂L/∂ℓ_bi = ∂L/∂log p_b · (x_bi − σ(ℓ_bi)), shape (B, D); ``dlogp`` is (B,).

    Fast twins (:mod:`minivae.fast`): in place through σ(ℓ) = ½ + ½ tanh(ℓ/2) on
    NumPy, one fused kernel on CuPy.
    """
    return dlogp[:, None] * (x - sigmoid(logits, array_module(logits)))


class Bernoulli(Likelihood):
    r"""Independent Bernoulli pixels with logits ℓ = ``out``: p(x_i = 1) = σ(ℓ_i).

    Per example, summing over the D pixels::

        log p(x|ℓ) = Σ_i x_i log σ(ℓ_i) + (1 − x_i) log(1 − σ(ℓ_i))
                   = Σ_i x_i ℓ_i − softplus(ℓ_i)

    using log σ(ℓ) = ℓ − softplus(ℓ) and log(1 − σ(ℓ)) = −softplus(ℓ); the second
    form never takes the log of a probability that has rounded to 0, so it is
    exact for any ℓ.  (−log p is the "binary cross-entropy with logits".)

    Gradient, since ∂softplus(ℓ)/∂ℓ = σ(ℓ)::

        ∂ log p / ∂ℓ_i = x_i − σ(ℓ_i)

    It is a proper likelihood for x ∈ {0, 1}; for grey x ∈ [0, 1] it is the
    cross-entropy, which is not a normalized density (binarize the data for
    ELBOs that compare with the literature).
    """

    name = "bernoulli"

    def __init__(self, backend: Backend | None = None):
        super().__init__()
        self.backend = backend or get_backend("numpy")
        self._cache = None

    def log_prob(self, x, out):
        self._cache = (x, out)
        return bernoulli_log_prob(x, out)

    def backward(self, dlogp):                           # no parameters
        """∂L/∂ℓ = ∂L/∂log p · (x − σ(ℓ)), by :func:`bernoulli_grad`."""
        x, out = _need_cache(self._cache, self, "log_prob")
        return bernoulli_grad(x, out, dlogp)

    def mean(self, out):
        return sigmoid(out, array_module(out))

    def check_data(self, x) -> None:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"the Bernoulli likelihood needs pixels in [0, 1]; the data range is "
                f"[{lo:g}, {hi:g}] (scale images to [0, 1], or use likelihood='gaussian')")


class Gaussian(Likelihood):
    r"""Independent Gaussian pixels N(x_i; m_i, σ²) with mean m = ``out``.

    ``logvar`` is s = log σ², one scalar shared by all pixels, either fixed or
    learned (``learn_logvar=True`` makes it a parameter in ``params["logvar"]``).
    A shared scalar cannot collapse onto the always-black border pixels the way
    a per-pixel variance would.  Per example, over D pixels::

        log p(x|m) = −½ Σ_i [ log 2π + s + (x_i − m_i)² e^{−s} ]

    Gradients::

        ∂ log p / ∂m_i = (x_i − m_i) e^{−s}
        ∂ log p / ∂s   = ½ Σ_i [ (x_i − m_i)² e^{−s} − 1 ]
    """

    name = "gaussian"

    def __init__(self, logvar: float = 0.0, learn_logvar: bool = False,
                 backend: Backend | None = None):
        super().__init__()
        if not np.isfinite(logvar):
            raise ValueError(f"Gaussian logvar must be finite, got {logvar!r}")
        self.backend = backend = backend or get_backend("numpy")
        self.learn_logvar = bool(learn_logvar)
        s = backend.xp.full((1,), logvar, dtype=backend.dtype)
        self._fixed_logvar = None if self.learn_logvar else s
        if self.learn_logvar:
            self.params = {"logvar": s}
            self.grads = {"logvar": backend.xp.zeros_like(s)}
        self._cache = None

    @property
    def logvar(self):
        """s = log σ², an array of shape (1,): ``params["logvar"]`` when it is learned."""
        return self.params["logvar"] if self.learn_logvar else self._fixed_logvar

    def log_prob(self, x, out):
        s = self.logvar
        r2 = (x - out) ** 2
        self._cache = (x, out, r2)
        D = x.shape[1]
        return -0.5 * (D * (LOG_2PI + s) + r2.sum(axis=1) * array_module(s).exp(-s))

    def backward(self, dlogp):
        x, out, r2 = _need_cache(self._cache, self, "log_prob")
        xp = array_module(out)
        inv_var = xp.exp(-self.logvar)
        if self.learn_logvar:
            dlogp_ds = 0.5 * (r2 * inv_var - 1).sum(axis=1)
            ds = (dlogp * dlogp_ds).sum(keepdims=True)
            if not self.write_grads:
                self.grads["logvar"] += ds
            else:
                self.grads["logvar"][...] = ds
        return dlogp[:, None] * (x - out) * inv_var

    def mean(self, out):
        return out


LIKELIHOODS = ("bernoulli", "gaussian")


def make_likelihood(name: str, backend: Backend | None = None, **kwargs) -> Likelihood:
    """A likelihood by name: ``"bernoulli"`` or ``"gaussian"``."""
    if name == "bernoulli":
        return Bernoulli(backend=backend, **kwargs)
    if name == "gaussian":
        return Gaussian(backend=backend, **kwargs)
    raise ValueError(f"unknown likelihood {name!r}; expected one of {LIKELIHOODS}")


class SquaredError(Module):
    r"""The autoencoder's reconstruction cost: per example, the squared error over the D pixels.

    For a target x and a reconstruction x̂ = ``out``, both (B, D)::

        e(x, x̂) = ‖x − x̂‖² = Σ_d (x_d − x̂_d)²          (one number per example)
        ∂e/∂x̂_d = −2 (x_d − x̂_d)

    ``loss(x, out)`` returns e per example, shape (B,), and caches what
    ``backward`` needs; ``backward(dloss)`` takes ∂L/∂e_b (shape (B,); 1/B
    everywhere for the batch mean) and returns ∂L/∂out = −2 dloss_b (x − x̂).

    It is a Gaussian likelihood in disguise: with σ² = ½ on every pixel,
    −log N(x; x̂, ½ I) = ‖x − x̂‖² + (D/2) log π, so minimizing e is maximizing
    that likelihood, and the constant does not move the minimum.
    """

    name = "squared_error"

    def __init__(self):
        super().__init__()
        self._cache = None

    def loss(self, x, out):
        r = x - out
        self._cache = r
        return (r * r).sum(axis=1)

    def backward(self, dloss):
        r = _need_cache(self._cache, self, "loss")
        return (-2.0 * dloss[:, None]) * r
