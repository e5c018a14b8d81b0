"""Evaluation: the importance-weighted bound against the ELBO and against quadrature; active units."""

import numpy as np
import pytest
from scipy.special import logsumexp

from conftest import to_np
from minivae.data import Dataset, binarize_fixed, load_dataset
from minivae.evaluate import active_units, evaluate_elbo, iw_log_likelihood
from minivae.models.vae import VAE
from minivae.training.train import VAEConfig, train_vae


def _tiny(be, latent=1):
    model = VAE(6, (5,), latent, "tanh", backend=be)
    for k in ("decoder.0.W", "decoder.2.W"):
        model.params[k] *= 3  # a decoder that depends strongly on z
    return model


def _x(be, n=1):
    return be.to_device(np.array([[1, 0, 1, 1, 0, 0]] * n, dtype=float))


def log_px_by_quadrature(model, x_row, be):
    """log ∫ p(x|z) N(z; 0, 1) dz on a fine grid over a 1-D latent (error ≪ 1e-6)."""
    z = np.linspace(-12, 12, 24001)
    dz = z[1] - z[0]
    out = model.decode(be.to_device(z[:, None]))
    log_px_z = to_np(model.likelihood.log_prob(be.xp.repeat(x_row, z.size, axis=0), out))
    log_joint = log_px_z - 0.5 * (z ** 2 + np.log(2 * np.pi))
    return float(logsumexp(log_joint) + np.log(dz))


def test_k1_estimate_is_the_elbo_in_expectation(be64):
    model = _tiny(be64, latent=2)
    n = 20000
    iw1 = iw_log_likelihood(model, _x(be64, n), k=1)
    elbo = -evaluate_elbo(model, _x(be64, n))["kl"] - evaluate_elbo(model, _x(be64, n))["recon"]
    # both are averages of n independent draws; the KL term of evaluate_elbo is exact
    se = iw1.std() / np.sqrt(n)
    assert abs(iw1.mean() - elbo) < 5 * np.sqrt(2) * se


def test_agrees_with_quadrature_on_a_1d_latent(be64):
    model = _tiny(be64, latent=1)
    exact = log_px_by_quadrature(model, _x(be64), be64)
    runs = iw_log_likelihood(model, _x(be64, 40), k=2000, chunk=500)  # 40 independent estimates
    se = runs.std(ddof=1) / np.sqrt(runs.size)
    assert se < 0.01  # the test is sharp, not vacuous
    assert abs(runs.mean() - exact) < 5 * se + 1e-4, (runs.mean(), exact, se)
    # and the ELBO is below it by KL(q(z|x) ‖ p(z|x)) > 0
    assert -evaluate_elbo(model, _x(be64, 20000))["neg_elbo"] < exact - 5 * se


def test_does_not_decrease_in_k_on_a_trained_model():
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:1000], ds.y_train[:1000], ds.x_test, ds.y_test)
    _, model = train_vae(VAEConfig(epochs=5, hidden=(64,), latent_dim=8, progress=False,
                                     out=None), dataset=small, return_model=True)
    x = binarize_fixed(ds.x_test[:100])
    means = [iw_log_likelihood(model, x, k=k).mean() for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2], means


def test_log_sum_exp_keeps_tiny_weights_finite(be64):
    model = _tiny(be64)
    model.params["decoder.2.W"] *= 5000  # log p(x|z) far below −745, where exp() underflows to 0
    est = iw_log_likelihood(model, _x(be64, 3), k=50, chunk=7)
    assert np.all(np.isfinite(est)) and np.all(est < -800)


def test_active_units_counts_units_whose_mean_varies(be64):
    model = VAE(6, (5,), 4, "tanh", backend=be64)
    model.params["mu_head.W"][:, 1:3] = 0  # μ_1, μ_2 no longer depend on x
    x = (be64.uniform((300, 6)) < 0.5).astype(be64.dtype)
    count, A = active_units(model, x)
    # μ_1, μ_2 are the constant biases: their variance over x is 0 up to rounding
    assert A.shape == (4,) and A[1] < 1e-24 and A[2] < 1e-24
    assert count == int((A >= 0.01).sum()) == 2


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_integer(be64, k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        iw_log_likelihood(_tiny(be64), _x(be64), k=k)
