"""The fast paths change no result: training with each replaced by its plain reference expression
gives the same loss curve (same seed, float32, so equal up to rounding).

The fast paths are the Bernoulli gradient through tanh(ℓ/2), gradients written by
backward(accumulate=False), the in-place two-thread Adam and the split-batch step; each has
its own tight float64 test beside its code.  Their plain forms live in the library beside
them (``Bernoulli.backward_reference``, ``Adam.step_reference``, the serial step).  Here all
of them are swapped in at once, and a short training run must not notice.
"""

import numpy as np
import pytest

from minivae import likelihoods, models, optim
from minivae.data import Dataset, load_dataset
from minivae.training.train import VAEConfig, train_vae


def _reference_vae_backward(original):
    def backward(self, beta=1.0, batch_total=None, accumulate=True):
        if not accumulate:                                      # zero, then add, as the
            self.zero_grad()                                    # protocol's plain form
        return original(self, beta=beta, batch_total=batch_total, accumulate=True)
    return backward


def test_reference_expressions_train_the_same_curve(monkeypatch):
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:2048], ds.y_train[:2048], ds.x_test[:256],
                    ds.y_test[:256])
    config = dict(epochs=3, batch_size=128, hidden=(64,), latent_dim=8, progress=False, out=None)
    fast = train_vae(VAEConfig(**config), dataset=small)

    with monkeypatch.context() as mp:
        mp.setattr(likelihoods.Bernoulli, "backward", likelihoods.Bernoulli.backward_reference)
        mp.setattr(optim.Adam, "step", optim.Adam.step_reference)
        mp.setattr(models.vae.VAE, "backward", _reference_vae_backward(models.vae.VAE.backward))
        # and the serial step instead of the split one
        reference = train_vae(VAEConfig(**config, threads=1), dataset=small)

    assert likelihoods.Bernoulli.backward is not likelihoods.Bernoulli.backward_reference
    a = np.array([h["train_neg_elbo"] for h in fast["history"]])
    b = np.array([h["train_neg_elbo"] for h in reference["history"]])
    assert a[-1] < a[0] - 20                                     # it did learn
    # Adam divides the gradient by its own scale, so rounding differences in the gradient move
    # the weights by about lr × 1e-7: the curves agree to ~1e-9 (seen: 2e-10).
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert fast["test"]["neg_elbo"] == pytest.approx(reference["test"]["neg_elbo"], rel=1e-5)
