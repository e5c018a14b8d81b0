r"""Optimizers: they read ``params`` and ``grads`` and update the parameters in place.

Backward passes only ever fill ``grads``; a parameter changes only in
``step()``.  Both dicts come from a module (``model.params``, ``model.grads``)
and hold the arrays the model computes with, so ``p -= ...`` updates the model.

SGD with momentum (heavy ball), for each parameter θ with gradient g::

    v ← μ v + g
    θ ← θ − η v                      (μ = 0 is plain gradient descent)

Adam (Kingma & Ba 2015), t = 1, 2, …::

    m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
    m̂ = m / (1 − β₁ᵗ)                v̂ = v / (1 − β₂ᵗ)
    θ ← θ − η m̂ / (√v̂ + ε)
"""

from __future__ import annotations

import numpy as np

from .backend import array_module
from .fast import flat_like, twin
from .validation import positive_int, positive_number


def _check_unit(name, value):
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the ``params`` and ``grads`` dicts (same keys)."""

    def __init__(self, params: dict, grads: dict, lr: float):
        if set(params) != set(grads):
            raise ValueError("params and grads must have the same keys; differ in "
                             f"{sorted(set(params) ^ set(grads))}")
        self.params, self.grads = params, grads
        self.lr = positive_number("lr", lr)
        self.t = 0

    def step(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Arrays and counters needed to resume (arrays stay on the device)."""
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])


class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum."""

    def __init__(self, params: dict, grads: dict, lr: float = 1e-2, momentum: float = 0.0):
        super().__init__(params, grads, lr)
        self.momentum = _check_unit("momentum", momentum)
        self.velocity = {k: array_module(p).zeros_like(p) for k, p in params.items()}

    def step(self) -> None:
        self.t += 1
        for k, p in self.params.items():
            v = self.velocity[k]
            v *= self.momentum
            v += self.grads[k]                 # v ← μ v + g
            p -= self.lr * v                   # θ ← θ − η v

    def state_dict(self) -> dict:
        return {"t": self.t, **{f"velocity.{k}": v for k, v in self.velocity.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for k, v in self.velocity.items():
            v[...] = state[f"velocity.{k}"]


@twin("adam_step")
def adam_step(opt) -> None:
    """One Adam step of optimizer ``opt``: the five lines of the module docstring, as written.

    Fast twins (:mod:`minivae.fast`): on NumPy the same update in place with
    the bias corrections folded into two scalars, split over two threads; on
    CuPy one fused kernel per parameter.
    """
    opt.t += 1
    t, b1, b2 = opt.t, opt.beta1, opt.beta2
    for k, p in opt.params.items():
        g, m, v = opt.grads[k], opt.m[k], opt.v[k]
        m[...] = b1 * m + (1 - b1) * g                # m ← β₁ m + (1 − β₁) g
        v[...] = b2 * v + (1 - b2) * g * g            # v ← β₂ v + (1 − β₂) g²
        m_hat = m / (1 - b1 ** t)                     # m̂ = m / (1 − β₁ᵗ)
        v_hat = v / (1 - b2 ** t)                     # v̂ = v / (1 − β₂ᵗ)
        p -= opt.lr * m_hat / (opt.xp.sqrt(v_hat) + opt.eps)   # θ ← θ − η m̂ / (√v̂ + ε)


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments (see the module docstring).

    :meth:`step` is :func:`adam_step`.  ``threads`` is for its fast twin on
    NumPy (:func:`minivae.fast.adam_step_in_place`): None (the default) uses 2
    threads where the machine has 2 cores or more, 1 otherwise; each
    parameter's arithmetic is the same whatever the count.
    """

    def __init__(self, params: dict, grads: dict, lr: float = 1e-3,
                 betas=(0.9, 0.999), eps: float = 1e-8, threads: int | None = None):
        super().__init__(params, grads, lr)
        self.beta1 = _check_unit("beta1", betas[0])
        self.beta2 = _check_unit("beta2", betas[1])
        self.eps = positive_number("eps", eps)
        self.threads = None if threads is None else positive_int("threads", threads)
        self.xp = array_module(next(iter(params.values()))) if params else np
        # zeros shaped like θ, laid out as θ is in a packed model: one flat array each
        self.m = flat_like(params, copy=False)
        self.v = flat_like(params, copy=False)

    def step(self) -> None:
        adam_step(self)

    def state_dict(self) -> dict:
        return {"t": self.t, **{f"m.{k}": a for k, a in self.m.items()},
                **{f"v.{k}": a for k, a in self.v.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for k in self.m:
            self.m[k][...] = state[f"m.{k}"]
            self.v[k][...] = state[f"v.{k}"]


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(name: str, params: dict, grads: dict, lr: float, **kwargs) -> Optimizer:
    """An optimizer by name: ``"adam"`` or ``"sgd"`` (``momentum=`` for SGD)."""
    if name == "adam":
        return Adam(params, grads, lr=lr, **kwargs)
    if name == "sgd":
        return SGD(params, grads, lr=lr, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
