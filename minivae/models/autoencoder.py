r"""The autoencoder of the lecture, forward and backward by hand.

An encoder g_φ squeezes an image x of D pixels into a code c of k numbers
(the bottleneck, usually k ≪ D); a decoder f_θ maps the code back to an image::

    c = g_φ(x)            MLP: Dense → act → … → Dense       (the code is linear)
    x̂ = f_θ(c)            MLP: Dense → act → … → Dense → σ   (σ: output="sigmoid")

The cost of the lecture, for n examples::

    L(θ, φ) = 1/n Σ_i ‖x⁽ⁱ⁾ − f_θ(g_φ(x⁽ⁱ⁾))‖²        ‖v‖² = Σ_d v_d²

The lecture's [x − f(g(x))]² is this squared Euclidean norm: per example the
squared error is *summed* over the D pixels, and the batch cost is the *mean*
over the n = B examples of the batch.  The reported numbers follow suit:
``sse_per_example`` is that per-example sum (the cost), and ``mse_per_pixel``
= ``sse_per_example`` / D is the familiar "mean squared error", which is what
``mse`` means everywhere in minivae.

Backward.  With e_i = Σ_d (x_id − x̂_id)² and L = 1/n Σ_i e_i::

    ∂L/∂x̂_id = 1/n · ∂e_i/∂x̂_id = −(2/n) (x_id − x̂_id)       (SquaredError.backward)
    ∂L/∂a_id  = ∂L/∂x̂_id · x̂_id (1 − x̂_id)     for x̂ = σ(a)  (the Sigmoid layer's backward)
    ∂L/∂c     = decoder backward of ∂L/∂a, filling ∂L/∂θ on the way
                (each Dense: dX = dY Wᵀ, dW = Xᵀ dY, db = 1ᵀ dY)
    ∂L/∂φ     = encoder backward of ∂L/∂c

Each module adds its parameter gradients into ``grads`` on the way.  There is
no sampling anywhere: the plain autoencoder is deterministic.  The denoising
autoencoder (:mod:`minivae.models.denoising`) is this class with the encoder fed
a corrupted x̃ instead of x; it inherits everything below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Backend, get_backend
from ..data import as_model_input
from ..layers import MLP, Module
from ..likelihoods import SquaredError
from ..validation import positive_int as _positive_int

OUTPUTS = ("sigmoid", "linear")


@dataclass
class AEOutput:
    """What :meth:`Autoencoder.forward` returns.

    ``sse`` (B,) is ‖x − x̂‖² per example, summed over pixels; the batch cost
    is ``sse.mean()``.  ``x_input`` is what the encoder saw (x itself, or x̃
    for the denoising model), ``code`` is c = g_φ(x_input), (B, bottleneck),
    and ``out`` is the reconstruction x̂ = f_θ(c), (B, D).
    """

    sse: object
    x_input: object
    code: object
    out: object


class Autoencoder(Module):
    """An MLP autoencoder trained on L = 1/n Σ_i ‖x⁽ⁱ⁾ − f_θ(g_φ(x⁽ⁱ⁾))‖².

    Parameters
    ----------
    input_dim : int
        D, pixels per example (784 for 28×28 digits).
    hidden : int or sequence of int
        Widths of the encoder's hidden layers; the decoder mirrors them.
        ``256`` gives 784-256-k-256-784.
    bottleneck : int
        k, the size of the code c = g_φ(x).  The code layer has no activation.
    activation : str
        Hidden nonlinearity: relu, leaky_relu, tanh, sigmoid, softplus.
    output : {"sigmoid", "linear"}
        The decoder's last layer: ``"sigmoid"`` keeps x̂ in (0, 1), the range
        of the pixels (the default); ``"linear"`` leaves it unbounded.
    backend : Backend
        Array module, dtype, and the seeded generator of the initial weights.
    """

    def __init__(self, input_dim: int = 784, hidden=(256,), bottleneck: int = 64,
                 activation: str = "relu", output: str = "sigmoid",
                 backend: Backend | None = None):
        super().__init__()
        self.backend = backend = backend or get_backend("numpy")
        self.input_dim = _positive_int("input_dim", input_dim)
        self.bottleneck = _positive_int("bottleneck", bottleneck)
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one hidden layer width")
        self.hidden = tuple(_positive_int("hidden width", h) for h in hidden)
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; expected one of {OUTPUTS}")
        self.activation, self.output = activation, output

        self.encoder = MLP([self.input_dim, *self.hidden, self.bottleneck], activation, backend)
        self.decoder = MLP([self.bottleneck, *reversed(self.hidden), self.input_dim], activation,
                           backend, final_activation="sigmoid" if output == "sigmoid" else None)
        self.cost = SquaredError()
        for prefix, module in (("encoder", self.encoder), ("decoder", self.decoder)):
            for k in module.params:
                self.params[f"{prefix}.{k}"] = module.params[k]
                self.grads[f"{prefix}.{k}"] = module.grads[k]
        self.pack_parameters()            # θ in one flat array, ∂L/∂θ in another
        self._batch = None

    @staticmethod
    def dense_shapes(input_dim: int, hidden, bottleneck: int):
        """(n_in, n_out) of every Dense layer the constructor builds, in data-flow order."""
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        widths = [input_dim, *hidden, bottleneck, *reversed(hidden), input_dim]
        return list(zip(widths[:-1], widths[1:]))

    def config(self) -> dict:
        """The constructor arguments, JSON-serializable (stored in checkpoints)."""
        return {"input_dim": self.input_dim, "hidden": list(self.hidden),
                "bottleneck": self.bottleneck, "activation": self.activation,
                "output": self.output}

    # -- input checks ----------------------------------------------------
    def check_input(self, x, name: str = "x"):
        """Bring ``x`` onto the backend and check it; return the device array.

        Always checks the shape (B, input_dim); while ``check_values`` is on
        (:mod:`minivae.layers`) also NaN and Inf (a trainer checks the whole
        data set once instead).  ``name`` is how the array is called in the
        error message.
        """
        return as_model_input(x, self.backend, self.input_dim, values=self.check_values,
                              name=name)

    # -- the model -------------------------------------------------------
    def encode(self, x):
        """The code c = g_φ(x), shape (B, bottleneck)."""
        return self.encoder.forward(self.check_input(x))

    def decode(self, code):
        """The reconstruction x̂ = f_θ(c), shape (B, input_dim); ``code`` is (B, bottleneck)."""
        code = as_model_input(code, self.backend, self.bottleneck, values=self.check_values,
                              name="code")
        return self.decoder.forward(code)

    def reconstruct(self, x):
        """x̂ = f_θ(g_φ(x)) for the given input, as it is (a denoiser adds no noise here)."""
        return self.decoder.forward(self.encode(x))

    def score(self, x, x_input=None) -> AEOutput:
        """Encode ``x_input``, decode, and measure the squared error against the target ``x``.

        The plain autoencoder scores ``score(x)`` (the input is the target);
        the denoising one ``score(x, x̃)``.  Caches what :meth:`backward` needs.
        """
        x = self.check_input(x)
        x_input = x if x_input is None else self.check_input(x_input, name="x_input")
        if x_input.shape != x.shape:
            raise ValueError(f"x_input must have the shape of x, {x.shape}; got {x_input.shape}")
        code = self.encoder.forward(x_input)
        out = self.decoder.forward(code)
        sse = self.cost.loss(x, out)
        self._batch = x.shape[0]
        return AEOutput(sse=sse, x_input=x_input, code=code, out=out)

    def forward(self, x) -> AEOutput:
        """Score a batch: x̂ = f_θ(g_φ(x)) and ‖x − x̂‖² per example."""
        return self.score(x)

    def backward(self) -> None:
        """Add ∂L/∂θ, ∂L/∂φ of L = mean_i ‖x_i − x̂_i‖² (the last forward) into ``grads``.

        The derivation is in the module docstring; each line below is one line of it.
        (Under ``write_grads`` the gradients are written instead: each parameter
        is used once per forward.)
        """
        if self._batch is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        n = self._batch
        dsse = self.backend.xp.full((n,), 1.0 / n, dtype=self.backend.dtype)  # ∂L/∂e_i = 1/n
        dout = self.cost.backward(dsse)       # ∂L/∂x̂ = −(2/n)(x − x̂)
        dcode = self.decoder.backward(dout)   # through σ' = x̂(1 − x̂), then Dense
        self.encoder.backward(dcode, need_dx=False)   # ∂L/∂φ; ∂L/∂x is of no use

    def loss(self, x) -> float:
        """Forward, and the batch cost mean_i ‖x_i − x̂_i‖² as a Python float."""
        return float(self.forward(x).sse.mean())


def evaluate_reconstruction(model: Autoencoder, x, x_input=None, batch_size: int = 500) -> dict:
    """The squared error of ``model``'s reconstructions of ``x_input`` against the targets ``x``.

    ``x_input=None`` reconstructs ``x`` itself (the plain autoencoder's test);
    pass corrupted digits x̃ to measure how well the model denoises them.
    Nothing is drawn at random.  Returns Python floats::

        sse_per_example = 1/N Σ_i ‖x_i − x̂_i‖²        (the training cost, over N examples)
        mse_per_pixel   = sse_per_example / D
        mse             = mse_per_pixel                  (the alias used in reports)
    """
    batch_size = _positive_int("batch_size", batch_size)
    x = model.check_input(x)
    x_input = x if x_input is None else model.check_input(x_input, name="x_input")
    if x_input.shape != x.shape:
        raise ValueError(f"x_input must have the shape of x, {x.shape}; got {x_input.shape}")
    total = 0.0
    with model.values_checked():                  # checked above, once
        for start in range(0, x.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            r = x[sl] - model.reconstruct(x_input[sl])
            total += float((r * r).sum())
    sse = total / x.shape[0]
    mse = sse / x.shape[1]
    return {"sse_per_example": sse, "mse_per_pixel": mse, "mse": mse}
