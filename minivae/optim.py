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

import os
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .backend import array_module
from .kernels import fused
from .validation import positive_int, positive_number


def _balanced_groups(params: dict, n: int) -> list:
    """Split the keys into at most ``n`` non-empty groups of about equal total size."""
    groups = [[] for _ in range(n)]
    sizes = [0] * n
    for k in sorted(params, key=lambda k: -params[k].size):   # largest first, to the lightest
        i = sizes.index(min(sizes))
        groups[i].append(k)
        sizes[i] += params[k].size
    return [g for g in groups if g] or [[]]


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


def adam_reference(p, g, m, v, t: int, lr: float, beta1: float, beta2: float, eps: float):
    """One Adam step written exactly as the formula; returns new ``(p, m, v)``.

    The readable definition that :meth:`Adam.step` must reproduce (tests hold
    the two together)::

        m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²
        θ ← θ − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
    """
    xp = array_module(p)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr * (m / (1 - beta1 ** t)) / (xp.sqrt(v / (1 - beta2 ** t)) + eps)
    return p, m, v


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments (see the module docstring).

    :meth:`step` computes :func:`adam_reference` in place, without temporaries:
    the bias corrections are folded into two scalars (multiply the fraction
    above and below by √c₂, using √(v/c₂) = √v / √c₂),

        θ ← θ − (η √c₂ / c₁) · m / (√v + ε √c₂),   c₁ = 1 − β₁ᵗ,  c₂ = 1 − β₂ᵗ,

    and every intermediate goes through one scratch buffer with ``out=``, so a
    step allocates nothing and makes twelve passes over memory instead of
    twice that.

    ``threads``: NumPy's elementwise work runs on one core.  With 2 (the
    default where the machine has 2 cores or more and the arrays are NumPy's),
    the parameters are split into two groups of about equal size, updated by
    the calling thread and one pool thread at once (NumPy releases the GIL
    inside these loops); each parameter's arithmetic is unchanged, so the
    result is the same bit for bit.
    """

    def __init__(self, params: dict, grads: dict, lr: float = 1e-3,
                 betas=(0.9, 0.999), eps: float = 1e-8, threads: int | None = None):
        super().__init__(params, grads, lr)
        self.beta1 = _check_unit("beta1", betas[0])
        self.beta2 = _check_unit("beta2", betas[1])
        self.eps = positive_number("eps", eps)
        self.m = {k: array_module(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: array_module(p).zeros_like(p) for k, p in params.items()}
        self._scratch = {k: array_module(p).empty_like(p) for k, p in params.items()}
        on_numpy = all(isinstance(p, np.ndarray) for p in params.values())
        if threads is None:
            threads = 2 if on_numpy and (os.cpu_count() or 1) >= 2 else 1
        threads = positive_int("threads", threads)
        self._groups = _balanced_groups(params, threads if on_numpy else 1)
        self._pool = ThreadPoolExecutor(len(self._groups) - 1) if len(self._groups) > 1 else None

    def step(self) -> None:
        self.t += 1
        sqrt_c2 = (1 - self.beta2 ** self.t) ** 0.5               # √c₂
        step_size = self.lr * sqrt_c2 / (1 - self.beta1 ** self.t)  # η √c₂ / c₁
        eps = self.eps * sqrt_c2                                   # ε √c₂
        others = [self._pool.submit(self._update, keys, step_size, eps)
                  for keys in self._groups[1:]]
        try:
            self._update(self._groups[0], step_size, eps)        # the calling thread's share
        finally:
            wait(others)
        for done in others:
            done.result()                                          # re-raise a failure

    def step_reference(self) -> None:
        """The same update through :func:`adam_reference`, the formula as written.

        What :meth:`step` must equal (``tests/test_fast_paths.py`` trains with it
        in its place); it allocates new arrays at every line.
        """
        self.t += 1
        for k, p in self.params.items():
            p_new, m, v = adam_reference(p, self.grads[k], self.m[k], self.v[k], self.t,
                                         self.lr, self.beta1, self.beta2, self.eps)
            p[...], self.m[k][...], self.v[k][...] = p_new, m, v

    def _update(self, keys, step_size: float, eps: float) -> None:
        b1, b2 = self.beta1, self.beta2
        for k in keys:
            p, g, m, v, tmp = self.params[k], self.grads[k], self.m[k], self.v[k], self._scratch[k]
            xp = array_module(p)
            if xp is not np:                   # on a GPU: the update as one fused kernel
                p[...], m[...], v[...] = fused("adam", p)(p, g, m, v, b1, b2, step_size, eps)
                continue
            m *= b1
            xp.multiply(g, 1 - b1, out=tmp)
            m += tmp                                   # m ← β₁ m + (1 − β₁) g
            v *= b2
            xp.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp                                   # v ← β₂ v + (1 − β₂) g²
            xp.sqrt(v, out=tmp)
            tmp += eps                                 # √v + ε√c₂ = √c₂ (√v̂ + ε)
            xp.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp                                   # θ ← θ − η m̂ / (√v̂ + ε)

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
