r"""The denoising autoencoder: the autoencoder's cost with a corrupted input.

Each training example is corrupted before the encoder sees it, and the clean
example stays the target::

    x̃⁽ⁱ⁾ ~ χ(x̃ | x⁽ⁱ⁾)                                  (minivae.corruption)
    L(θ, φ) = 1/n Σ_i ‖x⁽ⁱ⁾ − f_θ(g_φ(x̃⁽ⁱ⁾))‖²

An autoencoder with a wide enough bottleneck can drive its cost down by
copying its input; a denoising one cannot, because its input is not its
target: it has to learn what digits look like to undo the noise.

Backward.  x̃ is drawn from χ and depends on neither θ nor φ, so the noise
needs no derivative: the gradient is the autoencoder's, with the encoder's
input x̃ in place of x::

    ∂L/∂x̂ = −(2/n)(x − x̂),   x̂ = f_θ(g_φ(x̃))

and the decoder and encoder backward passes follow as in
:mod:`minivae.models.autoencoder`.  ``forward`` draws a fresh x̃ for every
batch from the backend's generator (on the backend's device) and the encoder
caches it, so ``backward`` differentiates at the very x̃ that was scored.
Pass ``x_tilde=`` to hold it fixed (gradient checks do).
"""

from __future__ import annotations

from ..backend import Backend
from ..corruption import Corruption, make_corruption
from .autoencoder import AEOutput, Autoencoder


class DenoisingAutoencoder(Autoencoder):
    """An :class:`Autoencoder` whose encoder sees x̃ ~ χ(x̃|x) while the target stays x.

    Parameters
    ----------
    input_dim, hidden, bottleneck, activation, output
        As for :class:`Autoencoder`.
    corruption : Corruption, str or dict
        χ(x̃|x): a :class:`~minivae.corruption.Corruption`; a name
        (``"gaussian"``, ``"masking"``, ``"salt-pepper"``) with ``noise_level``;
        or the dict ``Corruption.config()`` returns (as stored in checkpoints).
    noise_level : float, optional
        σ for ``"gaussian"``, ν for the other two; ``None`` takes the default
        level of :data:`minivae.corruption.DEFAULT_LEVELS`.  Only with a name.
    backend : Backend
        Its generator draws the initial weights and every x̃.
    """

    def __init__(self, input_dim: int = 784, hidden=(256,), bottleneck: int = 64,
                 activation: str = "relu", output: str = "sigmoid",
                 corruption="gaussian", noise_level: float | None = None,
                 backend: Backend | None = None):
        if isinstance(corruption, dict):
            corruption = make_corruption(**corruption)
        elif not isinstance(corruption, Corruption):
            corruption = make_corruption(corruption, noise_level)
        elif noise_level is not None:
            raise ValueError("noise_level goes with a corruption name, not with a Corruption "
                             f"object; got noise_level={noise_level!r} and {corruption!r}")
        self.corruption = corruption
        super().__init__(input_dim, hidden, bottleneck, activation, output, backend)

    def config(self) -> dict:
        return {**super().config(), "corruption": self.corruption.config()}

    def corrupt(self, x):
        """x̃ ~ χ(x̃|x): fresh noise from the backend's generator, on its device."""
        return self.corruption(x, self.backend.rng)

    def forward(self, x, x_tilde=None) -> AEOutput:
        """Score a batch: x̃ ~ χ(x̃|x) (or the given ``x_tilde``), x̂ = f_θ(g_φ(x̃)), ‖x − x̂‖²."""
        x = self.check_input(x)
        if x_tilde is None:
            x_tilde = self.corrupt(x)
        return self.score(x, x_tilde)

    def loss(self, x, x_tilde=None) -> float:
        """Forward, and the batch cost mean_i ‖x_i − f_θ(g_φ(x̃_i))‖² as a Python float."""
        return float(self.forward(x, x_tilde=x_tilde).sse.mean())
