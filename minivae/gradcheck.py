r"""Check hand-written gradients against central differences, in float64.

For a scalar function f and an array entry θ_i::

    ∂f/∂θ_i ≈ [ f(θ + h e_i) − f(θ − h e_i) ] / (2h)

with error O(h²) from the Taylor series (the h² f''' / 6 term) plus about
ε_machine·|f|/h from rounding; h = 1e-6 in float64 balances the two near 1e-10
relative.  The comparison uses the norm-wise relative error

    ‖a − n‖ / max(‖a‖ + ‖n‖, tiny)

which is ≲ 1e-8 for a correct gradient and O(1) for a wrong one.

Use it on your own layers::

    >>> from minivae.backend import get_backend
    >>> from minivae.layers import Dense
    >>> be = get_backend("numpy", dtype="float64", seed=0)
    >>> layer = Dense(3, 2, be)
    >>> errors = check_module(layer, be.standard_normal((4, 3)))
    >>> max(errors.values()) < 1e-6
    True
"""

from __future__ import annotations

import numpy as np

from .backend import array_module


def relative_error(a, b) -> float:
    """‖a − b‖ / max(‖a‖ + ‖b‖, 1e-300), norms over all entries."""
    xp = array_module(a)
    num = float(xp.linalg.norm((a - b).ravel()))
    den = float(xp.linalg.norm(a.ravel()) + xp.linalg.norm(b.ravel()))
    return num / max(den, 1e-300)


def _require_float64(name, a):
    if a.dtype != np.float64:
        raise ValueError(f"gradient checks need float64 arrays; {name} is {a.dtype} "
                         "(build the model with get_backend(..., dtype='float64'))")


def numerical_gradient(f, x, h: float = 1e-6):
    """Central-difference gradient of the scalar ``f()`` w.r.t. array ``x``.

    ``f`` takes no arguments and reads ``x``; each entry of ``x`` is perturbed in
    place and restored, so ``x`` must be the very array ``f`` computes with.
    Entries are addressed by index, ``x[i, j, …]``, so any memory layout works:
    a transposed or sliced view is perturbed where ``f`` reads it (a flattened
    view would be a copy for such arrays, and perturbing the copy would change
    nothing).  ``x`` must be writable.
    """
    _require_float64("x", x)
    if not getattr(x.flags, "writeable", True):   # (CuPy arrays are always writable)
        raise ValueError("x must be a writable array: its entries are perturbed in place")
    grad = np.zeros(x.shape)
    for i in np.ndindex(*x.shape):
        old = float(x[i])
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return array_module(x).asarray(grad)


def check_gradients(f, arrays: dict, analytic: dict, h: float = 1e-6) -> dict:
    """Relative error between ``analytic[k]`` and the numerical ∂f/∂``arrays[k]`` for each key."""
    missing = set(arrays) - set(analytic)
    if missing:
        raise ValueError(f"no analytic gradient for {sorted(missing)}")
    return {k: relative_error(analytic[k], numerical_gradient(f, arrays[k], h)) for k in arrays}


def check_module(module, x, h: float = 1e-6, seed: int = 0) -> dict:
    """Check a module's ``backward`` for the input and every parameter.

    Uses the scalar L = Σ dy ⊙ module.forward(x) with a fixed random dy, whose
    gradient w.r.t. the output is exactly dy.  Returns ``{"x": err, name: err…}``.
    """
    _require_float64("x", x)
    xp = array_module(x)
    y = module.forward(x)
    dy = xp.asarray(np.random.default_rng(seed).standard_normal(y.shape))

    def f():
        return float((dy * module.forward(x)).sum())

    module.zero_grad()
    module.forward(x)
    dx = module.backward(dy)
    analytic = {"x": dx, **{k: g.copy() for k, g in module.grads.items()}}
    return check_gradients(f, {"x": x, **module.params}, analytic, h)


def check_model(model, x, eps, beta: float = 1.0, h: float = 1e-6) -> dict:
    """Check ``model.backward`` for every parameter of the batch loss, ε held fixed.

    ``model`` has ``forward(x, eps=...)``, ``loss(x, beta, eps)`` and
    ``backward(beta)`` (the VAE does).
    """
    model.zero_grad()
    model.forward(x, eps=eps)
    model.backward(beta=beta)
    analytic = {k: g.copy() for k, g in model.grads.items()}
    return check_gradients(lambda: model.loss(x, beta=beta, eps=eps), model.params, analytic, h)


def check_objective(objective, x, eps, h: float = 1e-6) -> dict:
    """Check an objective's ``backward`` for every parameter of its model, ε held fixed.

    ``objective`` has ``model``, ``forward(x, eps=...)``, ``backward()`` and
    ``loss(x, eps=...)`` (:class:`minivae.models.iwae.IWAEObjective` does).
    """
    model = objective.model
    model.zero_grad()
    objective.forward(x, eps=eps)
    objective.backward()
    analytic = {k: g.copy() for k, g in model.grads.items()}
    return check_gradients(lambda: objective.loss(x, eps=eps), model.params, analytic, h)
