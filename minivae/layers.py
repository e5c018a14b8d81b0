"""Dense layers, activations and the MLP container, each with its backward pass.

Every module follows one protocol:

* ``forward(x)`` computes the output and caches what ``backward`` needs;
* ``backward(dy)`` takes dL/dy (same shape as the output), **adds** the
  parameter gradients into ``grads`` and returns dL/dx;
* ``params`` and ``grads`` are dicts with the same keys; the values are the
  very arrays the module computes with, so an optimizer that updates them in
  place (``p -= ...``) updates the module.  A model lays them out in one flat
  array each (:meth:`Module.pack_parameters`): the dicts' arrays are views of it.

Gradients are *accumulated* (``+=``): a parameter used twice receives the sum
of both contributions, and ``zero_grad()`` comes before each backward pass of
a training step.

Two settings belong to a training run, not to the math, so no ``forward`` or
``backward`` takes them as arguments: a trainer sets them once on the model
(:meth:`Module.for_training`) and every sub-module follows.

* ``write_grads``: backward *writes* its gradients (grads ← this pass's
  gradient) instead of adding them: the products go straight into the
  gradient arrays, which saves the ``zero_grad`` and a pass over every weight
  matrix.  Right for a model whose parameters are each used once per forward
  (the VAE, the autoencoders), called once per step.
* ``check_values``: a model's public methods read every value of their input
  (finite, in the likelihood's support): one pass over the data and, on a GPU,
  one wait for the device.  A caller that checked its data once turns it off;
  the shape is always checked.

Shapes: a batch is a matrix with one example per row, ``x`` of shape
``(B, in)``; a Dense layer stores ``W`` as ``(in, out)`` so that ``y = x @ W + b``.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .backend import Backend, array_module, get_backend
from .fast import flat_like
from .validation import positive_int


class Module:
    """Base class: a ``params`` dict, a ``grads`` dict of the same keys, and ``zero_grad``."""

    #: backward writes ``grads`` instead of adding into them (see the module docstring)
    write_grads = False
    #: public methods read every input value (see the module docstring)
    check_values = True

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}

    def children(self) -> list:
        """The modules this one holds (as attributes, or in a list attribute)."""
        found = []
        for value in vars(self).values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Module):
                    found.append(item)
        return found

    def for_training(self, write_grads: bool = True, check_values: bool = False):
        """Set the run's two settings on this module and every sub-module; return self.

        A trainer calls it once, after it has checked the whole data set.
        """
        self.write_grads, self.check_values = bool(write_grads), bool(check_values)
        for child in self.children():
            child.for_training(write_grads, check_values)
        return self

    @contextlib.contextmanager
    def values_checked(self):
        """Inside the block the value checks are off: the caller has checked its data once."""
        before = self.check_values
        self.check_values = False
        try:
            yield self
        finally:
            self.check_values = before

    def modules_within(self) -> list:
        """This module and every module inside it, at any depth."""
        found = [self]
        for child in self.children():
            found += child.modules_within()
        return found

    def pack_parameters(self):
        """Put every parameter in one flat array and every gradient in another; return self.

        Afterwards the dicts of this module and of every module inside it hold
        views of the two arrays (the same keys, values and shapes), end to end
        in the order of ``params``.  The math does not change; what changes is
        that one operation can reach every parameter at once: the optimizer's
        fast twin updates them all in a few passes over one array
        (:func:`minivae.fast.adam_step_in_place`), not a few per parameter.
        The models call it at the end of their constructors.
        """
        moved = {}
        for arrays in (self.params, self.grads):
            for old, new in zip(arrays.values(), flat_like(arrays).values()):
                moved[id(old)] = new
        for module in self.modules_within():
            for arrays in (module.params, module.grads):
                for k, a in arrays.items():
                    arrays[k] = moved.get(id(a), a)
        return self

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def forward(self, x):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @classmethod
    def from_config(cls, config: dict, backend: Backend | None = None):
        """A fresh model of the architecture ``config`` describes (what ``config()`` returned).

        The one way a model is rebuilt from its description: by the checkpoint
        loader, the float64 twin of :mod:`minivae.inference` and the split-batch
        replicas of :mod:`minivae.training.parallel`.  Its weights are newly drawn;
        load stored ones with :func:`minivae.training.checkpoint.load_params`.
        """
        return cls(**config, backend=backend)


def _need_cache(value, module, what="forward"):
    if value is None:
        raise RuntimeError(f"{type(module).__name__}.backward called before {what}")
    return value


#: The initializations of a Dense layer (see :class:`Dense`).
DENSE_INITS = ("glorot", "he", "torch", "zeros")


class Dense(Module):
    r"""Affine map ``y = x W + b`` with ``W`` of shape (in, out).

    Initialization, ``init`` (see :data:`DENSE_INITS`)::

        "glorot"   W ~ U(−a, a), a = √(6 / (in + out)),  b = 0      (Glorot uniform)
        "he"       W ~ U(−a, a), a = √(6 / in),          b = 0      (He uniform, for ReLU)
        "torch"    W, b ~ U(−a, a), a = 1 / √in                      (PyTorch's nn.Linear)
        "zeros"    W = 0, b = 0                                       (nothing drawn)

    (PyTorch writes the last one as kaiming_uniform_ with a = √5:
    gain √(2 / (1 + 5)), bound gain·√(3 / in) = 1/√in; its bias uses the same bound.)

    Backward (``dY = ∂L/∂Y``, rows are examples)::

        Y = X W + b          Y_bk = Σ_i X_bi W_ik + b_k
        ∂L/∂W = Xᵀ dY        (∂L/∂W_ik = Σ_b X_bi dY_bk)
        ∂L/∂b = Σ_b dY_b     (a column sum: 1ᵀ dY)
        ∂L/∂X = dY Wᵀ        (∂L/∂X_bi = Σ_k dY_bk W_ik)

    ``backward(dy, need_dx=False)`` skips the last product and returns None:
    the first layer of a network gets no use from ∂L/∂(data).  With
    ``write_grads`` set (:meth:`Module.for_training`) the two gradient products
    are written into ``grads`` (``matmul(..., out=)``) instead of added to them.
    """

    def __init__(self, n_in: int, n_out: int, backend: Backend | None = None,
                 init: str = "glorot"):
        super().__init__()
        n_in, n_out = positive_int("Dense n_in", n_in), positive_int("Dense n_out", n_out)
        if init not in DENSE_INITS:
            raise ValueError(f"init must be one of {DENSE_INITS}, got {init!r}")
        self.backend = backend = backend or get_backend("numpy")
        self.n_in, self.n_out = int(n_in), int(n_out)
        a = {"glorot": math.sqrt(6.0 / (n_in + n_out)), "he": math.sqrt(6.0 / n_in),
             "torch": 1.0 / math.sqrt(n_in), "zeros": 0.0}[init]
        W = (2.0 * backend.uniform((n_in, n_out)) - 1.0) * a if a else \
            backend.zeros((n_in, n_out))
        b = ((2.0 * backend.uniform((n_out,)) - 1.0) * a if init == "torch"
             else backend.zeros((n_out,)))
        self.params = {"W": W.astype(backend.dtype), "b": b.astype(backend.dtype)}
        self.grads = {k: backend.xp.zeros_like(v) for k, v in self.params.items()}
        self._x = None

    def forward(self, x):
        self._x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy, need_dx: bool = True):
        x = _need_cache(self._x, self)
        if not self.write_grads:
            self.grads["W"] += x.T @ dy         # ∂L/∂W = Xᵀ dY
            self.grads["b"] += dy.sum(axis=0)   # ∂L/∂b = 1ᵀ dY
        else:                                   # the same two lines, written in place
            xp = array_module(dy)
            xp.matmul(x.T, dy, out=self.grads["W"])
            xp.sum(dy, axis=0, out=self.grads["b"])
        return dy @ self.params["W"].T if need_dx else None

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out})"


class Activation(Module):
    """An elementwise nonlinearity y = f(x); no parameters."""

    name = "activation"

    def __init__(self):
        super().__init__()
        self._cache = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReLU(Activation):
    r"""y = max(x, 0).      ∂L/∂x = ∂L/∂y · 1[x > 0]   (the subgradient 0 is used at x = 0)."""

    name = "relu"

    def forward(self, x):
        y = self._cache = array_module(x).maximum(x, 0)
        return y

    def backward(self, dy):
        y = _need_cache(self._cache, self)
        return dy * (y > 0)


class LeakyReLU(Activation):
    r"""y = x for x > 0, α·x otherwise.      ∂L/∂x = ∂L/∂y · (1 if x > 0 else α)."""

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        if not 0 <= alpha < 1:
            raise ValueError(f"LeakyReLU alpha must be in [0, 1), got {alpha!r}")
        self.alpha = alpha

    def forward(self, x):
        positive = self._cache = x > 0
        return array_module(x).where(positive, x, self.alpha * x)

    def backward(self, dy):
        positive = _need_cache(self._cache, self)
        return array_module(dy).where(positive, dy, self.alpha * dy)


class Tanh(Activation):
    r"""y = tanh(x).      ∂y/∂x = 1 − tanh²(x) = 1 − y², so ∂L/∂x = ∂L/∂y · (1 − y²)."""

    name = "tanh"

    def forward(self, x):
        y = self._cache = array_module(x).tanh(x)
        return y

    def backward(self, dy):
        y = _need_cache(self._cache, self)
        return dy * (1 - y * y)


def sigmoid(x, xp=np):
    r"""σ(x) = 1 / (1 + e^{−x}), evaluated without overflow for any x.

    σ(x) = e^{min(x, 0)} / (1 + e^{−|x|}): for x ≥ 0 that is 1 / (1 + e^{−x});
    for x < 0 it is e^{x} / (1 + e^{x}), the same value multiplied through by
    e^{x}.  Both exponents are ≤ 0, so nothing overflows, and there is no
    branch (``where`` on a data-dependent mask is ten times slower here).
    """
    return xp.exp(xp.minimum(x, 0)) / (1 + xp.exp(-xp.abs(x)))


def softplus(x, xp=np):
    r"""softplus(x) = log(1 + e^{x}) = max(x, 0) + log1p(e^{−|x|}), stable for any x."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


class Sigmoid(Activation):
    r"""y = σ(x).      ∂y/∂x = σ(x)(1 − σ(x)) = y(1 − y), so ∂L/∂x = ∂L/∂y · y(1 − y)."""

    name = "sigmoid"

    def forward(self, x):
        y = self._cache = sigmoid(x, array_module(x))
        return y

    def backward(self, dy):
        y = _need_cache(self._cache, self)
        return dy * y * (1 - y)


class Softplus(Activation):
    r"""y = log(1 + eˣ).      ∂y/∂x = eˣ / (1 + eˣ) = σ(x), so ∂L/∂x = ∂L/∂y · σ(x)."""

    name = "softplus"

    def forward(self, x):
        xp = array_module(x)
        self._cache = x
        return softplus(x, xp)

    def backward(self, dy):
        x = _need_cache(self._cache, self)
        return dy * sigmoid(x, array_module(x))


ACTIVATIONS = {cls.name: cls for cls in (ReLU, LeakyReLU, Tanh, Sigmoid, Softplus)}


def make_activation(name: str) -> Activation:
    """An activation module by name: one of ``ACTIVATIONS``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(Module):
    r"""A chain of Dense layers with an activation between them.

    ``MLP([784, 400, 20], "relu")`` is Dense(784, 400) → ReLU → Dense(400, 20).
    The last Dense has no activation unless ``final_activation`` names one.

    Backward is the chain rule taken in reverse order: each module receives the
    gradient w.r.t. its output and returns the gradient w.r.t. its input, which
    is the gradient w.r.t. the previous module's output.

    ``params`` and ``grads`` hold every layer's arrays under ``"{i}.W"``,
    ``"{i}.b"`` where ``i`` is the module's index in :attr:`layers`.

    ``init`` names every Dense layer's initialization (:data:`DENSE_INITS`);
    None picks He uniform after ReLU-like activations and Glorot uniform
    otherwise.
    """

    def __init__(self, sizes, activation: str = "relu", backend: Backend | None = None,
                 final_activation: str | None = None, init: str | None = None):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got {sizes}")
        self.backend = backend = backend or get_backend("numpy")
        self.sizes = sizes
        if init is None:
            init = "he" if activation in ("relu", "leaky_relu") else "glorot"
        self.layers: list[Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.layers.append(Dense(n_in, n_out, backend, init=init))
            last = i == len(sizes) - 2
            if not last:
                self.layers.append(make_activation(activation))
            elif final_activation is not None:
                self.layers.append(make_activation(final_activation))
        for i, layer in enumerate(self.layers):
            for k in layer.params:
                self.params[f"{i}.{k}"] = layer.params[k]
                self.grads[f"{i}.{k}"] = layer.grads[k]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy, need_dx: bool = True):
        """Chain rule in reverse; ``need_dx=False`` skips ∂L/∂x of the first layer (returns None)."""
        for layer in reversed(self.layers[1:]):
            dy = layer.backward(dy)
        return self.layers[0].backward(dy, need_dx=need_dx)

    def __repr__(self) -> str:
        return "MLP(" + " → ".join(repr(l) for l in self.layers) + ")"
