"""The fast paths change no result: training with each replaced by its formula gives the
same loss curve (same seed, float32, so equal up to rounding).

The fast paths are the twins of minivae.fast (the Bernoulli gradient through tanh(ℓ/2), the
in-place two-thread Adam), gradients written instead of added, and the split-batch step;
each has its own tight float64 test.  Here all of them are swapped for the plain forms at
once (``fast.formulas_only()``, zero_grad then add, the serial step), and a short training
run must not notice.
"""

import numpy as np
import pytest

from minivae import fast, models
from minivae.data import Dataset, load_dataset
from minivae.training.train import VAEConfig, train_vae


def _reference_vae_backward(original):
    def backward(self, beta=1.0):
        if self.write_grads:                                    # zero, then add, as the
            self.zero_grad()                                    # protocol's plain form
            self.for_training(write_grads=False)
            try:
                return original(self, beta=beta)
            finally:
                self.for_training(write_grads=True)
        return original(self, beta=beta)
    return backward


def test_reference_expressions_train_the_same_curve(monkeypatch):
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:2048], ds.y_train[:2048], ds.x_test[:256],
                    ds.y_test[:256])
    config = dict(epochs=3, batch_size=128, hidden=(64,), latent_dim=8, progress=False, out=None)
    quick = train_vae(VAEConfig(**config), dataset=small)

    with monkeypatch.context() as mp:
        mp.setattr(models.vae.VAE, "backward", _reference_vae_backward(models.vae.VAE.backward))
        with fast.formulas_only():            # and the serial step instead of the split one
            reference = train_vae(VAEConfig(**config, threads=1), dataset=small)
    a = np.array([h["train_neg_elbo"] for h in quick["history"]])
    b = np.array([h["train_neg_elbo"] for h in reference["history"]])
    assert a[-1] < a[0] - 20                                     # it did learn
    # Adam divides the gradient by its own scale, so rounding differences in the gradient move
    # the weights by about lr × 1e-7: the curves agree to ~1e-9 (seen: 2e-10).
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.array_equal(a, b)                              # the swap did take effect
    assert quick["test"]["neg_elbo"] == pytest.approx(reference["test"]["neg_elbo"], rel=1e-5)
